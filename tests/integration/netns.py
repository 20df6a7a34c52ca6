"""A lab of hosts in network namespaces: one namespace per host, each with a veth to a bridge
that lives in a namespace of its own (the host's namespace is never touched: no address, no
route, no link is added there), addresses of 198.51.100.0/24, and ``exchsim`` processes started
inside them with the same commands a container runs.

- Names: every namespace of a run is ``exns-<pid>-<nonce>-<host>`` (``<pid>`` the test process,
  ``sw`` the switch). A run that was killed leaves namespaces whose pid is gone: the next run
  kills what still runs in them and deletes them before it starts (:func:`remove_stale`).
- Links: host ``h`` has ``eth0`` in its namespace, its peer ``p-h`` is a port of ``br0`` in the
  switch namespace; :meth:`NetLab.cut` / :meth:`NetLab.restore` set that port down / up, which
  cuts the host off the network while its processes keep running.
- Processes: ``ip netns exec NS <venv>/bin/exchsim ...`` (``ip netns exec`` execs the command,
  so the pid is exchsim's own), stdout and stderr to a log file per start (never a pipe that
  could fill). Ready when it printed ``exchsim: ready`` and every address it listens on answers
  a TCP connection made from inside the client's namespace.
- Clients: :meth:`NetLab.client` is a thread pool whose threads entered a namespace with
  ``setns(2)`` (libc through ctypes; Python 3.11 has no ``os.setns``): a socket opened by such a
  thread lives in that namespace, so smtplib runs there unchanged. Commands (swaks) run under
  ``ip netns exec``.
- Every wait has a deadline; :meth:`NetLab.close` kills every process (SIGKILL) and deletes
  every namespace whatever happened before, and checks that none is left.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import ctypes
import ipaddress
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

ROOT = Path(__file__).resolve().parents[2]
FAMILY = "exns"
_NAME = re.compile(rf"^{FAMILY}-(\d+)-[0-9a-f]+-[a-z0-9]+$")
CLONE_NEWNET = 0x40000000
NETWORK = ipaddress.ip_network("198.51.100.0/24")  # the compose plan's; .1 is its gateway
VENV_BIN = Path(sys.executable).parent
EXCHSIM = [str(VENV_BIN / "exchsim")] if (VENV_BIN / "exchsim").exists() else [
    sys.executable, "-m", "exchsim.cli"]
IP_TIMEOUT = 10.0
T = TypeVar("T")


def ip(*args: str, check: bool = True) -> str:
    """One ``ip`` command, bounded in time; its stdout."""
    done = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=IP_TIMEOUT)
    if check and done.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {done.stderr.strip()}")
    return done.stdout


def namespaces() -> list[str]:
    return [line.split()[0] for line in ip("netns", "list").splitlines() if line.strip()]


def alive(pid: int) -> bool:
    """A process with this pid runs (a zombie, killed but not yet reaped, does not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


def delete_namespace(name: str) -> None:
    """Kill every process inside ``name`` (SIGKILL), then delete it."""
    for _ in range(20):
        pids = [int(p) for p in ip("netns", "pids", name, check=False).split()]
        if not pids:
            break
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.05)
    ip("netns", "del", name, check=False)


def remove_stale() -> list[str]:
    """Namespaces of this family whose test process is gone (a killed run); removed."""
    stale = [n for n in namespaces()
             if (m := _NAME.match(n)) is not None and not alive(int(m[1]))]
    for name in stale:
        delete_namespace(name)
    return stale


_libc = ctypes.CDLL(None, use_errno=True)


def enter(namespace: str) -> None:
    """Move the calling thread into ``namespace``'s network namespace."""
    fd = os.open(f"/run/netns/{namespace}", os.O_RDONLY)
    try:
        if _libc.setns(fd, CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"setns({namespace}): {os.strerror(err)}")
    finally:
        os.close(fd)


