"""``haven queue``: the outbound queue of SMTP submission (mail waiting for ``[submission] relay``)."""

from __future__ import annotations

import time

from gateways.cli.audit import audit
from gateways.cli.runner import EX_OK, run_command


def main(args) -> int:
    return run_command(args, cmd_queue)


def when(t) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t))


async def cmd_queue(store, args, raw) -> int:
    if args.queue_command == "list":
        messages = await store.list_outbound()
        waiting = 0
        for m in messages:
            print(f"{m.id}\t{when(m.created_at)}\t{m.size} bytes\tfrom <{m.mail_from}>")
            for r in m.recipients:
                waiting += r.status == "queued"
                due = f"\tnext {when(r.next_attempt)}" if r.status == "queued" else ""
                error = f"\t({r.last_error})" if r.last_error else ""
                print(f"\t<{r.address}>\t{r.status}\tattempts {r.attempts}{due}{error}")
        print(f"-- {len(messages)} message{'s' * (len(messages) != 1)}, {waiting} "
              f"recipient{'s' * (waiting != 1)} waiting" if messages else "the queue is empty")
    elif args.queue_command == "retry":
        count = await store.retry_outbound(args.id)
        audit("queue.retry", id=args.id if args.id is not None else "all", recipients=count)
        print(f"{count} recipient{'s' * (count != 1)} due now"
              + (f" (message {args.id})" if args.id is not None else ""))
    else:
        await store.delete_outbound(args.id)
        audit("queue.delete", id=args.id)
        print(f"deleted message {args.id} from the queue (no bounce sent)")
    return EX_OK
