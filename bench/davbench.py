"""The DAV benchmark's pieces: a seeded event generator, a tiny DAV client, the measurements.

``generate(n, seed)`` makes ``n`` realistic VEVENTs spread over 2025 and 2026,
times in Europe/Berlin (with its VTIMEZONE): about 10 % recurring (mostly
weekly with COUNT, a quarter daily with UNTIL, 1 in 40 weekly without end), about 3 %
all-day, the rest single events of 30 minutes to 2 hours.  Each ``Event`` also
knows its own occurrences, so the generator says which events a time-range
query must return (all-day dates, being floating, are read as UTC, as Radicale
reads them and as RFC 4791 §9.9 allows when no calendar timezone is set).

Each measurement function takes a ``DavClient`` on a collection and records
into a ``DavResults`` (``measure.Results`` plus what the servers must agree on).
Times are wall-clock from sending a request to reading its last byte (the XML
is parsed afterwards, untimed); read-only requests are repeated and the best
kept.
"""

from __future__ import annotations

import base64
import http.client
import random
import threading
import time
import uuid
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from typing import Iterator
from urllib.parse import unquote, urlsplit
from zoneinfo import ZoneInfo

from measure import Results, spread
from wire import split_hostport

UTC = timezone.utc
BERLIN = ZoneInfo("Europe/Berlin")
FIRST_DAY, SPAN_DAYS = date(2025, 1, 1), 730
# The time-range query: October 2025, which holds the switch back from summer time.
WINDOW = (datetime(2025, 10, 1, tzinfo=UTC), datetime(2025, 11, 1, tzinfo=UTC))
MULTIGET = 100
PUT_ROW = "PUT {n} events, If-None-Match: * (events/s)"

VTIMEZONE = """\
BEGIN:VTIMEZONE
TZID:Europe/Berlin
BEGIN:DAYLIGHT
TZOFFSETFROM:+0100
TZOFFSETTO:+0200
TZNAME:CEST
DTSTART:19700329T020000
RRULE:FREQ=YEARLY;BYMONTH=3;BYDAY=-1SU
END:DAYLIGHT
BEGIN:STANDARD
TZOFFSETFROM:+0200
TZOFFSETTO:+0100
TZNAME:CET
DTSTART:19701025T030000
RRULE:FREQ=YEARLY;BYMONTH=10;BYDAY=-1SU
END:STANDARD
END:VTIMEZONE
"""

SUMMARIES = ["Team meeting", "1:1 with Anna", "Dentist", "Sprint planning", "Lunch with Jonas",
             "Quarterly review", "Yoga", "Call with the landlord", "Budget workshop",
             "Parents' evening", "Flight to Lisbon", "Code review", "Board meeting",
             "Physiotherapy", "Release retrospective", "Coffee with Mehmet", "Training: GDPR",
             "Haircut", "Customer demo", "Piano lesson"]
LOCATIONS = ["Room 3.14", "Büro Friedrichstraße 12, Berlin", "Zoom", "Café Einstein",
             "Praxis Dr. Weiß; 2nd floor", "Conference room \"Spree\"", "Home office"]
WORDS = ("agenda notes budget review please bring the laptop and last quarter's figures "
         "we will discuss roadmap hiring travel office move customer feedback open issues "
         "dial-in details follow parking available at the back entrance").split()
ALLDAY = ["Holiday", "Conference: FOSDEM", "Moving day", "Team offsite", "Birthday: Lena"]


@dataclass
class Event:
    name: str                      # resource name in the collection: event-00042.ics
    start: datetime | date         # aware (Europe/Berlin), or a date for an all-day event
    end: datetime | date
    freq: str = ""                 # "", "WEEKLY" or "DAILY"
    count: int | None = None
    until: datetime | None = None  # UTC, inclusive (RFC 5545 §3.3.10)
    ics: bytes = b""

    @property
    def all_day(self) -> bool:
        return not isinstance(self.start, datetime)

    def occurrences(self, stop: datetime) -> Iterator[tuple[datetime, datetime]]:
        """(start, end) of each instance that starts before ``stop``, as aware datetimes."""
        start, end = self.start, self.end
        if self.all_day:  # floating date, read as UTC midnight
            start, end = (datetime(d.year, d.month, d.day, tzinfo=UTC) for d in (start, end))
        step = timedelta(days=7 if self.freq == "WEEKLY" else 1)
        k = 0
        while True:
            occ = start + k * step  # wall-clock arithmetic in Europe/Berlin, as RRULE wants
            if occ >= stop or (self.count and k >= self.count) or (self.until and occ > self.until):
                return
            yield occ, occ + (end - start)
            if not self.freq:
                return
            k += 1

    def overlaps(self, lo: datetime, hi: datetime) -> bool:
        # RFC 4791 §9.9: an instance overlaps if it starts before hi and ends after lo.
        return any(s < hi and e > lo for s, e in self.occurrences(hi))

    def describe(self) -> str:
        rule = ""
        if self.freq:
            end = (f"COUNT={self.count}" if self.count else
                   f"UNTIL={self.until:%Y%m%dT%H%M%SZ}" if self.until else "no end")
            rule = f" {self.freq} {end}"
        return f"{self.name} ({self.start.isoformat()} .. {self.end.isoformat()}{rule})"


