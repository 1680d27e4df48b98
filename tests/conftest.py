"""Shared fixtures: real engines, a real ``haven serve`` process, real sockets.

* ``engine`` / ``store_url``: every engine the machine has.  MariaDB is at 127.0.0.1:3306 (root,
  no password; override with HAVEN_TEST_MYSQL=mysql://user:pw@host:port/db).  When it cannot be
  reached its tests are skipped with a loud reason, except with CI=true, where that is a failure.
  HAVEN_TEST_ENGINES=sqlite (or mariadb) narrows the run.
* ``haven``: a ``haven serve`` subprocess on free loopback ports with its own data dir (and its
  own MariaDB database), one per test module and engine.  ``haven.new_user()`` makes an account
  through the store contract in this process (what ``haven user add`` does, without a process
  start each time); ``haven.cli(...)`` runs the real command (tests/gateways/test_cli.py and
  the other ``*_cli`` tests drive every command that way).
* Every process the tests start shares one bytecode cache (``PYCACHE``), also when the
  environment says PYTHONDONTWRITEBYTECODE: each ``haven`` process would otherwise compile the
  project again.
* ``run``: drives a store coroutine on an in-process reactor thread (store contract tests).
"""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import smtplib
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from twisted.internet import asyncioreactor

if "twisted.internet.reactor" not in sys.modules:
    asyncioreactor.install(asyncio.new_event_loop())

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(__file__).resolve().parent / "data"
MYSQL_URL = os.environ.get("HAVEN_TEST_MYSQL", "mysql://root@127.0.0.1:3306/test")
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
ENGINES = [e.strip() for e in os.environ.get("HAVEN_TEST_ENGINES", "sqlite,mariadb").split(",") if e.strip()]
#: the bytecode cache of every process the tests start (outside the tree; pyc files are checked
#: against their sources, so it is safe to keep between runs and checkouts)
PYCACHE = Path(tempfile.gettempdir()) / f"haven-test-pycache-{os.getuid()}"

_mariadb_problem: list = []


def _mysql_admin():
    import pymysql
    u = urlsplit(MYSQL_URL)
    return pymysql.connect(host=u.hostname, port=u.port or 3306, user=u.username or "root",
                           password=u.password or "", connect_timeout=5, autocommit=True)


def mariadb_available() -> bool:
    if _mariadb_problem:
        return _mariadb_problem[0] is None
    try:
        _mysql_admin().close()
        _mariadb_problem.append(None)
    except Exception as e:  # noqa: BLE001 - any reason is reported
        _mariadb_problem.append(f"{type(e).__name__}: {e}")
    return _mariadb_problem[0] is None


def pytest_report_header(config):
    from tests.galera_cluster import missing
    galera = missing()
    galera_line = ("haven galera: tests/e2e/test_galera.py starts a three-node cluster" if not galera else
                   "haven galera: UNAVAILABLE, missing " + ", ".join(galera))
    if "mariadb" not in ENGINES:
        return "haven engines: sqlite only (HAVEN_TEST_ENGINES); no Galera tests"
    if mariadb_available():
        return [f"haven engines: sqlite, mariadb ({MYSQL_URL})", galera_line]
    return [f"haven engines: sqlite; MariaDB UNAVAILABLE at {MYSQL_URL}: {_mariadb_problem[0]}", galera_line]


def pytest_terminal_summary(terminalreporter):
    if "mariadb" in ENGINES and not mariadb_available():
        terminalreporter.write_sep("!", "MariaDB tests were SKIPPED: " + str(_mariadb_problem[0]), yellow=True)
    from tests.galera_cluster import missing
    if missing() and "mariadb" in ENGINES:
        terminalreporter.write_sep("!", "Galera tests were SKIPPED, missing: " + ", ".join(missing()), yellow=True)


def require_engine(engine: str) -> None:
    if engine == "mariadb" and not mariadb_available():
        msg = f"MariaDB not reachable at {MYSQL_URL}: {_mariadb_problem[0]}"
        if IN_CI:
            pytest.fail("CI=true requires MariaDB. " + msg, pytrace=False)
        pytest.skip(msg)


