"""A phone's calendar, contacts and tasks are the rows CalDAV and CardDAV clients see, end to end
on both engines: ActiveSync (WBXML over HTTP, an iPhone-shaped 16.1 client and a 14.1 one)
beside the ``caldav`` library and raw CardDAV against one ``haven serve``.

- an event made over EAS is served over CalDAV (same UID, found by a time-range REPORT); a
  CalDAV edit or delete is a Change or Delete at the next Sync, and wakes a parked Ping within 1 s;
- a recurring event with exceptions both ways, 16.1 InstanceId change and delete;
- a contact and a task both ways; what EAS cannot carry survives a phone's edit;
- an EAS delete is in ``haven recover list`` and comes back as an Add once restored;
- an edit racing a CalDAV edit is Status 7 (the server wins), never a lost update;
- bad ApplicationData is item Status 6 with nothing stored.
"""

from __future__ import annotations

import datetime
import threading
import time
import xml.etree.ElementTree as ET
from zoneinfo import ZoneInfo

import caldav
import pytest

from gateways.activesync import tzblob
from tests.gateways.activesync.client import EasClient, find, findall
from tests.gateways.dav.wire import Dav

FOLDER_SYNC = '<FolderSync xmlns="FolderHierarchy"><SyncKey>{}</SyncKey></FolderSync>'
NS = 'xmlns="AirSync" xmlns:b="AirSyncBase" xmlns:c="Calendar" xmlns:k="Contacts" xmlns:t="Tasks"'
BERLIN = tzblob.encode(ZoneInfo("Europe/Berlin"), 2026)


class Phone:
    """One provisioned phone of a new account, with its folder tree and sync keys."""

    def __init__(self, eas, name: str, version: str = "16.1"):
        self.user, self.password = eas.new_user(name)
        self.eas = eas
        self.client = EasClient(eas, self.user, self.password, device_id=f"Appl{name.upper()[:8]}01", version=version)
        self.client.provision()
        self.keys: dict = {}
        self.folder_key = "0"
        self.tree = self.folder_sync()

    def folder_sync(self) -> dict:
        """ServerId -> (DisplayName, Type) of what this FolderSync added."""
        _status, answer = self.client.post("FolderSync", FOLDER_SYNC.format(self.folder_key))
        assert find(answer, "FolderHierarchy:Status") == "1"
        self.folder_key = find(answer, "FolderHierarchy:SyncKey")
        return {find(a, "FolderHierarchy:ServerId"): (find(a, "FolderHierarchy:DisplayName"),
                                                      int(find(a, "FolderHierarchy:Type")))
                for a in findall(answer, "FolderHierarchy:Changes/FolderHierarchy:Add")}

    def of_type(self, kind: int) -> str:
        return next(sid for sid, (_name, t) in self.tree.items() if t == kind)

    def sync(self, cid: str, commands: str = "", options: str = "", supported: str = ""):
        """The Collection of one Sync answer (key 0 first when the collection is new)."""
        if cid not in self.keys:
            _s, answer = self.client.post("Sync", f'<Sync {NS}><Collections><Collection><SyncKey>0</SyncKey>'
                                                  f'<CollectionId>{cid}</CollectionId>{supported}</Collection>'
                                                  '</Collections></Sync>')
            self.keys[cid] = find(findall(answer, "AirSync:Collections/AirSync:Collection")[0], "AirSync:SyncKey")
        cmds = f"<Commands>{commands}</Commands>" if commands else ""
        _s, answer = self.client.post("Sync", f'<Sync {NS}><Collections><Collection><SyncKey>{self.keys[cid]}'
                                              f'</SyncKey><CollectionId>{cid}</CollectionId><WindowSize>100</WindowSize>'
                                              f'{options}{cmds}</Collection></Collections></Sync>')
        coll = findall(answer, "AirSync:Collections/AirSync:Collection")[0]
        assert find(coll, "AirSync:Status") == "1", find(coll, "AirSync:Status")
        self.keys[cid] = find(coll, "AirSync:SyncKey")
        return coll

    def sync_all(self, cid: str, **kw) -> dict:
        """Every command the server sends until nothing is left: name -> {ServerId: ApplicationData}."""
        out: dict = {"Add": {}, "Change": {}, "Delete": {}, "SoftDelete": {}}
        while True:
            coll = self.sync(cid, **kw)
            for name in out:
                for el in findall(coll, f"AirSync:Commands/AirSync:{name}"):
                    out[name][find(el, "AirSync:ServerId")] = el.find("{AirSync}ApplicationData")
            if coll.find("{AirSync}MoreAvailable") is None:
                return out

    def dav(self) -> Dav:
        return Dav(self.eas, self.user, self.password)

    def caldav_calendar(self, name: str = "Calendar"):
        url = f"http://{self.eas.http[0]}:{self.eas.http[1]}/dav/{self.user}/{name}/"
        client = caldav.DAVClient(url=url, username=self.user, password=self.password)
        return client.calendar(url=url)


