"""IMAP command parser: one framed command (bytes, literals inline) -> :class:`Command`.

Pure and fuzzable: no I/O, no store; every malformed input raises :class:`ParseError` (never
anything else - the fuzz test holds us to it).  The grammar is RFC 3501 §9 plus the extensions we
advertise: LITERAL+ (RFC 7888), SASL-IR (RFC 4959), ID (RFC 2971), ENABLE (RFC 5161), UIDPLUS UID
EXPUNGE (RFC 4315), MOVE (RFC 6851), CONDSTORE/QRESYNC (RFC 7162), LIST-EXTENDED (RFC 5258),
LIST-STATUS (RFC 5819), SPECIAL-USE / CREATE-SPECIAL-USE (RFC 6154), UNSELECT (RFC 3691), QUOTA
(RFC 9208).

Invariants:
* Mailbox names come out as the store's Unicode names: modified UTF-7 decoded (RFC 3501 §5.1.3)
  and "INBOX" matched case-insensitively (§5.1), also as the first component of a path.  ASCII
  that is not valid modified UTF-7 is taken literally (a mailbox that does not exist), except as
  the name CREATE or RENAME would make: ``NO [CANNOT]`` (reader.mailbox_name).
* System flags come out in canonical case; keywords keep their case.
* Strings are returned as bytes unless the grammar makes them text (names, flags, atoms).

ESEARCH ``RETURN``, SEARCHRES ``$``, SORT/ESORT and THREAD: parse_sort.py.

Also BINARY (RFC 3516: FETCH BINARY/BINARY.PEEK/BINARY.SIZE, literal8 in APPEND), MULTIAPPEND
(RFC 3502), PREVIEW (RFC 8970), the UTF8 APPEND data extension (RFC 6855 §4).

UTF8=ACCEPT (RFC 6855): with ``utf8`` mailbox names and patterns are UTF-8 as sent and SEARCH
CHARSET is BAD (§3).

IMAP4rev2 (RFC 9051): with ``rev2`` mailbox names and patterns are UTF-8 as with UTF8=ACCEPT
(§5.1; SEARCH CHARSET stays allowed), and what RFC 9051 §9 dropped from the grammar is BAD:
the RECENT, NEW and OLD search keys (search.py) and the STATUS item RECENT (\\Recent is gone,
§2.3.2).

Deliberately not done: CATENATE.  The parser is lenient where clients are known to be sloppy
(bare LF, a lower-case keyword, an unquoted date).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Optional

from . import utf7
from .metadata import parse_getmetadata, parse_setmetadata
from .reader import ParseError, Reader
from .parse_sort import maybe_return, sort_args, thread_args
from .search import parse_search_keys  # the search grammar lives with its evaluator
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
        """The item name in the response (RFC 3501 §7.4.2: BODY[...]<origin>; RFC 3516 §4.2:
        BINARY[...]<origin>, BINARY.SIZE[...])."""
        if self.name not in ("BODY[]", "BINARY[]", "BINARY.SIZE[]"):
            return self.name
        text = "%s[%s]" % (self.name[:-2], self.section.label)
        if self.partial is not None:
            text += "<%d>" % self.partial[0]
        return text

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
    r.sp()
    args["mailbox"] = r.mailbox(new=True)
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
    args["new"] = r.mailbox(new=True)


def _select(r: Reader, args: dict) -> None:
    r.sp()
    args["mailbox"], args["spelled"] = r.mailbox_as_sent()  # "spelled": RFC 9051 §6.3.2 OLDNAME
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
                 "DELETED", "DELETED-STORAGE", "APPENDLIMIT", "MAILBOXID"}


def _status_items(r: Reader) -> list:
    items = r.paren_list(lambda rr: rr.atom().upper())
    for item in items:
        if item not in _STATUS_ITEMS or (item == "RECENT" and r.rev2):
            # RFC 9051 §9 status-att has no RECENT: \Recent is not IMAP4rev2's (§2.3.2)
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
        if "RECURSIVEMATCH" in select and "SUBSCRIBED" not in select:
            # RFC 5258 §3.1: RECURSIVEMATCH alone (or with REMOTE) is BAD; it only qualifies
            # SUBSCRIBED here (the one selection option with children to tell of)
            raise r.error("RECURSIVEMATCH needs the SUBSCRIBED selection option")
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
    if r.utf8:  # UTF-8, no modified UTF-7, once UTF8=ACCEPT (RFC 6855 §3) or IMAP4rev2 is enabled
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise r.error("mailbox pattern is not UTF-8") from None
    try:
        text = raw.decode("ascii")
        return utf7.decode(text)
    except UnicodeDecodeError:
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise r.error("mailbox pattern is neither modified UTF-7 nor UTF-8") from None
    except ValueError:
        return text  # not modified UTF-7: taken literally, as a mailbox name is (reader.mailbox_name)


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
    args["more"] = []
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
    args["message"] = _append_literal(r)
    # RFC 3502 §6.3.11 (MULTIAPPEND): append-message *(SP append-message)
    more = []
    while r.maybe_sp():
        more.append(_append_message(r))
    args["more"] = more


def _append_message(r: Reader) -> dict:
    """One further message of a MULTIAPPEND: [flag-list SP] [date-time SP] literal."""
    msg = {"flags": [], "internaldate": None}
    if r.peek() == 0x28:
        msg["flags"] = r.flag_list()
        r.sp()
    if r.peek() == 0x22:
        msg["internaldate"] = r.date_time()
        r.sp()
    msg["message"] = _append_literal(r)
    return msg


def _append_literal(r: Reader):
    """APPEND's message: a literal, a literal8 ``~{n}`` (RFC 3516 §4.4: binary content), or
    ``UTF8 (~{n})`` (RFC 6855 §4: the UTF8 data extension; accepted whether or not UTF8=ACCEPT
    was enabled, the message is stored as sent)."""
    if r.data[r.pos:r.pos + 6].upper() == b"UTF8 (":
        r.pos += 6
        if r.peek() != 0x7E:
            raise r.error("UTF8 APPEND data must be a literal8")
        value = _append_literal(r)
        r.expect(b")")
        return value
    if r.peek() == 0x7E:
        r.pos += 1
        if r.peek() != 0x7B:
            raise r.error("expected a literal8")
    elif r.peek() != 0x7B:
        raise r.error("APPEND expects the message as a literal")
    return r.literal(spooled=True)  # bytes, or the spool of a big literal


_FETCH_MACROS = {
    "ALL": ("FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE"),
    "FAST": ("FLAGS", "INTERNALDATE", "RFC822.SIZE"),
    "FULL": ("FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE", "BODY"),
}
_FETCH_SIMPLE = {"ENVELOPE", "FLAGS", "INTERNALDATE", "RFC822", "RFC822.HEADER", "RFC822.SIZE",
                 "RFC822.TEXT", "BODY", "BODYSTRUCTURE", "UID", "MODSEQ", "EMAILID", "THREADID"}


def _fetch_att(r: Reader) -> FetchItem:
    name = r._run(set(b" ()[<") | set(range(0, 0x20))).decode("ascii").upper()
    if name in ("BODY", "BODY.PEEK") and r.peek() == 0x5B:
        section = _section(r)
        return FetchItem("BODY[]", section, _partial(r), peek=(name == "BODY.PEEK"))
    if name in ("BINARY", "BINARY.PEEK", "BINARY.SIZE") and r.peek() == 0x5B:
        # RFC 3516 §6: section-binary = "[" [section-part] "]"; no <partial> for BINARY.SIZE
        section = _binary_section(r)
        partial = _partial(r) if name != "BINARY.SIZE" else None
        return FetchItem("BINARY.SIZE[]" if name == "BINARY.SIZE" else "BINARY[]", section, partial,
                         peek=(name == "BINARY.PEEK"))
    if name == "PREVIEW":
        # RFC 8970 §7: "PREVIEW" [SP "(" preview-mod *(SP preview-mod) ")"], preview-mod = "LAZY"
        if r.data[r.pos:r.pos + 2] == b" (":
            r.pos += 1
            for mod in r.paren_list(lambda rr: rr.atom().upper()):
                if mod != "LAZY":
                    raise r.error("unknown PREVIEW modifier %s" % mod[:30])
        return FetchItem("PREVIEW")
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


def _partial(r: Reader) -> Optional[tuple]:
    """``<origin.length>`` after a section (RFC 3501 §6.4.5), or None."""
    if not r.maybe(b"<"):
        return None
    start = r.number()
    r.expect(b".")
    length = r.nz_number()
    r.expect(b">")
    return start, length


def _binary_section(r: Reader) -> Section:
    r.expect(b"[")
    path = []
    while r.peek() in range(0x30, 0x3A):
        path.append(r.nz_number())
        if not r.maybe(b"."):
            break
    r.expect(b"]")
    return Section(tuple(path), "", (), ".".join(str(p) for p in path))


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


def _compress(r: Reader, args: dict) -> None:
    # RFC 4978 §3: "COMPRESS" SP algorithm
    r.sp()
    args["mechanism"] = r.atom().upper()


def _copy(r: Reader, args: dict) -> None:
    r.sp()
    args["set"] = r.seq_set()
    r.sp()
    args["mailbox"] = r.mailbox()


def _uid_expunge(r: Reader, args: dict) -> None:
    r.sp()
    args["set"] = r.seq_set()


def _search(r: Reader, args: dict) -> None:

    args["charset"] = "UTF-8"
    r.sp()
    args["returns"] = maybe_return(r)  # RFC 4731 ESEARCH, RFC 5182 SAVE
    if r.data[r.pos:r.pos + 8].upper() == b"CHARSET ":
        if r.utf8_accept:  # RFC 6855 §3: after ENABLE UTF8=ACCEPT, SEARCH with CHARSET is BAD
            raise r.error("SEARCH CHARSET is not allowed once UTF8=ACCEPT is enabled")
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
    "GETMETADATA": parse_getmetadata, "SETMETADATA": parse_setmetadata,
    "SORT": sort_args, "THREAD": thread_args,
    "COMPRESS": _compress,
}
UID_COMMANDS = {"FETCH": _fetch, "STORE": _store, "COPY": _copy, "MOVE": _copy, "SEARCH": _search,
                "EXPUNGE": _uid_expunge, "SORT": sort_args, "THREAD": thread_args}
_TAG = re.compile(rb"[\x21-\x7e]+")


def parse_command(data: bytes, spools: tuple = (), utf8: bool = False, rev2: bool = False) -> Command:
    """Parse one framed command (``spools``: its spooled literals, see framing.Frame; ``utf8``:
    UTF8=ACCEPT is enabled, RFC 6855; ``rev2``: IMAP4rev2 is enabled, RFC 9051).  Raises
    :class:`ParseError` only."""
    try:
        return _parse(data, spools, utf8, rev2)
    except ParseError:
        raise
    except (ValueError, IndexError, TypeError, RecursionError, UnicodeError):  # belt and braces
        # BAD without the exception's name: nothing of the implementation reaches a client
        m = _TAG.match(data)
        raise ParseError("malformed command", _safe_tag(m.group(0)) if m else None) from None


def _safe_tag(raw: bytes) -> Optional[str]:
    if not raw or any(c in b'(){%*"\\+' for c in raw):
        return None
    return raw.decode("ascii")


def _parse(data: bytes, spools: tuple = (), utf8: bool = False, rev2: bool = False) -> Command:
    m = _TAG.match(data)
    tag = _safe_tag(m.group(0)) if m else None
    if tag is None:
        raise ParseError("missing or invalid tag")
    r = Reader(data, tag, spools)
    r.utf8 = utf8 or rev2  # names are UTF-8 either way
    r.utf8_accept = utf8
    r.rev2 = rev2
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
