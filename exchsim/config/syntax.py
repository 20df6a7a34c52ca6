"""Exchange's parameter mini-syntaxes, parsed once when the configuration is loaded.

Pure functions, no I/O. Every ``parse_*`` function raises :class:`ValueError` whose message
says what is allowed (``prose.py`` shows it as ``'<value>' is not allowed: <message>``).

* ByteQuantifiedSize: ``36MB``, ``36 MB``, ``1.5 GB``, ``65536``, ``65536B``,
  ``36 MB (37,748,736 bytes)``; units B/KB/MB/GB/TB, case-insensitive, 1024-based.
* Limits: ``Unlimited`` (any case) or a value.
* .NET TimeSpan: ``hh:mm:ss``, ``d.hh:mm:ss``, optional ``.fffffff`` fraction.
* RemoteIPRanges entries: single IP, CIDR, ``a-b`` range.
* Bindings: ``IPv4:port``, ``[IPv6]:port``; endpoints (``format_endpoint``) the same way.
* Flag sets (AuthMechanism, PermissionGroups): ``Tls, Integrated`` in declaration order.
* SMTP addresses in ``EmailAddresses``: an optional ``smtp:`` prefix.
"""

from __future__ import annotations

import datetime
import enum
import ipaddress
import math
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from fractions import Fraction

Address = ipaddress.IPv4Address | ipaddress.IPv6Address

# --- byte sizes -----------------------------------------------------------------------------

_UNITS: dict[str, int] = {"B": 1, "KB": 1 << 10, "MB": 1 << 20, "GB": 1 << 30, "TB": 1 << 40}
_UNITS_DESCENDING: tuple[tuple[str, int], ...] = tuple(
    sorted(_UNITS.items(), key=lambda item: item[1], reverse=True)
)
_BYTE_SIZE_HELP = (
    "expected a size such as 36MB, '36 MB (37,748,736 bytes)' or a number of bytes "
    "(units B, KB, MB, GB, TB)"
)
_BYTE_SIZE_RE = re.compile(
    r"""
    (?P<number>[0-9]+(?:\.[0-9]+)?)
    \s*(?P<unit>[KMGT]?B)?
    (?:\s*\(\s*(?P<bytes>[0-9]{1,3}(?:,[0-9]{3})+|[0-9]+)\s*bytes?\s*\))?
    """,
    re.IGNORECASE | re.ASCII | re.VERBOSE,
)


def parse_byte_size(value: str | int) -> int:
    """A ByteQuantifiedSize as a number of bytes.

    A plain int is bytes. A string is a number (decimals allowed) with an optional unit;
    when Exchange's display form carries the byte count in parentheses, that count wins.
    Fractional bytes are rounded down.
    """
    if isinstance(value, bool):
        raise ValueError(_BYTE_SIZE_HELP)
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"a size cannot be negative; {_BYTE_SIZE_HELP}")
        return value
    if not isinstance(value, str):
        raise ValueError(_BYTE_SIZE_HELP)
    text = value.strip()
    if text.startswith("-"):
        raise ValueError(f"a size cannot be negative; {_BYTE_SIZE_HELP}")
    match = _BYTE_SIZE_RE.fullmatch(text)
    if match is None:
        raise ValueError(_BYTE_SIZE_HELP)
    exact = match.group("bytes")
    if exact is not None:
        return int(exact.replace(",", ""))
    unit = (match.group("unit") or "B").upper()
    return math.floor(Fraction(match.group("number")) * _UNITS[unit])


