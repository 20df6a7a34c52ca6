"""Conflicts between receive connectors (exchange.md §3.4 binding / remote range conflicts).

Two enabled connectors of one server and one TransportRole conflict when they listen on the
same binding (or one on the wildcard and one on a specific address of the same port and family)
and their RemoteIPRanges are equal on the same binding or partially overlap (one must contain
the other). A connector with a key that failed validation takes no part: the issue names both
connectors in ``needs``.
"""

from __future__ import annotations

from collections.abc import Sequence

from exchsim.config.issues import IssueLog, place
from exchsim.config.model import ReceiveConnector
from exchsim.config.syntax import Binding, format_ip_range
from exchsim.config.validate.connector import connector_path, subject

__all__ = ["Placed", "check_conflicts"]

#: A validated connector and its index in the file's ReceiveConnectors (None: setup's own).
Placed = tuple[ReceiveConnector, int | None]


def _relation(
    a: ReceiveConnector, b: ReceiveConnector, family: int
) -> tuple[str, Binding, Binding] | None:
    """How two connectors' bindings of one IP family meet: ``same`` (identical IP:port, or both
    wildcard on a port) beats ``mixed`` (wildcard vs specific IP on a port)."""
    mixed: tuple[str, Binding, Binding] | None = None
    for x in a.bindings:
        for y in b.bindings:
            if x.port != y.port or x.address.version != family or y.address.version != family:
                continue
            if x.address == y.address:
                return "same", x, y
            if (x.is_wildcard or y.is_wildcard) and mixed is None:
                mixed = ("mixed", x, y)
    return mixed


def check_conflicts(connectors: Sequence[Placed], log: IssueLog) -> None:
    """Report every conflicting pair of ``connectors`` (in order) once."""
    enabled = [placed for placed in connectors if placed[0].enabled]
    for j, later in enumerate(enabled):
        for earlier in enabled[:j]:
            a, b = earlier[0], later[0]
            if a.server.lower() != b.server.lower() or a.transport_role != b.transport_role:
                continue
            relations = {family: _relation(a, b, family) for family in (4, 6)}
            for ka, ra in enumerate(a.remote_ip_ranges):
                for kb, rb in enumerate(b.remote_ip_ranges):
                    relation = relations.get(ra.version)
                    if ra.version != rb.version or relation is None:
                        continue
                    kind, bind_a, bind_b = relation
                    if ra == rb and kind == "same":
                        why = "the same range on the same binding is not allowed"
                    elif ra.partially_overlaps(rb):
                        why = "the ranges partially overlap; one must contain the other"
                    else:
                        continue
                    _conflict(earlier, ka, bind_a, later, kb, bind_b, why, log)


def _conflict(
    earlier: Placed,
    ka: int,
    bind_a: Binding,
    later: Placed,
    kb: int,
    bind_b: Binding,
    why: str,
    log: IssueLog,
) -> None:
    # Report on the connector the file wrote, preferring the later one.
    if later[1] is None and earlier[1] is not None:
        (here, index), k, (other, _), ko, b_here, b_other = earlier, ka, later, kb, bind_a, bind_b
    else:
        (here, index), k, (other, _), ko, b_here, b_other = later, kb, earlier, ka, bind_b, bind_a
    mine = format_ip_range(here.remote_ip_ranges[k])
    theirs = format_ip_range(other.remote_ip_ranges[ko])
    where = (
        f"binding {b_here.format()}"
        if b_here.format() == b_other.format()
        else f"bindings {b_here.format()} and {b_other.format()}"
    )
    log.add(
        connector_path(here.name, here.server, index, f"RemoteIPRanges[{k}]"),
        mine,
        f"'{mine}' of {here.identity} conflicts with '{theirs}' of "
        f"{other.identity} ({here.transport_role.value}, {where}): {why} "
        "(exchange.md §3.4 binding/remote range conflict)",
        order=place("ReceiveConnectors", index),
        needs=(subject(here), subject(other)),
    )
