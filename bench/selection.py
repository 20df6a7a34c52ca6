"""Connector choice among thousands of receive connectors (exchange.md §3.5).

    python bench/selection.py [--connectors 10000] [--lookups 200000]

Builds N custom connectors on 0.0.0.0:25 with random RemoteIPRanges inside 10.0.0.0/8 (single
addresses, /24, /16 networks and a-b ranges) plus a catch-all, then times
``ConnectorIndex.select`` for random client addresses. The baseline, in the same run, is the
rule itself applied by a linear scan over every connector and range (what the index replaces);
both must choose the same connector for every address tried. Prints microseconds per lookup,
the one-time compile cost, and the speed-up. The project's target: at most 20 us among 10,000.
"""

from __future__ import annotations

import argparse
import ipaddress
import platform
import random
import time

from exchsim.config.model import ReceiveConnector
from exchsim.policy.connectors import ConnectorIndex

LOCAL = ipaddress.ip_address("127.0.10.1")
BASE = int(ipaddress.ip_address("10.0.0.0"))


def make_connectors(count: int, rnd: random.Random) -> list[ReceiveConnector]:
    def raw(name: str, ranges: list[str]) -> ReceiveConnector:
        return ReceiveConnector.model_validate({
            "Name": name, "Server": "EX01", "Bindings": ["0.0.0.0:25"],
            "RemoteIPRanges": ranges})

    out = [raw("Default Frontend EX01", ["0.0.0.0-255.255.255.255"])]
    for i in range(count):
        kind = rnd.random()
        start = BASE + rnd.randrange(1 << 24)
        if kind < 0.4:
            ranges = [str(ipaddress.ip_address(start))]
        elif kind < 0.7:
            ranges = [str(ipaddress.ip_network((start & ~0xFF, 24)))]
        elif kind < 0.9:
            ranges = [str(ipaddress.ip_network((start & ~0xFFFF, 16)))]
        else:
            end = min(start + rnd.randrange(1, 4096), BASE + (1 << 24) - 1)
            ranges = [f"{ipaddress.ip_address(start)}-{ipaddress.ip_address(end)}"]
        out.append(raw(f"Custom {i:05}", ranges))
    return out


def linear_choice(connectors: list[ReceiveConnector], remote: int) -> str | None:
    """exchange.md §3.5 applied to every connector: smallest matching range, then name."""
    best: tuple[int, str] | None = None
    for c in connectors:
        for r in c.remote_ip_ranges:
            if r.version == 4 and r.first <= remote <= r.last:
                key = (r.size, c.name.lower())
                if best is None or key < best:
                    best = key
    return best[1] if best else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--connectors", type=int, default=10_000)
    parser.add_argument("--lookups", type=int, default=200_000)
    parser.add_argument("--seed", type=int, default=20261123)
    args = parser.parse_args()
    rnd = random.Random(args.seed)
    connectors = make_connectors(args.connectors, rnd)
    addresses = [ipaddress.ip_address(BASE + rnd.randrange(1 << 24))
                 for _ in range(args.lookups)]

    index = ConnectorIndex.build(connectors)
    started = time.perf_counter()
    index.select(LOCAL, 25, addresses[0])  # compiles this endpoint once
    compile_ms = (time.perf_counter() - started) * 1000

    started = time.perf_counter()
    chosen = [index.select(LOCAL, 25, a) for a in addresses]
    index_us = (time.perf_counter() - started) / len(addresses) * 1e6

    sample = addresses[: max(200, args.lookups // 1000)]
    started = time.perf_counter()
    expected = [linear_choice(connectors, int(a)) for a in sample]
    linear_us = (time.perf_counter() - started) / len(sample) * 1e6
    got = [c.connector.name.lower() if c.connector else None for c in chosen[: len(sample)]]
    mismatches = sum(1 for g, e in zip(got, expected, strict=True) if g != e)

    print(f"machine: {platform.machine()}, Python {platform.python_version()}; "
          f"{args.connectors} connectors + Default Frontend, {args.lookups} lookups")
    print(f"index:       {index_us:8.2f} us per lookup (compile once: {compile_ms:.0f} ms)")
    print(f"linear scan: {linear_us:8.2f} us per lookup ({len(sample)} lookups)")
    print(f"speed-up {linear_us / index_us:.0f}x; choices that differ: {mismatches}")
    if mismatches:
        raise SystemExit("the index and the rule disagree")


if __name__ == "__main__":
    main()
