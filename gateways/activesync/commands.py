"""The command layer: one POST from the request line and its WBXML body to a command's answer
([MS-ASCMD]), for the account the front door logged in.

    POST ?Cmd=...  ->  query.parse_request  ->  wbxml.decode  ->  the device's row
                   ->  the provisioning rule  ->  the handler (a coroutine on the reactor)
                   ->  wbxml.encode  ->  200 application/vnd.ms-sync.wbxml

Invariants
- A request that never reaches a handler gets an HTTP status and a log line: 400 for a bad
  request line or body (QueryError, WbxmlError), 501 for a command not served, 449 (before
  14.0) or the command's ``Status`` 142/144 (14.0 on) when the device must provision first.
- Every request records its device, keyed by (account, DeviceId): the same phone on two
  accounts is two devices.  The account served is the logged-in one; a ``User`` in the query
  that names someone else is logged and ignored.
- WBXML over ``INLINE_CODEC`` octets is decoded and encoded in a worker thread, never on the
  reactor; smaller documents are cheaper to code here than to hand over.
- A handler answers with an element (encoded here), or ``None`` for an empty 200 body.
"""

from __future__ import annotations

import importlib
import logging
import struct
import sys
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from typing import Callable, Optional

from twisted.internet.threads import deferToThread

from gateways.common.settings import SectionSettings
from store import errors
from store.interfaces import EAS_HIERARCHY, EAS_INITIAL_KEY, EAS_MAX_CACHED_REQUEST, eas_next_sync_key

from . import compose, hierarchy, items, mailsync, oof, pimfolders, pimsync, ping, syncplan
from .endpoint import CONTENT_TYPE, finish
from .query import QueryError, UnknownCommand, parse_request, version_tuple
from .wbxml import WbxmlError, decode, encode, qname as q
from .xmlutil import element, sub, text

log = logging.getLogger("haven.activesync")

INLINE_CODEC = 16 * 1024
PROVISIONING = ("off", "loose", "on")
#: the code page and element of each command's request and response
TOP = {"Sync": "AirSync", "FolderSync": "FolderHierarchy", "FolderCreate": "FolderHierarchy",
       "FolderUpdate": "FolderHierarchy", "FolderDelete": "FolderHierarchy", "GetItemEstimate": "GetItemEstimate",
       "MoveItems": "Move", "Ping": "Ping", "Provision": "Provision", "Settings": "Settings",
       "ItemOperations": "ItemOperations", "SendMail": "ComposeMail", "SmartReply": "ComposeMail",
       "SmartForward": "ComposeMail", "Search": "Search", "ResolveRecipients": "ResolveRecipients",
       "MeetingResponse": "MeetingResponse", "ValidateCert": "ValidateCert", "Find": "Find"}
#: commands a device may send before it is provisioned (MS-ASPROV 3.2.5.1)
UNGUARDED = frozenset({"Provision"})
#: the MS-ASPROV policy type of EAS 12.0 on
POLICY_TYPE = "MS-EAS-Provisioning-WBXML"
#: top-level Status values ([MS-ASCMD] 2.2.2 Common Status Codes)
DEVICE_NOT_PROVISIONED, INVALID_POLICY_KEY, REMOTE_WIPE_REQUESTED = 142, 144, 140
SERVER_ERROR = 110


@dataclass(frozen=True)
class ActiveSyncConfig:
    provisioning: str = "loose"
    min_heartbeat: int = 60
    max_heartbeat: int = 3540
    max_folders: int = 300
    #: the limits of a calendar object or vCard, as for a CalDAV PUT ([http] max_item_size, max_occurrences)
    max_item_size: int = 2097152
    max_occurrences: int = 10000

    @classmethod
    def from_settings(cls, settings, max_item_size: int = 2097152, max_occurrences: int = 10000) -> "ActiveSyncConfig":
        s = SectionSettings("activesync", settings)
        return cls(provisioning=s.choice("provisioning", cls.provisioning, PROVISIONING),
                   min_heartbeat=s.number("min_heartbeat", cls.min_heartbeat, int, 1),
                   max_heartbeat=s.number("max_heartbeat", cls.max_heartbeat, int, 1),
                   max_folders=s.number("max_folders", cls.max_folders, int, 1),
                   max_item_size=max_item_size, max_occurrences=max_occurrences)


