"""IDLE fan-out: many sessions of one account hear a change through one shared store query
(gateways/imap/watch.py), and each is told exactly what it would have been told alone.

A real ``haven serve`` with metrics on: the store's own observer counts every transaction by
name (``haven_store_operation_seconds_count{operation=...}``), which is how the tests count the
``changes_since`` and ``claim_recent`` queries a delivery costs.  The transcripts are compared
line by line with what RFC 3501 / RFC 7162 say each kind of session must see (plain, CONDSTORE,
QRESYNC with VANISHED, EXAMINE, sessions not in IDLE at older modseqs).  The ``soak`` test opens
10,000 sessions (``pytest -m soak tests/e2e/test_idle_fanout.py``)."""

from __future__ import annotations

import re
import time

import pytest

from tests.conftest import ENGINES, require_engine
from tests.e2e.crowd import Crowd, raise_nofile
from tests.e2e.test_metrics import moved, scrape, with_metrics
from tests.gateways.imap.wire import Wire

SOAK_SESSIONS = 10000


@pytest.fixture(scope="module", params=ENGINES)
def server(request, tmp_path_factory):
    require_engine(request.param)
    raise_nofile(SOAK_SESSIONS + 2000)  # before the server starts: it inherits the limit
    s = with_metrics(tmp_path_factory.mktemp(f"haven-fanout-{request.param}"), request.param,
                     **{"imap.max_connections": "0", "log.level": "warning"})
    s.start()
    yield s
    s.close()


def message(i: int) -> bytes:
    return (b"From: a@example.org\r\nSubject: fan-out %d\r\nMessage-ID: <fan%d-%d@example.org>\r\n\r\nhello\r\n"
            % (i, i, time.time_ns()))


def queries(before: dict, after: dict, operation: str) -> int:
    return int(moved(before, after, "haven_store_operation_seconds_count", operation=operation))


def login(user) -> str:
    return 'LOGIN "%s" "%s"' % user


def test_a_delivery_to_200_sessions_in_idle_is_one_query_per_folder(server):
    user = server.new_user("fan")
    with Wire(server.imap) as w:
        w.login(*user)
        w.ok('CREATE "Other"')
    with Crowd(server.imap, 150).open([login(user), "SELECT INBOX", "IDLE"]) as inbox, \
            Crowd(server.imap, 50).open([login(user), 'SELECT "Other"', "IDLE"]) as other:
        before = scrape(server)
        server.deliver(user[0], message(1))
        seen = inbox.collect(b" EXISTS", timeout=30)
        with Wire(server.imap) as w:  # an APPEND to the other folder, from a session without it selected
            w.login(*user)
            body = message(2)
            w.ok(b'APPEND "Other" {%d+}\r\n%s' % (len(body), body))
        seen_other = other.collect(b" EXISTS", timeout=30)
        after = scrape(server)
        # every session was told, once, with exactly one of each folder's sessions seeing it \Recent
        for got in (seen, seen_other):
            transcripts = [lines for lines, _ in got]
            assert all(t in ([b"* 1 EXISTS", b"* 0 RECENT"], [b"* 1 EXISTS", b"* 1 RECENT"]) for t in transcripts), \
                {bytes(b"|".join(t)) for t in transcripts}
            assert sum(t[1] == b"* 1 RECENT" for t in transcripts) == 1
        # O(folders), not O(sessions): one changes_since and one claim_recent per folder that
        # changed (200 sessions used to cost 200 of each); an account-wide event of the
        # ModseqPoller racing the delivery's own (MariaDB) may add a query or two per folder
        assert 2 <= queries(before, after, "changes_since") <= 6, queries(before, after, "changes_since")
        assert queries(before, after, "claim_recent") == 2
        # nothing more is pending for anyone: DONE ends each IDLE with its tagged reply only
        inbox.send_all(b"DONE\r\n")
        other.send_all(b"DONE\r\n")
        for lines, _ in inbox.collect(b" OK IDLE") + other.collect(b" OK IDLE"):
            assert len(lines) == 1 and re.match(rb"t\d+ OK IDLE", lines[0]), lines


FLAGS = b"\\Answered \\Flagged \\Deleted \\Seen \\Draft"


def flags_lines(readonly: bool) -> list:
    """The ``* FLAGS`` pair a session is sent before the first FETCH naming ``$Work``."""
    flags = FLAGS + b" $Work"
    if readonly:
        return [b"* FLAGS (%s)" % flags, b"* OK [PERMANENTFLAGS ()] Read-only mailbox"]
    return [b"* FLAGS (%s)" % flags, b"* OK [PERMANENTFLAGS (%s \\*)] Flags permitted" % flags]


def fetch(seq: int, uid: int, flags: bytes, modseq) -> bytes:
    return b"* %d FETCH (UID %d FLAGS (%s)%s)" % (seq, uid, flags, b" MODSEQ (%d)" % modseq if modseq else b"")


