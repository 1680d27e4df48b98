"""ActiveSync devices, sync states and client ids through the store contract, on every engine:
devices keyed by (account, DeviceId), policy keys, wipes, sync states with tens of thousands of
held ids, the SyncKey compare-and-set under concurrent requests, replay, client-id
de-duplication, and what account deletion and the purge remove."""

from __future__ import annotations

import random
import time

import pytest
from twisted.internet import defer

from store import errors
from store.interfaces import (EAS_HIERARCHY, EAS_INITIAL_KEY, EAS_MAX_CACHED_REQUEST, EAS_MAX_RESPONSE,
                              EAS_MAX_SNAPSHOT, INBOX, NewItem, eas_next_sync_key)

PHONE = "ApplF17XK0LZHG7F"
MSG = b"From: a@example.org\r\nTo: phone@example.test\r\nSubject: %d\r\n\r\nbody\r\n"


@pytest.fixture
def account(store, run):
    return run(store.create_account, "phone@example.test", "x", "Phone")


@pytest.fixture
def device(store, run, account):
    return run(store.record_device, account.id, PHONE, device_type="iPhone", user_agent="Apple-iPhone/1",
               protocol_version="16.1")


def start(store, run, account, collection, held=(), **kw):
    """A fresh state of ``collection`` (SyncKey 0 -> the first key); returns the key."""
    key = eas_next_sync_key(EAS_INITIAL_KEY)
    assert run(store.save_sync_state, account.id, PHONE, collection, EAS_INITIAL_KEY, key, 0, held, **kw)
    return key


def test_devices_are_keyed_by_account_and_device_id(store, run, account, device):
    other = run(store.create_account, "other@example.test", "x")
    assert (device.account_id, device.device_id, device.device_type, device.protocol_version) == (
        account.id, PHONE, "iPhone", "16.1")
    assert device.first_seen == device.last_seen > 0 and device.wipe_state == "none"
    assert device.policy_key == device.pending_policy_key == 0
    theirs = run(store.record_device, other.id, PHONE, device_type="SAMSUNG", protocol_version="14.1")
    assert theirs.device_type == "SAMSUNG"
    # the same phone on the other account changed nothing of this one's
    assert run(store.get_device, account.id, PHONE) == device
    again = run(store.record_device, account.id, PHONE, model="iPhone15,2", os="iOS 17.1", user_agent="x" * 300)
    assert (again.device_type, again.model, again.os, again.user_agent) == ("iPhone", "iPhone15,2", "iOS 17.1",
                                                                            "x" * 255)
    assert again.first_seen == device.first_seen and again.last_seen >= device.last_seen
    assert [d.device_id for d in run(store.list_devices, account.id)] == [PHONE]
    assert [(d.account_id, d.device_type) for d in run(store.list_devices)] == [
        (account.id, "iPhone"), (other.id, "SAMSUNG")]
    with pytest.raises(errors.NotFound):
        run(store.get_device, account.id, "NoSuchPhone")
    with pytest.raises(errors.NotFound):
        run(store.record_device, 999999, PHONE)
    for bad in ("", "x" * 129, "tab\there", "nul\x00", "del\x7f"):
        with pytest.raises(errors.InvalidInput):
            run(store.record_device, account.id, bad)
    # DeviceIds are compared exactly: case, trailing blanks and non-ASCII make other devices
    odd = ["applf17xk0lzhg7f", PHONE + " ", "Téléphone 1", "x" * 128]
    for n, device_id in enumerate(odd):
        run(store.record_device, account.id, device_id, device_type=f"T{n}")
    assert {d.device_id: d.device_type for d in run(store.list_devices, account.id)} == {
        PHONE: "iPhone", **{device_id: f"T{n}" for n, device_id in enumerate(odd)}}
    for device_id in odd:
        run(store.delete_device, account.id, device_id)
    run(store.delete_device, other.id, PHONE)
    assert run(store.list_devices, other.id) == [] and run(store.get_device, account.id, PHONE).model == "iPhone15,2"