@dataclass
class Context:
    """One command: who asks, from which device, with what."""
    store: object
    account: object
    request: object  # query.EasRequest
    device: object  # store EasDevice
    body: Optional[ET.Element]
    config: ActiveSyncConfig
    raw: bytes = b""
    user_agent: str = ""
    http: object = None  # the Twisted request (a parked Ping ends when the phone goes away)
    notes: dict = field(default_factory=dict)

    @property
    def version(self) -> tuple:
        return version_tuple(self.request.protocol_version)


def later(module: str, name: str) -> Callable:
    """The handler ``name`` of ``module``, imported by its first request, in a worker thread:
    its iCalendar and vCard libraries are not loaded at start-up by a server that never
    answers a Search or a MeetingResponse, and never on the reactor."""
    path = f"{__package__}.{module}"

    async def handler(ctx):
        loaded = sys.modules.get(path)
        if loaded is None:
            loaded = await deferToThread(importlib.import_module, path)
        return await getattr(loaded, name)(ctx)
    return handler


def status_only(cmd: str, status: int):
    page = TOP.get(cmd, "AirSync")
    return element(page, cmd, element(page, "Status", text=status))


async def _code(fn, data):
    if len(data) > INLINE_CODEC:
        return await deferToThread(fn, data)
    return fn(data)


class Commands:
    """The endpoint's POST handler (``ActiveSyncEndpoint.handler``)."""

    def __init__(self, store, config: ActiveSyncConfig = ActiveSyncConfig(), max_message_size: int = 50 << 20):
        self.store = store
        self.config = config
        mail = compose.Compose(max_message_size)
        self.pings = ping.PingHub()
        self.handlers: dict = {"Provision": provision, "FolderSync": folder_sync, "Settings": settings, "Sync": sync,
                               "Ping": lambda ctx: ping.ping(ctx, self.pings, ctx.http),
                               "SendMail": mail.send_mail, "SmartReply": mail.smart_reply,
                               "SmartForward": mail.smart_forward, "MoveItems": items.move_items,
                               "GetItemEstimate": items.get_item_estimate, "ItemOperations": items.item_operations,
                               "FolderCreate": folder_create, "FolderUpdate": folder_update,
                               "FolderDelete": folder_delete, "Search": later("search", "search"),
                               "Find": later("search", "find"),
                               "ResolveRecipients": later("search", "resolve_recipients"),
                               "MeetingResponse": later("meetingresponse", "meeting_response")}

    async def __call__(self, request, account) -> None:
        try:
            req = parse_request(request.uri.partition(b"?")[2],
                                _header(request, b"ms-asprotocolversion"), _header(request, b"x-ms-policykey"))
        except UnknownCommand as e:
            log.info("activesync %s: %s", account.address, e)
            finish(request, 501, b"Not implemented\n", b"text/plain; charset=utf-8")
            return
        except QueryError as e:
            log.info("activesync %s: bad request line: %s", account.address, e)
            finish(request, 400, b"Bad request\n", b"text/plain; charset=utf-8")
            return
        handler = self.handlers.get(req.cmd)
        if handler is None:
            log.info("activesync %s: %s is not served yet", account.address, req.cmd)
            finish(request, 501, b"Not implemented\n", b"text/plain; charset=utf-8")
            return
        if req.user and req.user.rpartition("\\")[2].lower() not in (account.address, account.address.partition("@")[0]):
            log.info("activesync %s: the query names User=%s; serving the account that logged in",
                     account.address, req.user[:100])
        raw = request.content.read() if request.content is not None else b""
        body = None
        rfc822 = (_header(request, b"content-type") or "").lower().startswith("message/rfc822")
        if raw and not rfc822:  # SendMail & co. may send the message itself (MS-ASCMD 2.2.1.17)
            try:
                body = await _code(decode, raw)
            except WbxmlError as e:
                log.info("activesync %s %s: bad WBXML body: %s", account.address, req.cmd, e)
                finish(request, 400, b"Bad request body\n", b"text/plain; charset=utf-8")
                return
        user_agent = (_header(request, b"user-agent") or "")[:200]
        device = await self.store.record_device(account.id, req.device_id, req.device_type, user_agent,
                                                req.protocol_version)
        ctx = Context(self.store, account, req, device, body, self.config, raw, user_agent, http=request)
        ctx.notes["pings"] = self.pings
        # MS-ASCMD 2.2.1.10: ItemOperations may answer in parts (the base64 query's option, or
        # the MS-ASAcceptMultiPart header of the plain form)
        ctx.notes["multipart"] = req.accept_multipart or (_header(request, b"ms-asacceptmultipart") or "") == "T"
        refusal = self._guard(ctx)
        if refusal is not None:
            if ctx.version < (14, 0):
                finish(request, 449, b"Provision first\n", b"text/plain; charset=utf-8")
            else:
                await self._answer(request, status_only(req.cmd, refusal))
            return
        key = (account.id, req.device_id)
        own = req.cmd != "Ping"
        if own:  # its parked Ping looks at events of this time when it is done (ping.py)
            self.pings.begin(key)
        try:
            answer = await handler(ctx)
        except errors.TemporaryFailure as e:
            log.warning("activesync %s %s: %s", account.address, req.cmd, e)
            finish(request, 503, b"Try again later\n", b"text/plain; charset=utf-8", [(b"Retry-After", b"30")])
            return
        finally:
            if own:
                self.pings.end(key)
        await self._answer(request, answer, ctx.notes.get("parts"))

    def _guard(self, ctx: Context) -> Optional[int]:
        """The Status that refuses this command until the device provisions, or None."""
        cmd, device, mode = ctx.request.cmd, ctx.device, ctx.config.provisioning
        if cmd in UNGUARDED or mode == "off":
            return None
        if device.wipe_state == "requested":
            return REMOTE_WIPE_REQUESTED
        key = ctx.request.policy_key
        if mode == "loose" and not device.policy_key and not key:
            return None  # a device that never provisioned (and says no key): let it be
        if not key:
            return DEVICE_NOT_PROVISIONED
        if key != device.policy_key:
            return INVALID_POLICY_KEY
        return None

    async def _answer(self, request, answer, parts=None) -> None:
        if answer is None:
            finish(request, 200)
            return
        data = answer if isinstance(answer, bytes) else await _code(encode, answer)
        if parts:
            finish(request, 200, multipart([data] + parts), MULTIPART)
            return
        finish(request, 200, data, CONTENT_TYPE)


