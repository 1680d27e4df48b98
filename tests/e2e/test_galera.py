"""Haven nodes are stateless on MariaDB: two nodes on a three-node Galera cluster.

The cluster is tests/galera_cluster.py's (three mariadbd on loopback ports of their own, in a
temporary directory; the machine's MariaDB is not involved), started once for this file.
Each Haven node talks to its own Galera node: Haven A to node 1, Haven B to node 2.

* Haven's schema fits Galera: InnoDB tables, each with a primary key.
* An account made through one node takes mail on the other at once: Haven asks for causal
  reads (wsrep_sync_wait), else a read on node 2 right after a commit on node 1 may miss it.
* Two nodes delivering at once into one mailbox: both write the folder's ``uidnext`` row, so
  Galera aborts one of two conflicting commits (a certification failure, error 1213): the
  engine retries it, no delivery gets a 5xx, and no UID is given twice.
* Under a steady LMTP load on both Haven nodes, Galera node 2 is killed (SIGKILL): every
  message acknowledged with 250 is in the mailbox exactly once; neither node ever answers 5xx
  (Haven B answers 451 while its database is gone); Haven A goes on delivering once the
  cluster has evicted the dead node; an IMAP session on Haven A, in IDLE through it all,
  hears the new messages, and NOOP and FETCH still work.

Without galera-4, mariadb-server or rsync the tests are skipped, saying what is missing;
with CI=true that is a failure (.ci/run installs them).  The whole file takes 30 to 45 s on
two cores, 10 to 14 s of it to start the cluster (docs/galera.md has the figures).
"""

from __future__ import annotations

import os
import re
import secrets
import socket
import tempfile
import threading
import time
from pathlib import Path

import pytest

from tests import galera_cluster
from tests.conftest import ENGINES, IN_CI, HavenServer
from tests.gateways.lmtp.wire import Transcript

#: the cluster's port base for this test process: above the ranges the test workers hand out
#: for servers, apart from each other and from `./dev galera start` (26000)
_WORKER = os.environ.get("PYTEST_XDIST_WORKER", "")
PORT_BASE = 26100 + 100 * (int(_WORKER[2:]) if _WORKER.startswith("gw") else 9)


def _ports_free(base: int) -> bool:
    for offset in (1, 2, 3, 11, 12, 13, 21, 22, 23, 31, 32, 33):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", base + offset))
            except OSError:
                return False
    return True


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    if "mariadb" not in ENGINES:
        pytest.skip("HAVEN_TEST_ENGINES excludes mariadb")
    problems = galera_cluster.missing()
    if problems:
        msg = "no Galera cluster can run here, missing: " + ", ".join(problems)
        if IN_CI:
            pytest.fail("CI=true requires the Galera test (.ci/run installs galera-4, rsync). " + msg,
                        pytrace=False)
        pytest.skip(msg)
    base = PORT_BASE
    while not _ports_free(base):  # another run's cluster: this one goes above it
        base += 1000
        if base > 31000:
            pytest.fail(f"no free ports for the Galera cluster from {PORT_BASE} up", pytrace=False)
    # not under pytest's tmp dir: the servers run as the mysql user, which must reach it
    root = Path(tempfile.gettempdir()) / f"haven-galera-test-{secrets.token_hex(4)}"
    c = galera_cluster.Cluster(root, base)
    started = time.monotonic()
    try:
        c.start()
    except galera_cluster.ClusterError as e:
        c.stop()
        pytest.fail(f"the Galera cluster did not start: {e}", pytrace=False)
    c.start_seconds = time.monotonic() - started
    print(f"\ngalera: cluster of three started in {c.start_seconds:.1f}s")
    yield c
    c.stop()


def new_database(cluster) -> str:
    name = "haven_g_" + secrets.token_hex(4)
    cluster.query(1, f"CREATE DATABASE {name} CHARACTER SET utf8mb4 COLLATE utf8mb4_bin")
    return name


def haven_pair(cluster, tmp_path_factory) -> tuple[HavenServer, HavenServer]:
    """Haven A on Galera node 1 and Haven B on node 2, on a new database.  Their data dirs
    differ: the test messages are small enough to be stored in the database (inline_blob_size),
    so no node needs another's blob files."""
    name = new_database(cluster)
    servers = []
    try:
        for n in (1, 2):
            server = HavenServer(tmp_path_factory.mktemp(f"haven-galera{n}"), "mariadb",
                                 {"store.poll_interval": "0.2"}, url=cluster.url(n, name))
            servers.append(server)
            server.start()
    except BaseException:
        for server in servers:
            server.close()
        raise
    return servers[0], servers[1]


