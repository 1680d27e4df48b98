"""Client-side helpers for the submission tests: stock smtplib sessions (STARTTLS or implicit
TLS, no certificate verification: the server's certificate is self-signed), DSNs, the queue and
a little waiting.  IMAP read-back and the trace lines are :mod:`tests.gateways.smtp_helpers`."""

from __future__ import annotations

import email
import email.policy
import imaplib
import re
import secrets
import smtplib
import ssl
import time
from typing import Callable, List, Optional, Sequence

from tests.gateways.smtp_helpers import imap_messages

CRLF = b"\r\n"


def client_tls() -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def connect(haven, tls: str = "starttls", timeout: float = 15.0) -> smtplib.SMTP:
    """An EHLO'd session on the STARTTLS port (``tls="starttls"`` or ``"none"``) or on the
    implicit-TLS port (``tls="implicit"``)."""
    if tls == "implicit":
        s = smtplib.SMTP_SSL(*haven.submissions, timeout=timeout, context=client_tls())
    else:
        s = smtplib.SMTP(*haven.submission, timeout=timeout)
    s.ehlo("client.example")
    if tls == "starttls":
        s.starttls(context=client_tls())
        s.ehlo("client.example")
    return s


def message(subject: str = "hello", sender: str = "someone@example.test", to: str = "x@example.test",
            body: bytes = b"Hello,\r\n\r\njust a test.\r\n") -> bytes:
    return (f"From: <{sender}>\r\nTo: <{to}>\r\nSubject: {subject}\r\n"
            f"Date: Mon, 06 Jan 2025 10:00:00 +0100\r\n"
            f"Message-ID: <{secrets.token_hex(8)}@client.example>\r\nMIME-Version: 1.0\r\n"
            f"Content-Type: text/plain; charset=utf-8\r\n\r\n").encode() + body


def submit(haven, user: str, password: str, mail_from: str, recipients: Sequence[str], raw: bytes,
           tls: str = "starttls") -> dict:
    """Log in and send one message with smtplib; returns smtplib's refused-recipients dict."""
    with connect(haven, tls) as s:
        s.login(user, password)
        return s.sendmail(mail_from, list(recipients), raw)


def imap_bodystructure(haven, address: str, password: str, uid: int) -> str:
    conn = imaplib.IMAP4(*haven.imap, timeout=15)
    try:
        conn.login(address, password)
        conn.select("INBOX", readonly=True)
        typ, data = conn.uid("FETCH", str(uid), "(BODYSTRUCTURE)")
        assert typ == "OK", data
        return b" ".join(d if isinstance(d, bytes) else b" ".join(d) for d in data).decode()
    finally:
        conn.logout()


def wait_until(check: Callable[[], object], timeout: float = 15.0, what: str = "condition",
               interval: float = 0.05):
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def wait_for_mail(haven, address: str, password: str, count: int = 1, timeout: float = 15.0) -> List[bytes]:
    return wait_until(lambda: (lambda m: m if len(m) >= count else None)(imap_messages(haven, address, password)),
                      timeout, f"{count} message(s) in the INBOX of {address}", interval=0.2)


def wait_for_log(haven, pattern: str, timeout: float = 15.0, count: int = 1) -> List[str]:
    regex = re.compile(pattern)

    def found():
        lines = [line for line in haven.log().splitlines() if regex.search(line)]
        return lines if len(lines) >= count else None
    return wait_until(found, timeout, f"log line /{pattern}/", interval=0.05)


def parse(raw: bytes) -> email.message.Message:
    return email.message_from_bytes(raw, policy=email.policy.compat32)


def dsn_fields(dsn: email.message.Message) -> tuple:
    """(per-message fields, [per-recipient fields]) of a multipart/report DSN."""
    assert dsn.get_content_type() == "multipart/report", dsn.get_content_type()
    assert dsn.get_param("report-type") == "delivery-status"
    parts = dsn.get_payload()
    status = next(p for p in parts if p.get_content_type() in ("message/delivery-status",
                                                               "message/global-delivery-status"))
    blocks = status.get_payload()  # the email package parses the field groups into messages
    return dict(blocks[0].items()), [dict(b.items()) for b in blocks[1:]]


def queue_ids(cli_output: str, address: Optional[str] = None) -> List[int]:
    """The message ids of ``haven queue list`` output (of messages with ``address``)."""
    ids, current = [], None
    for line in cli_output.splitlines():
        if line and line[0].isdigit():
            current = int(line.split("\t", 1)[0])
        elif current is not None and (address is None or f"<{address}>" in line):
            if current not in ids:
                ids.append(current)
    return ids
