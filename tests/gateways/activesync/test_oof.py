"""Out-of-office over ActiveSync Settings Oof ([MS-ASCMD] 2.2.3.119), against `haven serve` on both
engines with a relay: Set then Get; deliveries over LMTP are answered once per sender (remote
replies at the smarthost sink, internal ones in the sender's INBOX), never a list message,
with the message of the sender's audience (an address-book contact is "known"); a schedule in
the past or the future answers nothing, nor does "off"; the user's own Sieve script still runs."""

from __future__ import annotations

import secrets
import time
from xml.sax.saxutils import escape

from imapclient import IMAPClient

from tests.conftest import run_on_reactor
from tests.gateways.activesync.client import EasClient, find, findall
from tests.gateways.dav.wire import Dav, vcard

EAS_SETTINGS = {"submission.queue_interval": "0.3"}
EAS_RELAY = True


def oof_set(phone, state, messages=(), start=None, end=None):
    times = (f"<StartTime>{start}</StartTime>" if start else "") + (f"<EndTime>{end}</EndTime>" if end else "")
    body = "".join(f"<OofMessage><{aud}/><Enabled>{int(on)}</Enabled><ReplyMessage>{escape(text)}</ReplyMessage>"
                   f"<BodyType>{kind}</BodyType></OofMessage>" for aud, on, text, kind in messages)
    status, answer = phone.post("Settings", f'<Settings xmlns="Settings"><Oof><Set><OofState>{state}</OofState>'
                                f"{times}{body}</Set></Oof></Settings>")
    assert status == 200
    return find(answer, "Settings:Oof/Settings:Status")


def oof_get(phone, kind="Text"):
    status, answer = phone.post("Settings", f'<Settings xmlns="Settings"><Oof><Get><BodyType>{kind}</BodyType>'
                                "</Get></Oof></Settings>")
    assert status == 200 and find(answer, "Settings:Oof/Settings:Status") == "1"
    return answer.find("{Settings}Oof/{Settings}Get")


def stamp(offset: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(time.time() + offset))


def mail(user, sender, subject, extra=b""):
    return (b"From: " + sender.encode() + b"\r\nTo: " + user.encode() + b"\r\nSubject: " + subject.encode() +
            b"\r\nMessage-ID: <" + secrets.token_hex(6).encode() + b"@example.net>\r\n" + extra +
            b"\r\nhello\r\n")


def remote(name):
    return f"{name}-{secrets.token_hex(3)}@example.net"


def account(eas, name):
    user, password = eas.new_user(name)
    return user, password, EasClient(eas, user, password, device_id=f"ApplOOF{secrets.token_hex(3).upper()}")


MESSAGES = (("AppliesToInternal", True, "Back Monday (colleagues)", "Text"),
            ("AppliesToExternalKnown", True, "<p>Back Monday, <b>friend</b></p>", "HTML"),
            ("AppliesToExternalUnknown", True, "I am away until Monday.", "Text"))


def test_set_then_get(eas):
    _user, _pw, phone = account(eas, "oofget")
    get = oof_get(phone)
    assert find(get, "Settings:OofState") == "0"
    assert oof_set(phone, 2, MESSAGES, "2027-01-04T08:00:00.000Z", "2027-01-11T17:00:00.000Z") == "1"
    get = oof_get(phone)
    assert find(get, "Settings:OofState") == "2"
    assert find(get, "Settings:StartTime") == "2027-01-04T08:00:00.000Z"
    assert find(get, "Settings:EndTime") == "2027-01-11T17:00:00.000Z"
    msgs = findall(get, "Settings:OofMessage")
    assert [(m[0].tag.rpartition("}")[2], find(m, "Settings:Enabled"), find(m, "Settings:ReplyMessage"))
            for m in msgs] == [("AppliesToInternal", "1", "Back Monday (colleagues)"),
                               ("AppliesToExternalKnown", "1", "Back Monday, friend"),
                               ("AppliesToExternalUnknown", "1", "I am away until Monday.")]
    html = findall(oof_get(phone, "HTML"), "Settings:OofMessage")
    assert find(html[1], "Settings:ReplyMessage") == "<p>Back Monday, <b>friend</b></p>"
    assert find(html[1], "Settings:BodyType") == "HTML"
    # a Set that names only the state keeps the messages
    assert oof_set(phone, 0) == "1"
    get = oof_get(phone)
    assert find(get, "Settings:OofState") == "0" and find(get, "Settings:StartTime") is None
    assert find(findall(get, "Settings:OofMessage")[2], "Settings:ReplyMessage") == "I am away until Monday."
    # refusals
    assert oof_set(phone, 7) == "5"
    assert oof_set(phone, 2, (), "2027-01-11T00:00:00.000Z", "2027-01-04T00:00:00.000Z") == "6"
    assert oof_set(phone, 2, (), "yesterday", "2027-01-04T00:00:00.000Z") == "5"
    status, answer = phone.post("Settings", '<Settings xmlns="Settings"><Oof/></Settings>')
    assert find(answer, "Settings:Oof/Settings:Status") == "2"