MULTIPART = b"application/vnd.ms-sync.multipart"


def multipart(parts: list) -> bytes:
    """[MS-ASCMD] 2.2.2.10.1 (MultiPartResponse): the number of parts, then each part's offset
    and length (32-bit little-endian), then the parts; the first is the WBXML answer."""
    head = 4 + 8 * len(parts)
    table, offset = [struct.pack("<i", len(parts))], head
    for part in parts:
        table.append(struct.pack("<ii", offset, len(part)))
        offset += len(part)
    return b"".join(table) + b"".join(parts)


def _header(request, name: bytes) -> Optional[str]:
    value = request.getHeader(name)
    if value is None:
        return None
    return value.decode("latin-1") if isinstance(value, bytes) else value


# -- Provision ([MS-ASPROV]) ---------------------------------------------------------------------

#: a permissive policy: Haven asks a phone for nothing (no PIN, no encryption), so any phone can
#: sync; the element names are [MS-ASPROV] 2.2.2.* in its order
POLICY = (("AllowBluetooth", "2"), ("AllowBrowser", "1"), ("AllowCamera", "1"), ("AllowConsumerEmail", "1"),
          ("AllowDesktopSync", "1"), ("AllowHTMLEmail", "1"), ("AllowInternetSharing", "1"), ("AllowIrDA", "1"),
          ("AllowPOPIMAPEmail", "1"), ("AllowRemoteDesktop", "1"), ("AllowSimpleDevicePassword", "1"),
          ("AllowSMIMEEncryptionAlgorithmNegotiation", "2"), ("AllowSMIMESoftCerts", "1"), ("AllowStorageCard", "1"),
          ("AllowTextMessaging", "1"), ("AllowUnsignedApplications", "1"),
          ("AllowUnsignedInstallationPackages", "1"), ("AllowWiFi", "1"), ("AlphanumericDevicePasswordRequired", "0"),
          ("AttachmentsEnabled", "1"), ("DevicePasswordEnabled", "0"), ("DevicePasswordExpiration", ""),
          ("DevicePasswordHistory", "0"), ("MaxAttachmentSize", ""), ("MaxCalendarAgeFilter", "0"),
          ("MaxDevicePasswordFailedAttempts", ""), ("MaxEmailAgeFilter", "0"), ("MaxEmailBodyTruncationSize", "-1"),
          ("MaxEmailHTMLBodyTruncationSize", "-1"), ("MaxInactivityTimeDeviceLock", ""),
          ("MinDevicePasswordComplexCharacters", "1"), ("MinDevicePasswordLength", ""),
          ("PasswordRecoveryEnabled", "0"), ("RequireDeviceEncryption", "0"), ("RequireEncryptedSMIMEMessages", "0"),
          ("RequireEncryptionSMIMEAlgorithm", "0"), ("RequireManualSyncWhenRoaming", "0"),
          ("RequireSignedSMIMEAlgorithm", "0"), ("RequireSignedSMIMEMessages", "0"),
          ("RequireStorageCardEncryption", "0"))


