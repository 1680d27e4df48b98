"""Transcripts of the compliance defects a peer's IMAP compliance suite found (Dovecot passes
them all), over real sockets against a real ``haven serve`` on both engines: each test failed
before its fix."""

from __future__ import annotations

import re
import time

import pytest

from tests.conftest import run_on_reactor

from .wire import Wire, untagged


@pytest.fixture
def user(haven):
    return haven.new_user()


def _msg(i: int, headers: bytes = b"") -> bytes:
    return (b"From: Sender <s@example.org>\r\nTo: r@example.test\r\nSubject: message %d\r\n"
            b"Message-ID: <c%d-%d@example.org>\r\nDate: Mon, 4 Mar 2024 10:00:00 +0000\r\n%s\r\nbody %d\r\n"
            % (i, i, time.time_ns(), headers, i))


def _fill(haven, user, n: int) -> None:
    for i in range(n):
        haven.deliver(user[0], _msg(i))


def _status(line: bytes) -> bytes:
    return line.split(b" ")[1]


# -- MOVE / COPY into the mailbox itself (Dovecot and Cyrus allow it) ---------------------------
def test_copy_and_move_into_the_same_mailbox(haven, user):
    _fill(haven, user, 3)
    with Wire(haven.imap) as w:
        w.login(*user)
        w.ok("SELECT INBOX")
        lines = w.ok("COPY 1 INBOX")
        assert re.search(rb"OK \[COPYUID \d+ 1 4\]", lines[-1]), lines
        assert b"* 4 EXISTS" in lines
        lines = w.ok("UID MOVE 2:3 INBOX")
        assert re.match(rb"\* OK \[COPYUID \d+ 2:3 5:6\]", lines[0]), lines
        assert b"* 3 EXPUNGE" in lines and b"* 2 EXPUNGE" in lines
        assert untagged(lines, b"EXISTS")
        assert w.ok("UID SEARCH ALL")[0] == b"* SEARCH 1 4 5 6"
        assert w.ok("FETCH 1:* (UID)")[:-1] == [b"* %d FETCH (UID %d)" % (s, u)
                                                for s, u in ((1, 1), (2, 4), (3, 5), (4, 6))]
    with Wire(haven.imap) as other:  # the store agrees
        other.login(*user)
        assert b"* 4 EXISTS" in other.ok("SELECT INBOX")


# -- mailbox names that are not modified UTF-7 --------------------------------------------------
def test_names_that_are_not_modified_utf7_are_literal_names(haven, user):
    with Wire(haven.imap) as w:
        w.login(*user)
        for name in (b"!#$&'+,-.", b'"a&b"', b'"&Jjo"', b'"&AGE-"'):
            lines = w.cmd(b"SELECT " + name)
            assert lines[-1].split(b" ", 3)[1:3] == [b"NO", b"[NONEXISTENT]"], (name, lines)
            assert _status(w.cmd(b"EXAMINE " + name)[-1]) == b"NO"
            assert _status(w.cmd(b"STATUS " + name + b" (MESSAGES)")[-1]) == b"NO"
            assert len(w.ok(b'LIST "" ' + name)) == 1  # OK, nothing listed
            lines = w.cmd(b"APPEND " + name + b" {5+}\r\nx\r\n\r\n")
            assert b"NO [TRYCREATE]" in lines[-1]
        # such a name cannot be made: LIST would spell it otherwise ("&" as "&-")
        lines = w.cmd(b"CREATE !#$&'+,-.")
        assert lines[-1].split(b" ", 3)[1:3] == [b"NO", b"[CANNOT]"], lines
        w.ok("CREATE Box")
        assert w.cmd(b"RENAME Box a&b")[-1].split(b" ", 3)[1:3] == [b"NO", b"[CANNOT]"]
        # the valid spelling of the same name works
        w.ok(b"CREATE a&-b")
        assert w.ok(b'LIST "" a&-b')[0] == b'* LIST (\\HasNoChildren) "/" "a&-b"'
        w.ok(b"SELECT a&-b")


