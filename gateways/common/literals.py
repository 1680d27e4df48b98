"""Framing of line protocols with counted literals, ``{n}`` and ``{n+}`` (IMAP, RFC 3501 §4.3
and RFC 7888; ManageSieve, RFC 5804 §4): bytes in, complete commands out.  Pure: no I/O, no
reactor (fuzzable).

A command is one line, or several when a line ends in a literal announcement: exactly n octets
follow the announcement's line ending, then the command goes on.  :meth:`LiteralFramer.feed`
takes bytes and returns events; the protocol writes the replies.  The events are the
protocol's own (a subclass builds them through the ``_frame`` and ``_rejected`` hooks) plus
:class:`Continue`.

Invariants
- Memory held is bounded by ``max_line`` (a partial line) plus the command budget of the command
  being read (``_budget(literal_limit)``, which a protocol sets to its literal limit plus a few
  lines of slack).  A literal over the limit is never buffered.  A literal the protocol spools
  (:meth:`LiteralFramer._open_sink` gives a sink for it) is handed to that sink as it arrives
  and is not held at all; the framer closes the sinks of a command it drops (:meth:`reset`).
- A line (without its line ending) over ``max_line`` octets is refused once and skipped to its
  end, whatever the read sizes; a line still without LF after ``16 * max_line`` skipped octets
  is a fatal refusal (the stream will not come back in step).
- A synchronising literal ``{n}``: where the client waits for a continuation request
  (``sync_waits``, IMAP) an accepted one yields :class:`Continue` and a refused one is refused at
  once (the client sends neither the literal nor the rest of the command: RFC 7888 §4, RFC 3501
  §7.5).  Where it does not wait (ManageSieve), ``{n}`` is read like ``{n+}``.
- A refused non-synchronising literal is read and thrown away, and so is the rest of its command
  (its further literals included); the refusal is reported once, when the command ends, so the
  stream stays in step and every refused command gets exactly one reply.
- A literal size over ``max_literal_number`` (when set; RFC 5804 §4 numbers are 32 bits) is a
  fatal refusal: nothing after it can be framed.
- Bytes are never reordered or dropped silently: everything is a frame, a literal of one, or
  part of a refusal.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Optional, Pattern

TOO_LONG, TOO_BIG, BAD_LITERAL = "line-too-long", "literal-too-big", "bad-literal"


@dataclass(frozen=True)
class Continue:
    """An accepted synchronising literal: the protocol sends its continuation request now."""


class LiteralFramer:
    """Incremental framing; a protocol subclasses it and fills in the hooks below.

    ``literal_limit(name)`` is the largest literal accepted for a command (what ``name`` is,
    is the subclass's business: see :meth:`_limit`)."""

    #: a literal announcement at the end of a line (its line ending removed); groups ``size``
    #: and ``plus``, and optionally ``tilde`` (a literal8 prefix: refused as a bad literal
    #: unless ``literal8`` says the protocol takes it)
    literal_at_end: Pattern[bytes]
    literal8 = False
    #: the client waits for a continuation request after ``{n}`` (IMAP), or never (ManageSieve)
    sync_waits = True
    #: a literal size above this is fatal (None: any size up to the pattern's digits is read)
    max_literal_number: Optional[int] = None
    #: octets of an over-long line's start handed to :meth:`_identify`
    head_window = 200

    def __init__(self, max_line: int, literal_limit: Callable[[Any], int]):
        self.max_line = max_line
        self.literal_limit = literal_limit
        self.reset()

    def reset(self) -> None:
        """Forget everything buffered (STARTTLS: plaintext sent after it is discarded; the
        connection is gone)."""
        if hasattr(self, "_parts"):
            self._drop_parts()
        sink = getattr(self, "_sink", None)
        if sink is not None:
            sink.close()
        self._sink = None  # where the literal being read goes (None: into _literal)
        self._buf = bytearray()
        self._scan = 0  # where to resume looking for LF in _buf
        self._parts: list = []  # pieces of the command being assembled
        self._head: Any = None  # the command's name (and tag) as read from its first line
        self._size = 0  # octets of the command so far (lines and literals)
        self._literal_left = 0  # octets of an accepted literal still to read
        self._literal = bytearray()
        self._discard_left = 0  # octets of a refused literal still to throw away
        self._discarding: Any = None  # refusal of the command whose rest is being skipped
        self._skip_line = False  # throwing away the rest of an over-long line
        self._skipped = 0

    @property
    def idle(self) -> bool:
        """True when no partial command is buffered and nothing is being skipped."""
        return not (self._buf or self._parts or self._literal_left or self._discard_left
                    or self._discarding is not None or self._skip_line)

    # -- what a protocol provides ------------------------------------------------------------
    def _identify(self, line: bytes) -> Any:
        """The command's identity from its first line (or the start of an over-long one)."""
        raise NotImplementedError

    def _limit(self, head) -> int:
        return self.literal_limit(head)

    def _budget(self, limit: int) -> int:
        """Octets a whole command may hold when one of its literals may hold ``limit``."""
        return limit + 4 * self.max_line

    def _rejected(self, head, reason: str, size: int = 0, fatal: bool = False):
        raise NotImplementedError

    def _text_piece(self, text: bytes, announcement) -> Any:
        """The piece kept for a line ending in an accepted literal announcement (a match)."""
        raise NotImplementedError

    def _literal_piece(self, data: bytes) -> Any:
        raise NotImplementedError

    def _open_sink(self, head, size: int) -> Any:
        """A sink (``write(bytes)``, ``close()``) to spool an accepted literal of ``size`` octets
        into as it arrives, or None to keep it in memory (the default)."""
        return None

    def _spooled_piece(self, sink) -> Any:
        """The piece kept for a literal that went to ``sink`` (the frame then owns the sink)."""
        raise NotImplementedError

    def _close_piece(self, piece) -> None:
        """Release a non-bytes piece of a command that is dropped (its sink)."""

    def _frame(self, parts: list, head) -> Any:
        """The event for a complete command: ``parts`` are text pieces and literal pieces, in
        order, the last one the final line's text."""
        raise NotImplementedError

    # -- the engine --------------------------------------------------------------------------
    def feed(self, data: bytes) -> list:
        events: list = []
        buf = self._buf
        buf += data
        while buf:
            if self._discard_left:
                n = min(self._discard_left, len(buf))
                del buf[:n]
                self._discard_left -= n
                continue
            if self._literal_left:
                n = min(self._literal_left, len(buf))
                if self._sink is not None:
                    self._sink.write(bytes(buf[:n]))
                else:
                    self._literal += buf[:n]
                del buf[:n]
                self._literal_left -= n
                if not self._literal_left:
                    if self._sink is not None:
                        self._parts.append(self._spooled_piece(self._sink))
                        self._sink = None
                    else:
                        self._parts.append(self._literal_piece(bytes(self._literal)))
                        self._literal = bytearray()
                continue
            lf = buf.find(b"\n", self._scan)
            if lf < 0:
                if self._skip_line:
                    self._skipped += len(buf)
                    buf.clear()
                    self._scan = 0
                    if self._skipped > 16 * self.max_line:
                        self._skip_line = False
                        events.append(self._rejected(None, TOO_LONG, fatal=True))
                    break
                if len(buf) > self.max_line + 1:  # +1: the CR of a line exactly at the limit
                    events.append(self._refuse_line(bytes(buf[:self.head_window])))
                    self._skipped = len(buf)
                    buf.clear()
                    self._skip_line = True
                    self._scan = 0
                    continue
                self._scan = len(buf)
                break
            line = bytes(buf[:lf])
            del buf[:lf + 1]
            self._scan = 0
            if line.endswith(b"\r"):
                line = line[:-1]
            if self._skip_line:
                self._skip_line = False
                self._skipped = 0
                continue
            if len(line) > self.max_line:
                events.append(self._refuse_line(line[:self.head_window]))
                continue
            self._line(line, events)
        return events

    def _drop_parts(self) -> None:
        """The command being assembled is refused: release its spooled literals."""
        for part in self._parts:
            if not isinstance(part, (bytes, bytearray)):
                self._close_piece(part)
        self._parts = []

    def _end_command(self) -> None:
        self._drop_parts()
        self._head = None
        self._size = 0
        self._discarding = None

    def _refuse_line(self, start: bytes):
        if self._discarding is not None:
            rejected = self._discarding  # the command was refused already: one reply for it
        else:
            rejected = self._rejected(self._head if self._parts else self._identify(start), TOO_LONG)
        self._end_command()
        return rejected

    def _line(self, line: bytes, events: list) -> None:
        m = self.literal_at_end.search(line)
        size = int(m.group("size")) if m else 0
        if m and self.max_literal_number is not None and size > self.max_literal_number:
            events.append(self._rejected(self._head if self._parts else self._identify(line), BAD_LITERAL,
                                         fatal=True))
            self._end_command()
            return
        sync = m is not None and not m.group("plus")
        if self._discarding is not None:
            # the rest of a command whose literal was refused: skip its further literals too,
            # except one the client waits to be invited to send (it ends the command)
            if m and not (sync and self.sync_waits):
                self._discard_left = size
                return
            events.append(self._discarding)
            self._end_command()
            return
        if not self._parts:
            self._head = self._identify(line)
        self._size += len(line) + 2
        if m is None:
            self._parts.append(line)
            events.append(self._frame(self._parts, self._head))
            self._parts = []  # the frame owns them now
            self._end_command()
            return
        if m.groupdict().get("tilde") and not self.literal8:
            self._refuse_literal(events, BAD_LITERAL, size, sync)
            return
        limit = self._limit(self._head)
        if size > limit or self._size + size > self._budget(limit):
            self._refuse_literal(events, TOO_BIG, size, sync)
            return
        self._parts.append(self._text_piece(line, m))
        self._size += size
        if size:
            self._literal_left = size
            self._sink = self._open_sink(self._head, size)
        else:
            self._parts.append(self._literal_piece(b""))
        if sync and self.sync_waits:
            events.append(Continue())

    def _refuse_literal(self, events: list, reason: str, size: int, sync: bool) -> None:
        rejected = self._rejected(self._head, reason, size)
        if sync and self.sync_waits:
            # RFC 7888 §4, RFC 3501 §7.5: a reply instead of the continuation request; the
            # client then sends neither the literal nor the rest of the command
            events.append(rejected)
            self._end_command()
        else:
            self._discarding = rejected
            self._discard_left = size
            self._drop_parts()
