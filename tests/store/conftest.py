"""The one door from the store's tests to what lies behind the contract.

Most tests here speak only ``store.interfaces`` (the ``store`` fixture).  A few check what the
contract cannot show: that a purge really removed the blob rows and files, that a corrupt blob is
reported, that an expired lease brings a message back.  They take the ``backstage`` fixture, so
a test that reaches behind the contract says so in its signature and does it through one small
class instead of poking ``store.db`` and ``store.blobs`` itself."""

from __future__ import annotations

import pytest


class Backstage:
    """The SQL tables and blob files of one started SqlStore, for implementation checks."""

    def __init__(self, store):
        self._db = store.db
        self._blobs = store.blobs

    def scalar(self, sql: str, *params):
        return self._db.run_sync("test: " + sql, lambda txn: txn.scalar(sql, params))

    def count(self, table: str) -> int:
        return self.scalar(f"SELECT COUNT(*) FROM {table}")

    def execute(self, sql: str, *params) -> None:
        self._db.run_sync("test: " + sql, lambda txn: txn.execute(sql, params))

    def blob_files(self) -> int:
        return len(list(self._blobs.all_ids()))

    def blob_file_exists(self, blob_id: str) -> bool:
        return self._blobs.exists(blob_id)

    def remove_blob_file(self, blob_id: str) -> None:
        self._blobs.delete(blob_id)

    @property
    def sqlite_path(self) -> str:
        return self._db.url.path

    async def set_busy_timeout(self, ms: int) -> None:
        """SQLite's busy timeout on the store's own pool connection."""
        await self._db.run_interaction("pragma", lambda txn: txn.execute(f"PRAGMA busy_timeout={int(ms)}"))


@pytest.fixture
def backstage(store):
    return Backstage(store)
