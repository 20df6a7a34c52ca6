"""Certificates and real loopback TLS handshakes for the exchsim.tls tests."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import ssl
from dataclasses import dataclass
from pathlib import Path

import trustme

from exchsim.tls.pki import CertificateFiles, load_certificate_files

LOOPBACK = "127.0.0.1"
TIMEOUT = 10.0


def issue(
    ca: trustme.CA,
    directory: Path,
    stem: str,
    *names: str,
    common_name: str | None = None,
    not_before: datetime.datetime | None = None,
    not_after: datetime.datetime | None = None,
) -> CertificateFiles:
    """A CA-issued leaf (serverAuth + clientAuth) written to ``directory/stem.crt|.key``."""
    leaf = ca.issue_cert(
        *names,
        common_name=common_name,
        organization_name="Contoso",
        organization_unit_name="Messaging",
        not_before=not_before,
        not_after=not_after,
    )
    directory.mkdir(parents=True, exist_ok=True)
    cert_path = directory / f"{stem}.crt"
    key_path = directory / f"{stem}.key"
    cert_path.write_bytes(b"".join(blob.bytes() for blob in leaf.cert_chain_pems))
    key_path.write_bytes(leaf.private_key_pem.bytes())
    return load_certificate_files(cert_path, key_path)


@dataclass(slots=True)
class Side:
    """What one end of a handshake saw."""

    error: BaseException | None = None
    peer_der: bytes | None = None
    tls_unique: bytes | None = None
    version: str | None = None
    chain: tuple[bytes, ...] = ()  # the peer's presented chain (judged server side only)
    cipher: str | None = None


@dataclass(slots=True)
class Handshake:
    server: Side
    client: Side


def _record(side: Side, writer: asyncio.StreamWriter) -> None:
    ssl_object: ssl.SSLObject | None = writer.get_extra_info("ssl_object")
    assert ssl_object is not None
    side.peer_der = ssl_object.getpeercert(binary_form=True)
    side.tls_unique = ssl_object.get_channel_binding("tls-unique")
    side.version = ssl_object.version()
    cipher = ssl_object.cipher()
    side.cipher = cipher[0] if cipher else None
    peer_chain = getattr(ssl_object, "peer_chain_der", None)
    if peer_chain is not None:
        side.chain = peer_chain()


async def _close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(OSError, ssl.SSLError, TimeoutError):
        await asyncio.wait_for(writer.wait_closed(), TIMEOUT)


async def handshake(
    server_ctx: ssl.SSLContext,
    client_ctx: ssl.SSLContext,
    server_hostname: str | None = None,
) -> Handshake:
    """Connect over 127.0.0.1 in plain text, then upgrade both ends with ``start_tls``.

    Like STARTTLS/X-ANONYMOUSTLS: the server upgrades the accepted connection with
    ``StreamWriter.start_tls(server_ctx)``, the client with ``start_tls(client_ctx)``.
    Returns what each side saw; errors are recorded, not raised.
    """
    server_side = Side()
    server_done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            try:
                await asyncio.wait_for(writer.start_tls(server_ctx), TIMEOUT)
            except (OSError, ssl.SSLError, TimeoutError) as exc:
                server_side.error = exc
            else:
                _record(server_side, writer)
            if not server_done.done():
                server_done.set_result(None)
            if server_side.error is None:
                with contextlib.suppress(OSError, ssl.SSLError, TimeoutError):
                    await asyncio.wait_for(reader.read(), TIMEOUT)  # until the client closes
        finally:
            if not server_done.done():
                server_done.set_result(None)
            await _close(writer)

    server = await asyncio.start_server(on_connect, LOOPBACK, 0)
    client_side = Side()
    try:
        port = server.sockets[0].getsockname()[1]
        _reader, writer = await asyncio.open_connection(LOOPBACK, port)
        try:
            await asyncio.wait_for(
                writer.start_tls(client_ctx, server_hostname=server_hostname), TIMEOUT
            )
        except (OSError, ssl.SSLError, TimeoutError) as exc:
            client_side.error = exc
        else:
            _record(client_side, writer)
        await asyncio.wait_for(server_done, TIMEOUT)
        await _close(writer)
    finally:
        server.close()
        await server.wait_closed()
    return Handshake(server_side, client_side)
