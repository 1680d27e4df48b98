"""IMAP IDLE fan-out: N sessions of one account IDLE on its INBOX; one LMTP delivery; how long
until every session has been told ``* n EXISTS``, and what each session costs the server.

    python bench/fanout.py                         # Haven on SQLite, 10,000 sessions, 5 rounds
    python bench/fanout.py --mariadb               # Haven on MariaDB (127.0.0.1:3306, root)
    python bench/fanout.py --sessions 2000 --rounds 3 --clients 2
    python bench/fanout.py --server dovecot --sessions 2000   # the same load on a throwaway Dovecot
    python bench/fanout.py --py-spy /tmp/fan.svg   # plus a py-spy profile of the server's rounds
    python bench/fanout.py --command "python -m gateways.cli" --cwd /tmp/old   # another checkout

Starts a throwaway Haven (``haven.py``: IMAP 25143, LMTP 26424, ``/var/tmp/haven-bench/
haven-fanout``; ``[imap] max_connections = 0`` so that the N sessions are admitted) or Dovecot
(``dovecot.py`` on 15143/16424, with its process, per-user connection and inotify limits raised
for N; one ``imap`` process per connection), one account.  Then:

1. one warm-up session logs in (Haven's argon2 check; later logins of the same password hit
   ``[auth] cache_ttl``'s cache), selects INBOX and logs out; the server's memory is read;
2. ``--clients`` client processes (default 2) open the N sessions between them: LOGIN,
   SELECT INBOX, IDLE, at most ``--inflight`` setups at a time per process (the listener's
   backlog is 50); the memory is read again: (after - before) / N is the per-session cost
   (RSS, and PSS, which counts a page shared by Dovecot's processes once);
3. ``--rounds`` times: the clients arm (forget what they saw), the parent delivers one small
   message over LMTP, each client reads its sockets with one ``selectors`` loop until each has
   shown `` EXISTS``, and reports per session when the data arrived (the kernel's receive
   timestamp, ``SO_TIMESTAMPNS``: not delayed by the client's own turn on the CPU) and when the
   client read it.  Latencies are taken from the LMTP ``250`` (its kernel receive time) and from
   the moment the parent sent DATA's final ``.``; p50 / p99 / max over all sessions, with the
   server's CPU time (``schedstat`` of all its threads and processes) and how many cores other
   processes of the machine used meanwhile.

Every process raises its RLIMIT_NOFILE soft limit to the hard one (the server inherits the
parent's).  Prints a markdown table to stdout (progress on stderr); ``--json FILE`` also writes
the raw figures.  Exits 1 when a session missed an EXISTS within ``--timeout`` seconds.
bench/README.md ("IDLE fan-out") has the figures and what they mean.
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

def tree(pid: int) -> list[int]:
    """``pid`` and its children (Dovecot: the master and every process of the instance)."""
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True).stdout
    return [pid] + [int(p) for p in out.split()]


def memory_kib(pid: int) -> tuple[int, int]:
    """(RSS, PSS) in KiB summed over ``pid`` and its children: PSS counts a page shared by n
    processes as 1/n in each, so Dovecot's many processes are not counted n times over."""
    rss = pss = 0
    for p in tree(pid):
        try:
            for line in Path(f"/proc/{p}/smaps_rollup").read_text().splitlines():
                if line.startswith("Rss:"):
                    rss += int(line.split()[1])
                elif line.startswith("Pss:"):
                    pss += int(line.split()[1])
        except OSError:
            pass
    return rss, pss


def cpu_seconds(pid: int) -> float:
    """CPU seconds of every thread of ``pid`` (schedstat: nanoseconds, where /proc/PID/stat counts
    10 ms ticks, and a Dovecot process spends a millisecond or two on a wake-up)."""
    total = 0
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            try:
                total += int((task / "schedstat").read_text().split()[0])
            except (OSError, ValueError):
                pass
    except OSError:
        pass
    return total / 1e9


INOTIFY_INSTANCES = Path("/proc/sys/fs/inotify/max_user_instances")


