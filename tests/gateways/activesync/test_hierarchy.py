"""FolderSync's view of the folder tree: ServerIds, types, parents, and the changes between two
snapshots (pure functions over store Folder records)."""

from __future__ import annotations

from gateways.activesync.hierarchy import OUTBOX_ID, ROOT, Entry, changes, hierarchy
from store.interfaces import Folder


def folder(fid, name, special=None, kind="mail"):
    return Folder(id=fid, account_id=1, name=name, kind=kind, special_use=special, subscribed=True,
                  uidvalidity=1, uidnext=1, highest_modseq=0)


DEFAULT = [folder(1, "INBOX"), folder(2, "Drafts", "\\Drafts"), folder(3, "Sent", "\\Sent"),
           folder(4, "Trash", "\\Trash"), folder(5, "Junk", "\\Junk"), folder(6, "Archive", "\\Archive")]


def test_types_parents_and_the_outbox():
    tree = {e.server_id: e for e in hierarchy(DEFAULT + [
        folder(7, "Projects"), folder(8, "Projects/2024"), folder(9, "Orphan/child"),
        folder(10, "Old Sent", "\\Sent"), folder(11, "Calendar", kind="calendar")])}
    assert tree["1"] == Entry("1", ROOT, "INBOX", 2)
    assert (tree["2"].type, tree["3"].type, tree["4"].type) == (3, 5, 4)
    assert tree["5"].type == tree["6"].type == 12  # no EAS type for Junk or Archive
    assert tree["8"] == Entry("8", "7", "2024", 12)
    assert tree["9"] == Entry("9", ROOT, "child", 12)  # its level has no folder
    assert tree["10"].type == 12  # a second \Sent is an ordinary folder
    assert tree[OUTBOX_ID].type == 6 and "11" not in tree  # calendars come with part 2


def test_changes_between_snapshots():
    held = {e.server_id: e for e in hierarchy(DEFAULT + [folder(7, "Projects")])}
    now = hierarchy(DEFAULT + [folder(7, "Work"), folder(12, "Work/Sub/Deep"), folder(13, "Work/Sub")])
    adds, updates, deletes = changes(held, [e for e in now if e.server_id != "6"])
    assert [e.server_id for e in adds] == ["13", "12"]  # the parent first
    assert updates == [Entry("7", ROOT, "Work", 12)]  # a rename keeps the ServerId
    assert deletes == ["6"]
    assert changes({e.server_id: e for e in now}, now) == ([], [], [])
