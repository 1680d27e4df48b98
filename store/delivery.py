"""The delivery pipeline: LMTP, local recipients of submission and ``haven deliver`` all store
mail through :class:`SqlDelivery` (Maddy's shape: start, add recipients, each of which may fail
on its own, then commit the body once for all of them).

Steps (see :mod:`store.rules` for the plan):

- **resolve** at RCPT (:func:`resolve_for_delivery_txn`): the recipient, its account's
  ``rules_version`` and whether it has rules (an active Sieve script, an out-of-office);
- **plan**: the junk test and the compiled script (cached per account under
  ``rules_version``) give each recipient a :class:`~store.rules.Plan`;
- **apply** (:func:`deliver_txn`): quota gate, the message rows, redirects and vacation
  replies (local ones into the target's INBOX, remote ones into the outbound queue), the
  vacation memory and the quota warning, all in one transaction.

Invariants
- The blob (a file, fsynced; or the row's inline bytes) and every row are durable before
  :meth:`SqlDelivery.commit` returns; a store failure is :class:`~store.errors.TemporaryFailure`
  and leaves nothing half-written.
- Concurrent deliveries share one transaction (group commit): under load N deliveries cost
  one fsync of the database.
- Change events are published and the outbound hook called only after the commit.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass
from typing import Callable, Optional

from twisted.internet import defer
from twisted.python.failure import Failure

from store import errors
from store.accounts import normalize_address, resolve_recipient_txn
from store.changelog import PreparedMessage, bump_modseq_txn, ensure_blob_txn
from store.core import StoreCore
from store.engines import Txn
from store.folders import create_folder_txn, get_folder_txn, normalize_name
from store.idempotency import new_key, once_txn
from store.interfaces import INBOX, Delivery, DeliveryResult, Recipient
from store.messages import insert_message_txn
from store.queue import enqueue_txn
from store.quota import quota_gate_txn, quota_warning
from store.rules import JUNK, Copy, Outgoing, Plan, is_junk, make_plan
from store.settings import StoreSettings
from store.sievestore import active_script_txn, compile_script, known_sender_txn

log = logging.getLogger("haven.delivery")

#: compiled scripts kept (one per account that received mail recently)
SCRIPT_CACHE_SIZE = 4096


# -- resolve (at RCPT) ----------------------------------------------------------------------

#: an account's rules: its active Sieve script, its out-of-office replies when not off
_RULES_JOIN = ("LEFT JOIN sieve_scripts s ON s.account_id = a.id AND s.active = 1 "
               "LEFT JOIN out_of_office o ON o.account_id = a.id AND o.state <> 0 ")


def resolve_for_delivery_txn(txn: Txn, original: str) -> tuple:
    """``(Recipient, rules_version, has_rules)`` (an active script or an out-of-office): one
    statement when the address is an account's own (the common case), else
    :func:`resolve_recipient_txn`'s aliases and sub-addresses and a second one."""
    address = normalize_address(original)
    row = txn.execute("SELECT a.id, a.address, a.disabled <> 0 OR a.deleted_at <> 0, a.rules_version, s.id, "
                      "o.account_id FROM accounts a " + _RULES_JOIN + "WHERE a.address = ?",
                      (address,)).fetchone()
    if row is not None and not row[2]:
        return Recipient(account_id=row[0], address=row[1], original=original, detail=None), row[3] or 0, \
            row[4] is not None or row[5] is not None
    rcpt = resolve_recipient_txn(txn, original)
    row = txn.execute("SELECT a.rules_version, s.id, o.account_id FROM accounts a " + _RULES_JOIN + "WHERE a.id = ?",
                      (rcpt.account_id,)).fetchone()
    return rcpt, (row[0] or 0) if row else 0, bool(row and (row[1] is not None or row[2] is not None))


# -- apply (DB pool, one transaction for the whole delivery) --------------------------------

@dataclass
class Delivered:
    """What :func:`deliver_txn` did for one recipient (published and reported after commit)."""
    error: Optional[Exception] = None
    folder: Optional[str] = None  # the first copy's folder
    uid: Optional[int] = None
    account_id: int = 0
    folder_id: Optional[int] = None  # None when copies went to several folders
    modseq: Optional[int] = None
    actions: tuple = ()
    queued: int = 0  # messages put in the outbound queue (the spooler is woken)
    events: list = None  # [(account_id, folder_id, modseq)] of other accounts (local redirects, replies)


