"""``haven alias``: other addresses delivering to an account."""

from __future__ import annotations

from gateways.cli.audit import audit
from gateways.cli.runner import EX_OK, run_command


def main(args) -> int:
    return run_command(args, cmd_alias)


async def cmd_alias(store, args, raw) -> int:
    if args.alias_command == "add":
        await store.add_alias(args.alias, args.address)
        audit("alias.add", alias=args.alias, address=args.address)
        print(f"{args.alias} -> {args.address}")
    elif args.alias_command == "del":
        await store.delete_alias(args.alias)
        audit("alias.del", alias=args.alias)
        print(f"deleted alias {args.alias}")
    else:
        for alias, address in await store.list_aliases():
            print(f"{alias}\t{address}")
    return EX_OK