def policy_document():
    doc = element("Provision", "EASProvisionDoc")
    for name, value in POLICY:
        sub(doc, "Provision", name, value if value != "" else None)
    return doc


async def provision(ctx: Context):
    store, account, device_id = ctx.store, ctx.account, ctx.request.device_id
    body = ctx.body
    if body is None or body.tag != q("Provision", "Provision"):
        return status_only("Provision", 2)  # protocol error
    out = element("Provision", "Provision")
    sub(out, "Provision", "Status", 1)
    info = body.find(q("Settings", "DeviceInformation"))
    if info is not None:
        await _device_information(ctx, info)
        sub(sub(out, "Settings", "DeviceInformation"), "Settings", "Status", 1)
    wipe = body.find(q("Provision", "RemoteWipe"))
    if wipe is None:
        wipe = body.find(q("Provision", "AccountOnlyRemoteWipe"))
    if wipe is not None:  # the device wiped itself, or this account (MS-ASPROV 3.1.5.1.2.1)
        if text(wipe, "Provision", "Status") == "1" and ctx.device.wipe_state == "requested":
            await store.confirm_wipe(account.id, device_id)
            log.warning("activesync %s: device %s confirmed the remote wipe", account.address, device_id)
        return out
    if ctx.device.wipe_state == "requested":
        # an account-only wipe is only ever sent as such (16.1): never as a wipe of the whole phone
        sub(out, "Provision", "AccountOnlyRemoteWipe" if ctx.device.wipe_account_only else "RemoteWipe")
        return out
    policy = body.find(f"{q('Provision', 'Policies')}/{q('Provision', 'Policy')}")
    if policy is None:
        return out
    kind = text(policy, "Provision", "PolicyType")
    answer = sub(sub(out, "Provision", "Policies"), "Provision", "Policy")
    sub(answer, "Provision", "PolicyType", kind or "")
    if kind != POLICY_TYPE:
        sub(answer, "Provision", "Status", 3)  # policy type not recognized
        return out
    acked = text(policy, "Provision", "PolicyKey")
    if not acked:  # phase one: a temporary key and the policy
        key = await store.issue_policy_key(account.id, device_id)
        sub(answer, "Provision", "Status", 1)
        sub(answer, "Provision", "PolicyKey", key)
        sub(answer, "Provision", "Data").append(policy_document())
        return out
    try:  # phase two: the device applied the policy; its final key (0: not the key it was given)
        final = await store.acknowledge_policy_key(account.id, device_id, int(acked))
    except ValueError:
        final = 0
    if not final:
        log.info("activesync %s: device %s acknowledged a policy key it was not given", account.address, device_id)
        sub(answer, "Provision", "Status", 5)  # the policy key does not match
        return out
    log.info("activesync %s: device %s provisioned", account.address, device_id)
    sub(answer, "Provision", "Status", 1)
    sub(answer, "Provision", "PolicyKey", final)
    return out


async def _device_information(ctx: Context, info) -> None:
    fields = info.find(q("Settings", "Set"))
    if fields is None:
        return
    model = text(fields, "Settings", "Model")
    os_name = text(fields, "Settings", "OS")
    agent = text(fields, "Settings", "UserAgent")
    await ctx.store.record_device(ctx.account.id, ctx.request.device_id, model=(model or "")[:100] or None,
                                  os=(os_name or "")[:100] or None, user_agent=(agent or "")[:200] or None)


# -- FolderSync ([MS-ASCMD] 2.2.1.5) ---------------------------------------------------------------

FOLDER_SYNC_INVALID_KEY = 9


async def tree(ctx) -> list:
    """The phone's folder tree now: mail folders (hierarchy.py), then calendars, address books
    and task lists (pimfolders.py)."""
    mail = hierarchy.hierarchy(await ctx.store.list_folders(ctx.account.id, "mail"))
    pim = await pimfolders.load(ctx.store, ctx.account.id)
    return mail + [hierarchy.Entry(p.server_id, hierarchy.ROOT, p.display_name, p.type) for p in pim.values()]


