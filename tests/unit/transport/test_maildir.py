"""Maildir delivery: standard layout, durable rename into new/, no path tricks, de-duplication."""

from __future__ import annotations

import mailbox
import os
import stat
from pathlib import Path

import pytest

from exchsim.transport import maildir

DATA = (b"From: a@contoso.com\r\nTo: Alice@contoso.com\r\nSubject: Hello\r\n"
        b"Message-ID: <1@contoso.com>\r\n\r\nline 1\r\nline 2\r\n")


def test_delivered_message_is_readable_by_mailbox_maildir(tmp_path: Path) -> None:
    root = tmp_path / "mailboxes"
    path = maildir.deliver(root, "Alice@Contoso.COM", DATA, unique="4711-0")
    box_dir = root / "alice@contoso.com"
    assert path.parent == box_dir / "new"
    assert {p.name for p in box_dir.iterdir()} == {"cur", "new", "tmp"}
    assert list((box_dir / "tmp").iterdir()) == []
    assert path.read_bytes() == DATA

    box = mailbox.Maildir(box_dir, create=False)
    [key] = box.keys()
    assert box.get_bytes(key) == DATA
    assert box[key]["Subject"] == "Hello"
    assert box[key].get_subdir() == "new"


def test_file_name_and_permissions(tmp_path: Path) -> None:
    path = maildir.deliver(tmp_path, "bob@contoso.com", DATA, unique="abc")
    seconds, unique, host = path.name.split(".", 2)
    assert seconds.isdigit() and abs(int(seconds) - int(path.stat().st_mtime)) <= 1
    assert unique == "abc"
    assert host and "/" not in host and ":" not in host
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_several_messages_in_one_mailbox(tmp_path: Path) -> None:
    for n in range(3):
        maildir.deliver(tmp_path, "bob@contoso.com", DATA + b"%d\r\n" % n, unique=f"m{n}")
    box = mailbox.Maildir(tmp_path / "bob@contoso.com", create=False)
    assert sorted(box.get_bytes(k) for k in box.iterkeys()) == [
        DATA + b"%d\r\n" % n for n in range(3)
    ]


def test_mailbox_path(tmp_path: Path) -> None:
    assert maildir.mailbox_path(tmp_path, "Bob@Contoso.com") == tmp_path / "bob@contoso.com"
    assert maildir.mailbox_path(tmp_path, "..bob@x") == tmp_path / "..bob@x"


@pytest.mark.parametrize(
    "address",
    ["", ".", "..", "../evil", "a/b", "/etc", "..\0", "a\0b", "x@" + "a" * 300],
)
def test_path_tricks_are_rejected(tmp_path: Path, address: str) -> None:
    root = tmp_path / "root"
    with pytest.raises(ValueError):
        maildir.mailbox_path(root, address)
    with pytest.raises(ValueError):
        maildir.deliver(root, address, DATA, unique="u1")
    with pytest.raises(ValueError):
        maildir.MaildirStore(root).contains(address, "u1")
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # nothing was created anywhere


@pytest.mark.parametrize("unique", ["", "a.b", "a/b", "a:b", "a b", "a\0", "x" * 129])
def test_bad_unique_tokens_are_rejected(tmp_path: Path, unique: str) -> None:
    with pytest.raises(ValueError):
        maildir.deliver(tmp_path, "bob@contoso.com", DATA, unique=unique)
    with pytest.raises(ValueError):
        maildir.MaildirStore(tmp_path).contains("bob@contoso.com", unique)
    assert list(tmp_path.iterdir()) == []


def test_contains_reads_new_and_cur(tmp_path: Path) -> None:
    assert not maildir.MaildirStore(tmp_path).contains("bob@contoso.com", "4711-1")
    assert not (tmp_path / "bob@contoso.com").exists()  # asking creates nothing
    path = maildir.deliver(tmp_path, "bob@contoso.com", DATA, unique="4711-1")
    assert maildir.MaildirStore(tmp_path).contains("BOB@contoso.com", "4711-1")
    assert not maildir.MaildirStore(tmp_path).contains("bob@contoso.com", "4711")  # not a prefix
    assert not maildir.MaildirStore(tmp_path).contains("bob@contoso.com", "4711-10")
    assert not maildir.MaildirStore(tmp_path).contains("bob@contoso.com", "1")  # not a substring
    assert not maildir.MaildirStore(tmp_path).contains("carol@contoso.com", "4711-1")

    # A mail client moved it to cur/ and flagged it seen: still delivered.
    os.rename(path, path.parent.parent / "cur" / (path.name + ":2,S"))
    assert maildir.MaildirStore(tmp_path).contains("bob@contoso.com", "4711-1")
    box = mailbox.Maildir(tmp_path / "bob@contoso.com", create=False)
    [key] = box.keys()
    assert box.get_message(key).get_flags() == "S"