def test_schema_fits_galera(cluster, tmp_path_factory):
    """Galera replicates InnoDB tables only, and needs a primary key in each (without one, a
    row change is replicated as a scan of the table on every node, and DELETEs can diverge):
    every table of Haven's schema, after every delta, has both."""
    name = new_database(cluster)
    server = HavenServer(tmp_path_factory.mktemp("haven-galera-schema"), "mariadb", url=cluster.url(1, name))
    try:
        server.admin_store()  # `haven db migrate`: every delta
        tables = cluster.query(1, f"SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = '{name}'")
        unfit = cluster.query(2, f"""
            SELECT t.table_name, t.engine FROM information_schema.tables t
            WHERE t.table_schema = '{name}' AND (t.engine <> 'InnoDB' OR NOT EXISTS (
                SELECT 1 FROM information_schema.table_constraints c WHERE c.table_schema = t.table_schema
                AND c.table_name = t.table_name AND c.constraint_type = 'PRIMARY KEY'))""")
    finally:
        server.close()
    assert int(tables[0][0]) >= 20
    assert unfit == []


def message(msgid: str) -> bytes:
    return (f"From: load@example.org\r\nSubject: galera {msgid}\r\nMessage-ID: <{msgid}>\r\n\r\n"
            f"body of {msgid}\r\n").encode()


class Loader(threading.Thread):
    """Delivers one message after another to ``address`` over LMTP at ``server``, each with a
    unique Message-ID, until ``stop`` is set; records each outcome as (start, end, code, id).
    A connection that breaks or a 4xx is answered with a new connection (an MTA's retry, with
    a new message: an unacknowledged one may or may not be stored, but never twice)."""

    def __init__(self, name: str, server: HavenServer, address: str, stop: threading.Event,
                 limit: int | None = None):
        super().__init__(name=f"loader-{name}", daemon=True)
        self.label = name
        self.server = server
        self.address = address
        self.stop = stop
        self.limit = limit
        self.outcomes: list[tuple[float, float, int, str]] = []

    def acknowledged(self) -> list[str]:
        return [o[3] for o in self.outcomes if o[2] == 250]

    def run(self) -> None:
        t = None
        seq = 0
        while not self.stop.is_set() and (self.limit is None or seq < self.limit):
            seq += 1
            msgid = f"{self.label}-{seq}-{secrets.token_hex(4)}@galera.test"
            start = time.monotonic()
            code = 0  # no reply: the connection failed
            try:
                if t is None:
                    t = Transcript(self.server.lmtp, timeout=60)
                    t.lhlo()
                code = t.cmd("MAIL FROM:<load@example.org>").code
                if code == 250:
                    code = t.cmd(f"RCPT TO:<{self.address}>").code
                    if code == 250:
                        code = t.cmd("DATA").code
                        if code == 354:
                            t.send(message(msgid).replace(b"\r\n.", b"\r\n..") + b".\r\n")
                            code = t.reply().code
                if code != 250:
                    t.cmd("RSET")
            except (OSError, ConnectionError, AssertionError):
                if t is not None:
                    t.close()
                t = None
            self.outcomes.append((start, time.monotonic(), code, msgid))
            if code != 250:
                time.sleep(0.05)  # as an MTA would wait before its next try, only shorter
        if t is not None:
            t.close()


