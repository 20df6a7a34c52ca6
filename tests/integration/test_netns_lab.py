"""The organization across hosts for real: each server, and each transport service of EX01, in
its own network namespace on a bridge (tests/integration/netns.py), started with the commands
its container runs in docker-compose.yml (``exchsim serve --config ... --hosts
configs/compose-hosts.yaml --server ... [--service ...] --data DIR --port-offset 0``,
``exchsim sink``), one data directory shared by all (the lab PKI as an organization's AD would
share it).

Hosts (the compose address plan of configs/compose-hosts.yaml, 198.51.100.0/24): EX01's Front
End (.11), Transport (.12) and Mailbox Transport Delivery (.13), EX02 (.21, bob's mailbox),
EDGE01 (.31, Edge Transport subscribed to the site), the internet sink and CRL server (.50) and
a client (.100). The config is configs/lab.yaml itself (EX01 127.0.10.1, EX02 127.0.10.2,
EDGE01 127.0.10.10, sink 127.0.10.250, CRL 127.0.10.251, which the hosts file maps to those
hosts) with faster retries and no tarpits (``_EDITS``).
"""

from __future__ import annotations

import asyncio
import contextlib
import email
import email.policy
import json
import os
import re
import smtplib
import ssl
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from exchsim.transport.queue import MessageQueue
from tests.integration.netns import (
    EXCHSIM,
    FAMILY,
    ROOT,
    NetLab,
    alive,
    ip,
    namespaces,
    netlab,
    remove_stale,
)

LAB_YAML = ROOT / "configs" / "lab.yaml"
# configs/lab.yaml as shipped, with what the tests change (each edit must apply):
_EDITS = (
    # EX01 tries an unreachable next hop again every 4 s, so its queue is seen in Retry between
    # tries; the lab retries every second otherwise.
    ('ExchsimLabCertificate: [mail.contoso.com, contoso.com]}',
     'ExchsimLabCertificate: [mail.contoso.com, contoso.com], '
     'TransientFailureRetryInterval: "00:00:04"}'),
    ("  ComposeGateway: 198.51.100.1\n",
     '  ComposeGateway: 198.51.100.1\n  RetryInterval: "00:00:01"\n'),
    # Tarpitting off: the tests time mail flow, not tarpits.
    ("  - {Name: Default Frontend EX01, Server: EX01, Fqdn: mail.contoso.com}\n",
     "".join(f'  - {{Name: {name} {server}, Server: {server}, '
             f'{"Fqdn: mail.contoso.com, " if (name, server) == ("Default Frontend", "EX01") else ""}'
             'TarpitInterval: "00:00:00", AuthTarpitInterval: "00:00:00"}\n'
             for server in ("EX01", "EX02")
             for name in ("Default Frontend", "Client Frontend", "Default", "Client Proxy"))
     + '  - {Name: Default internal receive connector EDGE01, Server: EDGE01, '
       'TarpitInterval: "00:00:00"}\n'),
)


def lab_config(folder: Path) -> Path:
    """configs/lab.yaml with the tests' edits, and configs/partner.yaml beside it (Lab.Partners
    names it relative to the config)."""
    text = LAB_YAML.read_text(encoding="utf-8")
    for old, new in _EDITS:
        assert text.count(old) == 1, f"configs/lab.yaml changed: {old!r} not found once"
        text = text.replace(old, new)
    (folder / "partner.yaml").write_text(
        (ROOT / "configs" / "partner.yaml").read_text(encoding="utf-8"), encoding="utf-8")
    config = folder / "lab.yaml"
    config.write_text(text, encoding="utf-8")
    return config


HOSTS_FILE = ROOT / "configs" / "compose-hosts.yaml"
HOSTS = {"ex01fe": "198.51.100.11", "ex01hub": "198.51.100.12", "ex01mbx": "198.51.100.13",
         "ex02": "198.51.100.21", "edge01": "198.51.100.31", "sink": "198.51.100.50",
         "client": "198.51.100.100"}
EX01, EX01_HUB, EX01_MBX = HOSTS["ex01fe"], HOSTS["ex01hub"], HOSTS["ex01mbx"]
EX02, EDGE01, SINK = HOSTS["ex02"], HOSTS["edge01"], HOSTS["sink"]
PASSWORD = "P@ssw0rd!"


