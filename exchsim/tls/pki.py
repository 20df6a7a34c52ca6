"""The lab PKI: each server's self-signed transport certificate, and certificate selection.

Exchange setup creates one self-signed certificate per server (exchange.md §1.6, §4.5, §12.4).
exchsim makes the same certificate with ``cryptography`` (no openssl CLI), field by field as the
published one of a 2019 server:

* key: RSA 2048, public exponent 65537;
* subject and issuer ``CN=<server_name>``, SAN dNSName ``<server_name>`` and ``<fqdn>``;
* serial number: 16 random bytes (the first one 0x01-0x7F, so the DER integer is 16 bytes);
* validity: from the moment of creation, to the second, to the same date and time five years
  later (29 February becomes 28 February);
* keyUsage digitalSignature + keyEncipherment (critical), EKU serverAuth only, basicConstraints
  CA:FALSE (critical), no subject or authority key identifier;
* signature sha256WithRSAEncryption. The published sample is sha1WithRSAEncryption; exchsim
  signs with SHA-256 because OpenSSL 3 refuses SHA-1 certificate signatures at its default
  security level (clients such as ``openssl s_client`` and Python's ``ssl`` would then fail to
  verify the certificate even when told to trust it), and a scanner would flag it.

serverAuth alone is enough for X-ANONYMOUSTLS, where the same certificate is the TLS *client*
certificate: the receiving side (:mod:`exchsim.tls.judged`) accepts any certificate in the
handshake and checks it afterwards against the published ones (:mod:`exchsim.tls.directtrust`),
and the sending side does not verify the server's. A certificate that is not RSA (the ECDSA ones
earlier versions made) is replaced on the next start.

Files are ``<pki_dir>/servers/<server_name>.crt`` (PEM, 0644) and ``.key`` (PKCS#8 PEM, 0600),
each written atomically (temporary file in the same directory, fsync, ``os.replace``). The key is
written first, so a crash between the two writes leaves a key that does not match the
certificate, which the next call detects and repairs by regenerating. A certificate is made under
the lab PKI's exclusive ``flock`` on ``<pki_dir>/.lock`` (checked again once the lock is held), so
processes starting at once on one data directory make it once and all use that one.

Names are shown the way Exchange shows them: DNs most-specific RDN first, joined by ``", "``
(``CN=mail.contoso.com, O=Contoso, C=US``), with Windows attribute names ``S`` (state) and ``E``
(e-mail); thumbprint = SHA-1 of the DER, upper-case hex; serial number in upper-case hex bytes.
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import hashlib
import os
import secrets
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

VALIDITY_YEARS = 5
RSA_BITS = 2048
KEY_FILE_MODE = 0o600
CERT_FILE_MODE = 0o644

# Windows/Exchange spell these attribute types differently from RFC 4514.
_WINDOWS_ATTR_NAMES = {
    NameOID.STATE_OR_PROVINCE_NAME: "S",
    NameOID.EMAIL_ADDRESS: "E",
}
_ATTR_ALIASES = {"ST": "S", "EMAIL": "E", "EMAILADDRESS": "E"}


@dataclass(frozen=True, slots=True)
class CertificateFiles:
    """A certificate with its private key on disk, plus the fields Exchange shows for it."""

    cert_path: Path
    key_path: Path
    subject: str  # Exchange order, e.g. "CN=EX01"
    issuer: str  # "CN=EX01" for self-signed
    thumbprint: str  # SHA-1 of the DER, upper-case hex, 40 characters
    serial: str  # upper-case hex
    not_before: datetime.datetime  # aware, UTC
    not_after: datetime.datetime  # aware, UTC
    dns_names: tuple[str, ...]
    key_bits: int = 0  # the public key's size (RSA modulus bits)

    def load_der(self) -> bytes:
        """The certificate (the first one in ``cert_path``) as DER."""
        cert = x509.load_pem_x509_certificate(self.cert_path.read_bytes())
        return cert.public_bytes(serialization.Encoding.DER)

    @property
    def self_signed(self) -> bool:
        """Issuer DN equals subject DN (how Exchange tells self-signed from CA-issued)."""
        return dn_equal(self.issuer, self.subject)

    def valid_at(self, when: datetime.datetime) -> bool:
        return self.not_before <= when < self.not_after


# --- loading -------------------------------------------------------------------------------


def format_dn(name: x509.Name) -> str:
    """A DN the way Exchange prints it: most specific RDN first, ``", "`` between RDNs."""
    return ", ".join(rdn.rfc4514_string(_WINDOWS_ATTR_NAMES) for rdn in reversed(name.rdns))


def _serial_hex(serial: int) -> str:
    text = f"{serial:X}"
    return text if len(text) % 2 == 0 else "0" + text


def _dns_names(cert: x509.Certificate) -> tuple[str, ...]:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return ()
    return tuple(san.value.get_values_for_type(x509.DNSName))


def _describe(cert: x509.Certificate, cert_path: Path, key_path: Path) -> CertificateFiles:
    der = cert.public_bytes(serialization.Encoding.DER)
    return CertificateFiles(
        cert_path=cert_path,
        key_path=key_path,
        subject=format_dn(cert.subject),
        issuer=format_dn(cert.issuer),
        thumbprint=hashlib.sha1(der).hexdigest().upper(),
        serial=_serial_hex(cert.serial_number),
        not_before=cert.not_valid_before_utc,
        not_after=cert.not_valid_after_utc,
        dns_names=_dns_names(cert),
        key_bits=getattr(cert.public_key(), "key_size", 0),
    )


def _key_matches(cert: x509.Certificate, key_pem: bytes) -> bool:
    try:
        key = serialization.load_pem_private_key(key_pem, password=None)
    except (ValueError, TypeError):
        return False
    public_format = serialization.PublicFormat.SubjectPublicKeyInfo
    return key.public_key().public_bytes(
        serialization.Encoding.DER, public_format
    ) == cert.public_key().public_bytes(serialization.Encoding.DER, public_format)


def load_certificate_files(cert_path: Path, key_path: Path) -> CertificateFiles:
    """Describe an existing PEM certificate (first one in the file = the leaf) and its key.

    Raises ``ValueError`` when either file does not parse or the key does not belong to the
    certificate, and ``OSError`` when a file cannot be read.
    """
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    if not _key_matches(cert, key_path.read_bytes()):
        raise ValueError(f"{key_path} is not the private key of {cert_path}")
    return _describe(cert, cert_path, key_path)


# --- the server certificate ---------------------------------------------------------------


def _wanted_names(server_name: str, fqdn: str) -> tuple[str, ...]:
    names = [server_name]
    if fqdn.casefold() != server_name.casefold():
        names.append(fqdn)
    return tuple(names)


def _reusable(
    cert_path: Path, key_path: Path, server_name: str, fqdn: str, now: datetime.datetime
) -> CertificateFiles | None:
    try:
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        key_pem = key_path.read_bytes()
    except (OSError, ValueError):
        return None
    if not _key_matches(cert, key_pem):
        return None
    files = _describe(cert, cert_path, key_path)
    wanted = {n.casefold() for n in _wanted_names(server_name, fqdn)}
    if {n.casefold() for n in files.dns_names} != wanted:
        return None
    if _normalise_dn(files.subject) != _normalise_dn(f"CN={_escape_value(server_name)}"):
        return None
    if not files.valid_at(now):
        return None
    if not isinstance(cert.public_key(), rsa.RSAPublicKey):
        return None  # an ECDSA certificate of an earlier exchsim: replaced by a setup-style one
    return files


def atomic_write(path: Path, data: bytes, mode: int) -> None:
    """Write ``path`` whole or not at all: temporary file in the same directory, fsync, rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as fh:
            os.fchmod(fh.fileno(), mode)
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def _escape_value(value: str) -> str:
    return x509.NameAttribute(NameOID.COMMON_NAME, value).rfc4514_string().partition("=")[2]


