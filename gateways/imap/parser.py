"""IMAP command parser: one framed command (bytes, literals inline) -> :class:`Command`.

Pure and fuzzable: no I/O, no store; every malformed input raises :class:`ParseError` (never
anything else - the fuzz test holds us to it).  The grammar is RFC 3501 §9 plus the extensions we
advertise: LITERAL+ (RFC 7888), SASL-IR (RFC 4959), ID (RFC 2971), ENABLE (RFC 5161), UIDPLUS UID
EXPUNGE (RFC 4315), MOVE (RFC 6851), CONDSTORE/QRESYNC (RFC 7162), LIST-EXTENDED (RFC 5258),
LIST-STATUS (RFC 5819), SPECIAL-USE / CREATE-SPECIAL-USE (RFC 6154), UNSELECT (RFC 3691), QUOTA
(RFC 9208).

Invariants:
* Mailbox names come out as the store's Unicode names: modified UTF-7 decoded (RFC 3501 §5.1.3)
  and "INBOX" matched case-insensitively (§5.1), also as the first component of a path.
* System flags come out in canonical case; keywords keep their case.
* Strings are returned as bytes unless the grammar makes them text (names, flags, atoms).

Deliberately not done: literal8/BINARY, MULTIAPPEND, CATENATE, ESEARCH ``RETURN``, SEARCHRES ``$``,
UTF8=ACCEPT.  The parser is lenient where clients are known to be sloppy (bare LF, a lower-case
keyword, an unquoted date).
"""

from __future__ import annotations

import re
import time
import calendar
from dataclasses import dataclass, field
from typing import Optional

from . import utf7
from .seqset import SequenceSet, SeqSetError

SYSTEM_FLAGS = {f.lower(): f for f in ("\\Seen", "\\Answered", "\\Flagged", "\\Deleted", "\\Draft")}
_ATOM_SPECIALS = set(b'(){ %*"\\]') | set(range(0, 0x20)) | {0x7F}
_ASTRING_STOP = set(b'(){ %*"\\') | set(range(0, 0x20)) | {0x7F}
_LIST_STOP = set(b'(){ "\\') | set(range(0, 0x20)) | {0x7F}
MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
_DATE_TIME = re.compile(r"^ ?(\d{1,2})-([A-Za-z]{3})-(\d{4}) (\d{2}):(\d{2}):(\d{2}) ([+-])(\d{2})(\d{2})$")
_DATE = re.compile(r"^(\d{1,2})-([A-Za-z]{3})-(\d{4})$")


class ParseError(Exception):
    """The command is malformed: answer ``tag BAD text`` (``* BAD`` when tag is None)."""

    def __init__(self, text: str, tag: Optional[str] = None, code: Optional[str] = None):
        super().__init__(text)
        self.text = text
        self.tag = tag
        self.code = code


@dataclass
class Command:
    tag: str
    name: str  # upper-case verb without "UID"
    uid: bool = False
    args: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Section:
    path: tuple = ()  # part numbers, () for the whole message
    spec: str = ""  # "", HEADER, HEADER.FIELDS, HEADER.FIELDS.NOT, TEXT, MIME
    fields: tuple = ()  # header field names for HEADER.FIELDS(.NOT), as sent
    label: str = ""  # text between the brackets in the response


@dataclass(frozen=True)
class FetchItem:
    name: str  # FLAGS, UID, ENVELOPE, BODY, BODYSTRUCTURE, BODY[], RFC822, RFC822.HEADER, ...
    section: Optional[Section] = None  # for BODY[...]
    partial: Optional[tuple] = None  # (offset, length)
    peek: bool = False

    @property
    def label(self) -> str:
        """The item name in the response (RFC 3501 §7.4.2: BODY[...]<origin>)."""
        if self.name != "BODY[]":
            return self.name
        text = "BODY[%s]" % self.section.label
        if self.partial is not None:
            text += "<%d>" % self.partial[0]
        return text


