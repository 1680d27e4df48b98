"""``haven auth``: what the login throttle holds (auth/cred.py), and lifting it by hand."""

from __future__ import annotations

import ipaddress
import time

from auth.cred import penalty_seconds
from gateways.cli.audit import audit
from gateways.cli.runner import EX_OK, EX_USAGE, run_command


def main(args) -> int:
    return run_command(args, cmd_auth)


async def cmd_auth(store, args, raw) -> int:
    config = args.loaded_config
    window = config.getfloat("auth", "throttle_window")
    if args.auth_command == "status":
        return await _status(store, window, config.getint("auth", "block_after"),
                             config.getfloat("auth", "max_penalty"))
    return await _unblock(store, args.target.strip())


def _when(epoch: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(epoch))


async def _status(store, window: float, block_after: int, max_penalty: float) -> int:
    rows = await store.list_login_failures(int(time.time() - window))
    if not rows:
        print(f"no failed logins in the last {int(window)} s")
        return EX_OK
    blocked = [r for r in rows if block_after and r.remote_ip and r.failures >= block_after]
    print(f"blocked ({block_after} or more wrong passwords for one account from one address "
          f"in {int(window)} s): {len(blocked) or 'none'}")
    for r in blocked:
        print(f"  {r.remote_ip:<39} {r.address:<32} {r.failures:>4} failures, until {_when(r.last_at + window)} "
              f"at the latest")
    by_ip, by_account = {}, {}
    for r in rows:
        if r.remote_ip:
            by_ip[r.remote_ip] = by_ip.get(r.remote_ip, 0) + r.failures
        by_account[r.address] = by_account.get(r.address, 0) + r.failures
    print("slowed (each answer waits; never refused):")
    for label, table in (("address", by_ip), ("account", by_account)):
        for key, n in sorted(table.items(), key=lambda kv: -kv[1]):
            print(f"  {label} {key:<39} {n:>4} failures, waits {penalty_seconds(n, max_penalty):g} s")
    return EX_OK


async def _unblock(store, target: str) -> int:
    if "@" in target:
        state = await store.login_state(target, "", 0)
        removed = await store.clear_login_failures(subject=state.subject)
        what = f"account {state.credentials.address}" if state.credentials else f"login {target}"
    else:
        try:
            ip = str(ipaddress.ip_address(target))
        except ValueError:
            print(f"haven: {target!r} is neither an address (user@domain) nor an IP address")
            return EX_USAGE
        removed = await store.clear_login_failures(remote_ip=ip)
        what = f"client address {ip}"
    if removed:
        audit("auth.unblock", target=what, forgotten=removed)
        print(f"unblocked {what}: forgot {removed} failed login{'s' if removed != 1 else ''}")
    else:
        print(f"nothing to unblock: no failed logins recorded for {what}")
    return EX_OK
