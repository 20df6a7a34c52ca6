"""The YAML side of a config file: text in, plain Python data out.

A ``yaml.SafeLoader`` with two YAML 1.1 traps removed (``10:00:00`` and ``0755`` stay strings)
and duplicate keys reported instead of the later value silently winning.
"""

from __future__ import annotations

import re
from collections.abc import Hashable
from typing import Any

import yaml

from exchsim.config.issues import IssueLog

__all__ = ["parse_yaml"]

_INT_TAG = "tag:yaml.org,2002:int"
_FLOAT_TAG = "tag:yaml.org,2002:float"


class _Loader(yaml.SafeLoader):
    """SafeLoader with two YAML 1.1 traps removed, and duplicate keys recorded.

    ``10:00:00`` stays a string (YAML 1.1 reads base-60 numbers: 36000) and ``0755`` stays a
    string (octal); a key given twice in one mapping is reported instead of the last one
    silently winning.
    """

    duplicates: list[tuple[str, int, int]]

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Hashable, Any]:
        seen: set[str] = set()
        for key_node, _value_node in node.value:
            if isinstance(key_node, yaml.ScalarNode) and key_node.tag != "tag:yaml.org,2002:merge":
                if key_node.value in seen:
                    mark = key_node.start_mark
                    self.duplicates.append((key_node.value, mark.line + 1, mark.column + 1))
                seen.add(key_node.value)
        return super().construct_mapping(node, deep=deep)


_Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag not in (_INT_TAG, _FLOAT_TAG)]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(
    _INT_TAG,
    re.compile(r"^(?:[-+]?(?:0|[1-9][0-9_]*)|0x[0-9a-fA-F_]+)$"),
    list("-+0123456789"),
)
_Loader.add_implicit_resolver(
    _FLOAT_TAG,
    re.compile(
        r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
        |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
        |[-+]?\.(?:inf|Inf|INF)
        |\.(?:nan|NaN|NAN))$""",
        re.X,
    ),
    list("-+0123456789."),
)


def parse_yaml(text: str, log: IssueLog) -> object:
    """The document in ``text``; a syntax error or a duplicate key becomes a file-wide issue
    (after a syntax error the result is None)."""
    loader = _Loader(text)
    loader.duplicates = []
    try:
        data = loader.get_single_data()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        what = " ".join(part for part in (exc.context, exc.problem) if part)
        log.add("", None, f"YAML syntax error{where}: {what or 'not valid YAML'}")
        return None
    except yaml.YAMLError as exc:
        log.add("", None, f"YAML syntax error: {exc}")
        return None
    finally:
        loader.dispose()
    for key, line, column in loader.duplicates:
        log.add(
            "",
            key,
            f"duplicate key '{key}' at line {line}, column {column}: "
            "a key may appear once per mapping (the later value would silently win)",
        )
    return data
