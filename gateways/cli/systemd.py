"""The systemd service protocol of ``haven serve`` (sd_notify(3)), without libsystemd.

Invariants
- Every message is one datagram to ``$NOTIFY_SOCKET`` (a path, or an abstract name written
  with a leading ``@``), sent without blocking: a full or missing socket drops the message and
  logs at debug, it never stops or slows the reactor.  Without ``$NOTIFY_SOCKET`` (not started
  by systemd, or ``Type=simple``) nothing is sent.
- ``READY=1`` only once every listener is bound and the store is open; ``RELOADING=1`` (with
  ``MONOTONIC_USEC``, which ``Type=notify-reload`` wants) before a SIGHUP reload and ``READY=1``
  after it; ``STOPPING=1`` when shutdown begins.
- ``WATCHDOG=1`` every half ``$WATCHDOG_USEC`` (``WatchdogSec=``), each one after a query
  through the store's pool came back: a wedged reactor or a pool whose threads all hang stops
  the pings and systemd restarts Haven.  A query that fails quickly (the database is down)
  still pings: a restart would not bring the database back, and the store answers 4xx meanwhile.
  The query takes the writer's turn (SQLite has one connection): a transaction holding it for
  the whole ``WatchdogSec`` counts as hung too.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from typing import Optional

from twisted.internet import defer, task  # neither installs a reactor

log = logging.getLogger("haven.systemd")


def _address() -> Optional[str]:
    address = os.environ.get("NOTIFY_SOCKET", "")
    if address.startswith("@"):
        return "\0" + address[1:]  # abstract namespace
    return address if address.startswith("/") else None


def notify(*fields: str) -> bool:
    """Send ``fields`` (``"READY=1"``, ``"STATUS=..."``) as one message; True when it was sent."""
    address = _address()
    if address is None:
        return False
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.setblocking(False)
            sock.sendto("\n".join(fields).encode("utf-8"), address)
    except OSError as e:
        log.debug("sd_notify %s: %s", fields[0] if fields else "", e)
        return False
    return True


def monotonic_usec() -> str:
    """``MONOTONIC_USEC=...``: the CLOCK_MONOTONIC time systemd compares a reload with."""
    return f"MONOTONIC_USEC={time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000}"


def watchdog_interval() -> Optional[float]:
    """Seconds between two ``WATCHDOG=1`` (half of ``$WATCHDOG_USEC``), or None when systemd
    watches no process, or another one (``$WATCHDOG_PID``)."""
    pid = os.environ.get("WATCHDOG_PID", "")
    if pid and pid != str(os.getpid()):
        return None
    try:
        usec = int(os.environ.get("WATCHDOG_USEC", ""))
    except ValueError:
        return None
    return usec / 2e6 if usec > 0 else None


class Watchdog:
    """Pings systemd's watchdog on ``reactor`` every ``interval`` seconds, each ping after
    ``check()`` (an awaitable factory: a cheap store query) has come back."""

    def __init__(self, reactor, interval: float, check):
        self.check = check
        self._call = task.LoopingCall(self._beat)
        self._call.clock = reactor
        self.interval = interval

    def start(self) -> None:
        log.info("systemd watchdog: a ping every %.1f s", self.interval)
        self._call.start(self.interval, now=True).addErrback(
            lambda f: log.error("systemd watchdog stopped: %s", f.getTraceback()))

    def stop(self) -> None:
        if self._call.running:
            self._call.stop()

    def _beat(self):
        async def beat():
            try:
                await self.check()
            except Exception as e:  # answered: the pool and the reactor live; the database may not
                log.warning("systemd watchdog: the store check failed: %s", e)
            notify("WATCHDOG=1")
        return defer.Deferred.fromCoroutine(beat())
