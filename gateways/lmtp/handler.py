"""aiosmtpd handler hooks: the LMTP transaction mapped onto one store :class:`Delivery`.

MAIL FROM starts ``store.begin_delivery``, each RCPT TO is ``delivery.add_recipient`` (the
store resolves aliases and ``+detail``), DATA is ``delivery.commit`` of the message with its
trace headers, and the per-recipient :class:`DeliveryResult` list becomes the RFC 2033 §4.2
replies.  All store errors go through :mod:`gateways.lmtp.replies`.
"""

from __future__ import annotations

import asyncio
import logging
from typing import List, Optional

from gateways.lmtp import replies
from gateways.common.smtpwire import (declared_size, is_unsafe_address, peer_name, received_header, return_path,
                               with_protocol)
from store import errors
from store.interfaces import Store, as_future

log = logging.getLogger("haven.lmtp")


def _reverse_path(mail_from: Optional[str]) -> str:
    """aiosmtpd spells the null reverse-path (bounces, RFC 5321 §4.5.5) ``<>``."""
    return "" if mail_from in (None, "", "<>") else mail_from


class DeliveryHandler:
    """Shared by all connections of one listener; per-transaction state lives on the
    :class:`~gateways.lmtp.server.LMTPEnvelope`."""

    def __init__(self, store: Store, *, hostname: str, max_message_size: Optional[int],
                 max_recipients: int, over_quota_temporary: bool = False):
        self.store = store
        self.over_quota_temporary = over_quota_temporary
        self.hostname = hostname
        self.max_message_size = max_message_size or None
        self.max_recipients = max_recipients

    # -- MAIL ------------------------------------------------------------------------------
    async def handle_MAIL(self, server, session, envelope, address: str, mail_options: List[str]) -> str:
        if is_unsafe_address(address):
            return replies.BAD_SENDER
        size = declared_size(mail_options)
        if size is not None and self.max_message_size and size > self.max_message_size:
            # RFC 1870 §6.1: refuse at MAIL what is certain to be too big.
            log.info("%s: reject: MAIL from %s: SIZE=%d over %d; from=<%s>", envelope.queue_id,
                     peer_name(session.peer), size, self.max_message_size, _reverse_path(address))
            return replies.SIZE_EXCEEDED
        try:
            envelope.delivery = self.store.begin_delivery(_reverse_path(address))
        except errors.StoreError as err:
            log.warning("%s: MAIL from %s: store: %s", envelope.queue_id, peer_name(session.peer), err)
            return replies.TEMPFAIL
        except Exception:
            log.exception("%s: MAIL from %s: begin_delivery failed", envelope.queue_id, peer_name(session.peer))
            return replies.TEMPFAIL
        # A hook that answers must record the sender itself (aiosmtpd contract).
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 2.1.0 Ok"

    # -- RCPT ------------------------------------------------------------------------------
    async def handle_RCPT(self, server, session, envelope, address: str, rcpt_options: List[str]) -> str:
        qid = envelope.queue_id
        if len(envelope.rcpt_tos) >= self.max_recipients:
            # RFC 5321 §4.5.3.1.10: 452, and the client sends the rest in another transaction.
            log.info("%s: reject: RCPT from %s: too many recipients (%d); to=<%s>",
                     qid, peer_name(session.peer), self.max_recipients, address)
            return replies.TOO_MANY_RECIPIENTS
        if is_unsafe_address(address):
            return replies.BAD_RECIPIENT
        try:
            recipient = await as_future(envelope.delivery.add_recipient(address), server.loop)
        except asyncio.CancelledError:
            raise
        except errors.StoreError as err:
            reply = replies.rcpt_error(err, address)
        except Exception:
            log.exception("%s: RCPT from %s: add_recipient(%r) failed", qid, peer_name(session.peer), address)
            reply = replies.rcpt_error(errors.TemporaryFailure(), address)
        else:
            envelope.rcpt_tos.append(address)
            envelope.rcpt_options.extend(rcpt_options)
            envelope.recipients.append(recipient)
            return f"250 2.1.5 <{address}> Ok"
        log.info("%s: reject: RCPT from %s: %s; from=<%s> to=<%s>", qid, peer_name(session.peer), reply,
                 _reverse_path(envelope.mail_from), address)
        return reply

    # -- DATA ------------------------------------------------------------------------------
    def data_prefix(self, server, session, envelope) -> bytes:
        """Return-Path and one Received: line, without "for <recipient>": one blob for all.
        They start the message as DATA is read (gateways/common/smtpserver.py), so a big
        message goes to its spool with them and is never copied to prepend them."""
        protocol = with_protocol(tls=False, auth=False, utf8=envelope.smtp_utf8, lmtp=True)
        return (return_path(_reverse_path(envelope.mail_from))
                + received_header(helo=session.host_name, peer=session.peer, hostname=self.hostname,
                                  queue_id=envelope.queue_id, protocol=protocol))

    async def handle_DATA(self, server, session, envelope) -> List[str]:
        """One reply per accepted recipient, in RCPT order (RFC 2033 §4.2)."""
        addresses = list(envelope.rcpt_tos)
        if envelope.too_big:
            answer = [replies.delivery_error(errors.TooBig(), a) for a in addresses]
            self._log(envelope, session, envelope.data_size, answer)
            return answer

        raw = envelope.content  # bytes, or the spool file of a big message (data_prefix first)
        size = envelope.message_size
        envelope.content = envelope.original_content = None  # one copy in memory is enough
        commit = None
        try:
            commit = as_future(envelope.delivery.commit(raw), server.loop)
            del raw
            # the spool stays open until the commit is over, which may be after we return
            envelope.keep_content()
            commit.add_done_callback(lambda _f: envelope.release_content())
            # The commit runs to its end even if the client goes away meanwhile: a message is
            # either delivered or not, never cut off halfway by a disconnect.
            results = await asyncio.shield(commit)
        except asyncio.CancelledError:
            if commit is not None:
                commit.add_done_callback(lambda f: self._log_orphan(f, envelope, session, size))
            raise
        except errors.StoreError as err:
            log.warning("%s: commit failed: %s: %s", envelope.queue_id, type(err).__name__, err)
            answer = [replies.commit_error(err, a) for a in addresses]
            results = None
        except Exception:
            log.exception("%s: commit failed", envelope.queue_id)
            answer = [replies.commit_error(RuntimeError(), a) for a in addresses]
            results = None
        else:
            answer = self._answer(envelope, addresses, results)
        self._log(envelope, session, size, answer, results)
        return answer

    def _answer(self, envelope, addresses: List[str], results) -> List[str]:
        if not isinstance(results, list) or len(results) != len(addresses):
            # Which recipient got what is unknown: all retry (duplicates beat losses).
            log.error("%s: commit returned %r for %d recipients", envelope.queue_id, results,
                      len(addresses))
            return [replies.commit_error(RuntimeError(), a) for a in addresses]
        return [replies.delivered(a, envelope.queue_id) if r.error is None
                else replies.delivery_error(r.error, a, self.over_quota_temporary)
                for a, r in zip(addresses, results)]

    # -- logging: one line per recipient per delivery, like Postfix and Dovecot ------------
    def _log(self, envelope, session, size: int, answer: List[str], results=None) -> None:
        for i, (address, reply) in enumerate(zip(envelope.rcpt_tos, answer)):
            recipient = envelope.recipients[i] if i < len(envelope.recipients) else None
            result = results[i] if isinstance(results, list) and i < len(results) else None
            status = ("delivered" if reply.startswith("2") else
                      "deferred" if reply.startswith("4") else "bounced")
            where = (f", folder={result.folder}, uid={result.uid}"
                     if result is not None and result.error is None else "")
            if result is not None and result.actions:
                where += f", rules=[{'; '.join(result.actions)}]"
            log.info("%s: from=<%s>, to=<%s>, orig_to=<%s>, size=%d, peer=%s%s, status=%s (%s)",
                     envelope.queue_id, _reverse_path(envelope.mail_from),
                     recipient.address if recipient else address, address, size, peer_name(session.peer),
                     where, status, reply)

    def _log_orphan(self, future: asyncio.Future, envelope, session, size: int) -> None:
        """The client left during commit: log what became of the message all the same."""
        if future.cancelled():
            outcome = "cancelled"
        elif future.exception() is not None:
            outcome = f"failed ({type(future.exception()).__name__}: {future.exception()})"
        else:
            outcome = "committed"
        log.warning("%s: client %s disconnected before the replies; commit %s (size=%d, "
                    "%d recipients); the MTA will retry", envelope.queue_id, peer_name(session.peer),
                    outcome, size, len(envelope.rcpt_tos))
