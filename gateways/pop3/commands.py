"""POP3 command handlers ``do_<KEYWORD>`` (mixed into :class:`~.protocol.POP3Server`).

A handler returns the text of a one-line ``+OK`` reply, or None when it wrote its reply itself
(multi-line replies, QUIT, STLS); it fails by raising ``POP3Error``, ``MaildropError``,
``ParseError`` or a store error, which the engine turns into ``-ERR`` lines.

Invariants:
* Authentication goes only through the twisted.cred portal; every failure (unknown user, wrong
  password, disabled account, throttled, bad authzid) answers the same
  ``-ERR [AUTH] Authentication failed.`` (RFC 3206).  Passwords are never logged.
* POP3 is read-only apart from DELE at QUIT: RETR and TOP do not set ``\\Seen``.  A decision:
  Dovecot does set it unless ``pop3_no_flag_updates = yes``, but a phone or a second machine
  polling over POP3 ("leave a copy on the server") would then make new mail look read in the
  user's IMAP clients; with no flag writes POP3 also costs the store no modseq bumps.
* The store is asked to delete exactly the UIDs marked with DELE, once, in the UPDATE state.
"""

from __future__ import annotations

import logging
from typing import Optional

from twisted.cred.error import UnauthorizedLogin
from twisted.internet import threads

from auth.cred import IAccount, LoginUnavailable, PasswordCredentials
from store import errors
from store.interfaces import INBOX

from .maildrop import Maildrop
from .parser import (TOO_LONG, BodyEncoder, decode_sasl_plain, message_body, multiline, parse_number, top_body,
                     top_prefix)

log = logging.getLogger("haven.pop3")

#: messages bigger than this are dot-stuffed in a thread, not on the reactor
ENCODE_IN_THREAD = 1 << 20
#: RETR and TOP read messages bigger than this piece by piece (Store.open_blob)
STREAM_MESSAGE = 1 << 20

#: RFC 1939 §3 session states
AUTHORIZATION, TRANSACTION, UPDATE = "AUTHORIZATION", "TRANSACTION", "UPDATE"


class POP3Error(Exception):
    """A handler's failure reply: ``-ERR [code] text``.  ``bad`` counts towards max_bad_commands."""

    def __init__(self, text: str, code: Optional[str] = None, bad: bool = False):
        super().__init__(text)
        self.text = text
        self.code = code
        self.bad = bad


