"""docker-compose.yml, configs/lab.yaml and configs/compose-hosts.yaml describe one lab.

No container engine runs here: Debian's docker-compose (v1) reads and resolves the compose file
(``docker-compose config``, what CI's ``config -q`` checks), and the test holds what it prints
against the config the containers run and the hosts file that places them, so the three files
cannot drift apart:

- one container per server of configs/lab.yaml and of its partner organizations, one per
  transport service for a server the hosts file splits (EX01), and one for the lab's own pieces
  (``exchsim sink``: the internet sink and the CRL server);
- each container's command is an exchsim command line (exchsim's own parser) naming a server and
  service of the config it names;
- each container's fixed address is the one the hosts file gives that server or service;
- each published port is the container port plus 10000, and a port the container listens on;
- no two containers write the same file of the shared data volume.
"""

from __future__ import annotations

import fnmatch
import ipaddress
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from exchsim.cli import _parser
from exchsim.config.hosts import Hosts, load_hosts
from exchsim.config.load import load_config
from exchsim.config.model import Lab, Server, TransportRole
from exchsim.services import Service, log_dir, ntlm_users_path, runs, services_of
from exchsim.transport.queuecontrol import control_path
from tests.integration.conftest import ROOT

COMPOSE = ROOT / "docker-compose.yml"
IMAGE_ROOT = "/opt/exchsim"  # the Dockerfile's WORKDIR, where configs/ is copied
VOLUME = "/var/lib/exchsim"
PUBLISHED_OFFSET = 10000
NETWORK = ipaddress.ip_network("198.51.100.0/24")
GATEWAY = "198.51.100.1"


