"""The SQL-backed implementation of :class:`store.interfaces.Store`.

Each method is a thin coroutine: heavy parsing and blob I/O go to the CPU pool, SQL to the DB
pool through ``run_interaction(desc, some_txn, ...)``, and change events are published on the
bus only after the transaction committed (mox's rule: broadcast after commit).
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Optional

from twisted.internet import defer, threads
from twisted.python.failure import Failure
from twisted.python.threadpool import ThreadPool

from store import accounts as A
from store import bulk
from store import dav as D
from store import errors
from store import folders as F
from store import messages as M
from formats import mime
from store.blobs import BlobStore, blob_id_of
from store.bus import LocalBus, ModseqPoller
from store.engines import Database
from store.queue import OutboundQueueMixin
from store import rules as R
from store.rulestore import RulesMixin
from store.interfaces import (Account, ChangeEvent, Delivery, DeliveryResult, PurgeReport,
                              Recipient, Store)
from store.schema import current_version_txn, latest_version, migrate_txn

log = logging.getLogger("haven.store")

#: orphan blob files (written, but whose row never committed) older than this are swept
ORPHAN_GRACE = 3600


class SqlStore(OutboundQueueMixin, RulesMixin, Store):
    def __init__(self, db: Database, data_dir: Path, softdelete_lifetime: float = 30,
                 max_message_size: int = 50 * 1024 * 1024, poll_interval: float = 1.0,
                 inline_blob_size: int = 65536, rule_settings: Optional[R.RuleSettings] = None):
        self.db = db
        self.rule_settings = rule_settings or R.RuleSettings()
        self._scripts = {}
        #: called (reactor thread) after a delivery queued outgoing mail (redirect, vacation):
        #: the service points it at the spooler's wake()
        self.on_outbound = None
        self.blobs = BlobStore(Path(data_dir) / "blobs")
        self.softdelete_lifetime = softdelete_lifetime
        self.max_message_size = max_message_size
        self.inline_blob_size = inline_blob_size
        self.bus = LocalBus()
        self.poller = ModseqPoller(self.bus, db, poll_interval)
        self.cpu = ThreadPool(minthreads=1, maxthreads=4, name="haven-cpu")
        self.raw_cache = bulk.RawCache()  # recently read messages, for the batched reads below
        self._pending_deliveries: list = []
        self._committing = False
        self.dav = D.DavAccess(self)  # calendars and contacts, for the CalDAV gateway's threads

    # -- lifecycle -------------------------------------------------------------------------
    def start(self, reactor, poll: bool = True) -> None:
        self.db.start(reactor)
        self.cpu.start()
        reactor.addSystemEventTrigger("during", "shutdown", self.stop)
        if poll:
            self.poller.start()

    def stop(self) -> None:
        self.poller.stop()
        if self.cpu.started:
            self.cpu.stop()

    def _cpu(self, fn, *args):
        from twisted.internet import reactor
        return threads.deferToThreadPool(reactor, self.cpu, fn, *args)

    def _run(self, desc, fn, *args):
        return self.db.run_interaction(desc, fn, *args)

    async def _delete_blob_files(self, blob_ids) -> None:
        """After the commit that dropped their rows (inline blobs have no file: a no-op)."""
        if blob_ids:
            await self._cpu(lambda: [self.blobs.delete(b) for b in blob_ids])

    def _publish(self, account_id: int, folder_id: Optional[int], modseq: Optional[int], kind: str = "message"):
        if modseq is not None:
            self.bus.publish(ChangeEvent(account_id=account_id, folder_id=folder_id, modseq=modseq, kind=kind))

    # -- schema ----------------------------------------------------------------------------
    async def schema_version(self) -> tuple:
        """(current or None for an empty database, latest known)."""
        return await self._run("schema_version", current_version_txn), latest_version()

    async def migrate(self) -> list:
        return await self._run("migrate", migrate_txn)

    # -- accounts --------------------------------------------------------------------------
    async def create_account(self, address, password_hash, name=None) -> Account:
        address = A.normalize_address(address)
        return await self._run("create_account", A.create_account_txn, address, password_hash, name,
                               int(time.time()))

    async def get_account(self, address) -> Account:
        return await self._run("get_account", A.get_account_txn, A.normalize_address(address))

    async def get_account_by_id(self, account_id: int) -> Account:
        return await self._run("get_account_by_id", A.get_account_by_id_txn, account_id)

    async def list_accounts(self):
        return await self._run("list_accounts", A.list_accounts_txn)

    async def delete_account(self, address) -> None:
        gone = await self._run("delete_account", A.delete_account_txn, A.normalize_address(address))
        await self._delete_blob_files(gone)

    async def get_credentials(self, address):
        try:
            address = A.normalize_address(address)
        except errors.InvalidInput:
            return None
        return await self._run("get_credentials", A.get_credentials_txn, address)

    async def set_password_hash(self, account_id, password_hash) -> None:
        await self._run("set_password_hash", A.set_password_hash_txn, account_id, password_hash)

    async def add_alias(self, alias, address) -> None:
        await self._run("add_alias", A.add_alias_txn, A.normalize_address(alias), A.normalize_address(address))

    async def delete_alias(self, alias) -> None:
        await self._run("delete_alias", A.delete_alias_txn, A.normalize_address(alias))

    async def list_aliases(self) -> list:
        return await self._run("list_aliases", A.list_aliases_txn)

    async def is_local_domain(self, domain: str) -> bool:
        return await self._run("is_local_domain", A.is_local_domain_txn, domain)

    async def resolve_recipient(self, address) -> Recipient:
        return await self._run("resolve_recipient", A.resolve_recipient_txn, address)

    # -- folders ---------------------------------------------------------------------------
    async def list_folders(self, account_id, kind="mail"):
        return await self._run("list_folders", F.list_folders_txn, account_id, kind)

    async def get_folder(self, account_id, name):
        return await self._run("get_folder", F.get_folder_txn, account_id, name)

    async def create_folder(self, account_id, name, kind="mail", special_use=None):
        folder = await self._run("create_folder", F.create_folder_txn, account_id, name, kind, special_use)
        self._publish(account_id, folder.id, folder.highest_modseq, "folder")
        return folder

    async def delete_folder(self, account_id, name) -> None:
        folder, modseq = await self._run("delete_folder", F.delete_folder_txn, account_id, name)
        self._publish(account_id, folder.id, modseq, "folder")

    async def rename_folder(self, account_id, old, new) -> None:
        modseq = await self._run("rename_folder", F.rename_folder_txn, account_id, old, new)
        self._publish(account_id, None, modseq, "folder")

    async def set_subscribed(self, account_id, name, subscribed) -> None:
        await self._run("set_subscribed", F.set_subscribed_txn, account_id, name, subscribed)

    async def folder_status(self, account_id, name):
        return await self._run("folder_status", F.folder_status_txn, account_id, name)

    # -- messages --------------------------------------------------------------------------
    async def list_messages(self, folder_id):
        return await self._run("list_messages", M.list_messages_txn, folder_id)

    async def fetch_messages(self, folder_id, uids, envelope=False, structure=False, header=False):
        return await self._run("fetch_messages", M.fetch_messages_txn, folder_id, list(uids), envelope,
                               structure, header)

    def _read_inline(self, blob_id: str) -> Optional[bytes]:
        """DB pool thread: the decompressed inline bytes, or None for a blob file."""
        inline = self.db.run_sync("read_blob", M.inline_blob_txn, blob_id)
        return None if inline is None else self.blobs.decompress(blob_id, inline)

    async def read_blob(self, blob_id) -> bytes:
        raw = await self.db.run_in_pool(self._read_inline, blob_id)
        if raw is not None:
            return raw
        try:
            return await self._cpu(self.blobs.read, blob_id)
        except errors.NotFound:
            log.error("blob %s is referenced but missing from %s", blob_id, self.blobs.root)
            raise

    async def changes_since(self, folder_id, modseq):
        return await self._run("changes_since", M.changes_since_txn, folder_id, modseq)

    def _prepare(self, raw: bytes) -> M.PreparedMessage:
        """CPU pool: analyse the MIME structure and write the blob (fsynced)."""
        if len(raw) > self.max_message_size:
            raise errors.TooBig(f"message exceeds {self.max_message_size} bytes")
        info = mime.analyze(raw)
        if len(raw) <= self.inline_blob_size:
            inline = self.blobs.compress(raw)
            blob_id, stored = blob_id_of(raw), len(inline)
        else:
            inline = None
            blob_id, stored = self.blobs.write(raw)
        envelope = info["envelope"]
        return M.PreparedMessage(blob_id=blob_id, stored_size=stored, inline=inline, size=len(raw),
                                 header=raw[:info["header_end"]], envelope=json.dumps(envelope),
                                 structure=json.dumps(info["structure"]),
                                 subject=envelope[1] if envelope else None)

    async def prepare_message(self, raw: bytes) -> M.PreparedMessage:
        return await self._cpu(self._prepare, raw)

    async def append_message(self, account_id, folder_id, raw, flags=(), internaldate=None):
        msg = await self.prepare_message(raw)
        uidvalidity, uid, modseq = await self._run("append_message", M.append_message_txn, account_id, folder_id,
                                                   msg, list(flags), internaldate, self.rule_settings)
        self._publish(account_id, folder_id, modseq)
        return uidvalidity, uid

    async def store_flags(self, account_id, folder_id, uids, op, flags, unchanged_since=None):
        result, modseq = await self._run("store_flags", M.store_flags_txn, account_id, folder_id, list(uids), op,
                                         list(flags), unchanged_since)
        self._publish(account_id, folder_id, modseq)
        return result

    async def copy_messages(self, account_id, folder_id, uids, dest_folder_id):
        result, _ids, modseq = await self._run("copy_messages", M.copy_messages_txn, account_id, folder_id,
                                               list(uids), dest_folder_id, self.rule_settings)
        self._publish(account_id, dest_folder_id, modseq)
        return result

    async def move_messages(self, account_id, folder_id, uids, dest_folder_id):
        result, modseq = await self._run("move_messages", M.move_messages_txn, account_id, folder_id, list(uids),
                                         dest_folder_id)
        self._publish(account_id, dest_folder_id, modseq)
        self._publish(account_id, folder_id, modseq)
        return result

    async def delete_messages(self, account_id, folder_id, uids):
        deleted, modseq = await self._run("delete_messages", M.delete_messages_txn, account_id, folder_id,
                                          list(uids))
        self._publish(account_id, folder_id, modseq)
        return deleted

    async def expunge(self, account_id, folder_id, uids=None):
        expunged, modseq = await self._run("expunge", M.expunge_txn, account_id, folder_id,
                                           None if uids is None else list(uids))
        self._publish(account_id, folder_id, modseq)
        return expunged

    # -- delivery --------------------------------------------------------------------------
    def begin_delivery(self, mail_from: str) -> Delivery:
        return SqlDelivery(self, mail_from)

    async def deliver_prepared(self, recipients: list, msg: Optional[M.PreparedMessage], raw: bytes,
                               plans=None) -> list:
        """Queue the rows of one delivery for the next group commit and wait for it (``msg``
        None: prepare ``raw`` on the DB thread, for messages stored inline; ``plans`` a list, or
        a function that makes it on the DB thread)."""
        waiter = defer.Deferred()
        self._pending_deliveries.append((recipients, msg, raw, plans, waiter))
        if not self._committing:
            self._commit_deliveries()
        rows = await waiter
        results = []
        outgoing = 0
        for rcpt, row in zip(recipients, rows):
            self._publish(row.account_id, row.folder_id, row.modseq)
            for account_id, folder_id, modseq in row.events or ():
                self._publish(account_id, folder_id, modseq)
            outgoing += row.queued
            results.append(DeliveryResult(recipient=rcpt, error=row.error, folder=row.folder, uid=row.uid,
                                          actions=row.actions))
        if outgoing and self.on_outbound is not None:
            self.on_outbound()
        return results

    def _commit_deliveries(self) -> None:
        """Commit every delivery queued so far in one transaction; deliveries that arrive
        meanwhile wait for the next one.  Under load this turns N commits (N fsyncs) into one."""
        batch, self._pending_deliveries = self._pending_deliveries, []
        self._committing = True
        d = self.db.run_in_pool(self._deliver_batch_sync, batch)

        def done(result):
            self._committing = False
            if self._pending_deliveries:
                self._commit_deliveries()
            for i, entry in enumerate(batch):
                waiter = entry[-1]
                if isinstance(result, Failure):
                    waiter.errback(result)
                else:
                    waiter.callback(result[i])
        d.addBoth(done)

    def _deliver_batch_sync(self, batch) -> list:
        """DB pool thread: the batch's rows in one transaction, then a check that every blob
        is still on disk (a purge at the same instant could have swept an identical,
        unreferenced blob; then its bytes are written again before anyone is told 250)."""
        batch = [(r, m if m is not None else self._prepare(raw), raw, p() if callable(p) else p)
                 for r, m, raw, p, _w in batch]
        rows = self.db.run_sync("deliver", M.deliver_batch_txn, [(r, m, p) for r, m, _raw, p in batch],
                                self.rule_settings, self._prepare)
        for _r, msg, raw, _p in batch:
            if msg.inline is None and not self.blobs.exists(msg.blob_id):
                log.warning("blob %s vanished during delivery; writing it again", msg.blob_id)
                self.blobs.write(raw)
        return rows

    # -- soft-delete lifecycle -------------------------------------------------------------
    async def list_deleted(self, account_id):
        return await self._run("list_deleted", M.list_deleted_txn, account_id)

    async def restore_messages(self, account_id, message_ids):
        count, touched = await self._run("restore_messages", M.restore_messages_txn, account_id, list(message_ids))
        for folder_id, modseq in touched:
            self._publish(account_id, folder_id, modseq)
        return count

    async def list_deleted_dav(self, account_id):
        return await self._run("list_deleted_dav", D.list_deleted_txn, account_id)

    async def restore_dav(self, account_id, item_ids) -> tuple:
        """(restored count, reasons for the ones that could not come back)."""
        count, touched, refused = await self._run("restore_dav", D.restore_items_txn, account_id, list(item_ids))
        for folder_id, modseq in touched:
            self._publish(account_id, folder_id, modseq, "dav")
        return count, refused

    async def list_dav_collections(self, account_id):
        return await self._run("list_dav_collections", D.list_collections_txn, account_id)

    async def list_dav_items(self, folder_id, with_data=False):
        return await self._run("list_dav_items", D.list_items_txn, folder_id, with_data)

    async def put_dav_item(self, account_id, folder_id, item: D.NewItem):
        """Create or overwrite one calendar object or vCard (``item`` computed by the caller:
        gateways/dav/items.py).  Returns (stored item, replaced)."""
        stored, replaced, modseq = await self._run("put_dav_item", D.put_item_txn, account_id, folder_id, item)
        self._publish(account_id, folder_id, modseq, "dav")
        return stored, replaced

    async def purge(self, older_than_days=None) -> PurgeReport:
        days = self.softdelete_lifetime if older_than_days is None else older_than_days
        if days <= 0 and older_than_days is None:
            messages = folders = dav_items = 0
            gone = []
        else:
            cutoff = int(time.time() - days * 86400) if days > 0 else int(time.time()) + 1
            dav_items = await self._run("purge_dav", D.purge_txn, cutoff)
            messages, folders, gone = await self._run("purge", M.purge_txn, cutoff)
        await self._run("purge_vacation", R.purge_vacation_txn, int(time.time()))
        orphans = await self._sweep_orphans()
        await self._delete_blob_files(gone)
        report = PurgeReport(messages=messages, folders=folders, blobs=len(gone) + orphans, dav_items=dav_items)
        if messages or folders or report.blobs or dav_items:
            log.info("purge: %d messages, %d calendar/contact items, %d folders, %d blobs removed", messages,
                     dav_items, folders, report.blobs)
        return report

    async def _sweep_orphans(self) -> int:
        """Blob files whose row never committed (a delivery failed after writing its blob)."""
        cutoff = time.time() - ORPHAN_GRACE
        candidates = await self._cpu(lambda: [b for b, mtime in self.blobs.all_ids() if mtime < cutoff])
        if not candidates:
            return 0
        known = await self._run("known_blobs", M.known_blob_ids_txn, candidates)
        orphans = [b for b in candidates if b not in known]
        await self._delete_blob_files(orphans)
        return len(orphans)

    # -- batched reads (IMAP FETCH of bodies, SEARCH BODY/TEXT): one pool hop per batch, not
    # -- one or two per message; the pool-thread side is store/bulk.py --------------------------
    async def read_blobs(self, blob_ids, prefix=None) -> dict:
        ids = list(dict.fromkeys(blob_ids))
        if not ids:
            return {}
        stored = await self._run("read_blobs", M.blob_data_txn, ids)
        return await self._cpu(bulk.load, self.blobs, self.raw_cache, ids, stored, dict(prefix or {}))

    async def fetch_messages_with_bodies(self, folder_id, uids, envelope=False, structure=False, header=False):
        recs, raws, rest = await self.db.run_in_pool(self._fetch_with_bodies_sync, folder_id, list(uids),
                                                     envelope, structure, header)
        if rest:
            raws.update(await self._cpu(bulk.load, self.blobs, self.raw_cache, list(rest), rest, {}))
        return [(r, raws[r.blob_id]) for r in recs]

    def _fetch_with_bodies_sync(self, folder_id, uids, envelope, structure, header) -> tuple:
        """DB pool thread: the rows and the inline blobs not in the raw cache, in one transaction.
        Inline blobs of a small batch are inflated right here, as read_blob does, so FETCH of one
        small message is one hop; blob files and big batches are left (``rest``) to the CPU pool."""
        cache = self.raw_cache
        recs, raws, stored = self.db.run_sync("fetch_messages_with_bodies", M.fetch_messages_with_data_txn,
                                              folder_id, uids, envelope, structure, header, cache.get)
        here = sum(len(d) for d in stored.values() if d is not None) <= bulk.INFLATE_ON_DB_THREAD
        rest = {}
        for r in recs:
            blob_id = r.blob_id
            if blob_id in raws or blob_id in rest:
                continue
            data = stored.get(blob_id)
            if data is not None and here:
                raws[blob_id] = cache.put(blob_id, bulk.inflate(blob_id, data))
            else:
                rest[blob_id] = data  # None: a blob file (or a missing blob: NotFound from load)
        return recs, raws, rest

    async def search_text(self, folder_id, uids, needles) -> dict:
        rows = await self._run("search_text", M.text_sources_txn, folder_id, list(uids))
        if not rows:
            return {}
        return await self._cpu(bulk.scan_text, self.blobs, self.raw_cache, rows, frozenset(needles))

class SqlDelivery(Delivery):
    def __init__(self, store: SqlStore, mail_from: str):
        self.store = store
        self.mail_from = mail_from
        self.recipients: list[Recipient] = []
        self.states: list = []  # (rules_version, has_active_script) per recipient

    async def add_recipient(self, address: str) -> Recipient:
        rcpt, version, has_script = await self.store._run("resolve_recipient", R.resolve_for_delivery_txn, address)
        self.recipients.append(rcpt)
        self.states.append((version, has_script))
        return rcpt

    async def commit(self, raw: bytes, junk: bool = False) -> list:
        if not self.recipients:
            return []
        if len(raw) > self.store.max_message_size:
            error = errors.TooBig(f"message exceeds {self.store.max_message_size} bytes")
            return [DeliveryResult(recipient=r, error=error) for r in self.recipients]
        planner = await self.store.plan_delivery(raw, self.mail_from, self.recipients, self.states, junk)
        # A message stored inline is prepared on the DB thread with its rows (no file to write,
        # ~0.1 ms of CPU), and its rules are evaluated there too: one thread hop per delivery.
        # Bigger ones write their blob file (and fsync it) in the CPU pool first, and their
        # rules run in the same call.
        if len(raw) <= self.store.inline_blob_size:
            msg, plans = None, planner
        elif planner is None:
            msg, plans = await self.store.prepare_message(raw), None
        else:
            msg, plans = await self.store._cpu(lambda: (self.store._prepare(raw), planner()))
        results = await self.store.deliver_prepared(self.recipients, msg, raw, plans)
        for r in results:
            log.debug("delivered from=<%s> to=<%s> account=%s folder=%s uid=%s size=%d%s%s", self.mail_from,
                      r.recipient.original, r.recipient.address, r.folder, r.uid, len(raw),
                      f" rules=[{'; '.join(r.actions)}]" if r.actions else "",
                      f" error={r.error}" if r.error else "")
        return results


def open_store(config, poll_interval: Optional[float] = None) -> SqlStore:
    """Build the store from a :class:`conf.Config` (not started)."""
    url = config.store_url()
    data_dir = config.data_dir
    data_dir.mkdir(parents=True, exist_ok=True)
    if url.engine == "sqlite":
        Path(url.path).parent.mkdir(parents=True, exist_ok=True)
    db = Database(url, pool_size=config.getint("store", "pool_size"),
                  busy_timeout_ms=config.getint("store", "busy_timeout_ms"))
    return SqlStore(db, data_dir, softdelete_lifetime=config.getfloat("store", "softdelete_lifetime"),
                    max_message_size=config.getint("server", "max_message_size"),
                    poll_interval=config.getfloat("store", "poll_interval") if poll_interval is None else poll_interval,
                    inline_blob_size=config.getint("store", "inline_blob_size"),
                    rule_settings=rule_settings(config))


def rule_settings(config) -> R.RuleSettings:
    from conf import ConfigError
    try:
        junk = R.parse_junk_headers(config.get("rules", "junk_headers"))
    except ValueError as e:
        raise ConfigError(f"[rules] junk_headers: {e}") from None
    return R.RuleSettings(junk_headers=junk, max_script_size=config.getsize("rules", "max_script_size"),
                          max_scripts=config.getint("rules", "max_scripts"),
                          quota_warn=config.getsize("quota", "warn"), quota_soft=config.getsize("quota", "soft"),
                          quota_hard=config.getsize("quota", "hard"),
                          outbound=bool(config.get("submission", "relay")), hostname=config.hostname)
