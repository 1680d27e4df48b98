"""The submission gateway's own pure pieces: header fields an MSA adds, settings, DSNs, its
store-error → reply table after DATA and its import rules.  The byte-level pieces it shares with LMTP (DATA
decoding, dot-stuffing, trace headers, reply codes) are tested once, in
tests/gateways/test_smtpwire.py."""

from __future__ import annotations

import email
import email.policy

import pytest

from conf import load_config
from formats.headers import missing_header_fields
from gateways.common.settings import parse_duration
from gateways.relay.dsn import FailedRecipient, build_dsn, diagnostic_code, status_of
from gateways.submission import replies
from gateways.submission.settings import SettingsError, SubmissionSettings, parse_settings
from gateways.submission.wire import is_loopback
from store import errors


# -- headers -------------------------------------------------------------------------------------

def test_loopback_peers():
    # allow_plaintext_auth = loopback
    assert is_loopback(("127.0.0.5", 1)) and is_loopback(("::1", 1, 0, 0)) and is_loopback(("::ffff:127.0.0.1", 1))
    assert not is_loopback(("192.0.2.1", 1)) and not is_loopback(None) and not is_loopback("")


def test_missing_header_fields():
    full = b"DATE: x\r\nmessage-id: <a@b>\r\nSubject: s\r\n\r\nDate: not a header\r\n"
    assert missing_header_fields(full, "h") == b""
    added = missing_header_fields(b"Subject: s\r\n\r\nMessage-ID: <in the body>\r\n", "h").decode()
    assert added.startswith("Date: ") and "\r\nMessage-ID: <" in added and added.endswith("@h>\r\n")
    assert missing_header_fields(b"\r\nbody only\r\n", "h").count(b"\r\n") == 2


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
    assert [parse_duration(v, "k", "submission") for v in ("90", "30s", "5m", "2h", "5d", "1.5h")] \
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


# -- replies and imports -------------------------------------------------------------------------

@pytest.mark.parametrize("err, data", [
    (errors.NotFound(), "451 4.3.0"),  # at commit: the store failing
    (errors.InvalidInput(), "451 4.3.0"),
    (errors.OverQuota(), "552 5.2.2"),
    (errors.PermissionDenied(), "553 5.7.1"),  # the header From:/Sender: is not the user's
    (errors.TooBig(), "552 5.3.4"),
    (errors.TemporaryFailure(), "451 4.3.0"),
])
def test_store_error_replies_after_data(err, data):
    # A store failure is never a 5xx.  The RCPT table is shared with LMTP
    # (tests/gateways/test_smtpwire.py).
    assert replies.data_error(err).startswith(data + " ")
