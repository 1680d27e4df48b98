"""SMTP submission against a real ``haven serve`` (no relay configured), over loopback sockets
with stock smtplib, read back over IMAP (and POP3 when this checkout has it).

The ``haven`` fixture's submission listeners: ``haven.submission`` (STARTTLS) and
``haven.submissions`` (implicit TLS), ``allow_plaintext_auth`` left at its default
(``loopback``), ``[submission] relay`` empty.
"""

from __future__ import annotations

import base64
import poplib
import smtplib

import pytest

from tests.gateways.smtp_helpers import imap_messages, split_local
from .wire import (client_tls, connect, dsn_fields, message, parse, submit, wait_for_log,
                                               wait_for_mail)

DEFAULT_MAX_SIZE = 52428800  # conf/haven.ini [server] max_message_size


@pytest.fixture(scope="module")
def users(haven):
    """Three accounts; the first has an alias (the CLI is slow-ish to call)."""
    made = [haven.new_user(f"sub{i}") for i in range(3)]
    alias = "alias-" + made[0][0]
    assert haven.cli("alias", "add", alias, made[0][0]).returncode == 0
    return made, alias


def plain_token(user: str, password: str, authzid: str = "") -> str:
    return base64.b64encode(f"{authzid}\0{user}\0{password}".encode()).decode()


def keywords(session: smtplib.SMTP) -> list:
    return sorted(session.ehlo_resp.decode().splitlines()[1:])


# -- EHLO, TLS -------------------------------------------------------------------------------

def test_ehlo_before_and_after_starttls(haven):
    with smtplib.SMTP(*haven.submission, timeout=10) as s:
        s.ehlo("client.example")
        base = ["8BITMIME", "ENHANCEDSTATUSCODES", "PIPELINING", f"SIZE {DEFAULT_MAX_SIZE}", "SMTPUTF8"]
        # loopback peer, allow_plaintext_auth = loopback (default): AUTH offered before TLS
        assert keywords(s) == sorted(base + ["STARTTLS", "AUTH PLAIN LOGIN"])
        assert s.starttls(context=client_tls())[0] == 220
        s.ehlo("client.example")
        assert keywords(s) == sorted(base + ["AUTH PLAIN LOGIN"])
        assert s.docmd("STARTTLS")[0] == 503  # TLS is already on
        assert s.docmd("HELP")[0] == 530


def test_implicit_tls_port(haven, users):
    (user, password), (rcpt, rpw), _ = users[0]
    with connect(haven, tls="implicit") as s:
        assert "STARTTLS" not in keywords(s) and "AUTH PLAIN LOGIN" in keywords(s)
        assert s.docmd("STARTTLS")[0] == 503
        s.login(user, password)
        assert s.sendmail(user, [rcpt], message("implicit tls", user, rcpt)) == {}
    stored = imap_messages(haven, rcpt, rpw)
    ret, received, rest = split_local(stored[-1])
    assert ret == user and received["proto"] == "ESMTPSA" and b"Subject: implicit tls\r\n" in rest


# -- AUTH ------------------------------------------------------------------------------------

def test_auth_plain_and_login_after_starttls_deliver_locally(haven, users):
    (user, password), (rcpt, rpw), _ = users[0]
    before = len(imap_messages(haven, rcpt, rpw))
    for mechanism in ("PLAIN", "LOGIN"):
        with connect(haven) as s:
            s.user, s.password = user, password
            code, _ = s.auth(mechanism, getattr(s, f"auth_{mechanism.lower()}"))
            assert code == 235
            raw = message(f"via {mechanism}", user, rcpt, body=b"line one\r\n.leading dot\r\n")
            assert s.sendmail(user, [rcpt], raw) == {}
        stored = imap_messages(haven, rcpt, rpw)
        assert len(stored) == before + 1
        before += 1
        ret, received, rest = split_local(stored[-1])
        # exactly the bytes sent, after Haven's Return-Path and one Received: line
        assert rest == raw and ret == user
        assert received["proto"] == "ESMTPSA" and received["by"] == "haven.test"
        assert received["helo"] == "client.example" and received["peer"] == "[127.0.0.1]"
    # RFC 4954 initial response and 334 continuation for PLAIN, and LOGIN with initial user
    with connect(haven) as s:
        assert s.docmd("AUTH", "PLAIN")[0] == 334
        assert s.docmd(plain_token(user, password))[0] == 235
        assert s.docmd("AUTH", "PLAIN " + plain_token(user, password))[0] == 503  # already authenticated
    with connect(haven) as s:
        code, challenge = s.docmd("AUTH", "LOGIN")
        assert code == 334 and base64.b64decode(challenge) == b"Username:"
        assert s.docmd(base64.b64encode(user.encode()).decode())[0] == 334
        assert s.docmd(base64.b64encode(password.encode()).decode())[0] == 235
    with connect(haven) as s:
        code, challenge = s.docmd("AUTH", "LOGIN " + base64.b64encode(user.encode()).decode())
        assert code == 334 and base64.b64decode(challenge) == b"Password:"
        assert s.docmd(base64.b64encode(password.encode()).decode())[0] == 235


