"""The ManageSieve protocol engine: one :class:`ManageSieveServer` per connection on the reactor.

Invariants:
* Commands of a connection run strictly in order: frames are queued as they arrive (RFC 5804 §2
  allows pipelining) and the next one starts only after the previous one wrote its reply and the
  transport took it (we are its streaming producer).  Reading pauses while too much is queued.
  AUTHENTICATE takes its SASL responses from the same queue.
* Nothing blocks the reactor: handlers are coroutines; SQL and script compilation run in the
  store's pools.
* No client input produces a traceback on the wire: malformed commands answer ``NO``, store
  errors go through the one table :data:`STORE_ERRORS`, anything else is logged and answered
  ``NO (TRYLATER)``; the connection stays up.  ``max_bad_commands`` malformed, unknown or
  out-of-state commands end it with ``BYE``.
* Plaintext pipelined after STARTTLS is discarded before the handshake (no command injection,
  the CVE-2011-0411 class of bug).
* Autologout (RFC 5804 §1.3: at least 30 minutes once authenticated): ``BYE`` then close after
  ``idle_timeout`` without input once logged in, ``login_timeout`` before.
"""

from __future__ import annotations

import logging
from typing import Optional

from twisted.internet import defer
from twisted.internet.defer import Deferred
from twisted.protocols.policies import TimeoutMixin

from gateways.common.lineproto import OrderedLineProtocol, PlaintextPolicy, is_local
from store import errors

from .commands import AUTH, NOT_AUTH, SCRIPT_COMMANDS, Commands, SieveError
from .parser import Frame, Framer, ParseError, Rejected, parse_command
from .response import capability_lines, reply

log = logging.getLogger("haven.managesieve")

_ANY = {NOT_AUTH, AUTH}
#: command -> states it is valid in (RFC 5804 §2: before login only AUTHENTICATE, CAPABILITY,
#: STARTTLS, LOGOUT and NOOP; §2.14.1 UNAUTHENTICATE only after)
STATES = {
    "CAPABILITY": _ANY, "LOGOUT": _ANY, "NOOP": _ANY,
    "AUTHENTICATE": {NOT_AUTH}, "STARTTLS": {NOT_AUTH},
    "LISTSCRIPTS": {AUTH}, "GETSCRIPT": {AUTH}, "PUTSCRIPT": {AUTH}, "CHECKSCRIPT": {AUTH},
    "SETACTIVE": {AUTH}, "DELETESCRIPT": {AUTH}, "RENAMESCRIPT": {AUTH}, "HAVESPACE": {AUTH},
    "UNAUTHENTICATE": {AUTH},
}

#: the one table: store error -> (RFC 5804 §1.4 response code, text or None for str(err))
STORE_ERRORS = [
    (errors.NotFound, "NONEXISTENT", None),
    (errors.Exists, "ALREADYEXISTS", None),
    # the store refuses only one thing on an existing script: deleting the active one
    (errors.PermissionDenied, "ACTIVE", None),
    (errors.TooBig, "QUOTA/MAXSIZE", None),
    # the Sieve store's quota is the number of scripts (store.interfaces: put_sieve_script)
    (errors.OverQuota, "QUOTA/MAXSCRIPTS", None),
    (errors.TemporaryFailure, "TRYLATER", None),
    (errors.SchemaOutOfDate, "TRYLATER", "The server is being upgraded; try again later"),
    (errors.InvalidInput, None, None),
    (errors.StoreError, "TRYLATER", None),
]

MAX_QUEUED_FRAMES = 500
MAX_QUEUED_BYTES = 4 << 20



