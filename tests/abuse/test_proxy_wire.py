"""The client's real address behind a load balancer (PROXY v1/v2 from [server] trusted_proxies
only) and the per-address connection limits, on a real ``haven serve`` with both engines.

127.0.0.2 is the trusted proxy; 127.0.0.1 (and 127.0.0.3) are not.  Clients named by PROXY
headers come from documentation networks, so none of them is loopback or exempt."""

from __future__ import annotations

import base64
import time

import pytest

from tests.abuse.wire import PROXY_IP, Conn, v1, v2, wait_for_log
from tests.conftest import ENGINES, HavenServer, non_loopback_ipv4, require_engine


@pytest.fixture(scope="module", params=ENGINES)
def server(request, tmp_path_factory):
    require_engine(request.param)
    s = HavenServer(tmp_path_factory.mktemp(f"haven-proxy-{request.param}"), request.param, {
        "server.trusted_proxies": f"{PROXY_IP}, 192.0.2.250/32",
        "auth.failure_delay": "0.3",
        "auth.block_after": "3", "auth.max_penalty": "0.2",
        "imap.proxy_protocol": "yes", "imap.max_connections_per_ip": "3",
        "pop3.proxy_protocol": "yes", "pop3.max_connections_per_ip": "2", "pop3.login_timeout": "1.5",
        "managesieve.proxy_protocol": "yes", "managesieve.max_connections_per_ip": "2",
        "submission.proxy_protocol": "yes", "submission.max_connections_per_ip": "2",
        "lmtp.max_connections": "3",
        "http.max_requests_per_ip": "2", "http.header_timeout": "1", "http.max_connections_per_ip": "2",
    })
    s.start()
    yield s
    s.close()


# -- PROXY: who may send it, what it changes ----------------------------------------------------

@pytest.mark.parametrize("make_header, client", [(v1, "198.51.100.7"), (v2, "198.51.100.8")])
def test_a_trusted_proxy_names_the_client_for_logs_and_plaintext(server, make_header, client):
    user, password = server.new_user("proxied")
    with Conn(server.imap, make_header(client), split=True) as c:
        greeting = c.line()
        assert greeting.startswith(b"* OK [CAPABILITY"), greeting
        # the proxy is on loopback, the client is not: no password without TLS
        assert b"LOGINDISABLED" in greeting
        c.send(b"a LOGIN " + user.encode() + b" " + password.encode() + b"\r\n")
        assert c.line().startswith(b"a NO [PRIVACYREQUIRED]")
    with Conn(server.imap, make_header(client)) as c:
        c.line()
        c.send(b"AUTHENTICATE PLAIN\r\n")  # a bad command is logged with the client's address
        c.line()
    wait_for_log(server, f"imap {client}: bad command")


def test_a_v2_header_vouching_for_tls_allows_the_login(server):
    user, password = server.new_user("tlsproxied")
    with Conn(server.imap, v2("198.51.100.9", tls=True)) as c:
        assert b"LOGINDISABLED" not in c.line()
        c.send(b"a LOGIN " + user.encode() + b" " + password.encode() + b"\r\n")
        assert c.line().startswith(b"a OK"), c.buffer
    wait_for_log(server, f"imap 198.51.100.9: {user} logged in")


def test_throttling_counts_the_proxied_address(server):
    user, password = server.new_user("throttled")
    for i in range(3):  # three distinct wrong passwords from the proxied client block it for the account
        with Conn(server.imap, v2("198.51.100.10", tls=True)) as c:
            c.line()
            c.send(b"a LOGIN " + user.encode() + b" wrong%d\r\n" % i)
            assert c.line().startswith(b"a NO")
    wait_for_log(server, f"authentication failed for '{user}' from 198.51.100.10")
    with Conn(server.imap, v2("198.51.100.10", tls=True)) as c:  # the right password, refused
        c.line()
        c.send(b"a LOGIN " + user.encode() + b" " + password.encode() + b"\r\n")
        assert c.line().startswith(b"a NO")
    with Conn(server.imap, v2("198.51.100.11", tls=True)) as c:  # another client is not
        c.line()
        c.send(b"a LOGIN " + user.encode() + b" " + password.encode() + b"\r\n")
        assert c.line().startswith(b"a OK")


