"""``exchsim health`` (the image's HEALTHCHECK) against real ``exchsim`` processes on loopback.

The check reads the running process's own command line, so each test starts the command a
container of docker-compose.yml runs (``serve --service``, ``serve``, ``sink``, ``lab``) and
checks it by its pid, from another working directory than the process's.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from exchsim.healthcli import Probe, check
from tests.integration.conftest import ROOT, port_offset

EXCHSIM = [sys.executable, "-m", "exchsim.cli"]
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}


class Running:
    """``exchsim`` subprocesses started with a free port offset, stopped at the end."""

    def __init__(self, data: Path) -> None:
        self.data = data
        self.procs: list[asyncio.subprocess.Process] = []
        self.output: dict[int, list[str]] = {}

    async def start(self, *args: str) -> tuple[asyncio.subprocess.Process, int]:
        for _ in range(5):
            offset = port_offset()
            proc = await asyncio.create_subprocess_exec(
                *EXCHSIM, *args, "--data", str(self.data), "--port-offset", str(offset),
                cwd=ROOT, env=ENV, stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT)
            assert proc.stdout is not None
            seen: list[str] = []
            while True:
                line = (await asyncio.wait_for(proc.stdout.readline(), 60)).decode().strip()
                if line == "exchsim: ready":
                    self.procs.append(proc)
                    self.output[proc.pid] = seen
                    return proc, offset
                if not line:
                    await proc.wait()
                    break
                seen.append(line)
            assert any("address already in use" in s for s in seen), seen
        raise AssertionError("no free port offset found")

    async def stop(self) -> list[str]:
        """Stop every process; what they wrote after ``ready``."""
        out: list[str] = []
        for proc in self.procs:
            if proc.returncode is None:
                proc.send_signal(signal.SIGCONT)
                proc.send_signal(signal.SIGTERM)
            rest, _ = await asyncio.wait_for(proc.communicate(), 30)
            out += rest.decode().splitlines()
        self.procs.clear()
        return out


@pytest.fixture
async def running(tmp_path: Path) -> AsyncIterator[Running]:
    procs = Running(tmp_path / "data")
    try:
        yield procs
    finally:
        with contextlib.suppress(Exception):
            await procs.stop()


async def health(pid: int, *args: str, cwd: Path) -> tuple[int, list[str], str]:
    proc = await asyncio.create_subprocess_exec(
        *EXCHSIM, "health", "--pid", str(pid), *args, cwd=cwd, env=ENV,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    return proc.returncode or 0, out.decode().splitlines(), err.decode()


def listeners(lines: list[str]) -> dict[str, str]:
    """"exchsim health: EX01 127.0.10.1:10475 ok" -> {"EX01 127.0.10.1:475": "ok"} (no offset
    in the key: the caller subtracts it)."""
    out = {}
    for line in lines:
        assert line.startswith("exchsim health: "), line
        name, endpoint, result = line.removeprefix("exchsim health: ").split(" ", 2)
        out[f"{name} {endpoint}"] = result
    return out


def without_offset(found: dict[str, str], offset: int) -> dict[str, str]:
    out = {}
    for key, result in found.items():
        name, endpoint = key.split(" ")
        host, _, port = endpoint.rpartition(":")
        out[f"{name} {host}:{int(port) - offset}"] = result
    return out


async def test_each_service_of_ex01_is_checked_on_its_own_listeners(
        running: Running, tmp_path: Path) -> None:
    # Relative paths, as a container's command has them: resolved in the process's directory.
    config = ["--config", "configs/single-server.yaml"]
    front, offset_fe = await running.start("serve", *config, "--server", "EX01",
                                           "--service", "FrontEnd")
    delivery, offset_md = await running.start("serve", *config, "--server", "EX01",
                                              "--service", "MailboxDelivery")
    code, out, err = await health(front.pid, cwd=tmp_path)
    assert code == 0, (out, err)
    assert without_offset(listeners(out), offset_fe) == {
        "EX01 127.0.10.1:25": "ok", "EX01 127.0.10.1:587": "ok", "EX01 127.0.10.1:717": "ok"}
    code, out, err = await health(delivery.pid, cwd=tmp_path)
    assert code == 0, (out, err)
    assert without_offset(listeners(out), offset_md) == {"EX01 127.0.10.1:475": "ok"}

    # A process that no longer answers (stopped, its sockets still listening): unhealthy.
    delivery.send_signal(signal.SIGSTOP)
    try:
        code, out, err = await health(delivery.pid, "--timeout", "1", cwd=tmp_path)
    finally:
        delivery.send_signal(signal.SIGCONT)
    assert code == 1, (out, err)
    assert without_offset(listeners(out), offset_md) == {
        "EX01 127.0.10.1:475": "no answer within 1 s"}
    code, out, err = await health(delivery.pid, cwd=tmp_path)
    assert code == 0, (out, err)

    # The probes' sessions end with QUIT: the Front End logged no error for them.
    after = await running.stop()
    assert not [line for line in after if "ERROR" in line or "Traceback" in line], after


async def test_the_whole_lab_and_a_proxy_protocol_port(running: Running, tmp_path: Path) -> None:
    lab, offset = await running.start("lab", "--config",
                                      str(ROOT / "configs" / "examples" / "proxy-protocol.yaml"),
                                      "--log-level", "INFO")
    code, out, err = await health(lab.pid, cwd=tmp_path)
    assert code == 0, (out, err)
    found = without_offset(listeners(out), offset)
    assert found == {
        "InternetSink 127.0.10.250:25": "ok",
        "CrlServer 127.0.10.251:80": "ok",
        # Port 25 takes only PROXY-protocol connections from 127.0.10.90: looked up, not dialled.
        "EX01 127.0.10.1:25": "ok (listening; PROXY protocol port)",
        **{f"EX01 127.0.10.1:{port}": "ok" for port in (465, 475, 587, 717, 2525)},
    }
    after = await running.stop()
    assert not [line for line in after if "exchsim.smtp.proxyread" in line], after


async def test_a_process_that_is_no_exchsim_server_is_refused(tmp_path: Path) -> None:
    code, out, err = await health(os.getpid(), cwd=tmp_path)
    assert code == 2 and out == []
    assert f"exchsim health: process {os.getpid()} runs no exchsim lab, serve, sink command" \
        in err


async def test_the_sink_container_command_with_a_hosts_file(
        running: Running, tmp_path: Path) -> None:
    # The sink's container: exchsim sink with a hosts file that puts the sink and the CRL server
    # on one host (as configs/compose-hosts.yaml does, here on loopback).
    hosts = tmp_path / "hosts.yaml"
    hosts.write_text("Addresses:\n  127.0.10.250: 127.0.20.250\n  127.0.10.251: 127.0.20.250\n",
                     encoding="utf-8")
    sink, offset = await running.start("sink", "--config", "configs/lab.yaml",
                                       "--hosts", str(hosts))
    code, out, err = await health(sink.pid, cwd=tmp_path)
    assert code == 0, (out, err)
    assert without_offset(listeners(out), offset) == {
        "InternetSink 127.0.20.250:25": "ok", "CrlServer 127.0.20.250:80": "ok"}
    sink.send_signal(signal.SIGSTOP)
    try:
        code, out, err = await health(sink.pid, "--timeout", "1", cwd=tmp_path)
    finally:
        sink.send_signal(signal.SIGCONT)
    assert code == 1, (out, err)
    assert set(without_offset(listeners(out), offset).values()) == {"no answer within 1 s"}


async def test_a_listener_that_answers_with_an_endless_line_is_reported(tmp_path: Path) -> None:
    """A listener whose first line never ends (over StreamReader's 64 KiB) is a failed probe
    among the others' results, not a traceback that hides them."""
    async def endless(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"220" + b"x" * 70_000)
        with contextlib.suppress(ConnectionError):
            await writer.drain()
            await reader.read()
        writer.close()

    server = await asyncio.start_server(endless, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        results = await check(os.getpid(), [Probe("Endless", "127.0.0.1", port, "smtp"),
                                             Probe("Endless", "127.0.0.1", port, "http")], 10)
    finally:
        server.close()
        await server.wait_closed()
    assert [r for _, r in results] == ["no 220 banner: a line of more than 64 KiB",
                                       "no HTTP reply: a line of more than 64 KiB"]
