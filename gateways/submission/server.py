"""The submission protocol engine: aiosmtpd's :class:`~aiosmtpd.smtp.SMTP` with what RFC 6409,
RFC 4954, RFC 3207 and Haven need on top.  Store work happens in the handler
(:mod:`gateways.submission.handler`); this module only speaks the protocol.

What is changed from aiosmtpd 1.4.6, and why:

* ``EHLO`` is ours: PIPELINING, 8BITMIME, SMTPUTF8, ENHANCEDSTATUSCODES, SIZE, STARTTLS (plain
  port, before TLS) and ``AUTH PLAIN LOGIN`` only where AUTH is allowed (TLS, or plaintext by
  ``allow_plaintext_auth``).  aiosmtpd would not offer AUTH on an implicit-TLS socket (it only
  knows its own STARTTLS), always adds HELP and grows the MAIL line limit on every EHLO.
* ``AUTH`` is ours: aiosmtpd's authenticator hook is synchronous, and the portal's check is not
  (hashing in the CPU pool, the failure delay): the handler awaits the portal on the loop.
  RFC 4954: 538 before TLS, 503 when already authenticated or inside a transaction, 535 on any
  failure, an ``authzid`` other than the login refused (no proxy authorization).
* MAIL, RCPT, DATA, VRFY and HELP need AUTH: ``530 5.7.0`` (aiosmtpd's ``auth_required``, set
  after construction to skip its warning, which is about AUTH without TLS; our AUTH gate is
  stricter than its one).
* ``DATA`` is reimplemented as in the LMTP gateway: aiosmtpd's reader answers ``500`` to lines
  over 1000 octets (real mail has them) and keeps bare LFs; ours decodes the stream with
  :class:`~gateways.submission.wire.DataDecoder` (no SMTP smuggling, bounded memory).
* ``STARTTLS`` when TLS is already on (a second STARTTLS, or on the implicit-TLS port) is a
  ``503``; aiosmtpd would start a second handshake.  Pipelined plaintext after STARTTLS is
  discarded (aiosmtpd clears its buffer after the handshake, RFC 3207 §4.2 / CVE-2011-0411).
* Every 2xx/4xx/5xx reply carries an RFC 2034 enhanced status code.
"""

from __future__ import annotations

import asyncio
import binascii
import collections
import logging
import secrets
from base64 import b64decode
from typing import List, Optional

from aiosmtpd.smtp import MISSING, SMTP, Envelope, TLSSetupException, syntax

from gateways.submission import replies
from gateways.submission.settings import SubmissionSettings
from gateways.submission.wire import DataDecoder, is_loopback, with_enhanced_code

log = logging.getLogger("haven.submission")

#: RFC 5321 §4.5.3.1.4 gives 512 octets per command line; RFC 1870 §3 adds 26 for SIZE=,
#: RFC 6531 §3.4 10 for SMTPUTF8, RFC 6152 BODY=8BITMIME is 14 more.
COMMAND_SIZE_LIMITS = {"MAIL": 512 + 26 + 10 + 14, "RCPT": 512, "AUTH": 1024}

#: reset the idle timer after this much DATA: a long upload is not an idle client
_TIMEOUT_RESET_BYTES = 1 << 20


def new_queue_id() -> str:
    """An id naming one transaction in the logs, the Received: header and the 250 reply."""
    return secrets.token_hex(6).upper()


class SubmissionEnvelope(Envelope):
    """aiosmtpd's envelope plus the state of one MAIL ... DATA.

    ``local`` holds the :class:`~store.interfaces.Recipient` of every accepted local RCPT (in
    order, already added to ``delivery``); ``remote`` the distinct accepted remote addresses.
    """

    def __init__(self) -> None:
        super().__init__()
        self.queue_id = new_queue_id()
        self.delivery = None  # store.interfaces.Delivery, set at MAIL FROM
        self.local: list = []
        self.remote: List[str] = []
        self.data_size = 0
        self.too_big = False


