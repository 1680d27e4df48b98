"""The ``[submission]`` INI section as typed values, checked once at start-up.

Every key is documented (with its default) in ``conf/haven.ini``; the defaults here are the
same and only matter when a caller passes an incomplete mapping (tests, the bench).  A bad
value raises :class:`SettingsError` naming the key and what to write instead.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Mapping, Optional, Tuple

DEFAULT_MAX_MESSAGE_SIZE = 50 * 1024 * 1024
DEFAULT_RETRY_SCHEDULE = "1m 5m 15m 30m 1h 2h 4h"


class SettingsError(ValueError):
    """A malformed ``[submission]`` value; the message says which key and what is expected."""


@dataclass(frozen=True)
class RelaySettings:
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
class SubmissionSettings:
    allow_plaintext_auth: str = "loopback"  # loopback | yes | no
    max_recipients: int = 1000
    timeout: float = 300.0
    max_message_size: Optional[int] = DEFAULT_MAX_MESSAGE_SIZE
    relay: Optional[RelaySettings] = None
    retry_schedule: Tuple[float, ...] = (60, 300, 900, 1800, 3600, 7200, 14400)
    max_queue_age: float = 5 * 86400
    queue_interval: float = 5.0


_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*$", re.I)


def parse_duration(value: str, key: str) -> float:
    """``90`` (seconds), ``30s``, ``5m``, ``2h``, ``5d``, ``1w``."""
    m = _DURATION.match(value or "")
    if not m:
        raise SettingsError(f"[submission] {key} = {value!r}: expected a duration such as 90, 30s, 5m, 2h or 5d")
    return float(m.group(1)) * _UNITS[m.group(2).lower()]


def parse_host_port(value: str, key: str) -> Tuple[str, int]:
    host, sep, port = value.strip().rpartition(":")
    host = host.strip().strip("[]")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise SettingsError(f"[submission] {key} = {value!r}: expected HOST:PORT of your smarthost, "
                            f"e.g. smtp.example.net:587 ([2001:db8::1]:587 for IPv6)")
    return host, int(port)


def _choice(settings: Mapping[str, str], key: str, default: str, allowed: tuple) -> str:
    value = (settings.get(key) or "").strip().lower() or default
    aliases = {"true": "yes", "on": "yes", "1": "yes", "false": "no", "off": "no", "0": "no"}
    value = aliases.get(value, value) if "yes" in allowed else value
    if value not in allowed:
        raise SettingsError(f"[submission] {key} = {settings.get(key)!r}: expected one of {', '.join(allowed)}")
    return value


def _number(settings: Mapping[str, str], key: str, default, kind, minimum):
    raw = (settings.get(key) or "").strip()
    if not raw:
        return default
    try:
        value = kind(raw)
    except ValueError:
        value = None
    if value is None or value < minimum:
        raise SettingsError(f"[submission] {key} = {raw!r}: expected a number >= {minimum} (default {default})")
    return value


def parse_settings(settings: Mapping[str, str], limits: Optional[Mapping[str, int]] = None) -> SubmissionSettings:
    settings = settings or {}
    max_size = (limits or {}).get("max_message_size", DEFAULT_MAX_MESSAGE_SIZE)
    relay = None
    if (settings.get("relay") or "").strip():
        host, port = parse_host_port(settings["relay"], "relay")
        user = (settings.get("relay_user") or "").strip()
        password = settings.get("relay_password") or ""
        if bool(user) != bool(password):
            raise SettingsError("[submission] relay_user and relay_password go together: set both or neither")
        relay = RelaySettings(host=host, port=port, user=user, password=password,
                              tls=_choice(settings, "relay_tls", "starttls", ("starttls", "none", "tls")),
                              verify=_choice(settings, "relay_tls_verify", "yes", ("yes", "no")) == "yes",
                              timeout=parse_duration(settings.get("relay_timeout") or "300", "relay_timeout"))
        if relay.timeout <= 0:
            raise SettingsError("[submission] relay_timeout must be more than 0")
    schedule_text = (settings.get("retry_schedule") or "").strip() or DEFAULT_RETRY_SCHEDULE
    schedule = tuple(parse_duration(part, "retry_schedule") for part in re.split(r"[\s,]+", schedule_text) if part)
    if not schedule or min(schedule) <= 0:
        raise SettingsError(f"[submission] retry_schedule = {schedule_text!r}: expected durations above 0, "
                            f"e.g. {DEFAULT_RETRY_SCHEDULE}")
    max_age = parse_duration((settings.get("max_queue_age") or "").strip() or "5d", "max_queue_age")
    interval = parse_duration((settings.get("queue_interval") or "").strip() or "5", "queue_interval")
    if interval <= 0:
        raise SettingsError("[submission] queue_interval must be more than 0")
    return SubmissionSettings(
        allow_plaintext_auth=_choice(settings, "allow_plaintext_auth", "loopback", ("loopback", "yes", "no")),
        max_recipients=_number(settings, "max_recipients", 1000, int, 1),
        timeout=_number(settings, "timeout", 300.0, float, 1),
        max_message_size=int(max_size) or None,
        relay=relay,
        retry_schedule=schedule,
        max_queue_age=max_age,
        queue_interval=interval,
    )
