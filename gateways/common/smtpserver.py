"""What the LMTP and submission protocol engines share: aiosmtpd's :class:`~aiosmtpd.smtp.SMTP`
with Haven's DATA reader, greeting and reply plumbing.  Each gateway subclasses
:class:`SMTPServerBase` (the LMTP one together with :class:`aiosmtpd.lmtp.LMTP`) and keeps what
is its own: LMTP the per-recipient replies after DATA (RFC 2033 §4.2), submission AUTH and
STARTTLS.  Neither gateway imports the other; this module imports no gateway but
:mod:`gateways.common.smtpwire`, and nothing of the store.

What is changed from aiosmtpd 1.4.6, for both gateways, and why:

* ``DATA`` is reimplemented (:meth:`SMTPServerBase.smtp_DATA`): aiosmtpd's reader answers ``500``
  to any line over 1000 octets (real mail has them; Postfix and Dovecot accept them), keeps bare
  LFs as they are, and answers an oversized message with a single reply whatever the number of
  recipients, which puts an LMTP client out of step.  Here the stream is decoded by
  :class:`~gateways.common.smtpwire.DataDecoder` (only CRLF "." CRLF ends it, no SMTP smuggling; bare
  LF stored as CRLF; lines of any length; at most 256 KiB (:data:`SPOOL_AT`) held in memory, the
  rest of a bigger message written to a spool file (gateways/common/spool.py) as it arrives, the
  reading waiting for the spool to have room; over ``max_message_size`` nothing more is kept and
  the message is read to its end and discarded), and the subclass turns the handler's answer
  into the replies (:meth:`~SMTPServerBase.data_replies`).  A handler may give the first lines
  of the message (``data_prefix(server, session, envelope)``: LMTP's trace lines), so that a big
  message is never copied to prepend them.  The reader never consumes a byte past the end
  marker, so pipelined commands after DATA stay in the stream.  (aiosmtpd 1.4.6's own reader
  also ends only at CRLF "." CRLF, the 1.4.5 fix for CVE-2024-27305.)
* SIZE is the handler's, not aiosmtpd's (``data_size_limit=None``), so that the refusal at MAIL
  carries ``5.3.4``.
* Every 2xx/4xx/5xx reply after the greeting carries an RFC 2034 enhanced status code:
  :meth:`~SMTPServerBase.push` adds the default one to aiosmtpd's own replies, which have none.
  Replies that may echo a non-UTF-8 address (surrogate-escaped) never send those octets raw.
* The LHLO/EHLO reply (:meth:`~SMTPServerBase.greet`) is ours: PIPELINING, ENHANCEDSTATUSCODES,
  8BITMIME, SMTPUTF8 and SIZE plus the subclass's extensions; aiosmtpd lacks the first two and
  always adds HELP.
* ``command_size_limits`` is per connection: aiosmtpd keeps it on the class and grows the MAIL
  limit by 26 octets on every EHLO of every connection.
* A handler bug (:meth:`~SMTPServerBase.handle_exception`) is logged with its traceback, the
  client gets ``421 4.3.0`` (it retries) and the connection is closed: its state is unknown.
* aiosmtpd logs every command line and connection at INFO on ``mail.log``; :func:`quiet_aiosmtpd_log`
  keeps that for debug level, since each gateway's own log is what an admin wants at INFO.
* A connection over the gateway's limits (``gate``, a
  :class:`~gateways.common.connlimit.ConnectionGate` set by the service's factory) is answered
  ``421 4.7.0`` instead of the greeting and closed (RFC 5321 §3.1: a server may refuse at
  connect with 421).  A PROXY header (:mod:`gateways.common.proxyasync`) sets
  ``proxied_peer``, which is then ``session.peer`` everywhere (logs, Received:, the portal,
  the loopback test).
"""

from __future__ import annotations

import asyncio
import collections
import logging
import re
import secrets
from typing import ClassVar, Iterable, List, Mapping, Optional

