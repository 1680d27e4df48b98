"""The extensions as a client library speaks them: imapclient (and the imaplib it wraps, for the
commands imapclient has no method for), on real sockets, both engines.  The transcripts of each
extension live beside their code's tests; these check that a real client's framing and parsing
agree with ours."""

from __future__ import annotations

import imaplib

import pytest
from imapclient import IMAPClient

for _name in ("GETMETADATA", "SETMETADATA"):  # imaplib checks a command's name against its table
    imaplib.Commands.setdefault(_name, ("AUTH", "SELECTED"))

MAIL = b"From: Ann <ann@example.org>\r\nSubject: %s\r\nMessage-ID: <%s@example.org>\r\n%s\r\nbody %s\r\n"


@pytest.fixture
def client(haven):
    user = haven.new_user()
    c = IMAPClient(haven.imap[0], port=haven.imap[1], ssl=False, timeout=15)
    c.login(*user)
    yield c
    c.logout()


def _raw(c: IMAPClient, name: str, *args, untagged: str):
    """An imaplib command imapclient has no method for; its untagged ``untagged`` responses."""
    typ, data = c._imap._simple_command(name, *args)
    assert typ == "OK", (typ, data)
    return c._imap._untagged_response(typ, data, untagged)[1]


def test_objectid_with_imapclient(client):
    c = client
    c.append("INBOX", MAIL % (b"one", b"m1", b"", b"1"))
    c.append("INBOX", MAIL % (b"Re: one", b"m2", b"In-Reply-To: <m1@example.org>\r\nReferences: <m1@example.org>\r\n",
                              b"2"))
    c.create_folder("Projects")
    status = c.folder_status("INBOX", ["MAILBOXID"])
    assert status[b"MAILBOXID"][0].startswith(b"F")
    c.select_folder("INBOX")
    got = c.fetch([1, 2], ["EMAILID", "THREADID"])
    assert got[1][b"THREADID"] == got[2][b"THREADID"] and got[1][b"EMAILID"] != got[2][b"EMAILID"]
    c.copy([1], "Projects")
    c.select_folder("Projects")
    assert c.fetch([1], ["EMAILID"])[1][b"EMAILID"] == got[1][b"EMAILID"]  # RFC 8474: the content's id


def test_condstore_and_qresync_with_imapclient(client):
    c = client
    assert c.enable("QRESYNC") == [b"QRESYNC"]
    for i in range(3):
        c.append("INBOX", MAIL % (b"m%d" % i, b"q%d" % i, b"", b"x"))
    info = c.select_folder("INBOX")
    modseq, validity = info[b"HIGHESTMODSEQ"], info[b"UIDVALIDITY"]
    c.add_flags([2], [b"$Done"])
    changed = c.fetch([1, 2, 3], ["FLAGS"], modifiers=["CHANGEDSINCE %d" % modseq])
    assert list(changed) == [2] and b"$Done" in changed[2][b"FLAGS"] and b"MODSEQ" in changed[2]
    c.delete_messages([3])
    c.expunge()
    c.unselect_folder()
    # SELECT ... (QRESYNC (uidvalidity modseq)): what changed while away, VANISHED (EARLIER) first
    typ, data = c._imap._simple_command("SELECT", "INBOX", "(QRESYNC (%d %d))" % (validity, modseq))
    assert typ == "OK"
    vanished = c._imap._untagged_response(typ, data, "VANISHED")[1]
    # (the first VANISHED is the EXPUNGE's, sent while INBOX was selected with QRESYNC on)
    assert [v.decode() for v in vanished] == ["3", "(EARLIER) 3"]


def test_esearch_searchres_and_metadata_with_imaplib(client):
    c = client
    for i in range(4):
        c.append("INBOX", MAIL % (b"subject %d" % i, b"e%d" % i, b"", b"word" if i % 2 else b"other"))
    c.select_folder("INBOX")
    esearch = _raw(c, "UID", "SEARCH", "RETURN", "(MIN MAX COUNT SAVE)", "BODY", "word", untagged="ESEARCH")
    assert esearch[0].decode().split()[-7:] == ["UID", "MIN", "2", "MAX", "4", "COUNT", "2"]
    typ, data = c._imap.uid("FETCH", "$", "(FLAGS)")  # SEARCHRES: the saved result
    assert typ == "OK" and len([d for d in data if d]) == 2
    _raw(c, "SETMETADATA", "INBOX", '(/private/comment "hello")', untagged="OK")
    value = _raw(c, "GETMETADATA", "INBOX", "/private/comment", untagged="METADATA")
    assert value[0] == b'"INBOX" (/private/comment "hello")'


def test_utf8_accept_with_imapclient(client):
    c = client
    assert c.enable("UTF8=ACCEPT") == [b"UTF8=ACCEPT"]
    c.create_folder("Réunions 会议")
    names = [name for _flags, _delim, name in c.list_folders()]
    assert "Réunions 会议" in names
    c.append("Réunions 会议", "Subject: café\r\nFrom: zoé@exemple.fr\r\n\r\nbonjour\r\n".encode())
    c.select_folder("Réunions 会议")
    env = c.fetch([1], ["ENVELOPE"])[1][b"ENVELOPE"]
    assert env.subject == "café".encode()
