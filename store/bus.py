"""The push bus: change events per account, published after commit, on the reactor thread.

Within one process, the store publishes each committed change at once (IMAP IDLE hears a
delivery in well under a millisecond after the commit returns).  Changes made by another
process (``haven deliver`` from an MTA's pipe) or another Haven node on the same MariaDB are
found by :class:`ModseqPoller`, which compares the accounts' ``highest_modseq`` with what this
process last saw, for subscribed accounts only, every ``poll_interval`` seconds.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from typing import Callable, Optional

from twisted.internet import task
from twisted.internet.defer import Deferred

from store.engines import chunks
from store.interfaces import ChangeEvent, PushBus

log = logging.getLogger("haven.bus")


class LocalBus(PushBus):
    def __init__(self):
        self._subs: dict[int, list] = defaultdict(list)
        #: highest modseq this process has published or observed, per account
        self.seen: dict[int, int] = {}
        #: ``store.settings.StoreObserver`` told the push latency; None: not measured
        self.observer = None

    def subscribe(self, account_id: int, callback: Callable[[ChangeEvent], None]) -> Callable[[], None]:
        entry = [callback]  # a unique object, so the same callback may subscribe twice
        self._subs[account_id].append(entry)

        def unsubscribe():
            subs = self._subs.get(account_id)
            if subs and entry in subs:
                subs.remove(entry)
                if not subs:
                    del self._subs[account_id]
        return unsubscribe

    def subscribed_accounts(self) -> list:
        return list(self._subs)

    def publish(self, event: ChangeEvent, committed: Optional[float] = None) -> None:
        """``committed``: ``time.monotonic()`` of the commit that made the change, when known
        (the observer hears how long after it each subscriber was called)."""
        if event.modseq > self.seen.get(event.account_id, 0):
            self.seen[event.account_id] = event.modseq
        observer = self.observer if committed is not None else None
        for entry in list(self._subs.get(event.account_id, ())):
            if observer is not None:
                observer.push(time.monotonic() - committed)
            try:
                entry[0](event)
            except Exception:
                log.exception("push subscriber failed for account %s", event.account_id)


class ModseqPoller:
    """Publishes an account-wide event when the database shows a modseq this process has not."""

    def __init__(self, bus: LocalBus, db, interval: float):
        self.bus = bus
        self.db = db
        self.interval = interval
        self._loop = None
        self._running = False

    def start(self) -> None:
        if self.interval > 0:
            self._loop = task.LoopingCall(self._tick)
            self._loop.start(self.interval, now=False).addErrback(lambda f: log.error("poller stopped: %s", f.value))

    def stop(self) -> None:
        if self._loop is not None and self._loop.running:
            self._loop.stop()

    async def _poll(self, accounts):
        def txn_fn(txn):
            out = []
            for part in chunks(accounts):
                out += txn.execute(f"SELECT id, highest_modseq FROM accounts WHERE id IN {txn.in_list(part)}",
                                   part).fetchall()
            return out
        rows = await self.db.run_interaction("poll_modseq", txn_fn)
        for account_id, modseq in rows:
            if modseq > self.bus.seen.get(account_id, 0):
                self.bus.publish(ChangeEvent(account_id=account_id, folder_id=None, modseq=modseq, kind="message"))

    def _tick(self):
        if self._running:
            return None
        accounts = self.bus.subscribed_accounts()
        if not accounts:
            return None
        self._running = True
        d = Deferred.fromCoroutine(self._poll(accounts))

        def done(result):
            self._running = False
            if hasattr(result, "value"):
                log.warning("modseq poll failed: %s", result.value)
        d.addBoth(done)
        return None
