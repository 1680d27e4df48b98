"""The contract's companion interfaces, beside :class:`store.interfaces.Store`: the push bus,
the store's observer, the delivery and submission handles, a blob read piece by piece, the
blocking DAV facade of worker threads, and ``as_future`` for asyncio callers.  Gateways import
them from :mod:`store.interfaces`, which re-exports every name."""

from __future__ import annotations

import asyncio
import threading  # noqa: F401  (named in BlockingDav.write_lock)
from typing import Callable, Optional

from twisted.internet.defer import Deferred

from store.records import ChangeEvent, DavCollection, NewItem, Recipient, SubmissionResult


def as_future(coro, loop: Optional[asyncio.AbstractEventLoop] = None) -> asyncio.Future:
    """Run a store coroutine from asyncio code (e.g. an aiosmtpd handler).

    ``await as_future(store.deliver(...))`` inside an asyncio task on the shared loop.
    """
    loop = loop or asyncio.get_event_loop()
    return Deferred.fromCoroutine(coro).asFuture(loop)



class PushBus:
    """In-process publish/subscribe of :class:`ChangeEvent` per account (reactor thread only)."""

    def subscribe(self, account_id: int, callback: Callable[[ChangeEvent], None]) -> Callable[[], None]:
        """Call ``callback(event)`` for each change of the account; returns the unsubscribe function.
        Callbacks must not block and must not raise (errors are logged and swallowed)."""
        raise NotImplementedError

    def publish(self, event: ChangeEvent) -> None:
        raise NotImplementedError


#: what :meth:`StoreObserver.delivery` is told per recipient
DELIVERY_OUTCOMES = ("delivered", "rejected", "over_quota", "too_big", "unknown_user", "temporary_failure")


class StoreObserver:
    """What the store tells whoever watches it (``StoreSettings.observer``: the process's
    metrics; the store imports nothing of theirs).

    Every method may be called from any thread (DB pool, WSGI workers, the reactor), must be
    cheap and thread-safe, and must not raise.  With no observer the store measures nothing."""

    def transaction(self, desc: str, seconds: float) -> None:
        """One transaction named ``desc`` ran (``run_interaction``'s desc), retries included."""

    def delivery(self, outcome: str, count: int = 1) -> None:
        """``count`` recipients of a delivery ended as ``outcome`` (one of DELIVERY_OUTCOMES)."""

    def push(self, seconds: float) -> None:
        """A push subscriber was called ``seconds`` after the commit of the change it hears."""

    def watch_pool(self, usage: Callable[[], tuple]) -> None:
        """At start: ``usage()`` gives ``(threads working, threads at most)`` of the DB pool."""


class Delivery:
    """One delivery transaction (LMTP, local submission, ``haven deliver``): start, add recipients
    (each may fail on its own), then commit the body once for all of them.

    The message is written to the blob store and fsynced, then one SQL transaction inserts a row
    per recipient; only then does :meth:`commit` return.  A store failure raises
    :class:`~store.errors.TemporaryFailure` from commit and leaves nothing half-written.
    """

    async def add_recipient(self, address: str) -> Recipient:
        """Resolve ``address`` (aliases, ``+detail`` sub-addresses, case-insensitive).
        Raises NotFound for an unknown address, TemporaryFailure if the store is down."""
        raise NotImplementedError

    async def commit(self, raw, junk: bool = False) -> list:
        """Deliver ``raw`` (the message as received, CRLF line endings; bytes, or a seekable
        binary file holding it, e.g. a spooled DATA, which the caller keeps open until this
        returns) to every added recipient.
        Each recipient's rules run first: the junk header test (``junk`` True forces Junk, as
        ``haven deliver -j``), then the active Sieve script; over the hard quota a recipient
        gets OverQuota.  Returns one :class:`DeliveryResult` per recipient, in the order they were added.
        Raises TemporaryFailure when nothing could be delivered because the store failed."""
        raise NotImplementedError



class Submission:
    """One message a logged-in user sends (SMTP submission; later ActiveSync SendMail): the
    store checks the sender at :meth:`Store.begin_submission`, sorts each recipient into local
    or remote, and at :meth:`commit` completes the header, delivers the local copies and
    queues the remote part, all or nothing.

    Invariants: the remote part is queued (blob fsynced, rows committed) and held back from
    every spooler until the local copies are committed, then released (the ``on_outbound``
    listeners are called); when the local part fails the queue entry is withdrawn, so a
    failed commit leaves nothing behind and a retry causes no duplicate.  (Only if the
    withdrawal itself fails does the held entry come due after ``OUTBOUND_LEASE`` seconds and
    the retry send it twice: a duplicate, never a loss.)"""

    async def add_recipient(self, address: str) -> Optional[Recipient]:
        """A local recipient (aliases, ``+detail``: see :meth:`Delivery.add_recipient`) is
        returned; a remote one gives None and is queued at commit (once, however often it is
        added).  Raises NotFound (an unknown user of a local domain), PermissionDenied (a
        remote address while no relay is configured), InvalidInput (a malformed address),
        RateLimited (one more recipient would pass the account's hourly limits, as they stood
        at begin_submission), TemporaryFailure."""
        raise NotImplementedError

    async def commit(self, raw, trace: bytes = b"") -> SubmissionResult:
        """Accept ``raw`` (CRLF line endings; bytes or a binary file, as for
        :meth:`Delivery.commit`) for every added recipient: the message becomes
        ``trace`` (header lines to put on top, e.g. the SMTP ``Received:``), then ``Date:`` and
        ``Message-ID:`` where ``raw`` lacks them (RFC 6409 §8.2, §8.3), then ``raw``.  Local
        copies get ``Return-Path:`` and go through the delivery pipeline (rules, quota).  A
        local recipient refused for good while others got the message gets a DSN; a
        temporary or unknown failure of any local recipient fails the whole message.
        Returns a :class:`SubmissionResult` only when it is durable (or refused as a whole);
        raises TooBig, RateLimited (this message and its recipients, counted for real, pass
        the account's hourly limits: parallel submissions raced past them), TemporaryFailure
        (and a local recipient's non-permanent error) when nothing was kept, and then nothing
        is counted against the limits either.  Call it at most once."""
        raise NotImplementedError


