"""Sieve vacation (RFC 5230, RFC 6131) in formats.sieve: the command, who gets no reply, the reply."""
import email
from email import policy

import pytest

from formats.sieve import (
    Discard, FileInto, Keep, Redirect, SieveError, Vacation, build_vacation_reply,
    compile_script, run,
)
from tests.store.sieve_helpers import actions, msg, result


# === vacation (RFC 5230, RFC 6131) ============================================================

TO_ME = "From: Sender <sender@example.org>\nTo: Me <me@example.com>\nSubject: Lunch?\n" \
        "Message-ID: <orig@example.org>\n"


def vacations(script, message):
    return [a for a in actions(script, message) if isinstance(a, Vacation)]


def test_vacation_basic():
    res = result('require "vacation";\nvacation "I am away";', msg(TO_ME))
    vacation = res.actions[0]
    assert res.actions == [vacation, Keep()]                   # §4.8: implicit keep stays
    assert res.implicit_keep and res.notes == []
    assert vacation.reason == "I am away"
    assert vacation.subject is None and vacation.from_addr is None
    assert vacation.seconds == 7 * 86400                       # §4.1: 7 days by default
    assert vacation.recipient == "sender@example.org"
    assert vacation.mime is False and vacation.addresses == ()
    assert len(vacation.handle) == 64


@pytest.mark.parametrize("args, seconds", [
    (":days 3", 3 * 86400),
    (":days 0", 86400),                                # §4.1: at least one day
    (":days 100000", 365 * 86400),
    (":seconds 120", 120),                             # RFC 6131
    (":seconds 0", 60),
    (":seconds 1K", 1024),
])
def test_vacation_period(args, seconds):
    script = 'require ["vacation", "vacation-seconds"];\nvacation %s "away";' % args
    assert vacations(script, msg(TO_ME))[0].seconds == seconds


def test_vacation_period_arguments():
    with pytest.raises(SieveError, match="vacation-seconds"):
        compile_script('require "vacation";\nvacation :seconds 5 "x";')
    with pytest.raises(SieveError, match="line 2: vacation takes :days or :seconds"):
        compile_script('require ["vacation", "vacation-seconds"];\n'
                       'vacation :days 1 :seconds 5 "x";')


def test_vacation_arguments():
    script = ('require "vacation";\n'
              'vacation :subject "Away" :from "Me Myself <me@example.com>" :mime\n'
              '  :addresses ["Alias@Example.com", "<other@example.net>"] :handle "h1"\n'
              '  text:\nContent-Type: text/plain\n\naway\n.\n;')
    [vacation] = vacations(script, msg(TO_ME))
    assert vacation == Vacation(
        reason="Content-Type: text/plain\n\naway\n", subject="Away",
        from_addr="Me Myself <me@example.com>",
        addresses=("alias@example.com", "other@example.net"), seconds=7 * 86400,
        handle="h1", mime=True, recipient="sender@example.org")


def test_vacation_default_handle():
    # §4.2: the same reason, :subject, :from and :mime mean the same vacation
    def handle(script, message=msg(TO_ME)):
        return vacations('require ["vacation", "variables"];\n' + script, message)[0].handle
    base = handle('vacation :subject "s" "away";')
    assert base == handle('vacation :subject "s" :days 3 :addresses "x@y.org" "away";')
    assert base != handle('vacation :subject "s" "away!";')
    assert base != handle('vacation :subject "t" "away";')
    assert base != handle('vacation :subject "s" :from "me@example.com" "away";')
    assert base != handle('vacation :subject "s" :mime "away";')
    # as written: a reason with variables does not give every sender a new handle
    script = 'if header :matches "subject" "*" { vacation "Re: ${1}"; }'
    assert handle(script, msg(TO_ME)) == handle(script, msg(TO_ME.replace("Lunch?", "Other")))


RFC5230_EXAMPLES = [
    ('require "vacation";\n'
     'if header :contains "subject" "cyrus" {\n'
     '    vacation "I\'m out -- send mail to cyrus-bugs";\n'
     '} else {\n'
     '    vacation "I\'m out -- call me at +1 304 555 0123";\n'
     '}', "I'm out -- call me at +1 304 555 0123", None),
    ('require ["vacation", "variables"];\n'
     'if header :matches "subject" "*" {\n'
     '    vacation :subject "Automatic response to: ${1}"\n'
     '             "I\'m away";\n'
     '}', "I'm away", "Automatic response to: Lunch?"),
    ('require "vacation";\n'
     'vacation :days 23 :addresses ["tjs@example.edu",\n'
     '                              "ts4z@landru.example.edu"]\n'
     '   "I\'m away until October 19.\n'
     '   If it\'s an emergency, call 911, I guess." ;',
     "I'm away until October 19.\n   If it's an emergency, call 911, I guess.", None),
]


