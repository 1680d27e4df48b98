"""The pure parts of SORT and THREAD (RFC 5256): base subjects (§2.1), sort order and ties, the
ORDEREDSUBJECT and REFERENCES algorithms, the thread-list rendering; the grammar of SORT,
THREAD, ESEARCH RETURN and SEARCHRES ``$``."""

from __future__ import annotations

import time

import pytest

from gateways.imap import thread
from gateways.imap.parser import ParseError, parse_command
from gateways.imap.searchres import SAVED
from gateways.imap.sorting import SortInput, base_subject, sent_date, sort_messages


@pytest.mark.parametrize("raw, base, reply", [
    ("hello", "hello", False),
    ("Re: hello", "hello", True),
    ("RE: Re: re:hello", "hello", True),
    ("Fwd: hello", "hello", True),
    ("FW: hello", "hello", True),
    ("fw : hello", "hello", True),  # subj-refwd allows WSP before the colon
    ("Re[2]: hello", "hello", True),  # a subj-blob inside subj-refwd
    ("[list] Re: hello", "hello", True),  # blobs before re: are part of the leader (step 3)
    ("Re: [list] hello", "hello", True),  # a leading blob goes when text remains (step 4)
    ("[list] [other] ", "[other]", False),  # ... but not when it would leave nothing
    ("[list]", "[list]", False),
    ("hello (fwd)", "hello", True),  # subj-trailer (step 2)
    ("hello (FWD) (fwd)  ", "hello", True),
    ("[Fwd: hello]", "hello", True),  # the subj-fwd wrapper (step 6)
    ("[fwd: Re: [list] hello (fwd)]", "hello", True),
    ("Re: [fwd: [fwd: hello]]", "hello", True),
    ("  hello \t  world  ", "hello world", False),  # WSP runs collapse (step 1)
    ("=?utf-8?q?Re=3A_R=C3=A9sum=C3=A9?=", "Résumé", True),  # encoded words decoded first (step 1)
    ("Rebecca", "Rebecca", False),  # "re" without a colon is text
    ("Re hello", "Re hello", False),
    ("", "", False),
    (None, "", False),
])
def test_base_subject(raw, base, reply):
    assert base_subject(raw) == (base, reply)


def msg(seq, subject=None, date=None, mid=None, irt=None, refs=(), frm=None, to=None, cc=None,
        internaldate=None, size=100):
    env = [date, subject, frm, frm, frm, to, cc, None, irt, mid]
    return SortInput(seq, seq * 10, internaldate if internaldate is not None else 1000 + seq, size, env,
                     tuple(refs))


def test_sent_date_falls_back_to_internaldate_and_honours_zones():
    assert sent_date("Mon, 1 Jan 2024 12:00:00 +0200", 5) == sent_date("Mon, 1 Jan 2024 10:00:00 +0000", 7)
    assert sent_date("not a date", 5) == 5 and sent_date(None, 6) == 6


def test_sort_criteria_reverse_and_ties_in_mailbox_order():
    a = [["Zed", None, "zed", "example.org"]]
    b = [["", None, "Alice", "example.org"]]
    msgs = [msg(1, "Re: beta", "Tue, 2 Jan 2024 00:00:00 +0000", frm=a, size=300),
            msg(2, "alpha", "Mon, 1 Jan 2024 00:00:00 +0000", frm=b, size=100),
            msg(3, "[list] Beta", None, frm=a, size=300, internaldate=1),  # no Date: INTERNALDATE
            msg(4, "Alpha (fwd)", "Wed, 3 Jan 2024 00:00:00 +0000", frm=None, size=200)]

    def order(*criteria):
        return [m.seq for m in sort_messages(list(criteria), msgs)]
    assert order((False, "SUBJECT")) == [2, 4, 1, 3]  # ties (alpha, beta) in mailbox order
    assert order((True, "SUBJECT")) == [1, 3, 2, 4]  # REVERSE does not reverse the tie-break
    assert order((False, "DATE")) == [3, 2, 1, 4]
    assert order((False, "ARRIVAL")) == [3, 1, 2, 4]
    assert order((True, "SIZE"), (False, "DATE")) == [3, 1, 4, 2]
    assert order((False, "FROM")) == [4, 2, 1, 3]  # no From sorts first; "Alice" < "zed" (casemap)
    assert order((False, "DISPLAYFROM")) == [4, 2, 1, 3]  # "alice@example.org" < "Zed"
    assert order((False, "SIZE"), (True, "SUBJECT")) == [2, 4, 1, 3]


