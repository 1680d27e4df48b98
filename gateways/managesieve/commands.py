"""ManageSieve command handlers ``do_<COMMAND>(args)`` (mixed into
:class:`~.protocol.ManageSieveServer`).

A handler returns the text of its ``OK`` reply, or None when it wrote its reply itself; it fails
by raising :class:`SieveError`, :class:`~.parser.ParseError` or a store error, which the engine
turns into ``NO`` replies.

Invariants:
* Every script operation names ``self.account.id``: a session sees and changes only the scripts
  of the account it authenticated as.
* Authentication goes only through the twisted.cred portal (which verifies off the reactor,
  throttles and delays failures); every failure (unknown user, wrong password, disabled account,
  throttled, an authorization identity other than the login) answers the same
  ``NO "Authentication failed."``.  After three failures on one connection: ``BYE``.
  Passwords are never logged.
* Scripts and names are UTF-8 (RFC 5804 §1.7): anything else is refused before the store sees it.
  The store compiles every script it is given (PUTSCRIPT, CHECKSCRIPT) and answers
  ``InvalidInput("line N: reason")``, which goes to the client as the NO text (§2.6).

Deliberately not done: SASL mechanisms other than PLAIN and LOGIN (SCRAM-SHA-1, which RFC 5804
§2.1 asks for, needs a stored SCRAM secret the account store does not keep), SASL security
layers, proxy authorization, the WARNINGS response code (the compiler reports no warnings),
MAXREDIRECTS, NOTIFY and LANGUAGE capabilities, REFERRAL.
"""

from __future__ import annotations

import base64
import logging
import time
from typing import Optional

from twisted.cred.error import UnauthorizedLogin

from auth.cred import IAccount, LoginUnavailable, PasswordCredentials
from formats import sieve

from .parser import Atom, ParseError, Rejected, decode_base64, decode_sasl_plain, parse_args, parse_number
from .response import capability_lines, literal, reply, string

log = logging.getLogger("haven.managesieve")

#: RFC 5804 §2 session states
NOT_AUTH, AUTH = "non-authenticated", "authenticated"
#: commands whose literal is a script (the size limit is the script size)
SCRIPT_COMMANDS = frozenset({"PUTSCRIPT", "CHECKSCRIPT"})
MECHANISMS = ("PLAIN", "LOGIN")
IMPLEMENTATION = "Haven"
MAX_AUTH_FAILURES = 3
#: comparators every Sieve implementation has (RFC 5228 §2.7.3); a script need not require them,
#: so like Dovecot we do not list them in the SIEVE capability
IMPLICIT_EXTENSIONS = frozenset({"comparator-i;octet", "comparator-i;ascii-casemap"})


class SieveError(Exception):
    """A handler's failure reply: ``NO [(code)] "text"``.  ``bad`` counts towards
    max_bad_commands."""

    def __init__(self, text: str, code: Optional[str] = None, bad: bool = False):
        super().__init__(text)
        self.text = text
        self.code = code
        self.bad = bad


def sieve_extensions() -> str:
    """RFC 5804 §1.8 SIEVE: the extensions a script may ``require``, space-separated; read from
    the compiler each time, so it is always the set the store accepts."""
    return " ".join(sorted(e for e in sieve.SUPPORTED_EXTENSIONS if e not in IMPLICIT_EXTENSIONS))


def _string(arg, what: str) -> bytes:
    if not isinstance(arg, bytes):
        raise SieveError("Expected %s as a string (quoted or {n+} literal)" % what, bad=True)
    return arg


