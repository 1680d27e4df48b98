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
