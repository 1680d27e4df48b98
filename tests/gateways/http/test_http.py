"""The HTTP front door (gateways/http) over real loopback sockets, in process: the service's own
mount table (CalDAV/CardDAV under /dav/ with its redirects) plus sibling mounts, a real store
of each engine and the real portal.  Routing, redirects, the 401 challenge and the portal's
cache, body and header limits, HEAD and OPTIONS, and bad input that must never take the
server down."""

from __future__ import annotations

import base64
import http.client
import logging
import socket
import time

import pytest

from tests.conftest import ENGINES, _ensure_reactor, require_engine, store_url_for

LIMIT = 4096  # [http] max_request_size of the site under test


# -- the site under test --------------------------------------------------------------------

def echo_app(environ, start_response):
    """A WSGI sibling of /dav/: says who it was given, where, and how much body it read."""
    length = int(environ.get("CONTENT_LENGTH") or 0)
    body = environ["wsgi.input"].read(length) if length else b""
    text = (f"user={environ.get('haven.user')} id={environ.get('haven.account_id')} "
            f"script={environ['SCRIPT_NAME']} path={environ['PATH_INFO']} body={len(body)}\n").encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(text)))])
    return [text]


def _plain_resource():
    from twisted.web import resource

    class Hello(resource.Resource):
        isLeaf = True

        def render_GET(self, request):
            request.setHeader(b"Content-Type", b"text/plain")
            return b"hello\n"
    return Hello()


class Front:
    """A started front door: ``request(...)`` over http.client, ``raw(bytes)`` over a socket."""

    def __init__(self, port: int, address: str, password: str, checker):
        self.port, self.address, self.password, self.checker = port, address, password, checker

    def auth(self, login=None, password=None) -> dict:
        pair = f"{login or self.address}:{self.password if password is None else password}"
        return {"Authorization": "Basic " + base64.b64encode(pair.encode()).decode()}

    def request(self, method, path, body=None, headers=None):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            conn.request(method, path, body=body, headers=headers or {},
                         encode_chunked="chunked" in (headers or {}).get("Transfer-Encoding", ""))
            r = conn.getresponse()
            return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
        finally:
            conn.close()

    def raw(self, head: bytes, parts=(), timeout=10.0) -> bytes:
        """Sends ``head`` then each of ``parts`` (stopping when the server closes) and reads
        until the server closes or ``timeout`` passes."""
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=timeout)
        try:
            sock.sendall(head)
            for part in parts:
                try:
                    sock.sendall(part)
                except OSError:
                    break
            data = b""
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                try:
                    chunk = sock.recv(65536)
                except (ConnectionResetError, socket.timeout):
                    break
                if not chunk:
                    break
                data += chunk
            return data
        finally:
            sock.close()


@pytest.fixture(scope="module", params=ENGINES)
def front(request, tmp_path_factory):
    require_engine(request.param)
    from twisted.cred.credentials import IUsernamePassword
    from twisted.internet import defer, threads

    from auth.cred import make_portal
    from auth.passwords import hash_password
    from conf import load_config
    from gateways.common.context import GatewayContext
    from gateways.http import App, Mount, make_site
    from gateways.service import http_mounts, open_store

    tmp = tmp_path_factory.mktemp(f"http-{request.param}")
    url, cleanup = store_url_for(request.param, tmp)
    (tmp / "haven.ini").write_text(
        f"[server]\ndata_dir = {tmp / 'data'}\nhostname = haven.test\n[store]\nurl = {url}\n"
        "[auth]\nfailure_delay = 0.05\nblock_after = 0\nmax_penalty = 0\n"
        "cache_ttl = 300\n")
    config = load_config(str(tmp / "haven.ini"))
    reactor = _ensure_reactor()
    store = open_store(config, poll_interval=0)
    threads.blockingCallFromThread(reactor, store.start, reactor, False)

    def run(fn, *args):
        return threads.blockingCallFromThread(reactor, lambda: defer.Deferred.fromCoroutine(fn(*args)))
    run(store.migrate)
    address, password = "front@example.test", "correct horse"
    run(store.create_account, address, hash_password(password))
    portal = make_portal(store, config)
    settings = dict(config.section("http"), max_request_size=str(LIMIT))
    ctx = GatewayContext(store=store, portal=portal, hostname="haven.test", settings=settings)
    mounts = http_mounts(ctx) + [App("/echo/", echo_app), App("/open/", echo_app, login=False),
                                 Mount("/plain/", _plain_resource())]
    site = threads.blockingCallFromThread(reactor, make_site, ctx, reactor, mounts)
    port = threads.blockingCallFromThread(reactor, reactor.listenTCP, 0, site, interface="127.0.0.1")
    yield Front(port.getHost().port, address, password, portal.checkers[IUsernamePassword])
    threads.blockingCallFromThread(reactor, port.stopListening)
    site.thread_pool.stop()
    threads.blockingCallFromThread(reactor, store.stop)
    cleanup()