class ManageSieveServer(PlaintextPolicy, OrderedLineProtocol, TimeoutMixin, Commands):
    max_queued_items = MAX_QUEUED_FRAMES
    max_queued_bytes = MAX_QUEUED_BYTES

    def __init__(self, ctx, config):
        OrderedLineProtocol.__init__(self)
        self.ctx = ctx
        self.store = ctx.store
        self.config = config
        self.state = NOT_AUTH
        self.account = None
        self.peer = "?"
        self.local = False
        self.tls_started = False
        self.bad_commands = 0
        self.auth_failures = 0
        self._logout_cb = None
        self._tls_pending = False
        self._tls_frame = None  # the queued STARTTLS that set _tls_pending
        self._lost_step = False  # framing failed for good: further input is ignored
        self.framer = Framer(config.max_line, self._literal_limit)

    # -- connection lifecycle ----------------------------------------------------------------
    def connectionMade(self):
        try:
            address = self.transport.getPeer()
            self.peer = getattr(address, "host", None) or "local"
            self.local = is_local(address)
        except Exception:
            self.peer, self.local = "?", False
        no_delay = getattr(self.transport, "setTcpNoDelay", None)
        if no_delay is not None:
            try:
                no_delay(True)
            except (OSError, AttributeError):
                pass
        self.transport.registerProducer(self, True)
        self.setTimeout(self.config.login_timeout)
        # RFC 5804 §1.8: the capabilities are the greeting
        self.write(capability_lines(self.capabilities()) + reply("OK", text="Haven ManageSieve ready."))

    def connectionLost(self, reason=None):
        self._closed = True
        self.setTimeout(None)
        self.release_account()
        self._release_waiters()

    def release_account(self) -> None:
        self.account = None
        if self._logout_cb is not None:
            cb, self._logout_cb = self._logout_cb, None
            try:
                cb()
            except Exception:
                log.exception("logout callback failed")

    def timeoutConnection(self):
        if self._running and self._waiter is None and not self._drain_waiters:
            self.resetTimeout()  # a command is still being worked on
            return
        log.info("managesieve %s: autologout after %d s without input", self.peer,
                 self.config.idle_timeout if self.state == AUTH else self.config.login_timeout)
        self.write(reply("BYE", text="Disconnected for inactivity."))
        self.close()

    def _on_resume(self) -> None:
        if self._drain_waiters and not self._closed:
            self.resetTimeout()  # the client is reading a reply: not idle

    def _command_done(self) -> None:
        self.setTimeout(self.config.idle_timeout if self.state == AUTH else self.config.login_timeout)

    # -- input -------------------------------------------------------------------------------
    def _literal_limit(self, name: Optional[str]) -> int:
        return self.config.max_script_literal if name in SCRIPT_COMMANDS else self.config.max_line

    def dataReceived(self, data: bytes):
        if self._closed or self._tls_pending or self._lost_step:
            return
        self.resetTimeout()
        for event in self.framer.feed(data):
            queued = not (self._waiter is not None and not self._queue)
            if queued:
                self._enqueue(event)
            else:
                d, self._waiter = self._waiter, None
                d.callback(event)
            if isinstance(event, Rejected) and event.fatal:
                # nothing after it can be framed reliably; the reply to it (BYE) closes
                self._lost_step = True
                break
            if queued and isinstance(event, Frame) and event.name == "STARTTLS" and self.state == NOT_AUTH \
                    and self.ctx.tls is not None and not self.is_tls:
                # whatever the client pipelined after STARTTLS is discarded, never run in plaintext
                self._tls_pending = True
                self._tls_frame = event
                self.framer.reset()
                break
        self._pump()

    def _item_size(self, item) -> int:
        return item.size if isinstance(item, Frame) else 0

    def next_item(self) -> Deferred:
        """The client's next frame (a SASL response), a :class:`Rejected` for one refused while
        framing, or None once the connection is gone."""
        if self._queue:
            return defer.succeed(self._dequeue())
        if self._closed:
            return defer.succeed(None)
        self._waiter = Deferred()
        return self._waiter

    # -- command execution -------------------------------------------------------------------
    async def _execute(self, item) -> None:
        name = "?"
        try:
            if isinstance(item, Rejected):
                self._reply_rejected(item)
                return
            try:
                cmd = parse_command(item)
            except ParseError as e:
                raise SieveError(str(e), bad=True) from None
            if cmd is None:
                return  # an empty line: nothing to answer
            name = cmd.name
            states = STATES.get(name)
            if states is None:
                raise SieveError("Unknown command %s" % name[:40], bad=True)
            if self.state not in states:
                raise SieveError("%s is not valid %s" % (name, "before AUTHENTICATE" if self.state == NOT_AUTH
                                                          else "after AUTHENTICATE"), bad=True)
            text = await getattr(self, "do_" + name)(cmd.args)
            if text is not None:
                self.write(reply("OK", text=text))
        except SieveError as e:
            self.fail(e.text, e.code, e.bad)
        except ParseError as e:
            self.fail(str(e), None, True)
        except errors.StoreError as e:
            code, text = self.map_store_error(e)
            (log.warning if code == "TRYLATER" else log.info)(
                "managesieve %s: %s failed: %s: %s", self.peer, name, type(e).__name__, e)
            self.fail(text, code)
        except Exception:
            log.exception("managesieve %s: unexpected error in %s", self.peer, name)
            self.fail("Internal error; the event was logged", "TRYLATER")
        finally:
            if item is self._tls_frame:
                self._tls_pending, self._tls_frame = False, None
        await self.drained()

    def _reply_rejected(self, item: Rejected) -> None:
        log.info("managesieve %s: refused %s (%s, %d octets)", self.peer, item.name or "a line", item.reason,
                 item.size)
        if item.fatal:
            self.write(reply("BYE", text="Cannot resynchronize the command stream."))
            self.close()
        elif item.reason == "literal-too-big" and item.name in SCRIPT_COMMANDS:
            # RFC 5804 §1.4: a script over the size limit
            self.fail("Script too big (at most %d octets)" % self.config.max_script_size, "QUOTA/MAXSIZE")
        elif item.reason == "literal-too-big":
            self.fail("Literal too big (at most %d octets)" % self.config.max_line, bad=True)
        else:
            self.fail("Line too long (at most %d octets)" % self.config.max_line, bad=True)

    def fail(self, text: str, code: Optional[str] = None, bad: bool = False) -> None:
        self.write(reply("NO", code, text))
        if bad:
            self.bad_commands += 1
            if self.bad_commands >= self.config.max_bad_commands:
                log.info("managesieve %s: too many bad commands; closing", self.peer)
                self.write(reply("BYE", text="Too many invalid commands."))
                self.close()

    @staticmethod
    def map_store_error(e: Exception) -> tuple:
        for cls, code, text in STORE_ERRORS:
            if isinstance(e, cls):
                return code, text or str(e) or type(e).__name__
        return "TRYLATER", "Internal error"
