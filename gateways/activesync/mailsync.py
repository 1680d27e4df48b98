"""Sync of mail collections ([MS-ASCMD] 2.2.1.21): the phone's own changes applied, then what
changed on the server sent in windows, against the ids the device holds (syncplan.py), with
email items made by mailitem.py.

Invariants
- The sync-key protocol, the phone's changes first and never echoed back: collsync.py.
- A collection's ServerIds are ``<folder id>:<uid>``; a UID is never reused, so a ServerId
  names one message for good (a MOVE gives a new one).
- Delete is a soft delete; with DeletesAsMoves (the default) a delete outside the Trash is a
  move into the ``\\Trash`` folder, as a phone's "delete" means there.
- An item that cannot be converted is logged and skipped (it stays held, so it never blocks the
  key); items are built in the CPU pool, never on the reactor.
"""

from __future__ import annotations

import logging
import time
import xml.etree.ElementTree as ET
from email.message import EmailMessage
from email.utils import formatdate

from twisted.internet.threads import deferToThread

from store import errors

from . import mailitem, syncplan
from .collsync import CONFLICT, CONVERSION_ERROR, NOT_FOUND, PROTOCOL_ERROR, CollectionSync
from .mailitem import BodyPreference
from .wbxml import qname as q
from .xmlutil import sub, text

log = logging.getLogger("haven.activesync")

#: how many messages' raw bytes are read in one batch for an Add window
FETCH_BATCH = 50


def body_preference(opts: dict, smime: bool = False) -> BodyPreference:
    prefs = [BodyPreference(*p) for p in opts.get("body", ())]
    return mailitem.choose(prefs, opts.get("mime", 0), smime)


def server_id(folder_id: int, uid: int) -> str:
    return f"{folder_id}:{uid}"


def uid_of(sid: str, folder_id: int):
    folder, _, uid = (sid or "").partition(":")
    if folder != str(folder_id) or not uid.isdigit():
        return None
    return int(uid)


async def pending_count(ctx, folder, state, filter_type=None, window: int = 1 << 30) -> int:
    """How many commands the next Sync of ``folder`` would send the device (at most ``window``),
    from its sync ``state``, changing nothing."""
    if filter_type is None:
        filter_type = state.options.get("filter", state.filter_type)
    live = await ctx.store.list_messages(folder.id)
    plan = syncplan.plan(live, set(state.held), state.modseq, folder.highest_modseq, window,
                         syncplan.cutoff(filter_type, time.time()))
    return plan.count