def ensure_server_certificate(
    pki_dir: Path, server_name: str, fqdn: str, now: datetime.datetime
) -> CertificateFiles:
    """The server's self-signed transport certificate, created on first use.

    An existing certificate is reused when its key matches, its subject is ``CN=<server_name>``,
    its SAN names are exactly ``server_name`` and ``fqdn`` (case-insensitive) and ``now`` is
    inside its validity; otherwise a new key and certificate replace it. ``now`` must be
    timezone-aware.
    """
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("now must be timezone-aware")
    if not server_name or not fqdn:
        raise ValueError("server_name and fqdn must not be empty")
    if server_name in {".", ".."} or any(c in server_name for c in "/\\\0"):
        raise ValueError(f"server name {server_name!r} cannot be a file name")
    now = now.astimezone(datetime.UTC)
    directory = pki_dir / "servers"
    cert_path = directory / f"{server_name}.crt"
    key_path = directory / f"{server_name}.key"
    existing = _reusable(cert_path, key_path, server_name, fqdn, now)
    if existing is not None:
        if key_path.stat().st_mode & 0o777 != KEY_FILE_MODE:
            key_path.chmod(KEY_FILE_MODE)
        return existing

    directory.mkdir(parents=True, exist_ok=True)
    with pki_lock(pki_dir):
        # Another process (a service of the same data directory) may have made it meanwhile.
        existing = _reusable(cert_path, key_path, server_name, fqdn, now)
        if existing is not None:
            return existing
        key = rsa.generate_private_key(public_exponent=65537, key_size=RSA_BITS)
        cert = _setup_certificate(key, server_name, fqdn, now)
        key_pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        atomic_write(key_path, key_pem, KEY_FILE_MODE)
        atomic_write(cert_path, cert.public_bytes(serialization.Encoding.PEM), CERT_FILE_MODE)
        return _describe(cert, cert_path, key_path)