def test_policy_key_lifecycle(store, run, account, device):
    pending = run(store.issue_policy_key, account.id, PHONE)
    assert 0 < pending <= 0xFFFFFFFF
    assert run(store.get_device, account.id, PHONE).pending_policy_key == pending
    assert run(store.acknowledge_policy_key, account.id, PHONE, pending ^ 1) == 0  # not the one issued
    assert run(store.acknowledge_policy_key, account.id, PHONE, 0) == 0
    final = run(store.acknowledge_policy_key, account.id, PHONE, pending)
    assert 0 < final <= 0xFFFFFFFF
    found = run(store.get_device, account.id, PHONE)
    assert (found.policy_key, found.pending_policy_key) == (final, 0)
    assert run(store.acknowledge_policy_key, account.id, PHONE, pending) == 0  # once only
    # a new Provision: the acknowledged key holds until the new one is acknowledged
    second = run(store.issue_policy_key, account.id, PHONE)
    found = run(store.get_device, account.id, PHONE)
    assert (found.policy_key, found.pending_policy_key) == (final, second)
    keys = {run(store.issue_policy_key, account.id, PHONE) for _ in range(20)}
    assert len(keys) > 15 and 0 not in keys  # random, never 0
    with pytest.raises(errors.NotFound):
        run(store.issue_policy_key, account.id, "Unknown")


def test_wipe_state(store, run, account, device):
    with pytest.raises(errors.InvalidInput):
        run(store.confirm_wipe, account.id, PHONE)
    before = int(time.time())
    run(store.request_wipe, account.id, PHONE)
    found = run(store.get_device, account.id, PHONE)
    assert found.wipe_state == "requested" and found.wipe_requested_at >= before and found.wipe_done_at == 0
    run(store.confirm_wipe, account.id, PHONE)
    done = run(store.get_device, account.id, PHONE)
    assert done.wipe_state == "done" and done.wipe_done_at >= found.wipe_requested_at
    run(store.confirm_wipe, account.id, PHONE)  # a repeated report keeps the first time
    assert run(store.get_device, account.id, PHONE).wipe_done_at == done.wipe_done_at
    run(store.request_wipe, account.id, PHONE)  # asked again: requested again
    assert run(store.get_device, account.id, PHONE).wipe_state == "requested"
    run(store.clear_wipe, account.id, PHONE)
    assert run(store.get_device, account.id, PHONE).wipe_state == "none"


def test_cached_requests_are_kept_up_to_the_cap(store, run, account, device):
    assert run(store.cached_device_request, account.id, PHONE, "ping") is None
    ping, sync = b"\x03\x01j\x00\x00\x0dE" + bytes(range(256)), b"\x03\x01j\x00" + b"S" * 5000
    run(store.cache_device_request, account.id, PHONE, "ping", ping)
    run(store.cache_device_request, account.id, PHONE, "sync", sync)
    assert run(store.cached_device_request, account.id, PHONE, "ping") == ping
    assert run(store.cached_device_request, account.id, PHONE, "sync") == sync
    run(store.cache_device_request, account.id, PHONE, "sync", b"x" * EAS_MAX_CACHED_REQUEST)
    with pytest.raises(errors.TooBig):
        run(store.cache_device_request, account.id, PHONE, "sync", b"x" * (EAS_MAX_CACHED_REQUEST + 1))
    assert run(store.cached_device_request, account.id, PHONE, "sync") == b"x" * EAS_MAX_CACHED_REQUEST
    with pytest.raises(errors.InvalidInput):
        run(store.cache_device_request, account.id, PHONE, "folder", b"x")
    run(store.cache_device_request, account.id, PHONE, "ping", None)
    assert run(store.cached_device_request, account.id, PHONE, "ping") is None