def responses(coll, name: str = "Add") -> list:
    return findall(coll, f"AirSync:Responses/AirSync:{name}")


def event_data(subject: str, start: str, end: str, extra: str = "", uid_tag: str = "c:ClientUid",
               uid: str = "") -> str:
    uid_el = f"<{uid_tag}>{uid}</{uid_tag}>" if uid else ""
    return (f"<ApplicationData><c:Timezone>{BERLIN}</c:Timezone><c:AllDayEvent>0</c:AllDayEvent>"
            f"<c:StartTime>{start}</c:StartTime><c:EndTime>{end}</c:EndTime><c:Subject>{subject}</c:Subject>"
            f"<c:BusyStatus>2</c:BusyStatus><c:Sensitivity>0</c:Sensitivity><c:MeetingStatus>0</c:MeetingStatus>"
            f"{uid_el}{extra}</ApplicationData>")


def test_the_tree_has_calendar_contacts_and_tasks(eas):
    phone = Phone(eas, "pimtree")
    types = sorted(t for _name, t in phone.tree.values())
    assert {7, 8, 9} <= set(types)
    calendar, tasks = phone.of_type(8), phone.of_type(7)
    assert tasks == "t" + calendar and phone.tree[tasks][0] == "Tasks"  # the default calendar's to-dos
    assert phone.tree[calendar][0] == "Calendar" and phone.tree[phone.of_type(9)][0] == "Contacts"
    # a calendar made over CalDAV reaches the phone at its next FolderSync, as an Add
    assert phone.dav().mkcalendar(phone.dav().coll("work"), displayname="Work").status == 201
    added = phone.folder_sync()
    assert list(added.values()) == [("Work", 13)]
    # a task list of its own: it becomes the default Tasks folder (7), the calendar's view goes
    dav = phone.dav()
    r = dav.request("MKCALENDAR", dav.coll("todo"), body=(
        '<?xml version="1.0"?><C:mkcalendar xmlns:D="DAV:" xmlns:C="urn:ietf:params:xml:ns:caldav"><D:set><D:prop>'
        '<C:supported-calendar-component-set><C:comp name="VTODO"/></C:supported-calendar-component-set>'
        '</D:prop></D:set></C:mkcalendar>'))
    assert r.status == 201, r.text
    _s, answer = phone.client.post("FolderSync", FOLDER_SYNC.format(phone.folder_key))
    adds = [(find(a, "FolderHierarchy:DisplayName"), find(a, "FolderHierarchy:Type"))
            for a in findall(answer, "FolderHierarchy:Changes/FolderHierarchy:Add")]
    deletes = [find(d, "FolderHierarchy:ServerId") for d in findall(answer, "FolderHierarchy:Changes/FolderHierarchy:Delete")]
    assert adds == [("todo", "7")] and deletes == [tasks]
    # calendars are made, renamed and deleted by CalDAV clients, not from the phone
    phone.folder_key = find(answer, "FolderHierarchy:SyncKey")
    _s, made = phone.client.post("FolderCreate", f'<FolderCreate xmlns="FolderHierarchy"><SyncKey>{phone.folder_key}'
                                                 '</SyncKey><ParentId>0</ParentId><DisplayName>Trips</DisplayName>'
                                                 '<Type>13</Type></FolderCreate>')
    _s, gone = phone.client.post("FolderDelete", f'<FolderDelete xmlns="FolderHierarchy"><SyncKey>{phone.folder_key}'
                                                 f'</SyncKey><ServerId>{calendar}</ServerId></FolderDelete>')
    assert (find(made, "FolderHierarchy:Status"), find(gone, "FolderHierarchy:Status")) == ("6", "3")
    assert phone.caldav_calendar().events() == []  # still there