from email._header_value_parser import get_addr_spec, get_angle_addr
from email.errors import HeaderParseError

from aiosmtpd.smtp import MISSING, SMTP, Envelope, syntax

from gateways.common.spool import Spool
from gateways.common.smtpwire import INTERNAL, NO_VALID_RECIPIENTS, DataDecoder, multiline_reply, with_enhanced_code

#: RFC 5321 §4.5.3.1.4 gives 512 octets per command line; RFC 1870 §3 adds 26 for SIZE=,
#: RFC 6531 §3.4 10 for SMTPUTF8, RFC 6152 BODY=8BITMIME is 14 more.
COMMAND_SIZE_LIMITS = {"MAIL": 512 + 26 + 10 + 14, "RCPT": 512}

#: reset the idle timer after this much DATA: a long upload is not an idle client
_TIMEOUT_RESET_BYTES = 1 << 20
#: a DATA bigger than this goes to a spool file as it arrives (gateways/common/spool.py)
SPOOL_AT = 256 << 10


def quiet_aiosmtpd_log() -> None:
    """Keep aiosmtpd's per-command chatter on ``mail.log`` for debug level; a level set
    explicitly for ``mail.log`` is left alone."""
    chatty = logging.getLogger("mail.log")
    if chatty.level == logging.NOTSET and not logging.getLogger().isEnabledFor(logging.DEBUG):
        chatty.setLevel(logging.WARNING)


def new_queue_id() -> str:
    """An id naming one transaction in the logs, the Received: header and the 250 replies."""
    return secrets.token_hex(6).upper()


class SMTPEnvelope(Envelope):
    """aiosmtpd's envelope plus the state of one MAIL ... DATA that both gateways keep.

    After DATA ``content`` is the message (the handler's ``data_prefix`` first): bytes, or for a
    message over :data:`SPOOL_AT` octets a binary file (its spool, gateways/common/spool.py).
    The spool is closed by :meth:`release_content`: by the engine once the handler returned,
    unless the handler called :meth:`keep_content` (a commit that outlives it, see the LMTP
    handler); then the handler releases it when that commit is over."""

    def __init__(self) -> None:
        super().__init__()
        self.queue_id = new_queue_id()
        self.delivery = None  # store.interfaces.Delivery, set at MAIL FROM
        self.data_size = 0  # decoded octets received in DATA
        self.message_size = 0  # octets of content (the prefix included)
        self.too_big = False  # DATA went over max_message_size (content then empty)
        self.spool = None
        self.content_kept = False

    def keep_content(self) -> None:
        self.content_kept = True

    def release_content(self) -> None:
        spool, self.spool = self.spool, None
        self.content = self.original_content = None
        if spool is not None:
            spool.close()


#: a path the email parser needs no work for: <local@domain>, the local part a dot-atom, the
#: domain dot-separated labels (RFC 5321 §4.1.2); anything else goes through the parser
_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_SIMPLE_PATH = re.compile(rf"\s*<({_ATEXT}(?:\.{_ATEXT})*@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
                          rf"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*)>(?![ \t]*\()[ \t]*")