class Reader:
    """Cursor over a framed command; literals ``{n}``/``{n+}`` + CRLF + n octets are inline."""

    def __init__(self, data: bytes, tag: Optional[str] = None):
        self.data = data
        self.pos = 0
        self.tag = tag

    def error(self, text: str) -> ParseError:
        return ParseError(text, self.tag)

    # -- primitives ------------------------------------------------------------------------
    def at_end(self) -> bool:
        return self.pos >= len(self.data)

    def peek(self) -> int:
        return self.data[self.pos] if self.pos < len(self.data) else -1

    def sp(self) -> None:
        if self.peek() != 0x20:
            raise self.error("expected a space at offset %d" % self.pos)
        self.pos += 1

    def maybe_sp(self) -> bool:
        if self.peek() == 0x20:
            self.pos += 1
            return True
        return False

    def expect(self, token: bytes) -> None:
        if self.data[self.pos:self.pos + len(token)].upper() != token.upper():
            raise self.error("expected %s" % token.decode())
        self.pos += len(token)

    def maybe(self, token: bytes) -> bool:
        if self.data[self.pos:self.pos + len(token)].upper() == token.upper():
            self.pos += len(token)
            return True
        return False

    def end(self) -> None:
        if not self.at_end():
            raise self.error("unexpected characters at end of command")

    def _run(self, stop: set) -> bytes:
        start = self.pos
        data = self.data
        n = len(data)
        while self.pos < n and data[self.pos] not in stop and data[self.pos] < 0x80:
            self.pos += 1
        return data[start:self.pos]

    def atom(self) -> str:
        raw = self._run(_ATOM_SPECIALS)
        if not raw:
            raise self.error("expected an atom at offset %d" % self.pos)
        return raw.decode("ascii")

    def number(self) -> int:
        start = self.pos
        while self.peek() in range(0x30, 0x3A):
            self.pos += 1
        if start == self.pos or self.pos - start > 20:
            raise self.error("expected a number")
        return int(self.data[start:self.pos])

    def nz_number(self) -> int:
        value = self.number()
        if value == 0 or value > 0xFFFFFFFF:
            raise self.error("number out of range")
        return value

    def quoted(self) -> bytes:
        self.expect(b'"')
        out = bytearray()
        data = self.data
        while True:
            if self.pos >= len(data):
                raise self.error("unterminated quoted string")
            c = data[self.pos]
            self.pos += 1
            if c == 0x22:
                return bytes(out)
            if c == 0x5C:
                if self.pos >= len(data) or data[self.pos] not in (0x22, 0x5C):
                    raise self.error("invalid escape in quoted string")
                out.append(data[self.pos])
                self.pos += 1
            elif c in (0x0D, 0x0A, 0x00):
                raise self.error("CR, LF or NUL in quoted string")
            else:
                out.append(c)

    def literal(self) -> bytes:
        self.expect(b"{")
        size = self.number()
        self.maybe(b"+")
        self.expect(b"}")
        if not self.maybe(b"\r\n"):
            self.expect(b"\n")
        if self.pos + size > len(self.data):
            raise self.error("literal shorter than announced")
        value = self.data[self.pos:self.pos + size]
        self.pos += size
        return value

    def string(self) -> bytes:
        c = self.peek()
        if c == 0x22:
            return self.quoted()
        if c == 0x7B:
            return self.literal()
        raise self.error("expected a string")

    def astring(self) -> bytes:
        c = self.peek()
        if c in (0x22, 0x7B):
            return self.string()
        raw = self._run(_ASTRING_STOP)
        if not raw:
            raise self.error("expected an atom or string at offset %d" % self.pos)
        return raw

    def nstring(self) -> Optional[bytes]:
        if self.maybe(b"NIL"):
            return None
        return self.string()

    def list_mailbox(self) -> bytes:
        c = self.peek()
        if c in (0x22, 0x7B):
            return self.string()
        raw = self._run(_LIST_STOP)
        if not raw:
            raise self.error("expected a mailbox pattern")
        return raw

    def mailbox(self) -> str:
        return mailbox_name(self.astring(), self.tag)

    def seq_set(self) -> SequenceSet:
        raw = self._run(set(b" ()") | set(range(0, 0x20)))
        try:
            return SequenceSet.parse(raw.decode("ascii"))
        except (SeqSetError, UnicodeDecodeError) as e:
            raise self.error(str(e) if isinstance(e, SeqSetError) else "invalid sequence set") from None

    def paren_list(self, item) -> list:
        """"(" [item *(SP item)] ")" with ``item(self)`` reading one element."""
        self.expect(b"(")
        out = []
        if self.maybe(b")"):
            return out
        while True:
            out.append(item(self))
            if self.maybe(b")"):
                return out
            self.sp()

    def flag(self) -> str:
        if self.maybe(b"\\"):
            if self.maybe(b"*"):
                raise self.error("\\* is not a flag")
            name = "\\" + self.atom()
            canonical = SYSTEM_FLAGS.get(name.lower())
            if canonical is None:
                if name.lower() == "\\recent":
                    return "\\Recent"
                raise self.error("unknown system flag %s" % name[:40])
            return canonical
        return self.atom()

    def flag_list(self) -> list:
        return self.paren_list(Reader.flag)

    def date(self) -> tuple:
        raw = self.quoted() if self.peek() == 0x22 else self._run(set(b" ()") | set(range(0, 0x20)))
        m = _DATE.match(raw.decode("ascii", "replace"))
        if not m or m.group(2).upper() not in MONTHS:
            raise self.error("invalid date (expected dd-Mon-yyyy)")
        day, month, year = int(m.group(1)), MONTHS.index(m.group(2).upper()) + 1, int(m.group(3))
        try:
            time.strptime("%d %d %d" % (year, month, day), "%Y %m %d")
        except ValueError:
            raise self.error("invalid date") from None
        return (year, month, day)

    def date_time(self) -> int:
        raw = self.quoted().decode("ascii", "replace")
        return parse_date_time(raw, self)


