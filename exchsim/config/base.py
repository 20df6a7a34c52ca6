"""The building blocks of the config's models: the base object and the typed values.

``ExchangeObject`` (frozen, unknown keys are errors, Exchange's names as aliases), the value
types shared by every object (``Bool`` accepting ``$true``, ``ByteSize``, ``Limit``,
``TimeSpan``, case-insensitive enums) and the field metadata ``Bounds`` and ``Shape`` with the
helpers that read it. ``model.py`` (the organization) and ``sendconnector.py`` (send connectors
and the lab's DNS) build on them; ``model.py`` re-exports them.
"""

from __future__ import annotations

import datetime
import enum
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, PlainSerializer

from exchsim.config.capabilities import (
    DomainCapabilities,
    format_domain_capabilities,
    parse_domain_capabilities,
    secure_domain,
)
from exchsim.config.enums import AuthMechanism, PermissionGroup, TransportRole
from exchsim.config.syntax import (
    Binding,
    IPRange,
    format_byte_size,
    format_flags,
    format_ip_range,
    format_timespan,
    is_ip_address,
    parse_binding,
    parse_byte_size,
    parse_ip_range,
    parse_limit,
    parse_timespan,
)

MB = 1024 * 1024
MAX_INT32 = 2_147_483_647


@dataclass(frozen=True, slots=True)
class Bounds:
    """Field metadata: the lowest and highest value exchange.md §3.1 allows (``None`` passes)."""

    low: int | datetime.timedelta
    high: int | datetime.timedelta


@dataclass(frozen=True, slots=True)
class Shape:
    """Field metadata: ``test(value)`` must hold; otherwise the value is not allowed and the
    issue says ``expected <expected>``."""

    test: Callable[[str], bool]
    expected: str


def metadata_of(model: type[BaseModel], name: str, kind: type[Any]) -> Any | None:
    """The first metadata object of type ``kind`` on field ``name`` of ``model``."""
    return next((m for m in model.model_fields[name].metadata if isinstance(m, kind)), None)


def serializer_of(model: type[BaseModel], name: str) -> Callable[[Any], Any] | None:
    """The ``PlainSerializer`` function of field ``name``, if its type has one."""
    found = metadata_of(model, name, PlainSerializer)
    return None if found is None else found.func


def out_of_bounds(obj: BaseModel) -> Iterator[tuple[str, Any, Bounds]]:
    """(field name, value, bounds) of every bounded field whose value lies outside its bounds,
    counts and sizes first, then timespans, each in model order."""
    found: list[tuple[str, Any, Bounds]] = []
    for name in type(obj).model_fields:
        bounds = metadata_of(type(obj), name, Bounds)
        value = getattr(obj, name)
        if bounds is not None and value is not None and not bounds.low <= value <= bounds.high:
            found.append((name, value, bounds))
    found.sort(key=lambda item: isinstance(item[1], datetime.timedelta))
    yield from found


def misshapen(obj: BaseModel) -> Iterator[tuple[str, Any, Shape]]:
    """(field name, value, shape) of every field whose value fails its ``Shape``, model order."""
    for name in type(obj).model_fields:
        shape = metadata_of(type(obj), name, Shape)
        value = getattr(obj, name)
        if shape is not None and isinstance(value, str) and not shape.test(value):
            yield name, value, shape


def _split_list(value: Any) -> Any:
    """Exchange prints multi-valued parameters as ``a, b``; accept that or a YAML list."""
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


def _enum_ci(enum_type: type[enum.StrEnum]) -> BeforeValidator:
    """PowerShell enum values are case-insensitive: ``tls`` is ``Tls``."""
    by_lower = {member.value.lower(): member.value for member in enum_type}

    def convert(value: Any) -> Any:
        if isinstance(value, str):
            return by_lower.get(value.strip().lower(), value)
        return value

    return BeforeValidator(convert)


def _enum_set_ci(enum_type: type[enum.StrEnum]) -> BeforeValidator:
    """A flag set: a list or ``a, b``, case-insensitive."""
    single = _enum_ci(enum_type).func

    def convert(value: Any) -> Any:
        value = _split_list(value)
        if isinstance(value, list | tuple | set | frozenset):
            # A list, not a set: pydantic then reports bad items in the order the file wrote
            # them, and an unhashable item is an error, not a crash.
            return [single(v) for v in value]  # type: ignore[call-arg]
        return value

    return BeforeValidator(convert)


def _bool_ps(value: Any) -> Any:
    """Accept ``$true``/``$false`` as PowerShell writes them."""
    if isinstance(value, str) and value.strip().lower() in {"$true", "$false"}:
        return value.strip().lower() == "$true"
    return value


def _ip_address(value: str) -> str:
    if not is_ip_address(value):
        raise ValueError("expected an IP address like 127.0.10.250")
    return value


ByteSize = Annotated[int, BeforeValidator(parse_byte_size), PlainSerializer(format_byte_size)]
Limit = Annotated[
    int | None,
    BeforeValidator(parse_limit),
    PlainSerializer(lambda v: "Unlimited" if v is None else v),
]
TimeSpan = Annotated[
    datetime.timedelta, BeforeValidator(parse_timespan), PlainSerializer(format_timespan)
]
#: A ByteQuantifiedSize or ``Unlimited`` (None).
ByteLimit = Annotated[
    int | None,
    BeforeValidator(lambda v: parse_limit(v, parse_byte_size)),
    PlainSerializer(lambda v: "Unlimited" if v is None else format_byte_size(v)),
]
RemoteRange = Annotated[IPRange, BeforeValidator(parse_ip_range), PlainSerializer(format_ip_range)]
BindingValue = Annotated[Binding, BeforeValidator(parse_binding), PlainSerializer(Binding.format)]
Bool = Annotated[bool, BeforeValidator(_bool_ps)]
AuthMechanisms = Annotated[
    frozenset[AuthMechanism],
    _enum_set_ci(AuthMechanism),
    PlainSerializer(lambda v: format_flags(v, AuthMechanism)),
]
PermissionGroups = Annotated[
    frozenset[PermissionGroup],
    _enum_set_ci(PermissionGroup),
    PlainSerializer(lambda v: format_flags(v, PermissionGroup)),
]
DomainCapabilitiesValue = Annotated[
    DomainCapabilities,
    BeforeValidator(parse_domain_capabilities),
    PlainSerializer(format_domain_capabilities),
]


SecureDomain = Annotated[str, AfterValidator(secure_domain)]
#: An IP address, checked by the type (``Lab.InternetSink.Address``).
IPAddress = Annotated[str, AfterValidator(_ip_address)]
Role = Annotated[TransportRole, _enum_ci(TransportRole)]


class ExchangeObject(BaseModel):
    """Base of every config object: frozen, unknown keys are errors, Exchange's names."""

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        populate_by_name=True,
        arbitrary_types_allowed=True,
        validate_default=False,
    )
