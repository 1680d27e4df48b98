"""What every part of the SQL store shares: the database, the blob store, the CPU pool, the
push bus and the settings, and the three moves every method makes.

The store is one object composed one way (Synapse's habit): :class:`store.sqlstore.SqlStore`
inherits one class per area (accounts, folders, messages, delivery, DAV, outbound queue, Sieve
scripts, quotas, lifecycle), each defined next to the ``_txn`` functions it calls, and each a
subclass of :class:`StoreCore`.  An area's methods are thin coroutines:

- SQL through ``self._run(desc, some_txn, ...)`` (the DB pool; ``_txn`` functions are plain SQL
  and Python, reactor-free, and may be retried);
- heavy parsing and blob I/O through ``self._cpu(fn, ...)`` (the CPU pool);
- ``self._publish(...)`` of change events only after the transaction committed.

Nothing here imports a table module; the table modules import this one.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Callable, Optional

from twisted.internet import threads
from twisted.internet.defer import Deferred, DeferredSemaphore
from twisted.python.threadpool import ThreadPool

from formats import mime
from store import errors
from store.blobs import BlobStore, blob_id_of
from store.bulk import RawCache
from store.bus import LocalBus, ModseqPoller
from store.changelog import PreparedMessage
from store.engines import Database
from store.interfaces import ChangeEvent
from store.settings import StoreSettings
from store.textindex import text_index_row

log = logging.getLogger("haven.store")

#: a spooled message above this is read into memory (for its MIME analysis) only when no other
#: such message is (see StoreCore._prepare_message)
BIG_MESSAGE = 8 << 20


def read_spooled(file) -> bytes:
    """The whole of a spooled message (blocking: a pool thread)."""
    try:
        file.seek(0)
        return file.read()
    except (OSError, ValueError) as e:  # ValueError: the file was closed under us
        raise errors.TemporaryFailure("cannot read the spooled message") from e


class StoreCore:
    """The shared state of the store's areas; see the module docstring."""

    def __init__(self, db: Database, settings: StoreSettings):
        self.db = db
        self.settings = settings
        self.blobs = BlobStore(Path(settings.data_dir) / "blobs")
        self.softdelete_lifetime = settings.softdelete_lifetime
        self.max_message_size = settings.max_message_size
        self.inline_blob_size = settings.inline_blob_size
        self.bus = LocalBus()
        self.poller = ModseqPoller(self.bus, db, settings.poll_interval)
        self.cpu = ThreadPool(minthreads=1, maxthreads=4, name="haven-cpu")
        self._big_lane = DeferredSemaphore(1)  # analysis of messages over BIG_MESSAGE, one at a time
        self.raw_cache = RawCache()  # recently read messages, for the batched reads
        self._outbound_listeners: list = []
        #: settings.observer (the process's metrics): every transaction, delivery and push
        self.observer = settings.observer
        db.observer = self.bus.observer = self.observer

    @property
    def rule_settings(self):
        return self.settings.rules

    @property
    def quota_settings(self):
        return self.settings.quota

    # -- lifecycle -------------------------------------------------------------------------
    def start(self, reactor, poll: bool = True) -> None:
        self.db.start(reactor)
        self.cpu.start()
        reactor.addSystemEventTrigger("during", "shutdown", self.stop)
        if poll:
            self.poller.start()
        if self.observer is not None:
            self.observer.watch_pool(self.db.pool_usage)

    def stop(self) -> None:
        self.poller.stop()
        if self.cpu.started:
            self.cpu.stop()
        self.db.stop()  # waits for the transaction in flight; idempotent (shutdown also triggers it)

    # -- the three moves -------------------------------------------------------------------
    def _cpu(self, fn, *args):
        from twisted.internet import reactor  # the installed one, asyncioreactor (not at import time)
        return threads.deferToThreadPool(reactor, self.cpu, fn, *args)

    def _run(self, desc, fn, *args):
        return self.db.run_interaction(desc, fn, *args)

    def _publish(self, account_id: int, folder_id: Optional[int], modseq: Optional[int], kind: str = "message",
                 committed: Optional[float] = None):
        """``committed``: time.monotonic() of the commit, for the push latency; by default the
        commit of the pool work whose result the reactor handled last (the caller's own, when
        it publishes as it resumes from ``_run``)."""
        if modseq is not None:
            self.bus.publish(ChangeEvent(account_id=account_id, folder_id=folder_id, modseq=modseq, kind=kind),
                             self.db.last_commit if committed is None else committed)

    def _observe_delivery(self, outcome: str, count: int = 1) -> None:
        if self.observer is not None and count:
            self.observer.delivery(outcome, count)

    # -- the outbound hook -----------------------------------------------------------------
    def on_outbound(self, callback: Callable[[], None]) -> Callable[[], None]:
        self._outbound_listeners.append(callback)
        return lambda: self._outbound_listeners.remove(callback) if callback in self._outbound_listeners else None

    def _outbound_queued(self) -> None:
        for callback in list(self._outbound_listeners):
            try:
                callback()
            except Exception:
                log.exception("outbound listener failed")

    # -- blobs -----------------------------------------------------------------------------
    async def _delete_blob_files(self, blob_ids) -> None:
        """After the commit that dropped their rows (inline blobs have no file: a no-op)."""
        if blob_ids:
            await self._cpu(lambda: [self.blobs.delete(b) for b in blob_ids])

    def _prepare(self, raw: bytes) -> PreparedMessage:
        """CPU pool: analyse the MIME structure and write the blob (fsynced)."""
        if len(raw) > self.max_message_size:
            raise errors.TooBig(f"message exceeds {self.max_message_size} bytes")
        return self._prepared(raw)

    def _prepare_file(self, file) -> PreparedMessage:
        """CPU pool: :meth:`_prepare` of a spooled message (a binary file, read from its start).
        The MIME analysis needs the whole message at once (offsets into it are what FETCH
        slices by): it is read for that and dropped; the blob is hashed and compressed from the
        bytes in pieces (:meth:`BlobStore.write`), so one copy of the message is held, for as
        long as the analysis runs."""
        size = file.seek(0, os.SEEK_END)
        if size > self.max_message_size:
            raise errors.TooBig(f"message exceeds {self.max_message_size} bytes")
        return self._prepared(read_spooled(file))

    def _prepared(self, raw: bytes) -> PreparedMessage:
        info = mime.analyze(raw)
        if len(raw) <= self.inline_blob_size:
            inline = self.blobs.compress(raw)
            blob_id, stored = blob_id_of(raw), len(inline)
        else:
            inline = None
            blob_id, stored = self.blobs.write(raw)
        envelope = info["envelope"]
        header = raw[:info["header_end"]]
        return PreparedMessage(blob_id=blob_id, stored_size=stored, inline=inline, size=len(raw),
                               header=header, envelope=json.dumps(envelope),
                               structure=json.dumps(info["structure"]),
                               subject=envelope[1] if envelope else None,
                               text_row=text_index_row(blob_id, raw, header, info["structure"]))

    async def _with_spooled(self, file, fn):
        """``await fn(raw)`` with the bytes of a spooled message (a binary file, read in the CPU
        pool).  A message over BIG_MESSAGE is held only while no other such message is: the
        big lane is kept until ``fn`` returns (a delivery's rules and copies work on the bytes)."""
        size = file.seek(0, os.SEEK_END)  # lseek: no disk wait

        async def run():
            raw = await self._cpu(read_spooled, file)
            return await fn(raw)
        if size > BIG_MESSAGE:
            return await self._big_lane.run(lambda: Deferred.fromCoroutine(run()))
        return await run()

    async def _prepare_message(self, raw) -> PreparedMessage:
        """``raw``: bytes, or a binary file holding the message (see Store.append_message)."""
        if isinstance(raw, (bytes, bytearray)):
            return await self._cpu(self._prepare, bytes(raw))
        size = raw.seek(0, os.SEEK_END)  # lseek: no disk wait
        if size > BIG_MESSAGE:
            # one big message in memory at a time: twenty 45 MB APPENDs finishing together
            # must not hold twenty copies (their literals wait on disk meanwhile)
            return await self._big_lane.run(self._cpu, self._prepare_file, raw)
        return await self._cpu(self._prepare_file, raw)
