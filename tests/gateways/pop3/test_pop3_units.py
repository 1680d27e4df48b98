"""The POP3 gateway's pure parts: line reader, command parser, SASL PLAIN, dot-stuffing, TOP,
the maildrop snapshot, the [pop3] settings, the import rule.  No server needed."""

from __future__ import annotations

import base64
import random

import pytest

from gateways.pop3 import POP3Config
from gateways.pop3.maildrop import Maildrop, MaildropError
from gateways.pop3.parser import (TOO_LONG, BodyEncoder, LineReader, ParseError, decode_sasl_plain, message_body,
                                  parse_command, parse_number, top_body)
from gateways.common.plaintext import is_local
from gateways.common.errors import StartupError
from store.interfaces import MessageMeta


def test_line_reader_splits_and_limits():
    r = LineReader(10)
    assert r.feed(b"US") == []
    assert r.feed(b"ER a\r\nNOOP\nST") == [b"USER a", b"NOOP"]
    assert r.feed(b"AT\r\n") == [b"STAT"]
    assert r.feed(b"0123456789\r\n") == [b"0123456789"]  # exactly the limit
    assert r.feed(b"0123456789A\r\nNOOP\r\n") == [TOO_LONG, b"NOOP"]
    assert r.feed(b"x" * 30) == [TOO_LONG]  # reported once, skipped to the end of the line
    assert r.feed(b"y" * 30) == []
    assert r.feed(b"z\r\nQUIT\r\n") == [b"QUIT"]
    r.feed(b"half")
    r.reset()
    assert r.feed(b"NOOP\r\n") == [b"NOOP"]


def test_line_reader_fuzz_never_loses_sync():
    rnd = random.Random(7)
    for _ in range(200):
        stream = b"".join(bytes(rnd.randrange(256) for _ in range(rnd.randrange(40))) + b"\r\n"
                          for _ in range(5))
        r = LineReader(16)
        out = []
        i = 0
        while i < len(stream):
            step = rnd.randrange(1, 9)
            out += r.feed(stream[i:i + step])
            i += step
        assert len(out) == stream.count(b"\n")
        for item in out:
            assert item is TOO_LONG or len(item) <= 16
            if item is not TOO_LONG:
                try:
                    parse_command(item)
                except ParseError:
                    pass


def test_parse_command():
    c = parse_command(b"list 1")
    assert (c.keyword, c.args) == ("LIST", ("1",))
    assert parse_command(b"PASS  my secret ").rest == " my secret "  # RFC 1939 §7: spaces kept
    assert parse_command(b"TOP  1   2").args == ("1", "2")
    for bad in (b"", b" ", b"\x00\xff", b"LI$T", b"AVERYLONGKEYWORD"):
        with pytest.raises(ParseError):
            parse_command(bad)


def test_parse_number():
    assert parse_number("7") == 7
    assert parse_number("0", zero=True) == 0
    for bad in ("0", "-1", "+1", "1.0", "x", "", "1234567890", "\u0661"):
        with pytest.raises(ParseError):
            parse_number(bad)


def test_sasl_plain():
    assert decode_sasl_plain(base64.b64encode(b"\0u@x\0p w")) == ("", "u@x", "p w")
    assert decode_sasl_plain(b" " + base64.b64encode(b"a\0u\0p") + b" ") == ("a", "u", "p")
    for bad in (b"=", b"%%%", base64.b64encode(b"u\0p"), base64.b64encode(b"a\0b\0c\0d")):
        with pytest.raises(ParseError):
            decode_sasl_plain(bad)


@pytest.mark.parametrize("raw, wire", [
    (b"", b".\r\n"),
    (b"a\r\n", b"a\r\n.\r\n"),
    (b".\r\n", b"..\r\n.\r\n"),
    (b"a\r\n.b\r\n..c\r\n", b"a\r\n..b\r\n...c\r\n.\r\n"),
    (b"no final CRLF", b"no final CRLF\r\n.\r\n"),
    (b"a\r\n.", b"a\r\n..\r\n.\r\n"),
    (b"a\n.b\nc", b"a\r\n..b\r\nc\r\n.\r\n"),  # bare LF: CRLF on the wire, stuffed after it too
    (b"a\r.b\r\n", b"a\r.b\r\n.\r\n"),  # bare CR is not a line end
    (b"a\rb", b"a\rb\r\n.\r\n"),
])
def test_message_body(raw, wire):
    assert message_body(raw) == wire


