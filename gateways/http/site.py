"""The Twisted Web site every HTTP request of Haven arrives at: limits, idle timeout, access log.

Invariants
- A request body larger than ``[http] max_request_size`` is refused with 413 as soon as its
  length is known (or as soon as a chunked body grows past it); it is never buffered whole,
  whoever it is for and whether or not it carries credentials.
- Request headers are bounded by Twisted's channel: at most ``MAX_HEADERS`` header lines and
  ``MAX_HEADER_BYTES`` bytes of request line and headers together (400 and the connection
  closed past either); one line longer than that is answered 431 and the connection closed.
- A connection idle for ``[http] idle_timeout`` seconds is closed.
- A request's line and headers must arrive within ``[http] header_timeout`` seconds of the
  connection (for the first request) or of the first byte of the request (on a kept-alive
  connection, whose wait between requests is ``idle_timeout``'s); past that the client gets
  408 and is closed, however steadily it trickles bytes in (slowloris).
- A connection over ``[http] max_connections`` / ``max_connections_per_ip`` (the site's
  ``gate``) is answered 503 with Retry-After and closed; a request while its client address
  already has ``max_requests_per_ip`` in progress is answered 503 with Retry-After.
- The client address (:meth:`HavenRequest.getClientAddress`, used by the access log, the
  portal's throttling and the ``allow_plaintext_auth`` loopback test) is the connection's peer
  (after a PROXY header), or, when that peer is in ``[server] trusted_proxies``, the right-most
  ``X-Forwarded-For`` hop that is not a trusted proxy; ``X-Forwarded-For`` from anyone else is
  ignored.  ``X-Forwarded-Proto: https`` from a trusted proxy makes the request secure.
- One access line per request on the ``haven.http`` logger (INFO): client address, account (or
  ``-``), method, the first 200 characters of the URI, status, time taken, and the proxy's
  ``X-Request-ID`` when the request carries one.
- No traceback ever reaches a client (``displayTracebacks`` is off).
"""

from __future__ import annotations

import importlib.metadata
import logging
import re
import time

from twisted.internet.address import IPv4Address, IPv6Address
from twisted.web import http, server

from gateways.common.clientaddr import in_networks, normalize_ip, proxied_tls, was_proxied
from gateways.common.connlimit import RefusalLog

log = logging.getLogger("haven.http")

#: Twisted's own limits on a request's head (HTTPChannel), named here because the front door
#: relies on them
MAX_HEADERS = http.HTTPChannel.maxHeaders
MAX_HEADER_BYTES = http.HTTPChannel.totalHeadersSize

_REQUEST_ID = re.compile(rb"^[A-Za-z0-9._:@/+=-]{1,64}$")


def client_ip(request, default: str = "") -> str:
    address = request.getClientAddress()
    return getattr(address, "host", None) or default


def _busy_reply(text: bytes, retry_after: int = 30) -> bytes:
    return (b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: %d\r\nContent-Type: text/plain\r\n"
            b"Connection: close\r\nContent-Length: %d\r\n\r\n%s" % (retry_after, len(text), text))


def forwarded_client(peer_host: str, header_values, trusted) -> str:
    """The client an ``X-Forwarded-For`` chain names when ``peer_host`` is a trusted proxy: the
    right-most hop that is not a trusted proxy (each proxy appends the address it saw, so hops
    left of an untrusted one may be forged); all trusted: the left-most; a hop that is not an
    address stops the walk at the last trusted one."""
    hops = [h.strip() for value in header_values for h in value.split(",")]
    client = peer_host
    for hop in reversed(hops):
        ip = normalize_ip(hop.strip('"').strip("[]"))
        if ip is None and hop.count(":") == 1:  # 192.0.2.7:1234
            ip = normalize_ip(hop.rpartition(":")[0])
        if ip is None:
            break
        client = ip
        if not in_networks(ip, trusted):
            break
    return client


