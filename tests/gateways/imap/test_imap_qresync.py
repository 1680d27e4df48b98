"""QRESYNC (RFC 7162) as the phone and desktop clients use it, transcript by transcript.

- iOS Mail: ``ENABLE QRESYNC``, then ``SELECT INBOX (QRESYNC (uidvalidity modseq known-uids
  (seq-set uid-set)))`` with the state it cached, while other clients changed the mailbox; on
  switching folders it expects ``* OK [CLOSED]`` (§3.2.11) before the new folder's data.
- Thunderbird: ``ENABLE QRESYNC`` and ``SELECT "INBOX" (QRESYNC (uidvalidity modseq))``, then
  ``UID FETCH 1:* (FLAGS) (CHANGEDSINCE m VANISHED)`` to catch up while selected.
Both engines (the ``haven`` fixture)."""

from __future__ import annotations

import re

import pytest

from .wire import Wire


@pytest.fixture
def user(haven):
    return haven.new_user("qresync")


def fill(haven, address: str, n: int) -> None:
    for i in range(n):
        haven.deliver(address, b"Subject: q %d\r\nMessage-ID: <q%d@x>\r\n\r\nbody %d\r\n" % (i, i, i))


def state(lines) -> tuple:
    text = b"".join(lines)
    return (int(re.search(rb"UIDVALIDITY (\d+)", text).group(1)),
            int(re.search(rb"HIGHESTMODSEQ (\d+)", text).group(1)))


def fetches(lines) -> dict:
    """uid -> the FETCH line, of the untagged FETCH responses."""
    out = {}
    for line in lines:
        m = re.match(rb"\* \d+ FETCH \(.*UID (\d+)", line)
        if m:
            out[int(m.group(1))] = line
    return out


def vanished(lines) -> list:
    return [line for line in lines if line.startswith(b"* VANISHED")]


def test_ios_reselect_with_known_uids_and_sequence_match_data(haven, user):
    fill(haven, user[0], 10)
    with Wire(haven.imap) as phone, Wire(haven.imap) as other:
        phone.login(*user)
        other.login(*user)
        phone.ok("ENABLE QRESYNC")
        uidvalidity, modseq = state(phone.ok("SELECT INBOX"))
        phone.ok("UNSELECT")
        # meanwhile on another client: 2, 5 and 9 deleted, 7 flagged, one new message
        other.ok("SELECT INBOX")
        other.ok("UID STORE 2,5,9 +FLAGS.SILENT (\\Deleted)")
        other.ok("UID STORE 7 +FLAGS.SILENT ($Important)")
        other.ok("EXPUNGE")
        fill(haven, user[0], 1)
        # the phone knows UIDs 1:8 only (it had not seen 9, 10); its seq match data says seq 1, 5
        # were UIDs 1, 5
        lines = phone.ok("SELECT INBOX (QRESYNC (%d %d 1:8 (1,5 1,5)))" % (uidvalidity, modseq))
        gone = vanished(lines)
        assert gone == [b"* VANISHED (EARLIER) 2,5"], lines  # 9 was never known to the phone
        assert re.search(rb"\* 8 EXISTS", b"\n".join(lines))
        changed = fetches(lines)
        assert 7 in changed and b"$Important" in changed[7] and b"MODSEQ" in changed[7]
        assert 11 in changed  # the new message changed after modseq: reported with its flags
        assert not set(changed) & {2, 5, 9}
        assert lines.index(gone[0]) < min(lines.index(line) for line in changed.values())


def test_a_stale_uidvalidity_gets_no_resync_data(haven, user):
    fill(haven, user[0], 3)
    with Wire(haven.imap) as w:
        w.login(*user)
        w.ok("ENABLE QRESYNC")
        uidvalidity, modseq = state(w.ok("SELECT INBOX"))
        w.ok("STORE 1 +FLAGS.SILENT (\\Flagged)")
        w.ok("UNSELECT")
        lines = w.ok("SELECT INBOX (QRESYNC (%d %d))" % (uidvalidity + 1, 1))
        # RFC 7162 §3.2.5.2: a different UIDVALIDITY means the client's data is void
        assert not vanished(lines) and not fetches(lines), lines


def test_switching_folders_says_closed_first(haven, user):
    fill(haven, user[0], 2)
    with Wire(haven.imap) as w:
        w.login(*user)
        w.ok("ENABLE QRESYNC")
        w.ok("SELECT INBOX")
        lines = w.ok("SELECT Archive")
        assert lines[0] == b"* OK [CLOSED] Previous mailbox closed", lines
        assert not any(line.startswith(b"* OK [CLOSED]") for line in lines[1:])


def test_thunderbird_catch_up_while_selected(haven, user):
    fill(haven, user[0], 5)
    with Wire(haven.imap) as tb, Wire(haven.imap) as other:
        tb.login(*user)
        other.login(*user)
        tb.ok("ENABLE QRESYNC")
        uidvalidity, modseq = state(tb.ok('SELECT "INBOX"'))  # the first sync: nothing cached yet
        tb.ok("UNSELECT")
        lines = tb.ok('SELECT "INBOX" (QRESYNC (%d %d))' % (uidvalidity, modseq))  # the next start
        assert not vanished(lines) and not fetches(lines)  # nothing changed meanwhile
        other.ok("SELECT INBOX")
        other.ok("UID STORE 3 +FLAGS.SILENT (\\Deleted)")
        other.ok("UID EXPUNGE 3")
        other.ok("UID STORE 4 +FLAGS.SILENT (\\Seen)")
        lines = tb.ok("UID FETCH 1:* (FLAGS) (CHANGEDSINCE %d VANISHED)" % modseq)
        # the session is told of the expunge by VANISHED, never by EXPUNGE once QRESYNC is on
        assert not any(re.match(rb"\* \d+ EXPUNGE", line) for line in lines), lines
        assert b"* VANISHED (EARLIER) 3" in lines or b"* VANISHED 3" in lines, lines
        assert b"\\Seen" in fetches(lines)[4]
        assert 3 not in fetches(lines)
        # nothing changed since the highest modseq now reported: an empty answer
        _, now = state(tb.ok("STATUS INBOX (UIDVALIDITY HIGHESTMODSEQ)"))
        assert len(tb.ok("UID FETCH 1:* (FLAGS) (CHANGEDSINCE %d VANISHED)" % now)) == 1


def test_vanished_earlier_needs_qresync_enabled(haven, user):
    fill(haven, user[0], 1)
    with Wire(haven.imap) as w:
        w.login(*user)
        w.ok("SELECT INBOX")
        assert w.cmd("UID FETCH 1:* (FLAGS) (CHANGEDSINCE 1 VANISHED)")[-1].split(b" ")[1] == b"BAD"
        assert w.cmd("SELECT INBOX (QRESYNC (1 1))")[-1].split(b" ")[1] == b"BAD"  # §3.2.5: ENABLE first
