"""A small asyncio SMTP client: the spooler's way to hand mail to the smarthost.

Why not ``twisted.mail.smtp.ESMTPSender``: it sends one message per connection through a
factory, reports recipients through callbacks that are awkward to map to per-recipient queue
states, and would need its own TLS setup (Twisted context factories) next to the stdlib one
used everywhere else in the SMTP gateways.  ``smtplib`` blocks.  What the spooler needs
is small (RFC 5321 client, RFC 3207 STARTTLS, RFC 4954 AUTH PLAIN/LOGIN, RFC 2920 pipelining,
RFC 1870 SIZE) and reads best as straight-line asyncio code on the shared loop.

Contract
--------
* :meth:`SMTPClient.connect` opens the session: greeting, EHLO (HELO if EHLO is refused),
  STARTTLS when the relay offers it and ``relay_tls = starttls`` (or implicit TLS with
  ``relay_tls = tls``), EHLO again, AUTH when ``relay_user`` is set.
* :meth:`SMTPClient.send` runs one MAIL/RCPT/DATA transaction and returns a :class:`Reply`
  per recipient: 2xx sent, 4xx try again, 5xx failed.  Several transactions may follow on one
  connection.
* Anything that concerns the whole session (refused connection, TLS failure, timeout, lost
  connection, protocol garbage, refused AUTH) raises :class:`RelayError`; the client is then
  closed and every recipient of the message is to be retried.
* ``relay_password`` is never sent in clear to a non-loopback relay unless the admin set
  ``relay_tls = none``.
* Every read has the ``relay_timeout`` deadline (RFC 5321 §4.5.3.2 suggests 2 to 10 minutes).
"""

from __future__ import annotations

import asyncio
import base64
import ipaddress
import logging
import ssl
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence

from formats.headers import is_ascii
from gateways.common.relayconf import RelaySettings
from gateways.common.smtpwire import dot_stuff, enhanced_code

log = logging.getLogger("haven.submission.client")


@dataclass(frozen=True)
class Reply:
    code: int
    lines: List[str] = field(default_factory=list)

    @property
    def text(self) -> str:
        return " ".join(self.lines)

    @property
    def status(self) -> str:
        """The RFC 3463 status, from the text or derived from the code."""
        return enhanced_code(self.code, self.lines[0] if self.lines else "")

    def __str__(self) -> str:
        return f"{self.code} {self.text}".strip()


class RelayError(Exception):
    """A session-level failure: every recipient of the message is to be retried.  ``status``
    is the RFC 3463 code a DSN reports if the message expires with this as its last error."""

    def __init__(self, message: str, status: str = "4.4.2"):
        super().__init__(message)
        self.status = status


