"""The client's real address: IP networks from the config, and the PROXY protocol (v1 text,
v2 binary; haproxy.org/download/2.9/doc/proxy-protocol.txt) in front of a Twisted listener.

A listener with ``proxy_protocol = yes`` expects every connection to start with a PROXY header,
and accepts one only from a peer in ``[server] trusted_proxies``.  The address the header
carries is then the connection's peer everywhere (``transport.getPeer()``): log lines, the
``remote_ip`` the portal throttles on, the loopback test of ``allow_plaintext_auth``, the
per-address connection limits.

Invariants
- Nothing reaches the protocol before the header is complete: its ``connectionMade`` (the
  greeting, the connection limits) runs once the real address is known.
- A peer that is not a trusted proxy, a malformed header, or no header within
  :data:`HEADER_TIMEOUT` seconds: one log line and the connection is closed, nothing written.
- The header comes before anything else on the connection, so on an implicit-TLS listener
  this wrapper sits outside the TLS layer (the service builds it so).
- A ``LOCAL`` (v2) or ``UNKNOWN`` (v1) header, the proxy's own health check, leaves the peer
  as it is (the proxy).
- Whether the client's own hop was TLS is known only from a v2 header's ``PP2_TYPE_SSL``
  TLV (:func:`proxied_tls`); a v1 header says nothing, so such a client counts as plaintext.

The parsers are Twisted's (``twisted.protocols.haproxy``); its wrapper is not used because it
connects the protocol before the header arrived (the greeting and the peer would be the
proxy's), drops a header split over two reads, and accepts a header from anyone.
"""

from __future__ import annotations

import ipaddress
import logging
import struct
from typing import Iterable, Optional, Tuple

from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.protocol import Protocol
from twisted.protocols import policies
from twisted.protocols.haproxy._exceptions import InvalidProxyHeader
from twisted.protocols.haproxy._v1parser import V1Parser
from twisted.protocols.haproxy._v2parser import V2Parser
from zope.interface import directlyProvides, providedBy

from gateways.common.settings import SettingError

log = logging.getLogger("haven.proxy")

#: seconds a connection from a trusted proxy may take to send its PROXY header (a proxy sends
#: it at once, before any byte of the client)
HEADER_TIMEOUT = 10.0

Networks = Tuple[ipaddress._BaseNetwork, ...]


# -- addresses and networks ----------------------------------------------------------------------

def ip_of(host: Optional[str]):
    """``host`` as an ip_address (IPv4-mapped IPv6 unmapped, zone dropped), or None."""
    if not host:
        return None
    try:
        ip = ipaddress.ip_address(str(host).split("%", 1)[0])
    except ValueError:
        return None
    return getattr(ip, "ipv4_mapped", None) or ip


def normalize_ip(host: Optional[str]) -> Optional[str]:
    """The canonical text of an IP address (``::ffff:1.2.3.4`` is ``1.2.3.4``), or None."""
    ip = ip_of(host)
    return None if ip is None else str(ip)


def parse_networks(value: Optional[str], where: str) -> Networks:
    """``10.0.0.0/8, 192.0.2.7, 2001:db8::/32`` (separated by commas or spaces) as networks; a
    bad entry stops start-up with a message naming ``where`` (``[server] trusted_proxies``)."""
    networks = []
    for item in (value or "").replace(",", " ").replace(";", " ").split():
        try:
            networks.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            raise SettingError(f"{where} = {value!r}: {item!r} is not an IP address or network "
                               f"(e.g. 10.0.0.0/8, 192.0.2.7, 2001:db8::/32)") from None
    return tuple(networks)


def in_networks(host: Optional[str], networks: Iterable) -> bool:
    ip = ip_of(host)
    return ip is not None and any(ip.version == n.version and ip in n for n in networks)


def trusted_networks(auth_settings) -> Networks:
    """``[auth] trusted_networks``: hosts exempt from login throttling and from the
    per-address connection limits (a webmail host)."""
    return parse_networks((auth_settings or {}).get("trusted_networks"), "[auth] trusted_networks")


def trusted_proxies(server_settings) -> Networks:
    """``[server] trusted_proxies``: who may send PROXY headers and X-Forwarded-For."""
    return parse_networks((server_settings or {}).get("trusted_proxies"), "[server] trusted_proxies")


# -- PROXY v2 TLVs ------------------------------------------------------------------------------

_PP2_TYPE_SSL = 0x20
_PP2_CLIENT_SSL = 0x01
_V2_ADDRESS_SIZE = {0x1: 12, 0x2: 36, 0x3: 216}  # AF_INET, AF_INET6, AF_UNIX (high nibble)


