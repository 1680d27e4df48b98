"""POP3 wire format, pure: bytes in, plain values out.  No I/O, no store, no reactor (fuzzable).

* :class:`LineReader` cuts the client's byte stream into command lines.  A line ends at LF (an
  optional CR before it is dropped: RFC 1939 says CRLF, lenient clients send bare LF); a line
  longer than the limit yields :data:`TOO_LONG` once and is skipped up to its end, so one bad line
  never desynchronises the ones after it.
* :func:`parse_command` splits a line into keyword and arguments (RFC 1939 §3: keywords are
  case-insensitive, arguments separated by single spaces; we accept runs of spaces).  PASS keeps
  its whole argument, spaces included (RFC 1939 §7 allows passwords with spaces).
* :func:`message_body` / :func:`top_body` turn stored message octets into a multi-line response
  body (RFC 1939 §3): CRLF line endings, a leading "." doubled, a CRLF added when the message does
  not end with one, then the terminating "." CRLF.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from typing import Optional

#: yielded by :meth:`LineReader.feed` for a line over the limit (the line itself is dropped)
TOO_LONG = object()

_BARE_LF = re.compile(rb"(?<!\r)\n")
_KEYWORD = re.compile(r"[A-Za-z]{1,10}\Z")
_MAX_NUMBER_DIGITS = 9


class ParseError(Exception):
    """A malformed command; ``str(err)`` is the ``-ERR`` text."""


class LineReader:
    """Feed bytes, get complete lines (without their line ending) and :data:`TOO_LONG` markers."""

    def __init__(self, max_line: int):
        self.max_line = max_line
        self._buf = bytearray()
        self._skipping = False  # inside an over-long line already reported

    def feed(self, data: bytes) -> list:
        buf = self._buf
        buf += data
        out = []
        start = 0
        while True:
            end = buf.find(b"\n", start)
            if end < 0:
                break
            if self._skipping:
                self._skipping = False
            else:
                stop = end - 1 if end > start and buf[end - 1] == 0x0D else end
                out.append(TOO_LONG if stop - start > self.max_line else bytes(buf[start:stop]))
            start = end + 1
        del buf[:start]
        if len(buf) > self.max_line + 1:  # +1: room for the CR of a line exactly at the limit
            if not self._skipping:
                out.append(TOO_LONG)
                self._skipping = True
            buf.clear()
        return out

    def reset(self) -> None:
        """Drop whatever is buffered (STLS: nothing sent in plaintext survives the handshake)."""
        self._buf.clear()
        self._skipping = False


@dataclass(frozen=True)
class Command:
    keyword: str  # upper-case
    args: tuple  # str arguments, split on spaces
    rest: str  # everything after the keyword and one space, as sent (PASS)


def decode_line(line: bytes) -> str:
    # Arguments are ASCII in RFC 1939; user names and passwords are UTF-8 in practice.
    return line.decode("utf-8", "replace")


def parse_command(line: bytes) -> Command:
    text = decode_line(line)
    keyword, _, rest = text.partition(" ")
    if not keyword:
        raise ParseError("Empty command" if not text.strip() else "Unknown command")
    if not _KEYWORD.match(keyword):
        raise ParseError("Unknown command")
    return Command(keyword.upper(), tuple(a for a in rest.split(" ") if a), rest)


def parse_number(arg: str, what: str = "message number", zero: bool = False) -> int:
    """A decimal message number (>= 1) or, with ``zero``, a line count (>= 0)."""
    if not (arg.isascii() and arg.isdigit()) or len(arg) > _MAX_NUMBER_DIGITS:
        raise ParseError(f"Invalid {what}: {arg[:20]!r}")
    value = int(arg)
    if value == 0 and not zero:
        raise ParseError(f"Invalid {what}: 0")
    return value


def decode_sasl_plain(data: bytes) -> tuple:
    """RFC 4616: base64 of ``authzid NUL authcid NUL password`` -> the three as str.
    ``=`` is an empty response (RFC 5034 §4).  Raises ParseError."""
    data = data.strip()
    if data == b"=":
        data = b""
    try:
        decoded = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise ParseError("Invalid base64 in the authentication data") from None
    pieces = decoded.split(b"\0")
    if len(pieces) != 3:
        raise ParseError("Invalid PLAIN authentication data")
    return tuple(p.decode("utf-8", "replace") for p in pieces)


# -- message bodies ----------------------------------------------------------------------------

def crlf(data: bytes) -> bytes:
    """Bare LF -> CRLF (messages APPENDed over IMAP may have them); bare CR is left alone."""
    if b"\n" not in data or data.count(b"\n") == data.count(b"\r\n"):
        return data
    return _BARE_LF.sub(b"\r\n", data)


def _stuff(data: bytes) -> bytes:
    """RFC 1939 §3 byte-stuffing of CRLF text starting at the beginning of a line."""
    if data.startswith(b"."):
        data = b"." + data
    return data.replace(b"\r\n.", b"\r\n..")


def _terminate(data: bytes) -> bytes:
    if data and not data.endswith(b"\r\n"):
        data += b"\r\n"  # the "." must start a line of its own
    return data + b".\r\n"


def message_body(raw: bytes) -> bytes:
    """RETR: the whole message as a multi-line response body, terminator included."""
    return _terminate(_stuff(crlf(raw)))


class BodyEncoder:
    """:func:`message_body` of a message fed in pieces of any size: ``feed(piece)`` returns what
    can be sent so far, ``end()`` the rest and the terminator.  The concatenation of what they
    return equals ``message_body(b"".join(pieces))``.

    A piece is encoded at once except its trailing CR, LF or CRLF, which wait for the next piece:
    so a bare LF, a CRLF split between two pieces and a "." starting the line after them are
    always seen together, and a piece being encoded never starts a line unless it starts the
    message (where :func:`_stuff` handles it)."""

    __slots__ = ("_held", "_first", "_tail")

    def __init__(self):
        self._held = b""
        self._first = True
        self._tail = b""  # the last two octets sent

    def _encode(self, data: bytes) -> bytes:
        if not data:
            return b""
        out = crlf(data)
        if self._first:
            self._first = False
            out = _stuff(out)
        else:
            out = out.replace(b"\r\n.", b"\r\n..")
        self._tail = (self._tail + out)[-2:]
        return out

    def feed(self, piece: bytes) -> bytes:
        data = self._held + piece if self._held else piece
        keep = 2 if data.endswith(b"\r\n") else 1 if data[-1:] in (b"\r", b"\n") else 0
        self._held = data[len(data) - keep:] if keep else b""
        return self._encode(data[:len(data) - keep] if keep else data)

    def end(self) -> bytes:
        out = self._encode(self._held)
        self._held = b""
        if self._tail and self._tail != b"\r\n":
            out += b"\r\n"  # the "." must start a line of its own
        return out + b".\r\n"


def split_header(data: bytes) -> int:
    """Length of the header section of CRLF ``data`` including the blank line that ends it
    (the whole message when there is no blank line; 2 when it starts with one)."""
    if data.startswith(b"\r\n"):
        return 2
    end = data.find(b"\r\n\r\n")
    return len(data) if end < 0 else end + 4


def top_body(raw: bytes, lines: int) -> bytes:
    """TOP (RFC 1939 §7): the header, the blank line, then ``lines`` lines of the body."""
    data = crlf(raw)
    cut = split_header(data)
    pos = cut
    for _ in range(lines):
        if pos >= len(data):
            break
        nl = data.find(b"\r\n", pos)
        pos = len(data) if nl < 0 else nl + 2
    return _terminate(_stuff(data[:pos]))


async def top_prefix(stream, lines: int, piece: int) -> bytes:
    """The leading octets of a message that :func:`top_body` needs for ``lines`` body lines,
    read from ``stream`` (a BlobStream) a piece at a time: the header, its blank line and one
    line more than asked for (or the whole message, if shorter)."""
    buf = bytearray()
    header_end = -1
    newlines = 0  # LFs after the header's end
    while True:
        data = await stream.read(piece)
        if not data:
            return bytes(buf)
        start = len(buf)
        buf += data
        if header_end < 0:
            if buf.startswith(b"\r\n") or buf.startswith(b"\n"):
                header_end = buf.index(b"\n") + 1
            else:
                at = max(0, start - 2)
                i, j = buf.find(b"\n\r\n", at), buf.find(b"\n\n", at)
                ends = [e for e in (i + 3 if i >= 0 else -1, j + 2 if j >= 0 else -1) if e >= 0]
                if not ends:
                    continue
                header_end = min(ends)
            newlines = buf.count(b"\n", header_end)
        else:
            newlines += data.count(b"\n")
        if newlines > lines:
            return bytes(buf)


def multiline(lines) -> bytes:
    """A multi-line response body from short ASCII lines (CAPA, LIST, UIDL)."""
    return b"".join(line + b"\r\n" for line in lines) + b".\r\n"


def response_code(code: Optional[str]) -> bytes:
    return b"[%s] " % code.encode() if code else b""
