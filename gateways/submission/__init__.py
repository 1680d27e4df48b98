"""SMTP submission (RFC 6409): how Thunderbird, phones and scripts send mail through Haven.

aiosmtpd's protocol engine on the reactor's asyncio loop: the service calls
``loop.create_server(make_protocol_factory(ctx), host, port)`` for ``[submission] listen``
(port 587 style, STARTTLS, RFC 3207) and ``make_protocol_factory(ctx, implicit_tls=True)`` for
``tls_listen`` (port 465 style, RFC 8314; the loop wraps it in TLS).  ``server.py`` speaks the protocol,
``handler.py`` maps a transaction onto the store's :meth:`~store.interfaces.Store.begin_submission`
(what sending *means*, sender, quota, local copies, the outbound queue, is the store's:
store/submission.py), ``wire.py`` holds the pure byte-level pieces of its own, ``replies.py``
every reply the handler gives, store errors included, ``settings.py`` the ``[submission]``
keys.  Relaying the queue to the smarthost, and the bounces, are :mod:`gateways.relay`'s; the
two packages never import each other.  What submission shares with LMTP is in two neutral modules (gateways
never import each other): :mod:`gateways.common.smtpwire`, the pure byte-level pieces (the DATA
decoder, ``dot_stuff``, trace headers, enhanced status codes, the RCPT reply table), and
:mod:`gateways.common.smtpserver`, the aiosmtpd engine both protocol engines subclass.

Guarantees
----------
* **No relaying without authentication.**  MAIL/RCPT/DATA before AUTH get ``530 5.7.0``.
  AUTH PLAIN/LOGIN is offered and accepted only over TLS (STARTTLS or implicit), or in plain
  text when ``allow_plaintext_auth`` allows it (default ``loopback``: from 127.0.0.0/8 and
  ::1 only); otherwise ``538 5.7.11``.  Credentials are checked by the one cred portal (same
  checker, hashing pool, throttling and failure delay as every gateway); any failure is
  ``535 5.7.8``.
* **The sender is the user's.**  MAIL FROM must resolve (aliases, ``+detail``) to the
  logged-in account, else ``553 5.7.1``; the null sender ``<>`` is refused the same way.
* **Over the soft quota, no sending.**  An account whose usage has reached its soft limit
  (``haven user quota --soft``, ``[quota] soft``) gets ``552 5.2.2`` at MAIL FROM until some of
  its mail is deleted (expunged); the warn and hard limits do not stop sending.  The quota is
  read once per transaction; a store failure there is ``451 4.3.0``.
* **Local recipients** (the store resolves them) are delivered through the store's delivery
  pipeline, exactly as LMTP does (one Delivery, Return-Path and our Received: line added).
  Unknown users of a local domain get ``550 5.1.1``.  **Remote recipients** go to the outbound
  queue, only when ``[submission] relay`` is set; else ``550 5.7.1`` (and a log line telling
  the admin what to set).
* **250 after DATA means durable**: the local copies committed and the remote part queued
  (blob fsynced, rows committed).  The remote part is queued first, held, and withdrawn again
  if the local commit fails, so a ``451`` leaves nothing behind (store/submission.py explains
  the order and its corner cases).  Any store failure is ``451 4.3.0``, never a 5xx.  A local recipient
  whose account vanished between RCPT and DATA does not fail the others: the message is
  accepted and the sender gets a DSN for that one.
* **The message is what was sent**, plus one ``Received:`` line (``with ESMTPSA``/``ESMTPA``,
  ``UTF8SMTPSA``/``UTF8SMTPA`` per RFC 3848 / RFC 6531; EHLO name, peer IP, queue id, date)
  and, only when the message lacks them, ``Date:``/``Message-ID:`` (RFC 6409 §8.2/§8.3).  The
  body is never changed.  The DATA stream is decoded as by the LMTP gateway (the same
  :class:`gateways.common.smtpwire.DataDecoder`): only CRLF "." CRLF ends it (no SMTP smuggling),
  bare LF is stored as CRLF, lines of any length, memory bounded by ``[server]
  max_message_size`` (``552 5.3.4``, also at MAIL for ``SIZE=``).
* **No copy in Sent**: MUAs (Thunderbird, Apple Mail, K-9) save their own copy with IMAP
  APPEND; a server-side copy would be a duplicate.
* **Logs**: one line per accepted message and one per recipient disposition (delivered,
  queued, bounced; and from the relay sent/deferred/bounced/expired) on ``haven.submission``.

Deliberately not done here (yet)
--------------------------------
* No DSN extension (RFC 3461 NOTIFY/RET/ENVID), no CHUNKING/BINARYMIME, no BURL, no
  XCLIENT; no per-user rate limits; no DKIM signing (the smarthost's job here).
* No Sieve at submission; rules run in the delivery pipeline for the local copies.
* A domain is local when the store has an account or alias in it (``is_local_domain``): an
  unknown user there is a 550, anything else unknown is remote.  There is no list of extra
  local domains (a domain with no account yet is remote).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Callable

from gateways.common.context import GatewayContext
from gateways.common.smtpserver import quiet_aiosmtpd_log
from gateways.submission.handler import SubmissionHandler
from gateways.submission.server import SubmissionServer
from gateways.submission.settings import parse_settings

__all__ = ["check_settings", "make_protocol_factory"]

log = logging.getLogger("haven.submission")


def check_settings(ctx: GatewayContext) -> None:
    """Read every ``[submission]`` key, the relay's included (start-up checks the whole config
    before it binds anything)."""
    parse_settings(ctx.settings, ctx.limits)


def make_protocol_factory(ctx: GatewayContext, implicit_tls: bool = False) -> Callable[[], asyncio.Protocol]:
    """A protocol factory for ``loop.create_server`` on the reactor's asyncio loop; with
    ``implicit_tls`` the caller wraps the socket in TLS (``ctx.ssl_context``) and STARTTLS is not
    offered.  Raises StartupError (naming the key) for a malformed setting."""
    settings = parse_settings(ctx.settings, ctx.limits)
    quiet_aiosmtpd_log()  # haven.submission's own lines are what an admin wants at INFO
    if settings.relay is None and (not implicit_tls or not ctx.settings.get("listen")):
        # once per process: for the STARTTLS listener, or for tls_listen when it is the only one
        log.info("[submission] relay is empty: mail to remote addresses is refused (550 5.7.1)")
    handler = SubmissionHandler(ctx.store, ctx.portal, hostname=ctx.hostname, settings=settings)

    def factory() -> SubmissionServer:
        return SubmissionServer(handler, hostname=ctx.hostname, settings=settings, tls_context=ctx.ssl_context,
                                implicit_tls=implicit_tls, loop=asyncio.get_running_loop(),
                                spool_dir=ctx.spool_dir)

    return factory
