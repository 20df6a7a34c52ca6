"""kill -9 soak: the lab is killed 5 times under load; nothing acknowledged is lost or doubled.

A real ``exchsim lab`` process on loopback (a port offset). Each round: 20 concurrent senders
for a few seconds, then SIGKILL at a random moment, then a restart on the same data
directory and the same ports. Every message goes to alice@contoso.com, bob@contoso.com and
an unknown address of the Authoritative domain contoso.com (the hub answers it with an NDR to
the external sender, so NDRs go to the internet sink); the messages of 5 of the senders come
from the addresses of an anonymous relay connector and go to an external address too (relayed
to the internet sink). After the last kill a clean run lets the queue drain, and the test
counts, per destination, every message that got a 250 (acknowledged) against the copies
present: lost = acknowledged but absent, duplicated = present more than once. A message that
got no 250 (the kill cut its session) may be present or not, but never twice.

The per-round lines and the summary are printed (``pytest -s``) and attached to the
assertion message.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import re
import signal
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import aiosmtplib

from exchsim.transport.queue import MessageQueue
from tests.integration.conftest import FAST_LAB_YAML, ROOT, port_offset, with_connectors

EXCHSIM = [sys.executable, "-m", "exchsim.cli"]
ROUNDS = 5
SENDERS = 20
RELAY_SENDERS = 5  # of the 20: these come from the relay connector's range
SENDER = "sender@fabrikam.example"
UNKNOWN = "nobody@contoso.com"
OUTSIDE = "partner@fabrikam.example"

CONNECTORS = """
  - {Name: Default Frontend EX01, Server: EX01, TarpitInterval: "00:00:00", AuthTarpitInterval: "00:00:00"}
  - {Name: Anonymous Relay EX01, Server: EX01, TransportRole: FrontendTransport, Usage: Custom,
     Bindings: ["0.0.0.0:25"], RemoteIPRanges: ["127.0.22.0/24"], TarpitInterval: "00:00:00",
     AuthMechanism: [Tls], PermissionGroups: [AnonymousUsers]}
"""
PERMISSIONS = """
ADPermissions:
  - {Identity: "EX01\\\\Anonymous Relay EX01", User: "NT AUTHORITY\\\\ANONYMOUS LOGON",
     ExtendedRights: [ms-Exch-SMTP-Accept-Any-Recipient], Deny: false}