@pytest.mark.parametrize("script, reason, subject", RFC5230_EXAMPLES)
def test_rfc_5230_examples(script, reason, subject):
    [vacation] = vacations(script, msg(TO_ME))
    assert (vacation.reason, vacation.subject) == (reason, subject)


def test_rfc_5230_handle_example():
    script = ('require "vacation";\n'
              'if header :contains "subject" "lunch" {\n'
              '    vacation :handle "ran-away" "I\'m out and can\'t meet for lunch";\n'
              '} else {\n'
              '    vacation :handle "ran-away" "I\'m out";\n'
              '}')
    [lunch] = vacations(script, msg(TO_ME))
    [other] = vacations(script, msg(TO_ME.replace("Lunch?", "Budget")))
    assert lunch.handle == other.handle == "ran-away"
    assert lunch.reason != other.reason


def test_rfc_5230_redirect_example():
    script = ('require "vacation";\n'
              'if header :contains "from" "boss@example.edu" {\n'
              '    redirect "pleeb@isp.example.org";\n'
              '} else {\n'
              '    vacation "Sorry, I\'m away, I\'ll read your\n'
              'message when I get around to it.";\n'
              '}')
    boss = msg(TO_ME.replace("sender@example.org", "boss@example.edu"))
    assert actions(script, boss) == [Redirect("pleeb@isp.example.org")]
    assert [type(a) for a in actions(script, msg(TO_ME))] == [Vacation, Keep]


REFUSALS = [
    # RFC 5230 §4.7 / RFC 3834 §2: no reply to programs, lists and bulk mail
    (dict(env_from=""), "envelope sender is empty"),
    (dict(env_from="<>"), "envelope sender is empty"),
    (dict(env_from="MAILER-DAEMON@example.org"), "mailer or a list"),
    (dict(env_from="owner-list@example.org"), "mailer or a list"),
    (dict(env_from="list-request@example.org"), "mailer or a list"),
    (dict(env_from="LISTSERV@example.org"), "mailer or a list"),
    (dict(env_from="jörg@example.de"), "not an ASCII address"),
    (dict(headers="Auto-Submitted: auto-replied\n"), "Auto-Submitted: auto-replied"),
    (dict(headers="Auto-Submitted: auto-generated (cron)\n"), "Auto-Submitted"),
    (dict(headers="Auto-Submitted: Auto-Notified; owner-email=x@y\n"), "Auto-Submitted"),
    (dict(headers="Precedence: bulk\n"), "Precedence: bulk"),
    (dict(headers="Precedence: LIST\n"), "Precedence: LIST"),
    (dict(headers="Precedence: junk\n"), "Precedence: junk"),
    (dict(headers="List-Id: <x.example.org>\n"), "list-id"),
    (dict(headers="List-Unsubscribe: <mailto:u@example.org>\n"), "list-unsubscribe"),
    (dict(headers="List-Post: <mailto:p@example.org>\n"), "list-post"),
    # RFC 5230 §4.6: only when one of my addresses is a visible recipient
    (dict(to="To: other@example.org\nCc: third@example.org\n"), "none of the user's"),
    (dict(to=""), "none of the user's"),
    # a reply to myself
    (dict(env_from="me@example.com"), "the user's own address"),
    (dict(env_from="Me+x@Example.com"), "the user's own address"),
    (dict(env_from="alias@example.com", user_addresses=("alias@example.com",)),
     "the user's own address"),
]


@pytest.mark.parametrize("case, why", REFUSALS)
def test_vacation_refusals(case, why):
    headers = case.get("to", "To: me@example.com\n") + case.get("headers", "")
    message = msg(headers + "Subject: hi\n", env_from=case.get("env_from", "s@example.org"),
                  user_addresses=case.get("user_addresses", ()))
    res = result('require "vacation";\nvacation "away";', message)
    assert res.actions == [Keep()] and res.implicit_keep
    assert len(res.notes) == 1 and res.notes[0].startswith("vacation: no reply: ")
    assert why in res.notes[0]


