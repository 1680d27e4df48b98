"""One way for every gateway to read its INI section: typed values, and a bad value stops
start-up with a :class:`~gateways.common.errors.StartupError` naming ``[section] key``."""

from __future__ import annotations

from typing import Mapping, Optional

from gateways.common.errors import StartupError

_TRUE, _FALSE = ("1", "yes", "true", "on"), ("0", "no", "false", "off")


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
        return StartupError(f"[{self.section}] {message}")

    def number(self, key: str, default, kind, minimum):
        v = self.value(key)
        if v is None:
            return default
        try:
            n = kind(v)
        except ValueError:
            n = None
        if n is None or n < minimum:
            raise self._error("%s = %r: expected a %s of at least %s"
                              % (key, v, "whole number" if kind is int else "number", minimum))
        return n

    def boolean(self, key: str, default: bool) -> bool:
        v = (self.value(key) or ("yes" if default else "no")).lower()
        if v not in _TRUE + _FALSE:
            raise self._error("%s = %r: expected yes or no" % (key, v))
        return v in _TRUE
