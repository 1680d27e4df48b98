"""The ``haven`` command.

Every sub-command reads the same INI file (``--config PATH``, else ``$HAVEN_CONFIG``, else the
bundled defaults) and talks to the store directly, so it works whether or not ``haven serve``
is running.  Exit codes follow sysexits(3) where an MTA reads them: ``haven deliver`` exits 0
when delivered, 67 (EX_NOUSER) for an unknown recipient, 75 (EX_TEMPFAIL) on a temporary failure.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import os
import secrets
import sys

EX_OK, EX_USAGE, EX_DATAERR, EX_NOUSER, EX_SOFTWARE, EX_TEMPFAIL, EX_NOPERM, EX_CONFIG = 0, 64, 65, 67, 70, 75, 77, 78

DESCRIPTION = """\
Haven: IMAP, LMTP (and more) on one SQL-backed store.

Start with `haven serve --demo` to run on the embedded SQLite store with a demo account.
Configuration: one INI file, see conf/haven.ini for every key and its default."""


def _install_reactor():
    from twisted.internet import asyncioreactor
    if "twisted.internet.reactor" not in sys.modules:
        asyncioreactor.install(asyncio.new_event_loop())


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="haven", description=DESCRIPTION,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", metavar="PATH", help="INI file (default: $HAVEN_CONFIG, else built-in defaults)")
    p.add_argument("-v", "--verbose", action="store_true", help="log at debug level")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    s = sub.add_parser("serve", help="run every enabled gateway in the foreground")
    s.add_argument("--demo", action="store_true",
                   help="create demo@localhost (password printed, kept in data_dir/demo-password) if missing")

    db = sub.add_parser("db", help="database schema").add_subparsers(dest="db_command", metavar="ACTION")
    db.required = True
    db.add_parser("migrate", help="apply missing schema deltas (back up first)")
    db.add_parser("status", help="show the schema version")

    u = sub.add_parser("user", help="accounts").add_subparsers(dest="user_command", metavar="ACTION")
    u.required = True
    ua = u.add_parser("add", help="create an account with its default folders, calendar and address book")
    ua.add_argument("address")
    ua.add_argument("--name", help="display name")
    ua.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
    u.add_parser("list", help="list accounts")
    ud = u.add_parser("del", help="delete an account and all its data, at once")
    ud.add_argument("address")
    up = u.add_parser("passwd", help="set an account's password")
    up.add_argument("address")
    up.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
    uq = u.add_parser("quota", help="show or set an account's quota (sizes like 500M, 2G; 0 = unlimited, "
                                    "default = the [quota] setting)")
    uq.add_argument("address")
    for level, what in (("warn", "a warning message lands in the INBOX"),
                        ("soft", "sending is refused (552 5.2.2)"),
                        ("hard", "delivery and APPEND are refused")):
        uq.add_argument(f"--{level}", metavar="SIZE", help=f"above this {what}")

    al = sub.add_parser("alias", help="aliases: other addresses delivering to an account")
    al = al.add_subparsers(dest="alias_command", metavar="ACTION")
    al.required = True
    aa = al.add_parser("add", help="deliver ALIAS to ADDRESS")
    aa.add_argument("alias")
    aa.add_argument("address")
    ad = al.add_parser("del", help="remove an alias")
    ad.add_argument("alias")
    al.add_parser("list", help="list aliases")

    d = sub.add_parser("deliver", help="deliver a message from standard input (for an MTA's pipe transport)")
    d.add_argument("address", nargs="+")
    d.add_argument("-f", "--from", dest="sender", default="", help="envelope sender")
    d.add_argument("-j", "--junk", action="store_true",
                   help="file into the Junk folder (the recipient's Sieve script does not run)")

    pu = sub.add_parser("purge", help="remove soft-deleted items past [store] softdelete_lifetime")
    pu.add_argument("--days", type=float, help="override the lifetime (0 = everything deleted)")

    r = sub.add_parser("recover", help="soft-deleted (recoverable) messages, events and contacts of an account")
    r = r.add_subparsers(dest="recover_command", metavar="ACTION")
    r.required = True
    rl = r.add_parser("list", help="list recoverable messages (ID) and calendar/contact items (dav:ID)")
    rl.add_argument("address")
    rr = r.add_parser("restore", help="restore by id from `recover list` (messages: ID, events/contacts: dav:ID)")
    rr.add_argument("address")
    rr.add_argument("ids", nargs="+", type=_recover_id)

    dv = sub.add_parser("dav", help="calendars and address books (what CalDAV/CardDAV clients see)")
    dv = dv.add_subparsers(dest="dav_command", metavar="ACTION")
    dv.required = True
    dl = dv.add_parser("list", help="an account's calendars and address books, or the items of one")
    dl.add_argument("address")
    dl.add_argument("collection", nargs="?")
    di = dv.add_parser("import", help="import an .ics or .vcf file into a calendar or address book "
                                      "(an object whose UID is already there replaces it)")
    di.add_argument("address")
    di.add_argument("collection")
    di.add_argument("file", help="path, or - for standard input")

    sv = sub.add_parser("sieve", help="an account's Sieve scripts (the delivery rules ManageSieve clients manage)")
    sv = sv.add_subparsers(dest="sieve_command", metavar="ACTION")
    sv.required = True
    sl = sv.add_parser("list", help="an account's scripts, their sizes, the active one marked")
    sl.add_argument("address")
    sg = sv.add_parser("get", help="print a script")
    sg.add_argument("address")
    sg.add_argument("name")
    sp = sv.add_parser("put", help="store a script (replacing one of that name) once it compiles; "
                                   "a compile error is printed with its line and nothing is stored")
    sp.add_argument("address")
    sp.add_argument("name")
    sp.add_argument("file", help="path, or - for standard input (UTF-8)")
    sp.add_argument("--activate", action="store_true", help="make it the active script")
    sa = sv.add_parser("activate", help="make NAME the script delivery runs (--none: run no script)")
    sa.add_argument("address")
    sa.add_argument("name", nargs="?")
    sa.add_argument("--none", action="store_true", help="deactivate the active script")
    sn = sv.add_parser("deactivate", help="run no script at delivery (the scripts are kept)")
    sn.add_argument("address")
    sx = sv.add_parser("delete", help="delete a script (not the active one: deactivate it first)")
    sx.add_argument("address")
    sx.add_argument("name")

    q = sub.add_parser("queue", help="the outbound queue of SMTP submission (mail waiting for [submission] relay)")
    q = q.add_subparsers(dest="queue_command", metavar="ACTION")
    q.required = True
    q.add_parser("list", help="list queued messages, their recipients, attempts and last errors")
    qr = q.add_parser("retry", help="make queued recipients due now (of message ID, or all); "
                                    "`haven serve` sends them within [submission] queue_interval")
    qr.add_argument("id", nargs="?", type=int)
    qd = q.add_parser("delete", help="drop message ID from the queue, without a bounce to its sender")
    qd.add_argument("id", type=int)
    return p


def _recover_id(value: str):
    """``12`` (a message) or ``dav:12`` (an event or contact)."""
    kind, _, number = value.rpartition(":")
    if kind not in ("", "dav") or not number.isdigit():
        raise argparse.ArgumentTypeError(f"{value!r}: expected an id from `haven recover list` (12 or dav:12)")
    return kind or "message", int(number)


def _read_password(args, prompt="Password: ") -> str:
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


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    _install_reactor()
    from conf import ConfigError, load_config
    from gateways.common.errors import StartupError
    from gateways.service import setup_logging
    from store import errors
    try:
        config = load_config(args.config)
        setup_logging(config, args.verbose)
    except ConfigError as e:
        print(f"haven: {e}", file=sys.stderr)
        return EX_CONFIG
    if args.command == "serve":
        return _serve(config, args)
    if args.command == "deliver" or (args.command in ("dav", "sieve") and getattr(args, "file", None) == "-"):
        raw = sys.stdin.buffer.read()
    else:
        raw = None
    try:
        return _run(config, args, raw)
    except (StartupError, ConfigError) as e:
        print(f"haven: {e}", file=sys.stderr)
        return EX_TEMPFAIL if args.command == "deliver" else EX_CONFIG
    except errors.SchemaOutOfDate as e:
        print(f"haven: {e}", file=sys.stderr)
        return EX_CONFIG
    except errors.TemporaryFailure as e:
        print(f"haven: {e}", file=sys.stderr)
        return EX_TEMPFAIL
    except errors.StoreError as e:
        print(f"haven: {e}", file=sys.stderr)
        return EX_TEMPFAIL if args.command == "deliver" else EX_DATAERR
    except Exception:
        if args.command != "deliver":
            raise
        # an MTA must retry rather than bounce when Haven itself failed
        import logging
        logging.getLogger("haven").exception("deliver failed")
        return EX_TEMPFAIL


def _run(config, args, raw) -> int:
    """Run one admin command on a started store, then stop the reactor."""
    from twisted.internet import defer, reactor
    from gateways.service import open_started_store
    outcome = {}

    args.loaded_config = config

    async def go():
        store = await open_started_store(config, reactor, poll=False, check_schema=args.command != "db")
        return await COMMANDS[args.command](store, args, raw)

    def done(result):
        outcome["result"] = result
        reactor.stop()

    def start():
        d = defer.Deferred.fromCoroutine(go())
        d.addBoth(done)

    reactor.callWhenRunning(start)
    reactor.run(installSignalHandlers=False)
    result = outcome.get("result")
    if hasattr(result, "raiseException"):
        result.raiseException()
    return result or 0


async def cmd_user(store, args, raw) -> int:
    from auth.passwords import hash_password
    from twisted.internet import threads
    action = args.user_command
    if action == "add":
        password = _read_password(args)
        pw_hash = await threads.deferToThread(hash_password, password)
        account = await store.create_account(args.address, pw_hash, args.name)
        print(f"created {account.address}")
    elif action == "list":
        for account in await store.list_accounts():
            print(account.address + (f"\t{account.name}" if account.name else ""))
    elif action == "del":
        await store.delete_account(args.address)
        print(f"deleted {args.address}")
    elif action == "passwd":
        account = await store.get_account(args.address)
        password = _read_password(args, "New password: ")
        pw_hash = await threads.deferToThread(hash_password, password)
        await store.set_password_hash(account.id, pw_hash)
        print(f"password of {account.address} changed")
    elif action == "quota":
        account = await store.get_account(args.address)
        limits = {level: _quota_size(getattr(args, level)) for level in ("warn", "soft", "hard")}
        if any(v is not None for v in limits.values()):
            quota = await store.set_quota(account.id, **limits)
        else:
            quota = await store.get_quota(account.id)
        print(_quota_text(account.address, quota))
    return EX_OK


def _quota_size(value):
    """``--hard 2G`` -> bytes; ``default`` -> -1 (the [quota] setting); None when not given."""
    if value is None:
        return None
    if value.strip().lower() == "default":
        return -1
    from conf import parse_size
    try:
        return parse_size(value)
    except ValueError as e:
        raise SystemExit(f"haven: {value}: {e}")


def _quota_text(address, quota) -> str:
    from conf import format_size as human_size
    def limit(n):
        return human_size(n) if n > 0 else "unlimited"
    state = ("over hard" if quota.hard > 0 and quota.used_bytes >= quota.hard else "over soft" if quota.over_soft
             else "over warn" if quota.over_warn else "ok")
    return (f"{address}: {human_size(quota.used_bytes)} in {quota.used_messages} messages ({state})\n"
            f"  warn {limit(quota.warn)}, soft {limit(quota.soft)}, hard {limit(quota.hard)}")


async def cmd_alias(store, args, raw) -> int:
    if args.alias_command == "add":
        await store.add_alias(args.alias, args.address)
        print(f"{args.alias} -> {args.address}")
    elif args.alias_command == "del":
        await store.delete_alias(args.alias)
    else:
        for alias, address in await store.list_aliases():
            print(f"{alias}\t{address}")
    return EX_OK


async def cmd_db(store, args, raw) -> int:
    current, latest = await store.schema_version()
    if args.db_command == "migrate":
        applied = await store.migrate()
        print("applied: " + ", ".join(applied) if applied else f"schema is up to date (version {latest})")
    else:
        print(f"schema version {current or 0}, this Haven knows {latest}"
              + ("" if (current or 0) == latest else ": run `haven db migrate`"))
    return EX_OK


async def cmd_deliver(store, args, raw) -> int:
    import logging
    from store import errors
    log = logging.getLogger("haven.deliver")
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
        else:
            print(f"haven: {r.recipient.original}: {r.error}", file=sys.stderr)
    if not failures:
        return EX_OK
    # sysexits for the MTA's pipe transport: 75 = try again later, 77 = refused by the
    # recipient's rules, 65 = any other permanent failure; over quota follows [lmtp] over_quota
    temporary = args.loaded_config.get("lmtp", "over_quota") == "temporary"
    if any(isinstance(r.error, errors.TemporaryFailure) or (temporary and isinstance(r.error, errors.OverQuota))
           for r in failures):
        return EX_TEMPFAIL
    if all(isinstance(r.error, errors.Rejected) for r in failures):
        return EX_NOPERM
    return EX_DATAERR


async def cmd_purge(store, args, raw) -> int:
    report = await store.purge(args.days)
    print(f"purged {report.messages} messages, {report.dav_items} calendar/contact items, {report.folders} folders, "
          f"{report.blobs} blobs")
    return EX_OK


async def cmd_recover(store, args, raw) -> int:
    import time
    account = await store.get_account(args.address)
    def when(t) -> str:
        return time.strftime("%Y-%m-%d %H:%M", time.localtime(t))
    if args.recover_command == "list":
        for item in await store.list_deleted(account.id):
            print(f"{item['id']}\t{when(item['deleted_at'])}\t{item['folder']}\t{item['size']}\t{item['subject'] or ''}")
        for item in await store.list_deleted_dav(account.id):
            print(f"dav:{item['id']}\t{when(item['deleted_at'])}\t{item['folder']}\t{item['size']}\t"
                  f"{item['component']} {item['href']} (UID {item['uid']})")
        return EX_OK
    messages = [i for kind, i in args.ids if kind == "message"]
    dav = [i for kind, i in args.ids if kind == "dav"]
    if messages:
        count = await store.restore_messages(account.id, messages)
        print(f"restored {count} message{'s' * (count != 1)}")
    if dav:
        count, refused = await store.restore_dav(account.id, dav)
        print(f"restored {count} calendar/contact item{'s' * (count != 1)}")
        for reason in refused:
            print(f"not restored: dav:{reason}", file=sys.stderr)
        if refused:
            return EX_DATAERR
    return EX_OK


async def cmd_dav(store, args, raw) -> int:
    import time
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
    from gateways.dav.items import parse_objects, rows_for
    text = raw if args.file == "-" else open(args.file, "rb").read()
    try:
        items = parse_objects(text.decode("utf-8"), coll.folder.kind, f"{account.address}/{coll.folder.name}",
                              max_item_size=args.loaded_config.getint("http", "max_item_size"),
                              max_occurrences=args.loaded_config.getint("http", "max_occurrences"))
    except (ValueError, UnicodeDecodeError) as e:
        print(f"haven: {args.file}: {e}", file=sys.stderr)
        return EX_DATAERR
    existing = {i.uid: i.href for i in await store.list_dav_items(coll.folder.id)}
    created = replaced = 0
    try:
        rows = rows_for(items, existing, max_occurrences=args.loaded_config.getint("http", "max_occurrences"))
    except ValueError as e:
        print(f"haven: {args.file}: {e}", file=sys.stderr)
        return EX_DATAERR
    for _href, row in rows:
        _stored, was = await store.put_dav_item(account.id, coll.folder.id, row)
        replaced += was
        created += not was
    print(f"imported {created + replaced} item{'s' * (created + replaced != 1)} into {coll.folder.name} "
          f"({created} new, {replaced} replaced)")
    return EX_OK


async def cmd_queue(store, args, raw) -> int:
    import time

    def when(t) -> str:
        return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t))
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
        print(f"{count} recipient{'s' * (count != 1)} due now"
              + (f" (message {args.id})" if args.id is not None else ""))
    else:
        await store.delete_outbound(args.id)
        print(f"deleted message {args.id} from the queue (no bounce sent)")
    return EX_OK


async def cmd_sieve(store, args, raw) -> int:
    from store import errors
    account = await store.get_account(args.address)
    action = args.sieve_command
    if action == "list":
        for script in await store.list_sieve_scripts(account.id):
            print(f"{script.name}\t{script.size} bytes" + ("\tactive" if script.active else ""))
    elif action == "get":
        sys.stdout.write(await store.get_sieve_script(account.id, args.name))
    elif action == "put":
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
            print(f"haven: script {args.name!r} not stored: {e} (see [rules] in the configuration)",
                  file=sys.stderr)
            return EX_DATAERR
        if args.activate:
            await store.set_active_sieve_script(account.id, args.name)
        print(f"stored script {args.name!r} of {account.address}" + (", active" if args.activate else ""))
    elif action in ("activate", "deactivate"):
        if action == "activate" and bool(args.name) == bool(args.none):
            print("haven: give the script NAME to activate, or --none", file=sys.stderr)
            return EX_USAGE
        if action == "deactivate" or args.none:
            await store.set_active_sieve_script(account.id, None)
            print(f"{account.address} has no active script now")
        else:
            await store.set_active_sieve_script(account.id, args.name)
            print(f"script {args.name!r} of {account.address} is active")
    else:
        try:
            await store.delete_sieve_script(account.id, args.name)
        except errors.PermissionDenied as e:
            print(f"haven: {e} (`haven sieve deactivate {account.address}`)", file=sys.stderr)
            return EX_DATAERR
        print(f"deleted script {args.name!r} of {account.address}")
    return EX_OK


COMMANDS = {"user": cmd_user, "alias": cmd_alias, "db": cmd_db, "deliver": cmd_deliver, "purge": cmd_purge,
            "recover": cmd_recover, "queue": cmd_queue, "dav": cmd_dav, "sieve": cmd_sieve}


def _ensure_demo(store, config):
    async def go():
        from auth.passwords import hash_password
        from store import errors
        from twisted.internet import threads
        address = "demo@localhost"
        secret_file = config.data_dir / "demo-password"
        try:
            await store.get_account(address)
            password = secret_file.read_text().strip() if secret_file.exists() else None
        except errors.NotFound:
            password = secrets.token_urlsafe(9)
            pw_hash = await threads.deferToThread(hash_password, password)
            await store.create_account(address, pw_hash, "Demo User")
            secret_file.write_text(password + "\n")
            os.chmod(secret_file, 0o600)
        return address, password
    return go()


def demo_banner(config, address: str, password) -> str:
    """What `haven serve --demo` tells a new user: where the data is, the login, the ports."""
    password = password or "(see data_dir/demo-password)"
    services = [(name, config.listen(section)) for name, section in
                (("IMAP", "imap"), ("POP3", "pop3"), ("submission", "submission"), ("LMTP", "lmtp"),
                 ("ManageSieve (filters, out-of-office)", "managesieve"))]
    ports = "   ".join(f"{name}: {where}" for name, where in services if where)
    imap = config.listen("imap")
    lines = [f"  Haven is running on the {config.store_url().engine} store in {config.data_dir}",
             f"  demo account: {address}   password: {password}",
             f"  {ports}"]
    http = config.listen("http")
    if http and http.kind == "tcp":
        lines.append(f"  calendars and contacts (CalDAV/CardDAV): http://{http.host}:{http.port}/  "
                     "(enter this URL and the login above in Thunderbird, DAVx5, iOS, ...)")
    if imap and imap.kind == "tcp":
        lines.append(f"  try:  curl -s --url 'imap://{imap.host}:{imap.port}/INBOX' --user '{address}:{password}'"
                     " -X 'STATUS INBOX (MESSAGES)'")
    return "\n" + "\n".join(lines) + "\n"


def _serve(config, args) -> int:
    import logging
    import signal
    from twisted.internet import defer, reactor
    from gateways.common.errors import StartupError
    from gateways.service import Service
    from store import errors
    log = logging.getLogger("haven")
    service = Service(config, reactor)
    status = {"code": 0}

    async def start():
        try:
            await service.start()
            if args.demo:
                address, password = await _ensure_demo(service.store, config)
                print(demo_banner(config, address, password), file=sys.stderr, flush=True)
            log.info("Haven started (%s store)", config.store_url().engine)
        except (StartupError, errors.SchemaOutOfDate, errors.StoreError) as e:
            print(f"haven: {e}", file=sys.stderr)
            status["code"] = EX_CONFIG
            reactor.stop()
        except Exception:
            log.exception("start-up failed")
            status["code"] = EX_SOFTWARE
            reactor.stop()

    def shutdown(*_):
        reactor.callFromThread(reactor.stop)

    reactor.callWhenRunning(lambda: defer.Deferred.fromCoroutine(start()))
    reactor.addSystemEventTrigger("before", "shutdown", lambda: defer.Deferred.fromCoroutine(service.stop()))
    signal.signal(signal.SIGTERM, shutdown)
    signal.signal(signal.SIGINT, shutdown)
    reactor.run(installSignalHandlers=False)
    return status["code"]


if __name__ == "__main__":
    sys.exit(main())