def test_an_event_both_ways_with_push(eas):
    phone = Phone(eas, "pimevent")
    cal = phone.of_type(8)
    assert phone.sync_all(cal) == {"Add": {}, "Change": {}, "Delete": {}, "SoftDelete": {}}
    coll = phone.sync(cal, f'<Add><ClientId>c1</ClientId>{event_data("Dentist", "20261210T090000Z", "20261210T100000Z", "<b:Location><b:DisplayName>Main St 1</b:DisplayName></b:Location>", uid="phone-uid-1")}</Add>')
    [add] = responses(coll)
    assert find(add, "AirSync:Status") == "1"
    sid = find(add, "AirSync:ServerId")
    # over CalDAV: the same UID, found by a time-range query, in the zone the phone used
    calendar = phone.caldav_calendar()
    found = calendar.search(start=datetime.datetime(2026, 12, 10, 0, 0, tzinfo=datetime.timezone.utc),
                            end=datetime.datetime(2026, 12, 11, 0, 0, tzinfo=datetime.timezone.utc), event=True)
    assert len(found) == 1
    vevent = found[0].icalendar_component
    assert str(vevent["UID"]) == "phone-uid-1" and str(vevent["SUMMARY"]) == "Dentist"
    assert str(vevent["LOCATION"]) == "Main St 1"
    assert vevent.decoded("DTSTART") == datetime.datetime(2026, 12, 10, 10, 0, tzinfo=ZoneInfo("Europe/Berlin"))
    assert found[0].url.path.endswith("/phone-uid-1.ics")
    # the same ClientId again (the answer was lost): no second event
    coll = phone.sync(cal, f'<Add><ClientId>c1</ClientId>{event_data("Dentist", "20261210T090000Z", "20261210T100000Z")}</Add>')
    assert find(responses(coll)[0], "AirSync:ServerId") == sid
    assert len(calendar.events()) == 1
    # a CalDAV edit wakes a parked Ping within a second and is a Change at the next Sync
    woke: dict = {}

    def ping():
        started = time.monotonic()
        woke["answer"] = phone.client.post("Ping", f'<Ping xmlns="Ping"><HeartbeatInterval>120</HeartbeatInterval>'
                                                    f'<Folders><Folder><Id>{cal}</Id><Class>Calendar</Class></Folder>'
                                                    '</Folders></Ping>')[1]
        woke["at"] = time.monotonic() - started
    waiter = threading.Thread(target=ping)
    waiter.start()
    time.sleep(0.5)  # parked
    edited_at = time.monotonic()
    vevent["SUMMARY"] = "Dentist (moved)"
    found[0].save()
    waiter.join(10)
    assert find(woke["answer"], "Ping:Status") == "2" and find(woke["answer"], "Ping:Folders/Ping:Folder") == cal
    assert time.monotonic() - edited_at < 1.0 + 0.1 and woke["at"] < 10
    changes = phone.sync_all(cal)
    assert list(changes["Change"]) == [sid]
    assert find(changes["Change"][sid], "Calendar:Subject") == "Dentist (moved)"
    # the phone's edit goes back: merged onto the text (the VALARM a DAV client added survives)
    found = calendar.search(start=datetime.datetime(2026, 12, 10, tzinfo=datetime.timezone.utc),
                            end=datetime.datetime(2026, 12, 11, tzinfo=datetime.timezone.utc), event=True)
    obj = found[0]
    obj.data = obj.data.replace("END:VEVENT", "X-HAVEN-TEST:kept\r\nBEGIN:VALARM\r\nACTION:DISPLAY\r\n"
                                "DESCRIPTION:first\r\nTRIGGER:-PT10M\r\nEND:VALARM\r\nBEGIN:VALARM\r\nACTION:AUDIO\r\n"
                                "TRIGGER:-PT1H\r\nEND:VALARM\r\nEND:VEVENT")
    obj.save()
    phone.sync_all(cal)
    change = event_data("Dentist (phone)", "20261210T100000Z", "20261210T110000Z", "<c:Reminder>10</c:Reminder>")
    phone.sync(cal, f'<Change><ServerId>{sid}</ServerId>{change}</Change>')
    text = calendar.event_by_uid("phone-uid-1").data
    assert "SUMMARY:Dentist (phone)" in text and "X-HAVEN-TEST:kept" in text and text.count("BEGIN:VALARM") == 2
    # without Reminder (and no Supported: the phone handles every field) the first alarm goes,
    # the second one, which EAS cannot carry, stays
    phone.sync(cal, f'<Change><ServerId>{sid}</ServerId>{change.replace("<c:Reminder>10</c:Reminder>", "")}</Change>')
    text = calendar.event_by_uid("phone-uid-1").data
    assert text.count("BEGIN:VALARM") == 1 and "TRIGGER:-PT1H" in text
    # a CalDAV delete is a Delete
    calendar.event_by_uid("phone-uid-1").delete()
    assert list(phone.sync_all(cal)["Delete"]) == [sid]


