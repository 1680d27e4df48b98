"""The byte-level pieces the LMTP and submission gateways share (gateways/common/smtpwire.py): DATA
decoding and dot-stuffing, trace headers, addresses and ``SIZE=``, reply codes.

Both protocols are tested over real sockets in tests/gateways/lmtp and tests/gateways/submission
(and the shared protocol engine, gateways/common/smtpserver.py, with them); these pin down the parts
whose corner cases are easier to enumerate (and fuzz) without a socket.
"""

from __future__ import annotations

import random
import re

import pytest

from gateways.common.smtpwire import (DataDecoder, declared_size, dot_stuff, enhanced_code, is_unsafe_address,
                               multiline_reply, peer_ip, peer_name, rcpt_error, received_header, return_path,
                               with_enhanced_code, with_protocol)
from store import errors

from .sink import RecordingSink


def decode(stream: bytes, limit=None, chunks=None):
    """Feed ``stream`` whole, or cut at the offsets in ``chunks``; returns (content, rest, dec)."""
    dec = DataDecoder(limit)
    cuts = [0] + sorted(chunks or []) + [len(stream)]
    rest = None
    for a, b in zip(cuts, cuts[1:]):
        rest = dec.feed(stream[a:b])
        if rest is not None:
            rest += stream[b:]
            break
    return (dec.content() if dec.done else None), rest, dec


def crlf_normalized(message: bytes) -> bytes:
    """What Haven stores for ``message``: bare LF as CRLF, bare CR kept, a final CRLF."""
    message = re.sub(rb"(?<!\r)\n", b"\r\n", message)
    return message if not message or message.endswith(b"\r\n") else message + b"\r\n"


# -- DATA ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("stream, content, rest", [
    (b".\r\n", b"", b""),
    (b"a\r\n.\r\n", b"a\r\n", b""),
    (b"a\r\n.\r\nQUIT\r\n", b"a\r\n", b"QUIT\r\n"),
    # RFC 5321 §4.5.2: one leading dot removed, anywhere a line starts
    (b"..\r\n.\r\n", b".\r\n", b""),
    (b"...x\r\n..\r\n.\r\n", b"..x\r\n.\r\n", b""),
    (b"a\r\n.b\r\n.\r\n", b"a\r\nb\r\n", b""),
    (b".\rx\r\n.\r\n", b"\rx\r\n", b""),
    # bare LF becomes CRLF; a dot after a bare LF is content, not a line start
    (b"a\nb\r\n.\r\n", b"a\r\nb\r\n", b""),
    (b"a\n..b\r\n.\r\n", b"a\r\n..b\r\n", b""),
    (b"\n\n\r\n.\r\n", b"\r\n\r\n\r\n", b""),
    # bare CR is kept; CR CR LF is a bare CR then a line end
    (b"a\rb\r\r\n.\r\n", b"a\rb\r\r\n", b""),
    # 8-bit and NUL octets pass untouched
    (b"\xff\x00\xc3\xa9\r\n.\r\n", b"\xff\x00\xc3\xa9\r\n", b""),
    # all of it at once: only CRLF "." CRLF ends the data
    (b"a\n.\nb\r.\rc\n.\r\nd\r\n..e\r\n.\r\n", b"a\r\n.\r\nb\r.\rc\r\n.\r\nd\r\n.e\r\n", b""),
])
def test_decoding(stream, content, rest):
    got, got_rest, _ = decode(stream)
    assert (got, got_rest) == (content, rest)
    assert decode(stream, chunks=range(1, len(stream)))[:2] == (content, rest)  # octet by octet


@pytest.mark.parametrize("smuggle", [
    b"\n.\n", b"\r.\r", b"\n.\r\n", b"\r.\n", b"\r\n.\n", b"\r\n.\r", b"\n.\r",
])
def test_smuggling_sequences_do_not_end_the_data(smuggle):
    # CVE-2023-51766 family: only CRLF "." CRLF ends the data, everything else is content.
    inner = b"MAIL FROM:<evil@example.net>\r\nRCPT TO:<victim@example.org>\r\nDATA\r\n"
    stream = b"Subject: one\r\n\r\nbody" + smuggle + inner + b"second body\r\n.\r\nQUIT\r\n"
    content, rest, _ = decode(stream)
    assert rest == b"QUIT\r\n"
    assert b"MAIL FROM:<evil@example.net>\r\n" in content
    assert content.endswith(b"second body\r\n")