def test_sync_state_round_trip_with_50000_held_ids(store, run, account, device, backstage):
    inbox = run(store.get_folder, account.id, INBOX)
    spread = random.Random(14).sample(range(1, 2_000_000), 50_000)
    key = start(store, run, account, inbox.id, filter_type=3, options={"body": [{"type": 2, "truncation": 51200}]})
    t0 = time.perf_counter()
    new_key = eas_next_sync_key(key)
    assert run(store.save_sync_state, account.id, PHONE, inbox.id, key, new_key, 1234, spread, response=b"resp")
    t1 = time.perf_counter()
    state = run(store.get_sync_state, account.id, PHONE, inbox.id)
    t2 = time.perf_counter()
    assert state.held == tuple(sorted(spread))
    assert (state.collection_id, state.sync_key, state.previous_key, state.modseq) == (inbox.id, new_key, key, 1234)
    assert state.filter_type == 3 and state.options == {"body": [{"type": 2, "truncation": 51200}]}
    assert state.last_response == b"resp"
    size = backstage.scalar("SELECT LENGTH(held) FROM eas_sync_states WHERE collection_id = ?", inbox.id)
    print(f"\n50,000 spread held ids ({store.db.engine}): {size} octets, save {1000 * (t1 - t0):.0f} ms, "
          f"load {1000 * (t2 - t1):.0f} ms")
    assert size < 100_000
    # consecutive UIDs compress to almost nothing; held None keeps them, options and filter too
    third = eas_next_sync_key(new_key)
    assert run(store.save_sync_state, account.id, PHONE, inbox.id, new_key, third, 1300, range(1, 50_001))
    assert backstage.scalar("SELECT LENGTH(held) FROM eas_sync_states WHERE collection_id = ?", inbox.id) < 2000
    fourth = eas_next_sync_key(third)
    assert run(store.save_sync_state, account.id, PHONE, inbox.id, third, fourth, 1301)
    state = run(store.get_sync_state, account.id, PHONE, inbox.id)
    assert state.held == tuple(range(1, 50_001)) and state.filter_type == 3 and state.options["body"]
    assert state.last_response is None
    assert run(store.get_sync_state, account.id, PHONE, inbox.id + 1000) is None


def test_compare_and_set_has_exactly_one_winner(store, run, account, device):
    """Requests carrying the same SyncKey run at once (MariaDB: on several pool connections);
    exactly one advances the state, whatever the order."""
    inbox = run(store.get_folder, account.id, INBOX)
    key = start(store, run, account, inbox.id)
    for round_ in range(5):
        candidates = [f"{key}-{round_}-{i}" for i in range(8)]

        async def race():
            calls = [defer.ensureDeferred(store.save_sync_state(account.id, PHONE, inbox.id, key, k, round_, [i]))
                     for i, k in enumerate(candidates)]
            return await defer.gatherResults(calls)
        won = run(race)
        assert won.count(True) == 1, won
        winner = candidates[won.index(True)]
        state = run(store.get_sync_state, account.id, PHONE, inbox.id)
        assert (state.sync_key, state.previous_key, state.held) == (winner, key, (won.index(True),))
        key = winner
    # a stale key changes nothing
    assert not run(store.save_sync_state, account.id, PHONE, inbox.id, "{stale}1", "{stale}2", 99, [1])
    assert run(store.get_sync_state, account.id, PHONE, inbox.id).sync_key == key


