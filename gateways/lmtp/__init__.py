"""LMTP gateway (RFC 2033): how an MTA (Postfix ``lmtp:``, Exim, ...) hands mail to Haven.

aiosmtpd's protocol engine, run on the reactor's asyncio loop: the service calls
``loop.create_server(make_protocol_factory(ctx), host, port)`` (or ``create_unix_server``),
never aiosmtpd's threaded Controller.  ``server.py`` speaks the protocol, ``handler.py`` maps a
transaction onto one store :class:`~store.interfaces.Delivery`, ``replies.py`` holds every
reply the handler gives, store errors included.  What LMTP shares with SMTP submission is in
two neutral modules (gateways never import each other): :mod:`gateways.common.smtpwire`, the pure
byte-level pieces (the DATA decoder, trace headers, enhanced status codes, the RCPT reply
table), and :mod:`gateways.common.smtpserver`, the aiosmtpd engine both protocol engines subclass.

Guarantees
----------
* **Durable before 250.**  A recipient gets ``250`` only after ``Delivery.commit`` returned a
  result without error for it: blob fsynced and rows committed (store contract).
* **One reply per accepted RCPT after DATA**, in RCPT order (RFC 2033 §4.2), whatever happens:
  a per-recipient error gets its mapped reply; a failing commit (TemporaryFailure, a bug, a
  malformed result) gives every recipient ``451 4.3.0`` and the MTA retries.  A store failure is
  never a 5xx; a traceback never reaches the client (it is logged).  A commit in progress is
  not cancelled when the client disconnects.
* **The stored message is what was sent**: the DATA stream after dot-unstuffing, as bytes
  (8BITMIME, SMTPUTF8; never decoded as text), prefixed by ``Return-Path: <reverse-path>`` and
  one ``Received:`` line (RFC 5321 §4.4) naming the LHLO name, the peer address, this host,
  ``with LMTP`` (``UTF8LMTP`` under SMTPUTF8) and the queue id.  The trace has no
  ``for <recipient>`` clause, so one blob serves every recipient (single-instance storage).
* **Line endings** (RFC 5321 §2.3.8; :class:`gateways.common.smtpwire.DataDecoder`): only CRLF ends a
  line, and only CRLF "." CRLF ends the data.  ``LF.LF``, ``CR.CR``, ``LF.CRLF`` in the stream
  are content: they neither end the message nor start commands (SMTP smuggling,
  CVE-2023-51766).  Bare LF inside a line *is* stored as CRLF (as Postfix and Dovecot do; IMAP
  clients expect CRLF); bare CR is stored as it came (it has no agreed meaning, and rewriting
  it would change octets for nothing).  A "." after a bare LF is not a line start, so it is
  not unstuffed.
* **Bounded memory**: at most ``max_message_size`` octets of a message are buffered; a bigger
  one is read to its end and discarded, then every recipient gets ``552 5.3.4``.  ``SIZE=`` over
  the limit is refused at MAIL with ``552 5.3.4``.  Lines of any length are accepted (only the
  total counts), as real-world mail has lines over RFC 5322's 998 octets.
* **Replies** carry RFC 2034 enhanced status codes; LHLO advertises PIPELINING,
  ENHANCEDSTATUSCODES, 8BITMIME, SMTPUTF8 and SIZE.  HELO/EHLO get ``500``.
* **Logs**: one line per recipient per delivery (queue id, from, to, orig_to, size, peer,
  folder/uid, status and the reply), one per rejected RCPT, Postfix style, on ``haven.lmtp``.

Settings (``[lmtp]`` section; values are strings from the INI file)
-------------------------------------------------------------------
``max_recipients`` (1000): accepted RCPTs per transaction; more get ``452 4.5.3``.
``timeout`` (300): seconds a connection may stay idle between commands.
``over_quota`` (permanent): ``permanent`` answers a recipient over its hard quota with
``552 5.2.2``, ``temporary`` with ``452 4.2.2``.
The message size limit is ``[server] max_message_size`` (``ctx.limits``; default 50 MiB,
0 = none), counted on the message as received; the store counts it again with the trace
headers, so a message within a few hundred octets of the limit may still get ``552 5.3.4``.

Deliberately not done here (yet)
--------------------------------
* Rules (Sieve, junk filing, vacation, quotas) run inside the store's delivery pipeline at
  commit, where every delivery path (LMTP, submission, ``haven deliver``) gets them; this
  gateway only spells their per-recipient outcome: a Sieve reject is ``550 5.7.1`` with the
  script's reason, over the hard quota ``552 5.2.2`` (``over_quota = temporary``: ``452 4.2.2``).
* No de-duplication of recipients (an alias and its target in one transaction): the store
  decides; every accepted RCPT gets its own reply either way.
* No STARTTLS, no AUTH, no XCLIENT/XFORWARD, no DSN, no CHUNKING/BINARYMIME: LMTP is a local
  hop from a trusted MTA; bind it to loopback or a unix socket.
* No reverse DNS in ``Received:`` (it would block or add latency); the MTA's own Received:
  line above ours has it.
* A client that half-closes its socket (``shutdown(SHUT_WR)``) right after pipelining commands
  loses the replies to them: aiosmtpd ends the session at EOF.  MTAs read their replies first.
  A commit already running when that happens still completes (and is logged).

aiosmtpd 1.4.6, for the record: its DATA reader only ends at CRLF "." CRLF (the 1.4.5 fix for
CVE-2024-27305, SMTP smuggling) and discards, rather than buffers, data past
``data_size_limit``; but it answers that (and any line over 1000 octets) with a single reply
whatever the number of recipients, which puts an LMTP client out of step.  Hence our DATA
(:class:`gateways.common.smtpserver.SMTPServerBase`, shared with submission).
"""