def test_plaintext_auth_from_loopback_by_default(haven, users):
    (user, password), (rcpt, rpw), _ = users[0]
    with connect(haven, tls="none") as s:
        s.login(user, password)
        assert s.sendmail(user, [rcpt], message("no tls", user, rcpt)) == {}
    _, received, _ = split_local(imap_messages(haven, rcpt, rpw)[-1])
    assert received["proto"] == "ESMTPA"  # RFC 3848: authenticated, no TLS


def test_wrong_password_and_unknown_user_535(haven, users):
    (user, password), _, _ = users[0]
    with connect(haven) as s:
        for token in (plain_token(user, "wrong"), plain_token("nobody@example.test", "x"),
                      plain_token(user, password, authzid="someone-else@example.test")):
            code, text = s.docmd("AUTH", "PLAIN " + token)
            assert (code, text) == (535, b"5.7.8 Authentication credentials invalid")
        assert s.docmd("AUTH", "CRAM-MD5")[0] == 504
        assert s.docmd("AUTH", "PLAIN not-base64!")[0] == 501
        assert s.docmd("AUTH", "PLAIN")[0] == 334 and s.docmd("*")[0] == 501  # cancelled
        assert s.docmd("AUTH", "PLAIN " + plain_token(user, password))[0] == 235


def test_nothing_before_auth(haven, users):
    (user, _), (rcpt, _), _ = users[0]
    with connect(haven) as s:
        assert s.docmd(f"MAIL FROM:<{user}>") == (530, b"5.7.0 Authentication required")
        assert s.docmd(f"RCPT TO:<{rcpt}>")[0] == 530
        assert s.docmd("DATA")[0] == 530
    with smtplib.SMTP(*haven.submission, timeout=10) as s:
        assert s.docmd("AUTH", "PLAIN " + plain_token(user, "x"))[0] == 503  # EHLO first


# -- MAIL FROM: the sender must be the user's --------------------------------------------------

def test_sender_must_be_owned(haven, users):
    ((user, password), (other, _), _), alias = users
    with connect(haven) as s:
        s.login(user, password)
        for sender in (other, "boss@example.test", "ceo@elsewhere.example", "alias-" + other):
            code, text = s.docmd(f"MAIL FROM:<{sender}>")
            assert code == 553 and text.startswith(b"5.7.1 Sender address rejected: not owned by user"), text
        assert s.docmd("MAIL FROM:<>")[0] == 553  # the null sender is for bounces
        for sender in (alias, user.replace("@", "+newsletter@"), user.upper()):
            assert s.docmd(f"MAIL FROM:<{sender}>")[0] == 250, sender
            assert s.docmd("RSET")[0] == 250
    wait_for_log(haven, r"reject: MAIL from 127\.0\.0\.1: sender <ceo@elsewhere\.example> not owned")


def test_own_alias_as_sender_delivers(haven, users):
    ((user, password), (rcpt, rpw), _), alias = users
    assert submit(haven, user, password, alias, [rcpt], message("from my alias", alias, rcpt)) == {}
    ret, _, rest = split_local(imap_messages(haven, rcpt, rpw)[-1])
    assert ret == alias and b"Subject: from my alias" in rest


# -- RCPT --------------------------------------------------------------------------------------

def test_a_hundred_recipients_by_default(haven, users):
    """[submission] max_recipients = 100 (RFC 5321 §4.5.3.1.8): the 101st gets 452 4.5.3."""
    ((user, password), (rcpt, _), _third), _alias = users
    with connect(haven) as s:
        s.login(user, password)
        assert s.docmd(f"MAIL FROM:<{user}>")[0] == 250
        for n in range(100):
            assert s.docmd(f"RCPT TO:<{rcpt.replace('@', f'+r{n}@')}>")[0] == 250
        code, text = s.docmd(f"RCPT TO:<{rcpt.replace('@', '+r100@')}>")
        assert code == 452 and text.startswith(b"4.5.3"), (code, text)
        s.docmd("RSET")