def parse_date_time(raw: str, reader: Optional[Reader] = None) -> int:
    """RFC 3501 ``date-time`` -> seconds since the epoch (UTC)."""
    m = _DATE_TIME.match(raw)
    err = reader.error if reader else (lambda t: ParseError(t))
    if not m or m.group(2).upper() not in MONTHS:
        raise err("invalid date-time (expected \"dd-Mon-yyyy hh:mm:ss +zzzz\")")
    day, mon, year, hh, mm, ss = (int(m.group(1)), MONTHS.index(m.group(2).upper()) + 1,
                                  int(m.group(3)), int(m.group(4)), int(m.group(5)), int(m.group(6)))
    if not (1 <= day <= 31 and hh < 24 and mm < 60 and ss < 61 and 1 <= year <= 9999):
        raise err("invalid date-time")
    offset = (int(m.group(8)) * 60 + int(m.group(9))) * 60 * (1 if m.group(7) == "+" else -1)
    try:
        return calendar.timegm((year, mon, day, hh, mm, min(ss, 59), 0, 0, 0)) - offset
    except (ValueError, OverflowError):
        raise err("invalid date-time") from None


def mailbox_name(raw: bytes, tag: Optional[str] = None) -> str:
    """Wire mailbox name -> store name (modified UTF-7 decoded, INBOX normalized)."""
    try:
        text = raw.decode("ascii")
        name = utf7.decode(text)
    except UnicodeDecodeError:
        # RFC 3501 wants modified UTF-7; some clients send raw UTF-8: accept it when valid
        try:
            name = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise ParseError("mailbox name is neither modified UTF-7 nor UTF-8", tag) from None
    except ValueError as e:
        raise ParseError("invalid mailbox name: %s" % e, tag) from None
    return normalize_inbox(name)


def normalize_inbox(name: str) -> str:
    head, sep, rest = name.partition("/")
    if head.upper() == "INBOX":
        return "INBOX" + sep + rest
    return name


# -- per-command argument parsers ---------------------------------------------------------------
def _no_args(r: Reader, args: dict) -> None:
    pass


