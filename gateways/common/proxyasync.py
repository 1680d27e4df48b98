"""The PROXY protocol and the connection limits in front of the asyncio (aiosmtpd) listeners,
LMTP and submission: the counterpart of :mod:`gateways.common.clientaddr`'s Twisted wrapper.

:func:`guarded_factory` wraps a gateway's protocol factory for ``loop.create_server``:

- each protocol gets the gateway's :class:`~gateways.common.connlimit.ConnectionGate` as
  ``gate`` (the SMTP engine admits or refuses with 421 itself, see
  :class:`gateways.common.smtpserver.SMTPServerBase`);
- with ``proxy_protocol = yes`` every connection is first read by :class:`ProxyHeaderReader`:
  a trusted proxy's header names the client (``proxied_peer``, ``proxied_tls`` on the
  protocol), then the transport is handed to the protocol, through TLS on an implicit-TLS
  listener: the header precedes the TLS handshake, so such a listener is created without
  ``ssl`` and the TLS layer is added here once the header has been read.
"""

from __future__ import annotations

import asyncio
from asyncio import sslproto
from typing import Callable, Optional

from gateways.common.clientaddr import Networks, ProxyHandshake


def _host(peername) -> Optional[str]:
    return peername[0] if isinstance(peername, (tuple, list)) and peername else None


class ProxyHeaderReader(asyncio.Protocol):
    """Owns a new connection until its PROXY header has been read, then hands the transport
    to the gateway's protocol."""

    def __init__(self, make_protocol: Callable[[], asyncio.Protocol], trusted: Networks, refusals,
                 ssl_context=None):
        self._make_protocol = make_protocol
        self._trusted = trusted
        self._refusals = refusals
        self._ssl_context = ssl_context
        self._transport = None
        self._handshake = None

    def connection_made(self, transport) -> None:
        self._transport = transport
        self._handshake = ProxyHandshake(_host(transport.get_extra_info("peername")), self._trusted,
                                         self._refusals, asyncio.get_running_loop().call_later, transport.abort)

    def data_received(self, data: bytes) -> None:
        client = self._handshake.feed(data)
        if client is None:
            return
        protocol = self._make_protocol()
        if client.host:
            protocol.proxied_peer = (client.host, client.port)
            protocol.proxied_tls = client.tls
        transport = self._transport
        if self._ssl_context is None:
            transport.set_protocol(protocol)
            protocol.connection_made(transport)
            if client.rest:
                protocol.data_received(client.rest)
            return
        # what loop.create_server(ssl=...) does at accept, once the header is behind us
        tls = sslproto.SSLProtocol(asyncio.get_running_loop(), protocol, self._ssl_context, None,
                                   server_side=True)
        transport.set_protocol(tls)
        tls.connection_made(transport)
        rest = memoryview(client.rest)
        while rest:
            buffer = tls.get_buffer(len(rest))
            n = min(len(buffer), len(rest))
            buffer[:n] = rest[:n]
            tls.buffer_updated(n)
            rest = rest[n:]

    def eof_received(self):
        return False  # closes the transport

    def connection_lost(self, exc) -> None:
        if self._handshake is not None:
            self._handshake.stop()


def guarded_factory(make_protocol: Callable[[], asyncio.Protocol], gate, *, proxy: bool = False,
                    trusted: Networks = (), ssl_context=None) -> Callable[[], asyncio.Protocol]:
    """The factory to hand ``loop.create_server``.  With ``proxy``, ``ssl_context`` is applied
    here (after the header) and the server must be created without ``ssl``."""

    def gated() -> asyncio.Protocol:
        protocol = make_protocol()
        protocol.gate = gate
        return protocol

    if not proxy:
        return gated
    return lambda: ProxyHeaderReader(gated, trusted, gate.refusals, ssl_context)
