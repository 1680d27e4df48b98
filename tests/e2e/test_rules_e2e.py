"""Server-side rules end to end, with no mail client connected: a real ``haven serve`` whose
relay is a test smarthost (an aiosmtpd sink), mail arriving over LMTP (and ``haven deliver``),
scripts installed with ``haven sieve put``, results read back over IMAP and at the sink.
On SQLite and MariaDB."""

from __future__ import annotations

import email
import imaplib
import re
import time

import pytest

from tests.conftest import ENGINES, HavenServer, require_engine
from tests.gateways.lmtp.wire import send_message
from tests.gateways.smtp_helpers import imap_messages


@pytest.fixture(scope="module", params=ENGINES)
def rules(request, sink, tmp_path_factory):
    """A Haven relaying to the sink, on each engine."""
    require_engine(request.param)
    server = HavenServer(tmp_path_factory.mktemp(f"haven-rules-{request.param}"), request.param, {
        "submission.relay": sink.address,
        "submission.queue_interval": "0.3",
    })
    server.start()
    yield server
    server.close()


def install(server, user: str, script: str) -> None:
    result = server.cli("sieve", "put", user, "rules", "-", "--activate", input=script.encode())
    assert result.returncode == 0, result.stderr.decode() + result.stdout.decode()


def message(subject: str, sender: str = "alice@remote.example", to: str = "x@example.test",
            extra: str = "") -> bytes:
    return (f"From: Alice <{sender}>\r\nTo: {to}\r\nSubject: {subject}\r\n{extra}"
            f"Message-ID: <{time.monotonic_ns()}@remote.example>\r\n\r\nHello\r\n").encode()


def lmtp(server, sender: str, recipients, raw: bytes):
    """(RCPT replies, post-DATA replies) as text."""
    rcpt, data = send_message(server.lmtp, sender, list(recipients), raw)
    return [r.text for r in rcpt], [r.text for r in data]


