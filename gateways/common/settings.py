"""One way for every gateway to read its INI section: typed values, and a bad value stops
start-up with a :class:`~gateways.common.errors.StartupError` naming ``[section] key``.

The error is a :class:`SettingError`, a StartupError that is also a ValueError, so a caller
that caught the ValueError of a gateway's earlier hand-written reads still does."""

from __future__ import annotations

import math
import re
from typing import Mapping, Optional, Sequence, Tuple

from gateways.common.errors import StartupError

_TRUE, _FALSE = ("1", "yes", "true", "on"), ("0", "no", "false", "off")
_YES_NO = {**{t: "yes" for t in _TRUE}, **{f: "no" for f in _FALSE}}
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*$", re.I)


class SettingError(StartupError, ValueError):
    """A bad value in the config: the message names ``[section] key`` and what is expected."""


def parse_duration(value: str, key: str, section: str, unit: float = 1.0) -> float:
    """Seconds for ``90`` (in ``unit`` seconds), ``30s``, ``5m``, ``2h``, ``5d``, ``1w``."""
    m = _DURATION.match(value or "")
    if not m:
        raise SettingError(f"[{section}] {key} = {value!r}: expected a duration such as 90, 30s, 5m, 2h or 5d")
    return float(m.group(1)) * (_UNITS[m.group(2).lower()] if m.group(2) else unit)


class SectionSettings:
    """Typed reads of one INI section for a gateway's config; a bad value stops start-up with a
    :class:`StartupError` naming ``[section] key``.  Empty means the default."""

    def __init__(self, section: str, settings: Optional[Mapping[str, str]]):
        self.section = section
        self._s = dict(settings or {})

    def value(self, key: str) -> Optional[str]:
        v = self._s.get(key)
        return None if v is None or str(v).strip() == "" else str(v).strip()

    def text(self, key: str, default: str) -> str:
        """The value as written (stripped); ``default`` only when the key is absent, so an
        empty value can switch a feature off."""
        v = self._s.get(key)
        return default if v is None else str(v).strip()

    def _error(self, message: str):
        return SettingError(f"[{self.section}] {message}")

    def number(self, key: str, default, kind, minimum):
        v = self.value(key)
        if v is None:
            return default
        try:
            n = kind(v)
        except ValueError:
            n = None
        if n is None or not math.isfinite(n) or n < minimum:
            raise self._error("%s = %r: expected a %s of at least %s"
                              % (key, v, "whole number" if kind is int else "number", minimum))
        return n

    def boolean(self, key: str, default: bool) -> bool:
        v = (self.value(key) or ("yes" if default else "no")).lower()
        if v not in _TRUE + _FALSE:
            raise self._error("%s = %r: expected yes or no" % (key, v))
        return v in _TRUE

    def choice(self, key: str, default: str, choices: Sequence[str]) -> str:
        """One of ``choices`` (compared in lower case); where yes and no are choices, also
        true/on/1 and false/off/0."""
        v = (self.value(key) or default).lower()
        if "yes" in choices or "no" in choices:
            v = _YES_NO.get(v, v)
        if v not in choices:
            raise self._error("%s = %r: expected %s" % (key, self._s.get(key), " or ".join(choices)))
        return v

    def duration(self, key: str, default: float, minimum: float = 0.0, unit: float = 1.0) -> float:
        """Seconds.  A bare number counts ``unit`` seconds (60: the INI says minutes); ``30s``,
        ``5m``, ``2h``, ``5d``, ``1w`` carry their own unit.  ``default`` and ``minimum`` are
        in ``unit``s."""
        v = self.value(key)
        if v is None:
            return default * unit
        seconds = parse_duration(v, key, self.section, unit)
        if seconds < minimum * unit:
            raise self._error("%s = %r: expected at least %s" % (key, v, minimum if unit == 1 else
                                                                 f"{minimum} (x {unit:g} s)"))
        return seconds

    def host_port(self, key: str, example: str = "mail.example.net:587") -> Tuple[str, int]:
        """``HOST:PORT`` (``[v6 address]:PORT``) as (host, port)."""
        raw = self.value(key) or ""
        host, sep, port = raw.rpartition(":")
        host = host.strip().strip("[]")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise self._error(f"{key} = {self._s.get(key)!r}: expected HOST:PORT, e.g. {example} "
                              f"([2001:db8::1]:587 for IPv6)")
        return host, int(port)
