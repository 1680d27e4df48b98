"""``haven dav``: an account's calendars and address books as CalDAV/CardDAV clients see them;
``haven dav import`` stores an .ics or .vcf file exactly as a client's PUT would."""

from __future__ import annotations

import sys
import time

from gateways.cli.audit import audit
from gateways.cli.runner import EX_DATAERR, EX_OK, run_command


def main(args) -> int:
    return run_command(args, cmd_dav, stdin=getattr(args, "file", None) == "-")


async def cmd_dav(store, args, raw) -> int:
    account = await store.get_account(args.address)
    collections = {c.folder.name: c for c in await store.list_dav_collections(account.id)}
    if args.dav_command == "list" and args.collection is None:
        for name, c in collections.items():
            items = await store.list_dav_items(c.folder.id)
            label = c.props.get("D:displayname") or name
            print(f"{name}\t{c.folder.kind}\t{len(items)} item{'s' * (len(items) != 1)}\t{label}")
        return EX_OK
    coll = collections.get(args.collection)
    if coll is None:
        print(f"haven: {args.address} has no calendar or address book {args.collection!r} "
              f"(there are: {', '.join(collections) or 'none'})", file=sys.stderr)
        return EX_DATAERR
    if args.dav_command == "list":
        for item in await store.list_dav_items(coll.folder.id):
            print(f"{item.href}\t{item.component}\t{item.etag}\t"
                  f"{time.strftime('%Y-%m-%d %H:%M', time.localtime(item.updated_at))}\tUID {item.uid}")
        return EX_OK
    return await import_file(store, args, raw, account, coll)


async def import_file(store, args, raw, account, coll) -> int:
    text = raw if args.file == "-" else open(args.file, "rb").read()
    try:
        created, replaced = await import_text(store, args.loaded_config, account, coll, text)
    except (ValueError, UnicodeDecodeError) as e:
        print(f"haven: {args.file}: {e}", file=sys.stderr)
        return EX_DATAERR
    audit("dav.import", address=account.address, collection=coll.folder.name, file=args.file, created=created,
          replaced=replaced)
    print(f"imported {created + replaced} item{'s' * (created + replaced != 1)} into {coll.folder.name} "
          f"({created} new, {replaced} replaced)")
    return EX_OK


async def import_text(store, config, account, coll, text: bytes) -> tuple:
    """Store every object of an .ics or .vcf file's ``text`` in the collection ``coll`` exactly
    as a client's PUT of it would (an object whose UID is there replaces it): ``(created,
    replaced)``.  ValueError or UnicodeDecodeError when the text is not valid."""
    from gateways.common.davitems import parse_objects, rows_for  # Radicale and vobject: only imports need them
    items = parse_objects(text.decode("utf-8"), coll.folder.kind, f"{account.address}/{coll.folder.name}",
                          max_item_size=config.getint("http", "max_item_size"),
                          max_occurrences=config.getint("http", "max_occurrences"))
    existing = {i.uid: i.href for i in await store.list_dav_items(coll.folder.id)}
    created = replaced = 0
    rows = rows_for(items, existing, max_occurrences=config.getint("http", "max_occurrences"))
    for _href, row in rows:
        _stored, was = await store.put_dav_item(account.id, coll.folder.id, row)
        replaced += was
        created += not was
    return created, replaced