class ImapSession:
    """A raw IMAP session whose replies a thread collects as they come, each with its arrival
    time (so an EXISTS heard during IDLE is known to come after the kill or not)."""

    def __init__(self, address, user: str, password: str):
        self.sock = socket.create_connection(address, timeout=10)
        self.sock.settimeout(0.5)
        self.buf = b""
        self.exists: list[tuple[float, int]] = []  # (when, count) of each "* N EXISTS"
        self.lock = threading.Lock()
        self.closed = threading.Event()
        self.reader = threading.Thread(target=self._read, daemon=True, name="imap-reader")
        self.reader.start()
        self.wait_for(b"* OK")
        self.command("a", f'LOGIN "{user}" "{password}"')
        self.command("b", "SELECT INBOX")

    def _read(self) -> None:
        scanned = 0
        while not self.closed.is_set():
            try:
                chunk = self.sock.recv(65536)
            except socket.timeout:
                continue
            except OSError:
                break
            if not chunk:
                break
            now = time.monotonic()
            with self.lock:
                self.buf += chunk
                cut = self.buf.rfind(b"\r\n")
                for m in re.finditer(rb"^\* (\d+) EXISTS\r$", self.buf[scanned:cut + 1], re.M):
                    self.exists.append((now, int(m.group(1))))
                scanned = max(scanned, cut + 1)
        self.closed.set()

    def mark(self) -> int:
        """Where the replies to what is sent next will start."""
        with self.lock:
            return len(self.buf)

    def wait_for(self, marker: bytes, timeout: float = 30, start: int = 0) -> bytes:
        """Wait until ``marker`` has come (after offset ``start`` of the replies)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if self.buf.find(marker, start) >= 0:
                    return self.buf
            if self.closed.is_set():
                raise EOFError(f"IMAP connection closed waiting for {marker!r}: {self.buf[-300:]!r}")
            time.sleep(0.01)
        raise TimeoutError(f"no {marker!r} in {timeout}s: {self.buf[-300:]!r}")

    def send(self, line: str) -> None:
        self.sock.sendall(line.encode() + b"\r\n")

    def command(self, tag: str, line: str, timeout: float = 30) -> bytes:
        """The replies to ``tag line`` up to its tagged OK (fails on NO/BAD)."""
        with self.lock:
            start = len(self.buf)
        self.send(f"{tag} {line}")
        deadline = time.monotonic() + timeout
        pattern = re.compile(rb"^" + tag.encode() + rb" (OK|NO|BAD)[^\r]*\r\n", re.M)
        while True:
            with self.lock:
                m = pattern.search(self.buf, start)
                if m:
                    answer = self.buf[start:m.end()]
                    break
            if self.closed.is_set() or time.monotonic() > deadline:
                raise AssertionError(f"{tag} {line}: no tagged reply: {self.buf[start:][-300:]!r}")
            time.sleep(0.01)
        assert m.group(1) == b"OK", answer[-300:]
        return answer

    def message_ids(self) -> dict[str, list[int]]:
        """Message-ID -> the UIDs of the messages in the mailbox that carry it."""
        answer = self.command("f", "UID FETCH 1:* (UID BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])", timeout=60)
        out: dict[str, list[int]] = {}
        for part in re.split(rb"\r\n(?=\* \d+ FETCH )", answer):
            uid = re.search(rb"UID (\d+)", part)
            msgid = re.search(rb"Message-ID: <([^>]+)>", part, re.I)
            if uid and msgid:
                out.setdefault(msgid.group(1).decode(), []).append(int(uid.group(1)))
        return out

    def close(self) -> None:
        try:
            self.send("z LOGOUT")
        except OSError:
            pass
        self.closed.set()
        self.sock.close()


def _retries(server: HavenServer) -> int:
    """How many transactions the server's engine retried after a Galera conflict (1213)."""
    return len(re.findall(r"retrying after \(1213", server.log()))


def test_account_made_on_one_node_takes_mail_on_the_other_at_once(cluster, tmp_path_factory):
    """Galera applies another node's commit a little after it returned there: a read on node 2
    right after a commit on node 1 may not see it (on this loopback cluster, half of them do
    not).  Haven asks for causal reads (wsrep_sync_wait), so an account made through Haven A's
    database is a known recipient on Haven B from the first RCPT, never 550 User unknown."""
    a, b = haven_pair(cluster, tmp_path_factory)
    try:
        codes = []
        with Transcript(b.lmtp) as t:
            t.lhlo()
            for _ in range(30):
                assert t.cmd("MAIL FROM:<new@example.org>").code == 250
                user, _password = a.new_user("fresh")  # committed on Galera node 1
                codes.append(t.cmd(f"RCPT TO:<{user}>").code)  # read on node 2 at once
                t.cmd("RSET")
        assert codes == [250] * len(codes), codes
    finally:
        a.close()
        b.close()


def test_two_nodes_delivering_into_one_mailbox_conflict_and_retry(cluster, tmp_path_factory):
    """Four LMTP clients, two on each node, deliver into one INBOX at once: every commit
    writes the folder's uidnext row, so Galera's certification aborts some of them (1213);
    each is retried: all 250, no 5xx, and every UID given once."""
    a, b = haven_pair(cluster, tmp_path_factory)
    try:
        user, password = a.new_user("conflict")
        stop = threading.Event()
        loaders = [Loader(f"{name}{i}", server, user, stop, limit=100)
                   for name, server in (("a", a), ("b", b)) for i in range(2)]
        started = time.monotonic()
        for loader in loaders:
            loader.start()
        for loader in loaders:
            loader.join(90)
        took = time.monotonic() - started
        outcomes = [o for loader in loaders for o in loader.outcomes]
        codes = [o[2] for o in outcomes]
        retried = _retries(a) + _retries(b)
        print(f"\ngalera: {len(codes)} deliveries from 4 clients on 2 nodes in {took:.1f}s, "
              f"{codes.count(250)} x 250, {sum(1 for c in codes if 400 <= c < 500)} x 4xx, "
              f"{retried} commits retried after a certification conflict")
        assert not [c for c in codes if c >= 500 or c < 200], codes
        assert codes.count(250) >= len(codes) - 2, codes  # a 451 after 6 tries at most, rarely

        session = ImapSession(a.imap, user, password)
        try:
            stored = session.message_ids()
        finally:
            session.close()
        acked = {msgid for loader in loaders for msgid in loader.acknowledged()}
        assert {m: u for m, u in stored.items() if len(u) != 1} == {}
        assert acked <= set(stored)
        uids = [u for us in stored.values() for u in us]
        assert len(uids) == len(set(uids))
    finally:
        a.close()
        b.close()


