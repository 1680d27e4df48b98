"""COMPRESS=DEFLATE (RFC 4978) on real sockets, both engines: raw deflate both ways after the
tagged OK, with IDLE, big FETCH streaming, big spooled APPEND literals and pipelining past the
input queue's limit.  (imapclient has no COMPRESS: raw transcripts only.)"""

from __future__ import annotations

import os
import re
import socket
import zlib

import pytest

from .wire import Wire


class DeflateWire(Wire):
    """:class:`Wire` that speaks raw deflate once :meth:`start` was called."""

    deflater = inflater = None

    def start(self) -> None:
        assert not self.buf, self.buf  # nothing may follow the tagged OK uncompressed
        self.deflater = zlib.compressobj(6, zlib.DEFLATED, -15)
        self.inflater = zlib.decompressobj(-15)

    def send(self, data: bytes) -> None:
        if self.deflater is not None:
            data = self.deflater.compress(data) + self.deflater.flush(zlib.Z_SYNC_FLUSH)
        self.sock.sendall(data)

    def _fill(self) -> None:
        if self.inflater is None:
            return super()._fill()
        data = self.sock.recv(1 << 16)
        if not data:
            raise ConnectionError("connection closed; buffered: %r" % self.buf[:200])
        self.buf += self.inflater.decompress(data)


@pytest.fixture
def user(haven):
    return haven.new_user()


def _compressed(haven, user) -> DeflateWire:
    w = DeflateWire(haven.imap, timeout=30)
    w.login(*user)
    assert w.ok("COMPRESS DEFLATE")[-1].endswith(b"OK DEFLATE active")
    w.start()
    return w


def test_compress_after_login_only_and_once(haven, user):
    with DeflateWire(haven.imap) as w:
        assert b" BAD " in w.cmd("COMPRESS DEFLATE")[-1]  # not before authentication
        w.login(*user)
        assert b"COMPRESS=DEFLATE" in w.ok("CAPABILITY")[0]
        assert b"NO [CANNOT]" in w.cmd("COMPRESS LZW")[-1]
    with _compressed(haven, user) as w:
        assert w.ok("NOOP") == [b"t3 OK NOOP completed"]
        # RFC 4978 §3: a second COMPRESS, answered compressed
        assert b"NO [COMPRESSIONACTIVE]" in w.cmd("COMPRESS DEFLATE")[-1]
        w.ok("SELECT INBOX")
        w.ok("LOGOUT")


def test_compressed_append_spooled_and_big_fetch_streamed(haven, user):
    # 3 MB, half of it random: the APPEND literal is spooled (input held meanwhile) and the
    # FETCH of the message streamed under flow control, both through the deflate streams
    body = b"".join(os.urandom(39).hex().encode() + b"\r\n" + b"z" * 78 + b"\r\n" for _ in range(19000))
    raw = b"Subject: big\r\n\r\n" + body
    with _compressed(haven, user) as w:
        w.send(b"a1 APPEND INBOX {%d}\r\n" % len(raw))
        assert w.line().startswith(b"+ ")
        w.send(raw + b"\r\n")
        assert b"[APPENDUID" in w.until("a1")[-1]
        w.ok("SELECT INBOX")
        lines = w.ok("FETCH 1 (BODY.PEEK[] BODY.PEEK[TEXT]<5.10>)")
        assert lines[0] == b"* 1 FETCH (BODY[] {%d}\r\n%s BODY[TEXT]<5> {10}\r\n%s)" % (len(raw), raw, body[5:15])


def test_compressed_pipelining_past_the_queue_limit(haven, user):
    # 3000 commands (100 KB) in one compressed burst of a few KB, each a store round trip:
    # inflating stops while the input queue is full (500 commands) and resumes as it empties
    n = 3000
    with _compressed(haven, user) as w:
        w.send(b"".join(b"p%d STATUS INBOX (MESSAGES)\r\n" % i for i in range(n)))
        for i in range(n):
            assert w.line() == b'* STATUS "INBOX" (MESSAGES 0)'
            assert w.line() == b"p%d OK STATUS completed" % i


def test_compressed_idle_gets_updates_at_once(haven, user):
    with _compressed(haven, user) as w:
        w.ok("SELECT INBOX")
        w.send(b"i1 IDLE\r\n")
        assert w.line().startswith(b"+ ")
        haven.deliver(user[0], b"Subject: during idle\r\n\r\nhi\r\n")
        assert w.line() == b"* 1 EXISTS"  # flushed per response: not held in the compressor
        w.send(b"DONE\r\n")
        assert w.until("i1")[-1] == b"i1 OK IDLE terminated"


def test_invalid_compressed_input_closes(haven, user):
    with _compressed(haven, user) as w:
        w.sock.sendall(b"\xff\xff\xff\xff not deflate")
        data = b""
        try:
            while True:
                chunk = w.sock.recv(4096)
                if not chunk:
                    break
                data += w.inflater.decompress(chunk)
        except (ConnectionError, socket.timeout):
            pass
        assert re.search(rb"\* BYE Invalid compressed data", data), data