def generate(n: int, seed: int = 42) -> list[Event]:
    rng = random.Random(seed)
    events, recurring = [], 0
    for i in range(n):
        day = FIRST_DAY + timedelta(days=rng.randrange(SPAN_DAYS))
        kind = rng.random()
        if kind < 0.03:
            ev = Event(f"event-{i:05d}.ics", day, day + timedelta(days=rng.choice([1, 1, 2, 3])))
            summary = rng.choice(ALLDAY)
        else:
            start = datetime(day.year, day.month, day.day, rng.randint(7, 19),
                             rng.choice([0, 15, 30, 45]), tzinfo=BERLIN)
            ev = Event(f"event-{i:05d}.ics", start,
                       start + timedelta(minutes=rng.choice([30, 45, 60, 60, 90, 120])))
            summary = rng.choice(SUMMARIES)
            if kind < 0.13:
                recurring += 1
                if recurring % 40 == 7:  # 2 or 3 in 1000 events
                    ev.freq = "WEEKLY"
                elif recurring % 4 == 1:
                    ev.freq = "DAILY"
                    ev.until = (start + timedelta(days=rng.randint(2, 13))).astimezone(UTC)
                else:
                    ev.freq, ev.count = "WEEKLY", rng.randint(4, 20)
        ev.ics = to_ical(ev, rng, summary)
        events.append(ev)
    return events


def to_ical(ev: Event, rng: random.Random, summary: str) -> bytes:
    uid = f"{uuid.UUID(int=rng.getrandbits(128), version=4)}@bench.example.test"
    stamp = datetime(2024, 12, 1, tzinfo=UTC) + timedelta(seconds=rng.randrange(30 * 86400))
    lines = ["BEGIN:VCALENDAR", "VERSION:2.0", "PRODID:-//Haven//DAV benchmark//EN",
             "CALSCALE:GREGORIAN"]
    if not ev.all_day:
        lines += VTIMEZONE.splitlines()
        when = [f"DTSTART;TZID=Europe/Berlin:{ev.start:%Y%m%dT%H%M%S}",
                f"DTEND;TZID=Europe/Berlin:{ev.end:%Y%m%dT%H%M%S}"]
    else:
        when = [f"DTSTART;VALUE=DATE:{ev.start:%Y%m%d}", f"DTEND;VALUE=DATE:{ev.end:%Y%m%d}"]
    lines += ["BEGIN:VEVENT", f"UID:{uid}", f"DTSTAMP:{stamp:%Y%m%dT%H%M%SZ}", *when]
    if ev.freq:
        lines.append(f"RRULE:FREQ={ev.freq}" + (f";COUNT={ev.count}" if ev.count else "")
                     + (f";UNTIL={ev.until:%Y%m%dT%H%M%SZ}" if ev.until else ""))
    lines.append(f"SUMMARY:{escape(summary)}")
    if rng.random() < 0.4:
        lines.append(f"LOCATION:{escape(rng.choice(LOCATIONS))}")
    if rng.random() < 0.5:
        paras = [" ".join(rng.choices(WORDS, k=rng.randint(5, 30))).capitalize() + "."
                 for _ in range(rng.randint(1, 3))]
        lines.append(f"DESCRIPTION:{escape(chr(10).join(paras))}")
    lines += ["TRANSP:OPAQUE", "END:VEVENT", "END:VCALENDAR"]
    return b"".join(fold(line) + b"\r\n" for line in lines)


def escape(text: str) -> str:
    """RFC 5545 §3.3.11 TEXT escaping."""
    return (text.replace("\\", "\\\\").replace(";", "\\;").replace(",", "\\,")
            .replace("\n", "\\n"))


def fold(line: str) -> bytes:
    """RFC 5545 §3.1: lines of at most 75 octets, never splitting a UTF-8 sequence."""
    out, cur = [], b""
    for ch in line:
        b = ch.encode()
        if len(cur) + len(b) > 75:
            out.append(cur)
            cur = b" "
        cur += b
    return b"\r\n".join(out + [cur])