def _login(r: Reader, args: dict) -> None:
    r.sp()
    args["user"] = r.astring()
    r.sp()
    args["password"] = r.astring()


def _authenticate(r: Reader, args: dict) -> None:
    r.sp()
    args["mechanism"] = r.atom().upper()
    args["initial"] = None
    if r.maybe_sp():
        raw = r._run({0x20})
        if not raw:
            raise r.error("expected an initial response")
        args["initial"] = raw


def _id(r: Reader, args: dict) -> None:
    r.sp()
    if r.maybe(b"NIL"):
        args["params"] = None
        return
    items = r.paren_list(lambda rr: rr.nstring())
    if len(items) % 2 or len(items) > 60:
        raise r.error("ID takes field/value pairs")
    args["params"] = {(k or b"").decode("utf-8", "replace")[:30]: (v or b"").decode("utf-8", "replace")[:1024]
                      for k, v in zip(items[::2], items[1::2])}


def _enable(r: Reader, args: dict) -> None:
    caps = []
    while r.maybe_sp():
        caps.append(r.atom().upper())
    if not caps:
        raise r.error("ENABLE needs at least one capability")
    args["capabilities"] = caps


def _mailbox(r: Reader, args: dict) -> None:
    r.sp()
    args["mailbox"] = r.mailbox()


def _create(r: Reader, args: dict) -> None:
    _mailbox(r, args)
    args["special_use"] = None
    if r.maybe_sp():
        # RFC 6154 §3: CREATE name (USE (\Drafts))
        r.expect(b"(")
        r.expect(b"USE")
        r.sp()
        uses = r.paren_list(lambda rr: ("\\" + rr.atom()) if rr.maybe(b"\\") else rr.atom())
        r.expect(b")")
        args["special_use"] = uses


def _rename(r: Reader, args: dict) -> None:
    r.sp()
    args["old"] = r.mailbox()
    r.sp()
    args["new"] = r.mailbox()


def _select(r: Reader, args: dict) -> None:
    _mailbox(r, args)
    args["condstore"] = False
    args["qresync"] = None
    if not r.maybe_sp():
        return

    def param(rr: Reader):
        name = rr.atom().upper()
        if name == "CONDSTORE":
            args["condstore"] = True
        elif name == "QRESYNC":
            # RFC 7162 §3.2.5: (uidvalidity modseq [known-uids] [(seq-match-data)])
            rr.sp()
            rr.expect(b"(")
            q = {"uidvalidity": rr.nz_number()}
            rr.sp()
            q["modseq"] = rr.number()
            q["known_uids"] = None
            q["seq_match"] = None
            if rr.maybe_sp():
                if rr.peek() != 0x28:
                    q["known_uids"] = rr.seq_set()
                    rr.maybe_sp()
                if rr.peek() == 0x28:
                    rr.expect(b"(")
                    seqs = rr.seq_set()
                    rr.sp()
                    uids = rr.seq_set()
                    rr.expect(b")")
                    q["seq_match"] = (seqs, uids)
            rr.expect(b")")
            args["qresync"] = q
        else:
            raise rr.error("unknown SELECT parameter %s" % name[:30])
        return name

    r.paren_list(param)


_LIST_SELECT = {"SUBSCRIBED", "REMOTE", "RECURSIVEMATCH", "SPECIAL-USE"}
_STATUS_ITEMS = {"MESSAGES", "RECENT", "UIDNEXT", "UIDVALIDITY", "UNSEEN", "HIGHESTMODSEQ", "SIZE",
                 "DELETED", "DELETED-STORAGE", "APPENDLIMIT"}


def _status_items(r: Reader) -> list:
    items = r.paren_list(lambda rr: rr.atom().upper())
    for item in items:
        if item not in _STATUS_ITEMS:
            raise r.error("unknown STATUS item %s" % item[:30])
    if not items:
        raise r.error("STATUS needs at least one item")
    return items