class Kind:
    """Sessions of one kind: how they are opened and what they must be told."""

    def __init__(self, name: str, enable: str = "", examine: bool = False, idle: bool = True):
        self.name, self.enable, self.examine, self.idle = name, enable, examine, idle
        self.condstore = enable in ("CONDSTORE", "QRESYNC")
        self.qresync = enable == "QRESYNC"

    def open(self, server, user) -> Wire:
        w = Wire(server.imap)
        w.login(*user)
        if self.enable:
            w.ok("ENABLE " + self.enable)
        w.ok("EXAMINE INBOX" if self.examine else "SELECT INBOX")
        if self.idle:
            w.send(b"i IDLE\r\n")
            assert w.line().startswith(b"+ "), self.name
        return w

    def expunged(self, seq: int, uid: int) -> list:
        return [b"* VANISHED %d" % uid] if self.qresync else [b"* %d EXPUNGE" % seq]


def view(w: Wire) -> list:
    """[(uid, flags without \\Recent)] of the session's view, by sequence number."""
    out = []
    for line in w.ok("FETCH 1:* (UID FLAGS)")[:-1]:
        m = re.match(rb"\* (\d+) FETCH \(.*UID (\d+).*FLAGS \(([^)]*)\)", line)
        assert m and int(m.group(1)) == len(out) + 1, line
        out.append((int(m.group(2)), set(m.group(3).decode().split()) - {"\\Recent"}))
    return out


def read(w: Wire, n: int) -> list:
    return [w.line() for _ in range(n)]


def test_mixed_sessions_each_get_exactly_their_own_responses_from_a_shared_fetch(server):
    """Plain, CONDSTORE, QRESYNC (VANISHED) and EXAMINE sessions in IDLE, three of each, and
    sessions not in IDLE left at two older modseqs that ask (NOOP) right after the delivery, while
    the idlers' answer is shared: every line each one is sent is what RFC 3501 / RFC 7162 say."""
    user = server.new_user("mixed")
    for i in range(5):
        server.deliver(user[0], message(i))
    with Wire(server.imap) as first:  # claims messages 1-5 as \Recent, then goes
        first.login(*user)
        first.ok("SELECT INBOX")
        first.ok("LOGOUT")
    kinds = [Kind("plain"), Kind("condstore", "CONDSTORE"), Kind("qresync", "QRESYNC"),
             Kind("examine", examine=True)]
    behind = [Kind("behind-plain", idle=False), Kind("behind-qresync", "QRESYNC", idle=False)]
    idlers = [(k, k.open(server, user)) for k in kinds for _ in range(3)]
    waiting = [(k, k.open(server, user)) for k in behind for _ in range(3)]
    writer = Wire(server.imap)
    writer.login(*user)
    writer.ok("ENABLE CONDSTORE")
    writer.ok("SELECT INBOX")

    def modseq_of(uid: int) -> int:
        line = [l for l in writer.ok("UID FETCH %d (MODSEQ)" % uid) if b"FETCH" in l][0]
        return int(re.search(rb"MODSEQ \((\d+)\)", line).group(1))

    try:
        # 1. a new keyword and \Flagged on message 2
        writer.ok("UID STORE 2 +FLAGS.SILENT ($Work \\Flagged)")
        m1 = modseq_of(2)
        for k, w in idlers:
            assert read(w, 3) == flags_lines(k.examine) + [
                fetch(2, 2, b"\\Flagged $Work", m1 if k.condstore else None)], k.name
        # the behind-qresync sessions catch up with step 1 only: from now on at modseq m1
        for k, w in waiting:
            if k.qresync:
                assert w.ok("NOOP")[:-1] == flags_lines(False) + [fetch(2, 2, b"\\Flagged $Work", m1)]
        # 2. message 3 marked \Deleted, then expunged
        writer.ok("UID STORE 3 +FLAGS.SILENT (\\Deleted)")
        m2 = modseq_of(3)
        for k, w in idlers:
            assert read(w, 1) == [fetch(3, 3, b"\\Deleted", m2 if k.condstore else None)], k.name
        writer.ok("UID EXPUNGE 3")
        for k, w in idlers:
            assert read(w, 1) == k.expunged(3, 3), k.name
        # 3. a delivery (UID 6); the sessions not in IDLE ask for news at the same moment
        server.deliver(user[0], message(6))
        for k, w in waiting:
            w.send(b"n NOOP\r\n")
        recent = []
        for k, w in idlers:
            lines = read(w, 2)
            assert lines[0] == b"* 5 EXISTS", (k.name, lines)
            recent.append((k, lines[1]))
        for k, w in waiting:
            lines = w.until("n")
            assert lines[-1].startswith(b"n OK"), lines
            if k.qresync:  # at m1: the expunge (after EXISTS: 3 is in the view until then)
                assert lines[0] == b"* 6 EXISTS", (k.name, lines)
                assert lines[2:-1] == [b"* VANISHED 3"], (k.name, lines)
            else:  # at the modseq of its SELECT: everything since
                assert lines[:3] == flags_lines(False) + [fetch(2, 2, b"\\Flagged $Work", None)], lines
                assert lines[3] == b"* 6 EXISTS", (k.name, lines)
                assert lines[5:-1] == [b"* 3 EXPUNGE"], (k.name, lines)
                lines = lines[3:]
            recent.append((k, lines[1]))
        # \Recent: exactly one read-write session claimed UID 6; EXAMINE sees it unclaimed-at-open
        assert all(line == b"* 1 RECENT" for k, line in recent if k.examine), recent
        rw = [line for k, line in recent if not k.examine]
        assert sorted(rw) == [b"* 0 RECENT"] * (len(rw) - 1) + [b"* 1 RECENT"], rw
        # 4. nothing was told twice, nothing is left: DONE and NOOP answer with their tags only
        for k, w in idlers:
            w.send(b"DONE\r\n")
            assert w.until("i") == [b"i OK IDLE terminated"], k.name
            assert len(w.ok("NOOP")) == 1, k.name
        for k, w in waiting:
            assert len(w.ok("NOOP")) == 1, k.name
        # and each view is the store's: the same UIDs and flags as the writer's (\Recent aside)
        writer.ok("NOOP")  # the writer hears of the delivery
        assert view(writer) == [(1, set()), (2, {"\\Flagged", "$Work"}), (4, set()), (5, set()), (6, set())]
        for k, w in idlers + waiting:
            assert view(w) == view(writer), k.name
    finally:
        for _, w in idlers + waiting:
            w.close()
        writer.close()