@pytest.mark.parametrize("headers, kwargs", [
    ("To: me@example.com\n", {}),
    ("To: ME@EXAMPLE.COM\n", {}),
    ("To: list@example.org\nCc: Me <me@example.com>\n", {}),
    ("Bcc: me@example.com\n", {}),
    ("To: x@example.org\nResent-To: me@example.com\n", {}),
    ("To: x@example.org\nResent-Cc: me@example.com\n", {}),
    ("To: x@example.org\nResent-Bcc: me@example.com\n", {}),
    ("To: me+news@example.com\n", {}),                           # RFC 5233 detail
    ("To: me@example.com\n", dict(env_to="me+shop@example.com")),
    ("To: alias@example.net\n", dict(user_addresses=("alias@example.net",))),
    ("To: me@example.com\nAuto-Submitted: no\nPrecedence: first-class\n", {}),
])
def test_vacation_replies(headers, kwargs):
    message = msg(headers + "Subject: hi\n", **kwargs)
    res = result('require "vacation";\nvacation "away";', message)
    assert [type(a) for a in res.actions] == [Vacation, Keep] and res.notes == []


def test_vacation_addresses_argument_counts_as_mine():
    message = msg("To: tjs@example.edu\n")
    script = 'require "vacation";\nvacation :addresses ["TJS@example.edu"] "away";'
    assert [type(a) for a in actions(script, message)] == [Vacation, Keep]
    assert result('require "vacation";\nvacation "away";', message).notes


def test_vacation_bad_from_is_ignored():
    res = result('require "vacation";\nvacation :from "not an address" "away";', msg(TO_ME))
    assert res.actions[0].from_addr is None
    assert res.notes == ["vacation: ignoring :from 'not an address', not one address"]


@pytest.mark.parametrize("script, error", [
    ('require "vacation";\nvacation "a";\nvacation "b";', "more than one vacation"),
    ('require ["vacation", "reject"];\nvacation "a";\nreject "b";', "combined with vacation"),
    ('require ["vacation", "ereject"];\nereject "b";\nvacation "a";', "combined with vacation"),
])
def test_vacation_runtime_errors_keep(script, error):
    res = run(compile_script(script), msg(TO_ME))
    assert res.actions == [Keep()] and res.implicit_keep and error in res.error


def test_a_refused_vacation_still_counts_as_the_one_vacation():
    res = run(compile_script('require "vacation";\nvacation "a";\nvacation "b";'),
              msg("To: x@example.org\n"))
    assert "more than one vacation" in res.error and res.notes


def test_vacation_with_discard_and_fileinto():
    script = 'require ["vacation", "fileinto"];\nvacation "away";\nfileinto "A";\ndiscard;'
    assert [type(a) for a in actions(script, msg(TO_ME))] == [Vacation, FileInto, Discard]


# --- the reply (RFC 5230 §5, RFC 3834 §3) ----------------------------------------------------

ORIGINAL = (b"From: Sender <sender@example.org>\r\nTo: me@example.com\r\n"
            b"Subject: =?utf-8?q?R=C3=A9union?= demain\r\n"
            b"Message-ID: <orig@example.org>\r\n"
            b"References: <a@x> <b@x>\r\n\r\nbody\r\n")


def reply_of(vacation, original=ORIGINAL, now=1700000000.0):
    raw = build_vacation_reply(vacation, original, "me@example.com", "mx.example.com", now)
    assert b"\n" not in raw.replace(b"\r\n", b"")          # CRLF only
    assert raw.isascii()                                  # 7-bit clean
    return raw, email.message_from_bytes(raw, policy=policy.default)


def content(part) -> str:
    return part.get_content().replace("\r\n", "\n")


def test_reply_headers():
    raw, reply = reply_of(Vacation(reason="I am away.\nBack Monday.", handle="h",
                                   recipient="sender@example.org"))
    assert reply["From"] == "me@example.com"
    assert reply["To"] == "sender@example.org"
    assert reply["Subject"] == "Auto: Réunion demain"                 # RFC 5230 §5.4
    assert reply["In-Reply-To"] == "<orig@example.org>"
    assert reply["References"] == "<a@x> <b@x> <orig@example.org>"   # RFC 5322 §3.6.4
    assert b"\r\nAuto-Submitted: auto-replied (vacation)\r\n" in raw  # RFC 3834 §5
    assert reply["MIME-Version"] == "1.0"
    assert reply.get_content_type() == "text/plain"
    assert reply.get_content_charset() == "utf-8"
    assert reply["Date"] == "Tue, 14 Nov 2023 22:13:20 +0000"
    assert reply["Message-ID"].endswith("@mx.example.com>")
    assert content(reply) == "I am away.\nBack Monday.\n"
    assert raw.endswith(b"\r\n")


