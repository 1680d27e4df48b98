"""Client autoconfiguration (gateways/autoconfig) on a real ``haven serve``: what is served is
parsed (ElementTree for Thunderbird's clientConfig, plistlib for the Apple profile, the zone
lines of ``haven dns records``) and every host, port and TLS mode is checked against the
server's own config.

The server: IMAP plain and implicit TLS on a non-loopback address (published as STARTTLS and
SSL), POP3 off, submission plain on loopback (not published: only a local proxy reaches it)
and implicit TLS on the network, ManageSieve on the network, HTTP plain on loopback (where the
tests talk, and log in) and HTTPS on the network (where CalDAV/CardDAV are published)."""

from __future__ import annotations

import base64
import http.client
import plistlib
import socket
import time
import uuid
import xml.etree.ElementTree as ET
from urllib.parse import quote

import pytest

from tests.conftest import ENGINES, HavenServer, free_port, non_loopback_ipv4, wait_port

pytestmark = pytest.mark.skipif("sqlite" not in ENGINES, reason="HAVEN_TEST_ENGINES excludes sqlite")

HOST = "haven.test"  # [server] hostname of HavenServer
TB_PATHS = ("/mail/config-v1.1.xml", "/.well-known/autoconfig/mail/config-v1.1.xml")
PROFILE = "/apple/haven.mobileconfig"


def _wait_remote(where, proc, timeout=10.0):
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection(where, timeout=1).close()
            return
        except OSError:
            if time.monotonic() > deadline or proc.poll() is not None:
                raise
            time.sleep(0.05)


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    ip = non_loopback_ipv4()
    if ip is None:
        pytest.skip("this machine has no non-loopback IPv4 address: every listener would be loopback-only")
    ports = {name: free_port() for name in ("imap", "imaps", "submissions", "sieve", "https")}
    server = HavenServer(tmp_path_factory.mktemp("haven-autoconfig"), "sqlite", {
        "imap.listen": f"{ip}:{ports['imap']}", "imap.tls_listen": f"{ip}:{ports['imaps']}",
        "pop3.listen": "", "pop3.tls_listen": "",
        "submission.tls_listen": f"{ip}:{ports['submissions']}",
        "managesieve.listen": f"{ip}:{ports['sieve']}",
        "http.tls_listen": f"{ip}:{ports['https']}",
    })
    for name in ("imap", "pop3", "managesieve"):
        server.gateways.remove(name)  # start() waits on loopback ports; these are waited for below
    server.start()
    try:
        for port in ports.values():
            _wait_remote((ip, port), server.proc)
        wait_port(server.submission[1], server.proc)
        server.ports = ports
        yield server
    finally:
        server.close()


