"""The ``haven`` command: the argument parser, and the dispatch to the module that runs a command.

Every sub-command reads the same INI file (``--config PATH``, else ``$HAVEN_CONFIG``, else the
bundled defaults) and talks to the store directly, so it works whether or not ``haven serve``
is running.  Exit codes follow sysexits(3) where an MTA reads them: ``haven deliver`` exits 0
when delivered, 67 (EX_NOUSER) for an unknown recipient, 75 (EX_TEMPFAIL) on a temporary failure.

Layout: this module parses; ``runner`` holds what every store command shares (reactor, config,
logging, the store opened for one coroutine, exit codes, password hashing off the reactor); one
module per command group (``serve``, ``db``, ``users``, ``aliases``, ``deliver``, ``recover``,
``dav``, ``sieve``, ``queue``, ``authcmd``, ``configcmd``, ``dnscmd``, ``devices``) runs its commands.  A
command module is imported only when its command runs, so ``haven --help`` and a mistyped command
load neither Twisted nor the store, and ``haven user add`` loads neither the gateways nor
Radicale.  A new command group is a new module and a line in COMMANDS.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import os
import sys
import threading

DESCRIPTION = """\
Haven: IMAP, LMTP (and more) on one SQL-backed store.

Start with `haven serve --demo` to run on the embedded SQLite store with a demo account.
Configuration: one INI file, see conf/haven.ini for every key and its default."""


def _group(sub, name: str, help: str, dest: str):
    """A command with actions (``haven user add``): its sub-parsers, one action required."""
    actions = sub.add_parser(name, help=help).add_subparsers(dest=dest, metavar="ACTION")
    actions.required = True
    return actions


def version() -> str:
    """The installed distribution's version (setup.cfg), or where it runs from when not installed."""
    try:
        return importlib.metadata.version("haven")
    except importlib.metadata.PackageNotFoundError:
        return "(not installed: run from a source tree)"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="haven", description=DESCRIPTION,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", metavar="PATH", help="INI file (default: $HAVEN_CONFIG, else built-in defaults)")
    p.add_argument("-v", "--verbose", action="store_true", help="log at debug level")
    p.add_argument("--version", action="version", version=f"haven {version()}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    s = sub.add_parser("serve", help="run every enabled gateway in the foreground")
    s.add_argument("--demo", action="store_true",
                   help="create demo@localhost (password printed, kept in data_dir/demo-password) if missing")

    db = _group(sub, "db", "database schema", "db_command")
    db.add_parser("migrate", help="create the store, or apply missing schema deltas (back up first); "
                                  "the only command that creates a store")
    db.add_parser("status", help="show where the store is and its schema version; exit 78 when it is "
                                 "missing or not at this Haven's version")

    u = _group(sub, "user", "accounts", "user_command")
    ua = u.add_parser("add", help="create an account with its default folders, calendar and address book")
    ua.add_argument("address")
    ua.add_argument("--name", help="display name")
    ua.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
    u.add_parser("list", help="list accounts: state (active, disabled, deleted and when it is purged), "
                              "mail usage, last login, name")
    ud = u.add_parser("del", help="delete an account: it logs in nowhere and receives nothing (550 5.1.1), its "
                                  "data is kept until the purge removes it after [store] softdelete_lifetime "
                                  "days; `user restore` undoes it")
    ud.add_argument("address")
    ud.add_argument("--now", action="store_true",
                    help="remove the account and all its mail, calendars and contacts at once (cannot be undone)")
    ud.add_argument("-y", "--yes", action="store_true", help="with --now: do not ask for confirmation")
    ur = u.add_parser("restore", help="bring back a deleted account (not yet purged), active, with all its data")
    ur.add_argument("address")
    ux = u.add_parser("disable", help="refuse the account's logins and mail (550 5.1.1), keeping its data")
    ux.add_argument("address")
    ue = u.add_parser("enable", help="let a disabled account log in and receive mail again")
    ue.add_argument("address")
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

    al = _group(sub, "alias", "aliases: other addresses delivering to an account", "alias_command")
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

    r = _group(sub, "recover", "soft-deleted (recoverable) messages, events and contacts of an account",
               "recover_command")
    rl = r.add_parser("list", help="list recoverable messages (ID) and calendar/contact items (dav:ID)")
    rl.add_argument("address")
    rr = r.add_parser("restore", help="restore by id from `recover list` (messages: ID, events/contacts: dav:ID)")
    rr.add_argument("address")
    rr.add_argument("ids", nargs="+", type=_recover_id)

    ex = sub.add_parser("export", help="write an account's mail (Maildir++), calendars (.ics), address books "
                        "(.vcf) and Sieve scripts under DIR; run again to go on where it stopped")
    ex.add_argument("address")
    ex.add_argument("dir")

    im = sub.add_parser("import", help="bring mail (a `haven export` directory, a Maildir, an mbox file), "
                        "calendars, contacts and Sieve scripts into an account; what is there already is "
                        "skipped, so it can be run again")
    im.add_argument("address")
    im.add_argument("source", nargs="?", help="a directory (`haven export`'s, or a Maildir) or an mbox file")
    im.add_argument("--folder", help="the folder an mbox file goes into (default INBOX)")
    im.add_argument("--imap", metavar="HOST[:PORT]", help="pull the whole account from another IMAP server "
                    "(STARTTLS when it offers it; --tls for port 993)")
    im.add_argument("--user", help="the login on the other server (with --imap)")
    im.add_argument("--password-stdin", action="store_true", help="read that login's password from standard input")
    im.add_argument("--tls", action="store_true", help="implicit TLS (IMAPS) to the other server")
    im.add_argument("--insecure", action="store_true", help="do not check the other server's certificate "
                    "(a self-signed one); the password still travels encrypted")

    bk = sub.add_parser("backup", help="back the whole store up into DEST while Haven runs (the database as an "
                        "SQLite store file, message files copied once); --verify checks a backup instead")
    bk.add_argument("dest", help="the backup directory (made if missing; a later run updates it)")
    bk.add_argument("--verify", action="store_true", help="check the backup in DEST: the database's integrity and "
                    "every message's bytes against its hash; exit 65 on a problem")
    rs = sub.add_parser("restore", help="bring one account back from a backup into the running server, or "
                        "(without --account) every account into an empty store")
    rs.add_argument("src", help="a directory made by `haven backup`")
    rs.add_argument("--account", help="the account to restore, as the backup names it (default: all of them, "
                    "into a store that has no accounts)")
    rs.add_argument("--into", help="restore into this account instead (made if missing)")

    dv = _group(sub, "dav", "calendars and address books (what CalDAV/CardDAV clients see)", "dav_command")
    dl = dv.add_parser("list", help="an account's calendars and address books, or the items of one")
    dl.add_argument("address")
    dl.add_argument("collection", nargs="?")
    di = dv.add_parser("import", help="import an .ics or .vcf file into a calendar or address book "
                                      "(an object whose UID is already there replaces it)")
    di.add_argument("address")
    di.add_argument("collection")
    di.add_argument("file", help="path, or - for standard input")

    sv = _group(sub, "sieve", "an account's Sieve scripts (the delivery rules ManageSieve clients manage)",
                "sieve_command")
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

    cf = _group(sub, "config", "the configuration file", "config_command")
    cf.add_parser("check", help="print the configuration in effect (secrets masked) and check every value "
                                "as `haven serve` does; exit 78 naming the first bad one")

    au = _group(sub, "auth", "the login throttle: client addresses blocked for an account, and unblocking them",
                "auth_command")
    au.add_parser("status", help="list blocked (address, account) pairs and addresses or accounts being slowed")
    ab = au.add_parser("unblock", help="forget the failed logins of an account (ADDRESS, any alias) or of a "
                                       "client address (IP), lifting its blocks and delays at once")
    ab.add_argument("target", metavar="ADDRESS|IP")

    dn = _group(sub, "dns", "what to publish in DNS so that mail clients find this server", "dns_command")
    dr = dn.add_parser("records", help="print the MX, SRV (RFC 6186, 6764), TXT and autoconfig records of a "
                                       "mail domain, zone-file style, from the configuration")
    dr.add_argument("domain")

    dev = _group(sub, "device", "ActiveSync devices (phones): list them, wipe a lost one, forget one", "device_command")
    dl = dev.add_parser("list", help="every device (of ADDRESS): account, device id, type, model, OS, protocol, "
                                     "policy, wipe state, last seen (tab-separated)")
    dl.add_argument("address", nargs="?")
    dw = dev.add_parser("wipe", help="ask the device to erase itself at its next connection (a lost phone)")
    dw.add_argument("address")
    dw.add_argument("device_id", metavar="DEVICE_ID")
    dw.add_argument("--cancel", action="store_true", help="take back a wipe the device has not done yet")
    dw.add_argument("--account-only", action="store_true", help="erase this account's data only, not the "
                    "whole phone (EAS 16.1 devices)")
    dd = dev.add_parser("remove", aliases=["delete"], help="forget a device and its sync state (it starts over)")
    dd.add_argument("address")
    dd.add_argument("device_id", metavar="DEVICE_ID")

    q = _group(sub, "queue", "the outbound queue of SMTP submission (mail waiting for [submission] relay)",
               "queue_command")
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


COMMANDS = {"serve": "serve", "db": "db", "user": "users", "alias": "aliases", "deliver": "deliver",
            "purge": "recover", "recover": "recover", "dav": "dav", "sieve": "sieve", "queue": "queue",
            "auth": "authcmd", "config": "configcmd", "dns": "dnscmd", "export": "export",
            "import": "importer", "backup": "backup", "restore": "backup", "device": "devices"}
"""command -> the module of this package that runs it (``main(args) -> exit code``), imported
only when its command runs: ``haven --help`` loads neither Twisted nor the store."""


EX_INTERRUPTED = 130
"""Ctrl-C (SIGINT) in a command: 128 + SIGINT, as shells report it."""


def main(argv=None) -> int:
    try:
        args = build_parser().parse_args(argv)
        return importlib.import_module(f"{__name__}.{COMMANDS[args.command]}").main(args)
    except KeyboardInterrupt:
        # quietly, without a traceback; `haven serve` stops cleanly on SIGINT itself and never
        # gets here.  Interrupted mid-reactor, the store's threads may still be running and
        # would hold up the interpreter's exit: leave at once (a transaction left open is rolled back)
        print(file=sys.stderr)
        if threading.active_count() > 1:
            sys.stderr.flush()
            os._exit(EX_INTERRUPTED)
        return EX_INTERRUPTED