def _status(answer: bytes) -> int:
    assert answer.startswith(b"HTTP/1.1 "), answer[:200]
    return int(answer.split(b" ", 2)[1])


# -- routing --------------------------------------------------------------------------------

def test_mounts_side_by_side(front):
    status, _, body = front.request("GET", "/echo/some/where", headers=front.auth())
    assert status == 200
    assert body.startswith(f"user={front.address} id=".encode()), body
    assert b"script=/echo path=/some/where body=0" in body
    status, _, body = front.request("GET", "/open/x")
    assert (status, body.split()[0]) == (200, b"user=None"), body
    assert front.request("GET", "/plain/")[::2] == (200, b"hello\n")
    # DAV, the first mount, is unaffected by its siblings
    status, headers, body = front.request("PROPFIND", "/dav/", headers={**front.auth(), "Depth": "0"})
    assert status == 207, body
    assert "calendar-access" in headers.get("dav", "")


@pytest.mark.parametrize("path", ["/.well-known/caldav", "/.well-known/carddav", "/",
                                  "/.well-known/caldav/deeper?x=1"])
@pytest.mark.parametrize("method", ["GET", "PROPFIND", "HEAD", "OPTIONS"])
def test_well_known_and_root_redirect_to_dav(front, path, method):
    status, headers, body = front.request(method, path)
    assert (status, headers.get("location")) == (301, "/dav/"), (method, path, body)
    assert body == (b"" if method == "HEAD" else b"Moved to /dav/\n")


@pytest.mark.parametrize("path", ["/nothing", "/dav2/", "/echoes", "/.well-known/autoconfig",
                                  "/.well-known/", "/plain-text", "/%ff%fe"])
def test_unknown_paths_are_404(front, path):
    assert front.request("GET", path)[0] == 404
    assert front.request("HEAD", path)[0] == 404


def test_the_server_header_names_no_version(front):
    """[server] disclose_version = no (the default): Server: Haven on every answer."""
    for method, path in (("GET", "/nothing"), ("GET", "/"), ("PROPFIND", "/dav/"), ("GET", "/plain/")):
        status, headers, _body = front.request(method, path)
        assert headers.get("server") == "Haven", (method, path, status, headers.get("server"))
    from gateways.http.site import HavenSite
    assert HavenSite(_plain_resource(), 1, 1).server_header == b"Haven"
    assert HavenSite(_plain_resource(), 1, 1, disclose_version=True).server_header.startswith(b"Haven/0.")


def test_body_reaches_the_app_whole_chunked_or_not(front):
    data = b"x" * (LIMIT - 10)
    status, _, body = front.request("PUT", "/echo/f", body=data, headers=front.auth())
    assert (status, body.split()[-1]) == (200, f"body={len(data)}".encode())
    # chunked (no Content-Length): the app still gets CONTENT_LENGTH
    status, _, body = front.request("PUT", "/echo/f", body=iter([data[:100], data[100:]]),
                                    headers={**front.auth(), "Transfer-Encoding": "chunked"})
    assert (status, body.split()[-1]) == (200, f"body={len(data)}".encode())


# -- authentication -------------------------------------------------------------------------

def _basic(raw: bytes) -> dict:
    return {"Authorization": "Basic " + base64.b64encode(raw).decode()}


@pytest.mark.parametrize("path", ["/dav/", "/echo/"])
def test_401_challenge_for_missing_or_unusable_credentials(front, path):
    for headers in ({}, {"Authorization": "Bearer abc"}, {"Authorization": "Basic !!!not-base64"},
                    _basic(b"no-colon"), _basic(b":empty-login"), _basic(b"\xff\xfe:\xff"),
                    front.auth(password="wrong")):
        status, got, body = front.request("GET", path, headers=headers)
        assert status == 401, (headers, status, body)
        assert got["www-authenticate"] == 'Basic realm="Haven", charset="UTF-8"'
        assert body == b"Authentication required: log in with your mail address and password\n"
    # an unknown account looks exactly like a wrong password
    status, _, body = front.request("GET", path, headers=front.auth(login="nobody@example.test"))
    assert (status, body) == (401, b"Authentication required: log in with your mail address and password\n")


