"""The account lifecycle through the store contract, on every engine: active, disabled, deleted
(data kept, refused everywhere, purged after softdelete_lifetime), restored."""

from __future__ import annotations

import time

import pytest

from store import errors
from store.interfaces import INBOX

MSG = b"From: a@example.org\r\nTo: life@example.test\r\nSubject: kept\r\n\r\nbody\r\n"


@pytest.fixture
def account(store, run):
    return run(store.create_account, "life@example.test", "x", "Life")


def summary(store, run, address="life@example.test"):
    [found] = [s for s in run(store.list_account_summaries) if s.account.address == address]
    return found


def deliver(store, run, address):
    async def go():
        delivery = store.begin_delivery("a@example.org")
        await delivery.add_recipient(address)
        return await delivery.commit(MSG)
    return run(go)


def test_disable_and_enable(store, run, account):
    assert summary(store, run).state == "active"
    assert run(store.disable_account, "Life@Example.test") is True
    assert run(store.disable_account, "life@example.test") is False  # already
    assert summary(store, run).state == "disabled"
    assert run(store.get_credentials, "life@example.test").disabled
    with pytest.raises(errors.NotFound):
        run(store.resolve_recipient, "life@example.test")
    assert run(store.enable_account, "life@example.test") is True
    assert not run(store.get_credentials, "life@example.test").disabled
    assert run(store.resolve_recipient, "life+x@example.test").account_id == account.id
    with pytest.raises(errors.NotFound):
        run(store.disable_account, "nobody@example.test")


def test_deleted_account_is_refused_kept_and_restored(store, run, account):
    run(store.add_alias, "alias@example.test", "life@example.test")
    deliver(store, run, "life@example.test")
    before = time.time()
    purge_at = run(store.mark_account_deleted, "life@example.test")
    assert before + 30 * 86400 - 1 <= purge_at <= time.time() + 30 * 86400  # softdelete_lifetime = 30
    found = summary(store, run)
    assert (found.state, found.purge_at, found.used_messages) == ("deleted", purge_at, 1)
    for address in ("life@example.test", "alias@example.test", "life+tag@example.test"):
        with pytest.raises(errors.NotFound):
            run(store.resolve_recipient, address)
        with pytest.raises(errors.NotFound):
            deliver(store, run, address)
    assert run(store.get_credentials, "alias@example.test").disabled
    with pytest.raises(errors.InvalidInput):
        run(store.mark_account_deleted, "life@example.test")
    with pytest.raises(errors.InvalidInput, match="user restore"):
        run(store.enable_account, "life@example.test")
    with pytest.raises(errors.InvalidInput, match="user restore"):
        run(store.disable_account, "life@example.test")
    with pytest.raises(errors.Exists, match="not yet purged"):
        run(store.create_account, "life@example.test", "y")
    assert run(store.purge).accounts == 0  # within the lifetime

    run(store.restore_account, "life@example.test")
    assert summary(store, run).state == "active"
    inbox = run(store.get_folder, account.id, INBOX)
    assert len(run(store.list_messages, inbox.id)) == 1
    assert run(store.resolve_recipient, "alias@example.test").account_id == account.id
    with pytest.raises(errors.InvalidInput):
        run(store.restore_account, "life@example.test")


def test_restore_of_a_disabled_then_deleted_account_makes_it_active(store, run, account):
    run(store.disable_account, "life@example.test")
    run(store.mark_account_deleted, "life@example.test")
    run(store.restore_account, "life@example.test")
    assert summary(store, run).state == "active"
    assert not run(store.get_credentials, "life@example.test").disabled


def test_delivery_accepted_before_the_deletion_is_refused_at_commit(store, run, account):
    async def go():
        delivery = store.begin_delivery("a@example.org")
        await delivery.add_recipient("life@example.test")
        await store.mark_account_deleted("life@example.test")
        return await delivery.commit(MSG)
    [result] = run(go)
    assert isinstance(result.error, errors.NotFound)


def test_purge_removes_deleted_accounts_past_the_lifetime(store, backstage, run, account):
    other = run(store.create_account, "stays@example.test", "x")
    deliver(store, run, "life@example.test")
    deliver(store, run, "stays@example.test")
    run(store.mark_account_deleted, "life@example.test")
    assert run(store.purge, 1).accounts == 0  # deleted today: one day has not passed
    report = run(store.purge, 0)
    assert report.accounts == 1
    with pytest.raises(errors.NotFound):
        run(store.get_account, "life@example.test")
    assert [s.account.address for s in run(store.list_account_summaries)] == ["stays@example.test"]
    assert backstage.scalar("SELECT COUNT(*) FROM folders WHERE account_id = ?", account.id) == 0
    # the blob is shared with the other account's copy: it stays
    assert backstage.count("blobs") == 1 and summary(store, run, "stays@example.test").used_messages == 1
    # the address is free again, and a new account there starts empty
    again = run(store.create_account, "life@example.test", "y")
    assert again.id != account.id and summary(store, run).used_messages == 0
    assert other.id != again.id


