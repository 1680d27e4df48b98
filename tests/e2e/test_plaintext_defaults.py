"""Passwords are not accepted in the clear from the network by default: with every
``allow_plaintext_auth`` left at ``loopback``, a peer on another address must use TLS on IMAP and
HTTP (POP3 and ManageSieve: their own settings tests; submission: its protocol tests), while
this machine (a local webmail, a TLS-terminating proxy) still may."""

from __future__ import annotations

import base64
import socket

import pytest

from tests.conftest import HavenServer, free_port, non_loopback_ipv4


IP = non_loopback_ipv4()


@pytest.fixture(scope="module")
def server(haven, tmp_path_factory):
    if IP is None:
        pytest.skip("this machine has no non-loopback IPv4 address to connect from")
    imap, http = (IP, free_port()), (IP, free_port())
    s = HavenServer(tmp_path_factory.mktemp(f"haven-plain-{haven.engine}"), haven.engine, {
        "imap.listen": "%s:%d" % imap, "http.listen": "%s:%d" % http,
    })
    s.imap, s.http = imap, http
    s.start()
    yield s
    s.close()


def _exchange(address, data: bytes, until: bytes) -> bytes:
    with socket.create_connection(address, timeout=10, source_address=(IP, 0)) as s:
        s.sendall(data)
        got = b""
        while until not in got:
            chunk = s.recv(65536)
            if not chunk:
                break
            got += chunk
        return got


def test_imap_from_the_network_needs_tls(server):
    user, password = server.new_user("plain")
    got = _exchange(server.imap, b"a CAPABILITY\r\nb LOGIN " + user.encode() + b" " + password.encode()
                    + b"\r\nc LOGOUT\r\n", b"c OK")
    assert b"LOGINDISABLED" in got and b"AUTH=PLAIN" not in got
    assert b"b NO [PRIVACYREQUIRED]" in got


def test_http_basic_from_the_network_is_refused_without_a_challenge(server):
    user, password = server.new_user("plainweb")
    token = base64.b64encode(f"{user}:{password}".encode())
    for auth in (b"Authorization: Basic " + token + b"\r\n", b""):
        got = _exchange(server.http, b"PROPFIND /dav/ HTTP/1.1\r\nHost: h\r\nDepth: 0\r\n" + auth
                        + b"Content-Length: 0\r\nConnection: close\r\n\r\n", b"\r\n\r\n")
        head = got.split(b"\r\n\r\n")[0].lower()
        assert head.startswith(b"http/1.1 403") and b"www-authenticate" not in head, got[:300]
    # redirects need no login and still work
    assert _exchange(server.http, b"GET /.well-known/caldav HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
                     b"\r\n\r\n").startswith(b"HTTP/1.1 301")
