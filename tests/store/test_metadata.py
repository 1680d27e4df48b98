"""The store's METADATA entries (RFC 5464), both engines: per folder and server view, depth,
removal, the limits (all or nothing), and entries going with a deleted folder or account."""

from __future__ import annotations

import pytest

from auth.passwords import hash_password
from store import errors
from store.interfaces import METADATA_MAX_ENTRIES, METADATA_MAX_VALUE


@pytest.fixture
def account(store, run):
    return run(store.create_account, "meta@example.test", hash_password("pw"))


def test_folder_and_server_entries_are_apart(store, run, account):
    inbox = run(store.get_folder, account.id, "INBOX")
    run(store.set_metadata, account.id, inbox.id, {"/private/comment": b"inbox"})
    run(store.set_metadata, account.id, None, {"/private/comment": b"server"})
    assert run(store.get_metadata, account.id, inbox.id, ["/private/comment"]) == [("/private/comment", b"inbox")]
    assert run(store.get_metadata, account.id, None, ["/private/comment"]) == [("/private/comment", b"server")]
    run(store.set_metadata, account.id, inbox.id, {"/private/comment": b"changed", "/private/other": b"x"})
    run(store.set_metadata, account.id, inbox.id, {"/private/comment": b"changed"})  # the same value again
    assert run(store.get_metadata, account.id, inbox.id, ["/private/comment", "/private/other"]) == \
        [("/private/comment", b"changed"), ("/private/other", b"x")]
    run(store.set_metadata, account.id, inbox.id, {"/private/other": None})
    assert run(store.get_metadata, account.id, inbox.id, ["/private/other"]) == []


def test_depth(store, run, account):
    values = {"/private/a": b"1", "/private/a/b": b"2", "/private/a/b/c": b"3", "/private/a_b": b"x",
              "/private/a%": b"y"}
    run(store.set_metadata, account.id, None, values)
    names = lambda depth: [n for n, _ in run(store.get_metadata, account.id, None, ["/private/a"], depth)]
    assert names("0") == ["/private/a"]
    assert names("1") == ["/private/a", "/private/a/b"]
    assert names("infinity") == ["/private/a", "/private/a/b", "/private/a/b/c"]  # not a_b, a% (LIKE escaped)
    with pytest.raises(errors.InvalidInput):
        run(store.get_metadata, account.id, None, ["/private/a"], "2")


def test_limits_are_all_or_nothing(store, run, account):
    with pytest.raises(errors.TooBig):
        run(store.set_metadata, account.id, None, {"/private/ok": b"v", "/private/big": b"x" * (METADATA_MAX_VALUE + 1)})
    with pytest.raises(errors.InvalidInput):
        run(store.set_metadata, account.id, None, {f"/private/n{i}": b"v" for i in range(METADATA_MAX_ENTRIES + 1)})
    assert run(store.get_metadata, account.id, None, ["/private"], "infinity") == []


def test_entries_go_with_their_folder_and_account(store, run, account):
    folder = run(store.create_folder, account.id, "Projects")
    run(store.set_metadata, account.id, folder.id, {"/private/comment": b"work"})
    run(store.rename_folder, account.id, "Projects", "Work")
    assert run(store.get_metadata, account.id, folder.id, ["/private/comment"]) == [("/private/comment", b"work")]
    run(store.delete_folder, account.id, "Work")
    assert run(store.get_metadata, account.id, folder.id, ["/private/comment"]) == []
    run(store.set_metadata, account.id, None, {"/private/theme": b"dark"})
    run(store.delete_account, "meta@example.test")
    other = run(store.create_account, "meta@example.test", hash_password("pw"))
    assert run(store.get_metadata, other.id, None, ["/private/theme"]) == []
