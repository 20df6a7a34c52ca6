"""``exchsim pki ...``: the lab PKI from the command line (README "Lab PKI").

issue, revoke and crl act on the lab CA (exchsim/tls/labca.py, exchsim/tls/issued.py), made
by the first command that needs it, with its CRL distribution point at the config's
``Lab.CrlServer`` (plus ``--port-offset``) when the config file exists, else at the default
``http://127.0.10.251:80``. get, enable and import act on a server's certificate store
(exchsim/tls/certstore.py): they read the config for its servers. ``--hosts FILE`` (as for
``exchsim lab``, ``serve``, ``sink``; config/hosts.py) moves the config's addresses, so a lab CA
made here points at the CRL server's host, as the one ``exchsim sink --hosts`` makes would; with
no config file, the default CRL address is moved by the hosts file too.

Exit status: 0 done; 1 the PKI refused (an unknown name to revoke, an unknown thumbprint, a
file that cannot be written), with one ``exchsim:`` line on stderr; 2 a wrong command line or
config.
"""

from __future__ import annotations

import argparse
import datetime
import os
import sys
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from exchsim.clock import SYSTEM_CLOCK
from exchsim.config.hosts import Hosts, load_hosts, translate
from exchsim.config.load import ConfigError, load_config
from exchsim.config.model import Lab, LabSettings, Server
from exchsim.config.report import format_issues
from exchsim.tls.certstore import (
    StoreEntry,
    by_domain_name,
    enable,
    import_certificate,
    parse_services,
    services_flags,
    services_text,
    store_entries,
)
from exchsim.tls.issued import issue_certificate, revoke, write_out
from exchsim.tls.labca import (
    CRL_VALIDITY,
    LabCa,
    PkiError,
    crl_base_url,
    ensure_lab_ca,
    load_crl,
    publish_crls,
)
from exchsim.tls.pki import ensure_server_certificate

DEFAULT_CONFIG = "configs/lab.yaml"
PRIVATE_UMASK = 0o077

COMMANDS = {
    "issue": "issue a certificate from the lab CA (or the untrusted CA)",
    "revoke": "revoke a lab-issued certificate and publish the CRL",
    "crl": "publish a new CRL for every lab CA",
    "ca": "print the lab root CA's file (the CA file for swaks, openssl, Python)",
    "get": "list a server's certificates, like Get-ExchangeCertificate",
    "enable": "enable a certificate for a server's services, like Enable-ExchangeCertificate",
    "import": "import a PEM certificate and key into a server, like Import-ExchangeCertificate",
}
EPILOG = ("Exit status: 0 done; 1 the lab PKI refused (one line on stderr says why); "
          "2 a wrong command line or config.")


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``exchsim pki`` and its commands, on the main parser's subparsers."""
    pki = sub.add_parser("pki", help="the lab PKI: issue, revoke, CRLs, server certificates",
                         description="The lab PKI: a root CA and an issuing CA under DATA/pki/, "
                                     "their CRLs, and each server's certificates.",
                         epilog=EPILOG)
    cmds = pki.add_subparsers(dest="pki_command", required=True, metavar="PKI_COMMAND")
    for name, text in COMMANDS.items():
        p = cmds.add_parser(name, help=text, description=text[0].upper() + text[1:] + ".",
                            epilog=EPILOG)
        p.add_argument("--data", default="data", metavar="DIR",
                       help="the lab's data directory (default: ./%(default)s)")
        p.add_argument("--config", default=None, metavar="FILE",
                       help=f"the lab's YAML config (default: {DEFAULT_CONFIG}; for issue, "
                            "revoke, crl and ca only if it exists)")
        p.add_argument("--port-offset", type=int, default=0, metavar="N",
                       help="the --port-offset the lab runs with: a new lab CA points its CRL "
                            "distribution points at Lab.CrlServer's port plus N")
        p.add_argument("--hosts", metavar="FILE",
                       help="the hosts file the lab runs with (configs/compose-hosts.yaml): a "
                            "new lab CA points its CRL distribution points at the CRL "
                            "server's host")
        _add_options(name, p)