def test_a_header_from_that_is_not_yours_is_553(haven, users):
    ((user, password), (rcpt, rcpt_pw), _third), alias = users
    before = len(imap_messages(haven, rcpt, rcpt_pw))
    with connect(haven) as s:
        s.login(user, password)
        for header, expected in ((f"From: <{rcpt}>", 553), (f"From: <{user}>\r\nSender: <{rcpt}>", 553),
                                 (f"From: Me <{alias}>", 250)):
            assert s.docmd(f"MAIL FROM:<{user}>")[0] == 250
            assert s.docmd(f"RCPT TO:<{rcpt}>")[0] == 250
            assert s.docmd("DATA")[0] == 354
            s.send(f"{header}\r\nSubject: whose name\r\n\r\nhi\r\n.\r\n".encode())
            code, text = s.getreply()
            assert code == expected, (header, code, text)
            if code == 553:
                assert text.startswith(b"5.7.1 header From/Sender <"), text
    assert len(imap_messages(haven, rcpt, rcpt_pw)) == before + 1  # only the one in the user's own name


def test_recipients_local_unknown_and_remote_without_relay(haven, users):
    ((user, password), (rcpt, _), (third, _)), alias = users
    with connect(haven) as s:
        s.login(user, password)
        assert s.docmd(f"MAIL FROM:<{user}>")[0] == 250
        assert s.docmd(f"RCPT TO:<{rcpt}>")[0] == 250
        assert s.docmd(f"RCPT TO:<{third.replace('@', '+tag@')}>")[0] == 250
        assert s.docmd(f"RCPT TO:<{alias}>")[0] == 250  # our own alias: a local recipient too
        code, text = s.docmd("RCPT TO:<nobody-here@example.test>")
        assert code == 550 and text.startswith(b"5.1.1 "), text  # unknown user of a local domain
        code, text = s.docmd("RCPT TO:<friend@remote.example>")
        assert (code, text) == (550, b"5.7.1 <friend@remote.example>: Relaying is not configured on this server")
        assert s.docmd("RCPT TO:<bad address@x>")[0] in (501, 553)
    wait_for_log(haven, r"relaying refused .*to=<friend@remote\.example>: \[submission\] relay is empty")


def test_pipelined_transaction(haven, users):
    """RFC 2920: MAIL, RCPTs and DATA in one write; one reply each, in order."""
    (user, password), (rcpt, rpw), _ = users[0]
    before = len(imap_messages(haven, rcpt, rpw))
    raw = message("pipelined", user, rcpt)
    with connect(haven) as s:
        s.login(user, password)
        s.send(f"MAIL FROM:<{user}>\r\nRCPT TO:<nobody-pipe@example.test>\r\nRCPT TO:<{rcpt}>\r\nDATA\r\n".encode())
        assert [s.getreply()[0] for _ in range(4)] == [250, 550, 250, 354]
        s.send(raw + b".\r\nNOOP\r\n")
        assert [s.getreply()[0] for _ in range(2)] == [250, 250]
    assert len(imap_messages(haven, rcpt, rpw)) == before + 1


def test_recipient_gone_before_data_is_bounced(haven, users):
    """A local recipient deleted between RCPT and DATA: the others get the message (250) and the
    sender a DSN for the missing one."""
    sender, sender_pw = haven.new_user("dsnsender")
    (_, _), (rcpt, rpw), _ = users[0]
    gone, _ = haven.new_user("gone")
    before = len(imap_messages(haven, rcpt, rpw))
    with connect(haven) as s:
        s.login(sender, sender_pw)
        assert s.docmd(f"MAIL FROM:<{sender}>")[0] == 250
        assert s.docmd(f"RCPT TO:<{rcpt}>")[0] == 250
        assert s.docmd(f"RCPT TO:<{gone}>")[0] == 250
        assert haven.cli("user", "del", gone).returncode == 0
        assert s.docmd("DATA")[0] == 354
        s.send(message("half gone", sender, rcpt) + b".\r\n")
        assert s.getreply()[0] == 250
    assert len(imap_messages(haven, rcpt, rpw)) == before + 1
    [dsn] = wait_for_mail(haven, sender, sender_pw)
    _, [r] = dsn_fields(parse(dsn))
    assert r["Final-Recipient"] == f"rfc822; {gone}" and r["Status"] == "5.1.1"
    assert r["Diagnostic-Code"] == "x-haven; the mailbox no longer exists"


