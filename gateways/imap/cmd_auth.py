"""Handlers valid in any state and before authentication: CAPABILITY, NOOP, LOGOUT, ID, STARTTLS,
LOGIN, AUTHENTICATE PLAIN (with SASL-IR, RFC 4959), ENABLE (RFC 5161: CONDSTORE, QRESYNC,
UTF8=ACCEPT, IMAP4rev2), NAMESPACE (RFC 2342).

Invariants: authentication goes only through the twisted.cred portal; every failure answers the
same ``NO [AUTHENTICATIONFAILED] Authentication failed.`` (no user enumeration; the checker
already delays and throttles).  Passwords are never logged.

Deliberately not done: SASL mechanisms other than PLAIN, proxy authorization (authzid must be
empty or equal to the login).
"""

from __future__ import annotations

import base64
import binascii
import logging

from twisted.cred.error import UnauthorizedLogin

from auth.cred import IAccount, LoginUnavailable, PasswordCredentials

from .states import AUTH, IMAPError, LOGOUT

log = logging.getLogger("haven.imap")


class AuthCommands:
    async def do_CAPABILITY(self, cmd):
        self.write(b"* CAPABILITY %s\r\n" % self.capabilities().encode())

    async def do_NOOP(self, cmd):
        if self.selected is not None:
            # one cheap query even without a bus event: covers changes made by other processes
            # before the store's poller noticed them
            self.selected.dirty = True
        return None

    async def do_LOGOUT(self, cmd):
        self.write(b"* BYE Haven IMAP logging out\r\n")
        self.state = LOGOUT
        self.release_account()

    async def do_ID(self, cmd):
        params = cmd.args["params"]
        if params:
            log.info("imap %s: client id %s", self.peer,
                     " ".join("%s=%r" % kv for kv in sorted(params.items())[:10]))
        self.write(b'* ID ("name" "Haven" "vendor" "Haven")\r\n')

    async def do_STARTTLS(self, cmd):
        if self.ctx.tls is None or self.is_tls:
            raise IMAPError("BAD", "STARTTLS is not available")
        self.framer.reset()

        def start():
            self.transport.startTLS(self.ctx.tls)

        self.after_reply = start
        return "Begin TLS negotiation now"

    async def do_LOGIN(self, cmd):
        if not self.plaintext_auth_allowed():
            raise IMAPError("NO", "Plaintext authentication is disabled; use STARTTLS", "PRIVACYREQUIRED")
        user = cmd.args["user"].decode("utf-8", "replace")
        password = cmd.args["password"].decode("utf-8", "replace")
        return await self._authenticate(user, password)

    async def do_AUTHENTICATE(self, cmd):
        if cmd.args["mechanism"] != "PLAIN":
            raise IMAPError("NO", "Unsupported authentication mechanism", "CANNOT")
        if not self.plaintext_auth_allowed():
            raise IMAPError("NO", "Plaintext authentication is disabled; use STARTTLS", "PRIVACYREQUIRED")
        data = cmd.args["initial"]
        if data is None:
            self.write(b"+ \r\n")  # RFC 3501 §6.2.2: empty challenge for PLAIN
            data = await self.next_line()
            if data is None:
                raise IMAPError("BAD", "Connection closed")
        data = data.strip()
        if data == b"*":
            raise IMAPError("BAD", "Authentication cancelled")
        if data == b"=":  # RFC 4959: empty initial response
            data = b""
        try:
            decoded = base64.b64decode(data, validate=True)
        except (binascii.Error, ValueError):
            raise IMAPError("BAD", "Invalid base64 in authentication data") from None
        pieces = decoded.split(b"\0")
        if len(pieces) != 3:
            raise IMAPError("BAD", "Invalid PLAIN authentication data")
        authzid, authcid, password = (p.decode("utf-8", "replace") for p in pieces)
        if authzid and authzid != authcid:
            raise IMAPError("NO", "Authentication failed.", "AUTHENTICATIONFAILED")
        return await self._authenticate(authcid, password)

    async def _authenticate(self, user: str, password: str):

        try:
            _iface, account, logout = await self.ctx.portal.login(
                PasswordCredentials(user, password, self.peer), None, IAccount)
        except UnauthorizedLogin:
            log.info("imap %s: authentication failed for %r", self.peer, user[:100])
            raise IMAPError("NO", "Authentication failed.", "AUTHENTICATIONFAILED") from None
        except LoginUnavailable:  # RFC 5530: the password may be right; the client retries later
            raise IMAPError("NO", "Temporary failure, try again later.", "UNAVAILABLE") from None
        if self._closed:
            if logout:
                logout()
            return None
        self.account = account
        self._logout_cb = logout
        self.state = AUTH
        self.framer.max_line = self.config.max_line  # the pre-login line limit is lifted
        self._unsubscribe = self.store.bus.subscribe(account.id, self.on_change)
        self.setTimeout(self.config.idle_timeout)
        log.info("imap %s: %s logged in", self.peer, account.address)
        return ("CAPABILITY %s" % self.capabilities(), "Logged in")

    async def do_ENABLE(self, cmd):
        if self.state != AUTH and {"UTF8=ACCEPT", "IMAP4REV2"} & set(cmd.args["capabilities"]):
            # RFC 6855 §3, RFC 9051 §6.3.1: only in the authenticated state (both change how
            # mailbox names are spelled; IMAP4rev2 also what a selected mailbox reports)
            raise IMAPError("BAD", "ENABLE UTF8=ACCEPT or IMAP4rev2 only without a selected mailbox")
        enabled = []
        for cap in cmd.args["capabilities"]:
            if cap == "CONDSTORE":
                if not self.condstore:
                    enabled.append(cap)
                self.condstore = True
            elif cap == "QRESYNC":
                # RFC 7162 §3.2.3: QRESYNC implies CONDSTORE
                if not self.qresync:
                    enabled.append(cap)
                self.condstore = self.qresync = True
            elif cap == "UTF8=ACCEPT":
                if not self.utf8:
                    enabled.append(cap)
                self.utf8 = True
            elif cap == "IMAP4REV2":
                # RFC 9051: from here on the session speaks IMAP4rev2 (UTF-8 mailbox names,
                # ESEARCH for every SEARCH, no \Recent; see gateways/imap/__init__.py)
                if not self.rev2:
                    enabled.append("IMAP4rev2")
                self.rev2 = True
        self.write(b"* ENABLED%s\r\n" % b"".join(b" " + c.encode() for c in enabled))

    async def do_NAMESPACE(self, cmd):
        # RFC 2342: one personal namespace, no other users', no shared
        self.write(b'* NAMESPACE (("" "/")) NIL NIL\r\n')