class SMTPServerBase(SMTP):
    """One connection.  Subclasses set :attr:`logger` (their gateway's log), may extend
    :attr:`command_limits`, and implement :meth:`data_replies` and :meth:`data_failed`; their
    handler implements ``handle_DATA(server, session, envelope)``, whose answer
    :meth:`data_replies` checks."""

    #: the gateway's log (``haven.lmtp``, ``haven.submission``)
    logger: ClassVar[logging.Logger] = logging.getLogger("haven.smtp")
    #: per-command line limits (the default, 512, for the others)
    command_limits: ClassVar[Mapping[str, int]] = COMMAND_SIZE_LIMITS
    #: the gateway's connection limits (set on each connection by the service's factory)
    gate = None
    #: (ip, port) of the client as a trusted proxy's PROXY header named it; whether a v2 header
    #: said the client's own hop is TLS
    proxied_peer = None
    proxied_tls = False
    _admission = None
    _refused = ""

    def __init__(self, handler, *, hostname: str, ident: str, max_message_size: Optional[int],
                 spool_dir: Optional[str] = None, **kwargs):
        super().__init__(
            handler,
            hostname=hostname,
            ident=ident,  # no version on the wire
            data_size_limit=None,  # SIZE is the handler's (5.3.4 at MAIL) and DataDecoder's
            enable_SMTPUTF8=True,
            decode_data=False,  # 8BITMIME: the body stays bytes from socket to blob
            **kwargs,
        )
        self.command_size_limits = collections.defaultdict(lambda: self.command_size_limit, self.command_limits)
        self.max_message_size = max_message_size or None
        self.spool_dir = spool_dir  # where a big DATA goes as it arrives (None: the system's temp dir)

    def _getaddr(self, arg: str):
        """aiosmtpd's address parsing (same results), without the typing class it defines on
        every call: at MAIL and RCPT of each message that was a tenth of LMTP's reactor time."""
        if not arg:
            return "", ""
        simple = _SIMPLE_PATH.match(arg)
        if simple is not None:  # <dot-atom@host>: what the parser would give, without it
            addr = simple.group(1)
            if self.local_part_limit and len(addr.rpartition("@")[0]) > self.local_part_limit:
                return None, None
            return addr, arg[simple.end():]
        try:
            if arg.lstrip().startswith("<"):
                address, rest = get_angle_addr(arg)
            else:
                address, rest = get_addr_spec(arg)
            addr = address.addr_spec
        except (HeaderParseError, IndexError):  # e.g. "MAIL FROM:<": the parser runs off its string
            return None, None
        if self.local_part_limit and len(addr.rpartition("@")[0]) > self.local_part_limit:
            return None, None
        return addr, rest

    # -- the connection ----------------------------------------------------------------------
    def connection_made(self, transport) -> None:
        starttls = self._original_transport is not None  # aiosmtpd calls us again after STARTTLS
        super().connection_made(transport)
        if self.proxied_peer is not None:
            self.session.peer = self.proxied_peer
        if not starttls and self.gate is not None:
            peer = self.session.peer
            host = peer[0] if isinstance(peer, (tuple, list)) and peer else None
            self._admission, self._refused = self.gate.admit(host, self.proxied_peer is not None)

    def connection_lost(self, error) -> None:
        if self._admission is not None:
            admission, self._admission = self._admission, None
            admission.release()
        super().connection_lost(error)

    async def _handle_client(self) -> None:
        if self._refused:
            why = " from your address" if self._refused == "address" else "; try again later"
            await self.push(f"421 4.7.0 {self.hostname} Too many connections{why}")
            if self.transport is not None:
                self.transport.close()
            return
        await super()._handle_client()

    # -- replies ---------------------------------------------------------------------------
    async def push(self, status) -> None:
        if isinstance(status, str):
            # Replies may echo an address that came in as non-UTF-8 (surrogate-escaped):
            # never send those octets back raw.
            status = with_enhanced_code(status).encode("utf-8", "backslashreplace")
        await super().push(status)

    async def _push_lines(self, lines: List[str]) -> None:
        """Write several replies (or one multi-line reply) with one flush, as they are."""
        for line in lines:
            self._writer.write(line.encode("utf-8", "backslashreplace") + b"\r\n")
        self.logger.debug("%r << %r", self.session.peer, lines)
        await self._writer.drain()

    async def handle_exception(self, error: Exception) -> str:
        # A bug, not a client error: keep the traceback in the log, give the client a 4xx so it
        # retries, and drop the connection since the session state is unknown.
        self.logger.exception("%r session error", self.session.peer if self.session else None)
        if self.transport is not None:
            self.loop.call_soon(self.transport.close)
        return INTERNAL.format(self.hostname)

    # -- greeting --------------------------------------------------------------------------
    async def greet(self, verb: str, arg: Optional[str], extensions: Iterable[str] = ()) -> None:
        """Answer LHLO/EHLO ``arg``: our keywords, then ``extensions``."""
        if not arg:
            await self.push(f"501 5.5.4 Syntax: {verb} hostname")
            return
        # RFC 5321 §4.1.4: a new greeting resets the transaction (not the authentication).
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
            *extensions,
        ]
        # RFC 2034 §3: the LHLO/EHLO reply is the one 250 without an enhanced code.
        await self._push_lines(multiline_reply(250, keywords))

    # -- DATA ------------------------------------------------------------------------------
    def data_replies(self, answer, addresses: List[str]) -> List[str]:
        """The replies to send for ``handle_DATA``'s ``answer`` to a transaction with the
        accepted recipients ``addresses``; raises TypeError when the handler broke its
        contract."""
        raise NotImplementedError

    def data_failed(self, addresses: List[str]) -> List[str]:
        """The replies when ``handle_DATA`` raised or broke its contract: a 4xx, the client
        retries."""
        raise NotImplementedError

    @syntax("DATA")
    async def smtp_DATA(self, arg: Optional[str]) -> None:
        if await self.check_helo_needed():
            return
        if await self.check_auth_needed("DATA"):
            return
        envelope: SMTPEnvelope = self.envelope
        if not envelope.rcpt_tos:
            # RFC 5321 §3.3, RFC 2033 §4.2: no accepted recipient, no DATA.
            await self.push(NO_VALID_RECIPIENTS)
            return
        if arg:
            await self.push("501 5.5.4 Syntax: DATA")
            return
        await self.push("354 End data with <CR><LF>.<CR><LF>")
        prefix_hook = getattr(self.event_handler, "data_prefix", None)
        prefix = prefix_hook(self, self.session, envelope) if prefix_hook is not None else b""
        decoder = DataDecoder(self.max_message_size, prefix, self._new_spool, SPOOL_AT)
        addresses = list(envelope.rcpt_tos)
        try:
            await self._read_data(decoder)
            content = decoder.content()
            if decoder.sink is not None:
                envelope.spool = decoder.sink
                envelope.message_size = decoder.sink.size
                content = await self._spooled(decoder.sink)  # every octet on disk
            else:
                envelope.message_size = len(content)
        except BaseException:
            decoder.discard()  # the connection went mid-DATA, or the spool failed
            raise
        if content is None:  # the spool could not be written (a full disk): 4xx, the client retries
            self._set_post_data_state()
            await self._push_lines([with_enhanced_code(line) for line in self.data_failed(addresses)])
            return
        envelope.content = envelope.original_content = content
        envelope.data_size = decoder.size
        envelope.too_big = decoder.too_big

        try:
            answer = await self._call_handler_hook("DATA")
            if answer is MISSING:
                raise TypeError("the handler has no handle_DATA")
            lines = self.data_replies(answer, addresses)
        except Exception:
            self.logger.exception("%s: DATA handler failed", envelope.queue_id)
            lines = self.data_failed(addresses)
        finally:
            if not envelope.content_kept:
                envelope.release_content()
            self._set_post_data_state()
        await self._push_lines([with_enhanced_code(line) for line in lines])

    def _new_spool(self) -> Spool:
        return Spool(self.spool_dir)

    async def _spooled(self, spool: Spool):
        """The spool's file once every octet is in it; None (logged, spool closed) when it
        could not be written."""
        try:
            return await spool.finished().asFuture(self.loop)
        except OSError as e:
            self.logger.error("%s: cannot spool the message: %s", self.envelope.queue_id, e)
            spool.close()
            return None

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
            if decoder.sink is not None:  # read on once the spool has room: bounded memory
                await decoder.sink.room().asFuture(self.loop)
            if rest is not None:
                if rest:  # cannot happen, see above; never act on such bytes
                    self.logger.error("%r %d octets after the end of DATA dropped", self.session.peer, len(rest))
                return
            since_reset += len(chunk)
            if since_reset >= _TIMEOUT_RESET_BYTES:
                self._reset_timeout()
                since_reset = 0
