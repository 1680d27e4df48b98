"""The IMAP protocol engine: one :class:`IMAPServer` per connection on the reactor.

Invariants:
* Commands of a connection run strictly in order: frames are queued as they arrive (pipelining
  works) and the next one starts only when the previous one wrote its tagged reply.  A handler
  that needs more client lines (AUTHENTICATE, IDLE's DONE) takes them from the same queue.
* Nothing blocks the reactor: handlers are coroutines driven by ``Deferred.fromCoroutine``; big
  responses are written in batches and wait for the transport to drain (we are registered as its
  streaming producer).  Input is paused while too much is queued.
* No client input can produce a traceback on the wire: parse errors answer ``BAD``, store errors
  go through the one table :data:`STORE_ERRORS`, anything else is logged and answered
  ``NO [SERVERBUG]`` (RFC 5530) with the connection kept.
* Before every tagged reply of a command run in the selected state the session reports other
  sessions' changes, except that EXPUNGE/VANISHED is held back during FETCH, STORE and SEARCH
  (RFC 3501 §7.4.1; their UID forms may report it).
* Plaintext received after STARTTLS and before the TLS handshake is discarded (no command
  injection, RFC 3207 §4.2 analogue / CVE-2011-0411).

Deliberately not done: NOTIFY, per-IP connection limits (the service's job).
"""

from __future__ import annotations

import logging
from typing import Optional

from twisted.cred.error import UnauthorizedLogin
from twisted.internet import defer
from twisted.internet.defer import Deferred

from gateways.common.lineproto import LineSession, PlaintextPolicy
from gateways.common.spool import Spool
from store import errors

from .cmd_auth import AuthCommands
from .cmd_mailbox import MailboxCommands
from .cmd_message import MessageCommands
from .cmd_metadata import MetadataCommands
from .cmd_quota import QuotaCommands
from .cmd_sort import CAPABILITIES as SORT_CAPABILITIES, SortCommands
from .compress import CompressCommands
from .fetch import EnvelopeCache
from .framing import Continue, Frame, Framer, Rejected, command_name
from .parser import ParseError, parse_command
from .recovered import DEFAULT_NAME as DEFAULT_RECOVERED, RecoveredItems
from .searchres import saving_command
from .seqset import SeqSetError
from .states import AUTH, NOT_AUTH, SELECTED, STATES, IMAPError
from .watch import feed_for

log = logging.getLogger("haven.imap")

#: RFC 3501 §7.4.1: no EXPUNGE while answering these (their UID forms are fine)
NO_EXPUNGE = {"FETCH", "STORE", "SEARCH", "SORT", "THREAD"}

#: the one table: store error -> (status, response code); RFC 5530 codes
STORE_ERRORS = [
    (errors.NotFound, "NO", "NONEXISTENT"),
    (errors.Exists, "NO", "ALREADYEXISTS"),
    (errors.Expunged, "NO", "EXPUNGEISSUED"),
    (errors.PermissionDenied, "NO", "NOPERM"),
    (errors.OverQuota, "NO", "OVERQUOTA"),  # RFC 9208: APPEND/COPY past the hard quota
    (errors.TooBig, "NO", "TOOBIG"),
    (errors.TemporaryFailure, "NO", "UNAVAILABLE"),
    (errors.InvalidInput, "NO", "CANNOT"),
    (errors.SchemaOutOfDate, "NO", "UNAVAILABLE"),
    (errors.StoreError, "NO", "SERVERBUG"),
]
#: commands where a missing destination means "create it first" (RFC 3501 §6.3.11, §6.4.7)
TRYCREATE = {"APPEND", "COPY", "MOVE"}

MAX_QUEUED_BYTES = 4 << 20
#: the largest literal read before login (a password, a SASL response); an APPEND literal sent
#: before login is refused unread, never buffered
PRE_LOGIN_LITERAL = 8192
#: the longest command line read before login (max_line_length applies once logged in)
PRE_LOGIN_LINE = 8192
MAX_QUEUED_COMMANDS = 500
#: APPEND literals bigger than this are spooled to disk as they arrive (gateways/common/spool.py)
SPOOL_LITERAL = 256 << 10