class HavenChannel(http.HTTPChannel):
    """Twisted's HTTP/1.1 channel, answering a head line past the limit instead of dropping it,
    with a deadline for each request's head and the site's connection limits."""

    _admission = None
    _turned_away = False  # refused by the gate: nothing it sends is read
    _head_timer = None
    _abort_call = None  # after a 408: the connection is aborted if the client does not close
    _awaiting_head = True  # the next bytes are a request line or headers

    def connectionMade(self):
        super().connectionMade()
        gate = getattr(self.site, "gate", None)
        if gate is not None:
            self._admission, which = gate.admit(getattr(self.transport.getPeer(), "host", None),
                                                was_proxied(self.transport))
            if self._admission is None:
                self._turned_away = True
                self.setTimeout(None)
                self.transport.write(_busy_reply(b"Too many connections from your address\n" if which == "address"
                                                 else b"Too many connections; try again later\n"))
                self.transport.loseConnection()
                self._awaiting_head = False
                return
        self._arm_head_timer()

    def _arm_head_timer(self) -> None:
        timeout = getattr(self.site, "header_timeout", None)
        if timeout:
            self._head_timer = self.callLater(timeout, self._head_too_slow)

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            if self._head_timer.active():
                self._head_timer.cancel()
            self._head_timer = None

    def _head_too_slow(self) -> None:
        self._head_timer = None
        # RFC 9110 §15.5.9: 408, the server would not wait longer for the request
        self.site.refusals.note(getattr(self.transport.getPeer(), "host", None) or "local",
                                "closed a connection from %%s: request head not complete within "
                                "%g s ([http] header_timeout)" % self.site.header_timeout)
        self.transport.write(b"HTTP/1.1 408 Request Timeout\r\nConnection: close\r\nContent-Length: 0\r\n\r\n")
        self.transport.loseConnection()
        self.setTimeout(None)
        self._abort_call = self.callLater(2, self.transport.abortConnection)  # one that does not read is not waited for

    def dataReceived(self, data):
        if self._turned_away:
            return
        if self._awaiting_head and self._head_timer is None and data:
            self._arm_head_timer()  # a kept-alive connection's next request starts
        super().dataReceived(data)

    def allHeadersReceived(self):
        self._awaiting_head = False
        self._cancel_head_timer()
        super().allHeadersReceived()

    def requestDone(self, request):
        self._awaiting_head = True
        super().requestDone(request)

    def connectionLost(self, reason):
        self._cancel_head_timer()
        if self._abort_call is not None and self._abort_call.active():
            self._abort_call.cancel()
        if self._admission is not None:
            admission, self._admission = self._admission, None
            admission.release()
        super().connectionLost(reason)

    def lineLengthExceeded(self, line):
        # RFC 6585 §5: 431 for request header fields that are too large
        log.warning("refused a request head line of more than %d bytes from %s", self.MAX_LENGTH,
                    getattr(self.transport.getPeer(), "host", "?"))
        self.transport.write(b"HTTP/1.1 431 Request Header Fields Too Large\r\nConnection: close\r\n"
                             b"Content-Length: 0\r\n\r\n")
        self.transport.loseConnection()


