"""Self-service recovery over IMAP: "Recovered Items" as a client sees it (imapclient, the
library behind many Python mail tools, and raw transcripts for what it does not expose), on a
real ``haven serve`` on both engines."""

from __future__ import annotations

import hashlib
import threading
import time

import pytest
from imapclient import IMAPClient
from imapclient.exceptions import IMAPClientError

from tests.conftest import run_on_reactor
from tests.gateways.imap.wire import Wire

MESSAGE = (b"From: a@example.org\r\nTo: user@example.test\r\nSubject: %s\r\n"
           b"Message-ID: <%s@example.org>\r\n\r\nthe body of %s\r\n")


def message(subject: bytes) -> bytes:
    return MESSAGE % (subject, subject, subject)


def client(haven, user, password) -> IMAPClient:
    c = IMAPClient(haven.imap[0], port=haven.imap[1], ssl=False, timeout=15)
    c.login(user, password)
    return c


def subjects(c, folder) -> list:
    c.select_folder(folder)
    return sorted(v[b"ENVELOPE"].subject for v in c.fetch(c.search(), ["ENVELOPE"]).values())


def deleted_from_inbox(server, name: str, subjects_: list):
    """A new account with ``subjects_`` delivered and then deleted from INBOX (STORE \\Deleted,
    EXPUNGE); returns ``(user, password, a logged-in client)``."""
    user, password = server.new_user(name)
    for s in subjects_:
        server.deliver(user, message(s))
    c = client(server, user, password)
    c.select_folder("INBOX")
    c.delete_messages(c.search())
    c.expunge()
    return user, password, c


def login_wire(haven, user, password) -> Wire:
    w = Wire(haven.imap)
    assert w.cmd(f'LOGIN "{user}" "{password}"')[-1].split()[1] == b"OK"
    return w


def test_recover_a_deleted_message_with_a_client(haven):
    user, password = haven.new_user("recover")
    for s in (b"keep", b"oops", b"archived", b"old"):
        haven.deliver(user, message(s))
    c = client(haven, user, password)
    c.select_folder("INBOX")
    uids = {v[b"ENVELOPE"].subject: u for u, v in c.fetch(c.search(), ["ENVELOPE"]).items()}
    c.add_flags([uids[b"oops"]], [b"$label1", b"\\Flagged"])
    c.move([uids[b"archived"]], "Archive")  # a move: not recoverable
    c.delete_messages([uids[b"oops"], uids[b"old"]])  # "delete" + expunge: recoverable
    c.expunge()
    names = {name: flags for flags, _d, name in c.list_folders()}
    assert "Recovered Items" in names and "Recovered Items/INBOX" in names
    assert "Recovered Items/Archive" not in names  # nothing was deleted from Archive
    assert b"\\HasChildren" in names["Recovered Items"]
    assert not any(f in names["Recovered Items"] for f in (b"\\Trash", b"\\Junk", b"\\Noselect"))
    # shown to clients that list subscribed folders only
    assert "Recovered Items/INBOX" in [name for _f, _d, name in c.list_sub_folders()]
    st = c.folder_status("Recovered Items/INBOX", ["MESSAGES", "UIDNEXT", "UIDVALIDITY", "UNSEEN"])
    assert st[b"MESSAGES"] == 2 and st[b"UNSEEN"] == 2 and st[b"UIDNEXT"] > 2
    assert subjects(c, "Recovered Items") == [b"old", b"oops"]
    info = c.select_folder("Recovered Items/INBOX")
    assert info[b"EXISTS"] == 2 and b"READ-WRITE" in info
    got = c.fetch(c.search(["SUBJECT", "oops"]), ["FLAGS", "BODY.PEEK[]", "RFC822.SIZE"])
    [(vuid, data)] = got.items()
    assert data[b"BODY[]"].endswith(message(b"oops"))  # with the trace fields delivery added
    assert {b"$label1", b"\\Flagged"} <= set(data[b"FLAGS"])
    # COPY out restores it into INBOX, with its flags (not \Deleted), and it leaves the view
    c.unselect_folder()
    c.select_folder("Recovered Items/INBOX")
    c.copy([vuid], "INBOX")
    c.noop()
    assert subjects(c, "Recovered Items/INBOX") == [b"old"]
    c.select_folder("INBOX")
    restored = {v[b"ENVELOPE"].subject: v for v in c.fetch(c.search(), ["ENVELOPE", "FLAGS"]).values()}
    assert set(restored) == {b"keep", b"oops"}
    assert set(restored[b"oops"][b"FLAGS"]) - {b"\\Recent"} == {b"$label1", b"\\Flagged"}
    # MOVE out (a client's drag and drop) restores into another folder
    c.select_folder("Recovered Items")
    [old] = c.search(["SUBJECT", "old"])
    c.move([old], "Archive")
    assert subjects(c, "Archive") == [b"archived", b"old"]
    assert subjects(c, "Recovered Items") == []
    c.logout()
    r = haven.cli("recover", "list", user)
    assert r.returncode == 0 and r.stdout.strip() == b"", r.stdout  # nothing left to recover