def _list(r: Reader, args: dict) -> None:
    r.sp()
    select = set()
    if r.peek() == 0x28:
        # RFC 5258 §3: LIST (selection options) reference patterns
        for opt in r.paren_list(lambda rr: rr.atom().upper()):
            if opt not in _LIST_SELECT:
                raise r.error("unknown LIST selection option %s" % opt[:30])
            select.add(opt)
        r.sp()
    args["select"] = select
    args["reference"] = _pattern(r.astring(), r)
    r.sp()
    if r.peek() == 0x28:
        args["patterns"] = [_pattern(p, r) for p in r.paren_list(Reader.list_mailbox)]
    else:
        args["patterns"] = [_pattern(r.list_mailbox(), r)]
    returns = set()
    status = None
    if r.maybe_sp():
        r.expect(b"RETURN")
        r.sp()

        def ret(rr: Reader):
            nonlocal status
            opt = rr.atom().upper()
            if opt == "STATUS":
                rr.sp()
                status = _status_items(rr)  # RFC 5819 LIST-STATUS
            elif opt not in ("SUBSCRIBED", "CHILDREN", "SPECIAL-USE", "MYRIGHTS"):
                raise rr.error("unknown LIST return option %s" % opt[:30])
            returns.add(opt)

        r.paren_list(ret)
    args["returns"] = returns
    args["status"] = status


def _pattern(raw: bytes, r: Reader) -> str:
    try:
        return utf7.decode(raw.decode("ascii"))
    except UnicodeDecodeError:
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise r.error("mailbox pattern is neither modified UTF-7 nor UTF-8") from None
    except ValueError as e:
        raise r.error("invalid mailbox pattern: %s" % e) from None


def _lsub(r: Reader, args: dict) -> None:
    r.sp()
    args["select"] = {"SUBSCRIBED"}
    args["reference"] = _pattern(r.astring(), r)
    r.sp()
    args["patterns"] = [_pattern(r.list_mailbox(), r)]
    args["returns"] = set()
    args["status"] = None


def _status(r: Reader, args: dict) -> None:
    _mailbox(r, args)
    r.sp()
    args["items"] = _status_items(r)


def _quota_root(r: Reader, args: dict) -> None:
    # RFC 9208 §7: quota-root-name = astring (kept as bytes: roots are compared, never decoded)
    r.sp()
    args["root"] = r.astring()


def _setquota(r: Reader, args: dict) -> None:
    # RFC 9208 §7: "SETQUOTA" SP quota-root-name SP "(" [resource-name SP number64 *(...)] ")";
    # parsed in full so that a malformed command is BAD and a well-formed one gets the refusal
    _quota_root(r, args)
    r.sp()

    def limit(rr: Reader) -> tuple:
        name = rr.atom().upper()
        rr.sp()
        return name, rr.number()

    args["limits"] = r.paren_list(limit)


def _append(r: Reader, args: dict) -> None:
    _mailbox(r, args)
    r.sp()
    args["flags"] = []
    args["internaldate"] = None
    if r.peek() == 0x28:
        args["flags"] = r.flag_list()
        r.sp()
    if r.peek() == 0x22:
        start = r.pos
        value = r.quoted()
        if r.maybe_sp():
            r.pos = start
            args["internaldate"] = r.date_time()
            r.sp()
        else:
            args["message"] = value
            return
    if r.peek() == 0x7E:
        raise ParseError("literal8 (BINARY) is not supported", r.tag, "CANNOT")
    if r.peek() != 0x7B:
        raise r.error("APPEND expects the message as a literal")
    args["message"] = r.literal()


_FETCH_MACROS = {
    "ALL": ("FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE"),
    "FAST": ("FLAGS", "INTERNALDATE", "RFC822.SIZE"),
    "FULL": ("FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE", "BODY"),
}
_FETCH_SIMPLE = {"ENVELOPE", "FLAGS", "INTERNALDATE", "RFC822", "RFC822.HEADER", "RFC822.SIZE",
                 "RFC822.TEXT", "BODY", "BODYSTRUCTURE", "UID", "MODSEQ"}


