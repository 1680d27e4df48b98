"""The individual measurements of the mail benchmark, one function each.

Every function takes a ``Target`` (endpoints and accounts) and records figures
into a ``Results`` (an ordered mapping of row name -> display string, plus a
list of correctness-check notes).  Times are wall-clock, from
``time.perf_counter``; where a measurement can be repeated without changing the
state it measures, the best of ``reps`` runs is kept.
"""

from __future__ import annotations

import poplib
import re
import statistics
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Callable

from wire import ImapClient, LmtpClient, count_fetches, fetch_literals, split_hostport

SENDER = "sender@example.org"


@dataclass
class Target:
    label: str
    lmtp: str
    imap: str
    user: str
    password: str
    user2: str
    pop3: str | None = None


@dataclass
class Results:
    rows: dict[str, str] = field(default_factory=dict)
    raw: dict[str, float] = field(default_factory=dict)
    checks: list[str] = field(default_factory=list)

    def add(self, row: str, value: float, fmt: str, note: str = "") -> None:
        self.raw[row] = value
        self.rows[row] = fmt.format(value) + (f" ({note})" if note else "")

    def skip(self, row: str, why: str) -> None:
        self.rows[row] = f"n/a: {why}"

    def check(self, ok: bool, text: str) -> None:
        self.checks.append(("ok: " if ok else "FAILED: ") + text)
        if not ok:
            log(f"CHECK FAILED: {text}")


def log(msg: str) -> None:
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


def best_of(reps: int, fn: Callable[[], None]) -> float:
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def spread(n_total: int, k: int) -> list[int]:
    """k sequence numbers (1-based) evenly spread over 1..n_total."""
    k = min(k, n_total)
    return [1 + (i * n_total) // k for i in range(k)]


def imap_session(t: Target, user: str | None = None) -> tuple[ImapClient, int]:
    c = ImapClient(t.imap)
    c.login(user or t.user, t.password)
    return c, c.select("INBOX")


# -- LMTP ---------------------------------------------------------------------

def lmtp_delivery(t: Target, messages: list[bytes], res: Results) -> None:
    """Deliver the corpus to user over 1 connection, then to user2 over 4."""
    c = LmtpClient(t.lmtp)
    t0 = time.perf_counter()
    for msg in messages:
        c.deliver(SENDER, t.user, msg)
    elapsed = time.perf_counter() - t0
    c.quit()
    res.add("LMTP delivery, 1 connection (msg/s)", len(messages) / elapsed, "{:.0f}",
            f"{elapsed:.1f} s")
    log(f"LMTP 1 conn: {len(messages)} in {elapsed:.1f} s")

    conns = [LmtpClient(t.lmtp) for _ in range(4)]
    errors: list[BaseException] = []
    start = threading.Barrier(len(conns) + 1)

    def worker(conn: LmtpClient, part: list[bytes]) -> None:
        start.wait()
        try:
            for msg in part:
                conn.deliver(SENDER, t.user2, msg)
        except BaseException as e:  # reported below, never swallowed
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(conn, messages[i::4]), daemon=True)
               for i, conn in enumerate(conns)]
    for th in threads:
        th.start()
    start.wait()
    t0 = time.perf_counter()
    for th in threads:
        th.join()
    elapsed = time.perf_counter() - t0
    for conn in conns:
        conn.quit()
    if errors:
        raise errors[0]
    res.add("LMTP delivery, 4 connections (msg/s)", len(messages) / elapsed, "{:.0f}",
            f"{elapsed:.1f} s")
    log(f"LMTP 4 conn: {len(messages)} in {elapsed:.1f} s")

    for user in (t.user, t.user2):
        c, exists = imap_session(t, user)
        c.logout()
        res.check(exists == len(messages), f"{user} INBOX holds {exists} of {len(messages)}")


# -- IMAP ---------------------------------------------------------------------

