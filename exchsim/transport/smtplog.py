"""An aiosmtplib client's session in the send protocol log (exchange.md §6.1).

aiosmtplib has no logging hook of its own, so :func:`watch` wraps the two methods of the
connection's ``SMTPProtocol`` that every exchange passes through: ``write`` (each command line,
whether it comes from ``mail``, ``rcpt``, ``data``, ``starttls``, ``auth_*`` or
``execute_command``) and ``read_response`` (each reply). The message data written after a
``354`` is not logged, nor is the reply to QUIT (as in the public send logs). AUTH's secrets
are hidden by :class:`~exchsim.logs.sendlog.SendLogSession`.

Use::

    log = send_log.session(connector_name, host, port, connector.protocol_logging_level)
    if log is not None:
        log.attempting()
    banner = await smtp.connect()
    if log is not None:
        watch(smtp, log, banner)
    ...                                  # smtp.starttls(): then log_tls(smtp, log)
    log.disconnect("Local")              # however the session ends (written once)
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

import aiosmtplib

from exchsim.logs.sendlog import SendLogSession, endpoint

__all__ = ["ConnectorLog", "log_tls", "render", "watch"]


def render(response: aiosmtplib.SMTPResponse) -> str:
    """A response as its wire lines, LF-joined (``250-a\\n250 b``)."""
    lines = response.message.split("\n") if response.message else [""]
    code = response.code
    return "\n".join([*(f"{code}-{line}" for line in lines[:-1]), f"{code} {lines[-1]}"])


def watch(smtp: aiosmtplib.SMTP, log: SendLogSession,
          banner: aiosmtplib.SMTPResponse) -> None:
    """Log a connected client's session from here on: ``+``, the banner, then every line."""
    sockname = smtp.get_transport_info("sockname")
    log.connected(endpoint(sockname[0], sockname[1]) if sockname else "")
    log.received(render(banner))
    protocol = smtp.protocol
    assert protocol is not None
    write: Callable[[bytes], None] = protocol.write
    read: Callable[..., Coroutine[Any, Any, aiosmtplib.SMTPResponse]] = protocol.read_response
    state = {"data": False, "quit": False}

    def logged_write(data: bytes) -> None:
        if state["data"]:  # the message itself, after 354
            state["data"] = False
        else:
            for raw in data.split(b"\r\n"):
                if not raw:
                    continue
                line = raw.decode("utf-8", "replace")
                if log.in_auth:
                    log.sent_redacted()
                else:
                    log.sent(line)
                state["quit"] = line.upper() == "QUIT"
        write(data)

    async def logged_read(timeout: float | None = None  # noqa: ASYNC109 (aiosmtplib's signature)
                          ) -> aiosmtplib.SMTPResponse:
        response = await read(timeout=timeout)
        if not state["quit"]:
            log.received(render(response))
        state["data"] = response.code == 354
        return response

    protocol.write = logged_write  # type: ignore[method-assign]
    protocol.read_response = logged_read  # type: ignore[method-assign]


def log_tls(smtp: aiosmtplib.SMTP, log: SendLogSession, *, presented: bool) -> None:
    """The TLS lines after ``smtp.starttls()`` (or a connection made with TLS)."""
    ssl_object = smtp.get_transport_info("ssl_object")
    if ssl_object is None:
        return
    cipher = ssl_object.cipher()
    log.tls_established(ssl_object.version(), cipher[0] if cipher else None, None,
                        ssl_object.getpeercert(binary_form=True), presented=presented)


class ConnectorLog:
    """transport/smtpsend.py's ``SendLog`` written to a :class:`SendLogSession`: a send
    connector's session under the connector's name (exchange.md §6.1)."""

    def __init__(self, session: SendLogSession) -> None:
        self.session = session
        self._connected = False
        session.attempting()

    def watch(self, smtp: aiosmtplib.SMTP, banner: aiosmtplib.SMTPResponse) -> None:
        """Connected: the client's session is logged line by line from here on (:func:`watch`)."""
        self._connected = True
        watch(smtp, self.session, banner)

    def info(self, text: str) -> None:
        self.session.info("", text)

    def tls_established(self, protocol: str | None, cipher: str | None, peer_der: bytes | None,
                        local_der: bytes | None) -> None:
        self.session.tls_established(protocol, cipher, None, peer_der,
                                     presented=local_der is not None, local_der=local_der)

    def sending_message(self, record_id: int, message_id: str) -> None:
        self.session.sending_message(record_id, message_id)

    def closed(self, reason: str) -> None:
        """The ``-`` line, once a connection stood (``Remote (why)`` is written ``Remote``);
        a connection never made leaves its ``attempting to connect`` and failure lines."""
        if self._connected:
            self.session.disconnect("Remote" if reason.startswith("Remote") else reason)
