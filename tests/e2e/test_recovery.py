"""Recovering deleted mail, as the admin sees it: a MOVE (a client's "move to folder", or to
Trash) is not a deletion, an expunge is."""

from __future__ import annotations

from imapclient import IMAPClient

MESSAGE = b"From: a@example.org\r\nSubject: %s\r\n\r\nbody\r\n"


def _listing(haven, user) -> list:
    r = haven.cli("recover", "list", user)
    assert r.returncode == 0, r.stderr
    out = r.stdout.decode()
    return [line.split("\t") for line in out.splitlines() if line.strip()]


def test_a_move_is_not_a_delete(haven):
    user, password = haven.new_user("mover")
    for subject in (b"moved", b"moved-here", b"deleted"):
        haven.deliver(user, MESSAGE % subject)
    c = IMAPClient(haven.imap[0], port=haven.imap[1], ssl=False, timeout=15)
    c.login(user, password)
    c.select_folder("INBOX")
    c.move([1], "Archive")  # UID MOVE to another folder
    c.move([2], "INBOX")  # and within the same mailbox (a new UID, the old one expunged)
    c.delete_messages([3])
    c.expunge()
    c.logout()
    listing = _listing(haven, user)
    assert [row[4] for row in listing] == ["deleted"], listing  # only the real deletion
    r = haven.cli("recover", "restore", user, listing[0][0])
    assert r.returncode == 0 and b"restored 1 message" in r.stdout
    c = IMAPClient(haven.imap[0], port=haven.imap[1], ssl=False, timeout=15)
    c.login(user, password)
    c.select_folder("INBOX")
    inbox = sorted(v[b"ENVELOPE"].subject for v in c.fetch(c.search(), ["ENVELOPE"]).values())
    assert inbox == [b"deleted", b"moved-here"]  # restored once, nothing duplicated
    c.select_folder("Archive")
    assert [v[b"ENVELOPE"].subject for v in c.fetch(c.search(), ["ENVELOPE"]).values()] == [b"moved"]
    c.logout()
    r = haven.cli("purge", "--days", "0")
    out = r.stdout
    # removed: the deleted message's restored tombstone and the moves' tombstones; none of them
    # a message that is gone
    assert r.returncode == 0 and b"purged 0 messages" in out, out


def test_a_user_restores_an_event_over_dav_without_the_admin(haven):
    """The admin's `haven recover` and the user's "Deleted events" show one list: an event the
    user deleted over CalDAV is in both, the user copies it back into the calendar (a PUT of
    its text, as Thunderbird and DAVx5 do), and it is gone from both and live again."""
    from tests.gateways.dav.wire import Dav, event

    dav = Dav(haven, *haven.new_user("undo"))
    assert dav.put(dav.calendar + "review.ics", event("e2e-review", summary="Review")).status == 201
    assert dav.delete(dav.calendar + "review.ics").status in (200, 204)
    [row] = [r for r in _listing(haven, dav.user) if r[0].startswith("dav:")]
    assert "e2e-review" in row[4]
    view = dav.coll(".deleted-events")
    [name] = [h for h in dav.etags(view)]
    assert name == view + row[0][4:] + "-review.ics"  # the tombstone id the admin sees, then the href
    text = dav.get(name).text
    assert dav.put(dav.calendar + "restored-by-user.ics", text).status == 201
    assert _listing(haven, dav.user) == []
    assert dav.etags(view) == {}
    assert list(dav.etags(dav.calendar)) == [dav.calendar + "restored-by-user.ics"]
    r = haven.cli("recover", "restore", dav.user, row[0])
    assert r.returncode != 0 and b"not recoverable" in r.stderr  # nothing left for the admin to do