def test_previous_key_and_response_for_replay(store, run, account, device):
    inbox = run(store.get_folder, account.id, INBOX)
    first = start(store, run, account, inbox.id, response=b"first response")
    state = run(store.get_sync_state, account.id, PHONE, inbox.id)
    assert (state.sync_key, state.previous_key, state.last_response) == (first, "0", b"first response")
    second = eas_next_sync_key(first)
    assert second.startswith(first[:34]) and second.endswith("}2") and len(second) <= 64
    assert run(store.save_sync_state, account.id, PHONE, inbox.id, first, second, 7, [1, 2], response=b"R2")
    # the device repeats `first` (it never got R2): the store still knows what to replay
    state = run(store.get_sync_state, account.id, PHONE, inbox.id)
    assert (state.previous_key, state.sync_key, state.last_response) == (first, second, b"R2")
    # ... and the repeat cannot advance the state a second time
    assert not run(store.save_sync_state, account.id, PHONE, inbox.id, first, eas_next_sync_key(second), 8)
    with pytest.raises(errors.TooBig):
        run(store.save_sync_state, account.id, PHONE, inbox.id, second, "{x}3", 8,
            response=b"r" * (EAS_MAX_RESPONSE + 1))
    for bad in ("", "0", second, "k" * 65):
        with pytest.raises(errors.InvalidInput):
            run(store.save_sync_state, account.id, PHONE, inbox.id, second, bad, 8)
    with pytest.raises(errors.InvalidInput):
        run(store.save_sync_state, account.id, PHONE, inbox.id, second, "{x}3", 8, [-1])
    assert run(store.get_sync_state, account.id, PHONE, inbox.id).sync_key == second  # nothing written


def test_next_sync_key():
    first = eas_next_sync_key("0")
    assert first != eas_next_sync_key("0") and first.endswith("}1") and len(first) == 35
    assert eas_next_sync_key(eas_next_sync_key(first)) == first[:-1] + "3"
    assert eas_next_sync_key("garbage").endswith("}1")


def test_key_zero_starts_over(store, run, account, device):
    inbox = run(store.get_folder, account.id, INBOX)
    other = run(store.create_folder, account.id, "Other")
    hierarchy = start(store, run, account, EAS_HIERARCHY, held=[inbox.id, other.id])
    key = start(store, run, account, inbox.id, held=[1, 2, 3], filter_type=2)
    start(store, run, account, other.id, held=[5])
    run(store.remember_client_id, account.id, PHONE, inbox.id, "c1", "1:10")
    run(store.remember_client_id, account.id, PHONE, other.id, "c1", "2:10")
    run(store.remember_client_id, account.id, PHONE, 0, "mail-1", "sent")
    # a collection's start over: its state and client ids are new, the others stay
    again = start(store, run, account, inbox.id)
    state = run(store.get_sync_state, account.id, PHONE, inbox.id)
    assert again != key and (state.sync_key, state.previous_key, state.held, state.filter_type) == (again, "0", (), 0)
    assert run(store.server_id_for_client_id, account.id, PHONE, inbox.id, "c1") is None
    assert run(store.server_id_for_client_id, account.id, PHONE, other.id, "c1") == "2:10"
    assert run(store.get_sync_state, account.id, PHONE, EAS_HIERARCHY).sync_key == hierarchy
    # FolderSync 0: every state of the device goes, SendMail's client ids stay
    start(store, run, account, EAS_HIERARCHY)
    assert run(store.get_sync_state, account.id, PHONE, inbox.id) is None
    assert run(store.get_sync_state, account.id, PHONE, other.id) is None
    assert run(store.server_id_for_client_id, account.id, PHONE, other.id, "c1") is None
    assert run(store.server_id_for_client_id, account.id, PHONE, 0, "mail-1") == "sent"


