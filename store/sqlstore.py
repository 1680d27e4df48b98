"""The SQL-backed implementation of :class:`store.interfaces.Store`: one object, composed one way.

:class:`SqlStore` inherits one class per area, each defined next to the ``_txn`` functions it
calls and each a :class:`~store.core.StoreCore` (Synapse's ``DataStore`` habit):

    accounts.AccountsStore     accounts, aliases, recipients
    folders.FoldersStore       the folder tree (every kind)
    messages.MessagesStore     SELECT/FETCH/STORE/COPY/MOVE/EXPUNGE/APPEND, batched reads
    recovery.RecoveryStore     the same on recovery views ("Recovered Items"); first, as it overrides
    fulltext.FulltextStore     the text index: search candidates, building the backlog
    delivery.DeliveryStore     the delivery pipeline (group commit, rules, quota)
    submission.SubmissionStore a message a user sends: sender, local copies, queued remote part
    queue.OutboundStore        the outbound queue
    sievestore.SieveStore      Sieve scripts
    quota.QuotaStore           quotas
    dav.DavStore               calendars and contacts (and the blocking adapter ``dav``)
    activesync.ActiveSyncStore ActiveSync devices, sync states, client ids
    lifecycle.LifecycleStore   recoverable items, purge, account removal

Its public surface is exactly :class:`store.interfaces.Store` (tests/test_layering.py checks
that every public method here is declared there).  Only ``gateways/service.py`` builds one
(:func:`open_store`); everything else receives it.

Module order (each imports only modules above it; no cycles, no in-function imports):
errors, handles, interfaces, settings, engines, scope, idempotency, rates, flags, textindex, changelog, blobs, bus, bulk, schema,
core, folders, quota, accounts, messages, recovery, fulltext, dav, queue, sievestore, rules, delivery, submission,
activesync, lifecycle, sqlstore.
"""

from __future__ import annotations

from pathlib import Path

from store.accounts import AccountsStore
from store.activesync import ActiveSyncStore
from store.authfail import AuthFailuresStore
from store.backup import BackupStore
from store.dav import DavStore
from store.delivery import DeliveryStore
from store.engines import Database
from store.folders import FoldersStore
from store.fulltext import FulltextStore
from store.interfaces import Store
from store.lifecycle import LifecycleStore
from store.messages import MessagesStore
from store.metadata import MetadataStore
from store.previews import PreviewsStore
from store.queue import OutboundStore
from store.recovery import RecoveryStore
from store.quota import QuotaStore
from store.schema import current_version_txn, health_txn, latest_version, migrate_txn
from store.settings import StoreSettings
from store.sievestore import SieveStore
from store.submission import SubmissionStore


class SqlStore(RecoveryStore, AccountsStore, FoldersStore, MessagesStore, PreviewsStore, FulltextStore, DeliveryStore,
               SubmissionStore, OutboundStore, SieveStore, QuotaStore, DavStore, LifecycleStore, AuthFailuresStore,
               MetadataStore, BackupStore, ActiveSyncStore, Store):
    async def schema_version(self) -> tuple:
        return await self._run("schema_version", current_version_txn), latest_version()

    async def migrate(self) -> list:
        return await self._run("migrate", migrate_txn)

    async def health_check(self) -> tuple:
        return await self._run("health_check", health_txn), latest_version()


def open_store(url, settings: StoreSettings, pool_size: int = 8, busy_timeout_ms: int = 5000) -> SqlStore:
    """The store on the database at ``url`` (a :class:`store.engines.DatabaseURL`), not started.
    Creates ``settings.data_dir`` (and an SQLite file's folder)."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    if url.engine == "sqlite":
        Path(url.path).parent.mkdir(parents=True, exist_ok=True)
    return SqlStore(Database(url, pool_size=pool_size, busy_timeout_ms=busy_timeout_ms), settings)