def test_size_limit_at_mail(haven, users):
    (user, password), _, _ = users[0]
    with connect(haven) as s:
        s.login(user, password)
        code, text = s.docmd(f"MAIL FROM:<{user}> SIZE={DEFAULT_MAX_SIZE + 1}")
        assert code == 552 and text.startswith(b"5.3.4"), text
        assert s.docmd(f"MAIL FROM:<{user}> SIZE=1000")[0] == 250


# -- DATA: the bytes ---------------------------------------------------------------------------

def test_data_end_rules_no_smuggling(haven, users):
    """Only CRLF.CRLF ends the data: LF.LF / CR.LF inside are content, not a second message."""
    (user, password), (rcpt, rpw), _ = users[0]
    before = len(imap_messages(haven, rcpt, rpw))
    head = f"From: <{user}>\r\nTo: <{rcpt}>\r\nSubject: smuggle\r\nDate: Mon, 06 Jan 2025 10:00:00 +0100\r\n" \
           f"Message-ID: <smuggle@client.example>\r\n\r\n".encode()
    wire = (head + b"one\n.\nMAIL FROM:<ceo@elsewhere.example>\r\nbare\nlf\r\n..dotted\r\n.\r\n")
    with connect(haven) as s:
        s.login(user, password)
        assert s.docmd(f"MAIL FROM:<{user}>")[0] == 250
        assert s.docmd(f"RCPT TO:<{rcpt}>")[0] == 250
        assert s.docmd("DATA")[0] == 354
        s.send(wire)
        code, text = s.getreply()
        assert code == 250 and text.startswith(b"2.0.0 Ok: queued as "), text
        assert s.docmd("NOOP")[0] == 250
    stored = imap_messages(haven, rcpt, rpw)
    assert len(stored) == before + 1
    _, _, rest = split_local(stored[-1])
    assert rest == head + b"one\r\n.\r\nMAIL FROM:<ceo@elsewhere.example>\r\nbare\r\nlf\r\n.dotted\r\n"


def test_missing_date_and_message_id_are_added(haven, users):
    (user, password), (rcpt, rpw), _ = users[0]
    raw = f"From: <{user}>\r\nTo: <{rcpt}>\r\nSubject: bare script\r\n\r\nbody\r\n".encode()
    assert submit(haven, user, password, user, [rcpt], raw) == {}
    _, _, rest = split_local(imap_messages(haven, rcpt, rpw)[-1])
    assert rest.endswith(raw)
    added = rest[:-len(raw)]
    assert added.startswith(b"Date: ") and b"\r\nMessage-ID: <" in added and added.endswith(b"@haven.test>\r\n")


def test_local_delivery_seen_over_pop3(haven, users):
    (user, password), _, (third, tpw) = users[0]
    raw = message("over pop3", user, third)
    assert submit(haven, user, password, user, [third], raw) == {}
    pop = poplib.POP3(*haven.pop3, timeout=15)
    try:
        pop.user(third)
        pop.pass_(tpw)
        count, _ = pop.stat()
        lines = pop.retr(count)[1]
    finally:
        pop.quit()
    assert b"\r\n".join(lines).endswith(raw.rstrip(b"\r\n"))


# -- the plaintext policy ----------------------------------------------------------------------

def test_no_auth_before_tls_when_plaintext_is_off(haven, haven_factory):
    strict = haven_factory(haven.engine, **{"submission.allow_plaintext_auth": "no"})
    user, password = strict.new_user("strict")
    with connect(strict, tls="none") as s:
        assert not any(k.startswith("AUTH") for k in keywords(s)) and "STARTTLS" in keywords(s)
        code, text = s.docmd("AUTH", "PLAIN " + plain_token(user, password))
        assert (code, text) == (538, b"5.7.11 Encryption required for requested authentication mechanism")
        assert s.docmd(f"MAIL FROM:<{user}>")[0] == 530
        s.starttls(context=client_tls())
        s.ehlo("client.example")
        assert "AUTH PLAIN LOGIN" in keywords(s)
        s.login(user, password)
        assert s.sendmail(user, [user], message("after tls", user, user)) == {}
    with connect(strict, tls="implicit") as s:
        s.login(user, password)
    assert len(imap_messages(strict, user, password)) == 1
