"""IMAP METADATA (RFC 5464) on the wire, both engines: server and mailbox entries, DEPTH,
MAXSIZE and LONGENTRIES, NIL removing, literal8 values, the limits' response codes, entries
following a renamed mailbox and going with a deleted one, and BAD for names outside §3.2."""

from __future__ import annotations

import pytest

from .wire import Wire


@pytest.fixture
def session(haven):
    user = haven.new_user("meta")
    with Wire(haven.imap) as w:
        w.login(*user)
        yield w


def metadata_lines(lines) -> list:
    return [line for line in lines if line.startswith(b"* METADATA ")]


def test_capability_and_mailbox_entries(session):
    w = session
    assert b" METADATA" in w.ok("CAPABILITY")[0]
    w.ok('SETMETADATA INBOX (/private/comment "my inbox" /shared/Vendor/x-haven/colour "blue")')
    lines = w.ok("GETMETADATA INBOX (/private/comment /shared/vendor/x-haven/colour /private/missing)")
    assert metadata_lines(lines) == [b'* METADATA "INBOX" (/private/comment "my inbox" '
                                     b'/shared/vendor/x-haven/colour "blue")']
    # names compare without case; NIL removes
    w.ok("SETMETADATA INBOX (/PRIVATE/Comment NIL)")
    assert metadata_lines(w.ok("GETMETADATA INBOX /private/comment")) == []
    # another mailbox has its own entries
    w.ok('SETMETADATA Archive (/private/comment "old mail")')
    assert metadata_lines(w.ok("GETMETADATA INBOX /private/comment")) == []


def test_depth_and_maxsize(session):
    w = session
    w.ok('SETMETADATA INBOX (/private/a "1" /private/a/b "22" /private/a/b/c "333" /private/ab "x")')
    get = lambda depth: metadata_lines(w.ok("GETMETADATA (DEPTH %s) INBOX /private/a" % depth))[0]
    assert get("0") == b'* METADATA "INBOX" (/private/a "1")'
    assert get("1") == b'* METADATA "INBOX" (/private/a "1" /private/a/b "22")'
    assert get("infinity") == b'* METADATA "INBOX" (/private/a "1" /private/a/b "22" /private/a/b/c "333")'
    lines = w.ok("GETMETADATA (MAXSIZE 2 DEPTH infinity) INBOX /private/a")
    assert metadata_lines(lines) == [b'* METADATA "INBOX" (/private/a "1" /private/a/b "22")']
    assert b"[METADATA LONGENTRIES 3]" in lines[-1]


def test_server_entries(session, haven):
    w = session
    lines = w.ok('GETMETADATA "" /shared/admin')
    assert metadata_lines(lines) == [b'* METADATA "" (/shared/admin "mailto:postmaster@haven.test")']
    assert w.cmd('SETMETADATA "" (/shared/admin "mailto:me@x")')[-1].split(b" ")[1] == b"NO"
    w.ok('SETMETADATA "" (/private/vendor/x-client/theme "dark")')
    lines = w.ok('GETMETADATA (DEPTH infinity) "" (/private /shared)')
    assert metadata_lines(lines) == [b'* METADATA "" (/private/vendor/x-client/theme "dark" '
                                     b'/shared/admin "mailto:postmaster@haven.test")']


def test_binary_values_and_limits(session):
    w = session
    value = bytes(range(1, 256))  # any octet a literal may carry (literal8, ~{n}, adds NUL)
    w.send(b"b1 SETMETADATA INBOX (/private/blob {255}\r\n")
    assert w.line().startswith(b"+")
    w.send(value + b")\r\n")
    assert w.until("b1")[-1].startswith(b"b1 OK")
    line = metadata_lines(w.ok("GETMETADATA INBOX /private/blob"))[0]
    assert line.endswith(b"{255}\r\n" + value + b")")
    big = b"x" * 40000
    w.send(b"b2 SETMETADATA INBOX (/private/big {%d}\r\n" % len(big))
    assert w.line().startswith(b"+")
    w.send(big + b")\r\n")
    assert w.until("b2")[-1].startswith(b"b2 NO [METADATA MAXSIZE 32768]")
    many = " ".join('/private/n%d "v"' % i for i in range(101))
    assert w.cmd("SETMETADATA INBOX (%s)" % many)[-1].startswith(b"t") and \
        b"NO [METADATA TOOMANY]" in w.cmd("SETMETADATA INBOX (%s)" % many)[-1]
    # all or nothing: none of the 101 was kept
    assert metadata_lines(w.ok("GETMETADATA INBOX /private/n1")) == []


def test_entries_follow_a_rename_and_go_with_a_delete(session):
    w = session
    w.ok("CREATE Projects")
    w.ok('SETMETADATA Projects (/private/comment "work")')
    w.ok("RENAME Projects Work")
    assert metadata_lines(w.ok("GETMETADATA Work /private/comment")) == [b'* METADATA "Work" (/private/comment "work")']
    w.ok("DELETE Work")
    w.ok("CREATE Work")
    assert metadata_lines(w.ok("GETMETADATA Work /private/comment")) == []
    assert w.cmd("GETMETADATA Nowhere /private/comment")[-1].split(b" ")[1:3] == [b"NO", b"[NONEXISTENT]"]


@pytest.mark.parametrize("name", ["/privat", "/other/x", "private/x", "/private//x", "/private/x/", "/private/*",
                                  "/shared/%", '"/private/\xe9"'])
def test_bad_entry_names(session, name):
    assert session.cmd("GETMETADATA INBOX %s" % name)[-1].split(b" ")[1] == b"BAD"
