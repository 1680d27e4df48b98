"""The ``[submission]`` keys of the outbound relay, read by both gateways that need them: the
relay (``gateways/relay``: the smarthost, the retry schedule, how long to keep trying) and the
submission gateway (whether a relay is set at all, and its name for the log).  One INI section,
one reading; a bad value stops start-up with a :class:`~gateways.common.errors.StartupError`
naming ``[submission] key`` and what to write instead.

"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Mapping, Optional, Tuple, Union

from gateways.common.settings import SectionSettings, parse_duration

DEFAULT_RETRY_SCHEDULE = "1m 5m 15m 30m 1h 2h 4h"


@dataclass(frozen=True)
class RelaySettings:
    """The smarthost: ``relay``, ``relay_user``/``relay_password``, ``relay_tls``,
    ``relay_tls_verify``, ``relay_timeout``."""
    host: str
    port: int
    user: str = ""
    password: str = ""
    tls: str = "starttls"  # starttls | none | tls
    verify: bool = True
    timeout: float = 300.0

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


@dataclass(frozen=True)
class OutboundSettings:
    """What the relay reads: the smarthost (None when ``relay`` is empty), ``retry_schedule``,
    ``max_queue_age`` and ``queue_interval`` (seconds)."""
    relay: Optional[RelaySettings] = None
    retry_schedule: Tuple[float, ...] = (60, 300, 900, 1800, 3600, 7200, 14400)
    max_queue_age: float = 5 * 86400
    queue_interval: float = 5.0


def section(settings: Union[SectionSettings, Mapping[str, str], None]) -> SectionSettings:
    """The ``[submission]`` section for these reads (a mapping as the config gives it)."""
    if isinstance(settings, SectionSettings):
        return settings
    return SectionSettings("submission", settings)


def parse_outbound(settings: Union[SectionSettings, Mapping[str, str], None]) -> OutboundSettings:
    s = section(settings)
    relay = None
    if s.value("relay"):
        host, port = s.host_port("relay", "smtp.example.net:587 (your smarthost)")
        user = s.value("relay_user") or ""
        password = s._s.get("relay_password") or ""
        if bool(user) != bool(password):
            raise s._error("relay_user and relay_password go together: set both or neither")
        relay = RelaySettings(host=host, port=port, user=user, password=password,
                              tls=s.choice("relay_tls", "starttls", ("starttls", "none", "tls")),
                              verify=s.boolean("relay_tls_verify", True),
                              timeout=s.duration("relay_timeout", 300))
        if relay.timeout <= 0:
            raise s._error("relay_timeout must be more than 0")
    schedule_text = s.value("retry_schedule") or DEFAULT_RETRY_SCHEDULE
    schedule = tuple(parse_duration(part, "retry_schedule", s.section)
                     for part in re.split(r"[\s,]+", schedule_text) if part)
    if not schedule or min(schedule) <= 0:
        raise s._error(f"retry_schedule = {schedule_text!r}: expected durations above 0, "
                       f"e.g. {DEFAULT_RETRY_SCHEDULE}")
    interval = s.duration("queue_interval", 5)
    if interval <= 0:
        raise s._error("queue_interval must be more than 0")
    return OutboundSettings(relay=relay, retry_schedule=schedule, max_queue_age=s.duration("max_queue_age", 5 * 86400),
                            queue_interval=interval)