@dataclass
class Org:
    net: NetLab
    config: Path
    data: Path

    def mailbox(self, address: str) -> list[bytes]:
        return _maildir(self.data / "mailboxes" / address)

    def internet(self, address: str) -> list[bytes]:
        return _maildir(self.data / "internet" / address)

    def queue(self, server: str, *args: str) -> tuple[int, str]:
        """``exchsim queue`` run on the host of ``server``'s Transport service."""
        host = {"EX01": "ex01hub", "EX02": "ex02", "EDGE01": "edge01"}[server]
        done = self.net.command(host, *EXCHSIM, "queue", "--config", str(self.config),
                                "--data", str(self.data), "--server", server, *args)
        return done.returncode, done.stdout + done.stderr

    def queued(self, server: str) -> list[dict[str, object]]:
        code, out = self.queue(server, "--format", "json", "messages")
        assert code == 0, out
        result: list[dict[str, object]] = json.loads(out)
        return result

    def queues(self, server: str) -> list[dict[str, object]]:
        code, out = self.queue(server, "--format", "json", "get")
        assert code == 0, out
        result: list[dict[str, object]] = json.loads(out)
        return result


def _maildir(folder: Path) -> list[bytes]:
    return [p.read_bytes() for sub in ("new", "cur") if (folder / sub).exists()
            for p in sorted((folder / sub).iterdir())]


