"""Mailbox handlers: SELECT/EXAMINE (CONDSTORE, QRESYNC), CREATE (CREATE-SPECIAL-USE), DELETE,
RENAME, SUBSCRIBE/UNSUBSCRIBE, LIST (LIST-EXTENDED, SPECIAL-USE, LIST-STATUS), LSUB, STATUS
(STATUS=SIZE, QUOTA's DELETED and DELETED-STORAGE), APPEND (UIDPLUS APPENDUID, APPENDLIMIT;
``NO [OVERQUOTA]`` past the hard quota), CLOSE, UNSELECT, CHECK.

Invariants:
* IMAP sees only folders of kind "mail"; a calendar or address book of the same name is
  "nonexistent" to every command here (so DELETE can never remove a calendar).
* Names cross the wire in modified UTF-7 (response.mailbox), or as UTF-8 once UTF8=ACCEPT or
  IMAP4rev2 is enabled (``utf8_names``); the store keeps Unicode.
* IMAP4rev2 (RFC 9051 §6.3.2): SELECT/EXAMINE send no ``* n RECENT`` and no ``[UNSEEN n]`` and
  end with ``* LIST () "/" name`` (OLDNAME when the client spelled it otherwise); DELETE of a
  level above mailboxes answers ``NO [HASCHILDREN]`` (§6.3.5); STATUS RECENT is BAD (parser).
* LIST always returns special-use attributes and \\HasChildren/\\HasNoChildren (RFC 6154 §2 and
  RFC 5258 §4 allow it), which is what Thunderbird and mutt want.
* Subscriptions are names (Store.list_subscriptions): LIST (SUBSCRIBED) and LSUB show those
  whose mailbox is gone (\\NonExistent, LSUB \\Noselect) until UNSUBSCRIBE; CREATE does not
  subscribe.  RECURSIVEMATCH qualifies only SUBSCRIBED (else BAD) and adds CHILDINFO to a listed
  name with a subscribed descendant the patterns do not list (RFC 5258 §3.5).
* A listed name without a mailbox carries exactly one selectability flag (RFC 9051 §9
  ``mbx-list-sflag``): \\NonExistent in an extended LIST (it implies \\Noselect, RFC 5258 §3),
  \\Noselect in a basic LIST (a level above mailboxes, RFC 3501 §6.3.8) and in LSUB; the same
  in both revisions.

MULTIAPPEND (RFC 3502): the messages of one APPEND are stored in one transaction (all or none);
the framer bounds the command's literals together by about APPENDLIMIT (deliberate: one
command never spools more than one big message's worth).

Deliberately not done: CATENATE, LIST "REMOTE" (no remote mailboxes), \\Marked.
"""

from __future__ import annotations

import re

from store import errors
from store.interfaces import SPECIAL_USES

from . import objectid, response
from .reader import normalize_inbox
from .recovered import RecoverySelected, is_recovery
from .seqset import format_set
from .session import SelectedMailbox
from .states import AUTH, IMAPError, SELECTED

_NOSELECT = {"\\Noselect"}


def _parents(name: str):
    """The names above ``name``: "a", "a/b" for "a/b/c"."""
    parts = name.split("/")
    for i in range(1, len(parts)):
        yield "/".join(parts[:i])


def _pattern_regex(pattern: str):
    out = []
    for ch in pattern:
        if ch == "*":
            out.append(".*")
        elif ch == "%":
            out.append("[^/]*")
        else:
            out.append(re.escape(ch))
    return re.compile("".join(out) + r"\Z", re.S)


