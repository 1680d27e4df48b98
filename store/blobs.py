"""Content-addressed, compressed, single-instance message blobs on disk.

(Small messages are not here: their compressed bytes live inline in the ``blobs`` row, see
docs/store.md.  This module serves the large ones, and compresses for both.)

Layout: ``data_dir/blobs/ab/cd/<sha256>.zst`` where the name is the sha256 of the raw bytes and
the file is a Zstandard frame of them (zstd level 3: ~450 MB/s here, where zlib managed ~45 MB/s
at the same ratio, which made compression the largest cost of a delivery).  Invariants:
- A blob file is complete and fsynced (file and directory) before :meth:`BlobStore.write`
  returns, so the SQL row that names it can commit after it (DESIGN: no row without its bytes).
- Writes go to a temporary name and are renamed into place: a crash never leaves a partial
  file under a blob's name.
- The same bytes are stored once, whoever delivers them.
All methods do blocking I/O: call them from a pool thread, never the reactor.
"""

from __future__ import annotations

import hashlib
import io
import itertools
import os
import threading
from pathlib import Path

import zstandard

from store import errors

SUFFIX = ".zst"
LEVEL = 3
#: octets compressed, hashed or inflated at a time when a message is streamed
CHUNK = 1 << 20
_serial = itertools.count()
_local = threading.local()  # zstd (de)compressor objects are not shareable across threads


def _compressor() -> "zstandard.ZstdCompressor":
    c = getattr(_local, "c", None)
    if c is None:
        c = _local.c = zstandard.ZstdCompressor(level=LEVEL)
    return c


def _decompressor() -> "zstandard.ZstdDecompressor":
    d = getattr(_local, "d", None)
    if d is None:
        d = _local.d = zstandard.ZstdDecompressor()
    return d


def corrupt(blob_id: str) -> errors.TemporaryFailure:
    return errors.TemporaryFailure(f"message data {blob_id[:12]} is corrupt")


