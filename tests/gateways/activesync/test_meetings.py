"""Meeting invitations end to end, over real HTTP against `haven serve` on both engines: an
invitation delivered over LMTP is a meeting request in mail Sync; MeetingResponse answers it
into the default calendar (read back over CalDAV), the invitation leaves the Inbox, and a 16.1
phone that asks for it sends the iTIP REPLY through the relay (a 14.1 phone never does);
declines, one occurrence, a cancellation and bad requests."""

from __future__ import annotations

import base64
import secrets
import time

from datetime import datetime, timedelta

import caldav

from gateways.activesync import meeting, tzblob

from tests.gateways.activesync.client import find, findall
from tests.gateways.activesync.test_meeting import load
from tests.gateways.activesync.test_sync import Phone

EAS_SETTINGS = {"submission.queue_interval": "0.3"}
EAS_RELAY = True

REQUEST, RECURRING, CANCEL = "thunderbird-request.eml", "thunderbird-recurring-request.eml", "thunderbird-cancel.eml"
MR_OPTS = "<b:BodyPreference><b:Type>1</b:Type><b:TruncationSize>2000</b:TruncationSize></b:BodyPreference>"


def invite(server, user, name, uid, organizer):
    raw = load(name).replace(b"attendee@example.test", user.encode()).replace(b"olga@example.net", organizer.encode())
    raw = raw.replace(b"c3f1a9e2-4b7d-4e61-9a55-planning", uid.encode()).replace(b"weekly-sync-7f3e", uid.encode())
    server.deliver(user, raw, sender=organizer)


def setup(server, name, version="16.1"):
    user, password = server.new_user(name)
    phone = Phone(server, user, password, device=f"Appl{name.upper()}{version.replace('.', '')}")
    phone.client.version = version
    organizer = f"olga-{secrets.token_hex(3)}@example.net"
    return user, password, phone, organizer


def invited(server, name, template, subject, prefix="planning", version="16.1"):
    """A new account's phone, provisioned, with the invitation ``template`` (of a new UID) in its
    Inbox: ``(user, password, phone, organizer, uid, the invitation's Add)``."""
    user, password, phone, organizer = setup(server, name, version)
    uid = f"{prefix}-" + secrets.token_hex(4)
    invite(server, user, template, uid, organizer)
    phone.sync("INBOX", options=MR_OPTS)
    return user, password, phone, organizer, uid, inbox_items(phone)[subject]


def inbox_items(phone):
    coll = phone.sync("INBOX", options=MR_OPTS)
    return {find(a, "AirSync:ApplicationData/Email:Subject"): a for a in findall(coll, "AirSync:Commands/AirSync:Add")}


def respond(phone, response, cid, rid, extra=""):
    status, answer = phone.client.post("MeetingResponse", f"""<MeetingResponse xmlns="MeetingResponse"
        xmlns:b="AirSyncBase"><Request><UserResponse>{response}</UserResponse><CollectionId>{cid}</CollectionId>
        <RequestId>{rid}</RequestId>{extra}</Request></MeetingResponse>""")
    assert status == 200
    [result] = findall(answer, "MeetingResponse:Result")
    return result


def calendar_event(server, user, password, uid):
    with caldav.DAVClient(url=f"http://{server.http[0]}:{server.http[1]}/", username=user, password=password,
                          timeout=30) as c:
        [cal] = [x for x in c.principal().calendars() if x.get_display_name() == "Calendar"]
        try:
            return cal.event_by_uid(uid).icalendar_instance
        except caldav.lib.error.NotFoundError:
            return None


def partstats(cal, user):
    """RECURRENCE-ID (or None) -> the user's PARTSTAT, per VEVENT."""
    out = {}
    for event in cal.walk("VEVENT"):
        rid = event.get("RECURRENCE-ID")
        [att] = [a for a in (event.get("ATTENDEE") if isinstance(event.get("ATTENDEE"), list)
                             else [event.get("ATTENDEE")]) if str(a).lower() == "mailto:" + user]
        out[rid.dt.isoformat() if rid is not None else None] = str(att.params["PARTSTAT"])
    return out


