"""``haven export ADDRESS DIR``: an account's data in formats other servers and tools read.

Layout (docs/export.md has it with the reasons):

- ``DIR/mail/``: Maildir++ as Dovecot writes it.  INBOX is the root (``cur/``, ``new/``,
  ``tmp/``), every other folder a ``.Name`` directory beside them, levels joined by ``.``;
  names in modified UTF-7, a ``.`` inside a level written ``\\2e`` (so it reads back as a dot
  and not as a level; Dovecot's listescape plugin reads it so too).  One file a message, its bytes as stored,
  in ``cur/``, named ``INTERNALDATE.M<uid>P<uidvalidity>.haven,S=<size>:2,<flags>``: the
  system flags as Maildir letters (D F R S T), keywords as letters ``a``-``z`` listed in the
  folder's ``dovecot-keywords`` (Dovecot's file; 26 at most a folder, more are reported and
  left out), the file's mtime the INTERNALDATE.  ``subscriptions`` lists the subscribed names.
- ``DIR/calendars/NAME.ics``: one iCalendar file a calendar or task list, every event and
  to-do in it, each time zone once.  ``DIR/contacts/NAME.vcf``: one vCard file an address book.
- ``DIR/sieve/NAME.sieve``: the Sieve scripts; ``DIR/sieve/ACTIVE`` names the active one.

Re-running into the same DIR goes on where a run stopped: a message whose file is there (by
its name before the flags) is not written again.  Messages are copied a piece at a time, so a
big one is never held whole.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from urllib.parse import quote

from gateways.cli.audit import audit
from gateways.cli.runner import EX_OK, run_command
from gateways.imap import utf7

#: IMAP system flag -> Maildir info letter (Maildir's "2," section; letters in ASCII order)
MAILDIR_FLAGS = {"\\Draft": "D", "\\Flagged": "F", "\\Answered": "R", "\\Seen": "S", "\\Deleted": "T"}
#: Dovecot's letters for keywords, in the order of its dovecot-keywords file
KEYWORD_LETTERS = "abcdefghijklmnopqrstuvwxyz"
BATCH = 500
PIECE = 256 * 1024


def main(args) -> int:
    return run_command(args, cmd_export)


def maildir_name(name: str) -> str:
    """The Maildir++ directory of an IMAP folder name ("" for INBOX): levels in modified UTF-7
    joined by ``.``; a ``.`` or ``\\`` inside a level, and a ``~`` starting the name, written
    ``\\NN`` (hex) as Dovecot's listescape plugin writes them."""
    if name == "INBOX":
        return ""
    levels = [utf7.encode(level).replace("\\", "\\5c").replace(".", "\\2e") for level in name.split("/")]
    if levels[0].startswith("~"):
        levels[0] = "\\7e" + levels[0][1:]
    return "." + ".".join(levels)


def file_name(collection: str, suffix: str) -> str:
    return quote(collection, safe=" -_@()+,") + suffix


class Progress:
    """One line on a terminal (standard error), rewritten as work goes on; silent otherwise."""

    def __init__(self, stream=sys.stderr):
        self.stream = stream
        self.on = stream.isatty()
        self._last = 0.0

    def show(self, text: str, force: bool = False) -> None:
        now = time.monotonic()
        if self.on and (force or now - self._last > 0.1):
            self._last = now
            self.stream.write("\r\033[K" + text)
            self.stream.flush()

    def done(self) -> None:
        if self.on:
            self.stream.write("\r\033[K")
            self.stream.flush()


async def cmd_export(store, args, raw) -> int:
    account = await store.get_account(args.address)
    dest = Path(args.dir)
    progress = Progress()
    started = time.monotonic()
    mail = await export_mail(store, account, dest / "mail", progress)
    dav = await export_dav(store, account, dest)
    scripts = await export_sieve(store, account, dest / "sieve")
    progress.done()
    seconds = time.monotonic() - started
    audit("export", address=account.address, dir=str(dest), messages=mail["messages"])
    print(f"exported {account.address} to {dest}: {mail['messages']} messages in {mail['folders']} folders "
          f"({mail['written']} written, {mail['messages'] - mail['written']} there already; "
          f"{mail['bytes'] / 1e6:.1f} MB in {seconds:.1f} s), {dav['calendars']} calendars and task lists "
          f"({dav['events']} items), {dav['books']} address books ({dav['cards']} cards), {scripts} Sieve scripts")
    for warning in mail["warnings"] + dav["warnings"]:
        print(f"haven: {warning}", file=sys.stderr)
    return EX_OK


