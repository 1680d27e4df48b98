"""aiosmtpd handler hooks: a submitted message mapped onto the store.

AUTH goes through the one cred portal.  MAIL FROM must be an address of the logged-in account
(its own, a ``+detail`` of it, or one of its aliases), and the account must be under its soft
quota.  Each RCPT is either local (the store resolves it: it is added to one
:class:`~store.interfaces.Delivery`, as LMTP does) or remote (collected for the outbound queue,
only when ``[submission] relay`` is set).  At DATA the message is accepted in this order:

1. the remote part is queued (``enqueue_outbound``: blob fsynced, rows committed) and held
   back from the spooler of this process;
2. the local copies are committed (``Delivery.commit``);
3. the queue entry is released to the spooler (or, when step 2 failed, deleted again).

Why queue first: undoing a queue entry nobody has relayed yet is one ``delete_outbound``,
invisible to anyone; undoing a local delivery would mean soft-deleting messages that IDLE
clients were already told about.  So a failure at step 2 answers ``451`` and leaves nothing
behind, and the client's retry causes no duplicate.  What remains: if the delete itself fails
(the store is down), the queued copy goes out and the retry sends it again; and another Haven
node's spooler on the same database could take the entry within the few milliseconds of step 2
(this process's spooler waits for the hold).  Duplicates in those corners, never a loss.
"""

from __future__ import annotations

import asyncio
import logging
import re
from typing import List, Optional

from twisted.cred.error import UnauthorizedLogin

from auth.cred import IAccount, PasswordCredentials
from gateways.common.smtpwire import (declared_size, is_unsafe_address, peer_ip, peer_name, received_header, return_path,
                               with_protocol)
from gateways.submission import replies
from gateways.submission.dsn import FailedRecipient
from gateways.submission.settings import SubmissionSettings
from gateways.submission.wire import is_ascii, missing_header_fields
from store import errors
from store.interfaces import Store, as_future

log = logging.getLogger("haven.submission")

#: a remote address: local@domain with a dotted domain or an address literal
_REMOTE = re.compile(r"^[^@\s<>]+@(?:\[[^\]\s]+\]|[^@\s\[\]<>.]+(?:\.[^@\s\[\]<>.]+)+)$")

#: the DSN text of a local recipient the store refused at commit (status first, see dsn.py)
_LOCAL_FAILURE = {
    errors.NotFound: "5.1.1 the mailbox no longer exists",
    errors.OverQuota: "5.2.2 the mailbox is full",
    errors.PermissionDenied: "5.7.1 delivery not permitted",
    errors.InvalidInput: "5.1.3 bad address",
}


def _failure_text(err: BaseException) -> str:
    """The DSN text of a local recipient the store refused; a Sieve reject carries the
    recipient's own reason (RFC 5429 §2.1: a DSN when the protocol cannot refuse)."""
    if isinstance(err, errors.Rejected):
        return "5.7.1 " + " ".join(str(err).split())[:400]
    return _LOCAL_FAILURE.get(type(err), "5.0.0 delivery failed")