def test_a_14_1_phone_adds_and_edits_and_a_race_is_a_conflict(eas):
    phone = Phone(eas, "pim141", version="14.1")
    cal = phone.of_type(8)
    phone.sync_all(cal)
    coll = phone.sync(cal, f'<Add><ClientId>x</ClientId>{event_data("Standup", "20261211T080000Z", "20261211T081500Z", "<c:Location>Room 2</c:Location>", uid_tag="c:UID", uid="uid-141")}</Add>')
    sid = find(responses(coll)[0], "AirSync:ServerId")
    calendar = phone.caldav_calendar()
    event = calendar.event_by_uid("uid-141")
    assert str(event.icalendar_component["LOCATION"]) == "Room 2"
    # edited over CalDAV since the phone's last Sync: the phone's Change loses (Status 7) ...
    event.icalendar_component["SUMMARY"] = "Standup (DAV)"
    event.save()
    coll = phone.sync(cal, f'<Change><ServerId>{sid}</ServerId>{event_data("Standup (phone)", "20261211T080000Z", "20261211T081500Z")}</Change>')
    assert [find(r, "AirSync:Status") for r in responses(coll, "Change")] == ["7"]
    # ... and the server's version comes to it as a Change
    assert find(findall(coll, "AirSync:Commands/AirSync:Change")[0], "AirSync:ApplicationData/Calendar:Subject") == "Standup (DAV)"
    assert "Standup (DAV)" in calendar.event_by_uid("uid-141").data


def test_a_recurring_event_with_exceptions_both_ways(eas):
    phone = Phone(eas, "pimrecur")
    cal = phone.of_type(8)
    phone.sync_all(cal)
    # weekly on Thursdays, 10 times; the 2nd occurrence deleted, the 3rd moved an hour later
    recurrence = ("<c:Recurrence><c:Type>1</c:Type><c:Interval>1</c:Interval><c:Occurrences>10</c:Occurrences>"
                  "<c:DayOfWeek>16</c:DayOfWeek></c:Recurrence>"
                  "<c:Exceptions><c:Exception><c:Deleted>1</c:Deleted><c:ExceptionStartTime>20261210T090000Z"
                  "</c:ExceptionStartTime></c:Exception><c:Exception><c:ExceptionStartTime>20261217T090000Z"
                  "</c:ExceptionStartTime><c:StartTime>20261217T100000Z</c:StartTime><c:EndTime>20261217T110000Z"
                  "</c:EndTime><c:Subject>Review (later)</c:Subject></c:Exception></c:Exceptions>")
    data = event_data("Review", "20261203T090000Z", "20261203T100000Z", recurrence, uid="rec-1")
    sid = find(responses(phone.sync(cal, f"<Add><ClientId>r</ClientId>{data}</Add>"))[0], "AirSync:ServerId")
    text = phone.caldav_calendar().event_by_uid("rec-1").data
    assert "RRULE:FREQ=WEEKLY" in text and "COUNT=10" in text and "EXDATE" in text
    assert "RECURRENCE-ID" in text and "Review (later)" in text
    # a CalDAV client moves the 4th occurrence: the phone gets the series with three exceptions
    calendar = phone.caldav_calendar()
    obj = calendar.event_by_uid("rec-1")
    obj.data = obj.data.replace("END:VCALENDAR", "BEGIN:VEVENT\r\nUID:rec-1\r\nDTSTAMP:20261201T000000Z\r\n"
                                "RECURRENCE-ID:20261224T090000Z\r\nDTSTART:20261224T070000Z\r\n"
                                "DTEND:20261224T080000Z\r\nSUMMARY:Review (early)\r\nEND:VEVENT\r\nEND:VCALENDAR")
    obj.save()
    change = phone.sync_all(cal)["Change"][sid]
    exceptions = findall(change, "Calendar:Exceptions/Calendar:Exception")
    assert len(exceptions) == 3
    assert find(change, "Calendar:Recurrence/Calendar:Type") == "1"
    # 16.1: one occurrence changed, another deleted, by InstanceId
    phone.sync(cal, f'<Change><ServerId>{sid}</ServerId><b:InstanceId>2026-12-31T09:00:00.000Z</b:InstanceId>'
                    '<ApplicationData><c:Subject>Review (new year)</c:Subject></ApplicationData></Change>'
                    f'<Delete><ServerId>{sid}</ServerId><b:InstanceId>2027-01-07T09:00:00.000Z</b:InstanceId></Delete>')
    text = phone.caldav_calendar().event_by_uid("rec-1").data
    exdates = " ".join(line for line in text.splitlines() if line.startswith("EXDATE"))
    assert "Review (new year)" in text and "20270107T" in exdates and "20261210T" in exdates
    assert "RRULE:FREQ=WEEKLY" in text  # the series itself is untouched


