"""What the IMAP, POP3 and ManageSieve connections share: commands run one at a time in the
order they arrived, reading pauses when too much waits, writing waits when the client stops
reading; and (POP3, ManageSieve) who may log in without TLS.

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

import ipaddress
from collections import deque
from typing import Optional

from twisted.internet import defer
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IPushProducer, ISSLTransport
from twisted.internet.protocol import Protocol
from zope.interface import implementer


def is_local(address) -> bool:
    """Loopback TCP or a unix socket: the peer is this machine (a local proxy, webmail or client)."""
    host = getattr(address, "host", None)
    if host is None:
        return True  # UNIXAddress
    try:
        ip = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False
    mapped = getattr(ip, "ipv4_mapped", None)
    return (mapped or ip).is_loopback


class PlaintextPolicy:
    """``allow_plaintext_auth``: a login without TLS is allowed when the setting says so, after
    STARTTLS/STLS (``tls_started``) or on an implicit-TLS listener, and from this machine
    (``local``, set from :func:`is_local` at connect)."""
    tls_started = False
    local = False

    @property
    def is_tls(self) -> bool:
        return self.tls_started or ISSLTransport.providedBy(self.transport)

    def plaintext_auth_allowed(self) -> bool:
        return self.config.allow_plaintext_auth or self.is_tls or self.local


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
    def _enqueue(self, item) -> None:
        self._queue.append(item)
        self._queued_bytes += self._item_size(item)
        if not self._reading_paused and (len(self._queue) > self.max_queued_items
                                         or self._queued_bytes > self.max_queued_bytes):
            self._reading_paused = True
            self.transport.pauseProducing()

    def _dequeue(self):
        item = self._queue.popleft()
        self._queued_bytes -= self._item_size(item)
        if self._reading_paused and len(self._queue) < self.max_queued_items // 2 \
                and self._queued_bytes < self.max_queued_bytes // 2:
            self._reading_paused = False
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
