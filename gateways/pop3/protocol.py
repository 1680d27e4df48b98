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
* Before login the deadline is absolute: ``login_timeout`` from connecting, whatever the
  client sends meanwhile (CAPA, bad commands, a stalled AUTH).
"""

from __future__ import annotations

import logging
from typing import Optional

from twisted.cred.error import UnauthorizedLogin
from twisted.internet.defer import Deferred

from gateways.common.lineproto import LineSession, PlaintextPolicy
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



class POP3Server(PlaintextPolicy, LineSession, Commands):
    """Connection lifecycle (timer, STLS hold, error skeleton) in
    :class:`gateways.common.lineproto.LineSession`; POP3's own: the maildrop, ``-ERR`` replies,
    autologout without a reply."""
    max_queued_items = MAX_QUEUED_LINES
    max_queued_bytes = MAX_QUEUED_BYTES
    log = log
    label = "pop3"
    # RFC 3206 §4 (RFC 2449 §8): SYS/TEMP, a temporary system problem; the client retries later
    too_many_connections = {"address": b"-ERR [SYS/TEMP] Too many connections from your address\r\n",
                            "server": b"-ERR [SYS/TEMP] Too many connections; try again later\r\n"}
    drain_after_command = True  # RFC 2449 PIPELINING: a client that does not read is not read
    STORE_ERRORS = STORE_ERRORS
    STORE_ERROR_FALLBACK = ("SYS/TEMP", "Internal error")

    def __init__(self, ctx, config):
        LineSession.__init__(self, ctx, config)
        self.state = AUTHORIZATION
        self.maildrop = None
        self.user: Optional[str] = None  # from USER, waiting for PASS
        self.tls_started = False
        self._reader = LineReader(config.max_line)

    # -- connection lifecycle (gateways/common/lineproto.py) ---------------------------------
    def connectionMade(self):
        super().connectionMade()
        self.write(b"+OK Haven POP3 ready.\r\n")

    def connectionLost(self, reason=None):
        if self.state == TRANSACTION:
            marked = len(self.maildrop.deleted)
            log.info("pop3 %s: %s disconnected without QUIT%s", self.peer, self.account.address,
                     "; nothing deleted (%d marked)" % marked if marked else "")
        super().connectionLost(reason)

    def _session_timeout(self) -> float:
        # before login an absolute deadline that no command extends (CAPA every minute does
        # not hold a connection open); after it the idle timer, at least 10 minutes by RFC 1939 §3
        if self.state == AUTHORIZATION:
            return self.login_left(self.config.login_timeout)
        return self.config.idle_timeout

    def _autologout(self) -> None:
        # idle, or waiting on the client all along (an AUTH continuation it never sends, a reply
        # it stopped reading: resumeProducing restarts the timer whenever it reads some)
        # RFC 1939 §3: close without a reply and without entering UPDATE
        if self.state == AUTHORIZATION:
            log.info("pop3 %s: no login within %d s; closing", self.peer, self.config.login_timeout)
        else:
            log.info("pop3 %s: autologout after %d s idle", self.peer, self.config.idle_timeout)
        self.close()

    # -- output: write, close, drained() in gateways/common/lineproto.py ---------------------
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
            if not self._accept(line):
                continue  # the AUTH continuation
            if line is not TOO_LONG and line[:5].rstrip().upper() == b"STLS" \
                    and self.state == AUTHORIZATION and self.ctx.tls is not None and not self.is_tls:
                # whatever the client pipelined after STLS is discarded, never run in plaintext
                self._hold_for_tls(line)
                self._reader.reset()
                break
        self._pump()

    def _item_size(self, line) -> int:
        return 0 if line is TOO_LONG else len(line)

    def next_line(self) -> Deferred:
        """The client's next line, for the AUTH continuation; None once the connection is gone,
        TOO_LONG for an over-long one."""
        return self.next_item()

    # -- command execution (the skeleton: LineSession._execute) ------------------------------
    async def _run(self, line) -> None:
        try:
            if line is TOO_LONG:
                raise POP3Error("Line too long (limit %d octets)" % self.config.max_line, bad=True)
            try:
                cmd = parse_command(line)
            except ParseError as e:
                raise POP3Error(str(e), bad=True) from None
            keyword = self.command_label = cmd.keyword
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
            (log.warning if code else log.info)("pop3 %s: %s failed: %s: %s", self.peer, self.command_label,
                                                type(e).__name__, e)
            self.fail(text, code)

    def _internal_error(self) -> None:
        self.fail("Internal error; the event was logged", "SYS/TEMP")

    def fail(self, text: str, code: Optional[str] = None, bad: bool = False) -> None:
        self.write(b"-ERR %s%s\r\n" % (response_code(code), text.encode("utf-8", "replace")))
        if bad:
            self.count_bad_command(b"-ERR Too many bad commands; closing the connection\r\n")