def test_purge_after_the_configured_lifetime(store, backstage, run, account):
    store.inline_blob_size = 0  # the message is a blob file, which goes with the account
    deliver(store, run, "life@example.test")
    assert backstage.blob_files() == 1
    run(store.mark_account_deleted, "life@example.test")
    backstage.execute("UPDATE accounts SET deleted_at = ? WHERE id = ?", int(time.time()) - 29 * 86400, account.id)
    assert run(store.purge).accounts == 0
    backstage.execute("UPDATE accounts SET deleted_at = ? WHERE id = ?", int(time.time()) - 31 * 86400, account.id)
    report = run(store.purge)
    assert (report.accounts, report.blobs) == (1, 1)
    assert run(store.list_account_summaries) == []
    assert (backstage.count("blobs"), backstage.blob_files()) == (0, 0)


def test_a_lifetime_of_zero_keeps_deleted_accounts(store, backstage, run, account):
    store.softdelete_lifetime = 0
    assert run(store.mark_account_deleted, "life@example.test") == 0
    assert (summary(store, run).state, summary(store, run).purge_at) == ("deleted", 0)
    backstage.execute("UPDATE accounts SET deleted_at = 1000 WHERE id = ?", account.id)
    assert run(store.purge).accounts == 0
    assert summary(store, run).state == "deleted"


def test_delete_now_removes_a_deleted_account(store, run, account):
    run(store.mark_account_deleted, "life@example.test")
    run(store.delete_account, "life@example.test")
    assert run(store.list_account_summaries) == []


def test_last_login_is_written_at_most_once_an_hour(store, backstage, run, account):
    assert summary(store, run).last_login == 0
    run(store.record_login, account.id)
    first = summary(store, run).last_login
    assert abs(first - time.time()) < 5
    assert run(store.get_credentials, "life@example.test").last_login == first
    backstage.execute("UPDATE accounts SET last_login = ? WHERE id = ?", first - 600, account.id)
    run(store.record_login, account.id)  # ten minutes ago is recent enough: no write
    assert summary(store, run).last_login == first - 600
    backstage.execute("UPDATE accounts SET last_login = ? WHERE id = ?", first - 7200, account.id)
    run(store.record_login, account.id)
    assert summary(store, run).last_login >= first


def test_summaries_show_usage_of_live_messages(store, run, account):
    run(store.create_account, "empty@example.test", "x")
    deliver(store, run, "life@example.test")
    deliver(store, run, "life@example.test")
    found = summary(store, run)
    assert (found.used_messages, found.account.name) == (2, "Life")
    assert found.used_bytes == run(store.get_quota, account.id).used_bytes > 0
    assert summary(store, run, "empty@example.test").used_bytes == 0


def test_delta_012_upgrades_a_store_with_accounts(store, backstage, run, account):
    """A store at delta 11 (as before): its accounts come out active, never logged in, and keep
    their disabled flag."""
    run(store.create_account, "off@example.test", "x")
    run(store.disable_account, "off@example.test")
    backstage.execute("DELETE FROM applied_schema_deltas WHERE version = 12")
    backstage.execute("ALTER TABLE accounts DROP COLUMN deleted_at")
    backstage.execute("ALTER TABLE accounts DROP COLUMN last_login")
    assert run(store.migrate) == ["012_account_lifecycle"]
    assert [(s.account.address, s.state, s.last_login) for s in run(store.list_account_summaries)] == [
        ("life@example.test", "active", 0), ("off@example.test", "disabled", 0)]


def test_no_alias_for_a_deleted_account(store, run, account):
    run(store.mark_account_deleted, "life@example.test")
    with pytest.raises(errors.InvalidInput, match="user restore"):
        run(store.add_alias, "late@example.test", "life@example.test")
    run(store.restore_account, "life@example.test")
    run(store.add_alias, "late@example.test", "life@example.test")
    assert run(store.resolve_recipient, "late@example.test").address == "life@example.test"


def test_addresses_with_local_part(store, run, account):
    run(store.create_account, "twin@one.example", "x", None)
    run(store.create_account, "twin@two.example", "x", None)
    run(store.create_account, "a_b@one.example", "x", None)
    run(store.create_account, "axb@one.example", "x", None)
    assert run(store.addresses_with_local_part, "life") == ["life@example.test"]
    assert run(store.addresses_with_local_part, "LIFE ") == ["life@example.test"]
    assert run(store.addresses_with_local_part, "twin") == ["twin@one.example", "twin@two.example"]
    assert run(store.addresses_with_local_part, "a_b") == ["a_b@one.example"]  # _ is no wildcard
    assert run(store.addresses_with_local_part, "a%") == []
    for bad in ("", "life@example.test", "a b", "x" * 65):
        assert run(store.addresses_with_local_part, bad) == []
    run(store.mark_account_deleted, "life@example.test")
    assert run(store.addresses_with_local_part, "life") == []