"""
TOKEN = re.compile(rb"soak-\d-\d\d-\d{5}")
REPEATED = re.compile(r"\(repeated (once|([\d,]+) times) in the last \d+ s\)")

# Where each acknowledged message must be, exactly once.
DESTINATIONS = {
    "alice (mailbox)": ("mailboxes", "alice@contoso.com"),
    "bob (mailbox)": ("mailboxes", "bob@contoso.com"),
    "NDR (sink)": ("internet", SENDER),
    "relayed (sink)": ("internet", OUTSIDE),
}


class LabProcess:
    """``exchsim lab`` as a child process whose output is read all the time (a full pipe would
    stall it) and kept, to count the log lines of each run."""

    def __init__(self, config: Path, data: Path, offset: int) -> None:
        self.config, self.data, self.offset = config, data, offset
        self.proc: asyncio.subprocess.Process | None = None
        self.output: list[str] = []
        self._reader: asyncio.Task[None] | None = None

    async def start(self, *, may_move: bool) -> float:
        """Start, wait for ``exchsim: ready``; the seconds it took. A taken port moves the
        offset (first start only)."""
        for _ in range(5):
            began = time.monotonic()
            self.output = []
            self.proc = await asyncio.create_subprocess_exec(
                *EXCHSIM, "lab", "--config", str(self.config), "--data", str(self.data),
                "--port-offset", str(self.offset), "--log-level", "info", cwd=ROOT,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
            assert self.proc.stdout is not None
            while True:
                line = await asyncio.wait_for(self.proc.stdout.readline(), 30)
                if line.strip() == b"exchsim: ready":
                    self._reader = asyncio.create_task(self._read())
                    return time.monotonic() - began
                if not line:
                    break
                self.output.append(line.decode("utf-8", "replace").rstrip())
            await self.proc.wait()
            assert may_move and any("address already in use" in s for s in self.output), (
                f"exchsim exited before it was ready: {self.output[-20:]}")
            self.offset = port_offset()
        raise AssertionError("no free port offset found")

    async def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        while line := await self.proc.stdout.readline():
            self.output.append(line.decode("utf-8", "replace").rstrip())

    async def _finish(self, sig: signal.Signals) -> int:
        assert self.proc is not None
        if self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(sig)
        code = await asyncio.wait_for(self.proc.wait(), 30)
        if self._reader is not None:
            await asyncio.wait_for(self._reader, 10)
        return code

    async def kill9(self) -> None:
        await self._finish(signal.SIGKILL)

    async def stop(self) -> int:
        return await self._finish(signal.SIGTERM)

    def count(self, text: str) -> int:
        """Log records with ``text``. The lab's log writes the first record of a kind and
        then one ``(repeated N times ...)`` line a minute and at exit (exchsim/logs/repeats.py):
        both are counted here, but a killed run never writes its last count, so for a killed
        run this is a lower bound."""
        total = 0
        for line in self.output:
            if text in line:
                repeated = REPEATED.search(line)
                if repeated is None:
                    total += 1
                else:
                    total += 1 if repeated[1] == "once" else int(repeated[2].replace(",", ""))
        return total

    def errors(self) -> str:
        """How many ERROR lines and tracebacks this run logged, and the first of them."""
        lines = [line for line in self.output if " ERROR " in line or "Traceback" in line]
        return f"errors logged: {len(lines)}" + (f" (first: {lines[0][:160]})" if lines else "")


@dataclass
class Load:
    """What the clients saw."""

    offset: int
    round: int = 0
    acked: set[str] = field(default_factory=set)  # got 250 after the data
    relayed: set[str] = field(default_factory=set)  # tokens of messages with OUTSIDE too
    attempted: int = 0  # DATA sent
    partial: int = 0  # 250 for some recipients only (counted as not acknowledged)

    async def sender(self, worker: int, stop: asyncio.Event) -> None:
        relay = worker < RELAY_SENDERS
        source = f"127.0.22.{10 + worker}" if relay else f"127.0.30.{10 + worker}"
        recipients = ["alice@contoso.com", "bob@contoso.com", UNKNOWN]
        if relay:
            recipients.append(OUTSIDE)
        n = 0
        while not stop.is_set():
            smtp = aiosmtplib.SMTP(hostname="127.0.10.1", port=25 + self.offset,
                                   source_address=(source, 0), start_tls=False, timeout=10)
            try:
                await smtp.connect()
                while not stop.is_set():
                    token = f"soak-{self.round}-{worker:02}-{n:05}"
                    n += 1
                    message = (
                        f"From: <{SENDER}>\r\nTo: <alice@contoso.com>, <bob@contoso.com>\r\n"
                        f"Subject: {token}\r\nMessage-ID: <{token}@fabrikam.example>\r\n\r\n"
                        f"{token}\r\n{'x' * 600}\r\n")
                    if relay:
                        self.relayed.add(token)
                    self.attempted += 1
                    errors, reply = await smtp.sendmail(SENDER, recipients, message)
                    if errors:  # some recipients refused: not acknowledged for all
                        self.partial += 1
                    elif "Queued mail for delivery" in reply:
                        self.acked.add(token)
            except (aiosmtplib.SMTPException, OSError):
                await asyncio.sleep(0.05)  # the lab is gone or going: try again
            finally:
                smtp.close()


class Census:
    """The tokens in the Maildirs. A file in ``new/`` is complete and never changes, so each
    is read once however often the census is taken."""

    def __init__(self, data: Path) -> None:
        self.data = data
        self._files: dict[Path, set[str]] = {}

    def present(self, kind: str, address: str) -> Counter[str]:
        """How many files of the Maildir hold each token (a file counts once per token)."""
        found: Counter[str] = Counter()
        for sub in ("new", "cur"):
            folder = self.data / kind / address / sub
            if folder.exists():
                for path in folder.iterdir():
                    tokens = self._files.get(path)
                    if tokens is None:
                        tokens = {t.decode() for t in TOKEN.findall(path.read_bytes())}
                        self._files[path] = tokens
                    found.update(tokens)
        return found

    def tally(self, load: Load) -> dict[str, tuple[int, int, int, int, int]]:
        """Per destination: (acknowledged, delivered, lost, duplicated, unacknowledged
        present)."""
        out = {}
        for name, (kind, address) in DESTINATIONS.items():
            expected = load.acked & load.relayed if address == OUTSIDE else load.acked
            counts = self.present(kind, address)
            delivered = sum(1 for t in expected if counts[t] > 0)
            duplicated = sum(1 for c in counts.values() if c > 1)
            extra = sum(1 for t in counts if t not in expected)
            out[name] = (len(expected), delivered, len(expected) - delivered, duplicated, extra)
        return out


async def test_kill_9_five_times_under_load_loses_and_doubles_nothing(tmp_path: Path) -> None:
    config = tmp_path / "lab.yaml"
    config.write_text(with_connectors(FAST_LAB_YAML, CONNECTORS) + PERMISSIONS, encoding="utf-8")
    data = tmp_path / "data"
    lab = LabProcess(config, data, port_offset())
    load = Load(lab.offset)
    report: list[str] = []
    per_round: list[int] = []  # acknowledged in each round
    rng = random.Random()
    loop = asyncio.get_running_loop()

    for number in range(1, ROUNDS + 1):
        startup = await lab.start(may_move=number == 1)
        load.offset, load.round = lab.offset, number
        acked_before, attempted_before = len(load.acked), load.attempted
        stop = asyncio.Event()
        began = loop.time()
        senders = [asyncio.create_task(load.sender(w, stop)) for w in range(SENDERS)]
        await asyncio.sleep(rng.uniform(1.0, 2.5))  # the random moment of the kill
        loaded = loop.time() - began
        await lab.kill9()
        stop.set()
        await asyncio.gather(*senders)
        per_round.append(len(load.acked) - acked_before)
        report.append(
            f"round {number}: started in {startup:.1f}s, killed after {loaded:.1f}s of load; "
            f"sent {load.attempted - attempted_before}, acked "
            f"{len(load.acked) - acked_before}; DUPLICATEDELIVER dropped in this run: mailboxes "
            f">={lab.count('already in the mailbox')}, sink >={lab.count('already in the sink')}; "
            f"{lab.errors()}")
        print(report[-1], flush=True)

    startup = await lab.start(may_move=False)
    census = Census(data)
    drain_began = loop.time()
    # Drain: everything acknowledged is somewhere, and nothing changed for 2 s (RetryInterval
    # is 1 s, so a retry or a late second copy would have shown up).
    deadline = loop.time() + 90
    last: dict[str, tuple[int, int, int, int, int]] = {}
    steady_since = loop.time()
    while True:
        now = census.tally(load)
        if now != last:
            last, steady_since = now, loop.time()
        if all(v[2] == 0 for v in now.values()) and loop.time() - steady_since >= 2:
            break
        if loop.time() > deadline:
            break
        await asyncio.sleep(0.25)
    drain = loop.time() - drain_began
    assert await lab.stop() == 0  # at exit the log writes its repeat counts
    sink_drops = lab.count("already in the sink")
    mailbox_drops = lab.count("already in the mailbox")
    queue = await MessageQueue.open(data / "queue" / "EX01.sqlite")
    try:
        pending = await queue.pending_count()
    finally:
        await queue.close()
    report.append(f"final run: started in {startup:.1f}s, drained in {drain:.1f}s "
                  f"(incl. 2 s steady); DUPLICATEDELIVER dropped in mailboxes {mailbox_drops}, "
                  f"in the sink {sink_drops}; still queued after the drain: {pending}; "
                  f"messages with a recipient refused: {load.partial}; {lab.errors()}")
    result = census.tally(load)
    report.append(f"{'destination':<16} {'acked':>6} {'delivered':>9} {'lost':>5} "
                  f"{'duplicated':>10} {'unacked present':>15}")
    for name, (expected, delivered, lost, duplicated, extra) in result.items():
        report.append(f"{name:<16} {expected:>6} {delivered:>9} {lost:>5} {duplicated:>10} "
                      f"{extra:>15}")
    text = "\n".join(report)
    print(text[text.index("final run"):], flush=True)

    assert min(per_round) >= 50, text  # real load in every round
    assert load.acked & load.relayed, text
    assert all(lost == 0 for _, _, lost, _, _ in result.values()), text
    assert all(duplicated == 0 for _, _, _, duplicated, _ in result.values()), text
    assert pending == 0, text
