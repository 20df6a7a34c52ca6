"""The only place exchsim reads the clock. Everything else is handed a :class:`Clock`."""

from __future__ import annotations

import datetime
import time
from dataclasses import dataclass


@dataclass(slots=True)
class Clock:
    """Wall clock (UTC and the server's local time) and a monotonic clock for durations."""

    def utc(self) -> datetime.datetime:
        return datetime.datetime.now(datetime.UTC)

    def local(self, zone: datetime.tzinfo | None = None) -> datetime.datetime:
        """The time in ``zone`` (a server's TimeZone); None: the host's zone."""
        if zone is not None:
            return datetime.datetime.now(zone)
        return datetime.datetime.now().astimezone()

    def monotonic(self) -> float:
        return time.monotonic()


SYSTEM_CLOCK = Clock()