# -- SEARCH FROM/TO/CC/BCC on the parsed address ------------------------------------------------
def test_search_address_keys_match_addresses_written_with_comments_and_folding(haven, user):
    def message(headers: bytes) -> bytes:
        return headers + b"Subject: addr\r\nMessage-ID: <a%d@example.org>\r\n\r\nbody\r\n" % time.time_ns()

    haven.deliver(user[0], message(b"From: <user-from (comment)@ (comment) domain.org>\r\n"
                                   b"To: Someone <user-to\r\n @domain.org>\r\n"
                                   b"Cc: user-cc@domain.org (Comment)\r\n"
                                   b"Bcc: (c) \"=?utf-8?q?J=C3=BCrgen?=\" <user-bcc @ (x) domain . org>\r\n"))
    haven.deliver(user[0], message(b"From: Other <other@domain.org>\r\nTo: nobody@domain.org\r\n"))
    with Wire(haven.imap) as w:
        w.login(*user)
        w.ok("SELECT INBOX")
        for key in (b"FROM user-from@domain.org", b"TO user-to@domain.org", b"CC user-cc@domain.org",
                    b"BCC user-bcc@domain.org", b"FROM USER-FROM@Domain.Org", b"FROM from@dom",
                    b"BCC \"J\xc3\xbcrgen\"", b"CC comment", b"FROM \"(comment)@\"", b"TO Someone"):
            assert w.ok(b"SEARCH CHARSET UTF-8 " + key)[0] == b"* SEARCH 1", key
        assert w.ok(b"SEARCH FROM other@domain.org")[0] == b"* SEARCH 2"
        assert w.ok(b"SEARCH FROM domain.org")[0] == b"* SEARCH 1 2"
        assert w.ok(b"SEARCH TO user-from@domain.org")[0] == b"* SEARCH"
        assert w.ok(b"SEARCH NOT FROM user-from@domain.org")[0] == b"* SEARCH 2"


# -- LIST-EXTENDED (RFC 5258) -------------------------------------------------------------------
def _listing(lines) -> dict:
    """'* LIST (attrs) "/" name [extra]' lines -> {name: (set of attrs, extra)}."""
    out = {}
    for line in lines[:-1]:
        m = re.match(rb'\* (?:LIST|LSUB) \(([^)]*)\) "/" "([^"]*)"(.*)$', line)
        assert m, line
        out[m.group(2).decode()] = ({a.decode().lower() for a in m.group(1).split()}, m.group(3).strip())
    return out