def deliver_txn(txn: Txn, recipients: list, msg: PreparedMessage, plans: Optional[list],
                settings: StoreSettings, prepare: Callable) -> list:
    """Store one message for each recipient, as its rules' :class:`~store.rules.Plan` says (no
    plan: one copy in the INBOX), after the quota check; one :class:`Delivered` per recipient.
    ``prepare(raw)`` makes the quota warning's PreparedMessage."""
    ensure_blob_txn(txn, msg)
    now = int(time.time())
    results = []
    done: dict = {}
    for i, rcpt in enumerate(recipients):
        if rcpt.account_id in done:
            # an alias and its target (or one address twice) in one transaction: one copy,
            # and every RCPT gets the same answer
            results.append(done[rcpt.account_id])
            continue
        plan = plans[i] if plans is not None and plans[i] is not None else None
        if plan is not None and plan.reject is not None:
            done[rcpt.account_id] = Delivered(error=errors.Rejected(plan.reject), account_id=rcpt.account_id,
                                              actions=plan.describe())
            results.append(done[rcpt.account_id])
            continue
        stores = list(plan.stores) if plan is not None else [Copy(INBOX)]
        notes = list(plan.notes) if plan is not None else []
        result = Delivered(account_id=rcpt.account_id, events=[])
        unsent = []
        try:
            # the account row is locked first (the modseq bump), so on MariaDB a concurrent
            # delivery to the same account waits and the usage read below includes its rows
            result.modseq = bump_modseq_txn(txn, rcpt.account_id, receiving=True)
            gate = quota_gate_txn(txn, rcpt.account_id, msg.size * max(1, len(stores)), settings.quota) \
                if stores or (plan is not None and plan.outgoing) else None
            for out in (plan.outgoing if plan is not None else ()):
                status = send_outgoing_txn(txn, rcpt.account_id, out, now, settings, result.events)
                result.queued += status == "queued"
                if status not in ("queued", "local"):
                    unsent.append(out)
                    notes.append(f"{out.kind} <{out.recipient}>: {status}")
                    if out.keep_instead and not any(s.target == INBOX for s in stores):
                        stores.append(Copy(INBOX))  # never lose the message to a redirect
            folders = []
            for target in stores:
                folder = target_folder_txn(txn, rcpt.account_id, target, notes)
                if folder.id in folders:
                    continue  # RFC 5228 §2.10.3: one copy per mailbox
                folders.append(folder.id)
                uid = insert_message_txn(txn, rcpt.account_id, folder.id, msg, result.modseq, target.flags)
                if result.folder is None:
                    result.folder, result.uid = folder.name, uid
            warned = after_store_txn(txn, rcpt.account_id, rcpt.address, gate, msg.size * len(folders),
                                     settings, prepare)
            if warned is not None:
                folders.append(warned[0].id)
                result.modseq = warned[2]
                notes.append("quota warning sent")
        except (errors.NotFound, errors.OverQuota) as e:
            results.append(Delivered(error=e, account_id=rcpt.account_id, actions=tuple(notes)))
            continue
        result.folder_id = folders[0] if len(set(folders)) == 1 else None
        result.actions = (plan.describe(False, tuple(unsent)) + tuple(notes)) if plan is not None else tuple(notes)
        done[rcpt.account_id] = result
        results.append(result)
    return results


def deliver_batch_txn(txn: Txn, batch: list, settings: StoreSettings, prepare: Callable) -> list:
    """Group commit: several deliveries ``[(recipients, msg, plans), ...]`` in one transaction
    (one fsync of the database for all of them).  Returns one :func:`deliver_txn` result each."""
    return [deliver_txn(txn, recipients, msg, plans, settings, prepare) for recipients, msg, plans in batch]


def encode_batch(rows: list) -> list:
    """A :func:`deliver_batch_txn` result as JSON values (kept with its idempotency key)."""
    return [[{"error": [type(d.error).__name__, str(d.error)] if d.error is not None else None,
              "folder": d.folder, "uid": d.uid, "account_id": d.account_id, "folder_id": d.folder_id,
              "modseq": d.modseq, "actions": list(d.actions), "queued": d.queued,
              "events": [list(e) for e in d.events or ()]} for d in delivery] for delivery in rows]


