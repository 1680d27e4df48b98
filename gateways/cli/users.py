"""``haven user``: accounts, their passwords and quotas."""

from __future__ import annotations

import getpass
import sys

from conf import format_size, parse_size
from gateways.cli.audit import audit
from gateways.cli.runner import EX_OK, hash_password, run_command


def main(args) -> int:
    return run_command(args, cmd_user)


def read_password(args, prompt="Password: ") -> str:
    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    elif sys.stdin.isatty():
        password = getpass.getpass(prompt)
        if getpass.getpass("Again: ") != password:
            raise SystemExit("haven: passwords differ")
    else:
        raise SystemExit("haven: give --password-stdin to read the password from standard input")
    if not password:
        raise SystemExit("haven: empty password refused")
    return password


async def cmd_user(store, args, raw) -> int:
    action = args.user_command
    if action == "add":
        password = read_password(args)
        account = await store.create_account(args.address, await hash_password(password), args.name)
        audit("user.add", address=account.address, name=args.name)
        print(f"created {account.address}")
    elif action == "list":
        for account in await store.list_accounts():
            print(account.address + (f"\t{account.name}" if account.name else ""))
    elif action == "del":
        await store.delete_account(args.address)
        audit("user.del", address=args.address)
        print(f"deleted {args.address}")
    elif action == "passwd":
        account = await store.get_account(args.address)
        password = read_password(args, "New password: ")
        await store.set_password_hash(account.id, await hash_password(password))
        audit("user.passwd", address=account.address)
        print(f"password of {account.address} changed")
    elif action == "quota":
        account = await store.get_account(args.address)
        limits = {level: quota_size(getattr(args, level)) for level in ("warn", "soft", "hard")}
        if any(v is not None for v in limits.values()):
            quota = await store.set_quota(account.id, **limits)
            audit("user.quota", address=account.address,
                  **{level: getattr(args, level) for level in limits if limits[level] is not None})
        else:
            quota = await store.get_quota(account.id)
        print(quota_text(account.address, quota))
    return EX_OK


def quota_size(value):
    """``--hard 2G`` -> bytes; ``default`` -> -1 (the [quota] setting); None when not given."""
    if value is None:
        return None
    if value.strip().lower() == "default":
        return -1
    try:
        return parse_size(value)
    except ValueError as e:
        raise SystemExit(f"haven: {value}: {e}")


def quota_text(address, quota) -> str:
    def limit(n):
        return format_size(n) if n > 0 else "unlimited"
    state = ("over hard" if quota.hard > 0 and quota.used_bytes >= quota.hard else "over soft" if quota.over_soft
             else "over warn" if quota.over_warn else "ok")
    return (f"{address}: {format_size(quota.used_bytes)} in {quota.used_messages} messages ({state})\n"
            f"  warn {limit(quota.warn)}, soft {limit(quota.soft)}, hard {limit(quota.hard)}")