async def folder_sync(ctx: Context):
    body = ctx.body
    key = text(body, "FolderHierarchy", "SyncKey") if body is not None else None
    if key is None:
        return status_only("FolderSync", 10)  # malformed request
    store, account, device_id = ctx.store, ctx.account, ctx.request.device_id
    held: dict = {}
    if key != EAS_INITIAL_KEY:
        state = await store.get_sync_state(account.id, device_id, EAS_HIERARCHY)
        if state is None or key not in (state.sync_key, state.previous_key):
            return status_only("FolderSync", FOLDER_SYNC_INVALID_KEY)
        if key == state.previous_key and state.last_response is not None:
            return state.last_response  # the device never got the answer that carried sync_key
        held = {sid: hierarchy.Entry(sid, *fields) for sid, fields in (state.snapshot or {}).items()}
    now = await tree(ctx)
    adds, updates, deletes = hierarchy.changes(held, now)
    new_key = eas_next_sync_key(key)
    out = element("FolderHierarchy", "FolderSync")
    sub(out, "FolderHierarchy", "Status", 1)
    sub(out, "FolderHierarchy", "SyncKey", new_key)
    changes = sub(out, "FolderHierarchy", "Changes")
    sub(changes, "FolderHierarchy", "Count", len(adds) + len(updates) + len(deletes))
    for sid in deletes:
        sub(sub(changes, "FolderHierarchy", "Delete"), "FolderHierarchy", "ServerId", sid)
    for kind, entries in (("Update", updates), ("Add", adds)):
        for e in entries:
            el = sub(changes, "FolderHierarchy", kind)
            sub(el, "FolderHierarchy", "ServerId", e.server_id)
            sub(el, "FolderHierarchy", "ParentId", e.parent_id)
            sub(el, "FolderHierarchy", "DisplayName", e.display_name)
            sub(el, "FolderHierarchy", "Type", e.type)
    data = await _code(encode, out)
    snapshot = {e.server_id: [e.parent_id, e.display_name, e.type] for e in now}
    saved = await store.save_sync_state(account.id, device_id, EAS_HIERARCHY, key, new_key, 0,
                                        held=[int(e.server_id) for e in now if e.server_id.isdigit()],
                                        response=data, snapshot=snapshot)
    if not saved:  # another request with this key won: this answer would leave the phone astray
        return status_only("FolderSync", FOLDER_SYNC_INVALID_KEY)
    return data


# -- FolderCreate, FolderUpdate, FolderDelete ([MS-ASCMD] 2.2.1.2, 2.2.1.4, 2.2.1.3) -----------------

FOLDER_EXISTS, FOLDER_SPECIAL, FOLDER_MISSING, PARENT_MISSING, FOLDER_SERVER_ERROR, FOLDER_MALFORMED = 2, 3, 4, 5, 6, 10


async def folder_create(ctx: Context):
    return await _folder_change(ctx, "FolderCreate")


async def folder_update(ctx: Context):
    return await _folder_change(ctx, "FolderUpdate")


async def folder_delete(ctx: Context):
    return await _folder_change(ctx, "FolderDelete")