def folder_state(server, user, password, folder):
    """[(flags, subject)] of a folder, over IMAP."""
    conn = imaplib.IMAP4(*server.imap, timeout=15)
    try:
        conn.login(user, password)
        typ, data = conn.select(f'"{folder}"', readonly=True)
        assert typ == "OK", data
        if int(data[0]) == 0:
            return []
        typ, data = conn.uid("FETCH", "1:*", "(FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
        out = []
        for item in data:
            if isinstance(item, tuple):
                flags = re.search(rb"FLAGS \(([^)]*)\)", item[0]).group(1).decode().split()
                flags = [f for f in flags if f != "\\Recent"]  # a session flag, not what the rules set
                subject = email.message_from_bytes(item[1])["Subject"]
                out.append((set(flags), subject))
        return out
    finally:
        conn.logout()


def test_fileinto_with_flags_and_create(rules):
    user, password = rules.new_user("filer")
    install(rules, user, 'require ["fileinto", "mailbox", "imap4flags"];\n'
                         'if header :contains "subject" "[list]" {\n'
                         '  fileinto :create :flags ["\\\\Seen", "listmail"] "Lists/Dev";\n  stop;\n}\n'
                         'if address :is "from" "boss@remote.example" { addflag "\\\\Flagged"; }\n')
    _, data = lmtp(rules, "a@remote.example", [user], message("[list] weekly", to=user))
    assert data[0].startswith("250 ")
    lmtp(rules, "boss@remote.example", [user], message("see me", sender="boss@remote.example", to=user))
    assert folder_state(rules, user, password, "Lists/Dev") == [({"\\Seen", "listmail"}, "[list] weekly")]
    assert folder_state(rules, user, password, "INBOX") == [({"\\Flagged"}, "see me")]


def test_reject_is_a_per_recipient_550(rules):
    grumpy, _ = rules.new_user("grumpy")
    happy, happy_pw = rules.new_user("happy")
    install(rules, grumpy, 'require "ereject";\nif header :contains "subject" "offer" {\n'
                           '  ereject "No offers, thank you.";\n}\n')
    _, data = lmtp(rules, "spam@remote.example", [grumpy, happy], message("special offer"))
    assert data[0] == f"550 5.7.1 <{grumpy}> No offers, thank you."
    assert data[1].startswith(f"250 2.0.0 <{happy}>")
    assert len(imap_messages(rules, happy, happy_pw)) == 1


def test_redirect_reaches_the_relay(rules, sink):
    user, password = rules.new_user("fwd")
    target = f"archive-{time.monotonic_ns()}@remote.example"
    install(rules, user, f'require "copy";\nredirect :copy "{target}";\n')
    _, data = lmtp(rules, "alice@remote.example", [user], message("forward me", to=user))
    assert data[0].startswith("250 ")
    [got] = sink.wait_for(target)
    assert got.mail_from == "alice@remote.example"
    assert got.data.startswith(f"Delivered-To: {user}\r\n".encode())
    assert b"Subject: forward me" in got.data
    assert len(imap_messages(rules, user, password)) == 1  # :copy keeps it


def test_vacation_once_per_sender_per_period(rules, sink):
    user, password = rules.new_user("away")
    install(rules, user, 'require "vacation";\n'
                         'vacation :days 7 :subject "Out of office" "I am away until Monday.";\n')
    sender = f"friend-{time.monotonic_ns()}@remote.example"
    for n in range(2):
        _, data = lmtp(rules, sender, [user], message(f"hi {n}", sender=sender, to=user))
        assert data[0].startswith("250 ")
    [reply] = sink.wait_for(sender)
    assert reply.mail_from in ("", "<>")  # null reverse-path: nothing answers a vacation reply
    parsed = email.message_from_bytes(reply.data)
    assert parsed["Subject"] == "Out of office"
    assert parsed["Auto-Submitted"].startswith("auto-replied")
    assert user in parsed["From"]
    assert "I am away until Monday." in parsed.get_payload(decode=True).decode()
    # a mailing list gets no reply, nor does a bounce
    lister = f"list-{time.monotonic_ns()}@remote.example"
    lmtp(rules, lister, [user], message("digest", sender=lister, to=user, extra="List-Id: <dev.lists.example>\r\n"))
    lmtp(rules, "", [user], message("bounce", sender="mailer-daemon@remote.example", to=user))
    time.sleep(1.0)
    assert sink.for_rcpt(lister) == []
    assert len(sink.for_rcpt(sender)) == 1  # still only the one reply
    assert len(imap_messages(rules, user, password)) == 4  # every message kept


def test_junk_header_and_deliver_j(rules):
    user, password = rules.new_user("junk")
    install(rules, user, 'require "fileinto";\nfileinto "Archive";\n')
    lmtp(rules, "x@remote.example", [user], message("cheap pills", to=user, extra="X-Spam-Flag: YES\r\n"))
    result = rules.cli("deliver", "-j", "-f", "x@remote.example", user, input=message("forced", to=user))
    assert result.returncode == 0, result.stderr.decode()
    assert sorted(s for _, s in folder_state(rules, user, password, "Junk")) == ["cheap pills", "forced"]
    assert folder_state(rules, user, password, "Archive") == []


def test_deliver_reject_exit_code(rules):
    user, _ = rules.new_user("nope")
    install(rules, user, 'require "reject";\nreject "not here";\n')
    result = rules.cli("deliver", "-f", "x@remote.example", user, input=message("hello", to=user))
    assert result.returncode == 77, (result.returncode, result.stderr)
    assert b"not here" in result.stderr


def test_broken_script_is_refused_at_upload(rules):
    user, _ = rules.new_user("broken")
    result = rules.cli("sieve", "put", user, "bad", "-", input=b'require "fileinto";\nfileinto "x"\n')
    assert result.returncode != 0
    assert re.search(rb"line \d", result.stderr + result.stdout)


# -- quotas over LMTP --------------------------------------------------------------------------

def quota(server, user, *args) -> str:
    result = server.cli("user", "quota", user, *args)
    assert result.returncode == 0, result.stderr.decode()
    return result.stdout.decode()


def test_quota_transitions_over_lmtp(rules):
    user, password = rules.new_user("full")
    raw = message("sized", to=user) + b"x" * 3000 + b"\r\n"
    assert "unlimited" in quota(rules, user, "--warn", "5K", "--hard", "9K")
    _, data = lmtp(rules, "a@remote.example", [user], raw)
    assert data[0].startswith("250 ")
    _, data = lmtp(rules, "a@remote.example", [user], raw)  # crosses warn: one warning
    assert data[0].startswith("250 ")
    subjects = [s for _, s in folder_state(rules, user, password, "INBOX")]
    assert subjects.count("Your mailbox is almost full") == 1
    _, data = lmtp(rules, "a@remote.example", [user], raw)  # would pass hard
    assert data[0] == f"552 5.2.2 <{user}> Mailbox full"
    assert "over warn" in quota(rules, user)


def test_over_quota_can_be_temporary(haven_factory, rules):
    server = haven_factory(rules.engine, **{"lmtp.over_quota": "temporary", "quota.hard": "1K"})
    user, _ = server.new_user("tmp")
    _, data = lmtp(server, "a@remote.example", [user], message("big", to=user) + b"y" * 2000 + b"\r\n")
    assert data[0] == f"452 4.2.2 <{user}> Mailbox full, try again later"


# -- local recipients of submission go through the same rules ------------------------------------

def test_submission_to_a_local_user_runs_their_rules(rules):
    from tests.gateways.submission.wire import submit, wait_for_mail
    sender, sender_pw = rules.new_user("writer")
    away, away_pw = rules.new_user("holiday")
    grumpy, _ = rules.new_user("refuser")
    install(rules, away, 'require ["vacation", "fileinto", "mailbox"];\n'
                         'vacation :subject "On holiday" "Back in two weeks.";\n'
                         'fileinto :create "From colleagues";\n')
    install(rules, grumpy, 'require "reject";\nreject "I only read paper mail.";\n')
    raw = message("lunch?", sender=sender, to=f"{away}, {grumpy}")
    assert submit(rules, sender, sender_pw, sender, [away, grumpy], raw) == {}
    assert [s for _, s in folder_state(rules, away, away_pw, "From colleagues")] == ["lunch?"]
    # the vacation reply and the DSN for the reject both land in the sender's INBOX
    got = [email.message_from_bytes(m) for m in wait_for_mail(rules, sender, sender_pw, count=2)]
    reply = next(m for m in got if m["Subject"] == "On holiday")
    assert reply["Auto-Submitted"].startswith("auto-replied") and away in reply["From"]
    dsn = next(m for m in got if m is not reply)
    assert b"I only read paper mail." in dsn.as_bytes()
