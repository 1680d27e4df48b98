"""IMAP IDLE fan-out: N sessions of one account IDLE on its INBOX; one LMTP delivery; how long
until every session has been told ``* n EXISTS``, and what each session costs the server.

    python bench/fanout.py                         # Haven on SQLite, 10,000 sessions, 5 rounds
    python bench/fanout.py --mariadb               # Haven on MariaDB (127.0.0.1:3306, root)
    python bench/fanout.py --sessions 2000 --rounds 3 --clients 2
    python bench/fanout.py --server dovecot        # the same load on the throwaway Dovecot
    python bench/fanout.py --py-spy /tmp/fan.svg   # plus a py-spy flame graph of the server

Starts a throwaway Haven (``haven.py``: IMAP 25143, LMTP 26424, ``/var/tmp/haven-bench/
haven-fanout``; ``[imap] max_connections = 0`` so that the N sessions are admitted) or Dovecot
(``dovecot.py`` with its process and per-user connection limits raised), one account.  Then:

1. one warm-up session logs in (Haven's argon2 check; later logins of the same password hit
   ``[auth] cache_ttl``'s cache), selects INBOX and logs out; the server's RSS is read;
2. ``--clients`` client processes (default 2) open the N sessions between them: LOGIN,
   SELECT INBOX, IDLE, at most ``--inflight`` setups at a time per process (the listener's
   backlog is 50); the server's RSS is read again: (after - before) / N is the per-session cost;
3. ``--rounds`` times: the clients arm (forget what they saw), the parent delivers one small
   message over LMTP, each client reads its sockets with one ``selectors`` loop until each has
   shown `` EXISTS``, and reports per session when the data arrived (the kernel's receive
   timestamp, ``SO_TIMESTAMPNS``: not delayed by the client's own turn on the CPU) and when the
   client read it.  Latencies are taken from the LMTP ``250`` (its kernel receive time) and from
   the moment the parent sent DATA's final ``.``; p50 / p99 / max over all sessions.

Every process raises its RLIMIT_NOFILE soft limit to the hard one (the server inherits the
parent's).  Client and server share the machine's cores; the kernel timestamps keep the
client's reading time out of the "arrived" figures, the "read" ones include it.

Prints a markdown table to stdout (progress on stderr); ``--json FILE`` also writes the raw
figures.  Exits 1 when a session missed an EXISTS within ``--timeout`` seconds.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import resource
import selectors
import signal
import socket
import statistics
import struct
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

USER, PASSWORD = "fanout@example.test", "benchpass"
HAVEN_BASE = Path("/var/tmp/haven-bench/haven-fanout")
DOVECOT_BASE = Path("/var/tmp/haven-bench/dovecot-fanout")
IMAP_PORT, LMTP_PORT = 25143, 26424
DOVECOT_IMAP, DOVECOT_LMTP, DOVECOT_POP3 = 15143, 16424, 15110
MARIADB_URL = "mysql://root@127.0.0.1:3306/haven_fanout_bench"

SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)
SCM_TIMESTAMPNS = SO_TIMESTAMPNS
CMSG_SPACE = socket.CMSG_SPACE(16)


def log(msg: str) -> None:
    print(f"[fanout] {msg}", file=sys.stderr, flush=True)


def raise_nofile() -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def recv_stamped(sock: socket.socket) -> tuple[bytes, int]:
    """(data, kernel receive time in ns of CLOCK_REALTIME; 0 when the kernel gave none)."""
    data, anc, _flags, _addr = sock.recvmsg(65536, CMSG_SPACE)
    stamp = 0
    for level, kind, payload in anc:
        if level == socket.SOL_SOCKET and kind == SCM_TIMESTAMPNS and len(payload) >= 16:
            sec, nsec = struct.unpack("qq", payload[:16])
            stamp = sec * 1_000_000_000 + nsec
    return data, stamp


# -- the client processes ------------------------------------------------------------------

class Session:
    __slots__ = ("sock", "buf", "step", "seen", "arrived", "read")

    def __init__(self, sock: socket.socket):
        self.sock, self.buf, self.step = sock, b"\r\n", 0
        self.seen, self.arrived, self.read = False, 0, 0


def client_main(conn, index: int, count: int, address: tuple, inflight: int, timeout: float) -> None:
    """One client process: ``count`` sessions in IDLE; then rounds on the parent's word."""
    raise_nofile()
    script = [(None, b"\r\n* OK"),
              (f'a LOGIN "{USER}" "{PASSWORD}"\r\n'.encode(), b"\r\na OK"),
              (b"b SELECT INBOX\r\n", b"\r\nb OK"),
              (b"c IDLE\r\n", b"\r\n+ ")]
    sel = selectors.DefaultSelector()
    sessions: list[Session] = []
    started = done = 0
    t0 = time.monotonic()
    deadline = t0 + max(120.0, count * 0.05)
    try:
        while done < count:
            while started < count and started - done < inflight:
                s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                s.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                s.setblocking(False)
                s.connect_ex(address)
                sess = Session(s)
                sessions.append(sess)
                sel.register(s, selectors.EVENT_READ, sess)
                started += 1
            if time.monotonic() > deadline:
                raise RuntimeError(f"setup: only {done} of {count} sessions in IDLE after "
                                   f"{time.monotonic() - t0:.0f} s")
            for key, _ in sel.select(1.0):
                sess = key.data
                data = sess.sock.recv(65536)
                if not data:
                    raise RuntimeError(f"setup: the server closed a session: {sess.buf[-300:]!r}")
                sess.buf += data
                while sess.step < len(script) and script[sess.step][1] in sess.buf:
                    sess.step += 1
                    if sess.step < len(script):
                        sess.buf = b"\r\n"
                        sess.sock.send(script[sess.step][0])
                    else:
                        sess.buf = b""
                        done += 1
                        sel.unregister(sess.sock)
                for bad in (b"\r\na NO", b"\r\na BAD", b"\r\nb NO", b"\r\nb BAD", b"\r\nc BAD", b"* BYE"):
                    if bad in sess.buf:
                        raise RuntimeError(f"setup refused: {sess.buf[-300:]!r}")
        conn.send(("ready", index, time.monotonic() - t0))
    except Exception as e:  # noqa: BLE001 - the parent reports it
        conn.send(("error", index, f"{type(e).__name__}: {e}"))
        return
    for sess in sessions:
        sel.register(sess.sock, selectors.EVENT_READ, sess)
    while True:
        word = conn.recv()
        if word == "quit":
            break
        for sess in sessions:
            sess.seen, sess.buf = False, b""
        conn.send("armed")
        left = len(sessions)
        end = time.monotonic() + timeout
        while left and time.monotonic() < end:
            for key, _ in sel.select(0.5):
                sess = key.data
                try:
                    data, stamp = recv_stamped(sess.sock)
                except OSError:
                    data, stamp = b"", 0
                if not data:
                    sel.unregister(sess.sock)
                    continue
                if sess.seen:
                    continue
                sess.buf = sess.buf[-16:] + data
                if b" EXISTS\r\n" in sess.buf:
                    sess.seen = True
                    sess.arrived, sess.read = stamp or time.time_ns(), time.time_ns()
                    left -= 1
        conn.send(([s.arrived if s.seen else 0 for s in sessions], [s.read if s.seen else 0 for s in sessions]))
    for sess in sessions:
        try:
            sess.sock.close()
        except OSError:
            pass