def test_bare_lf_normalization_is_idempotent():
    text = b"a\nb\r\nc\r\r\nd\re\n"
    once, _, _ = decode(text + b"\r\n.\r\n")
    twice, _, _ = decode(once + b".\r\n")
    assert once == twice == b"a\r\nb\r\nc\r\r\nd\re\r\n\r\n"


def test_chunking_never_changes_the_result():
    rnd = random.Random(2033)
    alphabet = [b".", b"\r", b"\n", b"\r\n", b"a", b"\xff", b"..", b"\r\n.", b"\n.\n"]
    for _ in range(400):
        body = b"".join(rnd.choice(alphabet) for _ in range(rnd.randrange(0, 40)))
        stream = body + b"\r\n.\r\n" + b"NOOP\r\n"
        whole = decode(stream)
        assert whole[0] is not None
        cuts = rnd.sample(range(1, len(stream)), min(len(stream) - 1, rnd.randrange(0, 8)))
        assert decode(stream, chunks=cuts)[:2] == whole[:2], (stream, cuts)
        bytewise = decode(stream, chunks=range(1, len(stream)))
        assert bytewise[:2] == whole[:2], stream


def test_size_limit_discards_but_reads_to_the_end():
    line = b"x" * 98 + b"\r\n"
    dec = DataDecoder(limit=1000)
    for _ in range(50):
        assert dec.feed(line) is None
    assert dec.too_big and dec.size >= 4998  # the last CRLF may still be held back
    assert sum(map(len, dec._parts)) == 0  # nothing kept once over the limit
    assert dec.feed(b".\r\nRSET\r\n") == b"RSET\r\n"
    assert dec.size == 5000 and dec.content() == b""


def test_size_limit_is_inclusive():
    content, _, dec = decode(b"x" * 8 + b"\r\n.\r\n", limit=10)
    assert content == b"xxxxxxxx\r\n" and not dec.too_big
    _, _, dec = decode(b"x" * 9 + b"\r\n.\r\n", limit=10)
    assert dec.too_big


def test_feed_after_end_and_content_before_end_are_errors():
    dec = DataDecoder()
    with pytest.raises(ValueError):
        dec.content()
    dec.feed(b".\r\n")
    with pytest.raises(ValueError):
        dec.feed(b"more")


def test_dot_stuffing_round_trip():
    rnd = random.Random(5321)
    alphabet = [b".", b"a", b"\xe9", b" ", b"\r", b"\n", b"\r\n", b"\r\n.", b".."]
    for _ in range(400):
        message = b"".join(rnd.choice(alphabet) for _ in range(rnd.randrange(0, 30)))
        stream = dot_stuff(message)
        assert b"\n" not in stream.replace(b"\r\n", b"")  # no bare LF goes out
        content, rest, _ = decode(stream, chunks=rnd.sample(range(1, len(stream)), min(len(stream) - 1, 3)))
        assert (content, rest) == (crlf_normalized(message), b""), message


# -- addresses and SIZE= -------------------------------------------------------------------------

@pytest.mark.parametrize("address, unsafe", [
    ("a@example.org", False),
    ("j\u00f6rg@b\u00fccher.example", False),  # SMTPUTF8
    ("a\rb@example.org", True),
    ("a\x00b@example.org", True),
    ("a\x7f@example.org", True),
    (b"\xff\xfe@example.org".decode("utf-8", "surrogateescape"), True),  # not UTF-8 on the wire
])
def test_unsafe_addresses(address, unsafe):
    assert is_unsafe_address(address) is unsafe


def test_declared_size():
    assert declared_size(["BODY=8BITMIME", "SIZE=1234"]) == 1234
    assert declared_size(["size=7"]) == 7
    assert declared_size(["SMTPUTF8"]) is None and declared_size(["SIZE=x"]) is None


# -- the peer and the trace headers --------------------------------------------------------------

@pytest.mark.parametrize("peer, ip, name, text", [
    (("192.0.2.7", 40000), "192.0.2.7", "192.0.2.7", b"[192.0.2.7]"),
    (("2001:db8::1", 1, 0, 0), "2001:db8::1", "2001:db8::1", b"[IPv6:2001:db8::1]"),
    (("::ffff:192.0.2.1", 1, 0, 0), "192.0.2.1", "192.0.2.1", b"[192.0.2.1]"),
    (("fe80::1%eth0", 1, 0, 2), "fe80::1", "fe80::1", b"[IPv6:fe80::1]"),
    (("not-an-ip", 1), None, "unknown", b"(unknown)"),
    ("", None, "local", b"(local socket)"),  # AF_UNIX
    (None, None, "local", b"(local socket)"),
])
def test_peer(peer, ip, name, text):
    assert peer_ip(peer) == ip and peer_name(peer) == name
    raw = received_header(helo="h", peer=peer, hostname="x", queue_id="Q", protocol="LMTP")
    assert text in raw.split(b"\r\n")[0]


