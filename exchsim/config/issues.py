"""The problems of a config file, as data: ``Issue``, the ``IssueLog`` that collects them, and
the ``ConfigError`` that carries them out.

An issue is structured: the file, the key path (``Servers[0] (EX01).Fqdn``), the value as the
file wrote it, the message, a did-you-mean suggestion, and its place in the file (``order``:
the top-level section's position in ``TOP_LEVEL_KEYS`` and the item's index in it). Issues are
printed in the order of the file's sections, and in the order they were found within one
place; the place is given by whoever finds the issue, never parsed back out of the key path.

Cascade suppression: one rule
-----------------------------
A mistake is reported once, where it is. Every validation step says what failed
(``IssueLog.fail(subject)``: an object or one key of it), and every issue says which subjects
it reads (``needs``). **An issue whose needs include a subject that failed, a key of a subject
that failed, or an object one of whose keys failed, is not reported**: its cause already is.
Checks between objects (conflicts, references, ADPermissions) are therefore written as if every
object were valid and name what they read; the log drops what would only repeat a mistake.

The subjects in use (names compare case-insensitively):

* ``("ServerName", name)``: a ``Servers`` entry of that name cannot be used (a reference to the
  name is then not reported as unknown);
* ``("Server", name, key)``: a usable server's Fqdn or Address has the wrong shape;
* ``("ReceiveConnector", "SERVER\\Name", key)``: a connector's key did not validate (the
  connector was validated without it, so that the rules that do not read it still run);
* ``("Organization", "NetBIOSName")``: the NetBIOS name cannot be known.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

__all__ = [
    "TOP_LEVEL_KEYS",
    "ConfigError",
    "Finding",
    "Issue",
    "IssueLog",
    "Subject",
    "did_you_mean",
    "key_path",
    "label",
    "place",
    "show",
]

TOP_LEVEL_KEYS: tuple[str, ...] = (
    "Organization",
    "Servers",
    "ReceiveConnectors",
    "ADPermissions",
    "Lab",
    "SendConnectors",
    "Dns",
    "EdgeSubscriptions",
)

#: Something that can fail validation: an object kind and its name, and optionally a key.
Subject = tuple[str, ...]

#: Where an issue sorts: (section index in TOP_LEVEL_KEYS, item index); (-1, 0) is file-wide.
Place = tuple[int, int]
FILE_WIDE: Place = (-1, 0)

# Where a list item is named after one of its keys in key paths: ``Servers[0] (EX01)``.
_LABEL_KEYS = {
    "Servers": "Name",
    "ReceiveConnectors": "Name",
    "SendConnectors": "Name",
    "ADPermissions": "Identity",
    "AcceptedDomains": "DomainName",
    "Mailboxes": "PrimarySmtpAddress",
    "EdgeSubscriptions": "Server",
}


def place(section: str, index: int | None = None) -> Place:
    """The sort place of an issue in top-level ``section`` (at item ``index``, if any)."""
    return TOP_LEVEL_KEYS.index(section), -1 if index is None else index


@dataclass(frozen=True, slots=True)
class Issue:
    """One problem in a config file.

    ``message`` says what is wrong and what is allowed; ``suggestion`` is the closest allowed
    name (a key, enum value, server, connector identity, right or principal), printed as
    ``did you mean '...'?``. ``order`` is where it sorts (see ``place``).
    """

    file: str
    key_path: str
    value: object
    message: str
    suggestion: str | None = None
    order: Place = field(default=FILE_WIDE, compare=False)

    def __str__(self) -> str:
        text = f"{self.file}: {self.key_path}: {self.message}" if self.key_path else (
            f"{self.file}: {self.message}"
        )
        if self.suggestion is not None:
            text += f"; did you mean '{self.suggestion}'?"
        return text


@dataclass(frozen=True, slots=True)
class Finding:
    """An issue found by a pure function, before it meets the log (which knows what failed)."""

    key_path: str
    value: object
    message: str
    suggestion: str | None = None
    order: Place = FILE_WIDE
    needs: tuple[Subject, ...] = ()


class ConfigError(Exception):
    """Every problem found in one config file; ``str()`` gives one issue per line."""

    issues: tuple[Issue, ...]

    def __init__(self, issues: Iterable[Issue]) -> None:
        self.issues = tuple(issues)
        super().__init__("\n".join(str(issue) for issue in self.issues))

    def __str__(self) -> str:
        return "\n".join(str(issue) for issue in self.issues)


class IssueLog:
    """The issues of one file in the order found, and the subjects that failed validation."""

    def __init__(self, file: str) -> None:
        self.file = file
        self.items: list[Issue] = []
        self._failed: set[Subject] = set()

    def fail(self, *subject: str) -> None:
        """Record that ``subject`` (an object, or one key of it) failed validation."""
        self._failed.add(_norm(subject))

    def failed(self, *subject: str) -> bool:
        """``subject``, an object containing it or a key of it failed validation."""
        wanted = _norm(subject)
        return any(
            wanted[: len(gone)] == gone or gone[: len(wanted)] == wanted for gone in self._failed
        )

    def add(
        self,
        key_path: str,
        value: object,
        message: str,
        suggestion: str | None = None,
        *,
        order: Place = FILE_WIDE,
        needs: Iterable[Subject] = (),
    ) -> None:
        """Record an issue, unless one of its ``needs`` failed (the module docstring's rule)."""
        if any(self.failed(*subject) for subject in needs):
            return
        issue = Issue(self.file, key_path, value, message, suggestion, order)
        if issue not in self.items:
            self.items.append(issue)

    def report(self, findings: Iterable[Finding]) -> None:
        """Record findings as issues (each under the rule of ``add``)."""
        for f in findings:
            self.add(
                f.key_path, f.value, f.message, f.suggestion, order=f.order, needs=f.needs
            )

    def in_file_order(self) -> list[Issue]:
        """The issues by section and item (stable: found order within one place)."""
        return sorted(self.items, key=lambda issue: issue.order)


def _norm(subject: Sequence[str]) -> Subject:
    return tuple(part.lower() for part in subject)


def show(value: object) -> str:
    """A value as the file wrote it: strings quoted, lists in brackets, YAML's true/null."""
    if isinstance(value, str):
        return f"'{value}'"
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(show(v) for v in value) + "]"
    if isinstance(value, set | frozenset):
        return "[" + ", ".join(sorted(show(v) for v in value)) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {show(v)}" for k, v in value.items()) + "}"
    return str(value)