def decode_batch(data: list) -> list:
    def error(value):
        if value is None:
            return None
        cls = getattr(errors, value[0], None)
        if not (isinstance(cls, type) and issubclass(cls, errors.StoreError)):
            cls = errors.TemporaryFailure
        return cls(value[1])
    return [[Delivered(error=error(d["error"]), folder=d["folder"], uid=d["uid"], account_id=d["account_id"],
                       folder_id=d["folder_id"], modseq=d["modseq"], actions=tuple(d["actions"]),
                       queued=d["queued"], events=[tuple(e) for e in d["events"]]) for d in delivery]
            for delivery in data]


def _junk_folder_txn(txn: Txn, account_id: int):
    row = txn.execute("SELECT name FROM folders WHERE account_id = ? AND special_use = ? AND deleted_at = 0 "
                      "AND kind = 'mail' ORDER BY id LIMIT 1", (account_id, JUNK)).fetchone()
    if row is not None:
        return get_folder_txn(txn, account_id, row[0])
    try:
        return get_folder_txn(txn, account_id, "Junk")
    except errors.NotFound:
        return create_folder_txn(txn, account_id, "Junk", "mail", JUNK)


def target_folder_txn(txn: Txn, account_id: int, item: Copy, notes: list):
    """The folder for one copy; INBOX (with a note) when the target is missing or unusable."""
    if item.target == JUNK:
        return _junk_folder_txn(txn, account_id)
    try:
        name = normalize_name(item.target)
        folder = get_folder_txn(txn, account_id, name)
        if folder.kind == "mail":
            return folder
        notes.append(f"fileinto {item.target}: not a mail folder; kept in INBOX")
    except errors.NotFound:
        if item.create:
            try:
                return create_folder_txn(txn, account_id, name, "mail", None)
            except errors.StoreError as e:
                notes.append(f"fileinto :create {item.target}: {e}; kept in INBOX")
        else:
            notes.append(f"fileinto {item.target}: no such folder; kept in INBOX")
    except errors.InvalidInput as e:
        notes.append(f"fileinto {item.target}: {e}; kept in INBOX")
    return get_folder_txn(txn, account_id, INBOX)


def after_store_txn(txn: Txn, account_id: int, address: str, gate: Optional[tuple], added: int,
                    settings: StoreSettings, prepare: Callable) -> Optional[tuple]:
    """The warn transition: one warning message when usage crosses ``warn`` (again only after it
    dropped below).  Returns ``(folder, uid)`` of the warning, or None."""
    if gate is None:
        return None
    warn, used, warned, hard = gate
    if warn <= 0:
        return None
    now_used = used + added
    if now_used < warn:
        if warned:
            txn.execute("UPDATE accounts SET quota_warned = 0 WHERE id = ?", (account_id,))
        return None
    if warned and used >= warn:
        return None
    txn.execute("UPDATE accounts SET quota_warned = 1 WHERE id = ?", (account_id,))
    msg = prepare(quota_warning(address, now_used, warn, hard, settings.rules.hostname))
    ensure_blob_txn(txn, msg)
    inbox = get_folder_txn(txn, account_id, INBOX)
    modseq = bump_modseq_txn(txn, account_id)
    return inbox, insert_message_txn(txn, account_id, inbox.id, msg, modseq), modseq