def get(server, path, headers=None, method="GET"):
    conn = http.client.HTTPConnection(*server.http, timeout=30)
    try:
        conn.request(method, path, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, dict((k.lower(), v) for k, v in resp.getheaders()), resp.read()
    finally:
        conn.close()


def basic(address, password):
    return {"Authorization": "Basic " + base64.b64encode(f"{address}:{password}".encode()).decode()}


def servers(root, tag):
    return [{"type": s.get("type"), **{child.tag: child.text for child in s}} for s in root.iter(tag)]


# -- Thunderbird ------------------------------------------------------------------------------

def test_thunderbird_gets_every_published_listener_and_only_those(served):
    p = served.ports
    for path in TB_PATHS:
        status, headers, body = get(served, path + "?emailaddress=" + quote("someone@example.org"))
        assert status == 200, body
        assert headers["content-type"].startswith("application/xml")
        root = ET.fromstring(body)
        assert root.tag == "clientConfig" and root.get("version") == "1.1"
        provider = root.find("emailProvider")
        assert provider.get("id") == "example.org" and provider.findtext("domain") == "example.org"
        common = {"hostname": HOST, "authentication": "password-cleartext", "username": "%EMAILADDRESS%"}
        # implicit TLS first; the plain listener as STARTTLS; POP3 is off: nothing of it
        assert servers(provider, "incomingServer") == [
            {"type": "imap", "port": str(p["imaps"]), "socketType": "SSL", **common},
            {"type": "imap", "port": str(p["imap"]), "socketType": "STARTTLS", **common}]
        # the plain submission listener is on loopback: only its TLS sibling is published
        assert servers(provider, "outgoingServer") == [
            {"type": "smtp", "port": str(p["submissions"]), "socketType": "SSL", **common}]
        dav = {"username": "%EMAILADDRESS%", "authentication": "http-basic",
               "serverURL": f"https://{HOST}:{p['https']}/dav/"}
        assert servers(root, "addressBook") == [{"type": "carddav", **dav}]
        assert servers(root, "calendar") == [{"type": "caldav", **dav}]
        assert b"plain<" not in body


def test_no_login_and_the_same_answer_for_any_address(served):
    """Known account, unknown one, another domain: the same servers, only the domain differs;
    the address itself is never in the answer."""
    address, _password = served.new_user("tb")
    known = get(served, TB_PATHS[0] + "?emailaddress=" + quote(address))
    unknown = get(served, TB_PATHS[0] + "?emailaddress=" + quote("nobody-here@example.test"))
    assert known[0] == unknown[0] == 200
    assert known[2] == unknown[2]  # users are @example.test
    assert address.encode() not in known[2]
    other = get(served, TB_PATHS[1] + "?emailaddress=" + quote("x@Other.Example"))
    assert ET.fromstring(other[2]).find("emailProvider").get("id") == "other.example"
    assert other[2].replace(b"other.example", b"example.test") == known[2]


def test_without_emailaddress_the_domain_comes_from_the_host_asked(served):
    for host, domain in (("autoconfig.example.net", "example.net"), ("example.com:8080", "example.com"),
                         ("[::1]:80", HOST), ("", HOST)):
        status, _, body = get(served, TB_PATHS[0], {"Host": host} if host else {"Host": ""})
        assert status == 200, (host, body)
        assert ET.fromstring(body).find("emailProvider").findtext("domain") == domain


@pytest.mark.parametrize("address", [
    "a@<script>.example", "a@example.org</domain><x>", "a@exa&mple.org", "a@", "@example.org", "no-at-sign",
    "a@" + "b" * 64 + ".org", "a@" + "x." * 200 + "org", "a" * 5000 + "@example.org", "a@example.org\x00",
    "a@exa\"mple.org",
])
def test_hostile_emailaddress_is_refused_with_400(served, address):
    status, headers, body = get(served, TB_PATHS[0] + "?emailaddress=" + quote(address, safe=""))
    assert status == 400, body
    assert headers["content-type"].startswith("text/plain")
    assert b"<" not in body


def test_xml_metacharacters_in_the_local_part_never_reach_the_document(served):
    for local in ('<x>&"\'', "]]>", "&amp;", "a" * 200):
        status, _, body = get(served, TB_PATHS[0] + "?emailaddress=" + quote(f"{local}@example.org", safe=""))
        assert status == 200
        root = ET.fromstring(body)  # well-formed
        assert root.find("emailProvider").get("id") == "example.org"
        assert local.encode() not in body


def test_unicode_domain_is_answered_in_ascii_and_bad_bytes_are_refused(served):
    status, _, body = get(served, TB_PATHS[0] + "?emailaddress=" + quote("a@bücher.example"))
    assert status == 200 and ET.fromstring(body).find("emailProvider").get("id") == "xn--bcher-kva.example"
    assert get(served, TB_PATHS[0] + "?emailaddress=a%40%ff%fe.example")[0] == 400


def test_methods_and_paths(served):
    assert get(served, TB_PATHS[0], method="HEAD")[0] == 200
    assert get(served, TB_PATHS[0], method="POST")[0] == 405
    assert get(served, TB_PATHS[0] + "/more")[0] == 404
    assert get(served, "/mail/other.xml")[0] == 404
    assert get(served, "/.well-known/caldav")[0] == 301  # DAV's redirects are still there


# -- Apple profile ----------------------------------------------------------------------------

def test_profile_needs_a_login(served):
    address, password = served.new_user("apple")
    status, headers, _ = get(served, PROFILE)
    assert status == 401 and headers["www-authenticate"].startswith("Basic")
    assert get(served, PROFILE, basic(address, password + "x"))[0] == 401
    assert get(served, PROFILE, basic("nobody@example.test", password))[0] == 401


def _profile(served, address, password):
    status, headers, body = get(served, PROFILE, basic(address, password))
    assert status == 200, body
    assert headers["content-type"] == "application/x-apple-aspen-config"
    assert headers["content-disposition"].startswith("attachment; filename=") and ".mobileconfig" in \
        headers["content-disposition"]
    return plistlib.loads(body), body


def test_profile_is_for_the_logged_in_account_with_the_published_servers(served):
    p = served.ports
    address, password = served.new_user("apple")
    profile, raw = _profile(served, address, password)
    assert profile["PayloadType"] == "Configuration" and profile["PayloadVersion"] == 1
    payloads = {pl["PayloadType"]: pl for pl in profile["PayloadContent"]}
    assert set(payloads) == {"com.apple.mail.managed", "com.apple.caldav.account", "com.apple.carddav.account"}
    mail = payloads["com.apple.mail.managed"]
    assert mail["EmailAddress"] == address and mail["EmailAccountType"] == "EmailTypeIMAP"
    assert (mail["IncomingMailServerHostName"], mail["IncomingMailServerPortNumber"],
            mail["IncomingMailServerUseSSL"]) == (HOST, p["imaps"], True)
    assert (mail["OutgoingMailServerHostName"], mail["OutgoingMailServerPortNumber"],
            mail["OutgoingMailServerUseSSL"]) == (HOST, p["submissions"], True)
    assert mail["IncomingMailServerUsername"] == mail["OutgoingMailServerUsername"] == address
    for prefix in ("CalDAV", "CardDAV"):
        dav = payloads[f"com.apple.{prefix.lower()}.account"]
        assert (dav[f"{prefix}HostName"], dav[f"{prefix}Port"], dav[f"{prefix}UseSSL"]) == (HOST, p["https"], True)
        assert dav[f"{prefix}Username"] == address
        assert dav[f"{prefix}PrincipalURL"] == f"https://{HOST}:{p['https']}/dav/"
    # no password anywhere: the device asks
    assert password.encode() not in raw and b"Password</key>" not in raw.replace(
        b"OutgoingPasswordSameAsIncomingPassword</key>", b"")


def test_profile_identifiers_are_unique_and_stable(served):
    first, second = served.new_user("apple"), served.new_user("apple")
    a1, a2, b = _profile(served, *first)[0], _profile(served, *first)[0], _profile(served, *second)[0]

    def ids(profile):
        return [profile["PayloadUUID"]] + [pl["PayloadUUID"] for pl in profile["PayloadContent"]], \
            [profile["PayloadIdentifier"]] + [pl["PayloadIdentifier"] for pl in profile["PayloadContent"]]
    assert ids(a1) == ids(a2)  # downloaded again: it replaces the installed profile
    for uuids, names in (ids(a1), ids(b)):
        assert len(set(uuids)) == len(uuids) == 4 and len(set(names)) == 4
        for u in uuids:
            uuid.UUID(u)
    assert not set(ids(a1)[0]) & set(ids(b)[0]) and not set(ids(a1)[1]) & set(ids(b)[1])


def test_profile_other_paths_and_methods(served):
    address, password = served.new_user("apple")
    assert get(served, "/apple/other.mobileconfig", basic(address, password))[0] == 404
    assert get(served, PROFILE, basic(address, password), method="DELETE")[0] == 405
    assert get(served, PROFILE, basic(address, password), method="HEAD")[0] == 200


# -- DNS --------------------------------------------------------------------------------------

def zone(server, domain):
    done = server.cli("dns", "records", domain)
    assert done.returncode == 0, done.stderr
    out = {}
    for line in done.stdout.decode().splitlines():
        if line and not line.startswith(";"):
            owner, _in, rtype, *data = line.split()
            out.setdefault((owner, rtype), []).append(" ".join(data))
    return out


def test_dns_records_follow_the_listeners(served):
    p = served.ports
    records = zone(served, "Example.org")
    assert records[("example.org.", "MX")] == [f"10 {HOST}."]
    assert records[("_imaps._tcp.example.org.", "SRV")] == [f"0 1 {p['imaps']} {HOST}."]
    assert records[("_imap._tcp.example.org.", "SRV")] == [f"10 1 {p['imap']} {HOST}."]
    assert records[("_pop3s._tcp.example.org.", "SRV")] == records[("_pop3._tcp.example.org.", "SRV")] \
        == ["0 0 0 ."]
    assert records[("_submissions._tcp.example.org.", "SRV")] == [f"0 1 {p['submissions']} {HOST}."]
    assert records[("_submission._tcp.example.org.", "SRV")] == ["0 0 0 ."]  # on loopback only
    assert records[("_sieve._tcp.example.org.", "SRV")] == [f"0 1 {p['sieve']} {HOST}."]
    for kind in ("caldav", "carddav"):
        assert records[(f"_{kind}s._tcp.example.org.", "SRV")] == [f"0 1 {p['https']} {HOST}."]
        assert records[(f"_{kind}s._tcp.example.org.", "TXT")] == ['"path=/dav/"']
        assert records[(f"_{kind}._tcp.example.org.", "SRV")] == ["0 0 0 ."]
    assert records[("autoconfig.example.org.", "CNAME")] == [f"{HOST}."]
    # where /.well-known/caldav leads is the TXT path
    status, headers, _ = get(served, "/.well-known/caldav")
    assert status == 301 and headers["location"] == "/dav/"


def test_dns_records_refuses_a_bad_domain(served):
    done = served.cli("dns", "records", "not a domain")
    assert done.returncode == 64 and b"not a domain name" in done.stderr


# -- [autoconfig] overrides -------------------------------------------------------------------

@pytest.fixture(scope="module")
def overridden(tmp_path_factory):
    """Every listener on loopback (a proxy in front), the public side given in [autoconfig]."""
    server = HavenServer(tmp_path_factory.mktemp("haven-autoconfig-proxy"), "sqlite", {
        "autoconfig.hostname": "Mail.Example.net", "autoconfig.imap": "ssl:993, starttls:143",
        "autoconfig.pop3": "none", "autoconfig.submission": "starttls:587",
        "autoconfig.http_url": "https://mail.example.net",
    })
    server.start()
    yield server
    server.close()


def test_overrides_are_what_clients_are_told(overridden):
    _, _, body = get(overridden, TB_PATHS[0] + "?emailaddress=a%40example.org")
    root = ET.fromstring(body)
    common = {"hostname": "mail.example.net", "authentication": "password-cleartext", "username": "%EMAILADDRESS%"}
    assert servers(root, "incomingServer") == [{"type": "imap", "port": "993", "socketType": "SSL", **common},
                                               {"type": "imap", "port": "143", "socketType": "STARTTLS", **common}]
    assert servers(root, "outgoingServer") == [{"type": "smtp", "port": "587", "socketType": "STARTTLS", **common}]
    assert root.find("addressBook").findtext("serverURL") == "https://mail.example.net/dav/"
    records = zone(overridden, "example.org")
    assert records[("_imaps._tcp.example.org.", "SRV")] == ["0 1 993 mail.example.net."]
    assert records[("_submission._tcp.example.org.", "SRV")] == ["10 1 587 mail.example.net."]
    assert records[("_pop3._tcp.example.org.", "SRV")] == ["0 0 0 ."]
    assert records[("_sieve._tcp.example.org.", "SRV")] == ["0 0 0 ."]  # ManageSieve on loopback
    assert records[("_caldavs._tcp.example.org.", "SRV")] == ["0 1 443 mail.example.net."]
    address, password = overridden.new_user("proxy")
    profile = plistlib.loads(get(overridden, PROFILE, basic(address, password))[2])
    mail = profile["PayloadContent"][0]
    assert (mail["IncomingMailServerPortNumber"], mail["OutgoingMailServerPortNumber"],
            mail["OutgoingMailServerUseSSL"]) == (993, 587, False)


def test_disabled_serves_nothing_and_a_bad_key_is_named(tmp_path_factory):
    server = HavenServer(tmp_path_factory.mktemp("haven-autoconfig-off"), "sqlite", {"autoconfig.enabled": "no"})
    server.start()
    try:
        assert get(server, TB_PATHS[0])[0] == 404
        assert get(server, PROFILE)[0] == 404
        assert b"autoconfig.haven.test" not in server.cli("dns", "records", "haven.test").stdout
        bad = server.config_path.read_text() + "imap = ssl:nine\n"
        server.config_path.write_text(bad)
        done = server.cli("dns", "records", "example.org")
        assert done.returncode == 78 and b"[autoconfig] imap" in done.stderr
    finally:
        server.close()


def test_dns_records_needs_no_running_server_and_says_when_the_hostname_is_unusable(tmp_path_factory):
    server = HavenServer(tmp_path_factory.mktemp("haven-autoconfig-cli"), "sqlite",
                         {"server.hostname": "mail_host", "imap.tls_listen": "0.0.0.0:993"})
    try:
        done = server.cli("dns", "records", "example.org")
        assert done.returncode == 78 and b"[server] hostname" in done.stderr and b"[autoconfig] hostname" in done.stderr
        server.config_path.write_text(server.config_path.read_text() + "[autoconfig]\nhostname = mail.example.org\n")
        records = zone(server, "example.org")
        assert records[("_imaps._tcp.example.org.", "SRV")] == ["0 1 993 mail.example.org."]
        assert records[("_imap._tcp.example.org.", "SRV")] == ["0 0 0 ."]  # [imap] listen is on loopback
    finally:
        server.close()


# -- Microsoft Autodiscover -------------------------------------------------------------------

AD_NS = "{http://schemas.microsoft.com/exchange/autodiscover/responseschema/2006}"
MOBILESYNC = "http://schemas.microsoft.com/exchange/autodiscover/mobilesync/responseschema/2006"
OUTLOOK = "http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a"


def autodiscover_request(address: str, schema: str) -> bytes:
    family = "mobilesync" if "mobilesync" in schema else "outlook"
    return (f'<?xml version="1.0" encoding="utf-8"?>\r\n<Autodiscover xmlns="http://schemas.microsoft.com/'
            f'exchange/autodiscover/{family}/requestschema/2006"><Request><EMailAddress>{address}</EMailAddress>'
            f'<AcceptableResponseSchema>{schema}</AcceptableResponseSchema></Request></Autodiscover>').encode()


def post(server, path, body: bytes, headers=None):
    conn = http.client.HTTPConnection(*server.http, timeout=30)
    try:
        conn.request("POST", path, body=body, headers={"Content-Type": "text/xml", **(headers or {})})
        resp = conn.getresponse()
        return resp.status, dict((k.lower(), v) for k, v in resp.getheaders()), resp.read()
    finally:
        conn.close()


def _texts(root, ns: str) -> dict:
    return {el.tag.replace(ns, ""): el.text for el in root.iter() if el.text and el.text.strip()}


def test_autodiscover_outlook_gets_the_published_servers(served):
    p = served.ports
    address, password = served.new_user("outlook")
    for path in ("/autodiscover/autodiscover.xml", "/Autodiscover/Autodiscover.xml", "/AUTODISCOVER/autodiscover.XML"):
        status, headers, body = post(served, path, autodiscover_request(address, OUTLOOK), basic(address, password))
        assert status == 200 and headers["content-type"].startswith("text/xml"), (path, status, body)
        root = ET.fromstring(body)
        assert root.tag == AD_NS + "Autodiscover"
        ns = "{%s}" % OUTLOOK
        protocols = {pr.findtext(ns + "Type"): {c.tag.replace(ns, ""): c.text for c in pr}
                     for pr in root.iter(ns + "Protocol")}
        assert set(protocols) == {"IMAP", "SMTP"}  # no POP3 listener published in this setup
        assert (protocols["IMAP"]["Server"], protocols["IMAP"]["Port"], protocols["IMAP"]["Encryption"]) == \
            (HOST, str(p["imaps"]), "SSL")
        assert (protocols["SMTP"]["Port"], protocols["SMTP"]["LoginName"]) == (str(p["submissions"]), address)
        assert password.encode() not in body


def test_autodiscover_needs_a_login_and_answers_only_for_it(served):
    address, password = served.new_user("ad")
    status, headers, _ = post(served, "/autodiscover/autodiscover.xml", autodiscover_request(address, OUTLOOK))
    assert status == 401 and headers["www-authenticate"].startswith("Basic")
    assert post(served, "/autodiscover/autodiscover.xml", autodiscover_request(address, OUTLOOK),
                basic(address, "wrong"))[0] == 401
    other, _ = served.new_user("ad-other")
    status, _, body = post(served, "/autodiscover/autodiscover.xml", autodiscover_request(other, MOBILESYNC),
                           basic(address, password))
    assert status == 200 and other.encode() not in body  # about the account that logged in, only
    assert _texts(ET.fromstring(body), "{%s}" % MOBILESYNC)["EMailAddress"] == address


def test_autodiscover_without_activesync(tmp_path_factory):
    server = HavenServer(tmp_path_factory.mktemp("haven-no-eas"), "sqlite", {"activesync.enabled": "no"})
    server.start()
    try:
        address, password = server.new_user("noeas")
        status, _, body = post(server, "/autodiscover/autodiscover.xml", autodiscover_request(address, MOBILESYNC),
                               basic(address, password))
        # a phone is told ActiveSync is not offered here (it asks for IMAP settings instead)
        assert status == 200 and _texts(ET.fromstring(body), AD_NS)["ErrorCode"] == "601"
    finally:
        server.close()


@pytest.mark.parametrize("body", [b"", b"not xml", b"<Other/>",
                                  b'<!DOCTYPE a [<!ENTITY b "c">]><Autodiscover>&b;</Autodiscover>',
                                  b"<Autodiscover>" * 5000])
def test_autodiscover_bad_requests_get_an_error_document(served, body):
    address, password = served.new_user("adbad")
    status, _, answer = post(served, "/autodiscover/autodiscover.xml", body, basic(address, password))
    assert status == 200, answer
    assert _texts(ET.fromstring(answer), AD_NS)["ErrorCode"] == "600"


def test_autodiscover_methods_and_schemas(served):
    address, password = served.new_user("admeth")
    assert get(served, "/autodiscover/autodiscover.xml", basic(address, password))[0] == 405
    status, _, answer = post(served, "/autodiscover/autodiscover.xml",
                             autodiscover_request(address, "http://example.org/other/schema"),
                             basic(address, password))
    assert status == 200 and _texts(ET.fromstring(answer), AD_NS)["ErrorCode"] == "601"
    assert post(served, "/autodiscover/other.xml", b"", basic(address, password))[0] == 404


def test_autodiscover_tells_a_phone_the_activesync_url(tmp_path_factory):
    server = HavenServer(tmp_path_factory.mktemp("haven-eas-ad"), "sqlite", {
        "activesync.enabled": "yes", "activesync.public_url": "https://eas.example.net/Microsoft-Server-ActiveSync"})
    server.start()
    try:
        address, password = server.new_user("phone")
        status, _, body = post(server, "/Autodiscover/Autodiscover.xml", autodiscover_request(address, MOBILESYNC),
                               basic(address, password))
        assert status == 200, body
        texts = _texts(ET.fromstring(body), "{%s}" % MOBILESYNC)
        assert texts["Type"] == "MobileSync" and texts["EMailAddress"] == address
        assert texts["Url"] == texts["Name"] == "https://eas.example.net/Microsoft-Server-ActiveSync"
    finally:
        server.close()