from __future__ import annotations

import asyncio
from typing import Callable

from gateways.common.context import GatewayContext
from gateways.lmtp.handler import DeliveryHandler
from gateways.lmtp.server import LMTPServer
from gateways.common.settings import SectionSettings
from gateways.common.smtpserver import quiet_aiosmtpd_log

__all__ = ["check_settings", "make_protocol_factory", "DEFAULT_MAX_MESSAGE_SIZE", "DEFAULT_MAX_RECIPIENTS"]

DEFAULT_MAX_MESSAGE_SIZE = 50 * 1024 * 1024
DEFAULT_MAX_RECIPIENTS = 1000
DEFAULT_TIMEOUT = 300.0


def _settings(ctx: GatewayContext) -> tuple:
    """(max_size, max_recipients, timeout, over_quota) from ``[lmtp]``; a malformed setting raises
    :class:`~gateways.common.settings.SettingError` (a StartupError and a ValueError) naming it."""
    settings = SectionSettings("lmtp", ctx.settings)
    max_size = SectionSettings("server", ctx.limits).number("max_message_size", DEFAULT_MAX_MESSAGE_SIZE, int, 0)
    max_rcpt = settings.number("max_recipients", DEFAULT_MAX_RECIPIENTS, int, 1)
    timeout = settings.duration("timeout", DEFAULT_TIMEOUT, 0)  # 0: the default
    over_quota = settings.choice("over_quota", "permanent", ("permanent", "temporary"))
    return max_size, max_rcpt, timeout, over_quota


def check_settings(ctx: GatewayContext) -> None:
    """Read every ``[lmtp]`` key (start-up checks the whole config before it binds anything)."""
    _settings(ctx)


def make_protocol_factory(ctx: GatewayContext) -> Callable[[], asyncio.Protocol]:
    """A protocol factory for ``loop.create_server`` / ``loop.create_unix_server`` on the
    reactor's asyncio loop."""
    max_size, max_rcpt, timeout, over_quota = _settings(ctx)
    quiet_aiosmtpd_log()  # haven.lmtp's one line per recipient is what an admin wants at INFO
    handler = DeliveryHandler(ctx.store, hostname=ctx.hostname, max_message_size=max_size,
                              max_recipients=max_rcpt, over_quota_temporary=over_quota == "temporary")

    def factory() -> LMTPServer:
        return LMTPServer(handler, hostname=ctx.hostname, max_message_size=max_size,
                          timeout=timeout or DEFAULT_TIMEOUT, loop=asyncio.get_running_loop(),
                          spool_dir=ctx.spool_dir)

    return factory