def test_a_burst_of_deliveries_while_shared_queries_run_reaches_everyone_exactly(server):
    """40 deliveries over 4 LMTP connections at once, to 60 sessions in IDLE (plain, CONDSTORE,
    QRESYNC): events arrive while shared queries are running, so sessions are left dirty by one
    answer and join the next query (watch.py).  Every session must count up to 40 with no
    message told twice or missed, and each message must be \\Recent in exactly one session."""
    import threading
    user = server.new_user("burst")
    crowds = [Crowd(server.imap, 20).open([login(user)] + ([f"ENABLE {enable}"] if enable else [])
                                          + ["SELECT INBOX", "IDLE"])
              for enable in ("", "CONDSTORE", "QRESYNC")]
    try:
        before = scrape(server)

        def deliver(part: int) -> None:
            for i in range(10):
                server.deliver(user[0], message(100 * part + i))
        threads = [threading.Thread(target=deliver, args=(p,)) for p in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        final_recent = 0
        for crowd in crowds:
            for lines, _ in crowd.collect(b"* 40 EXISTS", timeout=60):
                counts = [int(l.split()[1]) for l in lines if l.endswith(b" EXISTS")]
                assert counts == sorted(set(counts)) and counts[-1] == 40, counts  # up, never twice
                assert all(re.fullmatch(rb"\* \d+ (EXISTS|RECENT)", l) for l in lines), lines
                assert lines[-1].endswith(b" RECENT"), lines
                final_recent += int(lines[-1].split()[1])
        assert final_recent == 40  # each message recent in exactly one session
        after = scrape(server)
        assert queries(before, after, "changes_since") < 200  # 2400 when each session asked alone
        for crowd in crowds:
            crowd.send_all(b"DONE\r\n")
            for lines, _ in crowd.collect(b" OK IDLE"):
                assert len(lines) == 1, lines
    finally:
        for crowd in crowds:
            crowd.close()


@pytest.mark.soak
@pytest.mark.timeout(900)
def test_soak_10000_sessions_in_idle_all_hear_a_delivery(server):
    """The issue's figure (1 s) is measured by bench/fanout.py on a quiet machine; here the
    limit is generous (the test client reads 10,000 sockets itself on the same cores)."""
    user = server.new_user("soak")
    with Crowd(server.imap, SOAK_SESSIONS).open([login(user), "SELECT INBOX", "IDLE"], timeout=600) as crowd:
        for i in range(3):
            before = scrape(server)
            server.deliver(user[0], message(i))
            delivered = time.monotonic()
            seen = crowd.collect(b" EXISTS", timeout=60)
            after = scrape(server)
            slowest = max(t for _, t in seen) - delivered
            assert slowest < 10, slowest
            assert all(lines[0] == b"* %d EXISTS" % (i + 1) for lines, _ in seen)
            # each message \Recent in exactly one session (the same one may claim every time)
            assert sum(int(lines[1].split()[1]) for lines, _ in seen) == i + 1
            assert queries(before, after, "changes_since") <= 3  # 10,000 when each asked alone
