"""MessageRateLimit: messages a source may start per minute on a connector (exchange.md §3.1).

Exchange checks the limit at MAIL FROM and answers ``421 4.4.2 Message submission rate for this
client has exceeded the configured limit`` (exchange.md §1.9 step 4), closing the connection.

exchsim's reading, where the sources are silent (exchange.md §1.9):
- The rate is a sliding window of 60 seconds: a MAIL FROM is refused when the source already
  started ``MessageRateLimit`` messages (accepted MAIL FROM commands) in the last minute.
- ``MessageRateSource``: ``IPAddress`` counts per client address (the proxied client's, on a
  hub), ``User`` per authenticated user (anonymous sessions are not counted), ``All`` both (a
  message counts against each), ``None`` applies no limit.

Pure: the caller passes the time (monotonic seconds).
"""

from __future__ import annotations

from collections import deque

from exchsim.config.model import MessageRateSource, ReceiveConnector

__all__ = ["WINDOW_SECONDS", "MessageRateWindow", "rate_keys"]

WINDOW_SECONDS = 60.0
_SWEEP_AT = 10_000  # sources remembered before idle ones are swept


def rate_keys(connector: ReceiveConnector, client_ip: str, user: str | None) -> tuple[str, ...]:
    """The counters a message of this session counts against on ``connector``."""
    if connector.message_rate_limit is None:
        return ()
    source = connector.message_rate_source
    keys: list[str] = []
    if source in (MessageRateSource.IP_ADDRESS, MessageRateSource.ALL):
        keys.append(f"ip:{client_ip}")
    if source in (MessageRateSource.USER, MessageRateSource.ALL) and user:
        keys.append(f"user:{user.lower()}")
    return tuple(keys)


class MessageRateWindow:
    """Start times of messages per source key over the last minute, for one connector."""

    def __init__(self) -> None:
        self._started: dict[str, deque[float]] = {}

    def count(self, key: str, now: float) -> int:
        times = self._started.get(key)
        if times is None:
            return 0
        while times and times[0] <= now - WINDOW_SECONDS:
            times.popleft()
        if not times:
            del self._started[key]
            return 0
        return len(times)

    def over(self, keys: tuple[str, ...], limit: int | None, now: float) -> bool:
        """Whether another message now would exceed ``limit`` for any of ``keys``."""
        return limit is not None and any(self.count(k, now) >= limit for k in keys)

    def record(self, keys: tuple[str, ...], now: float) -> None:
        for key in keys:
            self._started.setdefault(key, deque()).append(now)
        if len(self._started) > _SWEEP_AT:
            for key in list(self._started):
                self.count(key, now)