def test_received_header():
    raw = received_header(helo="mx.example.net", peer=("192.0.2.7", 40000), hostname="haven.example.org",
                          queue_id="ABCDEF012345", protocol="LMTP", date=0)
    lines = raw.split(b"\r\n")
    assert lines[0] == b"Received: from mx.example.net ([192.0.2.7])"
    assert lines[1] == b"\tby haven.example.org (Haven) with LMTP id ABCDEF012345;"
    assert re.fullmatch(rb"\t\w{3}, \d\d \w{3} 19(69|70) \d\d:\d\d:\d\d [+-]\d{4}", lines[2])
    assert lines[3:] == [b""]  # CRLF-terminated, nothing after
    assert b" for " not in raw  # one blob for all recipients


@pytest.mark.parametrize("helo, shown", [
    ("evil\rBcc: x (y);\x00", b"evil?Bcc:?x??y???"),
    ("pc (evil)\r\nX: y", b"pc??evil???X:?y"),
    ("", b"unknown"),
])
def test_received_header_cannot_be_injected_through_the_greeting(helo, shown):
    raw = received_header(helo=helo, peer=None, hostname="h (x)", queue_id="Q", protocol="UTF8LMTP")
    assert raw.count(b"\r") == raw.count(b"\r\n") == 3
    assert raw.startswith(b"Received: from " + shown + b" (local socket)\r\n\tby h??x? (Haven) with UTF8LMTP ")


def test_return_path():
    assert return_path("sender@example.net") == b"Return-Path: <sender@example.net>\r\n"
    assert return_path("") == return_path("<>") == b"Return-Path: <>\r\n"  # a bounce
    assert return_path("a\r\nb@c") == b"Return-Path: <a??b@c>\r\n"
    assert return_path("j\u00f6rg@b\u00fccher.example") == "Return-Path: <j\u00f6rg@b\u00fccher.example>\r\n".encode()


def test_with_protocol():
    # RFC 3848 and RFC 6531 §3.7.3
    assert [with_protocol(t, a, u) for t, a, u in [(False, False, False), (False, True, False),
                                                   (True, False, False), (True, True, False), (True, True, True)]] \
        == ["ESMTP", "ESMTPA", "ESMTPS", "ESMTPSA", "UTF8SMTPSA"]
    assert [with_protocol(False, False, u, lmtp=True) for u in (False, True)] == ["LMTP", "UTF8LMTP"]


# -- replies -------------------------------------------------------------------------------------

@pytest.mark.parametrize("reply, expected", [
    ("250 OK", "250 2.0.0 OK"),
    ("250 2.1.5 Ok", "250 2.1.5 Ok"),
    ('500 Error: command "X" not recognized', '500 5.5.2 Error: command "X" not recognized'),
    ("503 Error: nested MAIL command", "503 5.5.1 Error: nested MAIL command"),
    ("421 4.7.0 MAIL sent too many times", "421 4.7.0 MAIL sent too many times"),
    ("530 5.7.0 Authentication required", "530 5.7.0 Authentication required"),
    ("535 Bad", "535 5.7.8 Bad"),
    ("220 host Haven LMTP", "220 host Haven LMTP"),
    ("354 End data with <CR><LF>.<CR><LF>", "354 End data with <CR><LF>.<CR><LF>"),
    ("221 Bye", "221 2.0.0 Bye"),
    ("599 odd", "599 5.0.0 odd"),
])
def test_enhanced_codes(reply, expected):
    assert with_enhanced_code(reply) == expected


def test_enhanced_code_of_a_reply():
    assert enhanced_code(550, "5.1.1 no") == "5.1.1"
    assert enhanced_code(451, "5.1.1 odd") == "4.0.0"  # a code of another class does not count
    assert enhanced_code(554, "no code") == "5.0.0" and enhanced_code(421, "") == "4.0.0"


