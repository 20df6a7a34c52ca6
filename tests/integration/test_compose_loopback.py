"""The containers of docker-compose.yml, run as processes on loopback.

No container engine runs here, so each service's command, as ``docker-compose config`` prints
it, runs as an ``exchsim`` process on this machine: the compose network's addresses moved to
loopback (198.51.100.N -> 127.0.20.N, a copy of configs/compose-hosts.yaml), the image's paths
to the repository's, the volume to one data directory, a port offset for all. The sink's
process starts first (it makes the lab CA), EX01's Front End after EX01's hub, the others
together between them, as ``depends_on`` orders them; each is then checked by ``exchsim health`` (the image's HEALTHCHECK) and mail crosses the
lab through the published ports' servers: the Internet to EDGE01:25, client submission on EX01's
Front End 587, EX01's split services, EX02 and the partner.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.integration.conftest import ROOT, port_offset, swaks
from tests.integration.test_compose import IMAGE_ROOT, VOLUME, compose_config
from tests.integration.test_health import ENV, EXCHSIM, health, listeners
from tests.integration.test_lab_topology import (
    DOMAIN_SECURED,
    org_headers,
    parsed,
    received_by,
    submit,
)

COMPOSE_NET, LOOPBACK_NET = "198.51.100.", "127.0.20."


def on_loopback(address: str) -> str:
    assert address.startswith(COMPOSE_NET), address
    return LOOPBACK_NET + address.removeprefix(COMPOSE_NET)


def start_levels(services: dict[str, Any]) -> list[list[str]]:
    """The services in groups: each group's depends_on are all in the groups before it (what
    docker-compose starts together)."""
    levels: list[list[str]] = []
    done: set[str] = set()
    while len(done) < len(services):
        ready = sorted(name for name, entry in services.items() if name not in done
                       and set(entry.get("depends_on", {})) <= done)
        assert ready, f"depends_on has a cycle: {services.keys() - done}"
        levels.append(ready)
        done |= set(ready)
    return levels


@dataclass
class Containers:
    data: Path
    hosts: Path
    offset: int = field(default_factory=port_offset)
    procs: dict[str, asyncio.subprocess.Process] = field(default_factory=dict)

    def argv(self, command: list[str]) -> list[str]:
        out = []
        for word in command:
            if word == VOLUME:
                word = str(self.data)
            elif word.endswith("compose-hosts.yaml"):
                word = str(self.hosts)
            elif word.startswith(f"{IMAGE_ROOT}/"):
                word = str(ROOT / word.removeprefix(f"{IMAGE_ROOT}/"))
            out.append(word)
        return [*out, "--port-offset", str(self.offset)]

    async def start(self, name: str, command: list[str]) -> list[str]:
        proc = await asyncio.create_subprocess_exec(
            *EXCHSIM, *self.argv(command), cwd=ROOT, env=ENV,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
        assert proc.stdout is not None
        seen: list[str] = []
        while True:
            line = (await asyncio.wait_for(proc.stdout.readline(), 90)).decode().strip()
            if line == "exchsim: ready":
                self.procs[name] = proc
                return seen
            if not line:
                await proc.wait()
                raise AssertionError(f"{name} exited: {seen}")
            seen.append(line)

    def port(self, port: int) -> int:
        return port + self.offset

    def folder(self, kind: str, address: str) -> list[bytes]:
        path = self.data / kind / address / "new"
        return [p.read_bytes() for p in sorted(path.iterdir())] if path.exists() else []

    async def wait_for(self, kind: str, address: str, count: int = 1) -> list[bytes]:
        deadline = asyncio.get_running_loop().time() + 40
        while len(found := self.folder(kind, address)) < count:
            assert asyncio.get_running_loop().time() < deadline, \
                f"{kind}/{address} holds {len(found)} messages, not {count}"
            await asyncio.sleep(0.1)
        return found


@pytest.fixture
async def containers(tmp_path: Path) -> AsyncIterator[tuple[Containers, dict[str, Any]]]:
    resolved = compose_config()["services"]
    raw = yaml.safe_load((ROOT / "configs" / "compose-hosts.yaml").read_text(encoding="utf-8"))
    moved = {"Addresses": {k: on_loopback(v) for k, v in raw["Addresses"].items()},
             "Services": {server: {k: on_loopback(v) for k, v in services.items()}
                          for server, services in raw["Services"].items()}}
    hosts = tmp_path / "loopback-hosts.yaml"
    hosts.write_text(yaml.safe_dump(moved), encoding="utf-8")
    running = Containers(tmp_path / "data", hosts)
    try:
        for level in start_levels(resolved):
            started = await asyncio.gather(
                *(running.start(name, resolved[name]["command"]) for name in level))
            for name, seen in zip(level, started, strict=True):
                address = on_loopback(resolved[name]["networks"]["lab"]["ipv4_address"])
                bound = {s.split(" listening on ")[1].rpartition(":")[0] for s in seen
                         if " listening on " in s}
                assert bound == {address}, (name, seen)  # the container's own address only
        yield running, resolved
    finally:
        for proc in running.procs.values():
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
        codes = {}
        for name, proc in running.procs.items():
            await asyncio.wait_for(proc.communicate(), 60)
            codes[name] = proc.returncode
        assert set(codes.values()) <= {0}, codes


async def test_the_compose_lab_on_loopback(
        containers: tuple[Containers, dict[str, Any]], tmp_path: Path) -> None:
    lab, resolved = containers
    levels = start_levels(resolved)
    assert levels[0] == ["sink"] and levels[-1] == ["ex01-frontend"], levels
    assert sorted(lab.procs) == sorted(resolved)
    checks = await asyncio.gather(*(health(proc.pid, cwd=tmp_path)
                                    for proc in lab.procs.values()))
    for name, (code, out, err) in zip(lab.procs, checks, strict=True):  # each HEALTHCHECK
        assert code == 0, (name, out, err)
        assert out and all(r == "ok" for r in listeners(out).values()), (name, out)

    edge, frontend = on_loopback("198.51.100.31"), on_loopback("198.51.100.11")
    # The Internet to bob, at the port published as 10025 (EDGE01:25).
    code, out = await swaks("--server", f"{edge}:{lab.port(25)}", "--from",
                            "carol@fabrikam.example", "--to", "bob@contoso.com",
                            "--header", "Subject: from the internet")
    assert code == 0, out
    [raw] = await lab.wait_for("mailboxes", "bob@contoso.com")
    assert received_by(parsed(raw)) == ["ex02.contoso.com"] * 3 + ["edge01.contoso.com"]

    # alice at the port published as 10587 (EX01's Front End): to the Internet through the Edge,
    # to bob through EX01's own hub (another process, another address) and EX02.
    await asyncio.to_thread(submit, frontend, lab.port(587), "alice@contoso.com",
                            "user@fabrikam.example", "to the internet")
    [raw] = await lab.wait_for("internet", "user@fabrikam.example")
    message = parsed(raw)
    assert org_headers(message) == []
    assert received_by(message) == ["edge01.contoso.com", "ex01.contoso.com", "ex01.contoso.com"]
    hub = on_loopback("198.51.100.12")
    assert f"({hub})" in str(message.get_all("Received")[0])  # sent from the hub's container
    await asyncio.to_thread(submit, frontend, lab.port(587), "alice@contoso.com",
                            "bob@contoso.com", "alice to bob")
    await lab.wait_for("mailboxes", "bob@contoso.com", count=2)

    # Seed 001 both ways between EX01's containers and the partner's.
    await asyncio.to_thread(submit, frontend, lab.port(587), "alice@contoso.com",
                            "user@partner.example", "to the partner")
    [raw] = await lab.wait_for("mailboxes", "user@partner.example")
    assert parsed(raw)["X-MS-Exchange-Organization-Classification"] == DOMAIN_SECURED
    partner = on_loopback("198.51.100.60")
    await asyncio.to_thread(submit, partner, lab.port(587), "user@partner.example",
                            "alice@contoso.com", "from the partner")
    [raw] = await lab.wait_for("mailboxes", "alice@contoso.com")
    assert parsed(raw)["X-MS-Exchange-Organization-AuthDomain"] == "partner.example"
    assert parsed(raw)["X-MS-Exchange-Organization-Classification"] == DOMAIN_SECURED

    # One writer per file: each process its own NTLM user file and protocol log folders.
    ntlm = sorted(p.name for p in (lab.data / "ntlm").iterdir())
    assert ntlm == ["EDGE01.txt", "EX01-FrontEnd.txt", "EX01-MailboxDelivery.txt",
                    "EX01-Transport.txt", "EX02.txt", "PARTNER01.txt"]
    logs = lab.data / "logs" / "EX01"
    assert {p.name for p in logs.iterdir()} >= {"FrontEnd", "Hub"}  # the services' own
    assert not (logs / "ProtocolLog").exists()
