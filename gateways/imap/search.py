"""SEARCH: the search-key grammar (RFC 3501 §6.4.4, §9 ``search-key``; RFC 7162 §3.1.5 MODSEQ)
and its evaluation over a session's messages.

Evaluation is three-valued so that the cheap keys (flags, UIDs, sizes, dates, MODSEQ: all in the
session's :class:`MessageMeta`) run first; only messages still undecided are loaded with their
header (HEADER/SUBJECT/FROM/..., SENT*) and, last, asked about their decoded text (BODY/TEXT):
:meth:`Store.search_text` tells which of the query's BODY/TEXT strings each message's text holds,
scanning batches in the store's CPU pool (``Candidate.text`` is that set).  Before anything
else, the string keys every match must satisfy (:func:`index_terms`) go to the store's text
index (:meth:`Store.text_candidates`): messages it rules out are dropped, the rest are
confirmed by the evaluation here, so the index only saves work and never decides a result.

Matching rules: string keys are case-insensitive substring matches on RFC 2047-decoded header
values (FROM/TO/CC/BCC also on each parsed address, ``mailbox@host`` with comments and folding
removed, and its display name) and on transfer- and charset-decoded text (RFC 3501 §6.4.4: "a substring ... ignoring
case"); dates use the UTC date of INTERNALDATE and the Date header's own date (ignoring time and
zone).  RECENT, NEW and OLD ask the session's \\Recent messages (session.SelectedMailbox);
in an IMAP4rev2 session they are BAD (RFC 9051 has neither \\Recent nor these keys).

ESEARCH results and SEARCHRES "$": cmd_sort.py, searchres.py.

Deliberately not done: fuzzy search, WITHIN (OLDER/YOUNGER).
"""

from __future__ import annotations

import datetime
import email.utils
from bisect import bisect_left
from collections import deque
from typing import Optional

from twisted.internet.defer import Deferred

from formats import mime

from . import objectid
from .reader import Reader

_FLAG_KEYS = {
    "ANSWERED": ("\\Answered", True), "DELETED": ("\\Deleted", True), "DRAFT": ("\\Draft", True),
    "FLAGGED": ("\\Flagged", True), "SEEN": ("\\Seen", True),
    "UNANSWERED": ("\\Answered", False), "UNDELETED": ("\\Deleted", False),
    "UNDRAFT": ("\\Draft", False), "UNFLAGGED": ("\\Flagged", False), "UNSEEN": ("\\Seen", False),
}
#: RFC 3501 keys that RFC 9051 dropped along with \Recent
_RECENT_KEYS = frozenset({"RECENT", "NEW", "OLD"})
_HEADER_KEYS = {"BCC": "bcc", "CC": "cc", "FROM": "from", "SUBJECT": "subject", "TO": "to"}
_DATE_KEYS = {"BEFORE": ("date", "<"), "ON": ("date", "="), "SINCE": ("date", ">="),
              "SENTBEFORE": ("sent", "<"), "SENTON": ("sent", "="), "SENTSINCE": ("sent", ">=")}
MAX_DEPTH = 100


# -- grammar -----------------------------------------------------------------------------------
def parse_search_keys(r: Reader) -> tuple:
    """1*(SP search-key) after the first SP -> ("and", [...])."""
    keys = [_key(r, 0)]
    while r.maybe_sp():
        keys.append(_key(r, 0))
    return ("and", keys)


def _text(r: Reader) -> str:
    return r.astring().decode("utf-8", "replace")


