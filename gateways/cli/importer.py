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
import sys
import time
from pathlib import Path
from urllib.parse import unquote

from gateways.cli.audit import audit
from gateways.cli.dav import import_text
from gateways.cli.export import KEYWORD_LETTERS, MAILDIR_FLAGS, Progress
from gateways.cli.runner import EX_DATAERR, EX_OK, run_command
from gateways.imap import utf7
from store import errors

LETTER_FLAGS = {letter: flag for flag, letter in MAILDIR_FLAGS.items()}
#: a message bigger than this is handed to the store as an open file, not read into memory
STREAM_OVER = 1 << 20
BATCH = 500


def main(args) -> int:
    return run_command(args, cmd_import)


async def cmd_import(store, args, raw) -> int:
    account = await store.get_account(args.address)
    source = Path(args.source)
    progress = Progress()
    counts = {"messages": 0, "skipped": 0, "folders": set(), "bytes": 0, "items": 0, "scripts": 0, "warnings": []}
    started = time.monotonic()
    if source.is_file():
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
        key = _key(message_id, internaldate, size)
        if key in self.seen:
            counts["skipped"] += 1
            return
        await self.store.append_message(self.account.id, self.folder.id, data, flags, internaldate)
        self.seen.add(key)
        counts["messages"] += 1
        counts["bytes"] += size
        counts["folders"].add(self.name)


def _key(message_id, internaldate: int, size: int) -> tuple:
    return ((message_id or "").strip(), int(internaldate), int(size))


def _message_id(header: bytes):
    for line in header.split(b"\r\n") if b"\r\n" in header else header.split(b"\n"):
        if line[:11].lower() == b"message-id:":
            return line[11:].decode("utf-8", "replace").strip()
    return None


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
                    message_id = _message_id(_header(f))
                    if stat.st_size > STREAM_OVER:
                        f.seek(0)
                        await target.add(f, stat.st_size, message_id, flags, int(stat.st_mtime), counts)
                    else:
                        f.seek(0)
                        await target.add(f.read(), stat.st_size, message_id, flags, int(stat.st_mtime), counts)


def _header(f) -> bytes:
    """The header section of a message file (up to 256 KiB), the file left anywhere."""
    data = f.read(256 * 1024)
    end = data.find(b"\r\n\r\n")
    if end < 0:
        end = data.find(b"\n\n")
    return data if end < 0 else data[:end]


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
        await target.add(data, len(data), msg.get("Message-ID"), flags, internaldate, counts)


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
            try:
                created, replaced = await import_text(store, config, account, coll, path.read_bytes())
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

