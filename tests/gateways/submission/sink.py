"""A test smarthost: an aiosmtpd server on loopback in a background thread (its threaded
Controller is fine in tests; Haven itself never uses it).

It records every transaction (envelope and the exact DATA bytes after dot-unstuffing), answers
RCPT with a reply chosen per address (``sink.replies[address] = "550 5.1.1 ..."``) and can be
stopped and started again on the same port (the relay "down then up").  Optionally it offers
STARTTLS and requires AUTH (for the relay client's own tests).
"""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Dict, List, Optional

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword


@dataclass
class Received:
    mail_from: str
    rcpt_tos: List[str]
    data: bytes
    mail_options: List[str] = field(default_factory=list)
    tls: bool = False
    login: Optional[str] = None


class _Handler:
    def __init__(self, sink: "SMTPSink"):
        self.sink = sink

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        reply = self.sink.replies.get(address) or self.sink.default_rcpt_reply
        if reply:
            return reply
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server, session, envelope):
        if self.sink.data_reply:
            return self.sink.data_reply
        login = session.auth_data.login.decode() if session.authenticated and session.auth_data else None
        with self.sink.lock:
            self.sink.received.append(Received(envelope.mail_from, list(envelope.rcpt_tos),
                                               bytes(envelope.original_content), list(envelope.mail_options),
                                               session.ssl is not None, login))
        return "250 2.0.0 OK: stored by sink"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class SMTPSink:
    def __init__(self, port: Optional[int] = None, tls_context=None, credentials: Optional[Dict[str, str]] = None):
        self.port = port or free_port()
        self.tls_context = tls_context
        self.credentials = credentials
        self.received: List[Received] = []
        self.replies: Dict[str, str] = {}
        self.default_rcpt_reply: Optional[str] = None
        self.data_reply: Optional[str] = None
        self.lock = threading.Lock()
        self._controller: Optional[Controller] = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _authenticate(self, server, session, envelope, mechanism, auth_data):
        ok = (isinstance(auth_data, LoginPassword) and self.credentials is not None
              and self.credentials.get(auth_data.login.decode()) == auth_data.password.decode())
        return AuthResult(success=ok, handled=False, auth_data=auth_data if ok else None)

    def start(self) -> "SMTPSink":
        kwargs = {}
        if self.tls_context is not None:
            kwargs["tls_context"] = self.tls_context
        if self.credentials is not None:
            kwargs.update(authenticator=self._authenticate, auth_required=True,
                          auth_require_tls=self.tls_context is not None)
        self._controller = Controller(_Handler(self), hostname="127.0.0.1", port=self.port, **kwargs)
        self._controller.start()
        return self

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    @property
    def running(self) -> bool:
        return self._controller is not None

    def for_rcpt(self, address: str) -> List[Received]:
        with self.lock:
            return [r for r in self.received if address in r.rcpt_tos]

    def wait_for(self, address: str, timeout: float = 15.0, count: int = 1) -> List[Received]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            got = self.for_rcpt(address)
            if len(got) >= count:
                return got
            time.sleep(0.05)
        raise AssertionError(f"the sink got no message for {address} within {timeout}s")