class IMAPServer(CompressCommands, PlaintextPolicy, LineSession, AuthCommands, MailboxCommands, MessageCommands,
                 QuotaCommands, MetadataCommands, SortCommands):
    """Connection lifecycle (timer, STARTTLS hold, error skeleton) in
    :class:`gateways.common.lineproto.LineSession`; IMAP's own: tagged replies, states, the
    selected mailbox and its change reports, IDLE."""
    max_queued_items = MAX_QUEUED_COMMANDS
    max_queued_bytes = MAX_QUEUED_BYTES
    log = log
    label = "imap"
    # RFC 5530 §3: UNAVAILABLE, "the server is busy or the connection limit is reached"
    too_many_connections = {"address": b"* BYE [UNAVAILABLE] Too many connections from your address\r\n",
                            "server": b"* BYE [UNAVAILABLE] Too many connections; try again later\r\n"}

    def __init__(self, ctx, config, envelopes: Optional[EnvelopeCache] = None):
        LineSession.__init__(self, ctx, config)
        self.envelopes = envelopes if envelopes is not None else EnvelopeCache()  # shared per service
        self.state = NOT_AUTH
        self.selected = None
        self.condstore = False
        self.qresync = False
        self.utf8 = False  # RFC 6855 UTF8=ACCEPT enabled
        self.rev2 = False  # ENABLE IMAP4rev2 (RFC 9051): the session speaks IMAP4rev2
        self.idling = False
        self.recovered = RecoveredItems(getattr(config, "recovered_items", DEFAULT_RECOVERED))
        self._unsubscribe = None
        self.command_tag: Optional[str] = None  # the tag of the command being run
        self.after_reply = None  # called right after the tagged reply (STARTTLS)

    # -- connection lifecycle (gateways/common/lineproto.py) ---------------------------------
    def connectionMade(self):
        # before login a line is a LOGIN, an AUTHENTICATE or a probe: a few KiB at most
        self.framer = Framer(min(PRE_LOGIN_LINE, self.config.max_line), self._literal_limit,
                             spool=self._spool_literal)
        super().connectionMade()
        self.write(b"* OK [CAPABILITY %s] Haven IMAP ready.\r\n" % self.capabilities().encode())

    def connectionLost(self, reason=None):
        super().connectionLost(reason)
        self.framer.reset()  # a literal being read: its spool goes
        for item in self._queue:
            if isinstance(item, Frame):
                item.close()

    def release_account(self):
        if self._unsubscribe is not None:
            unsub, self._unsubscribe = self._unsubscribe, None
            unsub()
        super().release_account()

    def _session_timeout(self) -> float:
        return self.config.idle_timeout if self.state != NOT_AUTH else self.login_left(self.config.login_timeout)

    def _busy(self) -> bool:
        return self._running and not self.idling  # a long command is still being answered

    def _autologout(self) -> None:
        # RFC 3501 §5.4: autologout after at least 30 minutes of inactivity
        self.write(b"* BYE Autologout; idle for too long\r\n")
        self.close()

    # -- input and the ordered command queue (gateways/common/lineproto.py) -----------------
    def _literal_limit(self, name: str) -> int:
        if self.state == NOT_AUTH:  # a password or SASL response; nothing bigger is read before login
            return min(PRE_LOGIN_LITERAL, self.config.max_small_literal)
        return self.config.max_literal_size if name == "APPEND" else self.config.max_small_literal

    def _spool_literal(self, name: str, size: int):
        """An APPEND literal over SPOOL_LITERAL octets goes to disk as it arrives (logged-in
        sessions only: before login no literal that big is accepted)."""
        if name != "APPEND" or size <= SPOOL_LITERAL or self.state == NOT_AUTH:
            return None
        return Spool(self.ctx.spool_dir, self.hold_input, self.release_input)

    def dataReceived(self, data: bytes):
        if self._closed or self._tls_pending:
            return
        self.input_seen()
        if self._deflate is not None:
            self.received(data)  # inflated, then fed (compress.py, RFC 4978)
        else:
            self.feed(data)

    def feed(self, data: bytes) -> None:
        """Plain input to frame and queue."""
        if self._tls_pending:
            return  # after STARTTLS or COMPRESS in the same read: discarded
        for event in self.framer.feed(data):
            if isinstance(event, Continue):
                self.write(b"+ Ready for literal data\r\n")
            elif isinstance(event, Frame):
                if not self._accept(event):
                    continue  # a continuation line for AUTHENTICATE or IDLE's DONE
                if command_name(event.data[:100])[1] in ("STARTTLS", "COMPRESS"):
                    # discard anything pipelined after STARTTLS (command injection) or COMPRESS
                    self._hold_for_tls(event)
                    self.framer.reset()
                    break
            elif isinstance(event, Rejected):
                # A handler waiting for its continuation line (AUTHENTICATE, IDLE's DONE) gets
                # the refused line as an empty one and answers it, as next_line() does for one
                # refused before it asked; a fatal refusal is answered after it and closes.
                if not self._accept(event) and event.fatal:
                    self._enqueue(event)
                if event.fatal:
                    break
        self._pump()

    def _item_size(self, item) -> int:
        return len(item.data) if isinstance(item, Frame) else 0  # Rejected frames hold nothing

    def next_line(self) -> Deferred:
        """The next line (frame) from the client, for AUTHENTICATE and IDLE; None if closed."""
        if self._queue and not isinstance(self._queue[0], Frame):
            self._dequeue()  # a refused frame cannot be a continuation line
            return defer.succeed(b"")
        return self.next_item().addCallback(self._continuation_line)

    @staticmethod
    def _continuation_line(item) -> Optional[bytes]:
        if item is None:
            return None
        if not isinstance(item, Frame):
            return b""
        item.close()  # a continuation line has no literal worth keeping
        return item.data

    # -- command execution (the skeleton: LineSession._execute) ------------------------------
    async def _run(self, item) -> None:
        self.command_tag = None
        if isinstance(item, Rejected):
            self._reply_rejected(item)
            return
        try:
            await self._run_frame(item)
        finally:
            item.close()  # a spooled APPEND literal: gone once the command has run

    async def _run_frame(self, item: Frame) -> None:
        try:
            cmd = parse_command(item.data, item.spools, self.utf8, self.rev2)
        except ParseError as e:
            log.info("imap %s: bad command: %s", self.peer, e.text)
            if self.selected is not None and saving_command(item.data):
                self.selected.saved = []  # RFC 5182 §2.1: a failed SAVE leaves "$" empty
            code = "[%s] " % e.code if e.code else ""
            status = "NO" if e.code in ("CANNOT", "TOOBIG") or (e.code or "").startswith("BADCHARSET") else "BAD"
            self.write(b"%s %s %s%s\r\n" % ((e.tag or "*").encode(), status.encode(),
                                             code.encode(), e.text.encode("utf-8", "replace")))
            return
        self.command_tag, self.command_label = cmd.tag, ("UID " if cmd.uid else "") + cmd.name
        await self._dispatch(cmd)

    def _internal_error(self) -> None:
        self.write(b"%s NO [SERVERBUG] Internal error; the event was logged\r\n"
                   % (self.command_tag or "*").encode())

    def _reply_rejected(self, item: Rejected) -> None:
        tag = (item.tag or "*").encode()
        log.info("imap %s: refused %s (%s, %d octets)", self.peer, item.command, item.reason, item.size)
        if item.reason == "literal-too-big":
            status = b"NO" if item.command == "APPEND" else b"BAD"
            self.write(b"%s %s [TOOBIG] Literal too big (limit %d octets)\r\n"
                       % (tag, status, self._literal_limit(item.command or "")))
        elif item.reason == "bad-literal":
            self.write(b"%s BAD Unsupported literal syntax\r\n" % tag)
        else:
            self.write(b"%s BAD Command line too long\r\n" % tag)
        if item.fatal:
            self.write(b"* BYE Cannot resynchronize the command stream\r\n")
            self.close()

    async def _dispatch(self, cmd) -> None:
        name = cmd.name
        tag = cmd.tag.encode()
        if self.state not in STATES.get(name, ()):
            self.write(b"%s BAD %s not allowed %s\r\n" % (tag, name.encode(), self._state_hint().encode()))
            return
        label = ("UID " if cmd.uid else "") + name
        handler = getattr(self, "do_" + name)
        status, code, text = "OK", None, label + " completed"
        try:
            result = await handler(cmd)
            if isinstance(result, tuple):
                code, text = result
            elif isinstance(result, str):
                text = result
        except IMAPError as e:
            status, code, text = e.status, e.code, e.text
        except SeqSetError as e:
            status, code, text = "BAD", None, str(e)
        except UnauthorizedLogin:
            status, code, text = "NO", "AUTHENTICATIONFAILED", "Authentication failed."
        except errors.StoreError as e:
            status, code, text = self._map_store_error(e, name)
            (log.warning if code in ("UNAVAILABLE", "SERVERBUG") else log.info)(
                "imap %s: %s failed: %s: %s", self.peer, label, type(e).__name__, e)
        if self.selected is not None and self.state == SELECTED and not self._closed:
            await self.sync(allow_expunge=not (name in NO_EXPUNGE and not cmd.uid))
        if self._closed and name != "LOGOUT":
            return
        line = b"%s %s %s%s\r\n" % (tag, status.encode(), b"[%s] " % code.encode() if code else b"",
                                    text.encode("utf-8", "replace"))
        self.write(line)
        hook, self.after_reply = self.after_reply, None
        if hook is not None:
            hook()
        if name == "LOGOUT":
            self.close()

    def _map_store_error(self, e: Exception, name: str) -> tuple:
        for cls, status, code in STORE_ERRORS:
            if isinstance(e, cls):
                if cls is errors.NotFound and name in TRYCREATE:
                    code = "TRYCREATE"
                text = str(e) or type(e).__name__
                return status, code, text
        return "NO", "SERVERBUG", "Internal error"

    def _state_hint(self) -> str:
        return {NOT_AUTH: "before authentication", AUTH: "without a selected mailbox",
                SELECTED: "in the selected state"}.get(self.state, "now")

    async def sync(self, allow_expunge: bool = True, force: bool = False) -> None:
        sel = self.selected
        if sel is None:
            return
        try:
            await sel.sync(self.store, self.write, allow_expunge, self.condstore, self.qresync, force)
        except errors.StoreError as e:
            log.warning("imap %s: could not report mailbox changes: %s", self.peer, e)

    def on_change(self, event) -> None:
        """Push bus callback (reactor thread; must not raise)."""
        sel = self.selected
        if sel is None or not sel.wants(event):
            return
        sel.mark_dirty()
        if self.idling and sel.view:
            feed_for(self.store).sync_alone(self)  # a recovery mailbox lists itself again
        elif self.idling:
            # RFC 2177: tell an idling client at once; one query for all the sessions waiting
            # on the folder, answered to each in one loop (watch.py)
            feed_for(self.store).push(self)

    # -- shared helpers for handlers ----------------------------------------------------------
    @property
    def utf8_names(self) -> bool:
        """Mailbox names cross the wire as UTF-8, not modified UTF-7: once UTF8=ACCEPT (RFC 6855
        §3) or IMAP4rev2 (RFC 9051 §5.1) is enabled."""
        return self.utf8 or self.rev2

    def capabilities(self) -> str:
        # both revisions: a session stays IMAP4rev1 until ENABLE IMAP4rev2 (RFC 9051 §6.3.1)
        caps = ["IMAP4rev1", "IMAP4rev2", "LITERAL+", "SASL-IR", "ID", "ENABLE", "IDLE"]
        if self.state == NOT_AUTH:
            if self.ctx.tls is not None and not self.is_tls:
                caps.append("STARTTLS")
            if self.plaintext_auth_allowed():
                caps.append("AUTH=PLAIN")
            else:
                caps.append("LOGINDISABLED")
            return " ".join(caps)
        caps += ["NAMESPACE", "UIDPLUS", "MOVE", "UNSELECT", "CHILDREN", "SPECIAL-USE",
                 "CREATE-SPECIAL-USE", "LIST-EXTENDED", "LIST-STATUS", "CONDSTORE", "QRESYNC",
                 "STATUS=SIZE", "APPENDLIMIT=%d" % self.config.max_literal_size,
                 # RFC 9208: no QUOTASET (SETQUOTA is refused), no RES-MESSAGE (no such limit)
                 "QUOTA", "QUOTA=RES-STORAGE",
                 "METADATA",  # RFC 5464: METADATA implies METADATA-SERVER
                 "OBJECTID"]
        caps += SORT_CAPABILITIES  # ESEARCH, SEARCHRES, SORT, THREAD (cmd_sort.py)
        caps += ["BINARY", "MULTIAPPEND", "PREVIEW", "UTF8=ACCEPT", "COMPRESS=DEFLATE"]  # RFC 3516/3502/8970/6855/4978
        return " ".join(caps)
