"""Submission: a message a logged-in user sends, as one store operation.

The SMTP submission gateway (and later ActiveSync SendMail/SmartReply) speaks its protocol and
calls :meth:`SubmissionStore.begin_submission`; everything about what a submission *means* is
here:

- **begin**: the sender must be an address of the account (``resolve_recipient``: its own,
  ``+detail``, an alias), and the account under its soft quota (RFC 6409 §6.1; Zarafa's soft
  limit stops sending, not receiving);
- **rate limits** (:mod:`store.rates`): the account's usage of the last hour is read at begin;
  a recipient that would go past ``max_messages_per_hour`` / ``max_recipients_per_hour`` is
  RateLimited at add_recipient; commit counts the message for real first (RateLimited when
  parallel submissions raced past the limit) and gives the count back if it is not accepted;
- **add_recipient**: a local address joins one :class:`~store.interfaces.Delivery`; an unknown
  user of a local domain is NotFound; anything else is remote, queued at commit, only when a
  relay is configured (``RuleSettings.outbound``);
- **commit**, in this order:

  0. the header's ``From:`` and ``Sender:`` must name the account's addresses too, unless
     ``RuleSettings.allow_from_mismatch`` (PermissionDenied, nothing kept);
  1. the header is completed (trace lines, then ``Date:``/``Message-ID:`` when missing);
  2. the remote part is queued (blob fsynced, rows committed); when local copies are still
     to come it is *held*: ``next_attempt`` one lease ahead, so no spooler on any node takes
     it before step 5;
  3. the local copies are committed through the delivery pipeline;
  4. the verdict: a temporary or unknown failure of any local recipient withdraws the queue
     entry and fails the whole message; local recipients refused for good while others got
     it are queued as failed recipients of a second entry (the spooler writes their DSN);
     when every recipient was local and all refused it, the message is refused whole;
  5. a held entry is released (due now) and the ``on_outbound`` listeners called.

Why queue first: undoing a queue entry nobody has relayed is one delete, invisible to anyone;
undoing a local delivery would mean soft-deleting messages IDLE clients were already told
about.  So a failure at step 3 leaves nothing behind and the client's retry causes no
duplicate.  What remains: if the withdrawal itself fails (the store is down) the held entry
comes due after the lease and the retry sends it again; if the release fails, the message goes
out after the lease instead of at once.  Duplicates or delays in those corners, never a loss.
"""

from __future__ import annotations

import logging
import re
import time
from typing import Optional

from formats.headers import header_senders, missing_header_fields, return_path
from store import errors, rates
from store.core import StoreCore
from store.engines import Txn
from store.idempotency import new_key, once_txn
from store.interfaces import OUTBOUND_LEASE, Recipient, Submission, SubmissionResult
from store.queue import enqueue_failed_txn, enqueue_txn, release_txn

log = logging.getLogger("haven.submission")

#: a remote address: local@domain with a dotted domain or an address literal
_REMOTE = re.compile(r"^[^@\s<>]+@(?:\[[^\]\s]+\]|[^@\s\[\]<>.]+(?:\.[^@\s\[\]<>.]+)+)$")

#: errors of a local recipient that stay the same on a retry: it gets a DSN, the others the message
PERMANENT = (errors.NotFound, errors.OverQuota, errors.PermissionDenied, errors.InvalidInput)

#: the DSN text of a local recipient the store refused at commit (status first, as the
#: spooler records its own errors)
_LOCAL_FAILURE = {
    errors.NotFound: "5.1.1 the mailbox no longer exists",
    errors.OverQuota: "5.2.2 the mailbox is full",
    errors.PermissionDenied: "5.7.1 delivery not permitted",
    errors.InvalidInput: "5.1.3 bad address",
}


def failure_text(err: BaseException) -> str:
    """The DSN text of a local recipient the store refused; a Sieve reject carries the
    recipient's own reason (RFC 5429 §2.1: a DSN when the protocol cannot refuse)."""
    if isinstance(err, errors.Rejected):
        return "5.7.1 " + " ".join(str(err).split())[:400]
    return _LOCAL_FAILURE.get(type(err), "5.0.0 delivery failed")


