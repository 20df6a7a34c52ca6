"""Load a lab config: YAML -> raw mappings -> connectors resolved -> validated ``Lab``.

The file has these top-level keys, in Exchange's spelling: ``Organization``, ``Servers``,
``ReceiveConnectors``, ``ADPermissions`` and (optional) ``Lab``, ``SendConnectors`` and ``Dns``
(the lab's resolver). Loading runs, in order:

1. ``yamlfile.parse_yaml``: the text as plain data, then ``--hosts`` (``hosts.apply_hosts``);
2. ``validate.validate_servers`` and ``validate.validate_organization``;
3. ``resolve.resolve_connectors``: setup's connectors per server plus the file's overrides and
   new connectors (a pure function);
4. ``validate.validate_connector`` on each, then ``validate.check_conflicts`` between them,
   and (once the partners are loaded) each server's ``ExchsimProxyProtocol`` against them
   (``validate/proxy.py``);
5. ``validate.validate_permissions`` and ``validate.validate_lab``;
6. ``validate_dns``, ``validate_edge_subscriptions`` (``validate/edgesync.py``) and
   ``validate_send_connectors`` (``validate/sendconnector.py``) on the file's send connectors
   with the Edge subscriptions' merged in (``edgesync.py``);
7. the configs ``Lab.Partners`` names (other organizations the lab runs beside its own), each
   loaded the same way from its own file, relative to this one, then ``validate_partners``
   (no partner of a partner; server names and addresses unique across all of them).

Every problem of the whole file is collected as an ``Issue`` (file, key path, value, what is
allowed, a did-you-mean suggestion) in one ``IssueLog`` and raised together in one
``ConfigError``, in the order of the file's sections (``issues.py``). An object with a bad
value is still checked by the rules that do not read that value (the cascade rule of
``issues.py``). Nothing starts from a file with an issue.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from exchsim.config.edgesync import edgesync_raw_connectors, merge_send_connectors
from exchsim.config.hosts import Hosts, apply_hosts
from exchsim.config.implied import implied_internet_connector
from exchsim.config.issues import (
    TOP_LEVEL_KEYS,
    ConfigError,
    Issue,
    IssueLog,
    did_you_mean,
    place,
    show,
)
from exchsim.config.labnet import lab_hosts
from exchsim.config.model import Lab, LabSettings, Mailbox, Organization, ReceiveConnector
from exchsim.config.prose import validate
from exchsim.config.resolve import resolve_connectors
from exchsim.config.validate import (
    NETBIOS,
    Placed,
    check_conflicts,
    valid_items,
    validate_connector,
    validate_lab,
    validate_organization,
    validate_permissions,
    validate_servers,
)
from exchsim.config.validate.edgesync import validate_edge_subscriptions
from exchsim.config.validate.lab import validate_partners
from exchsim.config.validate.proxy import validate_proxy_protocol
from exchsim.config.validate.sendconnector import validate_dns, validate_send_connectors
from exchsim.config.vocabulary import EXTENDED_RIGHTS
from exchsim.config.yamlfile import parse_yaml

__all__ = [
    "EXTENDED_RIGHTS",
    "TOP_LEVEL_KEYS",
    "ConfigError",
    "Issue",
    "load_config",
    "load_config_text",
]


def load_config(path: Path | str, hosts: Hosts | None = None) -> Lab:
    """Read and resolve a config file; raise ``ConfigError`` listing every problem.
    ``hosts``: a hosts file (``--hosts``, config/hosts.py) applied to it and its partners."""
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError([Issue(source, "", source, "file not found")]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([Issue(source, "", source, f"cannot read the file: {exc}")]) from None
    return load_config_text(text, source, hosts=hosts)


def _load_partners(settings: LabSettings, base: Path, log: IssueLog,
                   hosts: Hosts | None) -> list[Lab]:
    """The organizations of ``Lab.Partners``; their files' issues join this file's."""
    partners: list[Lab] = []
    for index, entry in enumerate(settings.partners):
        path = base / entry.config
        key = f"Lab.Partners[{index}].Config"
        if not path.is_file():
            log.add(key, entry.config, f"{show(entry.config)} is not allowed: no such file "
                    f"({path}); expected the config file of another organization, relative "
                    "to this file", order=place("Lab"))
            continue
        try:
            partners.append(load_config(path, hosts))
        except ConfigError as err:
            log.items.extend(dataclasses.replace(i, order=place("Lab")) for i in err.issues)
    return partners


def load_config_text(text: str, source: str = "<memory>", base: Path | None = None,
                     hosts: Hosts | None = None) -> Lab:
    """Parse and resolve a config given as text; ``source`` names it in issues. ``base``: where
    the files of ``Lab.Partners`` are (default: ``source``'s directory). ``hosts``: applied to
    the parsed YAML before anything is validated (config/hosts.py)."""
    if hosts is None:
        return _load_text(text, source, base, None)
    with lab_hosts(hosts.targets()):  # the hosts' addresses are the lab's (config/labnet.py)
        lab = _load_text(text, source, base, hosts)
    return lab.model_copy(update={"hosts": hosts.targets()})


def _load_text(text: str, source: str, base: Path | None, hosts: Hosts | None) -> Lab:
    log = IssueLog(source)
    data = parse_yaml(text, log)
    if hosts is not None and data is not None:
        data = apply_hosts(data, hosts)
    if log.items and data is None:
        raise ConfigError(log.items)
    if not isinstance(data, dict):
        what = "the file is empty" if data is None else f"{show(data)} is not allowed"
        keys = ", ".join(TOP_LEVEL_KEYS)
        log.add("", data, f"{what}: expected a mapping with the keys {keys}")
        raise ConfigError(log.items)

    for key in data:
        if key not in TOP_LEVEL_KEYS:
            log.add(
                str(key),
                key,
                f"unknown top-level key '{key}': expected one of {', '.join(TOP_LEVEL_KEYS)}",
                did_you_mean(key, TOP_LEVEL_KEYS),
            )
    for key in ("Organization", "Servers"):
        if key not in data:
            log.add(key, None, f"required section {key} is missing", order=place(key))

    servers = validate_servers(data["Servers"], log) if "Servers" in data else []
    valid_servers = [server for _, server in servers]
    organization: Organization | None = None
    netbios: str | None = None
    if "Organization" in data:
        organization, netbios = validate_organization(data["Organization"], valid_servers, log)
    if netbios is None:
        log.fail(*NETBIOS)

    resolution = resolve_connectors(valid_servers, data.get("ReceiveConnectors"))
    log.report(resolution.findings)
    for orphan in resolution.orphans:
        validate(ReceiveConnector, orphan.raw, orphan.prefix(), log,
                 order=place("ReceiveConnectors", orphan.index))
    connectors: list[Placed] = []
    for spec in resolution.specs:
        connector = validate_connector(spec.raw, spec.server, log, index=spec.index,
                                       given=spec.given)
        if connector is not None:
            connectors.append((connector, spec.index))
    check_conflicts(connectors, log)

    identities = dict(resolution.identities)
    for connector, _ in connectors:
        identities[(connector.server.lower(), connector.name.lower())] = connector.identity
    mailboxes: list[Mailbox] = list(organization.mailboxes) if organization else []
    raw_org = data.get("Organization")
    if organization is None and isinstance(raw_org, dict):
        mailboxes = [m for _, m in valid_items(raw_org.get("Mailboxes"), Mailbox)]
    permissions = validate_permissions(
        data.get("ADPermissions"), identities.values(), mailboxes, netbios, log
    )
    settings = validate_lab(data.get("Lab"), servers, log)
    dns = validate_dns(data.get("Dns"), log)
    subscriptions = validate_edge_subscriptions(data.get("EdgeSubscriptions"), valid_servers,
                                                log)
    # The EdgeSync connectors, changed by SendConnectors entries of their names (edgesync.py).
    edgesync = edgesync_raw_connectors(subscriptions)
    send_connectors = validate_send_connectors(
        merge_send_connectors(data.get("SendConnectors"), edgesync), valid_servers, dns, log)
    internet_by_edge = any(s.create_internet_send_connector for s in subscriptions)
    if "SendConnectors" not in data and settings is not None and not internet_by_edge:
        # No SendConnectors key: exchsim's implied connector to the internet sink (implied.py).
        sink = settings.internet_sink
        send_connectors.append(implied_internet_connector(str(sink.address), sink.port))
    partners: list[Lab] = []
    if settings is not None and settings.partners:
        partners = _load_partners(settings, Path(source).parent if base is None else base, log,
                                  hosts)
        validate_partners(valid_servers, settings, partners, log)
    validate_proxy_protocol(servers, [connector for connector, _ in connectors], log,
                            partners=[(p.source, s) for p in partners for s in p.servers])

    if log.items or organization is None or settings is None or dns is None:
        raise ConfigError(log.in_file_order())
    return Lab(
        organization=organization,
        servers=tuple(valid_servers),
        receive_connectors=tuple(connector for connector, _ in connectors),
        ad_permissions=tuple(permissions),
        lab=settings,
        send_connectors=tuple(send_connectors),
        dns=dns,
        partners=tuple(partners),
        edge_subscriptions=tuple(subscriptions),
        source=source,
    )