def test_accept_in_16_1_stores_the_event_and_sends_the_reply(eas, sink):
    user, password, phone, organizer, uid, item = invited(eas, "accept", REQUEST, "Invitation: Planning meeting")
    data = item.find("{AirSync}ApplicationData")
    assert find(data, "Email:MessageClass") == "IPM.Schedule.Meeting.Request"
    assert find(data, "Email:MeetingRequest/Email:StartTime") == "2026-12-14T09:00:00.000Z"
    zone = tzblob.decode(find(data, "Email:MeetingRequest/Email:TimeZone"))
    assert zone.utcoffset(datetime(2026, 12, 14, 10)) == timedelta(hours=1)
    assert zone.utcoffset(datetime(2027, 7, 1, 10)) == timedelta(hours=2)  # Berlin's rules, summer time too
    assert find(data, "Email:MeetingRequest/AirSyncBase:Location/AirSyncBase:DisplayName") == "Room 4"
    assert base64.b64decode(find(data, "Email:MeetingRequest/Email:GlobalObjId")) == meeting.global_obj_id(uid)
    sid = find(item, "AirSync:ServerId")
    result = respond(phone, 1, phone.folders["INBOX"], sid, "<SendResponse><b:Body><b:Type>1</b:Type>"
                     "<b:Data>See you there</b:Data></b:Body></SendResponse>")
    assert find(result, "MeetingResponse:Status") == "1" and find(result, "MeetingResponse:RequestId") == sid
    calendar_id = find(result, "MeetingResponse:CalendarId")
    assert calendar_id and calendar_id.isdigit()
    cal = calendar_event(eas, user, password, uid)
    assert partstats(cal, user) == {None: "ACCEPTED"} and cal.get("METHOD") is None
    [sent] = sink.wait_for(organizer)
    assert b"METHOD:REPLY" in sent.data and b"PARTSTAT=ACCEPTED" in sent.data and b"See you there" in sent.data
    assert b"Subject: Accepted: Planning meeting" in sent.data and uid.encode() in sent.data
    assert organizer.encode() not in sent.data.split(b"METHOD:REPLY")[1].split(b"ORGANIZER")[0]  # only the user
    coll = phone.sync("INBOX", options=MR_OPTS)  # the invitation left the Inbox
    assert [find(d, "AirSync:ServerId") for d in findall(coll, "AirSync:Commands/AirSync:Delete")
            + findall(coll, "AirSync:Commands/AirSync:SoftDelete")] == [sid]
    # the same invitation answered again: the mail is gone
    assert find(respond(phone, 1, phone.folders["INBOX"], sid), "MeetingResponse:Status") == "3"


def test_14_1_decline_keeps_the_event_and_sends_nothing(eas, sink):
    user, password, phone, organizer, uid, item = invited(eas, "decline", REQUEST, "Invitation: Planning meeting",
                                                          version="14.1")
    data = item.find("{AirSync}ApplicationData")
    assert find(data, "Email:MeetingRequest/Email:Location") == "Room 4"
    assert find(data, "Email:MeetingRequest/Email2:MeetingMessageType") == "1"
    result = respond(phone, 3, phone.folders["INBOX"], find(item, "AirSync:ServerId"), "<SendResponse/>")
    assert find(result, "MeetingResponse:Status") == "1" and find(result, "MeetingResponse:CalendarId") is None
    assert partstats(calendar_event(eas, user, password, uid), user) == {None: "DECLINED"}
    time.sleep(1.0)  # the queue runs every 0.3 s: a reply would be there by now
    assert sink.for_rcpt(organizer) == []