class HavenRequest(server.Request):
    """Refuses oversized bodies early and notes when processing began (for the access line)."""

    def setHeader(self, name, value):
        if name.lower() == b"server":  # twisted.web names itself and its version here
            value = getattr(getattr(self.channel, "site", None), "server_header", b"Haven")
        super().setHeader(name, value)

    _received = 0
    _refused = False
    haven_started = None  # time.monotonic() when the request was handed to its resource
    haven_user = None  # the account address, once a mount has authenticated the request
    _client = None  # the client's address, once worked out
    _forwarded = False  # the client address came from X-Forwarded-For
    _request_slot = None  # our place under the site's per-address request limit

    def _from_trusted_proxy(self) -> bool:
        trusted = getattr(self.channel.site, "trusted_proxies", ())
        peer = super().getClientAddress()
        return bool(trusted) and in_networks(getattr(peer, "host", None), trusted)

    def getClientAddress(self):
        """The peer, or the client a trusted proxy names in X-Forwarded-For."""
        if self._client is None:
            peer = super().getClientAddress()
            self._client = peer
            values = self.requestHeaders.getRawHeaders(b"x-forwarded-for")
            if values and self._from_trusted_proxy():
                host = forwarded_client(normalize_ip(peer.host), [v.decode("latin-1") for v in values],
                                        self.channel.site.trusted_proxies)
                if host != normalize_ip(peer.host):
                    self._forwarded = True
                    self._client = (IPv6Address if ":" in host else IPv4Address)("TCP", host, 0)
        return self._client

    def isSecure(self):
        if super().isSecure() or proxied_tls(getattr(self.channel, "transport", None)):
            return True
        proto = self.requestHeaders.getRawHeaders(b"x-forwarded-proto")
        return bool(proto) and proto[-1].strip().lower() == b"https" and self._from_trusted_proxy()

    def gotLength(self, length):
        limit = self.channel.site.max_request_size
        if length is not None and length > limit:
            self._refuse_too_large(length)
            return
        super().gotLength(length)

    def handleContentChunk(self, data):
        if self._refused:
            return
        self._received += len(data)
        if self._received > self.channel.site.max_request_size:
            self._refuse_too_large(self._received)
            return
        super().handleContentChunk(data)

    def _refuse_too_large(self, size) -> None:
        self._refused = True
        log.warning("refused a %s-byte request body from %s (limit [http] max_request_size)", size,
                    client_ip(self, "?"))
        body = b"Request body too large\n"
        self.channel.transport.write(b"HTTP/1.1 413 Payload Too Large\r\nContent-Type: text/plain\r\n"
                                     b"Connection: close\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
        self.channel.transport.loseConnection()

    def allContentReceived(self):
        if not self._refused:
            super().allContentReceived()

    def process(self):
        self.haven_started = time.monotonic()
        gate = getattr(self.channel.site, "request_gate", None)
        if gate is not None:
            client = self.getClientAddress()
            self._request_slot, _ = gate.admit(getattr(client, "host", None),
                                               self._forwarded or was_proxied(self.channel.transport))
            if self._request_slot is None:
                self.setResponseCode(503)
                self.setHeader(b"Retry-After", b"10")
                self.setHeader(b"Content-Type", b"text/plain; charset=utf-8")
                self.write(b"Too many requests in progress from your address; try again shortly.\n")
                self.finish()
                return
            slot = self._request_slot
            self.notifyFinish().addBoth(lambda _: slot.release())
        super().process()


def _haven_version() -> str:
    try:
        return importlib.metadata.version("haven")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


class HavenSite(server.Site):
    requestFactory = HavenRequest
    protocol = HavenChannel
    thread_pool = None  # the WSGI mounts' pool (make_site), when there are any

    gate = None  # ConnectionGate of [http]'s connections
    request_gate = None  # ConnectionGate of requests in progress, per client address
    trusted_proxies = ()
    header_timeout = None

    def __init__(self, root, max_request_size: int, idle_timeout: float, disclose_version: bool = False,
                 header_timeout: float = 0.0, gate=None, request_gate=None, trusted_proxies=()):
        super().__init__(root, timeout=idle_timeout)
        self.max_request_size = max_request_size
        self.header_timeout = header_timeout or None
        self.gate, self.request_gate = gate, request_gate
        self.trusted_proxies = tuple(trusted_proxies)
        self.refusals = gate.refusals if gate is not None else RefusalLog("http")
        self.displayTracebacks = False
        #: the Server header: "Haven", or with [server] disclose_version the versions too
        self.server_header = (b"Haven/%s %s" % (_haven_version().encode("ascii", "replace"), server.version)
                              if disclose_version else b"Haven")

    def log(self, request):
        if not log.isEnabledFor(logging.INFO):
            return
        started = request.haven_started
        took = f" {(time.monotonic() - started) * 1000:.1f}ms" if started else ""
        rid = request.getHeader(b"x-request-id")
        rid = f" id={rid.decode('ascii')}" if rid and _REQUEST_ID.match(rid) else ""
        log.info("%s %s %s %s %d%s%s", client_ip(request, "-"), request.haven_user or "-",
                 request.method.decode("ascii", "replace"), request.uri.decode("ascii", "replace")[:200],
                 request.code, took, rid)