class SubmissionHandler:
    """Shared by all connections of one listener; per-transaction state lives on the
    :class:`~gateways.submission.server.SubmissionEnvelope`."""

    def __init__(self, store: Store, portal, spooler, *, hostname: str, settings: SubmissionSettings):
        self.store = store
        self.portal = portal
        self.spooler = spooler
        self.hostname = hostname
        self.settings = settings

    # -- AUTH ------------------------------------------------------------------------------
    async def authenticate(self, server, login: str, password: str, mechanism: str):
        """The :class:`~store.interfaces.Account` the portal logs ``login`` in as, or None.
        The portal's failure path is slow on purpose (failure_delay); it runs on the loop."""
        creds = PasswordCredentials(login, password, peer_ip(server.session.peer) or "unknown")

        async def login_():
            return await self.portal.login(creds, None, IAccount)
        try:
            _iface, account, _logout = await as_future(login_(), server.loop)
        except UnauthorizedLogin:
            return None
        except Exception:
            log.exception("AUTH %s from %s: portal failed", mechanism, peer_name(server.session.peer))
            return None
        log.info("login: user=<%s>, method=%s, peer=%s, tls=%s", account.address, mechanism,
                 peer_name(server.session.peer), "yes" if server.tls_active else "no")
        return account

    # -- MAIL ------------------------------------------------------------------------------
    async def handle_MAIL(self, server, session, envelope, address: str, mail_options: List[str]) -> str:
        account = server.account
        qid = envelope.queue_id
        if address in ("", "<>"):
            log.info("%s: reject: MAIL from %s: null sender; user=<%s>", qid, peer_name(session.peer), account.address)
            return replies.NULL_SENDER
        if is_unsafe_address(address):
            return replies.BAD_SENDER
        if not is_ascii(address) and not envelope.smtp_utf8:
            return replies.NEEDS_SMTPUTF8
        size = declared_size(mail_options)
        limit = self.settings.max_message_size
        if size is not None and limit and size > limit:
            # RFC 1870 §6.1: refuse at MAIL what is certain to be too big.
            log.info("%s: reject: MAIL from %s: SIZE=%d over %d; user=<%s>", qid, peer_name(session.peer), size, limit,
                     account.address)
            return replies.SIZE_EXCEEDED
        try:
            owner = await as_future(self.store.resolve_recipient(address), server.loop)
        except (errors.NotFound, errors.InvalidInput):
            owner = None
        except errors.StoreError as err:
            log.warning("%s: MAIL from %s: store: %s", qid, peer_name(session.peer), err)
            return replies.TEMPFAIL
        if owner is None or owner.account_id != account.id:
            # RFC 6409 §6.1: the MSA may check that the sender is the authenticated user's.
            log.warning("%s: reject: MAIL from %s: sender <%s> not owned by user=<%s>", qid, peer_name(session.peer),
                        address, account.address)
            return replies.NOT_OWNED.format(account.address)
        # Over the soft quota the account may not send (warn and hard do not matter here).
        # MAIL is the earliest point of the transaction, and RFC 5321 §4.3.2 allows 552 there;
        # one usage query per transaction.
        try:
            quota = await as_future(self.store.get_quota(account.id), server.loop)
        except errors.StoreError as err:
            log.warning("%s: MAIL from %s: quota: %s: %s", qid, peer_name(session.peer), type(err).__name__, err)
            return replies.TEMPFAIL
        if quota.over_soft:
            log.info("%s: reject: MAIL from %s: user=<%s> over soft quota (%d of %d octets)", qid,
                     peer_name(session.peer), account.address, quota.used_bytes, quota.soft)
            return replies.OVER_SOFT_QUOTA
        envelope.delivery = self.store.begin_delivery(address)
        # A hook that answers must record the sender itself (aiosmtpd contract).
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 2.1.0 Ok"

    # -- RCPT ------------------------------------------------------------------------------
    async def handle_RCPT(self, server, session, envelope, address: str, rcpt_options: List[str]) -> str:
        qid = envelope.queue_id
        if len(envelope.rcpt_tos) >= self.settings.max_recipients:
            # RFC 5321 §4.5.3.1.10: 452, and the client sends the rest in another transaction.
            log.info("%s: reject: RCPT from %s: too many recipients (%d); to=<%s>", qid, peer_name(session.peer),
                     self.settings.max_recipients, address)
            return replies.TOO_MANY_RECIPIENTS
        if is_unsafe_address(address):
            return replies.BAD_RECIPIENT
        if not is_ascii(address) and not envelope.smtp_utf8:
            return replies.NEEDS_SMTPUTF8
        try:
            recipient = await as_future(envelope.delivery.add_recipient(address), server.loop)
        except errors.NotFound:
            reply = await self._remote_recipient(server, session, envelope, address)
        except errors.StoreError as err:
            reply = replies.rcpt_error(err, address)
        else:
            envelope.local.append(recipient)
            reply = f"250 2.1.5 <{address}> Ok"
        if reply.startswith("2"):
            envelope.rcpt_tos.append(address)
            envelope.rcpt_options.extend(rcpt_options)
        else:
            log.info("%s: reject: RCPT from %s: %s; from=<%s> to=<%s>", qid, peer_name(session.peer), reply,
                     envelope.mail_from, address)
        return reply

    async def _remote_recipient(self, server, session, envelope, address: str) -> str:
        """An address the store does not know: 550 in a local domain, else the queue."""
        domain = address.rpartition("@")[2]
        try:
            local_domain = bool(domain) and await as_future(self.store.is_local_domain(domain), server.loop)
        except errors.StoreError:
            return replies.rcpt_error(errors.TemporaryFailure(), address)
        if local_domain:
            return replies.rcpt_error(errors.NotFound(), address)
        if self.settings.relay is None:
            log.warning("%s: relaying refused for user=<%s> to=<%s>: [submission] relay is empty "
                        "(set it to your smarthost, HOST:PORT, to send mail out)", envelope.queue_id,
                        server.account.address, address)
            return replies.RELAY_NOT_CONFIGURED.format(address)
        if not _REMOTE.match(address):
            return replies.BAD_RECIPIENT
        if address not in envelope.remote:
            envelope.remote.append(address)
        return f"250 2.1.5 <{address}> Ok"

    # -- DATA ------------------------------------------------------------------------------
    async def handle_DATA(self, server, session, envelope) -> str:
        if envelope.too_big:
            log.info("%s: reject: DATA from %s: %d octets over %s; from=<%s>", envelope.queue_id,
                     peer_name(session.peer), envelope.data_size, self.settings.max_message_size, envelope.mail_from)
            return replies.TOO_BIG
        protocol = with_protocol(tls=server.tls_active, auth=True, utf8=envelope.smtp_utf8)
        content = envelope.content
        message = (received_header(helo=session.host_name, peer=session.peer, hostname=self.hostname,
                                   queue_id=envelope.queue_id, protocol=protocol)
                   + missing_header_fields(content, self.hostname) + content)
        envelope.content = envelope.original_content = content = None  # one copy in memory is enough
        # The acceptance runs to its end even if the client goes away meanwhile: a message is
        # either accepted as a whole or not at all, never cut off halfway by a disconnect.
        accept = asyncio.ensure_future(self._accept(server, session, envelope, message, protocol))
        try:
            return await asyncio.shield(accept)
        except asyncio.CancelledError:
            accept.add_done_callback(lambda f: self._log_orphan(f, envelope, session))
            raise

    async def _accept(self, server, session, envelope, message: bytes, protocol: str) -> str:
        account, qid, loop = server.account, envelope.queue_id, server.loop
        queue_id: Optional[int] = None
        if envelope.remote:
            try:
                queue_id = await self.spooler.enqueue(account.id, envelope.mail_from, envelope.remote, message)
            except errors.StoreError as err:
                log.warning("%s: enqueue failed: %s: %s", qid, type(err).__name__, err)
                return replies.data_error(err)
        keep = False
        try:
            results = []
            if envelope.local:
                try:
                    results = await as_future(envelope.delivery.commit(return_path(envelope.mail_from) + message),
                                              loop)
                except errors.StoreError as err:
                    log.warning("%s: local delivery failed: %s: %s", qid, type(err).__name__, err)
                    return replies.data_error(err)
                if not isinstance(results, list) or len(results) != len(envelope.local):
                    log.error("%s: commit returned %r for %d recipients", qid, results, len(envelope.local))
                    return replies.TEMPFAIL
                failed = [r for r in results if r.error is not None]
                verdict = self._verdict(failed, len(results), bool(envelope.remote))
                if verdict is not None:
                    log.warning("%s: local delivery failed: %s", qid, "; ".join(
                        f"<{r.recipient.original}>: {type(r.error).__name__}" for r in failed))
                    return verdict
            keep = True
        finally:
            if queue_id is not None:
                if keep:
                    self.spooler.release(queue_id)
                else:
                    await self.spooler.cancel(queue_id)
        self._log_accepted(server, session, envelope, len(message), protocol, queue_id, results)
        bounced = [FailedRecipient(address=r.recipient.original, action="failed", last_error=_failure_text(r.error))
                   for r in results if r.error is not None]
        if bounced:
            # Some local recipients vanished between RCPT and DATA while others got the message:
            # the message is accepted and the sender told about those, as a relay would.
            self.spooler.bounce(envelope.mail_from, qid, bounced, message)
        return replies.accepted(qid)

    @staticmethod
    def _verdict(failed: list, local_count: int, has_remote: bool) -> Optional[str]:
        """None to accept the message (bouncing ``failed``), else the reply refusing it whole.
        A temporary or unknown error anywhere refuses it (451: a retry may duplicate the copies
        that did land; duplicates beat losses); so does a message too big for the store."""
        if not failed:
            return None
        permanent = (errors.NotFound, errors.OverQuota, errors.PermissionDenied, errors.InvalidInput)
        if any(not isinstance(r.error, permanent) for r in failed):
            return replies.data_error(next(r.error for r in failed if not isinstance(r.error, permanent)))
        if len(failed) == local_count and not has_remote:
            return replies.rcpt_error(failed[0].error, failed[0].recipient.original)
        return None

    # -- logging: one line per accepted message, one per recipient -------------------------
    def _log_accepted(self, server, session, envelope, size: int, protocol: str, queue_id, results) -> None:
        qid = envelope.queue_id
        log.info("%s: accepted: from=<%s>, user=<%s>, size=%d, nrcpt=%d (local %d, remote %d), peer=%s, "
                 "proto=%s%s", qid, envelope.mail_from, server.account.address, size, len(envelope.rcpt_tos),
                 len(envelope.local), len(envelope.remote), peer_name(session.peer), protocol,
                 f", queue={queue_id}" if queue_id is not None else "")
        for rcpt, result in zip(envelope.local, results):
            if result.error is None:
                log.info("%s: to=<%s>, orig_to=<%s>, status=delivered (folder=%s, uid=%s)", qid,
                         rcpt.address, rcpt.original, result.folder, result.uid)
            else:
                log.info("%s: to=<%s>, orig_to=<%s>, status=bounced (%s)", qid, rcpt.address, rcpt.original,
                         type(result.error).__name__)
        for address in envelope.remote:
            log.info("%s: to=<%s>, status=queued (queue %s, relay %s)", qid, address, queue_id,
                     self.settings.relay)

    def _log_orphan(self, future: asyncio.Future, envelope, session) -> None:
        """The client left while the message was being accepted: log what became of it."""
        if future.cancelled():
            outcome = "cancelled"
        elif future.exception() is not None:
            outcome = f"failed ({type(future.exception()).__name__}: {future.exception()})"
        else:
            outcome = f"finished with {future.result()!r}"
        log.warning("%s: client %s disconnected before the reply; acceptance %s", envelope.queue_id,
                    peer_name(session.peer), outcome)
