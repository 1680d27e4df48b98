"""Run the CalDAV benchmark against stock Radicale and Haven, one after the other, in one go.

    python bench/dav.py [--count 1000] [--reps 3] [--conns 4] [--only radicale|haven] [--keep]

Generates ``--count`` events (``davbench.generate``), then for each server:
starts a throwaway instance (Radicale from PyPI in its own venv,
``radicale_instance.py``; Haven with ``[http] listen``, ``haven.py``), creates
an empty calendar with MKCALENDAR, PUTs the events over one keep-alive
connection, times a one-month time-range calendar-query, an initial
sync-collection, a calendar-multiget of 100 and a PROPFIND Depth: 1 (best of
``--reps``), then PUTs the same events into a second calendar from ``--conns`` clients at
once, and stops it.  Prints a side-by-side markdown table to stdout
(progress to stderr) and checks that both servers returned the same things.
Exits 1 if a server could not be started or a check failed.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import davbench as D  # noqa: E402
from dovecot import sigterm_as_interrupt  # noqa: E402
from haven import REPO, HavenInstance, haven_command  # noqa: E402
from mailbench import markdown_table  # noqa: E402
from measure import log  # noqa: E402
from radicale_instance import RadicaleInstance  # noqa: E402

PASSWORD = "benchpass"
HAVEN_USER = "bench@example.test"
HAVEN_BASE = Path("/var/tmp/haven-bench/haven-dav")
HAVEN_HTTP_PORT = 28080


@dataclass
class DavTarget:
    label: str
    hostport: str
    user: str
    password: str
    collection: str  # path of the calendar the benchmark creates, ending in /


def run_target(t: DavTarget, events: list[D.Event], reps: int,
               res: D.DavResults | None = None, conns: int = 4) -> D.DavResults:
    res = res or D.DavResults()
    c = D.DavClient(t.hostport, t.user, t.password)
    try:
        D.make_calendar(c, t.collection)
        log(f"{t.label}: PUT {len(events)} events into {t.collection}")
        tags = {"PUT": D.put_events(c, t.collection, events, res)}
        log(f"{t.label}: reports")
        tags["calendar-query"] = D.calendar_query(c, t.collection, events, res, reps)
        tags["sync-collection"] = D.sync_collection(c, t.collection, len(events), res, reps)
        D.multiget(c, t.collection, events, res, reps)
        tags["PROPFIND"] = D.propfind(c, t.collection, len(events), res, reps)
        D.check_etags(res, tags)
        if conns > 1:
            log(f"{t.label}: PUT {len(events)} events over {conns} connections")
            D.put_events_parallel(t.hostport, t.user, t.password, t.collection.rstrip("/") + "-parallel/",
                                  events, res, conns)
    finally:
        c.close()
    return res


def bench_radicale(events: list[D.Event], reps: int, keep: bool, conns: int) -> tuple[str, D.DavResults]:
    inst = RadicaleInstance()
    try:
        inst.start()
        log(f"radicale {inst.version} up on {inst.endpoint}")
        label = f"Radicale {inst.version}"
        user = next(iter(inst.users))
        return label, run_target(DavTarget(label, inst.endpoint, user, PASSWORD,
                                           f"/{user}/calendar/"), events, reps, conns=conns)
    finally:
        inst.stop()
        if not keep:
            inst.cleanup()


def bench_haven(events: list[D.Event], reps: int, keep: bool, conns: int) -> tuple[str, D.DavResults]:
    inst = HavenInstance(base=HAVEN_BASE, pop3_port=None, http_port=HAVEN_HTTP_PORT,
                         users={HAVEN_USER: PASSWORD})
    try:
        inst.start()
        hostport = inst.endpoints()["http"]
        log(f"haven up, http on {hostport}")
        res = D.DavResults()
        discovery(D.DavClient(hostport, HAVEN_USER, PASSWORD), res)
        return "Haven", run_target(DavTarget("Haven", hostport, HAVEN_USER, PASSWORD,
                                             f"/dav/{HAVEN_USER}/bench/"), events, reps, res, conns)
    finally:
        inst.stop()
        if not keep:
            inst.cleanup()


def discovery(c: D.DavClient, res: D.DavResults) -> None:
    """Haven's URL layout, checked (not timed): the well-known redirect and the default calendar."""
    r = c.request("PROPFIND", "/.well-known/caldav", Depth="0")
    where = r.headers.get("Location", "")
    res.check(r.status in (301, 302, 307, 308) and where.rstrip("/").endswith("/dav"),
              f"/.well-known/caldav: {r.status} to {where!r} (expected a redirect to /dav/)")
    r = c.request("PROPFIND", f"/dav/{HAVEN_USER}/Calendar/", Depth="0")
    res.check(r.status == 207, f"PROPFIND the default calendar /dav/{HAVEN_USER}/Calendar/: "
              f"{r.status}")
    c.close()


