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

The engine is the shared :class:`gateways.common.literals.LiteralFramer` (its invariants: memory
bounded by ``max_line`` plus the command's budget, one refusal per refused command, bytes never
reordered or dropped silently); this module gives it IMAP's shape: commands identified by tag and
name, the whole command as one byte string, ``{n}`` answered by ``+`` (:class:`Continue`), a
command budget of ``max(literal limit, max_command) + max_line``.
``~{n}`` literal8 (BINARY, RFC 3516) is framed like ``{n}``.
Deliberately not done: a literal size over 32 bits is not fatal here (unlike ManageSieve): a
giant ``{n}`` is refused with a tagged reply and a giant ``{n+}`` is read and thrown away, as
before the engine was shared.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable, Optional

from gateways.common.literals import Continue, LiteralFramer

__all__ = ["Continue", "Frame", "Framer", "Rejected", "command_name"]

_LITERAL_AT_END = re.compile(rb"(?P<tilde>~?)\{(?P<size>\d{1,20})(?P<plus>\+?)\}\r?$")
_TAG_AND_NAME = re.compile(rb"([^\s(){%*\"\\\]]+) +([A-Za-z]+)(?: +([A-Za-z]+))?")


@dataclass(frozen=True)
class Frame:
    data: bytes
    #: literals spooled to disk instead of kept in ``data`` (an APPEND's message): offset in
    #: ``data`` where the literal's octets would start -> its spool.  ``data`` holds the
    #: announcement ``{n}`` CRLF but not the n octets.
    spools: tuple = ()

    def close(self) -> None:
        """Release the spooled literals (after the command ran, or when it never will)."""
        for _offset, spool in self.spools:
            spool.close()


class _Spooled:
    __slots__ = ("sink",)

    def __init__(self, sink):
        self.sink = sink


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


class Framer(LiteralFramer):
    """Incremental command framing.  ``literal_limit(name)`` gives the largest literal accepted
    for a command (e.g. a big one for APPEND, small for everything else)."""

    literal_at_end = _LITERAL_AT_END
    sync_waits = True  # RFC 3501 §7.5: "+" invites a synchronizing literal
    literal8 = True  # RFC 3516 §4.4 ~{n}: framed like {n}; the parser takes it only in APPEND
    head_window = 200

    def __init__(self, max_line: int = 65536, literal_limit: Callable[[str], int] = lambda name: 65536,
                 max_command: int = 1 << 20, spool: Optional[Callable[[str, int], object]] = None):
        self.max_command = max_command
        self.spool = spool  # (command name, literal size) -> a sink for the literal, or None
        super().__init__(max_line, literal_limit)

    def _identify(self, line: bytes) -> tuple:
        return command_name(line[:200])

    def _limit(self, head) -> int:
        return self.literal_limit(head[1] or "")

    def _budget(self, limit: int) -> int:
        return max(limit, self.max_command) + self.max_line

    def _rejected(self, head, reason: str, size: int = 0, fatal: bool = False) -> Rejected:
        tag, name = head or (None, None)
        return Rejected(tag, name, reason, size, fatal)

    def _text_piece(self, text: bytes, announcement) -> bytes:
        return text + b"\r\n"  # the announcement stays: the parser reads literals from the frame

    def _literal_piece(self, data: bytes) -> bytes:
        return data

    def _open_sink(self, head, size: int):
        return self.spool(head[1] or "", size) if self.spool is not None else None

    def _spooled_piece(self, sink) -> _Spooled:
        return _Spooled(sink)

    def _close_piece(self, piece) -> None:
        piece.sink.close()

    def _frame(self, parts: list, head) -> Frame:
        if all(isinstance(p, bytes) for p in parts):
            return Frame(b"".join(parts))
        data, spools, offset = [], [], 0
        for p in parts:
            if isinstance(p, bytes):
                data.append(p)
                offset += len(p)
            else:
                spools.append((offset, p.sink))
        return Frame(b"".join(data), tuple(spools))