def _utf8(data: bytes, what: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise SieveError("%s is not valid UTF-8" % what) from None


class Commands:
    # -- any state -----------------------------------------------------------------------------
    def capabilities(self) -> list:
        """RFC 5804 §1.8, as (name, value or None) in the current state."""
        caps = [("IMPLEMENTATION", IMPLEMENTATION),
                # §1.8: may be empty only while STARTTLS is offered
                ("SASL", " ".join(MECHANISMS) if self.plaintext_auth_allowed() else ""),
                ("SIEVE", sieve_extensions())]
        if self.state == NOT_AUTH and self.ctx.tls is not None and not self.is_tls:
            caps.append(("STARTTLS", None))  # §1.8: not after STARTTLS or AUTHENTICATE
        if self.account is not None:
            caps.append(("OWNER", self.account.address))
        caps += [("UNAUTHENTICATE", None), ("VERSION", "1.0")]
        return caps

    async def do_CAPABILITY(self, args):
        if args:
            raise SieveError("CAPABILITY takes no arguments", bad=True)
        self.write(capability_lines(self.capabilities()) + reply("OK", text="Capability completed."))
        return None

    async def do_NOOP(self, args):
        if len(args) > 1:
            raise SieveError("Usage: NOOP [tag]", bad=True)
        if args:
            # RFC 5804 §2.13: echo the tag in a TAG response code
            self.write(reply("OK", "TAG", "Done", code_arg=_string(args[0], "the tag")))
            return None
        return "NOOP completed."

    async def do_LOGOUT(self, args):
        # RFC 5804 §2.3: OK, then close; commands after LOGOUT are ignored
        self.write(reply("OK", text="Logout completed."))
        if self.account is not None:
            log.info("managesieve %s: %s logged out", self.peer, self.account.address)
        self.close()
        return None

    # -- non-authenticated -------------------------------------------------------------------
    async def do_STARTTLS(self, args):
        if args:
            raise SieveError("STARTTLS takes no arguments", bad=True)
        if self.ctx.tls is None:
            raise SieveError("STARTTLS is not available")
        if self.is_tls:
            raise SieveError("TLS is already active")
        self.write(reply("OK", text="Begin TLS negotiation now."))
        self.framer.reset()
        self.transport.startTLS(self.ctx.tls)
        self.tls_started = True
        # RFC 5804 §2.2: the capabilities again, under TLS (written once the handshake is done),
        # without STARTTLS
        self.write(capability_lines(self.capabilities()) + reply("OK", text="TLS negotiation successful."))
        return None

    async def do_AUTHENTICATE(self, args):
        if not 1 <= len(args) <= 2:
            raise SieveError('Usage: AUTHENTICATE "PLAIN" [initial-response]', bad=True)
        mechanism = _string(args[0], "the mechanism").decode("ascii", "replace").upper()
        if mechanism not in MECHANISMS:
            raise SieveError("Unsupported authentication mechanism")
        if not self.plaintext_auth_allowed():
            raise SieveError("Plaintext authentication requires TLS; use STARTTLS first", "ENCRYPT-NEEDED")
        initial = _string(args[1], "the initial response") if len(args) == 2 else None
        if mechanism == "PLAIN":
            data = initial if initial is not None else await self.sasl_challenge(b"")
            if data is None:
                return None
            authzid, user, password = decode_sasl_plain(data)
            if authzid and authzid.strip().lower() != user.strip().lower():
                # no proxy authorization: answered like any other failed login
                return await self.login(user, None)
        else:  # LOGIN (draft-murchison-sasl-login): user name, then password, each base64
            data = initial if initial is not None else await self.sasl_challenge(b"Username:")
            if data is None:
                return None
            user = _utf8(decode_base64(data), "The user name")
            data = await self.sasl_challenge(b"Password:")
            if data is None:
                return None
            password = _utf8(decode_base64(data), "The password")
        return await self.login(user, password)

    async def sasl_challenge(self, challenge: bytes) -> Optional[bytes]:
        """Send a challenge (RFC 5804 §2.1: a string of base64), return the client's response
        string; None when the connection is gone."""
        self.write(string(base64.b64encode(challenge)) + b"\r\n")
        item = await self.next_item()
        if item is None or self._closed:
            return None
        if isinstance(item, Rejected):
            if item.fatal:
                self._reply_rejected(item)  # BYE: the stream cannot be followed any more
                return None
            raise SieveError("Authentication response too long", bad=True)
        try:
            response = parse_args(item)
        except ParseError as e:
            raise SieveError("Invalid authentication response: %s" % e, bad=True) from None
        if len(response) != 1 or not isinstance(response[0], bytes):
            raise SieveError("Expected the authentication response as one string", bad=True)
        if response[0] == b"*":
            raise SieveError("Authentication cancelled.")  # §2.1: the client cancels with "*"
        return response[0]

    async def login(self, user: str, password: Optional[str]):
        try:
            if password is None:
                raise UnauthorizedLogin("authorization identity differs from the login")
            _iface, account, logout = await self.ctx.portal.login(
                PasswordCredentials(user, password, self.peer), None, IAccount)
        except UnauthorizedLogin:
            log.info("managesieve %s: authentication failed for %r", self.peer, user[:100])
            self.auth_failures += 1
            if self.auth_failures >= MAX_AUTH_FAILURES:
                self.write(reply("BYE", text="Too many failed authentication attempts."))
                self.close()
                return None
            raise SieveError("Authentication failed.") from None
        except LoginUnavailable:  # RFC 5804 §1.3: TRYLATER, not a failed login
            raise SieveError("Temporary failure, try again later.", "TRYLATER") from None
        self._logout_cb = logout
        if self._closed:
            self.release_account()
            return None
        self.account = account
        self.state = AUTH
        log.info("managesieve %s: %s logged in", self.peer, account.address)
        return "Logged in."

    # -- authenticated -------------------------------------------------------------------------
    async def do_UNAUTHENTICATE(self, args):
        # RFC 5804 §2.14.1: back to the non-authenticated state; never fails when logged in
        if args:
            raise SieveError("UNAUTHENTICATE takes no arguments", bad=True)
        log.info("managesieve %s: %s unauthenticated", self.peer, self.account.address)
        self.release_account()
        self.account = None
        self.state = NOT_AUTH
        self.login_started = time.monotonic()  # a new login window
        return "Unauthenticate completed."

    async def do_LISTSCRIPTS(self, args):
        if args:
            raise SieveError("LISTSCRIPTS takes no arguments", bad=True)
        scripts = await self.store.list_sieve_scripts(self.account.id)
        # RFC 5804 §2.7: one name per line, the active one followed by ACTIVE
        self.write(b"".join(string(s.name) + (b" ACTIVE" if s.active else b"") + b"\r\n" for s in scripts)
                   + reply("OK", text="Listscripts completed."))
        return None

    async def do_GETSCRIPT(self, args):
        if len(args) != 1:
            raise SieveError('Usage: GETSCRIPT "name"', bad=True)
        text = await self.store.get_sieve_script(self.account.id, self._name(args[0]))
        self.write(literal(text) + b"\r\n" + reply("OK", text="Getscript completed."))
        return None

    async def do_PUTSCRIPT(self, args):
        if len(args) != 2:
            raise SieveError('Usage: PUTSCRIPT "name" {n+} script', bad=True)
        name, script = self._name(args[0]), self._script(args[1])
        if not script:
            raise SieveError("An empty script is refused")  # RFC 5804 §2.6: SHOULD be disallowed
        await self.store.put_sieve_script(self.account.id, name, script)
        log.info("managesieve %s: %s stored script %r (%d octets)", self.peer, self.account.address, name,
                 len(args[1]))
        return "Putscript completed."

    async def do_CHECKSCRIPT(self, args):
        if len(args) != 1:
            raise SieveError("Usage: CHECKSCRIPT {n+} script", bad=True)
        # RFC 5804 §2.12: compiled only; the account's script count is not looked at
        await self.store.check_sieve_script(self._script(args[0]))
        return "Script is valid."

    async def do_SETACTIVE(self, args):
        if len(args) != 1:
            raise SieveError('Usage: SETACTIVE "name" (or "" to deactivate)', bad=True)
        name = self._name(args[0])
        await self.store.set_active_sieve_script(self.account.id, name or None)
        log.info("managesieve %s: %s %s", self.peer, self.account.address,
                 "activated %r" % name if name else "deactivated its script")
        return "Setactive completed." if name else "No script is active now."

    async def do_DELETESCRIPT(self, args):
        if len(args) != 1:
            raise SieveError('Usage: DELETESCRIPT "name"', bad=True)
        name = self._name(args[0])
        if not name:
            raise SieveError("Script name missing")
        await self.store.delete_sieve_script(self.account.id, name)
        return "Deletescript completed."

    async def do_RENAMESCRIPT(self, args):
        if len(args) != 2:
            raise SieveError('Usage: RENAMESCRIPT "old name" "new name"', bad=True)
        old, new = self._name(args[0]), self._name(args[1])
        await self.store.rename_sieve_script(self.account.id, old, new)
        return "Renamescript completed."

    async def do_HAVESPACE(self, args):
        if len(args) != 2 or not isinstance(args[1], Atom):
            raise SieveError('Usage: HAVESPACE "name" size', bad=True)
        name, size = self._name(args[0]), parse_number(args[1])
        await self.store.sieve_space(self.account.id, name, size)
        return "Putscript would succeed."

    # -- arguments -----------------------------------------------------------------------------
    @staticmethod
    def _name(arg) -> str:
        """A script name (RFC 5804 §1.7); the store checks length and characters."""
        return _utf8(_string(arg, "the script name"), "The script name")

    @staticmethod
    def _script(arg) -> str:
        return _utf8(_string(arg, "the script"), "The script")