@pytest.fixture(params=ENGINES)
def engine(request):
    require_engine(request.param)
    return request.param


def _new_mysql_database() -> str:
    name = "haven_t_" + secrets.token_hex(4)
    conn = _mysql_admin()
    with conn.cursor() as cur:
        cur.execute(f"CREATE DATABASE {name} CHARACTER SET utf8mb4 COLLATE utf8mb4_bin")
    conn.close()
    return name


def _drop_mysql_database(name: str) -> None:
    try:
        conn = _mysql_admin()
        with conn.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS {name}")
        conn.close()
    except Exception:
        pass


def store_url_for(engine: str, data_dir: Path):
    """(url, cleanup) for a fresh, empty database of ``engine``."""
    if engine == "sqlite":
        return "sqlite:///haven.db", lambda: None
    name = _new_mysql_database()
    u = urlsplit(MYSQL_URL)
    auth = u.username or "root"
    if u.password:
        auth += ":" + u.password
    return f"mysql://{auth}@{u.hostname}:{u.port or 3306}/{name}", lambda: _drop_mysql_database(name)


_handed_out: set = set()


def non_loopback_ipv4():
    """An address of this machine that is not loopback (None if it has none): tests of what a
    peer on the network may do connect from it."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("198.51.100.1", 9))  # no packet is sent; this only picks the route
            ip = s.getsockname()[0]
        except OSError:
            return None
    return None if ip.startswith("127.") or ip == "0.0.0.0" else ip


#: with pytest-xdist, each worker hands out ports from its own range (below the kernel's
#: ephemeral range, so client sockets never take them), so two workers never give one port to
#: two servers; alone, the kernel picks.
_WORKER = os.environ.get("PYTEST_XDIST_WORKER", "")
_PORT_RANGE = 4000
_next_port = [11000 + int(_WORKER[2:] or 0) * _PORT_RANGE] if _WORKER.startswith("gw") else None


def free_port() -> int:
    """A port free now and not handed out before in this run: a server binds its six ports
    only later, and the kernel may offer a just-released port twice (two listeners of one
    server on one port failed a run)."""
    while True:
        with socket.socket() as s:
            if _next_port is None:
                s.bind(("127.0.0.1", 0))
            else:
                _next_port[0] += 1
                try:
                    s.bind(("127.0.0.1", _next_port[0]))
                except OSError:
                    continue
            port = s.getsockname()[1]
        if port not in _handed_out:
            _handed_out.add(port)
            return port


def wait_port(port: int, proc=None, timeout: float = 20.0, host: str = "127.0.0.1") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"haven serve exited with {proc.returncode}")
        try:
            socket.create_connection((host, port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"port {port} did not open in {timeout}s")


class HavenServer:
    """A ``haven serve`` process with its own config, data dir and database."""

    def __init__(self, tmp: Path, engine: str, overrides: dict | None = None, url: str | None = None):
        self.tmp = tmp
        self.engine = engine
        self.data_dir = tmp / "data"
        self.config_path = tmp / "haven.ini"
        self.log_path = tmp / "haven.log"
        self.imap = ("127.0.0.1", free_port())
        self.lmtp = ("127.0.0.1", free_port())
        # POP3 (plain + implicit TLS) and submission (STARTTLS port + implicit TLS port)
        self.pop3, self.pop3s = ("127.0.0.1", free_port()), ("127.0.0.1", free_port())
        self.submission, self.submissions = ("127.0.0.1", free_port()), ("127.0.0.1", free_port())
        self.http = ("127.0.0.1", free_port())  # CalDAV/CardDAV under /dav/
        # ManageSieve: never the default 4190, so that servers running side by side do not collide
        self.managesieve = ("127.0.0.1", free_port())
        #: every listener, each waited for at start
        self.gateways = ["imap", "lmtp", "pop3", "submission", "managesieve", "http"]
        if url is None:
            self.url, self._cleanup_db = store_url_for(engine, self.data_dir)
        else:  # another node on an existing database: the first node cleans it up
            self.url, self._cleanup_db = url, lambda: None
        sections = {
            "server": {"hostname": "haven.test", "data_dir": str(self.data_dir)},
            "store": {"url": self.url, "poll_interval": "0.2", "busy_timeout_ms": "1500"},
            "auth": {"failure_delay": "0.05", "max_penalty": "0.2"},
            "imap": {"listen": f"127.0.0.1:{self.imap[1]}"},
            "lmtp": {"listen": f"127.0.0.1:{self.lmtp[1]}"},
            "pop3": {"listen": f"127.0.0.1:{self.pop3[1]}", "tls_listen": f"127.0.0.1:{self.pop3s[1]}"},
            "submission": {"listen": f"127.0.0.1:{self.submission[1]}",
                           "tls_listen": f"127.0.0.1:{self.submissions[1]}"},
            "http": {"listen": f"127.0.0.1:{self.http[1]}"},
            "managesieve": {"listen": f"127.0.0.1:{self.managesieve[1]}"},
            "log": {"level": "info"},
        }
        for key, value in (overrides or {}).items():
            section, _, name = key.partition(".")
            sections.setdefault(section, {})[name] = value
        self.config_path.write_text("".join(
            f"[{s}]\n" + "".join(f"{k} = {v}\n" for k, v in kv.items()) for s, kv in sections.items()))
        self.proc = None
        self._users = 0
        self._store = None  # this process's store on the server's database, for new_user()
        self._store_lock = threading.Lock()

    @property
    def sqlite_path(self) -> Path:
        return self.data_dir / "haven.db"

    def env(self) -> dict:
        env = dict(os.environ)
        env.pop("HAVEN_CONFIG", None)
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = str(PYCACHE)
        env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
        return env

    def start(self) -> "HavenServer":
        self.admin_store()  # as `haven db migrate` does before the first `haven serve`
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "gateways.cli", "--config", str(self.config_path),
                                      "serve"], cwd=self.tmp, env=self.env(), stdout=self._log,
                                     stderr=subprocess.STDOUT)
        try:
            for name in self.gateways:
                host, port = getattr(self, name)
                wait_port(port, self.proc, host=host)
        except RuntimeError:
            self.stop()
            raise RuntimeError("haven serve did not start:\n" + self.log())
        return self

    def stop(self, sig=signal.SIGTERM) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        if getattr(self, "_log", None):
            self._log.close()
            self._log = None

    def kill(self) -> None:
        self.stop(signal.SIGKILL)

    def restart(self) -> None:
        self.stop()
        self.start()

    def close(self) -> None:
        self.stop()
        if self._store is not None:
            stop_store(self._store)
            self._store = None
        self._cleanup_db()

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def cli(self, *args, input: bytes = b"", check: bool = False) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "gateways.cli", "--config", str(self.config_path), *args],
                              input=input, capture_output=True, cwd=self.tmp, env=self.env(), timeout=60,
                              check=check)

    def new_user(self, name: str | None = None) -> tuple[str, str]:
        """(address, password) of a new account, made as ``haven user add`` makes it: the store
        contract on the server's database, from another process (this one).  Thread-safe."""
        from auth.passwords import hash_password
        with self._store_lock:
            self._users += 1
            address = f"{name or 'user'}{self._users}-{secrets.token_hex(3)}@example.test"
        store = self.admin_store()
        password = "pw-" + secrets.token_hex(6)
        pw_hash = hash_password(password)
        run_on_reactor(store.create_account, address, pw_hash)
        return address, password

    def admin_store(self):
        """This process's store on the server's database, opened as the CLI opens it, created
        (as `haven db migrate` creates it) when it is not there yet.  Thread-safe."""
        with self._store_lock:
            if self._store is None:
                from conf import load_config
                from gateways.service import open_started_store
                self._store = run_on_reactor(open_started_store, load_config(str(self.config_path)),
                                             _ensure_reactor(), poll=False, create=True)
            return self._store

    @property
    def managesieve_port(self) -> int:
        return self.managesieve[1]

    @property
    def dav_url(self) -> str:
        return f"http://{self.http[0]}:{self.http[1]}/dav/"

    def deliver(self, address: str, raw: bytes, sender: str = "sender@example.org") -> None:
        with smtplib.LMTP(*self.lmtp, timeout=30) as lmtp:
            refused = lmtp.sendmail(sender, [address], raw)
            assert not refused, refused


