"""SQL engines: SQLite (embedded default) and MariaDB/MySQL (pymysql), one code path.

Invariants
- SQL is written once with ``?`` placeholders; :class:`Txn` rewrites it for pymysql.
- Every query runs inside ``run_interaction(desc, fn, *args)``: ``fn(txn, *args)`` is a plain
  function executed in a DB pool thread inside one transaction, committed when it returns and
  rolled back when it raises.  ``fn`` touches no reactor object and may run more than once
  (retried on deadlocks, busy locks and lost connections).
- SQLite: one connection on one thread (one writer), WAL, ``synchronous=FULL`` so a commit is on
  disk when it returns.  MariaDB/MySQL: one connection per pool thread, READ COMMITTED, InnoDB;
  on a Galera cluster node, causal reads (:data:`GALERA_CAUSAL_READS`, docs/galera.md).
- Driver exceptions never leave this module: retryable ones are retried, then surface as
  :class:`store.errors.TemporaryFailure`; integrity errors as :class:`IntegrityError`.
"""

from __future__ import annotations

import logging
import os
import random
import sqlite3
import threading
import time
from typing import Any, Callable, Optional, Protocol

from twisted.internet import defer, threads
from twisted.python.threadpool import ThreadPool

from store import errors

log = logging.getLogger("haven.store")

RETRIES = 5
#: attempts after a write conflict (MariaDB errors :data:`MYSQL_CONFLICTS`): more than after
#: other errors, because on a Galera cluster every node writes, and a transaction on one node
#: that touches a row as busy as a mailbox's ``uidnext`` under load can lose to the other
#: nodes' commits several times in a row (a certification failure costs no wait, only a retry)
CONFLICT_RETRIES = 8

#: MariaDB errors that mean "another transaction won; run this one again on the same
#: connection": 1213 deadlock, which is also how Galera reports a certification failure
#: (another node committed a conflicting write first) and a transaction aborted by a
#: replicated one (brute-force abort); 1020 record changed since it was read
MYSQL_CONFLICTS = (1213, 1020)
#: MariaDB errors after which the same connection is retried without a reconnect: the
#: conflicts, 1205 lock wait timeout, 1180 error during COMMIT (Galera: the commit failed to
#: replicate; nothing was committed), 1317 query interrupted
MYSQL_RETRY_SAME_CONNECTION = (*MYSQL_CONFLICTS, 1205, 1180, 1317)

#: Run on every new MariaDB connection.  On a Galera cluster node (``wsrep_on``), a read waits
#: until the node has applied every transaction any node committed before it (bit 1 of
#: ``wsrep_sync_wait``, kept with any the server sets): else a read on one node just after a
#: commit on another may miss it, and an account made through one Haven node would be
#: "550 User unknown" for a moment on the others (tests/e2e/test_galera.py).  Elsewhere a no-op.
GALERA_CAUSAL_READS = "SET SESSION wsrep_sync_wait = IF(@@wsrep_on, @@wsrep_sync_wait | 1, @@wsrep_sync_wait)"

#: Tests only: ``HAVEN_TEST_LOSE_AFTER_COMMIT="deliver:1,enqueue_submission:1"`` makes the
#: first commit of the next N transactions of each name land and then report the connection lost, as a
#: network drop between COMMIT and its answer does (the caller retries a transaction that is
#: already durable).  Read once per :class:`Database`; empty in production.
LOSE_AFTER_COMMIT_ENV = "HAVEN_TEST_LOSE_AFTER_COMMIT"


class DatabaseURL(Protocol):
    """Where the database is, as the process parsed ``[store] url`` (``conf.StoreURL``): the
    store takes these plain values and reads no configuration itself."""
    engine: str  # "sqlite" | "mysql"
    path: Optional[str]  # sqlite: the file
    host: str
    port: int
    user: str
    password: str
    database: str


class IntegrityError(Exception):
    """A unique or foreign key constraint failed inside a transaction (raised to the txn fn)."""


#: SQLite's page cache per connection, KiB (one writer connection per process, plus short-lived
#: ones of CLI commands)
SQLITE_CACHE_KIB = 65536