def test_client_ids_deduplicate_add_and_sendmail(store, run, account, device, backstage):
    other = run(store.create_account, "other@example.test", "x")
    run(store.record_device, other.id, PHONE)
    inbox = run(store.get_folder, account.id, INBOX)
    assert run(store.server_id_for_client_id, account.id, PHONE, inbox.id, "add-1") is None
    assert run(store.remember_client_id, account.id, PHONE, inbox.id, "add-1", "7") == "7"
    # the repeated Add (and a concurrent one that lost) is told the first ServerId
    assert run(store.remember_client_id, account.id, PHONE, inbox.id, "add-1", "8") == "7"
    assert run(store.server_id_for_client_id, account.id, PHONE, inbox.id, "add-1") == "7"
    # ClientIds are exact and per device, account and collection
    assert run(store.server_id_for_client_id, account.id, PHONE, inbox.id, "add-1 ") is None
    assert run(store.server_id_for_client_id, account.id, PHONE, inbox.id, "ADD-1") is None
    assert run(store.server_id_for_client_id, account.id, PHONE, 0, "add-1") is None
    assert run(store.server_id_for_client_id, other.id, PHONE, inbox.id, "add-1") is None
    assert run(store.remember_client_id, other.id, PHONE, 0, "add-1", "sent") == "sent"
    with pytest.raises(errors.InvalidInput):
        run(store.remember_client_id, account.id, PHONE, 0, "", "x")
    with pytest.raises(errors.InvalidInput):
        run(store.remember_client_id, account.id, PHONE, 0, "é" * 128, "x")
    # the purge forgets mappings past their lifetime
    backstage.execute("UPDATE eas_client_ids SET created_at = ? WHERE account_id = ?", 1000, other.id)
    run(store.purge)
    assert run(store.server_id_for_client_id, other.id, PHONE, 0, "add-1") is None
    assert run(store.server_id_for_client_id, account.id, PHONE, inbox.id, "add-1") == "7"


def _rows(backstage, account_id) -> list:
    return [backstage.scalar(f"SELECT COUNT(*) FROM {t} WHERE account_id = ?", account_id)
            for t in ("eas_devices", "eas_sync_states", "eas_client_ids")]


def test_account_deletion_removes_devices_states_and_client_ids(store, run, account, device, backstage):
    other = run(store.create_account, "other@example.test", "x")
    for acct in (account, other):
        run(store.record_device, acct.id, PHONE)
        inbox = run(store.get_folder, acct.id, INBOX)
        key = eas_next_sync_key("0")
        run(store.save_sync_state, acct.id, PHONE, EAS_HIERARCHY, "0", key, 0, [inbox.id])
        run(store.save_sync_state, acct.id, PHONE, inbox.id, "0", key, 0, range(100))
        run(store.remember_client_id, acct.id, PHONE, inbox.id, "c", "1")
    assert _rows(backstage, account.id) == [1, 2, 1]
    run(store.mark_account_deleted, "phone@example.test")  # soft: everything kept
    assert _rows(backstage, account.id) == [1, 2, 1]
    run(store.restore_account, "phone@example.test")
    assert run(store.get_device, account.id, PHONE).device_id == PHONE
    run(store.delete_account, "phone@example.test")
    assert _rows(backstage, account.id) == [0, 0, 0]
    assert _rows(backstage, other.id) == [1, 2, 1]
    run(store.mark_account_deleted, "other@example.test")
    run(store.purge, 0)  # the purge removes a deleted account's the same way
    assert _rows(backstage, other.id) == [0, 0, 0]


def test_deletes_are_found_from_held_ids_after_the_purge(store, run, account, device):
    """The tombstone of an expunged message is gone after the purge; the held ids still show
    the phone holds it, so the next Sync reports it deleted."""
    inbox = run(store.get_folder, account.id, INBOX)
    uids = [run(store.append_message, account.id, inbox.id, MSG % i)[1] for i in range(3)]
    key = start(store, run, account, inbox.id, held=uids)
    run(store.store_flags, account.id, inbox.id, [uids[1]], "add", ["\\Deleted"])
    assert run(store.expunge, account.id, inbox.id) == [uids[1]]
    run(store.purge, 0)
    state = run(store.get_sync_state, account.id, PHONE, inbox.id)
    live = {m.uid for m in run(store.list_messages, inbox.id)}
    assert set(state.held) - live == {uids[1]} and state.sync_key == key


def test_a_purged_folder_takes_its_states_along(store, run, account, device, backstage):
    gone = run(store.create_folder, account.id, "Gone")
    inbox = run(store.get_folder, account.id, INBOX)
    start(store, run, account, gone.id, held=[1])
    start(store, run, account, inbox.id, held=[1])
    run(store.remember_client_id, account.id, PHONE, gone.id, "c", "1")
    run(store.delete_folder, account.id, "Gone")
    assert run(store.get_sync_state, account.id, PHONE, gone.id) is not None  # soft: until the purge
    run(store.purge, 0)
    assert run(store.get_sync_state, account.id, PHONE, gone.id) is None
    assert run(store.get_sync_state, account.id, PHONE, inbox.id) is not None
    assert backstage.count("eas_client_ids") == 0