def send_outgoing_txn(txn: Txn, account_id: int, out: Outgoing, now: int, settings: StoreSettings,
                      events: list) -> str:
    """Send one redirect or vacation reply: into the INBOX of a local account directly (no
    relay needed; ``events`` gets its change), else into the outbound queue.  A vacation reply
    goes only when this sender was not answered in the period (the memory row is written in
    the same transaction).  Returns "local", "queued" or why it was not sent."""
    if out.kind == "vacation":
        row = txn.execute("SELECT expires_at FROM vacation_replies WHERE account_id = ? AND sender_key = ?",
                          (account_id, out.vacation_key)).fetchone()
        if row is not None and row[0] > now:
            return "already answered in this period"
    try:
        target = resolve_recipient_txn(txn, out.recipient)
    except (errors.NotFound, errors.InvalidInput):
        target = None
    if target is None and not settings.rules.outbound:
        return "not sent: no relay configured ([submission] relay)"
    if target is not None:
        try:
            quota_gate_txn(txn, target.account_id, out.prepared.size, settings.quota)
        except errors.OverQuota:
            return "not delivered: the recipient is over quota"
    if out.kind == "vacation":
        txn.execute("DELETE FROM vacation_replies WHERE account_id = ? AND sender_key = ?",
                    (account_id, out.vacation_key))
        txn.execute("INSERT INTO vacation_replies (account_id, sender_key, expires_at) VALUES (?, ?, ?)",
                    (account_id, out.vacation_key, now + out.vacation_seconds))
    if target is None:
        enqueue_txn(txn, account_id, out.mail_from, [out.recipient], out.prepared)
        return "queued"
    # A local recipient gets it in the INBOX, without running its own rules: a redirect chain
    # or two vacation scripts answering each other cannot loop.
    ensure_blob_txn(txn, out.prepared)
    inbox = get_folder_txn(txn, target.account_id, INBOX)
    modseq = bump_modseq_txn(txn, target.account_id)
    insert_message_txn(txn, target.account_id, inbox.id, out.prepared, modseq)
    events.append((target.account_id, inbox.id, modseq))
    return "local"



# -- the store's side ---------------------------------------------------------------------------

