"""LMTP (RFC 2033) against a real ``haven serve``, over loopback sockets, read back over IMAP.

Transcripts are raw where the bytes matter (pipelining, smuggling, per-recipient replies) and
smtplib.LMTP where a stock client is the point.
"""

from __future__ import annotations

import smtplib

import pytest

from tests.conftest import HavenServer
from .wire import Transcript, send_message, split_trace
from tests.gateways.smtp_helpers import imap_messages

DEFAULT_MAX_SIZE = 52428800  # conf/haven.ini [server] max_message_size
TIGHT_MAX_SIZE = 20000
MAX_RCPT = 1000  # gateways.lmtp.DEFAULT_MAX_RECIPIENTS


@pytest.fixture(scope="module")
def tight(haven, tmp_path_factory):
    """A second server of the same engine with small limits (and a short SQLite busy timeout)."""
    server = HavenServer(tmp_path_factory.mktemp(f"haven-tight-{haven.engine}"), haven.engine, {
        "server.max_message_size": str(TIGHT_MAX_SIZE),
        "store.busy_timeout_ms": "200",
    })
    server.start()
    yield server
    server.close()


@pytest.fixture(scope="module")
def users(haven):
    """Three accounts shared by the tests of this module (the CLI is slow-ish to call)."""
    return [haven.new_user(f"lmtp{i}") for i in range(3)]


def unknown(address: str) -> str:
    return "nobody-" + address


# -- greeting and LHLO ---------------------------------------------------------------------

def test_greeting_and_lhlo_capabilities(haven):
    with Transcript(haven.lmtp) as t:
        assert t.greeting.code == 220
        assert t.greeting.text.startswith("220 haven.test ")
        reply = t.cmd("LHLO mta.example")
        assert reply.code == 250
        assert reply.lines[0] == "250-haven.test"
        keywords = [line[4:] for line in reply.lines[1:]]
        assert sorted(keywords) == sorted(["PIPELINING", "ENHANCEDSTATUSCODES", "8BITMIME",
                                           "SMTPUTF8", f"SIZE {DEFAULT_MAX_SIZE}"])
        assert not any(k.startswith(("AUTH", "STARTTLS")) for k in keywords)
        assert t.cmd("QUIT").text == "221 2.0.0 Bye"


def test_lhlo_with_stock_client(haven):
    with smtplib.LMTP(*haven.lmtp, timeout=10) as client:
        code, _ = client.ehlo("mta.example")  # smtplib.LMTP sends LHLO
        assert code == 250
        assert client.has_extn("pipelining") and client.has_extn("enhancedstatuscodes")
        assert client.has_extn("8bitmime") and client.has_extn("smtputf8")
        assert int(client.esmtp_features["size"]) == DEFAULT_MAX_SIZE


@pytest.mark.parametrize("verb", ["HELO", "EHLO"])
def test_helo_and_ehlo_are_refused(haven, verb):
    # RFC 2033 §4.1: the greeting is LHLO; and nothing works before it.
    with Transcript(haven.lmtp) as t:
        reply = t.cmd(f"{verb} mta.example")
        assert reply.code == 500 and reply.text.startswith("500 5.5.1 "), reply
        assert t.cmd("MAIL FROM:<a@example.org>").text.startswith("503 5.5.1 ")
        t.lhlo()
        assert t.cmd("MAIL FROM:<a@example.org>").code == 250


def test_auth_is_not_offered(haven):
    with Transcript(haven.lmtp) as t:
        t.lhlo()
        assert t.cmd("AUTH PLAIN AGFhAGI=").text.startswith("502 5.5.1 ")


# -- recipients and replies -----------------------------------------------------------------

def test_single_recipient_with_stock_client(haven, users):
    address, password = users[0]
    body = b"Subject: stock client\r\nFrom: a@example.org\r\n\r\nHello over LMTP.\r\n"
    with smtplib.LMTP(*haven.lmtp, timeout=10) as client:
        assert client.sendmail("sender@example.org", [address], body) == {}
    stored = imap_messages(haven, address, password)[-1]
    trace, message = split_trace(stored)
    assert message == body
    assert trace["path"] == "sender@example.org"
    assert trace["by"] == "haven.test" and trace["proto"] == "LMTP"
    assert trace["peer"] == "[127.0.0.1]"