def test_delta_014_applies_on_an_existing_store(store, run, account, backstage):
    """A store without the ActiveSync tables (as before delta 14) with accounts and mail: the
    deltas add them (14, and 16's column of them), the accounts get devices at once."""
    inbox = run(store.get_folder, account.id, INBOX)
    run(store.append_message, account.id, inbox.id, MSG % 1)
    for table in ("eas_client_ids", "eas_sync_states", "eas_devices"):
        backstage.execute(f"DROP TABLE {table}")
    backstage.execute("DELETE FROM applied_schema_deltas WHERE version IN (14, 16)")
    assert run(store.migrate) == ["014_activesync", "016_activesync_account_wipe"]
    assert run(store.list_devices) == []
    run(store.record_device, account.id, PHONE, device_type="iPhone")
    start(store, run, account, inbox.id, held=[1])
    assert run(store.get_sync_state, account.id, PHONE, inbox.id).held == (1,)
    assert run(store.schema_version)[0] == run(store.schema_version)[1]


def test_a_save_whose_commit_landed_unseen_still_wins(store, run, account, device):
    """The engine retries a transaction whose COMMIT landed before the connection dropped: the
    retry must not find the key moved on (by itself) and call the save lost."""
    inbox = run(store.get_folder, account.id, INBOX)
    key = start(store, run, account, inbox.id)
    store.db.lose_after_commit["save_sync_state"] = 1
    nxt = eas_next_sync_key(key)
    assert run(store.save_sync_state, account.id, PHONE, inbox.id, key, nxt, 5, [1, 2], response=b"R")
    assert store.db.lose_after_commit["save_sync_state"] == 0  # the hook fired: the commit was retried
    state = run(store.get_sync_state, account.id, PHONE, inbox.id)
    assert (state.sync_key, state.previous_key, state.held) == (nxt, key, (1, 2))
    pending = run(store.issue_policy_key, account.id, PHONE)
    store.db.lose_after_commit["acknowledge_policy_key"] = 1
    final = run(store.acknowledge_policy_key, account.id, PHONE, pending)
    assert store.db.lose_after_commit["acknowledge_policy_key"] == 0
    assert final and run(store.get_device, account.id, PHONE).policy_key == final


def test_last_seen_is_written_at_most_once_a_minute(store, run, account, device, backstage):
    now = int(time.time())
    backstage.execute("UPDATE eas_devices SET last_seen = ?", now - 30)
    assert run(store.record_device, account.id, PHONE, device_type="iPhone").last_seen == now - 30
    assert run(store.get_device, account.id, PHONE).last_seen == now - 30  # nothing written
    assert run(store.record_device, account.id, PHONE, os="iOS 18").last_seen >= now  # a change: written
    backstage.execute("UPDATE eas_devices SET last_seen = ?", now - 61)
    assert run(store.record_device, account.id, PHONE).last_seen >= now
    assert run(store.get_device, account.id, PHONE).last_seen >= now
    assert run(store.get_device, account.id, PHONE).first_seen == device.first_seen


