"""The command line as a process: --help, --version, an unknown --server, a refused bind."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import sys
from importlib.metadata import version
from pathlib import Path

from tests.integration.conftest import ROOT

EXCHSIM = [sys.executable, "-m", "exchsim.cli"]
# What docstring markup would leave in --help: reST literals and roles, Markdown emphasis.
MARKUP = re.compile(r"``|:(?:class|func|meth|mod|attr):|`[^`\s][^`]*`|\*\*|\bSee also\b")


async def run(*args: str, prefix: tuple[str, ...] = (), timeout: float = 60) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        *prefix, *EXCHSIM, *args, cwd=ROOT,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), timeout)
    return proc.returncode or 0, out.decode(), err.decode()


async def test_help_of_every_command_is_plain_text() -> None:
    for command in ([], ["lab"], ["serve"], ["check"]):
        code, out, err = await run(*command, "--help")
        assert code == 0, (command, out, err)
        assert not MARKUP.search(out), (command, out)
        assert out.startswith("usage: exchsim"), out
        assert "Exit status:" in out
    _, out, _ = await run("--help")
    for name in ("lab", "serve", "check", "--version"):
        assert name in out


async def test_config_option_has_help_and_shows_its_default() -> None:
    for command in ("lab", "serve", "check"):
        _, out, _ = await run(command, "--help")
        flat = " ".join(out.split())
        assert "--config FILE the lab's YAML config (default: configs/lab.yaml)" in flat, out
    _, out, _ = await run("lab", "--help")
    assert "--port-offset N add N to every port" in " ".join(out.split())


async def test_version_comes_from_the_package_metadata() -> None:
    code, out, err = await run("--version")
    assert code == 0, err
    assert out.strip() == f"exchsim {version('exchsim')}"
    assert re.fullmatch(r"exchsim \d+\.\d+\S*", out.strip())


async def test_serve_with_an_unknown_server_exits_2_naming_the_servers(tmp_path: Path) -> None:
    code, out, err = await run("serve", "--server", "EX09", "--config", "configs/single-server.yaml",
                               "--data", str(tmp_path / "data"), "--port-offset", "31000")
    assert code == 2, (out, err)
    assert "Traceback" not in err
    assert "exchsim: ready" not in out
    assert err.strip() == ("exchsim: configs/single-server.yaml has no server named 'EX09'; "
                           "its servers are: EX01")
    assert not (tmp_path / "data").exists()  # refused before anything was created


def without_bind_privilege() -> tuple[str, ...]:
    """A command prefix under which ports below 1024 cannot be bound (EACCES).

    As root, setpriv (util-linux) drops CAP_NET_BIND_SERVICE from the bounding set, so the
    exec'd exchsim is root without that capability; a user other than root has none already.
    Either way Linux refuses ports below net.ipv4.ip_unprivileged_port_start.
    """
    start = int(Path("/proc/sys/net/ipv4/ip_unprivileged_port_start").read_text())
    assert start > 25, (
        f"net.ipv4.ip_unprivileged_port_start is {start}: every user may bind port 25 here, "
        "so a refused bind cannot be provoked")
    if os.geteuid() != 0:
        return ()
    setpriv = shutil.which("setpriv")
    assert setpriv is not None, "setpriv (util-linux) is required to drop CAP_NET_BIND_SERVICE"
    return (setpriv, "--bounding-set", "-net_bind_service")


async def test_a_bind_refused_for_lack_of_privilege_points_at_port_offset(tmp_path: Path) -> None:
    prefix = without_bind_privilege()
    for command in (["lab"], ["serve", "--server", "ex01"]):  # names match case-insensitively
        code, out, err = await run(*command, "--config", "configs/single-server.yaml",
                                   "--data", str(tmp_path / "data"), "--port-offset", "0",
                                   prefix=prefix)
        assert code == 2, (command, out, err)
        assert "Traceback" not in err, err
        assert "exchsim: ready" not in out
        assert "('127.0.10.1', 25): permission denied" in err, err
        assert "--port-offset N adds N to every port" in err, err
        assert "--port-offset 10000 listens on 10025 instead of 25" in err, err
