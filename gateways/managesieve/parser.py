"""ManageSieve wire format, pure: bytes in, plain values out (RFC 5804 §1.3, §4).  No I/O, no
store, no reactor (fuzzable).

* :class:`Framer` cuts the client's byte stream into complete commands (the shared engine,
  :class:`gateways.common.literals.LiteralFramer`, with ManageSieve's shape).  A command is one line,
  or several when a line ends in a literal announcement: ``{n+}`` (RFC 5804 §4 literal-c2s) or
  ``{n}``, followed by exactly n octets, after which the command goes on.  Events:

  - :class:`Frame` - one complete command: its text pieces (``bytes``, line endings and literal
    announcements removed) and its literals (:class:`Literal`), in order.
  - :class:`Rejected` - the command was refused while framing: a line over ``max_line`` octets
    (skipped to its end), a literal over the limit for its command (its octets and the rest of
    the command are read and thrown away, so the stream stays in step and memory bounded), or a
    literal size beyond 32 bits (``fatal``: the stream cannot be resynchronised).

* :func:`parse_command` turns a frame into a :class:`Command`: the command name (an atom,
  case-insensitive) and its arguments: :class:`Atom` (atoms and numbers, ASCII) or ``bytes``
  (quoted strings with ``\\"`` and ``\\\\`` unescaped, and literals).
* :func:`decode_sasl_plain` / :func:`decode_base64`: the SASL payloads of AUTHENTICATE.

Deviation from RFC 5804, deliberately lenient: §4 lets clients send only ``{n+}`` literals.  A
synchronising ``{n}`` from a client is read the same way (the octets follow at once; ManageSieve
has no continuation request to send), as Dovecot does, so older clients keep working.  Runs of
spaces between arguments are accepted, and quoted strings are not held to §4's 1024 octets
(only to ``max_line``).
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from typing import Optional

from gateways.common.literals import LiteralFramer

#: RFC 5804 §4: ``number`` is a 32-bit unsigned number
MAX_NUMBER = 4294967295

_LITERAL_AT_END = re.compile(rb"\{(?P<size>\d{1,20})(?P<plus>\+?)\}$")
_NAME = re.compile(rb" *([A-Za-z]{1,32})(?: |$)")
# RFC 5804 §4 ATOM-CHAR: any CHAR except "(" ")" "{" SP CTL DQUOTE "\"
_ATOM_CHARS = frozenset(range(0x21, 0x7F)) - frozenset(b'(){"\\')


class ParseError(Exception):
    """A malformed command; ``str(err)`` is the text of the NO reply."""


class Atom(str):
    """An atom (a command name, a number); strings arrive as ``bytes``."""


@dataclass(frozen=True)
class Literal:
    data: bytes


@dataclass(frozen=True)
class Frame:
    parts: tuple  # bytes (text) and Literal, in order; a Literal always sits between two texts
    name: Optional[str]  # the command name (upper case) as read while framing, None if unreadable

    @property
    def size(self) -> int:
        return sum(len(p.data) if isinstance(p, Literal) else len(p) for p in self.parts)


@dataclass(frozen=True)
class Rejected:
    name: Optional[str]
    reason: str  # "line-too-long" | "literal-too-big" | "bad-literal"
    size: int = 0
    fatal: bool = False


def command_name(line: bytes) -> Optional[str]:
    m = _NAME.match(line)
    return m.group(1).decode("ascii").upper() if m else None


class Framer(LiteralFramer):
    """Incremental framing.  ``literal_limit(name)`` is the largest literal accepted for the
    command ``name`` (None for a line that does not start with one, e.g. a SASL response)."""

    literal_at_end = _LITERAL_AT_END
    sync_waits = False  # the deliberate leniency above: {n} is read like {n+}
    max_literal_number = MAX_NUMBER  # RFC 5804 §4: a bigger literal is fatal
    head_window = 64

    def _identify(self, line: bytes) -> Optional[str]:
        return command_name(line)

    def _rejected(self, head, reason: str, size: int = 0, fatal: bool = False) -> Rejected:
        return Rejected(head, reason, size, fatal)

    def _text_piece(self, text: bytes, announcement) -> bytes:
        return text[:announcement.start()]

    def _literal_piece(self, data: bytes) -> Literal:
        return Literal(data)

    def _frame(self, parts: list, head) -> Frame:
        return Frame(tuple(parts), head)


@dataclass(frozen=True)
class Command:
    name: str  # upper case
    args: tuple  # Atom | bytes


def _quoted(text: bytes, pos: int) -> tuple:
    """The quoted string starting at ``text[pos] == '"'``: (value, position after it)."""
    out = bytearray()
    i = pos + 1
    while i < len(text):
        c = text[i]
        if c == 0x22:
            return bytes(out), i + 1
        if c == 0x5C:
            if i + 1 >= len(text) or text[i + 1] not in (0x22, 0x5C):
                raise ParseError('Invalid escape in a quoted string (only \\" and \\\\ are allowed)')
            out.append(text[i + 1])
            i += 2
            continue
        if c == 0:
            raise ParseError("NUL in a quoted string")
        out.append(c)
        i += 1
    raise ParseError("Unterminated quoted string")


def _tokens(text: bytes, out: list) -> None:
    pos = 0
    while pos < len(text):
        c = text[pos]
        if c == 0x20:
            pos += 1
            continue
        if c == 0x22:
            value, pos = _quoted(text, pos)
            out.append(value)
        elif c in _ATOM_CHARS:
            end = pos
            while end < len(text) and text[end] in _ATOM_CHARS:
                end += 1
            out.append(Atom(text[pos:end].decode("ascii")))
            pos = end
        elif c == 0x7B:
            raise ParseError("A literal must end its line: {n+} CRLF, then n octets")
        else:
            raise ParseError("Unexpected character %r" % chr(c) if c < 0x80 else "Unexpected 8-bit octet")
        if pos < len(text) and text[pos] != 0x20:
            raise ParseError("Expected a space between arguments")


def parse_args(frame: Frame) -> list:
    """The arguments of a frame, in order: :class:`Atom` or ``bytes``."""
    out: list = []
    parts = frame.parts
    for i, part in enumerate(parts):
        if isinstance(part, Literal):
            out.append(part.data)
            continue
        if i > 0 and part and part[:1] != b" ":
            raise ParseError("Expected a space after a literal")
        if i + 1 < len(parts) and part and part[-1:] != b" ":
            raise ParseError("Expected a space before a literal")
        _tokens(part, out)
    return out


def parse_command(frame: Frame) -> Optional[Command]:
    """The command of a frame; None for an empty line."""
    args = parse_args(frame)
    if not args:
        return None
    name = args[0]
    if not isinstance(name, Atom) or not name.isalpha():
        raise ParseError("Expected a command name")
    return Command(name.upper(), tuple(args[1:]))


def parse_number(arg) -> int:
    """RFC 5804 §4 ``number``: an atom of digits, 0 .. 2^32-1."""
    if not isinstance(arg, Atom) or not arg.isdigit() or not arg.isascii() or len(arg) > 10 \
            or int(arg) > MAX_NUMBER:
        raise ParseError("Expected a number (0 to %d)" % MAX_NUMBER)
    return int(arg)


def decode_base64(data: bytes) -> bytes:
    try:
        return base64.b64decode(data.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise ParseError("Invalid base64 in the authentication data") from None


def decode_sasl_plain(data: bytes) -> tuple:
    """RFC 4616: base64 of ``authzid NUL authcid NUL password`` -> the three as str."""
    pieces = decode_base64(data).split(b"\0")
    if len(pieces) != 3:
        raise ParseError("Invalid PLAIN authentication data")
    try:
        return tuple(p.decode("utf-8") for p in pieces)
    except UnicodeDecodeError:
        raise ParseError("PLAIN authentication data is not UTF-8") from None