class SubmissionServer(SMTP):
    """One submission connection.  ``handler`` implements ``authenticate``, ``handle_MAIL``,
    ``handle_RCPT`` and ``handle_DATA(server, session, envelope) -> str``."""

    def __init__(self, handler, *, hostname: str, settings: SubmissionSettings, tls_context=None,
                 implicit_tls: bool = False, loop: Optional[asyncio.AbstractEventLoop] = None):
        super().__init__(
            handler,
            hostname=hostname,
            ident="Haven ESMTP",  # no version on the wire
            data_size_limit=None,  # SIZE is ours (5.3.4 at MAIL and after DATA)
            enable_SMTPUTF8=True,
            decode_data=False,  # 8BITMIME: the body stays bytes from socket to blob
            tls_context=None if implicit_tls else tls_context,
            timeout=settings.timeout,
            loop=loop,
        )
        self._auth_required = True
        self.settings = settings
        self.implicit_tls = implicit_tls
        self.max_message_size = settings.max_message_size
        self.command_size_limits = collections.defaultdict(
            lambda: self.command_size_limit, COMMAND_SIZE_LIMITS)

    def _create_envelope(self) -> SubmissionEnvelope:
        return SubmissionEnvelope()

    # -- state -----------------------------------------------------------------------------
    @property
    def tls_active(self) -> bool:
        return self.implicit_tls or self._tls_protocol is not None

    @property
    def auth_allowed(self) -> bool:
        """RFC 4954 §4 / RFC 8314: credentials only over TLS, unless the admin allowed plaintext
        (``yes``: anywhere; ``loopback``, the default: from 127.0.0.0/8 and ::1)."""
        policy = self.settings.allow_plaintext_auth
        return self.tls_active or policy == "yes" or (policy == "loopback" and is_loopback(self.session.peer))

    @property
    def account(self):
        """The logged-in :class:`store.interfaces.Account`, or None."""
        return self.session.auth_data if self.session and self.session.authenticated else None

    # -- replies ---------------------------------------------------------------------------
    async def push(self, status) -> None:
        if isinstance(status, str):
            status = with_enhanced_code(status).encode("utf-8", "backslashreplace")
        await super().push(status)

    async def _push_lines(self, lines: List[str]) -> None:
        """Several replies (or a multi-line one) with one flush."""
        for line in lines:
            self._writer.write(line.encode("utf-8", "backslashreplace") + b"\r\n")
        await self._writer.drain()

    async def handle_exception(self, error: Exception) -> str:
        if isinstance(error, TLSSetupException):
            # The client gave up the STARTTLS handshake (aiosmtpd closes the connection and
            # sends nothing): a client problem, not ours.
            log.info("%s: STARTTLS handshake failed: %r", _peer(self.session), error.__cause__)
            return replies.TLS_UNAVAILABLE
        # A bug, not a client error: keep the traceback in the log, give the client a 4xx so it
        # retries, and drop the connection since the session state is unknown.
        log.exception("%r submission session error", self.session.peer if self.session else None)
        if self.transport is not None:
            self.loop.call_soon(self.transport.close)
        return replies.INTERNAL.format(self.hostname)

    # -- greeting --------------------------------------------------------------------------
    @syntax("EHLO hostname")
    async def smtp_EHLO(self, arg: Optional[str]) -> None:
        if not arg:
            await self.push("501 5.5.4 Syntax: EHLO hostname")
            return
        # RFC 5321 §4.1.4: a new greeting resets the transaction (not the authentication).
        self._set_rset_state()
        self.session.extended_smtp = True
        self.session.host_name = arg
        keywords = [
            self.hostname,
            "PIPELINING",  # RFC 2920
            "8BITMIME",  # RFC 6152
            "SMTPUTF8",  # RFC 6531
            "ENHANCEDSTATUSCODES",  # RFC 2034
            f"SIZE {self.max_message_size or 0}",  # RFC 1870: 0 means no fixed maximum
        ]
        if self.tls_context is not None and not self.tls_active:
            keywords.append("STARTTLS")  # RFC 3207
        if self.auth_allowed:
            keywords.append("AUTH PLAIN LOGIN")  # RFC 4954
        # RFC 2034 §3: the EHLO reply is the one 250 without an enhanced code.
        await self._push_lines([f"250-{k}" for k in keywords[:-1]] + [f"250 {keywords[-1]}"])

    @syntax("STARTTLS", when="tls_context")
    async def smtp_STARTTLS(self, arg: Optional[str]) -> None:
        if self.tls_active:
            await self.push(replies.TLS_ACTIVE)
            return
        if self.tls_context is None:
            await self.push(replies.TLS_UNAVAILABLE)
            return
        await super().smtp_STARTTLS(arg)

    # -- AUTH (RFC 4954) -------------------------------------------------------------------
    @syntax("AUTH <mechanism>")
    async def smtp_AUTH(self, arg: Optional[str]) -> None:
        session = self.session
        if not session.host_name or not session.extended_smtp:
            await self.push(replies.AUTH_NEEDS_EHLO)
            return
        if not self.auth_allowed:
            log.info("AUTH from %s refused before TLS", _peer(session))
            await self.push(replies.AUTH_NEEDS_TLS)
            return
        if session.authenticated:
            await self.push(replies.AUTH_ALREADY)
            return
        if self.envelope.mail_from:
            await self.push(replies.AUTH_IN_TRANSACTION)
            return
        args = (arg or "").split()
        if not args or len(args) > 2:
            await self.push("501 5.5.4 Syntax: AUTH mechanism [initial-response]")
            return
        mechanism = args[0].upper()
        if mechanism == "PLAIN":
            creds = await self._auth_plain(args[1] if len(args) > 1 else None)
        elif mechanism == "LOGIN":
            creds = await self._auth_login(args[1] if len(args) > 1 else None)
        else:
            await self.push(replies.AUTH_UNKNOWN_MECH)
            return
        if creds is None:
            return  # refused or cancelled; the reply was sent
        login, password = creds
        account = await self.event_handler.authenticate(self, login, password, mechanism)
        if account is None:
            await self.push(replies.AUTH_INVALID)
            return
        session.authenticated = True
        session.auth_data = account
        await self.push(replies.AUTH_OK)

    async def _response(self, initial: Optional[str], challenge: str) -> Optional[bytes]:
        """The client's base64 response: the initial response when given ("=" is empty,
        RFC 4954 §4), else an answer to a ``334`` challenge.  None when it was cancelled or
        malformed (the 501 was sent)."""
        if initial is None:
            answer = await self.challenge_auth(challenge)
            return None if answer is MISSING else answer
        if initial == "=":
            return b""
        try:
            return b64decode(initial.encode("ascii", "replace"), validate=True)
        except (binascii.Error, ValueError):
            await self.push("501 5.5.2 Cannot decode base64")
            return None

    async def _auth_plain(self, initial: Optional[str]):
        data = await self._response(initial, "")
        if data is None:
            return None
        parts = data.split(b"\0")
        if len(parts) != 3:
            await self.push("501 5.5.2 Cannot parse the PLAIN response")
            return None
        authzid, login, password = parts
        if authzid and authzid != login:  # RFC 4616 §2: no proxy authorization here
            await self.push(replies.AUTH_INVALID)
            return None
        return self._decoded(login, password)

    async def _auth_login(self, initial: Optional[str]):
        login = await self._response(initial, "Username:")
        if login is None:
            return None
        password = await self._response(None, "Password:")
        if password is None:
            return None
        return self._decoded(login, password)

    @staticmethod
    def _decoded(login: bytes, password: bytes):
        try:
            return login.decode("utf-8"), password.decode("utf-8")
        except UnicodeDecodeError:
            return login.decode("utf-8", "replace"), password.decode("utf-8", "replace")

    # -- DATA ------------------------------------------------------------------------------
    @syntax("DATA")
    async def smtp_DATA(self, arg: Optional[str]) -> None:
        if await self.check_helo_needed():
            return
        if await self.check_auth_needed("DATA"):
            return
        envelope: SubmissionEnvelope = self.envelope
        if not envelope.rcpt_tos:
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
        try:
            answer = await self._call_handler_hook("DATA")
            if answer is MISSING or not isinstance(answer, str):
                raise TypeError(f"handle_DATA must return one reply, got {answer!r}")
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("%s: DATA handler failed", envelope.queue_id)
            answer = replies.TEMPFAIL
        finally:
            self._set_post_data_state()
        await self.push(answer)

    async def _read_data(self, decoder: DataDecoder) -> None:
        """Feed the DATA stream to ``decoder`` until its end marker: reads up to and including
        the next "." CRLF, so nothing after the end marker (pipelined commands) is consumed."""
        since_reset = 0
        while True:
            try:
                chunk = await self._reader.readuntil(b".\r\n")
            except asyncio.LimitOverrunError as overrun:
                chunk = await self._reader.read(overrun.consumed)
            except asyncio.IncompleteReadError as eof:
                raise ConnectionResetError("connection closed during DATA") from eof
            rest = decoder.feed(chunk)
            if rest is not None:
                if rest:  # cannot happen, see above; never act on such bytes
                    log.error("%r %d octets after the end of DATA dropped", self.session.peer, len(rest))
                return
            since_reset += len(chunk)
            if since_reset >= _TIMEOUT_RESET_BYTES:
                self._reset_timeout()
                since_reset = 0


def _peer(session) -> str:
    peer = getattr(session, "peer", None)
    if isinstance(peer, (tuple, list)) and peer:
        return str(peer[0])
    return "unknown"
