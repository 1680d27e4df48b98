"""The submission gateway's pure pieces: DATA decoding, trace headers, settings, DSNs."""

from __future__ import annotations

import email
import email.policy
import random

import pytest

from conf import load_config
from gateways.submission.dsn import FailedRecipient, build_dsn, diagnostic_code, status_of
from gateways.submission.settings import SettingsError, SubmissionSettings, parse_duration, parse_settings
from gateways.submission.wire import (DataDecoder, dot_stuff, enhanced_code, is_loopback, missing_header_fields,
                                      received_header, with_enhanced_code, with_protocol)


def decode(wire: bytes, chunk: int = 0, limit=None) -> DataDecoder:
    decoder = DataDecoder(limit)
    pieces = [wire[i:i + chunk] for i in range(0, len(wire), chunk)] if chunk else [wire]
    for piece in pieces:
        if decoder.feed(piece) is not None:
            break
    assert decoder.done
    return decoder


# -- DATA --------------------------------------------------------------------------------------

@pytest.mark.parametrize("chunk", [0, 1, 2, 3, 7])
def test_data_end_is_only_crlf_dot_crlf(chunk):
    wire = b"a\n.\nb\r.\rc\n.\r\nd\r\n..e\r\n.\r\n"
    assert decode(wire, chunk).content() == b"a\r\n.\r\nb\r.\rc\r\n.\r\nd\r\n.e\r\n"


def test_dot_stuff_round_trip():
    rng = random.Random(7)
    alphabet = [b"a", b".", b"\r\n", b"\r\n.", b"..", b" ", b"\xc3\xa9"]
    for _ in range(300):
        message = b"".join(rng.choice(alphabet) for _ in range(rng.randint(0, 40)))
        message = message.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
        expected = message if not message or message.endswith(b"\r\n") else message + b"\r\n"
        assert decode(dot_stuff(message), rng.choice([0, 1, 5])).content() == expected


def test_too_big_is_read_to_the_end_and_dropped():
    decoder = decode(b"x" * 100 + b"\r\n.\r\n", 9, limit=50)
    assert decoder.too_big and decoder.content() == b"" and decoder.size == 102


# -- headers -------------------------------------------------------------------------------------

def test_received_header_and_protocol_names():
    line = received_header(helo="pc (evil)\r\nX: y", peer=("::ffff:192.0.2.7", 5000, 0, 0), hostname="mx.example",
                           queue_id="ABC", protocol=with_protocol(True, True, False), date=0)
    text = line.decode()
    assert text.startswith("Received: from pc??evil???X:?y ([192.0.2.7])\r\n"
                           "\tby mx.example (Haven) with ESMTPSA id ABC;")
    assert text.count("\r\n") == 3
    assert [with_protocol(t, a, u) for t, a, u in [(False, True, False), (True, False, False), (True, True, True)]] \
        == ["ESMTPA", "ESMTPS", "UTF8SMTPSA"]
    assert is_loopback(("127.0.0.5", 1)) and is_loopback(("::1", 1, 0, 0)) and is_loopback(("::ffff:127.0.0.1", 1))
    assert not is_loopback(("192.0.2.1", 1)) and not is_loopback(None)


def test_missing_header_fields():
    full = b"DATE: x\r\nmessage-id: <a@b>\r\nSubject: s\r\n\r\nDate: not a header\r\n"
    assert missing_header_fields(full, "h") == b""
    added = missing_header_fields(b"Subject: s\r\n\r\nMessage-ID: <in the body>\r\n", "h").decode()
    assert added.startswith("Date: ") and "\r\nMessage-ID: <" in added and added.endswith("@h>\r\n")
    assert missing_header_fields(b"\r\nbody only\r\n", "h").count(b"\r\n") == 2


def test_enhanced_codes():
    assert with_enhanced_code("250 OK") == "250 2.0.0 OK"
    assert with_enhanced_code("530 5.7.0 Authentication required") == "530 5.7.0 Authentication required"
    assert with_enhanced_code("220 hello") == "220 hello" and with_enhanced_code("354 go") == "354 go"
    assert enhanced_code(550, "5.1.1 no") == "5.1.1" and enhanced_code(451, "5.1.1 odd") == "4.0.0"


# -- settings ------------------------------------------------------------------------------------

def test_bundled_defaults_are_the_settings_defaults():
    config = load_config(None)
    section = config.section("submission")
    assert set(section) >= {"listen", "tls_listen", "relay", "relay_user", "relay_password", "relay_tls",
                            "relay_tls_verify", "relay_timeout", "allow_plaintext_auth", "max_queue_age",
                            "retry_schedule", "queue_interval", "max_recipients", "timeout"}
    limits = {"max_message_size": config.getint("server", "max_message_size")}
    assert parse_settings(section, limits) == SubmissionSettings()


