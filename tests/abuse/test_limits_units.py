"""The pieces behind the abuse limits, without sockets: PROXY header reading, X-Forwarded-For,
the connection gate and its rate-limited log, the settings."""

from __future__ import annotations

import logging

import pytest
from twisted.protocols.haproxy._exceptions import InvalidProxyHeader

from gateways.common.clientaddr import HeaderReader, in_networks, parse_networks, v2_client_tls
from gateways.common.connlimit import DEFAULT_LIMITS, ConnectionGate, ListenerPolicy, RefusalLog
from gateways.common.errors import StartupError
from gateways.http.site import forwarded_client
from tests.abuse.wire import v1, v2


@pytest.mark.parametrize("header", [v1("198.51.100.1", 1234), v2("198.51.100.1", 1234)])
def test_a_header_fed_byte_by_byte_is_read_once_complete(header):
    reader = HeaderReader()
    data = header + b"a LOGIN"
    for i in range(len(header) - 1):
        assert reader.feed(data[i:i + 1]) is None
    client = reader.feed(data[len(header) - 1:])
    assert (client.host, client.port, client.rest, client.tls) == ("198.51.100.1", 1234, b"a LOGIN", False)


def test_v2_tls_tlv():
    assert v2_client_tls(v2("198.51.100.1", tls=True))
    assert not v2_client_tls(v2("198.51.100.1"))
    assert HeaderReader().feed(v2("198.51.100.1", tls=True)).tls


@pytest.mark.parametrize("data", [b"GET / HTTP/1.1\r\n", b"PROXY TCP4 x y 1 2\r\n", b"PROXY " + b"1" * 200,
                                  b"\r\n\r\n\x00\r\nQUIT\n\x99\x11\x00\x0c" + b"\0" * 12])
def test_malformed_headers_raise(data):
    with pytest.raises(InvalidProxyHeader):
        HeaderReader().feed(data)


def test_ipv6_and_mapped_addresses():
    client = HeaderReader().feed(b"PROXY TCP6 ::ffff:198.51.100.3 ::1 5000 143\r\n")
    assert (client.host, client.address.host, client.address.port) == ("198.51.100.3", "198.51.100.3", 5000)
    client = HeaderReader().feed(b"PROXY TCP6 2001:db8::7 ::1 5000 143\r\n")
    assert client.address.host == "2001:db8::7" and client.address.port == 5000


def test_unknown_and_local_headers_name_nobody():
    client = HeaderReader().feed(b"PROXY UNKNOWN\r\nrest")
    assert client.host is None and client.rest == b"rest"


def test_forwarded_client_is_the_rightmost_untrusted_hop():
    trusted = parse_networks("10.0.0.0/8, 192.0.2.1", "t")
    assert forwarded_client("10.0.0.1", ["203.0.113.9, 198.51.100.1"], trusted) == "198.51.100.1"
    assert forwarded_client("10.0.0.1", ["203.0.113.9, 198.51.100.1, 10.1.1.1", "192.0.2.1"], trusted) \
        == "198.51.100.1"
    assert forwarded_client("10.0.0.1", ["10.2.2.2, 10.1.1.1"], trusted) == "10.2.2.2"  # all proxies
    assert forwarded_client("10.0.0.1", ["198.51.100.1, garbage, 10.1.1.1"], trusted) == "10.1.1.1"
    assert forwarded_client("10.0.0.1", ["198.51.100.7:5000"], trusted) == "198.51.100.7"
    assert forwarded_client("10.0.0.1", ["[2001:db8::1]"], trusted) == "2001:db8::1"


def test_networks():
    nets = parse_networks("10.0.0.0/8; 2001:db8::/32, 192.0.2.7 192.0.2.9", "[server] trusted_proxies")
    assert in_networks("192.0.2.9", nets)
    assert in_networks("10.1.2.3", nets) and in_networks("::ffff:10.1.2.3", nets)
    assert in_networks("2001:db8::5", nets) and in_networks("192.0.2.7", nets)
    assert not in_networks("192.0.2.8", nets) and not in_networks(None, nets) and not in_networks("x", nets)
    with pytest.raises(StartupError, match=r"\[server\] trusted_proxies"):
        parse_networks("10.0.0.0/8, example.net", "[server] trusted_proxies")


class Clock:
    now = 1000.0

    def __call__(self):
        return self.now