def format_byte_size(n: int) -> str:
    """Exchange's display form, e.g. ``36 MB (37,748,736 bytes)``.

    The unit is the largest one in which the value is at least 1; the number is rounded to
    two decimals with trailing zeros trimmed. The byte count makes the text exact.
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ValueError(f"a byte size must be a whole number of 0 or more, not {n!r}")
    unit, size = next(((name, size) for name, size in _UNITS_DESCENDING if n >= size), ("B", 1))
    hundredths = (200 * n + size) // (2 * size)  # round half up to 2 decimals
    whole, frac = divmod(hundredths, 100)
    number = f"{whole}.{frac:02d}".rstrip("0").rstrip(".") if frac else str(whole)
    return f"{number} {unit} ({n:,} bytes)"


# --- limits ---------------------------------------------------------------------------------

_COUNT_RE = re.compile(r"[0-9]+", re.ASCII)
_COUNT_HELP = "expected a whole number (0 or more)"


def parse_count(value: str | int) -> int:
    """A non-negative whole number, given as an int or a string of digits."""
    if isinstance(value, bool):
        raise ValueError(_COUNT_HELP)
    if isinstance(value, int):
        if value < 0:
            raise ValueError(_COUNT_HELP)
        return value
    if isinstance(value, str):
        text = value.strip()
        if _COUNT_RE.fullmatch(text):
            return int(text)
    raise ValueError(_COUNT_HELP)


def parse_limit(value: str | int, parse: Callable[[str | int], int] = parse_count) -> int | None:
    """``Unlimited`` (any case) as None, otherwise ``parse(value)``."""
    if isinstance(value, str) and value.strip().lower() == "unlimited":
        return None
    try:
        return parse(value)
    except ValueError as exc:
        raise ValueError(f"{exc}, or Unlimited") from exc


# --- timespans ------------------------------------------------------------------------------

#: .NET TimeSpan.MaxValue, 10675199.02:48:05.4775807, at timedelta's microsecond resolution.
MAX_TIMESPAN = datetime.timedelta(
    days=10675199, hours=2, minutes=48, seconds=5, microseconds=477580
)
_TIMESPAN_HELP = (
    "expected a timespan such as 00:05:00 (hh:mm:ss), 1.00:00:00 (d.hh:mm:ss) or "
    "00:00:00.5 (with a fraction of up to 7 digits)"
)
_TIMESPAN_RE = re.compile(
    r"(?:(?P<days>[0-9]{1,8})\.)?(?P<hours>[0-9]{1,2}):(?P<minutes>[0-9]{1,2}):"
    r"(?P<seconds>[0-9]{1,2})(?:\.(?P<fraction>[0-9]{1,7}))?",
    re.ASCII,
)


def parse_timespan(value: str | int | float) -> datetime.timedelta:
    """A .NET TimeSpan (``hh:mm:ss``, ``d.hh:mm:ss``, optional ``.fffffff``).

    An int or float is a number of seconds. Hours must be 0-23, minutes and seconds 0-59.
    The seventh fraction digit (100 ns) is below timedelta's resolution and is dropped.
    """
    if isinstance(value, bool):
        raise ValueError(_TIMESPAN_HELP)
    if isinstance(value, int | float):
        if not math.isfinite(value):
            raise ValueError(f"a timespan must be finite; {_TIMESPAN_HELP}")
        if value < 0:
            raise ValueError(f"a timespan cannot be negative; {_TIMESPAN_HELP}")
        if value > MAX_TIMESPAN.total_seconds():
            raise ValueError(f"a timespan can be at most {format_timespan(MAX_TIMESPAN)}")
        return datetime.timedelta(seconds=value)
    if not isinstance(value, str):
        raise ValueError(_TIMESPAN_HELP)
    text = value.strip()
    if text.startswith("-"):
        raise ValueError(f"a timespan cannot be negative; {_TIMESPAN_HELP}")
    match = _TIMESPAN_RE.fullmatch(text)
    if match is None:
        raise ValueError(_TIMESPAN_HELP)
    hours, minutes, seconds = (int(match.group(k)) for k in ("hours", "minutes", "seconds"))
    if hours > 23:
        raise ValueError(f"hours must be 0 to 23 (use d.hh:mm:ss for days); {_TIMESPAN_HELP}")
    if minutes > 59 or seconds > 59:
        raise ValueError(f"minutes and seconds must be 0 to 59; {_TIMESPAN_HELP}")
    ticks = int((match.group("fraction") or "").ljust(7, "0"))
    result = datetime.timedelta(
        days=int(match.group("days") or 0),
        hours=hours,
        minutes=minutes,
        seconds=seconds,
        microseconds=ticks // 10,
    )
    if result > MAX_TIMESPAN:
        raise ValueError(f"a timespan can be at most {format_timespan(MAX_TIMESPAN)}")
    return result


def format_timespan(td: datetime.timedelta, *, days: bool = False) -> str:
    """.NET's form: ``00:05:00``, ``1.00:00:00``; a 7-digit fraction only when there is one.

    ``days=True`` always writes the day count, as Exchange's protocol log does for the tarpit
    interval: ``0.00:00:05``.
    """
    if td < datetime.timedelta(0):
        raise ValueError(f"a timespan cannot be negative, not {td!r}")
    hours, rest = divmod(td.seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    text = f"{hours:02d}:{minutes:02d}:{seconds:02d}"
    if td.days or days:
        text = f"{td.days}.{text}"
    if td.microseconds:
        text += f".{td.microseconds * 10:07d}"
    return text


# --- addresses and ranges -------------------------------------------------------------------

_ADDRESS_HELP = "expected an IP address such as 192.0.2.1 or 2001:db8::1"
_RANGE_HELP = (
    "expected a single IP address (127.0.21.75), a CIDR range (127.0.22.0/24, fd00::/64) "
    "or a range first-last (10.0.0.1-10.0.0.9)"
)
_PREFIX_RE = re.compile(r"[0-9]{1,3}", re.ASCII)


def parse_address(text: str) -> Address:
    """An IP address; ``[::1]`` brackets and an IPv6 ``%scope`` suffix are removed."""
    if not isinstance(text, str):
        raise ValueError(_ADDRESS_HELP)
    body = text.strip()
    if body.startswith("[") and body.endswith("]"):
        body = body[1:-1]
    return _bare_address(body)


def _bare_address(text: str) -> Address:
    """An address without brackets; an IPv6 ``%scope`` suffix is removed."""
    body = text.strip()
    if "%" in body and ":" in body:
        body, _, scope = body.partition("%")
        if not scope:
            raise ValueError(f"the %scope of an IPv6 address is empty; {_ADDRESS_HELP}")
    try:
        return ipaddress.ip_address(body)
    except ValueError:
        raise ValueError(_ADDRESS_HELP) from None


@dataclass(frozen=True, slots=True)
class IPRange:
    """An inclusive range of addresses of one IP version.

    ``text`` is the canonical form written back to users. It keeps the form the range was
    written in (as Exchange does): a single address, ``net/prefix`` or ``first-last``.
    It is not part of equality: two ranges with the same addresses are equal.
    """

    first: int
    last: int
    version: int
    text: str = field(compare=False)

    @property
    def size(self) -> int:
        return self.last - self.first + 1

    def contains(self, address: Address) -> bool:
        return address.version == self.version and self.first <= int(address) <= self.last

    def contains_range(self, other: IPRange) -> bool:
        """``other`` lies entirely inside this range (same IP version)."""
        return (
            other.version == self.version and self.first <= other.first and other.last <= self.last
        )

    def overlaps(self, other: IPRange) -> bool:
        return (
            other.version == self.version and self.first <= other.last and other.first <= self.last
        )

    def partially_overlaps(self, other: IPRange) -> bool:
        """The ranges share addresses but neither contains the other."""
        return (
            self.overlaps(other)
            and not self.contains_range(other)
            and not other.contains_range(self)
        )


def _single(address: Address) -> IPRange:
    return IPRange(int(address), int(address), address.version, str(address))


def parse_ip_range(text: str) -> IPRange:
    """A RemoteIPRanges entry: single IP, CIDR (host bits are cleared) or ``first-last``."""
    if not isinstance(text, str) or not text.strip():
        raise ValueError(_RANGE_HELP)
    body = text.strip()
    if "/" in body:
        address_text, _, prefix_text = body.partition("/")
        address = _range_address(address_text)
        prefix_text = prefix_text.strip()
        if not _PREFIX_RE.fullmatch(prefix_text):
            raise ValueError(f"the prefix length after / must be a number; {_RANGE_HELP}")
        prefix = int(prefix_text)
        bits = address.max_prefixlen
        if prefix > bits:
            raise ValueError(
                f"the prefix length of an IPv{address.version} range must be 0 to {bits}; "
                f"{_RANGE_HELP}"
            )
        kind = ipaddress.IPv4Network if address.version == 4 else ipaddress.IPv6Network
        network = kind((int(address), prefix), strict=False)
        if prefix == bits:
            return _single(network.network_address)
        return IPRange(
            int(network.network_address),
            int(network.broadcast_address),
            address.version,
            f"{network.network_address}/{prefix}",
        )
    if "-" in body:
        first_text, _, last_text = body.partition("-")
        first, last = _range_address(first_text), _range_address(last_text)
        if first.version != last.version:
            raise ValueError(f"both ends of a range must be IPv4 or both IPv6; {_RANGE_HELP}")
        if int(first) > int(last):
            raise ValueError(
                f"the first address of a range must not be greater than the last; {_RANGE_HELP}"
            )
        if first == last:
            return _single(first)
        return IPRange(int(first), int(last), first.version, f"{first}-{last}")
    return _single(_range_address(body))


def _range_address(text: str) -> Address:
    try:
        return parse_address(text)
    except ValueError:
        raise ValueError(_RANGE_HELP) from None


def format_ip_range(r: IPRange) -> str:
    """The canonical text of a range (see :class:`IPRange`)."""
    return r.text


# --- bindings -------------------------------------------------------------------------------

_BINDING_HELP = "expected IPv4:port or [IPv6]:port, such as 0.0.0.0:25 or [::]:25 (port 1-65535)"
_PORT_RE = re.compile(r"[0-9]{1,5}", re.ASCII)
_IPV4_BROADCAST = ipaddress.IPv4Address("255.255.255.255")


@dataclass(frozen=True, slots=True)
class Binding:
    """A receive connector binding: local address and port."""

    address: Address
    port: int

    @property
    def is_wildcard(self) -> bool:
        """Bound to every address of its family (0.0.0.0 or ::)."""
        return self.address.is_unspecified

    def matches(self, local_address: Address, local_port: int) -> bool:
        """Accepts a socket on ``local_address:local_port``: the exact IP, or the wildcard
        of the same family, and the same port."""
        if local_port != self.port or local_address.version != self.address.version:
            return False
        return self.is_wildcard or int(local_address) == int(self.address)

    def format(self) -> str:
        return format_endpoint(str(self.address), self.port)


def format_endpoint(host: str, port: int) -> str:
    """``127.0.0.1:25`` or ``[::1]:25``: an IPv6 address goes in brackets."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def parse_binding(text: str) -> Binding:
    """``IPv4:port`` or ``[IPv6]:port``; no multicast or broadcast addresses."""
    if not isinstance(text, str):
        raise ValueError(_BINDING_HELP)
    body = text.strip()
    if body.startswith("["):
        host, sep, port_text = body[1:].partition("]:")
        if not sep:
            raise ValueError(f"the port is missing; {_BINDING_HELP}")
        try:
            address = _bare_address(host)
        except ValueError:
            raise ValueError(_BINDING_HELP) from None
        if address.version != 6:
            raise ValueError(f"only IPv6 addresses go in brackets; {_BINDING_HELP}")
    else:
        host, sep, port_text = body.rpartition(":")
        if not sep:
            raise ValueError(f"the port is missing; {_BINDING_HELP}")
        if ":" in host:
            raise ValueError(f"an IPv6 address must be in brackets; {_BINDING_HELP}")
        try:
            address = ipaddress.IPv4Address(host.strip())
        except ValueError:
            raise ValueError(_BINDING_HELP) from None
    port_text = port_text.strip()
    if not _PORT_RE.fullmatch(port_text) or not 1 <= int(port_text) <= 65535:
        raise ValueError(f"the port must be 1 to 65535; {_BINDING_HELP}")
    if address.is_multicast or address == _IPV4_BROADCAST:
        raise ValueError("Bindings must be local IPs; no multicast/broadcast")
    return Binding(address, int(port_text))


