"""A server's ``TimeZone``: the zone of the dates it writes (exchange.md §12.1).

Exchange writes the dates of the banner, Received lines and NDRs in the Windows server's local
time (``Tue, 8 Jul 2025 07:58:23 +0200``). exchsim's setting, per server: an IANA zone name
(``Europe/Zurich``, from the system's zone database), ``UTC`` (the default, so that what a lab
writes does not depend on the machine it runs on) or ``Local`` (the host's own zone).
"""

from __future__ import annotations

import datetime
import functools
import zoneinfo
from typing import Annotated

from pydantic import AfterValidator

__all__ = ["TimeZoneName", "check_time_zone", "zone_of"]

ALLOWED = "UTC, Local (the host's zone) or an IANA time zone name like Europe/Zurich"


def check_time_zone(value: str) -> str:
    """``value`` if it names a zone (ValueError naming what is allowed otherwise)."""
    if value.upper() in {"UTC", "LOCAL"}:
        return value
    try:
        _zone(value)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"not a known time zone: expected {ALLOWED}") from exc
    return value


def zone_of(value: str) -> datetime.tzinfo | None:
    """The tzinfo of a checked ``TimeZone``; None for ``Local`` (the host's zone)."""
    if value.upper() == "LOCAL":
        return None
    if value.upper() == "UTC":
        return datetime.UTC
    return _zone(value)


@functools.cache
def _zone(name: str) -> zoneinfo.ZoneInfo:
    return zoneinfo.ZoneInfo(name)


#: The config field's type: a name :func:`check_time_zone` accepts.
TimeZoneName = Annotated[str, AfterValidator(check_time_zone)]
