"""Who gets which delivery status notification (policy/dsn.py, RFC 3461, exchange.md §12.6)."""

from __future__ import annotations

import pytest

from exchsim.policy import dsn
from exchsim.policy.dsn import Notify, RecipientDsn
from tests.factories import organization


def test_notify_values() -> None:
    assert dsn.parse_notify("never") == frozenset()
    assert dsn.parse_notify("Success,DELAY") == {Notify.SUCCESS, Notify.DELAY}
    assert dsn.parse_notify(None) is None
    assert dsn.parse_notify("NEVER,FAILURE") is None
    assert dsn.parse_notify("LATER") is None


@pytest.mark.parametrize(("notify", "success", "failure", "delay"), [
    (None, False, True, True),  # no NOTIFY: Exchange's default
    ("NEVER", False, False, False),
    ("SUCCESS", True, False, False),
    ("FAILURE", False, True, False),
    ("DELAY,FAILURE", False, True, True),
])
def test_what_each_request_wants(notify: str | None, success: bool, failure: bool,
                                 delay: bool) -> None:
    request = RecipientDsn(dsn.parse_notify(notify))
    assert [request.wants(w) for w in (Notify.SUCCESS, Notify.FAILURE, Notify.DELAY)] == [
        success, failure, delay]


def test_requests_travel_in_the_metadata() -> None:
    encoded = dsn.encode({"a@x.example": {"NOTIFY": "SUCCESS", "ORCPT": "rfc822;A@x.example"},
                          "b@x.example": {"NOTIFY": "NEVER"}, "c@x.example": {}})
    assert encoded is not None
    requests = dsn.decode({dsn.METADATA_KEY: encoded})
    assert requests["a@x.example"] == RecipientDsn(frozenset({Notify.SUCCESS}),
                                                   "rfc822;A@x.example")
    assert requests["b@x.example"] == RecipientDsn(frozenset())
    assert "c@x.example" not in requests
    assert dsn.recipients_wanting(requests, ["a@x.example", "b@x.example", "c@x.example"],
                                  Notify.FAILURE) == ["c@x.example"]
    assert dsn.encode({"c@x.example": {}}) is None
    assert dsn.decode({}) == {} and dsn.decode({dsn.METADATA_KEY: "{not json"}) == {}


def test_delay_sent_is_remembered_per_recipient() -> None:
    assert dsn.delay_sent({}) == frozenset()
    assert dsn.delay_sent({dsn.DELAY_SENT_KEY: "a@x.example;b@x.example"}) == {
        "a@x.example", "b@x.example"}


def test_internal_and_external_delay_switches() -> None:
    org = organization()
    assert dsn.delay_wanted(org, "alice@contoso.com")
    assert dsn.delay_wanted(org, "someone@fabrikam.example")
    config = org.transport_config.model_copy(update={"internal_delay_dsn_enabled": False})
    quiet_inside = org.model_copy(update={"transport_config": config})
    assert not dsn.delay_wanted(quiet_inside, "alice@contoso.com")
    assert dsn.delay_wanted(quiet_inside, "someone@fabrikam.example")
    config = org.transport_config.model_copy(update={"external_delay_dsn_enabled": False})
    quiet_outside = org.model_copy(update={"transport_config": config})
    assert dsn.delay_wanted(quiet_outside, "alice@contoso.com")
    assert not dsn.delay_wanted(quiet_outside, "someone@fabrikam.example")


def test_a_report_is_recognised() -> None:
    assert dsn.is_report('multipart/report; report-type="delivery-status";\r\n boundary=x', False)
    assert dsn.is_report("multipart/report; report-type=delivery-status", False)
    assert dsn.is_report("text/plain", True)  # X-MS-Exchange-Message-Is-Ndr
    assert not dsn.is_report("multipart/report; report-type=disposition-notification", False)
    assert not dsn.is_report(None, False)


def test_the_request_is_passed_on_as_the_queue_kept_it() -> None:
    kept = {"ret": "HDRS", "envid": "QQ+2B1",
            dsn.METADATA_KEY: dsn.encode({"a@x.example": {"NOTIFY": "SUCCESS,DELAY",
                                                          "ORCPT": "rfc822;A+40x"},
                                          "b@x.example": {"NOTIFY": "NEVER"}}) or ""}
    passed = dsn.passed_on(kept, ["a@x.example", "b@x.example", "c@x.example"])
    assert passed.mail == ("RET=HDRS", "ENVID=QQ+2B1")
    assert passed.of("a@x.example") == ("NOTIFY=SUCCESS,DELAY", "ORCPT=rfc822;A+40x")
    assert passed.of("b@x.example") == ("NOTIFY=NEVER",)
    assert passed.of("c@x.example") == ()  # nothing asked, nothing added
    assert dsn.passed_on({}, ["a@x.example"]) == dsn.DsnParameters((), {})
    assert dsn.passed_on({dsn.METADATA_KEY: "{broken"}, ["a@x.example"]).of("a@x.example") == ()


def test_a_clients_request_as_the_front_end_passes_it_on() -> None:
    request = dsn.requested({"RET": "HDRS", "ENVID": "QQ314159", "BODY": "8BITMIME"},
                            {"bob@partner.example": {"NOTIFY": "SUCCESS", "ORCPT": None}},
                            ["bob@partner.example", "carol@partner.example"])
    assert request.mail == ("RET=HDRS", "ENVID=QQ314159")
    assert request.of("bob@partner.example") == ("NOTIFY=SUCCESS",)
    assert request.of("carol@partner.example") == ()
    assert dsn.requested({}, {}, ["bob@partner.example"]) == dsn.DsnParameters((), {})