def _add_options(name: str, p: argparse.ArgumentParser) -> None:
    if name == "issue":
        p.add_argument("--name", required=True, help="the host name: subject CN and SAN")
        p.add_argument("--out", default=".", metavar="OUTDIR",
                       help="where NAME.pem and NAME.key go (default: the current directory)")
        dates = p.add_mutually_exclusive_group()
        dates.add_argument("--expired", action="store_true",
                           help="ended a day ago")
        dates.add_argument("--not-yet-valid", action="store_true",
                           help="starts in a day")
        p.add_argument("--no-server-auth", action="store_true",
                       help="EKU clientAuth only (no serverAuth)")
        p.add_argument("--untrusted", action="store_true",
                       help="issued by a CA that no lab server trusts")
        p.add_argument("--dns-name", action="append", default=[], metavar="NAME",
                       help="a SAN dNSName instead of --name (repeat for more): a certificate "
                            "whose names do not fit the domain it is used for")
        p.add_argument("--days", type=int, default=None, metavar="N",
                       help="validity in days (default: 365)")
    elif name == "revoke":
        which = p.add_mutually_exclusive_group(required=True)
        which.add_argument("--name", help="revoke every unrevoked certificate of this name")
        which.add_argument("--serial", help="revoke the certificate of this serial (hex)")
        p.add_argument("--reason", default=None,
                       help="CRL reason, e.g. keyCompromise, superseded, cessationOfOperation")
    elif name in ("get", "enable", "import"):
        p.add_argument("--server", required=name != "get", metavar="NAME",
                       help="the server, by Name as in the config's Servers"
                            + (" (default: every server)" if name == "get" else ""))
        if name == "get":
            p.add_argument("--thumbprint", default=None, help="only this certificate")
            p.add_argument("--domain-name", default=None, metavar="FQDN",
                           help="only the certificates naming FQDN, the one STARTTLS selects "
                                "for a connector with that Fqdn first (as -DomainName)")
            p.add_argument("--format", choices=("table", "list"), default="table",
                           help="table (the cmdlet's default view) or list (| Format-List)")
        if name == "enable":
            p.add_argument("--thumbprint", required=True,
                           help="the certificate, as pki issue or pki get printed it")
        if name == "import":
            p.add_argument("--cert", required=True, type=Path, metavar="PEM",
                           help="the certificate (its chain may follow in the same file)")
            p.add_argument("--key", required=True, type=Path, metavar="KEY",
                           help="its private key (PEM, not encrypted)")
        if name != "get":
            p.add_argument("--services", required=name == "enable", default="None",
                           help="IMAP, POP, IIS, SMTP or None, comma-separated "
                                "(only SMTP changes what the lab does)")


# --- running -----------------------------------------------------------------------------


class _Usage(Exception):
    """A wrong command line or config: exit status 2, message already printed or given."""


