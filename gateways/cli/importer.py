"""``haven import ADDRESS SOURCE``: bring mail, calendars, contacts and Sieve scripts into an
existing account.

SOURCE is one of:
- a directory written by ``haven export`` (``mail/``, ``calendars/``, ``contacts/``, ``sieve/``);
- a Maildir++ directory (Dovecot's, with its ``dovecot-keywords`` files): INBOX at its root,
  ``.Name`` folders beside it (docs/export.md has the naming);
- an mbox file (one folder's worth: it goes into ``--folder``, INBOX by default), flags from its
  ``Status`` / ``X-Status`` lines, INTERNALDATE from each ``From`` line.

A message already in the target folder with the same Message-ID, date and size is skipped, so
an import can be run again (after an interrupted run, or until a cut-over) without duplicates.
Calendar and address-book objects replace the one with their UID, as a client's PUT would.
"""

from __future__ import annotations

import calendar
import email.utils
import mailbox
import os
import ssl
import sys
import time
from pathlib import Path
from urllib.parse import unquote

from imapclient import IMAPClient
from imapclient.exceptions import IMAPClientError
from twisted.internet.threads import deferToThread

from formats import mime
from gateways.cli.audit import audit
from gateways.cli.dav import import_text
from gateways.cli.export import KEYWORD_LETTERS, MAILDIR_FLAGS, Progress
from gateways.cli.runner import EX_DATAERR, EX_OK, EX_USAGE, run_command
from gateways.imap import utf7
from store import errors

#: sysexits: the other server could not be reached or refused the login
EX_UNAVAILABLE = 69

LETTER_FLAGS = {letter: flag for flag, letter in MAILDIR_FLAGS.items()}
#: a message bigger than this is handed to the store as an open file, not read into memory
STREAM_OVER = 1 << 20
BATCH = 500
#: messages stored per transaction (MULTIAPPEND's all-or-none store call), and their bytes at most
GROUP = 200
GROUP_BYTES = 16 << 20


def main(args) -> int:
    if (args.source is None) == (args.imap is None):
        print("haven: give either SOURCE (a directory or an mbox file) or --imap HOST[:PORT]", file=sys.stderr)
        return EX_USAGE
    if args.imap is not None and not (args.user and args.password_stdin):
        print("haven: --imap needs --user and --password-stdin (the password on standard input)", file=sys.stderr)
        return EX_USAGE
    return run_command(args, cmd_import, stdin=bool(args.imap))


async def cmd_import(store, args, raw) -> int:
    account = await store.get_account(args.address)
    source = Path(args.source) if args.source else None
    progress = Progress()
    counts = {"messages": 0, "skipped": 0, "folders": set(), "bytes": 0, "items": 0, "scripts": 0, "warnings": []}
    started = time.monotonic()
    if source is None:
        password = raw.decode("utf-8").splitlines()[0] if raw and raw.strip() else ""
        try:
            if args.insecure:
                print(f"haven: --insecure: the certificate of {args.imap} is not checked", file=sys.stderr)
            await import_imap(store, account, args.imap, args.user, password, args.tls, counts, progress,
                              verify=not args.insecure)
        except (OSError, IMAPClientError) as e:
            progress.done()
            print(f"haven: {args.imap}: {e}", file=sys.stderr)
            return EX_UNAVAILABLE
        source = f"imap://{args.user}@{args.imap}"
    elif source.is_file():
        await import_mbox(store, account, source, args.folder or "INBOX", counts, progress)
    elif (source / "mail").is_dir() or (source / "calendars").is_dir():
        if (source / "mail").is_dir():
            await import_maildir(store, account, source / "mail", counts, progress)
        await import_dav(store, args.loaded_config, account, source, counts)
        await import_sieve(store, account, source / "sieve", counts)
    elif (source / "cur").is_dir() or (source / "new").is_dir():
        await import_maildir(store, account, source, counts, progress)
    else:
        print(f"haven: {source}: neither an mbox file, a Maildir (cur/, new/) nor a `haven export` "
              "directory (mail/, calendars/)", file=sys.stderr)
        return EX_DATAERR
    progress.done()
    audit("import", address=account.address, source=str(source), messages=counts["messages"],
          skipped=counts["skipped"], items=counts["items"], scripts=counts["scripts"])
    print(f"imported into {account.address}: {counts['messages']} messages into {len(counts['folders'])} folders "
          f"({counts['skipped']} already there, skipped; {counts['bytes'] / 1e6:.1f} MB in "
          f"{time.monotonic() - started:.1f} s), {counts['items']} calendar and contact items, "
          f"{counts['scripts']} Sieve scripts")
    for warning in counts["warnings"]:
        print(f"haven: {warning}", file=sys.stderr)
    return EX_DATAERR if any(w.startswith("not imported") for w in counts["warnings"]) else EX_OK