def imap_login_select(t: Target, res: Results, reps: int) -> None:
    def once() -> None:
        c, _ = imap_session(t)
        c.logout()
    res.add("IMAP connect+LOGIN+SELECT (ms)", 1000 * best_of(reps, once), "{:.1f}")


def imap_fetch_metadata(t: Target, n: int, res: Results, reps: int) -> None:
    c, exists = imap_session(t)
    counts = []

    def once() -> None:
        counts.append(count_fetches(c.command(
            "FETCH 1:* (UID FLAGS RFC822.SIZE INTERNALDATE ENVELOPE)")))
    secs = best_of(reps, once)
    c.logout()
    res.add(f"IMAP FETCH 1:* metadata, {exists} msgs (ms)", 1000 * secs, "{:.0f}")
    res.check(all(x == exists for x in counts), f"FETCH 1:* returned {counts[0]} of {exists}")


def imap_fetch_bodies(t: Target, messages: list[bytes], res: Results, reps: int,
                      k: int = 200) -> None:
    """k single-message FETCH BODY.PEEK[] round trips spread over the mailbox."""
    c, exists = imap_session(t)
    seqs = spread(min(exists, len(messages)), k)
    got: dict[int, bytes] = {}

    def once() -> None:
        for s in seqs:
            got.update(fetch_literals(c.command(f"FETCH {s} BODY.PEEK[]")))
    secs = best_of(reps, once)
    c.logout()
    nbytes = sum(len(messages[s - 1]) for s in seqs)
    res.add(f"IMAP FETCH BODY.PEEK[] x{len(seqs)} (ms)", 1000 * secs, "{:.0f}",
            f"{nbytes / secs / 1e6:.0f} MB/s")
    bad = [s for s in seqs if not got.get(s, b"").endswith(messages[s - 1])]
    res.check(not bad, f"{len(seqs) - len(bad)}/{len(seqs)} fetched bodies end with the "
                       f"delivered bytes" + (f" (first bad seq {bad[0]})" if bad else ""))


def imap_search(t: Target, word: str, expected: int, res: Results, reps: int) -> None:
    c, _ = imap_session(t)
    hits: list[int] = []

    def once() -> None:
        resp = c.command(f"UID SEARCH BODY {word}")
        uids = [u for line, _ in resp if line.startswith(b"* SEARCH")
                for u in line.split()[2:]]
        hits.append(len(uids))
    secs = best_of(reps, once)
    c.logout()
    res.add("IMAP UID SEARCH BODY <rare word> (ms)", 1000 * secs, "{:.0f}",
            f"{hits[0]} hits")
    res.check(hits[0] == expected, f"SEARCH BODY {word}: {hits[0]} hits, expected {expected}")


def imap_search_subject_body(t: Target, subject_word: str, body_word: str, expected: int,
                             res: Results, reps: int) -> None:
    """``UID SEARCH BODY <rare word> SUBJECT <common word>``: a client's "search in messages"."""
    c, _ = imap_session(t)
    hits: list[int] = []

    def once() -> None:
        resp = c.command(f"UID SEARCH BODY {body_word} SUBJECT {subject_word}")
        hits.append(sum(len(line.split()) - 2 for line, _ in resp if line.startswith(b"* SEARCH")))
    secs = best_of(reps, once)
    c.logout()
    res.add("IMAP UID SEARCH BODY <rare word> SUBJECT <word> (ms)", 1000 * secs, "{:.0f}", f"{hits[0]} hits")
    res.check(hits[0] == expected, f"SEARCH BODY {body_word} SUBJECT {subject_word}: {hits[0]} hits, "
                                   f"expected {expected}")