def test_a_contact_and_a_task_both_ways(eas):
    phone = Phone(eas, "pimcard")
    contacts, tasks = phone.of_type(9), phone.of_type(7)
    phone.sync_all(contacts)
    phone.sync_all(tasks)
    dav = phone.dav()
    # a card from a DAV client with a fourth phone number and an X- property
    card = ("BEGIN:VCARD\r\nVERSION:3.0\r\nUID:card-1\r\nFN:Ada Lovelace\r\nN:Lovelace;Ada;;;\r\n"
            "EMAIL;TYPE=INTERNET:ada@example.org\r\nTEL;TYPE=CELL:+1 555 0001\r\nTEL;TYPE=WORK:+1 555 0002\r\n"
            "TEL;TYPE=HOME:+1 555 0003\r\nTEL;TYPE=X-SATELLITE:+1 555 0004\r\nX-HAVEN-TEST:kept\r\nEND:VCARD\r\n")
    assert dav.put(dav.contacts + "card-1.vcf", card).status == 201
    adds = phone.sync_all(contacts)["Add"]
    [(sid, data)] = adds.items()
    assert find(data, "Contacts:FirstName") == "Ada" and find(data, "Contacts:Email1Address").endswith("ada@example.org")
    # the phone sends back what it got, with the first name changed (as phones do)
    data.find("{Contacts}FirstName").text = "Augusta Ada"
    phone.sync(contacts, f"<Change><ServerId>{sid}</ServerId>{ET.tostring(data).decode()}</Change>")
    text = dav.get(dav.contacts + "card-1.vcf").text
    assert "Augusta Ada" in text and "X-HAVEN-TEST:kept" in text
    assert all(n in text for n in ("+1 555 0001", "+1 555 0002", "+1 555 0003", "+1 555 0004"))
    # a contact made on the phone is a vCard 3.0 for CardDAV clients
    coll = phone.sync(contacts, "<Add><ClientId>k1</ClientId><ApplicationData><k:FirstName>Grace</k:FirstName>"
                                "<k:LastName>Hopper</k:LastName><k:Email1Address>grace@example.org</k:Email1Address>"
                                "<k:Birthday>1906-12-09T00:00:00.000Z</k:Birthday></ApplicationData></Add>")
    assert find(responses(coll)[0], "AirSync:Status") == "1"
    listing = dav.etags(dav.contacts)
    [href] = [h for h in listing if not h.endswith("card-1.vcf")]
    made = dav.get(href).text
    assert "VERSION:3.0" in made and "Hopper" in made and "1906-12-09" in made.replace("19061209", "1906-12-09")
    # a task both ways
    coll = phone.sync(tasks, "<Add><ClientId>t1</ClientId><ApplicationData><t:Subject>File taxes</t:Subject>"
                             "<t:Importance>2</t:Importance><t:Complete>0</t:Complete>"
                             "<t:UtcDueDate>2026-12-20T17:00:00.000Z</t:UtcDueDate>"
                             "<t:DueDate>2026-12-20T18:00:00.000Z</t:DueDate></ApplicationData></Add>")
    assert find(responses(coll)[0], "AirSync:Status") == "1"
    todos = phone.caldav_calendar().todos()
    assert [str(t.icalendar_component["SUMMARY"]) for t in todos] == ["File taxes"]
    todo = todos[0]
    todo.icalendar_component["SUMMARY"] = "File taxes (2026)"
    todo.save()
    [change] = phone.sync_all(tasks)["Change"].values()
    assert find(change, "Tasks:Subject") == "File taxes (2026)"