def test_list_extended_subscriptions_and_recursivematch(haven, user):
    with Wire(haven.imap) as w:
        w.login(*user)
        for name in ("t/test1", "t/test2/", "t/test2/test1", "t/test3", "t/test4/test5", "t/test4/test52",
                     "t/test6", "t/test7/test7", "t/test8/test8", "t/test8/test9"):
            w.ok("CREATE " + name)
        for name in ("t/test1", "t/test2/test1", "t/test6", "t/test7/test7", "t/test8/test8", "t/test8/test9"):
            w.ok("SUBSCRIBE " + name)
        w.ok("DELETE t/test6")
        # RFC 5258 §3.1: RECURSIVEMATCH alone (or with REMOTE) is BAD
        for bad in ('LIST (RECURSIVEMATCH) "" ""', 'LIST (RECURSIVEMATCH REMOTE) "" "%"',
                    'LIST (RECURSIVEMATCH SPECIAL-USE) "" "*"', 'LIST (BOGUS) "" ""', 'LIST "" "" RETURN (BOGUS)'):
            assert _status(w.cmd(bad)[-1]) == b"BAD", bad
        w.ok('LIST (REMOTE) "" "%"')
        # subscribed names, one of them without its mailbox any more
        got = _listing(w.ok('LIST (SUBSCRIBED) "" "t/*"'))
        assert set(got) == {"t/test1", "t/test2/test1", "t/test6", "t/test7/test7", "t/test8/test8", "t/test8/test9"}
        assert all("\\subscribed" in attrs for attrs, _ in got.values())
        assert "\\nonexistent" in got["t/test6"][0] and "\\noselect" not in got["t/test6"][0]
        assert not any("\\nonexistent" in attrs for n, (attrs, _) in got.items() if n != "t/test6")
        # a parent of a subscribed name the pattern does not list: CHILDINFO, not \Subscribed
        got = _listing(w.ok('LIST (SUBSCRIBED RECURSIVEMATCH) "" "t/test2%" RETURN (CHILDREN)'))
        assert got == {"t/test2": ({"\\haschildren"}, b'("CHILDINFO" ("SUBSCRIBED"))')}
        got = _listing(w.ok('LIST (SUBSCRIBED RECURSIVEMATCH) "" "*test7"'))
        assert set(got) == {"t/test7/test7"} and got["t/test7/test7"][1] == b""
        got = _listing(w.ok('LIST (SUBSCRIBED RECURSIVEMATCH) "" "*test8"'))
        assert got["t/test8"] == ({"\\haschildren"}, b'("CHILDINFO" ("SUBSCRIBED"))')
        assert "\\subscribed" in got["t/test8/test8"][0] and got["t/test8/test8"][1] == b""
        got = _listing(w.ok('LIST (SUBSCRIBED RECURSIVEMATCH) "" (t/test2 t/test2/test1)'))
        assert set(got) == {"t/test2/test1"}
        got = _listing(w.ok('LIST (SUBSCRIBED) "" "t/%"'))  # without RECURSIVEMATCH: no parents
        assert set(got) == {"t/test1", "t/test6"}
        # a plain LIST marks \Subscribed only on the subscribed names (CREATE does not subscribe)
        got = _listing(w.ok('LIST "" "t/%" RETURN (CHILDREN SUBSCRIBED)'))
        assert set(got) == {"t/test1", "t/test2", "t/test3", "t/test4", "t/test7", "t/test8"}
        assert [n for n, (attrs, _) in got.items() if "\\subscribed" in attrs] == ["t/test1"]
        assert "\\haschildren" in got["t/test2"][0] and "\\hasnochildren" in got["t/test3"][0]
        got = _listing(w.ok('LIST "" (t/test7 t/test7/test7)'))
        assert set(got) == {"t/test7", "t/test7/test7"} and "\\nonexistent" not in got["t/test7"][0]
        # LSUB (RFC 3501 §6.3.9): subscribed names; a level above them only for '%', \Noselect
        got = _listing(w.ok('LSUB "" "t/%"'))
        assert got == {"t/test1": (set(), b""), "t/test2": ({"\\noselect"}, b""), "t/test6": ({"\\noselect"}, b""),
                       "t/test7": ({"\\noselect"}, b""), "t/test8": ({"\\noselect"}, b"")}
        # a subscription outlives its mailbox until it is unsubscribed
        w.ok("UNSUBSCRIBE t/test6")
        assert "t/test6" not in _listing(w.ok('LIST (SUBSCRIBED) "" "t/*"'))
        assert w.cmd("UNSUBSCRIBE t/test6")[-1].split(b" ", 3)[1:3] == [b"NO", b"[NONEXISTENT]"]
        assert w.cmd("SUBSCRIBE t/test6")[-1].split(b" ", 3)[1:3] == [b"NO", b"[NONEXISTENT]"]
        w.ok("RENAME t/test3 t/test33")  # a subscription follows its mailbox's RENAME
        w.ok("SUBSCRIBE t/test33")
        w.ok("RENAME t/test33 t/test3")
        assert "\\subscribed" in _listing(w.ok('LIST "" t/test3 RETURN (SUBSCRIBED)'))["t/test3"][0]


# -- new keywords are announced with FLAGS before any FETCH names them (RFC 3501 §7.2.6) -------
_FLAGS_LINE = re.compile(rb"^\* FLAGS \(([^)]*)\)$")
_FETCH_FLAGS = re.compile(rb"^\* \d+ FETCH \(.*FLAGS \(([^)]*)\)")


class KeywordWatch:
    """Follows one connection's responses: the keywords of its last ``* FLAGS``, and every
    keyword a FETCH named before a FLAGS announced it."""

    def __init__(self):
        self.announced: set = set()
        self.unannounced: list = []
        self.permanent: list = []

    def see(self, lines) -> None:
        for line in lines:
            m = _FLAGS_LINE.match(line)
            if m:
                self.announced = set(m.group(1).split())
                continue
            m = re.match(rb"^\* OK \[PERMANENTFLAGS \(([^)]*)\)\]", line)
            if m:
                self.permanent.append(set(m.group(1).split()))
                continue
            m = _FETCH_FLAGS.match(line)
            if m:
                for flag in m.group(1).split():
                    if not flag.startswith(b"\\") and flag not in self.announced:
                        self.unannounced.append((flag, line))


