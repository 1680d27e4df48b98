"""The Twisted Web site every HTTP request of Haven arrives at: limits, idle timeout, access log.

Invariants
- A request body larger than ``[http] max_request_size`` is refused with 413 as soon as its
  length is known (or as soon as a chunked body grows past it); it is never buffered whole,
  whoever it is for and whether or not it carries credentials.
- Request headers are bounded by Twisted's channel: at most ``MAX_HEADERS`` header lines and
  ``MAX_HEADER_BYTES`` bytes of request line and headers together (400 and the connection
  closed past either); one line longer than that is answered 431 and the connection closed.
- A connection idle for ``[http] idle_timeout`` seconds is closed.
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

from twisted.web import http, server

log = logging.getLogger("haven.http")

#: Twisted's own limits on a request's head (HTTPChannel), named here because the front door
#: relies on them
MAX_HEADERS = http.HTTPChannel.maxHeaders
MAX_HEADER_BYTES = http.HTTPChannel.totalHeadersSize

_REQUEST_ID = re.compile(rb"^[A-Za-z0-9._:@/+=-]{1,64}$")


def client_ip(request, default: str = "") -> str:
    address = request.getClientAddress()
    return getattr(address, "host", None) or default


class HavenChannel(http.HTTPChannel):
    """Twisted's HTTP/1.1 channel, answering a head line past the limit instead of dropping it."""

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

    def __init__(self, root, max_request_size: int, idle_timeout: float, disclose_version: bool = False):
        super().__init__(root, timeout=idle_timeout)
        self.max_request_size = max_request_size
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
