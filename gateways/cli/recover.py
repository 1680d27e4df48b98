"""``haven recover`` and ``haven purge``: the soft-delete lifecycle of an account's messages,
events and contacts (list and restore what clients deleted; remove it for good once past
``[store] softdelete_lifetime``)."""

from __future__ import annotations

import sys
import time

from gateways.cli.audit import audit
from gateways.cli.runner import EX_DATAERR, EX_OK, run_command


def main(args) -> int:
    return run_command(args, cmd_purge if args.command == "purge" else cmd_recover)


async def cmd_purge(store, args, raw) -> int:
    report = await store.purge(args.days)
    audit("purge", days=args.days, messages=report.messages, dav_items=report.dav_items, folders=report.folders,
          blobs=report.blobs, accounts=report.accounts)
    print(f"purged {report.messages} messages, {report.dav_items} calendar/contact items, {report.folders} folders, "
          f"{report.blobs} blobs, {report.accounts} deleted accounts")
    return EX_OK


def when(t) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(t))


async def cmd_recover(store, args, raw) -> int:
    account = await store.get_account(args.address)
    if args.recover_command == "list":
        for item in await store.list_deleted(account.id):
            print(f"{item['id']}\t{when(item['deleted_at'])}\t{item['folder']}\t{item['size']}\t{item['subject'] or ''}")
        for item in await store.list_deleted_dav(account.id):
            print(f"dav:{item['id']}\t{when(item['deleted_at'])}\t{item['folder']}\t{item['size']}\t"
                  f"{item['component']} {item['href']} (UID {item['uid']})")
        return EX_OK
    messages = [i for kind, i in args.ids if kind == "message"]
    dav = [i for kind, i in args.ids if kind == "dav"]
    # every ID must be one `recover list` shows: a typo restores nothing rather than some
    known = {item["id"] for item in await store.list_deleted(account.id)} if messages else set()
    known_dav = {item["id"] for item in await store.list_deleted_dav(account.id)} if dav else set()
    unknown = [str(i) for i in messages if i not in known] + [f"dav:{i}" for i in dav if i not in known_dav]
    if unknown:
        print(f"haven: not recoverable for {account.address} (not in `haven recover list {account.address}`): "
              + ", ".join(unknown) + "; nothing restored", file=sys.stderr)
        return EX_DATAERR
    if messages:
        count = await store.restore_messages(account.id, messages)
        audit("recover.restore", address=account.address, messages=messages, restored=count)
        print(f"restored {count} message{'s' * (count != 1)}")
    if dav:
        count, refused = await store.restore_dav(account.id, dav)
        audit("recover.restore", address=account.address, dav=dav, restored=count)
        print(f"restored {count} calendar/contact item{'s' * (count != 1)}")
        for reason in refused:
            print(f"not restored: dav:{reason}", file=sys.stderr)
        if refused:
            return EX_DATAERR
    return EX_OK
