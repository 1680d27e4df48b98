"""The POP3 protocol engine: one :class:`POP3Server` per connection on the reactor.

Invariants:
* Commands of a connection run strictly in order: lines are queued as they arrive (RFC 2449
  PIPELINING) and the next one starts only after the previous one has written its reply and the
  transport has taken it (we are the transport's streaming producer), so a client that pipelines
  without reading cannot make us buffer without bound.  Input is paused while too much is queued.
* Nothing blocks the reactor: handlers are coroutines; SQL and blob reads go through the store
  (its DB and CPU pools); big message bodies are encoded off the reactor thread and written in
  pieces that wait for the transport to drain.
* No client input produces a traceback on the wire: malformed lines answer ``-ERR``, store
  errors go through the one table :data:`STORE_ERRORS`, anything else is logged and answered
  ``-ERR [SYS/TEMP]``; the connection stays up.  More than ``max_bad_commands`` malformed,
  unknown or out-of-state commands close it.
* Plaintext pipelined after STLS is discarded before the handshake (no command injection,
  RFC 2595 §4 / CVE-2011-0411 analogue).
* Autologout (RFC 1939 §3): after ``idle_timeout`` without a command the connection is closed
  without a reply and without entering UPDATE, so nothing is deleted.
"""

from __future__ import annotations

import logging
from typing import Optional

from twisted.cred.error import UnauthorizedLogin
from twisted.internet import defer
from twisted.internet.defer import Deferred
from twisted.protocols.policies import TimeoutMixin

from gateways.common.lineproto import OrderedLineProtocol, PlaintextPolicy, is_local
from store import errors

from .commands import AUTHORIZATION, TRANSACTION, Commands, POP3Error
from .maildrop import MaildropError
from .parser import TOO_LONG, LineReader, ParseError, parse_command, response_code

log = logging.getLogger("haven.pop3")

_BOTH = {AUTHORIZATION, TRANSACTION}
#: keyword -> states it is valid in (RFC 1939 §4-§6, RFC 2449 CAPA, RFC 5034 AUTH, RFC 2595 STLS)
STATES = {
    "CAPA": _BOTH, "QUIT": _BOTH,
    "USER": {AUTHORIZATION}, "PASS": {AUTHORIZATION}, "AUTH": {AUTHORIZATION}, "STLS": {AUTHORIZATION},
    "APOP": {AUTHORIZATION},
    "STAT": {TRANSACTION}, "LIST": {TRANSACTION}, "UIDL": {TRANSACTION}, "RETR": {TRANSACTION},
    "TOP": {TRANSACTION}, "DELE": {TRANSACTION}, "RSET": {TRANSACTION}, "NOOP": {TRANSACTION},
}

#: the one table: store error -> (RFC 2449/3206 response code, text or None for str(err))
STORE_ERRORS = [
    (errors.Expunged, None, "Message was deleted by another session"),
    (errors.NotFound, None, None),
    (errors.TemporaryFailure, "SYS/TEMP", None),
    (errors.SchemaOutOfDate, "SYS/TEMP", "The server is being upgraded; try again later"),
    (errors.PermissionDenied, "SYS/PERM", None),
    (errors.OverQuota, "SYS/PERM", None),
    (errors.TooBig, "SYS/PERM", None),
    (errors.InvalidInput, "SYS/PERM", None),
    (errors.Exists, "SYS/PERM", None),
    (errors.StoreError, "SYS/TEMP", None),
]

MAX_QUEUED_LINES = 1000
MAX_QUEUED_BYTES = 1 << 20