def test_top_body():
    msg = b"A: 1\r\nB: 2\r\n\r\nl1\r\n.l2\r\nl3"
    assert top_body(msg, 0) == b"A: 1\r\nB: 2\r\n\r\n.\r\n"
    assert top_body(msg, 2) == b"A: 1\r\nB: 2\r\n\r\nl1\r\n..l2\r\n.\r\n"
    assert top_body(msg, 3) == top_body(msg, 99) == message_body(msg)
    assert top_body(b"A: 1\r\n", 5) == b"A: 1\r\n.\r\n"  # header only
    assert top_body(b"\r\nbody\r\n", 0) == b"\r\n.\r\n"  # empty header
    assert top_body(b"A: 1\n\nl1\nl2\n", 1) == b"A: 1\r\n\r\nl1\r\n.\r\n"


def test_maildrop():
    md = Maildrop(5, 1234, [MessageMeta(uid, 1, frozenset(), 0, size)
                            for uid, size in ((3, 100), (7, 250), (9, 50))])
    assert (md.count, md.octets, md.summary()) == (3, 400, "3 messages (400 octets)")
    assert md.uidl(2) == "1234.7"
    assert md.uid_listing() == [b"1 1234.3", b"2 1234.7", b"3 1234.9"]
    md.mark_deleted(2)
    assert (md.count, md.octets) == (2, 150)
    assert md.scan_listing() == [b"1 100", b"3 50"]
    assert md.uid_listing() == [b"1 1234.3", b"3 1234.9"]
    for n in (0, 2, 4):
        with pytest.raises(MaildropError):
            md.uid(n)
    md.mark_deleted(3)
    assert md.deleted_uids() == [7, 9]
    md.reset()
    assert md.deleted_uids() == [] and md.count == 3
    empty = Maildrop(1, 1, [])
    assert (empty.summary(), empty.scan_listing()) == ("0 messages (0 octets)", [])


def test_settings():
    c = POP3Config.from_settings({"listen": "127.0.0.1:1110", "tls_listen": ""})
    assert (c.max_line, c.idle_timeout, c.allow_plaintext_auth, c.max_bad_commands) == (8192, 600, "loopback", 20)
    c = POP3Config.from_settings({"allow_plaintext_auth": "no", "idle_timeout": "15", "max_line_length": "1000",
                                  "max_bad_commands": "3"})
    assert (c.max_line, c.idle_timeout, c.allow_plaintext_auth, c.max_bad_commands) == (1000, 900, "no", 3)
    for key, value in (("idle_timeout", "ten"), ("idle_timeout", "0"), ("max_line_length", "10"),
                       ("max_bad_commands", "1.5"), ("allow_plaintext_auth", "maybe")):
        with pytest.raises(StartupError, match=r"\[pop3\] %s" % key):
            POP3Config.from_settings({key: value})


def test_is_local():
    from twisted.internet.address import IPv4Address, IPv6Address, UNIXAddress
    assert is_local(IPv4Address("TCP", "127.0.0.1", 1)) and is_local(IPv4Address("TCP", "127.9.9.9", 1))
    assert is_local(IPv6Address("TCP", "::1", 1)) and is_local(IPv6Address("TCP", "::ffff:127.0.0.1", 1))
    assert is_local(UNIXAddress(b"/run/x.sock"))
    assert not is_local(IPv4Address("TCP", "192.0.2.7", 1))
    assert not is_local(IPv6Address("TCP", "2001:db8::1", 1))


def test_bundled_defaults_are_the_settings_defaults():
    # every key the gateway reads is in conf/haven.ini, with the default the code assumes
    import configparser
    from conf import DEFAULTS_PATH
    parser = configparser.ConfigParser(interpolation=None)
    parser.read(DEFAULTS_PATH, encoding="utf-8")
    section = dict(parser.items("pop3"))
    assert set(section) == {"listen", "tls_listen", "allow_plaintext_auth", "idle_timeout", "login_timeout",
                            "max_line_length", "max_bad_commands",
                            # read by gateways/common/connlimit.py for every gateway
                            "proxy_protocol", "max_connections_per_ip", "max_connections"}
    assert POP3Config.from_settings(section) == POP3Config()
    from gateways.common.connlimit import DEFAULT_LIMITS, ListenerPolicy
    assert ListenerPolicy.from_settings("pop3", section) == ListenerPolicy(False, *DEFAULT_LIMITS["pop3"])


def test_body_encoder_in_pieces_equals_message_body():
    """RETR of a big message is encoded piece by piece: whatever the cut (a CRLF split, a "."
    just after a cut, bare LF, bare CR), the octets are message_body's."""
    rng = random.Random(5)
    alphabet = [b".", b"\r", b"\n", b"a", b"\r\n", b"\r\n.", b"\n.", b".."]
    for _ in range(5000):
        raw = b"".join(rng.choice(alphabet) for _ in range(rng.randint(1, 40)))
        encoder, out, pos = BodyEncoder(), [], 0
        while pos < len(raw):
            n = rng.randint(1, 6)
            out.append(encoder.feed(raw[pos:pos + n]))
            pos += n
        out.append(encoder.end())
        assert b"".join(out) == message_body(raw), raw
