"""A server's ``Version``: the major version and the build it runs (exchange.md §12.1, §12.2).

``Version`` in the config takes one of:

- a major version, ``15.0`` (2013), ``15.1`` (2016) or ``15.2`` (2019 and SE): the last
  cumulative update of that version (:data:`DEFAULT_RELEASE`);
- a release by name, ``2019 CU15``, ``2016 CU23``, ``2013 SP1``, ``SE RTM`` (case-insensitive,
  ``Exchange`` / ``Exchange Server`` in front allowed), one of :data:`RELEASES`;
- a build, ``15.2.1748.10`` (or in the long form ``15.02.1748.010``), for a security update
  the table does not name.

The build numbers are Microsoft's "Exchange Server build numbers and release dates" page
(learn.microsoft.com, exchange/new-features/build-numbers-and-release-dates). The build is
written in Received lines (``id 15.2.1748.10``) and, zero-padded (``15.02.1748.010``), in
``X-MS-Exchange-Processed-By-BccFoldering``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Annotated

from pydantic import BeforeValidator, PlainSerializer

__all__ = ["DEFAULT_RELEASE", "DEFAULT_VERSION", "RELEASES", "ExchangeVersion", "VersionValue",
           "parse_version"]

_CUS_2013 = {
    "RTM": "516.32", "CU1": "620.29", "CU2": "712.24", "CU3": "775.38", "SP1": "847.32",
    "CU5": "913.22", "CU6": "995.29", "CU7": "1044.25", "CU8": "1076.9", "CU9": "1104.5",
    "CU10": "1130.7", "CU11": "1156.6", "CU12": "1178.4", "CU13": "1210.3", "CU14": "1236.3",
    "CU15": "1263.5", "CU16": "1293.2", "CU17": "1320.4", "CU18": "1347.2", "CU19": "1365.1",
    "CU20": "1367.3", "CU21": "1395.4", "CU22": "1473.3", "CU23": "1497.2",
}
_CUS_2016 = {
    "RTM": "225.42", "CU1": "396.30", "CU2": "466.34", "CU3": "544.27", "CU4": "669.32",
    "CU5": "845.34", "CU6": "1034.26", "CU7": "1261.35", "CU8": "1415.2", "CU9": "1466.3",
    "CU10": "1531.3", "CU11": "1591.10", "CU12": "1713.5", "CU13": "1779.2", "CU14": "1847.3",
    "CU15": "1913.5", "CU16": "1979.3", "CU17": "2044.4", "CU18": "2106.2", "CU19": "2176.2",
    "CU20": "2242.4", "CU21": "2308.8", "CU22": "2375.7", "CU23": "2507.6",
}
_CUS_2019 = {
    "RTM": "221.12", "CU1": "330.5", "CU2": "397.3", "CU3": "464.5", "CU4": "529.5",
    "CU5": "595.3", "CU6": "659.4", "CU7": "721.2", "CU8": "792.3", "CU9": "858.5",
    "CU10": "922.7", "CU11": "986.5", "CU12": "1118.7", "CU13": "1258.12", "CU14": "1544.4",
    "CU15": "1748.10",
}
#: Every release by name: ``"2019 CU15"`` -> ``"15.2.1748.10"``.
RELEASES: dict[str, str] = {
    **{f"2013 {cu}": f"15.0.{b}" for cu, b in _CUS_2013.items()},
    "2013 CU4": "15.0.847.32",  # SP1 is CU4
    **{f"2016 {cu}": f"15.1.{b}" for cu, b in _CUS_2016.items()},
    **{f"2019 {cu}": f"15.2.{b}" for cu, b in _CUS_2019.items()},
    "SE RTM": "15.2.2562.17",
}
#: What a bare major version stands for: its last cumulative update. 15.2 is 2019 CU15 (SE RTM
#: is the same code, exchange.md §12.1); name ``SE RTM`` for SE's own build.
DEFAULT_RELEASE = {"15.0": "2013 CU23", "15.1": "2016 CU23", "15.2": "2019 CU15"}

ALLOWED = ("15.0, 15.1 or 15.2; a release like 2019 CU15 (2013 RTM/CU1-CU23/SP1, "
           "2016 RTM/CU1-CU23, 2019 RTM/CU1-CU15, SE RTM); or a build like 15.2.1748.10 "
           "(major 15.0, 15.1 or 15.2)")

_BUILD = re.compile(r"(\d{1,2})\.(\d{1,2})\.(\d{1,5})\.(\d{1,4})")
_NAME = re.compile(r"(?:exchange\s+(?:server\s+)?)?(2013|2016|2019|se)\s+(rtm|sp1|cu\d{1,2})",
                   re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class ExchangeVersion:
    """A server's version as the config names it, and the build that follows from it."""

    text: str  # as the config wrote it
    numbers: tuple[int, int, int, int]  # (15, 2, 1748, 10)

    @property
    def major(self) -> str:
        """``15.0`` | ``15.1`` | ``15.2``: what the dialect depends on."""
        return f"{self.numbers[0]}.{self.numbers[1]}"

    @property
    def build(self) -> str:
        """``15.2.1748.10``: the ``id`` of Received lines (exchange.md §12.1)."""
        return ".".join(str(n) for n in self.numbers)

    @property
    def long_build(self) -> str:
        """``15.02.1748.010``: the BccFoldering header's form (exchange.md §12.2)."""
        a, b, c, d = self.numbers
        return f"{a:02d}.{b:02d}.{c:04d}.{d:03d}"

    def __str__(self) -> str:
        return self.text


def parse_version(value: object) -> ExchangeVersion:
    """A config's ``Version`` (module docstring); ValueError names what is allowed."""
    if isinstance(value, ExchangeVersion):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        value = f"{float(value):.1f}"
    if not isinstance(value, str):
        raise ValueError(f"expected {ALLOWED}")
    text = value.strip()
    if text in DEFAULT_RELEASE:
        return ExchangeVersion(text, _numbers(RELEASES[DEFAULT_RELEASE[text]]))
    name = _NAME.fullmatch(text)
    if name is not None:
        key = f"{name.group(1).upper()} {name.group(2).upper()}"
        if key in RELEASES:
            return ExchangeVersion(text, _numbers(RELEASES[key]))
        raise ValueError(f"there is no Exchange {key}: expected {ALLOWED}")
    if _BUILD.fullmatch(text):
        numbers = _numbers(text)
        if f"{numbers[0]}.{numbers[1]}" in DEFAULT_RELEASE:
            return ExchangeVersion(text, numbers)
    raise ValueError(f"expected {ALLOWED}")


def _numbers(build: str) -> tuple[int, int, int, int]:
    a, b, c, d = (int(part) for part in build.split("."))
    return a, b, c, d


#: The config field's type: parsed by :func:`parse_version`, written back as given.
VersionValue = Annotated[ExchangeVersion, BeforeValidator(parse_version), PlainSerializer(str)]
DEFAULT_VERSION = parse_version("15.2")