def test_replies_once_per_sender_never_to_lists(eas, sink):
    user, _pw, phone = account(eas, "oofon")
    assert oof_set(phone, 1, MESSAGES) == "1"
    stranger, friend, lister = remote("stranger"), remote("friend"), remote("lister")
    dav = Dav(eas, user, _pw)
    # the card spells the address with capitals: still the same sender
    assert dav.put(dav.contacts + "friend.vcf", vcard("card-friend", "Fred Friend", friend.capitalize())).status == 201
    eas.deliver(user, mail(user, stranger, "Question"), sender=stranger)
    [reply] = sink.wait_for(stranger)
    assert reply.mail_from in ("", "<>")  # RFC 3834 §3.3: a null reverse path
    assert b"I am away until Monday." in reply.data and b"Auto-Submitted: auto-replied" in reply.data
    assert b"Subject: Auto: Question" in reply.data
    eas.deliver(user, mail(user, friend, "Lunch?"), sender=friend)
    [known] = sink.wait_for(friend)
    assert b"text/html" in known.data and b"<b>friend</b>" in known.data
    eas.deliver(user, mail(user, stranger, "Question again"), sender=stranger)  # answered already
    eas.deliver(user, mail(user, lister, "Digest", b"List-Id: <news.example.net>\r\n"), sender=lister)
    eas.deliver(user, mail(user, lister, "Bulk", b"Precedence: bulk\r\n"), sender=lister)
    eas.deliver(user, mail(user, lister, "Robot", b"Auto-Submitted: auto-generated\r\n"), sender=lister)
    time.sleep(1.5)  # the queue runs every 0.3 s
    assert len(sink.for_rcpt(stranger)) == 1 and sink.for_rcpt(lister) == []
    # a new period (off, then on again): the sender is answered again
    assert oof_set(phone, 0) == "1" and oof_set(phone, 1) == "1"
    eas.deliver(user, mail(user, stranger, "Question, later"), sender=stranger)
    assert len(sink.wait_for(stranger, count=2)) == 2


def test_internal_sender_and_the_users_script(eas):
    user, password, phone = account(eas, "oofin")
    colleague, colleague_pw = eas.new_user("colleague")  # same domain: internal
    script = 'require ["fileinto", "mailbox"];\r\nif header :contains "subject" "report" { fileinto :create "Reports"; }\r\n'
    store = eas.admin_store()  # as `haven sieve put --activate` does
    owner = run_on_reactor(store.get_account, user)
    run_on_reactor(store.put_sieve_script, owner.id, "main", script)
    run_on_reactor(store.set_active_sieve_script, owner.id, "main")
    assert oof_set(phone, 1, MESSAGES) == "1"
    eas.deliver(user, mail(user, colleague, "Weekly report"), sender=colleague)
    c = IMAPClient(eas.imap[0], port=eas.imap[1], ssl=False, timeout=15)
    c.login(colleague, colleague_pw)
    deadline = time.monotonic() + 10
    while True:
        c.select_folder("INBOX")
        found = c.search()
        if found or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    [(_uid, data)] = c.fetch(found, ["BODY.PEEK[]"]).items()
    assert b"Back Monday (colleagues)" in data[b"BODY[]"]
    c.logout()
    c = IMAPClient(eas.imap[0], port=eas.imap[1], ssl=False, timeout=15)
    c.login(user, password)
    assert c.select_folder("Reports")[b"EXISTS"] == 1  # the script ran too
    c.logout()


def test_schedules_and_off(eas, sink):
    user, _pw, phone = account(eas, "oofsched")
    senders = {}
    for case, (state, start, end) in {"past": (2, stamp(-7200), stamp(-3600)),
                                      "future": (2, stamp(3600), stamp(7200)),
                                      "off": (0, None, None),
                                      "now": (2, stamp(-60), stamp(3600))}.items():
        assert oof_set(phone, state, MESSAGES, start, end) == "1"
        senders[case] = remote(case)
        eas.deliver(user, mail(user, senders[case], case), sender=senders[case])
    [now] = sink.wait_for(senders["now"])
    assert b"I am away until Monday." in now.data
    assert all(sink.for_rcpt(senders[c]) == [] for c in ("past", "future", "off"))