def test_wrong_password_is_never_answered_from_the_cache(front, monkeypatch):
    import auth.cred
    verified = []
    real_verify = auth.cred.verify_password

    def counting_verify(password, stored):
        verified.append(password)
        return real_verify(password, stored)
    monkeypatch.setattr(auth.cred, "verify_password", counting_verify)
    front.checker.cache._entries.clear()

    assert front.request("GET", "/echo/", headers=front.auth(password="wrong"))[0] == 401
    assert front.request("GET", "/echo/", headers=front.auth(password="wrong"))[0] == 401
    assert verified == ["wrong", "wrong"]  # a failure is not remembered at all
    assert front.checker.cache._entries == {}

    assert front.request("GET", "/echo/", headers=front.auth())[0] == 200
    assert front.request("GET", "/echo/", headers=front.auth())[0] == 200
    assert verified == ["wrong", "wrong", front.password]  # the second came from the cache
    # with a verified password cached, wrong ones (a prefix of it, the empty one) still fail
    for wrong in ("wrong", front.password[:-1], front.password + " ", ""):
        assert front.request("GET", "/echo/", headers=front.auth(password=wrong))[0] == 401, wrong
    assert verified[3:] == ["wrong", front.password[:-1], front.password + " ", ""]
    assert front.request("GET", "/echo/", headers=front.auth())[0] == 200
    assert len(verified) == 7


# -- limits ---------------------------------------------------------------------------------

@pytest.mark.parametrize("path", ["/echo/big", "/dav/big.ics", "/nothing"])
def test_body_over_the_limit_is_413_before_it_is_read(front, path):
    auth = ("Authorization: " + front.auth()["Authorization"] + "\r\n").encode()
    started = time.monotonic()
    # announces a gigabyte and sends a few bytes: the answer comes without waiting for the rest
    answer = front.raw(b"PUT " + path.encode() + b" HTTP/1.1\r\nHost: x\r\n" + auth
                       + b"Content-Length: 1000000000\r\n\r\n" + b"y" * 100)
    assert _status(answer) == 413, answer[:200]
    assert b"Connection: close" in answer
    assert time.monotonic() - started < 5
    # chunked, growing past the limit
    chunk = b"z" * 1000
    answer = front.raw(b"PUT " + path.encode() + b" HTTP/1.1\r\nHost: x\r\n" + auth
                       + b"Transfer-Encoding: chunked\r\n\r\n", [b"%x\r\n%s\r\n" % (len(chunk), chunk)] * 8)
    assert _status(answer) == 413, answer[:200]
    # no credentials: still 413 (the size is known before anything else)
    answer = front.raw(b"PUT " + path.encode() + b" HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n"
                       % (LIMIT + 1))
    assert _status(answer) == 413


