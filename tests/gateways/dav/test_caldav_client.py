"""CalDAV as a real client library sees it: python ``caldav`` (3.x) against a real
``haven serve`` (both engines), told nothing but the server's URL and the account's login."""

from __future__ import annotations

from datetime import datetime, timezone
from urllib.parse import unquote, urlsplit

import caldav
import pytest
from caldav.elements import cdav, dav as dav_el, ical

from .wire import Dav, event, vcalendar, vevent


def client(haven, user, password, path: str = "/") -> caldav.DAVClient:
    return caldav.DAVClient(url=f"http://{haven.http[0]}:{haven.http[1]}{path}", username=user,
                            password=password, timeout=30)


def path_of(url) -> str:
    return unquote(urlsplit(str(url)).path)


def utc(*args) -> datetime:
    return datetime(*args, tzinfo=timezone.utc)


@pytest.mark.parametrize("start", ["/", "/.well-known/caldav"])
def test_discovery_from_the_server_url_only(haven, dav, start):
    user, password = dav.user, dav.password
    with client(haven, user, password, start) as c:
        principal = c.principal()
        assert path_of(principal.url) == f"/dav/{user}/"
        assert path_of(principal.calendar_home_set.url) == f"/dav/{user}/"
        calendars = principal.calendars()
        assert [(path_of(cal.url), cal.get_display_name()) for cal in calendars] == \
            [(f"/dav/{user}/Calendar/", "Calendar"), (f"/dav/{user}/.deleted-events/", "Deleted events")]


def test_calendar_lifecycle_through_the_library(haven, dav):
    user, password = dav.user, dav.password
    with client(haven, user, password) as c:
        principal = c.principal()
        travel = principal.make_calendar(name="Travel", cal_id="travel")
        assert path_of(travel.url) == f"/dav/{user}/travel/"
        assert travel.get_display_name() == "Travel"

        travel.set_properties([dav_el.DisplayName("Trips"), ical.CalendarColor("#336699FF"),
                               cdav.CalendarDescription("Where I go")])
        props = travel.get_properties([dav_el.DisplayName(), ical.CalendarColor(), cdav.CalendarDescription()])
        assert set(props.values()) == {"Trips", "#336699FF", "Where I go"}
        assert {cal.get_display_name() for cal in principal.calendars()} == {"Calendar", "Trips", "Deleted events"}

        flight = travel.save_event(event("lib-flight", start="20250601T080000Z", end="20250601T100000Z",
                                         summary="Flight"))
        hotel = travel.save_event(event("lib-hotel", start="20250601", end="20250604", summary="Hotel"))
        assert {path_of(e.url) for e in travel.events()} == {path_of(flight.url), path_of(hotel.url)}

        found = travel.search(start=utc(2025, 6, 2), end=utc(2025, 6, 3), event=True, expand=False)
        assert [path_of(e.url) for e in found] == [path_of(hotel.url)]

        loaded = travel.event_by_uid("lib-flight")
        assert str(loaded.icalendar_component["SUMMARY"]) == "Flight"
        loaded.icalendar_component["SUMMARY"] = "Flight (delayed)"
        loaded.save()
        assert str(travel.event_by_uid("lib-flight").icalendar_component["SUMMARY"]) == "Flight (delayed)"

        loaded.delete()
        assert {path_of(e.url) for e in travel.events()} == {path_of(hotel.url)}
        with pytest.raises(caldav.lib.error.NotFoundError):
            travel.event_by_uid("lib-flight")

        travel.delete()
        assert [cal.get_display_name() for cal in principal.calendars()] == ["Calendar", "Deleted events"]
    assert Dav(haven, user, password).propfind(f"/dav/{user}/travel/").status == 404


def test_recurring_search_through_the_library(haven, dav):
    user, password = dav.user, dav.password
    with client(haven, user, password) as c:
        cal = c.principal().calendars()[0]
        cal.save_event(event("librec-weekly", start="20250106T100000Z", end="20250106T110000Z",
                             extra="RRULE:FREQ=WEEKLY;COUNT=4\r\n"))
        cal.save_event(vcalendar(
            vevent("librec-exc", start="20250203T090000Z", end="20250203T100000Z", extra="RRULE:FREQ=DAILY;COUNT=5\r\n"),
            vevent("librec-exc", start="20250310T090000Z", end="20250310T100000Z", summary="Moved",
                   extra="RECURRENCE-ID:20250205T090000Z\r\n")))

        def uids(start, end):
            return sorted(str(e.icalendar_component["UID"])
                          for e in cal.search(start=start, end=end, event=True, expand=False))

        assert uids(utc(2025, 1, 20), utc(2025, 1, 21)) == ["librec-weekly"]
        assert uids(utc(2025, 2, 1), utc(2025, 2, 3)) == []
        assert uids(utc(2025, 2, 5), utc(2025, 2, 6)) == []
        assert uids(utc(2025, 3, 10), utc(2025, 3, 11)) == ["librec-exc"]
        # expanded on the client: the occurrences of the window, the moved one included
        expanded = cal.search(start=utc(2025, 2, 1), end=utc(2025, 3, 31), event=True, expand=True)
        starts = sorted(e.icalendar_component["DTSTART"].dt for e in expanded)
        assert starts == [utc(2025, 2, d, 9) for d in (3, 4, 6, 7)] + [utc(2025, 3, 10, 9)]


def test_sync_tokens_through_the_library(haven, dav):
    user, password = dav.user, dav.password
    with client(haven, user, password) as c:
        cal = c.principal().calendars()[0]
        keep = cal.save_event(event("libsync-keep"))
        drop = cal.save_event(event("libsync-drop"))

        state = cal.objects_by_sync_token(load_objects=True)
        assert not str(state.sync_token).startswith("fake-")
        assert {path_of(o.url) for o in state} == {path_of(keep.url), path_of(drop.url)}
        assert state.sync() == ([], [])

        added = cal.save_event(event("libsync-new"))
        keep.icalendar_component["SUMMARY"] = "changed"
        keep.save()
        drop.delete()
        updated, deleted = state.sync()
        assert {path_of(o.url) for o in updated} == {path_of(added.url), path_of(keep.url)}
        assert {path_of(o.url) for o in deleted} == {path_of(drop.url)}
        assert state.sync() == ([], [])