@pytest.mark.parametrize("source, header, why", [
    ("127.0.0.3", v1("198.51.100.12"), "not in [server] trusted_proxies"),
    (PROXY_IP, b"HELLO there, not a proxy header\r\n", "malformed PROXY header"),
    (PROXY_IP, b"PROXY TCP4 nonsense\r\n", "malformed PROXY header"),
    (PROXY_IP, b"a CAPABILITY\r\n", "malformed PROXY header"),
])
def test_untrusted_peers_and_malformed_headers_are_dropped_unanswered(server, source, header, why):
    with Conn(server.imap, header, source=source) as c:
        assert c.closed_by_server()
        assert c.buffer == b""  # not even a greeting
    wait_for_log(server, f"refused a connection from {source}: {why}")


def test_no_header_from_a_trusted_peer_means_no_greeting(server):
    with Conn(server.imap, b"") as c:
        c.sock.settimeout(0.5)
        with pytest.raises(OSError):
            c.sock.recv(10)  # waits for the header; nothing is said first


def test_proxy_header_comes_before_tls_on_implicit_tls_listeners(server):
    user, password = server.new_user("pop3s")
    with Conn(server.pop3s, v1("198.51.100.13"), tls=True) as c:
        assert c.line().startswith(b"+OK")
        c.send(f"USER {user}\r\nPASS {password}\r\nQUIT\r\n".encode())  # TLS: allowed from anywhere
        assert c.line().startswith(b"+OK")
        assert c.line().startswith(b"+OK Logged in")
    wait_for_log(server, f"pop3 198.51.100.13: {user} logged in")
    with Conn(server.submissions, v2("198.51.100.14"), tls=True) as c:
        assert c.line().startswith(b"220 ")
        token = base64.b64encode(f"\0{user}\0{password}".encode())
        c.send(b"EHLO client.test\r\nAUTH PLAIN " + token + b"\r\n")
        c.read_until(b"250 ")
        c.line()
        assert c.line().startswith(b"235"), c.buffer
    wait_for_log(server, "method=PLAIN, peer=198.51.100.14")


def test_submission_plaintext_and_logs_use_the_proxied_address(server):
    user, password = server.new_user("subplain")
    with Conn(server.submission, v1("198.51.100.15")) as c:
        assert c.line().startswith(b"220 ")
        token = base64.b64encode(f"\0{user}\0{password}".encode())
        c.send(b"EHLO client.test\r\nAUTH PLAIN " + token + b"\r\n")
        c.read_until(b"250 ")
        c.line()
        assert not c.line().startswith(b"235")  # a remote client without TLS: no AUTH
    wait_for_log(server, "AUTH from 198.51.100.15 refused before TLS")


# -- per-address limits ---------------------------------------------------------------------------

def test_imap_over_the_per_address_limit_gets_bye_and_others_are_served(server):
    first = [Conn(server.imap, v1("203.0.113.5")) for _ in range(3)]
    try:
        for c in first:
            assert c.line().startswith(b"* OK")
        for _ in range(3):
            with Conn(server.imap, v2("203.0.113.5")) as over:
                assert over.line() == b"* BYE [UNAVAILABLE] Too many connections from your address\r\n"
                assert over.closed_by_server()
        with Conn(server.imap, v1("203.0.113.6")) as other:
            assert other.line().startswith(b"* OK")
        with Conn(server.imap, b"", source="127.0.0.1") as untrusted:  # still refused for its own reason
            assert untrusted.closed_by_server()
        # the open ones still work
        first[0].send(b"a NOOP\r\n")
        assert first[0].line().startswith(b"a OK")
    finally:
        first[0].close()
    time.sleep(0.3)  # the server sees the close
    with Conn(server.imap, v1("203.0.113.5")) as again:
        assert again.line().startswith(b"* OK")
    for c in first[1:]:
        c.close()
    log = wait_for_log(server, "imap: refused a connection from 203.0.113.5: 3 open from that address "
                               "([imap] max_connections_per_ip)")
    assert log.count("refused a connection from 203.0.113.5") == 1  # one line a minute, not three


