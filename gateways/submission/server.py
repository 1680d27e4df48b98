"""The submission protocol engine: aiosmtpd's :class:`~aiosmtpd.smtp.SMTP` with what RFC 6409,
RFC 4954, RFC 3207 and Haven need on top.  Store work happens in the handler
(:mod:`gateways.submission.handler`); this module only speaks the protocol.

What it shares with the LMTP gateway (the DATA reader, enhanced status codes on every reply,
the EHLO keywords, per-connection command limits, SIZE checked by the handler) is in
:class:`gateways.common.smtpserver.SMTPServerBase`, whose docstring says what that changes from
aiosmtpd 1.4.6 and why.  What is submission's own:

* ``EHLO`` adds STARTTLS (plain port, before TLS) and ``AUTH PLAIN LOGIN`` only where AUTH is
  allowed (TLS, or plaintext by ``allow_plaintext_auth``).  aiosmtpd would not offer AUTH on an
  implicit-TLS socket (it only knows its own STARTTLS).
* ``AUTH`` is ours: aiosmtpd's authenticator hook is synchronous, and the portal's check is not
  (hashing in the CPU pool, the failure delay): the handler awaits the portal on the loop.
  RFC 4954: 538 before TLS, 503 when already authenticated or inside a transaction, 535 on any
  failure, an ``authzid`` other than the login refused (no proxy authorization).
* MAIL, RCPT, DATA, VRFY and HELP need AUTH: ``530 5.7.0`` (aiosmtpd's ``auth_required``, set
  after construction to skip its warning, which is about AUTH without TLS; our AUTH gate is
  stricter than its one).
* After ``DATA`` the handler's ``handle_DATA`` returns one reply for the whole message; a
  handler that fails or breaks that contract gives ``451 4.3.0``.
* ``STARTTLS`` when TLS is already on (a second STARTTLS, or on the implicit-TLS port) is a
  ``503``; aiosmtpd would start a second handshake.  Pipelined plaintext after STARTTLS is
  discarded (aiosmtpd clears its buffer after the handshake, RFC 3207 §4.2 / CVE-2011-0411).
"""

from __future__ import annotations

import asyncio
import binascii
import logging
from base64 import b64decode
from typing import List, Optional

from aiosmtpd.smtp import MISSING, TLSSetupException, syntax

from auth.cred import LoginUnavailable
from gateways.common.plaintext import plaintext_allowed
from gateways.common.smtpserver import COMMAND_SIZE_LIMITS, SMTPEnvelope, SMTPServerBase
from gateways.common.smtpwire import peer_name
from gateways.submission import replies
from gateways.submission.settings import SubmissionSettings
from gateways.submission.wire import is_loopback

log = logging.getLogger("haven.submission")


class SubmissionEnvelope(SMTPEnvelope):
    """The state of one MAIL ... DATA.

    ``submission`` is the store's :class:`~store.interfaces.Submission`, begun at MAIL FROM;
    it keeps the accepted recipients (local and remote) itself.
    """

    def __init__(self) -> None:
        super().__init__()
        self.submission = None  # store.interfaces.Submission, begun at MAIL FROM


class SubmissionServer(SMTPServerBase):
    """One submission connection.  ``handler`` implements ``authenticate``, ``handle_MAIL``,
    ``handle_RCPT`` and ``handle_DATA(server, session, envelope) -> str``."""

    logger = log
    command_limits = {**COMMAND_SIZE_LIMITS, "AUTH": 1024}

    def __init__(self, handler, *, hostname: str, settings: SubmissionSettings, tls_context=None,
                 implicit_tls: bool = False, loop: Optional[asyncio.AbstractEventLoop] = None,
                 spool_dir: Optional[str] = None):
        super().__init__(handler, hostname=hostname, ident="Haven ESMTP", max_message_size=settings.max_message_size,
                         spool_dir=spool_dir,
                         tls_context=None if implicit_tls else tls_context, timeout=settings.timeout, loop=loop)
        self._auth_required = True
        self.settings = settings
        self.implicit_tls = implicit_tls

    def _create_envelope(self) -> SubmissionEnvelope:
        return SubmissionEnvelope()

    # -- state -----------------------------------------------------------------------------
    @property
    def tls_active(self) -> bool:
        return self.implicit_tls or self._tls_protocol is not None

    @property
    def auth_allowed(self) -> bool:
        """RFC 4954 §4 / RFC 8314: credentials only over TLS, unless the admin allowed plaintext
        (``yes``: anywhere; ``loopback``, the default: from 127.0.0.0/8 and ::1).  Behind a
        trusted proxy the peer is the real client, and a PROXY v2 header may vouch for its TLS."""
        return plaintext_allowed(self.settings.allow_plaintext_auth, self.tls_active or self.proxied_tls,
                                 is_loopback(self.session.peer))

    @property
    def account(self):
        """The logged-in :class:`store.interfaces.Account`, or None."""
        return self.session.auth_data if self.session and self.session.authenticated else None

    # -- errors ----------------------------------------------------------------------------
    async def handle_exception(self, error: Exception) -> str:
        if isinstance(error, TLSSetupException):
            # The client gave up the STARTTLS handshake (aiosmtpd closes the connection and
            # sends nothing): a client problem, not ours.
            log.info("%s: STARTTLS handshake failed: %r", peer_name(getattr(self.session, "peer", None)),
                     error.__cause__)
            return replies.TLS_UNAVAILABLE
        return await super().handle_exception(error)

    # -- greeting --------------------------------------------------------------------------
    @syntax("EHLO hostname")
    async def smtp_EHLO(self, arg: Optional[str]) -> None:
        extensions = []
        if self.tls_context is not None and not self.tls_active:
            extensions.append("STARTTLS")  # RFC 3207
        if self.auth_allowed:
            extensions.append("AUTH PLAIN LOGIN")  # RFC 4954
        await self.greet("EHLO", arg, extensions)

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
            log.info("AUTH from %s refused before TLS", peer_name(session.peer))
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
        try:
            account = await self.event_handler.authenticate(self, login, password, mechanism)
        except LoginUnavailable:  # RFC 4954 §6: 454 4.7.0, the client keeps the password and retries
            await self.push(replies.AUTH_TEMPFAIL)
            return
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
    def data_replies(self, answer, addresses: List[str]) -> List[str]:
        if not isinstance(answer, str):
            raise TypeError(f"handle_DATA must return one reply, got {answer!r}")
        return [answer]

    def data_failed(self, addresses: List[str]) -> List[str]:
        return [replies.TEMPFAIL]