def test_settings_parsing_and_errors():
    assert [parse_duration(v, "k") for v in ("90", "30s", "5m", "2h", "5d", "1.5h")] \
        == [90, 30, 300, 7200, 432000, 5400]
    s = parse_settings({"relay": "[2001:db8::1]:587", "relay_user": "u", "relay_password": "p", "relay_tls": "TLS",
                        "relay_tls_verify": "no", "retry_schedule": "10s, 1m", "max_queue_age": "120h",
                        "allow_plaintext_auth": "No"})
    assert (s.relay.host, s.relay.port, s.relay.tls, s.relay.verify) == ("2001:db8::1", 587, "tls", False)
    assert s.retry_schedule == (10, 60) and s.max_queue_age == 432000 and s.allow_plaintext_auth == "no"
    for bad, key in [({"relay": "smtp.example"}, "relay"), ({"relay": "h:1", "relay_user": "u"}, "relay_user"),
                     ({"relay": "h:1", "relay_tls": "ssl"}, "relay_tls"),
                     ({"max_queue_age": "5 days"}, "max_queue_age"), ({"retry_schedule": "0"}, "retry_schedule"),
                     ({"allow_plaintext_auth": "maybe"}, "allow_plaintext_auth"),
                     ({"max_recipients": "0"}, "max_recipients")]:
        with pytest.raises(SettingsError, match=key):
            parse_settings(bad)


# -- DSN -----------------------------------------------------------------------------------------

def test_status_and_diagnostic():
    assert status_of("550 5.1.1 <a@b>: no", False) == "5.1.1"
    assert status_of("554 no enhanced code", False) == "5.0.0"
    assert status_of("451 4.7.1 greylisted", True) == "4.7.1"
    assert status_of("4.4.1 connect to h:25: Connection refused", True) == "4.4.1"
    assert status_of(None, True) == "4.4.7" and status_of(None, False) == "5.0.0"
    assert diagnostic_code("550 5.1.1 user\r\n unknown") == "smtp; 550 5.1.1 user unknown"
    assert diagnostic_code("4.4.1 connect to h:25: refused") == "x-haven; connect to h:25: refused"


def test_dsn_structure():
    original = b"From: a@example.test\r\nSubject: hi\r\n\r\nsecret body\r\n"
    raw = build_dsn(hostname="mx.example", mail_from="a@example.test", queue_id=7, arrival=0, original=original,
                    recipients=[FailedRecipient("x@remote.example", "failed", "550 5.1.1 no such user", 10, "relay"),
                                FailedRecipient("y@remote.example", "expired", "4.4.1 connect: refused", 20)])
    assert raw.startswith(b"Return-Path: <>\r\n") and b"secret body" not in raw
    assert b"\n" not in raw.replace(b"\r\n", b"")
    msg = email.message_from_bytes(raw, policy=email.policy.compat32)
    assert msg.get_content_type() == "multipart/report" and msg.get_param("report-type") == "delivery-status"
    assert msg["Auto-Submitted"] == "auto-replied" and msg["To"] == "<a@example.test>"
    human, status, headers = msg.get_payload()
    blocks = status.get_payload()
    assert blocks[0]["Reporting-MTA"] == "dns; mx.example" and blocks[0]["X-Haven-Queue-ID"] == "7"
    x, y = dict(blocks[1].items()), dict(blocks[2].items())
    assert x == {"Final-Recipient": "rfc822; x@remote.example", "Action": "failed", "Status": "5.1.1",
                 "Remote-MTA": "dns; relay", "Diagnostic-Code": "smtp; 550 5.1.1 no such user",
                 "Last-Attempt-Date": x["Last-Attempt-Date"]}
    assert y["Status"] == "4.4.1" and y["Action"] == "failed" and "Remote-MTA" not in y
    assert headers.get_content_type() == "text/rfc822-headers"
    assert headers.get_payload() == "From: a@example.test\r\nSubject: hi\r\n"
    assert "gave up after" in human.get_payload()


def test_dsn_for_utf8_mail_uses_the_global_types():
    raw = build_dsn(hostname="h", mail_from="ü@example.test", queue_id=1, arrival=0, original=b"Subject: x\r\n\r\n",
                    recipients=[FailedRecipient("é@remote.example", "failed", "550 5.1.1 no")])
    msg = email.message_from_bytes(raw, policy=email.policy.compat32)
    types = [p.get_content_type() for p in msg.get_payload()]
    assert types == ["text/plain", "message/global-delivery-status", "message/global-headers"]
    assert "Final-Recipient: utf-8; é@remote.example" in raw.decode()


def test_gateway_imports_only_the_store_contract():
    # STYLE habit 1: the store only through store.interfaces and store.errors; auth only through
    # the portal (auth.cred); no other gateway, no driver
    import ast
    from pathlib import Path
    import gateways.submission
    for path in Path(gateways.submission.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module in ("store", "gateways", "auth"):
                names = [f"{node.module}.{a.name}" for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                assert top != "store" or name in ("store.interfaces", "store.errors"), f"{path.name}: {name}"
                assert top != "auth" or name == "auth.cred", f"{path.name}: {name}"
                assert top not in ("sqlite3", "pymysql", "smtplib"), f"{path.name}: {name}"
                if top == "gateways":
                    assert name in ("gateways.base", "gateways.service") or name.startswith("gateways.submission"), \
                        f"{path.name} imports another gateway: {name}"
