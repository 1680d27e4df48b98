"""``haven sieve``: an account's Sieve scripts, the delivery rules ManageSieve clients manage."""

from __future__ import annotations

import sys

from gateways.cli.audit import audit
from gateways.cli.runner import EX_DATAERR, EX_OK, EX_USAGE, run_command
from store import errors


def main(args) -> int:
    return run_command(args, cmd_sieve, stdin=getattr(args, "file", None) == "-")


async def cmd_sieve(store, args, raw) -> int:
    account = await store.get_account(args.address)
    action = args.sieve_command
    if action == "list":
        for script in await store.list_sieve_scripts(account.id):
            print(f"{script.name}\t{script.size} bytes" + ("\tactive" if script.active else ""))
    elif action == "get":
        sys.stdout.write(await store.get_sieve_script(account.id, args.name))
    elif action == "put":
        return await put_script(store, args, raw, account)
    elif action in ("activate", "deactivate"):
        if action == "activate" and bool(args.name) == bool(args.none):
            print("haven: give the script NAME to activate, or --none", file=sys.stderr)
            return EX_USAGE
        if action == "deactivate" or args.none:
            await store.set_active_sieve_script(account.id, None)
            audit("sieve.deactivate", address=account.address)
            print(f"{account.address} has no active script now")
        else:
            await store.set_active_sieve_script(account.id, args.name)
            audit("sieve.activate", address=account.address, script=args.name)
            print(f"script {args.name!r} of {account.address} is active")
    else:
        try:
            await store.delete_sieve_script(account.id, args.name)
        except errors.PermissionDenied as e:
            print(f"haven: {e} (`haven sieve deactivate {account.address}`)", file=sys.stderr)
            return EX_DATAERR
        audit("sieve.delete", address=account.address, script=args.name)
        print(f"deleted script {args.name!r} of {account.address}")
    return EX_OK


async def put_script(store, args, raw, account) -> int:
    try:
        data = raw if args.file == "-" else open(args.file, "rb").read()
    except OSError as e:
        print(f"haven: {args.file}: {e.strerror}", file=sys.stderr)
        return EX_DATAERR
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        print(f"haven: {args.file}: not UTF-8 ({e})", file=sys.stderr)
        return EX_DATAERR
    try:
        await store.put_sieve_script(account.id, args.name, text)
    except errors.InvalidInput as e:
        print(f"haven: script {args.name!r} not stored: {e}", file=sys.stderr)
        return EX_DATAERR
    except (errors.TooBig, errors.OverQuota) as e:
        print(f"haven: script {args.name!r} not stored: {e} (see [rules] in the configuration)", file=sys.stderr)
        return EX_DATAERR
    audit("sieve.put", address=account.address, script=args.name, size=len(data))
    if args.activate:
        await store.set_active_sieve_script(account.id, args.name)
        audit("sieve.activate", address=account.address, script=args.name)
    print(f"stored script {args.name!r} of {account.address}" + (", active" if args.activate else ""))
    return EX_OK
