"""ManageSieve wire format, pure: bytes in, plain values out (RFC 5804 §1.3, §4).  No I/O, no
store, no reactor (fuzzable).

* :class:`Framer` cuts the client's byte stream into complete commands.  A command is one line,
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
from typing import Callable, Optional

#: RFC 5804 §4: ``number`` is a 32-bit unsigned number
MAX_NUMBER = 4294967295

_LITERAL_AT_END = re.compile(rb"\{(\d{1,20})(\+?)\}$")
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


class Framer:
    """Incremental framing.  ``literal_limit(name)`` is the largest literal accepted for the
    command ``name`` (None for a line that does not start with one, e.g. a SASL response)."""

    def __init__(self, max_line: int, literal_limit: Callable[[Optional[str]], int]):
        self.max_line = max_line
        self.literal_limit = literal_limit
        self.reset()

    def reset(self) -> None:
        """Forget everything buffered (STARTTLS: plaintext sent after it is discarded)."""
        self._buf = bytearray()
        self._scan = 0  # where to resume looking for LF in _buf
        self._parts: list = []
        self._name: Optional[str] = None
        self._size = 0  # octets of the command so far
        self._literal_left = 0
        self._literal = bytearray()
        self._discard_left = 0  # octets of a refused literal still to throw away
        self._discarding: Optional[Rejected] = None  # refused command whose rest is being skipped
        self._skip_line = False  # throwing away the rest of an over-long line
        self._skipped = 0

    @property
    def idle(self) -> bool:
        return not (self._buf or self._parts or self._literal_left or self._discard_left
                    or self._discarding or self._skip_line)

    def feed(self, data: bytes) -> list:
        events: list = []
        self._buf += data
        while self._buf:
            if self._discard_left:
                n = min(self._discard_left, len(self._buf))
                del self._buf[:n]
                self._discard_left -= n
                continue
            if self._literal_left:
                n = min(self._literal_left, len(self._buf))
                self._literal += self._buf[:n]
                del self._buf[:n]
                self._literal_left -= n
                if not self._literal_left:
                    self._parts.append(Literal(bytes(self._literal)))
                    self._literal = bytearray()
                continue
            lf = self._buf.find(b"\n", self._scan)
            if lf < 0:
                if self._skip_line:
                    self._skipped += len(self._buf)
                    self._buf.clear()
                    self._scan = 0
                    if self._skipped > 16 * self.max_line:
                        self._skip_line = False
                        events.append(Rejected(None, "line-too-long", fatal=True))
                    break
                if len(self._buf) > self.max_line + 1:  # +1: the CR of a line exactly at the limit
                    events.append(self._refuse_line(bytes(self._buf[:64])))
                    self._skipped = len(self._buf)
                    self._buf.clear()
                    self._skip_line = True
                    self._scan = 0
                    continue
                self._scan = len(self._buf)
                break
            line = bytes(self._buf[:lf])
            del self._buf[:lf + 1]
            self._scan = 0
            if line.endswith(b"\r"):
                line = line[:-1]
            if self._skip_line:
                self._skip_line = False
                self._skipped = 0
                continue
            if len(line) > self.max_line:
                events.append(self._refuse_line(line[:64]))
                continue
            self._line(line, events)
        return events

    # -- internals ---------------------------------------------------------------------------
    def _end_command(self) -> None:
        self._parts = []
        self._name = None
        self._size = 0
        self._discarding = None

    def _refuse_line(self, start: bytes) -> Rejected:
        if self._discarding is not None:
            rejected = self._discarding
        else:
            name = self._name if self._parts else command_name(start)
            rejected = Rejected(name, "line-too-long")
        self._end_command()
        return rejected

    def _line(self, line: bytes, events: list) -> None:
        m = _LITERAL_AT_END.search(line)
        size = int(m.group(1)) if m else 0
        if m and size > MAX_NUMBER:
            events.append(Rejected(self._name if self._parts else command_name(line), "bad-literal",
                                   fatal=True))
            self._end_command()
            return
        if self._discarding is not None:
            # the rest of a command whose literal was refused: skip its further literals too
            if m:
                self._discard_left = size
                return
            events.append(self._discarding)
            self._end_command()
            return
        if not self._parts:
            self._name = command_name(line)
        self._size += len(line) + 2
        if m is None:
            self._parts.append(line)
            events.append(Frame(tuple(self._parts), self._name))
            self._end_command()
            return
        limit = self.literal_limit(self._name)
        if size > limit or self._size + size > limit + 4 * self.max_line:
            self._discarding = Rejected(self._name, "literal-too-big", size)
            self._discard_left = size
            self._parts = []
            return
        self._parts.append(line[:m.start()])
        self._size += size
        if size:
            self._literal_left = size
        else:
            self._parts.append(Literal(b""))


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