# -- the client ------------------------------------------------------------------------------

DAV, CALDAV = "{DAV:}", "{urn:ietf:params:xml:ns:caldav}"


@dataclass
class Reply:
    status: int
    headers: http.client.HTTPMessage
    body: bytes
    seconds: float


class DavClient:
    """HTTP/1.1 with keep-alive and Basic auth on one connection.  A server that closes after
    a response (Radicale's built-in server answers HTTP/1.0) gets a new connection for the
    next request; ``connects`` counts them."""

    def __init__(self, hostport: str, user: str, password: str):
        host, port = split_hostport(hostport)
        self.conn = http.client.HTTPConnection(host, port, timeout=120)
        self.auth = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
        self.connects = 0
        connect = self.conn.connect

        def counting_connect() -> None:
            self.connects += 1
            connect()
        self.conn.connect = counting_connect

    def request(self, method: str, path: str, body: bytes = b"", **headers: str) -> Reply:
        hdrs = {"Authorization": self.auth, **{k.replace("_", "-"): v for k, v in headers.items()}}
        if body and "Content-Type" not in hdrs:
            hdrs["Content-Type"] = 'application/xml; charset="utf-8"'
        t0 = time.perf_counter()
        try:
            self.conn.request(method, path, body, hdrs)
            resp = self.conn.getresponse()
        except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
            self.conn.close()  # an idle keep-alive connection the server dropped: once more
            self.conn.request(method, path, body, hdrs)
            resp = self.conn.getresponse()
        data = resp.read()
        return Reply(resp.status, resp.headers, data, time.perf_counter() - t0)

    def expect(self, statuses: tuple[int, ...], method: str, path: str, body: bytes = b"",
               **headers: str) -> Reply:
        """``request``, raising with the server's answer unless its status is in ``statuses``."""
        r = self.request(method, path, body, **headers)
        if r.status not in statuses:
            raise RuntimeError(f"{method} {path}: {r.status} (expected {statuses}): "
                               f"{r.body[:500].decode(errors='replace')}")
        return r

    def close(self) -> None:
        self.conn.close()


@dataclass
class Response:
    """One DAV:response of a multistatus: its href's last segment, unquoted, and its props
    with a 200 propstat (element by Clark name)."""
    name: str
    status: str
    props: dict[str, ET.Element]


def multistatus(reply: Reply) -> list[Response]:
    if reply.status != 207:
        raise RuntimeError(f"expected 207 Multi-Status, got {reply.status}: "
                           f"{reply.body[:500].decode(errors='replace')}")
    out = []
    for resp in ET.fromstring(reply.body).iter(f"{DAV}response"):
        href = unquote(urlsplit(resp.findtext(f"{DAV}href", "").strip()).path)
        props = {}
        for ps in resp.findall(f"{DAV}propstat"):
            prop = ps.find(f"{DAV}prop")
            if " 200 " in ps.findtext(f"{DAV}status", "") and prop is not None:
                props.update((p.tag, p) for p in prop)
        out.append(Response(href.rstrip("/").rsplit("/", 1)[-1], resp.findtext(f"{DAV}status", ""),
                            props))
    return out


def etags(responses: list[Response]) -> dict[str, str]:
    return {r.name: r.props[f"{DAV}getetag"].text or "" for r in responses
            if f"{DAV}getetag" in r.props}


# -- the measurements ------------------------------------------------------------------------

@dataclass
class DavResults(Results):
    """Figures plus what the servers must agree on: the time-range names and the counts."""
    window: set[str] = field(default_factory=set)
    counts: dict[str, int] = field(default_factory=dict)


def make_calendar(c: DavClient, coll: str) -> None:
    body = (b'<?xml version="1.0" encoding="utf-8"?>'
            b'<C:mkcalendar xmlns:D="DAV:" xmlns:C="urn:ietf:params:xml:ns:caldav"><D:set><D:prop>'
            b'<D:displayname>Bench</D:displayname></D:prop></D:set></C:mkcalendar>')
    c.expect((201,), "MKCALENDAR", coll, body)