def test_reply_is_deterministic_and_ids_differ_per_sender():
    vacation = Vacation(reason="away", handle="h", recipient="a@example.org")
    assert reply_of(vacation)[0] == reply_of(vacation)[0]
    other = Vacation(reason="away", handle="h", recipient="b@example.org")
    assert reply_of(vacation)[1]["Message-ID"] != reply_of(other)[1]["Message-ID"]


def test_reply_with_subject_from_and_non_ascii():
    vacation = Vacation(reason="Je suis absent — à lundi", subject="Absent: Grüße",
                        from_addr="Jörg Müller <jm@example.com>", handle="h",
                        recipient="sender@example.org")
    raw, reply = reply_of(vacation)
    assert reply["Subject"] == "Absent: Grüße"
    assert b"=?utf-8?" in raw                                       # RFC 2047
    assert reply["From"].addresses[0].display_name == "Jörg Müller"
    assert reply["From"].addresses[0].addr_spec == "jm@example.com"
    assert content(reply) == "Je suis absent — à lundi\n"


def test_reply_subject_cannot_inject_headers():
    vacation = Vacation(reason="x", subject="Out\r\nBcc: victim@example.net", handle="h",
                        recipient="s@example.org")
    raw, reply = reply_of(vacation)
    assert reply["Bcc"] is None and reply["Subject"] == "Out Bcc: victim@example.net"


def test_reply_to_a_message_without_subject_or_id():
    raw, reply = reply_of(Vacation(reason="x", handle="h", recipient="s@example.org"),
                          original=b"From: s@example.org\r\n\r\nbody")
    assert reply["Subject"] == "Auto: (no subject)"
    assert reply["In-Reply-To"] is None and reply["References"] is None


def test_reply_references_from_in_reply_to():
    original = b"Message-ID: <m@x>\r\nIn-Reply-To: <p@x>\r\nSubject: Re: x\r\n\r\n"
    _, reply = reply_of(Vacation(reason="x", handle="h", recipient="s@x.org"), original)
    assert reply["References"] == "<p@x> <m@x>"
    assert reply["Subject"] == "Auto: Re: x"


def test_reply_with_invalid_from_uses_the_user_address():
    _, reply = reply_of(Vacation(reason="x", from_addr="a, b, c", handle="h",
                                 recipient="s@x.org"))
    assert reply["From"] == "me@example.com"


def test_reply_with_mime_reason():
    # RFC 5230 :mime example: the reason is a whole MIME entity
    script = ('require "vacation";\nvacation :mime text:\n'
              'Content-Type: multipart/alternative; boundary=foo\n\n'
              '--foo\n\n'
              "I'm at the beach relaxing.  Mmmm, surf...\n\n"
              '--foo\n'
              'Content-Type: text/html; charset=us-ascii\n\n'
              "<HTML><BODY><P>I'm at the <A HREF=\"beach.gif\">beach</A> relaxing.\n"
              '</BODY></HTML>\n\n'
              '--foo--\n.\n;')
    [vacation] = vacations(script, msg(TO_ME))
    raw, reply = reply_of(vacation)
    assert reply.get_content_type() == "multipart/alternative"
    plain, html = reply.iter_parts()
    assert "beach relaxing" in plain.get_content()
    assert html.get_content_type() == "text/html"
    assert reply["Auto-Submitted"] == "auto-replied (vacation)"
    assert raw.count(b"MIME-Version") == 1


def test_reply_with_mime_reason_without_content_type():
    vacation = Vacation(reason="Content-Language: fr\n\nabsent — oui", mime=True, handle="h",
                        recipient="s@x.org")
    raw = build_vacation_reply(vacation, ORIGINAL, "me@example.com", "mx", 0)
    reply = email.message_from_bytes(raw, policy=policy.default)
    assert reply.get_content_type() == "text/plain"
    assert reply["Content-Language"] == "fr"
    assert reply["Content-Transfer-Encoding"] == "8bit"
    assert content(reply) == "absent — oui\n"
