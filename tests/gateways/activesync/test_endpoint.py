"""The ActiveSync endpoint's HTTP layer (MS-ASHTTP) over real HTTP against `haven serve`:
OPTIONS, the login names phones send, the headers of every answer, methods, the transport rule."""

from __future__ import annotations

import base64
import http.client

import pytest

from tests.conftest import HavenServer, free_port, non_loopback_ipv4, run_on_reactor

PATH = "/Microsoft-Server-ActiveSync"


@pytest.fixture(scope="module")
def eas(tmp_path_factory):
    server = HavenServer(tmp_path_factory.mktemp("haven-eas"), "sqlite", {"activesync.enabled": "yes"})
    server.start()
    yield server
    server.close()


def call(server, method, path=PATH, login=None, body=b"", headers=None, host=None):
    conn = http.client.HTTPConnection(host or server.http[0], server.http[1], timeout=30)
    hdrs = dict(headers or {})
    if login is not None:
        hdrs["Authorization"] = "Basic " + base64.b64encode(f"{login[0]}:{login[1]}".encode()).decode()
    try:
        conn.request(method, path, body=body, headers=hdrs)
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def test_options_tells_versions_and_commands(eas):
    user, password = eas.new_user("phone")
    status, headers, body = call(eas, "OPTIONS", login=(user, password))
    assert status == 200 and body == b""
    assert headers["ms-asprotocolversions"] == "14.0,14.1,16.0,16.1"
    commands = headers["ms-asprotocolcommands"].split(",")
    assert {"Sync", "FolderSync", "Provision", "Ping", "SendMail", "ItemOperations", "Search", "Find",
            "ResolveRecipients"} <= set(commands)
    assert "ValidateCert" not in commands and "GetAttachment" not in commands  # only what is served
    assert headers["ms-server-activesync"] and headers["content-length"] == "0"
    assert "POST" in headers["allow"]


def test_login_names_phones_send(eas):
    user, password = eas.new_user("names")
    local = user.partition("@")[0]
    for login in (user, user.upper(), f"EXAMPLE\\{user}", f"EXAMPLE\\{local}", local):
        assert call(eas, "OPTIONS", login=(login, password))[0] == 200, login
    status, headers, _ = call(eas, "OPTIONS", login=(user, password + "x"))
    assert status == 401 and headers["www-authenticate"].startswith("Basic")
    assert call(eas, "OPTIONS")[0] == 401
    # a bare name two accounts share names neither
    twin_a, pw_a = eas.new_user("twin")
    twin_local = twin_a.partition("@")[0]
    store = eas.admin_store()
    run_on_reactor(store.create_account, twin_local + "@other.example", None, None)
    assert call(eas, "OPTIONS", login=(twin_local, pw_a))[0] == 401
    assert call(eas, "OPTIONS", login=(twin_a, pw_a))[0] == 200


def test_methods_paths_and_headers(eas):
    user, password = eas.new_user("methods")
    status, headers, _ = call(eas, "GET", login=(user, password))
    assert status == 405 and headers["allow"] == "OPTIONS,POST" and "ms-server-activesync" in headers
    for path, expected in ((PATH, 400), (PATH.lower(), 400),  # no request line: Cmd, DeviceId, DeviceType
                           ("/microsoft-server-activesync?Cmd=Frobnicate&User=x&DeviceId=1&DeviceType=iPhone", 501)):
        status, headers, body = call(eas, "POST", path=path, login=(user, password),
                                     headers={"MS-ASProtocolVersion": "16.1"})
        assert status == expected and headers["content-length"] == str(len(body)), (path, status)


def test_switched_off(haven_factory):
    server = haven_factory("sqlite", **{"activesync.enabled": "no"})
    assert call(server, "OPTIONS")[0] == 404


@pytest.mark.parametrize("allow", ["loopback", "yes"])
def test_plain_http_logins_from_the_network(tmp_path_factory, allow):
    ip = non_loopback_ipv4()
    if ip is None:
        pytest.skip("this machine has no non-loopback IPv4 address to connect from")
    where = (ip, free_port())
    server = HavenServer(tmp_path_factory.mktemp("haven-eas-plain"), "sqlite", {
        "activesync.enabled": "yes", "activesync.allow_plaintext_auth": allow, "http.listen": "%s:%d" % where})
    server.http = where
    server.start()
    try:
        user, password = server.new_user("remote")
        conn = http.client.HTTPConnection(*where, timeout=30, source_address=(ip, 0))
        auth = base64.b64encode(f"{user}:{password}".encode()).decode()
        conn.request("OPTIONS", PATH, headers={"Authorization": "Basic " + auth})
        resp = conn.getresponse()
        resp.read()
        if allow == "loopback":  # refused, and not challenged: the phone must not resend it in the clear
            assert resp.status == 403 and resp.getheader("WWW-Authenticate") is None
        else:
            assert resp.status == 200
        conn.close()
    finally:
        server.close()
