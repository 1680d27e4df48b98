#!/usr/bin/env python3
"""A throwaway three-node MariaDB Galera cluster on one machine, on loopback ports of its own.

    python3 tests/galera_cluster.py start  [--dir DIR] [--port-base N]   (or: ./dev galera start)
    python3 tests/galera_cluster.py status [--dir DIR]
    python3 tests/galera_cluster.py stop   [--dir DIR]

``start`` makes node 1's data dir with ``mariadb-install-db``, bootstraps it
(``--wsrep-new-cluster``), then starts nodes 2 and 3 with empty data dirs: they join through
``gcomm://`` and get their copy by an rsync state transfer (SST) from a node already in the
cluster.  It returns when every node reports ``wsrep_ready=ON`` and ``wsrep_cluster_size=3``,
and prints each node's client port.  Run again while the cluster is up, it only prints them.
``stop`` stops the three servers and removes DIR: the cluster holds test data only.
``status`` prints each node's state (exit 1 when a node is down).

Needs Debian's ``mariadb-server`` (mariadbd, mariadb-install-db, the mariadb client, the
wsrep_sst_rsync script), ``galera-4`` (/usr/lib/galera/libgalera_smm.so) and ``rsync``;
:func:`missing` names what is absent.  The machine's own MariaDB is never touched: each node has
its own data dir, socket, pid file and ports under DIR, and reads no /etc/mysql file
(``--defaults-file``).  Run as root, the servers run as the ``mysql`` user that mariadb-server
made, and DIR is given to it (not ``--user=root``: the rsync SST daemon, started as root, would
drop to ``nobody`` and could not write a root-owned data dir); as another user, as that user.

Ports, from ``--port-base`` B (default 26000, below the kernel's ephemeral range and above the
ranges the test workers hand out): client B+N, Galera replication (gcomm) B+10+N, incremental
state transfer (IST) B+20+N, SST (rsync daemon) B+30+N, for node N = 1, 2, 3.  Root has no
password and is reachable on 127.0.0.1 only, as on the machine's own MariaDB.

The failure detector is tuned for a test on loopback (``evs.suspect_timeout`` 2 s instead of
5 s): a killed node is evicted within about three seconds.  docs/galera.md says what of this
configuration matters for Haven in production.

Used as a module by tests/e2e/test_galera.py (:class:`Cluster`).
"""

from __future__ import annotations

import argparse
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PROVIDER = "/usr/lib/galera/libgalera_smm.so"
MARIADBD = "/usr/sbin/mariadbd"
DEFAULT_DIR = Path(os.environ.get("HAVEN_GALERA_DIR") or Path(tempfile.gettempdir()) / f"haven-galera-{os.getuid()}")
DEFAULT_PORT_BASE = 26000
NODES = (1, 2, 3)


def run_as() -> str | None:
    """The user the servers run as: ``mysql`` when started by root, else the caller (None)."""
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam("mysql")
        return "mysql"
    except KeyError:
        return "root"


def _which(name: str) -> str | None:
    return shutil.which(name, path=os.environ.get("PATH", "") + ":/usr/sbin:/usr/bin:/sbin:/bin")


def missing() -> list[str]:
    """What this machine lacks to run the cluster (Debian package names in brackets)."""
    out = []
    if not Path(PROVIDER).exists():
        out.append(f"{PROVIDER} (galera-4)")
    if not Path(MARIADBD).exists():
        out.append(f"{MARIADBD} (mariadb-server)")
    for tool, package in (("mariadb-install-db", "mariadb-server"), ("mariadb", "mariadb-client"),
                          ("wsrep_sst_rsync", "mariadb-server"), ("rsync", "rsync")):
        if _which(tool) is None:
            out.append(f"{tool} ({package})")
    if not any(_which(t) for t in ("ss", "lsof", "sockstat")):
        out.append("ss or lsof (iproute2), for the rsync SST script")
    return out


class ClusterError(RuntimeError):
    pass


