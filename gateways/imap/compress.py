"""COMPRESS=DEFLATE (RFC 4978): raw deflate (RFC 1951) both ways once the command succeeded.

Invariants:
* Only after authentication (the command is refused before), so always above TLS: STARTTLS
  cannot follow it (it is valid before login only).  Like STARTTLS, anything the client sent in
  the same read after the command is discarded: it must wait for the tagged OK (§3).
* The tagged OK goes out uncompressed; everything after it, both ways, is compressed.
* Every :meth:`write` is compressed and sync-flushed (Z_SYNC_FLUSH, §4: "flush at the end of
  each response"): a reply never waits in the compressor, and IDLE updates reach the client at
  once.  Writes stay the transport's writes, so the producer flow control (``drained()``) of big
  FETCH streaming is unchanged.  Deliberate deviation: a response written in several writes is
  flushed several times (a few octets each), never held back.
* Input is inflated INFLATE_CHUNK octets at a time, and not while reading is paused (queue full,
  a literal being spooled): the compressed rest waits and is taken up when reading resumes, so
  a small compressed input ("zip bomb") never expands in memory past what the framer bounds.
* Invalid compressed input closes the connection (``* BYE``, compressed: only the client's
  stream is broken): the stream cannot be resynced.
* A second COMPRESS is ``NO [COMPRESSIONACTIVE]`` (§3).
"""

from __future__ import annotations

import zlib

from .states import IMAPError

#: zlib level: 1..9; deflate is done on the reactor, so a fast one
LEVEL = 5
#: octets of plain input inflated at once (then fed to the framer)
INFLATE_CHUNK = 64 << 10


class Deflate:
    """The two raw-deflate streams of one connection (wbits=-15: no zlib header, RFC 4978 §4)."""

    def __init__(self):
        self.deflater = zlib.compressobj(LEVEL, zlib.DEFLATED, -15)
        self.inflater = zlib.decompressobj(-15)
        self.pending = b""  # compressed input not inflated yet (reading was paused)
        self.scheduled = False

    def compress(self, data: bytes) -> bytes:
        return self.deflater.compress(data) + self.deflater.flush(zlib.Z_SYNC_FLUSH)


class CompressCommands:
    """Mixed into the protocol before LineSession: it wraps ``write`` and the input path."""

    _deflate = None

    async def do_COMPRESS(self, cmd):
        if self._deflate is not None:
            raise IMAPError("NO", "Compression is already active", "COMPRESSIONACTIVE")
        if cmd.args["mechanism"] != "DEFLATE":
            raise IMAPError("NO", "Unknown compression mechanism", "CANNOT")

        def start():
            self._deflate = Deflate()
        self.after_reply = start  # RFC 4978 §3: compression starts after the tagged OK
        return "DEFLATE active"

    def write(self, data: bytes) -> None:
        if self._deflate is not None and data and not self._closed:
            data = self._deflate.compress(data)
        super().write(data)

    def _input_paused(self) -> bool:
        return self._reading_paused or self._input_held > 0

    def received(self, data: bytes) -> None:
        """Compressed input from the transport: inflate and hand to :meth:`feed`."""
        z = self._deflate
        buf = z.pending + data if z.pending else data
        z.pending = b""
        full = False
        while (buf or full) and not self._closed:
            if self._input_paused():
                z.pending = buf
                return
            try:
                plain = z.inflater.decompress(buf, INFLATE_CHUNK)
            except zlib.error:
                self.log.info("imap %s: invalid compressed input", self.peer)
                self.write(b"* BYE Invalid compressed data\r\n")  # compressed: that stream is fine
                self.close()
                return
            buf = z.inflater.unconsumed_tail
            full = len(plain) == INFLATE_CHUNK  # more output may wait inside the inflater
            if plain:
                self.feed(plain)

    def _resume_inflating(self) -> None:
        z = self._deflate
        if z is not None and z.pending and not z.scheduled and not self._input_paused() and not self._closed:
            z.scheduled = True

            def run():
                z.scheduled = False
                if self._deflate is z and not self._closed:
                    self.received(b"")
            self.callLater(0, run)

    def _dequeue(self):
        item = super()._dequeue()
        self._resume_inflating()
        return item

    def release_input(self) -> None:
        super().release_input()
        self._resume_inflating()
