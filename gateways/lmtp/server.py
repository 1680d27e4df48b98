"""The LMTP protocol engine: aiosmtpd's :class:`~aiosmtpd.lmtp.LMTP` with what RFC 2033 and
Haven need on top.  Store work happens in the handler (:mod:`gateways.lmtp.handler`); this
module only speaks the protocol.

What is changed from aiosmtpd 1.4.6, and why:

* ``LHLO`` advertises PIPELINING, ENHANCEDSTATUSCODES, 8BITMIME, SMTPUTF8 and SIZE (aiosmtpd
  lacks the first two, always adds ``HELP`` and would offer AUTH without TLS when configured
  so).  ``HELO``/``EHLO`` are refused with 500 (RFC 2033 §4.1), ``AUTH`` with 502.
* Every 2xx/4xx/5xx reply after LHLO carries an RFC 2034 enhanced status code: :meth:`push` adds
  the default one to aiosmtpd's own replies, which have none.
* ``DATA`` is reimplemented (:meth:`smtp_DATA`): aiosmtpd's version sends one reply, where
  RFC 2033 §4.2 wants one per accepted recipient; answers ``500`` to any line over 1000 octets
  (real mail has them; Postfix and Dovecot accept them); and keeps bare LFs as they are.  Here
  the stream is decoded by :class:`~gateways.lmtp.wire.DataDecoder` and the handler's
  ``handle_DATA`` returns a list with exactly one reply per accepted RCPT, which is enforced.
* SIZE is checked by the handler, not aiosmtpd (``data_size_limit=None``) so that the refusal at
  MAIL carries ``5.3.4``.
* ``command_size_limits`` is per connection: aiosmtpd keeps it on the class and grows the MAIL
  limit by 26 octets on every EHLO of every connection.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import secrets
from typing import List, Optional

from aiosmtpd.lmtp import LMTP
from aiosmtpd.smtp import MISSING, Envelope, syntax

from gateways.lmtp import replies
from gateways.lmtp.wire import DataDecoder, with_enhanced_code

log = logging.getLogger("haven.lmtp")

#: RFC 5321 §4.5.3.1.4 gives 512 octets per command line; RFC 1870 §3 adds 26 for SIZE=,
#: RFC 6531 §3.4 10 for SMTPUTF8, RFC 6152 BODY=8BITMIME is 14 more.
COMMAND_SIZE_LIMITS = {"MAIL": 512 + 26 + 10 + 14, "RCPT": 512}

#: reset the idle timer after this much DATA: a long upload is not an idle client
_TIMEOUT_RESET_BYTES = 1 << 20


def new_queue_id() -> str:
    """An id naming one transaction in the logs, the Received: header and the 250 replies."""
    return secrets.token_hex(6).upper()


class LMTPEnvelope(Envelope):
    """aiosmtpd's envelope plus the transaction state of one MAIL ... DATA.

    ``recipients[i]`` is the :class:`~store.interfaces.Recipient` the store resolved for
    ``rcpt_tos[i]``; both hold only accepted recipients, in RCPT order.
    """

    def __init__(self) -> None:
        super().__init__()
        self.queue_id = new_queue_id()
        self.delivery = None  # store.interfaces.Delivery, set at MAIL FROM
        self.recipients: list = []
        self.data_size = 0  # decoded octets received in DATA
        self.too_big = False  # DATA went over max_message_size (content then empty)


class LMTPServer(LMTP):
    """One LMTP connection.  ``handler`` implements ``handle_MAIL``, ``handle_RCPT`` and
    ``handle_DATA(server, session, envelope) -> list[str]`` (one reply per ``rcpt_tos``)."""

    def __init__(self, handler, *, hostname: str, max_message_size: Optional[int],
                 timeout: float = 300, loop: Optional[asyncio.AbstractEventLoop] = None):
        super().__init__(
            handler,
            hostname=hostname,
            ident="Haven LMTP",  # no version on the wire
            data_size_limit=None,  # SIZE is ours (5.3.4 at MAIL, per-recipient 552 at DATA)
            enable_SMTPUTF8=True,
            decode_data=False,  # 8BITMIME: the body stays bytes from socket to blob
            timeout=timeout,
            auth_exclude_mechanism=("LOGIN", "PLAIN"),
            loop=loop,
        )
        self.command_size_limits = collections.defaultdict(
            lambda: self.command_size_limit, COMMAND_SIZE_LIMITS)
        self.max_message_size = max_message_size or None

    def _create_envelope(self) -> LMTPEnvelope:
        return LMTPEnvelope()

    # -- replies ---------------------------------------------------------------------------
    async def push(self, status) -> None:
        if isinstance(status, str):
            # Replies may echo an address that came in as non-UTF-8 (surrogate-escaped):
            # never send those octets back raw.
            status = with_enhanced_code(status).encode("utf-8", "backslashreplace")
        await super().push(status)

    async def _push_lines(self, lines: List[str]) -> None:
        """Write several replies with one flush (LHLO, the per-recipient replies of DATA)."""
        for line in lines:
            self._writer.write(line.encode("utf-8", "backslashreplace") + b"\r\n")
        log.debug("%r << %r", self.session.peer, lines)
        await self._writer.drain()

    async def handle_exception(self, error: Exception) -> str:
        # A bug, not a client error: keep the traceback in the log, give the client a 4xx so
        # the MTA retries, and drop the connection since the session state is unknown.
        log.exception("%r LMTP session error", self.session.peer if self.session else None)
        if self.transport is not None:
            self.loop.call_soon(self.transport.close)
        return replies.INTERNAL.format(self.hostname)

    # -- greeting --------------------------------------------------------------------------
    async def check_helo_needed(self, helo: str = "LHLO") -> bool:
        if not self.session.host_name:
            await self.push(replies.NEED_LHLO)
            return True
        return False

    @syntax("LHLO hostname")
    async def smtp_LHLO(self, arg: Optional[str]) -> None:
        if not arg:
            await self.push("501 5.5.4 Syntax: LHLO hostname")
            return
        # RFC 5321 §4.1.4: a new greeting resets the transaction.
        self._set_rset_state()
        self.session.extended_smtp = True
        self.session.host_name = arg
        keywords = [
            self.hostname,
            "PIPELINING",  # RFC 2920
            "ENHANCEDSTATUSCODES",  # RFC 2034
            "8BITMIME",  # RFC 6152
            "SMTPUTF8",  # RFC 6531
            f"SIZE {self.max_message_size or 0}",  # RFC 1870: 0 means no fixed maximum
        ]
        # RFC 2034 §3: the LHLO reply is the one 250 without an enhanced code.
        await self._push_lines([f"250-{k}" for k in keywords[:-1]] + [f"250 {keywords[-1]}"])

    async def smtp_HELO(self, arg: Optional[str]) -> None:
        await self.push(replies.NO_HELO.format("HELO"))  # RFC 2033 §4.1

    async def smtp_EHLO(self, arg: Optional[str]) -> None:
        await self.push(replies.NO_HELO.format("EHLO"))

    async def smtp_AUTH(self, arg: Optional[str]) -> None:
        await self.push(replies.NO_AUTH)

    # -- DATA ------------------------------------------------------------------------------
    @syntax("DATA")
    async def smtp_DATA(self, arg: Optional[str]) -> None:
        if await self.check_helo_needed():
            return
        envelope: LMTPEnvelope = self.envelope
        if not envelope.rcpt_tos:
            # RFC 2033 §4.2: no accepted recipient, no DATA.
            await self.push(replies.NO_VALID_RECIPIENTS)
            return
        if arg:
            await self.push("501 5.5.4 Syntax: DATA")
            return
        await self.push("354 End data with <CR><LF>.<CR><LF>")
        decoder = DataDecoder(self.max_message_size)
        await self._read_data(decoder)
        envelope.content = envelope.original_content = decoder.content()
        envelope.data_size = decoder.size
        envelope.too_big = decoder.too_big

        addresses = list(envelope.rcpt_tos)
        try:
            answer = await self._call_handler_hook("DATA")
            if (answer is MISSING or not isinstance(answer, list) or len(answer) != len(addresses)
                    or not all(isinstance(a, str) for a in answer)):
                raise TypeError(f"handle_DATA must return {len(addresses)} replies, got {answer!r}")
        except Exception:
            log.exception("%s: DATA handler failed", envelope.queue_id)
            answer = [replies.commit_error(RuntimeError(), a) for a in addresses]
        finally:
            self._set_post_data_state()
        # RFC 2033 §4.2: exactly one reply per accepted RCPT, in RCPT order.
        await self._push_lines([with_enhanced_code(a) for a in answer])

    async def _read_data(self, decoder: DataDecoder) -> None:
        """Feed the DATA stream to ``decoder`` until its end marker.

        Reads up to and including the next ``"." CRLF`` (``readuntil``), or, past the reader's
        limit, what can be consumed without splitting one (``read(consumed)``).  The end marker
        CRLF "." CRLF (or "." CRLF as the first line) always ends with "." CRLF, so it is
        always the end of a read and nothing after it (pipelined commands) is consumed here;
        the decoder decides which "." CRLF is the end.  Reads are many lines long, not one.
        """
        since_reset = 0
        while True:
            try:
                chunk = await self._reader.readuntil(b".\r\n")
            except asyncio.LimitOverrunError as overrun:
                chunk = await self._reader.read(overrun.consumed)
            except asyncio.IncompleteReadError as eof:  # eof_received normally cancels us first
                raise ConnectionResetError("connection closed during DATA") from eof
            rest = decoder.feed(chunk)
            if rest is not None:
                if rest:  # cannot happen, see above; never act on such bytes
                    log.error("%r %d octets after the end of DATA dropped",
                              self.session.peer, len(rest))
                return
            since_reset += len(chunk)
            if since_reset >= _TIMEOUT_RESET_BYTES:
                self._reset_timeout()
                since_reset = 0