def _key(r: Reader, depth: int) -> tuple:
    if depth > MAX_DEPTH:
        raise r.error("search keys nested too deeply")
    if r.peek() == 0x28:
        return ("and", r.paren_list(lambda rr: _key(rr, depth + 1)))
    c = r.peek()
    if c == 0x2A or 0x30 <= c <= 0x39 or c == 0x24:  # 0x24: "$", RFC 5182 (searchres.py)
        return ("seq", r.seq_set())
    word = r.atom().upper()
    if word == "ALL":
        return ("all",)
    if word in _FLAG_KEYS:
        flag, want = _FLAG_KEYS[word]
        return ("flag", flag, want)
    if word in _RECENT_KEYS and r.rev2:
        # RFC 9051 removed \Recent (§2.3.2) and, with it, these keys from search-key (§9): an
        # IMAP4rev2 session sees no message recent, so they are a syntax error there, as any
        # key outside the grammar, rather than keys that quietly match nothing (or everything)
        raise r.error("%s is not an IMAP4rev2 search key (RFC 9051 has no \\Recent)" % word)
    if word in ("KEYWORD", "UNKEYWORD"):
        r.sp()
        flag = r.flag()
        if flag == "\\Recent":
            if r.rev2:
                raise r.error("\\Recent is not an IMAP4rev2 flag")
            return ("recent", word == "KEYWORD")
        return ("flag", flag, word == "KEYWORD")
    if word == "RECENT":
        return ("recent", True)
    if word == "OLD":
        return ("recent", False)
    if word == "NEW":  # RFC 3501 §6.4.4: RECENT UNSEEN
        return ("and", [("recent", True), ("flag", "\\Seen", False)])
    if word in _HEADER_KEYS:
        r.sp()
        kind = "header" if word == "SUBJECT" else "address"
        return (kind, _HEADER_KEYS[word], _text(r).casefold())
    if word == "HEADER":
        r.sp()
        name = _text(r).strip().lower()
        r.sp()
        return ("header", name, _text(r).casefold())
    if word in ("BODY", "TEXT"):
        r.sp()
        return (word.lower(), _text(r).casefold())
    if word in _DATE_KEYS:
        r.sp()
        kind, op = _DATE_KEYS[word]
        return (kind, op, datetime.date(*r.date()))
    if word in ("LARGER", "SMALLER"):
        r.sp()
        return (word.lower(), r.number())
    if word == "UID":
        r.sp()
        return ("uid", r.seq_set())
    if word == "NOT":
        r.sp()
        return ("not", _key(r, depth + 1))
    if word == "OR":
        r.sp()
        a = _key(r, depth + 1)
        r.sp()
        return ("or", a, _key(r, depth + 1))
    if word == "MODSEQ":
        # RFC 7162 §3.1.5: MODSEQ [entry-name entry-type-req] mod-sequence-valzer
        r.sp()
        if r.peek() == 0x22:
            r.quoted()
            r.sp()
            kind = r.atom().lower()
            if kind not in ("priv", "shared", "all"):
                raise r.error("invalid MODSEQ entry type")
            r.sp()
        return ("modseq", r.number())
    if word in ("EMAILID", "THREADID"):  # RFC 8474 §6: an objectid, compared exactly
        r.sp()
        return (word.lower(), r.atom())
    raise r.error("unknown search key %s" % word[:30])


def uses_modseq(node: tuple) -> bool:
    if node[0] == "modseq":
        return True
    if node[0] == "and":
        return any(uses_modseq(n) for n in node[1])
    if node[0] == "or":
        return uses_modseq(node[1]) or uses_modseq(node[2])
    if node[0] == "not":
        return uses_modseq(node[1])
    return False


# -- evaluation --------------------------------------------------------------------------------
class Candidate:
    """One message under evaluation: its sequence number, meta and what was loaded so far."""

    __slots__ = ("seq", "meta", "header", "fields", "addresses", "text", "sent", "blob_id")

    def __init__(self, seq: int, meta):
        self.seq = seq
        self.meta = meta
        self.header: Optional[bytes] = None  # raw header section, once loaded
        self.fields: Optional[dict] = None  # lower-case name -> [decoded value casefolded]
        self.addresses: Optional[dict] = None  # lower-case name -> [address forms casefolded]
        self.text: Optional[frozenset] = None  # the BODY/TEXT strings in the body text, once searched
        self.sent = None  # date of the Date header (False when absent/unparseable)
        self.blob_id: Optional[str] = None  # loaded with the header (EMAILID, THREADID)

    def field_values(self, name: str) -> list:
        if self.fields is None:
            self.fields = mime.searchable_fields(self.header or b"")
        return self.fields.get(name, [])

    def address_values(self, name: str) -> list:
        """The field's decoded text (as :meth:`field_values`) and, parsed, each address as
        ``mailbox@host`` without comments or folding, and each display name."""
        if self.addresses is None:
            self.addresses = {}
        values = self.addresses.get(name)
        if values is None:
            values = list(self.field_values(name))
            for fname, raw in mime.header_fields(self.header or b""):
                if fname.lower() == name:
                    text = raw.split(b":", 1)[1].decode("utf-8", "replace") if b":" in raw else ""
                    values.extend(v.casefold() for v in mime.address_forms(text))
            self.addresses[name] = values
        return values

    def sent_date(self):
        if self.sent is None:
            self.sent = False
            values = self.field_values("date")
            if values:
                try:
                    self.sent = email.utils.parsedate_to_datetime(values[0]).date()
                except (TypeError, ValueError, IndexError, OverflowError):
                    self.sent = False
        return self.sent