def raise_inotify(need: int):
    """Dovecot's IDLE waits on inotify, one instance per imap process; past the user's limit
    (128 by default) a process falls back to polling every 30 s.  Root: raise the limit for the
    run; returns the old value to restore (None: unchanged)."""
    try:
        old = int(INOTIFY_INSTANCES.read_text())
        if old >= need:
            return None
        INOTIFY_INSTANCES.write_text(str(need))
        log(f"fs.inotify.max_user_instances raised from {old} to {need} for the run")
        return old
    except (OSError, ValueError) as e:
        log(f"cannot raise fs.inotify.max_user_instances ({e}): sessions past it hear of mail every 30 s")
        return None


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
# bench/fanout.py: room for {n} IDLE sessions of one user from one address.  One imap process
# per connection, Dovecot's default: with several clients in one process (service_count = 0,
# client_limit > 1) Dovecot 2.3.19 told IDLE clients of a delivery only at the 30 s
# mailbox_idle_check_interval (bench/README.md).
default_client_limit = {clients}
default_vsz_limit = 1G
protocol imap {{
  mail_max_userip_connections = {clients}
}}
service imap {{
  process_limit = {clients}
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
    # the template's own "protocol imap" block sets 50; ours comes later and wins
    inst = DovecotInstance(base=DOVECOT_BASE, imap_port=DOVECOT_IMAP, pop3_port=DOVECOT_POP3,
                           lmtp_port=DOVECOT_LMTP, users={USER: PASSWORD},
                           extra_conf=DOVECOT_EXTRA.format(n=args.sessions, clients=args.sessions + 100))
    was = raise_inotify(args.sessions + 1000)
    try:
        inst.start()
    except BaseException:
        if was is not None:
            INOTIFY_INSTANCES.write_text(str(was))
        raise
    inst.inotify_was = was
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
        mem0 = memory_kib(pid)
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
        mem1 = memory_kib(pid)
        log(f"{args.sessions} sessions in IDLE after {setup:.1f} s; server RSS {mem0[0] / 1024:.0f} -> "
            f"{mem1[0] / 1024:.0f} MiB ({(mem1[0] - mem0[0]) / args.sessions:.1f} KiB a session), "
            f"PSS {(mem1[1] - mem0[1]) / args.sessions:.1f} KiB a session")
        result.update(setup_seconds=setup, memory_before_kib=mem0, memory_idle_kib=mem1)
        spy = None
        if args.pyspy:
            fmt = "flamegraph" if args.pyspy.suffix == ".svg" else "raw"  # raw: collapsed stacks
            spy = subprocess.Popen(["py-spy", "record", "-p", str(pid), "-o", str(args.pyspy), "-r", "200",
                                    "-f", fmt, "--threads", "--nonblocking"],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(1.0)
        lmtp = Lmtp(lmtp_address)
        server_pids = tree(pid) if args.server == "dovecot" else [pid]
        other = OtherLoad(server_pids + [p.pid for p in children])
        for r in range(args.rounds):
            for pipe in pipes:
                pipe.send("arm")
            for pipe in pipes:
                assert pipe.recv() == "armed"
            msg = (f"From: <sender@example.org>\r\nTo: <{USER}>\r\nSubject: fan-out {r}\r\n"
                   f"Message-ID: <fanout-{r}-{time.time_ns()}@example.org>\r\n\r\nwake up\r\n").encode()
            load0 = other.sample()
            cpu0 = sum(cpu_seconds(p) for p in server_pids)
            dot, ok = lmtp.deliver(USER, msg)
            arrived, read = [], []
            for pipe in pipes:
                a, b = pipe.recv()
                arrived += a
                read += b
            cpu = sum(cpu_seconds(p) for p in server_pids) - cpu0
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
        result["memory_after_kib"] = memory_kib(pid)
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
        if getattr(inst, "inotify_was", None) is not None:
            INOTIFY_INSTANCES.write_text(str(inst.inotify_was))
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
    if "memory_idle_kib" in result:
        (rss0, pss0), (rss1, pss1) = result["memory_before_kib"], result["memory_idle_kib"]
        rss2, pss2 = result.get("memory_after_kib", result["memory_idle_kib"])
        print(f"setup {result['setup_seconds']:.1f} s; server RSS {rss0 / 1024:.0f} MiB before, "
              f"{rss1 / 1024:.0f} MiB with the sessions: {(rss1 - rss0) / n:.1f} KiB a session "
              f"({(rss2 - rss0) / n:.1f} KiB after the deliveries); PSS {(pss1 - pss0) / n:.1f} KiB a "
              f"session ({(pss2 - pss0) / n:.1f} after)\n")
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