class Client:
    """Threads inside one host's namespace: whatever runs on them opens its sockets there."""

    def __init__(self, namespace: str, workers: int) -> None:
        self.namespace = namespace
        self.pool = concurrent.futures.ThreadPoolExecutor(
            max_workers=workers, thread_name_prefix=f"ns-{namespace}",
            initializer=enter, initargs=(namespace,))

    def run(self, fn: Callable[..., T], *args: Any, timeout: float = 60.0) -> T:
        return self.pool.submit(fn, *args).result(timeout=timeout)

    def map(self, fn: Callable[[Any], T], items: list[Any], timeout: float) -> list[T]:
        futures = [self.pool.submit(fn, item) for item in items]
        deadline = time.monotonic() + timeout
        return [f.result(timeout=max(0.0, deadline - time.monotonic())) for f in futures]

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)


@dataclass
class Proc:
    """One started command in one host's namespace (restartable)."""

    host: str
    argv: list[str]
    logs: Path
    popen: subprocess.Popen[bytes] | None = None
    starts: int = 0
    log: Path | None = None

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log and self.log.exists() else ""

    def listening(self) -> list[tuple[str, int]]:
        found = re.findall(r" listening on ([0-9.]+):(\d+)$", self.output(), re.M)
        return [(host, int(port)) for host, port in found]

    def running(self) -> bool:
        return self.popen is not None and self.popen.poll() is None