# -- mail ---------------------------------------------------------------------------------------
def folder_name(maildir: str) -> str:
    """The IMAP name of a Maildir++ folder (``.A.B`` -> ``A/B``; levels modified UTF-7, a dot
    inside a level written ``&AC4-`` as export writes it)."""
    return "/".join(".".join(utf7.decode(part) for part in level.split("&AC4-")) for level in maildir.split("."))


class Target:
    """One folder being imported into: what is there already (Message-ID, date, size)."""

    def __init__(self, store, account, name: str):
        self.store, self.account, self.name = store, account, name
        self.folder = None
        self.seen: set = set()
        self.pending: list = []  # (bytes or open file, flags, internaldate) not stored yet
        self.pending_bytes = 0

    async def open(self) -> None:
        try:
            self.folder = await self.store.get_folder(self.account.id, self.name)
        except errors.NotFound:
            self.folder = await self.store.create_folder(self.account.id, self.name)
        metas = await self.store.list_messages(self.folder.id)
        for i in range(0, len(metas), BATCH):
            records = await self.store.fetch_messages(self.folder.id, [m.uid for m in metas[i:i + BATCH]],
                                                      envelope=True)
            for rec in records:
                self.seen.add(_key(rec.envelope[9] if rec.envelope else None, rec.meta.internaldate, rec.meta.size))

    async def add(self, data, size: int, message_id, flags, internaldate: int, counts: dict) -> None:
        """Store one message unless it is there; bytes are stored in groups (one transaction
        for up to GROUP messages or GROUP_BYTES), an open file (a big message) at once."""
        key = _key(message_id, internaldate, size)
        if key in self.seen:
            counts["skipped"] += 1
            return
        self.pending.append((data, list(flags), internaldate))
        self.pending_bytes += size
        self.seen.add(key)
        counts["messages"] += 1
        counts["bytes"] += size
        counts["folders"].add(self.name)
        if not isinstance(data, bytes) or len(self.pending) >= GROUP or self.pending_bytes >= GROUP_BYTES:
            await self.flush()

    async def flush(self) -> None:
        if self.pending:
            pending, self.pending, self.pending_bytes = self.pending, [], 0
            await self.store.append_messages(self.account.id, self.folder.id, pending)


def _key(message_id, internaldate: int, size: int) -> tuple:
    return ((message_id or "").strip(), int(internaldate), int(size))


async def import_maildir(store, account, root: Path, counts: dict, progress: Progress) -> None:
    folders = [("", "INBOX")] + sorted((d.name, folder_name(d.name[1:])) for d in root.iterdir()
                                       if d.is_dir() and d.name.startswith(".") and (d / "cur").is_dir())
    for directory, name in folders:
        path = root / directory if directory else root
        keywords = {}
        if (path / "dovecot-keywords").is_file():
            for line in (path / "dovecot-keywords").read_text(encoding="utf-8", errors="replace").splitlines():
                number, _, word = line.partition(" ")
                if number.isdigit() and int(number) < len(KEYWORD_LETTERS) and word:
                    keywords[KEYWORD_LETTERS[int(number)]] = word
        target = Target(store, account, name)
        await target.open()
        for sub in ("new", "cur"):
            if not (path / sub).is_dir():
                continue
            for entry in sorted(os.scandir(path / sub), key=lambda e: e.name):
                if not entry.is_file():
                    continue
                info = entry.name.partition(":2,")[2] if sub == "cur" else ""
                flags = [LETTER_FLAGS[c] for c in info if c in LETTER_FLAGS]
                flags += [keywords[c] for c in info if c in keywords]
                stat = entry.stat()
                progress.show(f"{name}: {counts['messages']} messages, {counts['bytes'] / 1e6:.1f} MB")
                with open(entry.path, "rb") as f:
                    if stat.st_size > STREAM_OVER:  # its header now, the file handed on for the rest
                        data = f
                        message_id = mime.header_value(f.read(256 * 1024), "message-id")
                        f.seek(0)
                    else:
                        data = f.read()
                        message_id = mime.header_value(data, "message-id")
                    await target.add(data, stat.st_size, message_id, flags, int(stat.st_mtime), counts)
        await target.flush()


async def import_mbox(store, account, path: Path, name: str, counts: dict, progress: Progress) -> None:
    box = mailbox.mbox(path, create=False)
    target = Target(store, account, name)
    await target.open()
    for key in box.iterkeys():
        msg = box.get_message(key)
        data, status, keywords = mbox_message(box.get_bytes(key, from_=False))
        flags = [flag for letter, flag in (("R", "\\Seen"), ("A", "\\Answered"), ("F", "\\Flagged"),
                                           ("D", "\\Deleted"), ("T", "\\Draft")) if letter in status]
        flags += keywords
        internaldate = _from_line_date(msg.get_from()) or int(time.time())
        progress.show(f"{name}: {counts['messages']} messages, {counts['bytes'] / 1e6:.1f} MB")
        await target.add(data, len(data), mime.header_value(data, "message-id"), flags, internaldate, counts)
    await target.flush()


