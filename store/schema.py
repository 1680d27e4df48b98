"""Numbered schema deltas and the ``applied_schema_deltas`` table.

Deltas live in ``store/deltas/NNN_name.sql``; a landed delta is never edited, a change is a new
file.  ``{pk}``, ``{text}``, ``{blob}`` and ``{name}`` are replaced per engine; a statement that
starts with ``{only:sqlite}`` (or ``{only:mysql}``) runs on that engine only.  ``haven db migrate`` applies
what is missing; ``haven serve`` initialises an empty database but refuses to run on an older
schema (:class:`store.errors.SchemaOutOfDate`), so an upgrade is always an explicit admin step.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

from store.engines import Txn

DELTAS_DIR = Path(__file__).with_name("deltas")

_TYPES = {
    # {name}: a short name compared exactly (MySQL's PAD SPACE collations ignore trailing blanks)
    "sqlite": {"pk": "INTEGER PRIMARY KEY AUTOINCREMENT", "text": "TEXT", "blob": "BLOB", "name": "VARCHAR(255)"},
    "mysql": {"pk": "BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY", "text": "MEDIUMTEXT", "blob": "MEDIUMBLOB",
              "name": "VARBINARY(1020)"},
}


def available_deltas() -> list[tuple[int, str, Path]]:
    found = []
    for path in sorted(DELTAS_DIR.glob("*.sql")):
        m = re.match(r"(\d+)_(\w+)\.sql$", path.name)
        if m:
            found.append((int(m.group(1)), m.group(2), path))
    return found


def latest_version() -> int:
    deltas = available_deltas()
    return deltas[-1][0] if deltas else 0


def _statements(sql: str, engine: str) -> list[str]:
    sql = "\n".join(line for line in sql.splitlines() if not line.strip().startswith("--"))
    for key, value in _TYPES[engine].items():
        sql = sql.replace("{" + key + "}", value)
    out = []
    for stmt in sql.split(";"):
        stmt = stmt.strip()
        only = re.match(r"\{only:(\w+)\}\s*", stmt)
        if only:
            if only.group(1) != engine:
                continue
            stmt = stmt[only.end():]
        if stmt:
            if engine == "mysql" and stmt.upper().startswith("CREATE TABLE"):
                stmt += " ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin"
            out.append(stmt)
    return out


def applied_versions_txn(txn: Txn) -> set | None:
    """The versions recorded in ``applied_schema_deltas``, or None for an empty database."""
    if txn.engine == "sqlite":
        exists = txn.scalar("SELECT COUNT(*) FROM sqlite_master WHERE type='table' AND name='applied_schema_deltas'")
    else:
        exists = txn.scalar("SELECT COUNT(*) FROM information_schema.tables "
                            "WHERE table_schema = DATABASE() AND table_name = 'applied_schema_deltas'")
    if not exists:
        return None
    return {r[0] for r in txn.execute("SELECT version FROM applied_schema_deltas").fetchall()}


def current_version_txn(txn: Txn) -> int | None:
    """The version the database is at: the highest delta below which none is missing (0 when
    none is applied), or None for an empty database.  Deltas are numbered when written, on
    parallel branches, and land in any order: a database that has 8 and 9 but not 7 is at 6,
    so `haven serve` refuses it and `haven db migrate` applies 7."""
    applied = applied_versions_txn(txn)
    if applied is None:
        return None
    missing = [version for version, _name, _path in available_deltas() if version not in applied]
    if missing:
        return max([v for v in applied if v < missing[0]], default=0)
    return max(applied, default=0)


def health_txn(txn: Txn) -> int | None:
    """The current version, after a read of the tables every login and delivery needs."""
    for table in ("accounts", "folders", "messages"):
        txn.execute(f"SELECT 1 FROM {table} LIMIT 1").fetchall()
    return current_version_txn(txn)


def migrate_txn(txn: Txn) -> list[str]:
    """Apply every missing delta, in order; returns the names applied.

    Note: MySQL commits DDL implicitly, so a delta that fails half way on MySQL leaves its
    earlier statements applied; deltas are therefore written to be re-runnable in that case
    (CREATE TABLE of new tables only), and each is recorded only after all its statements ran.
    """
    done = applied_versions_txn(txn)
    if done is None:
        txn.execute("CREATE TABLE applied_schema_deltas (version INTEGER NOT NULL PRIMARY KEY, "
                    "name VARCHAR(200) NOT NULL, applied_at BIGINT NOT NULL)")
        done = set()
    applied = []
    for version, name, path in available_deltas():
        if version in done:  # every missing one, also below the highest applied (see above)
            continue
        for stmt in _statements(path.read_text(encoding="utf-8"), txn.engine):
            txn.execute(stmt)
        txn.execute("INSERT INTO applied_schema_deltas (version, name, applied_at) VALUES (?, ?, ?)",
                    (version, name, int(time.time())))
        applied.append(f"{version:03d}_{name}")
    return applied