class Context:
    """What evaluation needs from the mailbox: sizes for ``*``, the session's \\Recent UIDs."""

    def __init__(self, count: int, largest_uid: int, recent=frozenset()):
        self.count = count
        self.largest_uid = largest_uid
        self.recent = recent


def evaluate(node: tuple, m: Candidate, ctx: Context) -> Optional[bool]:
    """True/False, or None when the message's header or text is needed but not loaded yet."""
    kind = node[0]
    meta = m.meta
    if kind == "and":
        result: Optional[bool] = True
        for sub in node[1]:
            v = evaluate(sub, m, ctx)
            if v is False:
                return False
            if v is None:
                result = None
        return result
    if kind == "or":
        a = evaluate(node[1], m, ctx)
        if a is True:
            return True
        b = evaluate(node[2], m, ctx)
        if b is True:
            return True
        return None if a is None or b is None else False
    if kind == "not":
        v = evaluate(node[1], m, ctx)
        return None if v is None else not v
    if kind == "all":
        return True
    if kind == "none":
        return False
    if kind == "flag":
        return (node[1] in meta.flags) == node[2]
    if kind == "recent":
        return (meta.uid in ctx.recent) == node[1]
    if kind == "seq":
        return node[1].contains(m.seq, ctx.count)
    if kind == "uid":
        return node[1].contains(meta.uid, ctx.largest_uid)
    if kind == "larger":
        return meta.size > node[1]
    if kind == "smaller":
        return meta.size < node[1]
    if kind == "modseq":
        return meta.modseq >= node[1]
    if kind == "date":
        return _compare(datetime.datetime.fromtimestamp(meta.internaldate, datetime.timezone.utc).date(),
                        node[1], node[2])
    if kind == "sent":
        if m.header is None:
            return None
        sent = m.sent_date()
        return False if sent is False else _compare(sent, node[1], node[2])
    if kind in ("header", "address"):
        if m.header is None:
            return None
        values = m.field_values(node[1]) if kind == "header" else m.address_values(node[1])
        needle = node[2]
        return any(needle in v for v in values) if needle else bool(values)
    if kind == "body":
        if m.text is None:
            return None
        return node[1] in m.text
    if kind == "emailid":
        return None if m.blob_id is None else objectid.email_id(m.blob_id) == node[1]
    if kind == "threadid":
        return None if m.header is None else objectid.thread_id(m.header, m.blob_id or "") == node[1]
    if kind == "text":
        if m.text is None or m.header is None:
            return None
        if node[1] in m.text:
            return True
        m.field_values("")  # the decoded fields, whichever key came first (else TEXT saw them only sometimes)
        return any(node[1] in v for vs in m.fields.values() for v in vs) or \
            node[1] in m.header.decode("utf-8", "replace").casefold()
    raise ValueError("unknown search node %r" % (kind,))


def _compare(value, op: str, ref) -> bool:
    if op == "<":
        return value < ref
    if op == "=":
        return value == ref
    return value >= ref


def needs(node: tuple) -> set:
    kind = node[0]
    if kind == "and":
        out: set = set()
        for sub in node[1]:
            out |= needs(sub)
        return out
    if kind == "or":
        return needs(node[1]) | needs(node[2])
    if kind == "not":
        return needs(node[1])
    if kind in ("header", "address", "sent", "emailid", "threadid"):
        return {"header"}
    if kind == "body":
        return {"text"}
    if kind == "text":
        return {"header", "text"}
    return set()