def test_ordered_subject():
    msgs = [msg(1, "b", "Mon, 1 Jan 2024 03:00:00 +0000"), msg(2, "Re: a", "Mon, 1 Jan 2024 02:00:00 +0000"),
            msg(3, "a", "Mon, 1 Jan 2024 01:00:00 +0000"), msg(4, "Re: b", "Mon, 1 Jan 2024 04:00:00 +0000"),
            msg(5, "c", "Mon, 1 Jan 2024 00:00:00 +0000"), msg(6, "A", "Mon, 1 Jan 2024 05:00:00 +0000")]
    trees = thread.ordered_subject(msgs)
    assert thread.render(trees) == "(5)(3 (2)(6))(1 4)"
    assert thread.render(thread.ordered_subject(msgs, lambda m: m.uid)) == "(50)(30 (20)(60))(10 40)"


def test_render_matches_rfc_example():
    # RFC 5256 §4: "(2)(3 6 (4 23)(44 7 96))"
    trees = [(2, []), (3, [(6, [(4, [(23, [])]), (44, [(7, [(96, [])])])])])]
    assert thread.render(trees) == "(2)(3 6 (4 23)(44 7 96))"
    assert thread.render([(None, [(3, []), (5, [])])]) == "((3)(5))"
    assert thread.render([]) == ""


def test_references_links_dummies_and_subjects():
    d = "Mon, 1 Jan 2024 %02d:00:00 +0000"
    msgs = [
        msg(1, "hello", d % 1, "<a@x>"),
        msg(2, "Re: hello", d % 3, "<b@x>", refs=["a@x"]),
        msg(3, "Re: hello", d % 2, "<c@x>", refs=["a@x"]),  # sibling of 2, sent earlier
        msg(4, "Re: hello", d % 4, "<d@x>", refs=["a@x", "b@x"]),
        msg(5, "other", d % 5, "<e@x>"),
        msg(6, "Re: other", d % 6, "<f@x>", irt="<lost@x> <b@x>"),  # first In-Reply-To only
        msg(7, "Re: gone", d % 8, "<g@x>", refs=["missing@x"]),  # two children of a dummy root
        msg(8, "Re: gone", d % 7, "<h@x>", refs=["missing@x"]),
        msg(9, "hello", d % 9, None),  # no Message-ID, same subject as thread 1: a new dummy
        msg(10, "dup", d % 10, "<a@x>"),  # duplicate Message-ID: a message of its own
    ]
    trees = thread.references(msgs)
    # 6's only reference "lost" is a dummy with one child, promoted, then gathered under 5 (step 5)
    assert thread.render(trees) == "((1 (3)(2 4))(9))(5 6)((8)(7))(10)"


def test_references_truncated_header_and_loops():
    msgs = [
        msg(1, "s", None, "<a@x>", refs=["b@x"]),  # a child of b ...
        msg(2, "t", None, "<b@x>", refs=["a@x"]),  # ... and b a child of a: the loop is not made
        msg(3, "u", None, "<c@x>", refs=["c@x"]),  # a message referencing itself
        msg(4, "v", None, "<d@x>", refs=["x@x", "y@x"]),
        msg(5, "w", None, "<e@x>", refs=["y@x", "d@x"]),  # y already has parent x: kept
    ]
    assert thread.render(thread.references(msgs)) == "(2 1)(3)(4 5)"


def test_references_reparents_on_the_message_itself():
    # 2 names 1 as its parent through a truncated References; 3 says the truth about 2 (step 1B)
    msgs = [msg(1, "a", None, "<a@x>"), msg(2, "b", None, "<c@x>", refs=["a@x", "b@x"]),
            msg(3, "c", None, "<b@x>", refs=["z@x"])]
    assert thread.render(thread.references(msgs)) == "(1)(3 2)"


