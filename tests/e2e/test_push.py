"""Push across processes and nodes: IDLE hears mail however and wherever it was delivered."""

from __future__ import annotations

import socket
import time


MESSAGE = b"From: a@example.org\r\nSubject: push\r\n\r\nwake up\r\n"


class Idler:
    """A raw IMAP connection sitting in IDLE on INBOX."""

    def __init__(self, address, user, password):
        self.sock = socket.create_connection(address, timeout=10)
        self.buf = b""
        self.read_until(b"\r\n")
        self.send(f'a LOGIN "{user}" "{password}"')
        self.read_until(b"a OK")
        self.send("b SELECT INBOX")
        self.read_until(b"b OK")
        self.send("c IDLE")
        self.read_until(b"+ ")

    def send(self, line: str) -> None:
        self.sock.sendall(line.encode() + b"\r\n")

    def read_until(self, marker: bytes, timeout: float = 10) -> bytes:
        self.sock.settimeout(timeout)
        while marker not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError(self.buf)
            self.buf += chunk
        head, _, self.buf = self.buf.partition(marker)
        return head + marker

    def wait_exists(self, timeout: float) -> float:
        start = time.monotonic()
        self.read_until(b" EXISTS\r\n", timeout)
        return time.monotonic() - start

    def close(self) -> None:
        try:
            self.send("DONE")
            self.read_until(b"c OK", 5)
            self.send("z LOGOUT")
        finally:
            self.sock.close()


def test_haven_deliver_from_another_process_wakes_idle(haven):
    user, password = haven.new_user("pipe")
    idler = Idler(haven.imap, user, password)
    try:
        start = time.monotonic()
        result = haven.cli("deliver", user, input=MESSAGE)
        assert result.returncode == 0, result.stderr
        idler.wait_exists(timeout=5)
        # the poller runs every 0.2 s in the tests: no more than a few intervals after the CLI ended
        assert time.monotonic() - start < 5
    finally:
        idler.close()


def test_lmtp_delivery_wakes_idle_at_once(haven):
    user, password = haven.new_user("idle")
    idler = Idler(haven.imap, user, password)
    try:
        latencies = []
        for _ in range(3):
            start = time.monotonic()
            haven.deliver(user, MESSAGE)
            idler.wait_exists(timeout=5)
            latencies.append(time.monotonic() - start)
        # in-process push: the EXISTS follows the commit directly, no polling involved
        assert min(latencies) < 0.5, latencies
    finally:
        idler.close()


def test_delivery_on_one_node_wakes_idle_on_another(haven_factory):
    """Two nodes on one MariaDB with the default poll_interval: a delivery on A reaches an IDLE
    session on B within a second, every time (the poll's period, 0.5 s, plus one query)."""
    node_a = haven_factory("mariadb", **{"store.poll_interval": "0.5"})
    node_b = haven_factory("mariadb", url=node_a.url, **{"store.poll_interval": "0.5"})
    user, password = node_a.new_user("cluster")
    idler = Idler(node_b.imap, user, password)
    try:
        latencies = []
        for _ in range(4):
            start = time.monotonic()  # from before the LMTP transaction to the EXISTS on node B
            node_a.deliver(user, MESSAGE)
            idler.wait_exists(timeout=5)
            latencies.append(time.monotonic() - start)
        assert max(latencies) < 1.0, latencies
    finally:
        idler.close()