async def export_mail(store, account, root: Path, progress: Progress, hostname: str = "haven") -> dict:
    counts = {"messages": 0, "written": 0, "bytes": 0, "folders": 0, "warnings": []}
    folders = await store.list_folders(account.id, "mail")
    for folder in folders:
        path = root / maildir_name(folder.name) if folder.name != "INBOX" else root
        for sub in ("cur", "new", "tmp"):
            (path / sub).mkdir(parents=True, exist_ok=True)
        if folder.name != "INBOX":
            (path / "maildirfolder").touch()
        counts["folders"] += 1
        have = {n.partition(":2,")[0] for n in os.listdir(path / "cur")}
        metas = await store.list_messages(folder.id)
        keywords = sorted({f for m in metas for f in m.flags if not f.startswith("\\")})
        if len(keywords) > len(KEYWORD_LETTERS):
            counts["warnings"].append(f"{folder.name}: {len(keywords)} keywords, Maildir keeps "
                                      f"{len(KEYWORD_LETTERS)}; left out: {', '.join(keywords[26:])}")
            keywords = keywords[:len(KEYWORD_LETTERS)]
        letters = dict(zip(keywords, KEYWORD_LETTERS))
        with open(path / "dovecot-keywords", "w", encoding="utf-8") as f:
            f.writelines(f"{i} {k}\n" for i, k in enumerate(keywords))
        for i in range(0, len(metas), BATCH):
            batch = metas[i:i + BATCH]
            records = {r.meta.uid: r for r in await store.fetch_messages(folder.id, [m.uid for m in batch])}
            for meta in batch:
                rec = records.get(meta.uid)
                if rec is None:
                    continue  # expunged meanwhile
                counts["messages"] += 1
                base = f"{meta.internaldate}.M{meta.uid}P{folder.uidvalidity}.{hostname},S={meta.size}"
                progress.show(f"{folder.name}: {counts['messages']} messages, {counts['bytes'] / 1e6:.1f} MB")
                if base in have:
                    continue
                flags = "".join(sorted(MAILDIR_FLAGS[f] for f in meta.flags if f in MAILDIR_FLAGS)
                                + sorted(letters[f] for f in meta.flags if f in letters))
                counts["bytes"] += await _write_message(store, rec.blob_id, path, f"{base}:2,{flags}",
                                                        meta.internaldate)
                counts["written"] += 1
    subscribed = await store.list_subscriptions(account.id)
    with open(root / "subscriptions", "w", encoding="utf-8") as f:
        f.writelines((maildir_name(name)[1:] or "INBOX") + "\n" for name in subscribed)
    return counts


async def copy_blob(store, blob_id: str, f) -> int:
    """A message's bytes into the binary file ``f``, :data:`PIECE` octets at a time (never the
    whole message at once); returns the size."""
    stream = await store.open_blob(blob_id)
    size = 0
    try:
        while True:
            piece = await stream.read(PIECE)
            if not piece:
                return size
            f.write(piece)
            size += len(piece)
    finally:
        stream.close()


async def _write_message(store, blob_id: str, path: Path, name: str, mtime: int) -> int:
    """Maildir delivery: the bytes into tmp/, then renamed into cur/; returns the size."""
    tmp = path / "tmp" / name.partition(":")[0]
    with open(tmp, "wb") as f:
        size = await copy_blob(store, blob_id, f)
    os.utime(tmp, (mtime, mtime))
    os.rename(tmp, path / "cur" / name)
    return size


async def export_dav(store, account, dest: Path) -> dict:
    from icalendar import Calendar  # only an export with calendars loads the parser

    counts = {"calendars": 0, "events": 0, "books": 0, "cards": 0, "warnings": []}
    for coll in await store.list_dav_collections(account.id):
        items = await store.list_dav_items(coll.folder.id, with_data=True)
        if coll.folder.kind == "contacts":
            (dest / "contacts").mkdir(parents=True, exist_ok=True)
            with open(dest / "contacts" / file_name(coll.folder.name, ".vcf"), "w", encoding="utf-8",
                      newline="") as f:
                for item in items:
                    text = item.data.replace("\r\n", "\n").replace("\n", "\r\n")
                    f.write(text if text.endswith("\r\n") else text + "\r\n")
            counts["books"] += 1
            counts["cards"] += len(items)
            continue
        (dest / "calendars").mkdir(parents=True, exist_ok=True)
        out = Calendar()
        out.add("prodid", "-//Haven//export//EN")
        out.add("version", "2.0")
        zones: set = set()
        for item in items:
            try:
                cal = Calendar.from_ical(item.data)
            except Exception as e:  # stored after Radicale's checks; a newer parser may still object
                counts["warnings"].append(f"{coll.folder.name}/{item.href}: not exported, does not parse: {e}")
                continue
            for comp in cal.subcomponents:
                if comp.name == "VTIMEZONE":
                    tzid = str(comp.get("TZID"))
                    if tzid in zones:
                        continue
                    zones.add(tzid)
                out.add_component(comp)
            counts["events"] += 1
        (dest / "calendars" / file_name(coll.folder.name, ".ics")).write_bytes(out.to_ical())
        counts["calendars"] += 1
    return counts


async def export_sieve(store, account, path: Path) -> int:
    scripts = await store.list_sieve_scripts(account.id)
    if not scripts:
        return 0
    path.mkdir(parents=True, exist_ok=True)
    active = None
    for info in scripts:
        text = await store.get_sieve_script(account.id, info.name)
        (path / file_name(info.name, ".sieve")).write_bytes(text.encode("utf-8"))  # line ends as stored
        if info.active:
            active = info.name
    (path / "ACTIVE").write_text((active + "\n") if active else "", encoding="utf-8")
    return len(scripts)