def test_thread_20000_messages_is_fast_enough_for_a_worker():
    msgs = []
    for i in range(1, 20001):
        parent = ["m%d@x" % (i // 2)] if i > 1 else []
        msgs.append(msg(i, "Re: [list] subject %d" % (i % 500), "Mon, 1 Jan 2024 00:00:00 +0000",
                        "<m%d@x>" % i, refs=parent))
    start = time.perf_counter()
    thread.render(thread.references(msgs))
    sort_messages([(False, "SUBJECT"), (True, "DATE")], msgs)
    assert time.perf_counter() - start < 10  # runs in a worker thread (cmd_sort.INLINE_MAX)


# -- grammar -----------------------------------------------------------------------------------
def test_parse_sort_thread_and_return():
    c = parse_command(b"a UID SORT (REVERSE DATE subject) UTF-8 UNSEEN")
    assert c.uid and c.name == "SORT" and c.args["sort"] == [(True, "DATE"), (False, "SUBJECT")]
    assert c.args["returns"] is None and c.args["criteria"] == ("and", [("flag", "\\Seen", False)])
    c = parse_command(b"a SORT RETURN (MIN COUNT) (ARRIVAL) US-ASCII ALL")
    assert c.args["returns"] == {"MIN", "COUNT"}
    c = parse_command(b"a THREAD REFERENCES UTF-8 ALL")
    assert c.args["algorithm"] == "REFERENCES"
    c = parse_command(b"a SEARCH RETURN () CHARSET UTF-8 ALL")
    assert c.args["returns"] == frozenset() and c.args["charset"] == "UTF-8"
    c = parse_command(b"a UID SEARCH RETURN (SAVE) UID $")
    assert c.args["returns"] == {"SAVE"} and c.args["criteria"] == ("and", [("uid", SAVED)])
    assert parse_command(b"a SEARCH $ SEEN").args["criteria"][1][0] == ("seq", SAVED)
    assert parse_command(b"a UID FETCH $ FLAGS").args["set"] is SAVED
    assert parse_command(b"a SEARCH ALL").args["returns"] is None


@pytest.mark.parametrize("line, code", [
    (b"a SORT (DATE) ALL", "BADCHARSET (UTF-8 US-ASCII)"),  # the charset is not optional: "ALL" is one
    (b"a SORT () UTF-8 ALL", None),
    (b"a SORT (REVERSE) UTF-8 ALL", None),
    (b"a SORT (REVERSE REVERSE DATE) UTF-8 ALL", None),
    (b"a SORT (SPEED) UTF-8 ALL", None),
    (b"a SORT (DATE) KOI8-R ALL", "BADCHARSET (UTF-8 US-ASCII)"),
    (b"a THREAD FASTEST UTF-8 ALL", None),
    (b"a THREAD REFERENCES ALL", "BADCHARSET (UTF-8 US-ASCII)"),
    (b"a SEARCH RETURN (FIRST) ALL", None),
    (b"a SEARCH RETURN ALL", None),
    (b"a FETCH $,1 FLAGS", None),  # "$" is a whole sequence set (RFC 5182 §3)
    (b"a FETCH 1:$ FLAGS", None),
])
def test_parse_errors(line, code):
    with pytest.raises(ParseError) as e:
        parse_command(line)
    assert e.value.code == code


def test_deep_threads_do_not_recurse():
    # a reply chain 5,000 deep, every message with a second (leaf) reply: depth and branching
    msgs, n = [], 5000
    for i in range(n):
        msgs.append(msg(2 * i + 1, "Re: deep", None, "<c%d@x>" % i, irt="<c%d@x>" % (i - 1) if i else None))
        msgs.append(msg(2 * i + 2, "Re: deep", None, "<l%d@x>" % i, irt="<c%d@x>" % i))
    start = time.perf_counter()
    text = thread.render(thread.references(msgs))
    assert time.perf_counter() - start < 10
    # "(1 (2)(3 (4)(5 ... (2n-1 2n))...)": the leaf reply sorts first (earlier INTERNALDATE)
    want = "(" + "".join("%d (%d)(" % (2 * i + 1, 2 * i + 2) for i in range(n - 1)) + \
        "%d %d" % (2 * n - 1, 2 * n) + ")" * (n - 1) + ")"
    assert text == want
    chain = [msg(i + 1, "x", None, "<k%d@x>" % i, irt="<k%d@x>" % (i - 1) if i else None) for i in range(20000)]
    assert thread.render(thread.references(chain)) == "(" + " ".join(str(i + 1) for i in range(20000)) + ")"