class SubmissionStore(StoreCore):
    async def begin_submission(self, account_id: int, mail_from: str) -> Submission:
        try:
            owner = await self.resolve_recipient(mail_from)
        except (errors.NotFound, errors.InvalidInput):
            owner = None
        if owner is None or owner.account_id != account_id:
            raise errors.PermissionDenied(f"sender <{mail_from}> is not an address of this account")
        quota = await self.get_quota(account_id)
        if quota.over_soft:
            raise errors.OverQuota(f"over soft quota ({quota.used_bytes} of {quota.soft} octets)")
        used = None
        if self.settings.rates.max_messages_per_hour or self.settings.rates.max_recipients_per_hour:
            used = await self._run("submission_usage", rates.usage_txn, account_id, time.time())
        return SqlSubmission(self, account_id, mail_from, used)


class SqlSubmission(Submission):
    def __init__(self, store: SubmissionStore, account_id: int, mail_from: str, used: Optional[tuple] = None):
        self.store = store
        self.account_id = account_id
        self.mail_from = mail_from
        self.used = used  # (messages, recipients) of the last hour at MAIL; None: no limits
        self.delivery = store.begin_delivery(mail_from)
        self.delivery.observe_refusals = False  # a NotFound may be a remote recipient
        self.local: list = []
        self.remote: list = []
        self._committed = False

    async def add_recipient(self, address: str) -> Optional[Recipient]:
        if self.used is not None:
            # the usage read at MAIL (one query per message, not per recipient); commit
            # counts for real, so parallel sessions or nodes cannot go past the limit either
            self._check_rate(self.used, len(self.local) + len(self.remote) + 1)
        try:
            recipient = await self.delivery.add_recipient(address)
        except errors.NotFound:
            pass
        else:
            self.local.append(recipient)
            return recipient
        domain = address.rpartition("@")[2]
        try:
            local_domain = bool(domain) and await self.store.is_local_domain(domain)
        except errors.StoreError as err:
            raise errors.TemporaryFailure(str(err)) from None
        if local_domain:
            raise errors.NotFound(f"no such user: {address}")
        if not self.store.rule_settings.outbound:
            raise errors.PermissionDenied("relaying is not configured")
        if not _REMOTE.match(address):
            raise errors.InvalidInput(f"not a remote address: {address!r}")
        if address not in self.remote:
            self.remote.append(address)
        return None

    async def commit(self, raw, trace: bytes = b"") -> SubmissionResult:
        if not isinstance(raw, (bytes, bytearray)):  # a spooled message (a big DATA)
            return await self.store._with_spooled(raw, lambda data: self.commit(data, trace))
        if self._committed:
            raise errors.InvalidInput("this submission was committed already")
        self._committed = True
        store = self.store
        if not store.rule_settings.allow_from_mismatch:
            await self._check_header_senders(raw)
        message = trace + missing_header_fields(raw, store.rule_settings.hostname) + raw
        del raw  # one copy in memory is enough
        charged = await self._charge()
        queue_id: Optional[int] = None
        prepared = None
        if self.remote:
            # Held only when local copies are still to come; a message for remote recipients
            # alone is final once queued (one transaction, as before).
            prepared = await store._prepare_message(message)
            queue_id = await store._run("enqueue_submission", once_txn, new_key(), _enqueue_txn, self.account_id,
                                        self.mail_from, list(self.remote), prepared, bool(self.local))
        keep = False
        try:
            results: list = []
            if self.local:
                results = await self.delivery.commit(return_path(self.mail_from) + message)
                if not isinstance(results, list) or len(results) != len(self.local):
                    log.error("delivery commit returned %r for %d recipients", results, len(self.local))
                    raise errors.TemporaryFailure("the delivery gave no verdict for every recipient")
                failed = [r for r in results if r.error is not None]
                temporary = [r for r in failed if not isinstance(r.error, PERMANENT)]
                if temporary:
                    log.warning("local delivery failed: %s", "; ".join(
                        f"<{r.recipient.original}>: {type(r.error).__name__}" for r in failed))
                    raise temporary[0].error
                if failed and len(failed) == len(results) and not self.remote:
                    return SubmissionResult(local=results, remote=(), queue_id=None, size=len(message),
                                            refused=failed[0])
            keep = True
        finally:
            if queue_id is not None and not keep:
                await self._withdraw(queue_id)
            if charged is not None and not keep:
                await self._refund(*charged)
        bounced = [(r.recipient.original, failure_text(r.error)) for r in results if r.error is not None]
        await self._release(queue_id if self.local else None, bounced, message, prepared)
        if queue_id is not None and not self.local:
            store._outbound_queued()
        return SubmissionResult(local=results, remote=tuple(self.remote), queue_id=queue_id, size=len(message))

    def _check_rate(self, used: tuple, recipients: int) -> None:
        try:
            rates.check(self.store.settings.rates, used, 1, recipients)
        except errors.RateLimited as err:
            log.info("account %d <%s>: refused: %s", self.account_id, self.mail_from, err)
            raise

    async def _charge(self) -> Optional[tuple]:
        """Count this message and its recipients against the account's hourly limits, in the
        store (RateLimited, nothing counted, when it goes over).  Returns what to refund if the
        message is not accepted after all, or None without limits."""
        if self.used is None:
            return None
        limits = self.store.settings.rates
        count = len(self.local) + len(self.remote)
        minute, after = await self.store._run("charge_submission", once_txn, new_key(), rates.charge_txn,
                                              self.account_id, count, time.time(), limits)
        if rates.reached(limits, after) and not rates.reached(limits, (after[0] - 1, after[1] - count)):
            log.warning("account %d <%s> reached its submission limit: %d messages, %d recipients in the last "
                        "hour ([submission] max_messages_per_hour = %d, max_recipients_per_hour = %d)",
                        self.account_id, self.mail_from, after[0], after[1], limits.max_messages_per_hour,
                        limits.max_recipients_per_hour)
        return minute, count

    async def _refund(self, minute: int, count: int) -> None:
        try:
            await self.store._run("refund_submission", rates.add_txn, self.account_id, minute, -1, -count)
        except errors.StoreError as err:
            log.warning("account %d: the count of a failed submission stays (%s)", self.account_id, err)

    async def _check_header_senders(self, raw: bytes) -> None:
        """Step 0: every address in From: and Sender: is one of the account's (its own,
        ``+detail``, an alias), as the envelope sender is (RFC 6409 §6.1 lets the MSA enforce
        this); PermissionDenied names the first that is not."""
        for address in header_senders(raw):
            if address == self.mail_from.lower():
                continue  # the envelope sender, checked at begin_submission: no second query
            try:
                owner = await self.store.resolve_recipient(address)
            except (errors.NotFound, errors.InvalidInput):
                owner = None
            if owner is None or owner.account_id != self.account_id:
                raise errors.PermissionDenied(f"header From/Sender <{address}> is not an address of this account")

    async def _withdraw(self, queue_id: int) -> None:
        try:
            await self.store.delete_outbound(queue_id)
        except errors.NotFound:
            pass
        except errors.StoreError as err:
            log.error("queue %d: could not withdraw the message of a failed submission (%s); it will be "
                      "relayed after %ds, and the client's retry may send it twice", queue_id, err, OUTBOUND_LEASE)

    async def _release(self, queue_id: Optional[int], bounced: list, message: bytes, prepared) -> None:
        """Step 5: the held entry due now, and the local recipients that refused the message
        queued for their DSN.  A failure here leaves the message accepted: the held entry
        comes due after the lease by itself."""
        store = self.store
        if queue_id is None and not bounced:
            return
        try:
            if bounced and prepared is None:
                prepared = await store._prepare_message(message)
            await store._run("release_submission", once_txn, new_key(), _release_txn, queue_id, self.account_id,
                             self.mail_from, bounced, prepared)
        except errors.StoreError as err:
            if queue_id is not None:
                log.error("queue %d: could not release the message (%s); it is relayed after %ds", queue_id, err,
                          OUTBOUND_LEASE)
            if bounced:
                log.error("DSN to <%s> for %s was NOT queued (%s)", self.mail_from,
                          ", ".join(f"<{a}>" for a, _ in bounced), err)
        store._outbound_queued()


def _enqueue_txn(txn: Txn, account_id: int, mail_from: str, recipients: list, prepared, hold: bool) -> int:
    """Step 2: queued; with ``hold`` due only after a lease (released at step 5)."""
    return enqueue_txn(txn, account_id, mail_from, recipients, prepared,
                       held_until=int(time.time()) + OUTBOUND_LEASE if hold else None)


def _release_txn(txn: Txn, queue_id: Optional[int], account_id: int, mail_from: str, bounced: list, prepared) -> None:
    if queue_id is not None:
        release_txn(txn, queue_id)
    if bounced:
        enqueue_failed_txn(txn, account_id, mail_from, bounced, prepared)