@pytest.mark.parametrize("port, reply", [
    ("pop3", b"-ERR [SYS/TEMP] Too many connections from your address\r\n"),
    ("managesieve", b'BYE (TRYLATER) "Too many connections from your address"\r\n'),
    ("submission", b"421 4.7.0 haven.test Too many connections from your address\r\n"),
])
def test_each_protocol_refuses_with_its_own_reply(server, port, reply):
    client = {"pop3": "203.0.113.7", "managesieve": "203.0.113.8", "submission": "203.0.113.9"}[port]
    address = getattr(server, port)
    held = [Conn(address, v1(client)) for _ in range(2)]
    try:
        for c in held:
            assert c.line()  # the greeting (ManageSieve: its first capability line)
        with Conn(address, v1(client)) as over:
            assert over.read_until(reply) == reply
            assert over.closed_by_server()
        with Conn(address, v1("203.0.113.10")) as other:
            first = other.line()
            assert first and b"Too many" not in first
    finally:
        for c in held:
            c.close()


def test_pop3s_refusal_travels_inside_tls(server):
    held = [Conn(server.pop3s, v1("203.0.113.11"), tls=True) for _ in range(2)]
    try:
        for c in held:
            assert c.line().startswith(b"+OK")
        with Conn(server.pop3s, v2("203.0.113.11"), tls=True) as over:
            assert over.line() == b"-ERR [SYS/TEMP] Too many connections from your address\r\n"
    finally:
        for c in held:
            c.close()


def test_lmtp_has_no_per_address_limit_but_a_total(server):
    held = [Conn(server.lmtp, source="127.0.0.1") for _ in range(3)]
    try:
        for c in held:
            assert c.line().startswith(b"220 ")
        with Conn(server.lmtp, source="127.0.0.1") as over:
            assert over.line() == b"421 4.7.0 haven.test Too many connections; try again later\r\n"
    finally:
        for c in held:
            c.close()
    time.sleep(0.3)
    with Conn(server.lmtp, source="127.0.0.1") as again:
        assert again.line().startswith(b"220 ")
    wait_for_log(server, "([lmtp] max_connections)")


# -- POP3: the login deadline --------------------------------------------------------------------

def test_pop3_commands_before_login_do_not_extend_the_login_deadline(server):
    with Conn(server.pop3, v1("198.51.100.16")) as c:
        started = time.monotonic()
        assert c.line().startswith(b"+OK")
        closed = False
        while time.monotonic() - started < 6:
            try:
                c.send(b"CAPA\r\n")
            except OSError:
                closed = True
                break
            if not c.read_until(b".\r\n", timeout=2):
                closed = True
                break
            time.sleep(0.25)
        assert closed, "CAPA every 0.25 s kept the connection open past login_timeout"
        assert 1.2 < time.monotonic() - started < 4
    wait_for_log(server, "pop3 198.51.100.16: no login within")


# -- HTTP: X-Forwarded-For, the head deadline, requests in flight ---------------------------------

def _get(server, head: bytes, source: str = "127.0.0.1") -> bytes:
    with Conn(server.http, source=source) as c:
        c.send(head)
        return c.read_until(b"\r\n\r\n")