@dataclass
class NetLab:
    """The switch and the hosts of one test run; see the module docstring."""

    hosts: dict[str, str]  # host name -> its address
    work: Path
    client_host: str = "client"
    run: str = field(default_factory=lambda: f"{FAMILY}-{os.getpid()}-{secrets.token_hex(3)}")
    procs: dict[str, Proc] = field(default_factory=dict)
    _clients: list[Client] = field(default_factory=list)
    _made: list[str] = field(default_factory=list)

    def ns(self, host: str) -> str:
        return f"{self.run}-{host}"

    @property
    def switch(self) -> str:
        return self.ns("sw")

    # --- the network -----------------------------------------------------------------------

    def check(self) -> None:
        """Before anything is made: every host a name :func:`remove_stale` can find again (and
        not the switch's), a bridge port name within IFNAMSIZ, an address of :data:`NETWORK`
        that is not its network, broadcast or gateway address (ValueError otherwise)."""
        for host, address in self.hosts.items():
            if not re.fullmatch(r"[a-z0-9]+", host) or host == "sw" or len(f"p-{host}") > 15:
                raise ValueError(f"host name {host!r}: 1 to 13 of a-z 0-9, not 'sw'")
            try:
                ip_address = ipaddress.ip_address(address)
            except ValueError:
                raise ValueError(f"host {host}: {address!r} is not an address") from None
            if ip_address not in NETWORK or ip_address in (
                    NETWORK.network_address, NETWORK.broadcast_address, NETWORK[1]):
                raise ValueError(f"host {host}: {address} is not a host address of {NETWORK} "
                                 f"other than {NETWORK[1]}")

    def build(self) -> None:
        self.check()
        remove_stale()
        ip("netns", "add", self.switch)
        self._made.append(self.switch)
        ip("-n", self.switch, "link", "add", "br0", "type", "bridge")
        ip("-n", self.switch, "link", "set", "br0", "up")
        ip("-n", self.switch, "link", "set", "lo", "up")
        for host, address in self.hosts.items():
            ns = self.ns(host)
            ip("netns", "add", ns)
            self._made.append(ns)
            ip("link", "add", "eth0", "netns", ns, "type", "veth",
               "peer", "name", f"p-{host}", "netns", self.switch)
            ip("-n", self.switch, "link", "set", f"p-{host}", "master", "br0", "up")
            ip("-n", ns, "addr", "add", f"{address}/24", "dev", "eth0")
            ip("-n", ns, "link", "set", "eth0", "up")
            ip("-n", ns, "link", "set", "lo", "up")

    def cut(self, host: str) -> None:
        """The host's cable out: its bridge port down."""
        ip("-n", self.switch, "link", "set", f"p-{host}", "down")

    def restore(self, host: str) -> None:
        ip("-n", self.switch, "link", "set", f"p-{host}", "up")

    def client(self, host: str | None = None, workers: int = 1) -> Client:
        made = Client(self.ns(host or self.client_host), workers)
        self._clients.append(made)
        return made

    def command(self, host: str, *argv: str, timeout: float = 30.0,
                env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        """Run a command inside a host's namespace (bounded) and return what it did."""
        return subprocess.run(["ip", "netns", "exec", self.ns(host), *argv],
                              capture_output=True, text=True, timeout=timeout, cwd=ROOT,
                              env={**os.environ, "LC_ALL": "C", **(env or {})})

    # --- processes -------------------------------------------------------------------------

    def add(self, name: str, host: str, *argv: str) -> Proc:
        """A process to start (and restart) by name: ``argv`` run in ``host``'s namespace."""
        self.procs[name] = Proc(host, list(argv), self.work / "logs")
        return self.procs[name]

    def exchsim(self, name: str, host: str, *args: str) -> Proc:
        return self.add(name, host, *EXCHSIM, *args)

    def start(self, *names: str, timeout: float = 40.0) -> None:
        """Start the named processes at once; return when each is ready (see the module
        docstring), or fail with its output."""
        for name in names:
            proc = self.procs[name]
            assert not proc.running(), f"{name} is running already"
            proc.starts += 1
            proc.logs.mkdir(parents=True, exist_ok=True)
            proc.log = proc.logs / f"{name}.{proc.starts}.log"
            with proc.log.open("wb") as out:
                proc.popen = subprocess.Popen(
                    ["ip", "netns", "exec", self.ns(proc.host), *proc.argv], cwd=ROOT,
                    stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                    start_new_session=True)
        deadline = time.monotonic() + timeout
        for name in names:
            proc = self.procs[name]
            while "exchsim: ready" not in proc.output():
                if not proc.running():
                    raise AssertionError(f"{name} exited before it was ready:\n{proc.output()}")
                if time.monotonic() > deadline:
                    raise AssertionError(f"{name} not ready in {timeout}s:\n{proc.output()}")
                time.sleep(0.05)
        probe = self.client()
        try:
            for name in names:
                for address in self.procs[name].listening():
                    probe.run(_connectable, address, deadline - time.monotonic(),
                              timeout=max(1.0, deadline - time.monotonic() + 1))
        finally:
            probe.close()

    def kill9(self, name: str) -> None:
        proc = self.procs[name]
        assert proc.popen is not None and proc.running(), f"{name} is not running"
        proc.popen.send_signal(signal.SIGKILL)
        proc.popen.wait(timeout=10)

    def stop(self, name: str, timeout: float = 20.0) -> int:
        """SIGTERM and wait: the exit status (SIGKILL after ``timeout``)."""
        proc = self.procs[name]
        assert proc.popen is not None
        if proc.running():
            proc.popen.send_signal(signal.SIGTERM)
        try:
            return proc.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.popen.kill()
            proc.popen.wait(timeout=10)
            raise AssertionError(f"{name} did not stop in {timeout}s:\n{proc.output()}") from None

    def close(self) -> None:
        """Every process killed, every namespace of this run deleted; none may be left."""
        for client in self._clients:
            client.close()
        for name, proc in self.procs.items():  # pytest shows it when the test failed
            print(f"--- {name} ({proc.host}), {proc.starts} start(s):\n{proc.output()[-3000:]}")
            if proc.popen is not None and proc.popen.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.popen.pid, signal.SIGKILL)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.popen.wait(timeout=10)
        for ns in reversed(self._made):
            delete_namespace(ns)
        left = [n for n in namespaces() if n.startswith(self.run)]
        assert not left, f"namespaces left behind: {left}"


def _connectable(address: tuple[str, int], timeout: float) -> None:
    """A TCP connection to ``address`` succeeds (retried until ``timeout``)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection(address, timeout=2):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


@contextlib.contextmanager
def netlab(hosts: dict[str, str], work: Path) -> Iterator[NetLab]:
    lab = NetLab(hosts, work)
    try:
        lab.build()
        yield lab
    finally:
        lab.close()