@pytest.fixture(scope="module", params=ENGINES)
def haven(request, tmp_path_factory):
    require_engine(request.param)
    server = HavenServer(tmp_path_factory.mktemp(f"haven-{request.param}"), request.param)
    server.start()
    yield server
    server.close()


@pytest.fixture
def haven_factory(tmp_path_factory):
    """Build extra servers with config overrides: ``haven_factory(engine, **{"store.x": "1"})``."""
    made = []

    def make(engine: str, start: bool = True, url: str | None = None, **overrides) -> HavenServer:
        require_engine(engine)
        server = HavenServer(tmp_path_factory.mktemp(f"haven-{engine}"), engine, overrides, url=url)
        made.append(server)
        return server.start() if start else server
    yield make
    for server in made:
        server.close()


# -- in-process reactor for store tests ------------------------------------------------------

_reactor_thread: list = []


def _ensure_reactor():
    from twisted.internet import reactor
    if not _reactor_thread:
        t = threading.Thread(target=reactor.run, kwargs={"installSignalHandlers": False}, daemon=True,
                             name="test-reactor")
        t.start()
        _reactor_thread.append(t)
        deadline = time.monotonic() + 5
        while not reactor.running and time.monotonic() < deadline:
            time.sleep(0.01)
    return reactor


def run_on_reactor(fn, *args, **kwargs):
    """Call an async function on the reactor thread and wait for its result."""
    from twisted.internet import defer, threads
    reactor = _ensure_reactor()
    return threads.blockingCallFromThread(reactor, lambda: defer.Deferred.fromCoroutine(fn(*args, **kwargs)))


