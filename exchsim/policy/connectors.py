"""Which receive connector answers a connection (exchange.md §3.5).

1. Candidates: enabled connectors of the server whose Bindings match the accepting socket
   (exact local IP and port, or 0.0.0.0 / [::] of the same family with that port).
2. Among them, those whose RemoteIPRanges contain the client address.
3. The most specific (smallest) matching range wins; on a tie a connector bound to the exact
   local IP beats a wildcard-bound one; a remaining tie (which validation forbids) goes to the
   connector name in case-insensitive order, so input order never matters.
4. None: ``421 4.3.2 Service not available``.

For speed with thousands of connectors, the candidates of one local endpoint are compiled
once into elementary address segments: within a segment the answer is constant, so a lookup
is one binary search.
"""

from __future__ import annotations

import bisect
import heapq
import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass, field

from exchsim.config.model import ReceiveConnector
from exchsim.config.syntax import IPRange

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True, slots=True)
class Selection:
    connector: ReceiveConnector | None
    matched_range: IPRange | None
    exact_binding: bool
    candidates: int

    def describe(self) -> str:
        if self.connector is None:
            return f"no connector matches ({self.candidates} bound to this endpoint)"
        how = "exact" if self.exact_binding else "wildcard"
        assert self.matched_range is not None
        return (
            f"{self.connector.identity} (RemoteIPRanges {self.matched_range.text}, "
            f"{how} binding, {self.candidates} candidates)"
        )


@dataclass(slots=True)
class _Compiled:
    starts: list[int]
    answers: list[tuple[ReceiveConnector, IPRange, bool] | None]
    candidates: int


@dataclass(slots=True)
class ConnectorIndex:
    """Connector choice for one server; build once per config snapshot."""

    connectors: tuple[ReceiveConnector, ...]
    _cache: dict[tuple[Address, int], dict[int, _Compiled]] = field(default_factory=dict)

    @classmethod
    def build(cls, connectors: Iterable[ReceiveConnector]) -> ConnectorIndex:
        return cls(tuple(c for c in connectors if c.enabled))

    def ports(self) -> set[int]:
        return {b.port for c in self.connectors for b in c.bindings}

    def select(self, local: Address, local_port: int, remote: Address) -> Selection:
        if isinstance(remote, ipaddress.IPv6Address) and remote.ipv4_mapped is not None:
            remote = remote.ipv4_mapped
        compiled_by_version = self._cache.get((local, local_port))
        if compiled_by_version is None:
            compiled_by_version = self._compile(local, local_port)
            self._cache[(local, local_port)] = compiled_by_version
        compiled = compiled_by_version.get(remote.version)
        if compiled is None:
            total = sum(c.candidates for c in compiled_by_version.values())
            return Selection(None, None, False, total)
        i = bisect.bisect_right(compiled.starts, int(remote)) - 1
        answer = compiled.answers[i] if i >= 0 else None
        if answer is None:
            return Selection(None, None, False, compiled.candidates)
        connector, matched, exact = answer
        return Selection(connector, matched, exact, compiled.candidates)

    def _compile(self, local: Address, local_port: int) -> dict[int, _Compiled]:
        entries: dict[int, list[tuple[IPRange, bool, ReceiveConnector]]] = {4: [], 6: []}
        count = 0
        for connector in self.connectors:
            exact = any(
                b.port == local_port and not b.is_wildcard and b.address == local
                for b in connector.bindings
            )
            wildcard = any(
                b.matches(local, local_port) and b.is_wildcard for b in connector.bindings
            )
            if not (exact or wildcard):
                continue
            count += 1
            for r in connector.remote_ip_ranges:
                entries[r.version].append((r, exact, connector))
        return {
            version: _segments(items, count) for version, items in entries.items() if items
        }


def _segments(items: list[tuple[IPRange, bool, ReceiveConnector]], candidates: int) -> _Compiled:
    """Sweep the ranges into elementary segments, each with its best (smallest) range."""
    points = sorted({r.first for r, _, _ in items} | {r.last + 1 for r, _, _ in items})
    by_start = sorted(items, key=lambda item: item[0].first)
    heap: list[tuple[int, int, str, str, int, IPRange, bool, ReceiveConnector]] = []
    starts: list[int] = []
    answers: list[tuple[ReceiveConnector, IPRange, bool] | None] = []
    j = 0
    for point in points:
        while j < len(by_start) and by_start[j][0].first <= point:
            r, exact, connector = by_start[j]
            key = (r.size, 0 if exact else 1, connector.name.lower(), connector.server.lower())
            heapq.heappush(heap, (*key, j, r, exact, connector))
            j += 1
        while heap and heap[0][5].last < point:
            heapq.heappop(heap)
        top = heap[0] if heap else None
        starts.append(point)
        answers.append((top[7], top[5], top[6]) if top else None)
    return _Compiled(starts, answers, candidates)
