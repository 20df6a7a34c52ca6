"""What a changed config file changes on a running lab (exchange.md §8.2; exchsim/reload.py).

Exchange rebuilds its routing table when the routing configuration changes (a send connector
created, changed or removed), so the next message is routed with it without a restart of the
Transport service. exchsim does the same for the parts of the config the sending side reads:

- ``SendConnectors`` (with the implied connector of ``config/implied.py`` when the key is
  missing),
- ``Dns`` (the lab's resolver),
- ``Organization.TransportConfig.TLSSendDomainSecureList`` (Domain Security on the way out).

Everything else is read when the lab starts and needs a restart: the servers and their
listeners, receive connectors and their permissions, the organization's accepted domains and
mailboxes (the receiving side answers RCPT from them), the rest of TransportConfig, ``Lab``'s
settings (the internet sink, the CRL server, the retry scale, the partner organizations) and
the certificates (``exchsim pki`` changes those live, ``tls/certstore.py``). :func:`compare`
names each such part that changed (by its key in the file), so that the log can say a restart
is needed for it.

Pure: two loaded ``Lab`` values in, a :class:`ConfigChange` out.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from pydantic import BaseModel

from exchsim.config.model import Lab

__all__ = ["RELOADED", "ConfigChange", "compare"]

RELOADED = ("SendConnectors", "Dns", "Organization.TransportConfig.TLSSendDomainSecureList")
"""The parts of the config a running lab takes from a changed file."""

# Lab's fields and their keys in the file; send_connectors and dns are reloaded, source is no
# part of the configuration, and the partner organizations' own files are watched by their own
# daemons (a change to the list of partners is Lab.Partners).
_TOP = {"organization": "Organization", "servers": "Servers",
        "receive_connectors": "ReceiveConnectors", "ad_permissions": "ADPermissions",
        "lab": "Lab", "edge_subscriptions": "EdgeSubscriptions"}


@dataclass(frozen=True, slots=True)
class ConfigChange:
    """The difference between the running configuration and a newly loaded one."""

    routing: Lab
    """The running configuration with the reloaded parts taken from the new one: what routing
    reads from now on (every other part stays as the lab started with it)."""
    added: tuple[str, ...]
    """Send connectors (names) the new file has and the running one does not."""
    changed: tuple[str, ...]
    """Send connectors with the same name whose settings differ."""
    removed: tuple[str, ...]
    """Send connectors the new file no longer has."""
    dns: bool
    secure_domains: bool
    restart: tuple[str, ...]
    """Parts of the file that changed but take effect at the next start (keys, e.g.
    ``ReceiveConnectors``, ``Lab.RetryInterval``)."""

    @property
    def reloaded(self) -> bool:
        """Whether routing reads anything new."""
        return bool(self.added or self.changed or self.removed or self.dns
                    or self.secure_domains)

    @property
    def connectors(self) -> frozenset[str]:
        """The send connectors whose queues are routed again: added, changed or removed, or
        every one when the lab's DNS changed (any connector's destinations may have moved)."""
        names = {*self.added, *self.changed, *self.removed}
        if self.dns:
            names.update(c.name for c in self.routing.send_connectors)
        return frozenset(names)

    def summary(self) -> str:
        """One phrase for the log: what routing takes from the new file."""
        parts = [f"send connector(s) {verb}: {', '.join(names)}" for verb, names in
                 (("added", self.added), ("changed", self.changed), ("removed", self.removed))
                 if names]
        if self.dns:
            parts.append("Dns changed")
        if self.secure_domains:
            parts.append("TLSSendDomainSecureList changed")
        return "; ".join(parts) or "nothing routing reads changed"


def compare(running: Lab, loaded: Lab) -> ConfigChange:
    """What ``loaded`` (the file as it is now) changes for a lab running ``running``."""
    old = {c.name: c for c in running.send_connectors}
    new = {c.name: c for c in loaded.send_connectors}
    secure = loaded.organization.transport_config.tls_send_domain_secure_list
    transport = running.organization.transport_config.model_copy(
        update={"tls_send_domain_secure_list": secure})
    routing = running.model_copy(update={
        "send_connectors": loaded.send_connectors,
        "dns": loaded.dns,
        "organization": running.organization.model_copy(
            update={"transport_config": transport}),
    })
    return ConfigChange(
        routing=routing,
        added=tuple(n for n in new if n not in old),
        changed=tuple(n for n in new if n in old and new[n] != old[n]),
        removed=tuple(n for n in old if n not in new),
        dns=loaded.dns != running.dns,
        secure_domains=secure != running.organization.transport_config
        .tls_send_domain_secure_list,
        restart=tuple(dict.fromkeys(_restart_parts(routing, loaded))),
    )


def _restart_parts(running: Lab, loaded: Lab) -> Iterable[str]:
    """The keys of the parts that differ between ``running`` (its reloaded parts already the
    new ones) and ``loaded``."""
    for name, key in _TOP.items():
        before, after = getattr(running, name), getattr(loaded, name)
        if before == after:
            continue
        if name in ("organization", "lab"):
            yield from _fields(before, after, key)
        else:
            yield key


def _fields(before: BaseModel, after: BaseModel, prefix: str) -> Iterable[str]:
    """``prefix.Alias`` of each field of two objects of one model that differs (one level into
    TransportConfig)."""
    for name, info in type(before).model_fields.items():
        old, new = getattr(before, name), getattr(after, name)
        if old == new:
            continue
        key = f"{prefix}.{info.alias or name}"
        if isinstance(old, BaseModel) and key.endswith(".TransportConfig"):
            yield from _fields(old, new, key)
        else:
            yield key
