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
  service, the Outbound Proxy Frontend, an Edge's or a Mailbox server's port 25 over Direct
  Trust) that could not be connected to: Exchange 2016's queue form ``{LED=451 4.4.397 Error
  communicating with target host. -> 421 4.2.1 Unable to connect -> SocketTimedout: Socket
  error code 10060};{MSG=};{FQDN=<host>};{IP=<address>};`` (:func:`hop_unreachable`).
- The same hop failing **after the TCP connect**: the same form, the part after ``->`` saying
  what went wrong (:func:`hop_failed`, exchange.md §8.5):

  ==================================================  =======================================
  what happened                                       the text after ``Error communicating
                                                      with target host. ->``
  ==================================================  =======================================
  the peer answered with an error (greeting, EHLO,    its reply, on one line (``454 4.7.0 ...``,
  X-ANONYMOUSTLS, X-EXPS EXCHANGEAUTH, XSESSION-      ``535 5.7.3 Authentication
  PARAMS, XPROXYTO, MAIL/RCPT/BDAT with a 4xx)        unsuccessful``)
  X-ANONYMOUSTLS not offered, no ``tls-unique``       ``451 5.7.3 Cannot achieve Exchange
                                                      Server authentication``
  no internal transport certificate on this server   ``451 5.7.3 Cannot load Internal Transport
                                                      Certificate. Exchange Server
                                                      authentication failed.``
                                                      (exchange.md §2.2)
  the TLS handshake failed                            ``421 4.2.1 Unable to connect -> TLS
                                                      negotiation failed with error <name>``
                                                      (Schannel's name, policy/schannel.py)
  the peer closed or reset the connection, or sent    ``421 4.4.2 Connection dropped due to
  what is not an SMTP reply                           SocketError``
  no reply within the hop's timeout                   ``421 4.4.1 Connection timed out``
  ==================================================  =======================================

  The sources: Exchange 2007/2010 quote ``451 5.7.3 Cannot achieve Exchange Server
  authentication`` in an intra-organization queue's LastError when the other server does not
  take X-EXPS (support.microsoft.com KB 979175); a failed TLS negotiation shows in the queue as
  ``421 4.2.1 Unable to connect`` (supertekboy.com, 2016, with ``TLS negotiation failed with
  error NoCredentials`` in the send log) or ``421 4.4.1 Connection timed out`` (KB 4051498);
  ``421 4.4.2 Connection dropped due to SocketError`` is the dropped connection's text
  (hayesjupe.com). Which of them Exchange 2016 puts after ``->`` for these hops is not
  published; the table is exchsim's choice, in the one form its queues already use, with the
  Schannel name added after a TLS failure so the queue says why.

Winsock numbers are Windows' (WSAECONNREFUSED 10061, WSAETIMEDOUT 10060, WSAEHOSTUNREACH 10065,
WSAENETUNREACH 10051, WSAECONNRESET 10054, WSAEADDRNOTAVAIL 10049); the names are .NET's
SocketError names (``SocketError``, -1, for any other), except ``Timedout``, written as the
public sample writes it. Where the sources show one error only, the others follow the same
pattern (exchsim's choice, exchange.md §8.5).
"""

from __future__ import annotations

import errno

__all__ = ["CONNECTION_DROPPED", "CONNECTION_TIMED_OUT", "EXCHANGE_AUTH_FAILED",
           "NO_TRANSPORT_CERTIFICATE", "UNABLE_TO_CONNECT", "Winsock", "connection_failed",
           "failover", "hop_failed", "hop_unreachable", "one_line", "tls_failed",
           "unable_to_connect", "winsock"]

CONNECTION_DROPPED = "421 4.4.2 Connection dropped due to SocketError"
CONNECTION_TIMED_OUT = "421 4.4.1 Connection timed out"
EXCHANGE_AUTH_FAILED = "451 5.7.3 Cannot achieve Exchange Server authentication"
NO_TRANSPORT_CERTIFICATE = ("451 5.7.3 Cannot load Internal Transport Certificate. Exchange "
                            "Server authentication failed.")
UNABLE_TO_CONNECT = "421 4.2.1 Unable to connect"
HOP_ERROR = "451 4.4.397 Error communicating with target host."
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


def unable_to_connect(error: Winsock) -> str:
    """What follows ``->`` for a hop whose TCP connection could not be made."""
    return f"{UNABLE_TO_CONNECT} -> Socket{error.name}: Socket error code {error.code}"


def tls_failed(schannel_name: str) -> str:
    """What follows ``->`` for a hop whose TLS handshake failed (module docstring)."""
    return f"{UNABLE_TO_CONNECT} -> TLS negotiation failed with error {schannel_name}"


def one_line(reply: str) -> str:
    """A reply as the queue quotes it: one line, at most 300 characters."""
    return " ".join(reply.split())[:300]


def hop_failed(what: str, fqdn: str, address: str) -> str:
    """An intra-organization hop that failed: Exchange 2016's queue form with ``what`` (one of
    the texts of the module docstring's table) after ``->``."""
    return f"{{LED={HOP_ERROR} -> {one_line(what)}}};{{MSG=}};{{FQDN={fqdn}}};{{IP={address}}};"


def hop_unreachable(error: Winsock, fqdn: str, address: str) -> str:
    """An intra-organization hop that could not be connected to (Exchange 2016's form)."""
    return hop_failed(unable_to_connect(error), fqdn, address)