def _fetch_att(r: Reader) -> FetchItem:
    name = r._run(set(b" ()[<") | set(range(0, 0x20))).decode("ascii").upper()
    if name in ("BODY", "BODY.PEEK") and r.peek() == 0x5B:
        section = _section(r)
        partial = None
        if r.maybe(b"<"):
            start = r.number()
            r.expect(b".")
            length = r.nz_number()
            r.expect(b">")
            partial = (start, length)
        return FetchItem("BODY[]", section, partial, peek=(name == "BODY.PEEK"))
    if name == "BINARY" or name.startswith("BINARY."):
        raise ParseError("BINARY is not supported", r.tag, "CANNOT")
    if name not in _FETCH_SIMPLE:
        raise r.error("unknown FETCH item %s" % (name[:30] or "(empty)"))
    return FetchItem(name)


def _section(r: Reader) -> Section:
    r.expect(b"[")
    path = []
    spec = ""
    fields: tuple = ()
    while r.peek() in range(0x30, 0x3A):
        path.append(r.nz_number())
        if not r.maybe(b"."):
            break
    if r.peek() != 0x5D:
        spec = r._run(set(b" ]") | set(range(0, 0x20))).decode("ascii").upper()
        if spec not in ("HEADER", "HEADER.FIELDS", "HEADER.FIELDS.NOT", "TEXT", "MIME") or (spec == "MIME" and not path):
            raise r.error("invalid section specification %s" % spec[:40])
        if spec.startswith("HEADER.FIELDS"):
            r.sp()
            names = r.paren_list(Reader.astring)
            if not names:
                raise r.error("HEADER.FIELDS needs at least one field name")
            try:
                fields = tuple(n.decode("ascii") for n in names)
            except UnicodeDecodeError:
                raise r.error("header field names must be ASCII") from None
            if any(not f or any(c in f for c in ' :\t"\\') for f in fields):
                raise r.error("invalid header field name")
    r.expect(b"]")
    label = ".".join(str(p) for p in path)
    if spec:
        label = (label + "." if label else "") + spec
        if fields:
            label += " (" + " ".join(fields) + ")"
    return Section(tuple(path), spec, fields, label)


def _fetch(r: Reader, args: dict) -> None:
    r.sp()
    args["set"] = r.seq_set()
    r.sp()
    if r.peek() == 0x28:
        items = r.paren_list(_fetch_att)
        if not items:
            raise r.error("FETCH needs at least one item")
    else:
        start = r.pos
        word = r._run(set(b" ()[<") | set(range(0, 0x20))).decode("ascii").upper()
        if word in _FETCH_MACROS:
            items = [FetchItem(n) for n in _FETCH_MACROS[word]]
        else:
            r.pos = start
            items = [_fetch_att(r)]
    args["items"] = items
    args["changedsince"] = None
    args["vanished"] = False
    if r.maybe_sp():
        def modifier(rr: Reader):
            name = rr.atom().upper()
            if name == "CHANGEDSINCE":  # RFC 7162 §3.1.4.1
                rr.sp()
                args["changedsince"] = rr.number()
            elif name == "VANISHED":  # RFC 7162 §3.2.6
                args["vanished"] = True
            else:
                raise rr.error("unknown FETCH modifier %s" % name[:30])

        r.paren_list(modifier)
        if args["vanished"] and args["changedsince"] is None:
            raise r.error("VANISHED requires CHANGEDSINCE")


def _store(r: Reader, args: dict) -> None:
    r.sp()
    args["set"] = r.seq_set()
    r.sp()
    args["unchangedsince"] = None
    if r.peek() == 0x28:
        def modifier(rr: Reader):
            name = rr.atom().upper()
            if name != "UNCHANGEDSINCE":  # RFC 7162 §3.1.3
                raise rr.error("unknown STORE modifier %s" % name[:30])
            rr.sp()
            args["unchangedsince"] = rr.number()

        r.paren_list(modifier)
        r.sp()
    op = "replace"
    if r.maybe(b"+"):
        op = "add"
    elif r.maybe(b"-"):
        op = "remove"
    r.expect(b"FLAGS")
    args["silent"] = r.maybe(b".SILENT")
    args["op"] = op
    r.sp()
    if r.peek() == 0x28:
        flags = r.flag_list()
    else:
        flags = [r.flag()]
        while r.maybe_sp():
            flags.append(r.flag())
    args["flags"] = flags