def v2_client_tls(header: bytes) -> bool:
    """Whether a v2 header says the client's connection to the proxy was TLS (a
    ``PP2_TYPE_SSL`` TLV with the ``PP2_CLIENT_SSL`` bit; proxy-protocol.txt §2.2.5)."""
    if len(header) < 16 or not header.startswith(V2Parser.PREFIX):
        return False
    end = 16 + struct.unpack("!H", header[14:16])[0]
    pos = 16 + _V2_ADDRESS_SIZE.get(header[13] >> 4, 0)
    while pos + 3 <= min(end, len(header)):
        kind, length = header[pos], struct.unpack("!H", header[pos + 1:pos + 3])[0]
        if kind == _PP2_TYPE_SSL:
            return length >= 1 and pos + 3 < len(header) and bool(header[pos + 3] & _PP2_CLIENT_SSL)
        pos += 3 + length
    return False


def proxy_wrapper(transport) -> Optional["ProxyHeaderProtocol"]:
    """The :class:`ProxyHeaderProtocol` under ``transport`` (walking down wrapping transports
    such as the TLS layer of an implicit-TLS listener), or None."""
    for _ in range(8):
        if transport is None or isinstance(transport, ProxyHeaderProtocol):
            return transport
        transport = transport.__dict__.get("transport")
    return None


def proxied_tls(transport) -> bool:
    """Whether a trusted proxy vouched that the client's own hop is TLS."""
    wrapper = proxy_wrapper(transport)
    return wrapper is not None and wrapper.client_tls


def was_proxied(transport) -> bool:
    """Whether the connection's peer is a client address a PROXY header named."""
    wrapper = proxy_wrapper(transport)
    return wrapper is not None and bool(wrapper._peer)


# -- reading the header --------------------------------------------------------------------------

class HeaderReader:
    """The PROXY header at the start of a connection, v1 or v2, fed as it arrives (in pieces of
    any size).  :meth:`feed` returns None until the header is complete, then a
    :class:`ProxiedClient`; it raises :class:`InvalidProxyHeader` for anything else."""

    MAX_V2 = 16 + 65535

    def __init__(self):
        self._buffer = b""
        self._parser = None

    def feed(self, data: bytes) -> Optional["ProxiedClient"]:
        if self._parser is None:
            self._buffer += data
            buffered = self._buffer
            if len(buffered) < 16 and buffered[:12] == V2Parser.PREFIX[:len(buffered[:12])]:
                return None  # could be v2: wait for its fixed part
            if len(buffered) < 6 and b"PROXY ".startswith(buffered):
                return None
            if buffered.startswith(V2Parser.PREFIX):
                self._parser = V2Parser()
            elif buffered.startswith(b"PROXY "):
                self._parser = V1Parser()
            else:
                raise InvalidProxyHeader()
            self._buffer, data = b"", buffered
        if isinstance(self._parser, V1Parser):
            line, crlf, rest = (self._parser.buffer + data).partition(b"\r\n")
            if crlf and (line == b"PROXY UNKNOWN" or line.startswith(b"PROXY UNKNOWN ")):
                # the spec's "PROXY UNKNOWN\r\n" (Twisted's parser wants more after it)
                return ProxiedClient(address=None, host=None, port=0, tls=False, rest=rest)
        try:
            info, remaining = self._parser.feed(data)
        except (ValueError, KeyError, IndexError, struct.error):
            raise InvalidProxyHeader() from None
        if info is None:
            if len(self._parser.buffer) > self.MAX_V2:
                raise InvalidProxyHeader()
            return None
        source = info.source
        host = normalize_ip(getattr(source, "host", None))
        if host is None and getattr(source, "type", None) in ("TCP", "UDP"):
            raise InvalidProxyHeader()  # "PROXY TCP4 x y 1 2": an address that is none
        v2 = isinstance(self._parser, V2Parser)
        port = getattr(source, "port", 0) if host else 0
        # the address as every log line writes it (an IPv4-mapped IPv6 address as IPv4)
        address = (IPv6Address if ":" in host else IPv4Address)("TCP", host, port) if host else None
        return ProxiedClient(address=address, host=host, port=port,
                             tls=v2 and v2_client_tls(info.header), rest=remaining or b"")