def test_mixed_recipients_get_one_reply_each_in_order(haven, users):
    (a, pa), (b, pb), _ = users
    before_a, before_b = len(imap_messages(haven, a, pa)), len(imap_messages(haven, b, pb))
    recipients = [a, unknown(a), b, unknown(b), a.upper()]
    body = b"Subject: mixed\r\n\r\nto several\r\n"
    rcpt, data = send_message(haven.lmtp, "list@example.org", recipients, body)
    assert [r.code for r in rcpt] == [250, 550, 250, 550, 250]
    assert rcpt[1].text == f"550 5.1.1 <{unknown(a)}>: Recipient address rejected: User unknown"
    # RFC 2033 §4.2: after DATA, exactly one reply per *accepted* RCPT, in RCPT order
    # (send_message asserts that the next reply is NOOP's).
    assert len(data) == 3
    for reply, rcpt_to in zip(data, [a, b, a.upper()]):
        assert reply.text.startswith(f"250 2.0.0 <{rcpt_to}> "), reply
    queue_ids = {r.text.rsplit(" ", 1)[-1] for r in data}
    assert len(queue_ids) == 1  # one transaction, one id
    got_a, got_b = imap_messages(haven, a, pa)[before_a:], imap_messages(haven, b, pb)[before_b:]
    assert len(got_b) == 1 and 1 <= len(got_a) <= 2  # `a` twice, unless the store de-duplicates
    for stored in got_a + got_b:
        trace, message = split_trace(stored)
        assert message == body and trace["id"] in queue_ids


def test_only_unknown_recipients_means_no_data(haven, users):
    with Transcript(haven.lmtp) as t:
        t.lhlo()
        t.cmd("MAIL FROM:<a@example.org>")
        assert t.cmd(f"RCPT TO:<{unknown(users[0][0])}>").code == 550
        assert t.cmd("DATA").text.startswith("503 5.5.1 ")
        assert t.cmd("RSET").code == 250


def test_detail_and_alias_are_resolved_by_the_store(haven, users):
    address, password = users[1]
    local, domain = address.split("@")
    alias = f"alias-{local}@{domain}"
    result = haven.cli("alias", "add", alias, address)
    assert result.returncode == 0, result.stderr.decode()
    before = len(imap_messages(haven, address, password))
    detail = f"{local}+lists@{domain}"
    rcpt, data = send_message(haven.lmtp, "s@example.org", [detail, alias, f"nope+x@{domain}"],
                              b"Subject: sub-addressing\r\n\r\nRFC 5233\r\n")
    assert [r.code for r in rcpt] == [250, 250, 550]
    assert [r.text.split()[2] for r in data] == [f"<{detail}>", f"<{alias}>"]
    assert all(r.code == 250 for r in data)
    # one account named twice in one transaction gets one copy
    assert len(imap_messages(haven, address, password)) - before == 1


def test_malformed_addresses(haven):
    with Transcript(haven.lmtp) as t:
        t.lhlo()
        assert t.cmd("MAIL FROM:<a\x01b@example.org>").text.startswith("553 5.1.7 ")
        assert t.cmd("MAIL FROM:<>").code == 250  # the null reverse-path of a bounce
        assert t.cmd(b"RCPT TO:<\xff\xfe@example.org>").text.startswith("553 5.1.3 ")
        assert t.cmd("RCPT TO:<no-at-sign>").code // 100 == 5
        assert t.cmd("RCPT TO:<x@example.org> NOTIFY=NEVER").code == 555  # no DSN offered


def test_bounce_has_empty_return_path(haven, users):
    address, password = users[2]
    rcpt, data = send_message(haven.lmtp, "", [address], b"Subject: bounce\r\n\r\nDSN\r\n")
    assert data[0].code == 250
    trace, _ = split_trace(imap_messages(haven, address, password)[-1])
    assert trace["path"] == ""


def test_too_many_recipients(haven, users):
    # RFC 5321 §4.5.3.1.10: at least 100 must be accepted; Haven takes 1000 per transaction.
    address, _ = users[2]
    local, domain = address.split("@")
    with Transcript(haven.lmtp, timeout=60) as t:
        t.lhlo()
        t.send(b"MAIL FROM:<s@example.org>\r\n" + b"".join(
            f"RCPT TO:<{local}+{i}@{domain}>\r\n".encode() for i in range(MAX_RCPT + 2)))
        assert t.reply().code == 250
        rcpt = t.replies(MAX_RCPT + 2)
        assert [r.code for r in rcpt] == [250] * MAX_RCPT + [452, 452]
        assert rcpt[-1].text.startswith("452 4.5.3 ")
        assert t.cmd("RSET").code == 250


# -- size ----------------------------------------------------------------------------------

