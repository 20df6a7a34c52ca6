"""MessageRateLimit / MessageRateSource (exchange.md §3.1, §1.9 step 4): keys and the window."""

from __future__ import annotations

from exchsim.policy import rates
from exchsim.policy.rates import MessageRateWindow, rate_keys
from tests.factories import connector


def test_keys_follow_the_message_rate_source() -> None:
    ip = connector("A", MessageRateLimit=5, MessageRateSource="IPAddress")
    user = connector("B", MessageRateLimit=5, MessageRateSource="User")
    both = connector("C", MessageRateLimit=5, MessageRateSource="All")
    none = connector("D", MessageRateLimit=5, MessageRateSource="None")
    unlimited = connector("E", MessageRateSource="All")  # MessageRateLimit defaults to unlimited
    assert rate_keys(ip, "127.0.0.1", "Alice@Contoso.com") == ("ip:127.0.0.1",)
    assert rate_keys(user, "127.0.0.1", "Alice@Contoso.com") == ("user:alice@contoso.com",)
    assert rate_keys(user, "127.0.0.1", None) == ()  # anonymous sessions are not counted
    assert rate_keys(both, "127.0.0.1", "alice@contoso.com") == (
        "ip:127.0.0.1", "user:alice@contoso.com")
    assert rate_keys(none, "127.0.0.1", "alice@contoso.com") == ()
    assert rate_keys(unlimited, "127.0.0.1", "alice@contoso.com") == ()


def test_sliding_minute() -> None:
    window = MessageRateWindow()
    keys = ("user:alice",)
    for second in range(5):  # five messages at t = 0..4 s
        assert not window.over(keys, 5, float(second))
        window.record(keys, float(second))
    assert window.over(keys, 5, 10.0)  # the sixth within the minute
    assert window.over(keys, 5, 59.9)
    assert not window.over(keys, 5, 60.0)  # the first one (t=0) has left the window
    window.record(keys, 60.0)
    assert window.over(keys, 5, 60.5)
    assert window.count("user:alice", 200.0) == 0
    assert not window.over(keys, None, 0.0)  # unlimited


def test_keys_count_separately_and_all_counts_against_each() -> None:
    window = MessageRateWindow()
    window.record(("ip:127.0.0.1", "user:alice"), 0.0)
    window.record(("ip:127.0.0.1", "user:bob"), 1.0)
    assert window.count("ip:127.0.0.1", 2.0) == 2
    assert window.count("user:alice", 2.0) == 1
    assert window.over(("ip:127.0.0.1", "user:carol"), 2, 2.0)  # the address is at its limit
    assert not window.over(("ip:127.0.0.2", "user:carol"), 2, 2.0)


def test_idle_sources_are_forgotten(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(rates, "_SWEEP_AT", 3)
    window = MessageRateWindow()
    for n in range(4):
        window.record((f"ip:10.0.0.{n}",), float(n))
    window.record(("ip:10.0.0.9",), 120.0)  # over the sweep size: the stale ones go
    assert len(window._started) == 1
