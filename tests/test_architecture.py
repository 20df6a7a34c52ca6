"""The layers of docs/architecture.md, checked on every module's imports.

config -> policy -> smtp core -> (smtp adapter | transport | tls | logs) -> daemon -> cli:
a module imports only from its own layer or the ones before it. Besides:
- aiosmtpd is known only to the I/O edge: smtp/adapter.py (sessions) and smtp/sink.py (the
  lab's internet, a plain aiosmtpd server);
- the policy core and the session core do no I/O: no asyncio, socket, ssl, sqlite3, selectors
  or aiosmtpd imports;
- transport/ never imports the session adapter, and the adapter never imports transport/;
- only the queue layer (transport/queue.py, queuefile.py, queuesql.py) touches SQLite: no other
  module imports sqlite3, calls a connection's execute / executemany / executescript or holds
  a string that is an SQL statement.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "exchsim"

SMTP_CORE = {"protocol", "actions", "commands", "auth", "certauth", "message", "wire",
             "proxyheader"}
PURE_TLS = {"directtrust", "validation"}  # pure: over bytes and values passed in, no I/O
NO_IO = {"asyncio", "socket", "ssl", "sqlite3", "selectors", "aiosmtpd", "OpenSSL"}
AIOSMTPD_ALLOWED = {"exchsim.smtp.adapter", "exchsim.smtp.sink"}
QUEUE_LAYER = {"exchsim.transport.queue", "exchsim.transport.queuefile",
               "exchsim.transport.queuesql"}
ONLY_QUEUE = "only the queue layer (transport/queue.py, queuefile.py, queuesql.py) touches SQLite"
SQL_CALLS = {"execute", "executemany", "executescript"}
# A string that starts as an SQL statement does (the keyword in capitals, as this code base
# writes SQL), e.g. "UPDATE messages SET ...", "SELECT 1 FROM ...", "PRAGMA user_version".
SQL_TEXT = re.compile(r"\s*(?:SELECT|INSERT|UPDATE|DELETE|REPLACE|CREATE|ALTER|DROP|PRAGMA|"
                      r"VACUUM|SAVEPOINT|RELEASE|ROLLBACK|BEGIN|COMMIT|WITH)\s+\S")


def layer(module: str) -> int:
    parts = module.split(".")
    top = parts[1] if len(parts) > 1 else ""
    leaf = parts[2] if len(parts) > 2 else ""
    if module in ("exchsim", "exchsim.clock"):
        return 0
    if top == "config":
        return 1
    if top == "policy" or (top == "tls" and leaf in PURE_TLS):
        return 2
    if top == "smtp" and leaf in SMTP_CORE:
        return 3
    if top in ("smtp", "transport", "tls", "logs"):
        return 4
    if top in ("daemon", "allocator", "reload", "services", "labpieces"):
        return 5
    if top in ("cli", "pkicli", "queuecli", "sinkcli", "trackingcli", "healthcli", "__main__"):
        return 6
    raise AssertionError(f"{module} is in no layer: add it to tests/test_architecture.py")


def modules() -> list[tuple[str, Path]]:
    out = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE.parent).with_suffix("")
        name = ".".join(p for p in rel.parts if p != "__init__")
        out.append((name, path))
    return out


def imports(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
            # ``from exchsim.smtp import commands`` imports the module exchsim.smtp.commands
            found += [(node.lineno, f"{node.module}.{alias.name}") for alias in node.names
                      if node.module.startswith("exchsim") and _is_module(node.module, alias.name)]
    return found


def sql_uses(path: Path) -> list[tuple[int, str]]:
    """Where a module calls a connection's execute* or holds SQL text: (line, what)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                and node.func.attr in SQL_CALLS):
            found.append((node.lineno, f"calls .{node.func.attr}()"))
        elif (isinstance(node, ast.Constant) and isinstance(node.value, str)
              and SQL_TEXT.match(node.value)):
            found.append((node.lineno, f"holds the SQL {node.value[:40]!r}"))
    return found


def _is_module(package: str, name: str) -> bool:
    base = PACKAGE.parent.joinpath(*package.split("."))
    return (base / f"{name}.py").exists() or (base / name / "__init__.py").exists()


def violations(name: str, path: Path) -> list[str]:
    own = layer(name)
    problems = []
    for line, target in imports(path):
        shown = path.relative_to(PACKAGE.parent) if path.is_relative_to(PACKAGE.parent) else path
        where = f"{shown}:{line} imports {target}"
        root = target.split(".")[0]
        if root == "aiosmtpd" and name not in AIOSMTPD_ALLOWED:
            problems.append(f"{where}: only {sorted(AIOSMTPD_ALLOWED)} may know aiosmtpd")
        if root in NO_IO and own <= 3:
            problems.append(f"{where}: layer {own} does no I/O")
        if root == "sqlite3" and name not in QUEUE_LAYER:
            problems.append(f"{where}: {ONLY_QUEUE}")
        if root != "exchsim":
            continue
        if target in ("exchsim.smtp", "exchsim.transport", "exchsim.policy", "exchsim.config",
                      "exchsim.tls", "exchsim.logs"):
            continue  # the package itself; its modules are checked one by one above
        if layer(target) > own:
            problems.append(f"{where}: layer {own} may not import layer {layer(target)}")
        if name.startswith("exchsim.transport") and target == "exchsim.smtp.adapter":
            problems.append(f"{where}: the transport gets messages, never the session")
        if name == "exchsim.smtp.adapter" and target.startswith("exchsim.transport"):
            problems.append(f"{where}: the adapter hands messages to a MessageHandler")
    if name not in QUEUE_LAYER:
        shown = path.relative_to(PACKAGE.parent) if path.is_relative_to(PACKAGE.parent) else path
        problems += [f"{shown}:{line} {what}: {ONLY_QUEUE}; make it a named method there"
                     for line, what in sql_uses(path)]
    return problems


@pytest.mark.parametrize(("name", "path"), modules(), ids=[m for m, _ in modules()])
def test_module_respects_the_layers(name: str, path: Path) -> None:
    assert violations(name, path) == []


def test_the_checker_catches_a_wrong_import(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("import asyncio\nfrom exchsim.daemon import LabDaemon\n"
                   "from aiosmtpd.smtp import SMTP\n", encoding="utf-8")
    problems = violations("exchsim.policy.bad", bad)
    assert len(problems) == 4, problems  # asyncio, daemon (layer 5), aiosmtpd twice


def test_the_checker_catches_sql_outside_the_queue_layer(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text(
        "import sqlite3\n"
        "async def suspend(queue, internal_id):\n"
        "    await queue.write(lambda conn: conn.execute(\n"
        "        'UPDATE messages SET suspended = 1 WHERE internal_id = ?', (internal_id,)))\n"
        "    moment = 0\n"
        "    await queue.write(lambda c: c.executemany(\n"
        "        f'UPDATE messages SET next_attempt_at = {moment}', []))\n",
        encoding="utf-8")
    problems = violations("exchsim.transport.queueadmin", bad)
    # sqlite3; execute and its SQL; executemany and the f-string's SQL part
    assert len(problems) == 5, problems
    assert violations("exchsim.transport.queuesql", bad) == []
    prose = tmp_path / "prose.py"
    prose.write_text("TEXT = 'Select a connector'\nREPLY = 'UPDATE: done'\n", encoding="utf-8")
    assert violations("exchsim.transport.queueadmin", prose) == []


def test_no_module_is_over_600_lines() -> None:
    long = {name: n for name, path in modules()
            if (n := len(path.read_text(encoding="utf-8").splitlines())) > 600}
    assert long == {}
