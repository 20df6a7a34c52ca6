"""The queue's LastError for a next hop that could not be reached, in Exchange's words
(exchange.md §8.5; Get-Queue / Get-Message LastError, the NDR's "Remote Server returned").

Pure text from facts the transport hands in: the socket error (an ``errno`` value, or a timeout)
mapped to its Winsock number and name, the host and the endpoint.

- A **send connector** destination (transport/smtpsend.py), after every destination failed: the
  first destination's failure in Exchange's failover sentence. A destination that could not be
  connected to: ``441 4.4.1 Error encountered while communicating with primary target IP
  address: "Failed to connect. Winsock error code: 10061, Win32 error code: 10061." Attempted
  failover to alternate host, ...`` (an Exchange 2013 CU12 NDR, exchange.md §12.6); one that
  answered with an error: ``451 4.4.0 Primary target IP address responded with: "<reply>."
  Attempted failover to alternate host, ...`` (Exchange 2010 to 2019 queues and NDRs).
- An **intra-organization hop** (Mailbox Transport Delivery, another server's Transport
  service, the Outbound Proxy Frontend) that could not be connected to: Exchange 2016's queue
  form ``{LED=451 4.4.397 Error communicating with target host. -> 421 4.2.1 Unable to connect
  -> SocketTimedout: Socket error code 10060};{MSG=};{FQDN=<host>};{IP=<address>};``.

Winsock numbers are Windows' (WSAECONNREFUSED 10061, WSAETIMEDOUT 10060, WSAEHOSTUNREACH 10065,
WSAENETUNREACH 10051, WSAECONNRESET 10054, WSAEADDRNOTAVAIL 10049); the names are .NET's
SocketError names (``SocketError``, -1, for any other), except ``Timedout``, written as the
public sample writes it. Where the sources show one error only, the others follow the same
pattern (exchsim's choice, exchange.md §8.5).
"""

from __future__ import annotations

import errno

__all__ = ["CONNECTION_DROPPED", "Winsock", "connection_failed", "failover", "hop_unreachable",
           "winsock"]

CONNECTION_DROPPED = "421 4.4.2 Connection dropped due to SocketError"
FAILOVER = ("Attempted failover to alternate host, but that did not succeed. Either there are "
            "no alternate hosts, or delivery failed to all alternate hosts. The last endpoint "
            "attempted was {endpoint}")


class Winsock:
    """A socket error as Windows numbers and names it."""

    __slots__ = ("code", "name")

    def __init__(self, code: int, name: str) -> None:
        self.code = code
        self.name = name

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Winsock) and (self.code, self.name) == (other.code, other.name)

    def __hash__(self) -> int:
        return hash((self.code, self.name))

    def __repr__(self) -> str:
        return f"Winsock({self.code}, {self.name!r})"


TIMED_OUT = Winsock(10060, "Timedout")
_BY_ERRNO = {
    errno.ECONNREFUSED: Winsock(10061, "ConnectionRefused"),
    errno.ETIMEDOUT: TIMED_OUT,
    errno.EHOSTUNREACH: Winsock(10065, "HostUnreachable"),
    errno.ENETUNREACH: Winsock(10051, "NetworkUnreachable"),
    errno.ECONNRESET: Winsock(10054, "ConnectionReset"),
    errno.EADDRNOTAVAIL: Winsock(10049, "AddressNotAvailable"),
}


def winsock(error: int | None, *, timed_out: bool = False) -> Winsock:
    """The Winsock error of a failed connection: its ``errno`` (None: none known), or a
    connection that did not complete in time; an error without a Windows counterpart here is
    .NET's unspecified ``SocketError`` (-1)."""
    if timed_out:
        return TIMED_OUT
    if error is not None and error in _BY_ERRNO:
        return _BY_ERRNO[error]
    return Winsock(-1, "SocketError")


def connection_failed(error: Winsock) -> str:
    """The inner text for a destination that could not be connected to."""
    return f"Failed to connect. Winsock error code: {error.code}, Win32 error code: {error.code}."


def failover(first: str, last_endpoint: str, *, connect_failure: bool) -> str:
    """Every destination of a send connector failed; ``first`` is the first one's failure (a
    reply, or :func:`connection_failed`'s text when ``connect_failure``)."""
    first = first.rstrip(".")
    tail = FAILOVER.format(endpoint=last_endpoint)
    if connect_failure:
        return ("441 4.4.1 Error encountered while communicating with primary target IP "
                f'address: "{first}." {tail}')
    return f'451 4.4.0 Primary target IP address responded with: "{first}." {tail}'


def hop_unreachable(error: Winsock, fqdn: str, address: str) -> str:
    """An intra-organization hop that could not be connected to (Exchange 2016's form)."""
    return ("{LED=451 4.4.397 Error communicating with target host. -> 421 4.2.1 Unable to "
            f"connect -> Socket{error.name}: Socket error code {error.code}}};{{MSG=}};"
            f"{{FQDN={fqdn}}};{{IP={address}}};")
