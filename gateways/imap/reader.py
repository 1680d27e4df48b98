"""The IMAP lexical layer (RFC 3501 §9): atoms, quoted strings and literals, parenthesized
lists, sequence sets, dates, mailbox names.  :class:`Reader` walks one framed command; the
command grammar (parser.py) and the SEARCH grammar (search.py) are both written over it.

Pure: no I/O; every malformed input raises :class:`ParseError`."""

from __future__ import annotations

import calendar
import re
import time
import unicodedata
from typing import Optional

from . import utf7
from .seqset import SequenceSet, SeqSetError
from .searchres import SAVED

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


class Reader:
    """Cursor over a framed command; literals ``{n}``/``{n+}`` + CRLF + n octets are inline."""

    def __init__(self, data: bytes, tag: Optional[str] = None, spools: tuple = ()):
        self.data = data
        self.pos = 0
        self.tag = tag
        self.spools = dict(spools)  # offset -> a literal spooled to disk (framing.Frame)
        self.utf8 = False  # mailbox names are UTF-8, not mUTF-7 (UTF8=ACCEPT or IMAP4rev2 enabled)
        self.utf8_accept = False  # RFC 6855 UTF8=ACCEPT enabled (SEARCH CHARSET is BAD)
        self.rev2 = False  # RFC 9051 IMAP4rev2 enabled: its grammar (no RECENT, NEW, OLD)

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

    def literal(self, spooled: bool = False) -> bytes:
        """A literal's octets; with ``spooled`` (APPEND's message) a spool may stand for them."""
        self.expect(b"{")
        size = self.number()
        self.maybe(b"+")
        self.expect(b"}")
        if not self.maybe(b"\r\n"):
            self.expect(b"\n")
        if self.pos in self.spools:
            if not spooled:
                raise ParseError("literal too big here", self.tag, "TOOBIG")
            return self.spools[self.pos]
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

    def mailbox(self, new: bool = False) -> str:
        """A mailbox name; ``new`` for the name of a mailbox to be made (CREATE, RENAME's target),
        which must be valid modified UTF-7, or Net-Unicode once names are UTF-8 (see
        :func:`mailbox_name`)."""
        return mailbox_name(self.astring(), self.tag, self.utf8, new)

    def mailbox_as_sent(self) -> tuple:
        """(the store name, the name as the client spelled it: decoded, INBOX not upper-cased)."""
        spelled = decode_mailbox(self.astring(), self.tag, self.utf8)
        return normalize_inbox(spelled), spelled

    def seq_set(self) -> SequenceSet:
        raw = self._run(set(b" ()") | set(range(0, 0x20)))
        if raw == b"$":
            return SAVED  # RFC 5182 §3: the saved search result (searchres.py)
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
    if not (1 <= year <= 9999 and 1 <= day <= calendar.monthrange(year, mon)[1]
            and hh < 24 and mm < 60 and ss < 61):
        raise err("invalid date-time")  # 31-Feb is refused, never read as 2 or 3 March
    offset = (int(m.group(8)) * 60 + int(m.group(9))) * 60 * (1 if m.group(7) == "+" else -1)
    try:
        return calendar.timegm((year, mon, day, hh, mm, min(ss, 59), 0, 0, 0)) - offset
    except (ValueError, OverflowError):
        raise err("invalid date-time") from None


def mailbox_name(raw: bytes, tag: Optional[str] = None, utf8: bool = False, new: bool = False) -> str:
    """Wire mailbox name -> store name (modified UTF-7 decoded, INBOX normalized): see
    :func:`decode_mailbox`."""
    return normalize_inbox(decode_mailbox(raw, tag, utf8, new))


def decode_mailbox(raw: bytes, tag: Optional[str] = None, utf8: bool = False, new: bool = False) -> str:
    """Wire mailbox name -> Unicode (modified UTF-7 decoded; "inbox" left as spelled).  With
    ``utf8`` (once UTF8=ACCEPT, RFC 6855 §3, or IMAP4rev2, RFC 9051 §5.1, is enabled) the name is
    UTF-8 as it is: "&" is an ordinary character then, and a name to be made (``new``) must be
    Net-Unicode (RFC 5198: NFC, no control characters; RFC 9051 §5.1 "MUST prohibit the
    creation" of others, RFC 6855 §3 alike): ``NO [CANNOT]`` otherwise.  Names are looked up as
    sent, never normalized, so a mailbox made under another name form stays reachable.

    ASCII that is not valid modified UTF-7 (an ``&`` that starts no valid shift, as in the atom
    ``!#$&'+,-.``) is taken literally, as Dovecot does: such a name is a mailbox that does not
    exist (SELECT answers ``NO [NONEXISTENT]``, LIST finds nothing), never a syntax error.  It
    cannot be made, though: with ``new`` (CREATE, RENAME's target) it is ``NO [CANNOT]``, since
    LIST would send the name back spelled otherwise (``&`` as ``&-``)."""
    if utf8:
        try:
            name = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise ParseError("mailbox name is not UTF-8", tag) from None
        if new and not is_net_unicode(name):
            raise ParseError("mailbox name is not Net-Unicode (NFC, no control characters)", tag, "CANNOT")
        return name
    try:
        text = raw.decode("ascii")
        return utf7.decode(text)
    except UnicodeDecodeError:
        # RFC 3501 wants modified UTF-7; some clients send raw UTF-8: accept it when valid
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise ParseError("mailbox name is neither modified UTF-7 nor UTF-8", tag) from None
    except ValueError as e:
        if new:
            raise ParseError("invalid mailbox name: %s" % e, tag, "CANNOT") from None
        return text


#: RFC 5198 §2 / RFC 6855 §3: no C0 or C1 control, DEL, LINE or PARAGRAPH SEPARATOR in a name
_NOT_NET_UNICODE = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def is_net_unicode(name: str) -> bool:
    return unicodedata.is_normalized("NFC", name) and not _NOT_NET_UNICODE.search(name)


def normalize_inbox(name: str) -> str:
    head, sep, rest = name.partition("/")
    if head.upper() == "INBOX":
        return "INBOX" + sep + rest
    return name


# -- per-command argument parsers ---------------------------------------------------------------