def _is_loopback_host(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def client_tls_context(verify: bool) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    if not verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


class SMTPClient:
    def __init__(self, relay: RelaySettings, helo: str):
        self.relay = relay
        self.helo = helo
        self.extensions: Dict[str, str] = {}
        self.tls = False
        self._reader: Optional[asyncio.StreamReader] = None
        self._writer: Optional[asyncio.StreamWriter] = None

    @property
    def connected(self) -> bool:
        return self._writer is not None and not self._writer.is_closing()

    # -- session ---------------------------------------------------------------------------
    async def connect(self) -> None:
        relay = self.relay
        context = client_tls_context(relay.verify) if relay.tls != "none" else None
        try:
            self._reader, self._writer = await asyncio.wait_for(asyncio.open_connection(
                relay.host, relay.port, ssl=context if relay.tls == "tls" else None,
                server_hostname=relay.host if relay.tls == "tls" else None), relay.timeout)
        except asyncio.TimeoutError:
            raise RelayError(f"connect to {relay}: timed out after {relay.timeout:g}s", "4.4.1") from None
        except ssl.SSLError as e:
            raise RelayError(f"TLS with {relay} failed: {e.reason or e}", "4.7.5") from None
        except OSError as e:
            raise RelayError(f"connect to {relay}: {e.strerror or e}", "4.4.1") from None
        self.tls = relay.tls == "tls"
        try:
            greeting = await self._read_reply()
            if greeting.code != 220:
                raise RelayError(f"{relay} greeted with: {greeting}", greeting.status if greeting.code >= 400
                                 else "4.4.2")
            await self._hello()
            if relay.tls == "starttls" and "STARTTLS" in self.extensions and not self.tls:
                await self._starttls(context)
            if relay.user:
                await self._authenticate()
        except BaseException:
            await self.close()
            raise

    async def _hello(self) -> None:
        reply = await self.command(f"EHLO {self.helo}")
        self.extensions = {}
        if reply.code == 250:
            for line in reply.lines[1:]:
                keyword, _, params = line.partition(" ")
                self.extensions[keyword.upper()] = params
            return
        reply = await self.command(f"HELO {self.helo}")  # RFC 5321 §3.2: an old server
        if reply.code != 250:
            raise RelayError(f"{self.relay} refused HELO: {reply}", "4.4.2")

    async def _starttls(self, context: ssl.SSLContext) -> None:
        reply = await self.command("STARTTLS")
        if reply.code != 220:
            raise RelayError(f"{self.relay} refused STARTTLS: {reply}", "4.7.5")
        try:
            await asyncio.wait_for(self._writer.start_tls(context, server_hostname=self.relay.host),
                                   self.relay.timeout)
        except asyncio.TimeoutError:
            raise RelayError(f"TLS handshake with {self.relay} timed out", "4.7.5") from None
        except (ssl.SSLError, OSError) as e:
            raise RelayError(f"TLS handshake with {self.relay} failed: "
                             f"{getattr(e, 'verify_message', None) or getattr(e, 'reason', None) or e}",
                             "4.7.5") from None
        self.tls = True
        await self._hello()  # RFC 3207 §4.2: forget what was learnt before TLS

    async def _authenticate(self) -> None:
        relay = self.relay
        if not self.tls and relay.tls != "none" and not _is_loopback_host(relay.host):
            raise RelayError(f"{relay} offers no STARTTLS: not sending relay_password in clear "
                             f"(set [submission] relay_tls = none to allow it)", "4.7.5")
        mechanisms = self.extensions.get("AUTH", "").upper().split()
        user, password = relay.user.encode("utf-8"), relay.password.encode("utf-8")
        if "PLAIN" in mechanisms:
            token = base64.b64encode(b"\0" + user + b"\0" + password).decode("ascii")
            reply = await self.command(f"AUTH PLAIN {token}", secret=True)
        elif "LOGIN" in mechanisms:
            reply = await self.command("AUTH LOGIN")
            if reply.code == 334:
                reply = await self.command(base64.b64encode(user).decode("ascii"), secret=True)
            if reply.code == 334:
                reply = await self.command(base64.b64encode(password).decode("ascii"), secret=True)
        else:
            raise RelayError(f"{relay} offers no AUTH PLAIN or LOGIN (relay_user is set)", "4.7.0")
        if reply.code != 235:
            raise RelayError(f"{relay} refused relay_user {relay.user}: {reply}", "4.7.0")

    async def quit(self) -> None:
        if self.connected:
            try:
                await self.command("QUIT")
            except (RelayError, OSError):
                pass
        await self.close()

    async def close(self) -> None:
        writer, self._writer, self._reader = self._writer, None, None
        if writer is not None:
            writer.close()
            try:
                await asyncio.wait_for(writer.wait_closed(), 5)
            except (OSError, asyncio.TimeoutError, ssl.SSLError):
                pass

    # -- one transaction -------------------------------------------------------------------
    async def send(self, mail_from: str, recipients: Sequence[str], message: bytes) -> Dict[str, Reply]:
        """One MAIL/RCPT/DATA transaction; a :class:`Reply` per recipient (in ``recipients``
        order).  Raises RelayError (and closes) when the session broke."""
        ext = self.extensions
        limit = ext.get("SIZE", "").strip()
        if limit.isdigit() and int(limit) and len(message) > int(limit):
            refusal = Reply(552, [f"5.3.4 Message size {len(message)} exceeds the relay's limit {limit}"])
            return {r: refusal for r in recipients}
        params = []
        if "SIZE" in ext:
            params.append(f"SIZE={len(message)}")
        if "8BITMIME" in ext and not message.isascii():
            params.append("BODY=8BITMIME")  # RFC 6152
        if not (is_ascii(mail_from) and all(is_ascii(r) for r in recipients)):
            if "SMTPUTF8" not in ext:
                refusal = Reply(553, ["5.6.7 The relay does not support SMTPUTF8 (non-ASCII address)"])
                return {r: refusal for r in recipients}
            params.append("SMTPUTF8")
        mail = f"MAIL FROM:<{mail_from}>" + "".join(" " + p for p in params)
        rcpts = [f"RCPT TO:<{r}>" for r in recipients]
        if "PIPELINING" in ext:  # RFC 2920: MAIL and every RCPT in one write, then the replies
            self._write_lines([mail, *rcpts])
            await self._drain()
            mail_reply = await self._read_reply()
            rcpt_replies = [await self._read_reply() for _ in rcpts]
        else:
            mail_reply = await self.command(mail)
            rcpt_replies = [await self.command(c) for c in rcpts] if mail_reply.code == 250 else []
        if mail_reply.code != 250:
            await self._reset()
            return {r: mail_reply for r in recipients}
        results = dict(zip(recipients, rcpt_replies))
        accepted = [r for r in recipients if results[r].code in (250, 251)]
        if not accepted:
            await self._reset()
            return results
        reply = await self.command("DATA")
        if reply.code != 354:
            await self._reset()
            results.update((r, reply) for r in accepted)
            return results
        try:
            self._writer.write(dot_stuff(message))
        except (OSError, RuntimeError) as e:
            await self.close()
            raise RelayError(f"lost the connection to {self.relay} during DATA: {e}") from None
        await self._drain()
        reply = await self._read_reply()
        results.update((r, reply) for r in accepted)
        return results

    async def _reset(self) -> None:
        reply = await self.command("RSET")
        if reply.code != 250:
            await self.close()
            raise RelayError(f"{self.relay} refused RSET: {reply}")

    # -- framing ---------------------------------------------------------------------------
    def _write_lines(self, lines: Sequence[str]) -> None:
        if not self.connected:
            raise RelayError(f"not connected to {self.relay}")
        self._writer.write(b"".join(line.encode("utf-8", "surrogateescape") + b"\r\n" for line in lines))

    async def _drain(self) -> None:
        try:
            await asyncio.wait_for(self._writer.drain(), self.relay.timeout)
        except asyncio.TimeoutError:
            await self.close()
            raise RelayError(f"{self.relay} stopped reading (timeout {self.relay.timeout:g}s)") from None
        except (OSError, RuntimeError, AttributeError) as e:
            await self.close()
            raise RelayError(f"lost the connection to {self.relay}: {e}") from None

    async def command(self, line: str, secret: bool = False) -> Reply:
        self._write_lines([line])
        await self._drain()
        reply = await self._read_reply()
        log.debug("%s >> %s << %s", self.relay, "(secret)" if secret else line, reply)
        return reply

    async def _read_reply(self) -> Reply:
        lines: List[str] = []
        code = None
        while True:
            try:
                raw = await asyncio.wait_for(self._reader.readline(), self.relay.timeout)
            except asyncio.TimeoutError:
                await self.close()
                raise RelayError(f"{self.relay} did not answer within {self.relay.timeout:g}s") from None
            except (OSError, ValueError, asyncio.LimitOverrunError, AttributeError, ssl.SSLError) as e:
                await self.close()
                raise RelayError(f"lost the connection to {self.relay}: {e}") from None
            if not raw.endswith(b"\n"):
                await self.close()
                raise RelayError(f"{self.relay} closed the connection"
                                 + (f" after {' '.join(lines)!r}" if lines else ""))
            line = raw.rstrip(b"\r\n").decode("utf-8", "replace")
            if len(line) < 3 or not line[:3].isdigit() or (len(line) > 3 and line[3] not in " -") \
                    or (code is not None and int(line[:3]) != code):
                await self.close()
                raise RelayError(f"{self.relay} sent a malformed reply: {line[:200]!r}")
            code = int(line[:3])
            lines.append(line[4:])
            if len(line) == 3 or line[3] == " ":
                return Reply(code, lines)