# --- flags and addresses --------------------------------------------------------------------


def format_flags(chosen: Iterable[enum.Enum], order: type[enum.Enum]) -> str:
    """A flag set in the enum's declaration order, ``None`` when empty (PowerShell's [Flags])."""
    members = set(chosen)
    return ", ".join(str(m.value) for m in order if m in members) or "None"


def smtp_address(written: str) -> str:
    """An ``EmailAddresses`` entry without its ``smtp:`` / ``SMTP:`` prefix."""
    return written.split(":", 1)[1] if written.lower().startswith("smtp:") else written


_LABEL = r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)"
_HOST_NAME_RE = re.compile(rf"^{_LABEL}(?:\.{_LABEL})*\.?$")
_DOMAIN_NAME_RE = re.compile(rf"^(?:\*\.)?{_LABEL}(?:\.{_LABEL})*$")
_SMTP_ADDRESS_RE = re.compile(r"^[^@\s]+@([^@\s]+)$")


def is_host_name(value: str) -> bool:
    """Letters, digits and hyphens in dot-separated labels, 253 characters at most."""
    return len(value) <= 253 and _HOST_NAME_RE.match(value) is not None


def is_domain_name(value: str) -> bool:
    """An accepted domain: ``contoso.com`` or ``*.contoso.com``."""
    return len(value) <= 253 and _DOMAIN_NAME_RE.match(value) is not None


def is_ip_address(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


def address_domain(address: str) -> str | None:
    """The domain of ``local@domain`` (lower-cased, no trailing dot), None if not an address."""
    match = _SMTP_ADDRESS_RE.match(address)
    return match.group(1).lower().rstrip(".") if match else None