def compose_config() -> dict[str, Any]:
    docker_compose = shutil.which("docker-compose")
    assert docker_compose is not None, "docker-compose is installed by .ci/run (apt)"
    done = subprocess.run([docker_compose, "-f", str(COMPOSE), "config"], cwd=ROOT,
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    resolved = yaml.safe_load(done.stdout)
    assert isinstance(resolved, dict)
    return resolved


@pytest.fixture(scope="module")
def resolved() -> dict[str, Any]:
    return compose_config()


def repo_path(image_path: str) -> Path:
    assert image_path.startswith(f"{IMAGE_ROOT}/"), image_path
    return ROOT / image_path.removeprefix(f"{IMAGE_ROOT}/")


class Container:
    """One service of the resolved compose file, its command parsed as exchsim parses it."""

    def __init__(self, name: str, entry: dict[str, Any]) -> None:
        self.name, self.entry = name, entry
        self.args = _parser().parse_args(entry["command"])
        self.config = repo_path(self.args.config)
        self.hosts = load_hosts(repo_path(self.args.hosts))
        self.lab = load_config(self.config, self.hosts)

    @property
    def address(self) -> str:
        return str(self.entry["networks"]["lab"]["ipv4_address"])

    @property
    def server(self) -> Server | None:
        return None if self.args.command == "sink" else self.lab.server(self.args.server)

    @property
    def service(self) -> Service | None:
        return getattr(self.args, "service", None)


@pytest.fixture(scope="module")
def containers(resolved: dict[str, Any]) -> dict[str, Container]:
    return {name: Container(name, entry) for name, entry in resolved["services"].items()}


def lab_and_hosts() -> tuple[Lab, Hosts]:
    hosts = load_hosts(ROOT / "configs" / "compose-hosts.yaml")
    return load_config(ROOT / "configs" / "lab.yaml", hosts), hosts


def test_compose_file_is_valid_for_debian_docker_compose() -> None:
    done = subprocess.run(["docker-compose", "-f", str(COMPOSE), "config", "-q"], cwd=ROOT,
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr


def test_one_container_per_server_and_per_service_of_a_split_server(
        containers: dict[str, Container]) -> None:
    lab, hosts = lab_and_hosts()
    split = {name.lower() for name in hosts.services}
    expected: set[tuple[str, str | None]] = {("sink", None)}
    for server in [*lab.servers, *(s for p in lab.partners for s in p.servers)]:
        if server.name.lower() in split:
            expected |= {(server.name, s.value) for s in services_of(server)}
        else:
            expected.add((server.name, None))
    seen = [("sink", None) if c.server is None else
            (c.server.name, None if c.service is None else c.service.value)
            for c in containers.values()]
    assert sorted(seen, key=str) == sorted(expected, key=str)
    assert len(seen) == len(set(seen)), "two containers run the same server or service"
    # The lab grows to EX01 (split), EX02, EDGE01, the partner and the sink (issue 11).
    assert {"EX01", "EX02", "EDGE01"} <= {s.name for s in lab.servers}
    assert ("EX01", "FrontEnd") in seen and ("EX01", "Transport") in seen
    assert ("EX01", "MailboxDelivery") in seen


def test_every_command_names_a_server_and_service_of_its_config(
        containers: dict[str, Container]) -> None:
    for name, c in containers.items():
        assert c.args.command in {"sink", "serve"}, name
        assert c.args.data == VOLUME, name
        assert c.args.port_offset == 0, name  # the containers listen on Exchange's own ports
        assert c.config.name in {"lab.yaml", "partner.yaml"}, name
        if c.args.command == "sink":
            assert c.config.name == "lab.yaml"
            continue
        assert c.server is not None
        if c.config.name == "partner.yaml":
            assert c.server.name == "PARTNER01"
        if c.service is not None:
            assert c.service in services_of(c.server), name
        assert {"hostname", "domainname"} <= set(c.entry), name
        assert c.server.fqdn.endswith(f".{c.entry['domainname']}"), name


def test_each_container_has_the_address_the_hosts_file_gives_it(
        resolved: dict[str, Any], containers: dict[str, Container]) -> None:
    lab, hosts = lab_and_hosts()
    raw = yaml.safe_load((ROOT / "configs" / "lab.yaml").read_text(encoding="utf-8"))
    sink, crl = raw["Lab"]["InternetSink"]["Address"], raw["Lab"]["CrlServer"]["Address"]
    addresses = {str(k): v for k, v in hosts.addresses.items()}
    for name, c in containers.items():
        assert ipaddress.ip_address(c.address) in NETWORK, name
        assert c.address != GATEWAY, name
        if c.server is None:  # the sink's container serves the sink and the CRL server
            assert c.address == addresses[sink] == addresses[crl] == \
                c.lab.lab.internet_sink.address == c.lab.lab.crl_server.address
            continue
        if c.service is None:
            assert c.address == c.server.address, name
            continue
        assert c.address == hosts.services[c.server.name][c.service.value], name
        assert c.address == c.server.service_address(c.service.value), name
    assert len({c.address for c in containers.values()}) == len(containers)
    network = resolved["networks"]["lab"]["ipam"]["config"][0]
    assert network == {"subnet": str(NETWORK), "gateway": GATEWAY}
    assert lab.lab.compose_gateway == GATEWAY  # the NAT warning (README, PROXY protocol)


def parse_port(port: str | dict[str, Any]) -> tuple[str | None, int, int]:
    """A resolved ``ports`` entry: ``"127.0.0.1:10025:25/tcp"`` (docker-compose v1 prints one
    with a host address as a string) or a mapping with published and target."""
    if isinstance(port, dict):
        return port.get("host_ip"), int(port["published"]), int(port["target"])
    spec, _, protocol = port.partition("/")
    assert protocol in ("", "tcp"), port
    host_ip, host_port, target = spec.rsplit(":", 2) if spec.count(":") >= 2 else \
        (None, *spec.split(":"))
    return host_ip, int(host_port), int(target)


def test_published_ports_are_the_container_port_plus_10000_of_a_listener(
        containers: dict[str, Container]) -> None:
    published: dict[int, tuple[str, int]] = {}
    for name, c in containers.items():
        for port in c.entry.get("ports", []):
            host_ip, host_port, target = parse_port(port)
            assert host_port - PUBLISHED_OFFSET == target, (name, port)
            assert host_ip == "127.0.0.1", (name, port)  # the host's loopback only
            assert c.server is not None
            bound = {b.port for conn in c.lab.connectors_of(c.server.name)
                     if c.service is None or runs(c.service, conn.transport_role)
                     for b in conn.bindings}
            assert target in bound, (name, port, bound)
            published[host_port] = (name, target)
    # The Internet-facing listeners: EDGE01's 25 and EX01 Front End's Client Frontend 587.
    assert published == {10025: ("edge01", 25), 10587: ("ex01-frontend", 587)}


def test_containers_share_one_volume_and_start_after_the_sink(
        containers: dict[str, Container]) -> None:
    for name, c in containers.items():
        assert c.entry["volumes"] == [{"type": "volume", "source": "exchsim-data",
                                       "target": VOLUME}] or \
            c.entry["volumes"] == [f"exchsim-data:{VOLUME}:rw"], (name, c.entry["volumes"])
        assert c.entry["restart"] == "unless-stopped", name
        if c.server is not None:
            assert c.entry["depends_on"]["sink"] == {"condition": "service_healthy"}, name
    assert containers["ex01-frontend"].entry["depends_on"]["ex01-transport"] == {
        "condition": "service_healthy"}


def written_paths(c: Container) -> set[Path]:
    """What a container's process writes under the data volume that is its own: its queue,
    control socket, NTLM user file, protocol logs, tracking files and Maildirs."""
    data = Path(VOLUME)
    if c.server is None:
        return {data / "internet"}
    server, service = c.server, c.service
    own: set[Path] = {ntlm_users_path(data, server.name, service),
                      log_dir(data, server.name, service) / "ProtocolLog"}
    has = services_of(server) if service is None else (service,)
    if Service.TRANSPORT in has:
        own |= {data / "queue" / f"{server.name}.sqlite", control_path(data, server.name),
                data / "logs" / server.name / "MessageTracking" / "MSGTRK"}
    if Service.MAILBOX_DELIVERY in has:
        own |= {data / "mailboxes" / m.primary_smtp_address for m in c.lab.organization.mailboxes
                if m.server.lower() == server.name.lower()}
        own.add(data / "logs" / server.name / "MessageTracking" / "MSGTRKMD")
    return own


def test_no_two_containers_write_the_same_file(containers: dict[str, Container]) -> None:
    owners: dict[Path, str] = {}
    for name, c in containers.items():
        for path in written_paths(c):
            clash = [other for p, other in owners.items()
                     if p == path or p in path.parents or path in p.parents]
            assert not clash, f"{name} and {clash} both write {path}"
            owners[path] = name
    # Every mailbox of the organization has exactly one writer.
    lab, _ = lab_and_hosts()
    boxes = {p.name for p in owners if p.parent.name == "mailboxes"}
    assert {m.primary_smtp_address for m in lab.organization.mailboxes} <= boxes


def test_the_roles_run_where_the_lab_says(containers: dict[str, Container]) -> None:
    edge = containers["edge01"]
    assert edge.server is not None and edge.server.role.value == "Edge"
    assert any(c.transport_role is TransportRole.EDGE
               for c in edge.lab.connectors_of(edge.server.name))


def dockerignored(path: str, patterns: list[str]) -> bool:
    """Whether the build context leaves ``path`` out (.dockerignore's rules as Docker applies
    them to paths of the context: each pattern against the path and its parent folders, a
    later ``!`` pattern taking a path back)."""
    parts = path.split("/")
    candidates = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
    ignored = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        pattern = pattern.removeprefix("!").strip("/")
        matched = any(fnmatch.fnmatchcase(c, pattern) or
                      (pattern.startswith("**/") and
                       fnmatch.fnmatchcase(c.rsplit("/", 1)[-1], pattern.removeprefix("**/")))
                      for c in candidates)
        if matched:
            ignored = not negate
    return ignored


def test_the_image_builds_from_what_it_needs_and_checks_its_health() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text(encoding="utf-8").splitlines()
    patterns = [line.strip() for line in
                (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
                if line.strip() and not line.startswith("#")]
    assert [line for line in dockerfile if line.startswith("FROM ")] == ["FROM python:3.11-slim"]
    assert 'CMD ["exchsim", "health"]' in next(line for line in dockerfile
                                               if line.startswith("HEALTHCHECK "))
    copied = [word for line in dockerfile if line.startswith("COPY ")
              for word in line.split()[1:-1]]
    assert set(copied) == {"pyproject.toml", "README.md", "exchsim", "configs"}
    tracked = subprocess.run(["git", "ls-files", *copied], cwd=ROOT, capture_output=True,
                             text=True, check=True).stdout.split()
    assert "configs/lab.yaml" in tracked and "configs/compose-hosts.yaml" in tracked
    assert not [path for path in tracked if dockerignored(path, patterns)]
    for unwanted in (".venv/bin/python", "data/queue/EX01.sqlite", ".git/HEAD",
                     "exchsim/__pycache__/cli.cpython-311.pyc", ".pytest_cache/v/x",
                     "tests/integration/test_compose.py", "wt-compose11/exchsim/cli.py"):
        assert dockerignored(unwanted, patterns), unwanted
