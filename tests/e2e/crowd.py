"""Many IMAP sessions driven from one thread (IDLE fan-out tests): non-blocking sockets and one
``selectors`` loop, so 10,000 sessions open in seconds and are read together.

``Crowd(address, n).open([...])`` runs the same commands on every session, ``collect(b" EXISTS")``
reads until every session has shown a line containing the marker and returns each session's
lines since the last collect, with when (``time.monotonic()``) the marker's line was read."""

from __future__ import annotations

import resource
import selectors
import socket
import time


def raise_nofile(need: int) -> None:
    """Raise this process's descriptor limit to ``need`` (at most the hard limit); children
    started afterwards (the server) inherit it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = need if hard == resource.RLIM_INFINITY else min(need, hard)
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))


class _Session:
    __slots__ = ("sock", "buf", "lines", "seen")

    def __init__(self, sock):
        self.sock, self.buf, self.lines, self.seen = sock, b"", [], None


class Crowd:
    def __init__(self, address, n: int, inflight: int = 32):
        self.address, self.n, self.inflight = address, n, inflight
        self.sessions: list = []
        self.sel = selectors.DefaultSelector()

    # -- opening ----------------------------------------------------------------------------
    def open(self, commands: list, timeout: float = 120.0) -> "Crowd":
        """Connect ``n`` sessions and run ``commands`` (strings, without tags) on each in turn,
        each to its tagged OK; a command ``IDLE`` is done at its continuation request.  At most
        ``inflight`` sessions are being opened at a time (the listener's backlog is 50)."""
        steps = [(None, b"* OK")] + [
            (("t%d %s\r\n" % (i, c)).encode(), b"+ " if c == "IDLE" else ("t%d " % i).encode())
            for i, c in enumerate(commands)]
        progress = {}
        deadline = time.monotonic() + timeout
        started = done = 0
        while done < self.n:
            while started < self.n and started - done < self.inflight:
                s = socket.socket()
                s.setblocking(False)
                s.connect_ex(self.address)
                sess = _Session(s)
                self.sessions.append(sess)
                progress[sess] = 0
                self.sel.register(s, selectors.EVENT_READ, sess)
                started += 1
            if time.monotonic() > deadline:
                raise AssertionError(f"only {done} of {self.n} sessions opened in {timeout} s")
            for key, _ in self.sel.select(1.0):
                sess = key.data
                self._read(sess)
                for line in self._take_lines(sess):
                    step = progress[sess]
                    if step == len(steps):
                        sess.lines.append(line)  # opened: what comes now is for collect()
                        continue
                    marker = steps[step][1]
                    if line.startswith(b"* BYE") or (line.startswith(b"t") and not line.startswith(marker + b"OK")):
                        raise AssertionError(f"opening a session: {line!r}")  # refused
                    if not line.startswith(marker):
                        continue  # an untagged response on the way
                    step += 1
                    progress[sess] = step
                    if step < len(steps):
                        sess.sock.send(steps[step][0])
                    else:
                        done += 1
        return self

    # -- reading ----------------------------------------------------------------------------
    def collect(self, marker: bytes, timeout: float = 30.0) -> list:
        """Read every session until each has shown a line containing ``marker``; returns
        ``[(lines, monotonic time the marker's line was read)]`` per session, in order.  Raises
        AssertionError naming how many sessions missed it."""
        for sess in self.sessions:
            sess.seen = None
            for line in sess.lines:
                if marker in line:
                    sess.seen = time.monotonic()
        left = sum(1 for s in self.sessions if s.seen is None)
        deadline = time.monotonic() + timeout
        while left and time.monotonic() < deadline:
            for key, _ in self.sel.select(0.2):
                sess = key.data
                self._read(sess)
                new = self._take_lines(sess)
                sess.lines += new
                if sess.seen is None and any(marker in line for line in new):
                    sess.seen = time.monotonic()
                    left -= 1
        if left:
            raise AssertionError(f"{left} of {len(self.sessions)} sessions saw no {marker!r} in {timeout} s")
        out = [(s.lines, s.seen) for s in self.sessions]
        for s in self.sessions:
            s.lines = []
        return out

    def send_all(self, data: bytes) -> None:
        for sess in self.sessions:
            sess.sock.setblocking(True)
            sess.sock.sendall(data)
            sess.sock.setblocking(False)

    def close(self) -> None:
        self.sel.close()
        for sess in self.sessions:
            try:
                sess.sock.close()
            except OSError:
                pass
        self.sessions = []

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    @staticmethod
    def _read(sess) -> None:
        try:
            data = sess.sock.recv(65536)
        except (BlockingIOError, InterruptedError):
            return
        if not data:
            raise AssertionError(f"the server closed a session; last input {sess.buf[-200:]!r}")
        sess.buf += data

    @staticmethod
    def _take_lines(sess) -> list:
        if b"\r\n" not in sess.buf:
            return []
        *lines, sess.buf = sess.buf.split(b"\r\n")
        return lines
