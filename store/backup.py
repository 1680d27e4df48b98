"""Backups of the whole store, online, in one portable format whatever the live engine.

A backup directory holds ``haven.db``, a Haven store in SQLite (the same schema: it opens as a
store of its own, for a restore or for inspection), and ``blobs/``, the message files, laid out
as a store's ``data_dir`` is.  So a backup of a MariaDB store is also a way to move it to SQLite,
and any backup restores with the same code.

- **Consistency**: the database is copied from one snapshot (SQLite's backup API from a read
  transaction; MariaDB's ``START TRANSACTION WITH CONSISTENT SNAPSHOT``), while deliveries go
  on.  Blob files are named by their content's hash and never change: the files the snapshot's
  rows name are copied after it; a file the purge removed meanwhile belonged to a message
  deleted for the whole lifetime already (reported by ``--verify``, never a live message's).
- **Incremental**: a blob file already in the backup (same name, same content) is not copied
  again; the database copy is made whole each time (it is small next to the blobs).
- **Verification** (:func:`verify`): the snapshot's integrity check, and every message's
  bytes, inline or file, read and hashed against its name.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from store import errors
from store.blobs import BlobStore, blob_id_of
from store.core import StoreCore
from store.engines import Database
from store.schema import migrate_txn

DB_FILE = "haven.db"


@dataclass(frozen=True)
class _SqliteURL:
    """A DatabaseURL for a backup's SQLite file."""
    path: str
    engine: str = "sqlite"
    host: str = ""
    port: int = 0
    user: str = ""
    password: str = ""
    database: str = ""


def snapshot(db: Database, blobs: BlobStore, dest: Path) -> dict:
    """Worker thread: the database into ``dest/haven.db`` (replaced only once complete), then
    the blob files it names that the backup does not have yet.  Returns counts."""
    dest.mkdir(parents=True, exist_ok=True)
    tmp = dest / (DB_FILE + ".new")
    for leftover in (tmp, Path(str(tmp) + "-journal")):
        leftover.unlink(missing_ok=True)
    db.snapshot_to_sqlite(str(tmp), migrate_txn)
    os.replace(tmp, dest / DB_FILE)
    target = BlobStore(dest / "blobs")
    copied = present = missing = size = 0
    for blob_id in _file_blobs(dest / DB_FILE):
        to = target.path(blob_id)
        if to.exists():
            present += 1
            continue
        source = blobs.path(blob_id)
        if not source.exists():
            missing += 1
            continue
        to.parent.mkdir(parents=True, exist_ok=True)
        part = to.with_name(to.name + ".part")
        shutil.copyfile(source, part)
        os.replace(part, to)
        copied += 1
        size += to.stat().st_size
    os.sync()  # the backup is on disk before the command says it is done
    return {"copied": copied, "present": present, "missing": missing, "bytes": size,
            "database_bytes": (dest / DB_FILE).stat().st_size}


def _file_blobs(path: Path) -> list:
    out = Database(_SqliteURL(str(path)))
    conn = out.connect()
    try:
        return [r[0] for r in conn.execute("SELECT id FROM blobs WHERE data IS NULL")]
    finally:
        conn.close()


def verify(src: Path) -> tuple:
    """Worker thread: ``(messages checked, [problems])`` of the backup in ``src``."""
    if not (src / DB_FILE).is_file():
        return 0, [f"{src / DB_FILE}: no backup here"]
    conn = Database(_SqliteURL(str(src / DB_FILE))).connect()
    blobs = BlobStore(src / "blobs")
    problems = []
    checked = 0
    try:
        result = conn.execute("PRAGMA integrity_check").fetchone()[0]
        if result != "ok":
            problems.append(f"database: {result}")
        for blob_id, data in conn.execute("SELECT id, data FROM blobs"):
            checked += 1
            try:
                raw = BlobStore.decompress(blob_id, bytes(data)) if data is not None else blobs.read(blob_id)
            except errors.StoreError as e:
                problems.append(f"blob {blob_id}: {e}")
                continue
            if blob_id_of(raw) != blob_id:
                problems.append(f"blob {blob_id}: its bytes do not hash to its name")
    finally:
        conn.close()
    return checked, problems


class BackupStore(StoreCore):
    async def backup(self, dest) -> dict:
        return await self._cpu(snapshot, self.db, self.blobs, Path(dest))

    async def verify_backup(self, src) -> tuple:
        return await self._cpu(verify, Path(src))

