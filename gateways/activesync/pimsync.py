"""Sync of calendars, contacts and task lists ([MS-ASCMD] 2.2.1.21 with [MS-ASCAL], [MS-ASCNTC],
[MS-ASTASK]) on the DAV rows: the items a phone holds are the very calendar objects and vCards
CalDAV and CardDAV clients see.

Invariants
- A ServerId is the item's store id (``dav_items.id``, as a string); an edit keeps it (the row
  is updated in place), a move to another collection makes a new one.
- The phone's items are converted by calendar.py, tasks.py and contacts.py, in the CPU pool;
  a stored object that cannot be converted is logged and skipped (it stays held: it never
  blocks the key).
- An Add is stored as a CalDAV PUT of the same text would be (gateways/common/davitems.py: UID,
  ETag, time bounds, ``[http] max_item_size`` / ``max_occurrences``), named ``<UID>.ics`` or
  ``<UID>.vcf``, conditional on that name being free; ClientIds are remembered, so a repeated
  Add is not a second item.
- A Change is merged onto the stored text (what EAS cannot carry survives; elements the phone
  did not list in Supported are kept) and written conditional on the ETag it was merged onto:
  a CalDAV PUT in between makes it a conflict (Status 7, the server's version wins and reaches
  the phone as a Change), never a lost update.  The same when the item changed here since the
  phone's last Sync (unless the phone asked to win: Options/Conflict 0).
- A Delete is a soft delete (``haven recover list`` shows ``dav:ID``); 16.x InstanceId forms
  change or delete one occurrence of a recurring event.
- Deletes come from the ids the device holds (syncplan.py), so the purge never strands one.
- FilterType: calendars by the end of an event's last occurrence (the indexed ``dtend``);
  task lists 8 = incomplete to-dos only; contacts have none.
"""

from __future__ import annotations

import importlib
import logging
import time
import uuid
import xml.etree.ElementTree as ET
from dataclasses import dataclass

from twisted.internet.threads import deferToThread

from gateways.common.davitems import item_for
from store import errors

from . import syncplan
from .collsync import CONFLICT, CONVERSION_ERROR, NOT_FOUND, CollectionSync
from .mailsync import body_preference
from .wbxml import qname as q
from .xmlutil import sub, text

log = logging.getLogger("haven.activesync")

#: items whose text is read and converted in one batch
FETCH_BATCH = 100
#: FilterType of task lists: incomplete tasks only ([MS-ASCMD] 2.2.3.74.4)
INCOMPLETE_TASKS = 8
_ALWAYS = 1 << 62  # the "date" of an item no filter leaves out


def converter(klass: str):
    """The module converting items of an EAS class (``to_eas``, ``from_eas``)."""
    return importlib.import_module(f"gateways.activesync.{klass.lower()}")


@dataclass(frozen=True)
class Meta:
    """What syncplan needs of an item: the id the device holds, its modseq, what FilterType
    compares."""
    uid: int
    modseq: int
    internaldate: int


