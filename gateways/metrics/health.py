"""``/healthz``: is this node able to serve?  For load balancers, systemd and monitoring.

200 ``ok`` when the store answered :meth:`~store.interfaces.Store.health_check` within
``[metrics] health_timeout`` and its schema is the one this Haven needs; else 503 and one line
of why.  The line is safe to show anyone (no host names, no paths: the log has the detail).

One probe of the store is in flight at a time: checks that arrive meanwhile wait for the same
answer, each at most the timeout, so a stuck database never fills the DB pool with probes.
"""

from __future__ import annotations

import logging
from typing import Optional

from twisted.internet import defer
from twisted.web import resource, server

from store import errors

log = logging.getLogger("haven.health")


class HealthCheck:
    def __init__(self, store, reactor, timeout: float):
        self.store, self.reactor, self.timeout = store, reactor, timeout
        self._waiters: list = []
        self._probing = False
        self._last: Optional[tuple] = None  # the last answer, for one log line per change

    def check(self) -> defer.Deferred:
        """Fires with ``(healthy, line)``; never fails."""
        waiter = defer.Deferred()
        self._waiters.append(waiter)
        timer = self.reactor.callLater(self.timeout, self._timed_out, waiter)
        waiter.addBoth(lambda result: (timer.active() and timer.cancel(), result)[1])
        if not self._probing:
            self._probing = True
            defer.Deferred.fromCoroutine(self._probe())
        return waiter

    def _timed_out(self, waiter) -> None:
        if waiter in self._waiters:
            self._waiters.remove(waiter)
            self._report(False, f"the store did not answer within {self.timeout:g} s")
            waiter.callback((False, f"the store did not answer within {self.timeout:g} s"))

    async def _probe(self) -> None:
        try:
            answer = await self._ask()
        finally:
            self._probing = False
        waiters, self._waiters = self._waiters, []
        self._report(*answer)
        for waiter in waiters:
            waiter.callback(answer)

    async def _ask(self) -> tuple:
        try:
            current, latest = await self.store.health_check()
        except errors.StoreUnavailable as e:
            return False, f"store unavailable: {e}", e.detail
        except errors.StoreError as e:
            return False, f"store failed: {e}"
        except Exception as e:  # an unexpected failure is unhealthy too, and logged below
            log.exception("health check failed")
            return False, f"store check failed: {type(e).__name__}"
        if current is None:
            return False, "the database holds no Haven store"
        if current != latest:
            return False, f"schema version {current}, this Haven needs {latest} (haven db migrate)"
        return True, "ok"

    def _report(self, healthy: bool, line: str, detail: str = "") -> None:
        if self._last != (healthy, line):
            if healthy:
                if self._last is not None:
                    log.info("health: ok again")
            else:
                log.warning("health: %s%s", line, f" ({detail})" if detail else "")
        self._last = (healthy, line)


class HealthResource(resource.Resource):
    """GET/HEAD ``/healthz``: 200 ``ok`` or 503 with the reason, text/plain, never cached."""
    isLeaf = True

    def __init__(self, check: HealthCheck):
        super().__init__()
        self.health = check

    def render_GET(self, request):
        gone = []
        request.notifyFinish().addErrback(lambda _f: gone.append(True))

        def answer(result):
            healthy, line = result[0], result[1]
            if gone:
                return
            request.setResponseCode(200 if healthy else 503)
            request.setHeader(b"Content-Type", b"text/plain; charset=utf-8")
            request.setHeader(b"Cache-Control", b"no-store")
            if not healthy:
                request.setHeader(b"Retry-After", b"5")
            request.write((line + "\n").encode("utf-8"))
            request.finish()
        self.health.check().addCallback(answer)
        return server.NOT_DONE_YET

    render_HEAD = render_GET
