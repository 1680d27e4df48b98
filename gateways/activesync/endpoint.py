"""The ActiveSync endpoint on the front door: ``/Microsoft-Server-ActiveSync`` ([MS-ASHTTP]).

The front door logs the account in (Basic, through the portal, with ``[activesync]
allow_plaintext_auth``) and hands the request here with the account (``serve``).  This module
owns what MS-ASHTTP says of every request: the methods, the headers every answer carries, the
OPTIONS answer, the login names phones send, and the status codes of requests that never reach
a command.

Invariants
- Every answer carries ``MS-Server-ActiveSync`` and a Content-Length (MS-ASHTTP 2.2.2.1.1:
  some phones wait for the end of the body otherwise).
- The account served is the one that logged in: a ``User=`` in the query never selects
  another (MS-ASHTTP 2.2.1.1.1.1.2 says it names the user; a mismatch is logged and ignored).
- A login ``DOMAIN\\user`` is ``user``; a login without ``@`` is the one account with that
  local part, if exactly one has it (else the portal refuses it as an unknown login: the same
  401 and failure delay).
- Nothing here blocks the reactor; commands run as coroutines on it with async store calls.
"""

from __future__ import annotations

import logging
from typing import Optional

from twisted.internet import defer

from .query import COMMANDS, SUPPORTED_VERSIONS

log = logging.getLogger("haven.activesync")

PREFIX = "/Microsoft-Server-ActiveSync"
#: what OPTIONS offers (MS-ASHTTP 2.2.2.1.1.1 MS-ASProtocolVersions), and the commands of
#: [MS-ASCMD] by the names the query uses; both are kept in query.py, with the request line
VERSIONS = SUPPORTED_VERSIONS
#: the server version every answer names (MS-ASHTTP 2.2.2.1.1.2: Exchange 2016's is 15.1)
SERVER_VERSION = b"15.1"
CONTENT_TYPE = b"application/vnd.ms-sync.wbxml"


def finish(request, status: int, body: bytes = b"", content_type: Optional[bytes] = None, headers=()) -> None:
    """Answer ``request`` (unless the client went away) with the headers every answer has."""
    if request.finished or request._disconnected:
        return
    request.setResponseCode(status)
    request.setHeader(b"MS-Server-ActiveSync", SERVER_VERSION)
    request.setHeader(b"Cache-Control", b"private")
    if content_type is not None:
        request.setHeader(b"Content-Type", content_type)
    for name, value in headers:
        request.setHeader(name, value)
    request.setHeader(b"Content-Length", b"%d" % len(body))
    if body and request.method != b"HEAD":
        request.write(body)
    request.finish()


class ActiveSyncEndpoint:
    """What the front door mounts at :data:`PREFIX` with a login (gateways.http.Mount)."""

    def __init__(self, store, handler=None):
        self.store = store
        #: ``await handler(request, account)`` answers a POST (the command layer); None: 501
        self.handler = handler

    def commands(self) -> list:
        """The commands this server answers, in the protocol's order: what OPTIONS offers (a
        phone does not try one that is not listed, e.g. Search for the address book)."""
        served = getattr(self.handler, "handlers", None)
        return [c for c in COMMANDS if served is None or c in served]

    async def login_name(self, login: str) -> str:
        """MS-ASHTTP 2.2.1.1.2.1 (Authorization): phones send ``DOMAIN\\user``, an address, or a
        bare user name."""
        login = login.rpartition("\\")[2].strip()
        if "@" in login:
            return login
        found = await self.store.addresses_with_local_part(login)
        if len(found) != 1:
            raise ValueError("no account, or more than one, has that name; log in with the address")
        return found[0]

    def serve(self, request, account) -> None:
        d = defer.ensureDeferred(self._serve(request, account))
        d.addErrback(self._failed, request)

    async def _serve(self, request, account) -> None:
        method = request.method
        if method == b"OPTIONS":
            # MS-ASHTTP 2.2.2.1.1.1: what this server speaks, asked before the first command
            finish(request, 200, headers=[(b"Allow", b"OPTIONS,POST"), (b"Public", b"OPTIONS,POST"),
                                          (b"MS-ASProtocolVersions", ",".join(VERSIONS).encode()),
                                          (b"MS-ASProtocolCommands", ",".join(self.commands()).encode())])
            return
        if method != b"POST":
            finish(request, 405, b"ActiveSync takes OPTIONS and POST\n", b"text/plain; charset=utf-8",
                   [(b"Allow", b"OPTIONS,POST")])
            return
        if self.handler is None:
            finish(request, 501, b"Not implemented\n", b"text/plain; charset=utf-8")
            return
        await self.handler(request, account)

    def _failed(self, failure, request) -> None:
        log.error("activesync %s: %s", getattr(request, "haven_user", "?"), failure.getTraceback())
        finish(request, 500, b"Internal error\n", b"text/plain; charset=utf-8")


def make_endpoint(store, handler=None) -> ActiveSyncEndpoint:
    return ActiveSyncEndpoint(store, handler)
