"""What the IMAP sessions of one process share to hear of a folder's changes (IDLE fan-out):
one ``changes_since`` query per (folder, from-modseq) for every session asking in the same
reactor turn, one ``claim_recent`` at a time per folder, and for sessions in IDLE no coroutine
of their own: the query's answer is handed to each of them in one loop.

Without it a delivery to a mailbox that 10,000 sessions have selected and IDLE on cost 10,000
``changes_since`` and 10,000 ``claim_recent`` transactions (each a hop to the DB pool, one
thread on SQLite) and 10,000 coroutines, whose garbage made the collector walk the whole heap
of sessions several times per delivery; with it, one query and one claim
(docs/imap-performance.md, "IDLE fan-out").

Invariants:
* A session gets a :class:`store.records.Changes` computed by a query that *started after it
  asked*: requests are collected while the reactor runs callbacks and their query starts in a
  later turn (``callLater(0)``), so whatever made a session dirty (a commit, published on the bus
  before the session asked) is in its answer.  A request never joins a query already running.
* Requests share a query only when folder and from-modseq are equal, so each session's answer
  is exactly what ``store.changes_since(folder, its modseq)`` would have returned; each session
  formats its own responses from it (its UID map, CONDSTORE, QRESYNC, held-back expunges:
  :meth:`SelectedMailbox.report`).  The shared ``Changes`` and its ``MessageMeta`` are
  read-only (frozen; nobody mutates the lists), so sessions may keep references to them (and
  so share the metas of new messages instead of holding a copy each).
* A session in IDLE (:meth:`ChangeFeed.push`) is reported to with the shared answer only when it
  is exactly what its own sync would do now (:meth:`SelectedMailbox.pushed`: no sync of its own
  running, its view still at the query's modseq, still in IDLE on that mailbox); it stays dirty
  when an event came after the query started.  One whose view another answer moved on while it
  is still dirty joins the next shared query (from its new modseq); one with a sync of its own
  running (IDLE's first) or a claim that failed syncs on its own, as every session did before;
  one that left IDLE meanwhile reports at its next command.
* \\Recent stays with exactly one session (RFC 3501 §2.3.2; ``Store.claim_recent``): a claim
  returns ``(floor, top)`` and every UID up to ``top`` is claimed by someone from then on, so a
  session about to report messages no higher than the highest ``top`` this process has seen
  for the folder skips the claim (those messages are another session's); otherwise it waits for
  a claim in flight for the folder, checks again, and claims itself.  A claim is recorded on its
  session before the others learn of it: they could otherwise report the messages to the
  claiming session (in another fan-out) before its claim is there, and the messages would be
  \\Recent nowhere.  In a fan-out the first session (in push order) that would claim does, before
  any is reported to: the one that would have claimed first when each synced on its own.
* A failed shared query fails every request that shared it (each as its own failure: the
  session logs it as before); sessions in IDLE stay dirty and are told at the next change or
  command (one log line for all of them).

Per session this keeps nothing between deliveries; per folder an int (the highest claimed
``top``: a bounded cache; forgetting it costs one claim more, never a wrong answer).
"""

from __future__ import annotations

import logging
import weakref

from twisted.internet.defer import Deferred
from twisted.python.failure import Failure

from store import errors

log = logging.getLogger("haven.imap")

#: folders whose highest claimed top is remembered; past this the memory starts again
MAX_FOLDERS = 20000

_feeds: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def feed_for(store) -> "ChangeFeed":
    """The process's one :class:`ChangeFeed` on ``store``."""
    feed = _feeds.get(store)
    if feed is None:
        feed = _feeds[store] = ChangeFeed(store)
    return feed


class _Batch:
    """The requests for one (folder, from-modseq) collected until the next flush."""
    __slots__ = ("waiters", "idlers")

    def __init__(self):
        self.waiters: list = []  # Deferreds of sessions syncing on their own (SelectedMailbox.sync)
        self.idlers: dict = {}  # session in IDLE -> its SelectedMailbox when pushed (ordered)


