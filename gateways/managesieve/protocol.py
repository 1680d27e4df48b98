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

from gateways.common.lineproto import LineSession, PlaintextPolicy
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



class ManageSieveServer(PlaintextPolicy, LineSession, Commands):
    """Connection lifecycle (timer, STARTTLS hold, error skeleton) in
    :class:`gateways.common.lineproto.LineSession`; ManageSieve's own: the capability greeting,
    ``NO``/``BYE`` replies with RFC 5804 response codes."""
    max_queued_items = MAX_QUEUED_FRAMES
    max_queued_bytes = MAX_QUEUED_BYTES
    log = log
    label = "managesieve"
    # RFC 5804 §1.3: TRYLATER, a temporary condition; §1.8 a server may answer BYE at connect
    too_many_connections = {"address": reply("BYE", "TRYLATER", "Too many connections from your address"),
                            "server": reply("BYE", "TRYLATER", "Too many connections; try again later")}
    drain_after_command = True
    STORE_ERRORS = STORE_ERRORS
    STORE_ERROR_FALLBACK = ("TRYLATER", "Internal error")

    def __init__(self, ctx, config):
        LineSession.__init__(self, ctx, config)
        self.state = NOT_AUTH
        self.tls_started = False
        self.auth_failures = 0
        self._lost_step = False  # framing failed for good: further input is ignored
        self.framer = Framer(config.max_line, self._literal_limit)

    # -- connection lifecycle (gateways/common/lineproto.py) ---------------------------------
    def connectionMade(self):
        super().connectionMade()
        # RFC 5804 §1.8: the capabilities are the greeting
        self.write(capability_lines(self.capabilities()) + reply("OK", text="Haven ManageSieve ready."))

    def release_account(self) -> None:
        self.account = None
        super().release_account()

    def _session_timeout(self) -> float:
        return self.config.idle_timeout if self.state == AUTH else self.login_left(self.config.login_timeout)

    def _autologout(self) -> None:
        log.info("managesieve %s: autologout after %d s without input", self.peer, self._session_timeout())
        self.write(reply("BYE", text="Disconnected for inactivity."))
        self.close()

    # -- input -------------------------------------------------------------------------------
    def _literal_limit(self, name: Optional[str]) -> int:
        return self.config.max_script_literal if name in SCRIPT_COMMANDS else self.config.max_line

    def dataReceived(self, data: bytes):
        if self._closed or self._tls_pending or self._lost_step:
            return
        self.input_seen()
        for event in self.framer.feed(data):
            queued = self._accept(event)
            if isinstance(event, Rejected) and event.fatal:
                # nothing after it can be framed reliably; the reply to it (BYE) closes
                self._lost_step = True
                break
            if queued and isinstance(event, Frame) and event.name == "STARTTLS" and self.state == NOT_AUTH \
                    and self.ctx.tls is not None and not self.is_tls:
                # whatever the client pipelined after STARTTLS is discarded, never run in plaintext
                self._hold_for_tls(event)
                self.framer.reset()
                break
        self._pump()

    def _item_size(self, item) -> int:
        return item.size if isinstance(item, Frame) else 0

    # -- command execution (the skeleton: LineSession._execute) ------------------------------
    async def _run(self, item) -> None:
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
            name = self.command_label = cmd.name
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
                "managesieve %s: %s failed: %s: %s", self.peer, self.command_label, type(e).__name__, e)
            self.fail(text, code)

    def _internal_error(self) -> None:
        self.fail("Internal error; the event was logged", "TRYLATER")

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
            self.count_bad_command(reply("BYE", text="Too many invalid commands."))
