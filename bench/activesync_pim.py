"""ActiveSync calendars and contacts: a phone's initial Sync of 1,000 events and 1,000 contacts,
creating events over EAS against PUTting them over CalDAV, and how fast a CalDAV PUT wakes a
phone's parked Ping.

    python bench/activesync_pim.py              # Haven on SQLite
    python bench/activesync_pim.py --mariadb    # on MariaDB (127.0.0.1:3306, root)
    python bench/activesync_pim.py --count 500 --rounds 10

Starts a throwaway Haven (``haven.py``: HTTP 28082, ``/var/tmp/haven-bench/haven-eas-pim``);
the events are davbench.py's (Europe/Berlin, ~10 % recurring, a few all-day), the contacts are
generated vCards 3.0 (name, two e-mails, three phones, an address, a note).  In one run:

1. PUT ``--count`` events over CalDAV (one keep-alive connection, If-None-Match: *) into
   ``Calendar``: the CalDAV reference figure for creating events;
2. as an iPhone-shaped device (EAS 16.1): FolderSync, Sync of ``Calendar`` with key 0, then
   Syncs in windows of 100 until no MoreAvailable (all dates, plain bodies): timed;
3. PUT ``--count`` vCards over CardDAV, then the initial Sync of ``Contacts`` the same way;
4. the same events created over EAS into a second calendar (``bench``, made over CalDAV):
   one Add per Sync request, then 50 Adds per Sync request (how a phone uploads a batch);
5. ``--rounds`` times: a Ping on ``Calendar`` is parked, one event is PUT over CalDAV, and the
   time from the PUT's answer to the Ping's is taken; a Sync then takes the change (not timed).

Prints a markdown table; bench/README.md ("ActiveSync calendars and contacts") has the figures.
"""

from __future__ import annotations

import argparse
import base64
import http.client
import statistics
import sys
import threading
import time
import xml.etree.ElementTree as ET
from datetime import datetime, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from activesync import start_haven, text  # noqa: E402  (bench/activesync.py)
from gateways.activesync import tzblob  # noqa: E402
from gateways.activesync.wbxml import decode, encode  # noqa: E402

USER, PASSWORD = "pim@example.test", "benchpass"
BASE = Path("/var/tmp/haven-bench/haven-eas-pim")
HTTP_PORT, LMTP_PORT, IMAP_PORT = 28082, 28426, 28145
AUTH = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
NS = 'xmlns="AirSync" xmlns:b="AirSyncBase" xmlns:c="Calendar"'
OPTIONS = ("<Options><FilterType>0</FilterType><b:BodyPreference><b:Type>1</b:Type><b:TruncationSize>32768"
           "</b:TruncationSize></b:BodyPreference></Options>")


class Http:
    """One keep-alive connection to Haven's front door."""

    def __init__(self):
        self.conn = http.client.HTTPConnection("127.0.0.1", HTTP_PORT, timeout=600)

    def request(self, method: str, path: str, body: bytes = b"", headers=None) -> tuple:
        self.conn.request(method, path, body=body, headers={"Authorization": AUTH, **(headers or {})})
        resp = self.conn.getresponse()
        return resp.status, resp.read()

    def eas(self, cmd: str, xml: str, device: str = "ApplPIMBENCH01") -> ET.Element:
        status, data = self.request("POST", f"/Microsoft-Server-ActiveSync?Cmd={cmd}&User={USER}&DeviceId={device}"
                                            "&DeviceType=iPhone", encode(ET.fromstring(xml)),
                                    {"MS-ASProtocolVersion": "16.1", "Content-Type": "application/vnd.ms-sync.wbxml"})
        if status != 200:
            raise RuntimeError(f"{cmd}: HTTP {status}")
        return decode(data)


def sync(h: Http, key: str, cid: str, commands: str = "", window: int = 100) -> tuple:
    """(new key, the Collection element)."""
    cmds = f"<Commands>{commands}</Commands>" if commands else ""
    options = OPTIONS if key != "0" else ""
    coll = h.eas("Sync", f'<Sync {NS}><Collections><Collection><SyncKey>{key}</SyncKey><CollectionId>{cid}'
                         f'</CollectionId><WindowSize>{window}</WindowSize>{options}{cmds}</Collection></Collections>'
                         '</Sync>').find("{AirSync}Collections/{AirSync}Collection")
    if text(coll, "AirSync:Status") != "1":
        raise RuntimeError(f"Sync of {cid}: Status {text(coll, 'AirSync:Status')}")
    return text(coll, "AirSync:SyncKey"), coll