class MailboxCommands:
    async def mail_folder(self, name: str):
        """The mail folder, or the recovery mailbox (recovered.py), of that name."""
        try:
            folder = await self.store.get_folder(self.account.id, name)
        except errors.NotFound:
            view = await self.recovered.folder(self.store, self.account.id, name) \
                if self.recovered.covers(name) else None
            if view is None:
                raise
            return view
        if folder.kind != "mail":
            raise errors.NotFound("No such mailbox")
        return folder

    async def target_folder(self, name: str):
        """The destination of APPEND, COPY or MOVE: a mail folder, never a recovery mailbox."""
        folder = await self.mail_folder(name)
        if is_recovery(folder):
            raise IMAPError("NO", "Recovered messages are read-only; copy or move them out to restore them",
                            "CANNOT")
        return folder

    async def _refuse_recovery_name(self, name: str) -> None:
        """CREATE, DELETE, RENAME of a recovery mailbox name: NO [CANNOT] (RFC 5530)."""
        if self.recovered.covers(name) and self.recovered.root and \
                await self.recovered.folder(self.store, self.account.id, self.recovered.root) is not None:
            raise IMAPError("NO", f"{self.recovered.root} holds recoverable messages and cannot be changed",
                            "CANNOT")

    def deselect(self, notify: bool) -> None:
        if self.selected is not None and notify:
            # RFC 7162 §3.2.11: the old mailbox is closed before the new one is reported
            self.write(b"* OK [CLOSED] Previous mailbox closed\r\n")
        self.selected = None
        self.state = AUTH

    # -- SELECT / EXAMINE ----------------------------------------------------------------------
    async def do_SELECT(self, cmd, readonly: bool = False):
        args = cmd.args
        q = args["qresync"]
        if q is not None and not self.qresync:
            raise IMAPError("BAD", "QRESYNC parameter requires ENABLE QRESYNC")  # RFC 7162 §3.2.5
        self.deselect(notify=True)
        if args["condstore"]:
            self.condstore = True  # RFC 7162 §3.1.8
        folder = await self.mail_folder(args["mailbox"])
        metas = await self.store.list_messages(folder.id)
        if is_recovery(folder):
            sel = RecoverySelected(folder, readonly, metas)
        else:
            sel = SelectedMailbox(folder, readonly, metas, track_recent=not self.rev2)
        if not self.rev2 and not sel.view:  # IMAP4rev2 has no \Recent: nothing to claim (RFC 9051 §2.3.2, session.py)
            if readonly:
                sel.unclaimed_above(folder.recent_uid)  # EXAMINE claims nothing (RFC 3501 §6.3.2)
            else:
                # after the list: every message in it is at most the claim's top (RFC 3501 §2.3.2)
                sel.claimed(*await self.store.claim_recent(folder.id))
        sel.dirty = True  # re-check once: closes the race between get_folder and list_messages
        uidnext = max(folder.uidnext, (sel.uids[-1] + 1) if sel.uids else 1)
        out = [sel.flags_lines(), sel.exists_lines()]
        if not self.rev2:  # RFC 9051 §6.3.2 dropped the UNSEEN response code (Appendix E)
            for i, uid in enumerate(sel.uids):
                if "\\Seen" not in sel.metas[uid].flags:
                    out.append(b"* OK [UNSEEN %d] First unseen\r\n" % (i + 1))
                    break
        out.append(b"* OK [UIDVALIDITY %d] UIDs valid\r\n" % folder.uidvalidity)
        out.append(b"* OK [UIDNEXT %d] Predicted next UID\r\n" % uidnext)
        if sel.view:  # RFC 7162 §3.1.2.2: a mailbox without persistent mod-sequences
            out.append(b"* OK [NOMODSEQ] Sorry, this mailbox format has no modseqs\r\n")
        else:
            out.append(b"* OK [HIGHESTMODSEQ %d] Highest\r\n" % max(folder.highest_modseq, 1))
        out.append(b"* OK [MAILBOXID (%s)] Ok\r\n" % objectid.mailbox_id(folder.id).encode())  # RFC 8474 §4.2
        if self.rev2:
            out.append(self._select_list_line(folder.name, args["spelled"]))
        self.write(b"".join(out))
        if q is not None and q["uidvalidity"] == folder.uidvalidity and not sel.view:
            await self._qresync(sel, q)
        self.selected = sel
        self.state = SELECTED
        return ("READ-ONLY" if readonly else "READ-WRITE", ("EXAMINE" if readonly else "SELECT") + " completed")

    async def do_EXAMINE(self, cmd):
        return await self.do_SELECT(cmd, readonly=True)

    def _select_list_line(self, name: str, spelled: str) -> bytes:
        """RFC 9051 §6.3.2: an IMAP4rev2 SELECT/EXAMINE answers a LIST of the mailbox (its
        attributes MAY be empty), with OLDNAME when the client spelled the name otherwise
        ("inbox" for INBOX: the canonical name comes back, the client's spelling with it)."""
        line = b'* LIST () "/" ' + response.mailbox(name, True)
        if spelled != name:
            line += b' ("OLDNAME" (' + response.mailbox(spelled, True) + b"))"
        return line + b"\r\n"

    async def _qresync(self, sel: SelectedMailbox, q: dict) -> None:
        """RFC 7162 §3.2.5.1: VANISHED (EARLIER) and FETCH for what changed since the client's modseq."""
        changes = await self.store.changes_since(sel.folder.id, q["modseq"])
        expunged = set(changes.expunged)
        if q["known_uids"] is not None:
            known = q["known_uids"]
            expunged = {u for u in expunged if known.contains(u, max(expunged | {1}))}
        expunged -= set(sel.metas)
        out = [sel.announce(m.flags for m in changes.updated)]
        if expunged:
            out.append(b"* VANISHED (EARLIER) %s\r\n" % format_set(expunged).encode())
        for meta in changes.updated:
            seq = sel.seq_of(meta.uid)
            if seq is not None:
                sel.metas[meta.uid] = meta
                out.append(sel.fetch_line(seq, meta, True))
        self.write(b"".join(out))

    async def do_CLOSE(self, cmd):
        sel = self.selected
        if not sel.readonly:
            # RFC 3501 §6.4.2: expunge silently
            await self.store.expunge(self.account.id, sel.folder.id)
        self.deselect(notify=False)

    async def do_UNSELECT(self, cmd):
        self.deselect(notify=False)

    async def do_CHECK(self, cmd):
        # RFC 9051 (Appendix E) dropped CHECK for NOOP; still answered in both revisions
        self.selected.dirty = True

    # -- CREATE / DELETE / RENAME / SUBSCRIBE --------------------------------------------------
    async def do_CREATE(self, cmd):
        name = cmd.args["mailbox"].rstrip("/")  # RFC 3501 §6.3.3: trailing delimiter
        if not name or "//" in name:
            raise IMAPError("NO", "Invalid mailbox name", "CANNOT")
        await self._refuse_recovery_name(name)
        if name == "INBOX":
            raise IMAPError("NO", "INBOX always exists", "ALREADYEXISTS")
        special = None
        uses = cmd.args["special_use"]
        if uses:
            canon = {s.lower(): s for s in SPECIAL_USES}
            if len(uses) != 1 or uses[0].lower() not in canon:
                raise IMAPError("NO", "Unsupported special-use attribute", "USEATTR")  # RFC 6154 §3
            special = canon[uses[0].lower()]
        parts = name.split("/")
        for i in range(1, len(parts)):
            # RFC 3501 §6.3.3: create the superior names the new one needs
            try:
                await self.store.create_folder(self.account.id, "/".join(parts[:i]))
            except errors.Exists:
                pass
        folder = await self.store.create_folder(self.account.id, name, "mail", special)
        return "MAILBOXID (%s)" % objectid.mailbox_id(folder.id), "CREATE completed"  # RFC 8474 §4.1

    async def do_DELETE(self, cmd):
        name = cmd.args["mailbox"]
        if name == "INBOX":
            raise IMAPError("NO", "INBOX cannot be deleted", "CANNOT")
        await self._refuse_recovery_name(name)
        try:
            folder = await self.mail_folder(name)
        except errors.NotFound:
            if self.rev2 and await self._has_inferiors(name):
                # RFC 9051 §6.3.5, §7.1: the name is a level above mailboxes (LIST shows it
                # \Noselect), which cannot be deleted while they are there
                raise IMAPError("NO", "Name has inferior hierarchical names", "HASCHILDREN") from None
            raise
        await self.store.delete_folder(self.account.id, name)
        if self.selected is not None and self.selected.folder.id == folder.id:
            self.deselect(notify=True)

    async def _has_inferiors(self, name: str) -> bool:
        prefix = name + "/"
        return any(f.name.startswith(prefix) for f in await self.store.list_folders(self.account.id))

    async def do_RENAME(self, cmd):
        old, new = cmd.args["old"], cmd.args["new"].rstrip("/")
        if not new or "//" in new:
            raise IMAPError("NO", "Invalid mailbox name", "CANNOT")
        if new == "INBOX":
            raise IMAPError("NO", "INBOX already exists", "ALREADYEXISTS")
        await self._refuse_recovery_name(old)
        await self._refuse_recovery_name(new)
        await self.mail_folder(old)
        if old == new:
            raise IMAPError("NO", "Mailbox already exists", "ALREADYEXISTS")
        parts = new.split("/")
        for i in range(1, len(parts)):
            if "/".join(parts[:i]) == old:
                raise IMAPError("NO", "Cannot rename a mailbox into itself", "CANNOT")
        for i in range(1, len(parts)):
            try:
                await self.store.create_folder(self.account.id, "/".join(parts[:i]))
            except errors.Exists:
                pass
        await self.store.rename_folder(self.account.id, old, new)

    async def do_SUBSCRIBE(self, cmd):
        await self.mail_folder(cmd.args["mailbox"])  # RFC 3501 §6.3.6: a server MAY refuse a nonexistent one
        await self.store.set_subscribed(self.account.id, cmd.args["mailbox"], True)

    async def do_UNSUBSCRIBE(self, cmd):
        # also a name whose mailbox is gone (RFC 3501 §6.3.6: subscriptions outlive mailboxes)
        await self.store.set_subscribed(self.account.id, cmd.args["mailbox"], False)

    # -- LIST / LSUB -----------------------------------------------------------------------------
    async def do_LIST(self, cmd, verb: bytes = b"LIST"):
        args = cmd.args
        select, returns = args["select"], set(args["returns"])
        patterns = args["patterns"]
        if verb == b"LIST" and len(patterns) == 1 and patterns[0] == "" and not select:
            # RFC 3501 §6.3.8: the hierarchy delimiter and root
            self.write(b'* LIST (\\Noselect) "/" ""\r\n')
            return None
        folders = await self.store.list_folders(self.account.id)
        views = await self.recovered.listed(self.store, self.account.id, {f.name for f in folders})
        folders += views
        by_name = {f.name: f for f in folders}
        subscribed_only = "SUBSCRIBED" in select  # LIST (SUBSCRIBED) and LSUB
        special_only = "SPECIAL-USE" in select
        recursive = "RECURSIVEMATCH" in select  # the parser made sure SUBSCRIBED is there too
        extended = bool(select or returns)
        show_subscribed = verb == b"LIST" and (subscribed_only or "SUBSCRIBED" in returns)
        subs = set(await self.store.list_subscriptions(self.account.id)) \
            if subscribed_only or show_subscribed else set()
        if subscribed_only or show_subscribed:
            subs.update(f.name for f in views)  # always shown as subscribed (recovered.py)
        # RFC 5258 §3.1: SUBSCRIBED selects the subscribed names, those without a mailbox included
        selected = set(subs) if subscribed_only else set(by_name)
        if special_only:  # RFC 6154 §3
            selected = {n for n in selected if n in by_name and by_name[n].special_use}
        children = set()  # names with a mailbox below them (RFC 3348 \HasChildren)
        for name in by_name:
            children.update(_parents(name))
        regexes = []
        for p in patterns:
            full = normalize_inbox(args["reference"] + p)
            regexes.append((_pattern_regex(full), full.endswith("%")))

        def matching(name: str) -> list:
            return [pct for rx, pct in regexes if rx.match(name)]

        # what may be listed: the selected names, and the levels above them (for '%', for CHILDINFO)
        levels = set()
        for name in selected:
            levels.update(_parents(name))
        if subscribed_only and verb == b"LIST" and recursive:
            # RFC 5258 §3.5: CHILDINFO for a listed name with a subscribed descendant that the
            # patterns do not list themselves
            unlisted = {n for n in selected if not matching(n)}
            with_childinfo = set()
            for n in unlisted:
                with_childinfo.update(_parents(n))
        else:
            with_childinfo = set()
        out = []
        for name in sorted(selected | levels, key=lambda n: (n != "INBOX", n)):
            matched = matching(name)
            if not matched:
                continue
            folder = by_name.get(name)
            childinfo = name in with_childinfo
            if name not in selected:
                # a level above selected names: RFC 3501 §6.3.8/§6.3.9 for '%'; RFC 5258 §3.5
                if not (childinfo or (any(matched) and not recursive and not special_only)):
                    continue
                if subscribed_only and not childinfo and verb == b"LIST":
                    continue  # LIST (SUBSCRIBED) without RECURSIVEMATCH: only subscribed names
            attrs = []
            if folder is None:
                attrs.append("\\NonExistent" if extended and verb == b"LIST" else "\\Noselect")
            elif verb == b"LSUB" and name not in selected:
                attrs.append("\\Noselect")  # RFC 3501 §6.3.9: a level that is not subscribed itself
            if show_subscribed and name in subs:
                attrs.append("\\Subscribed")
            if folder is not None and folder.special_use:
                attrs.append(folder.special_use)
            if verb == b"LIST":
                attrs.append("\\HasChildren" if name in children else "\\HasNoChildren")
            extra = b' ("CHILDINFO" ("SUBSCRIBED"))' if childinfo else b""
            out.append((b'* %s (%s) "/" %s%s\r\n' % (verb, " ".join(attrs).encode(),
                                                       response.mailbox(name, self.utf8_names), extra),
                        folder))
        if not args["status"]:
            self.write(b"".join(line for line, _ in out))
            return None
        for line, folder in out:
            self.write(line)
            if folder is not None:
                # RFC 5819: the STATUS of each selectable mailbox follows its LIST line
                try:
                    await self._status(folder.name, args["status"])
                except errors.NotFound:
                    pass
        return None

    async def do_LSUB(self, cmd):
        return await self.do_LIST(cmd, b"LSUB")

    # -- STATUS ------------------------------------------------------------------------------
    async def do_STATUS(self, cmd):
        await self._status(cmd.args["mailbox"], cmd.args["items"])

    async def _status(self, name: str, items: list) -> None:
        try:
            st = await self.store.folder_status(self.account.id, name)
        except errors.NotFound:
            if await self.recovered.folder(self.store, self.account.id, name) is None:
                raise
            st = await self.recovered.status(self.store, self.account.id, name)
        folder = st.folder
        if folder.kind != "mail":
            raise errors.NotFound("No such mailbox")
        values = []
        for item in items:
            if item == "MESSAGES":
                v = st.messages
            elif item == "RECENT":
                v = st.recent  # what no session has claimed yet (Store.claim_recent)
            elif item == "UIDNEXT":
                v = folder.uidnext
            elif item == "UIDVALIDITY":
                v = folder.uidvalidity
            elif item == "UNSEEN":
                v = st.unseen
            elif item == "HIGHESTMODSEQ":
                self.condstore = True  # RFC 7162 §3.1.8: STATUS HIGHESTMODSEQ enables CONDSTORE
                v = max(folder.highest_modseq, 1) if not is_recovery(folder) else 0  # 0: no modseqs (§3.1.2.2)
            elif item == "SIZE":
                v = st.size
            elif item == "DELETED":
                v = st.deleted
            elif item == "DELETED-STORAGE":
                v = await self._deleted_storage(folder.id)
            elif item == "MAILBOXID":  # RFC 8474 §4.3: not a number
                values.append(b"MAILBOXID (%s)" % objectid.mailbox_id(folder.id).encode())
                continue
            else:  # APPENDLIMIT, RFC 7889
                v = self.config.max_literal_size
            values.append(b"%s %d" % (item.encode(), v))
        self.write(b"* STATUS %s (%s)\r\n" % (response.mailbox(name, self.utf8_names), b" ".join(values)))

    async def _deleted_storage(self, folder_id: int) -> int:
        """RFC 9208 STATUS DELETED-STORAGE (required with QUOTA=RES-STORAGE): what an EXPUNGE
        would free, the RFC822.SIZE sum of the \\Deleted messages, in octets, as Cyrus reports
        it.  It reads the folder's message list, so it is only done when asked for."""
        metas = await self.store.list_messages(folder_id)
        return sum(m.size for m in metas if "\\Deleted" in m.flags)

    # -- APPEND ------------------------------------------------------------------------------
    async def do_APPEND(self, cmd):
        args = cmd.args
        # RFC 3502 (MULTIAPPEND): further messages in args["more"]; all are stored or none
        messages = [args] + args["more"]
        for msg in messages:
            raw = msg["message"]  # bytes, or a Spool (gateways/common/spool.py) of a big literal
            size = len(raw) if isinstance(raw, bytes) else raw.size
            if size > self.config.max_literal_size:
                raise IMAPError("NO", "Message too big", "TOOBIG")
            if not size:
                raise IMAPError("NO", "Empty message", "CANNOT")
        folder = await self.target_folder(args["mailbox"])
        batch = []
        for msg in messages:
            raw = msg["message"]
            if not isinstance(raw, bytes):
                try:
                    raw = await raw.finished()  # the file; the command's end closes it
                except OSError as e:
                    self.log.error("imap %s: cannot spool an APPEND: %s", self.peer, e)
                    raise IMAPError("NO", "Cannot store the message now", "UNAVAILABLE") from None
            batch.append((raw, [f for f in msg["flags"] if f != "\\Recent"], msg["internaldate"]))
        if len(batch) == 1:
            uidvalidity, uid = await self.store.append_message(self.account.id, folder.id, *batch[0])
            uids = [uid]
        else:
            uidvalidity, uids = await self.store.append_messages(self.account.id, folder.id, batch)
        if self.selected is not None and self.selected.folder.id == folder.id:
            self.selected.dirty = True  # RFC 3501 §6.3.11: report the new message with EXISTS
        # RFC 4315 §3 / RFC 3502 §6.3.11: APPENDUID with the UID set of all the messages
        return ("APPENDUID %d %s" % (uidvalidity, format_set(uids)), "APPEND completed")
