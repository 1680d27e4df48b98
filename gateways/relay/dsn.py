"""Delivery status notifications (RFC 3464) for mail the spooler gave up on: pure, bytes out.

The shape is what MUAs recognise as a bounce (Thunderbird, Apple Mail, Outlook):
``multipart/report; report-type=delivery-status`` (RFC 6522) with a human-readable text part,
a ``message/delivery-status`` part (per-message and per-recipient fields) and the original
header section as ``text/rfc822-headers``; never the original body (a bounce must not become a
way to send content to a third party, and the sender still has it in Sent).  When an address
or the original header section is not ASCII (SMTPUTF8 mail) the RFC 6533 ``message/global-*``
types are used instead.

``From: MAILER-DAEMON@<hostname>``, ``Auto-Submitted: auto-replied`` (RFC 3834) and the null
reverse-path: nobody answers or bounces a bounce.
"""

from __future__ import annotations

import email.utils
import re
import secrets
import time
from dataclasses import dataclass
from typing import Optional, Sequence

from formats.headers import header_section, is_ascii

_REPLY = re.compile(r"^([245])\d\d[ -]")
_STATUS = re.compile(r"^([245])\.(\d{1,3})\.(\d{1,3})(?: |$)")


@dataclass(frozen=True)
class FailedRecipient:
    address: str
    action: str  # "failed" (refused for good) or "expired" (max_queue_age reached)
    last_error: Optional[str]  # as recorded in the queue: "550 5.1.1 ..." or "4.4.1 connect ..."
    last_attempt: Optional[float] = None
    remote_mta: Optional[str] = None  # the relay that answered, when the error is its reply


def status_of(last_error: Optional[str], expired: bool) -> str:
    """The RFC 3463 status to report: the reply's enhanced code (or ``<class>.0.0``), the code
    a recorded local error starts with, or 4.4.7 (delivery time expired) / 5.0.0."""
    text = (last_error or "").strip()
    if _REPLY.match(text):
        m = _STATUS.match(text[4:])
        return f"{m.group(1)}.{m.group(2)}.{m.group(3)}" if m and m.group(1) == text[0] else f"{text[0]}.0.0"
    m = _STATUS.match(text)
    if m:
        return f"{m.group(1)}.{m.group(2)}.{m.group(3)}"
    return "4.4.7" if expired else "5.0.0"


def diagnostic_code(last_error: Optional[str]) -> Optional[str]:
    """``smtp; <reply>`` for a relay's reply, ``x-haven; <text>`` for a local error (RFC 3464
    §2.3.6: the diagnostic type names where the text came from)."""
    text = " ".join((last_error or "").split())[:900]
    if not text:
        return None
    if _REPLY.match(text):
        return f"smtp; {text}"
    m = _STATUS.match(text)
    return f"x-haven; {text[m.end():].strip() if m else text}"


def _date(when: Optional[float]) -> str:
    return email.utils.formatdate(when if when is not None else time.time(), localtime=True)


def _human_line(r: FailedRecipient, max_age_text: str) -> str:
    error = " ".join((r.last_error or "no attempt was made").split())[:900]
    if r.action == "expired":
        return f"<{r.address}>: gave up after {max_age_text} in the queue; the last attempt said: {error}"
    return f"<{r.address}>: {error}"


def build_dsn(*, hostname: str, mail_from: str, queue_id: int, arrival: float,
              recipients: Sequence[FailedRecipient], original: bytes, max_age_text: str = "the maximum time",
              now: Optional[float] = None) -> bytes:
    """The complete DSN message (CRLF lines), addressed to ``mail_from``."""
    now = time.time() if now is None else now
    headers = header_section(original)
    if headers and not headers.endswith(b"\r\n"):
        headers += b"\r\n"
    utf8 = not (headers.isascii() and is_ascii(mail_from) and all(is_ascii(r.address) for r in recipients))
    boundary = "=_haven_dsn_" + secrets.token_hex(8)
    host = hostname or "localhost"

    human = [
        f"This is the mail system at {host} (Haven).",
        "",
        "Your message could not be delivered to one or more recipients.",
        "The reasons are below; the headers of your message are attached.",
        "",
        *(_human_line(r, max_age_text) for r in recipients),
        "",
    ]
    per_message = [f"Reporting-MTA: dns; {host}", f"X-Haven-Queue-ID: {queue_id}",
                   f"Arrival-Date: {_date(arrival)}"]
    per_recipient = []
    for r in recipients:
        address_type = "utf-8" if utf8 and not is_ascii(r.address) else "rfc822"
        fields = [f"Final-Recipient: {address_type}; {r.address}",
                  "Action: failed",  # RFC 3464 §2.3.3: expired is a failure too
                  f"Status: {status_of(r.last_error, r.action == 'expired')}"]
        diagnostic = diagnostic_code(r.last_error)
        if r.remote_mta and diagnostic and diagnostic.startswith("smtp;"):
            fields.append(f"Remote-MTA: dns; {r.remote_mta}")
        if diagnostic:
            fields.append(f"Diagnostic-Code: {diagnostic}")
        if r.last_attempt:
            fields.append(f"Last-Attempt-Date: {_date(r.last_attempt)}")
        per_recipient.append("\r\n".join(fields) + "\r\n")

    status_type = "message/global-delivery-status" if utf8 else "message/delivery-status"
    headers_type = "message/global-headers" if utf8 else "text/rfc822-headers"
    top = [
        f"From: Mail Delivery System <MAILER-DAEMON@{host}>",
        f"To: <{mail_from}>",
        "Subject: Undelivered Mail Returned to Sender",
        f"Date: {_date(now)}",
        f"Message-ID: <dsn-{queue_id}-{secrets.token_hex(6)}@{host}>",
        "Auto-Submitted: auto-replied",
        "MIME-Version: 1.0",
        f'Content-Type: multipart/report; report-type=delivery-status; boundary="{boundary}"',
        "",
        "This is a MIME-formatted delivery status notification.",
        "",
    ]
    parts = [
        "\r\n".join(top),
        f"--{boundary}\r\n"
        "Content-Description: Notification\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n"
        "Content-Transfer-Encoding: 8bit\r\n\r\n" + "\r\n".join(human),
        f"--{boundary}\r\n"
        "Content-Description: Delivery report\r\n"
        f"Content-Type: {status_type}\r\n\r\n" + "\r\n".join(per_message) + "\r\n\r\n" + "\r\n".join(per_recipient),
        f"--{boundary}\r\n"
        "Content-Description: Undelivered message headers\r\n"
        f"Content-Type: {headers_type}\r\n\r\n",
    ]
    text = "\r\n".join(parts).encode("utf-8", "surrogateescape")
    return b"Return-Path: <>\r\n" + text + headers + f"\r\n--{boundary}--\r\n".encode("ascii")