def imap_store_flags(t: Target, res: Results, reps: int) -> None:
    c, exists = imap_session(t)
    best = float("inf")
    for i in range(reps):
        t0 = time.perf_counter()
        c.command("STORE 1:* +FLAGS.SILENT (\\Flagged)")
        best = min(best, time.perf_counter() - t0)
        if i == 0:
            flagged = sum(len(line.split()) - 2 for line, _ in c.command("SEARCH FLAGGED")
                          if line.startswith(b"* SEARCH"))
            res.check(flagged == exists, f"STORE +FLAGS: {flagged} of {exists} flagged")
        c.command("STORE 1:* -FLAGS.SILENT (\\Flagged)")
    c.logout()
    res.add("IMAP STORE 1:* +FLAGS.SILENT (\\Flagged) (ms)", 1000 * best, "{:.0f}")


def imap_idle_latency(t: Target, res: Results, rounds: int = 10) -> None:
    """Time from sending LMTP's final '.' to the IDLEing client reading '* N EXISTS'."""
    idler, _ = imap_session(t)
    idler.sock.settimeout(15)
    lmtp = LmtpClient(t.lmtp)
    latencies: list[float] = []
    for i in range(rounds):
        tag = idler.next_tag()
        idler.send(f"{tag} IDLE\r\n".encode())
        while not idler.readline().startswith(b"+"):
            pass
        sent: list[float] = []
        msg = (f"From: <{SENDER}>\r\nTo: <{t.user}>\r\nSubject: idle probe {i}\r\n"
               f"Message-ID: <idle-{i}-{time.time_ns()}@example.org>\r\n\r\nwake up\r\n").encode()
        failure: list[BaseException] = []

        def send() -> None:
            try:
                lmtp.deliver(SENDER, t.user, msg, on_final_dot=lambda: sent.append(time.perf_counter()))
            except BaseException as e:
                failure.append(e)
        th = threading.Thread(target=send, daemon=True)
        th.start()
        while not re.match(rb"\* \d+ EXISTS", idler.readline()):
            pass
        woke = time.perf_counter()
        th.join(30)
        if failure:
            raise failure[0]
        latencies.append(woke - sent[0])
        idler.send(b"DONE\r\n")
        idler.read_until_tagged(tag, "IDLE")
    lmtp.quit()
    idler.logout()
    res.add("IMAP IDLE wake-up after LMTP, median (ms)", 1000 * statistics.median(latencies), "{:.1f}")
    res.add("IMAP IDLE wake-up after LMTP, max (ms)", 1000 * max(latencies), "{:.1f}",
            f"{rounds} rounds")


# -- POP3 ---------------------------------------------------------------------

def pop3_measure(t: Target, messages: list[bytes], res: Results, reps: int, k: int = 200) -> None:
    if not t.pop3:
        res.skip("POP3 connect+login+UIDL (ms)", "no POP3 endpoint given")
        res.skip(f"POP3 RETR x{k} (ms)", "no POP3 endpoint given")
        return
    host, port = split_hostport(t.pop3)
    listed: list[int] = []

    def login() -> poplib.POP3:
        p = poplib.POP3(host, port, timeout=120)
        p.user(t.user)
        p.pass_(t.password)
        return p

    def uidl() -> None:
        p = login()
        listed.append(len(p.uidl()[1]))
        p.quit()
    res.add("POP3 connect+login+UIDL (ms)", 1000 * best_of(reps, uidl), "{:.1f}",
            f"{listed[0]} msgs")
    res.check(listed[0] >= len(messages), f"POP3 UIDL lists {listed[0]} messages")

    seqs = spread(len(messages), k)
    got: dict[int, bytes] = {}
    p = login()

    def retr() -> None:
        for s in seqs:
            got[s] = b"\r\n".join(p.retr(s)[1]) + b"\r\n"
    secs = best_of(reps, retr)
    p.quit()
    res.add(f"POP3 RETR x{len(seqs)} (ms)", 1000 * secs, "{:.0f}")
    bad = [s for s in seqs if not got[s].endswith(messages[s - 1])]
    res.check(not bad, f"{len(seqs) - len(bad)}/{len(seqs)} POP3 RETR bodies end with the "
                       f"delivered bytes" + (f" (first bad {bad[0]})" if bad else ""))