class Cluster:
    """The cluster in ``root``: nodes 1-3, ports from ``port_base``."""

    def __init__(self, root: Path = DEFAULT_DIR, port_base: int | None = None):
        self.root = Path(root)
        saved = self.root / "port-base"
        if port_base is None:
            port_base = int(saved.read_text()) if saved.is_file() else DEFAULT_PORT_BASE
        self.port_base = port_base

    # -- layout ------------------------------------------------------------------------------
    def port(self, n: int) -> int:
        """Node ``n``'s client port."""
        return self.port_base + n

    def node_dir(self, n: int) -> Path:
        return self.root / f"node{n}"

    def pid(self, n: int) -> int | None:
        """Node ``n``'s server process, when it runs."""
        try:
            pid = int((self.node_dir(n) / "mariadbd.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            pass
        try:  # a pid the kernel gave to another program since is not ours
            if "mariadbd" not in Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace"):
                return None
        except OSError:
            pass
        return pid

    def url(self, n: int, database: str) -> str:
        return f"mysql://root@127.0.0.1:{self.port(n)}/{database}"

    def _config(self, n: int) -> str:
        d = self.node_dir(n)
        b = self.port_base
        members = ",".join(f"127.0.0.1:{b + 10 + m}" for m in NODES)
        provider_options = ";".join([
            f"base_port={b + 10 + n}",
            f"gmcast.listen_addr=tcp://127.0.0.1:{b + 10 + n}",
            f"ist.recv_addr=127.0.0.1:{b + 20 + n}",
            "gcache.size=64M",
            # a killed node is suspected after 2 s of silence and evicted soon after
            "evs.keepalive_period=PT0.5S", "evs.inactive_check_period=PT0.5S",
            "evs.suspect_timeout=PT2S", "evs.inactive_timeout=PT4S", "evs.install_timeout=PT3S",
            "pc.wait_prim_timeout=PT10S",
        ])
        user = f"user = {run_as()}\n" if run_as() else ""
        return f"""# written by tests/galera_cluster.py: node {n} of a throwaway test cluster
[mariadbd]
{user}datadir = {d / 'data'}
socket = {d / 'mariadbd.sock'}
pid-file = {d / 'mariadbd.pid'}
log-error = {d / 'error.log'}
tmpdir = {d}
port = {b + n}
bind-address = 127.0.0.1
character-set-server = utf8mb4
collation-server = utf8mb4_bin
# what Galera requires (docs/galera.md)
binlog_format = ROW
default_storage_engine = InnoDB
innodb_autoinc_lock_mode = 2
# small and quick: three of these share a test machine
innodb_buffer_pool_size = 64M
innodb_log_file_size = 32M
innodb_flush_log_at_trx_commit = 2
performance_schema = OFF
max_connections = 200
wsrep_on = ON
wsrep_provider = {PROVIDER}
wsrep_cluster_name = haven-test
wsrep_cluster_address = gcomm://{members}
wsrep_node_name = node{n}
wsrep_node_address = 127.0.0.1:{b + 10 + n}
wsrep_node_incoming_address = 127.0.0.1:{b + n}
wsrep_provider_options = "{provider_options}"
wsrep_sst_method = rsync
wsrep_sst_receive_address = 127.0.0.1:{b + 30 + n}
wsrep_slave_threads = 2
# wsrep_sync_wait is left at the server's default (0): Haven asks for causal reads on its own
# connections (store/engines.py), and the tests show that it does
"""

    # -- queries -----------------------------------------------------------------------------
    def query(self, n: int, sql: str, timeout: float = 5) -> list[list[str]]:
        """Rows of ``sql`` on node ``n`` (root over TCP), as strings; raises ClusterError."""
        try:
            out = subprocess.run(
                ["mariadb", "--no-defaults", "-h", "127.0.0.1", "-P", str(self.port(n)), "-u", "root",
                 "--connect-timeout=2", "-N", "-B", "-e", sql],
                capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise ClusterError(f"node {n}: no answer in {timeout}s") from None
        if out.returncode != 0:
            raise ClusterError(f"node {n}: {out.stderr.strip()}")
        return [line.split("\t") for line in out.stdout.splitlines()]

    def wsrep(self, n: int) -> dict:
        rows = self.query(n, "SHOW GLOBAL STATUS WHERE Variable_name IN ('wsrep_ready', 'wsrep_cluster_size', "
                             "'wsrep_cluster_status', 'wsrep_local_state_comment', 'wsrep_connected')")
        return {k: v for k, v in rows}

    def ready(self, n: int, size: int = 3) -> bool:
        try:
            s = self.wsrep(n)
        except ClusterError:
            return False
        return (s.get("wsrep_ready") == "ON" and s.get("wsrep_cluster_size") == str(size)
                and s.get("wsrep_local_state_comment") == "Synced")

    def running(self) -> bool:
        return all(self.pid(n) for n in NODES) and all(self.ready(n) for n in NODES)

    # -- lifecycle ---------------------------------------------------------------------------
    def _log_tail(self, n: int, lines: int = 25) -> str:
        try:
            text = (self.node_dir(n) / "error.log").read_text(errors="replace")
        except OSError:
            return "(no error.log)"
        return "\n".join(text.splitlines()[-lines:])

    def start_node(self, n: int, bootstrap: bool = False) -> None:
        d = self.node_dir(n)
        (d / "data").mkdir(parents=True, exist_ok=True)
        (d / "my.cnf").write_text(self._config(n))
        args = [MARIADBD, f"--defaults-file={d / 'my.cnf'}"]
        if bootstrap:
            args.append("--wsrep-new-cluster")
        with open(d / "stdout.log", "ab") as out:
            subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                             start_new_session=True, cwd=d)

    def wait_ready(self, nodes, size: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        pending = list(nodes)
        while pending:
            pending = [n for n in pending if not self.ready(n, size)]
            if not pending:
                return
            for n in pending:
                if not self._starting(n):
                    raise ClusterError(f"node {n} exited:\n{self._log_tail(n)}")
            if time.monotonic() > deadline:
                raise ClusterError(f"nodes {pending} not ready (cluster size {size}) in {timeout:.0f}s:\n"
                                   + "\n".join(f"--- node {n}\n{self._log_tail(n)}" for n in pending))
            time.sleep(0.2)

    def _starting(self, n: int) -> bool:
        """A mariadbd of node ``n`` exists (it writes its pid file only once it is up)."""
        marker = f"--defaults-file={self.node_dir(n) / 'my.cnf'}"
        for proc in Path("/proc").iterdir():
            if proc.name.isdigit():
                try:
                    if marker in (proc / "cmdline").read_bytes().decode(errors="replace").replace("\0", " "):
                        return True
                except OSError:
                    continue
        return False

    def start(self, timeout: float = 90) -> bool:
        """Start the cluster unless it runs; True when this call started it."""
        if self.running():
            return False
        problems = missing()
        if problems:
            raise ClusterError("cannot run a Galera cluster, missing: " + ", ".join(problems))
        self.stop()  # leftovers of a cluster that is half up
        self.root.mkdir(parents=True, exist_ok=True)
        (self.root / "port-base").write_text(str(self.port_base))
        d1 = self.node_dir(1) / "data"
        for n in NODES:
            (self.node_dir(n) / "data").mkdir(parents=True)
        self._give_away()
        install = ["mariadb-install-db", "--no-defaults", f"--datadir={d1}", "--auth-root-authentication-method=normal",
                   "--skip-test-db"]
        if run_as():
            install.append(f"--user={run_as()}")
        done = subprocess.run(install, capture_output=True, text=True)
        if done.returncode != 0:
            raise ClusterError(f"mariadb-install-db failed:\n{done.stdout}\n{done.stderr}")
        self.start_node(1, bootstrap=True)
        self.wait_ready([1], 1, timeout)
        # nodes 2 and 3 join together: one takes its copy from node 1, the other then from
        # whichever node is free
        self.start_node(2)
        self.start_node(3)
        self.wait_ready(NODES, 3, timeout)
        return True

    def _give_away(self) -> None:
        """As root: the cluster's directory belongs to the user the servers run as."""
        user = run_as()
        if user and user != "root":
            entry = pwd.getpwnam(user)
            for path in [self.root, *self.root.rglob("*")]:
                os.chown(path, entry.pw_uid, entry.pw_gid)

    def kill(self, n: int, sig: int = signal.SIGKILL) -> None:
        pid = self.pid(n)
        if pid is not None:
            os.kill(pid, sig)

    def stop(self, timeout: float = 30) -> None:
        """Stop every node (SIGTERM, then SIGKILL) and remove the cluster's directory."""
        pids = [p for p in (self._pids_of(n) for n in NODES) for p in p]
        for pid in pids:
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + timeout
        for pid in pids:
            while time.monotonic() < deadline and _alive(pid):
                time.sleep(0.1)
            if _alive(pid):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        if self.root.exists():
            shutil.rmtree(self.root, ignore_errors=True)

    def _pids_of(self, n: int) -> list[int]:
        """Every process of node ``n``: its mariadbd (by its config file) and SST helpers."""
        marker = str(self.node_dir(n) / "")
        out = []
        for proc in Path("/proc").iterdir():
            if proc.name.isdigit() and int(proc.name) != os.getpid():
                try:
                    cmd = (proc / "cmdline").read_bytes().decode(errors="replace").replace("\0", " ")
                except OSError:
                    continue
                if marker in cmd and ("mariadbd" in cmd or "rsync" in cmd or "wsrep_sst" in cmd):
                    out.append(int(proc.name))
        return out

    def describe(self) -> str:
        lines = []
        for n in NODES:
            try:
                s = self.wsrep(n)
                state = (f"{s.get('wsrep_local_state_comment')}, ready={s.get('wsrep_ready')}, "
                         f"cluster size {s.get('wsrep_cluster_size')} ({s.get('wsrep_cluster_status')})")
            except ClusterError as e:
                state = f"down ({e})"
            lines.append(f"node{n}: mysql://root@127.0.0.1:{self.port(n)}/  pid {self.pid(n)}  {state}")
        return "\n".join(lines)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie child of this process is gone for our purpose
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] != "Z"
    except (OSError, IndexError):
        return True


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="galera_cluster", description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=("start", "stop", "status"))
    parser.add_argument("--dir", type=Path, default=DEFAULT_DIR, help=f"the cluster's files (default {DEFAULT_DIR})")
    parser.add_argument("--port-base", type=int, default=None,
                        help=f"client ports are BASE+1..3 (default {DEFAULT_PORT_BASE})")
    args = parser.parse_args(argv)
    cluster = Cluster(args.dir, args.port_base)
    if args.command == "start":
        started = time.monotonic()
        try:
            fresh = cluster.start()
        except ClusterError as e:
            print(f"galera: {e}", file=sys.stderr)
            return 1
        took = f"started in {time.monotonic() - started:.1f}s" if fresh else "already running"
        print(f"galera: three nodes in {cluster.root}, {took}")
        print(cluster.describe())
        return 0
    if args.command == "stop":
        cluster.stop()
        print(f"galera: stopped; {cluster.root} removed")
        return 0
    print(cluster.describe())
    return 0 if cluster.running() else 1


if __name__ == "__main__":
    sys.exit(main())
