"""policy/lasterror.py: Exchange's LastError texts for next hops that cannot be reached."""

from __future__ import annotations

import errno

from exchsim.policy import lasterror


def test_socket_errors_are_named_as_windows_names_them() -> None:
    assert lasterror.winsock(errno.ECONNREFUSED) == lasterror.Winsock(10061, "ConnectionRefused")
    assert lasterror.winsock(None, timed_out=True) == lasterror.Winsock(10060, "Timedout")
    assert lasterror.winsock(errno.ETIMEDOUT) == lasterror.Winsock(10060, "Timedout")
    assert lasterror.winsock(errno.EHOSTUNREACH).code == 10065
    assert lasterror.winsock(errno.ENETUNREACH).code == 10051
    assert lasterror.winsock(errno.EPERM) == lasterror.Winsock(-1, "SocketError")
    assert lasterror.winsock(None) == lasterror.Winsock(-1, "SocketError")


def test_the_connector_failover_sentences() -> None:
    refused = lasterror.connection_failed(lasterror.winsock(errno.ECONNREFUSED))
    assert refused == "Failed to connect. Winsock error code: 10061, Win32 error code: 10061."
    text = lasterror.failover(refused, "10.1.1.3:25", connect_failure=True)
    assert text.startswith('441 4.4.1 Error encountered while communicating with primary target '
                           'IP address: "Failed to connect. Winsock error code: 10061, Win32 '
                           'error code: 10061." Attempted failover to alternate host, but')
    assert text.endswith("The last endpoint attempted was 10.1.1.3:25")
    replied = lasterror.failover("421 4.3.2 Service not available", "10.1.1.3:25",
                                 connect_failure=False)
    assert replied.startswith('451 4.4.0 Primary target IP address responded with: "421 4.3.2 '
                              'Service not available." Attempted failover')


def test_the_intra_organization_hop_form() -> None:
    assert lasterror.hop_unreachable(lasterror.winsock(None, timed_out=True), "ex02.contoso.com",
                                     "10.0.0.2") == (
        "{LED=451 4.4.397 Error communicating with target host. -> 421 4.2.1 Unable to connect "
        "-> SocketTimedout: Socket error code 10060};{MSG=};{FQDN=ex02.contoso.com};"
        "{IP=10.0.0.2};")


def test_a_hop_that_failed_after_connecting_has_the_2016_form_with_what_went_wrong() -> None:
    assert lasterror.hop_failed("535 5.7.3 Authentication\r\n unsuccessful", "ex02.contoso.com",
                                "127.0.10.2") == (
        "{LED=451 4.4.397 Error communicating with target host. -> 535 5.7.3 Authentication "
        "unsuccessful};{MSG=};{FQDN=ex02.contoso.com};{IP=127.0.10.2};")
    assert lasterror.tls_failed("IllegalMessage") == (
        "421 4.2.1 Unable to connect -> TLS negotiation failed with error IllegalMessage")
    refused = lasterror.winsock(errno.ECONNREFUSED)
    assert lasterror.hop_unreachable(refused, "a", "b") == lasterror.hop_failed(
        lasterror.unable_to_connect(refused), "a", "b")
    assert len(lasterror.hop_failed("x" * 2000, "a", "b")) < 400  # one queue line