#: header fields mbox writers (mutt, Dovecot, Python's mailbox) keep their metadata in; they are
#: not part of the message and are dropped, as Dovecot hides them from IMAP
MBOX_FIELDS = (b"status", b"x-status", b"x-keywords", b"x-uid", b"x-imap", b"x-imapbase", b"content-length")


def mbox_message(data: bytes) -> tuple:
    """``(message bytes with CRLF, status letters, keywords)`` of one mbox entry: the metadata
    fields taken out, lines ``>From `` (any number of ``>``) unquoted by one ``>`` (mboxrd;
    mboxo writers quote only ``From `` lines, which this reads back the same)."""
    data = data.replace(b"\r\n", b"\n")
    head, sep, body = data.partition(b"\n\n")
    kept, status, keywords = [], "", []
    dropping = False
    for line in head.split(b"\n"):
        if line[:1] in (b" ", b"\t"):  # a folded continuation: goes with its field
            if not dropping:
                kept.append(line)
            continue
        name = line.split(b":", 1)[0].strip().lower()
        dropping = b":" in line and name in MBOX_FIELDS
        if not dropping:
            kept.append(line)
            continue
        value = line.split(b":", 1)[1].decode("utf-8", "replace").strip()
        if name in (b"status", b"x-status"):
            status += value
        elif name == b"x-keywords":
            keywords += [k for k in value.replace(",", " ").split() if k]
    lines = [line[1:] if line.startswith(b">") and line.lstrip(b">").startswith(b"From ") else line
             for line in body.split(b"\n")]
    message = b"\n".join(kept) + sep + b"\n".join(lines)
    return message.replace(b"\n", b"\r\n"), status, keywords


def _from_line_date(from_line: str):
    """The date of an mbox ``From sender date`` line (asctime in UTC, as mail delivery agents
    and Python's mailbox module write it)."""
    parts = (from_line or "").split(None, 1)
    if len(parts) < 2:
        return None
    try:
        return calendar.timegm(time.strptime(" ".join(parts[1].split()[:5]), "%a %b %d %H:%M:%S %Y"))
    except ValueError:
        parsed = email.utils.parsedate_tz(parts[1])
        return int(email.utils.mktime_tz(parsed)) if parsed else None


# -- another IMAP server -----------------------------------------------------------------------
#: special-use attributes (RFC 6154) whose folder is matched to the local folder of that use
SPECIAL_USES = ("\\Sent", "\\Drafts", "\\Trash", "\\Junk", "\\Archive")
#: message bodies fetched per round trip, at most (and at most PULL_BYTES of them)
PULL_BATCH = 50
PULL_BYTES = 16 << 20


async def import_imap(store, account, hostport: str, user: str, password: str, tls: bool, counts: dict,
                      progress: Progress, verify: bool = True) -> None:
    """Pull every selectable folder of another IMAP server (folders, flags, keywords, dates).
    The IMAP client blocks, so it runs in a thread of its own; the store is used from here."""
    host, _, port = hostport.rpartition(":") if hostport.count(":") == 1 else (hostport, "", "")
    client = await deferToThread(_imap_login, host, int(port) if port else (993 if tls else 143), tls, user, password,
                                 verify)
    try:
        local = {f.special_use: f.name for f in await store.list_folders(account.id, "mail") if f.special_use}
        haven = await deferToThread(_is_haven, client)
        for remote, name in await deferToThread(_imap_folders, client, local):
            metas = await deferToThread(_imap_metas, client, remote, haven)
            if metas is None:
                continue  # another Haven's Recovered Items: deleted mail stays deleted
            target = Target(store, account, name)
            await target.open()
            todo = [m for m in metas if _key(m[1], m[2], m[3]) not in target.seen]
            counts["skipped"] += len(metas) - len(todo)
            while todo:
                batch, size = [], 0
                while todo and len(batch) < PULL_BATCH and (not batch or size + todo[0][3] <= PULL_BYTES):
                    size += todo[0][3]
                    batch.append(todo.pop(0))
                bodies = await deferToThread(_imap_bodies, client, [m[0] for m in batch])
                for uid, message_id, internaldate, _size, flags in batch:
                    data = bodies.get(uid)
                    if data is None:
                        continue  # expunged over there meanwhile
                    progress.show(f"{name}: {counts['messages']} messages, {counts['bytes'] / 1e6:.1f} MB")
                    await target.add(data, len(data), message_id, flags, internaldate, counts)
            await target.flush()
    finally:
        await deferToThread(_imap_logout, client)