def test_expunge_in_recovered_items_removes_for_good(haven):
    user, password, c = deleted_from_inbox(haven, "purger", [b"secret", b"other"])
    c.select_folder("Recovered Items/INBOX")
    [secret] = c.search(["SUBJECT", "secret"])
    [other] = c.search(["SUBJECT", "other"])
    c.remove_flags([other], [b"\\Deleted"])  # they came with \Deleted from INBOX
    c.expunge()  # only the one still flagged \Deleted goes
    assert subjects(c, "Recovered Items/INBOX") == [b"other"]
    c.logout()
    listing = haven.cli("recover", "list", user).stdout
    assert b"other" in listing and b"secret" not in listing


def test_recovered_items_refuses_what_it_cannot_do(haven):
    user, password = haven.new_user("refuser")
    haven.deliver(user, message(b"one"))
    w = login_wire(haven, user, password)
    for command in ('CREATE "Recovered Items/New"', 'DELETE "Recovered Items"',
                    'RENAME "Recovered Items" "Elsewhere"', 'RENAME INBOX "Recovered Items/INBOX2"'):
        last = w.cmd(command)[-1]
        assert b" NO [CANNOT]" in last, (command, last)
    raw = message(b"x")
    last = w.cmd(b'APPEND "Recovered Items" {%d+}\r\n%s' % (len(raw), raw))  # LITERAL+
    assert b"NO [CANNOT]" in last[-1], last
    w.cmd("SELECT INBOX")
    assert b"NO [CANNOT]" in w.cmd('COPY 1 "Recovered Items"')[-1]
    assert b"NO [CANNOT]" in w.cmd('MOVE 1 "Recovered Items"')[-1]
    w.cmd("STORE 1 +FLAGS (\\Deleted)")
    w.cmd("EXPUNGE")
    lines = w.cmd("SELECT \"Recovered Items\" (CONDSTORE)")
    assert any(b"[NOMODSEQ]" in line for line in lines) and not any(b"HIGHESTMODSEQ" in line for line in lines)
    assert lines[-1].split()[1] == b"OK"
    assert b" BAD " in w.cmd("FETCH 1 (MODSEQ)")[-1]
    assert b" BAD " in w.cmd("FETCH 1 FLAGS (CHANGEDSINCE 1)")[-1]
    assert b" BAD " in w.cmd("STORE 1 (UNCHANGEDSINCE 5) +FLAGS (\\Seen)")[-1]
    assert b" BAD " in w.cmd("SEARCH MODSEQ 1")[-1]
    fetched = w.cmd("FETCH 1 (FLAGS)")  # CONDSTORE is on, yet no MODSEQ here
    assert b"FLAGS" in fetched[0] and b"MODSEQ" not in fetched[0] and fetched[-1].split()[1] == b"OK"
    status = w.cmd('STATUS "Recovered Items" (MESSAGES HIGHESTMODSEQ)')
    assert b"MESSAGES 1 HIGHESTMODSEQ 0" in status[0], status
    w.cmd("LOGOUT")


def test_idle_in_recovered_items_sees_a_delete_elsewhere(haven):
    user, password = haven.new_user("idler")
    haven.deliver(user, message(b"first"))
    watcher = client(haven, user, password)
    watcher.select_folder("Recovered Items")
    watcher.idle()
    other = client(haven, user, password)
    other.select_folder("INBOX")
    other.delete_messages(other.search())
    other.expunge()
    deadline = time.time() + 10
    seen = []
    while time.time() < deadline and not any(r[1] == b"EXISTS" for r in seen):
        seen += watcher.idle_check(timeout=1)
    watcher.idle_done()
    assert (1, b"EXISTS") in seen, seen
    # a restore by the other session is reported as an expunge here
    other.select_folder("Recovered Items")
    other.move(other.search(), "INBOX")
    watcher.noop()
    assert watcher.search() == []
    watcher.logout()
    other.logout()