def start_store(config):
    """The store ``config`` names, started (without the poller) on the in-process reactor."""
    from twisted.internet import threads
    from gateways.service import open_store
    st = open_store(config, poll_interval=0)
    reactor = _ensure_reactor()
    threads.blockingCallFromThread(reactor, st.start, reactor, False)
    return st


def stop_store(st) -> None:
    from twisted.internet import threads
    threads.blockingCallFromThread(_ensure_reactor(), st.stop)


@pytest.fixture(scope="session")
def run():
    """``run(coro_fn, *args)``: call an async function on the reactor thread and wait."""
    _ensure_reactor()

    def call(fn, *args, timeout=30, **kwargs):
        return run_on_reactor(fn, *args, **kwargs)
    return call


@pytest.fixture
def store(engine, tmp_path, run):
    """A started SqlStore on a fresh database of each engine."""
    from conf import load_config
    url, cleanup = store_url_for(engine, tmp_path)
    cfg = tmp_path / "haven.ini"
    cfg.write_text(f"[server]\ndata_dir = {tmp_path / 'data'}\n[store]\nurl = {url}\nsoftdelete_lifetime = 30\n")
    st = start_store(load_config(str(cfg)))
    run(st.migrate)
    yield st
    stop_store(st)
    cleanup()


@pytest.fixture(scope="module", params=ENGINES)
def eas(request, tmp_path_factory):
    """``haven serve`` on each engine with ActiveSync on, once per test module.  A module sets
    ``EAS_SETTINGS`` (config overrides) and ``EAS_RELAY = True`` (the smarthost sink as the
    relay) when it needs more."""
    require_engine(request.param)
    settings = {"activesync.enabled": "yes", **getattr(request.module, "EAS_SETTINGS", {})}
    if getattr(request.module, "EAS_RELAY", False):
        settings["submission.relay"] = request.getfixturevalue("sink").address
    label = request.module.__name__.rpartition(".")[2]
    server = HavenServer(tmp_path_factory.mktemp(f"haven-{label}-{request.param}"), request.param, settings)
    server.start()
    yield server
    server.close()


@pytest.fixture(scope="module")
def sink():
    """A fake smarthost on a loopback port (tests/gateways/submission/sink.py) that keeps what
    it is sent, for the tests of outgoing mail."""
    from tests.gateways.submission.sink import SMTPSink
    server = SMTPSink().start()
    yield server
    server.stop()
