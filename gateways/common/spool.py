"""A message arriving from the wire, kept on disk as it arrives (an IMAP APPEND literal, an LMTP
or submission DATA), never whole in memory.

Invariants
- The spool is an unnamed temporary file (``tempfile.TemporaryFile``: ``O_TMPFILE`` on Linux) in
  the service's spool directory (``[server] data_dir/spool``): it has no name to leave behind,
  whether the message is stored, refused, or the connection or the whole process dies.
- Nothing here blocks the reactor: :meth:`Spool.write` only appends to a buffer; one write at a
  time runs in the reactor's thread pool (so the file sees the bytes in order) and takes
  everything buffered meanwhile.  Above :data:`HIGH_WATER` buffered octets ``pause()`` is
  called (the protocol stops reading its transport) and ``resume()`` once the buffer is empty:
  a connection holds about ``HIGH_WATER`` octets of a message however big it is.
- A reader that can wait instead (an asyncio stream: LMTP and submission DATA) awaits
  :meth:`Spool.room` after each write: it fires once at most ``HIGH_WATER`` octets wait.
- :meth:`Spool.finished` fires once every octet is in the file, with the file (positioned
  anywhere: readers seek); a failed write makes it fail with the OSError.
- :meth:`Spool.close` may be called at any time and more than once; a write in flight finishes
  first, then the file is closed.  Nobody else closes the file.
- The spool is not fsynced: the store writes and fsyncs the message's blob before it commits the
  row that names it, and that is what an OK/250 waits for.
"""

from __future__ import annotations

import tempfile
from typing import Callable, Optional

from twisted.internet import defer, threads
from twisted.python.failure import Failure

#: buffered octets above which the connection stops reading until the buffer is on disk
HIGH_WATER = 256 << 10


class Spool:
    def __init__(self, directory: Optional[str] = None, pause: Callable[[], None] = lambda: None,
                 resume: Callable[[], None] = lambda: None):
        self.directory = directory
        self.size = 0  # octets written so far
        self._pause, self._resume = pause, resume
        self._paused = False
        self._buffer = bytearray()
        self._file = None
        self._writing = False
        self._closed = False
        self._error: Optional[BaseException] = None
        self._waiters: list = []
        self._room_waiters: list = []

    def write(self, data: bytes) -> None:
        if self._closed or self._error is not None or not data:
            return
        self._buffer += data
        self.size += len(data)
        if len(self._buffer) > HIGH_WATER and not self._paused:
            self._paused = True
            self._pause()
        self._flush()

    def room(self) -> defer.Deferred:
        """Fires once at most HIGH_WATER octets wait to be written (or the spool failed or
        was closed: writing more is then harmless, it is dropped)."""
        if len(self._buffer) <= HIGH_WATER or self._closed or self._error is not None:
            return defer.succeed(None)
        d = defer.Deferred()
        self._room_waiters.append(d)
        return d

    def finished(self) -> defer.Deferred:
        """Fires with the file once everything written is in it."""
        d = defer.Deferred()
        self._waiters.append(d)
        self._settle()
        return d

    def close(self) -> None:
        self._closed = True
        self._buffer = bytearray()
        self._unpause()
        if not self._writing:
            self._close_file()
        self._settle()

    # -- internals ---------------------------------------------------------------------------
    def _flush(self) -> None:
        if self._writing or not self._buffer or self._closed:
            return
        data, self._buffer = self._buffer, bytearray()  # handed over, not copied
        self._writing = True
        threads.deferToThread(self._write_in_thread, data).addBoth(self._written)

    def _write_in_thread(self, data: bytearray) -> None:
        if self._file is None:
            self._file = tempfile.TemporaryFile(dir=self.directory, prefix="spool-")
        self._file.write(data)
        self._file.flush()

    def _written(self, result) -> None:
        self._writing = False
        if isinstance(result, Failure):
            self._error = result.value
            self._buffer = bytearray()
        if self._closed:
            self._close_file()
        elif self._buffer:
            self._flush()
            return
        self._unpause()
        self._settle()

    def _unpause(self) -> None:
        if self._paused:
            self._paused = False
            self._resume()
        waiters, self._room_waiters = self._room_waiters, []
        for d in waiters:
            d.callback(None)

    def _settle(self) -> None:
        """Answer the waiters once nothing is buffered or being written."""
        if self._writing or (self._buffer and not self._closed) or not self._waiters:
            return
        waiters, self._waiters = self._waiters, []
        for d in waiters:
            if self._error is not None:
                d.errback(self._error)
            elif self._closed:
                d.errback(ConnectionError("the spool was closed"))
            else:
                if self._file is None:  # nothing was ever written: an empty message
                    self._file = tempfile.TemporaryFile(dir=self.directory, prefix="spool-")
                d.callback(self._file)

    def _close_file(self) -> None:
        f, self._file = self._file, None
        if f is not None:
            f.close()
