"""Mail-server benchmark: LMTP delivery, IMAP and POP3 timings against one server.

Usage (one target that is already running, with two empty accounts)::

    python bench/mailbench.py --lmtp 127.0.0.1:12424 --imap 127.0.0.1:11143 \\
        --pop3 127.0.0.1:11110 --user bench@example.test --password benchpass \\
        [--user2 bench2@example.test] [--count 2000] [--label dovecot] [--json out.json]

The corpus (``corpus.generate``) is delivered over LMTP to ``--user`` on one
connection and to ``--user2`` on four; then IMAP and POP3 are measured on
``--user``'s INBOX.  Both INBOXes must start empty.  A markdown table goes to
stdout, progress to stderr.  ``bench/run.py`` runs this against Dovecot and
Haven in one go and prints them side by side.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import corpus  # noqa: E402
import measure  # noqa: E402
from measure import Results, Target, imap_session, log  # noqa: E402

SEARCH_WORD = "quetzalcoatl"
SUBJECT_WORD = "meeting"


def run_target(t: Target, messages: list[bytes], reps: int = 3) -> Results:
    """Run every measurement against one server; the accounts must start empty.

    A measurement that fails (protocol error, missing feature, timeout) becomes a FAILED
    check and the next one still runs; only a failed LMTP delivery stops the run.
    """
    res = Results()
    for user in (t.user, t.user2):
        c, exists = imap_session(t, user)
        c.logout()
        if exists:
            raise RuntimeError(f"{t.label}: {user} INBOX already holds {exists} messages; "
                               "the benchmark needs empty accounts (use a fresh instance)")
    hits = corpus.rare_word_hits(len(messages))[SEARCH_WORD]
    both = corpus.subject_and_body_hits(messages, SUBJECT_WORD, SEARCH_WORD)
    steps = [
        ("IMAP LOGIN+SELECT", lambda: measure.imap_login_select(t, res, reps)),
        ("IMAP FETCH metadata", lambda: measure.imap_fetch_metadata(t, len(messages), res, reps)),
        ("IMAP FETCH bodies", lambda: measure.imap_fetch_bodies(t, messages, res, reps)),
        ("IMAP SEARCH", lambda: measure.imap_search(t, SEARCH_WORD, hits, res, reps)),
        ("IMAP SEARCH BODY+SUBJECT",
         lambda: measure.imap_search_subject_body(t, SUBJECT_WORD, SEARCH_WORD, both, res, reps)),
        ("IMAP STORE", lambda: measure.imap_store_flags(t, res, reps)),
        ("IMAP IDLE", lambda: measure.imap_idle_latency(t, res)),
        ("POP3", lambda: measure.pop3_measure(t, messages, res, reps)),
    ]
    started = time.perf_counter()
    log(f"{t.label}: delivering {len(messages)} messages over LMTP")
    measure.lmtp_delivery(t, messages, res)
    for name, step in steps:
        log(f"{t.label}: {name}")
        try:
            step()
        except Exception as e:  # noqa: BLE001 - reported as a failed check, run goes on
            res.check(False, f"{name} raised {type(e).__name__}: {e}")
    log(f"{t.label}: done in {time.perf_counter() - started:.0f} s")
    return res


def markdown_table(columns: dict[str, Results]) -> str:
    """Side-by-side table: one row per figure, one column per target."""
    rows: list[str] = []
    for res in columns.values():
        rows += [r for r in res.rows if r not in rows]
    labels = list(columns)
    lines = ["| measurement | " + " | ".join(labels) + " |",
             "|---|" + "---:|" * len(labels)]
    for row in rows:
        cells = [columns[lab].rows.get(row, "n/a") for lab in labels]
        lines.append(f"| {row} | " + " | ".join(cells) + " |")
    out = "\n".join(lines) + "\n"
    for lab, res in columns.items():
        failed = sum(1 for c in res.checks if c.startswith(("FAILED", "not run")))
        out += f"\nChecks, {lab}: " + (f"{failed} FAILED" if failed else "all passed")
        out += "".join(f"\n- {c}" for c in res.checks) + "\n"
    return out


def corpus_line(messages: list[bytes]) -> str:
    return f"Corpus: {corpus.summary(messages)}; SEARCH word '{SEARCH_WORD}', SUBJECT word '{SUBJECT_WORD}'."


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--lmtp", required=True, help="HOST:PORT of the LMTP listener")
    ap.add_argument("--imap", required=True, help="HOST:PORT of the IMAP listener")
    ap.add_argument("--pop3", help="HOST:PORT of the POP3 listener (skipped if absent)")
    ap.add_argument("--user", required=True)
    ap.add_argument("--password", required=True)
    ap.add_argument("--user2", help="second account for the 4-connection delivery "
                    "(default: the user's local part + '2', same domain and password)")
    ap.add_argument("--count", type=int, default=2000, help="corpus size (default 2000)")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--reps", type=int, default=3, help="repetitions, best kept (default 3)")
    ap.add_argument("--label", default="server")
    ap.add_argument("--json", type=Path, help="also write raw figures to this file")
    return ap.parse_args(argv)


def default_user2(user: str) -> str:
    local, at, domain = user.partition("@")
    return f"{local}2{at}{domain}"


def main(argv: list[str] | None = None) -> None:
    a = parse_args(argv)
    for spec in filter(None, (a.lmtp, a.imap, a.pop3)):
        if not spec.startswith(("127.", "localhost:", "[::1]:")):
            raise SystemExit(f"refusing non-loopback target {spec}")
    t = Target(a.label, a.lmtp, a.imap, a.user, a.password, a.user2 or default_user2(a.user),
               a.pop3)
    messages = corpus.generate(a.count, a.seed)
    try:
        res = run_target(t, messages, a.reps)
    except (RuntimeError, OSError) as e:
        raise SystemExit(f"{a.label}: {type(e).__name__}: {e}")
    print(corpus_line(messages) + "\n")
    print(markdown_table({a.label: res}))
    if a.json:
        a.json.write_text(json.dumps({"label": a.label, "figures": res.raw,
                                      "checks": res.checks}, indent=2))


if __name__ == "__main__":
    main()