class Txn:
    """Cursor wrapper handed to ``_txn`` functions."""

    def __init__(self, engine: str, cursor):
        self.engine = engine
        self._cur = cursor

    def _sql(self, sql: str) -> str:
        if self.engine == "mysql":
            return sql.replace("%", "%%").replace("?", "%s")
        return sql

    def execute(self, sql: str, args: tuple | list = ()) -> "Txn":
        try:
            self._cur.execute(self._sql(sql), tuple(args))
        except (sqlite3.IntegrityError, _mysql_integrity()) as e:
            raise IntegrityError(str(e)) from e
        return self

    def executemany(self, sql: str, rows) -> "Txn":
        rows = [tuple(r) for r in rows]
        if rows:
            try:
                self._cur.executemany(self._sql(sql), rows)
            except (sqlite3.IntegrityError, _mysql_integrity()) as e:
                raise IntegrityError(str(e)) from e
        return self

    def fetchone(self):
        return self._cur.fetchone()

    def fetchall(self) -> list:
        return list(self._cur.fetchall())

    def scalar(self, sql: str, args=()) -> Any:
        row = self.execute(sql, args).fetchone()
        return row[0] if row else None

    @property
    def lastrowid(self) -> int:
        return self._cur.lastrowid

    @property
    def rowcount(self) -> int:
        return self._cur.rowcount

    def insert_ignore(self, table: str, columns: tuple, values: tuple) -> int:
        """INSERT that does nothing if a unique key already exists; returns rows inserted."""
        verb = "INSERT OR IGNORE" if self.engine == "sqlite" else "INSERT IGNORE"
        marks = ", ".join("?" for _ in columns)
        self.execute(f"{verb} INTO {table} ({', '.join(columns)}) VALUES ({marks})", values)
        return self._cur.rowcount

    def increment(self, table: str, column: str, by: int, where: str, args: tuple = (),
                  also: str = "", also_args: tuple = ()) -> Optional[int]:
        """``UPDATE table SET column = column + by[, also] WHERE where``, returning the new value
        (None when no row matched) in one round trip: SQLite's RETURNING; on MariaDB/MySQL the
        value passes through ``LAST_INSERT_ID(expr)``, which the server reports in the UPDATE's
        OK packet (the driver's lastrowid) without a SELECT."""
        extra = (", " + also) if also else ""
        if self.engine == "sqlite":
            row = self.execute(f"UPDATE {table} SET {column} = {column} + ?{extra} WHERE {where} RETURNING {column}",
                               (by, *also_args, *args)).fetchone()
            return row[0] if row else None
        self.execute(f"UPDATE {table} SET {column} = LAST_INSERT_ID({column} + ?){extra} WHERE {where}",
                     (by, *also_args, *args))
        return self._cur.lastrowid if self._cur.rowcount else None

    def in_list(self, values) -> str:
        """``(?, ?, ?)`` for an IN clause of len(values) (callers chunk long lists)."""
        return "(" + ", ".join("?" for _ in values) + ")"


def _texts(row, columns) -> tuple:
    """``row`` with the bytes in ``columns`` decoded (UTF-8, as Haven wrote them)."""
    row = list(row)
    for i in columns:
        if isinstance(row[i], (bytes, bytearray)):
            try:
                row[i] = bytes(row[i]).decode("utf-8")
            except UnicodeDecodeError:
                pass  # not text after all: kept as it is
    return tuple(row)


def _mysql_integrity():
    try:
        import pymysql  # only MariaDB/MySQL stores load the driver
        return pymysql.err.IntegrityError
    except ImportError:  # pragma: no cover - pymysql is a hard dependency
        return sqlite3.IntegrityError


def _parse_faults(text: str) -> dict:
    """``"deliver:1,enqueue_submission:2"`` -> ``{"deliver": 1, "enqueue_submission": 2}``."""
    out = {}
    for item in text.split(","):
        name, _, count = item.strip().partition(":")
        if name:
            out[name] = int(count or 1)
    return out


def chunks(seq, size: int = 500):
    seq = list(seq)
    for i in range(0, len(seq), size):
        yield seq[i:i + size]


