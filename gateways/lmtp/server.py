"""The LMTP protocol engine: aiosmtpd's :class:`~aiosmtpd.lmtp.LMTP` with what RFC 2033 and
Haven need on top.  Store work happens in the handler (:mod:`gateways.lmtp.handler`); this
module only speaks the protocol.

What it shares with the submission gateway (the DATA reader, enhanced status codes on every
reply, the LHLO keywords, per-connection command limits, SIZE checked by the handler) is in
:class:`gateways.common.smtpserver.SMTPServerBase`, whose docstring says what that changes from
aiosmtpd 1.4.6 and why.  What is LMTP's own:

* ``LHLO`` advertises PIPELINING, ENHANCEDSTATUSCODES, 8BITMIME, SMTPUTF8 and SIZE, nothing else
  (aiosmtpd would offer AUTH without TLS when configured so).  ``HELO``/``EHLO`` are refused
  with 500 (RFC 2033 §4.1), ``AUTH`` with 502.
* After ``DATA`` the handler's ``handle_DATA`` returns a list with exactly one reply per
  accepted RCPT, in RCPT order (RFC 2033 §4.2), which is enforced: a handler that fails or
  breaks that contract gives every recipient ``451 4.3.0``.  aiosmtpd's own DATA sends one
  reply, and one for an oversized message too, which puts an LMTP client out of step.
"""

from __future__ import annotations

import asyncio
import logging
from typing import List, Optional

from aiosmtpd.lmtp import LMTP
from aiosmtpd.smtp import syntax

from gateways.lmtp import replies
from gateways.common.smtpserver import SMTPEnvelope, SMTPServerBase

log = logging.getLogger("haven.lmtp")


class LMTPEnvelope(SMTPEnvelope):
    """The transaction state of one MAIL ... DATA.

    ``recipients[i]`` is the :class:`~store.interfaces.Recipient` the store resolved for
    ``rcpt_tos[i]``; both hold only accepted recipients, in RCPT order.
    """

    def __init__(self) -> None:
        super().__init__()
        self.recipients: list = []


class LMTPServer(SMTPServerBase, LMTP):
    """One LMTP connection.  ``handler`` implements ``handle_MAIL``, ``handle_RCPT`` and
    ``handle_DATA(server, session, envelope) -> list[str]`` (one reply per ``rcpt_tos``)."""

    logger = log

    def __init__(self, handler, *, hostname: str, max_message_size: Optional[int], timeout: float = 300,
                 loop: Optional[asyncio.AbstractEventLoop] = None, spool_dir: Optional[str] = None):
        super().__init__(handler, hostname=hostname, ident="Haven LMTP", max_message_size=max_message_size,
                         spool_dir=spool_dir, timeout=timeout, auth_exclude_mechanism=("LOGIN", "PLAIN"), loop=loop)

    def _create_envelope(self) -> LMTPEnvelope:
        return LMTPEnvelope()

    # -- greeting --------------------------------------------------------------------------
    async def check_helo_needed(self, helo: str = "LHLO") -> bool:
        if not self.session.host_name:
            await self.push(replies.NEED_LHLO)
            return True
        return False

    @syntax("LHLO hostname")
    async def smtp_LHLO(self, arg: Optional[str]) -> None:
        await self.greet("LHLO", arg)

    async def smtp_HELO(self, arg: Optional[str]) -> None:
        await self.push(replies.NO_HELO.format("HELO"))  # RFC 2033 §4.1

    async def smtp_EHLO(self, arg: Optional[str]) -> None:
        await self.push(replies.NO_HELO.format("EHLO"))

    async def smtp_AUTH(self, arg: Optional[str]) -> None:
        await self.push(replies.NO_AUTH)

    # -- DATA ------------------------------------------------------------------------------
    def data_replies(self, answer, addresses: List[str]) -> List[str]:
        # RFC 2033 §4.2: exactly one reply per accepted RCPT, in RCPT order.
        if (not isinstance(answer, list) or len(answer) != len(addresses)
                or not all(isinstance(a, str) for a in answer)):
            raise TypeError(f"handle_DATA must return {len(addresses)} replies, got {answer!r}")
        return answer

    def data_failed(self, addresses: List[str]) -> List[str]:
        return [replies.commit_error(RuntimeError(), a) for a in addresses]