async def _folder_change(ctx: Context, cmd: str):
    """A change of the tree the phone made itself: done in the store, then the hierarchy state
    moves to a new key whose snapshot already has it (the next FolderSync does not send it back)."""
    store, account, device_id, body = ctx.store, ctx.account, ctx.request.device_id, ctx.body
    key = text(body, "FolderHierarchy", "SyncKey") if body is not None else None
    if key is None or body.tag != q("FolderHierarchy", cmd):
        return status_only(cmd, FOLDER_MALFORMED)
    state = await store.get_sync_state(account.id, device_id, EAS_HIERARCHY)
    if state is None or key != state.sync_key:
        return status_only(cmd, FOLDER_SYNC_INVALID_KEY)
    folders, pim = await pimfolders.collections(store, account.id)
    server_id = text(body, "FolderHierarchy", "ServerId")
    parent_id = text(body, "FolderHierarchy", "ParentId")
    name = (text(body, "FolderHierarchy", "DisplayName") or "").strip()
    if cmd != "FolderDelete":
        if not name or "/" in name:
            return status_only(cmd, FOLDER_MALFORMED)
        if parent_id not in (None, hierarchy.ROOT) and parent_id not in folders:
            return status_only(cmd, PARENT_MISSING)
        path = name if parent_id in (None, hierarchy.ROOT) else f"{folders[parent_id].name}/{name}"
    out = element("FolderHierarchy", cmd)
    try:
        if cmd == "FolderCreate":
            if (text(body, "FolderHierarchy", "Type") or "12") not in ("1", "12"):
                # calendars, address books and task lists are made by CalDAV/CardDAV clients
                # (their properties, components and sharing are theirs to set)
                log.info("activesync %s: FolderCreate of type %s refused", account.address,
                         text(body, "FolderHierarchy", "Type"))
                return status_only(cmd, FOLDER_SERVER_ERROR)
            created = await store.create_folder(account.id, path, "mail")
            server_id = str(created.id)
        else:
            folder = folders.get(server_id or "")
            if (server_id or "") in pim:
                return status_only(cmd, FOLDER_SPECIAL)  # a calendar or address book: CalDAV/CardDAV's to change
            if folder is None:
                return status_only(cmd, FOLDER_MISSING)
            if folder.name == "INBOX" or folder.special_use:
                return status_only(cmd, FOLDER_SPECIAL)
            if cmd == "FolderUpdate":
                await store.rename_folder(account.id, folder.name, path)
            else:  # with the folders below it, as Exchange does (IMAP's DELETE would leave them)
                below = sorted((f.name for f in folders.values() if f.name.startswith(folder.name + "/")),
                               key=lambda n: -n.count("/"))
                for name in below + [folder.name]:
                    await store.delete_folder(account.id, name)
    except errors.Exists:
        return status_only(cmd, FOLDER_EXISTS)
    except (errors.InvalidInput, errors.NotFound, errors.PermissionDenied) as e:
        log.info("activesync %s: %s refused: %s", account.address, cmd, e)
        return status_only(cmd, FOLDER_SERVER_ERROR)
    now = await tree(ctx)
    new_key = eas_next_sync_key(key)
    snapshot = dict(state.snapshot or {})
    current = {e.server_id: e for e in now}
    for sid in [server_id] + [e.server_id for e in now if e.parent_id == server_id]:
        if sid in current:  # the folder and its children as they are now (a rename moves them)
            e = current[sid]
            snapshot[sid] = [e.parent_id, e.display_name, e.type]
        else:
            snapshot.pop(sid, None)
    for sid in list(snapshot):
        if sid not in current and cmd == "FolderDelete":
            snapshot.pop(sid)  # the children went with it
    sub(out, "FolderHierarchy", "Status", 1)
    sub(out, "FolderHierarchy", "SyncKey", new_key)
    if cmd == "FolderCreate":
        sub(out, "FolderHierarchy", "ServerId", server_id)
    saved = await store.save_sync_state(account.id, device_id, EAS_HIERARCHY, key, new_key, 0, snapshot=snapshot,
                                        response=await _code(encode, out))
    return out if saved else status_only(cmd, FOLDER_SYNC_INVALID_KEY)


# -- Sync ([MS-ASCMD] 2.2.1.21) ---------------------------------------------------------------------

#: collections one Sync may name (Status 15 past it)
MAX_COLLECTIONS = 200
SYNC_INCOMPLETE, SYNC_HIERARCHY_CHANGED, SYNC_TOO_MANY = 13, 12, 15


