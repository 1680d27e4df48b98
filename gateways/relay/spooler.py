"""The spooler: relays the outbound queue to the smarthost (``[submission] relay``).

Invariants
----------
* It runs on the shared reactor/asyncio loop as one task; it has no thread of its own (store
  calls go to the store's pools, the relay connection is asyncio).
* It scans the queue every ``queue_interval`` seconds, ``WAKE_GATHER`` (0.5 s) after this
  process queued a message (:meth:`Spooler.wake`, called through the store's ``on_outbound``
  hook; the pause lets a burst share one scan and one relay connection) and when the
  earliest retry it scheduled comes due.  What it
  takes is leased by the store (``OUTBOUND_LEASE``): another spooler on the same database
  does not take it meanwhile, and what a crashed spooler held comes due again by itself.
* A message a submission is still accepting (queued, local copies not yet committed) is held
  by the store (not due until the submission releases it, store/submission.py): no spooler,
  on any node, sends it before the submission's verdict.
* Per recipient: 2xx → ``sent``; 5xx → ``failed``; 4xx, connection trouble, timeouts →
  ``queued`` again after the next step of ``retry_schedule`` (the last step repeats), until
  the message is ``max_queue_age`` old → ``expired``.  Every attempt is recorded
  (``record_outbound_attempt``), with the relay's reply or our own error as ``last_error``:
  ``"550 5.1.1 ..."`` for a reply, ``"4.4.1 connect to ..."`` (status first) for ours.
* When a message leaves the queue with failed or expired recipients, one DSN (dsn.py) goes to
  the sender's INBOX through the store's delivery pipeline (not to Sent: MUAs save their own
  copy there with IMAP APPEND).  Local recipients that refused a submitted message come the
  same way: the store queues them as failed recipients of a message of their own.
* One log line per recipient per attempt on ``haven.submission`` (the logger the admin's
  filters know from before the relay had a package of its own).

Known limits
------------
* A finished message leaves the queue only once its DSN is committed; until then it comes
  back after each lease, so a DSN may be written twice after a crash between the two, never
  lost.
* One relay connection at a time, messages sent one after the other over it (with PIPELINING
  when offered); enough for a smarthost, not a mass mailer.
* ``stop()`` cancels an attempt in flight; its recipients come due again after the lease.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from dataclasses import replace
from typing import Dict, Optional, Sequence

from twisted.internet.defer import Deferred, succeed

from gateways.common.relayconf import OutboundSettings
from gateways.relay.client import RelayError, Reply, SMTPClient
from gateways.relay.dsn import FailedRecipient, build_dsn
from store import errors
from store.interfaces import EXPIRED, FAILED, QUEUED, SENT, Store, as_future

log = logging.getLogger("haven.submission")

#: recipients taken from the queue per scan
BATCH = 50
#: seconds a wake-up waits for more submissions before the scan: under load one scan (one
#: lease transaction, one relay connection) then carries many messages instead of one each
WAKE_GATHER = 0.5
#: store calls the spooler retries in-process before giving up (record, DSN)
STORE_RETRIES = (1.0, 3.0, 10.0)


def human_duration(seconds: float) -> str:
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size and seconds % size == 0:
            count = int(seconds // size)
            return f"{count} {unit}{'s' if count != 1 else ''}"
    return f"{seconds:g} seconds"


class Spooler:
    def __init__(self, store: Store, hostname: str, settings: OutboundSettings):
        self.store = store
        self.hostname = hostname
        self.settings = settings
        self._task: Optional[asyncio.Task] = None
        self._wake: Optional[asyncio.Event] = None
        self._next_due: Optional[float] = None
        self._stopped: Optional[asyncio.Future] = None
        self._unhook = None  # removes wake() from the store's on_outbound listeners

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> "Spooler":
        if self._task is None:
            from twisted.internet import reactor  # the installed one, asyncioreactor (not at import time)
            loop = asyncio.get_event_loop()
            self._wake = asyncio.Event()
            self._task = loop.create_task(self._run())
            self._stopped = None
            self._unhook = self.store.on_outbound(self.wake)
            # The reactor waits for "before shutdown" Deferreds: the scan (and any DSN being
            # written) is cancelled and has unwound before the loop stops.
            reactor.addSystemEventTrigger("before", "shutdown", self.stop)
            log.info("spooler started: relay %s, retry schedule %s, max queue age %s",
                     self.settings.relay or "(none: [submission] relay is empty)",
                     ", ".join(human_duration(s) for s in self.settings.retry_schedule),
                     human_duration(self.settings.max_queue_age))
        return self

    def stop(self) -> Deferred:
        """Cancel the scan loop (and the DSN it may be writing); the Deferred fires once it unwound.
        An attempt cut short leaves its recipients leased: they come due again after
        ``OUTBOUND_LEASE``."""
        if self._unhook is not None:
            self._unhook()
            self._unhook = None
        if self._stopped is None:
            task, self._task = self._task, None
            if task is not None and not task.done():
                task.cancel()
                self._stopped = asyncio.gather(task, return_exceptions=True)
        if self._stopped is None or self._stopped.done():
            return succeed(None)
        return Deferred.fromFuture(asyncio.shield(self._stopped))

    def wake(self) -> None:
        if self._wake is not None:
            self._wake.set()

    # -- the scan loop ---------------------------------------------------------------------
    async def _run(self) -> None:
        while True:
            try:
                more = await self.scan()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("spooler: queue scan failed")
                more = False
            if not more:
                await self._sleep()

    async def _sleep(self) -> None:
        timeout = self.settings.queue_interval
        if self._next_due is not None:
            timeout = max(0.05, min(timeout, self._next_due - time.time()))
        try:
            await asyncio.wait_for(self._wake.wait(), timeout)
            # Woken by a submission: let the ones right behind it join this scan (one lease
            # transaction for many messages instead of one each).
            await asyncio.sleep(WAKE_GATHER)
        except asyncio.TimeoutError:
            pass
        self._wake.clear()
        if self._next_due is not None and self._next_due <= time.time():
            self._next_due = None

    async def scan(self) -> bool:
        """Relay what is due now; True when there may be more due at once."""
        try:
            taken = await as_future(self.store.take_due_outbound(BATCH))
        except errors.StoreError as err:
            log.warning("spooler: cannot read the queue: %s", err)
            return False
        if not taken:
            return False
        client: Optional[SMTPClient] = None
        unreachable: Optional[RelayError] = None
        try:
            for message in taken:
                if not any(r.status == QUEUED for r in message.recipients):
                    # finished earlier, but its DSN was not delivered then (store down, crash)
                    await self._finish(message, None)
                    continue
                client, unreachable = await self._attempt(message, client, unreachable)
        finally:
            if client is not None:
                await client.quit()
        return sum(len(m.recipients) for m in taken) >= BATCH

    # -- one message -----------------------------------------------------------------------
    async def _attempt(self, message, client: Optional[SMTPClient], unreachable: Optional[RelayError]) -> tuple:
        """Relay ``message`` to its due recipients and record the outcome.  Returns the client
        to reuse for the next message (None when the session broke) and, once the relay could
        not be reached in this scan, that error: the rest of the scan's messages get it too
        instead of one connection timeout each."""
        addresses = [r.address for r in message.recipients]
        try:
            raw = await as_future(self.store.read_blob(message.blob_id))
        except errors.NotFound:
            log.error("queue %d: message data is missing; failing its recipients", message.id)
            outcomes = {r.id: (FAILED, "5.3.0 the queued message data was lost", None) for r in message.recipients}
            await self._record(message, outcomes, {}, b"")
            return client, unreachable
        except errors.StoreError as err:
            log.warning("queue %d: cannot read the message: %s", message.id, err)
            return client, unreachable
        now = time.time()
        replies: Dict[str, Reply] = {}
        error: Optional[RelayError] = unreachable
        if error is None and self.settings.relay is None:
            error = RelayError("[submission] relay is empty: no smarthost to send to", "4.4.0")
        if error is None:
            try:
                if client is None or not client.connected:
                    client = SMTPClient(self.settings.relay, self.hostname)
                    try:
                        await client.connect()
                    except RelayError as e:
                        unreachable = e
                        raise
                replies = await client.send(message.mail_from, addresses, raw)
            except RelayError as e:
                error, client = e, None
            except (OSError, asyncio.TimeoutError) as e:  # defensive: the client wraps these
                error, client = RelayError(f"relay {self.settings.relay}: {e}"), None
        outcomes = {}
        for r in message.recipients:
            reply = replies.get(r.address)
            if reply is None:
                text = f"{(error.status if error else '4.4.2')} {error or 'no reply'}"
                outcomes[r.id] = self._retry_or_expire(message, r, text, now)
            elif 200 <= reply.code < 300:
                outcomes[r.id] = (SENT, None, None)
            elif 500 <= reply.code < 600:
                outcomes[r.id] = (FAILED, str(reply), None)
            else:
                outcomes[r.id] = self._retry_or_expire(message, r, str(reply), now)
        await self._record(message, outcomes, replies, raw)
        return client, unreachable

    def _retry_or_expire(self, message, recipient, error: str, now: float) -> tuple:
        deadline = message.created_at + self.settings.max_queue_age
        if now >= deadline:
            return EXPIRED, error, None
        schedule = self.settings.retry_schedule
        delay = schedule[min(recipient.attempts, len(schedule) - 1)]
        at = int(math.ceil(min(now + delay, deadline)))
        return QUEUED, error, at

    async def _record(self, message, outcomes: dict, replies: Dict[str, Reply], raw: bytes) -> None:
        finished = await self._with_retries(f"queue {message.id}: record attempt",
                                            lambda: self.store.record_outbound_attempt(message.id, outcomes))
        by_id = {r.id: r for r in message.recipients}
        for rid, (status, error, next_attempt) in outcomes.items():
            r = by_id[rid]
            if status == QUEUED:
                self._next_due = next_attempt if self._next_due is None else min(self._next_due, next_attempt)
            word = {SENT: "sent", FAILED: "bounced", EXPIRED: "expired", QUEUED: "deferred"}[status]
            log.info("queue %d: to=<%s>, relay=%s, attempt=%d, delay=%ds, status=%s (%s)%s", message.id, r.address,
                     self.settings.relay or "none", r.attempts + 1, int(time.time() - message.created_at), word,
                     str(replies[r.address]) if r.address in replies else error,
                     f", next attempt in {int(next_attempt - time.time())}s" if status == QUEUED else "")
        if finished is None:
            log.error("queue %d: the outcome of this attempt could not be recorded; its recipients come due "
                      "again after the lease (those already sent may get a second copy)", message.id)
            return
        if finished:
            await self._finish(replace(message, recipients=finished), raw)

    async def _finish(self, message, raw: Optional[bytes]) -> None:
        """A message none of whose recipients is queued: its DSN (if any failed), then out of the
        queue.  If the DSN cannot be delivered the message stays, and comes back after its lease."""
        failed = [r for r in message.recipients if r.status in (FAILED, EXPIRED)]
        if failed:
            if raw is None:
                try:
                    raw = await as_future(self.store.read_blob(message.blob_id))
                except errors.NotFound:
                    raw = b""
                except errors.StoreError as err:
                    log.warning("queue %d: cannot read the message for its DSN: %s", message.id, err)
                    return
            relay = self.settings.relay
            bounced = [FailedRecipient(address=r.address, action=r.status, last_error=r.last_error,
                                       last_attempt=r.last_attempt or None,
                                       remote_mta=relay.host if relay else None) for r in failed]
            if not await self._deliver_dsn(message.mail_from, message.id, bounced, raw, message.created_at):
                log.error("queue %d: keeping the message until its DSN can be delivered", message.id)
                return
        async def finish():
            await self.store.finish_outbound(message.id)
            return True
        try:
            done = await self._with_retries(f"queue {message.id}: finish", finish, give_up=(errors.NotFound,))
        except errors.NotFound:
            done = True  # another spooler (or `haven queue delete`) already removed it
        if done is None:
            log.error("queue %d: finished but could not leave the queue; it comes back after its lease%s",
                      message.id, " and may bounce twice" if failed else "")

    # -- DSN -------------------------------------------------------------------------------
    async def _deliver_dsn(self, mail_from: str, queue_id, failed: Sequence[FailedRecipient], original: bytes,
                           arrival: float) -> bool:
        """True when the DSN was delivered or cannot ever be (the sender is not local)."""
        dsn = build_dsn(hostname=self.hostname, mail_from=mail_from, queue_id=queue_id, arrival=arrival,
                        recipients=list(failed), original=original,
                        max_age_text=human_duration(self.settings.max_queue_age))

        async def deliver():
            delivery = self.store.begin_delivery("")
            await delivery.add_recipient(mail_from)
            return await delivery.commit(dsn)
        try:
            results = await self._with_retries(f"queue {queue_id}: DSN to <{mail_from}>", deliver,
                                               give_up=(errors.NotFound, errors.InvalidInput))
        except (errors.NotFound, errors.InvalidInput):
            log.warning("queue %s: no DSN: the sender <%s> is not a local address any more", queue_id, mail_from)
            return True
        if not results or results[0].error is not None:
            log.error("queue %s: DSN to <%s> for %s was NOT delivered (%s)", queue_id, mail_from,
                      ", ".join(f"<{r.address}>" for r in failed), results[0].error if results else "store down")
            return False
        log.info("queue %s: DSN to <%s> delivered (folder=%s, uid=%s) for %s", queue_id, mail_from,
                 results[0].folder, results[0].uid, ", ".join(f"<{r.address}> {r.action}" for r in failed))
        return True

    async def _with_retries(self, what: str, call, give_up=()):
        """``await call()`` (a store coroutine), retried on TemporaryFailure; None if it never
        succeeded.  Exceptions in ``give_up`` propagate."""
        for delay in (*STORE_RETRIES, None):
            try:
                return await as_future(call())
            except give_up:
                raise
            except errors.StoreError as err:
                if delay is None:
                    log.error("%s failed: %s", what, err)
                    return None
                log.warning("%s failed (%s); again in %gs", what, err, delay)
                await asyncio.sleep(delay)
        return None
