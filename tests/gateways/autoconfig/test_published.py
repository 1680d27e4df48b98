"""What clients are told (gateways/autoconfig/published.py), from listeners and [autoconfig]
values alone: the rules every document and DNS line is built on, including the cases the
served tests (test_autoconfig.py) do not start a server for."""

from __future__ import annotations

import plistlib
import xml.etree.ElementTree as ET

import pytest

from gateways.autoconfig import (Endpoint, ServiceListeners, client_config, mobileconfig, publish, records)
from gateways.common.errors import StartupError

NET = "192.0.2.7"


def pub(settings=None, hostname="mail.example.net", **listeners):
    return publish(listeners, settings or {}, hostname=hostname, dav_path="/dav/")


def test_tls_first_then_starttls_and_loopback_listeners_are_not_published():
    p = pub(imap=ServiceListeners((NET, 143), ("0.0.0.0", 993)),
            pop3=ServiceListeners(("127.0.0.1", 110), ("::1", 995)),
            submission=ServiceListeners(("localhost", 587), ("::", 465)),
            managesieve=ServiceListeners(("[::1]".strip("[]"), 4190)))
    assert p.imap == (Endpoint("mail.example.net", 993, "SSL"), Endpoint("mail.example.net", 143, "STARTTLS"))
    assert p.pop3 == () and p.managesieve == ()
    assert p.submission == (Endpoint("mail.example.net", 465, "SSL"),)
    assert p.http_url is None and p.dav_url is None and not p.enabled


@pytest.mark.parametrize("http, mode, url, dav", [
    (ServiceListeners((NET, 8080), (NET, 8443)), "loopback", "https://mail.example.net:8443",
     "https://mail.example.net:8443/dav/"),
    (ServiceListeners((NET, 80), None, "loopback"), "loopback", "http://mail.example.net", None),
    (ServiceListeners((NET, 80), None, "no"), "no", "http://mail.example.net", None),
    (ServiceListeners((NET, 8080), None, "yes"), "yes", "http://mail.example.net:8080",
     "http://mail.example.net:8080/dav/"),
    (ServiceListeners(("127.0.0.1", 8080), None, "yes"), "yes", None, None),
])
def test_dav_is_published_only_where_a_remote_client_may_log_in(http, mode, url, dav):
    p = pub(http=http)
    assert (p.http_url, p.dav_url, p.enabled) == (url, dav, True)
    xml = ET.fromstring(client_config(p, "example.org"))
    assert [e.findtext("serverURL") for e in xml.iter("calendar")] == ([dav] if dav else [])
    profile = plistlib.loads(mobileconfig(p, "a@example.org"))
    assert {pl["PayloadType"] for pl in profile["PayloadContent"]} == (
        {"com.apple.caldav.account", "com.apple.carddav.account"} if dav else set())
    lines = records(p, "example.org")
    plain_srv = [line for line in lines if line.startswith("_caldav._tcp.")]
    assert plain_srv[0].split()[-4:] == (["0", "1", "8080", "mail.example.net."] if dav and dav.startswith("http:")
                                         else ["0", "0", "0", "."])


def test_overrides_and_the_public_hostname():
    p = pub({"hostname": "Mail.Example.NET.", "imap": "starttls:143 ssl:993", "pop3": "none",
             "submission": "tls:465,starttls:587", "managesieve": "starttls:4190",
             "http_url": "https://webmail.example.net:8443/"},
            hostname="internal", imap=ServiceListeners((NET, 1143)), pop3=ServiceListeners((NET, 110)),
            http=ServiceListeners(("127.0.0.1", 8080)))
    host = "mail.example.net"
    assert p.hostname == host
    assert p.imap == (Endpoint(host, 143, "STARTTLS"), Endpoint(host, 993, "SSL"))  # the admin's order
    assert p.pop3 == ()
    assert p.submission == (Endpoint(host, 465, "SSL"), Endpoint(host, 587, "STARTTLS"))
    assert p.managesieve == (Endpoint(host, 4190, "STARTTLS"),)
    assert (p.http_url, p.dav_url, p.enabled) == ("https://webmail.example.net:8443",
                                                  "https://webmail.example.net:8443/dav/", True)
    assert not pub({"enabled": "no"}, http=ServiceListeners((NET, 443))).enabled


@pytest.mark.parametrize("key, value", [
    ("imap", "993"), ("imap", "ssl:0"), ("imap", "plain:143"), ("imap", "ssl:99999"), ("managesieve", "ssl:4190"),
    ("http_url", "ftp://mail.example.net"), ("http_url", "https://mail.example.net/prefix/"),
    ("http_url", "https://user@mail.example.net"), ("http_url", "https://mail.example.net:99999"),
    ("hostname", "not a host"), ("enabled", "maybe"),
])
def test_a_bad_value_names_its_key(key, value):
    with pytest.raises(StartupError, match=rf"\[autoconfig\] {key}"):
        pub({key: value}, http=ServiceListeners((NET, 443)))


def test_a_bad_server_hostname_publishes_nothing_but_does_not_stop_start_up():
    p = pub(hostname="under_score.example", imap=ServiceListeners((NET, 993)), http=ServiceListeners((NET, 443)))
    assert "[server] hostname" in p.unusable and "[autoconfig] hostname" in p.unusable
    assert (p.imap, p.http_url, p.enabled) == ((), None, False)
    assert pub({"hostname": "mail.example.net"}, hostname="under_score.example").unusable is None