def test_tmp_files_do_not_count_and_failed_writes_leave_no_debris(tmp_path: Path) -> None:
    maildir.deliver(tmp_path, "bob@contoso.com", DATA, unique="first")
    tmp = tmp_path / "bob@contoso.com" / "tmp"
    (tmp / "123.crashed.host").write_bytes(b"partial")
    assert not maildir.MaildirStore(tmp_path).contains("bob@contoso.com", "crashed")
    with pytest.raises(TypeError):
        maildir.deliver(tmp_path, "bob@contoso.com", "not bytes", unique="second")  # type: ignore[arg-type]
    assert [p.name for p in tmp.iterdir()] == ["123.crashed.host"]
    assert not maildir.MaildirStore(tmp_path).contains("bob@contoso.com", "second")


def test_store_batch_writes_each_once_and_remembers_what_is_there(tmp_path: Path) -> None:
    # A message delivered before this store existed (an earlier run) counts as there.
    maildir.deliver(tmp_path, "bob@contoso.com", DATA, unique="old")
    store = maildir.MaildirStore(tmp_path)
    assert store.contains("BOB@contoso.com", "old")
    assert not store.contains("bob@contoso.com", "new1")

    paths = store.store([
        ("bob@contoso.com", DATA + b"1\r\n", "new1"),
        ("Alice@contoso.com", DATA + b"2\r\n", "new1"),  # same token, other mailbox
        ("bob@contoso.com", DATA + b"3\r\n", "new1"),  # repeated inside the batch
        ("bob@contoso.com", DATA + b"4\r\n", "old"),  # already there
        ("bob@contoso.com", DATA + b"5\r\n", "new2"),
    ])
    assert [p is None for p in paths] == [False, False, True, True, False]
    assert paths[0] is not None and paths[0].read_bytes() == DATA + b"1\r\n"
    assert store.contains("bob@contoso.com", "new2")
    bob = mailbox.Maildir(tmp_path / "bob@contoso.com", create=False)
    assert sorted(bob.get_bytes(k) for k in bob.iterkeys()) == sorted(
        [DATA, DATA + b"1\r\n", DATA + b"5\r\n"])
    alice = mailbox.Maildir(tmp_path / "alice@contoso.com", create=False)
    assert [alice.get_bytes(k) for k in alice.iterkeys()] == [DATA + b"2\r\n"]
    # A second store over the same root (a restart) reads the same index from the files.
    again = maildir.MaildirStore(tmp_path)
    assert again.store([("bob@contoso.com", DATA, "new2")]) == [None]


def test_store_recreates_a_maildir_removed_while_running(tmp_path: Path) -> None:
    store = maildir.MaildirStore(tmp_path)
    store.store([("bob@contoso.com", DATA, "a")])
    for sub in ("new", "cur", "tmp"):
        for p in (tmp_path / "bob@contoso.com" / sub).iterdir():
            p.unlink()
        (tmp_path / "bob@contoso.com" / sub).rmdir()
    (tmp_path / "bob@contoso.com").rmdir()
    [path] = store.store([("bob@contoso.com", DATA, "b")])
    assert path is not None and path.read_bytes() == DATA


def test_store_failure_keeps_what_was_written_and_rejects_bad_input(tmp_path: Path) -> None:
    store = maildir.MaildirStore(tmp_path)
    with pytest.raises(TypeError):
        store.store([("bob@contoso.com", DATA, "good"),
                     ("bob@contoso.com", "not bytes", "bad")])  # type: ignore[list-item]
    assert store.contains("bob@contoso.com", "good")
    assert maildir.MaildirStore(tmp_path).contains("bob@contoso.com", "good")
    assert not maildir.MaildirStore(tmp_path).contains("bob@contoso.com", "bad")
    assert list((tmp_path / "bob@contoso.com" / "tmp").iterdir()) == []
    with pytest.raises(ValueError):
        store.store([("../evil", DATA, "x")])
    with pytest.raises(ValueError):
        store.contains("bob@contoso.com", "a.b")