def test_one_occurrence_by_instance_id_then_a_change_of_mind(eas, sink):
    user, password, phone, organizer, uid, item = invited(eas, "occurrence", RECURRING, "Invitation: Weekly sync",
                                                          "weekly")
    data = item.find("{AirSync}ApplicationData")
    assert find(data, "Email:MeetingRequest/Email:Recurrences/Email:Recurrence/Email:Type") == "1"
    result = respond(phone, 2, phone.folders["INBOX"], find(item, "AirSync:ServerId"),
                     "<InstanceId>2026-12-16T09:00:00.000Z</InstanceId><SendResponse/>")
    assert find(result, "MeetingResponse:Status") == "1"
    calendar_id = find(result, "MeetingResponse:CalendarId")
    cal = calendar_event(eas, user, password, uid)
    assert partstats(cal, user) == {None: "NEEDS-ACTION", "2026-12-16T10:00:00+01:00": "TENTATIVE"}
    [sent] = sink.wait_for(organizer)
    assert b"RECURRENCE-ID:20261216T090000Z" in sent.data and b"PARTSTAT=TENTATIVE" in sent.data
    # the calendar item itself answered (the invitation is gone): the whole series accepted
    result = respond(phone, 1, _calendar_folder(eas, user), calendar_id)
    assert find(result, "MeetingResponse:Status") == "1" and find(result, "MeetingResponse:CalendarId") == calendar_id
    assert set(partstats(calendar_event(eas, user, password, uid), user).values()) == {"ACCEPTED"}
    # an occurrence the series does not have
    result = respond(phone, 1, _calendar_folder(eas, user), calendar_id, "<InstanceId>not a time</InstanceId>")
    assert find(result, "MeetingResponse:Status") == "2"


def _calendar_folder(server, user) -> str:
    from tests.conftest import run_on_reactor
    store = server.admin_store()
    account = run_on_reactor(store.get_account, user)
    [cal] = [c for c in run_on_reactor(store.list_dav_collections, account.id) if c.folder.name == "Calendar"]
    return str(cal.folder.id)


def test_cancel_removes_the_event(eas):
    user, password, phone, organizer, uid, item = invited(eas, "cancel", REQUEST, "Invitation: Planning meeting")
    assert find(respond(phone, 1, phone.folders["INBOX"], find(item, "AirSync:ServerId")),
                "MeetingResponse:Status") == "1"
    assert calendar_event(eas, user, password, uid) is not None
    invite(eas, user, CANCEL, uid, organizer)
    cancel = inbox_items(phone)["Cancelled: Planning meeting"]
    assert find(cancel, "AirSync:ApplicationData/Email:MessageClass") == "IPM.Schedule.Meeting.Canceled"
    status, answer = phone.client.post("MeetingResponse", f"""<MeetingResponse xmlns="MeetingResponse"
        xmlns:s="Search"><Request><UserResponse>1</UserResponse><s:LongId>{find(cancel, "AirSync:ServerId")}</s:LongId>
        </Request></MeetingResponse>""")  # as found by Search: its LongId
    [result] = findall(answer, "MeetingResponse:Result")
    assert find(result, "MeetingResponse:Status") == "1" and find(result, "MeetingResponse:CalendarId") is None
    assert calendar_event(eas, user, password, uid) is None


def test_bad_requests(eas):
    user, password, phone, organizer = setup(eas, "bad")
    inbox = phone.folders["INBOX"]
    eas.deliver(user, b"From: a@example.org\r\nTo: " + user.encode() + b"\r\nSubject: plain\r\n\r\nhello\r\n")
    phone.sync("INBOX", options=MR_OPTS)
    plain = find(inbox_items(phone)["plain"], "AirSync:ServerId")
    assert find(respond(phone, 1, inbox, plain), "MeetingResponse:Status") == "2"  # not an invitation
    assert find(respond(phone, 1, inbox, f"{inbox}:999999"), "MeetingResponse:Status") == "3"
    assert find(respond(phone, 1, inbox, "garbage"), "MeetingResponse:Status") == "2"
    assert find(respond(phone, 7, inbox, plain), "MeetingResponse:Status") == "2"
    assert find(respond(phone, 1, "999999", "1"), "MeetingResponse:Status") == "3"
    status, answer = phone.client.post("MeetingResponse", '<MeetingResponse xmlns="MeetingResponse"/>')
    assert status == 200 and find(answer, "MeetingResponse:Result/MeetingResponse:Status") == "2"