def test_uids_ascend_and_views_agree(haven):
    user, password = haven.new_user("orderly")
    for n in range(6):
        haven.deliver(user, message(b"m%d" % n))
    c = client(haven, user, password)
    c.create_folder("Work/2024")
    c.select_folder("INBOX")
    uids = c.search()
    c.move(uids[3:], "Work/2024")
    c.delete_messages(uids[:2])
    c.expunge()
    c.select_folder("Recovered Items")
    first = c.search()
    c.select_folder("Work/2024")
    c.delete_messages(c.search())
    c.expunge()
    names = [name for _f, _d, name in c.list_folders("Recovered Items/*")]
    assert names == ["Recovered Items/INBOX", "Recovered Items/Work", "Recovered Items/Work/2024"], names
    c.select_folder("Recovered Items")
    everything = c.search()
    assert everything[:2] == first and min(everything[2:]) > max(first)
    c.select_folder("Recovered Items/Work/2024")
    work = c.search()
    assert set(work) == set(everything[2:])
    assert subjects(c, "Recovered Items/Work/2024") == [b"m3", b"m4", b"m5"]
    assert subjects(c, "Recovered Items/Work") == []  # selectable, nothing deleted from Work itself
    c.logout()


def test_switched_off_or_renamed(haven_factory):
    engine = "sqlite"  # configuration only: the same on either engine
    off = haven_factory(engine, **{"imap.recovered_items": ""})
    _user, _password, c = deleted_from_inbox(off, "nobin", [b"gone"])
    assert not any("Recovered" in name for _f, _d, name in c.list_folders())
    with pytest.raises(IMAPClientError):
        c.select_folder("Recovered Items")
    c.logout()
    named = haven_factory(engine, **{"imap.recovered_items": "Gelöschte Elemente"})
    _user, _password, c = deleted_from_inbox(named, "german", [b"weg"])
    assert "Gelöschte Elemente/INBOX" in [name for _f, _d, name in c.list_folders()]  # modified UTF-7 on the wire
    assert subjects(c, "Gelöschte Elemente/INBOX") == [b"weg"]
    c.logout()


def test_a_real_folder_of_that_name_wins(haven):
    user, password = haven.new_user("legacy")
    haven.deliver(user, message(b"mine"))
    # made before the recovery mailboxes existed (a client cannot make one now: CREATE is NO)
    store = haven.admin_store()
    account = run_on_reactor(store.get_account, user)
    run_on_reactor(store.create_folder, account.id, "Recovered Items")
    c = client(haven, user, password)
    c.select_folder("INBOX")
    c.move(c.search(), "Recovered Items")
    assert subjects(c, "Recovered Items") == [b"mine"]  # the user's own folder, untouched
    names = [name for _f, _d, name in c.list_folders()]
    assert names.count("Recovered Items") == 1 and "Recovered Items/INBOX" not in names
    c.logout()


def test_restore_while_deliveries_go_on(haven):
    """A client restoring in a loop while LMTP delivers: nothing lost, nothing doubled."""
    user, password, c = deleted_from_inbox(haven, "busy", [b"d%d" % n for n in range(20)])
    stop = threading.Event()

    def deliver():
        n = 100
        while not stop.is_set():
            haven.deliver(user, message(b"d%d" % n))
            n += 1
    t = threading.Thread(target=deliver)
    t.start()
    try:
        c.select_folder("Recovered Items")
        for uid in c.search():
            c.move([uid], "INBOX")
    finally:
        stop.set()
        t.join()
    c.select_folder("INBOX")
    got = [v[b"BODY[]"] for v in c.fetch(c.search(), ["BODY.PEEK[]"]).values()]
    digests = [hashlib.sha256(b).hexdigest() for b in got]
    assert len(digests) == len(set(digests))  # nothing doubled
    for n in range(20):  # every restored one is there, once
        assert sum(1 for b in got if b.endswith(message(b"d%d" % n))) == 1, n
    assert subjects(c, "Recovered Items") == []
    c.logout()