@contextlib.contextmanager
def pki_lock(pki_dir: Path) -> Iterator[None]:
    """Hold the lab PKI's exclusive ``flock`` (``DATA/pki/.lock``) for one read-modify-write:
    the lab CA's files (tls/labca.py), the certificate store, and the making of a server
    certificate, which processes starting at once on one data directory (the services of a
    server, the servers of a lab) would otherwise each write, one pairing the key of one with
    the certificate of another."""
    pki_dir.mkdir(parents=True, exist_ok=True)
    with (pki_dir / ".lock").open("a") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def _five_years_later(when: datetime.datetime) -> datetime.datetime:
    try:
        return when.replace(year=when.year + VALIDITY_YEARS)
    except ValueError:  # 29 February
        return when.replace(year=when.year + VALIDITY_YEARS, day=28)


def _setup_serial() -> int:
    raw = bytes([secrets.randbelow(0x7F) + 1]) + secrets.token_bytes(15)
    return int.from_bytes(raw, "big")


def _setup_certificate(key: rsa.RSAPrivateKey, server_name: str, fqdn: str,
                       now: datetime.datetime) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, server_name)])
    not_before = now.replace(microsecond=0)
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(_setup_serial())
        .not_valid_before(not_before)
        .not_valid_after(_five_years_later(not_before))
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=True,
                data_encipherment=False, key_agreement=False, key_cert_sign=False,
                crl_sign=False, encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName(n) for n in _wanted_names(server_name, fqdn)]),
            critical=False,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]),
                       critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )


# --- TlsCertificateName and distinguished names -------------------------------------------


def _split_dn(value: str) -> list[str]:
    """Split a DN at RDN separators (``,`` or ``;``), honouring ``\\`` escapes and quotes."""
    parts: list[str] = []
    current: list[str] = []
    quoted = False
    escaped = False
    for ch in value:
        if escaped:
            current.append(ch)
            escaped = False
        elif ch == "\\":
            current.append(ch)
            escaped = True
        elif ch == '"':
            current.append(ch)
            quoted = not quoted
        elif ch in ",;" and not quoted:
            parts.append("".join(current))
            current = []
        else:
            current.append(ch)
    if quoted or escaped:
        raise ValueError(f"unterminated quote or escape in DN {value!r}")
    parts.append("".join(current))
    return parts


def _unescape(value: str) -> str:
    value = value.strip()
    if len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1].replace('\\"', '"')
    out: list[str] = []
    chars = iter(value)
    for ch in chars:
        out.append(next(chars, "") if ch == "\\" else ch)
    return "".join(out)


def parse_dn(value: str) -> tuple[tuple[str, str], ...]:
    """``"CN=a, O=b"`` -> ``(("CN", "a"), ("O", "b"))``; types upper-cased, values unescaped.

    Raises ``ValueError`` for an empty DN or a component without ``type=value``.
    """
    components: list[tuple[str, str]] = []
    for part in _split_dn(value):
        attr, sep, raw = part.partition("=")
        attr = attr.strip().upper()
        if not sep or not attr:
            raise ValueError(f"invalid DN component {part.strip()!r} in {value!r}")
        components.append((_ATTR_ALIASES.get(attr, attr), _unescape(raw)))
    if not components:
        raise ValueError("empty DN")
    return tuple(components)


def _normalise_dn(value: str) -> tuple[tuple[str, str], ...] | None:
    """Comparison key: case-insensitive, blanks around separators ignored; None if invalid."""
    try:
        return tuple((attr, val.casefold()) for attr, val in parse_dn(value))
    except ValueError:
        return None


def dn_equal(a: str, b: str) -> bool:
    """Compare two DNs the way exchsim matches TlsCertificateName (order-sensitive)."""
    na = _normalise_dn(a)
    return na is not None and na == _normalise_dn(b)


