"""MoveItems ([MS-ASCMD] 2.2.1.12), GetItemEstimate (2.2.1.9) and ItemOperations (2.2.1.10)
for mail: moving messages between folders as the phone did, how many changes a Sync would
send, and fetching a message or one attachment by its FileReference.

Invariants
- A MoveItems is a MOVE in the store (no tombstone a user could recover); the new ServerId is
  from the store's COPYUID pair, and the device's held ids are adjusted on both sides (it
  already shows the message in the destination: no Sync sends it back as an Add, nor the
  source as a Delete).
- GetItemEstimate counts what syncplan would send (deletes, changes, adds within the filter),
  from the device's state, without changing it.
- A Fetch names a message by CollectionId and ServerId, or by a Search result's LongId (the
  same ``<folder id>:<uid>``).
- A FileReference is ``<folder id>:<uid>:<IMAP section>`` (mailitem.py); the attachment comes
  transfer-decoded, with its Content-Type, whole or the requested Range.
- EmptyFolderContents soft-deletes every message of the folder (recoverable as any delete).
"""

from __future__ import annotations

import base64
import dataclasses
import logging

from twisted.internet.threads import deferToThread

from formats import mime
from store import errors

from . import collsync, mailitem, mailsync, pimfolders, pimsync
from .xmlutil import element, sub, text

log = logging.getLogger("haven.activesync")

# MoveItems statuses
MOVE_BAD_SOURCE, MOVE_BAD_DEST, MOVED, MOVE_SAME, MOVE_FAILED = 1, 2, 3, 4, 5


def _ref(sid: str):
    folder, _, uid = (sid or "").partition(":")
    return (int(folder), int(uid)) if folder.isdigit() and uid.isdigit() else None


async def move_items(ctx):
    store, account, device_id = ctx.store, ctx.account, ctx.request.device_id
    body = ctx.body
    if body is None or body.tag != "{Move}MoveItems":
        return element("Move", "MoveItems", element("Move", "Status", text=MOVE_FAILED))
    folders = {f.id: f for f in await store.list_folders(account.id, "mail")}
    out = element("Move", "MoveItems")
    for move in body.findall("{Move}Move"):
        src_msg = text(move, "Move", "SrcMsgId") or ""
        src_fld, dst_fld = text(move, "Move", "SrcFldId") or "", text(move, "Move", "DstFldId") or ""
        response = sub(out, "Move", "Response")
        sub(response, "Move", "SrcMsgId", src_msg)
        ref = _ref(src_msg)
        if ref is None or str(ref[0]) != src_fld or ref[0] not in folders:
            sub(response, "Move", "Status", MOVE_BAD_SOURCE)
            continue
        if not dst_fld.isdigit() or int(dst_fld) not in folders:
            sub(response, "Move", "Status", MOVE_BAD_DEST)
            continue
        if int(dst_fld) == ref[0]:
            sub(response, "Move", "Status", MOVE_SAME)
            continue
        try:
            result = await store.move_messages(account.id, ref[0], [ref[1]], int(dst_fld))
        except errors.StoreError as e:
            log.info("activesync %s: MoveItems %s failed: %s", account.address, src_msg, e)
            sub(response, "Move", "Status", MOVE_FAILED)
            continue
        if not result.pairs:
            sub(response, "Move", "Status", MOVE_BAD_SOURCE)  # gone meanwhile
            continue
        new_uid = result.pairs[0][1]
        await store.adjust_held_ids(account.id, device_id, ref[0], remove=[ref[1]])
        await store.adjust_held_ids(account.id, device_id, int(dst_fld), add=[new_uid])
        sub(response, "Move", "Status", MOVED)
        sub(response, "Move", "DstMsgId", mailsync.server_id(int(dst_fld), new_uid))
    return out