async def sync(ctx: Context):
    store, account, device_id = ctx.store, ctx.account, ctx.request.device_id
    body = ctx.body
    if body is not None and body.tag != q("AirSync", "Sync"):
        return status_only("Sync", 4)
    partial = body is not None and body.find(q("AirSync", "Partial")) is not None
    to_cache = ctx.raw if body is not None and not partial else None
    if body is None or partial:
        # an empty Sync is the last full request again; a Partial one names only what differs
        # from it ([MS-ASCMD] 2.2.1.21.1.1, 2.2.3.128)
        cached = await store.cached_device_request(account.id, device_id, "sync")
        if cached is None:
            return status_only("Sync", SYNC_INCOMPLETE)
        base = await _code(decode, cached)
        await _current_keys(ctx, base)
        if partial:
            base = _merged(base, body)
            to_cache = await _code(encode, base)
        body = base
    collections = body.findall(f"{q('AirSync', 'Collections')}/{q('AirSync', 'Collection')}")
    if not collections:
        return status_only("Sync", SYNC_INCOMPLETE)
    if len(collections) > MAX_COLLECTIONS:
        return status_only("Sync", SYNC_TOO_MANY)
    if to_cache and len(to_cache) <= EAS_MAX_CACHED_REQUEST:
        await store.cache_device_request(account.id, device_id, "sync", to_cache)
    folders, pim = await pimfolders.collections(store, account.id)
    wait = _wait_seconds(body, ctx)
    if isinstance(wait, ET.Element):
        return wait  # Status 14: out of range
    if wait and await _quiet(ctx, collections, folders, pim):
        # a hanging Sync ([MS-ASCMD] 2.2.3.198, 2.2.3.79.2): nothing to send now; wait for a change
        # as a Ping does; with none, an empty answer leaves every SyncKey as it was
        hub, key = ctx.notes["pings"], (account.id, device_id)
        hub.end(key)  # waiting, this request changes nothing a Ping of the device should ignore
        try:
            ready = await ping.wait_for(ctx, hub, set(_collection_ids(collections)), wait, ctx.http)
        finally:
            hub.begin(key)
        if not ready:
            return None
        folders, pim = await pimfolders.collections(store, account.id)
    overall = syncplan.window_size(text(body, "AirSync", "WindowSize")) if body.find(q("AirSync", "WindowSize")) \
        is not None else syncplan.MAX_WINDOW
    out = element("AirSync", "Sync")
    answers = sub(out, "AirSync", "Collections")
    for collection in collections:
        cid = text(collection, "AirSync", "CollectionId") or ""
        key = text(collection, "AirSync", "SyncKey") or ""
        folder = folders.get(cid)
        if cid == hierarchy.OUTBOX_ID:  # always empty: nothing waits in it
            answer = element("AirSync", "Collection")
            sub(answer, "AirSync", "SyncKey", "1" if key == EAS_INITIAL_KEY else key)
            sub(answer, "AirSync", "CollectionId", cid)
            sub(answer, "AirSync", "Status", 1)
        elif cid in pim:
            window = min(syncplan.window_size(text(collection, "AirSync", "WindowSize")), overall)
            answer = await pimsync.PimSync(ctx, pim[cid], collection, window).run()
        elif folder is None:  # gone: the phone's FolderSync tells it
            answer = element("AirSync", "Collection")
            sub(answer, "AirSync", "SyncKey", key or EAS_INITIAL_KEY)
            sub(answer, "AirSync", "CollectionId", cid)
            sub(answer, "AirSync", "Status", SYNC_HIERARCHY_CHANGED)
        else:
            window = min(syncplan.window_size(text(collection, "AirSync", "WindowSize")), overall)
            trash = next((f for f in folders.values() if f.special_use == "\\Trash"), None)
            answer = await mailsync.MailSync(ctx, folder, collection, window, trash).run()
        answers.append(answer)
    return out


SYNC_BAD_WAIT = 14


async def _current_keys(ctx, request) -> None:
    """A cached request made current: each collection with the key the device holds now (the
    one the last answer carried), without the phone's commands of then (they were applied)."""
    for collection in request.iter(q("AirSync", "Collection")):
        cid, key_el = text(collection, "AirSync", "CollectionId"), collection.find(q("AirSync", "SyncKey"))
        sid = pimfolders.state_id(cid or "")
        state = await ctx.store.get_sync_state(ctx.account.id, ctx.request.device_id, sid) \
            if sid is not None else None
        if state is not None and key_el is not None:
            key_el.text = state.sync_key
        commands = collection.find(q("AirSync", "Commands"))
        if commands is not None:
            collection.remove(commands)


def _merged(base, partial):
    """The cached request with the Partial one's collections (by CollectionId) and its Wait,
    HeartbeatInterval and WindowSize put in."""
    out = element("AirSync", "Sync")
    given = {text(c, "AirSync", "CollectionId"): c
             for c in partial.findall(f"{q('AirSync', 'Collections')}/{q('AirSync', 'Collection')}")}
    collections = sub(out, "AirSync", "Collections")
    for c in base.findall(f"{q('AirSync', 'Collections')}/{q('AirSync', 'Collection')}"):
        collections.append(given.pop(text(c, "AirSync", "CollectionId"), c))
    for c in given.values():
        collections.append(c)
    for name in ("Wait", "HeartbeatInterval", "WindowSize"):
        el = partial.find(q("AirSync", name))
        if el is None:
            el = base.find(q("AirSync", name))
        if el is not None:
            out.append(el)
    return out