class PimSync(CollectionSync):
    """One calendar, address book or task list of one Sync request."""

    def __init__(self, ctx, pim, collection, window: int):
        """``pim``: a pimfolders.PimFolder."""
        super().__init__(ctx, pim.server_id, pim.state_id, pim.folder, collection, window)
        self.pim = pim

    @property
    def conv(self):
        """The converting module (calendar.py, tasks.py, contacts.py), imported by the first
        item it converts: read only in worker threads, never on the reactor."""
        return converter(self.pim.klass)

    # -- what the items are -----------------------------------------------------------------
    async def _live(self, opts: dict) -> tuple:
        highest = (await self._fresh_folder()).highest_modseq
        incomplete_only = self.pim.klass == "Tasks" and opts.get("filter") == INCOMPLETE_TASKS
        items = [i for i in await self.store.list_dav_items(self.folder.id, with_data=incomplete_only)
                 if i.component == self.pim.component]
        if incomplete_only:
            dates = await deferToThread(lambda: {i.id: _ALWAYS if self._incomplete(i) else 0 for i in items})
        elif self.pim.klass == "Calendar":
            dates = {i.id: i.dtend for i in items}
        else:
            dates = {}
        return [Meta(i.id, i.modseq, dates.get(i.id, _ALWAYS)) for i in items], highest

    def _incomplete(self, item) -> bool:
        try:
            return self.conv.is_incomplete(item.data)
        except Exception:
            log.warning("activesync: task %d cannot be read; treated as incomplete", item.id)
            return True

    def _cutoff(self, opts: dict) -> int:
        if self.pim.klass == "Calendar":
            return syncplan.cutoff(opts.get("filter", 0), time.time())
        if self.pim.klass == "Tasks" and opts.get("filter") == INCOMPLETE_TASKS:
            return 1
        return 0

    async def _stored(self, item_id):
        """The live item ``item_id`` of this collection (with its text), or None."""
        if item_id is None:
            return None
        found = await self.store.dav_items_by_id(self.account.id, [item_id])
        if not found or found[0].folder_id != self.folder.id or found[0].component != self.pim.component:
            return None
        return found[0]

    def _prepare(self, data, stored, uid: str, opts: dict, href: str = "", instance_id=None):
        """The phone's ApplicationData merged onto ``stored`` (a DavItem or None) as the store's
        new row; ValueError (ConversionError among them) when it cannot be."""
        version, supported = self.ctx.version, opts.get("supported")
        supported = set(supported) if supported is not None else None
        if instance_id is not None:
            body = self.conv.change_instance(stored.data, instance_id, data, version, supported)
        else:
            extra = {"me": self.account.address} if self.pim.klass == "Calendar" else {}
            body = self.conv.from_eas(data, stored.data if stored is not None else None, version, uid, supported,
                                      **extra)
        return self._row(body, href)

    def _row(self, body: str, href: str = ""):
        """The store's row of an object's new text, as a CalDAV PUT of it would make it."""
        config = self.ctx.config
        new = item_for(body, self.folder.kind, f"{self.account.address}/{self.folder.name}", href,
                       config.max_item_size, config.max_occurrences)
        if new.component != self.pim.component:
            raise ValueError(f"a {new.component} does not belong into a {self.pim.klass} folder")
        return new

    async def _addresses(self) -> set:
        """The account's address and aliases: an ATTENDEE or ORGANIZER with one of them is the
        user (MeetingStatus, ResponseType)."""
        aliases = [alias for alias, owner in await self.store.list_aliases() if owner == self.account.address]
        return {self.account.address, *aliases}

    # -- the phone's commands ----------------------------------------------------------------
    async def _apply_commands(self, held: set, opts: dict):
        responses = ET.Element(q("AirSync", "Responses"))
        commands = self.collection.find(q("AirSync", "Commands"))
        if commands is None:
            return responses
        adds: list = []  # a run of Adds is stored in one transaction
        for cmd in commands:
            name = cmd.tag.rpartition("}")[2]
            sid = text(cmd, "AirSync", "ServerId")
            item_id = int(sid) if sid and sid.isdigit() else None
            instance_id = text(cmd, "AirSync", "InstanceId") or text(cmd, "AirSyncBase", "InstanceId")
            if name == "Add":
                el = sub(responses, "AirSync", "Add")
                client_id = text(cmd, "AirSync", "ClientId")
                if client_id:
                    sub(el, "AirSync", "ClientId", client_id)
                adds.append((el, client_id, cmd.find(q("AirSync", "ApplicationData"))))
                continue
            if adds:
                await self._add(adds, held, opts)
                adds = []
            if name == "Change":
                status = await self._change(item_id, cmd.find(q("AirSync", "ApplicationData")), instance_id, opts)
                if status != 1:
                    self._response(responses, "Change", sid, status)
            elif name == "Delete":
                status = await self._delete(item_id, instance_id, held, opts)
                if status != 1:
                    self._response(responses, "Delete", sid, status)
            elif name == "Fetch":
                el = sub(responses, "AirSync", "Fetch")
                sub(el, "AirSync", "ServerId", sid or "")
                found = await self.items([item_id], opts) if item_id is not None else {}
                sub(el, "AirSync", "Status", 1 if item_id in found else NOT_FOUND)
                if item_id in found:
                    el.append(found[item_id])
        if adds:
            await self._add(adds, held, opts)
        return responses

    async def _add(self, adds: list, held: set, opts: dict) -> None:
        """A run of Adds (``[(response element, ClientId, ApplicationData)]``): converted in one
        go off the reactor, stored in one transaction, each answered with its ServerId and Status."""
        store, account = self.store, self.account

        def convert():
            out = []
            for _el, client_id, data in adds:
                try:
                    if data is None:
                        raise ValueError("no ApplicationData")
                    out.append((client_id, self._prepare(data, None, str(uuid.uuid4()).upper(), opts)))
                except ValueError as e:
                    log.info("activesync %s: device %s sent a %s item that cannot be stored: %s", account.address,
                             self.device_id, self.pim.klass, e)
                    out.append((client_id, None))
            return out
        converted = await deferToThread(convert)
        results = iter(await store.add_dav_items(account.id, self.device_id, self.state_id, self.folder.id,
                                                 [c for c in converted if c[1] is not None]))
        for (el, _client_id, _data), (_cid, new) in zip(adds, converted):
            sid, reason, modseq = next(results) if new is not None else (None, "not converted", 0)
            if sid is None:
                if new is not None:
                    log.info("activesync %s: device %s added a %s item that cannot be stored: %s", account.address,
                             self.device_id, self.pim.klass, reason)
                sub(el, "AirSync", "Status", CONVERSION_ERROR)
                continue
            held.add(int(sid))
            if modseq:
                self.own[int(sid)] = modseq
            sub(el, "AirSync", "ServerId", sid)
            sub(el, "AirSync", "Status", 1)

    async def _change(self, item_id, data, instance_id, opts: dict) -> int:
        stored = await self._stored(item_id)
        if stored is None or data is None:
            return NOT_FOUND
        if self._conflict_wins(stored.modseq, item_id):
            return CONFLICT
        try:
            new = await deferToThread(self._prepare, data, stored, stored.uid, opts, stored.href, instance_id)
        except ValueError as e:
            log.info("activesync %s: device %s sent a change of %s item %d that cannot be stored: %s",
                     self.account.address, self.device_id, self.pim.klass, item_id, e)
            return CONVERSION_ERROR
        return await self._write(item_id, new, stored.etag)

    async def _write(self, item_id: int, new, etag: str) -> int:
        """Store an edit made on the text of ``etag``; Status 7 when another writer came first."""
        try:
            result, _replaced = await self.store.put_dav_item(self.account.id, self.folder.id, new, etag)
        except errors.Conflict:
            log.info("activesync %s: device %s changed %s item %d while another client did; the server's "
                     "version wins", self.account.address, self.device_id, self.pim.klass, item_id)
            return CONFLICT
        except (errors.Exists, errors.InvalidInput, errors.NotFound) as e:
            log.info("activesync %s: %s item %d not stored: %s", self.account.address, self.pim.klass, item_id, e)
            return CONVERSION_ERROR
        self.own[item_id] = result.modseq
        return 1

    async def _delete(self, item_id, instance_id, held: set, opts: dict) -> int:
        stored = await self._stored(item_id)
        if stored is None:
            held.discard(item_id)
            return NOT_FOUND
        if instance_id is not None:  # one occurrence (16.x): an exception of the series
            try:
                new = await deferToThread(
                    lambda: self._row(self.conv.delete_instance(stored.data, instance_id), stored.href))
            except (ValueError, AttributeError) as e:
                log.info("activesync %s: occurrence %r of item %d not deleted: %s", self.account.address,
                         instance_id, item_id, e)
                return CONVERSION_ERROR
            return await self._write(item_id, new, stored.etag)
        try:
            await self.store.delete_dav_item(self.account.id, self.folder.id, stored.href)
        except errors.NotFound:
            pass  # deleted meanwhile: what the phone wanted
        held.discard(item_id)
        return 1

    # -- the server's changes ------------------------------------------------------------------
    async def _commands(self, out, plan, opts: dict) -> None:
        commands = sub(out, "AirSync", "Commands")
        for name, ids in (("Delete", plan.deletes), ("SoftDelete", plan.soft_deletes)):
            for item_id in ids:
                sub(sub(commands, "AirSync", name), "AirSync", "ServerId", str(item_id))
        built = await self.items([m.uid for m in plan.changes] + [m.uid for m in plan.adds], opts)
        for name, metas in (("Change", plan.changes), ("Add", plan.adds)):
            for meta in metas:
                data = built.get(meta.uid)
                if data is None:
                    continue  # gone meanwhile, or could not be converted (logged)
                el = sub(commands, "AirSync", name)
                sub(el, "AirSync", "ServerId", str(meta.uid))
                el.append(data)

    async def items(self, item_ids: list, opts: dict) -> dict:
        """item id -> ApplicationData of each item of this collection (texts read in batches,
        converted off the reactor)."""
        out: dict = {}
        version, pref = self.ctx.version, body_preference(opts)
        extra = {"me": await self._addresses()} if self.pim.klass == "Calendar" else {}
        for i in range(0, len(item_ids), FETCH_BATCH):
            batch = [s for s in await self.store.dav_items_by_id(self.account.id, item_ids[i:i + FETCH_BATCH])
                     if s.folder_id == self.folder.id and s.component == self.pim.component]

            def build(batch=batch):
                built = {}
                for stored in batch:
                    try:
                        built[stored.id] = self.conv.to_eas(stored.data, version, pref, **extra)
                    except Exception as e:
                        log.warning("activesync: %s item %d (%s) cannot be converted; skipped: %s", self.pim.klass,
                                    stored.id, stored.href, e)
                return built
            out.update(await deferToThread(build))
        return out