def not_run(reason: str, n: int) -> D.DavResults:
    """A column for a server that could not be benchmarked; the reason goes in its checks."""
    res = D.DavResults()
    res.rows[D.PUT_ROW.format(n=n)] = "not run"
    res.checks.append(f"not run: {reason}")
    return res


def agreement(columns: dict[str, D.DavResults], events: list[D.Event]) -> list[str]:
    """Lines saying whether the servers returned the same things; MISMATCH lines if not."""
    ran = {k: v for k, v in columns.items() if v.counts}
    if len(ran) < 2:
        return []
    (a, ra), (b, rb) = list(ran.items())[:2]
    out = []
    if ra.window == rb.window:
        out.append(f"Same time-range result on both: {len(ra.window)} events.")
    else:
        out.append(f"MISMATCH: time-range result differs ({len(ra.window)} events on {a}, "
                   f"{len(rb.window)} on {b})" + D.difference(ra.window, rb.window, events, a, b))
    for what in ("sync-collection", "calendar-multiget", "PROPFIND"):
        x, y = ra.counts.get(what), rb.counts.get(what)
        out.append(f"Same {what} count on both: {x}." if x == y else
                   f"MISMATCH: {what} count {x} on {a}, {y} on {b}.")
    return out


def events_line(events: list[D.Event]) -> str:
    rec = [e for e in events if e.freq]
    allday = sum(1 for e in events if e.all_day)
    size = sum(len(e.ics) for e in events)
    lo, hi = D.WINDOW
    window = sum(1 for e in events if e.overlaps(lo, hi))
    return (f"Events: {len(events)}, {size / 1e6:.2f} MB (mean {size / max(1, len(events)):.0f} "
            f"bytes), {len(rec)} recurring ({sum(1 for e in rec if e.count)} weekly with COUNT, "
            f"{sum(1 for e in rec if e.until)} daily with UNTIL, "
            f"{sum(1 for e in rec if not e.count and not e.until)} weekly without end), "
            f"{allday} all-day; time-range {lo:%Y-%m-%d}..{hi:%Y-%m-%d} UTC holds {window}.")


def machine_line(labels: list[str]) -> str:
    cpu = "unknown CPU"
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo")
                   if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    commit = subprocess.run(["git", "-C", str(REPO), "describe", "--always", "--dirty"],
                            capture_output=True, text=True).stdout.strip()
    return (f"Machine: {os.cpu_count()} cores ({cpu}), Linux {platform.release()}, "
            f"Python {platform.python_version()}; servers: {', '.join(labels)}; "
            f"Haven at {commit or '?'}, command: {' '.join(haven_command() or ['none'])}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--count", type=int, default=1000, help="events to PUT (default 1000)")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--reps", type=int, default=3, help="best of this many for the reports")
    ap.add_argument("--only", choices=["radicale", "haven"])
    ap.add_argument("--keep", action="store_true", help="keep the instances' directories")
    ap.add_argument("--conns", type=int, default=4,
                    help="clients of the parallel PUT into a second calendar (default 4; 1 = skip it)")
    a = ap.parse_args()
    if a.count < D.MULTIGET:
        ap.error(f"--count must be at least {D.MULTIGET} (the multiget asks for that many)")
    sigterm_as_interrupt()

    events = D.generate(a.count, a.seed)
    log(events_line(events))
    columns: dict[str, D.DavResults] = {}
    for name, fn in (("Radicale", bench_radicale), ("Haven", bench_haven)):
        if a.only and name.lower() != a.only:
            continue
        try:
            label, res = fn(events, a.reps, a.keep, a.conns)
            columns[label] = res
        except KeyboardInterrupt:
            raise
        except Exception as e:  # a server that fails gets a column saying why
            log(f"{name} FAILED: {type(e).__name__}: {e}")
            lines = [line for line in str(e).splitlines() if line.strip()] or [""]
            why = lines[0] + (f" ... {lines[-1].strip()}" if len(lines) > 1 else "")
            columns[name] = not_run(f"{type(e).__name__}: {why}", len(events))

    print(machine_line(list(columns)))
    print(events_line(events) + "\n")
    print(markdown_table(columns))
    lines = agreement(columns, events)
    print("\n".join(lines))
    failed = any(c.startswith(("FAILED", "not run")) for r in columns.values() for c in r.checks)
    if failed or any(line.startswith("MISMATCH") for line in lines):
        log("some checks FAILED or a server did not run: see above")
        sys.exit(1)


if __name__ == "__main__":
    main()