def _collection_ids(collections) -> list:
    return [text(c, "AirSync", "CollectionId") or "" for c in collections]


def _wait_seconds(body, ctx):
    """Seconds a Sync may wait for changes (``Wait`` minutes 1-59, or ``HeartbeatInterval``
    seconds within the Ping limits); 0 for none; Status 14 with the limit when out of range."""
    minutes, heartbeat = text(body, "AirSync", "Wait"), text(body, "AirSync", "HeartbeatInterval")
    if minutes is not None:
        if not minutes.isdigit() or not 1 <= int(minutes) <= 59:
            limit = 1 if not minutes.isdigit() or int(minutes) < 1 else 59
            return element("AirSync", "Sync", element("AirSync", "Status", text=SYNC_BAD_WAIT),
                           element("AirSync", "Limit", text=limit))
        return int(minutes) * 60
    if heartbeat is not None:
        config = ctx.config
        if not heartbeat.isdigit() or not config.min_heartbeat <= int(heartbeat) <= config.max_heartbeat:
            limit = config.min_heartbeat if not heartbeat.isdigit() or int(heartbeat) < config.min_heartbeat \
                else config.max_heartbeat
            return element("AirSync", "Sync", element("AirSync", "Status", text=SYNC_BAD_WAIT),
                           element("AirSync", "Limit", text=limit))
        return int(heartbeat)
    return 0


async def _quiet(ctx, collections, folders: dict, pim: dict) -> bool:
    """Nothing for any collection now: no command of the phone's, no new key, no change."""
    for c in collections:
        cid, key = text(c, "AirSync", "CollectionId") or "", text(c, "AirSync", "SyncKey") or ""
        if (cid not in folders and cid not in pim) or key == EAS_INITIAL_KEY \
                or c.find(q("AirSync", "Commands")) is not None or text(c, "AirSync", "GetChanges") == "0":
            return False
        state = await ctx.store.get_sync_state(ctx.account.id, ctx.request.device_id, pimfolders.state_id(cid))
        if state is None or key != state.sync_key:
            return False  # a replay or an unknown key: answered at once
        if cid in pim:
            if await pimsync.PimSync(ctx, pim[cid], c, 1).pending(state, window=1):
                return False
        elif await mailsync.pending_count(ctx, folders[cid], state, window=1):
            return False
    return True


# -- Settings ([MS-ASCMD] 2.2.1.18) ----------------------------------------------------------------

async def settings(ctx: Context):
    body = ctx.body
    if body is None or body.tag != q("Settings", "Settings"):
        return status_only("Settings", 2)
    out = element("Settings", "Settings")
    sub(out, "Settings", "Status", 1)
    for child in body:
        name = child.tag.rpartition("}")[2]
        if name == "DeviceInformation":
            await _device_information(ctx, child)
            sub(sub(out, "Settings", "DeviceInformation"), "Settings", "Status", 1)
        elif name == "UserInformation":
            out.append(await _user_information(ctx))
        elif name == "Oof":
            out.append(await oof.settings_oof(ctx, child))
        else:  # DevicePassword, RightsManagementInformation: not offered yet
            sub(sub(out, "Settings", name), "Settings", "Status", 2)
    return out


async def _user_information(ctx: Context):
    account = ctx.account
    aliases = [alias for alias, owner in await ctx.store.list_aliases() if owner == account.address]
    el = element("Settings", "UserInformation")
    sub(el, "Settings", "Status", 1)
    get = sub(el, "Settings", "Get")
    if ctx.version >= (14, 1):
        acct = sub(sub(get, "Settings", "Accounts"), "Settings", "Account")
        sub(acct, "Settings", "UserDisplayName", account.name or account.address)
        sub(acct, "Settings", "PrimarySmtpAddress", account.address)
        addresses = sub(acct, "Settings", "EmailAddresses")
    else:
        addresses = sub(get, "Settings", "EmailAddresses")
    for address in [account.address] + aliases:
        sub(addresses, "Settings", "SMTPAddress", address)
    return el


def make_commands(store, settings=None, max_message_size: int = 50 << 20, max_item_size: int = 2097152,
                  max_occurrences: int = 10000) -> Callable:
    return Commands(store, ActiveSyncConfig.from_settings(settings, max_item_size, max_occurrences), max_message_size)