def did_you_mean(word: object, candidates: Iterable[str]) -> str | None:
    """The allowed name closest to ``word`` (case-insensitive), if any is close enough."""
    if not isinstance(word, str) or not word:
        return None
    by_lower: dict[str, str] = {}
    for candidate in candidates:
        by_lower.setdefault(candidate.lower(), candidate)
    matches = difflib.get_close_matches(word.lower(), list(by_lower), n=1, cutoff=0.6)
    return by_lower[matches[0]] if matches else None


def label(item: object, key: str) -> str:
    """`` (EX01)`` for an item of list ``key`` named by its label key, else ``""``."""
    if isinstance(item, Mapping):
        value = item.get(_LABEL_KEYS.get(key, ""))
        if isinstance(value, str | int | float) and not isinstance(value, bool):
            return f" ({value})"
    return ""


def key_path(prefix: str, raw: object, loc: Sequence[str | int]) -> str:
    """``Organization.Mailboxes[1] (bob@contoso.com).Server`` for a pydantic ``loc``."""
    path = prefix
    current: object = raw
    parent_key = ""
    for part in loc:
        if isinstance(part, int):
            item: object = None
            if isinstance(current, list | tuple) and 0 <= part < len(current):
                item = current[part]
            path += f"[{part}]{label(item, parent_key)}"
            current = item
        elif isinstance(current, Mapping) or current is None:
            path = f"{path}.{part}" if path else part
            current = current.get(part) if isinstance(current, Mapping) else None
            parent_key = part
        # else: a union member's tag (``int``, ``function-before[...]``): not a key of the file.
    return path
