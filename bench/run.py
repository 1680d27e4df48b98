"""Run the mail benchmark against Dovecot 2.3 and Haven, one after the other, in one go.

    python bench/run.py [--count 2000] [--reps 3] [--only dovecot|haven] [--keep]

Starts a throwaway Dovecot (``dovecot.py``; installs the Debian packages when
run as root and they are missing), runs ``mailbench.run_target`` against it and
stops it; then does the same with Haven (``haven.py``).  Only one server runs
while it is measured, since client and server share the machine's cores.  Prints
the machine, the corpus and a side-by-side markdown table to stdout (progress
goes to stderr).  A server that cannot be started gets a "not run" column with
the reason instead of figures.  The instances' directories under
``/var/tmp/haven-bench`` are removed afterwards unless ``--keep``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import corpus  # noqa: E402
from dovecot import DovecotInstance, sigterm_as_interrupt  # noqa: E402
from haven import HavenInstance, haven_command  # noqa: E402
from mailbench import corpus_line, markdown_table, run_target  # noqa: E402
from measure import Results, Target, log  # noqa: E402

USER, USER2 = "bench@example.test", "bench2@example.test"


def bench_dovecot(messages: list[bytes], reps: int, keep: bool) -> Results:
    inst = DovecotInstance()
    inst.users = {USER: "benchpass", USER2: "benchpass"}
    try:
        inst.start()
        ep = inst.endpoints()
        log(f"dovecot up: {ep}")
        return run_target(Target("Dovecot 2.3", ep["lmtp"], ep["imap"], USER, "benchpass",
                                 USER2, ep["pop3"]), messages, reps)
    finally:
        inst.stop()
        if not keep:
            inst.cleanup()


def bench_haven(messages: list[bytes], reps: int, keep: bool, store_url: str = HavenInstance.store_url) -> Results:
    inst = HavenInstance(store_url=store_url)
    inst.users = {USER: "benchpass", USER2: "benchpass"}
    try:
        inst.start()
        ep = inst.endpoints()
        log(f"haven up: {ep}")
        res = run_target(Target("Haven", ep["lmtp"], ep["imap"], USER, "benchpass",
                                USER2, ep["pop3"]), messages, reps)
        if not ep["pop3"]:
            for row in [r for r in res.rows if r.startswith("POP3")]:
                res.skip(row, "Haven's POP3 port did not open")
        return res
    finally:
        inst.stop()
        if not keep:
            inst.cleanup()


def not_run(reason: str) -> Results:
    """A column for a server that could not be benchmarked; the reason goes in its checks."""
    res = Results()
    res.rows["LMTP delivery, 1 connection (msg/s)"] = "not run"
    res.checks.append(f"not run: {reason}")
    return res


def machine_line() -> str:
    cpu = "unknown CPU"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        dv = subprocess.run(["dovecot", "--version"], capture_output=True, text=True).stdout.strip()
    except FileNotFoundError:  # --only haven on a machine without Dovecot
        dv = ""
    return (f"Machine: {os.cpu_count()} cores ({cpu}), Linux {platform.release()}, "
            f"Python {platform.python_version()}, Dovecot {dv or '?'}, "
            f"haven command: {' '.join(haven_command() or ['none'])}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--count", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--only", choices=["dovecot", "haven"])
    ap.add_argument("--keep", action="store_true", help="keep the instances' directories")
    ap.add_argument("--json", type=Path, help="also write raw figures to this file")
    ap.add_argument("--store", default="sqlite", metavar="sqlite|mariadb|URL",
                    help="Haven's store: the embedded SQLite file (default), MariaDB on 127.0.0.1:3306 "
                         "(database haven_bench, dropped and created per run), or a mysql:// URL")
    a = ap.parse_args()
    sigterm_as_interrupt()

    messages = corpus.generate(a.count, a.seed)
    log(corpus_line(messages))
    columns: dict[str, Results] = {}
    store_url = {"sqlite": HavenInstance.store_url, "mariadb": "mysql://root@127.0.0.1:3306/haven_bench"}.get(
        a.store, a.store)
    haven_name = "Haven" if store_url.startswith("sqlite") else "Haven (MariaDB)"
    for name, fn in (("Dovecot 2.3", bench_dovecot),
                     (haven_name, lambda m, r, k: bench_haven(m, r, k, store_url))):
        if a.only and not name.lower().startswith(a.only):
            continue
        try:
            columns[name] = fn(messages, a.reps, a.keep)
        except KeyboardInterrupt:
            raise
        except Exception as e:  # a server that fails gets a column saying why
            log(f"{name} failed: {type(e).__name__}: {e}")
            columns[name] = not_run(f"{type(e).__name__}: {str(e).splitlines()[0]}")

    print(machine_line())
    print(corpus_line(messages) + "\n")
    print(markdown_table(columns))
    if a.json:
        a.json.write_text(json.dumps({k: {"figures": v.raw, "checks": v.checks}
                                      for k, v in columns.items()}, indent=2))


if __name__ == "__main__":
    main()