def test_a_phone_delete_is_recoverable_and_comes_back(eas):
    phone = Phone(eas, "pimrecover")
    cal = phone.of_type(8)
    phone.sync_all(cal)
    sid = find(responses(phone.sync(cal, f'<Add><ClientId>d</ClientId>{event_data("Lunch", "20261212T110000Z", "20261212T120000Z", uid="lunch-1")}</Add>'))[0], "AirSync:ServerId")
    phone.sync(cal, f"<Delete><ServerId>{sid}</ServerId></Delete>")
    assert phone.caldav_calendar().events() == []
    listing = eas.cli("recover", "list", phone.user).stdout.decode()
    [line] = [line for line in listing.splitlines() if line.startswith("dav:")]
    assert eas.cli("recover", "restore", phone.user, line.split("\t")[0]).returncode == 0
    back = phone.sync_all(cal)["Add"]
    assert len(back) == 1 and find(next(iter(back.values())), "Calendar:Subject") == "Lunch"


@pytest.mark.parametrize("bad", [
    event_data("Bad dates", "not-a-date", "20261210T100000Z"),
    event_data("Ends first", "20261210T100000Z", "20261210T090000Z"),
    event_data("Until first", "20261210T090000Z", "20261210T100000Z",
               "<c:Recurrence><c:Type>0</c:Type><c:Until>20261201T000000Z</c:Until></c:Recurrence>"),
    event_data("Garbage zone", "20261210T090000Z", "20261210T100000Z").replace(BERLIN, "AAAA!!"),
    event_data("Too often", "20261210T090000Z", "20261210T100000Z",
               "<c:Recurrence><c:Type>0</c:Type><c:Occurrences>999999</c:Occurrences></c:Recurrence>"),
    event_data("Too big", "20261210T090000Z", "20261210T100000Z",
               f"<b:Body><b:Type>1</b:Type><b:Data>{'x' * (2 * 1024 * 1024 + 10)}</b:Data></b:Body>"),
], ids=["dates", "end-before-start", "until-before-start", "timezone", "occurrences", "max-item-size"])
def test_bad_application_data_is_status_6_and_stores_nothing(eas, bad):
    phone = Phone(eas, "pimbad")
    cal = phone.of_type(8)
    phone.sync_all(cal)
    coll = phone.sync(cal, f"<Add><ClientId>b</ClientId>{bad}</Add>")
    assert [find(r, "AirSync:Status") for r in responses(coll)] == ["6"]
    assert phone.caldav_calendar().events() == []


def _ics(uid: str, start: datetime.datetime, summary: str, component: str = "VEVENT", extra: str = "") -> str:
    stamp = f"{start:%Y%m%dT%H%M%SZ}"
    when = (f"DTSTART:{stamp}\r\nDTEND:{start + datetime.timedelta(hours=1):%Y%m%dT%H%M%SZ}\r\n"
            if component == "VEVENT" else f"DUE:{stamp}\r\n")
    return (f"BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//t//t//EN\r\nBEGIN:{component}\r\nUID:{uid}\r\n"
            f"DTSTAMP:20260101T000000Z\r\n{when}SUMMARY:{summary}\r\n{extra}END:{component}\r\nEND:VCALENDAR\r\n")