class MailSync(CollectionSync):
    """One mail collection of one Sync request."""

    def __init__(self, ctx, folder, collection, window: int, trash=None):
        """``trash``: the account's \\Trash folder (where DeletesAsMoves puts a phone's deletes)."""
        super().__init__(ctx, str(folder.id), folder.id, folder, collection, window)
        self.trash = trash

    async def _live(self, opts: dict) -> tuple:
        folder = await self._fresh_folder()
        return await self.store.list_messages(self.folder.id), folder.highest_modseq

    def _cutoff(self, opts: dict) -> int:
        return syncplan.cutoff(opts.get("filter", 0), time.time())

    # -- the phone's commands ----------------------------------------------------------------
    async def _apply_commands(self, held: set, opts: dict):
        responses = ET.Element(q("AirSync", "Responses"))
        commands = self.collection.find(q("AirSync", "Commands"))
        if commands is None:
            return responses
        deletes_as_moves = text(self.collection, "AirSync", "DeletesAsMoves") != "0"
        for cmd in commands:
            name = cmd.tag.rpartition("}")[2]
            sid = text(cmd, "AirSync", "ServerId")
            uid = uid_of(sid, self.folder.id)
            if name == "Change":
                status = await self._change(uid, cmd.find(q("AirSync", "ApplicationData")))
                if status != 1:
                    self._response(responses, "Change", sid, status)
            elif name == "Delete":
                status = await self._delete(uid, deletes_as_moves)
                held.discard(uid)
                if status != 1:
                    self._response(responses, "Delete", sid, status)
            elif name == "Fetch":
                await self._fetch(responses, sid, uid, opts)
            elif name == "Add":  # a draft (16.x)
                el = sub(responses, "AirSync", "Add")
                client_id = text(cmd, "AirSync", "ClientId")
                if client_id:
                    sub(el, "AirSync", "ClientId", client_id)
                status, new_sid = await self._add_draft(client_id, cmd.find(q("AirSync", "ApplicationData")), held)
                if new_sid:
                    sub(el, "AirSync", "ServerId", new_sid)
                sub(el, "AirSync", "Status", status)
        return responses

    async def _add_draft(self, client_id, data, held: set) -> tuple:
        """A draft the phone saved ([MS-ASCMD] 2.2.3.7.2; EAS 16.0 on, in the Drafts folder only):
        made into a message and appended, held by the device from now on.  ``(status, ServerId)``."""
        if self.folder.special_use != "\\Drafts" or self.ctx.version < (16, 0) or data is None:
            return CONVERSION_ERROR, None
        if data.find(q("AirSyncBase", "Attachments")) is not None:
            return CONVERSION_ERROR, None  # drafts with attachments are not taken (yet): never half of one
        store, account, device_id = self.store, self.account, self.device_id
        if client_id:
            known = await store.server_id_for_client_id(account.id, device_id, self.folder.id, client_id)
            if known:
                return 1, known
        raw = draft_message(data, account.address)
        _validity, uid = await store.append_message(account.id, self.folder.id, raw, ["\\Draft", "\\Seen"])
        for rec in await store.fetch_messages(self.folder.id, [uid]):
            self.own[uid] = rec.meta.modseq  # not sent back as a change
        held.add(uid)
        sid = server_id(self.folder.id, uid)
        if client_id:
            await store.remember_client_id(account.id, device_id, self.folder.id, client_id, sid)
        return 1, sid

    async def _change(self, uid, data) -> int:
        if uid is None or data is None:
            return NOT_FOUND
        if self.folder.special_use == "\\Drafts" and self.ctx.version >= (16, 0) and any(
                data.find(q(page, name)) is not None for page, name in
                (("Email", "To"), ("Email", "Subject"), ("AirSyncBase", "Body"), ("Email", "Cc"))):
            return await self._replace_draft(uid, data)
        add, remove = [], []
        read = text(data, "Email", "Read")
        if read in ("0", "1"):
            (add if read == "1" else remove).append("\\Seen")
        flag = data.find(q("Email", "Flag"))
        if flag is not None:
            (add if text(flag, "Email", "Status") == "2" else remove).append("\\Flagged")
        cats = data.find(q("Email", "Categories"))
        replace_keywords = None
        if cats is not None:
            replace_keywords = [mailitem.keyword_of((c.text or "").strip()) for c in cats if (c.text or "").strip()]
        try:
            metas = await self.store.fetch_messages(self.folder.id, [uid])
            if not metas:
                return NOT_FOUND
            # changed here too since the phone's last Sync: the server's version wins
            if self._conflict_wins(metas[0].meta.modseq, uid):
                return CONFLICT
            for op, flags in (("add", add), ("remove", remove)):
                if flags:
                    res = await self.store.store_flags(self.account.id, self.folder.id, [uid], op, flags)
                    for m in res.updated:
                        self.own[m.uid] = m.modseq
            if replace_keywords is not None:
                current = set(metas[0].meta.flags)
                # categories are the keywords a phone shows (mailitem.categories): the others stay
                shown = {f for f in current if f in mailitem.LABELS or not f.startswith(("\\", "$"))}
                gone, new = shown - set(replace_keywords), set(replace_keywords) - shown
                for op, flags in (("remove", gone), ("add", new)):
                    if flags:
                        res = await self.store.store_flags(self.account.id, self.folder.id, [uid], op, sorted(flags))
                        for m in res.updated:
                            self.own[m.uid] = m.modseq
        except errors.InvalidInput:
            return PROTOCOL_ERROR
        return 1

    async def _replace_draft(self, uid: int, data) -> int:
        """An edited draft: the new text is a new message, the old one goes; the next Sync tells
        the phone (a Delete of the old ServerId, an Add of the new), so its ids stay true."""
        if data.find(q("AirSyncBase", "Attachments")) is not None:
            return CONVERSION_ERROR
        if not await self.store.fetch_messages(self.folder.id, [uid]):
            return NOT_FOUND
        await self.store.append_message(self.account.id, self.folder.id, draft_message(data, self.account.address),
                                        ["\\Draft", "\\Seen"])
        await self.store.delete_messages(self.account.id, self.folder.id, [uid])
        return 1

    async def _delete(self, uid, as_move: bool) -> int:
        if uid is None:
            return NOT_FOUND
        trash = self.trash if as_move and self.folder.special_use != "\\Trash" else None
        if trash is not None:
            result = await self.store.move_messages(self.account.id, self.folder.id, [uid], trash.id)
            return 1 if result.pairs else NOT_FOUND
        gone = await self.store.delete_messages(self.account.id, self.folder.id, [uid])
        return 1 if gone else NOT_FOUND

    async def _fetch(self, responses, sid, uid, opts: dict) -> None:
        el = sub(responses, "AirSync", "Fetch")
        sub(el, "AirSync", "ServerId", sid or "")
        items = await self.items([uid], opts) if uid is not None else {}
        if uid not in items:
            sub(el, "AirSync", "Status", NOT_FOUND)
            return
        sub(el, "AirSync", "Status", 1)
        el.append(items[uid])

    # -- the server's changes -------------------------------------------------------------------
    async def _commands(self, out, plan, opts: dict) -> None:
        commands = sub(out, "AirSync", "Commands")
        for name, uids in (("Delete", plan.deletes), ("SoftDelete", plan.soft_deletes)):
            for uid in uids:
                sub(sub(commands, "AirSync", name), "AirSync", "ServerId", server_id(self.folder.id, uid))
        for meta in plan.changes:
            change = sub(commands, "AirSync", "Change")
            sub(change, "AirSync", "ServerId", server_id(self.folder.id, meta.uid))
            change.append(flag_data(meta.flags))
        items = await self.items([m.uid for m in plan.adds], opts)
        for meta in plan.adds:
            data = items.get(meta.uid)
            if data is None:
                continue  # gone meanwhile, or could not be converted (logged): the next Sync deletes it
            add = sub(commands, "AirSync", "Add")
            sub(add, "AirSync", "ServerId", server_id(self.folder.id, meta.uid))
            add.append(data)

    async def items(self, uids: list, opts: dict) -> dict:
        """uid -> ApplicationData of each message (bodies read in batches; built off the reactor)."""
        out = {}
        version = float(self.ctx.request.protocol_version)
        folder_id = self.folder.id
        for i in range(0, len(uids), FETCH_BATCH):
            pairs = await self.store.fetch_messages_with_bodies(folder_id, uids[i:i + FETCH_BATCH], envelope=True,
                                                                structure=True)

            def build(pairs=pairs):
                built = {}
                for rec, raw in pairs:
                    try:
                        structure = rec.structure or {}
                        pref = body_preference(opts, mailitem.is_smime(structure))
                        built[rec.meta.uid] = mailitem.application_data(
                            rec.envelope, structure, raw, rec.meta.flags, rec.meta.internaldate, pref,
                            lambda section, uid=rec.meta.uid: f"{folder_id}:{uid}:{section}", version)
                    except Exception:
                        log.exception("activesync: message %d:%d could not be converted; skipped", folder_id,
                                      rec.meta.uid)
                return built
            out.update(await deferToThread(build))
        return out