class BlobStream:
    """A message's raw bytes read piece by piece (:meth:`Store.open_blob`).  Reactor thread:
    ``read`` and ``skip`` are coroutines (the store inflates in its threads), one at a time;
    ``close`` may be called at any time, more than once.  This base class serves bytes it was
    given."""

    def __init__(self, data: bytes = b""):
        self._data = memoryview(data)
        self._pos = 0

    async def read(self, n: int) -> bytes:
        """Up to ``n`` octets, fewer only at the end (b"" there).  Raises TemporaryFailure."""
        piece = bytes(self._data[self._pos:self._pos + n])
        self._pos += len(piece)
        return piece

    async def skip(self, n: int) -> None:
        """Pass over ``n`` octets (BODY[]<offset.length>)."""
        self._pos = min(len(self._data), self._pos + n)

    def close(self) -> None:
        self._data = memoryview(b"")


class BlockingDav:
    """Calendars and contacts for code that runs on worker threads of its own (the CalDAV
    gateway's WSGI pool): every call blocks its caller for one transaction, which runs in the
    store's DB pool (or, for a read on MariaDB, on the calling thread's own connection).  Never
    call it from the reactor thread or from a DB pool thread.  Changes are published on the
    push bus (from the reactor) after they committed.  Raises only :mod:`store.errors`.

    ``address`` arguments are spelled as stored (lower case); names and hrefs are the last path
    segments of the collection and item."""

    def write_lock(self, owner) -> "threading.Lock":
        """One writer per ``owner`` (an account) inside this process: a conditional request
        (If-Match) checks and writes under it, so two writes cannot pass one precondition."""
        raise NotImplementedError

    def resolve(self, address: str, name: Optional[str] = None, href: Optional[str] = None) -> tuple:
        """One lookup for a request path: ``(account id, DavCollection, DavItem)``, None where
        absent."""
        raise NotImplementedError

    def resolve_put(self, address: str, name: str, href: str, uid: str) -> tuple:
        """:meth:`resolve` for a PUT whose UID is known, plus whether another live item of the
        collection has that UID."""
        raise NotImplementedError

    def last_modified(self, folder_id: int) -> int:
        raise NotImplementedError

    def collections(self, account_id: int) -> list:
        raise NotImplementedError

    def collection(self, account_id: int, name: str) -> DavCollection:
        """Raises NotFound."""
        raise NotImplementedError

    def create_collection(self, account_id: int, name: str, kind: str, props: dict) -> DavCollection:
        """Raises Exists, InvalidInput (kind not in DAV_KINDS, a name with a slash, a name
        beginning with ``.``: those are reserved for the server's own views)."""
        raise NotImplementedError

    def set_props(self, account_id: int, folder_id: int, props: dict) -> int:
        """Replace the collection's WebDAV properties; returns the modseq."""
        raise NotImplementedError

    def delete_collection(self, account_id: int, folder_id: int) -> int:
        """Soft-delete the collection and its items; returns the modseq.  Raises NotFound."""
        raise NotImplementedError

    def replace_items(self, account_id: int, folder_id: int, items: list) -> int:
        """A PUT of a whole collection: old items become tombstones, ``items`` (NewItem) go in."""
        raise NotImplementedError

    def items(self, folder_id: int, hrefs) -> list:
        """Live items among ``hrefs``."""
        raise NotImplementedError

    def all_items(self, folder_id: int, with_data: bool = True) -> list:
        raise NotImplementedError

    def filtered(self, folder_id: int, component: Optional[str], start: int, end: int) -> list:
        """Live items whose time range overlaps [start, end) (RFC 4791 §9.9)."""
        raise NotImplementedError

    def has_uid(self, folder_id: int, uid: str) -> bool:
        raise NotImplementedError

    def put(self, account_id: int, folder_id: int, item: NewItem) -> tuple:
        """See :meth:`Store.put_dav_item`."""
        raise NotImplementedError

    def delete(self, account_id: int, folder_id: int, href: str) -> int:
        """Soft delete; returns the modseq.  Raises NotFound."""
        raise NotImplementedError

    def move(self, account_id: int, src_folder_id: int, href: str, dst_folder_id: int, dst_href: str) -> int:
        """RFC 4918 §9.9: the target is created or overwritten, the source becomes a tombstone."""
        raise NotImplementedError

    def changes_since(self, folder_id: int, since: int) -> tuple:
        """``(the collection's modseq now, the highest modseq the purge removed, [hrefs changed
        after since])``; a ``since`` below the purged modseq cannot be answered exactly."""
        raise NotImplementedError

    # the user's view of deleted items (Store.list_deleted_dav and friends, for one kind)
    def deleted(self, account_id: int, kind: str) -> list:
        """:meth:`Store.list_deleted_dav` of one kind (``data`` None)."""
        raise NotImplementedError

    def deleted_items(self, account_id: int, item_ids) -> list:
        """:meth:`Store.deleted_dav_items`."""
        raise NotImplementedError

    def deleted_changes_since(self, account_id: int, kind: str, since: int) -> tuple:
        """:meth:`Store.deleted_dav_changes`."""
        raise NotImplementedError
