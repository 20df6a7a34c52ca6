"""Every citation of the project's documentation points at a section that exists.

Code, comments, error messages, tests, configs and the README cite the documents in ``docs/``
as ``exchange.md`` followed by a section sign and number (``security.md``, ``architecture.md``
likewise). A citation is checked against the headings of the cited document: a heading that
starts with that number must exist. A section sign with no document named before it on the same
line is refused outside ``docs/`` (inside a document it means the document itself); one after
``RFC <n>`` cites the RFC and is not checked. Citations of the background documents that are
not in the repository (the old reference and design files) are refused: a clone must explain
itself.

This file spells the section sign as an escape so that it holds no citation of its own.
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
SCANNED = ("exchsim", "tests", "bench", "configs", "docs", "README.md")
SUFFIXES = {".py", ".md", ".yaml", ".yml", ".toml", ".txt", ".cfg", ".ini", ".json"}
SIGN = "\u00a7"

# Files that still carry old-form citations because another change is rewriting them.
# THIS SET MUST BE EMPTY once that rewrite has landed; test_not_yet_rewritten_is_honest fails
# for every entry that no longer needs to be here.
NOT_YET_REWRITTEN: frozenset[str] = frozenset()

SECTION = re.compile(SIGN + r"(\d+(?:\.\d+)*)")
ANCHOR = re.compile(r"(?:docs/)?(exchange|security|architecture)\.md|\bRFC ?\d+")
HEADING = re.compile(r"^#{1,6}\s+(\d+(?:\.\d+)*)\.?(?:\s|$)")
OLD_FORMS = (
    (re.compile(r"\breference\s+(?:" + SIGN + r"|\d)", re.IGNORECASE),
     "cite exchange.md and its section"),
    (re.compile(r"exchange-transport\.md"), "cite docs/exchange.md"),
    (re.compile(r"\bpeers\.md"), "cite docs/security.md (or docs/exchange.md)"),
    (re.compile(r"ARCHITECTURE\.md"), "cite docs/architecture.md or docs/exchange.md"),
    (re.compile(r"\.\./shared"), "point into docs/"),
    (re.compile(r"\bSTYLE\.md"), "not in the repository"),
    (re.compile(r"\bROADMAP\b"), "not in the repository"),
)


def sections(markdown: str) -> set[str]:
    """The section numbers a document's headings carry (code blocks skipped)."""
    found: set[str] = set()
    in_code = False
    for line in markdown.splitlines():
        if line.lstrip().startswith("```"):
            in_code = not in_code
            continue
        match = None if in_code else HEADING.match(line)
        if match:
            found.add(match.group(1))
    return found


def load_docs() -> dict[str, set[str]]:
    return {path.name: sections(path.read_text(encoding="utf-8")) for path in DOCS.glob("*.md")}


def problems(name: str, text: str, docs: dict[str, set[str]]) -> list[str]:
    """``file:line: what is wrong`` for every bad citation in ``text`` (the file ``name``)."""
    own_doc = name[len("docs/"):] if name.startswith("docs/") and name.count("/") == 1 else None
    out: list[str] = []
    for number, line in enumerate(text.splitlines(), start=1):
        where = f"{name}:{number}"
        for pattern, hint in OLD_FORMS:
            if pattern.search(line):
                out.append(f"{where}: cites a document outside the repository ({hint}): "
                           f"{line.strip()}")
        for cited in SECTION.finditer(line):
            anchors = list(ANCHOR.finditer(line, 0, cited.start()))
            if anchors:
                doc = anchors[-1].group(1)
                if doc is None:
                    continue  # RFC <n> <section>: not ours
                doc += ".md"
            elif own_doc is not None:
                doc = own_doc
            else:
                out.append(f"{where}: {cited.group(0)} names no document (write exchange.md "
                           f"{cited.group(0)}, or the document it cites)")
                continue
            if doc not in docs:
                out.append(f"{where}: {doc} {cited.group(0)}: docs/{doc} does not exist")
            elif cited.group(1) not in docs[doc]:
                out.append(f"{where}: {doc} {cited.group(0)}: docs/{doc} has no heading "
                           f"numbered {cited.group(1)}")
    return out


def scanned_files() -> list[Path]:
    files: list[Path] = []
    for entry in SCANNED:
        path = ROOT / entry
        if path.is_file():
            files.append(path)
            continue
        files.extend(p for p in sorted(path.rglob("*"))
                     if p.is_file() and p.suffix in SUFFIXES and "__pycache__" not in p.parts)
    return [p for p in files if p != Path(__file__).resolve()]


def relative(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def test_every_cited_section_exists() -> None:
    docs = load_docs()
    found: list[str] = []
    for path in scanned_files():
        if relative(path) in NOT_YET_REWRITTEN:
            continue
        found.extend(problems(relative(path), path.read_text(encoding="utf-8"), docs))
    assert not found, "bad documentation citations:\n" + "\n".join(found)


def test_not_yet_rewritten_is_honest() -> None:
    """Each file the check skips exists and still has an old-form citation; else drop it."""
    docs = load_docs()
    stale = [name for name in sorted(NOT_YET_REWRITTEN)
             if not (ROOT / name).is_file()
             or not problems(name, (ROOT / name).read_text(encoding="utf-8"), docs)]
    assert not stale, f"remove from NOT_YET_REWRITTEN (nothing left to rewrite): {stale}"


def test_the_documents_exist_and_are_numbered() -> None:
    docs = load_docs()
    assert {"1.1", "3.5", "9.13", "12.1"} <= docs["exchange.md"]
    assert {"1", "2", "3", "4"} <= docs["security.md"]


def test_the_check_finds_each_kind_of_bad_citation() -> None:
    docs = {"exchange.md": {"1", "3", "3.5"}, "security.md": {"1"}}
    good = (f"connector choice (exchange.md {SIGN}3.5, {SIGN}3), smuggling (security.md {SIGN}1)\n"
            f"RFC 5321 {SIGN}4.1.1.4 is an RFC\n")
    assert problems("exchsim/x.py", good, docs) == []
    bad = {
        f"see exchange.md {SIGN}3.6": "has no heading numbered 3.6",
        f"exchange.md {SIGN}3.5 and {SIGN}7": "has no heading numbered 7",
        f"the rule of {SIGN}3.5": "names no document",
        f"architecture.md {SIGN}2": "docs/architecture.md does not exist",
        f"reference {SIGN}3.5": "outside the repository",
        "(reference " "4.1 item 3)": "outside the repository",  # split: no citation here
        "# Reference " "4.1 item 3.": "outside the repository",
        "..""/shared/design/ARCHITECTURE.md": "outside the repository",  # split, as above
        f"peers.md {SIGN}4.1": "outside the repository",
    }
    for line, words in bad.items():
        found = problems("exchsim/x.py", f"ok\n{line}\n", docs)
        assert found and all(f.startswith("exchsim/x.py:2: ") for f in found), (line, found)
        assert any(words in f for f in found), (line, found)
    # Inside a document, a bare section sign cites the document itself.
    assert problems("docs/exchange.md", f"see {SIGN}3.5\n", docs) == []
    assert problems("docs/exchange.md", f"see {SIGN}4\n", docs) != []
