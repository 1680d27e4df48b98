"""Ping ([MS-ASCMD] 2.2.1.13): push for phones.  A Ping names folders and a heartbeat; the
answer comes as soon as one of them has something the phone has not synced (Status 2 with the
folders), or when the heartbeat ends with nothing (Status 1).

Invariants
- A parked Ping holds no thread and queries nothing while its account is quiet: it waits on the
  push bus (store/bus.py), as IDLE does, and asks the store only when an event of its account
  arrives (``folder_id`` None, from the poller or another node, counts for every folder).
- "Something not synced" is the folder's modseq above the one the device's sync state reached
  (or no state yet).  The device's own Sync moves its state past its own changes; an event that
  comes while a request of the same device is being answered is looked at when that request is
  done (PingHub.busy), so a phone's own change does not wake its own Ping, and any other event
  is looked at at once.
- One live Ping per device: a newer one ends the older with Status 1 at once.
- An empty Ping repeats the device's last one (interval and folders); without one it is
  Status 3.  Out-of-range heartbeats are Status 5 with the limit, too many folders Status 6 with
  the maximum, an unknown folder Status 7 (the phone runs FolderSync).
- A parked request is not cut by ``[http] idle_timeout`` (Twisted suspends the channel's idle
  timer while a request is being answered); a phone that goes away ends its Ping at once.
"""

from __future__ import annotations

import logging
from typing import Optional

from twisted.internet import defer

from store.interfaces import EAS_MAX_CACHED_REQUEST

from . import hierarchy, pimfolders
from .wbxml import decode, qname as q
from .xmlutil import element, sub, text

log = logging.getLogger("haven.activesync")

CHANGES, NO_CHANGES, MISSING, SYNTAX, BAD_HEARTBEAT, TOO_MANY_FOLDERS, FOLDER_SYNC_NEEDED = 2, 1, 3, 4, 5, 6, 7


def _reactor():
    from twisted.internet import reactor  # the installed one, reached late
    return reactor


class Parked:
    """One waiting Ping."""

    def __init__(self, folder_ids: set):
        self.folder_ids = folder_ids
        self.done: defer.Deferred = defer.Deferred()
        self.checking = False
        self.recheck = False  # an event came while the device had a request in progress
        self.look = None

    def end(self, result) -> None:
        if not self.done.called:
            self.done.callback(result)


class PingHub:
    """The parked Pings of this process, one per (account, device), and the devices with a
    request (other than their Ping) being answered."""

    def __init__(self):
        self.parked: dict = {}
        self.busy: dict = {}
        self._due: dict = {}  # account id -> {(account, device): (Parked, ctx)} to look at this turn

    def check(self, ctx, parked: "Parked") -> None:
        """Look at ``parked``'s folders soon: the Pings of one account due in one reactor turn
        share two queries (its folders, every device's modseqs), however many they are."""
        if not self._due:
            _reactor().callLater(0, self._flush)
        self._due.setdefault(ctx.account.id, {})[(ctx.account.id, ctx.request.device_id)] = (parked, ctx)

    def _flush(self) -> None:
        due, self._due = self._due, {}
        for account_id, entries in due.items():
            d = defer.ensureDeferred(self._look(account_id, entries))
            d.addErrback(lambda f, a=account_id: log.warning("activesync: ping check of account %d failed: %s",
                                                               a, f.value))

    async def _look(self, account_id: int, entries: dict) -> None:
        store = next(iter(entries.values()))[1].store
        watched = set().union(*(parked.folder_ids for parked, _ctx in entries.values()))
        found = await changed(store, account_id, [device for _account, device in entries], watched)
        for (_account, device_id), (parked, _ctx) in entries.items():
            ready = [f for f in found[device_id] if f in parked.folder_ids]
            if ready:
                parked.end(ready)

    def __len__(self) -> int:
        return len(self.parked)

    def begin(self, key) -> None:
        self.busy[key] = self.busy.get(key, 0) + 1

    def end(self, key) -> None:
        left = self.busy.get(key, 0) - 1
        if left > 0:
            self.busy[key] = left
            return
        self.busy.pop(key, None)
        parked = self.parked.get(key)
        if parked is not None and parked.recheck and parked.look is not None:
            parked.recheck = False
            parked.look()


async def changed(store, account_id: int, device_ids, server_ids) -> dict:
    """device id -> the folders of ``server_ids`` (ServerIds, ascending) whose modseq is above the
    one the device's sync state reached (or that it has no state of): two queries for any number
    of devices of the account.  A calendar's task view is its calendar's folder with a state of
    its own (pimfolders.py)."""
    highest = {f.id: f.highest_modseq for f in await store.list_folders(account_id, None)}
    wanted = sorted((sid, pimfolders.folder_id(sid), pimfolders.state_id(sid)) for sid in set(server_ids)
                    if pimfolders.folder_id(sid) in highest)
    reached = await store.sync_modseqs(account_id, [s for _sid, _f, s in wanted]) if wanted else {}
    return {device: [sid for sid, f, s in wanted if highest[f] > reached.get((device, s), -1)]
            for device in device_ids}