def initial_sync(h: Http, cid: str) -> tuple:
    """(seconds, windows, items, slowest window) of a collection's first full Sync."""
    key, _coll = sync(h, "0", cid)
    items, windows, started = 0, [], time.monotonic()
    more = True
    while more:
        t0 = time.monotonic()
        key, coll = sync(h, key, cid)
        windows.append(time.monotonic() - t0)
        items += len(coll.findall("{AirSync}Commands/{AirSync}Add"))
        more = coll.find("{AirSync}MoreAvailable") is not None
    return time.monotonic() - started, len(windows), items, max(windows), key


def vcard(i: int) -> bytes:
    return (f"BEGIN:VCARD\r\nVERSION:3.0\r\nUID:bench-card-{i:05d}\r\nFN:Person {i:05d}\r\nN:{i:05d};Person;;;\r\n"
            f"EMAIL;TYPE=INTERNET,WORK:person{i}@example.org\r\nEMAIL;TYPE=INTERNET,HOME:p{i}@home.example\r\n"
            f"TEL;TYPE=CELL:+49 151 {i:07d}\r\nTEL;TYPE=WORK:+49 30 {i:07d}\r\nTEL;TYPE=HOME:+49 40 {i:07d}\r\n"
            f"ADR;TYPE=WORK:;;Street {i};Berlin;;10115;Germany\r\nORG:Company {i % 50}\r\n"
            f"NOTE:Met at conference number {i}.\r\nEND:VCARD\r\n").encode()


