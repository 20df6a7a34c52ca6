"""Pydantic's validation errors in the config's own words.

``validate`` runs a model on a raw mapping; each error becomes an ``Issue`` whose key path is
the file's (``ReceiveConnectors[2] (Relay).AuthMechanism``, list items named by their label
key), whose value is what the file wrote, and whose message says what is allowed, with a
did-you-mean suggestion for keys and enum values.

Two corrections to pydantic's view: an error in a flag set (AuthMechanism, PermissionGroups)
points at the key, not at an item (a flag set is one value, ``Tls, Integrated``, in
Exchange); and a list's "at least 1 item" error is dropped when it only comes from an item that
failed (the item's own error stands for it: the cascade rule of ``issues.py``, applied inside
one pydantic error list).
"""

from __future__ import annotations

import re
import typing
from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from exchsim.config.issues import (
    FILE_WIDE,
    IssueLog,
    Place,
    did_you_mean,
    key_path,
    show,
)
from exchsim.config.model import ReceiveConnector

__all__ = ["report", "validate"]

# Flag sets: one value in Exchange; an error in one is reported on the key.
_SET_KEYS = frozenset({"AuthMechanism", "PermissionGroups"})
_PATTERN_TEXT = {
    r"^[A-Za-z0-9-]+$": "expected letters, digits and hyphens only (a NetBIOS computer name)",
    r"^[^@\s]+@[^@\s]+$": "expected an SMTP address like alice@contoso.com",
}

_M = TypeVar("_M", bound=BaseModel)


def _inner_model(annotation: object) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in typing.get_args(annotation):
        found = _inner_model(arg)
        if found is not None:
            return found
    return None


def _model_at(model: type[BaseModel], loc: Sequence[str | int]) -> type[BaseModel] | None:
    """The model class that owns the mapping at ``loc`` (for the keys it allows)."""
    current = model
    for part in loc:
        if isinstance(part, int):
            continue
        field = next(
            (f for name, f in current.model_fields.items() if (f.alias or name) == part), None
        )
        if field is None:
            return None
        inner = _inner_model(field.annotation)
        if inner is None:
            return None
        current = inner
    return current


def _keys_of(model: type[BaseModel]) -> list[str]:
    return [field.alias or name for name, field in model.model_fields.items()]


def _article(noun: str) -> str:
    return f"an {noun}" if noun[:1] in "AEIOU" else f"a {noun}"


def _lower_first(text: str) -> str:
    return text[:1].lower() + text[1:] if text else text


def _describe(
    error: Mapping[str, Any], model: type[BaseModel], loc: Sequence[str | int]
) -> tuple[str, str | None]:
    """(message, suggestion) for one pydantic error."""
    kind = str(error.get("type", ""))
    value = error.get("input")
    ctx: Mapping[str, Any] = error.get("ctx") or {}
    msg = str(error.get("msg", ""))
    if kind == "missing":
        return "required key is missing", None
    if kind == "extra_forbidden":
        key = loc[-1] if loc else value
        owner = _model_at(model, list(loc[:-1]))
        allowed = _keys_of(owner) if owner is not None else []
        suggestion = did_you_mean(key, allowed)
        what = _article(owner.__name__) if owner is not None else "this object"
        if suggestion is not None or not allowed:
            return f"unknown key '{key}' of {what}", suggestion
        return f"unknown key '{key}': {what} has the keys {', '.join(allowed)}", None
    if kind in {"enum", "literal_error"}:
        allowed = re.findall(r"'([^']*)'", str(ctx.get("expected", "")))
        return (
            f"{show(value)} is not allowed: expected one of {', '.join(allowed)}",
            did_you_mean(value, allowed),
        )
    if kind in {"bool_parsing", "bool_type"}:
        return f"{show(value)} is not allowed: expected true or false ($true / $false)", None
    if kind in {"int_parsing", "int_type", "int_from_float"}:
        return f"{show(value)} is not allowed: expected a whole number", None
    if kind == "string_type":
        return f"{show(value)} is not allowed: expected a string (quote it)", None
    if kind in {"model_type", "model_attributes_type", "dict_type"}:
        return f"{show(value)} is not allowed: expected a mapping of keys to values", None
    if kind in {"tuple_type", "list_type", "set_type", "frozen_set_type", "iterable_type"}:
        return f"{show(value)} is not allowed: expected a list", None
    if kind == "string_pattern_mismatch":
        pattern = str(ctx.get("pattern", ""))
        return f"{show(value)} is not allowed: {_PATTERN_TEXT.get(pattern, msg)}", None
    bounds = {"greater_than_equal": ("ge", "at least"), "less_than_equal": ("le", "at most"),
              "greater_than": ("gt", "more than"), "less_than": ("lt", "less than")}
    if kind in bounds:
        name, words = bounds[kind]
        return f"{show(value)} is not allowed: must be {words} {ctx.get(name)}", None
    if kind in {"string_too_long", "string_too_short"}:
        limit = ctx.get("max_length", ctx.get("min_length"))
        words = "at most" if kind == "string_too_long" else "at least"
        return f"{show(value)} is not allowed: must have {words} {limit} characters", None
    if kind == "value_error":
        reason = msg.removeprefix("Value error, ")
        return f"{show(value)} is not allowed: {reason}", None
    reason = msg.replace("Input should be", "expected")
    return f"{show(value)} is not allowed: {_lower_first(reason)}", None


def report(
    exc: ValidationError,
    model: type[BaseModel],
    raw: object,
    prefix: str,
    log: IssueLog,
    *,
    order: Place = FILE_WIDE,
) -> None:
    """Every error of ``exc`` as an Issue under ``prefix``, with the file's key path."""
    errors = exc.errors(include_url=False)
    for error in errors:
        loc: list[str | int] = list(error["loc"])
        if error["type"] == "too_short" and any(
            len(other["loc"]) > len(loc) and list(other["loc"][: len(loc)]) == loc
            for other in errors
        ):
            continue  # "at least 1 item" only because an item above failed
        if loc and loc[0] in _SET_KEYS and model is ReceiveConnector:
            loc = loc[:1]
        message, suggestion = _describe(error, model, loc)
        value = None if error["type"] == "missing" else error.get("input")
        if error["type"] == "extra_forbidden":
            value = loc[-1] if loc else value
        log.add(key_path(prefix, raw, loc), value, message, suggestion, order=order)


def validate(
    model: type[_M],
    raw: object,
    prefix: str,
    log: IssueLog | None,
    *,
    order: Place = FILE_WIDE,
) -> _M | None:
    """``model.model_validate(raw)``; every error becomes an Issue under ``prefix`` in ``log``
    (``log=None``: only tell whether ``raw`` is valid)."""
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        if log is not None:
            report(exc, model, raw, prefix, log, order=order)
        return None