def _imap_login(host: str, port: int, tls: bool, user: str, password: str, verify: bool = True):
    context = ssl.create_default_context()
    if not verify:  # --insecure: an old server's self-signed certificate (the command said so)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    client = IMAPClient(host, port=port, ssl=tls, ssl_context=context, timeout=60)
    client.normalise_times = False  # INTERNALDATE with its zone: compared as a Unix time
    if not tls and b"STARTTLS" in client.capabilities():
        client.starttls(context)
    client.login(user, password)
    return client


def _imap_folders(client, local: dict) -> list:
    """``[(remote name, local name)]`` of the selectable folders; a special-use folder maps to
    the local one of that use (their Sent Messages into our Sent)."""
    out = []
    for flags, delimiter, name in client.list_folders():
        flags = {(f.decode() if isinstance(f, bytes) else f).lower() for f in flags}
        if flags & {"\\noselect", "\\nonexistent"}:
            continue
        use = next((u for u in SPECIAL_USES if u.lower() in flags), None)
        if name.upper() == "INBOX":
            target = "INBOX"
        elif use in local:
            target = local[use]
        else:
            sep = delimiter.decode() if isinstance(delimiter, bytes) else delimiter
            target = "/".join(name.split(sep)) if sep else name
        out.append((name, target))
    return out


def _is_haven(client) -> bool:
    """The server says it is Haven in its ID (RFC 2971) answer: ``(("name" "Haven" ...))``."""
    try:
        answer = client.id_()
    except Exception:  # no ID over there
        return False
    fields = answer[0] if answer and isinstance(answer[0], (list, tuple)) else ()
    pairs = dict(zip(fields[::2], fields[1::2]))
    return pairs.get(b"name") == b"Haven"


def _imap_metas(client, folder: str, haven: bool = False):
    """``[(uid, Message-ID, INTERNALDATE, size, flags)]`` of a remote folder; None for a Haven
    recovery mailbox (``haven``: the source is Haven, whose only mailboxes without
    mod-sequences are those, gateways/imap/recovered.py)."""
    info = client.select_folder(folder, readonly=True)
    if haven and b"NOMODSEQ" in info:
        return None
    uids = client.search("ALL")
    out = []
    for i in range(0, len(uids), 1000):
        data = client.fetch(uids[i:i + 1000], ["RFC822.SIZE", "INTERNALDATE", "FLAGS",
                                               "BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)]"])
        for uid, d in data.items():
            header = d.get(b"BODY[HEADER.FIELDS (MESSAGE-ID)]") or b""
            flags = [f.decode() if isinstance(f, bytes) else f for f in d[b"FLAGS"]]
            out.append((uid, mime.header_value(header, "message-id"), int(d[b"INTERNALDATE"].timestamp()), d[b"RFC822.SIZE"],
                        [f for f in flags if f != "\\Recent"]))
    return out


def _imap_bodies(client, uids: list) -> dict:
    return {uid: d[b"BODY[]"] for uid, d in client.fetch(uids, ["BODY.PEEK[]"]).items()}


def _imap_logout(client) -> None:
    try:
        client.logout()
    except Exception:  # the other server went away: nothing left to say to it
        pass


# -- calendars, contacts, scripts ---------------------------------------------------------------
async def import_dav(store, config, account, root: Path, counts: dict) -> None:
    collections = {c.folder.name: c for c in await store.list_dav_collections(account.id)}
    for sub, suffix, kind in (("calendars", ".ics", "calendar"), ("contacts", ".vcf", "contacts")):
        for path in sorted((root / sub).glob("*" + suffix)) if (root / sub).is_dir() else ():
            name = unquote(path.name[:-len(suffix)])  # export quoted it for the file system
            coll = collections.get(name)
            if coll is None:
                await store.create_folder(account.id, name, kind)
                collections = {c.folder.name: c for c in await store.list_dav_collections(account.id)}
                coll = collections[name]
            text = path.read_bytes()
            if not text.strip():
                continue  # an empty address book: the collection is all there is
            try:
                created, replaced = await import_text(store, config, account, coll, text)
            except (ValueError, UnicodeDecodeError) as e:
                counts["warnings"].append(f"not imported: {path}: {e}")
                continue
            counts["items"] += created + replaced


async def import_sieve(store, account, root: Path, counts: dict) -> None:
    if not root.is_dir():
        return
    for path in sorted(root.glob("*.sieve")):
        name = unquote(path.name[:-len(".sieve")])  # export quoted it for the file system
        try:
            await store.put_sieve_script(account.id, name, path.read_bytes().decode("utf-8"))
        except errors.StoreError as e:
            counts["warnings"].append(f"not imported: {path}: {e}")
            continue
        counts["scripts"] += 1
    active = (root / "ACTIVE").read_text(encoding="utf-8").strip() if (root / "ACTIVE").is_file() else ""
    if active:
        await store.set_active_sieve_script(account.id, active)