async def pending(ctx, server_ids) -> list:
    """The folders of ``server_ids`` with changes the device has not synced."""
    device_id = ctx.request.device_id
    return (await changed(ctx.store, ctx.account.id, [device_id], server_ids))[device_id]


def answer(status: int, folders=(), limit: Optional[int] = None, limit_name: str = ""):
    out = element("Ping", "Ping")
    sub(out, "Ping", "Status", status)
    if folders:
        el = sub(out, "Ping", "Folders")
        for fid in folders:
            sub(el, "Ping", "Folder", fid)
    if limit is not None:
        sub(out, "Ping", limit_name, limit)
    return out


async def ping(ctx, hub: PingHub, http_request=None):
    config, store, account, device_id = ctx.config, ctx.store, ctx.account, ctx.request.device_id
    body = ctx.body
    if body is None:
        cached = await store.cached_device_request(account.id, device_id, "ping")
        if cached is None:
            return answer(MISSING)
        body = decode(cached)
    elif body.tag != q("Ping", "Ping"):
        return answer(SYNTAX)
    interval = text(body, "Ping", "HeartbeatInterval")
    folders_el = body.find(q("Ping", "Folders"))
    cached = None
    if interval is None or folders_el is None:  # a partial Ping: the rest from the last one
        cached_raw = await store.cached_device_request(account.id, device_id, "ping")
        cached = decode(cached_raw) if cached_raw else None
        if cached is None:
            return answer(MISSING)
        interval = interval if interval is not None else text(cached, "Ping", "HeartbeatInterval")
        folders_el = folders_el if folders_el is not None else cached.find(q("Ping", "Folders"))
    if interval is None or not interval.isdigit() or folders_el is None:
        return answer(SYNTAX)
    seconds = int(interval)
    if seconds < config.min_heartbeat:
        return answer(BAD_HEARTBEAT, limit=config.min_heartbeat, limit_name="HeartbeatInterval")
    if seconds > config.max_heartbeat:
        return answer(BAD_HEARTBEAT, limit=config.max_heartbeat, limit_name="HeartbeatInterval")
    ids = []
    for folder in folders_el.findall(q("Ping", "Folder")):
        fid = text(folder, "Ping", "Id")
        if fid is None:
            return answer(SYNTAX)
        ids.append(fid)
    if len(ids) > config.max_folders:
        return answer(TOO_MANY_FOLDERS, limit=config.max_folders, limit_name="MaxFolders")
    mail, pim = await pimfolders.collections(store, account.id)
    known = set(mail) | set(pim)
    unknown = [fid for fid in ids if fid not in known and fid != hierarchy.OUTBOX_ID]
    if unknown:
        log.info("activesync %s: device %s pings folders it does not know: %s", account.address, device_id,
                 ",".join(unknown[:5]))
        return answer(FOLDER_SYNC_NEEDED)
    if ctx.body is not None and ctx.raw and len(ctx.raw) <= EAS_MAX_CACHED_REQUEST and \
            text(ctx.body, "Ping", "HeartbeatInterval") is not None and ctx.body.find(q("Ping", "Folders")) is not None:
        await store.cache_device_request(account.id, device_id, "ping", ctx.raw)
    watched = {fid for fid in ids if fid != hierarchy.OUTBOX_ID}
    ready = await pending(ctx, watched)
    if ready:
        return answer(CHANGES, ready)
    return await park(ctx, hub, watched, seconds, http_request)


async def park(ctx, hub: PingHub, watched: set, seconds: int, http_request=None):
    ready = await wait_for(ctx, hub, watched, seconds, http_request)
    return answer(CHANGES, ready) if ready else answer(NO_CHANGES)


async def wait_for(ctx, hub: PingHub, watched: set, seconds: float, http_request=None) -> list:
    """Wait until a folder of ``watched`` has changes the device has not synced (their ids), or
    ``seconds`` pass, the phone goes away or a newer Ping or hanging Sync of the device comes
    (an empty list).  Ping and the hanging Sync (``Wait``) both wait here."""
    account, device_id = ctx.account, ctx.request.device_id
    key = (account.id, device_id)
    older = hub.parked.get(key)
    if older is not None:
        older.end(None)  # a newer Ping (or hanging Sync) of the device ends it
    me = hub.parked[key] = Parked(watched)
    folders = {pimfolders.folder_id(sid) for sid in watched}
    reactor = _reactor()

    def look() -> None:
        me.checking = False
        if me.done.called:
            return
        if hub.busy.get(key):  # the device's own request may be what changed: when it is done
            me.recheck = True
            return
        hub.check(ctx, me)

    def on_change(event) -> None:
        if me.done.called or me.checking:
            return
        if event.folder_id is None or event.folder_id in folders:
            me.checking = True
            reactor.callLater(0, look)  # after the publishing code returns

    me.look = look
    unsubscribe = ctx.store.bus.subscribe(account.id, on_change)
    timer = reactor.callLater(seconds, me.end, None)
    if http_request is not None:
        http_request.notifyFinish().addBoth(lambda _r: me.end(None))
    try:
        ready = await me.done
    finally:
        unsubscribe()
        if timer.active():
            timer.cancel()
        if hub.parked.get(key) is me:
            del hub.parked[key]
    return ready or []
