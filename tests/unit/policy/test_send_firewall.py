"""The header firewall on the way out (policy/headers.send_firewall, exchange.md §12.5)."""

from __future__ import annotations

from exchsim.policy.headers import send_firewall

MESSAGE = (b"Received: from a by b; Mon, 1 Jan 2024 00:00:00 +0000\r\n"
           b"X-MS-Exchange-Organization-AuthAs: Internal\r\n"
           b"x-ms-exchange-organization-network-message-id:\r\n 0b1c2d3e-0000\r\n"
           b"X-MS-Exchange-Forest-ArrivalHubServer: ex01.contoso.com\r\n"
           b"X-MS-Exchange-Transport-EndToEndLatency: 00:00:01\r\n"
           b"Resent-From: alice@contoso.com\r\n"
           b"Subject: hi\r\n\r\n"
           b"X-MS-Exchange-Organization-AuthAs: in the body, untouched\r\n")


def test_outside_the_organization_org_and_forest_headers_go_the_rest_stays() -> None:
    out = send_firewall(MESSAGE, exchange_of_organization=False)
    assert out == (b"Received: from a by b; Mon, 1 Jan 2024 00:00:00 +0000\r\n"
                   b"X-MS-Exchange-Transport-EndToEndLatency: 00:00:01\r\n"
                   b"Resent-From: alice@contoso.com\r\n"
                   b"Subject: hi\r\n\r\n"
                   b"X-MS-Exchange-Organization-AuthAs: in the body, untouched\r\n")


def test_an_exchange_server_of_the_organization_gets_everything() -> None:
    assert send_firewall(MESSAGE, exchange_of_organization=True) is MESSAGE


def test_a_message_without_such_headers_is_returned_as_it_came() -> None:
    plain = b"Subject: hi\r\n\r\nbody"
    assert send_firewall(plain, exchange_of_organization=False) is plain