class Commands:
    # -- any state -----------------------------------------------------------------------------
    async def do_CAPA(self, cmd):
        # RFC 2449 §5; USER, SASL and STLS are announced in the AUTHORIZATION state only
        caps = [b"TOP", b"UIDL", b"RESP-CODES", b"AUTH-RESP-CODE", b"PIPELINING"]
        if self.state == AUTHORIZATION:
            if self.plaintext_auth_allowed():
                caps += [b"USER", b"SASL PLAIN"]
            if self.ctx.tls is not None and not self.is_tls:
                caps.append(b"STLS")
        caps.append(b"IMPLEMENTATION Haven")
        self.write(b"+OK Capability list follows\r\n" + multiline(caps))

    async def do_QUIT(self, cmd):
        if self.state == AUTHORIZATION:
            self.write(b"+OK Haven POP3 signing off\r\n")
            self.close()
            return None
        # RFC 1939 §6: the UPDATE state; DELE marks reach the store here and only here
        self.state = UPDATE
        maildrop, account = self.maildrop, self.account
        uids = maildrop.deleted_uids()
        try:
            removed = await self.store.delete_messages(account.id, maildrop.folder_id, uids) if uids else []
        except errors.StoreError as e:
            code, text = self.map_store_error(e)
            log.warning("pop3 %s: %s: QUIT could not delete %d messages: %s", self.peer, account.address,
                        len(uids), e)
            self.write(b"-ERR [%s] Some deleted messages not removed: %s\r\n"
                       % ((code or "SYS/TEMP").encode(), text.encode("utf-8", "replace")))
            self.close()
            return None
        gone = len(uids) - len(removed)
        log.info("pop3 %s: %s logged out, %d deleted%s", self.peer, account.address, len(removed),
                 ", %d already gone" % gone if gone else "")
        # RFC 1939 §6 has no code for "someone else removed it first": the message is gone
        # either way, so it is +OK with a note
        note = ", %d of them already deleted by another session" % gone if gone else ""
        self.write(b"+OK Haven POP3 signing off (%d message%s deleted%s)\r\n"
                   % (len(uids), b"" if len(uids) == 1 else b"s", note.encode()))
        self.close()
        return None

    # -- AUTHORIZATION -----------------------------------------------------------------------
    def _require_plaintext_ok(self) -> None:
        if not self.plaintext_auth_allowed():
            raise POP3Error("TLS required", "SYS/PERM")

    async def do_USER(self, cmd):
        self._require_plaintext_ok()
        name = cmd.rest.strip()
        if not name:
            raise POP3Error("USER needs a name", bad=True)
        self.user = name  # whether it exists is not told (RFC 1939 §7 allows either)
        return "Send your password"

    async def do_PASS(self, cmd):
        self._require_plaintext_ok()
        if self.user is None:
            raise POP3Error("Send USER first", bad=True)
        user, self.user = self.user, None
        # RFC 1939 §7: the argument may contain spaces, so it is the rest of the line
        return await self.login(user, cmd.rest)

    async def do_AUTH(self, cmd):
        if not cmd.args:
            # the pre-RFC 5034 listing form some clients still send (Outlook)
            mechs = [b"PLAIN"] if self.plaintext_auth_allowed() else []
            self.write(b"+OK Supported mechanisms follow\r\n" + multiline(mechs))
            return None
        if cmd.args[0].upper() != "PLAIN":
            raise POP3Error("Unsupported authentication mechanism")
        self._require_plaintext_ok()
        if len(cmd.args) > 2:
            raise POP3Error("Usage: AUTH PLAIN [initial-response]", bad=True)
        if len(cmd.args) == 2:
            data = cmd.args[1].encode()
        else:
            self.write(b"+ \r\n")  # RFC 5034 §4: an empty challenge
            data = await self.next_line()
            if data is None:
                return None
            if data is TOO_LONG:
                raise POP3Error("Authentication data too long")
        if data.strip() == b"*":
            raise POP3Error("Authentication cancelled")
        authzid, authcid, password = decode_sasl_plain(data)
        if authzid and authzid != authcid:
            raise UnauthorizedLogin("proxy authorization is not supported")
        return await self.login(authcid, password)

    async def do_APOP(self, cmd):
        raise POP3Error("APOP is not supported; use USER/PASS or AUTH PLAIN")

    async def do_STLS(self, cmd):
        if self.ctx.tls is None:
            raise POP3Error("STLS is not available")
        if self.is_tls:
            raise POP3Error("TLS is already active")
        self.write(b"+OK Begin TLS negotiation\r\n")
        self._reader.reset()
        self.transport.startTLS(self.ctx.tls)
        self.tls_started = True
        self.user = None  # RFC 2595 §4: nothing from before the handshake carries over
        return None

    async def login(self, user: str, password: str):
        try:
            _iface, account, logout = await self.ctx.portal.login(
                PasswordCredentials(user, password, self.peer), None, IAccount)
        except UnauthorizedLogin:
            log.info("pop3 %s: authentication failed for %r", self.peer, user[:100])
            raise POP3Error("Authentication failed.", "AUTH") from None
        except LoginUnavailable:  # RFC 3206 §4: SYS/TEMP, the password may be right
            raise POP3Error("Temporary failure, try again later.", "SYS/TEMP") from None
        self._logout_cb = logout
        if self._closed:
            self.release_account()
            return None
        # RFC 1939 §4: the maildrop is opened (snapshotted) once, here
        try:
            inbox = await self.store.get_folder(account.id, INBOX)
            messages = await self.store.list_messages(inbox.id)
        except errors.StoreError as e:
            self.release_account()
            code, text = self.map_store_error(e)
            log.warning("pop3 %s: %s: cannot open the maildrop: %s: %s", self.peer, account.address,
                        type(e).__name__, e)
            raise POP3Error("Cannot open the maildrop: %s" % text, code or "SYS/TEMP") from None
        if self._closed:
            self.release_account()
            return None
        self.account = account
        self.maildrop = Maildrop(inbox.id, inbox.uidvalidity, messages)
        self.state = TRANSACTION
        log.info("pop3 %s: %s logged in, %s", self.peer, account.address, self.maildrop.summary())
        return "Logged in, %s" % self.maildrop.summary()

    # -- TRANSACTION ---------------------------------------------------------------------------
    def _one_number(self, cmd, keyword: str, optional: bool = False):
        if len(cmd.args) > 1 or (not cmd.args and not optional):
            raise POP3Error("Usage: %s msg" % keyword + (" (or no argument)" if optional else ""), bad=True)
        return parse_number(cmd.args[0]) if cmd.args else None

    async def do_STAT(self, cmd):
        return "%d %d" % (self.maildrop.count, self.maildrop.octets)

    async def do_LIST(self, cmd):
        n = self._one_number(cmd, "LIST", optional=True)
        if n is not None:
            return "%d %d" % (n, self.maildrop.size(n))
        self.write(b"+OK %s\r\n" % self.maildrop.summary().encode() + multiline(self.maildrop.scan_listing()))
        return None

    async def do_UIDL(self, cmd):
        n = self._one_number(cmd, "UIDL", optional=True)
        if n is not None:
            return "%d %s" % (n, self.maildrop.uidl(n))
        self.write(b"+OK Unique-id listing follows\r\n" + multiline(self.maildrop.uid_listing()))
        return None

    async def do_RETR(self, cmd):
        n = self._one_number(cmd, "RETR")
        head = b"+OK %d octets\r\n" % self.maildrop.size(n)
        if self.maildrop.size(n) > STREAM_MESSAGE:
            await self._send_streamed(n, head)
            return None
        raw = await self._read_message(n)
        body = await self._encode(message_body, raw)
        await self.send(head, body)
        return None

    async def do_TOP(self, cmd):
        if len(cmd.args) != 2:
            raise POP3Error("Usage: TOP msg lines", bad=True)
        n = parse_number(cmd.args[0])
        lines = parse_number(cmd.args[1], "line count", zero=True)
        if self.maildrop.size(n) > STREAM_MESSAGE:
            stream = await self._open_message(n)
            try:
                raw = await top_prefix(stream, lines, self.config.write_chunk)
            finally:
                stream.close()
        else:
            raw = await self._read_message(n)
        body = await self._encode(top_body, raw, lines)
        await self.send(b"+OK Top of message follows\r\n", body)
        return None

    async def do_DELE(self, cmd):
        n = self._one_number(cmd, "DELE")
        self.maildrop.mark_deleted(n)
        return "Message %d deleted" % n

    async def do_RSET(self, cmd):
        self.maildrop.reset()
        return "Maildrop has %s" % self.maildrop.summary()

    async def do_NOOP(self, cmd):
        return ""

    async def _read_message(self, n: int) -> bytes:
        """The raw bytes of message ``n``, checked live now: it may have been expunged over IMAP
        since login (the blob of a soft-deleted message still exists; we must not serve it)."""
        uid = self.maildrop.uid(n)
        rows = await self.store.fetch_messages_with_bodies(self.maildrop.folder_id, [uid])
        if not rows:
            log.info("pop3 %s: message %d (uid %d) was expunged meanwhile", self.peer, n, uid)
            raise POP3Error("Message %d no longer exists: it was deleted by another session" % n)
        return rows[0][1]

    async def _open_message(self, n: int):
        """A BlobStream of message ``n``, checked live now (see :meth:`_read_message`)."""
        uid = self.maildrop.uid(n)
        recs = await self.store.fetch_messages(self.maildrop.folder_id, [uid])
        if not recs:
            log.info("pop3 %s: message %d (uid %d) was expunged meanwhile", self.peer, n, uid)
            raise POP3Error("Message %d no longer exists: it was deleted by another session" % n)
        return await self.store.open_blob(recs[0].blob_id)

    async def _send_streamed(self, n: int, head: bytes) -> None:
        """RETR of a big message: read, dot-stuffed and written a piece at a time, each write
        waiting for the transport to take the previous one, so the connection holds a piece or
        two of it, never the message.  A store failure after ``+OK`` cannot be answered
        (the reply has begun): it is logged and the connection closed."""
        stream = await self._open_message(n)
        encoder = BodyEncoder()
        try:
            self.write(head)
            while not self._closed:
                piece = await stream.read(self.config.write_chunk)
                out = encoder.feed(piece) if piece else encoder.end()
                await self.drained()
                if self._closed:
                    return
                self.write(out)
                if not piece:
                    return
        except errors.StoreError as e:
            log.warning("pop3 %s: RETR %d failed while sending: %s", self.peer, n, e)
            self.close()
        finally:
            stream.close()

    async def _encode(self, fn, raw: bytes, *args) -> bytes:
        if len(raw) > ENCODE_IN_THREAD:
            return await threads.deferToThread(fn, raw, *args)
        return fn(raw, *args)

