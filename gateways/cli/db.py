"""``haven db``: the schema version, and migrating to this Haven's."""

from __future__ import annotations

from gateways.cli.audit import audit
from gateways.cli.runner import EX_OK, run_command


def main(args) -> int:
    return run_command(args, cmd_db, check_schema=False)


async def cmd_db(store, args, raw) -> int:
    current, latest = await store.schema_version()
    if args.db_command == "migrate":
        applied = await store.migrate()
        if applied:
            audit("db.migrate", applied=applied)
        print("applied: " + ", ".join(applied) if applied else f"schema is up to date (version {latest})")
    else:
        print(f"schema version {current or 0}, this Haven knows {latest}"
              + ("" if (current or 0) == latest else ": run `haven db migrate`"))
    return EX_OK