class POP3Server(PlaintextPolicy, OrderedLineProtocol, TimeoutMixin, Commands):
    max_queued_items = MAX_QUEUED_LINES
    max_queued_bytes = MAX_QUEUED_BYTES

    def __init__(self, ctx, config):
        OrderedLineProtocol.__init__(self)
        self.ctx = ctx
        self.store = ctx.store
        self.config = config
        self.state = AUTHORIZATION
        self.account = None
        self.maildrop = None
        self.user: Optional[str] = None  # from USER, waiting for PASS
        self.peer = "?"
        self.local = False
        self.tls_started = False
        self.bad_commands = 0
        self._logout_cb = None
        self._reader = LineReader(config.max_line)
        self._tls_pending = False
        self._tls_line = None  # the queued STLS line that set _tls_pending

    # -- connection lifecycle ----------------------------------------------------------------
    def connectionMade(self):
        try:
            address = self.transport.getPeer()
            self.peer = getattr(address, "host", None) or "local"
            self.local = is_local(address)
        except Exception:
            self.peer, self.local = "?", False
        # Replies are small; without TCP_NODELAY the last segment of one can wait for the
        # client's delayed ACK (~40 ms a round trip).
        no_delay = getattr(self.transport, "setTcpNoDelay", None)
        if no_delay is not None:
            try:
                no_delay(True)
            except (OSError, AttributeError):
                pass
        self.transport.registerProducer(self, True)
        self.setTimeout(self.config.idle_timeout)
        self.write(b"+OK Haven POP3 ready.\r\n")

    def connectionLost(self, reason=None):
        self._closed = True
        self.setTimeout(None)
        if self.state == TRANSACTION:
            marked = len(self.maildrop.deleted)
            log.info("pop3 %s: %s disconnected without QUIT%s", self.peer, self.account.address,
                     "; nothing deleted (%d marked)" % marked if marked else "")
        self.release_account()
        self._release_waiters()

    def release_account(self) -> None:
        if self._logout_cb is not None:
            cb, self._logout_cb = self._logout_cb, None
            try:
                cb()
            except Exception:
                log.exception("logout callback failed")

    def timeoutConnection(self):
        if self._running and self._waiter is None and not self._drain_waiters:
            self.resetTimeout()  # the server is still working on a command
            return
        # idle, or waiting on the client all along (an AUTH continuation it never sends, a reply
        # it stopped reading: resumeProducing restarts the timer whenever it reads some)
        # RFC 1939 §3: close without a reply and without entering UPDATE
        log.info("pop3 %s: autologout after %d s idle", self.peer, self.config.idle_timeout)
        self.close()

    # -- output: write, close, drained() in gateways/common/lineproto.py ------------------------------
    def _on_resume(self) -> None:
        if self._drain_waiters and not self._closed:
            self.resetTimeout()  # the client is reading a big reply: not idle

    async def send(self, head: bytes, body: bytes = b"") -> None:
        """``head`` then ``body`` (a multi-line body), in pieces that respect backpressure."""
        chunk = self.config.write_chunk
        if len(body) <= chunk:
            self.write(head + body)
            return
        self.write(head)
        view = memoryview(body)
        for start in range(0, len(body), chunk):
            await self.drained()
            if self._closed:
                return
            self.write(bytes(view[start:start + chunk]))

    # -- input -------------------------------------------------------------------------------
    def dataReceived(self, data: bytes):
        if self._closed or self._tls_pending:
            return
        for line in self._reader.feed(data):
            if self._waiter is not None and not self._queue:
                d, self._waiter = self._waiter, None
                d.callback(line)
                continue
            self._enqueue(line)
            if line is not TOO_LONG and line[:5].rstrip().upper() == b"STLS" \
                    and self.state == AUTHORIZATION and self.ctx.tls is not None and not self.is_tls:
                # whatever the client pipelined after STLS is discarded, never run in plaintext
                self._tls_pending = True
                self._tls_line = line
                self._reader.reset()
                break
        self._pump()

    def _item_size(self, line) -> int:
        return 0 if line is TOO_LONG else len(line)

    def _command_done(self) -> None:
        self.resetTimeout()

    def next_line(self) -> Deferred:
        """The client's next line, for the AUTH continuation; None once the connection is gone,
        TOO_LONG for an over-long one."""
        if self._queue:
            return defer.succeed(self._dequeue())
        if self._closed:
            return defer.succeed(None)
        self._waiter = Deferred()
        return self._waiter

    # -- command execution -------------------------------------------------------------------
    async def _execute(self, line) -> None:
        keyword = "?"
        try:
            if line is TOO_LONG:
                raise POP3Error("Line too long (limit %d octets)" % self.config.max_line, bad=True)
            try:
                cmd = parse_command(line)
            except ParseError as e:
                raise POP3Error(str(e), bad=True) from None
            keyword = cmd.keyword
            states = STATES.get(keyword)
            if states is None:
                raise POP3Error("Unknown command", bad=True)
            if self.state not in states:
                raise POP3Error("%s is not valid %s" % (keyword, "before login" if self.state == AUTHORIZATION
                                                         else "after login"), bad=True)
            text = await getattr(self, "do_" + keyword)(cmd)
            if text is not None:
                self.write(b"+OK %s\r\n" % text.encode("utf-8", "replace") if text else b"+OK\r\n")
        except POP3Error as e:
            self.fail(e.text, e.code, e.bad)
        except MaildropError as e:
            self.fail(str(e))
        except ParseError as e:
            self.fail(str(e), None, True)
        except UnauthorizedLogin:
            self.fail("Authentication failed.", "AUTH")
        except errors.StoreError as e:
            code, text = self.map_store_error(e)
            (log.warning if code else log.info)("pop3 %s: %s failed: %s: %s", self.peer, keyword,
                                                type(e).__name__, e)
            self.fail(text, code)
        except Exception:
            log.exception("pop3 %s: unexpected error in %s", self.peer, keyword)
            self.fail("Internal error; the event was logged", "SYS/TEMP")
        finally:
            if line is self._tls_line:
                self._tls_pending, self._tls_line = False, None
        await self.drained()

    def fail(self, text: str, code: Optional[str] = None, bad: bool = False) -> None:
        self.write(b"-ERR %s%s\r\n" % (response_code(code), text.encode("utf-8", "replace")))
        if bad:
            self.bad_commands += 1
            if self.bad_commands >= self.config.max_bad_commands:
                log.info("pop3 %s: too many bad commands; closing", self.peer)
                self.write(b"-ERR Too many bad commands; closing the connection\r\n")
                self.close()

    @staticmethod
    def map_store_error(e: Exception) -> tuple:
        for cls, code, text in STORE_ERRORS:
            if isinstance(e, cls):
                return code, text or str(e) or type(e).__name__
        return "SYS/TEMP", "Internal error"