def test_size_refused_at_mail(haven, users):
    with Transcript(haven.lmtp) as t:
        t.lhlo()
        reply = t.cmd(f"MAIL FROM:<a@example.org> SIZE={DEFAULT_MAX_SIZE + 1}")
        assert reply.code == 552 and reply.text.startswith("552 5.3.4 "), reply
        assert t.cmd(f"RCPT TO:<{users[0][0]}>").code == 503  # no transaction was started
        assert t.cmd(f"MAIL FROM:<a@example.org> SIZE={DEFAULT_MAX_SIZE} BODY=8BITMIME").code == 250


def test_data_over_the_limit_is_refused_for_every_recipient(tight):
    (a, pa), (b, pb) = tight.new_user("big"), tight.new_user("big")
    line = b"x" * 998 + b"\r\n"  # ~ 3x the limit, sent without SIZE=
    rcpt, data = send_message(tight.lmtp, "s@example.org", [a, b], b"Subject: big\r\n\r\n" + line * 60)
    assert [r.code for r in rcpt] == [250, 250]
    assert [r.text.split(" ", 2)[:2] for r in data] == [["552", "5.3.4"]] * 2
    assert imap_messages(tight, a, pa) == [] and imap_messages(tight, b, pb) == []
    # the session is still in step: a message under the limit goes through
    rcpt, data = send_message(tight.lmtp, "s@example.org", [a], b"Subject: small\r\n\r\n" + line * 5)
    assert data[0].code == 250


def test_long_lines_are_accepted(haven, users):
    # RFC 5322 §2.1.1 says 998, real mail does not care; the total size is what is limited.
    address, password = users[0]
    body = b"Subject: long line\r\n\r\n" + b"y" * 5000 + b"\r\nend\r\n"
    _, data = send_message(haven.lmtp, "s@example.org", [address], body)
    assert data[0].code == 250
    assert split_trace(imap_messages(haven, address, password)[-1])[1] == body


# -- DATA transparency and line endings --------------------------------------------------------

def test_dot_stuffing_round_trip(haven, users):
    address, password = users[0]
    body = (b"Subject: dots\r\n\r\n.leading dot\r\n..two dots\r\n.\r\n...\r\n"
            b"middle . dot\r\n. space\r\nlast\r\n")
    with smtplib.LMTP(*haven.lmtp, timeout=10) as client:  # smtplib does the stuffing
        assert client.sendmail("s@example.org", [address], body) == {}
    assert split_trace(imap_messages(haven, address, password)[-1])[1] == body


@pytest.mark.parametrize("smuggle, stored_as", [
    (b"\n.\n", b"\r\n.\r\n"),
    (b"\r.\r", b"\r.\r"),
    (b"\n.\r\n", b"\r\n.\r\n"),  # the CRLF line is "hello<LF>.": the dot is not at its start
    (b"\r.\n", b"\r.\r\n"),
    (b"\r\n.\n", b"\r\n\r\n"),  # a CRLF line starting with "." gets unstuffed (RFC 5321 §4.5.2)
], ids=["LF.LF", "CR.CR", "LF.CRLF", "CR.LF", "CRLF.LF"])
def test_smuggling_does_not_end_or_split_the_message(haven, users, smuggle, stored_as):
    # CVE-2023-51766 family: only CRLF "." CRLF ends DATA (RFC 5321 §4.1.1.4).  What follows a
    # lookalike must be neither a command nor a second message.
    (victim, vpw), (other, opw) = users[0], users[1]
    before_v, before_o = len(imap_messages(haven, victim, vpw)), len(imap_messages(haven, other, opw))
    smuggled = (b"MAIL FROM:<ceo@example.org>\r\nRCPT TO:<" + other.encode() + b">\r\nDATA\r\n"
                b"Subject: smuggled\r\n\r\nforged\r\n")
    wire = b"Subject: carrier\r\n\r\nhello" + smuggle + smuggled + b".\r\n"
    with Transcript(haven.lmtp) as t:
        t.lhlo()
        # all pipelined in one write, so a server that ended DATA early would answer the
        # smuggled commands with replies we would read below
        t.send(f"MAIL FROM:<s@example.org>\r\nRCPT TO:<{victim}>\r\nDATA\r\n".encode()
               + wire + b"NOOP\r\n")
        assert [r.code for r in t.replies(4)] == [250, 250, 354, 250]
        assert t.reply().text == "250 2.0.0 OK"  # NOOP: nothing else came in between
    got_v = imap_messages(haven, victim, vpw)[before_v:]
    assert len(got_v) == 1
    assert len(imap_messages(haven, other, opw)) == before_o
    message = split_trace(got_v[0])[1]
    assert b"MAIL FROM:<ceo@example.org>\r\n" in message and b"forged\r\n" in message
    assert message == b"Subject: carrier\r\n\r\nhello" + stored_as + smuggled