def test_too_many_or_too_long_headers_are_4xx(front):
    from gateways.http.site import MAX_HEADER_BYTES, MAX_HEADERS
    many = b"".join(b"X-H%d: v\r\n" % n for n in range(MAX_HEADERS + 1))
    answer = front.raw(b"GET /plain/ HTTP/1.1\r\nHost: x\r\n" + many + b"\r\n")
    assert 400 <= _status(answer) < 500
    long_line = b"X-Long: " + b"a" * (MAX_HEADER_BYTES + 10) + b"\r\n"
    answer = front.raw(b"GET /plain/ HTTP/1.1\r\nHost: x\r\n" + long_line + b"\r\n")
    assert _status(answer) == 431
    # many medium lines: the total is bounded too
    medium = b"".join(b"X-M%d: %s\r\n" % (n, b"b" * 1000) for n in range(MAX_HEADER_BYTES // 1000 + 2))
    answer = front.raw(b"GET /plain/ HTTP/1.1\r\nHost: x\r\n" + medium + b"\r\n")
    assert 400 <= _status(answer) < 500
    # a request line longer than the limit
    answer = front.raw(b"GET /" + b"p" * (MAX_HEADER_BYTES + 10) + b" HTTP/1.1\r\nHost: x\r\n\r\n")
    assert 400 <= _status(answer) < 500
    assert front.request("GET", "/plain/")[0] == 200


# -- HEAD, OPTIONS, bad input ---------------------------------------------------------------

def test_head_and_options(front):
    status, headers, body = front.request("HEAD", "/plain/")
    assert (status, body) == (200, b"")
    assert front.request("OPTIONS", "/dav/")[0] == 401
    status, headers, _ = front.request("OPTIONS", "/dav/", headers=front.auth())
    assert status == 200
    assert "PROPFIND" in headers.get("allow", ""), headers
    assert "calendar-access" in headers.get("dav", "")
    status, _, body = front.request("HEAD", "/echo/", headers=front.auth())
    assert (status, body) == (200, b"")
    answer = front.raw(b"OPTIONS * HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert _status(answer) < 500


@pytest.mark.parametrize("junk", [
    b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 40 + b"\r\n\r\n",  # a TLS hello
    b"GARBAGE\r\n\r\n",
    b"GET\r\n\r\n",
    b"GET / HTTP/9.9\r\n\r\n",
    b"GET /plain/ HTTP/1.1\r\nNo colon here\r\n\r\n",
    b"GET /plain/ HTTP/1.1\r\nHost: x\r\nContent-Length: nine\r\n\r\n",
    b"GET /plain/ HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
    b"PUT /echo/ HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n",
    b"GET /dav/%ff%fe/ HTTP/1.1\r\nHost: x\r\nAuthorization: Basic " + base64.b64encode(b"\x00:\x00") + b"\r\n\r\n",
])
def test_bad_input_never_takes_the_server_down(front, junk):
    answer = front.raw(junk, timeout=5)
    assert answer == b"" or answer.startswith(b"HTTP/1.1 4"), answer[:200]
    assert front.request("GET", "/plain/")[0] == 200


def test_a_path_that_is_not_utf8_is_refused_by_dav(front):
    status, _, body = front.request("PROPFIND", "/dav/%ff%fe/", headers={**front.auth(), "Depth": "0"})
    assert status == 400, body


def test_access_log_line(front, caplog):
    caplog.set_level(logging.INFO, logger="haven.http")
    front.request("GET", "/echo/logged", headers={**front.auth(), "X-Request-ID": "abc-123"})
    front.request("GET", "/nothing", headers={"X-Request-ID": "bad id\twith junk"})
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and sum("GET /" in r.getMessage() for r in caplog.records) < 2:
        time.sleep(0.05)
    lines = [r.getMessage() for r in caplog.records if r.name == "haven.http" and "GET /" in r.getMessage()]
    assert any(line.startswith(f"127.0.0.1 {front.address} GET /echo/logged 200 ") and line.endswith(" id=abc-123")
               for line in lines), lines
    assert any(line.startswith("127.0.0.1 - GET /nothing 404") and "id=" not in line for line in lines), lines


# -- the mount table and the settings, without a socket -------------------------------------

def test_mount_table_refuses_clashes():
    from gateways.http.mounts import App, Mount, Redirect, build_root
    def make(entry):
        return _plain_resource()
    build_root([App("/a/", echo_app), Redirect("/.well-known/x", "/a/"), Redirect("/", "/a/"),
                Mount("/.well-known/y", _plain_resource())], make)
    for table in ([App("/a/", echo_app), Mount("/a", _plain_resource())],
                  [App("/a/", echo_app), Redirect("/a/b", "/")],
                  [Redirect("/a/b", "/"), App("/a/", echo_app)]):
        with pytest.raises(ValueError):
            build_root(table, make)
    with pytest.raises(ValueError):
        build_root([App("relative/", echo_app)], make)


def test_settings_read_like_before_and_bad_values_name_the_key():
    from conf import load_config
    from gateways.common.errors import StartupError
    from gateways.dav import DavConfig
    from gateways.http import HttpConfig
    section = load_config(None).section("http")
    assert HttpConfig.from_settings(section) == HttpConfig(threads=8, max_request_size=10485760, idle_timeout=300)
    assert HttpConfig.from_settings({}) == HttpConfig.from_settings(section)
    assert DavConfig.from_settings(section) == DavConfig(10485760, 2097152, 10000)
    assert HttpConfig.from_settings({"threads": "3", "max_request_size": "100", "idle_timeout": "2.5"}) == \
        HttpConfig(3, 100, 2.5)
    assert DavConfig.from_settings({"max_occurrences": "0"}).max_occurrences == 0
    # the Deleted views' names: the bundled ones by default, present but empty switches one off
    assert (DavConfig.from_settings(section).deleted_events, DavConfig.from_settings({}).deleted_contacts) == \
        ("Deleted events", "Deleted contacts")
    off = DavConfig.from_settings({"deleted_events": "", "deleted_contacts": " Trash "})
    assert (off.deleted_events, off.deleted_contacts) == ("", "Trash")
    for parse, key, value in ((HttpConfig.from_settings, "threads", "many"),
                              (HttpConfig.from_settings, "threads", "0"),
                              (HttpConfig.from_settings, "max_request_size", "10M"),
                              (HttpConfig.from_settings, "idle_timeout", "soon"),
                              (DavConfig.from_settings, "max_item_size", "-1"),
                              (DavConfig.from_settings, "max_occurrences", "lots")):
        with pytest.raises(StartupError, match=rf"^\[http\] {key} = "):
            parse({key: value})