def test_a_calendar_is_a_collection_too(store, run, account, device):
    """DAV collections are folders: their states hold dav_items ids, and a purged event is found
    deleted from them as a purged message is."""
    calendar = store.dav.collection(account.id, "Calendar")
    ids = []
    for n in range(3):
        stored, _ = store.dav.put(account.id, calendar.folder.id, NewItem(
            href=f"e{n}.ics", uid=f"E{n}", etag=f'"{n}"', component="VEVENT",
            data="BEGIN:VCALENDAR\r\nEND:VCALENDAR\r\n", dtstart=1000, dtend=2000))
        ids.append(stored.id)
    folders = [f.id for f in run(store.list_folders, account.id, None)]
    hierarchy = start(store, run, account, EAS_HIERARCHY, held=folders)
    key = start(store, run, account, calendar.folder.id, held=ids, filter_type=4)
    store.dav.delete(account.id, calendar.folder.id, "e1.ics")
    run(store.purge, 0)
    state = run(store.get_sync_state, account.id, PHONE, calendar.folder.id)
    live = {i.id for i in run(store.list_dav_items, calendar.folder.id)}
    assert (state.sync_key, state.filter_type) == (key, 4) and set(state.held) - live == {ids[1]}
    assert calendar.folder.id in run(store.get_sync_state, account.id, PHONE, EAS_HIERARCHY).held
    assert run(store.get_sync_state, account.id, PHONE, EAS_HIERARCHY).sync_key == hierarchy


def test_a_phones_adds_in_one_transaction(store, run, account, device, backstage):
    """add_dav_items: new items stored and their ClientIds remembered, a repeated ClientId
    answered without a write, a taken name renamed, a taken UID refused without undoing the rest."""
    calendar = store.dav.collection(account.id, "Calendar")
    fid = calendar.folder.id

    def event(uid, href=None):
        return NewItem(href=href or f"{uid}.ics", uid=uid, etag=f'"{uid}"', component="VEVENT",
                       data=f"BEGIN:VCALENDAR\r\nX-UID:{uid}\r\nEND:VCALENDAR\r\n", dtstart=1000, dtend=2000)
    store.dav.put(account.id, fid, event("other", href="taken.ics"))
    before = run(store.dav_changes, account.id, fid, 0)[0]
    out = run(store.add_dav_items, account.id, PHONE, fid, fid,
              [("c1", event("A")), (None, event("B", href="taken.ics")), ("c3", event("other")), ("c4", event("D"))])
    (a, none_a, ma), (b, none_b, mb), (refused, why, zero), (d, _n, md) = out
    assert None is none_a is none_b and refused is None and "other" in why and zero == 0
    items = {i.uid: i for i in run(store.list_dav_items, fid)}
    assert {items["A"].id, items["B"].id, items["D"].id} == {int(a), int(b), int(d)}
    assert items["B"].href != "taken.ics" and items["B"].href.endswith(".ics")  # given a name of its own
    assert before < ma < mb < md == items["D"].modseq
    assert run(store.server_id_for_client_id, account.id, PHONE, fid, "c4") == d
    assert run(store.server_id_for_client_id, account.id, PHONE, fid, "c3") is None
    again = run(store.add_dav_items, account.id, PHONE, fid, fid, [("c1", event("A2"))])
    assert again == [(a, None, 0)] and "A2" not in {i.uid for i in run(store.list_dav_items, fid)}
    with pytest.raises(errors.NotFound):  # another device's Adds need their device recorded
        run(store.add_dav_items, account.id, "ApplNOBODY", fid, fid, [("x", event("X"))])


def test_concurrent_start_overs_leave_one_state(store, run, account, device):
    """Several SyncKey 0 requests of one collection at once: none fails, and the state left is
    one that a caller was told it saved."""
    inbox = run(store.get_folder, account.id, INBOX)
    keys = [eas_next_sync_key(EAS_INITIAL_KEY) for _ in range(6)]

    async def race():
        return await defer.gatherResults([defer.ensureDeferred(store.save_sync_state(
            account.id, PHONE, inbox.id, EAS_INITIAL_KEY, k, 0, [i])) for i, k in enumerate(keys)])
    won = run(race)
    state = run(store.get_sync_state, account.id, PHONE, inbox.id)
    assert True in won and state.sync_key in [k for k, ok in zip(keys, won) if ok]
    assert state.held == (keys.index(state.sync_key),)


