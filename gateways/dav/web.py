"""The HTTP listener: Twisted Web in front of Radicale.

    /dav/...               CalDAV and CardDAV (Radicale's WSGI app on its own thread pool)
    /.well-known/caldav    301 to /dav/ (RFC 6764 §5); so are /.well-known/carddav and "/"
    anything else          404, kept free for ActiveSync and autoconfig

Invariants
- Authentication runs here, on the reactor, through Haven's portal, before a worker thread is
  taken: a wrong password costs no thread, and waits out the portal's failure delay here.
- A request body larger than ``[http] max_request_size`` is refused with 413 as soon as its
  length is known (or as soon as a chunked body grows past it); it is never buffered whole.
- Radicale parses XML with defusedxml (no entity expansion, no external entities).
"""

from __future__ import annotations

import base64
import binascii
import logging
import time

from twisted.cred import error as cred_error
from twisted.internet import defer
from twisted.web import resource, server
from twisted.web.wsgi import _WSGIResponse

from auth.cred import IAccount, PasswordCredentials

log = logging.getLogger("haven.dav")

REALM = "Haven"


class DavRequest(server.Request):
    """Refuses oversized bodies early and logs one access line per request."""

    _received = 0
    _refused = False

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
                    self.getClientAddress().host if self.getClientAddress() else "?")
        body = b"Request body too large\n"
        self.channel.transport.write(b"HTTP/1.1 413 Payload Too Large\r\nContent-Type: text/plain\r\n"
                                     b"Connection: close\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
        self.channel.transport.loseConnection()

    def allContentReceived(self):
        if not self._refused:
            super().allContentReceived()


class BufferedWSGIResponse(_WSGIResponse):
    """Radicale hands back each response whole; it goes to the reactor in one hop with the
    status and headers, instead of Twisted's blocking round trip to the reactor per body chunk
    (PEP 3333 lets a server buffer).  ``_WSGIResponse`` is Twisted's private class: the
    environ it builds from the request is exactly what is wanted, and no public hook exists."""

    def __init__(self, *args):
        super().__init__(*args)
        self._chunks: list = []

    def write(self, data):
        self._chunks.append(data)  # leaves `started` False: the finish sends headers and body

    def _sendResponseHeaders(self):
        super()._sendResponseHeaders()
        chunks, self._chunks = self._chunks, []
        if chunks:
            self.request.write(b"".join(chunks))


class DavSite(server.Site):
    requestFactory = DavRequest

    def __init__(self, root, max_request_size: int, idle_timeout: float):
        super().__init__(root, timeout=idle_timeout)
        self.max_request_size = max_request_size
        self.displayTracebacks = False

    def log(self, request):
        if log.isEnabledFor(logging.INFO):
            ip = request.getClientAddress().host if request.getClientAddress() else "-"
            user = getattr(request, "haven_user", None) or "-"
            started = getattr(request, "haven_started", None)
            took = f" {(time.monotonic() - started) * 1000:.1f}ms" if started else ""
            log.info("%s %s %s %s %d%s", ip, user, request.method.decode("ascii", "replace"),
                     request.uri.decode("ascii", "replace")[:200], request.code, took)


class Moved(resource.Resource):
    """A permanent redirect for every method (PROPFIND included)."""
    isLeaf = True

    def __init__(self, location: bytes):
        super().__init__()
        self.location = location

    def render(self, request):
        request.setResponseCode(301)
        request.setHeader(b"Location", self.location)
        request.setHeader(b"Content-Type", b"text/plain; charset=utf-8")
        return b"Moved to " + self.location + b"\n"


class NotFound(resource.Resource):
    isLeaf = True

    def render(self, request):
        request.setResponseCode(404)
        request.setHeader(b"Content-Type", b"text/plain; charset=utf-8")
        return b"Not found\n"


class WellKnown(resource.Resource):
    def getChild(self, name, request):
        if name in (b"caldav", b"carddav"):
            return Moved(b"/dav/")
        return NotFound()


class DavResource(resource.Resource):
    """Authenticates through the portal, then hands the request to the WSGI app."""
    isLeaf = True

    def __init__(self, reactor, pool, app, portal):
        super().__init__()
        self._reactor, self._pool, self._app, self._portal = reactor, pool, app, portal

    def render(self, request):
        request.haven_started = time.monotonic()
        creds = _basic_credentials(request)
        if creds is None:
            return _unauthorized(request)
        d = defer.ensureDeferred(self._login(request, *creds))
        d.addErrback(self._failed, request)
        return server.NOT_DONE_YET

    async def _login(self, request, login: str, password: str) -> None:
        ip = request.getClientAddress().host if request.getClientAddress() else ""
        try:
            _iface, account, _logout = await self._portal.login(PasswordCredentials(login, password, ip), None,
                                                                 IAccount)
        except cred_error.UnauthorizedLogin:
            if not request.finished and not request._disconnected:
                request.write(_unauthorized(request))
                request.finish()
            return
        if request._disconnected:
            return
        request.haven_user = account.address
        response = BufferedWSGIResponse(self._reactor, self._pool, self._app, request)
        # The only way into Radicale's auth plugin; WSGI keys from headers all start with HTTP_.
        response.environ["haven.user"] = account.address
        response.environ["haven.account_id"] = account.id
        if not response.environ.get("CONTENT_LENGTH"):
            # a chunked body (no Content-Length): Twisted has it whole in request.content, and
            # Radicale reads CONTENT_LENGTH bytes
            content = request.content
            content.seek(0, 2)
            response.environ["CONTENT_LENGTH"] = str(content.tell())
            content.seek(0)
        response.start()

    def _failed(self, failure, request):
        log.error("DAV request failed before Radicale: %s", failure.getTraceback())
        if not request.finished and not request._disconnected:
            request.setResponseCode(500)
            request.write(b"Internal error\n")
            request.finish()


def _basic_credentials(request):
    header = request.getHeader(b"authorization")
    if not header or header[:6].lower() != b"basic ":
        return None
    try:
        decoded = base64.b64decode(header[6:].strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
    login, sep, password = decoded.partition(":")
    if not sep or not login:
        return None
    return login, password


def _unauthorized(request) -> bytes:
    request.setResponseCode(401)
    request.setHeader(b"WWW-Authenticate", f'Basic realm="{REALM}", charset="UTF-8"'.encode())
    request.setHeader(b"Content-Type", b"text/plain; charset=utf-8")
    return b"Authentication required: log in with your mail address and password\n"


def make_site(reactor, pool, app, portal, settings) -> DavSite:
    root = resource.Resource()
    root.putChild(b"dav", DavResource(reactor, pool, app, portal))
    root.putChild(b".well-known", WellKnown())
    # A client given only http://host:port/ (DAVx5, Thunderbird) asks "/" first.
    root.putChild(b"", Moved(b"/dav/"))
    return DavSite(root, max_request_size=int(settings.get("max_request_size", 10485760)),
                   idle_timeout=float(settings.get("idle_timeout", 300)))