def test_a_new_keyword_is_announced_before_a_fetch_names_it(haven, user):
    _fill(haven, user, 2)
    with Wire(haven.imap) as a, Wire(haven.imap) as b, Wire(haven.imap) as c:
        for w in (a, b, c):
            w.login(*user)
        watch_a, watch_b, watch_c = KeywordWatch(), KeywordWatch(), KeywordWatch()
        watch_a.see(a.ok("SELECT INBOX"))
        watch_b.see(b.ok("SELECT INBOX"))
        watch_c.see(c.ok("EXAMINE INBOX"))
        assert watch_b.announced == {b"\\Answered", b"\\Flagged", b"\\Deleted", b"\\Seen", b"\\Draft"}
        # A's own STORE of a new keyword: FLAGS first, then the FETCH
        lines = a.ok("STORE 1 +FLAGS ($Label1)")
        watch_a.see(lines)
        assert lines[0] == b"* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft $Label1)"
        assert lines[1] == b"* OK [PERMANENTFLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft $Label1 \\*)] " \
                           b"Flags permitted"
        assert lines[2] == b"* 1 FETCH (FLAGS (\\Recent $Label1))"  # A selected first: recent to A
        # B hears of it at its NOOP: FLAGS (and PERMANENTFLAGS) before the FETCH
        lines = b.ok("NOOP")
        watch_b.see(lines)
        assert [l.split(b" ")[1] for l in lines[:-1]] == [b"FLAGS", b"OK", b"1"], lines
        assert b"$Label1" in lines[0] and lines[2] == b"* 1 FETCH (UID 1 FLAGS ($Label1))"
        # the read-only session hears of the next one while in IDLE; its PERMANENTFLAGS stay empty
        watch_c.see(c.ok("NOOP"))
        c.send(b"i1 IDLE\r\n")
        assert c.line().startswith(b"+ ")
        a.ok("STORE 2 +FLAGS.SILENT ($Label2)")
        idle = [c.wait_for(lambda l: True) for _ in range(3)]
        assert idle == [b"* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft $Label1 $Label2)",
                        b"* OK [PERMANENTFLAGS ()] Read-only mailbox", b"* 2 FETCH (UID 2 FLAGS ($Label2))"], idle
        watch_c.see(idle)
        c.send(b"DONE\r\n")
        watch_c.see(c.until("i1"))
        # B FETCHes the flags before a NOOP told it: the FLAGS come first all the same
        lines = b.ok("FETCH 2 (FLAGS)")
        watch_b.see(lines)
        assert lines[0].startswith(b"* FLAGS (") and b"$Label2" in lines[0], lines
        # a keyword that arrives with a new message (APPEND, COPY, delivery) too
        a.ok(b"APPEND INBOX ($Label3) {8+}\r\nS: x\r\n\r\n")
        lines = b.ok("NOOP")
        watch_b.see(lines)
        assert lines[0].startswith(b"* FLAGS (") and b"$Label3" in lines[0] and b"* 3 EXISTS" in lines
        lines = b.ok("FETCH 3 (FLAGS)")
        assert lines[0] == b"* 3 FETCH (FLAGS ($Label3))"  # announced already (recent to A: its APPEND)
        watch_b.see(lines)
        # and one a Sieve script sets at delivery (imap4flags :flags / addflag)
        store = haven.admin_store()
        account = run_on_reactor(store.get_account, user[0])
        run_on_reactor(store.put_sieve_script, account.id, "flags",
                       'require ["imap4flags", "fileinto"];\naddflag "$Sieved";\nkeep :flags "$Kept";\n')
        run_on_reactor(store.set_active_sieve_script, account.id, "flags")
        haven.deliver(user[0], _msg(9))
        lines = b.ok("NOOP")
        watch_b.see(lines)
        assert lines[0].startswith(b"* FLAGS (") and b"$Kept" in lines[0] and b"* 4 EXISTS" in lines, lines
        assert b"* 4 FETCH (FLAGS (\\Recent $Kept))" in b.ok("FETCH 4 (FLAGS)")
        run_on_reactor(store.set_active_sieve_script, account.id, None)
        # a new SELECT lists every keyword in use
        lines = [l for l in a.ok("SELECT INBOX") if b"[CLOSED]" not in l]
        assert lines[0] == b"* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft $Kept $Label1 $Label2 $Label3)"
        for watch in (watch_a, watch_b, watch_c):
            assert watch.unannounced == []


