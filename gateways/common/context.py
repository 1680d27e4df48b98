"""What the service hands every gateway: the store, the auth portal, its config section, TLS.

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
    tls: Optional[Any] = None  # an IOpenSSLServerConnectionCreator for transport.startTLS (Twisted gateways)
    ssl_context: Optional[Any] = None  # the same certificates as a stdlib ssl.SSLContext (aiosmtpd)
    limits: Mapping[str, int] = field(default_factory=dict)  # e.g. max_message_size (bytes)
    disclose_version: bool = False  # [server] disclose_version: software versions on the wire
    spool_dir: Optional[str] = None  # where messages arriving from the wire wait (data_dir/spool)
    #: the gateway's connection limits (gateways.common.connlimit.ConnectionGate); None = none
    gate: Optional[Any] = None
    #: [server] trusted_proxies (ip networks): who may name the client (PROXY, X-Forwarded-For)
    trusted_proxies: tuple = ()
    #: [auth] trusted_networks (ip networks): exempt from per-address limits
    trusted_networks: tuple = ()

