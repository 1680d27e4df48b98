"""What the MariaDB engine does with each error a Galera cluster gives while a node fails or two
nodes write the same row: retried (on the same connection or a new one), and when the retries
run out a TemporaryFailure (LMTP 451, IMAP NO [UNAVAILABLE]), never anything else.

No server here: the transaction attempt is replaced by one that raises the driver's own
exceptions, as pymysql raises them for these error packets.  tests/e2e/test_galera.py shows the
same on a real three-node cluster.
"""

from __future__ import annotations

from urllib.parse import urlsplit

import pymysql
import pytest

from store import engines, errors
from store.engines import CONFLICT_RETRIES, RETRIES, Database
from tests.conftest import MYSQL_URL, require_engine


class URL:
    engine = "mysql"
    path = None
    host = "127.0.0.1"
    port = 1
    user = "haven"
    password = ""
    database = "haven"


def failing(monkeypatch, failures: list):
    """A Database whose attempts raise ``failures`` one after the other, then succeed."""
    db = Database(URL())
    log = {"attempts": 0, "reconnects": 0}

    def attempt(desc, fn, args, kwargs, begin):
        log["attempts"] += 1
        if failures:
            raise failures.pop(0)
        return "committed"

    def drop():
        log["reconnects"] += 1
    monkeypatch.setattr(db, "_attempt", attempt)
    monkeypatch.setattr(db, "_drop_conn", drop)
    monkeypatch.setattr(engines.time, "sleep", lambda s: None)
    return db, log


def mysql_error(code: int, message: str = "") -> Exception:
    """The exception pymysql raises for an error packet with ``code`` (its own mapping)."""
    cls = pymysql.err.error_map.get(code, pymysql.err.InternalError if code < 1000 else pymysql.err.OperationalError)
    return cls(code, message)


# (code, message, reconnects): what Galera and MariaDB answer while a node fails or conflicts
GALERA_ERRORS = [
    (1213, "Deadlock found when trying to get lock; try restarting transaction", False),  # certification
    (1020, "Record has changed since last read", False),
    (1205, "Lock wait timeout exceeded; try restarting transaction", False),
    (1180, "Got error 6 \"No such device or address\" during COMMIT", False),
    (1317, "Query execution was interrupted", False),
    (1047, "WSREP has not yet prepared node for application use", True),
    (2013, "Lost connection to MySQL server during query", True),
    (2006, "MySQL server has gone away", True),
    (1927, "Connection was killed", True),
    (4031, "The client was disconnected by the server because of inactivity", True),
]


@pytest.mark.parametrize("code,message,reconnects", GALERA_ERRORS, ids=[str(e[0]) for e in GALERA_ERRORS])
def test_galera_errors_are_retried(monkeypatch, code, message, reconnects):
    db, log = failing(monkeypatch, [mysql_error(code, message)])
    assert db.run_sync("deliver", lambda txn: None) == "committed"
    assert log == {"attempts": 2, "reconnects": int(reconnects)}


@pytest.mark.parametrize("code,message,reconnects", GALERA_ERRORS, ids=[str(e[0]) for e in GALERA_ERRORS])
def test_galera_errors_that_last_are_a_temporary_failure(monkeypatch, code, message, reconnects):
    db, log = failing(monkeypatch, [mysql_error(code, message) for _ in range(50)])
    with pytest.raises(errors.TemporaryFailure):
        db.run_sync("deliver", lambda txn: None)
    assert log["attempts"] == 1 + (CONFLICT_RETRIES if code in (1213, 1020) else RETRIES)


def test_conflicts_have_a_budget_of_their_own(monkeypatch):
    """A busy row on a multi-writer cluster may lose several rounds in a row: conflicts are
    retried CONFLICT_RETRIES times, apart from the RETRIES for other errors."""
    conflicts = [mysql_error(1213) for _ in range(CONFLICT_RETRIES)]
    lost = [mysql_error(2013) for _ in range(RETRIES)]
    db, log = failing(monkeypatch, conflicts + lost)
    assert db.run_sync("deliver", lambda txn: None) == "committed"
    assert log["attempts"] == CONFLICT_RETRIES + RETRIES + 1


def test_an_unreachable_node_is_store_unavailable(monkeypatch):
    db, log = failing(monkeypatch, [mysql_error(2003, "Can't connect to MySQL server") for _ in range(50)])
    with pytest.raises(errors.StoreUnavailable) as raised:
        db.run_sync("deliver", lambda txn: None)
    assert not raised.value.permanent
    assert log["attempts"] == RETRIES + 1


def test_causal_reads_change_nothing_on_a_server_without_wsrep():
    """Every new MariaDB connection asks for causal reads where wsrep is on (a Galera node:
    tests/e2e/test_galera.py); on a plain MariaDB the session keeps the server's setting."""
    require_engine("mariadb")
    u = urlsplit(MYSQL_URL)

    class Plain(URL):
        host, port, user, password = u.hostname, u.port or 3306, u.username or "root", u.password or ""
        database = ""
    conn = Database(Plain()).connect()
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT @@wsrep_on, @@session.wsrep_sync_wait, @@global.wsrep_sync_wait")
            wsrep_on, session, server = cur.fetchone()
    finally:
        conn.close()
    assert not wsrep_on
    assert session == server