def test_another_accounts_items_are_not_found(eas):
    mine, theirs = Phone(eas, "pimmine"), Phone(eas, "pimtheirs")
    cal = theirs.of_type(8)
    theirs.sync_all(cal)
    data = event_data("Private", "20261214T090000Z", "20261214T100000Z", uid="private-1")
    sid = find(responses(theirs.sync(cal, f"<Add><ClientId>p</ClientId>{data}</Add>"))[0], "AirSync:ServerId")
    my_cal = mine.of_type(8)
    mine.sync_all(my_cal)
    coll = mine.sync(my_cal, f"<Change><ServerId>{sid}</ServerId>{data.replace('Private', 'Mine now')}</Change>"
                             f"<Delete><ServerId>{sid}</ServerId></Delete><Fetch><ServerId>{sid}</ServerId></Fetch>")
    assert [find(r, "AirSync:Status") for r in responses(coll, "Change") + responses(coll, "Delete")
            + responses(coll, "Fetch")] == ["8", "8", "8"]
    text = theirs.caldav_calendar().event_by_uid("private-1").data
    assert "SUMMARY:Private" in text  # untouched
    # a GetItemEstimate counts what the next Sync brings
    dav = theirs.dav()
    assert dav.put(dav.calendar + "more.ics", _ics("more", datetime.datetime(2026, 12, 20, 9, tzinfo=datetime.timezone.utc),
                                                   "More")).status == 201
    _s, estimate = theirs.client.post("GetItemEstimate", f'<GetItemEstimate xmlns="GetItemEstimate" xmlns:a="AirSync">'
                                                         f'<Collections><Collection><a:SyncKey>{theirs.keys[cal]}'
                                                         f'</a:SyncKey><CollectionId>{cal}</CollectionId></Collection>'
                                                         '</Collections></GetItemEstimate>')
    assert find(estimate, "GetItemEstimate:Response/GetItemEstimate:Collection/GetItemEstimate:Estimate") == "1"


def test_filters_and_an_unreadable_item(eas, run):
    from store.interfaces import NewItem
    phone = Phone(eas, "pimfilter")
    cal, tasks = phone.of_type(8), phone.of_type(7)
    dav = phone.dav()
    now = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
    assert dav.put(dav.calendar + "old.ics", _ics("old", now - datetime.timedelta(days=90), "Old")).status == 201
    assert dav.put(dav.calendar + "soon.ics", _ics("soon", now + datetime.timedelta(days=1), "Soon")).status == 201
    two_weeks = "<Options><FilterType>4</FilterType></Options>"
    got = phone.sync_all(cal, options=two_weeks)["Add"]
    assert [find(d, "Calendar:Subject") for d in got.values()] == ["Soon"]
    [soon] = got
    # moved out of the window by a CalDAV client: gone from the phone, not from the server
    assert dav.put(dav.calendar + "soon.ics", _ics("soon", now - datetime.timedelta(days=60), "Soon")).status == 204
    assert list(phone.sync_all(cal, options=two_weeks)["SoftDelete"]) == [soon]
    # a stored object no converter can read (imported from elsewhere): logged and skipped
    store = eas.admin_store()
    account = run(store.get_account, phone.user)
    calendar = run(store.list_dav_collections, account.id)
    folder = next(c.folder for c in calendar if c.folder.name == "Calendar")
    run(store.put_dav_item, account.id, folder.id, NewItem(
        href="broken.ics", uid="broken", etag='"broken"', component="VEVENT",
        data="BEGIN:VCALENDAR\r\nBEGIN:VEVENT\r\nDTSTART:garbage\r\n", dtstart=int(now.timestamp()),
        dtend=int(now.timestamp()) + 3600))
    assert dav.put(dav.calendar + "next.ics", _ics("next", now + datetime.timedelta(days=2), "Next")).status == 201
    got = phone.sync_all(cal, options=two_weeks)
    assert [find(d, "Calendar:Subject") for d in got["Add"].values()] == ["Next"]
    # to-dos: FilterType 8 sends the incomplete ones; one completed over CalDAV leaves the phone
    assert dav.put(dav.calendar + "t1.ics", _ics("t1", now, "Open", "VTODO")).status == 201
    assert dav.put(dav.calendar + "t2.ics", _ics("t2", now, "Done", "VTODO", "STATUS:COMPLETED\r\n")).status == 201
    incomplete = "<Options><FilterType>8</FilterType></Options>"
    got = phone.sync_all(tasks, options=incomplete)["Add"]
    assert [find(d, "Tasks:Subject") for d in got.values()] == ["Open"]
    assert dav.put(dav.calendar + "t1.ics", _ics("t1", now, "Open", "VTODO", "STATUS:COMPLETED\r\n")).status == 204
    assert list(phone.sync_all(tasks, options=incomplete)["SoftDelete"]) == list(got)