def test_galera_node_killed_under_lmtp_load(cluster, tmp_path_factory):
    a, b = haven_pair(cluster, tmp_path_factory)
    try:
        user, password = a.new_user("failover")
        session = ImapSession(a.imap, user, password)
        start = session.mark()
        session.send("i IDLE")
        session.wait_for(b"+ ", start=start)
        stop = threading.Event()
        load_a = Loader("a", a, user, stop)
        load_b = Loader("b", b, user, stop)
        load_a.start()
        load_b.start()
        time.sleep(3)  # steady load on both nodes
        assert load_a.acknowledged() and load_b.acknowledged(), (load_a.outcomes[-3:], load_b.outcomes[-3:])

        killed = time.monotonic()
        cluster.kill(2)  # SIGKILL: Galera node 2, Haven B's database, is gone
        evicted = None
        while time.monotonic() - killed < 30:
            try:
                if cluster.wsrep(1).get("wsrep_cluster_size") == "2":
                    evicted = time.monotonic()
                    break
            except galera_cluster.ClusterError:
                pass
            time.sleep(0.1)
        assert evicted is not None, "node 1 never saw node 2 leave"
        time.sleep(4)  # the load goes on against the two-node cluster
        stop.set()
        load_a.join(60)
        load_b.join(60)

        outcomes = load_a.outcomes + load_b.outcomes
        fivexx = [o for o in outcomes if o[2] >= 500]
        assert fivexx == [], fivexx
        after_a = [o for o in load_a.outcomes if o[2] == 250 and o[0] > evicted]
        assert len(after_a) >= 10, load_a.outcomes[-10:]  # Haven A delivers on the two nodes left
        acks_a = [o[1] for o in load_a.outcomes if o[2] == 250]
        stall = max((later - earlier for earlier, later in zip(acks_a, acks_a[1:]) if later > killed),
                    default=0.0)
        temp_a = [o for o in load_a.outcomes if o[2] != 250]
        temp_b = [o for o in load_b.outcomes if o[2] != 250]
        b_before = [o for o in load_b.outcomes if o[2] == 250 and o[1] < killed]
        print(f"\ngalera: node 2 evicted {evicted - killed:.1f}s after kill -9; Haven A's longest wait "
              f"between two 250s {stall:.1f}s; Haven A: {len(load_a.acknowledged())} x 250 "
              f"({len(after_a)} after the eviction), {len(temp_a)} x not 250; Haven B: "
              f"{len(load_b.acknowledged())} x 250 ({len(b_before)} before the kill), "
              f"{len(temp_b)} x not 250; codes seen: {sorted({o[2] for o in outcomes})}")
        assert {o[2] for o in temp_a + temp_b} <= {451}, temp_a + temp_b  # no dropped connection either

        # the IMAP session on Haven A heard deliveries made after the kill, and still works
        start = session.mark()
        session.send("DONE")
        session.wait_for(b"i OK", start=start)
        heard_after = [n for when, n in session.exists if when > evicted]
        assert heard_after, session.exists[-5:]
        session.command("n", "NOOP")
        stored = session.message_ids()
        last = max(u for us in stored.values() for u in us)
        fetched = session.command("l", f"UID FETCH {last} (FLAGS BODY.PEEK[TEXT])")
        assert b"body of " in fetched
        from_b = load_b.acknowledged()[-1]  # delivered through Haven B, read through Haven A
        fetched = session.command("m", f"UID FETCH {stored[from_b][0]} (BODY.PEEK[TEXT])")
        assert f"body of {from_b}".encode() in fetched
        session.close()

        acked = load_a.acknowledged() + load_b.acknowledged()
        assert len(acked) == len(set(acked))
        missing = [m for m in acked if m not in stored]
        assert missing == [], missing  # every 250 is stored ...
        twice = {m: u for m, u in stored.items() if len(u) > 1}
        assert twice == {}, twice  # ... once
        sent = {o[3] for o in outcomes}
        assert set(stored) <= sent  # and nothing else is (an unanswered one may be, once)
    finally:
        a.close()
        b.close()
