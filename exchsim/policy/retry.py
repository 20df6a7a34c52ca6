"""Exchange's retry schedule (Set-TransportService, exchange.md §8.5). Pure.

Two clocks, as Exchange has them:

- **a next hop that cannot be reached** (its queue is in Retry): the first
  TransientFailureRetryCount (6) connection failures in a row are retried after
  TransientFailureRetryInterval (5 minutes) each; from then on every
  OutboundConnectionFailureRetryInterval (10 minutes), until a connection succeeds (the count
  starts again) or the messages expire;
- **one message** whose delivery failed after the connection was made (a 4xx, a transaction
  that broke): retried after MessageRetryInterval (15 minutes), every time, without a backoff.

The lab's time scale: a server's config may set each of the four values; a value it does not
set takes Exchange's default capped at ``Lab.RetryInterval`` (10 seconds by default), so a lab
retries within seconds unless its config asks for Exchange's own times (exchange.md §8.5).
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass

from exchsim.config.model import Server

__all__ = ["RetrySchedule"]

_FIELDS = ("transient_failure_retry_count", "transient_failure_retry_interval",
           "outbound_connection_failure_retry_interval", "message_retry_interval")


@dataclass(frozen=True, slots=True)
class RetrySchedule:
    transient_failure_retry_count: int = 6
    transient_failure_retry_interval: datetime.timedelta = datetime.timedelta(minutes=5)
    outbound_connection_failure_retry_interval: datetime.timedelta = datetime.timedelta(
        minutes=10)
    message_retry_interval: datetime.timedelta = datetime.timedelta(minutes=15)

    @classmethod
    def of(cls, server: Server, lab_scale: datetime.timedelta | None) -> RetrySchedule:
        """The schedule of ``server``: the values its config sets as they are, the others
        Exchange's defaults capped at ``lab_scale`` (None: no cap)."""
        given = server.model_fields_set

        def interval(name: str) -> datetime.timedelta:
            value: datetime.timedelta = getattr(server, name)
            if name in given or lab_scale is None:
                return value
            return min(value, lab_scale)

        return cls(
            transient_failure_retry_count=server.transient_failure_retry_count,
            transient_failure_retry_interval=interval("transient_failure_retry_interval"),
            outbound_connection_failure_retry_interval=interval(
                "outbound_connection_failure_retry_interval"),
            message_retry_interval=interval("message_retry_interval"),
        )

    @classmethod
    def fixed(cls, every: datetime.timedelta) -> RetrySchedule:
        """Every wait the same (tests, and a caller that has only one interval)."""
        return cls(transient_failure_retry_count=0, transient_failure_retry_interval=every,
                   outbound_connection_failure_retry_interval=every,
                   message_retry_interval=every)

    def connection_retry(self, failures: int) -> datetime.timedelta:
        """The wait after the ``failures``-th connection failure in a row to one next hop
        (1 for the first)."""
        if failures <= self.transient_failure_retry_count:
            return self.transient_failure_retry_interval
        return self.outbound_connection_failure_retry_interval

    def message_retry(self) -> datetime.timedelta:
        """The wait after a failure of one message at a next hop that was reached."""
        return self.message_retry_interval

    @property
    def shortest(self) -> datetime.timedelta:
        """The shortest wait of the schedule (how often the agent looks at its queue)."""
        waits = [self.message_retry_interval, self.outbound_connection_failure_retry_interval]
        if self.transient_failure_retry_count:
            waits.append(self.transient_failure_retry_interval)
        return min(waits)


assert set(_FIELDS) <= set(Server.model_fields)
