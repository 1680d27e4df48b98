"""Haven's POP3 gateway (RFC 1939, RFC 2449 CAPA, RFC 5034 SASL, RFC 2595 STLS, RFC 3206 codes).

Modules: ``parser`` (lines, commands, SASL PLAIN, dot-stuffing: pure), ``maildrop`` (the
session's snapshot of INBOX and its DELE marks: pure), ``protocol`` (the per-connection engine,
the store error table), ``commands`` (handlers ``do_KEYWORD``).

What it guarantees:
* Commands: USER, PASS, AUTH PLAIN (initial response or continuation), CAPA, STAT, LIST, UIDL,
  TOP, RETR, DELE, RSET, NOOP, QUIT, STLS.  CAPA announces TOP, UIDL, RESP-CODES, AUTH-RESP-CODE,
  PIPELINING, IMPLEMENTATION, and before login USER + SASL PLAIN (when plaintext login is
  allowed) and STLS (when a certificate is configured and the connection is not TLS yet).
* The maildrop is the account's INBOX as it was at login (RFC 1939 §4): one ``list_messages``
  then, numbers 1..n fixed for the session; later deliveries show up at the next login.
  Sizes are the store's RFC822.SIZE, which for CRLF-stored messages is the size as transmitted
  (see ``maildrop``).  UIDL is ``<INBOX uidvalidity>.<uid>``: stable across sessions and
  restarts, unique per account.
* DELE only marks.  The store deletes (a soft delete; IMAP sessions see EXPUNGE) only at QUIT in
  the UPDATE state, via ``delete_messages``.  A connection that drops, times out or is closed
  for bad commands deletes nothing.  Messages another session expunged meanwhile: RETR/TOP answer
  ``-ERR``, the session goes on, and QUIT still answers ``+OK`` (with a note).
* RETR/TOP read the body through the store at the time of the command (which also checks the
  message is still live) and write it CRLF, dot-stuffed, in pieces that respect the transport's
  backpressure.  A message over 1 MiB is read from the store a piece (``write_chunk``) at a
  time as the client takes it, so a RETR holds a piece or two of it, never the whole; TOP of
  one reads only as far as the lines it sends.  POP3 never changes flags: RETR does not set ``\\Seen``.
* Authentication goes through ``ctx.portal``; every failure is ``-ERR [AUTH] Authentication
  failed.``.  ``allow_plaintext_auth``: ``loopback`` (default) allows USER/PASS/AUTH without
  TLS only from this machine (e.g. a local TLS proxy, trusted as Dovecot does), ``yes`` from
  anywhere, ``no`` never; refused ones answer ``-ERR [SYS/PERM] TLS required`` and are not
  announced.
* Limits: lines longer than ``max_line_length`` -> ``-ERR``; ``max_bad_commands`` malformed,
  unknown or out-of-state commands close the connection; ``idle_timeout`` minutes without a
  command (RFC 1939 §3: at least 10) close it without UPDATE.  Store failures answer
  ``-ERR [SYS/TEMP]`` and are logged.

Deliberately not done: APOP (needs plaintext passwords on the server), SASL mechanisms other than
PLAIN, an exclusive maildrop lock / ``[IN-USE]`` (two POP3 sessions of one account may run at
once; each sees its own snapshot and a message deleted by both is deleted once), LOGIN-DELAY,
EXPIRE, the push bus (a POP3 session never changes its snapshot), per-IP connection limits.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from twisted.internet.protocol import Factory

from gateways.common.plaintext import PLAINTEXT_CHOICES
from gateways.common.settings import SectionSettings

from .protocol import POP3Server

log = logging.getLogger("haven.pop3")


@dataclass(frozen=True)
class POP3Config:
    max_line: int = 8192
    idle_timeout: float = 600.0  # seconds (minutes in haven.ini)
    login_timeout: float = 60.0  # seconds from connecting to a successful login
    allow_plaintext_auth: str = "loopback"
    max_bad_commands: int = 20
    write_chunk: int = 256 * 1024  # octets per transport write of a big message

    @classmethod
    def from_settings(cls, settings) -> "POP3Config":
        """Read the ``[pop3]`` section; a bad value stops start-up with a message naming the key."""
        config = SectionSettings("pop3", settings)
        number = config.number
        plaintext = config.choice("allow_plaintext_auth", "loopback", PLAINTEXT_CHOICES)
        minutes = number("idle_timeout", 10.0, float, 0.01)
        if minutes < 10:
            log.warning("[pop3] idle_timeout = %g: RFC 1939 §3 asks for at least 10 minutes", minutes)
        return cls(max_line=number("max_line_length", 8192, int, 255),
                   idle_timeout=minutes * 60,
                   login_timeout=number("login_timeout", 60.0, float, 0.01),
                   allow_plaintext_auth=plaintext,
                   max_bad_commands=number("max_bad_commands", 20, int, 1))


class POP3Factory(Factory):
    def __init__(self, ctx):
        self.ctx = ctx
        self.config = POP3Config.from_settings(ctx.settings)

    def buildProtocol(self, addr):
        proto = POP3Server(self.ctx, self.config)
        proto.factory = self
        return proto


def check_settings(ctx) -> None:
    """Read every ``[pop3]`` key (start-up checks the whole config before it binds anything)."""
    POP3Config.from_settings(ctx.settings)


def make_factory(ctx) -> Factory:
    """The service's entry point: a factory of POP3 connections on ``ctx.store``."""
    return POP3Factory(ctx)