async def get_item_estimate(ctx):
    store, account, device_id = ctx.store, ctx.account, ctx.request.device_id
    body = ctx.body
    if body is None or body.tag != "{GetItemEstimate}GetItemEstimate":
        return element("GetItemEstimate", "GetItemEstimate", element("GetItemEstimate", "Status", text=2))
    folders, pim = await pimfolders.collections(store, account.id)
    out = element("GetItemEstimate", "GetItemEstimate")
    for coll in body.iter("{GetItemEstimate}Collection"):
        cid = text(coll, "GetItemEstimate", "CollectionId") or text(coll, "AirSync", "CollectionId") or ""
        key = text(coll, "AirSync", "SyncKey")
        response = sub(out, "GetItemEstimate", "Response")
        folder = folders.get(cid) or pim.get(cid)
        state = await store.get_sync_state(account.id, device_id, pimfolders.state_id(cid)) \
            if folder is not None else None
        if folder is None:
            sub(response, "GetItemEstimate", "Status", 2)  # a collection it does not know
            continue
        if state is None or (key is not None and key not in (state.sync_key, state.previous_key)):
            sub(response, "GetItemEstimate", "Status", 4)  # sync it first
            continue
        options = coll.find("{AirSync}Options")
        filter_type = text(options, "AirSync", "FilterType") if options is not None else None
        if cid in pim:
            if filter_type is not None:
                state = dataclasses.replace(state, options={**state.options, "filter": int(filter_type or 0)
                                                            if filter_type.isdigit() else 0})
            count = await pimsync.PimSync(ctx, folder, coll, 1).pending(state)
        else:
            count = await mailsync.pending_count(ctx, folder, state, filter_type)
        sub(response, "GetItemEstimate", "Status", 1)
        c = sub(response, "GetItemEstimate", "Collection")
        sub(c, "GetItemEstimate", "CollectionId", cid)
        sub(c, "GetItemEstimate", "Estimate", count)
    return out


# -- ItemOperations -------------------------------------------------------------------------------

OPS_OK, OPS_PROTOCOL, OPS_SERVER, OPS_BAD_REF, OPS_NOT_FOUND, OPS_RANGE = 1, 2, 3, 15, 6, 8


async def item_operations(ctx):
    body = ctx.body
    if body is None or body.tag != "{ItemOperations}ItemOperations":
        return element("ItemOperations", "ItemOperations", element("ItemOperations", "Status", text=OPS_PROTOCOL))
    out = element("ItemOperations", "ItemOperations")
    sub(out, "ItemOperations", "Status", OPS_OK)
    responses = sub(out, "ItemOperations", "Response")
    for op in body:
        name = op.tag.rpartition("}")[2]
        if name == "Fetch":
            responses.append(await _fetch(ctx, op))
        elif name == "EmptyFolderContents":
            responses.append(await _empty(ctx, op))
        elif name == "Move":
            responses.append(await _move_conversation(ctx, op))
        else:
            el = sub(responses, "ItemOperations", name)
            sub(el, "ItemOperations", "Status", OPS_PROTOCOL)
    return out


async def _fetch(ctx, op):
    store, account = ctx.store, ctx.account
    el = element("ItemOperations", "Fetch")
    file_ref = text(op, "AirSyncBase", "FileReference")
    server = text(op, "AirSync", "ServerId")
    collection = text(op, "AirSync", "CollectionId")
    options = op.find("{ItemOperations}Options")
    if file_ref is not None:
        folder, _, rest = file_ref.partition(":")
        uid, _, section = rest.partition(":")
        if not (folder.isdigit() and uid.isdigit() and section):
            sub(el, "ItemOperations", "Status", OPS_BAD_REF)
            return el
        if int(folder) not in {f.id for f in await store.list_folders(account.id, "mail")}:
            sub(el, "ItemOperations", "Status", OPS_BAD_REF)
            return el
        pairs = await store.fetch_messages_with_bodies(int(folder), [int(uid)], structure=True)
        if not pairs:
            sub(el, "ItemOperations", "Status", OPS_BAD_REF)
            return el
        rec, raw = pairs[0]
        found = await deferToThread(attachment, raw, rec.structure, section)
        if found is None:
            sub(el, "ItemOperations", "Status", OPS_BAD_REF)
            return el
        content_type, data = found
        data, status = _range(data, text(options, "ItemOperations", "Range") if options is not None else None)
        sub(el, "ItemOperations", "Status", status)
        sub(el, "AirSyncBase", "FileReference", file_ref)
        props = sub(el, "ItemOperations", "Properties")
        sub(props, "AirSyncBase", "ContentType", content_type)
        if status == OPS_OK and ctx.notes.get("multipart"):  # the octets in a part of their own
            parts = ctx.notes.setdefault("parts", [])
            parts.append(data)
            sub(props, "ItemOperations", "Part", len(parts))
        elif status == OPS_OK:  # base64 text (2.2.3.39.1)
            sub(props, "ItemOperations", "Data", base64.b64encode(data).decode("ascii"))
        return el
    long_id = text(op, "Search", "LongId")
    if long_id is not None and server is None:  # a Search result's: the message's ServerId (search.py)
        server, collection = long_id, long_id.partition(":")[0]
    if server is None or collection is None or not collection.isdigit():
        sub(el, "ItemOperations", "Status", OPS_PROTOCOL)
        return el
    uid = mailsync.uid_of(server, int(collection))
    folders = {f.id: f for f in await store.list_folders(account.id, "mail")}
    if uid is None or int(collection) not in folders:
        sub(el, "ItemOperations", "Status", OPS_NOT_FOUND)
        return el
    opts = collsync.options_of(op, {}) if options is None else fetch_options(options)
    sync = mailsync.MailSync(ctx, folders[int(collection)], op, 1)
    items = await sync.items([uid], opts)
    if uid not in items:
        sub(el, "ItemOperations", "Status", OPS_NOT_FOUND)
        return el
    sub(el, "ItemOperations", "Status", OPS_OK)
    if long_id is not None:
        sub(el, "Search", "LongId", long_id)
    else:
        sub(el, "AirSync", "CollectionId", collection)
        sub(el, "AirSync", "ServerId", server)
    sub(el, "AirSync", "Class", "Email")
    props = sub(el, "ItemOperations", "Properties")
    for child in list(items[uid]):
        props.append(child)
    return el


