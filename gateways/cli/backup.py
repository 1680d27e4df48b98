"""``haven backup DEST``, ``haven backup --verify SRC``, ``haven restore SRC --account ADDRESS
[--into ADDRESS]`` and ``haven restore SRC``: the whole store backed up online (store/backup.py
has the format and its consistency), checked, one account brought back from it into the
running server, or every account into an empty store (a new server, on either engine).

A restore copies the account's live mail (folders, bytes, flags, keywords, dates), calendars,
address books and Sieve scripts from the backup into the target account, as ``haven import``
does: what is there already (same Message-ID, date and size; the same object UID) is not
duplicated, so a restore can be repeated.  The target is created (with the backed-up password)
when it does not exist.  The other accounts are not touched.

A whole restore (no ``--account``) refuses a store that has accounts (exit 65: restore them
one by one instead); it makes every account the backup has but the deleted ones, with its
password, name and state (a disabled one stays disabled), then its aliases, and restores each
as above.  Soft-deleted messages are not carried over (nor are they with ``--account``).
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

from gateways.cli.audit import audit
from gateways.cli.export import Progress, copy_blob
from gateways.cli.importer import STREAM_OVER, Target
from gateways.cli.runner import EX_DATAERR, EX_OK, EX_USAGE, run_command
from store import errors
from store.interfaces import NewItem

BATCH = 200


def main(args) -> int:
    return run_command(args, cmd_restore if args.command == "restore" else cmd_backup)


async def cmd_backup(store, args, raw) -> int:
    if args.verify:
        checked, problems = await store.verify_backup(args.dest)
        for problem in problems:
            print(f"haven: {problem}", file=sys.stderr)
        print(f"{args.dest}: {checked} message contents checked (each stored once, however many messages hold it), "
              f"{len(problems)} problem{'s' * (len(problems) != 1)}")
        return EX_DATAERR if problems else EX_OK
    started = time.monotonic()
    report = await store.backup(args.dest)
    audit("backup", dest=args.dest, copied=report["copied"], missing=report["missing"])
    print(f"backed up to {args.dest} in {time.monotonic() - started:.1f} s: database "
          f"{report['database_bytes'] / 1e6:.1f} MB, {report['copied']} message files copied "
          f"({report['bytes'] / 1e6:.1f} MB), {report['present']} there already")
    if report["missing"]:
        print(f"haven: {report['missing']} message files were gone (purged while the backup ran)", file=sys.stderr)
    return EX_OK


async def cmd_restore(store, args, raw) -> int:
    from gateways.service import open_backup_store  # the composition root builds every store
    from twisted.internet import reactor  # the installed one, reached late

    src = Path(args.src)
    if args.into and not args.account:
        print("haven: --into needs --account (the account to restore into it)", file=sys.stderr)
        return EX_USAGE
    if not (src / "haven.db").is_file():
        print(f"haven: {src}: not a backup (no haven.db)", file=sys.stderr)
        return EX_DATAERR
    backup = open_backup_store(args.loaded_config, src)
    backup.start(reactor, poll=False)
    if args.account is None:
        try:
            return await _restore_all(backup, store, src)
        finally:
            backup.stop()
    try:
        try:
            creds = await backup.get_credentials(args.account)
            source = await backup.get_account(args.account)
        except errors.NotFound:
            creds = None
        if creds is None:
            print(f"haven: the backup in {src} has no account {args.account}", file=sys.stderr)
            return EX_DATAERR
        into = args.into or args.account
        try:
            target = await store.get_account(into)
        except errors.NotFound:
            target = await store.create_account(into, creds.password_hash, source.name)
        counts = {"messages": 0, "skipped": 0, "folders": set(), "bytes": 0, "warnings": []}
        progress = Progress()
        await _restore_mail(backup, store, source, target, counts, progress)
        items = await _restore_dav(backup, store, source, target)
        scripts = await _restore_sieve(backup, store, source, target)
        progress.done()
    finally:
        backup.stop()
    audit("restore", src=str(src), account=source.address, into=target.address, messages=counts["messages"],
          items=items, scripts=scripts)
    print(f"restored {source.address} from {src} into {target.address}: {counts['messages']} messages into "
          f"{len(counts['folders'])} folders ({counts['skipped']} there already), {items} calendar and contact "
          f"items, {scripts} Sieve scripts")
    return EX_OK


async def _restore_all(backup, store, src: Path) -> int:
    if await store.list_accounts():
        print("haven: this store has accounts already: a whole restore goes into an empty store "
              "(restore accounts one by one with --account)", file=sys.stderr)
        return EX_DATAERR
    summaries = [s for s in await backup.list_account_summaries() if s.state != "deleted"]
    progress = Progress()
    totals = {"accounts": 0, "messages": 0, "items": 0, "scripts": 0}
    for summary in summaries:
        source = summary.account
        creds = await backup.get_credentials(source.address)
        target = await store.create_account(source.address, creds.password_hash, source.name)
        if summary.state == "disabled":
            await store.disable_account(source.address)
        counts = {"messages": 0, "skipped": 0, "folders": set(), "bytes": 0, "warnings": []}
        await _restore_mail(backup, store, source, target, counts, progress)
        totals["items"] += await _restore_dav(backup, store, source, target)
        totals["scripts"] += await _restore_sieve(backup, store, source, target)
        totals["messages"] += counts["messages"]
        totals["accounts"] += 1
    live = {s.account.address for s in summaries}
    aliases = [(alias, address) for alias, address in await backup.list_aliases() if address in live]
    for alias, address in aliases:
        await store.add_alias(alias, address)
    progress.done()
    audit("restore", src=str(src), account="*", accounts=totals["accounts"], messages=totals["messages"],
          items=totals["items"], scripts=totals["scripts"])
    print(f"restored {src} into this store: {totals['accounts']} accounts, {len(aliases)} aliases, "
          f"{totals['messages']} messages, {totals['items']} calendar and contact items, {totals['scripts']} "
          f"Sieve scripts")
    return EX_OK


async def _restore_mail(backup, store, source, target, counts: dict, progress: Progress) -> None:
    for folder in await backup.list_folders(source.id, "mail"):
        into = Target(store, target, folder.name)
        await into.open()
        metas = await backup.list_messages(folder.id)
        for i in range(0, len(metas), BATCH):
            records = await backup.fetch_messages(folder.id, [m.uid for m in metas[i:i + BATCH]], envelope=True)
            for rec in records:
                progress.show(f"{folder.name}: {counts['messages']} messages, {counts['bytes'] / 1e6:.1f} MB")
                message_id = rec.envelope[9] if rec.envelope else None
                if rec.meta.size <= STREAM_OVER:
                    await into.add(await backup.read_blob(rec.blob_id), rec.meta.size, message_id,
                                   sorted(rec.meta.flags), rec.meta.internaldate, counts)
                    continue
                # a big message goes through a temporary file, a piece at a time, never whole
                with tempfile.TemporaryFile() as f:
                    await copy_blob(backup, rec.blob_id, f)
                    f.seek(0)
                    await into.add(f, rec.meta.size, message_id, sorted(rec.meta.flags), rec.meta.internaldate,
                                   counts)
        await into.flush()


async def _restore_dav(backup, store, source, target) -> int:
    have = {c.folder.name: c for c in await store.list_dav_collections(target.id)}
    count = 0
    for coll in await backup.list_dav_collections(source.id):
        mine = have.get(coll.folder.name)
        if mine is None:
            await store.create_folder(target.id, coll.folder.name, coll.folder.kind)
            have = {c.folder.name: c for c in await store.list_dav_collections(target.id)}
            mine = have[coll.folder.name]
        present = {i.uid for i in await store.list_dav_items(mine.folder.id)}
        for item in await backup.list_dav_items(coll.folder.id, with_data=True):
            if item.uid in present:
                continue
            await store.put_dav_item(target.id, mine.folder.id, NewItem(
                href=item.href, uid=item.uid, etag=item.etag, component=item.component, data=item.data,
                dtstart=item.dtstart, dtend=item.dtend))
            count += 1
    return count


async def _restore_sieve(backup, store, source, target) -> int:
    scripts = await backup.list_sieve_scripts(source.id)
    for info in scripts:
        await store.put_sieve_script(target.id, info.name, await backup.get_sieve_script(source.id, info.name))
        if info.active:
            await store.set_active_sieve_script(target.id, info.name)
    return len(scripts)
