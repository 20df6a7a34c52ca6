"""Exchange's retry schedule (policy/retry.py, exchange.md §8.5)."""

from __future__ import annotations

import datetime

from exchsim.config.model import Server
from exchsim.policy.retry import RetrySchedule

SECOND = datetime.timedelta(seconds=1)
MINUTE = datetime.timedelta(minutes=1)


def _server(**values: object) -> Server:
    return Server.model_validate({"Name": "EX01", "Role": "Mailbox", "Fqdn": "ex01.contoso.com",
                                  "Address": "127.0.10.1", **values})


def test_exchange_defaults_without_a_lab_scale() -> None:
    schedule = RetrySchedule.of(_server(), None)
    assert schedule == RetrySchedule()
    # Six connection failures in a row are retried after 5 minutes, then every 10 minutes.
    waits = [schedule.connection_retry(n) for n in range(1, 10)]
    assert waits == [5 * MINUTE] * 6 + [10 * MINUTE] * 3
    # A message whose delivery failed at a reachable next hop: 15 minutes, every time.
    assert schedule.message_retry() == 15 * MINUTE


def test_the_lab_scale_caps_the_values_the_config_does_not_set() -> None:
    schedule = RetrySchedule.of(_server(), 10 * SECOND)
    assert schedule.transient_failure_retry_interval == 10 * SECOND
    assert schedule.outbound_connection_failure_retry_interval == 10 * SECOND
    assert schedule.message_retry() == 10 * SECOND
    assert schedule.transient_failure_retry_count == 6
    assert schedule.shortest == 10 * SECOND


def test_values_the_config_sets_are_used_as_they_are() -> None:
    server = _server(TransientFailureRetryCount=2, TransientFailureRetryInterval="00:00:01",
                     OutboundConnectionFailureRetryInterval="00:00:30",
                     MessageRetryInterval="00:20:00")
    schedule = RetrySchedule.of(server, 10 * SECOND)
    assert [schedule.connection_retry(n) for n in (1, 2, 3, 4)] == [
        SECOND, SECOND, 30 * SECOND, 30 * SECOND]
    assert schedule.message_retry() == 20 * MINUTE  # longer than the lab scale: as set
    assert schedule.shortest == SECOND


def test_zero_transient_retries_go_straight_to_the_long_interval() -> None:
    schedule = RetrySchedule.of(_server(TransientFailureRetryCount=0), None)
    assert schedule.connection_retry(1) == 10 * MINUTE
    assert schedule.shortest == 10 * MINUTE


def test_a_fixed_schedule() -> None:
    schedule = RetrySchedule.fixed(SECOND)
    assert {schedule.connection_retry(n) for n in range(1, 20)} == {SECOND}
    assert schedule.message_retry() == SECOND


def test_out_of_range_values_are_refused() -> None:
    import pydantic
    import pytest
    for key, value in (("TransientFailureRetryCount", 16), ("TransientFailureRetryCount", -1),
                       ("TransientFailureRetryInterval", "12:00:01"),
                       ("MessageRetryInterval", "1.00:00:01"),
                       ("OutboundConnectionFailureRetryInterval", "20.00:00:01"),
                       ("MessageRetryInterval", "00:00:00")):
        with pytest.raises(pydantic.ValidationError):
            _server(**{key: value})
