"""A WSGI application (Radicale, later others) behind the front door, on the shared thread pool.

Invariants
- A mount with ``login`` authenticates through the portal (``auth.py``) before a worker thread
  is taken; the application then finds the account in the environ as ``haven.user`` (address)
  and ``haven.account_id``.  Every key the environ gets from request headers starts with
  ``HTTP_``, so no client can set these two.
- The application runs on the front door's bounded pool (``[http] threads``), never on the
  reactor; requests beyond the pool wait their turn.
- The response is buffered and sent in one hop with its status and headers (PEP 3333 lets a
  server buffer): the applications mounted answer with whole bodies.
- A chunked request body (no Content-Length) is whole in ``request.content`` by now (the site
  bounds it); ``CONTENT_LENGTH`` is set to its size, since PEP 3333 applications read that many
  bytes.
"""

from __future__ import annotations

import logging

from twisted.internet import defer
from twisted.web import resource, server
from twisted.web.wsgi import _WSGIResponse

from gateways.common.plaintext import is_local, plaintext_allowed

from .auth import authenticate, basic_credentials, challenge
from .site import client_ip

log = logging.getLogger("haven.http")

ENVIRON_USER = "haven.user"
ENVIRON_ACCOUNT_ID = "haven.account_id"


class BufferedWSGIResponse(_WSGIResponse):
    """The whole response goes to the reactor in one hop with the status and headers, instead
    of Twisted's blocking round trip to the reactor per body chunk.  ``_WSGIResponse`` is
    Twisted's private class: the environ it builds from the request is exactly what is wanted,
    and no public hook exists."""

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


class LoginGate(resource.Resource):
    """A leaf that serves an account the portal let in (or anyone, without ``login``): the
    plaintext rule, Basic credentials, the portal, then :meth:`_start` on the reactor.
    ``login_name``, when given, is awaited with the login a client sent and gives the one the
    portal checks (ActiveSync's ``DOMAIN\\user``); it may raise ValueError: a 401."""
    isLeaf = True

    def __init__(self, portal, login: bool = True, plaintext: str = "loopback", login_name=None):
        super().__init__()
        self._portal, self._login = portal, login
        self._plaintext = plaintext  # [http] allow_plaintext_auth, or the mount's own
        self._login_name = login_name

    def render(self, request):
        if not self._login:
            self._start(request, None)
            return server.NOT_DONE_YET
        if not plaintext_allowed(self._plaintext, request.isSecure(), is_local(request.getClientAddress())):
            # RFC 7235 gives no status for "not over this channel"; 403 with the reason, and no
            # challenge, so the client does not send the password in the clear
            log.info("%s: refused Basic authentication without TLS (allow_plaintext_auth = %s)",
                     client_ip(request, "?"), self._plaintext)
            request.setResponseCode(403)
            request.setHeader(b"Content-Type", b"text/plain; charset=utf-8")
            return b"Log in over https: this server does not accept passwords over plain http\n"
        creds = basic_credentials(request)
        if creds is None:
            return challenge(request)
        d = defer.ensureDeferred(self._login_then_start(request, *creds))
        d.addErrback(self._failed, request)
        return server.NOT_DONE_YET

    async def _login_then_start(self, request, login: str, password: str) -> None:
        if self._login_name is not None:
            try:
                login = await self._login_name(login)
            except ValueError as e:
                log.info("%s: login %r refused: %s", client_ip(request, "?"), login[:100], e)
                login = ""  # the portal refuses it as any unknown login: the same 401 and delay
        account = await authenticate(self._portal, request, login, password)
        if account is None or request._disconnected:
            return
        request.haven_user = account.address
        self._start(request, account)

    def _start(self, request, account) -> None:
        raise NotImplementedError

    def _failed(self, failure, request):
        log.error("request failed before the application: %s", failure.getTraceback())
        if not request.finished and not request._disconnected:
            request.setResponseCode(500)
            request.write(b"Internal error\n")
            request.finish()


class AccountResource(LoginGate):
    """A Twisted Web mount behind the login: ``inner.serve(request, account)`` answers (it
    finishes the request itself, at once or later); ``inner.login_name`` as for LoginGate."""

    def __init__(self, inner, portal, login: bool = True, plaintext: str = "loopback"):
        super().__init__(portal, login, plaintext, getattr(inner, "login_name", None))
        self.inner = inner

    def _start(self, request, account) -> None:
        self.inner.serve(request, account)


class WsgiMountResource(LoginGate):
    """Everything under one prefix, handed to a WSGI application (after a login when asked)."""

    def __init__(self, reactor, pool, app, portal, login: bool = True, plaintext: str = "loopback"):
        super().__init__(portal, login, plaintext)
        self._reactor, self._pool, self._app = reactor, pool, app

    def _start(self, request, account) -> None:
        response = BufferedWSGIResponse(self._reactor, self._pool, self._app, request)
        if account is not None:
            response.environ[ENVIRON_USER] = account.address
            response.environ[ENVIRON_ACCOUNT_ID] = account.id
        if not response.environ.get("CONTENT_LENGTH"):
            content = request.content
            content.seek(0, 2)
            response.environ["CONTENT_LENGTH"] = str(content.tell())
            content.seek(0)
        response.start()