def test_a_snapshot_keeps_what_ids_cannot_tell(store, run, account, device):
    """FolderSync needs the names and parents it sent (a rename keeps the folder id)."""
    inbox = run(store.get_folder, account.id, INBOX)
    entries = {str(inbox.id): ["0", "Inbox", 2], "outbox": ["0", "Outbox", 6], "9": ["0", "Été ☀", 12]}
    key = start(store, run, account, EAS_HIERARCHY, held=[inbox.id, 9], snapshot=entries)
    assert run(store.get_sync_state, account.id, PHONE, EAS_HIERARCHY).snapshot == entries
    nxt = eas_next_sync_key(key)
    assert run(store.save_sync_state, account.id, PHONE, EAS_HIERARCHY, key, nxt, 3)  # None keeps it
    assert run(store.get_sync_state, account.id, PHONE, EAS_HIERARCHY).snapshot == entries
    assert run(store.save_sync_state, account.id, PHONE, EAS_HIERARCHY, nxt, eas_next_sync_key(nxt), 4,
               snapshot={"outbox": ["0", "Outbox", 6]})
    assert run(store.get_sync_state, account.id, PHONE, EAS_HIERARCHY).snapshot == {"outbox": ["0", "Outbox", 6]}
    with pytest.raises(errors.TooBig):
        run(store.save_sync_state, account.id, PHONE, EAS_HIERARCHY, eas_next_sync_key(nxt), "{y}1", 5,
            snapshot={"big": "x" * EAS_MAX_SNAPSHOT})
    start(store, run, account, inbox.id)
    assert run(store.get_sync_state, account.id, PHONE, inbox.id).snapshot is None


def test_adjust_held_ids_keeps_the_keys(store, run, account):
    inbox = run(store.get_folder, account.id, INBOX)
    run(store.record_device, account.id, "ADJUST1", device_type="iPhone")
    assert run(store.adjust_held_ids, account.id, "ADJUST1", inbox.id, add=[5]) is False  # no state yet
    key = eas_next_sync_key("0")
    assert run(store.save_sync_state, account.id, "ADJUST1", inbox.id, "0", key, 7, held=[1, 2, 3])
    assert run(store.adjust_held_ids, account.id, "ADJUST1", inbox.id, add=[9], remove=[2]) is True
    state = run(store.get_sync_state, account.id, "ADJUST1", inbox.id)
    assert (state.held, state.sync_key, state.modseq) == ((1, 3, 9), key, 7)


def test_sync_modseqs_of_every_device(store, run, account):
    inbox = run(store.get_folder, account.id, INBOX)
    other = run(store.create_account, "someone-else@example.test", "x", None)
    for device, modseq in (("DEV-A", 5), ("DEV-B", 9)):
        run(store.record_device, account.id, device, device_type="iPhone")
        assert run(store.save_sync_state, account.id, device, inbox.id, "0", eas_next_sync_key("0"), modseq)
    run(store.record_device, other.id, "DEV-A", device_type="iPhone")
    assert run(store.sync_modseqs, account.id, [inbox.id, 424242]) == {("DEV-A", inbox.id): 5, ("DEV-B", inbox.id): 9}
    assert run(store.sync_modseqs, other.id, [inbox.id]) == {}


def test_account_only_wipe_is_kept_and_cleared(store, run, account):
    run(store.record_device, account.id, "WIPE16", device_type="iPhone", protocol_version="16.1")
    run(store.request_wipe, account.id, "WIPE16", account_only=True)
    device = run(store.get_device, account.id, "WIPE16")
    assert (device.wipe_state, device.wipe_account_only) == ("requested", True)
    run(store.request_wipe, account.id, "WIPE16")  # a whole wipe asked after: no longer account-only
    assert run(store.get_device, account.id, "WIPE16").wipe_account_only is False
    run(store.request_wipe, account.id, "WIPE16", account_only=True)
    run(store.clear_wipe, account.id, "WIPE16")
    device = run(store.get_device, account.id, "WIPE16")
    assert (device.wipe_state, device.wipe_account_only) == ("none", False)