def eas_event(ev, blob: str) -> str:
    """An EAS 16.1 ApplicationData of a davbench event (UTC times, the Berlin zone blob)."""
    def utc(value) -> str:
        if not isinstance(value, datetime):
            value = datetime(value.year, value.month, value.day, tzinfo=timezone.utc)
        return value.astimezone(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    recurrence = ""
    if ev.freq:
        kind, extra = ("0", "") if ev.freq == "DAILY" else ("1", f"<c:DayOfWeek>{1 << ((ev.start.weekday() + 1) % 7)}"
                                                                 "</c:DayOfWeek>")
        end = f"<c:Occurrences>{ev.count}</c:Occurrences>" if ev.count else \
            f"<c:Until>{ev.until:%Y%m%dT%H%M%SZ}</c:Until>" if ev.until else ""
        recurrence = f"<c:Recurrence><c:Type>{kind}</c:Type><c:Interval>1</c:Interval>{end}{extra}</c:Recurrence>"
    return (f"<ApplicationData><c:Timezone>{blob}</c:Timezone><c:AllDayEvent>{int(ev.all_day)}</c:AllDayEvent>"
            f"<c:StartTime>{utc(ev.start)}</c:StartTime><c:EndTime>{utc(ev.end)}</c:EndTime>"
            f"<c:Subject>{ev.name}</c:Subject><c:BusyStatus>2</c:BusyStatus><c:Sensitivity>0</c:Sensitivity>"
            f"<c:MeetingStatus>0</c:MeetingStatus>{recurrence}</ApplicationData>")


def create_over_eas(h: Http, cid: str, events: list, per_request: int, tag: str) -> float:
    key, _coll = sync(h, "0", cid)
    key, _coll = sync(h, key, cid)
    blob = tzblob.encode(ZoneInfo("Europe/Berlin"), 2026)
    t0 = time.monotonic()
    for i in range(0, len(events), per_request):
        adds = "".join(f"<Add><ClientId>{tag}{i + j}</ClientId>{eas_event(ev, blob)}</Add>"
                       for j, ev in enumerate(events[i:i + per_request]))
        key, coll = sync(h, key, cid, adds)
        statuses = [text(a, "AirSync:Status") for a in coll.findall("{AirSync}Responses/{AirSync}Add")]
        if statuses != ["1"] * len(events[i:i + per_request]):
            raise RuntimeError(f"EAS Add: statuses {statuses[:5]}")
    return time.monotonic() - t0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--count", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--mariadb", nargs="?", const="mysql://root@127.0.0.1:3306/haven_bench_eas_pim", default=None)
    args = ap.parse_args()
    from davbench import generate
    inst = start_haven(BASE, HTTP_PORT, LMTP_PORT, IMAP_PORT, {USER: PASSWORD}, args.mariadb)
    rows = []
    try:
        h = Http()
        events = generate(args.count)
        cal = f"/dav/{USER}/Calendar/"
        t0 = time.monotonic()
        for ev in events:
            status, body = h.request("PUT", cal + ev.name, ev.ics, {"If-None-Match": "*",
                                                                     "Content-Type": "text/calendar; charset=utf-8"})
            if status != 201:
                raise RuntimeError(f"PUT {ev.name}: {status} {body[:200]!r}")
        put_seconds = time.monotonic() - t0
        tree = h.eas("FolderSync", '<FolderSync xmlns="FolderHierarchy"><SyncKey>0</SyncKey></FolderSync>')
        ids = {text(a, "FolderHierarchy:Type"): text(a, "FolderHierarchy:ServerId")
               for a in tree.iter("{FolderHierarchy}Add")}
        secs, windows, items, slowest, cal_key = initial_sync(h, ids["8"])
        if items != args.count:
            raise RuntimeError(f"initial Calendar Sync: {items} of {args.count} events")
        rows.append((f"initial Calendar Sync of {items} events, {windows} windows of 100",
                     f"{secs:.2f} s (slowest window {slowest * 1000:.0f} ms)"))
        book = f"/dav/{USER}/Contacts/"
        for i in range(args.count):
            status, body = h.request("PUT", book + f"card-{i:05d}.vcf", vcard(i),
                                     {"If-None-Match": "*", "Content-Type": "text/vcard; charset=utf-8"})
            if status != 201:
                raise RuntimeError(f"PUT card {i}: {status} {body[:200]!r}")
        secs, windows, items, slowest, _key = initial_sync(h, ids["9"])
        if items != args.count:
            raise RuntimeError(f"initial Contacts Sync: {items} of {args.count} contacts")
        rows.append((f"initial Contacts Sync of {items} contacts, {windows} windows of 100",
                     f"{secs:.2f} s (slowest window {slowest * 1000:.0f} ms)"))
        rows.append((f"create {args.count} events over CalDAV: PUT, one per request",
                     f"{put_seconds:.2f} s ({args.count / put_seconds:.0f}/s)"))
        for n, (per, name) in enumerate(((1, "bench1"), (50, "bench50"))):
            h.request("MKCALENDAR", f"/dav/{USER}/{name}/")
            tree = h.eas("FolderSync", '<FolderSync xmlns="FolderHierarchy"><SyncKey>0</SyncKey></FolderSync>',
                         device=f"ApplPIMMAKE{n}")
            cid = next(text(a, "FolderHierarchy:ServerId") for a in tree.iter("{FolderHierarchy}Add")
                       if text(a, "FolderHierarchy:DisplayName") == name)
            secs = create_over_eas(_Device(h, f"ApplPIMMAKE{n}"), cid, events, per, f"c{per}-")
            rows.append((f"create {args.count} events over EAS: {per} Add{'s' * (per > 1)} per Sync",
                         f"{secs:.2f} s ({args.count / secs:.0f}/s)"))
        latencies = []
        for i in range(args.rounds):
            box: dict = {}
            ping = ('<Ping xmlns="Ping"><HeartbeatInterval>300</HeartbeatInterval><Folders><Folder>'
                    f'<Id>{ids["8"]}</Id><Class>Calendar</Class></Folder></Folders></Ping>')
            waiter = Http()
            t = threading.Thread(target=lambda: box.update(answer=waiter.eas("Ping", ping), at=time.monotonic()))
            t.start()
            time.sleep(0.5)
            ev = events[i]
            status, _ = h.request("PUT", cal + f"wake-{i}.ics", ev.ics.replace(b"UID:", b"UID:wake%d-" % i),
                                  {"Content-Type": "text/calendar; charset=utf-8"})
            put_done = time.monotonic()
            t.join(30)
            if status != 201 or text(box.get("answer"), "Ping:Status") != "2":
                raise RuntimeError(f"round {i}: PUT {status}, Ping {text(box.get('answer'), 'Ping:Status')}")
            latencies.append(box["at"] - put_done)
            cal_key, _coll = sync(h, cal_key, ids["8"])
        rows.append((f"Ping wake-up after a CalDAV PUT's answer, {len(latencies)} rounds: median / max",
                     f"{statistics.median(latencies) * 1000:.1f} ms / {max(latencies) * 1000:.1f} ms"))
    finally:
        inst.stop()
    store = "MariaDB" if args.mariadb else "SQLite"
    print(f"| ActiveSync calendars and contacts, Haven on {store} | figure |")
    print("|---|---|")
    for name, figure in rows:
        print(f"| {name} | {figure} |")
    return 0


class _Device:
    """An Http whose EAS requests come from another device id."""

    def __init__(self, h: Http, device: str):
        self.h, self.device = h, device

    def eas(self, cmd: str, xml: str) -> ET.Element:
        return self.h.eas(cmd, xml, self.device)


if __name__ == "__main__":
    sys.exit(main())