class ProxiedClient:
    """What a complete header said: the client's ``address`` (a Twisted IAddress; None for a
    LOCAL/UNKNOWN header), its ``host`` and ``port``, whether its hop is ``tls``, and the
    bytes that followed the header (``rest``)."""
    __slots__ = ("address", "host", "port", "tls", "rest")

    def __init__(self, address, host, port, tls, rest):
        self.address, self.host, self.port, self.tls, self.rest = address, host, port, tls, rest


class ProxyHandshake:
    """The start of one connection that must begin with a PROXY header, whatever the event
    loop: the peer must be a trusted proxy, the header must come within
    :data:`HEADER_TIMEOUT`, else ``refusals`` logs why and ``abort()`` drops the connection."""

    def __init__(self, peer_host: Optional[str], trusted: Networks, refusals, call_later, abort):
        self._peer_host = peer_host
        self._refusals = refusals
        self._abort = abort
        self._reader = HeaderReader()
        self._timer = None
        self.over = False  # refused, or the header is read
        if not in_networks(peer_host, trusted):
            self._refuse("not in [server] trusted_proxies")
        else:
            self._timer = call_later(HEADER_TIMEOUT, self._refuse, "no PROXY header within %g s" % HEADER_TIMEOUT)

    def _refuse(self, why: str) -> None:
        self.stop()
        self._refusals.note(self._peer_host or "local", "refused a connection from %s: " + why)
        self._abort()

    def stop(self) -> None:
        self.over = True
        timer, self._timer = self._timer, None
        if timer is not None and getattr(timer, "active", lambda: True)():  # Twisted's, or asyncio's
            timer.cancel()

    def feed(self, data: bytes) -> Optional[ProxiedClient]:
        """The client once the header is complete (once), else None."""
        if self.over:
            return None
        try:
            client = self._reader.feed(data)
        except InvalidProxyHeader:
            self._refuse("malformed PROXY header")
            return None
        if client is not None:
            self.stop()
        return client


# -- the Twisted wrapper ------------------------------------------------------------------------

class ProxyHeaderProtocol(policies.ProtocolWrapper):
    """Reads the PROXY header, then connects the wrapped protocol with the client's address as
    its peer."""

    client_tls = False

    def __init__(self, factory, wrappedProtocol):
        super().__init__(factory, wrappedProtocol)
        self._handshake = None
        self._peer = None  # the client's address from the header
        self._passing = False  # the wrapped protocol is connected

    def makeConnection(self, transport):
        # ProtocolWrapper's, without connecting the wrapped protocol yet
        directlyProvides(self, providedBy(transport))
        Protocol.makeConnection(self, transport)
        self.factory.registerProtocol(self)

    def connectionMade(self):
        self._handshake = ProxyHandshake(getattr(self.transport.getPeer(), "host", None), self.factory.trusted,
                                         self.factory.refusals, self.factory.reactor.callLater,
                                         self.transport.abortConnection)

    def dataReceived(self, data: bytes) -> None:
        if self._passing:
            self.wrappedProtocol.dataReceived(data)
            return
        client = self._handshake.feed(data)
        if client is None:
            return
        self._peer = client.address
        self.client_tls = client.tls
        self._passing = True
        self.wrappedProtocol.makeConnection(self)
        if client.rest and self.wrappedProtocol is not None and not self.disconnecting:
            self.wrappedProtocol.dataReceived(client.rest)

    def getPeer(self):
        return self._peer or self.transport.getPeer()

    def startTLS(self, contextFactory, *args):
        # STARTTLS: TLS goes under this wrapper, and the wrapper now provides what the transport
        # does (ISSLTransport: the protocol's "is this TLS" test)
        self.transport.startTLS(contextFactory, *args)
        directlyProvides(self, providedBy(self.transport))

    def connectionLost(self, reason):
        if self._handshake is not None:
            self._handshake.stop()
        self.factory.unregisterProtocol(self)
        if self._passing:
            self.wrappedProtocol.connectionLost(reason)
        self.wrappedProtocol = None


class ProxyHeaderFactory(policies.WrappingFactory):
    """Wraps a listener's factory (for an implicit-TLS listener, its TLS factory) so that each
    connection starts with a PROXY header from one of ``trusted``; ``refusals`` (a
    :class:`~gateways.common.connlimit.RefusalLog`) writes the log lines of refused ones."""

    protocol = ProxyHeaderProtocol

    def __init__(self, wrappedFactory, trusted: Networks, label: str, refusals, reactor):
        super().__init__(wrappedFactory)
        self.trusted = tuple(trusted)
        self.label = label
        self.refusals = refusals
        self.reactor = reactor

    def logPrefix(self):
        return "%s (PROXY)" % self.label