def put_events(c: DavClient, coll: str, events: list[Event], res: DavResults) -> dict[str, str]:
    """PUT every event with If-None-Match: *; returns the ETags the server answered with."""
    c.close()  # so that the connections counted are the PUTs' own
    connects0, statuses, tags, each = c.connects, {}, {}, []
    t0 = time.perf_counter()
    for ev in events:
        r = c.request("PUT", coll + ev.name, ev.ics, If_None_Match="*",
                      Content_Type="text/calendar; charset=utf-8")
        each.append(r.seconds)
        statuses[r.status] = statuses.get(r.status, 0) + 1
        if r.status not in (201, 204) and statuses[r.status] == 1:
            res.check(False, f"PUT {ev.name}: {r.status} {r.body[:300].decode(errors='replace')}")
        if r.headers.get("ETag"):
            tags[ev.name] = r.headers["ETag"]
    secs = time.perf_counter() - t0
    conns = c.connects - connects0
    k = len(events) // 10  # does the rate hold up as the calendar fills?
    res.add(PUT_ROW.format(n=len(events)), len(events) / secs, "{:.0f}",
            f"{secs:.1f} s, {conns} connection{'s' * (conns != 1)}; first {k}: "
            f"{k / sum(each[:k]):.0f}/s, last {k}: {k / sum(each[-k:]):.0f}/s")
    created = statuses.get(201, 0)
    res.check(created == len(events), f"PUT: {created} of {len(events)} answered 201 Created "
              f"(statuses {dict(sorted(statuses.items()))})")
    res.check(len(tags) == len(events),
              f"PUT: {len(tags)} of {len(events)} answers carried an ETag")
    return tags


PUT_PARALLEL_ROW = "PUT {n} events over {conns} connections at once (events/s)"


