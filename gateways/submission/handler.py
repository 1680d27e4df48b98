"""aiosmtpd handler hooks: a submitted message mapped onto the store's submission contract.

AUTH goes through the one cred portal.  MAIL FROM starts a
:class:`~store.interfaces.Submission` (``store.begin_submission``: the sender must be the
logged-in account's, the account under its soft quota); each RCPT is added to it (local, or
remote for the outbound queue); DATA commits it, with our ``Received:`` line as its trace.
What a submission means (the checks, header completion, local copies, the queue and the
order that leaves nothing half-done) is the store's, store/submission.py; this module maps
its answers and errors to SMTP replies and writes the log lines.
"""

from __future__ import annotations

import asyncio
import logging
from typing import List

from twisted.cred.error import UnauthorizedLogin

from auth.cred import IAccount, LoginUnavailable, PasswordCredentials
from formats.headers import is_ascii
from gateways.common.smtpwire import (declared_size, is_unsafe_address, peer_ip, peer_name, received_header,
                                      with_protocol)
from gateways.submission import replies
from gateways.submission.settings import SubmissionSettings
from store import errors
from store.interfaces import Store, as_future

log = logging.getLogger("haven.submission")


class SubmissionHandler:
    """Shared by all connections of one listener; per-transaction state lives on the
    :class:`~gateways.submission.server.SubmissionEnvelope`."""

    def __init__(self, store: Store, portal, *, hostname: str, settings: SubmissionSettings):
        self.store = store
        self.portal = portal
        self.hostname = hostname
        self.settings = settings

    # -- AUTH ------------------------------------------------------------------------------
    async def authenticate(self, server, login: str, password: str, mechanism: str):
        """The :class:`~store.interfaces.Account` the portal logs ``login`` in as, or None
        (refused); LoginUnavailable when the account store could not be asked.
        The portal's failure path is slow on purpose (failure_delay); it runs on the loop."""
        creds = PasswordCredentials(login, password, peer_ip(server.session.peer) or "unknown")

        async def login_():
            return await self.portal.login(creds, None, IAccount)
        try:
            _iface, account, _logout = await as_future(login_(), server.loop)
        except UnauthorizedLogin:
            return None
        except LoginUnavailable:
            raise
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
        # RFC 6409 §6.1: the MSA may check that the sender is the authenticated user's.  Over
        # the soft quota the account may not send: MAIL is the earliest point of the
        # transaction, and RFC 5321 §4.3.2 allows 552 there.
        try:
            envelope.submission = await as_future(self.store.begin_submission(account.id, address), server.loop)
        except errors.PermissionDenied:
            log.warning("%s: reject: MAIL from %s: sender <%s> not owned by user=<%s>", qid, peer_name(session.peer),
                        address, account.address)
            return replies.NOT_OWNED.format(account.address)
        except errors.OverQuota as err:
            log.info("%s: reject: MAIL from %s: user=<%s> %s", qid, peer_name(session.peer), account.address, err)
            return replies.OVER_SOFT_QUOTA
        except errors.StoreError as err:
            log.warning("%s: MAIL from %s: store: %s: %s", qid, peer_name(session.peer), type(err).__name__, err)
            return replies.TEMPFAIL
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
            await as_future(envelope.submission.add_recipient(address), server.loop)
        except errors.PermissionDenied:
            # remote, and no smarthost to send it to
            log.warning("%s: relaying refused for user=<%s> to=<%s>: [submission] relay is empty "
                        "(set it to your smarthost, HOST:PORT, to send mail out)", qid, server.account.address,
                        address)
            reply = replies.RELAY_NOT_CONFIGURED.format(address)
        except errors.InvalidInput:
            reply = replies.BAD_RECIPIENT
        except errors.RateLimited as err:
            log.warning("%s: rate limit: RCPT from %s: user=<%s> %s", qid, peer_name(session.peer),
                        server.account.address, err)
            reply = replies.RATE_LIMITED
        except errors.StoreError as err:
            reply = replies.rcpt_error(err, address)
        else:
            reply = f"250 2.1.5 <{address}> Ok"
        if reply.startswith("2"):
            envelope.rcpt_tos.append(address)
            envelope.rcpt_options.extend(rcpt_options)
        else:
            log.info("%s: reject: RCPT from %s: %s; from=<%s> to=<%s>", qid, peer_name(session.peer), reply,
                     envelope.mail_from, address)
        return reply

    # -- DATA ------------------------------------------------------------------------------
    async def handle_DATA(self, server, session, envelope) -> str:
        if envelope.too_big:
            log.info("%s: reject: DATA from %s: %d octets over %s; from=<%s>", envelope.queue_id,
                     peer_name(session.peer), envelope.data_size, self.settings.max_message_size, envelope.mail_from)
            return replies.TOO_BIG
        protocol = with_protocol(tls=server.tls_active, auth=True, utf8=envelope.smtp_utf8)
        trace = received_header(helo=session.host_name, peer=session.peer, hostname=self.hostname,
                                queue_id=envelope.queue_id, protocol=protocol)
        content = envelope.content  # bytes, or the spool file of a big message
        envelope.content = envelope.original_content = None  # one copy in memory is enough
        # The acceptance runs to its end even if the client goes away meanwhile: a message is
        # either accepted as a whole or not at all, never cut off halfway by a disconnect.
        accept = asyncio.ensure_future(self._accept(server, session, envelope, content, trace, protocol))
        del content
        envelope.keep_content()  # the spool stays open until the acceptance is over
        accept.add_done_callback(lambda _f: envelope.release_content())
        try:
            return await asyncio.shield(accept)
        except asyncio.CancelledError:
            accept.add_done_callback(lambda f: self._log_orphan(f, envelope, session))
            raise

    async def _accept(self, server, session, envelope, content, trace: bytes, protocol: str) -> str:
        qid = envelope.queue_id
        try:
            result = await as_future(envelope.submission.commit(content, trace), server.loop)
        except errors.StoreError as err:
            log.warning("%s: submission failed: %s: %s", qid, type(err).__name__, err)
            return replies.data_error(err)
        if result.refused is not None:
            # every recipient was local and all of them refused it for good
            log.warning("%s: local delivery failed: %s", qid, "; ".join(
                f"<{r.recipient.original}>: {type(r.error).__name__}" for r in result.local if r.error is not None))
            return replies.rcpt_error(result.refused.error, result.refused.recipient.original)
        self._log_accepted(server, session, envelope, protocol, result)
        return replies.accepted(qid)

    # -- logging: one line per accepted message, one per recipient -------------------------
    def _log_accepted(self, server, session, envelope, protocol: str, result) -> None:
        qid, size, queue_id = envelope.queue_id, result.size, result.queue_id
        log.info("%s: accepted: from=<%s>, user=<%s>, size=%d, nrcpt=%d (local %d, remote %d), peer=%s, "
                 "proto=%s%s", qid, envelope.mail_from, server.account.address, size, len(envelope.rcpt_tos),
                 len(result.local), len(result.remote), peer_name(session.peer), protocol,
                 f", queue={queue_id}" if queue_id is not None else "")
        for delivered in result.local:
            rcpt = delivered.recipient
            if delivered.error is None:
                log.info("%s: to=<%s>, orig_to=<%s>, status=delivered (folder=%s, uid=%s)", qid,
                         rcpt.address, rcpt.original, delivered.folder, delivered.uid)
            else:
                log.info("%s: to=<%s>, orig_to=<%s>, status=bounced (%s)", qid, rcpt.address, rcpt.original,
                         type(delivered.error).__name__)
        for address in result.remote:
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