class ChangeFeed:
    """Coalesced ``changes_since`` and ``claim_recent`` of one store, on the reactor thread."""

    def __init__(self, store, reactor=None):
        self.store = store
        self._reactor = reactor
        self._pending: dict = {}  # (folder_id, modseq) -> _Batch, asked since the last flush
        self._scheduled = False
        self._claimed_top: dict = {}  # folder_id -> highest claim top seen in this process
        self._claiming: dict = {}  # folder_id -> [Deferred] waiting for the claim in flight

    @property
    def reactor(self):
        if self._reactor is None:
            from twisted.internet import reactor  # the installed one (not at import time)
            self._reactor = reactor
        return self._reactor

    # -- requests --------------------------------------------------------------------------
    def changes_since(self, folder_id: int, modseq: int) -> Deferred:
        """A Deferred firing with ``store.changes_since(folder_id, modseq)`` run after this
        call; requests of one reactor turn for the same arguments share the query."""
        d = Deferred()
        self._batch(folder_id, modseq).waiters.append(d)
        return d

    def push(self, session) -> None:
        """``session`` (an ``IMAPServer`` in IDLE with a mailbox selected, just marked dirty)
        is told of the change by the next shared query (or syncs on its own; see the module's
        invariants)."""
        sel = session.selected
        self._batch(sel.folder.id, sel.highest_modseq).idlers[session] = sel

    def _batch(self, folder_id: int, modseq: int) -> _Batch:
        key = (folder_id, modseq)
        batch = self._pending.get(key)
        if batch is None:
            batch = self._pending[key] = _Batch()
        if not self._scheduled:
            self._scheduled = True
            self.reactor.callLater(0, self._flush)
        return batch

    def _flush(self) -> None:
        self._scheduled = False
        pending, self._pending = self._pending, {}
        for (folder_id, modseq), batch in pending.items():
            # each idler's marks as its query starts: an event after this is not in the answer
            # (parallel lists, not a tuple per session: less for the collector to walk)
            marks = [sel.marks for sel in batch.idlers.values()]
            Deferred.fromCoroutine(self._answer(folder_id, modseq, batch, marks)).addErrback(
                lambda f: log.error("imap: change fan-out failed: %s", f.getTraceback()))

    async def _answer(self, folder_id: int, modseq: int, batch: _Batch, marks: list) -> None:
        try:
            changes = await self.store.changes_since(folder_id, modseq)
        except Exception as e:
            failure = Failure()
            for d in batch.waiters:
                d.errback(Failure(failure.value, failure.type, failure.getTracebackObject()))
            if batch.idlers:
                (log.warning if isinstance(e, errors.StoreError) else log.error)(
                    "imap: could not report mailbox changes to %d sessions in IDLE: %s", len(batch.idlers), e)
            return
        for d in batch.waiters:
            d.callback(changes)
        if batch.idlers:
            await self._fan_out(folder_id, modseq, changes, batch.idlers, marks)

    async def _fan_out(self, folder_id: int, modseq: int, changes, idlers: dict, marks: list) -> None:
        for session, sel in idlers.items():
            newest = sel.wants_claim(changes)
            if newest and session.selected is sel and sel.highest_modseq == modseq \
                    and not self.covered(folder_id, newest):
                await sel.claim_new(self.store, changes)  # the first one that would claims
                break
        top = self._claimed_top.get(folder_id, 0)
        for (session, sel), mark in zip(idlers.items(), marks):
            if session.selected is not sel or not session.idling or session._closed:
                continue  # it left IDLE or the mailbox: its next command reports (still dirty)
            try:
                if sel.dirty and sel.highest_modseq != modseq and not sel.lock.locked:
                    # an answer to a later push already moved its view on, and an event came
                    # after that answer's query: the next shared query, from where it is now
                    self.push(session)
                    continue
                data = sel.pushed(changes, modseq, mark, top, session.condstore, session.qresync)
                if data is None:
                    self.sync_alone(session)
                elif data:
                    session.write(data)
            except Exception:  # one session's bug is its own (as when each synced alone)
                log.exception("imap %s: idle report failed", getattr(session, "peer", "?"))

    @staticmethod
    def sync_alone(session) -> None:
        Deferred.fromCoroutine(session.sync()).addErrback(lambda f: log.error("idle sync: %s", f.value))

    # -- claim_recent ----------------------------------------------------------------------
    def covered(self, folder_id: int, newest: int) -> bool:
        """Every UID up to ``newest`` is known to be claimed (by a session here or on another node)."""
        return newest <= self._claimed_top.get(folder_id, 0)

    async def claim_recent(self, sel, newest: int) -> None:
        """Claim for ``sel`` (a read-write SelectedMailbox about to report messages up to UID
        ``newest``) unless they are claimed already: the claim is recorded on ``sel``
        (:meth:`SelectedMailbox.claimed`) before any other session can learn that it was made,
        so none reports them to ``sel`` without it.  Raises what the store raises."""
        folder_id = sel.folder.id
        while True:
            if newest <= sel.claimed_top or self.covered(folder_id, newest):
                return
            waiting = self._claiming.get(folder_id)
            if waiting is None:
                break
            d = Deferred()
            waiting.append(d)
            await d
        self._claiming[folder_id] = []
        try:
            floor, top = await self.store.claim_recent(folder_id)
            sel.claimed(floor, top)
            self.learned(folder_id, top)
        finally:
            for d in self._claiming.pop(folder_id, ()):
                d.callback(None)

    def learned(self, folder_id: int, top: int) -> None:
        """A claim of this process returned ``top``: every UID up to it is claimed."""
        if top > self._claimed_top.get(folder_id, 0):
            if len(self._claimed_top) >= MAX_FOLDERS and folder_id not in self._claimed_top:
                self._claimed_top.clear()
            self._claimed_top[folder_id] = top
