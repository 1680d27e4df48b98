"""One collection of a Sync request ([MS-ASCMD] 2.2.1.21), whatever it holds: the sync-key
protocol, the phone's commands first, then the server's changes in windows against the ids the
device holds (syncplan.py).  Mail (mailsync.py) and calendars, contacts and tasks (pimsync.py)
fill in what their items are.

Invariants
- SyncKey 0 (re)starts a collection: the answer carries a new key and no items; FilterType,
  body options and Supported are kept with the state and may change with any request (Supported
  only with key 0, as the protocol has it).
- The previous key replays the collection's last answer exactly (the phone never got it);
  another unknown key is Status 3, after which the phone starts again with 0.
- The device's own changes are applied before the server's are computed and are not echoed
  back to it (an item whose modseq is the one its own change gave it is not sent).
- A state is saved only if its key is still the one this request started from: of two requests
  with one key, the second gets Status 3 instead of an answer that would lead the phone astray.
"""

from __future__ import annotations

import logging
import xml.etree.ElementTree as ET

from twisted.internet.threads import deferToThread

from store import errors
from store.interfaces import EAS_INITIAL_KEY, eas_next_sync_key

from . import syncplan
from .wbxml import decode, encode, qname as q
from .xmlutil import sub, text

log = logging.getLogger("haven.activesync")

INVALID_KEY, PROTOCOL_ERROR, NOT_FOUND, SERVER_ERROR, CONVERSION_ERROR, CONFLICT = 3, 4, 8, 5, 6, 7


def options_of(collection, stored: dict) -> dict:
    """FilterType, BodyPreference, MIMESupport and Supported of the request (those not given
    stay as the state had them)."""
    opts = dict(stored or {})
    supported = collection.find(q("AirSync", "Supported"))
    if supported is not None:  # the elements the phone handles: the others are ghosted
        opts["supported"] = sorted({child.tag for child in supported})
    options = collection.find(q("AirSync", "Options"))
    if options is None:
        return opts
    filter_type = text(options, "AirSync", "FilterType")
    if filter_type is not None:
        opts["filter"] = int(filter_type) if filter_type.isdigit() else 0
    mime_support = text(options, "AirSync", "MIMESupport")
    if mime_support is not None:
        opts["mime"] = int(mime_support) if mime_support.isdigit() else 0
    prefs = []
    for pref in options.findall(q("AirSyncBase", "BodyPreference")):
        kind = text(pref, "AirSyncBase", "Type")
        if not kind or not kind.isdigit():
            continue
        trunc = text(pref, "AirSyncBase", "TruncationSize")
        prefs.append([int(kind), int(trunc) if trunc and trunc.isdigit() else None,
                      text(pref, "AirSyncBase", "AllOrNone") == "1", int(text(pref, "AirSyncBase", "Preview") or 0)
                      if (text(pref, "AirSyncBase", "Preview") or "").isdigit() else 0])
    if prefs:
        opts["body"] = prefs
    return opts