def draft_message(data, address: str) -> bytes:
    """A draft's ApplicationData (To, Cc, Bcc, Subject, Importance, the body as text or HTML)
    as an RFC 5322 message from ``address``."""
    msg = EmailMessage()
    msg["From"] = address
    for name in ("To", "Cc", "Bcc"):
        value = text(data, "Email", name)
        if value:
            msg[name] = value
    msg["Subject"] = text(data, "Email", "Subject") or ""
    msg["Date"] = formatdate(localtime=False)
    importance = text(data, "Email", "Importance")
    if importance in ("0", "2"):
        msg["Importance"] = "low" if importance == "0" else "high"
    body = data.find(q("AirSyncBase", "Body"))
    content = text(body, "AirSyncBase", "Data") if body is not None else ""
    kind = text(body, "AirSyncBase", "Type") if body is not None else "1"
    msg.set_content(content or "", subtype="html" if kind == "2" else "plain")
    return msg.as_bytes(policy=msg.policy.clone(linesep="\r\n"))


def flag_data(flags):
    """The ApplicationData of a Change: what a phone may have changed (Read, Flag, Categories)."""
    data = ET.Element(q("AirSync", "ApplicationData"))
    sub(data, "Email", "Read", "1" if "\\Seen" in flags else "0")
    flag = sub(data, "Email", "Flag")
    if "\\Flagged" in flags:
        sub(flag, "Email", "Status", "2")
        sub(flag, "Email", "FlagType", "Flag for follow up")
    cats = sub(data, "Email", "Categories")
    for name in mailitem.categories(flags):
        sub(cats, "Email", "Category", name)
    return data