def parse_tls_certificate_name(value: str) -> tuple[str | None, str]:
    """``"<I>CN=Fabrikam CA, DC=fabrikam, DC=com<S>CN=mail.contoso.com"`` -> (issuer, subject).

    The ``<I>`` part is optional (issuer None); ``<S>`` is required and its DN must contain a
    CN. Tags are case-insensitive; the DNs are returned stripped but otherwise as written.
    Raises ``ValueError`` for anything else.
    """
    text = value.strip()
    upper = text.upper()
    s_at = upper.find("<S>")
    if s_at < 0:
        raise ValueError(f"TlsCertificateName {value!r} has no <S>subject part")
    if upper.find("<S>", s_at + 3) >= 0:
        raise ValueError(f"TlsCertificateName {value!r} has more than one <S> part")
    issuer: str | None = None
    head = text[:s_at].strip()
    if head:
        if not head.upper().startswith("<I>") or "<I>" in head[3:].upper():
            raise ValueError(f"TlsCertificateName {value!r}: expected <I>issuer<S>subject")
        issuer = head[3:].strip()
        if not issuer:
            raise ValueError(f"TlsCertificateName {value!r} has an empty <I> part")
        parse_dn(issuer)
    subject = text[s_at + 3 :].strip()
    if "<I>" in subject.upper():
        raise ValueError(f"TlsCertificateName {value!r}: <I> must come before <S>")
    if not subject:
        raise ValueError(f"TlsCertificateName {value!r} has an empty <S> part")
    if not any(attr == "CN" for attr, _ in parse_dn(subject)):
        raise ValueError(f"TlsCertificateName {value!r}: the subject must contain a CN")
    return issuer, subject


def matches_tls_certificate_name(cert: CertificateFiles, tls_certificate_name: str) -> bool:
    """Whether ``cert`` is the certificate a connector's TlsCertificateName names.

    An invalid TlsCertificateName matches nothing (validate it with
    :func:`parse_tls_certificate_name` when loading the config).
    """
    try:
        issuer, subject = parse_tls_certificate_name(tls_certificate_name)
    except ValueError:
        return False
    if not dn_equal(subject, cert.subject):
        return False
    return issuer is None or dn_equal(issuer, cert.issuer)


# --- selection (exchange.md §4.5) ------------------------------------------------------------


def _common_names(cert: CertificateFiles) -> list[str]:
    try:
        return [val for attr, val in parse_dn(cert.subject) if attr == "CN"]
    except ValueError:
        return []


def name_matches_fqdn(name: str, fqdn: str) -> bool:
    """Exact (case-insensitive) match, or ``*.rest`` covering exactly one leading label."""
    name = name.strip().rstrip(".").casefold()
    fqdn = fqdn.strip().rstrip(".").casefold()
    if not name or not fqdn:
        return False
    if name.startswith("*."):
        label, dot, rest = fqdn.partition(".")
        return bool(label) and bool(dot) and rest == name[2:] and "*" not in rest
    return "*" not in name and name == fqdn


def certificate_matches_fqdn(cert: CertificateFiles, fqdn: str) -> bool:
    return any(name_matches_fqdn(n, fqdn) for n in (*cert.dns_names, *_common_names(cert)))


def select_certificate(
    candidates: Sequence[CertificateFiles],
    fqdn: str,
    tls_certificate_name: str | None,
    *,
    now: datetime.datetime | None = None,
) -> CertificateFiles | None:
    """The certificate a connector uses for STARTTLS (exchange.md §4.5), or None (no STARTTLS).

    With ``tls_certificate_name`` set: a certificate whose subject (and issuer, when given)
    match it. Otherwise: a certificate whose SAN dNSName or subject CN matches ``fqdn``
    (exactly, or a wildcard covering one label), CA-issued preferred over self-signed, then
    the newest ``not_before``. When ``now`` is given, certificates not valid at ``now`` are
    skipped (an expired certificate makes STARTTLS disappear, exchange.md §1.6).
    """
    pool = [c for c in candidates if now is None or c.valid_at(now)]
    if tls_certificate_name is not None and tls_certificate_name.strip():
        named = [c for c in pool if matches_tls_certificate_name(c, tls_certificate_name)]
        return max(named, key=lambda c: c.not_before, default=None)
    matching = [c for c in pool if certificate_matches_fqdn(c, fqdn)]
    return max(matching, key=lambda c: (not c.self_signed, c.not_before), default=None)
