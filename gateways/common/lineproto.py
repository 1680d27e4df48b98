"""What the IMAP, POP3 and ManageSieve connections share: commands run one at a time in the
order they arrived, reading pauses when too much waits, writing waits when the client stops
reading (:class:`OrderedLineProtocol`); the connection's lifecycle around that (:class:`LineSession`:
TCP_NODELAY, the login/idle timer, the STARTTLS hold, handing lines to a handler that waits for
one, the error skeleton, bad-command counting, the logout callback); and (POP3, ManageSieve) who
may log in without TLS (:class:`PlaintextPolicy`).

Invariants
- ``_execute(item)`` runs for one queued item at a time, in arrival order; the next starts once
  the previous coroutine finished, so pipelined commands simply wait in ``_queue``.
- Reading from the transport pauses when more than ``max_queued_items`` items or
  ``max_queued_bytes`` octets wait, and resumes once both are below half of that.
- The protocol is its transport's push producer: a handler writing a big reply awaits
  :meth:`drained`, which fires when the transport resumes it or the connection is gone.
- :meth:`close` unregisters the producer before closing: Twisted's TLS layer sends close_notify
  (and so closes at all) only once no producer is registered.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from typing import Optional

from twisted.internet import defer
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IPushProducer, ISSLTransport
from twisted.internet.protocol import Protocol
from twisted.protocols.policies import TimeoutMixin
from zope.interface import implementer

from gateways.common.clientaddr import proxied_tls, was_proxied
from gateways.common.plaintext import is_local, plaintext_allowed


class PlaintextPolicy:
    """``allow_plaintext_auth`` (:data:`PLAINTEXT_CHOICES`) for a line protocol: a login is
    allowed after STARTTLS/STLS (``tls_started``), on an implicit-TLS listener or when a trusted
    proxy's PROXY v2 header says the client's hop is TLS, and without TLS as the setting says
    (``local`` set from :func:`is_local` at connect: the real client's address, so a remote
    client behind a proxy on loopback is not local)."""
    tls_started = False
    local = False

    @property
    def is_tls(self) -> bool:
        return self.tls_started or ISSLTransport.providedBy(self.transport) or proxied_tls(self.transport)

    def plaintext_auth_allowed(self) -> bool:
        return plaintext_allowed(self.config.allow_plaintext_auth, self.is_tls, self.local)


@implementer(IPushProducer)
class OrderedLineProtocol(Protocol):
    max_queued_items = 500
    max_queued_bytes = 4 << 20

    def __init__(self):
        self._queue: deque = deque()
        self._queued_bytes = 0
        self._reading_paused = False
        self._running = False
        self._pumping = False
        self._waiter: Optional[Deferred] = None  # a handler waiting for the client's next line
        self._paused = False  # the transport asked us to stop writing
        self._drain_waiters: list = []
        self._closed = False
        self._input_held = 0  # holds on reading besides the queue's (a spool writing behind)

    # -- what a protocol provides ------------------------------------------------------------
    def _item_size(self, item) -> int:
        """Octets a queued item holds (counted against ``max_queued_bytes``)."""
        return len(item)

    async def _execute(self, item) -> None:
        raise NotImplementedError

    def _command_done(self) -> None:
        """After each command, while the connection is open (timers)."""

    def _on_resume(self) -> None:
        """The transport wants data again (before drain waiters fire)."""

    # -- output ------------------------------------------------------------------------------
    def write(self, data: bytes) -> None:
        if not self._closed and data:
            self.transport.write(data)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self.transport.unregisterProducer()
            self.transport.loseConnection()
            self._fire_drain_waiters()

    def pauseProducing(self):
        self._paused = True

    def resumeProducing(self):
        self._paused = False
        self._on_resume()
        self._fire_drain_waiters()

    def stopProducing(self):
        self._closed = True
        self._fire_drain_waiters()

    def _fire_drain_waiters(self) -> None:
        waiters, self._drain_waiters = self._drain_waiters, []
        for d in waiters:
            d.callback(None)

    def drained(self) -> Deferred:
        """Fires when the transport wants more data (at once unless it asked us to pause)."""
        if not self._paused or self._closed:
            return defer.succeed(None)
        d = Deferred()
        self._drain_waiters.append(d)
        return d

    def _release_waiters(self) -> None:
        """On connection loss: nobody waits for output room or for a line any more."""
        self._fire_drain_waiters()
        if self._waiter is not None:
            d, self._waiter = self._waiter, None
            d.callback(None)

    # -- input -------------------------------------------------------------------------------
    def hold_input(self) -> None:
        """Stop reading from the transport until :meth:`release_input` (once per hold)."""
        self._input_held += 1
        if self._input_held == 1 and not self._reading_paused and not self._closed:
            self.transport.pauseProducing()

    def release_input(self) -> None:
        self._input_held -= 1
        if self._input_held == 0 and not self._reading_paused and not self._closed:
            self.transport.resumeProducing()

    def _enqueue(self, item) -> None:
        self._queue.append(item)
        self._queued_bytes += self._item_size(item)
        if not self._reading_paused and (len(self._queue) > self.max_queued_items
                                         or self._queued_bytes > self.max_queued_bytes):
            self._reading_paused = True
            if not self._input_held:
                self.transport.pauseProducing()

    def _dequeue(self):
        item = self._queue.popleft()
        self._queued_bytes -= self._item_size(item)
        if self._reading_paused and len(self._queue) < self.max_queued_items // 2 \
                and self._queued_bytes < self.max_queued_bytes // 2:
            self._reading_paused = False
            if not self._input_held:
                self.transport.resumeProducing()
        return item

    def _pump(self) -> None:
        if self._pumping:
            return
        self._pumping = True
        try:
            while not self._running and self._queue and not self._closed:
                item = self._dequeue()
                self._running = True
                d = Deferred.fromCoroutine(self._execute(item))
                d.addBoth(self._finished)
        finally:
            self._pumping = False

    def _finished(self, _result):
        self._running = False
        if not self._closed:
            self._command_done()
        self._pump()
        return None


class LineSession(OrderedLineProtocol, TimeoutMixin):
    """One client connection of a line protocol, from connect to close.

    A protocol subclasses it and provides: ``log`` and ``label`` (the logger and the name its
    lines start with), ``_session_timeout()`` (the timer's period in the current state),
    ``_autologout()`` (what the timer does once it fires on an idle connection), ``_run(item)``
    (one queued item, its protocol errors answered) and ``_internal_error()`` (the reply to any
    other exception, which the skeleton has logged).

    Invariants
    - The timer runs from connect to close: ``_session_timeout()`` after connect and after every
      command; while a command is still being worked on it is re-armed, not fired.
    - A handler waiting for the client's next item (:meth:`next_item`) gets it before anything
      is queued behind it; the ordered queue is not touched otherwise.
    - After STARTTLS is queued nothing more is read until its command has run: plaintext the
      client pipelined after it is thrown away, never run (CVE-2011-0411 class of bug); the
      protocol resets its framer when it holds (:meth:`_hold_for_tls`).
    - ``_internal_error`` runs for an exception no handler expected, after one log line with
      the traceback; the connection stays up unless the protocol closes it.
    - ``peer`` and ``local`` are the real client's (after a PROXY header: ``transport.getPeer()``
      is the wrapper's).  A connection ``ctx.gate`` refuses gets ``too_many_connections[which]``
      and is closed before the greeting; an admitted one is released once, at connection loss.
    """

    log = logging.getLogger("haven")
    label = "line"
    #: the farewell to a connection over a limit of ``ctx.gate``: "address" (too many from the
    #: client's address) or "server" (too many in all)
    too_many_connections = {"address": b"", "server": b""}
    #: wait for the transport to take a command's reply before the next command starts
    drain_after_command = False

    def __init__(self, ctx, config):
        OrderedLineProtocol.__init__(self)
        self.ctx = ctx
        self.store = ctx.store
        self.config = config
        self.account = None
        self.peer = "?"
        self.local = False
        self.command_label = "?"  # the command being run, for log lines
        self.bad_commands = 0
        self._logout_cb = None
        self._tls_pending = False
        self._tls_item = None  # the queued STARTTLS that set _tls_pending
        self.login_started = time.monotonic()  # the login deadline counts from here
        self._admission = None  # our place under ctx.gate's limits

    # -- what a protocol provides ------------------------------------------------------------
    def _session_timeout(self) -> float:
        return self.config.idle_timeout

    def _autologout(self) -> None:
        self.close()

    def login_left(self, login_timeout: float) -> float:
        """Seconds left to log in: ``login_timeout`` from the connection (or the last
        UNAUTHENTICATE), however much the client sends meanwhile (NOOPs, a slow literal)."""
        return max(0.01, self.login_started + login_timeout - time.monotonic())

    def input_seen(self) -> None:
        """Input restarts the idle timer of a logged-in session; before login the deadline
        stands (the timer is re-armed to what is left of it after each command)."""
        if self.account is not None:
            self.resetTimeout()

    def _busy(self) -> bool:
        """A command is being worked on (the timer must not end the connection)."""
        return self._running and self._waiter is None and not self._drain_waiters

    async def _run(self, item) -> None:
        raise NotImplementedError

    def _internal_error(self) -> None:
        raise NotImplementedError

    # -- connection lifecycle ----------------------------------------------------------------
    def connectionMade(self):
        try:
            address = self.transport.getPeer()
            self.peer = getattr(address, "host", None) or "local"
            self.local = is_local(address)
        except Exception:
            address, self.peer, self.local = None, "?", False
        gate = getattr(self.ctx, "gate", None)
        if gate is not None:
            self._admission, which = gate.admit(getattr(address, "host", None), was_proxied(self.transport))
            if self._admission is None:
                # the protocol's own "too many connections" farewell, then close; nothing else
                # is written (subclasses' greetings see the connection closed)
                self._closed = True
                self.transport.write(self.too_many_connections[which])
                self.transport.loseConnection()
                return
        # Replies are often several small writes; without TCP_NODELAY the last one can wait for
        # the client's delayed ACK (~40 ms), which would dominate IDLE wake-ups and small replies.
        no_delay = getattr(self.transport, "setTcpNoDelay", None)
        if no_delay is not None:
            try:
                no_delay(True)
            except (OSError, AttributeError):
                pass
        self.transport.registerProducer(self, True)
        self.setTimeout(self._session_timeout())

    def connectionLost(self, reason=None):
        self._closed = True
        self.setTimeout(None)
        if self._admission is not None:
            self._admission.release()
        self.release_account()
        self._release_waiters()

    def release_account(self) -> None:
        """Run the portal's logout callback, once (logout, connection loss)."""
        if self._logout_cb is not None:
            cb, self._logout_cb = self._logout_cb, None
            try:
                cb()
            except Exception:
                self.log.exception("logout callback failed")

    def timeoutConnection(self):
        if self._busy():
            self.setTimeout(self._session_timeout())  # still working on a command
            return
        self._autologout()

    def _on_resume(self) -> None:
        if self._drain_waiters and not self._closed:
            # the client is reading a reply: not idle (before login the deadline still stands)
            self.setTimeout(self._session_timeout())

    def _command_done(self) -> None:
        self.setTimeout(self._session_timeout())

    # -- input -------------------------------------------------------------------------------
    def _accept(self, item) -> bool:
        """Hand ``item`` to the handler waiting for the next one, or queue it; True if queued."""
        if self._waiter is not None and not self._queue:
            d, self._waiter = self._waiter, None
            d.callback(item)
            return False
        self._enqueue(item)
        return True

    def _hold_for_tls(self, item) -> None:
        """``item`` (queued) is a STARTTLS: read nothing more until it has run."""
        self._tls_pending = True
        self._tls_item = item

    def next_item(self) -> Deferred:
        """The client's next queued item, for a handler that reads more than one (SASL, IDLE);
        None once the connection is gone."""
        if self._queue:
            return defer.succeed(self._dequeue())
        if self._closed:
            return defer.succeed(None)
        self._waiter = Deferred()
        return self._waiter

    # -- command execution -------------------------------------------------------------------
    async def _execute(self, item) -> None:
        self.command_label = "?"
        try:
            await self._run(item)
        except Exception:
            self.log.exception("%s %s: unexpected error in %s", self.label, self.peer, self.command_label)
            self._internal_error()
        finally:
            if item is self._tls_item:
                self._tls_pending, self._tls_item = False, None
        if self.drain_after_command:
            await self.drained()

    def count_bad_command(self, farewell: bytes) -> None:
        """One more malformed, unknown or out-of-state command; at ``config.max_bad_commands``
        write ``farewell`` and close."""
        self.bad_commands += 1
        if self.bad_commands >= self.config.max_bad_commands:
            self.log.info("%s %s: too many bad commands; closing", self.label, self.peer)
            self.write(farewell)
            self.close()

    def map_store_error(self, e: Exception) -> tuple:
        """(response code, text) for a store error, from the protocol's ``STORE_ERRORS`` table
        of (error class, code, text or None for ``str(e)``); the first match wins."""
        for cls, code, text in self.STORE_ERRORS:
            if isinstance(e, cls):
                return code, text or str(e) or type(e).__name__
        return self.STORE_ERROR_FALLBACK