def until(predicate: Callable[[], object], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out ({timeout}s): {what}"
        time.sleep(0.1)


@contextlib.contextmanager
def running_lab(folder: Path) -> Iterator[Org]:
    config = lab_config(folder)
    data = folder / "data"
    with netlab(HOSTS, folder) as net:
        common = ("--config", str(config), "--hosts", str(HOSTS_FILE), "--data", str(data),
                  "--port-offset", "0")
        for service, host in (("FrontEnd", "ex01fe"), ("Transport", "ex01hub"),
                              ("MailboxDelivery", "ex01mbx")):
            net.exchsim(f"ex01-{service}", host, "serve", *common, "--server", "EX01",
                        "--service", service)
        net.exchsim("ex02", "ex02", "serve", *common, "--server", "EX02")
        net.exchsim("edge01", "edge01", "serve", *common, "--server", "EDGE01")
        net.exchsim("sink", "sink", "sink", *common)
        # As docker-compose.yml orders them: the sink (it makes the lab CA that issues EX01's
        # lab certificate) first, then every server at once. PARTNER01 is not started: no test
        # here sends to partner.example.
        net.start("sink")
        net.start(*(name for name in net.procs if name != "sink"))
        yield Org(net, config, data)


@pytest.fixture
def org(tmp_path: Path) -> Iterator[Org]:
    """A lab of its own, for a test that stops, kills or cuts something."""
    with running_lab(tmp_path) as running:
        yield running


@pytest.fixture(scope="module")
def shared_org(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Org]:
    """One lab for the tests that only send mail (each to addresses of its own)."""
    with running_lab(tmp_path_factory.mktemp("shared")) as running:
        yield running


def _tls() -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # the lab's own certificate; TLS is not tested here
    return context


def message(sender: str, to: list[str], subject: str) -> str:
    return (f"From: {sender}\r\nTo: {', '.join(to)}\r\nSubject: {subject}\r\n"
            f"Message-ID: <{subject}@netns.test>\r\n\r\n{subject}\r\n")


def submit(to: list[str], subject: str) -> None:
    """alice on 587 of EX01's Front End (STARTTLS, AUTH LOGIN), with smtplib."""
    with smtplib.SMTP(EX01, 587, local_hostname="client.contoso.com", timeout=30) as client:
        client.starttls(context=_tls())
        client.login("alice@contoso.com", PASSWORD)
        client.sendmail("alice@contoso.com", to, message("alice@contoso.com", to, subject))


def send25(to: list[str], subject: str, sender: str = "carol@fabrikam.example") -> str:
    """Anonymous mail on 25 of EX01's Front End; the final reply's text."""
    with smtplib.SMTP(EX01, 25, local_hostname="mta.fabrikam.example", timeout=30) as client:
        client.ehlo()
        client.mail(sender)
        for rcpt in to:
            code, text = client.rcpt(rcpt)
            assert code == 250, (rcpt, code, text)
        code, text = client.data(message(sender, to, subject))
        if code != 250:
            raise smtplib.SMTPDataError(code, text)
        return text.decode()


def test_a_cut_link_holds_mail_for_ex02_in_a_retry_queue_until_it_is_restored(
        org: Org) -> None:
    """Cut before EX01's hub holds an idle hop session to EX02's 475: on a session kept open
    the hub would notice the cut only when the hop's 30 s reply timeout ends; a new connection
    fails when ARP finds no EX02 (EHOSTUNREACH, about 3 s)."""
    client = org.net.client()
    org.net.cut("ex02")
    client.run(submit, ["bob@contoso.com"], "during-cut")
    # EX01's hub takes it (alice's own server first) and cannot reach EX02's 475: the message
    # waits in the Retry queue for EX02's mailbox database, with the reason.
    seen: list[tuple[dict[str, object], dict[str, object]]] = []

    def held() -> bool:
        messages = org.queued("EX01")
        queues = {q["Identity"]: q for q in org.queues("EX01")}
        seen[:] = [(m, queues[str(m["Queue"])]) for m in messages
                   if m["Status"] == "Retry" and str(m["Queue"]) in queues]
        return bool(seen)
    cut = time.monotonic()
    until(held, 30, "the message in a Retry queue on EX01")
    in_retry = time.monotonic() - cut
    [(msg, queue)] = seen
    print(json.dumps(queue, indent=1))
    assert msg["Subject"] == "during-cut", msg
    assert queue["Status"] == "Retry" and queue["MessageCount"] == 1, queue
    assert queue["DeliveryType"] == "SmtpDeliveryToMailbox", queue
    assert "SocketHostUnreachable" in str(queue["LastError"]), queue
    assert f"{{FQDN=ex02.contoso.com}};{{IP={EX02}}}" in str(queue["LastError"]), queue
    assert org.mailbox("bob@contoso.com") == []

    org.net.restore("ex02")
    restored = time.monotonic()
    until(lambda: len(org.mailbox("bob@contoso.com")) == 1, 40, "delivered after the restore")
    print(f"in a Retry queue {in_retry:.1f}s after the cut; delivered "
          f"{time.monotonic() - restored:.1f}s after the restore")
    client.run(submit, ["bob@contoso.com"], "after-cut")
    until(lambda: len(org.mailbox("bob@contoso.com")) == 2, 20, "the link carries new mail")
    until(lambda: org.queued("EX01") == [], 10, "EX01's queue empties")
    subjects = Counter(re.search(rb"Subject: (\S+)", m)[1]  # type: ignore[index]
                       for m in org.mailbox("bob@contoso.com"))
    assert subjects == {b"during-cut": 1, b"after-cut": 1}


def pending_live(org: Org) -> int:
    """Messages in the running hubs' queues (exchsim queue messages)."""
    return len(org.queued("EX01")) + len(org.queued("EX02"))


def pending(data: Path, server: str) -> int:
    """Messages in a stopped hub's queue file (transport/queue.py), read while no process
    has it open."""
    async def count() -> int:
        queue = await MessageQueue.open(data / "queue" / f"{server}.sqlite")
        try:
            return await queue.pending_count()
        finally:
            await queue.close()
    return asyncio.run(count())


def test_the_front_end_fails_over_to_ex02s_hub_then_answers_prx4_with_every_hub_down(
        org: Org) -> None:
    client = org.net.client()
    assert org.net.stop("ex01-Transport") == 0  # EX01's hub down
    # alice's mailbox is on EX01, so EX01's hub comes first; it refuses the connection, and
    # EX01's Front End hands the message to EX02's hub, which delivers to EX01's 475.
    client.run(send25, ["alice@contoso.com"], "via-ex02")
    until(lambda: len(org.mailbox("alice@contoso.com")) == 1, 20, "alice gets it via EX02")
    delivered = org.mailbox("alice@contoso.com")[0].decode().replace("\r\n ", " ")
    assert f"from ex01.contoso.com ({EX01}) by ex02.contoso.com ({EX02})" in delivered
    assert f"from ex02.contoso.com ({EX02}) by ex01.contoso.com ({EX01_MBX})" in delivered

    assert org.net.stop("ex02") == 0  # every hub down
    with pytest.raises(smtplib.SMTPDataError) as refused:
        client.run(send25, ["alice@contoso.com"], "no-hub")
    assert (refused.value.smtp_code, refused.value.smtp_error.decode()) == (
        451, "4.7.0 Temporary server error. Please try again later. PRX4")
    time.sleep(1.0)
    # Nobody kept it: the client still has it, as a 4xx tells it.
    assert len(org.mailbox("alice@contoso.com")) == 1
    assert pending(org.data, "EX01") == 0 and pending(org.data, "EX02") == 0

    org.net.start("ex01-Transport")  # the client's retry, once a hub is back
    client.run(send25, ["alice@contoso.com"], "no-hub")
    until(lambda: len(org.mailbox("alice@contoso.com")) == 2, 20, "the retry is delivered")
    subjects = Counter(re.search(rb"Subject: (\S+)", m)[1]  # type: ignore[index]
                       for m in org.mailbox("alice@contoso.com"))
    assert subjects == {b"via-ex02": 1, b"no-hub": 1}


LOAD = 500
SENDER = "sender@fabrikam.example"
TOKEN = re.compile(rb"load-\d{4}")


@dataclass
class Sent:
    token: str
    acked: bool  # a 250 after the data, for every recipient
    attempts: int  # connections it took (a real MTA sends again after a 4xx or a lost session)


class Load:
    """LOAD messages from the client's namespace, a new connection for each, to EX01's
    Front End on 25. Each goes to alice (EX01), bob (EX02) and an unknown address of
    contoso.com (the hub sends the sender an NDR: the internet sink); half name bob first, so
    the Front End tries EX02's hub first for them and EX01's for the others."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.acked = 0

    def send(self, number: int) -> Sent:
        token = f"load-{number:04d}"
        to = ["alice@contoso.com", "bob@contoso.com"]
        if number % 2:
            to.reverse()
        to.append("nobody@contoso.com")
        for attempt in range(1, 6):
            try:
                send25(to, token, SENDER)
            except (smtplib.SMTPException, OSError):
                time.sleep(0.2)
                continue
            with self.lock:
                self.acked += 1
            return Sent(token, True, attempt)
        return Sent(token, False, 5)


def census(folder: Path) -> Counter[str]:
    """How many files of a Maildir hold each load token."""
    found: Counter[str] = Counter()
    for path in ((folder / "new").iterdir() if (folder / "new").exists() else ()):
        found.update({t.decode() for t in TOKEN.findall(path.read_bytes())})
    return found


def duplicate_deliveries(data: Path) -> int:
    """DUPLICATEDELIVER events of the Mailbox Transport Delivery tracking logs: copies a hub
    delivered again that the mailbox recognised (by Message-ID) and dropped."""
    return sum(p.read_text(errors="replace").count(",DUPLICATEDELIVER,")
               for p in (data / "logs").glob("*/MessageTracking/MSGTRKMD*.LOG"))


def test_kill_9_of_ex01s_hub_under_load_loses_nothing_acknowledged(org: Org) -> None:
    """kill -9 of EX01's Transport service (the hub) after 150 of 500 messages were
    acknowledged, restarted after 300: every message that got a 250 is in alice's and bob's
    mailboxes (once each) and its NDR in the sink; the duplicates are counted, printed and
    bounded (below)."""
    load = Load()
    client = org.net.client(workers=4)
    began = time.monotonic()
    futures = [client.pool.submit(load.send, n) for n in range(LOAD)]
    until(lambda: load.acked >= 150, 40, "150 messages acknowledged")
    org.net.kill9("ex01-Transport")
    killed_at = load.acked
    held = pending(org.data, "EX01")  # committed by the killed hub, not yet delivered
    until(lambda: load.acked >= 300, 40, "300 messages acknowledged")
    org.net.start("ex01-Transport")
    restarted_at = load.acked
    sent = [f.result(timeout=60) for f in futures]
    loaded = time.monotonic() - began
    acked = {s.token for s in sent if s.acked}
    resent = sum(s.attempts - 1 for s in sent)  # connections after the first

    where = {"alice": org.data / "mailboxes" / "alice@contoso.com",
             "bob": org.data / "mailboxes" / "bob@contoso.com",
             "NDR (sink)": org.data / "internet" / SENDER}

    def lost() -> dict[str, int]:
        return {name: len(acked - set(census(folder))) for name, folder in where.items()}
    until(lambda: not any(lost().values()) and pending_live(org) == 0, 40, "the queues drain")
    time.sleep(1.5)  # a late second copy (RetryInterval is 1 s) would show up now
    counts = {name: census(folder) for name, folder in where.items()}
    duplicated = {name: sum(1 for c in found.values() if c > 1) for name, found in counts.items()}
    dropped = duplicate_deliveries(org.data)
    report = (
        f"{LOAD} messages in {loaded:.1f}s from the client's namespace, {len(acked)} "
        f"acknowledged, {resent} sent again (a 4xx or a lost session); EX01's hub killed "
        f"at {killed_at} acknowledged with {held} messages in its queue, restarted at "
        f"{restarted_at}; lost {lost()}; files with a message twice {duplicated}; copies "
        f"delivered again and dropped by the mailbox (DUPLICATEDELIVER) {dropped}")
    print(report)
    assert len(acked) == LOAD, report  # 5 attempts each: the Front End always found a hub
    assert not any(lost().values()), report
    # Duplicates, and their bounds:
    # - a mailbox never holds a message twice: a copy delivered again is recognised by its
    #   Message-ID and dropped (DUPLICATEDELIVER, transport/mailbox.py);
    # - such copies come only from a message the killed hub held (it may have delivered it
    #   and died before recording it) or one the client sent again (its first attempt may
    #   have been committed before the reply was lost): at most 2 (alice, bob) per message;
    # - the sink may hold two NDRs for one message, only for a message sent again: each commit
    #   is a message of its own in the organization, whose NDR's Message-ID comes from its own
    #   Network-Message-Id (transport/ndr.py), so the sink cannot tell them apart; an NDR sent
    #   again by the restarted hub has the same Message-ID and is dropped.
    assert duplicated["alice"] == duplicated["bob"] == 0, report
    assert duplicated["NDR (sink)"] <= resent, report
    assert dropped <= 2 * (held + resent), report


def test_internet_mail_at_edge01_lands_in_bobs_maildir_on_ex02(shared_org: Org) -> None:
    """swaks from the client to EDGE01:25; EdgeSync - Inbound to Default-First-Site-Name takes
    it to a Mailbox server's Default Frontend, whose hub delivers to EX02's 475."""
    org = shared_org
    done = org.net.command(
        "client", "swaks", "--hide-informational", "--server", f"{EDGE01}:25",
        "--helo", "mta.fabrikam.example", "--from", "carol@fabrikam.example",
        "--to", "bob@contoso.com", "--header", "Subject: from-the-internet")
    assert done.returncode == 0, done.stdout + done.stderr
    assert re.search(r"<-  250 2\.6\.0 .* Hostname=edge01\.contoso\.com\] .* Queued mail for "
                     r"delivery", done.stdout), done.stdout
    until(lambda: len(org.mailbox("bob@contoso.com")) == 1, 20, "bob gets it")
    delivered = org.mailbox("bob@contoso.com")[0].decode().replace("\r\n ", " ")
    assert "Subject: from-the-internet" in delivered
    client = HOSTS["client"]
    assert f"from mta.fabrikam.example ({client}) by edge01.contoso.com ({EDGE01})" in delivered
    # Direct Trust to a Mailbox server's Default Frontend (EX01's at .11 or EX02's at .21).
    assert re.search(rf"from edge01\.contoso\.com \({re.escape(EDGE01)}\) by "
                     rf"ex0[12]\.contoso\.com \(({re.escape(EX01)}|{re.escape(EX02)})\) "
                     r"[^;]*via Frontend Transport;", delivered), delivered
    assert re.search(rf"by ex02\.contoso\.com \({re.escape(EX02)}\) [^;]*via Mailbox Transport;",
                     delivered), delivered
    assert "X-MS-Exchange-Organization-" in delivered  # stamped inside the organization


def test_alice_mails_the_internet_through_edge01_without_organization_headers(
        shared_org: Org) -> None:
    """alice on 587 of EX01's Front End to user@fabrikam.example: EX01's hub relays to
    EDGE01:25, whose EdgeSync - Default-First-Site-Name to Internet finds the sink by MX."""
    org = shared_org
    org.net.client().run(submit, ["user@fabrikam.example"], "to-the-internet")
    until(lambda: len(org.internet("user@fabrikam.example")) == 1, 20, "the sink gets it")
    raw = org.internet("user@fabrikam.example")[0]
    parsed = email.message_from_bytes(raw, policy=email.policy.compat32)
    assert parsed["Subject"] == "to-the-internet"
    received = " ".join(str(v) for v in parsed.get_all("Received", []))
    received = re.sub(r"\s+", " ", received)
    # client -> EX01's Front End -> EX01's hub -> EDGE01 -> the sink
    assert f"from ex01.contoso.com ({EX01_HUB}) by edge01.contoso.com ({EDGE01})" in received, (
        received)
    assert f"from ex01.contoso.com ({EX01}) by ex01.contoso.com ({EX01_HUB})" in received, (
        received)
    organization = [k for k, _ in parsed.items()
                    if k.lower().startswith("x-ms-exchange-organization-")]
    assert organization == [], organization
    until(lambda: pending_live(org) == 0, 10, "every queue empty")


KILLED_RUN = """
import subprocess, sys
from pathlib import Path
from tests.integration.netns import NetLab
lab = NetLab({"a": "198.51.100.77", "b": "198.51.100.78"}, Path(sys.argv[1]))
lab.build()
subprocess.Popen(["ip", "netns", "exec", lab.ns("a"), "sleep", "60"], start_new_session=True)
print(lab.run, flush=True)
sys.stdin.read()
"""


def test_namespaces_left_by_a_killed_run_are_removed_by_the_next(tmp_path: Path) -> None:
    """A test process killed with SIGKILL leaves its namespaces and what runs in them: the
    next run kills those processes and deletes the namespaces (netns.remove_stale); a live
    run's namespaces are left alone."""
    killed = subprocess.Popen([sys.executable, "-c", KILLED_RUN, str(tmp_path)], cwd=ROOT,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    live = f"{FAMILY}-{os.getpid()}-abc123-host"
    try:
        assert killed.stdout is not None
        run = killed.stdout.readline().strip()
        assert run.startswith(f"{FAMILY}-{killed.pid}-"), run
        left = sorted(n for n in namespaces() if n.startswith(run))
        assert left == [f"{run}-a", f"{run}-b", f"{run}-sw"]
        orphans = [int(p) for p in ip("netns", "pids", f"{run}-a").split()]
        assert orphans
        killed.kill()
        killed.wait(timeout=10)
        ip("netns", "add", live)
        assert sorted(remove_stale()) == left
        assert not [n for n in namespaces() if n.startswith(run)]
        assert live in namespaces()
        until(lambda: not any(alive(p) for p in orphans), 10, "the orphans are gone")
    finally:
        killed.kill()
        killed.wait(timeout=10)
        ip("netns", "del", live, check=False)


@pytest.mark.parametrize("hosts", [
    {"a": "192.0.2.5"}, {"a": "203.0.113.5"}, {"a": "127.0.10.5"}, {"a": "198.51.100.1"},
    {"a": "198.51.100.255"}, {"a": "not-an-address"}, {"sw": "198.51.100.77"},
    {"ex01-fe": "198.51.100.77"}, {"Ex01": "198.51.100.77"}, {"a" * 14: "198.51.100.77"},
], ids=["test-net-1", "test-net-3", "loopback", "gateway", "broadcast", "text", "switch",
        "dash", "upper", "long"])
def test_the_harness_refuses_a_host_outside_the_plan_before_it_makes_anything(
        tmp_path: Path, hosts: dict[str, str]) -> None:
    """Only 198.51.100.0/24 (not .1, the gateway), and host names the next run's
    remove_stale can find again: nothing is made otherwise."""
    lab = NetLab(hosts, tmp_path)
    try:
        with pytest.raises(ValueError):
            lab.build()
        assert not [n for n in namespaces() if n.startswith(lab.run)]
    finally:
        lab.close()