def decompress_prefix(blob_id: str, source, limit: int) -> bytes:
    """The first ``limit`` octets (or all, if shorter) of the compressed ``source`` (bytes or a
    binary file object), without inflating the rest."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        source = io.BytesIO(source)
    out, have = [], 0
    try:
        with _decompressor().stream_reader(source, closefd=False) as reader:
            while have < limit:
                chunk = reader.read(limit - have)
                if not chunk:
                    break
                out.append(chunk)
                have += len(chunk)
    except zstandard.ZstdError as e:
        raise corrupt(blob_id) from e
    return b"".join(out)


def blob_id_of(raw: bytes) -> str:
    return hashlib.sha256(raw).hexdigest()


class BlobStore:
    def __init__(self, root: Path):
        self.root = Path(root)

    def path(self, blob_id: str) -> Path:
        return self.root / blob_id[:2] / blob_id[2:4] / (blob_id + SUFFIX)

    @staticmethod
    def compress(raw: bytes) -> bytes:
        return _compressor().compress(raw)

    @staticmethod
    def decompress(blob_id: str, data: bytes) -> bytes:
        try:
            return _decompressor().decompress(data)
        except zstandard.ZstdError as e:
            raise corrupt(blob_id) from e

    def write(self, raw) -> tuple[str, int]:
        """Store ``raw`` (bytes, or a binary file read from its start); returns
        ``(blob_id, stored_size)``.  Idempotent.  Compresses and hashes in
        :data:`CHUNK`-sized pieces, so no second (compressed) copy of a big message is held."""
        if isinstance(raw, (bytes, bytearray, memoryview)):
            blob_id = blob_id_of(raw)
            path = self.path(blob_id)
            if path.exists():
                return blob_id, path.stat().st_size
            view = memoryview(raw)
            size = len(view)
            source = (view[i:i + CHUNK] for i in range(0, len(view), CHUNK))
        else:
            blob_id, path = None, None
            size = raw.seek(0, os.SEEK_END)
            raw.seek(0)
            source = iter(lambda: raw.read(CHUNK), b"")
        try:
            root_tmp = self.root / ".tmp"
            root_tmp.mkdir(parents=True, exist_ok=True)
            tmp = root_tmp / f"{os.getpid()}.{threading.get_ident()}.{next(_serial)}.tmp"
            digest = hashlib.sha256() if blob_id is None else None
            try:
                with open(tmp, "wb") as out:
                    writer = zstandard.ZstdCompressor(level=LEVEL).stream_writer(out, size=size, closefd=False)
                    for piece in source:
                        if digest is not None:
                            digest.update(piece)
                        writer.write(piece)
                    writer.flush(zstandard.FLUSH_FRAME)  # the frame names its size: decompress() reads it
                    out.flush()
                    os.fsync(out.fileno())
                    stored = out.tell()
                if blob_id is None:
                    blob_id = digest.hexdigest()
                    path = self.path(blob_id)
                    if path.exists():
                        return blob_id, path.stat().st_size
                path.parent.mkdir(parents=True, exist_ok=True)
                os.replace(tmp, path)
            finally:
                if tmp.exists():
                    tmp.unlink()
            dfd = os.open(path.parent, os.O_RDONLY)
            try:
                os.fsync(dfd)
            finally:
                os.close(dfd)
        except OSError as e:
            raise errors.TemporaryFailure("cannot write message to disk") from e
        return blob_id, stored

    def open(self, blob_id: str) -> "BlobReader":
        """A reader of the raw bytes of a blob file, inflated piece by piece."""
        try:
            return BlobReader(blob_id, open(self.path(blob_id), "rb"))
        except FileNotFoundError:
            raise errors.NotFound(f"message data {blob_id[:12]} is missing") from None
        except OSError as e:
            raise errors.TemporaryFailure("cannot read message from disk") from e

    def read(self, blob_id: str) -> bytes:
        try:
            data = self.path(blob_id).read_bytes()
        except FileNotFoundError:
            raise errors.NotFound(f"message data {blob_id[:12]} is missing") from None
        except OSError as e:
            raise errors.TemporaryFailure("cannot read message from disk") from e
        return self.decompress(blob_id, data)

    def exists(self, blob_id: str) -> bool:
        return self.path(blob_id).exists()

    def delete(self, blob_id: str) -> None:
        try:
            self.path(blob_id).unlink()
        except FileNotFoundError:
            pass

    def sweep_temporary(self, cutoff: float) -> int:
        """Remove temporary files older than ``cutoff`` (a write cut off by a crash)."""
        swept = 0
        for path in (self.root / ".tmp").glob("*.tmp"):
            try:
                if path.stat().st_mtime < cutoff:
                    path.unlink()
                    swept += 1
            except FileNotFoundError:
                pass
        return swept

    def all_ids(self):
        """Every blob id on disk (for the orphan sweep of the purge job)."""
        if not self.root.exists():
            return
        for path in self.root.glob(f"??/??/*{SUFFIX}"):
            yield path.name[:-len(SUFFIX)], path.stat().st_mtime


class BlobReader:
    """Sequential reads of one blob file's raw bytes (blocking: a pool thread, one at a time).
    Holds one inflation window, never the message."""

    def __init__(self, blob_id: str, file):
        self.blob_id = blob_id
        self._file = file
        self._reader = zstandard.ZstdDecompressor().stream_reader(file, closefd=False)

    def read(self, n: int) -> bytes:
        """Up to ``n`` octets (fewer only at the end; b"" there)."""
        out, have = [], 0
        try:
            while have < n:
                chunk = self._reader.read(n - have)
                if not chunk:
                    break
                out.append(chunk)
                have += len(chunk)
        except zstandard.ZstdError as e:
            raise corrupt(self.blob_id) from e
        except OSError as e:
            raise errors.TemporaryFailure("cannot read message from disk") from e
        return out[0] if len(out) == 1 else b"".join(out)

    def skip(self, n: int) -> None:
        while n > 0:
            got = len(self.read(min(n, CHUNK)))
            if not got:
                return
            n -= got

    def close(self) -> None:
        self._reader.close()
        self._file.close()
