"""SendMail, SmartReply and SmartForward over real HTTP against `haven serve` on both engines,
relaying to a test smarthost: local and remote recipients get the message once, Bcc is not
sent, Sent gets a copy, a repeated ClientId sends nothing, Smart* add the original."""

from __future__ import annotations

import time

from imapclient import IMAPClient

from tests.gateways.activesync.client import X, EasClient, find
from tests.gateways.activesync.test_sync import MSG, Phone


EAS_SETTINGS = {"submission.queue_interval": "0.3", "server.max_message_size": "200000"}
EAS_RELAY = True


def send_doc(cmd, raw: bytes, client_id="c1", save=True, extra=""):
    el = X(f'<{cmd} xmlns="ComposeMail"><ClientId>{client_id}</ClientId>'
           f'{"<SaveInSentItems/>" if save else ""}{extra}<Mime/></{cmd}>')
    el.find("{ComposeMail}Mime").text = raw
    return el


def mailbox(server, user, password, folder="INBOX"):
    c = IMAPClient(server.imap[0], port=server.imap[1], ssl=False, timeout=15)
    c.login(user, password)
    c.select_folder(folder)
    out = [(v[b"BODY[]"], v[b"FLAGS"]) for v in c.fetch(c.search(), ["BODY.PEEK[]", "FLAGS"]).values()]
    c.logout()
    return out


def wait_mailbox(server, user, password, count=1, folder="INBOX"):
    deadline = time.monotonic() + 10
    while True:
        got = mailbox(server, user, password, folder)
        if len(got) >= count or time.monotonic() > deadline:
            return got
        time.sleep(0.1)


def test_send_mail_local_remote_bcc_sent_copy_and_client_id(eas, sink):
    user, password = eas.new_user("sender")
    friend, friend_pw = eas.new_user("friend")
    hidden, hidden_pw = eas.new_user("hidden")
    remote = f"remote-{user.partition('@')[0]}@example.net"
    raw = (f"From: {user}\r\nTo: {friend}, {remote}\r\nBcc: {hidden}\r\nSubject: from the phone\r\n"
           f"Message-ID: <phone-{user}>\r\n\r\nhello from the phone\r\n").encode()
    phone = EasClient(eas, user, password, device_id="ApplSEND01")
    status, answer = phone.post("SendMail", send_doc("SendMail", raw))
    assert status == 200 and answer is None  # sent: an empty answer
    [(got, _flags)] = wait_mailbox(eas, friend, friend_pw)
    assert b"hello from the phone" in got and b"Bcc:" not in got
    [(got_hidden, _f)] = wait_mailbox(eas, hidden, hidden_pw)
    assert b"Bcc:" not in got_hidden
    [relayed] = sink.wait_for(remote)
    assert b"hello from the phone" in relayed.data and b"Bcc:" not in relayed.data
    [(sent, flags)] = mailbox(eas, user, password, "Sent")
    assert b"Bcc: " + hidden.encode() in sent and b"\\Seen" in flags  # the sender's copy keeps it
    # the phone retries with the same ClientId: nothing is sent again
    status, answer = phone.post("SendMail", send_doc("SendMail", raw))
    assert find(answer, "ComposeMail:Status") == "118"
    time.sleep(0.5)
    assert len(mailbox(eas, friend, friend_pw)) == 1 and len(sink.for_rcpt(remote)) == 1


def test_send_mail_refusals(eas):
    user, password = eas.new_user("refused")
    phone = EasClient(eas, user, password, device_id="ApplSEND02")
    cases = [
        (b"From: " + user.encode() + b"\r\nSubject: nobody\r\n\r\nx\r\n", "119"),
        (b"From: someone@else.example\r\nTo: " + user.encode() + b"\r\n\r\nx\r\n", "120"),
        (b"From: " + user.encode() + b"\r\nTo: nobody-here@example.test\r\n\r\nx\r\n", "116"),
        (b"From: " + user.encode() + b"\r\nTo: " + user.encode() + b"\r\n\r\n" + b"x" * 300000, "122"),
    ]
    for n, (raw, expected) in enumerate(cases):
        status, answer = phone.post("SendMail", send_doc("SendMail", raw, client_id=f"r{n}"))
        assert status == 200 and find(answer, "ComposeMail:Status") == expected, (raw[:60], answer)


def test_send_mail_as_rfc822_body(eas):
    user, password = eas.new_user("rfc822")
    phone = EasClient(eas, user, password, device_id="ApplSEND03")
    raw = f"From: {user}\r\nTo: {user}\r\nSubject: plain mime\r\n\r\nbody\r\n".encode()
    status, _h, data = phone.raw("POST", phone.query("SendMail", SaveInSent="T"), raw,
                                 headers={"Content-Type": "message/rfc822"})
    assert status == 200 and data == b""
    assert len(wait_mailbox(eas, user, password)) == 1 and len(mailbox(eas, user, password, "Sent")) == 1


def test_smart_reply_and_forward(eas):
    user, password = eas.new_user("smart")
    friend, friend_pw = eas.new_user("smartfriend")
    eas.deliver(user, MSG % (user.encode(), b"question", b"q1", b"the original question"))
    phone = Phone(eas, user, password, device="ApplSEND04")
    phone.sync("INBOX")
    coll = phone.sync("INBOX")
    sid = find(coll.find("{AirSync}Commands/{AirSync}Add"), "AirSync:ServerId")
    inbox = phone.folders["INBOX"]
    source = f"<Source><FolderId>{inbox}</FolderId><ItemId>{sid}</ItemId></Source>"
    reply = f"From: {user}\r\nTo: {friend}\r\nSubject: Re: question\r\n\r\nmy answer\r\n".encode()
    status, answer = phone.client.post("SmartReply", send_doc("SmartReply", reply, "s1", False, source))
    assert status == 200 and answer is None
    [(got, _f)] = wait_mailbox(eas, friend, friend_pw)
    assert b"my answer" in got and b"> body of the original question\r\n" in got and not got.endswith(b"> \r\n")
    forward = f"From: {user}\r\nTo: {friend}\r\nSubject: Fw: question\r\n\r\nsee below\r\n".encode()
    status, answer = phone.client.post("SmartForward", send_doc("SmartForward", forward, "s2", False, source))
    assert status == 200 and answer is None
    got = [m for m, _f in wait_mailbox(eas, friend, friend_pw, 2) if b"Fw: question" in m][0]
    assert b"see below" in got and b"message/rfc822" in got and b"the original question" in got
    [(_orig, flags)] = mailbox(eas, user, password)
    assert b"\\Answered" in flags and b"$Forwarded" in flags
    bad = "<Source><FolderId>1</FolderId><ItemId>1:999999</ItemId></Source>"
    status, answer = phone.client.post("SmartReply", send_doc("SmartReply", reply, "s3", False, bad))
    assert find(answer, "ComposeMail:Status") == "150"
