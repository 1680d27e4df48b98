"""The pure byte-level pieces of the LMTP gateway: DATA decoding, trace headers, reply codes.

The protocol itself is tested over real sockets in test_lmtp.py; these pin down the parts
whose corner cases are easier to enumerate (and fuzz) without a socket.
"""

import random
import re

import pytest

from gateways.lmtp.wire import DataDecoder, declared_size, dot_stuff, trace_headers, with_enhanced_code


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
])
def test_decoding(stream, content, rest):
    got, got_rest, _ = decode(stream)
    assert (got, got_rest) == (content, rest)


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


def test_dot_stuffing_round_trip():
    rnd = random.Random(5321)
    for _ in range(300):
        lines = [b"".join(rnd.choice([b".", b"a", b"\xe9", b" ", b"\r", b"\n"])
                          for _ in range(rnd.randrange(0, 6))) for _ in range(rnd.randrange(0, 6))]
        message = b"\r\n".join(line.replace(b"\n", b"").replace(b"\r", b"") for line in lines)
        expected = message if not message or message.endswith(b"\r\n") else message + b"\r\n"
        content, rest, _ = decode(dot_stuff(message))
        assert (content, rest) == (expected, b""), message


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


def test_feed_after_end_is_an_error():
    dec = DataDecoder()
    dec.feed(b".\r\n")
    with pytest.raises(ValueError):
        dec.feed(b"more")


def test_trace_headers():
    raw = trace_headers(mail_from="sender@example.net", helo="mx.example.net",
                        peer=("192.0.2.7", 40000), hostname="haven.example.org",
                        queue_id="ABCDEF012345", date=0)
    lines = raw.split(b"\r\n")
    assert lines[0] == b"Return-Path: <sender@example.net>"
    assert lines[1] == b"Received: from mx.example.net ([192.0.2.7])"
    assert lines[2] == b"\tby haven.example.org (Haven) with LMTP id ABCDEF012345;"
    assert re.fullmatch(rb"\t\w{3}, \d\d \w{3} 19(69|70) \d\d:\d\d:\d\d [+-]\d{4}", lines[3])
    assert lines[4:] == [b""]  # CRLF-terminated, nothing after
    assert b" for " not in raw  # one blob for all recipients


@pytest.mark.parametrize("peer, text", [
    (("2001:db8::1", 1, 0, 0), b"[IPv6:2001:db8::1]"),
    (("::ffff:192.0.2.1", 1, 0, 0), b"[192.0.2.1]"),
    ("", b"(local socket)"),
    (None, b"(local socket)"),
])
def test_trace_peer(peer, text):
    raw = trace_headers(mail_from="", helo="h", peer=peer, hostname="x", queue_id="Q")
    assert raw.startswith(b"Return-Path: <>\r\n")
    assert text in raw.split(b"\r\n")[1]


def test_trace_headers_cannot_be_injected_through_lhlo():
    raw = trace_headers(mail_from="a@b", helo="evil\rBcc: x (y);\x00", peer=None, hostname="h",
                        queue_id="Q", utf8=True)
    assert raw.count(b"\r") == raw.count(b"\r\n") == 4
    assert b"from evil?Bcc:?x??y???" in raw and b"with UTF8LMTP" in raw


def test_trace_headers_keep_utf8_sender():
    raw = trace_headers(mail_from="j\u00f6rg@b\u00fccher.example", helo="h", peer=None,
                        hostname="h", queue_id="Q", utf8=True)
    assert raw.startswith("Return-Path: <j\u00f6rg@b\u00fccher.example>\r\n".encode())


@pytest.mark.parametrize("reply, expected", [
    ("250 OK", "250 2.0.0 OK"),
    ("250 2.1.5 Ok", "250 2.1.5 Ok"),
    ('500 Error: command "X" not recognized', '500 5.5.2 Error: command "X" not recognized'),
    ("503 Error: nested MAIL command", "503 5.5.1 Error: nested MAIL command"),
    ("421 4.7.0 MAIL sent too many times", "421 4.7.0 MAIL sent too many times"),
    ("220 host Haven LMTP", "220 host Haven LMTP"),
    ("354 End data with <CR><LF>.<CR><LF>", "354 End data with <CR><LF>.<CR><LF>"),
    ("221 Bye", "221 2.0.0 Bye"),
    ("599 odd", "599 5.0.0 odd"),
])
def test_enhanced_codes(reply, expected):
    assert with_enhanced_code(reply) == expected


def test_declared_size():
    assert declared_size(["BODY=8BITMIME", "SIZE=1234"]) == 1234
    assert declared_size(["SMTPUTF8"]) is None


def test_gateway_imports_only_the_store_contract():
    # STYLE habit 1: a gateway knows the store only through store.interfaces and store.errors.
    import ast
    from pathlib import Path
    import gateways.lmtp
    allowed_store = {"store.interfaces", "store.errors"}
    for path in Path(gateways.lmtp.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module in ("store", "gateways"):
                names = [f"{node.module}.{a.name}" for a in node.names]  # from store import errors
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                assert top != "store" or name in allowed_store, f"{path.name} imports {name}"
                assert top not in ("sqlite3", "pymysql", "auth"), f"{path.name} imports {name}"
                if top == "gateways":
                    assert name in ("gateways.base",) or name.startswith("gateways.lmtp"), \
                        f"{path.name} imports another gateway: {name}"
