"""Observability of the running process: Prometheus metrics and a health check on a listener
of their own (``[metrics] listen``), apart from the public front door.

    /metrics   the Prometheus exposition (text, or OpenMetrics when the scraper asks for it)
    /healthz   200 ``ok`` when the store answers and its schema is current, else 503 and why

- ``recorder.py``: every metric (``prometheus_client``), and the store observer that feeds
  the store's ones (``store.interfaces.StoreObserver``);
- ``counting.py``: what counts connections and logins without touching a protocol: a wrapper
  around each listener's factory and one around the portal handed to each gateway;
- ``health.py``: the health check and its resource (no ``prometheus_client``: ``[metrics]
  http_healthz`` mounts it on the front door too);
- ``site.py``: the listener's small site.

Invariants
- With ``[metrics] listen`` empty nothing of this is started and ``prometheus_client`` is never
  imported: the store gets no observer (it measures nothing), factories and the portal are
  handed to the gateways as they are.  Only this module and ``health.py`` load regardless.
- A scrape never waits for SQL: the outbound queue's numbers are asked of the store every
  ``queue_interval`` seconds on the reactor, the scrape reads the last answer.
- ``/healthz`` is unauthenticated: it says only ``ok`` or one line of why not.  One store
  probe is in flight at a time, however many checks wait for it.

Not here: the metrics of ``haven deliver`` and other CLI commands (short-lived processes).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Optional

from gateways.common.settings import SectionSettings

SECTION = "metrics"


@dataclass(frozen=True)
class MetricsConfig:
    """The ``[metrics]`` keys besides ``listen`` (the service parses that one like every listen)."""
    health_timeout: float = 2.0
    queue_interval: float = 15.0
    http_healthz: bool = False

    @classmethod
    def from_settings(cls, settings: Optional[Mapping[str, str]]) -> "MetricsConfig":
        """A bad value stops start-up naming ``[metrics] key``."""
        s = SectionSettings(SECTION, settings)
        return cls(health_timeout=s.duration("health_timeout", cls.health_timeout, minimum=0.1),
                   queue_interval=s.duration("queue_interval", cls.queue_interval, minimum=1),
                   http_healthz=s.boolean("http_healthz", cls.http_healthz))