class DeliveryStore(StoreCore):
    """Group commit and the compiled-script cache; see the module docstring."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._scripts: dict = {}  # account_id -> (rules_version, compiled script or None, addresses, oof)
        self._pending_deliveries: list = []  # (recipients, msg, raw, plans, waiter), under _pending_lock
        self._pending_lock = threading.Lock()
        self._committing = False  # a _commit_pending is queued or running

    def begin_delivery(self, mail_from: str) -> Delivery:
        return SqlDelivery(self, mail_from)

    async def _deliver_prepared(self, recipients: list, msg: Optional[PreparedMessage], raw: bytes,
                               plans=None) -> list:
        """Queue the rows of one delivery for the next group commit and wait for it (``msg``
        None: prepare ``raw`` on the DB thread, for messages stored inline; ``plans`` a list, or
        a function that makes it on the DB thread)."""
        waiter = defer.Deferred()
        with self._pending_lock:
            self._pending_deliveries.append((recipients, msg, raw, plans, waiter))
            start, self._committing = not self._committing, True
        if start:
            self.db.pool.callInThread(self._commit_pending)
        rows, committed = await waiter
        results = []
        outgoing = 0
        for rcpt, row in zip(recipients, rows):
            self._publish(row.account_id, row.folder_id, row.modseq, committed=committed)
            for account_id, folder_id, modseq in row.events or ():
                self._publish(account_id, folder_id, modseq, committed=committed)
            outgoing += row.queued
            self._observe_delivery(_outcome(row.error))
            results.append(DeliveryResult(recipient=rcpt, error=row.error, folder=row.folder, uid=row.uid,
                                          actions=row.actions))
        if outgoing:
            self._outbound_queued()
        return results

    def _commit_pending(self) -> None:
        """DB pool thread: commit every delivery queued so far in one transaction (group commit:
        under load N deliveries cost one fsync), answer their waiters on the reactor, and, when
        more arrived meanwhile, queue the next batch straight from here: no round trip through
        the reactor between two batches, and other store work queued on the pool meanwhile
        still runs in its turn."""
        from twisted.internet import reactor  # the installed one (not at import time)
        with self._pending_lock:
            batch, self._pending_deliveries = self._pending_deliveries, []
        try:
            # the key is made before the first attempt: a retry after a COMMIT that landed
            # stores nothing twice
            result = self._deliver_batch_sync(batch, new_key()), time.monotonic()
        except BaseException:
            result = Failure()
        reactor.callFromThread(self._answer, batch, result)
        with self._pending_lock:
            if not self._pending_deliveries:
                self._committing = False
                return
        try:
            self.db.pool.callInThread(self._commit_pending)
        except Exception:  # the pool is stopping: whatever is still queued fails (4xx, retried)
            with self._pending_lock:
                left, self._pending_deliveries, self._committing = self._pending_deliveries, [], False
            reactor.callFromThread(self._answer, left, Failure(errors.TemporaryFailure("the store is stopping")))

    @staticmethod
    def _answer(batch: list, result) -> None:
        """Reactor: each waiter of ``batch`` gets its rows and the commit time, or the failure."""
        for i, entry in enumerate(batch):
            waiter = entry[-1]
            if isinstance(result, Failure):
                waiter.errback(result)
            else:
                waiter.callback((result[0][i], result[1]))

    def _deliver_batch_sync(self, batch, key: str) -> list:
        """DB pool thread: the batch's rows in one transaction (under the idempotency ``key``),
        then a check that every blob is still on disk (a purge at the same instant could have
        swept an identical, unreferenced blob; then its bytes are written again before anyone
        is told 250)."""
        batch = [(r, m if m is not None else self._prepare(raw), raw, p() if callable(p) else p)
                 for r, m, raw, p, _w in batch]
        rows = self.db.run_sync("deliver", once_txn, key, deliver_batch_txn, [(r, m, p) for r, m, _raw, p in batch],
                                self.settings, self._prepare, encode=encode_batch, decode=decode_batch)
        for _r, msg, raw, _p in batch:
            if msg.inline is None and not self.blobs.exists(msg.blob_id):
                log.warning("blob %s vanished during delivery; writing it again", msg.blob_id)
                self.blobs.write(raw)
        return rows

    async def _compiled_script(self, account_id: int, version: int):
        """``(compiled script or None, the account's addresses, OutOfOffice or None)`` for
        ``rules_version``."""
        cached = self._scripts.get(account_id)
        if cached is not None and cached[0] == version:
            return cached[1:]
        version, text, addresses, oof = await self._run("active_script", active_script_txn, account_id)
        script = None
        if text is not None:
            try:
                script = await self._cpu(compile_script, text)
            except errors.InvalidInput as e:
                # It compiled when it was uploaded; a newer Haven may be stricter.  Deliver to
                # the INBOX rather than fail the message.
                log.error("the active Sieve script of account %d no longer compiles (%s); "
                          "delivering to INBOX", account_id, e)
        if len(self._scripts) >= SCRIPT_CACHE_SIZE:
            self._scripts.pop(next(iter(self._scripts)))
        self._scripts[account_id] = (version, script, addresses, oof)
        return script, addresses, oof

    async def _plan_delivery(self, raw: bytes, mail_from: str, recipients: list, states: list,
                            junk: bool):
        """A function that returns one :class:`~store.rules.Plan` per recipient (pure CPU work
        for whichever pool thread handles the message next), or None when every recipient
        simply gets one copy in the INBOX (no script, not junk)."""
        settings = self.rule_settings
        scripts = {}
        known = {}  # account_id -> the sender is in its address books (for its out-of-office)
        sender = (mail_from or "").strip().strip("<>").lower()
        for rcpt, (version, has_rules) in zip(recipients, states):
            if has_rules and rcpt.account_id not in scripts:
                scripts[rcpt.account_id] = rules = await self._compiled_script(rcpt.account_id, version)
                if rules[2] is not None and rules[2].active(time.time()) and "@" in sender \
                        and sender.rpartition("@")[2] != rcpt.address.rpartition("@")[2]:
                    known[rcpt.account_id] = await self._run("known_sender", known_sender_txn, rcpt.account_id,
                                                             sender)
        if not any(s[0] is not None or s[2] is not None for s in scripts.values()) and not junk:
            # the common case, without a thread hop for small messages (the scan is bounded)
            if len(raw) <= 65536:
                junk = is_junk(raw, settings.junk_headers)
            else:
                junk = await self._cpu(is_junk, raw, settings.junk_headers)
            if not junk:
                return None

        def plan_one(rcpt, junk_now, now):
            try:
                script, addresses, oof = scripts.get(rcpt.account_id, (None, (), None))
                return make_plan(raw, mail_from, rcpt, script, addresses, junk_now, settings, self._prepare, now,
                                 oof, known.get(rcpt.account_id, False))
            except Exception as e:  # a message is never lost to its rules: INBOX, and a log line
                log.exception("rules of <%s> failed; delivering to INBOX", rcpt.address)
                return Plan(stores=[Copy(INBOX)], notes=[f"rules failed: {type(e).__name__}: {e}"])

        def plan_all():
            junk_now = junk or is_junk(raw, settings.junk_headers)
            now = time.time()
            return [plan_one(rcpt, junk_now, now) for rcpt in recipients]
        return plan_all


def _outcome(error: Optional[Exception]) -> str:
    """The observer's name (interfaces.DELIVERY_OUTCOMES) for one recipient's end."""
    if error is None:
        return "delivered"
    if isinstance(error, errors.Rejected):
        return "rejected"
    if isinstance(error, errors.OverQuota):
        return "over_quota"
    if isinstance(error, errors.TooBig):
        return "too_big"
    if isinstance(error, errors.NotFound):
        return "unknown_user"
    return "temporary_failure"


class SqlDelivery(Delivery):
    def __init__(self, store: DeliveryStore, mail_from: str):
        self.store = store
        self.mail_from = mail_from
        self.recipients: list[Recipient] = []
        self.states: list = []  # (rules_version, has_rules) per recipient
        #: whether a refused RCPT counts as a delivery outcome (not for a submission, whose
        #: "unknown" recipients may be remote ones)
        self.observe_refusals = True

    async def add_recipient(self, address: str) -> Recipient:
        try:
            rcpt, version, has_rules = await self.store._run("resolve_recipient", resolve_for_delivery_txn,
                                                              address)
        except (errors.NotFound, errors.TemporaryFailure) as e:
            if self.observe_refusals:
                self.store._observe_delivery(_outcome(e))
            raise
        self.recipients.append(rcpt)
        self.states.append((version, has_rules))
        return rcpt

    async def commit(self, raw, junk: bool = False) -> list:
        if not self.recipients:
            return []
        if not isinstance(raw, (bytes, bytearray)):  # a spooled message (an LMTP DATA)
            if raw.seek(0, os.SEEK_END) > self.store.max_message_size:
                error = errors.TooBig(f"message exceeds {self.store.max_message_size} bytes")
                self.store._observe_delivery("too_big", len(self.recipients))
                return [DeliveryResult(recipient=r, error=error) for r in self.recipients]
            return await self.store._with_spooled(raw, lambda data: self.commit(data, junk))
        if len(raw) > self.store.max_message_size:
            error = errors.TooBig(f"message exceeds {self.store.max_message_size} bytes")
            self.store._observe_delivery("too_big", len(self.recipients))
            return [DeliveryResult(recipient=r, error=error) for r in self.recipients]
        try:
            return await self._commit(raw, junk)
        except Exception:
            self.store._observe_delivery("temporary_failure", len(self.recipients))
            raise

    async def _commit(self, raw: bytes, junk: bool) -> list:
        planner = await self.store._plan_delivery(raw, self.mail_from, self.recipients, self.states, junk)
        # A message stored inline is prepared on the DB thread with its rows (no file to write,
        # ~0.3 ms of CPU), and its rules are evaluated there too: one thread hop per delivery.
        # Bigger ones write their blob file (and fsync it) in the CPU pool first, and their
        # rules run in the same call.  So are inline ones while a group commit is under way:
        # then the DB thread is the bottleneck, and the preparation (hashing and compression
        # release the GIL) overlaps the commit in flight (four LMTP connections: +25 %).
        if len(raw) <= self.store.inline_blob_size and not self.store._committing:
            msg, plans = None, planner
        elif planner is None:
            msg, plans = await self.store._prepare_message(raw), None
        else:
            msg, plans = await self.store._cpu(lambda: (self.store._prepare(raw), planner()))
        results = await self.store._deliver_prepared(self.recipients, msg, raw, plans)
        for r in results:
            log.debug("delivered from=<%s> to=<%s> account=%s folder=%s uid=%s size=%d%s%s", self.mail_from,
                      r.recipient.original, r.recipient.address, r.folder, r.uid, len(raw),
                      f" rules=[{'; '.join(r.actions)}]" if r.actions else "",
                      f" error={r.error}" if r.error else "")
        return results
