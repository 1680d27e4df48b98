"""``haven deliver``: a message from standard input into the recipients' mailboxes, for an
MTA's pipe transport.

Exit codes (sysexits(3), what the MTA reads; Postfix's pipe(8) bounces 67 and 77, defers 75):
0 delivered, 67 no such user, 75 try again later (any failure of Haven itself, and over quota
with ``[lmtp] over_quota = temporary``), 77 refused, with the reason on standard error (which
Postfix quotes in the bounce): by the recipient's Sieve script, over the hard quota ("mailbox
full", as Dovecot's LDA answers it), larger than ``[server] max_message_size``, or any other
permanent refusal of the store.  No other code: an MTA knows only these."""

from __future__ import annotations

import logging
import sys

from gateways.cli.runner import EX_NOPERM, EX_NOUSER, EX_OK, EX_TEMPFAIL, run_command
from store import errors

log = logging.getLogger("haven.deliver")


def main(args) -> int:
    return run_command(args, cmd_deliver, stdin=True, for_mta=True)


async def cmd_deliver(store, args, raw) -> int:
    raw = raw.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")  # pipe transports hand over LF lines
    if not raw.startswith(b"Return-Path:"):
        raw = b"Return-Path: <" + args.sender.encode("utf-8", "replace") + b">\r\n" + raw
    delivery = store.begin_delivery(args.sender)
    for address in args.address:
        try:
            await delivery.add_recipient(address)
        except errors.NotFound:
            print(f"haven: {address}: no such user", file=sys.stderr)
            return EX_NOUSER
        except errors.InvalidInput as e:
            print(f"haven: {e}", file=sys.stderr)
            return EX_NOUSER
    results = await delivery.commit(raw, junk=args.junk)
    for r in results:
        log.info("deliver from=<%s> to=<%s> size=%d status=%s%s%s", args.sender, r.recipient.original, len(raw),
                 "sent" if r.error is None else "failed", f" ({r.error})" if r.error else
                 f" folder={r.folder} uid={r.uid}", f" rules=[{'; '.join(r.actions)}]" if r.actions else "")
    failures = [r for r in results if r.error is not None]
    for r in failures:
        if isinstance(r.error, errors.Rejected):
            print(f"haven: {r.recipient.original}: rejected: {r.error}", file=sys.stderr)
        elif isinstance(r.error, errors.OverQuota):
            print(f"haven: {r.recipient.original}: mailbox full", file=sys.stderr)
        elif isinstance(r.error, errors.TooBig):
            print(f"haven: {r.recipient.original}: message too large", file=sys.stderr)
        else:
            print(f"haven: {r.recipient.original}: {r.error}", file=sys.stderr)
    if not failures:
        return EX_OK
    # 75 = try again later (over quota too, with [lmtp] over_quota = temporary); 77 = refused
    temporary = args.loaded_config.get("lmtp", "over_quota") == "temporary"
    if any(not isinstance(r.error, errors.StoreError) or isinstance(r.error, errors.TemporaryFailure)
           or (temporary and isinstance(r.error, errors.OverQuota)) for r in failures):
        return EX_TEMPFAIL
    return EX_NOPERM
