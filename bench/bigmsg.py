"""Memory of one Haven process under big messages (Haven alone, not a timed benchmark).

    .venv/bin/python bench/bigmsg.py                     # all four scenarios
    .venv/bin/python bench/bigmsg.py --only append,retr  # a subset: append, retr, fetch, lmtp
    .venv/bin/python bench/bigmsg.py --appends 20 --append-mb 45 --retrs 4 --retr-mb 50 --lmtp 4

Each scenario starts a fresh throwaway Haven (``haven.py``'s instance, SQLite, IMAP 31143,
LMTP 32424, POP3 31110, ``/var/tmp/haven-bench/haven-bigmsg``) and connects its clients (and
logs them in: each login is an argon2 hash of 19 MiB, which is not what is measured here).
Once the server is idle it resets the server's peak (``echo 5 > /proc/PID/clear_refs``), reads
its ``VmRSS`` from ``/proc/PID/status`` (the baseline), lets every client go at once, then reads
``VmHWM`` (the peak resident set since the reset) and reports the growth ``VmHWM - baseline``.
Run it as root or as the server's user (clear_refs):

- **append**: ``--appends`` concurrent authenticated IMAP APPENDs (stdlib imaplib, one thread
  and one connection each) of distinct ``--append-mb`` MB messages; target under 100 MB.
- **retr**: one ``--retr-mb`` MB message APPENDed, the server restarted (so the APPEND's own
  peak is not counted), then ``--retrs`` concurrent POP3 RETRs of it (stdlib poplib, one
  connection each); every RETR must return the APPENDed bytes.  Target under 50 MB.
- **fetch**: the same as retr over IMAP: ``--retrs`` concurrent ``FETCH 1 (BODY.PEEK[])``
  (stdlib imaplib).
- **lmtp**: ``--lmtp`` concurrent LMTP deliveries (stdlib smtplib.LMTP) of distinct
  ``--append-mb`` MB messages.

The messages are CRLF text with a base64 "attachment", lines starting with "." (dot-stuffing
on the wire) and a unique Message-ID each, so no two share a blob.  The instance's directory is
removed afterwards unless ``--keep``.  ``--command`` runs another checkout's Haven (e.g.
``--command "python -m gateways.cli" --cwd /tmp/haven-old``) to measure before a change.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import imaplib
import poplib
import random
import shlex
import smtplib
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import haven  # noqa: E402
from dovecot import wait_for_port  # noqa: E402
from haven import HavenInstance  # noqa: E402

USER, PASSWORD = "bench@example.test", "benchpass"
BASE = Path("/var/tmp/haven-bench/haven-bigmsg")
MB = 1000 * 1000


def log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def big_message(size: int, n: int, seed: int = 7) -> bytes:
    """A ``size``-octet RFC 5322 message (CRLF), distinct per ``n``."""
    rng = random.Random(seed + n)
    head = (f"From: Sender <sender@example.test>\r\nTo: {USER}\r\nSubject: big message {n}\r\n"
            f"Message-ID: <big-{n}-{seed}@example.test>\r\nMIME-Version: 1.0\r\n"
            "Content-Type: multipart/mixed; boundary=\"b0undary\"\r\n\r\n"
            "--b0undary\r\nContent-Type: text/plain\r\n\r\n").encode()
    words = [b"alpha", b"beta", b"gamma", b"delta", b".dot", b"..two", b"epsilon"]
    text = []
    for i in range(2000):
        line = b" ".join(rng.choice(words) for _ in range(12))
        text.append((b"." if i % 7 == 0 else b"") + line + b"\r\n")
    text = b"".join(text)
    attach_head = b"--b0undary\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n"
    tail = b"\r\n--b0undary--\r\n"
    room = size - len(head) - len(text) - len(attach_head) - len(tail)
    raw_len = room * 57 // 78 + 1
    blob = base64.encodebytes(rng.randbytes(raw_len)).replace(b"\n", b"\r\n")[:room]
    blob = blob[:len(blob) - (len(blob) % 78)] if len(blob) > 78 else blob
    body = head + text + attach_head + blob
    pad = size - len(body) - len(tail)
    if pad > 0:
        body += b"." * (pad - 2) + b"\r\n" if pad >= 2 else b"\r\n"[:pad]
    return body + tail


def status(pid: int) -> dict:
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(value.split()[0]) * 1024
    return out


def settle(pid: int, seconds: float = 1.0) -> int:
    time.sleep(seconds)
    return status(pid)["VmRSS"]


def run_clients(pid: int, count: int, connect, work) -> tuple:
    """``count`` threads each ``connect(i)`` (and log in), then wait; once all are connected
    and the server has settled, its peak (VmHWM) is reset and the baseline read; then every
    thread runs ``work(client, i)`` at once.  Returns (baseline RSS, seconds of the work)."""
    ready, go = threading.Barrier(count + 1, timeout=600), threading.Barrier(count + 1, timeout=600)
    errors: list = []

    def one(i):
        try:
            client = connect(i)
        except Exception as e:
            errors.append(f"#{i} connect: {type(e).__name__}: {e}")
            ready.abort()
            return
        try:
            ready.wait()
            go.wait()
            work(client, i)
        except Exception as e:  # reported, the run fails
            errors.append(f"#{i}: {type(e).__name__}: {e}")

    threads = [threading.Thread(target=one, args=(i,)) for i in range(count)]
    for t in threads:
        t.start()
    try:
        ready.wait()
    except threading.BrokenBarrierError:
        go.abort()
    else:
        base = settle(pid)
        Path(f"/proc/{pid}/clear_refs").write_text("5")  # VmHWM := VmRSS (Linux >= 4.0)
        t0 = time.monotonic()
        go.wait()
    for t in threads:
        t.join()
    if errors:
        raise RuntimeError("; ".join(errors[:5]))
    return base, time.monotonic() - t0


def imap_login(inst: HavenInstance) -> imaplib.IMAP4:
    c = imaplib.IMAP4(inst.host, inst.imap_port)
    c.login(USER, PASSWORD)
    return c


def imap_append(c: imaplib.IMAP4, raw: bytes) -> None:
    try:
        typ, data = c.append("INBOX", None, None, raw)
        if typ != "OK":
            raise RuntimeError(f"APPEND: {typ} {data}")
    finally:
        c.logout()


@contextlib.contextmanager
def instance(args):
    """A fresh instance for one scenario, stopped (and removed unless --keep) afterwards."""
    inst = start(args)
    try:
        yield inst
    finally:
        inst.stop()
        if not args.keep:
            inst.cleanup()


def start(args) -> HavenInstance:
    inst = HavenInstance(base=BASE, imap_port=31143, lmtp_port=32424, pop3_port=31110,
                         users={USER: PASSWORD, "bench2@example.test": PASSWORD})
    if args.command:
        inst.command = shlex.split(args.command)
    inst.start()
    return inst


def measure(inst: HavenInstance, label: str, count: int, connect, work) -> dict:
    """:func:`run_clients` on the instance, then its peak: the growth is what the work cost,
    logins (19 MiB of argon2 each, at once) excluded."""
    pid = inst.proc.pid
    base, seconds = run_clients(pid, count, connect, work)
    st = status(pid)
    res = {"scenario": label, "baseline": base, "hwm": st["VmHWM"], "growth": st["VmHWM"] - base,
           "seconds": seconds}
    log(f"{label}: baseline {base / MB:.0f} MB, peak {st['VmHWM'] / MB:.0f} MB, "
        f"growth {res['growth'] / MB:.0f} MB, {seconds:.1f} s")
    return res


def scenario_append(args) -> dict:
    size = int(args.append_mb * MB)
    messages = [big_message(size, i) for i in range(args.appends)]
    with instance(args) as inst:
        return measure(inst, f"{args.appends} concurrent IMAP APPENDs of {args.append_mb:g} MB", args.appends,
                       lambda i: imap_login(inst), lambda c, i: imap_append(c, messages[i]))


def scenario_retr(args) -> dict:
    return _read_back(args, "retr")


def scenario_fetch(args) -> dict:
    return _read_back(args, "fetch")


def _read_back(args, how: str) -> dict:
    """One big message APPENDed, the server restarted (the APPEND's own peak is not counted),
    then read back at once over ``--retrs`` POP3 or IMAP connections."""
    raw = big_message(int(args.retr_mb * MB), 1000)
    with instance(args) as inst:
        imap_append(imap_login(inst), raw)
        inst.stop()
        restart(inst)

        def pop3(_i):
            c = poplib.POP3(inst.host, inst.pop3_port, timeout=300)
            c.user(USER)
            c.pass_(PASSWORD)
            return c

        def retr(c, _i):
            try:
                _resp, lines, _octets = c.retr(1)
                c.quit()
            finally:
                c.close()
            if b"\r\n".join(lines) + b"\r\n" != raw:
                raise RuntimeError("RETR did not return the APPENDed bytes")

        def imap(_i):
            c = imap_login(inst)
            c.select("INBOX", readonly=True)
            return c

        def fetch(c, _i):
            try:
                typ, data = c.fetch("1", "(BODY.PEEK[])")
            finally:
                c.logout()
            if typ != "OK" or data[0][1] != raw:
                raise RuntimeError("FETCH did not return the APPENDed bytes")
        if how == "retr":
            return measure(inst, f"{args.retrs} concurrent POP3 RETRs of {args.retr_mb:g} MB", args.retrs,
                           pop3, retr)
        return measure(inst, f"{args.retrs} concurrent IMAP FETCH BODY[] of {args.retr_mb:g} MB", args.retrs,
                       imap, fetch)


def restart(inst: HavenInstance) -> None:
    """Start the stopped instance again on its data (HavenInstance.start recreates the dir)."""
    log_file = open(inst.log_path, "ab")
    inst.proc = subprocess.Popen([*inst.command, "--config", str(inst.conf_path), "serve"],
                                 cwd=haven.REPO, env=inst._env(), stdin=subprocess.DEVNULL,
                                 stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True)
    (inst.base / "haven.pid").write_text(str(inst.proc.pid))
    for port in (inst.imap_port, inst.lmtp_port, inst.pop3_port):
        deadline = time.monotonic() + 30
        while not wait_for_port(inst.host, port, 0.5):
            if time.monotonic() > deadline:
                raise RuntimeError("haven did not come back")


def scenario_lmtp(args) -> dict:
    size = int(args.append_mb * MB)
    messages = [big_message(size, 2000 + i) for i in range(args.lmtp)]

    def deliver(c, i):
        with c:
            refused = c.sendmail("sender@example.test", [USER], messages[i])
            if refused:
                raise RuntimeError(f"LMTP refused: {refused}")
    with instance(args) as inst:
        return measure(inst, f"{args.lmtp} concurrent LMTP deliveries of {args.append_mb:g} MB", args.lmtp,
                       lambda i: smtplib.LMTP(inst.host, inst.lmtp_port, timeout=300), deliver)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--only", default="append,retr,fetch,lmtp")
    p.add_argument("--appends", type=int, default=20)
    p.add_argument("--append-mb", type=float, default=45)
    p.add_argument("--retrs", type=int, default=4)
    p.add_argument("--retr-mb", type=float, default=50)
    p.add_argument("--lmtp", type=int, default=4)
    p.add_argument("--command", help="argv running Haven's CLI (default: the `haven` of haven.py)")
    p.add_argument("--cwd", help="the checkout to run Haven from (with --command)")
    p.add_argument("--keep", action="store_true")
    args = p.parse_args()
    if args.cwd:
        haven.REPO = Path(args.cwd).resolve()
    elif not args.command:
        args.command = f"{shlex.quote(sys.executable)} -m gateways.cli"
    runs = {"append": scenario_append, "retr": scenario_retr, "fetch": scenario_fetch, "lmtp": scenario_lmtp}
    results = [runs[name.strip()](args) for name in args.only.split(",") if name.strip()]
    print("| scenario | baseline RSS (MB) | peak RSS, VmHWM (MB) | growth (MB) | time (s) |")
    print("|---|---:|---:|---:|---:|")
    for r in results:
        print(f"| {r['scenario']} | {r['baseline'] / MB:.0f} | {r['hwm'] / MB:.0f} | "
              f"**{r['growth'] / MB:.0f}** | {r['seconds']:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
