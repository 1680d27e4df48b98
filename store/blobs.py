"""Content-addressed, compressed, single-instance message blobs on disk.

(Small messages are not here: their compressed bytes live inline in the ``blobs`` row, see
docs/store.md.  This module serves the large ones, and compresses for both.)

Layout: ``data_dir/blobs/ab/cd/<sha256>.z`` where the name is the sha256 of the raw bytes and the
file is a zlib stream of them.  Invariants:
- A blob file is complete and fsynced (file and directory) before :meth:`BlobStore.write`
  returns, so the SQL row that names it can commit after it (DESIGN: no row without its bytes).
- Writes go to a temporary name and are renamed into place: a crash never leaves a partial
  file under a blob's name.
- The same bytes are stored once, whoever delivers them.
All methods do blocking I/O: call them from a pool thread, never the reactor.
"""

from __future__ import annotations

import hashlib
import os
import zlib
from pathlib import Path

from store import errors

SUFFIX = ".z"


def blob_id_of(raw: bytes) -> str:
    return hashlib.sha256(raw).hexdigest()


class BlobStore:
    def __init__(self, root: Path, level: int = 3):
        self.root = Path(root)
        self.level = level

    def path(self, blob_id: str) -> Path:
        return self.root / blob_id[:2] / blob_id[2:4] / (blob_id + SUFFIX)

    def compress(self, raw: bytes) -> bytes:
        return zlib.compress(raw, self.level)

    @staticmethod
    def decompress(blob_id: str, data: bytes) -> bytes:
        try:
            return zlib.decompress(data)
        except zlib.error as e:
            raise errors.TemporaryFailure(f"message data {blob_id[:12]} is corrupt") from e

    def write(self, raw: bytes) -> tuple[str, int]:
        """Store ``raw``; returns ``(blob_id, stored_size)``.  Idempotent."""
        blob_id = blob_id_of(raw)
        path = self.path(blob_id)
        if path.exists():
            return blob_id, path.stat().st_size
        data = self.compress(raw)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{blob_id}.{os.getpid()}.{id(data)}.tmp")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o640)
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view):]
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, path)
            dfd = os.open(path.parent, os.O_RDONLY)
            try:
                os.fsync(dfd)
            finally:
                os.close(dfd)
        except OSError as e:
            raise errors.TemporaryFailure("cannot write message to disk") from e
        return blob_id, len(data)

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

    def all_ids(self):
        """Every blob id on disk (for the orphan sweep of the purge job)."""
        if not self.root.exists():
            return
        for path in self.root.glob(f"??/??/*{SUFFIX}"):
            yield path.name[:-len(SUFFIX)], path.stat().st_mtime
