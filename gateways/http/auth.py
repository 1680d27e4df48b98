"""HTTP Basic authentication (RFC 7617) through Haven's portal, on the reactor.

Invariants
- The password is checked only by the portal (``auth.cred``): its throttling, its failure
  delay and its cache of recent verifications (which remembers a password only after it
  verified, so a wrong one is never answered from it).  The portal logs every failure.
- A request without usable Basic credentials, or with wrong ones, gets the same 401 challenge;
  nothing in the answer tells a wrong password from an unknown account.
- Nothing here takes a worker thread: a wrong password costs none and waits out the portal's
  failure delay on the reactor.
"""

from __future__ import annotations

import base64
import binascii
import logging
from typing import Optional

from twisted.cred import error as cred_error

from auth.cred import IAccount, LoginUnavailable, PasswordCredentials

from .site import client_ip

log = logging.getLogger("haven.http")

REALM = "Haven"


def basic_credentials(request) -> Optional[tuple]:
    """(login, password) from the request's ``Authorization: Basic`` header, or None."""
    header = request.getHeader(b"authorization")
    if not header or header[:6].lower() != b"basic ":
        return None
    try:
        decoded = base64.b64decode(header[6:].strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        log.debug("unreadable Basic credentials from %s", client_ip(request, "?"))
        return None
    login, sep, password = decoded.partition(":")
    if not sep or not login:
        return None
    return login, password


def challenge(request) -> bytes:
    """Sets the 401 status and challenge (RFC 7617 §2.1: charset UTF-8) and returns the body."""
    request.setResponseCode(401)
    request.setHeader(b"WWW-Authenticate", f'Basic realm="{REALM}", charset="UTF-8"'.encode())
    request.setHeader(b"Content-Type", b"text/plain; charset=utf-8")
    return b"Authentication required: log in with your mail address and password\n"


async def authenticate(portal, request, login: str, password: str):
    """The account the portal logs ``login`` in as, or None when it refuses (the request then
    already has its 401, unless the client has gone)."""
    credentials = PasswordCredentials(login, password, client_ip(request))
    try:
        _iface, account, _logout = await portal.login(credentials, None, IAccount)
    except cred_error.UnauthorizedLogin:
        if not request.finished and not request._disconnected:
            request.write(challenge(request))
            request.finish()
        return None
    except LoginUnavailable:  # not a 401: clients would ask for (or drop) the saved password
        if not request.finished and not request._disconnected:
            request.setResponseCode(503)
            request.setHeader(b"Retry-After", b"30")
            request.setHeader(b"Content-Type", b"text/plain; charset=utf-8")
            request.write(b"The account store is unavailable; try again shortly.\n")
            request.finish()
        return None
    return account
