"""Which hubs a Front End hands a message to, in the order it tries them (exchange.md §7.2).

Exchange's Front End picks a hub among the Mailbox servers of its own Active Directory site:
the server holding the recipient's mailbox when there is one, else any of them; a hub it cannot
reach is skipped for another before the client gets ``451 4.7.0 ... PRX4``. The config has no
sites: every server of the organization is in one site, so every Mailbox server is a candidate.

exchsim's order, where the sources leave a choice:
- inbound (``Default Frontend``, 25, proxied to 2525): the servers holding the recipients'
  mailboxes, in the order the recipients were given; then the Front End's own server (when it
  is a Mailbox server); then the other Mailbox servers in the config's order;
- client submission (``Client Frontend``, 587, proxied to 465): the server holding the
  authenticated sender's mailbox first (the submitting user's own server: its hub is where
  the user's mail would be submitted from the mailbox too), then as above.
"""

from __future__ import annotations

from collections.abc import Iterable

from exchsim.config.model import Lab, Server, ServerRole


def hub_order(lab: Lab, frontend: Server, recipients: Iterable[str],
              submitter: str | None = None) -> tuple[str, ...]:
    """The Names of the Mailbox servers to try, best first (each once). ``submitter``: the
    authenticated user's address (an Identity's name) on client submission."""
    homes = lab.organization.mailbox_servers
    hubs = {s.name.lower(): s.name for s in lab.servers if s.role is ServerRole.MAILBOX}
    wanted: list[str] = []
    if submitter is not None:
        wanted.append(homes.get(submitter.strip().lower(), ""))
    wanted.extend(homes.get(address.strip().lower(), "") for address in recipients)
    wanted.append(frontend.name)
    wanted.extend(hubs.values())
    out: list[str] = []
    for name in wanted:
        hub = hubs.get(name.lower())
        if hub is not None and hub not in out:
            out.append(hub)
    return tuple(out)
