"""Tasks between stored VTODOs and ActiveSync ApplicationData ([MS-ASTASK]), both ways."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import icalendar
import pytest

from gateways.activesync import tasks, wbxml
from gateways.activesync.pim import ConversionError
from gateways.activesync.wbxml import qname as q
from gateways.activesync.xmlutil import element, sub

DATA = Path(__file__).resolve().parents[2] / "data" / "calendar"
V141, V161 = (14, 1), (16, 1)
T = tasks.TASKS


def sample(name: str) -> str:
    return (DATA / name).read_text()


def wire(el):
    return wbxml.decode(wbxml.encode(el))


def flat(el) -> dict:
    out = {}
    for child in el:
        name = child.tag.split("}")[1]
        if len(child):
            for grand in child:
                key = f"{name}/{grand.tag.split('}')[1]}"
                out[key] = out[key] + "," + grand.text if key in out else grand.text
        else:
            out[name] = child.text
    return out


def app(*fields):
    data = element("AirSync", "ApplicationData")
    for page, name, value in fields:
        if isinstance(value, list):
            parent = sub(data, page, name)
            for p, n, v in value:
                sub(parent, p, n, v)
        else:
            sub(data, page, name, value)
    return wire(data)


def todo(text: str):
    return icalendar.Calendar.from_ical(text).walk("VTODO")[0]


def test_thunderbird_task():
    got = flat(wire(tasks.to_eas(sample("thunderbird-task.ics"), V161)))
    assert got["Subject"] == "File the tax return" and got["Importance"] == "2" and got["Complete"] == "0"
    assert got["StartDate"] == "2026-03-01T09:00:00.000Z" and got["UtcStartDate"] == "2026-03-01T08:00:00.000Z"
    assert got["DueDate"] == "2026-07-31T18:00:00.000Z" and got["UtcDueDate"] == "2026-07-31T16:00:00.000Z"
    assert got["ReminderSet"] == "1" and got["ReminderTime"] == "2026-07-25T07:00:00.000Z"
    assert got["Sensitivity"] == "3" and got["Categories/Category"] == "Finance"
    assert got["Body/Data"] == "Receipts are in the blue folder."
    assert "DateCompleted" not in got and "Recurrence/Type" not in got


def test_icloud_completed_weekly_reminder():
    got = flat(wire(tasks.to_eas(sample("icloud-reminder.ics"), V141)))
    assert got["Complete"] == "1" and got["DateCompleted"] == "2026-04-02T07:29:55.000Z"
    assert got["DueDate"] == "2026-03-01T00:00:00.000Z" and got["UtcDueDate"] == "2026-03-01T00:00:00.000Z"
    assert got["Recurrence/Type"] == "1" and got["Recurrence/DayOfWeek"] == "1"
    assert got["Recurrence/Start"] == "2026-03-01T00:00:00.000Z" and got["ReminderSet"] == "0"
    assert got["Importance"] == "1"


@pytest.mark.parametrize("name", ["thunderbird-task.ics", "icloud-reminder.ics"])
@pytest.mark.parametrize("supported", [None, set(), {q(T, "Subject"), q(T, "DueDate"), q(T, "Recurrence")}])
def test_resend_changes_nothing(name, supported):
    stored = sample(name)
    sent = wire(tasks.to_eas(stored, V161))
    merged = tasks.from_eas(sent, stored, V161, "x", supported)
    assert todo(merged).to_ical() == todo(stored).to_ical()
    assert flat(tasks.to_eas(merged, V161)) == flat(sent)


@pytest.mark.parametrize("version", [V141, V161])
def test_new_task_from_a_phone_comes_back_the_same(version):
    data = app(("AirSyncBase", "Body", [("AirSyncBase", "Type", "1"), ("AirSyncBase", "Data", "milk, eggs")]),
               (T, "Categories", [(T, "Category", "Home"), (T, "Category", "Errands")]),
               (T, "Complete", "0"), (T, "DueDate", "2026-05-02T00:00:00.000Z"), (T, "Importance", "0"),
               (T, "ReminderSet", "1"), (T, "ReminderTime", "2026-05-01T16:00:00.000Z"), (T, "Sensitivity", "2"),
               (T, "StartDate", "2026-05-01T00:00:00.000Z"), (T, "Subject", "Shopping"),
               (T, "UtcDueDate", "2026-05-01T22:00:00.000Z"), (T, "UtcStartDate", "2026-04-30T22:00:00.000Z"),
               (T, "Recurrence", [(T, "Type", "2"), (T, "Start", "2026-05-01T00:00:00.000Z"),
                                  (T, "Interval", "1"), (T, "DayOfMonth", "1")]))
    text = tasks.from_eas(data, None, version, "server-uid", None)
    stored = todo(text)
    assert str(stored["UID"]) == "server-uid" and stored.decoded("DUE") == date(2026, 5, 2)
    assert str(stored["PRIORITY"]) == "9" and stored["RRULE"].to_ical() == b"FREQ=MONTHLY;BYMONTHDAY=1"
    back = flat(wire(tasks.to_eas(text, version)))
    for key, value in flat(data).items():
        if key in ("UtcDueDate", "UtcStartDate"):
            continue  # date-only: midnight UTC now, the phone's zone is not in the protocol
        assert back.get(key) == value, key


def test_timed_due_date_keeps_the_stored_zone():
    stored = sample("thunderbird-task.ics")
    data = app((T, "DueDate", "2026-08-01T12:00:00.000Z"), (T, "UtcDueDate", "2026-08-01T10:00:00.000Z"))
    due = todo(tasks.from_eas(data, stored, V161, "x", set())).decoded("DUE")
    assert due == datetime(2026, 8, 1, 12, tzinfo=ZoneInfo("Europe/Berlin")) and due.tzinfo.key == "Europe/Berlin"


def test_ghosting_and_preservation():
    stored = sample("thunderbird-task.ics")
    bare = app((T, "Subject", "Taxes"))
    gone = todo(tasks.from_eas(bare, stored, V141, "x", None))
    assert "DUE" not in gone and "CATEGORIES" not in gone and "PRIORITY" not in gone and "CLASS" not in gone
    assert "VALARM" not in gone.to_ical().decode() and str(gone["DESCRIPTION"]).startswith("Receipts")
    assert str(gone["X-MOZ-GENERATION"]) == "2" and str(gone["PERCENT-COMPLETE"]) == "40"
    kept = todo(tasks.from_eas(bare, stored, V141, "x", {q(T, "Subject")}))
    assert str(kept["SUMMARY"]) == "Taxes" and kept.decoded("DUE").day == 31 and str(kept["PRIORITY"]) == "1"
    assert len(kept.walk("VALARM")) == 1


@pytest.mark.parametrize("value,priority", [("2", "1"), ("1", "5"), ("0", "9")])
def test_importance(value, priority):
    stored = sample("thunderbird-task.ics")
    got = todo(tasks.from_eas(app((T, "Importance", value)), stored, V141, "x", set()))
    assert str(got["PRIORITY"]) == priority


def test_complete_and_reopen():
    stored = sample("thunderbird-task.ics")
    done = tasks.from_eas(app((T, "Complete", "1"), (T, "DateCompleted", "2026-07-30T10:00:00.000Z")),
                          stored, V141, "x", set())
    got = todo(done)
    assert str(got["STATUS"]) == "COMPLETED" and str(got["PERCENT-COMPLETE"]) == "100"
    assert got.decoded("COMPLETED") == datetime(2026, 7, 30, 10, tzinfo=timezone.utc)
    assert not tasks.is_incomplete(done) and tasks.is_incomplete(stored)
    reopened = todo(tasks.from_eas(app((T, "Complete", "0")), done, V141, "x", set()))
    assert str(reopened["STATUS"]) == "NEEDS-ACTION" and "COMPLETED" not in reopened
    assert "PERCENT-COMPLETE" not in reopened
    assert tasks.is_incomplete(sample("google-recurring-meeting.ics")) is False
    assert tasks.is_incomplete("garbage") is False


def test_new_reminder_time_rewrites_the_first_alarm_only():
    stored = sample("thunderbird-task.ics").replace(
        "END:VTODO", "BEGIN:VALARM\r\nACTION:AUDIO\r\nTRIGGER;RELATED=END:-PT1H\r\nEND:VALARM\r\nEND:VTODO")
    got = todo(tasks.from_eas(app((T, "ReminderSet", "1"), (T, "ReminderTime", "2026-07-30T06:00:00.000Z")),
                              stored, V141, "x", set()))
    alarms = got.walk("VALARM")
    assert alarms[0].decoded("TRIGGER") == datetime(2026, 7, 30, 6, tzinfo=timezone.utc)
    assert alarms[1].decoded("TRIGGER") == timedelta(hours=-1)
    off = todo(tasks.from_eas(app((T, "ReminderSet", "0")), stored, V141, "x", set()))
    assert [a.decoded("TRIGGER") for a in off.walk("VALARM")] == [timedelta(hours=-1)]


def test_relative_alarm_is_a_reminder_time():
    stored = sample("icloud-reminder.ics").replace(
        "END:VTODO", "BEGIN:VALARM\r\nACTION:DISPLAY\r\nTRIGGER;RELATED=END:-PT2H\r\nEND:VALARM\r\nEND:VTODO")
    got = flat(tasks.to_eas(stored, V141))
    assert got["ReminderSet"] == "1" and got["ReminderTime"] == "2026-02-28T22:00:00.000Z"


@pytest.mark.parametrize("fields,why", [
    ([(T, "DueDate", "31.07.2026")], "not an ActiveSync date"),
    ([(T, "StartDate", "2026-08-01T00:00:00.000Z"), (T, "DueDate", "2026-07-01T00:00:00.000Z")], "before"),
    ([(T, "Importance", "7")], "not allowed"),
    ([(T, "Complete", "yes")], "not a number"),
    ([(T, "Recurrence", [(T, "Type", "1"), (T, "Start", "2026-03-01T00:00:00.000Z"),
                         (T, "Until", "2025-01-01T00:00:00.000Z")])], "Until"),
])
def test_bad_phone_input(fields, why):
    with pytest.raises(ConversionError, match=why):
        tasks.from_eas(app(*fields), sample("thunderbird-task.ics"), V141, "x", None)


def test_events_are_not_tasks():
    with pytest.raises(ConversionError, match="event"):
        tasks.to_eas(sample("apple-sydney.ics"), V141)
    with pytest.raises(ConversionError, match="event"):
        tasks.from_eas(app((T, "Subject", "x")), sample("apple-sydney.ics"), V141, "x", None)
    with pytest.raises(ConversionError):
        tasks.to_eas(sample("broken-truncated.ics"), V141)
