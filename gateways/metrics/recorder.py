"""Every metric of the process, in one registry of its own (``prometheus_client``: the
exposition formats, histograms, and counters safe to bump from the DB pool's threads).

Imported only when ``[metrics] listen`` is set (gateways/service.py); see ``__init__.py``.

Names follow Prometheus' conventions: ``haven_`` first, counters end in ``_total``, durations
are ``_seconds`` histograms.  Label values come from closed sets (protocol = the config section
of the listener, result, operation = the store's transaction names), never from clients.
"""

from __future__ import annotations

import logging
import time
from typing import Callable, Iterable, Optional

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics
from prometheus_client import GCCollector, PlatformCollector, ProcessCollector
from prometheus_client.exposition import choose_encoder
from twisted.internet import defer, task

from store.interfaces import DELIVERY_OUTCOMES, StoreObserver

log = logging.getLogger("haven.metrics")

#: what the portal said to a login
LOGIN_RESULTS = ("ok", "failed", "blocked", "unavailable")
#: protocols without logins (no login series shown for them)
NO_LOGIN = ("lmtp",)
#: store transactions: from a cached read (~0.1 ms) to a stuck lock (the busy timeout)
STORE_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
#: push wake-ups: normally well under a millisecond after the commit
PUSH_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)


class Metrics(StoreObserver):
    """The registry and its metrics; also the store's observer (``StoreSettings.observer``)."""

    def __init__(self):
        disable_created_metrics()  # no *_created series: twice the series for a restart time
        r = self.registry = CollectorRegistry(auto_describe=True)
        ProcessCollector(registry=r)
        PlatformCollector(registry=r)
        GCCollector(registry=r)
        self.connections = Counter("haven_connections", "Connections accepted, by protocol",
                                   ["protocol"], registry=r)
        self.connections_open = Gauge("haven_connections_open", "Connections open now, by protocol",
                                      ["protocol"], registry=r)
        self.logins = Counter("haven_logins", "Logins the portal answered, by protocol and result "
                              "(ok, failed, blocked: refused by the throttle, unavailable: the store "
                              "could not be asked); on http every request with Basic credentials",
                              ["protocol", "result"], registry=r)
        self.deliveries = Counter("haven_deliveries", "Recipients of deliveries (LMTP, local submission), "
                                  "by result", ["result"], registry=r)
        self.store_seconds = Histogram("haven_store_operation_seconds", "Store transactions, by operation "
                                       "(retries included)", ["operation"], buckets=STORE_BUCKETS, registry=r)
        self.pool_in_use = Gauge("haven_store_pool_threads_in_use", "DB pool threads running a transaction",
                                 registry=r)
        self.pool_size = Gauge("haven_store_pool_threads", "DB pool threads at most", registry=r)
        self.push_seconds = Histogram("haven_push_latency_seconds", "From a commit to each push subscriber "
                                      "hearing of it (IMAP IDLE ...), in this process", buckets=PUSH_BUCKETS,
                                      registry=r)
        self.queue_messages = Gauge("haven_outbound_queue_messages", "Messages in the outbound queue",
                                    registry=r)
        self.queue_recipients = Gauge("haven_outbound_queue_recipients",
                                      "Recipients in the outbound queue not yet relayed or failed", registry=r)
        self.queue_oldest_age = Gauge("haven_outbound_queue_oldest_age_seconds",
                                      "Age of the oldest message in the outbound queue (0 when empty)",
                                      registry=r)
        self.queue_updated = Gauge("haven_outbound_queue_updated_timestamp_seconds",
                                   "When the outbound queue's numbers were last read from the store",
                                   registry=r)
        self._oldest: Optional[int] = None
        self.queue_oldest_age.set_function(lambda: max(0.0, time.time() - self._oldest) if self._oldest else 0.0)
        for outcome in DELIVERY_OUTCOMES:
            self.deliveries.labels(outcome)

    # -- the process -------------------------------------------------------------------------
    def protocols(self, names: Iterable[str]) -> None:
        """Show every protocol's series from the start (at 0), not only after its first event."""
        for name in names:
            self.connections.labels(name)
            self.connections_open.labels(name)
            for result in LOGIN_RESULTS if name not in NO_LOGIN else ():
                self.logins.labels(name, result)

    def opened(self, protocol: str) -> None:
        self.connections.labels(protocol).inc()
        self.connections_open.labels(protocol).inc()

    def closed(self, protocol: str) -> None:
        self.connections_open.labels(protocol).dec()

    def login(self, protocol: str, result: str) -> None:
        self.logins.labels(protocol, result).inc()

    def queue(self, messages: int, recipients: int, oldest: Optional[int]) -> None:
        self.queue_messages.set(messages)
        self.queue_recipients.set(recipients)
        self._oldest = oldest
        self.queue_updated.set(time.time())

    def exposition(self, accept: Optional[str]) -> tuple:
        """``(body, content type)`` of a scrape, in the format ``accept`` prefers."""
        encoder, content_type = choose_encoder(accept or "")
        return encoder(self.registry), content_type

    # -- the store's observer (any thread) -----------------------------------------------------
    def transaction(self, desc: str, seconds: float) -> None:
        self.store_seconds.labels(desc).observe(seconds)

    def delivery(self, outcome: str, count: int = 1) -> None:
        self.deliveries.labels(outcome).inc(count)

    def push(self, seconds: float) -> None:
        self.push_seconds.observe(seconds)

    def watch_pool(self, usage: Callable[[], tuple]) -> None:
        self.pool_in_use.set_function(lambda: usage()[0])
        self.pool_size.set_function(lambda: usage()[1])


class QueueWatch:
    """Asks the store for the outbound queue's size every ``interval`` seconds (on the reactor;
    one question at a time), so a scrape reads numbers and never waits for SQL."""

    def __init__(self, store, metrics: Metrics, interval: float):
        self.store, self.metrics, self.interval = store, metrics, interval
        self._loop = task.LoopingCall(self._tick)
        self._asking = False
        self._failing = False

    def start(self) -> None:
        self._loop.start(self.interval, now=True)

    def stop(self) -> None:
        if self._loop.running:
            self._loop.stop()

    def _tick(self) -> None:
        if self._asking:
            return
        self._asking = True
        defer.Deferred.fromCoroutine(self._ask())

    async def _ask(self) -> None:
        try:
            self.metrics.queue(*await self.store.outbound_summary())
            if self._failing:
                log.info("metrics: the outbound queue can be read again")
            self._failing = False
        except Exception as e:  # the numbers stay as they were; one line per outage
            if not self._failing:
                log.warning("metrics: cannot read the outbound queue: %s", e)
            self._failing = True
        finally:
            self._asking = False
