"""``haven db``: the schema version, and migrating to this Haven's (the one command that creates
a store)."""

from __future__ import annotations

from gateways.cli.audit import audit
from gateways.cli.runner import EX_CONFIG, EX_OK, run_command
from gateways.service import describe_store


def main(args) -> int:
    return run_command(args, cmd_db, check_schema=False, create=args.db_command == "migrate")


async def cmd_db(store, args, raw) -> int:
    current, latest = await store.schema_version()
    where = describe_store(args.loaded_config)
    if args.db_command == "migrate":
        applied = await store.migrate()
        if applied:
            audit("db.migrate", applied=applied)
        print(f"{where}: " + ("applied " + ", ".join(applied) if applied else f"schema is up to date (version {latest})"))
        return EX_OK
    if current is None:
        print(f"{where}: no Haven schema: run `haven db migrate`")
        return EX_CONFIG
    print(f"{where}: schema version {current}, this Haven knows {latest}"
          + ("" if current == latest else ": run `haven db migrate`" if current < latest else ": upgrade Haven"))
    # non-zero when behind (or ahead), so a unit's ExecStartPre=haven db status stops the start
    return EX_OK if current == latest else EX_CONFIG
