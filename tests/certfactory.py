"""Real certificates and CRLs for the Domain Security tests, made with cryptography.

A root CA, an intermediate, leaves with any name, dates, EKU and CRL distribution point, and
CRLs signed by the intermediate. RSA 2048 keys are made once per process and shared (a key
costs tens of milliseconds; the certificates differ in what they say, not in their keys).
"""

from __future__ import annotations

import asyncio
import datetime
import functools
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

T0 = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)
DAY = datetime.timedelta(days=1)


@functools.cache
def _key(slot: int) -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


@dataclass(frozen=True)
class Issued:
    cert: x509.Certificate
    key: rsa.RSAPrivateKey

    @property
    def der(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.DER)

    @property
    def pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    @property
    def key_pem(self) -> bytes:
        return self.key.private_bytes(serialization.Encoding.PEM,
                                      serialization.PrivateFormat.TraditionalOpenSSL,
                                      serialization.NoEncryption())


def make_ca(cn: str, *, issuer: Issued | None = None, slot: int = 0,
            not_before: datetime.datetime = T0 - 365 * DAY,
            not_after: datetime.datetime = T0 + 3650 * DAY,
            crl_url: str | None = None) -> Issued:
    key = _key(slot)
    builder = (x509.CertificateBuilder()
               .subject_name(_name(cn))
               .issuer_name(issuer.cert.subject if issuer else _name(cn))
               .public_key(key.public_key())
               .serial_number(x509.random_serial_number())
               .not_valid_before(not_before).not_valid_after(not_after)
               .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
               .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False,
                                            key_encipherment=False, data_encipherment=False,
                                            key_agreement=False, key_cert_sign=True,
                                            crl_sign=True, encipher_only=False,
                                            decipher_only=False), critical=True))
    if crl_url:
        builder = builder.add_extension(_cdp(crl_url), critical=False)
    signer = issuer.key if issuer else key
    return Issued(builder.sign(signer, hashes.SHA256()), key)


def _cdp(url: str) -> x509.CRLDistributionPoints:
    return x509.CRLDistributionPoints([x509.DistributionPoint(
        full_name=[x509.UniformResourceIdentifier(url)], relative_name=None, reasons=None,
        crl_issuer=None)])


def make_leaf(issuer: Issued | None, cn: str, *, sans: Sequence[str] | None = None,
              not_before: datetime.datetime = T0 - 30 * DAY,
              not_after: datetime.datetime = T0 + 365 * DAY,
              eku: Sequence[x509.ObjectIdentifier] | None = (
                  ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH),
              crl_url: str | None = None, slot: int = 5) -> Issued:
    """A leaf issued by ``issuer`` (self-signed when None)."""
    key = _key(slot)
    builder = (x509.CertificateBuilder()
               .subject_name(_name(cn))
               .issuer_name(issuer.cert.subject if issuer else _name(cn))
               .public_key(key.public_key())
               .serial_number(x509.random_serial_number())
               .not_valid_before(not_before).not_valid_after(not_after)
               .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
               .add_extension(x509.SubjectAlternativeName(
                   [x509.DNSName(n) for n in (sans if sans is not None else [cn])]),
                   critical=False))
    if eku is not None:
        builder = builder.add_extension(x509.ExtendedKeyUsage(list(eku)), critical=False)
    if crl_url:
        builder = builder.add_extension(_cdp(crl_url), critical=False)
    return Issued(builder.sign(issuer.key if issuer else key, hashes.SHA256()), key)


def make_crl(issuer: Issued, revoked: Sequence[Issued] = (), *,
             last_update: datetime.datetime = T0 - DAY,
             next_update: datetime.datetime = T0 + 30 * DAY) -> bytes:
    builder = (x509.CertificateRevocationListBuilder()
               .issuer_name(issuer.cert.subject)
               .last_update(last_update).next_update(next_update))
    for item in revoked:
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder().serial_number(item.cert.serial_number)
            .revocation_date(last_update).build())
    return builder.sign(issuer.key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)


@dataclass(frozen=True)
class LabPki:
    """A root, an intermediate whose CRL is at ``crl_url``, and the root's CRL at ``root_crl``."""

    root: Issued
    intermediate: Issued
    crl_url: str
    root_crl_url: str

    def leaf(self, cn: str, **kwargs: object) -> Issued:
        kwargs.setdefault("crl_url", self.crl_url)
        return make_leaf(self.intermediate, cn, **kwargs)  # type: ignore[arg-type]

    def chain(self, leaf: Issued) -> list[bytes]:
        return [leaf.der, self.intermediate.der]

    def crls(self, revoked: Sequence[Issued] = (), **kwargs: datetime.datetime
             ) -> dict[str, bytes | None]:
        return {self.crl_url: make_crl(self.intermediate, revoked, **kwargs),
                self.root_crl_url: make_crl(self.root, **kwargs)}

    def current_crls(self, revoked: Sequence[Issued] = ()) -> dict[str, bytes | None]:
        """CRLs current at the real time, for a running lab (it judges with its wall clock)."""
        real = datetime.datetime.now(datetime.UTC)
        return self.crls(revoked, last_update=real - DAY, next_update=real + 30 * DAY)

    def leaf_now(self, cn: str, **kwargs: object) -> Issued:
        """A leaf valid around the real time."""
        real = datetime.datetime.now(datetime.UTC)
        kwargs.setdefault("not_before", real - DAY)
        kwargs.setdefault("not_after", real + 30 * DAY)
        return self.leaf(cn, **kwargs)

    def write_client(self, leaf: Issued, directory: Path, name: str) -> tuple[Path, Path]:
        """``name.pem`` (leaf then intermediate) and ``name.key``, as swaks and openssl take them."""
        cert = directory / f"{name}.pem"
        key = directory / f"{name}.key"
        cert.write_bytes(leaf.pem + self.intermediate.pem)
        key.write_bytes(leaf.key_pem)
        return cert, key


def lab_pki(base_url: str = "http://127.0.0.1:1/crl") -> LabPki:
    root = make_ca("Exchsim Test Root CA", slot=0)
    intermediate = make_ca("Exchsim Test Issuing CA", issuer=root, slot=1,
                           crl_url=f"{base_url}/root.crl")
    return LabPki(root, intermediate, f"{base_url}/issuing.crl", f"{base_url}/root.crl")


# --- CRL distribution points on loopback -------------------------------------------------------

@asynccontextmanager
async def http_server(bodies: dict[str, bytes]) -> AsyncIterator[int]:
    """A loopback HTTP/1.0 server answering GET <path> with bodies[path] (404 otherwise)."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        request = await reader.readuntil(b"\r\n\r\n")
        path = request.split(b" ")[1].decode()
        body = bodies.get(path)
        head = b"HTTP/1.0 200 OK" if body is not None else b"HTTP/1.0 404 Not Found"
        body = body or b""
        writer.write(head + b"\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    async with server:
        yield server.sockets[0].getsockname()[1]


@asynccontextmanager
async def black_hole() -> AsyncIterator[int]:
    """Accepts connections and never says a word."""
    held: list[asyncio.StreamWriter] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    async with server:
        yield server.sockets[0].getsockname()[1]
        for writer in held:
            writer.close()