def test_bare_lf_stored_as_crlf_bare_cr_kept(haven, users):
    address, password = users[0]
    sent = b"Subject: endings\nX-Mixed: yes\r\n\r\nunix line\nmac\rline\r\nend"
    wire = sent + b"\r\n.\r\n"
    _, data = send_message(haven.lmtp, "s@example.org", [address], b"", wire=wire)
    assert data[0].code == 250
    stored = split_trace(imap_messages(haven, address, password)[-1])[1]
    assert stored == b"Subject: endings\r\nX-Mixed: yes\r\n\r\nunix line\r\nmac\rline\r\nend\r\n"


def test_8bit_and_smtputf8_octets_are_kept(haven, users):
    address, password = users[0]
    body = ("Subject: =?utf-8?q?gr=C3=BC=C3=9Fe?=\r\nFrom: J\u00f6rg <j\u00f6rg@b\u00fccher.example>\r\n"
            "\r\nUTF-8: \u00e4\u00f6\u00fc \u20ac \U0001F600\r\n").encode() + b"latin-1: \xe4\xf6\xfc\r\n"
    with Transcript(haven.lmtp) as t:
        t.lhlo()
        assert t.cmd("MAIL FROM:<j\u00f6rg@b\u00fccher.example> SMTPUTF8 BODY=8BITMIME".encode()).code == 250
        assert t.cmd(f"RCPT TO:<{address}>").code == 250
        assert t.cmd("DATA").code == 354
        t.send(body + b".\r\n")
        assert t.reply().code == 250
    trace, message = split_trace(imap_messages(haven, address, password)[-1])
    assert message == body
    assert trace["proto"] == "UTF8LMTP" and trace["path"] == "j\u00f6rg@b\u00fccher.example"


# -- session state ------------------------------------------------------------------------------

def test_pipelining_whole_transaction_in_one_write(haven, users):
    (a, _pa), (b, pb) = users[0], users[1]
    before = len(imap_messages(haven, b, pb))
    body = b"Subject: pipelined\r\n\r\none write\r\n"
    with Transcript(haven.lmtp) as t:
        t.send(f"LHLO pipe.example\r\nMAIL FROM:<p@example.org>\r\nRCPT TO:<{a}>\r\n"
               f"RCPT TO:<{unknown(a)}>\r\nRCPT TO:<{b}>\r\nDATA\r\n".encode()
               + body + b".\r\nMAIL FROM:<q@example.org>\r\nRCPT TO:<" + b.encode() + b">\r\n"
               b"DATA\r\n" + body + b".\r\nQUIT\r\n")
        lhlo = t.reply()
        assert lhlo.code == 250 and "250-PIPELINING" in lhlo.lines
        codes = [r.code for r in t.replies(11)]
        assert codes == [250, 250, 550, 250, 354, 250, 250,  # first transaction: 2 DATA replies
                         250, 250, 354, 250]  # second: 1
        assert t.reply().text == "221 2.0.0 Bye"
        assert t.expect_closed()
    assert len(imap_messages(haven, b, pb)) == before + 2


def test_rset_discards_the_transaction(haven, users):
    (a, pa), (b, pb) = users[0], users[1]
    before_a = len(imap_messages(haven, a, pa))
    with Transcript(haven.lmtp) as t:
        t.lhlo()
        assert t.cmd("MAIL FROM:<r@example.org>").code == 250
        assert t.cmd(f"RCPT TO:<{a}>").code == 250
        assert t.cmd("RSET").text == "250 2.0.0 OK"
        assert t.cmd("DATA").code == 503  # no recipients any more
        assert t.cmd("MAIL FROM:<r2@example.org>").code == 250  # not "nested MAIL"
        assert t.cmd(f"RCPT TO:<{b}>").code == 250
        assert t.cmd("DATA").code == 354
        t.send(b"Subject: after rset\r\n\r\nx\r\n.\r\n")
        assert t.reply().text.startswith(f"250 2.0.0 <{b}> ")
        # a new LHLO also resets (RFC 5321 §4.1.4)
        t.cmd("MAIL FROM:<r3@example.org>")
        t.cmd(f"RCPT TO:<{a}>")
        t.lhlo()
        assert t.cmd("DATA").code == 503
    assert len(imap_messages(haven, a, pa)) == before_a
    assert split_trace(imap_messages(haven, b, pb)[-1])[0]["path"] == "r2@example.org"


def test_empty_message(haven, users):
    address, password = users[2]
    _, data = send_message(haven.lmtp, "s@example.org", [address], b"", wire=b".\r\n")
    assert data[0].code == 250
    assert split_trace(imap_messages(haven, address, password)[-1])[1] == b""
