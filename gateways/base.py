"""What the service hands every gateway (the store, the auth portal, its config section, TLS),
how a gateway reads its section, and the error that stops start-up.

A gateway package exposes one constructor taking a :class:`GatewayContext` (for Twisted
gateways a ``protocol.Factory``; for aiosmtpd ones a protocol factory for ``loop.create_server``).
The service (``gateways/service.py``) owns listening, TLS wrapping and shutdown.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Optional

from store.interfaces import Store


@dataclass
class GatewayContext:
    store: Store
    portal: Any  # twisted.cred.portal.Portal; log in with auth.cred.PasswordCredentials
    hostname: str
    settings: Mapping[str, str] = field(default_factory=dict)  # the gateway's own INI section
    tls: Optional[Any] = None  # twisted CertificateOptions for STARTTLS (Twisted gateways)
    ssl_context: Optional[Any] = None  # the same certificate as a stdlib ssl.SSLContext (aiosmtpd)
    limits: Mapping[str, int] = field(default_factory=dict)  # e.g. max_message_size (bytes)


class StartupError(Exception):
    """Start-up failed for a reason the admin can fix; the message says how.  Any gateway and
    the process raise it (a bad config value, a port that cannot be bound)."""


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