class Database:
    """A pool of connections of one engine and the threads that use them."""

    def __init__(self, url: DatabaseURL, pool_size: int = 8, busy_timeout_ms: int = 5000):
        self.url = url
        self.engine = url.engine
        self.busy_timeout_ms = busy_timeout_ms
        self._local = threading.local()
        size = 1 if self.engine == "sqlite" else max(1, pool_size)
        self.pool = ThreadPool(minthreads=1, maxthreads=size, name=f"haven-db-{self.engine}")
        self._started = False
        #: desc -> commits still to report as lost (tests only, see LOSE_AFTER_COMMIT_ENV)
        self.lose_after_commit = _parse_faults(os.environ.get(LOSE_AFTER_COMMIT_ENV, ""))
        self._faults_lock = threading.Lock()
        #: ``store.settings.StoreObserver`` told of every transaction; None: nothing measured
        self.observer = None
        #: with an observer: time.monotonic() when the pool work whose result the reactor is
        #: handling now returned (its commit), for the push latency (reactor thread only)
        self.last_commit: Optional[float] = None

    # -- lifecycle -------------------------------------------------------------------------
    def start(self, reactor) -> None:
        if not self._started:
            self.pool.start()
            self._started = True
            reactor.addSystemEventTrigger("during", "shutdown", self.stop)

    def stop(self) -> None:
        if self._started:
            self._started = False
            self.pool.stop()

    # -- connections -----------------------------------------------------------------------
    def connect(self):
        if self.engine == "sqlite":
            conn = sqlite3.connect(self.url.path, isolation_level=None, check_same_thread=False,
                                   timeout=self.busy_timeout_ms / 1000)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute("PRAGMA foreign_keys=ON")
            conn.execute(f"PRAGMA busy_timeout={int(self.busy_timeout_ms)}")
            # SQLite's default page cache is 2 MB; a search walks the folder's index entries and
            # the text rows of tens of thousands of messages, and re-reads them from the OS on
            # every query with it (BODY+SUBJECT at 20,000 messages: 13 -> 10 ms with 64 MiB).
            conn.execute(f"PRAGMA cache_size=-{SQLITE_CACHE_KIB}")
            return conn
        import pymysql  # only MariaDB/MySQL stores load the driver
        conn = pymysql.connect(host=self.url.host, port=self.url.port, user=self.url.user,
                               password=self.url.password, database=self.url.database,
                               charset="utf8mb4", autocommit=False, connect_timeout=10,
                               read_timeout=60, write_timeout=60)
        with conn.cursor() as cur:
            cur.execute("SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED")
            cur.execute("SET SESSION sql_mode = 'STRICT_TRANS_TABLES,NO_ENGINE_SUBSTITUTION'")
            try:
                cur.execute(GALERA_CAUSAL_READS)
            except pymysql.err.MySQLError as e:
                if not e.args or e.args[0] != 1193:  # unknown variable: MySQL, no wsrep
                    raise
        return conn

    def _conn(self):
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = self.connect()
        return conn

    def _drop_conn(self) -> None:
        conn = getattr(self._local, "conn", None)
        self._local.conn = None
        if conn is not None:
            try:
                conn.close()
            except Exception:
                pass

    # -- running transactions --------------------------------------------------------------
    def run_sync(self, desc: str, fn: Callable, *args, **kwargs):
        """Run ``fn(txn, *args)`` in one transaction on the calling thread, with retries."""
        return self._run_here(desc, fn, args, kwargs, "BEGIN IMMEDIATE")

    def run_read(self, desc: str, fn: Callable, *args, **kwargs):
        """Run a read-only ``fn(txn, *args)`` on the calling thread's own connection, for
        threads of their own (the WSGI workers of the CalDAV gateway): no hop to the DB pool.
        SQLite: a deferred transaction (WAL readers never block the writer nor wait for it);
        MariaDB: the thread's connection, READ COMMITTED.  ``fn`` must not write."""
        return self._run_here(desc, fn, args, kwargs, "BEGIN")

    def snapshot_to_sqlite(self, dest: str, prepare: Callable, copy_rows: int = 1000) -> None:
        """A consistent copy of the whole database in a new SQLite file ``dest`` (the backup's
        portable format), from a connection of its own, while the store goes on being used.
        SQLite: the backup API in one step (a read transaction's snapshot; WAL lets writers go
        on).  MariaDB/MySQL: ``prepare(Txn)`` makes Haven's schema in the file, then every
        table's rows are copied from one REPEATABLE READ snapshot (``START TRANSACTION WITH
        CONSISTENT SNAPSHOT``), streamed, ``copy_rows`` at a time.  Blocking: a worker thread."""
        out = sqlite3.connect(dest, isolation_level=None)
        try:
            if self.engine == "sqlite":
                src = sqlite3.connect(f"file:{self.url.path}?mode=ro", uri=True)
                try:
                    src.backup(out)
                finally:
                    src.close()
                return
            import pymysql  # only MariaDB/MySQL stores load the driver
            cur = out.cursor()
            cur.execute("BEGIN")
            prepare(Txn("sqlite", cur))
            tables = [r[0] for r in cur.execute("SELECT name FROM sqlite_master WHERE type = 'table' "
                                                "AND name NOT LIKE 'sqlite_%' AND name <> 'applied_schema_deltas'")]
            src = self.connect()
            try:
                with src.cursor() as c:
                    c.execute("SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ")
                    c.execute("START TRANSACTION WITH CONSISTENT SNAPSHOT")
                for table in tables:
                    info = list(out.execute(f"PRAGMA table_info({table})"))
                    cols = [r[1] for r in info]
                    # MySQL's VARBINARY names come back as bytes: text columns get text in SQLite
                    text = [i for i, r in enumerate(info) if any(t in (r[2] or "").upper() for t in ("CHAR", "TEXT"))]
                    marks = ", ".join("?" for _ in cols)
                    with src.cursor(pymysql.cursors.SSCursor) as c:
                        c.execute(f"SELECT {', '.join(cols)} FROM {table}")
                        while True:
                            rows = c.fetchmany(copy_rows)
                            if not rows:
                                break
                            if text:
                                rows = [_texts(row, text) for row in rows]
                            cur.executemany(f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({marks})", rows)
                src.rollback()
            finally:
                src.close()
            cur.execute("COMMIT")
        finally:
            out.close()

    def pool_usage(self) -> tuple:
        """``(threads working, threads at most)`` of the DB pool."""
        return len(self.pool.working), self.pool.max

    def _run_here(self, desc, fn, args, kwargs, begin: str):
        observer = self.observer
        if observer is None:
            return self._retrying(desc, fn, args, kwargs, begin)
        started = time.perf_counter()
        try:
            return self._retrying(desc, fn, args, kwargs, begin)
        finally:
            observer.transaction(desc, time.perf_counter() - started)

    def _retrying(self, desc, fn, args, kwargs, begin: str):
        """Attempts until one commits: up to RETRIES retries after retryable errors, and
        CONFLICT_RETRIES more after write conflicts; between two, a pause that doubles from
        20 ms (at most 1 s), jittered so that two nodes whose transactions conflicted do not
        collide again in lockstep."""
        delay = 0.02
        retries = conflicts = 0
        while True:
            try:
                return self._attempt(desc if retries == 0 else None, fn, args, kwargs, begin)
            except errors.StoreError:
                raise
            except IntegrityError:
                raise
            except Exception as e:
                retryable, reconnect = self._classify(e)
                if reconnect:
                    self._drop_conn()
                conflict = self._conflict(e)
                last = conflicts == CONFLICT_RETRIES if conflict else retries - conflicts == RETRIES
                unavailable = self._unavailable(e)
                if unavailable is not None and (unavailable.permanent or last):
                    log.error("%s: %s", desc, unavailable.detail)
                    raise unavailable from e
                if not retryable or last:
                    if retryable:
                        log.warning("%s: giving up after %d attempts: %s", desc, retries + 1, e)
                        raise errors.TemporaryFailure("the store is busy, try again later") from e
                    log.exception("%s failed", desc)
                    raise errors.TemporaryFailure("the store failed, try again later") from e
                log.info("%s: retrying after %s", desc, e)
                retries += 1
                conflicts += conflict
                time.sleep(delay * random.uniform(0.5, 1.5))
                delay = min(delay * 2, 1.0)

    def _attempt(self, desc, fn, args, kwargs, begin: str = "BEGIN IMMEDIATE"):
        conn = self._conn()
        if self.engine == "sqlite":
            cur = conn.cursor()
            cur.execute(begin)
            try:
                result = fn(Txn("sqlite", cur), *args, **kwargs)
                cur.execute("COMMIT")
                self._committed(desc)
                return result
            except BaseException:
                if conn.in_transaction:
                    conn.rollback()
                raise
            finally:
                cur.close()
        cur = conn.cursor()
        try:
            result = fn(Txn("mysql", cur), *args, **kwargs)
            conn.commit()
            self._committed(desc)
            return result
        except BaseException:
            try:
                conn.rollback()
            except Exception:
                self._drop_conn()
            raise
        finally:
            try:
                cur.close()
            except Exception:
                pass

    def _committed(self, desc: Optional[str]) -> None:
        """After a COMMIT that landed (``desc`` None on a retry): the test hook
        (LOSE_AFTER_COMMIT_ENV) reports it lost with the error the engine's driver raises for
        a dropped connection."""
        if not self.lose_after_commit or desc is None:
            return
        with self._faults_lock:
            left = self.lose_after_commit.get(desc, 0)
            if left <= 0:
                return
            self.lose_after_commit[desc] = left - 1
        log.warning("%s: committed; reporting the connection lost (%s)", desc, LOSE_AFTER_COMMIT_ENV)
        if self.engine == "sqlite":
            raise sqlite3.OperationalError("database is locked (after commit, test hook)")
        import pymysql  # only MariaDB/MySQL stores load the driver
        raise pymysql.err.OperationalError(2013, "Lost connection to MySQL server during query (test hook)")

    def _classify(self, e: Exception) -> tuple[bool, bool]:
        """(retryable, reconnect) for a driver exception."""
        if isinstance(e, sqlite3.OperationalError):
            msg = str(e).lower()
            return ("locked" in msg or "busy" in msg), False
        try:
            import pymysql  # only MariaDB/MySQL stores load the driver
        except ImportError:  # pragma: no cover
            return False, False
        if isinstance(e, (pymysql.err.OperationalError, pymysql.err.InterfaceError)):
            code = e.args[0] if e.args and isinstance(e.args[0], int) else 0
            if code in MYSQL_RETRY_SAME_CONNECTION:
                return True, False
            # on a new connection: 2003 can't connect, 2006 gone away, 2013 lost connection,
            # 0 interface closed, 1927 connection killed, 4031 idle too long; Galera: 1047
            # "WSREP has not yet prepared node for application use" (the node left the
            # cluster's primary component, or is still joining); any other
            return True, True
        return False, False

    def _conflict(self, e: Exception) -> bool:
        """A write conflict: another transaction (on a Galera cluster: another node's) won."""
        if self.engine != "mysql":
            return False
        import pymysql  # only MariaDB/MySQL stores load the driver
        return (isinstance(e, pymysql.err.OperationalError) and bool(e.args)
                and e.args[0] in MYSQL_CONFLICTS)

    def _unavailable(self, e: Exception) -> Optional[errors.StoreUnavailable]:
        """What an admin must hear when the database cannot be used at all (not a busy lock)."""
        if isinstance(e, sqlite3.OperationalError) and "unable to open" in str(e).lower():
            return errors.StoreUnavailable(f"cannot open the SQLite database {self.url.path}: {e}", permanent=True)
        if self.engine != "mysql":
            return None
        import pymysql  # only MariaDB/MySQL stores load the driver
        if not isinstance(e, pymysql.err.OperationalError) or not e.args or not isinstance(e.args[0], int):
            return None
        where = f"MariaDB/MySQL at {self.url.host}:{self.url.port}"
        code, message = e.args[0], (e.args[1] if len(e.args) > 1 else "")
        if code in (1044, 1045):
            return errors.StoreUnavailable(f"{where} refused user {self.url.user!r}: access denied ({message}); "
                                           "check the user and password in [store] url", permanent=True)
        if code == 1049:
            return errors.StoreUnavailable(f"{where} has no database {self.url.database!r}: create it "
                                           "(CREATE DATABASE ... CHARACTER SET utf8mb4) or fix [store] url",
                                           permanent=True)
        if code == 2005:
            return errors.StoreUnavailable(f"cannot resolve the database host {self.url.host!r} ({message})",
                                           permanent=True)
        if code == 2003:
            return errors.StoreUnavailable(f"cannot connect to {where}: {message}", permanent=False)
        return None

    def run_blocking(self, desc: str, fn: Callable, *args, **kwargs):
        """From a thread of its own (neither the reactor's nor one of this pool's, e.g. a WSGI
        worker): run ``fn(txn, *args)`` in the pool and wait for the result, without a hop
        through the reactor.  Store errors are raised as they are."""
        done = threading.Event()
        box: list = []

        def finished(ok, result):
            box.append((ok, result))
            done.set()
        self.pool.callInThreadWithCallback(finished, self.run_sync, desc, fn, *args, **kwargs)
        done.wait()
        ok, result = box[0]
        if not ok:
            result.raiseException()
        return result

    def run_interaction(self, desc: str, fn: Callable, *args, **kwargs) -> defer.Deferred:
        """Deferred firing with ``fn(txn, *args)`` run in a DB pool thread."""
        return self.run_in_pool(self.run_sync, desc, fn, *args, **kwargs)

    def run_in_pool(self, fn: Callable, *args, **kwargs) -> defer.Deferred:
        """Run a plain function on a DB pool thread (it may call :meth:`run_sync`)."""
        from twisted.internet import reactor  # the installed one, asyncioreactor (not at import time)
        if self.observer is None:
            return threads.deferToThreadPool(reactor, self.pool, fn, *args, **kwargs)
        d = threads.deferToThreadPool(reactor, self.pool, _stamped, fn, args, kwargs)
        d.addCallback(self._note_commit)
        return d

    def _note_commit(self, stamped):
        """Reactor thread, just before the caller resumes: its commit time is the latest."""
        result, self.last_commit = stamped
        return result


def _stamped(fn, args, kwargs) -> tuple:
    """Pool thread: ``fn``'s result and when it returned (after its COMMIT)."""
    return fn(*args, **kwargs), time.monotonic()