def test_x_forwarded_for_names_the_client_only_from_a_trusted_proxy(server):
    assert _get(server, b"GET /.well-known/caldav HTTP/1.1\r\nHost: h\r\nConnection: close\r\n"
                b"X-Forwarded-For: 10.9.9.9, 198.51.100.20\r\n\r\n", source=PROXY_IP).startswith(b"HTTP/1.1 301")
    wait_for_log(server, "198.51.100.20 - GET /.well-known/caldav 301")
    # a chain through two trusted proxies: the right-most untrusted hop
    _get(server, b"GET /.well-known/carddav HTTP/1.1\r\nHost: h\r\nConnection: close\r\n"
         b"X-Forwarded-For: 10.9.9.9, 198.51.100.21, 192.0.2.250\r\n\r\n", source=PROXY_IP)
    wait_for_log(server, "198.51.100.21 - GET /.well-known/carddav 301")
    # from anyone else it is ignored
    _get(server, b"GET /.well-known/caldav?x HTTP/1.1\r\nHost: h\r\nConnection: close\r\n"
         b"X-Forwarded-For: 198.51.100.22\r\n\r\n", source="127.0.0.3")
    log = wait_for_log(server, "127.0.0.3 - GET /.well-known/caldav?x 301")
    assert "198.51.100.22" not in log


def test_forwarded_clients_are_not_loopback_for_plaintext_unless_the_proxy_says_https(server):
    user, password = server.new_user("xff")
    auth = b"Authorization: Basic " + base64.b64encode(f"{user}:{password}".encode()) + b"\r\n"
    head = b"PROPFIND /dav/ HTTP/1.1\r\nHost: h\r\nDepth: 0\r\nContent-Length: 0\r\nConnection: close\r\n"
    got = _get(server, head + auth + b"X-Forwarded-For: 198.51.100.23\r\n\r\n", source=PROXY_IP)
    assert got.startswith(b"HTTP/1.1 403"), got
    got = _get(server, head + auth + b"X-Forwarded-For: 198.51.100.23\r\nX-Forwarded-Proto: https\r\n\r\n",
               source=PROXY_IP)
    assert got.startswith(b"HTTP/1.1 207"), got
    # X-Forwarded-Proto from an untrusted peer changes nothing (loopback: allowed anyway, so
    # from 127.0.0.3 with a forged client it is the peer's address that counts)
    got = _get(server, head + auth + b"X-Forwarded-For: 198.51.100.24\r\n\r\n", source="127.0.0.3")
    assert got.startswith(b"HTTP/1.1 207"), got


def test_a_request_head_trickled_in_is_cut_at_header_timeout(server):
    with Conn(server.http, source="127.0.0.1") as c:
        started = time.monotonic()
        c.send(b"GET /.well-known/caldav HTTP/1.1\r\nHost: h\r\n")
        closed = False
        for byte in b"X-Slow: " + b"a" * 40:
            try:
                c.send(bytes([byte]))
            except OSError:
                closed = True
                break
            time.sleep(0.2)
            if time.monotonic() - started > 4:
                break
        assert closed or c.closed_by_server(timeout=1)
        assert time.monotonic() - started < 3.5
        assert c.buffer.startswith(b"HTTP/1.1 408") or c.buffer == b""
    wait_for_log(server, "request head not complete within 1 s ([http] header_timeout)")