def put_events_parallel(hostport: str, user: str, password: str, coll: str, events: list[Event],
                        res: DavResults, conns: int) -> None:
    """The same PUTs into a second, empty calendar ``coll`` from ``conns`` clients at once
    (event i on connection i % conns): what the server sustains when several devices sync,
    rather than the latency of one."""
    make_calendar(DavClient(hostport, user, password), coll)
    clients = [DavClient(hostport, user, password) for _ in range(conns)]
    statuses: list[dict] = [{} for _ in range(conns)]

    def worker(i: int) -> None:
        for ev in events[i::conns]:
            r = clients[i].request("PUT", coll + ev.name, ev.ics, If_None_Match="*",
                                   Content_Type="text/calendar; charset=utf-8")
            statuses[i][r.status] = statuses[i].get(r.status, 0) + 1
    threads = [threading.Thread(target=worker, args=(i,)) for i in range(conns)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    secs = time.perf_counter() - t0
    for c in clients:
        c.close()
    created = sum(s.get(201, 0) for s in statuses)
    res.add(PUT_PARALLEL_ROW.format(n=len(events), conns=conns), len(events) / secs, "{:.0f}",
            f"{secs:.1f} s")
    res.check(created == len(events), f"PUT over {conns} connections: {created} of {len(events)} "
              f"answered 201 Created")


def calendar_query(c: DavClient, coll: str, events: list[Event], res: DavResults,
                   reps: int) -> dict[str, str]:
    lo, hi = (f"{t:%Y%m%dT%H%M%SZ}" for t in WINDOW)
    body = (f'<?xml version="1.0" encoding="utf-8"?>'
            f'<C:calendar-query xmlns:D="DAV:" xmlns:C="urn:ietf:params:xml:ns:caldav">'
            f'<D:prop><D:getetag/></D:prop><C:filter><C:comp-filter name="VCALENDAR">'
            f'<C:comp-filter name="VEVENT"><C:time-range start="{lo}" end="{hi}"/>'
            f'</C:comp-filter></C:comp-filter></C:filter></C:calendar-query>').encode()
    reply = best_reply(reps, lambda: c.request("REPORT", coll, body, Depth="1"))
    found = multistatus(reply)
    res.window = {r.name for r in found}
    res.add("calendar-query, one-month time-range, getetag (ms)", reply.seconds * 1000, "{:.1f}",
            f"{len(res.window)} events")
    expected = {ev.name for ev in events if ev.overlaps(*WINDOW)}
    res.check(res.window == expected, f"time-range {WINDOW[0]:%Y-%m-%d}..{WINDOW[1]:%Y-%m-%d}: "
              f"{len(res.window)} events, generator expects {len(expected)}"
              + difference(res.window, expected, events, "server", "generator"))
    return etags(found)


def sync_collection(c: DavClient, coll: str, n: int, res: DavResults, reps: int) -> dict[str, str]:
    body = (b'<?xml version="1.0" encoding="utf-8"?><D:sync-collection xmlns:D="DAV:">'
            b'<D:sync-token/><D:sync-level>1</D:sync-level><D:prop><D:getetag/></D:prop>'
            b'</D:sync-collection>')
    # RFC 6578 §3.3: Depth 0; the scope comes from sync-level.
    reply = best_reply(reps, lambda: c.request("REPORT", coll, body, Depth="0"))
    found = multistatus(reply)
    tags = etags(found)
    res.counts["sync-collection"] = len(tags)
    res.add("sync-collection, initial, getetag (ms)", reply.seconds * 1000, "{:.1f}",
            f"{len(tags)} items")
    token = ET.fromstring(reply.body).findtext(f"{DAV}sync-token", "").strip()
    res.check(len(tags) == n and bool(token), f"sync-collection: {len(tags)} items with an "
              f"ETag of {n}, {'a' if token else 'no'} sync-token")
    return tags


def multiget(c: DavClient, coll: str, events: list[Event], res: DavResults, reps: int) -> None:
    picked = [events[i - 1] for i in spread(len(events), MULTIGET)]
    hrefs = "".join(f"<D:href>{coll}{ev.name}</D:href>" for ev in picked)
    body = (f'<?xml version="1.0" encoding="utf-8"?>'
            f'<C:calendar-multiget xmlns:D="DAV:" xmlns:C="urn:ietf:params:xml:ns:caldav">'
            f'<D:prop><D:getetag/><C:calendar-data/></D:prop>{hrefs}'
            f'</C:calendar-multiget>').encode()
    reply = best_reply(reps, lambda: c.request("REPORT", coll, body, Depth="1"))
    found = multistatus(reply)
    res.counts["calendar-multiget"] = len(found)
    res.add(f"calendar-multiget of {len(picked)}, calendar-data (ms)", reply.seconds * 1000,
            "{:.1f}", f"{len(reply.body) / 1024:.0f} KiB")
    want = {ev.name: uid_of(ev.ics) for ev in picked}
    got = {r.name: uid_of((r.props[f"{CALDAV}calendar-data"].text or "").encode())
           for r in found if f"{CALDAV}calendar-data" in r.props}
    res.check(got == want, f"calendar-multiget: {len(got)} of {len(want)} asked for came back "
              "with calendar-data of the right UID")


def propfind(c: DavClient, coll: str, n: int, res: DavResults, reps: int) -> dict[str, str]:
    body = (b'<?xml version="1.0" encoding="utf-8"?><D:propfind xmlns:D="DAV:"><D:prop>'
            b'<D:getetag/><D:getcontenttype/><D:resourcetype/></D:prop></D:propfind>')
    reply = best_reply(reps, lambda: c.request("PROPFIND", coll, body, Depth="1"))
    found = multistatus(reply)
    res.counts["PROPFIND"] = len(found)
    res.add("PROPFIND Depth: 1, getetag getcontenttype resourcetype (ms)", reply.seconds * 1000,
            "{:.1f}", f"{len(found)} responses")
    kinds = [{child.tag for child in r.props.get(f"{DAV}resourcetype", [])} for r in found]
    calendars = sum(1 for k in kinds if {f"{DAV}collection", f"{CALDAV}calendar"} <= k)
    objects = sum(1 for r, k in zip(found, kinds) if not k and (getattr(
        r.props.get(f"{DAV}getcontenttype"), "text", None) or "").startswith("text/calendar"))
    res.check(len(found) == n + 1 and calendars == 1 and objects == n,
              f"PROPFIND: {len(found)} responses (expected {n + 1}), {calendars} calendar "
              f"collection, {objects} non-collection text/calendar members")
    return etags(found)


def check_etags(res: DavResults, sources: dict[str, dict[str, str]]) -> None:
    """The same ETag for an item from every request that returned one (PROPFIND's as reference)."""
    ref = sources["PROPFIND"]
    bad = sorted({name for tags in sources.values() for name, tag in tags.items()
                  if ref.get(name) != tag})
    res.check(not bad, "ETags agree between " + ", ".join(sources)
              + (f"; differ for {len(bad)} items, e.g. {bad[:3]}" if bad else ""))


def best_reply(reps: int, fn) -> Reply:
    replies = [fn() for _ in range(max(1, reps))]
    return min(replies, key=lambda r: r.seconds)


def uid_of(ics: bytes) -> str:
    for line in ics.replace(b"\r\n ", b"").splitlines():
        if line.startswith(b"UID:"):
            return line[4:].decode().strip()
    return ""


def difference(a: set[str], b: set[str], events: list[Event], a_name: str, b_name: str) -> str:
    """'' if a == b, else the names only in one of them, with what the generator made them."""
    by_name = {ev.name: ev for ev in events}
    out = ""
    for label, names in ((f"only {a_name}", a - b), (f"only {b_name}", b - a)):
        if names:
            out += f"; {label}: " + ", ".join(
                by_name[x].describe() if x in by_name else x for x in sorted(names))
    return out
