"""``haven device``: the ActiveSync devices (phones) of accounts: what they are, when they were
last seen, their policy state, and the remote wipe an admin asks for when a phone is lost."""

from __future__ import annotations

import sys
import time

from gateways.cli.audit import audit
from gateways.cli.runner import EX_DATAERR, EX_OK, run_command
from store import errors


def main(args) -> int:
    return run_command(args, cmd_device)


def _when(ts: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(ts)) if ts else "-"


def _version(value: str) -> tuple:
    major, _, minor = (value or "0.0").partition(".")
    return (int(major), int(minor)) if major.isdigit() and minor.isdigit() else (0, 0)


def _wipe(device) -> str:
    state = device.wipe_state
    return f"{state} (account only)" if device.wipe_account_only and state != "none" else state


def _policy(device) -> str:
    if device.policy_key:
        return "provisioned"
    return "pending" if device.pending_policy_key else "none"


async def cmd_device(store, args, raw) -> int:
    if args.device_command == "list":
        accounts = [await store.get_account(args.address)] if args.address else await store.list_accounts()
        address_of = {a.id: a.address for a in accounts}
        devices = [d for d in await store.list_devices(accounts[0].id if args.address else None)
                   if d.account_id in address_of]
        for d in devices:
            print("\t".join([address_of[d.account_id], d.device_id, d.device_type or "-", d.model or "-",
                             d.os or "-", d.protocol_version or "-", _policy(d), _wipe(d),
                             _when(d.last_seen)]))
        if not devices and sys.stdout.isatty():
            print("no devices", file=sys.stderr)
        return EX_OK
    account = await store.get_account(args.address)
    try:
        device = await store.get_device(account.id, args.device_id)
    except errors.NotFound:
        print(f"haven: {args.address} has no device {args.device_id}", file=sys.stderr)
        return EX_DATAERR
    if args.device_command == "wipe":
        if args.cancel:
            await store.clear_wipe(account.id, device.device_id)
            audit("device.wipe", address=account.address, device=device.device_id, cancel="yes")
            print(f"{device.device_id} of {account.address}: wipe cancelled")
        elif args.account_only and _version(device.protocol_version) < (16, 1):
            print(f"haven: {device.device_id} speaks ActiveSync {device.protocol_version or '(unknown)'}: an "
                  f"account-only wipe needs 16.1; wipe it whole (without --account-only) or not at all",
                  file=sys.stderr)
            return EX_DATAERR
        else:
            await store.request_wipe(account.id, device.device_id, account_only=args.account_only)
            audit("device.wipe", address=account.address, device=device.device_id,
                  account_only="yes" if args.account_only else None)
            what = "this account's data" if args.account_only else "itself"
            print(f"{device.device_id} of {account.address}: it erases {what} at its next connection "
                  f"(`haven device list` shows done once it confirmed)")
    else:
        await store.delete_device(account.id, device.device_id)
        audit("device.remove", address=account.address, device=device.device_id)
        print(f"{device.device_id} of {account.address}: forgotten (it must set the account up again or "
              f"start over from a full sync)")
    return EX_OK
