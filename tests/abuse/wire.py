"""Raw sockets for the abuse tests: connect from a chosen loopback address, send a PROXY header
(v1 text or v2 binary) first, then speak the protocol (through TLS on an implicit-TLS port)."""

from __future__ import annotations

import ipaddress
import socket
import ssl
import struct
import time

from tests.socketclient import SocketClient

#: the trusted proxy's address in these tests ([server] trusted_proxies); 127.0.0.1 is not one
PROXY_IP = "127.0.0.2"
V2_PREFIX = b"\r\n\r\n\x00\r\nQUIT\n"


def v1(client: str, port: int = 40000, server_port: int = 143) -> bytes:
    family = "TCP6" if ":" in client else "TCP4"
    dest = "::1" if family == "TCP6" else "127.0.0.1"
    return f"PROXY {family} {client} {dest} {port} {server_port}\r\n".encode()


def v2(client: str, port: int = 40000, server_port: int = 143, tls: bool = False) -> bytes:
    """A v2 PROXY header for a TCP4 client; with ``tls`` a PP2_TYPE_SSL TLV saying the client
    connected to the proxy over TLS."""
    body = ipaddress.ip_address(client).packed + ipaddress.ip_address("127.0.0.1").packed
    body += struct.pack("!HH", port, server_port)
    if tls:
        ssl_tlv = bytes([0x01]) + struct.pack("!I", 0)  # PP2_CLIENT_SSL, verified
        body += bytes([0x20]) + struct.pack("!H", len(ssl_tlv)) + ssl_tlv
    return V2_PREFIX + bytes([0x21, 0x11]) + struct.pack("!H", len(body)) + body


def _tls(sock: socket.socket) -> ssl.SSLSocket:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context.wrap_socket(sock, server_hostname="haven.test")


class Conn(SocketClient):
    """One client connection; ``header`` is sent before anything else (before TLS too)."""

    def __init__(self, address, header: bytes = b"", source: str = PROXY_IP, tls: bool = False,
                 split: bool = False):
        self.reset = False  # the server dropped us before we were done sending the header
        self.buffer = b""
        try:
            # the timeout makes connect() poll and then read SO_ERROR: a server that resets at
            # once can already be seen there
            self.sock = socket.create_connection(address, timeout=10, source_address=(source, 0))
        except ConnectionResetError:
            self.sock, self.reset = socket.socket(), True
            return
        try:
            if header and split:  # the header in two pieces: the server must wait for the rest
                self.sock.sendall(header[:7])
                time.sleep(0.05)
                self.sock.sendall(header[7:])
            elif header:
                self.sock.sendall(header)
        except (ConnectionResetError, BrokenPipeError):
            self.reset = True
        if tls:
            self.sock = _tls(self.sock)
        self.buffer = b""

    def read_until(self, marker: bytes, timeout: float = 10) -> bytes:
        """What arrived up to and including ``marker`` (less if the server closed first)."""
        self.sock.settimeout(timeout)
        while marker not in self.buffer:
            try:
                chunk = self.sock.recv(65536)
            except (ConnectionResetError, ssl.SSLError):
                chunk = b""
            if not chunk:
                got, self.buffer = self.buffer, b""
                return got
            self.buffer += chunk
        end = self.buffer.index(marker) + len(marker)
        got, self.buffer = self.buffer[:end], self.buffer[end:]
        return got

    def line(self) -> bytes:
        return self.read_until(b"\r\n")

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def closed_by_server(self, timeout: float = 10) -> bool:
        """True once the server closed (whatever it sent before is read and dropped)."""
        if self.reset:
            return True
        self.sock.settimeout(timeout)
        try:
            while True:
                chunk = self.sock.recv(65536)
                if not chunk:
                    return True
                self.buffer += chunk
        except (ConnectionResetError, ssl.SSLError):
            return True
        except socket.timeout:
            return False


def wait_for_log(server, text: str, timeout: float = 5) -> str:
    """The server's log once it contains ``text`` (AssertionError with the log otherwise)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        log = server.log()
        if text in log:
            return log
        time.sleep(0.05)
    raise AssertionError(f"{text!r} not in the log:\n{server.log()[-3000:]}")
