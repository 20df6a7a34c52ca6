"""``EdgeSubscriptions``: each entry validated alone, then against the config's servers.

Rules (exchange.md §7.6): Server names a server of this config whose Role is Edge (New-
EdgeSubscription runs on an Edge server and is imported on a Mailbox server of the site, so
the config must also have a Mailbox server); one subscription per Edge server (an Edge is
subscribed to one AD site; subscribing it again replaces the subscription). Site: letters,
digits and hyphens (an AD site name), default ``Default-First-Site-Name``.
"""

from __future__ import annotations

from collections.abc import Sequence

from exchsim.config.edgesync import EdgeSubscription
from exchsim.config.issues import IssueLog, did_you_mean, place, show
from exchsim.config.model import Server, ServerRole
from exchsim.config.prose import validate

__all__ = ["validate_edge_subscriptions"]

_SECTION = "EdgeSubscriptions"


def validate_edge_subscriptions(raw: object, servers: Sequence[Server],
                                log: IssueLog) -> list[EdgeSubscription]:
    """The usable subscriptions of ``raw`` (absent: none); every problem goes to ``log``."""
    if raw is None:
        return []
    if not isinstance(raw, list):
        log.add(_SECTION, raw, f"{show(raw)} is not allowed: expected a list of Edge "
                "subscriptions like [{Server: EDGE01, Site: Default-First-Site-Name}]",
                order=place(_SECTION))
        return []
    by_name = {s.name.lower(): s for s in servers}
    edges = [s.name for s in servers if s.role is ServerRole.EDGE]
    has_mailbox = any(s.role is ServerRole.MAILBOX for s in servers)
    taken: dict[str, int] = {}
    out: list[EdgeSubscription] = []
    for index, item in enumerate(raw):
        order = place(_SECTION, index)
        name = item.get("Server") if isinstance(item, dict) else None
        labelled = f" ({name})" if isinstance(name, str) else ""
        sub = validate(EdgeSubscription, item, f"{_SECTION}[{index}]{labelled}", log,
                       order=order)
        if sub is None:
            continue
        path = f"{_SECTION}[{index}] ({sub.server}).Server"
        server = by_name.get(sub.server.lower())
        allowed = ", ".join(edges) if edges else "none: the config has no server of Role Edge"
        if server is None:
            log.add(path, sub.server, f"{show(sub.server)} is not allowed: not a server of "
                    f"this config; expected an Edge server ({allowed})",
                    did_you_mean(sub.server, edges), order=order,
                    needs=[("ServerName", sub.server)])
            continue
        if server.role is not ServerRole.EDGE:
            log.add(path, sub.server, f"{show(sub.server)} is not allowed: {server.name} is a "
                    f"server of Role {server.role.value}; an Edge subscription names a server "
                    f"of Role Edge ({allowed}; exchange.md §7.6)", order=order)
            continue
        if not has_mailbox:
            log.add(path, sub.server, f"{show(sub.server)} cannot be subscribed: the config "
                    "has no Mailbox server for the Edge to relay to (exchange.md §7.6)",
                    order=order)
            continue
        first = taken.get(server.name.lower())
        if first is not None:
            log.add(path, sub.server, f"{show(sub.server)} is not allowed: {server.name} "
                    f"already has the subscription {_SECTION}[{first}]; an Edge server is "
                    "subscribed once (exchange.md §7.6)", order=order)
            continue
        taken[server.name.lower()] = index
        out.append(sub.model_copy(update={"server": server.name}))
    return out
