"""Split the client's byte stream into complete IMAP commands (RFC 3501 §2.2, §4.3).

A command is one or more CRLF-terminated lines; a line ending in a literal announcement
``{n}`` (synchronizing) or ``{n+}`` (LITERAL+, RFC 7888) is followed by exactly n octets and then
the command continues.  The framer is pure: :meth:`Framer.feed` takes bytes and returns events;
the protocol writes replies.  Events:

* :class:`Frame` - one complete command, exactly as sent (literal announcements and their
  CRLF kept, the final CRLF removed): the parser reads literals from it.
* :class:`Continue` - a synchronizing literal was accepted: send ``+`` now.
* :class:`Rejected` - the command was refused while framing (line too long, literal too big);
  ``tag`` may be None when it could not be read.  For a refused synchronizing literal the client
  sends nothing more of that command (RFC 7888 §4 / RFC 3501 §7.5: a tagged reply instead of ``+``);
  for a refused non-synchronizing literal the framer reads and discards the literal and the rest of
  the command, so memory stays bounded.  ``fatal`` means the stream cannot be resynchronized.

Invariants: memory held is bounded by ``max_line`` plus the literal limit of the command being
read (``literal_limit(command_name)``); bytes are never reordered or dropped silently.
Deliberately not done: ``~{n}`` literal8 (BINARY, RFC 3516) is refused like a bad literal.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable, Optional

_LITERAL_AT_END = re.compile(rb"(~?)\{(\d{1,20})(\+?)\}\r?$")
_TAG_AND_NAME = re.compile(rb"([^\s(){%*\"\\\]]+) +([A-Za-z]+)(?: +([A-Za-z]+))?")


@dataclass(frozen=True)
class Frame:
    data: bytes


@dataclass(frozen=True)
class Continue:
    pass


@dataclass(frozen=True)
class Rejected:
    tag: Optional[str]
    command: Optional[str]
    reason: str  # "line-too-long", "literal-too-big", "bad-literal"
    size: int = 0
    fatal: bool = False


def command_name(first_line: bytes) -> tuple:
    """(tag, NAME) of a command line, NAME being e.g. "UID FETCH"; (None, None) if unreadable."""
    m = _TAG_AND_NAME.match(first_line)
    if not m:
        return None, None
    tag = m.group(1).decode("ascii", "replace")
    name = m.group(2).decode("ascii").upper()
    if name == "UID" and m.group(3):
        name = "UID " + m.group(3).decode("ascii").upper()
    return tag, name


class Framer:
    """Incremental command framing.  ``literal_limit(name)`` gives the largest literal accepted
    for a command (e.g. a big one for APPEND, small for everything else)."""

    def __init__(self, max_line: int = 65536, literal_limit: Callable[[str], int] = lambda name: 65536,
                 max_command: int = 1 << 20):
        self.max_line = max_line
        self.literal_limit = literal_limit
        self.max_command = max_command
        self._buf = bytearray()
        self._scan = 0  # where to resume looking for LF in _buf
        self._parts: list = []  # pieces of the command being assembled
        self._size = 0  # bytes of the command so far (lines and literals)
        self._literal_left = 0  # octets of a literal still to read
        self._discard_left = 0  # octets of a refused literal still to throw away
        self._discarding: Optional[Rejected] = None  # refused command whose rest is being skipped
        self._skip_line = False  # throwing away the rest of an over-long line
        self._skipped = 0
        self._tag: Optional[str] = None
        self._name: Optional[str] = None

    @property
    def idle(self) -> bool:
        """True when no partial command is buffered."""
        return not self._buf and not self._parts and not self._literal_left and not self._discard_left

    def reset(self) -> None:
        """Forget everything buffered (STARTTLS: plaintext after the command is discarded)."""
        self.__init__(self.max_line, self.literal_limit, self.max_command)

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
                self._parts.append(bytes(self._buf[:n]))
                del self._buf[:n]
                self._literal_left -= n
                continue
            lf = self._buf.find(b"\n", self._scan)
            if lf < 0:
                self._scan = len(self._buf)
                if self._skip_line:
                    self._skipped += len(self._buf)
                    self._buf.clear()
                    self._scan = 0
                    if self._skipped > 16 * self.max_line:
                        events.append(Rejected(None, None, "line-too-long", fatal=True))
                        self._skip_line = False
                    break
                if len(self._buf) > self.max_line:
                    events.append(self._refuse_line())
                    continue
                break
            line = bytes(self._buf[:lf + 1])
            del self._buf[:lf + 1]
            self._scan = 0
            if self._skip_line:
                self._skip_line = False
                self._skipped = 0
                continue
            if len(line) > self.max_line + 2:
                if not self._parts:
                    self._tag, self._name = command_name(line[:200])
                events.append(self._refuse(Rejected(self._tag, self._name, "line-too-long")))
                continue
            self._line(line, events)
        return events

    # -- internals ---------------------------------------------------------------------------
    def _refuse_line(self) -> Rejected:
        """An over-long line without LF yet: skip to its end (RFC 3501 has no limit, we do)."""
        tag, name = (self._tag, self._name) if self._parts else command_name(bytes(self._buf[:200]))
        self._skipped = len(self._buf)
        self._buf.clear()
        self._scan = 0
        self._skip_line = True
        rejected = Rejected(tag, name, "line-too-long")
        self._end_command()
        return rejected

    def _refuse(self, rejected: Rejected) -> Rejected:
        self._end_command()
        return rejected

    def _end_command(self) -> None:
        self._parts = []
        self._size = 0
        self._tag = self._name = None

    def _line(self, line: bytes, events: list) -> None:
        if self._discarding is not None:
            # rest of a command whose non-synchronizing literal was refused
            m = _LITERAL_AT_END.search(line.rstrip(b"\n"))
            if m and m.group(3) == b"+":
                self._discard_left = int(m.group(2))
                return
            events.append(self._discarding)
            self._discarding = None
            self._end_command()
            return
        if not self._parts:
            self._tag, self._name = command_name(line[:200])
        body = line[:-2] if line.endswith(b"\r\n") else line[:-1]
        self._size += len(line)
        m = _LITERAL_AT_END.search(body)
        if m is None:
            self._parts.append(body)
            events.append(Frame(b"".join(self._parts)))
            self._end_command()
            return
        size = int(m.group(2))
        sync = m.group(3) != b"+"
        if m.group(1):
            self._reject_literal(events, "bad-literal", size, sync)
            return
        limit = self.literal_limit(self._name or "")
        if size > limit or self._size + size > max(limit, self.max_command) + self.max_line:
            self._reject_literal(events, "literal-too-big", size, sync)
            return
        self._parts.append(body + b"\r\n")
        self._size += size
        self._literal_left = size
        if sync:
            events.append(Continue())

    def _reject_literal(self, events: list, reason: str, size: int, sync: bool) -> None:
        rejected = Rejected(self._tag, self._name, reason, size)
        if sync:
            # RFC 7888 §4 (and RFC 3501 §7.5): answer with a tagged reply instead of "+";
            # the client then sends neither the literal nor the rest of the command.
            events.append(rejected)
            self._end_command()
        else:
            self._discard_left = size
            self._discarding = rejected
            self._parts = []