# -- the parent ------------------------------------------------------------------------------

def rss_kib(pid: int) -> int:
    """VmRSS of ``pid`` and its children (Dovecot: every process of the instance), KiB."""
    total = 0
    pids = [pid]
    try:
        out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True).stdout
        pids += [int(p) for p in out.split()]
    except OSError:
        pass
    for p in pids:
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total


def cpu_seconds(pid: int, children: bool = False) -> float:
    """User + system CPU seconds of ``pid`` (with ``children``: plus its waited-for children's)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = int(fields[11]) + int(fields[12]) + (int(fields[13]) + int(fields[14]) if children else 0)
    return ticks / os.sysconf("SC_CLK_TCK")


def machine_busy() -> float:
    """CPU seconds all processes of the machine have used since boot (/proc/stat)."""
    f = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in f[:8])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


class OtherLoad:
    """How many cores processes other than the bench and the server used over an interval."""

    def __init__(self, pids: list[int]):
        self.pids = pids

    def sample(self) -> tuple[float, float, float]:
        own = sum(cpu_seconds(p) for p in self.pids) + sum(os.times()[:2])
        return time.monotonic(), machine_busy(), own

    @staticmethod
    def cores(before: tuple, after: tuple) -> float:
        wall = after[0] - before[0]
        return max(0.0, (after[1] - before[1]) - (after[2] - before[2])) / wall if wall > 0 else 0.0


class Lmtp:
    """One LMTP connection; ``deliver`` returns (ns before the final dot, ns the 250 arrived)."""

    def __init__(self, address: tuple):
        self.sock = socket.create_connection(address, timeout=60)
        self.sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""
        self.reply(b"220")
        self.sock.sendall(b"LHLO bench.example.test\r\n")
        self.reply(b"250")

    def reply(self, code: bytes) -> int:
        while True:
            while b"\r\n" not in self.buf:
                data, stamp = recv_stamped(self.sock)
                if not data:
                    raise RuntimeError("LMTP connection closed")
                self.buf += data
                self.stamp = stamp or time.time_ns()
            line, self.buf = self.buf.split(b"\r\n", 1)
            if line[3:4] != b"-":
                break
        if not line.startswith(code):
            raise RuntimeError(f"LMTP: {line.decode(errors='replace')}")
        return self.stamp

    def deliver(self, rcpt: str, message: bytes) -> tuple[int, int]:
        self.sock.sendall(f"MAIL FROM:<sender@example.org>\r\nRCPT TO:<{rcpt}>\r\nDATA\r\n".encode())
        self.reply(b"250")
        self.reply(b"250")
        self.reply(b"354")
        self.sock.sendall(message)
        dot = time.time_ns()
        self.sock.sendall(b".\r\n")
        return dot, self.reply(b"250")


def warm_up(address: tuple) -> None:
    s = socket.create_connection(address, timeout=60)
    f = s.makefile("rb")
    f.readline()
    for tag, cmd in (("a", f'LOGIN "{USER}" "{PASSWORD}"'), ("b", "SELECT INBOX"), ("z", "LOGOUT")):
        s.sendall(f"{tag} {cmd}\r\n".encode())
        while True:
            line = f.readline()
            if not line:
                raise RuntimeError("warm-up: connection closed")
            if line.startswith(f"{tag} ".encode()):
                if not line.startswith(f"{tag} OK".encode()):
                    raise RuntimeError(f"warm-up: {line!r}")
                break
    s.close()


def quantiles(values: list[float]) -> tuple[float, float, float]:
    values = sorted(values)
    p99 = values[min(len(values) - 1, int(round(0.99 * (len(values) - 1))))]
    return statistics.median(values), p99, values[-1]


def start_haven(args):
    from haven import HavenInstance
    overrides = {"imap.max_connections": "0", "imap.max_connections_per_ip": "0",
                 "lmtp.max_connections": "0"}
    if args.mariadb:
        url = args.mariadb
        name = url.rsplit("/", 1)[1]
        admin = ["mariadb", "-h127.0.0.1", "-uroot", "-e",
                 f"DROP DATABASE IF EXISTS {name}; CREATE DATABASE {name} CHARACTER SET utf8mb4 COLLATE utf8mb4_bin"]
        subprocess.run(admin, check=True)
        overrides["store.url"] = url
    inst = HavenInstance(base=HAVEN_BASE, imap_port=IMAP_PORT, lmtp_port=LMTP_PORT, pop3_port=None,
                         users={USER: PASSWORD}, overrides=overrides,
                         command=args.command.split() if args.command else None)
    inst.start()
    return inst, inst.proc.pid, "Haven (%s)" % ("MariaDB" if args.mariadb else "SQLite")


DOVECOT_EXTRA = """
# bench/fanout.py: room for {n} IDLE sessions of one user from one address
default_client_limit = {clients}
default_vsz_limit = 1G
protocol imap {{
  mail_max_userip_connections = {clients}
}}
service imap {{
  client_limit = {per_process}
  process_limit = {processes}
}}
service imap-login {{
  service_count = 0
  client_limit = {clients}
  process_limit = 4
  process_min_avail = 2
}}
"""


def start_dovecot(args):
    from dovecot import DovecotInstance
    inst = DovecotInstance(base=DOVECOT_BASE, imap_port=DOVECOT_IMAP, pop3_port=DOVECOT_POP3,
                           lmtp_port=DOVECOT_LMTP, users={USER: PASSWORD})
    write = inst._write_files

    def write_files():
        write()
        per = 1000
        extra = DOVECOT_EXTRA.format(n=args.sessions, clients=args.sessions + 100, per_process=per,
                                     processes=args.sessions // per + 5)
        # the template's own "protocol imap" block sets 50; ours comes later and wins
        inst.conf_path.write_text(inst.conf_path.read_text() + extra)
    inst._write_files = write_files
    inst.start()
    master = inst.proc.pid
    return inst, master, "Dovecot " + subprocess.run(["dovecot", "--version"], capture_output=True,
                                                      text=True).stdout.split()[0]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sessions", type=int, default=10000)
    ap.add_argument("--clients", type=int, default=2, help="client processes")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--inflight", type=int, default=24, help="session setups at a time per client")
    ap.add_argument("--timeout", type=float, default=60.0, help="seconds a round may take")
    ap.add_argument("--server", choices=["haven", "dovecot"], default="haven")
    ap.add_argument("--mariadb", nargs="?", const=MARIADB_URL, default=None,
                    help=f"Haven on MariaDB (default {MARIADB_URL})")
    ap.add_argument("--py-spy", dest="pyspy", type=Path, help="record the server's rounds with py-spy to FILE")
    ap.add_argument("--command", help="the argv prefix that runs Haven's CLI (another checkout: "
                    "\"/path/.venv/bin/python -m gateways.cli\", with --cwd)")
    ap.add_argument("--cwd", help="the checkout to run Haven from (with --command)")
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    if args.cwd:
        import haven
        haven.REPO = Path(args.cwd).resolve()
    nofile = raise_nofile()
    if nofile < args.sessions + 200:
        log(f"RLIMIT_NOFILE is {nofile}: the server may not take {args.sessions} sessions")

    from dovecot import sigterm_as_interrupt
    sigterm_as_interrupt()
    inst, pid, label = (start_dovecot if args.server == "dovecot" else start_haven)(args)
    ep = inst.endpoints()
    imap = (inst.host, int(ep["imap"].rsplit(":", 1)[1]))
    lmtp_address = (inst.host, int(ep["lmtp"].rsplit(":", 1)[1]))
    children, pipes = [], []
    failed = False
    result: dict = {"server": label, "sessions": args.sessions, "rounds": []}
    try:
        log(f"{label} up: {ep}")
        warm_up(imap)
        time.sleep(1.0)
        rss0 = rss_kib(pid)
        ctx = mp.get_context("fork")
        per = [args.sessions // args.clients + (1 if i < args.sessions % args.clients else 0)
               for i in range(args.clients)]
        t0 = time.monotonic()
        for i, n in enumerate(per):
            parent_end, child_end = ctx.Pipe()
            p = ctx.Process(target=client_main, args=(child_end, i, n, imap, args.inflight, args.timeout),
                            daemon=True)
            p.start()
            children.append(p)
            pipes.append(parent_end)
        for pipe in pipes:
            msg = pipe.recv()
            if msg[0] != "ready":
                raise RuntimeError(f"client {msg[1]}: {msg[2]}")
        setup = time.monotonic() - t0
        time.sleep(2.0)  # let the server settle (logins' allocations, the claims)
        rss1 = rss_kib(pid)
        log(f"{args.sessions} sessions in IDLE after {setup:.1f} s; server RSS {rss0 / 1024:.0f} -> "
            f"{rss1 / 1024:.0f} MiB ({(rss1 - rss0) / args.sessions:.1f} KiB a session)")
        result.update(setup_seconds=setup, rss_before_kib=rss0, rss_idle_kib=rss1)
        spy = None
        if args.pyspy:
            fmt = "flamegraph" if args.pyspy.suffix == ".svg" else "raw"  # raw: collapsed stacks
            spy = subprocess.Popen(["py-spy", "record", "-p", str(pid), "-o", str(args.pyspy), "-r", "200",
                                    "-f", fmt, "--threads", "--nonblocking"],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(1.0)
        lmtp = Lmtp(lmtp_address)
        server_pids = [pid] + ([int(p) for p in subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)],
                                                              capture_output=True, text=True).stdout.split()]
                               if args.server == "dovecot" else [])
        other = OtherLoad(server_pids + [p.pid for p in children])
        for r in range(args.rounds):
            for pipe in pipes:
                pipe.send("arm")
            for pipe in pipes:
                assert pipe.recv() == "armed"
            msg = (f"From: <sender@example.org>\r\nTo: <{USER}>\r\nSubject: fan-out {r}\r\n"
                   f"Message-ID: <fanout-{r}-{time.time_ns()}@example.org>\r\n\r\nwake up\r\n").encode()
            load0 = other.sample()
            cpu0 = cpu_seconds(pid)
            dot, ok = lmtp.deliver(USER, msg)
            arrived, read = [], []
            for pipe in pipes:
                a, b = pipe.recv()
                arrived += a
                read += b
            cpu = cpu_seconds(pid) - cpu0
            busy = OtherLoad.cores(load0, other.sample())
            missing = sum(1 for a in arrived if a == 0)
            got = [a for a in arrived if a]
            got_read = [b for b in read if b]
            if missing:
                failed = True
                log(f"round {r + 1}: {missing} sessions saw no EXISTS within {args.timeout} s")
            if not got:
                continue
            from_250 = quantiles([(a - ok) / 1e6 for a in got])
            from_dot = quantiles([(a - dot) / 1e6 for a in got])
            read_250 = quantiles([(b - ok) / 1e6 for b in got_read])
            row = {"round": r + 1, "missing": missing, "dot_to_250_ms": (ok - dot) / 1e6,
                   "arrived_from_250_ms": from_250, "arrived_from_dot_ms": from_dot,
                   "read_from_250_ms": read_250, "server_cpu_s": cpu, "other_cores": busy}
            result["rounds"].append(row)
            log(f"round {r + 1}: 250 after {(ok - dot) / 1e6:.1f} ms; EXISTS arrived p50/p99/max "
                f"{from_250[0]:.0f}/{from_250[1]:.0f}/{from_250[2]:.0f} ms after the 250 "
                f"(read by the clients: max {read_250[2]:.0f} ms); server CPU {cpu:.2f} s; "
                f"other processes {busy:.2f} cores")
            time.sleep(1.0)
        if spy is not None:
            spy.send_signal(signal.SIGINT)  # py-spy writes its file on SIGINT
            spy.wait(60)
        rss2 = rss_kib(pid)
        result["rss_after_kib"] = rss2
        for pipe in pipes:
            pipe.send("quit")
    except KeyboardInterrupt:
        raise
    except Exception as e:  # noqa: BLE001
        log(f"FAILED: {type(e).__name__}: {e}")
        failed = True
    finally:
        for p in children:
            p.join(10)
            if p.is_alive():
                p.kill()
        inst.stop()
        if not args.keep:
            inst.cleanup()
        if args.mariadb and not args.keep:
            name = args.mariadb.rsplit("/", 1)[1]
            subprocess.run(["mariadb", "-h127.0.0.1", "-uroot", "-e", f"DROP DATABASE IF EXISTS {name}"])
    print_table(result)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 1 if failed or not result["rounds"] else 0


def print_table(result: dict) -> None:
    rounds = result["rounds"]
    n = result["sessions"]
    print(f"{result['server']}, {n} IDLE sessions of one account on INBOX, {len(rounds)} deliveries")
    if "rss_idle_kib" in result:
        per = (result["rss_idle_kib"] - result["rss_before_kib"]) / n
        after = (result.get("rss_after_kib", result["rss_idle_kib"]) - result["rss_before_kib"]) / n
        print(f"setup {result['setup_seconds']:.1f} s; server RSS {result['rss_before_kib'] / 1024:.0f} MiB before, "
              f"{result['rss_idle_kib'] / 1024:.0f} MiB with the sessions: {per:.1f} KiB a session "
              f"({after:.1f} KiB after the deliveries)\n")
    if not rounds:
        print("no round completed")
        return
    print("| round | LMTP . to 250 (ms) | EXISTS after the 250: p50 / p99 / max (ms) | "
          "after the final . : max (ms) | read by the clients: max (ms) | server CPU (s) | "
          "other processes (cores) | missed |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for row in rounds:
        a, d, rd = row["arrived_from_250_ms"], row["arrived_from_dot_ms"], row["read_from_250_ms"]
        print(f"| {row['round']} | {row['dot_to_250_ms']:.1f} | {a[0]:.0f} / {a[1]:.0f} / {a[2]:.0f} | "
              f"{d[2]:.0f} | {rd[2]:.0f} | {row['server_cpu_s']:.2f} | {row['other_cores']:.2f} | "
              f"{row['missing']} |")


if __name__ == "__main__":
    sys.exit(main())
