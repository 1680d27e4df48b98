"""One way for every gateway to read its INI section: typed values, and a bad value stops
start-up with a :class:`~gateways.common.errors.StartupError` naming ``[section] key``.

The error is a :class:`SettingError`, a StartupError that is also a ValueError, so a caller
that caught the ValueError of a gateway's earlier hand-written reads still does."""

from __future__ import annotations

import math
from typing import Mapping, Optional, Sequence

from gateways.common.errors import StartupError

_TRUE, _FALSE = ("1", "yes", "true", "on"), ("0", "no", "false", "off")


class SettingError(StartupError, ValueError):
    """A bad value in the config: the message names ``[section] key`` and what is expected."""


class SectionSettings:
    """Typed reads of one INI section for a gateway's config; a bad value stops start-up with a
    :class:`StartupError` naming ``[section] key``.  Empty means the default."""

    def __init__(self, section: str, settings: Optional[Mapping[str, str]]):
        self.section = section
        self._s = dict(settings or {})

    def value(self, key: str) -> Optional[str]:
        v = self._s.get(key)
        return None if v is None or str(v).strip() == "" else str(v).strip()

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
        """One of ``choices`` (compared in lower case)."""
        v = (self.value(key) or default).lower()
        if v not in choices:
            raise self._error("%s = %r: expected %s" % (key, v, " or ".join(choices)))
        return v

    def duration(self, key: str, default: float, minimum: float, unit: float = 1.0) -> float:
        """A number of ``unit`` seconds (60: the INI says minutes), at least ``minimum`` units,
        returned in seconds."""
        return self.number(key, default, float, minimum) * unit
