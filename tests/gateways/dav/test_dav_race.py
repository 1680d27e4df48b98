"""A CalDAV write racing another writer (ActiveSync, another node): the If-Match Radicale checked
holds in the store's transaction, so the loser gets 412 and nothing of it is stored.  The plugin
is driven as Radicale drives it for a PUT (discover the path, then upload), with the other
writer's change in between; the store is real (both engines)."""

from __future__ import annotations

import pytest
from radicale import item as radicale_item

from gateways.common.davitems import item_for
from gateways.dav import storage as dav_storage
from store import errors

EVENT = ("BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//t//t//EN\r\nBEGIN:VEVENT\r\nUID:race\r\n"
         "DTSTAMP:20260101T000000Z\r\n"
         "DTSTART:20260301T100000Z\r\nDTEND:20260301T110000Z\r\nSUMMARY:{}\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n")


def raced(store, run, name: str, conditional: bool = True):
    """A stored event read by a CalDAV request as Radicale reads it before a write (its path
    discovered), then edited by another writer: ``(account, folder id, the plugin, the item's
    collection path, the first version)``."""
    account = run(store.create_account, f"{name}@example.test", "pw", name.title())
    cal = store.dav.collection(account.id, "Calendar")
    coll = f"{account.address}/Calendar"
    first = item_for(EVENT.format("first"), "calendar", coll, "race.ics")
    store.dav.put(account.id, cal.folder.id, first)
    plugin = dav_storage.Storage.__new__(dav_storage.Storage)
    plugin.dav, plugin.max_occurrences, plugin.views = store.dav, 10000, {}
    dav_storage.begin_request(account.address, account.id, conditional=conditional)
    seen = list(plugin.discover(f"/{coll}/race.ics"))  # what Radicale reads and checks If-Match against
    assert [i.etag for i in seen] == [first.etag]
    return account, cal.folder.id, plugin, coll, first


@pytest.mark.parametrize("conditional", [True, False])
def test_put_loses_to_a_write_between_check_and_store(store, run, conditional):
    account, folder_id, plugin, coll, first = raced(store, run, "rita", conditional)
    # another writer (a phone over ActiveSync) edits the event now
    theirs = item_for(EVENT.format("the phone's"), "calendar", coll, "race.ics")
    run(store.put_dav_item, account.id, folder_id, theirs, first.etag)
    collection = next(plugin.discover(f"/{coll}/"))
    mine = radicale_item.Item(text=EVENT.format("mine"), collection_path=coll)
    if conditional:
        with pytest.raises(ValueError):
            collection.upload("race.ics", mine)
        assert dav_storage.failure.precondition  # the WSGI wrapper answers 412
        assert "the phone's" in store.dav.items(folder_id, ["race.ics"])[0].data
    else:  # no If-Match: the client asked to overwrite whatever is there
        collection.upload("race.ics", mine)
        assert "mine" in store.dav.items(folder_id, ["race.ics"])[0].data
    dav_storage.begin_request(None, None)


def test_delete_loses_to_an_edit_between_check_and_store(store, run):
    account, folder_id, plugin, coll, _first = raced(store, run, "dora")
    run(store.put_dav_item, account.id, folder_id, item_for(EVENT.format("edited"), "calendar", coll, "race.ics"))
    collection = next(plugin.discover(f"/{coll}/"))
    with pytest.raises(ValueError):
        collection.delete("race.ics")
    assert store.dav.items(folder_id, ["race.ics"])  # still there
    with pytest.raises(errors.NotFound):
        store.dav.delete(account.id, folder_id, "gone.ics")
    dav_storage.begin_request(None, None)