def test_a_kept_alive_connection_may_wait_between_requests(server):
    with Conn(server.http, source="127.0.0.1") as c:
        c.send(b"GET /.well-known/caldav HTTP/1.1\r\nHost: h\r\n\r\n")
        assert c.read_until(b"\r\n\r\n").startswith(b"HTTP/1.1 301")
        c.read_until(b"/dav/")  # the body
        time.sleep(1.6)  # longer than header_timeout, shorter than idle_timeout
        c.send(b"GET /.well-known/carddav HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
        assert b"HTTP/1.1 301" in c.read_until(b"\r\n\r\n")


def test_requests_in_flight_per_client_over_the_limit_get_503(server):
    bad = b"Authorization: Basic " + base64.b64encode(b"nobody@example.test:wrong") + b"\r\n"
    head = (b"PROPFIND /dav/ HTTP/1.1\r\nHost: h\r\nDepth: 0\r\nContent-Length: 0\r\nConnection: close\r\n"
            b"X-Forwarded-Proto: https\r\n" + bad)
    conns = [Conn(server.http) for _ in range(3)]  # from the trusted proxy
    try:
        for c in conns:  # each waits out the failure delay (0.3 s) once admitted
            c.send(head + b"X-Forwarded-For: 198.51.100.30\r\n\r\n")
        with Conn(server.http) as other:
            other.send(head + b"X-Forwarded-For: 198.51.100.31\r\n\r\n")
            assert other.read_until(b"\r\n\r\n").startswith(b"HTTP/1.1 401")
        replies = sorted(c.read_until(b"\r\n\r\n").split(b"\r\n")[0] for c in conns)
    finally:
        for c in conns:
            c.close()
    assert replies == [b"HTTP/1.1 401 Unauthorized"] * 2 + [b"HTTP/1.1 503 Service Unavailable"], replies
    log = wait_for_log(server, "refused a request from 198.51.100.30: 2 open from that address "
                               "([http] max_requests_per_ip)")
    assert "Retry-After" not in log


def test_http_connections_over_the_per_address_limit_get_503_and_loopback_is_exempt(server):
    ip = non_loopback_ipv4()
    if ip is None:
        pytest.skip("this machine has no non-loopback IPv4 address to connect from")
    held = [Conn(server.http, source=ip) for _ in range(2)]
    local = [Conn(server.http, source="127.0.0.1") for _ in range(3)]  # loopback: not limited
    try:
        with Conn(server.http, source=ip) as over:
            try:
                over.send(b"GET /.well-known/caldav HTTP/1.1\r\nHost: h\r\n\r\n")  # not answered
            except OSError:
                pass
            head = over.read_until(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 503") and b"Retry-After: " in head, head
            assert over.closed_by_server()
            assert b"HTTP/1.1 301" not in over.buffer
        for c in local:
            c.send(b"GET /.well-known/caldav HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
            assert c.read_until(b"\r\n\r\n").startswith(b"HTTP/1.1 301")
    finally:
        for c in held + local:
            c.close()
    wait_for_log(server, f"http: refused a connection from {ip}: 2 open from that address")


# -- STARTTLS after a PROXY header ------------------------------------------------------------------

def _starttls(c: Conn) -> None:
    from tests.abuse.wire import _tls
    c.sock = _tls(c.sock)


def test_imap_starttls_after_a_proxy_header(server):
    user, password = server.new_user("imapstarttls")
    with Conn(server.imap, v2("198.51.100.40")) as c:
        assert b"LOGINDISABLED" in c.line()
        c.send(b"a STARTTLS\r\n")
        assert c.line().startswith(b"a OK")
        _starttls(c)
        c.send(b"b LOGIN " + user.encode() + b" " + password.encode() + b"\r\n")
        assert c.read_until(b"b ").endswith(b"b ") and c.line().startswith(b"OK"), c.buffer
    wait_for_log(server, f"imap 198.51.100.40: {user} logged in")


def test_submission_starttls_after_a_proxy_header_keeps_the_client_address(server):
    user, password = server.new_user("substarttls")
    with Conn(server.submission, v1("198.51.100.41")) as c:
        assert c.line().startswith(b"220 ")
        c.send(b"EHLO client.test\r\n")
        c.read_until(b"250 ")
        c.line()
        c.send(b"STARTTLS\r\n")
        assert c.line().startswith(b"220")
        _starttls(c)
        token = base64.b64encode(f"\0{user}\0{password}".encode())
        c.send(b"EHLO client.test\r\n")
        c.read_until(b"250 ")
        c.line()
        c.send(b"AUTH PLAIN " + token + b"\r\n")
        assert c.line().startswith(b"235"), c.buffer
    wait_for_log(server, f"user=<{user}>, method=PLAIN, peer=198.51.100.41, tls=yes")