def test_gate_counts_per_address_with_exemptions(caplog):
    clock = Clock()
    gate = ConnectionGate("imap", ListenerPolicy(False, 2, 6), exempt=parse_networks("192.0.2.0/24", "x"),
                          proxies=parse_networks("10.0.0.1", "x"), refusals=RefusalLog("imap", clock=clock))
    a1, _ = gate.admit("198.51.100.1")
    a2, _ = gate.admit("::ffff:198.51.100.1")
    with caplog.at_level(logging.WARNING, logger="haven.limits"):
        assert gate.admit("198.51.100.1") == (None, "address")
        assert gate.admit("198.51.100.1") == (None, "address")
    assert len(caplog.records) == 1  # one line per address per minute
    others = [gate.admit("127.0.0.1")[0], gate.admit("192.0.2.9")[0],  # loopback, trusted_networks
              gate.admit("10.0.0.1")[0],  # a proxy carrying many clients (no PROXY header)
              gate.admit("10.0.0.1", proxied=True)[0]]  # a client a PROXY header named: counted
    assert all(others) and gate.count("10.0.0.1") == 1 and gate.open == 6
    assert gate.admit("198.51.100.2") == (None, "server")
    for admission in others:
        admission.release()
    a1.release()
    a1.release()  # once only
    assert gate.open == 1 and gate.count("198.51.100.1") == 1
    third, _ = gate.admit("198.51.100.1")
    assert third is not None
    a2.release()
    third.release()
    assert gate.count("198.51.100.1") == 0 and gate.open == 0
    clock.now += 61
    with caplog.at_level(logging.WARNING, logger="haven.limits"):
        caplog.clear()
        gate.admit("198.51.100.3")
        gate.admit("198.51.100.3")
        assert gate.admit("198.51.100.3") == (None, "address")
    assert "refused a connection from 198.51.100.3" in caplog.text


def test_refusal_log_counts_what_it_did_not_write(caplog):
    clock = Clock()
    refusals = RefusalLog("pop3", clock=clock)
    with caplog.at_level(logging.WARNING, logger="haven.limits"):
        for _ in range(5):
            refusals.note("198.51.100.1", "refused a connection from %s: too many")
        clock.now += 60
        refusals.note("198.51.100.1", "refused a connection from %s: too many")
    assert [r.getMessage() for r in caplog.records] == [
        "pop3: refused a connection from 198.51.100.1: too many",
        "pop3: refused a connection from 198.51.100.1: too many (4 more refused since the last line)"]


def test_every_gateway_section_lists_the_keys_with_the_defaults_the_code_assumes():
    from conf import load_config
    config = load_config()
    for section, (per_ip, total) in DEFAULT_LIMITS.items():
        assert ListenerPolicy.from_settings(section, config.section(section)) == ListenerPolicy(False, per_ip, total)
    assert DEFAULT_LIMITS["lmtp"][0] == 0  # an MTA delivers over many connections from one address
    assert config.get("server", "trusted_proxies") == "" and config.get("auth", "trusted_networks") == ""
    from gateways.http import HttpConfig
    assert HttpConfig.from_settings(config.section("http")) == HttpConfig()


def test_proxy_protocol_without_trusted_proxies_stops_start_up(tmp_path):
    from conf import load_config
    from gateways.service import Service
    path = tmp_path / "haven.ini"
    path.write_text("[imap]\nproxy_protocol = yes\n")
    service = Service(load_config(str(path)), reactor=None)
    from conf import parse_listen
    with pytest.raises(StartupError, match="trusted_proxies is empty"):
        service._proxy_protocol("imap", parse_listen("127.0.0.1:1143", "x"))
    path.write_text("[server]\ntrusted_proxies = 10.0.0.1\n[lmtp]\nproxy_protocol = yes\n")
    service = Service(load_config(str(path)), reactor=None)
    with pytest.raises(StartupError, match="unix socket"):
        service._proxy_protocol("lmtp", parse_listen("unix:/run/haven/lmtp.sock", "x"))
    assert service._proxy_protocol("pop3", parse_listen("127.0.0.1:1110", "x")) is False
    path.write_text("[auth]\ntrusted_networks = webmail.example\n")
    with pytest.raises(StartupError, match=r"\[auth\] trusted_networks"):
        Service(load_config(str(path)), reactor=None)


@pytest.mark.parametrize("key, value", [("max_connections", "-1"), ("max_connections_per_ip", "many"),
                                        ("proxy_protocol", "maybe")])
def test_a_bad_limit_names_its_key(key, value):
    with pytest.raises(StartupError, match=rf"\[imap\] {key}"):
        ListenerPolicy.from_settings("imap", {key: value})