def run(args: argparse.Namespace) -> int:
    os.umask(PRIVATE_UMASK)  # DATA/pki is the lab's, as every file the daemon writes
    try:
        return _COMMANDS[args.pki_command](args)
    except _Usage as exc:
        if str(exc):
            print(f"exchsim: {exc}", file=sys.stderr)
        return 2
    except PkiError as exc:
        print(f"exchsim: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        where = f" {exc.filename}" if exc.filename else ""
        print(f"exchsim: cannot write{where}: {exc.strerror or exc}", file=sys.stderr)
        return 1


def _hosts(args: argparse.Namespace) -> Hosts | None:
    try:
        return load_hosts(args.hosts) if args.hosts is not None else None
    except ConfigError as err:
        print(format_issues(err), file=sys.stderr)
        raise _Usage("") from err


def _load(args: argparse.Namespace, *, required: bool) -> Lab | None:
    path = Path(args.config or DEFAULT_CONFIG)
    hosts = _hosts(args)
    if args.config is None and not required and not path.exists():
        return None
    try:
        return load_config(path, hosts)
    except ConfigError as err:
        print(format_issues(err), file=sys.stderr)
        raise _Usage("") from err


def _pki_dir(args: argparse.Namespace) -> Path:
    return Path(args.data) / "pki"


def _lab_ca(args: argparse.Namespace, *, untrusted: bool = False) -> LabCa:
    lab = _load(args, required=False)
    crl = (lab.lab if lab is not None else LabSettings()).crl_server
    address = str(crl.address)
    hosts = _hosts(args) if lab is None else None
    if hosts is not None:  # no config file: the default CRL address, moved as a config's is
        address = translate(address, hosts.addresses)
    base = crl_base_url(address, crl.port + args.port_offset)
    return ensure_lab_ca(_pki_dir(args), SYSTEM_CLOCK.utc(), crl_base_url=base,
                         untrusted=untrusted)


def _when(value: datetime.datetime) -> str:
    return value.astimezone(datetime.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _issue(args: argparse.Namespace) -> int:
    out = Path(args.out)
    lab_ca = _lab_ca(args, untrusted=args.untrusted)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise PkiError(f"cannot write to --out {out}: {exc.strerror or exc}") from exc
    if not os.access(out, os.W_OK | os.X_OK):
        raise PkiError(f"cannot write to --out {out}: permission denied")
    issued = issue_certificate(
        lab_ca, args.name, SYSTEM_CLOCK.utc(), dns_names=args.dns_name, expired=args.expired,
        not_yet_valid=args.not_yet_valid, server_auth=not args.no_server_auth,
        untrusted=args.untrusted, days=args.days)
    pem_path, key_path = write_out(issued, out, args.name)
    files = issued.files
    chain = "the certificate alone: its CA is a root" if args.untrusted else \
        "the certificate, then the issuing CA"
    print(f"issued {files.subject} by {files.issuer}")
    print(f"certificate: {pem_path} ({chain})")
    print(f"key:         {key_path}")
    print(f"thumbprint:  {files.thumbprint}")
    print(f"serial:      {files.serial}")
    print(f"names:       {', '.join(files.dns_names)}")
    print(f"valid:       {_when(files.not_before)} to {_when(files.not_after)}")
    print(f"lab root:    {lab_ca.root_path}")
    return 0


def _revoke(args: argparse.Namespace) -> int:
    lab_ca = _lab_ca(args)
    done = revoke(lab_ca, SYSTEM_CLOCK.utc(), name=args.name, serial=args.serial,
                  reason=args.reason)
    for record in done:
        print(f"revoked {record.subject} serial {record.serial} ({record.ca} CA)")
    for ca_name in sorted({r.ca for r in done if r.ca is not None}):
        _print_crl(lab_ca, ca_name)
    return 0


def _print_crl(lab_ca: LabCa, ca_name: str) -> None:
    path = lab_ca.crl_path(ca_name)
    crl = load_crl(path)
    number = crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
    next_update = crl.next_update_utc
    print(f"published {path} (CRL number {number}, {len(crl)} revoked, next update "
          f"{_when(next_update) if next_update else 'none'}) at {lab_ca.crl_url(ca_name)}")


def _crl(args: argparse.Namespace) -> int:
    lab_ca = _lab_ca(args)
    for ca_name in publish_crls(lab_ca, SYSTEM_CLOCK.utc()):
        _print_crl(lab_ca, ca_name)
    print(f"each CRL is valid {CRL_VALIDITY.days} days; the lab publishes new ones at start "
          "when they are missing or end within a day")
    return 0


def _ca(args: argparse.Namespace) -> int:
    print(_lab_ca(args).root_path)
    return 0


# --- server stores -----------------------------------------------------------------------


def _servers(args: argparse.Namespace) -> tuple[Lab, list[Server]]:
    lab = _load(args, required=True)
    assert lab is not None
    if args.server is None:
        return lab, list(lab.servers)
    for server in lab.servers:
        if server.name.casefold() == args.server.casefold():
            return lab, [server]
    names = ", ".join(s.name for s in lab.servers)
    raise _Usage(f"{lab.source} has no server named {args.server!r}; its servers are: {names}")


def _setup(args: argparse.Namespace, server: Server) -> StoreEntry:
    files = ensure_server_certificate(_pki_dir(args), server.name, server.fqdn,
                                      SYSTEM_CLOCK.utc())
    return StoreEntry(server.name, files, frozenset(), True, None)


def _entries(args: argparse.Namespace, server: Server) -> list[StoreEntry]:
    setup = _setup(args, server).files
    return store_entries(_pki_dir(args), server.name, setup)


def format_table(entries: list[StoreEntry]) -> str:
    """Get-ExchangeCertificate's default view: Thumbprint, Services, Subject."""
    lines = [f"{'Thumbprint':<42}{'Services':<11}Subject",
             f"{'----------':<42}{'--------':<11}-------"]
    lines += [f"{e.files.thumbprint:<42}{services_flags(e.services):<11}{e.files.subject}"
              for e in entries]
    return "\n".join(lines)


def _ps_date(value: datetime.datetime) -> str:
    """A date as PowerShell (en-US) prints it, here in UTC: ``1/17/2025 3:15:33 PM``."""
    value = value.astimezone(datetime.UTC)
    hour = value.hour % 12 or 12
    return (f"{value.month}/{value.day}/{value.year} {hour}:{value.minute:02}:{value.second:02} "
            f"{'AM' if value.hour < 12 else 'PM'}")


def _key_size(entry: StoreEntry) -> int:
    key = x509.load_pem_x509_certificate(entry.files.cert_path.read_bytes()).public_key()
    return key.key_size if isinstance(key, rsa.RSAPublicKey | ec.EllipticCurvePublicKey) else 0


def format_list(entries: list[StoreEntry], now: datetime.datetime, lab_ca: LabCa | None) -> str:
    """``Get-ExchangeCertificate | Format-List``: its properties, in its order."""
    blocks = []
    for e in entries:
        rows = [
            ("CertificateDomains", "{" + ", ".join(e.files.dns_names) + "}"),
            ("HasPrivateKey", "True"),
            ("IsSelfSigned", str(e.files.self_signed)),
            ("Issuer", e.files.issuer),
            ("NotAfter", _ps_date(e.files.not_after)),
            ("NotBefore", _ps_date(e.files.not_before)),
            ("PublicKeySize", str(_key_size(e))),
            ("RootCAType", e.root_ca_type),
            ("SerialNumber", e.files.serial),
            ("Services", services_text(e.services)),
            ("Status", e.status(now, lab_ca)),
            ("Subject", e.files.subject),
            ("Thumbprint", e.files.thumbprint),
        ]
        blocks.append("\n".join(f"{k:<18} : {v}" for k, v in rows))
    return "\n\n".join(blocks)


def _get(args: argparse.Namespace) -> int:
    _, servers = _servers(args)
    lab_ca = _lab_ca(args) if args.format == "list" else None
    now = SYSTEM_CLOCK.utc()
    for i, server in enumerate(servers):
        entries = _entries(args, server)
        if args.thumbprint is not None:
            entries = [e for e in entries
                       if e.files.thumbprint == args.thumbprint.strip().upper()]
            if not entries and args.server is not None:
                raise PkiError(f"{server.name} has no certificate with thumbprint "
                               f"{args.thumbprint}")
        if args.domain_name is not None:
            entries = by_domain_name(entries, args.domain_name, now)
        if args.server is None:
            print(("\n" if i else "") + f"Server: {server.name}\n")
        print(format_table(entries) if args.format == "table"
              else format_list(entries, now, lab_ca))
    return 0


def _enable(args: argparse.Namespace) -> int:
    _, (server,) = _servers(args)
    services = parse_services(args.services)
    entry = enable(_pki_dir(args), server.name, args.thumbprint, services,
                   _setup(args, server).files)
    print(f"{server.name}: {entry.files.thumbprint} {entry.files.subject} is enabled for "
          f"{services_text(entry.services)}")
    if "SMTP" in services:
        print("a running lab selects among its SMTP certificates again within a second")
    return 0


def _import(args: argparse.Namespace) -> int:
    _, (server,) = _servers(args)
    entry = import_certificate(_pki_dir(args), server.name, args.cert, args.key,
                               parse_services(args.services), _setup(args, server).files)
    print(f"{server.name}: imported {entry.files.thumbprint} {entry.files.subject}, enabled "
          f"for {services_text(entry.services)}")
    return 0


_COMMANDS = {"issue": _issue, "revoke": _revoke, "crl": _crl, "ca": _ca, "get": _get,
             "enable": _enable, "import": _import}