def test_keywords_announced_under_concurrent_clients(haven, user):
    import random
    import threading

    _fill(haven, user, 6)
    clients, rounds = 8, 12
    watches = [KeywordWatch() for _ in range(clients)]
    errors: list = []

    def client(i: int) -> None:
        rnd = random.Random(i)
        try:
            with Wire(haven.imap, timeout=30) as w:
                w.login(*user)
                watches[i].see(w.ok("SELECT INBOX"))
                for r in range(rounds):
                    seq = rnd.randint(1, 6)
                    verb = rnd.choice(["+FLAGS", "+FLAGS", "-FLAGS", "FLAGS"])
                    keyword = "$k%d_%d" % (i, r % 5)
                    watches[i].see(w.ok("STORE %d %s (%s \\Seen)" % (seq, verb, keyword)))
                    watches[i].see(w.ok(rnd.choice(["NOOP", "FETCH 1:* (FLAGS)", "UID FETCH 1:* (UID FLAGS)",
                                                     "STORE %d +FLAGS.SILENT ($shared)" % seq])))
                watches[i].see(w.ok("NOOP"))
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    for watch in watches:
        assert watch.unannounced == [], watch.unannounced[:3]
        assert all(p >= {b"\\*"} for p in watch.permanent)


# -- \Recent (RFC 3501 §2.3.2) ------------------------------------------------------------------
def _recent(lines) -> list:
    return [int(l.split(b" ")[1]) for l in lines if re.match(rb"\* \d+ RECENT$", l)]


def _flags_by_seq(lines) -> dict:
    out = {}
    for line in lines:
        m = re.match(rb"\* (\d+) FETCH \(.*FLAGS \(([^)]*)\)", line)
        if m:
            out[int(m.group(1))] = set(m.group(2).split())
    return out


def test_recent_is_seen_by_exactly_one_session(haven, user):
    _fill(haven, user, 2)
    with Wire(haven.imap) as a, Wire(haven.imap) as b, Wire(haven.imap) as c, Wire(haven.imap) as d:
        for w in (a, b, c, d):
            w.login(*user)
        assert w.ok("STATUS INBOX (RECENT MESSAGES)")[0] == b'* STATUS "INBOX" (RECENT 2 MESSAGES 2)'
        # EXAMINE sees what nobody claimed, and claims nothing
        lines = c.ok("EXAMINE INBOX")
        assert _recent(lines) == [2] and lines.index(b"* 2 RECENT") == lines.index(b"* 2 EXISTS") + 1
        assert _flags_by_seq(c.ok("FETCH 1:* (FLAGS)")) == {1: {b"\\Recent"}, 2: {b"\\Recent"}}
        assert c.ok("SEARCH RECENT")[0] == b"* SEARCH 1 2"
        # the first SELECT claims them
        assert _recent(a.ok("SELECT INBOX")) == [2]
        assert d.ok("STATUS INBOX (RECENT)")[0] == b'* STATUS "INBOX" (RECENT 0)'
        assert _flags_by_seq(a.ok("FETCH 1:* (FLAGS)")) == {1: {b"\\Recent"}, 2: {b"\\Recent"}}
        assert a.ok("SEARCH RECENT")[0] == b"* SEARCH 1 2"
        assert a.ok("SEARCH NEW")[0] == b"* SEARCH 1 2"
        assert a.ok("SEARCH OLD")[0] == b"* SEARCH"
        assert a.ok("STORE 1 +FLAGS (\\Seen)")[0] == b"* 1 FETCH (FLAGS (\\Seen \\Recent))"
        assert a.ok("SEARCH NEW")[0] == b"* SEARCH 2"
        assert a.ok("SEARCH NOT RECENT")[0] == b"* SEARCH"
        assert a.ok("STORE 2 +FLAGS (\\Recent)")[0] == b"* 2 FETCH (FLAGS (\\Recent))"  # cannot be set
        # ... so a later SELECT sees them old
        assert _recent(b.ok("SELECT INBOX")) == [0]
        assert _flags_by_seq(b.ok("FETCH 1:* (FLAGS)")) == {1: {b"\\Seen"}, 2: set()}
        assert b.ok("SEARCH OLD")[0] == b"* SEARCH 1 2"
        assert b.ok("SEARCH NEW")[0] == b"* SEARCH"
        # new mail: recent to the first session told of it, with * n RECENT after * n EXISTS
        haven.deliver(user[0], _msg(3))
        assert d.ok("STATUS INBOX (RECENT MESSAGES)")[0] == b'* STATUS "INBOX" (RECENT 1 MESSAGES 3)'
        lines = b.ok("NOOP")
        assert lines[:2] == [b"* 3 EXISTS", b"* 1 RECENT"], lines
        assert b.ok("SEARCH RECENT")[0] == b"* SEARCH 3"
        lines = a.ok("NOOP")
        assert lines[:2] == [b"* 3 EXISTS", b"* 2 RECENT"], lines  # still its own two
        assert a.ok("FETCH 3 (FLAGS)")[0] == b"* 3 FETCH (FLAGS ())"
        assert d.ok("STATUS INBOX (RECENT)")[0] == b'* STATUS "INBOX" (RECENT 0)'
        # an idling session is told at once
        a.send(b"i1 IDLE\r\n")
        assert a.line().startswith(b"+ ")
        haven.deliver(user[0], _msg(4))
        assert a.wait_for(lambda l: b"EXISTS" in l) == b"* 4 EXISTS"
        assert a.wait_for(lambda l: True) == b"* 3 RECENT"
        a.send(b"DONE\r\n")
        a.until("i1")
        assert b.ok("NOOP")[:2] == [b"* 4 EXISTS", b"* 1 RECENT"]
        # COPY, MOVE and APPEND make recent copies in the target
        d.ok("SELECT Archive")
        b.ok("COPY 1 Archive")
        b.ok("MOVE 2 Archive")
        b.ok(b"APPEND Archive {9+}\r\nS: x\r\n\r\nx")
        lines = d.ok("NOOP")
        assert b"* 3 EXISTS" in lines and b"* 3 RECENT" in lines, lines
        assert d.ok("SEARCH RECENT")[0] == b"* SEARCH 1 2 3"
        # copies into the selected mailbox are recent to the session that made them
        lines = d.ok("COPY 1:3 Archive")
        assert b"* 6 EXISTS" in lines and b"* 6 RECENT" in lines, lines
        # an expunged recent message is not counted any more
        d.ok("STORE 1 +FLAGS.SILENT (\\Deleted)")
        d.ok("EXPUNGE")
        assert d.ok("SEARCH RECENT")[0] == b"* SEARCH 1 2 3 4 5"
        assert _recent(d.ok("SELECT Archive")) == [0]  # a new SELECT: nothing new since