def _copy(r: Reader, args: dict) -> None:
    r.sp()
    args["set"] = r.seq_set()
    r.sp()
    args["mailbox"] = r.mailbox()


def _uid_expunge(r: Reader, args: dict) -> None:
    r.sp()
    args["set"] = r.seq_set()


def _search(r: Reader, args: dict) -> None:
    from .search import parse_search_keys  # the search grammar lives with its evaluator

    args["charset"] = "UTF-8"
    r.sp()
    if r.data[r.pos:r.pos + 7].upper() == b"RETURN ":
        raise ParseError("ESEARCH (SEARCH RETURN) is not supported", r.tag, "CANNOT")
    if r.data[r.pos:r.pos + 8].upper() == b"CHARSET ":
        r.pos += 8
        charset = r.astring().decode("ascii", "replace").upper()
        if charset not in ("UTF-8", "US-ASCII", "UTF8"):
            raise ParseError("unsupported charset", r.tag, "BADCHARSET (UTF-8 US-ASCII)")
        args["charset"] = charset
        r.sp()
    args["criteria"] = parse_search_keys(r)


# name -> (argument parser, allowed with UID prefix)
COMMANDS = {
    "CAPABILITY": _no_args, "NOOP": _no_args, "LOGOUT": _no_args, "STARTTLS": _no_args,
    "CHECK": _no_args, "CLOSE": _no_args, "UNSELECT": _no_args, "IDLE": _no_args,
    "NAMESPACE": _no_args, "EXPUNGE": _no_args,
    "LOGIN": _login, "AUTHENTICATE": _authenticate, "ID": _id, "ENABLE": _enable,
    "SELECT": _select, "EXAMINE": _select, "CREATE": _create, "DELETE": _mailbox,
    "RENAME": _rename, "SUBSCRIBE": _mailbox, "UNSUBSCRIBE": _mailbox, "LIST": _list,
    "LSUB": _lsub, "STATUS": _status, "APPEND": _append,
    "FETCH": _fetch, "STORE": _store, "COPY": _copy, "MOVE": _copy, "SEARCH": _search,
    "GETQUOTA": _quota_root, "GETQUOTAROOT": _mailbox, "SETQUOTA": _setquota,
}
UID_COMMANDS = {"FETCH": _fetch, "STORE": _store, "COPY": _copy, "MOVE": _copy, "SEARCH": _search,
                "EXPUNGE": _uid_expunge}
_TAG = re.compile(rb"[\x21-\x7e]+")


def parse_command(data: bytes) -> Command:
    """Parse one framed command.  Raises :class:`ParseError` only."""
    try:
        return _parse(data)
    except ParseError:
        raise
    except (ValueError, IndexError, TypeError, RecursionError, UnicodeError) as e:  # belt and braces
        m = _TAG.match(data)
        raise ParseError("malformed command (%s)" % type(e).__name__, _safe_tag(m.group(0)) if m else None) from None


def _safe_tag(raw: bytes) -> Optional[str]:
    if not raw or any(c in b'(){%*"\\+' for c in raw):
        return None
    return raw.decode("ascii")


def _parse(data: bytes) -> Command:
    m = _TAG.match(data)
    tag = _safe_tag(m.group(0)) if m else None
    if tag is None:
        raise ParseError("missing or invalid tag")
    r = Reader(data, tag)
    r.pos = m.end()
    r.sp()
    name = r.atom().upper()
    uid = False
    if name == "UID":
        r.sp()
        name = r.atom().upper()
        parser = UID_COMMANDS.get(name)
        uid = True
    else:
        parser = COMMANDS.get(name)
    if parser is None:
        raise ParseError("unknown command %s" % name[:30], tag)
    cmd = Command(tag, name, uid)
    parser(r, cmd.args)
    r.end()
    return cmd