def fetch_options(options) -> dict:
    """An ItemOperations Fetch's Options as mailsync's state options (BodyPreference, MIMESupport)."""
    wrapper = element("AirSync", "Collection")
    inner = sub(wrapper, "AirSync", "Options")
    for child in options:
        inner.append(child)
    return collsync.options_of(wrapper, {})


def _range(data: bytes, requested):
    """([MS-ASCMD] 2.2.3.142.1 Range "first-last", inclusive, 0-based)."""
    if not requested:
        return data, OPS_OK
    first, _, last = requested.partition("-")
    if not (first.isdigit() and last.isdigit()) or int(first) > int(last) or int(first) >= max(len(data), 1):
        return b"", OPS_RANGE
    return data[int(first):int(last) + 1], OPS_OK


def attachment(raw: bytes, structure, section: str):
    """(Content-Type, decoded octets) of the leaf at IMAP ``section`` ("2", "1.3"), or None."""
    if not structure:
        structure = mime.analyze(raw)["structure"]
    part = structure
    for step in section.split("."):
        if not step.isdigit():
            return None
        n = int(step)
        children = part.get("parts")
        if children:
            if not 1 <= n <= len(children):
                return None
            part = children[n - 1]
        elif n != 1:
            return None
    if part.get("parts"):
        return None
    data = raw[int(part["body_start"]):int(part["end"])]
    if part.get("type") != "message":
        data = mime.transfer_decode(data, part.get("encoding"), strict=False)
    return f"{part.get('type')}/{part.get('subtype')}", data


#: headers read per query when looking for a conversation's messages
HEADER_BATCH = 500


async def _move_conversation(ctx, op):
    """ItemOperations Move ([MS-ASCMD] 2.2.3.113.1): every message of a conversation (by the
    ConversationId the email items carry) into a folder, from every folder but Sent and Trash."""
    store, account = ctx.store, ctx.account
    el = element("ItemOperations", "Move")
    conv_el = op.find("{ItemOperations}ConversationId")
    conv = conv_el.text if conv_el is not None else None
    if isinstance(conv, str):
        conv = conv.encode("latin-1", "replace")
    dst = text(op, "ItemOperations", "DstFldId") or ""
    folders = {str(f.id): f for f in await store.list_folders(account.id, "mail")}
    if not conv or dst not in folders:
        sub(el, "ItemOperations", "Status", OPS_PROTOCOL if not conv else OPS_NOT_FOUND)
        return el
    moved = 0
    for fid, folder in folders.items():
        if fid == dst or folder.special_use in ("\\Sent", "\\Trash"):
            continue
        uids = [m.uid for m in await store.list_messages(folder.id)]
        matching = []
        for i in range(0, len(uids), HEADER_BATCH):
            recs = await store.fetch_messages(folder.id, uids[i:i + HEADER_BATCH], header=True)
            matching += [r.meta.uid for r in recs if mailitem.conversation_id(r.header or b"") == conv]
        if matching:
            result = await store.move_messages(account.id, folder.id, matching, int(dst))
            moved += len(result.pairs)
    log.info("activesync %s: conversation moved (%d messages)", account.address, moved)
    sub(el, "ItemOperations", "Status", OPS_OK)
    sub(el, "ItemOperations", "ConversationId", conv)
    return el


async def _empty(ctx, op):
    store, account = ctx.store, ctx.account
    el = element("ItemOperations", "EmptyFolderContents")
    cid = text(op, "AirSync", "CollectionId") or ""
    folders = {str(f.id): f for f in await store.list_folders(account.id, "mail")}
    if cid not in folders:
        sub(el, "ItemOperations", "Status", OPS_NOT_FOUND)
        return el
    uids = [m.uid for m in await store.list_messages(int(cid))]
    if uids:
        await store.delete_messages(account.id, int(cid), uids)
    sub(el, "ItemOperations", "Status", OPS_OK)
    sub(el, "AirSync", "CollectionId", cid)
    return el