def test_recent_under_concurrent_sessions_goes_to_one_of_them(haven, user):
    import threading

    sessions = 6
    wires = [Wire(haven.imap, timeout=30) for _ in range(sessions)]
    try:
        for w in wires:
            w.login(*user)
            w.ok("SELECT INBOX")
        stop = threading.Event()
        errors: list = []

        def poll(w) -> None:
            try:
                while not stop.is_set():
                    w.ok("NOOP")
            except Exception as e:  # noqa: BLE001 - reported below
                errors.append(e)

        threads = [threading.Thread(target=poll, args=(w,)) for w in wires]
        for t in threads:
            t.start()
        for i in range(15):
            haven.deliver(user[0], _msg(i))
        time.sleep(0.5)
        stop.set()
        for t in threads:
            t.join(30)
        assert not errors, errors
        owners: dict = {}
        for n, w in enumerate(wires):
            for uid in w.ok("UID SEARCH RECENT")[0].split()[2:]:
                owners.setdefault(int(uid), []).append(n)
        assert sorted(owners) == list(range(1, 16)), owners
        assert all(len(v) == 1 for v in owners.values()), owners
    finally:
        for w in wires:
            w.close()


def test_recent_across_two_nodes_on_one_database(haven_factory, haven):
    if haven.engine != "mariadb":
        pytest.skip("two nodes share a MariaDB database")
    other = haven_factory("mariadb", url=haven.url)
    user = haven.new_user()
    with Wire(haven.imap) as a, Wire(other.imap) as b:
        a.login(*user)
        b.login(*user)
        haven.deliver(user[0], _msg(1))
        assert _recent(a.ok("SELECT INBOX")) == [1]
        assert _recent(b.ok("SELECT INBOX")) == [0]
        other.deliver(user[0], _msg(2))
        lines = b.ok("NOOP")  # node B is told first
        assert lines[:2] == [b"* 2 EXISTS", b"* 1 RECENT"], lines
        lines = a.ok("NOOP")
        assert lines[:2] == [b"* 2 EXISTS", b"* 1 RECENT"], lines
        assert a.ok("UID SEARCH RECENT")[0] == b"* SEARCH 1"
        assert b.ok("UID SEARCH RECENT")[0] == b"* SEARCH 2"