class CollectionSync:
    """The protocol of one collection; a subclass says what its items are:

    - ``_live(opts)``: ``(items now, the collection's modseq then)``, each item with ``uid``
      (the id the device holds), ``modseq`` and ``internaldate`` (what FilterType compares);
    - ``_cutoff(opts)``: the oldest ``internaldate`` inside the window (0: everything);
    - ``_apply_commands(held, opts)``: the phone's commands, returning the Responses element;
    - ``_commands(out, plan, opts)``: the server's changes of a :class:`syncplan.Plan`."""

    def __init__(self, ctx, server_id: str, state_id: int, folder, collection, window: int):
        """``folder``: the store Folder the collection shows."""
        self.ctx, self.server_id, self.state_id, self.folder, self.collection, self.window = \
            ctx, server_id, state_id, folder, collection, window
        self.store, self.account, self.device_id = ctx.store, ctx.account, ctx.request.device_id
        self.own: dict = {}  # item id -> modseq after this device's own change
        self.reached = 0  # the modseq the device had seen changes up to

    async def run(self):
        """The response's Collection element."""
        key = text(self.collection, "AirSync", "SyncKey") or ""
        out = ET.Element(q("AirSync", "Collection"))
        state_id = self.state_id
        if key == EAS_INITIAL_KEY:
            state_opts = options_of(self.collection, {})
            new_key = eas_next_sync_key(key)
            self._finish(out, new_key, 1)
            saved = await self.store.save_sync_state(self.account.id, self.device_id, state_id, key, new_key, 0,
                                                     held=(), filter_type=state_opts.get("filter", 0),
                                                     options=state_opts, response=encode(out))
            return out if saved else self._status(INVALID_KEY, key)
        state = await self.store.get_sync_state(self.account.id, self.device_id, state_id)
        if state is None or key not in (state.sync_key, state.previous_key):
            log.info("activesync %s: device %s sent SyncKey %r for collection %s it does not hold",
                     self.account.address, self.device_id, key[:70], self.server_id)
            return self._status(INVALID_KEY, key)
        if key == state.previous_key and state.last_response is not None:
            return decode(state.last_response)  # the phone never got it
        opts = options_of(self.collection, state.options)
        if self.collection.find(q("AirSync", "Supported")) is not None:
            opts["supported"] = state.options.get("supported")  # Supported counts only with key 0
        held = set(state.held)
        self.reached = state.modseq
        responses = await self._apply_commands(held, opts)
        get_changes = text(self.collection, "AirSync", "GetChanges")
        new_key = eas_next_sync_key(key)
        plan = None
        if get_changes != "0":
            live, highest = await self._live(opts)
            # not echoed back: an item as the device's own change left it is unchanged for it (it
            # stays live and held, so neither a Change nor a Delete; changed again since, it is sent)
            live = [syncplan.Unchanged(m.uid, 0, m.internaldate) if self.own.get(m.uid) == m.modseq else m
                    for m in live]
            plan = syncplan.plan(live, held, state.modseq, highest, self.window, self._cutoff(opts))
            held = plan.held
        self._finish(out, new_key, 1)
        if plan is not None and plan.more:
            sub(out, "AirSync", "MoreAvailable")
        if plan is not None and plan.count:
            await self._commands(out, plan, opts)
        if len(responses):
            out.append(responses)
        modseq = plan.modseq if plan is not None else state.modseq
        saved = await self.store.save_sync_state(self.account.id, self.device_id, state_id, key, new_key, modseq,
                                                 held=sorted(held), filter_type=opts.get("filter", 0), options=opts,
                                                 response=await deferToThread(encode, out))
        if not saved:  # a parallel request with this key won; this answer would lead the phone astray
            return self._status(INVALID_KEY, key)
        return out

    async def pending(self, state, window: int = 1 << 30) -> int:
        """How many commands the next Sync would send the device (at most ``window``), from its
        sync ``state``, changing nothing."""
        opts = state.options or {}
        live, highest = await self._live(opts)
        return syncplan.plan(live, set(state.held), state.modseq, highest, window, self._cutoff(opts)).count

    async def _fresh_folder(self):
        """The folder as it is now (its modseq after the phone's own changes): one row by name,
        or, renamed meanwhile, found by id."""
        try:
            folder = await self.store.get_folder(self.account.id, self.folder.name)
            if folder.id == self.folder.id:
                return folder
        except errors.NotFound:
            pass
        for folder in await self.store.list_folders(self.account.id, self.folder.kind):
            if folder.id == self.folder.id:
                return folder
        raise errors.NotFound("the folder is gone")

    def _finish(self, out, key: str, status: int) -> None:
        sub(out, "AirSync", "SyncKey", key)
        sub(out, "AirSync", "CollectionId", self.server_id)
        sub(out, "AirSync", "Status", status)

    def _status(self, status: int, key: str):
        out = ET.Element(q("AirSync", "Collection"))
        sub(out, "AirSync", "SyncKey", key or "0")
        sub(out, "AirSync", "CollectionId", self.server_id)
        sub(out, "AirSync", "Status", status)
        return out

    def _conflict_wins(self, modseq: int, item_id: int) -> bool:
        """Whether the server's version of an item the phone changed wins: it changed here too
        since the phone's last Sync (and is then sent to the phone as a Change), unless the
        phone asked otherwise (Options/Conflict 0)."""
        return modseq > self.reached and item_id not in self.own and text(
            self.collection.find(q("AirSync", "Options")), "AirSync", "Conflict") != "0"

    @staticmethod
    def _response(responses, name: str, sid, status: int) -> None:
        el = sub(responses, "AirSync", name)
        sub(el, "AirSync", "ServerId", sid or "")
        sub(el, "AirSync", "Status", status)

    async def _live(self, opts: dict) -> tuple:
        raise NotImplementedError

    def _cutoff(self, opts: dict) -> int:
        raise NotImplementedError

    async def _apply_commands(self, held: set, opts: dict):
        raise NotImplementedError

    async def _commands(self, out, plan, opts: dict) -> None:
        raise NotImplementedError