@pytest.mark.parametrize("err, reply", [
    (errors.NotFound(), "550 5.1.1 <a@b>: Recipient address rejected: User unknown"),
    (errors.InvalidInput(), "553 5.1.3 <a@b>: Recipient address rejected: bad address syntax"),
    (errors.OverQuota(), "552 5.2.2 <a@b>: Recipient address rejected: mailbox full"),
    (errors.PermissionDenied(), "550 5.7.1 <a@b>: Recipient address rejected: delivery not permitted"),
    (errors.TooBig(), "451 4.3.0 <a@b>: Temporary failure, try again later"),
    (errors.TemporaryFailure(), "451 4.3.0 <a@b>: Temporary failure, try again later"),
    (RuntimeError(), "451 4.3.0 <a@b>: Temporary failure, try again later"),
])
def test_rcpt_error(err, reply):
    # A store failure is never a 5xx: the client keeps the message and retries.
    assert rcpt_error(err, "a@b") == reply


def test_multiline_reply():
    assert multiline_reply(250, ["h", "PIPELINING", "SIZE 0"]) == ["250-h", "250-PIPELINING", "250 SIZE 0"]
    assert multiline_reply(250, ["h"]) == ["250 h"]


# -- imports -------------------------------------------------------------------------------------


def test_data_decoder_spills_past_its_threshold_with_the_prefix_first():
    sinks = []

    def spill():
        sinks.append(RecordingSink())
        return sinks[-1]
    body = b"".join(b".line %05d\r\n" % i for i in range(2000))  # dot-stuffed on the wire below
    wire = b"".join(b"." + line + b"\r\n" for line in body.split(b"\r\n")[:-1]) + b".\r\n"
    decoder = DataDecoder(None, b"Return-Path: <a@b>\r\n", spill, spill_at=1000)
    for i in range(0, len(wire), 333):
        rest = decoder.feed(wire[i:i + 333])
    assert rest == b"" and decoder.done
    [sink] = sinks
    assert decoder.content() is sink and bytes(sink.data) == b"Return-Path: <a@b>\r\n" + body
    assert decoder.size == len(body) and not sink.closed
    # a small message stays in memory, prefix included
    small = DataDecoder(None, b"P: 1\r\n", spill, spill_at=1000)
    assert small.feed(b"hi\r\n.\r\n") == b"" and small.content() == b"P: 1\r\nhi\r\n" and len(sinks) == 1


def test_data_decoder_over_its_limit_closes_the_spill():
    sinks = []
    decoder = DataDecoder(5000, b"", lambda: sinks.append(RecordingSink()) or sinks[-1], spill_at=1000)
    for _ in range(100):
        assert decoder.feed(b"y" * 98 + b"\r\n") is None
    assert decoder.too_big and sinks[0].closed and decoder.sink is None
    assert decoder.feed(b".\r\n") == b"" and decoder.content() == b""


def test_simple_paths_parse_as_the_email_parser_does():
    """MAIL/RCPT's fast path for <dot-atom@host> gives what aiosmtpd's parser gives (address and
    the parameters after it); any other shape goes to the parser."""
    import random
    from email._header_value_parser import get_angle_addr
    from types import SimpleNamespace

    from gateways.common.smtpserver import SMTPServerBase

    server = SimpleNamespace(local_part_limit=0)
    rng = random.Random(5321)
    cases = ["<a@b.c>", "<a@b.c> SIZE=10 BODY=8BITMIME", "<a@b> (comment) SIZE=1", "<a..b@c>", '<"q"@b>',
             "<a@[1.2.3.4]>", "<@relay:a@b>", "<ü@b>"]
    for _ in range(20000):
        cases.append("".join(rng.choice("ab.@<>()\" \t-+[]:\\éZ9") for _ in range(rng.randint(1, 14))))
        cases.append("<" + "".join(rng.choice("ab.-+@9") for _ in range(rng.randint(1, 10))) + ">"
                     + rng.choice(["", " ", " X=1", "(c)", " (c) Y", "\t", " \tZ=1"]))
    fast = 0
    for arg in cases:
        if not arg.lstrip().startswith("<"):
            continue
        try:
            address, rest = get_angle_addr(arg.lstrip())
            want = (address.addr_spec, rest)
        except Exception:  # aiosmtpd let IndexErrors through: a 421 and a dropped connection
            want = (None, None)
        got = SMTPServerBase._getaddr(server, arg)
        assert got == want, arg
        fast += got[0] is not None
    assert fast > 1000
