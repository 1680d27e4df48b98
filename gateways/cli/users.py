"""``haven user``: accounts, their lifecycle (active, disabled, deleted until purged), passwords and quotas."""

from __future__ import annotations

import getpass
import sys

from conf import format_size, parse_size
from gateways.cli.audit import audit
from gateways.cli.recover import when
from gateways.cli.runner import EX_OK, EX_USAGE, hash_password, run_command


def main(args) -> int:
    if args.user_command == "del" and args.now and not args.yes and not confirm_removal(args.address):
        return EX_USAGE
    return run_command(args, cmd_user)


def confirm_removal(address: str) -> bool:
    """Ask on the terminal before ``user del --now`` (before the store opens: nothing waits on
    the reactor for a person); without a terminal, refuse unless --yes was given."""
    if not sys.stdin.isatty():
        print(f"haven: `user del --now` removes {address} for good: give --yes to confirm without a terminal "
              f"(or `haven user del {address}` to delete it restorably)", file=sys.stderr)
        return False
    sys.stderr.write(f"Remove {address} and all its mail, calendars and contacts now? "
                     "This cannot be undone. [y/N] ")
    sys.stderr.flush()
    if sys.stdin.readline().strip().lower() in ("y", "yes"):
        return True
    print("haven: nothing removed", file=sys.stderr)
    return False


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
        print("\t".join(LIST_COLUMNS))
        for summary in await store.list_account_summaries():
            print(list_line(summary))
    elif action == "del" and args.now:
        await store.delete_account(args.address)
        audit("user.del", address=args.address, now="yes")
        print(f"removed {args.address} and all its data")
    elif action == "del":
        purge_at = await store.mark_account_deleted(args.address)
        audit("user.del", address=args.address)
        print(f"deleted {args.address}: no login, no mail; its data is kept and "
              + (f"purged after {when(purge_at)}" if purge_at else "never purged (softdelete_lifetime = 0)")
              + f"; `haven user restore {args.address}` undoes it")
    elif action == "restore":
        await store.restore_account(args.address)
        audit("user.restore", address=args.address)
        print(f"restored {args.address}: active, with all its data")
    elif action in ("disable", "enable"):
        changed = await (store.disable_account if action == "disable" else store.enable_account)(args.address)
        if changed:
            audit(f"user.{action}", address=args.address)
        print(f"{action}d {args.address}" if changed else f"{args.address} was already {action}d")
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


LIST_COLUMNS = ("ADDRESS", "STATE", "USAGE", "MESSAGES", "LAST LOGIN", "NAME")
"""``haven user list``: one header line, then one tab-separated line per account."""


def list_line(summary) -> str:
    state = summary.state
    if state == "deleted":
        state += f", purged after {when(summary.purge_at)}" if summary.purge_at else ", never purged"
    return "\t".join((summary.account.address, state, format_size(summary.used_bytes), str(summary.used_messages),
                      when(summary.last_login) if summary.last_login else "never", summary.account.name or ""))


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