def text_needles(node: tuple) -> frozenset:
    """The strings of the BODY and TEXT keys (casefolded at parse time)."""
    kind = node[0]
    if kind in ("body", "text"):
        return frozenset((node[1],))
    if kind == "and":
        return frozenset().union(*(text_needles(n) for n in node[1]))
    if kind == "or":
        return text_needles(node[1]) | text_needles(node[2])
    if kind == "not":
        return text_needles(node[1])
    return frozenset()


_INDEXED_HEADERS = frozenset(("subject", "from", "to", "cc", "bcc"))


def index_terms(node: tuple) -> list:
    """``(field, needle)`` of the string keys every match must satisfy (those ANDed at the top,
    not under OR or NOT), for :meth:`Store.text_candidates`."""
    kind = node[0]
    if kind == "and":
        return [t for sub in node[1] for t in index_terms(sub)]
    if kind in ("header", "address") and node[1] in _INDEXED_HEADERS and node[2]:
        return [(node[1], node[2])]
    if kind in ("body", "text") and node[1]:
        return [(kind, node[1])]
    return []


async def run_search(store, folder_id: int, uids: list, metas: dict, node: tuple, ctx: Context,
                     batch: int = 250, window: int = 2) -> list:
    """The messages matching ``node``, as :class:`Candidate` s in ascending order, of the
    mailbox's ``uids`` (in sequence order) and their ``metas``.  A Candidate is made only for a
    message the index did not rule out (at 20,000 messages making them all costs ~10 ms).

    The text index narrows the candidates first; those still undecided after the cheap keys are
    loaded in batches: their header when a key
    needs it, then the text keys' answers from :meth:`Store.search_text`.  Up to ``window`` text
    batches are in flight at once, so the store scans one while it reads the next."""
    terms = index_terms(node)
    needles = text_needles(node)
    maybe = None
    if terms and uids:
        # first: what the index rules out is not evaluated at all (at 20,000 messages the
        # evaluation of the cheap keys alone costs more than the index's query)
        maybe = await store.text_matches(folder_id, terms)
    if maybe is not None:
        # When every BODY/TEXT string of the query is an ANDed BODY key, an indexed message
        # that passed the index holds them all in its body (the index is exact for BODY):
        # its text needs no second search.
        known = needles if needles and needles <= {n for f, n in terms if f == "body"} else None
        # UIDs ascend with sequence numbers: look each survivor up rather than walk them all
        candidates = []
        for u in sorted(maybe):
            i = bisect_left(uids, u)
            if i < len(uids) and uids[i] == u:
                m = Candidate(i + 1, metas[u])
                if known is not None and maybe[u]:
                    m.text = known
                candidates.append(m)
    else:
        candidates = [Candidate(i + 1, metas[u]) for i, u in enumerate(uids)]
    matched = []
    pending = []
    for m in candidates:
        v = evaluate(node, m, ctx)
        if v:
            matched.append(m)
        elif v is None:
            pending.append(m)
    if not pending:
        return matched
    want = needs(node)
    inflight: deque = deque()

    async def settle_oldest() -> None:
        waiting, d = inflight.popleft()
        found = await d
        for m in waiting:
            hits = found.get(m.meta.uid)
            if hits is None:
                continue  # expunged meanwhile
            m.text = hits
            if evaluate(node, m, ctx):
                matched.append(m)

    try:
        for i in range(0, len(pending), batch):
            chunk = pending[i:i + batch]
            if "header" in want:
                by_uid = {m.meta.uid: m for m in chunk}
                records = await store.fetch_messages(folder_id, list(by_uid), header=True)
                chunk = []
                for rec in records:
                    m = by_uid[rec.meta.uid]
                    m.header = rec.header or b""
                    m.blob_id = rec.blob_id
                    v = evaluate(node, m, ctx)
                    if v:
                        matched.append(m)
                    elif v is None:
                        chunk.append(m)
            if chunk and "text" in want:
                d = Deferred.fromCoroutine(store.search_text(folder_id, [m.meta.uid for m in chunk], needles))
                inflight.append((chunk, d))
                if len(inflight) >= window:
                    await settle_oldest()
        while inflight:
            await settle_oldest()
    finally:
        for _waiting, d in inflight:  # after a failure: nobody waits for these any more
            d.addErrback(lambda _failure: None)
    matched.sort(key=lambda m: m.meta.uid)
    return matched
