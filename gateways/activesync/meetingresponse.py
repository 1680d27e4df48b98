"""MeetingResponse ([MS-ASCMD] 2.2.1.11): the phone's Accept / Tentative / Decline of an
invitation in the mail (or of an event in the calendar), done on the user's default calendar
the way a CalDAV client does it, and, from 16.0 when the phone asks, the iTIP REPLY (RFC 5546
§3.2.3) sent to the organizer.

Invariants
- The event of an invitation lives in the account's default calendar (pimfolders.py: the
  calendar collection named ``Calendar``, else the oldest), found by UID; a calendar item is
  named by its calendar's and its own ServerId (folder id, item id).  It is read, answered and
  written back conditionally on the ETag read (put_dav_item / delete_dav_item ``expect``), so a
  client writing at the same moment is never overwritten: the response is made again on what
  it wrote.  An invitation whose UID is not there yet is stored from its VEVENTs with METHOD
  taken out, as a CalDAV PUT of ``<uid>.ics`` would store it (gateways/common/davitems.py:
  Radicale's checks, the same ETag and time bounds, ``[http]`` limits).  A newer invitation
  (higher or equal SEQUENCE) replaces the stored VEVENT it updates.
- The response sets the PARTSTAT of the user's own ATTENDEE (the account's address or an alias;
  added when the invitation does not name the user) on every VEVENT of the item, or, with an
  ``InstanceId``, on that occurrence only (a RECURRENCE-ID override made from the master when
  there is none).  A decline keeps the event with PARTSTAT=DECLINED, as CalDAV clients do.
- A response to a cancellation removes the event (soft delete), or the cancelled occurrence (an
  EXDATE on the master); the answer then carries no CalendarId.
- The invitation mail is soft-deleted from its folder once the calendar is written.
- The REPLY leaves only from 16.0 and only with ``SendResponse``, through the shared
  submission path (Store.begin_submission: sender checks, rate limits, the relay); up to 14.1
  the phone sends the reply itself, so nothing is sent.  It names the user's ATTENDEE only, with
  the event's UID, SEQUENCE and RECURRENCE-ID.  A reply that cannot leave is logged; the
  calendar change stands.
- The invitation is named by its mail ServerId (CollectionId + RequestId) or by the LongId of
  a Search result (the same ServerId, search.py).
- Status per request: 1 done, 2 invalid request (no such response, not an invitation, a
  malformed id), 3 mailbox error (the item or the default calendar is not found), 4 server
  error; bad input is logged, never an exception.
"""

from __future__ import annotations

import logging
from datetime import datetime, timezone
from email.message import EmailMessage
from email.utils import formataddr
from typing import Optional

import icalendar
from twisted.internet.threads import deferToThread

from store import errors

from gateways.common.davitems import item_for

from . import meeting, pimfolders
from .wbxml import qname as q
from .xmlutil import element, sub, text

log = logging.getLogger("haven.activesync")

OK, INVALID, MAILBOX_ERROR, SERVER_ERROR = 1, 2, 3, 4
PARTSTAT = {"1": "ACCEPTED", "2": "TENTATIVE", "3": "DECLINED"}
VERB = {"ACCEPTED": "Accepted", "TENTATIVE": "Tentative", "DECLINED": "Declined"}
#: reads and conditional writes of one response before it gives up (Status 4)
WRITE_ATTEMPTS = 3
PRODID = "-//Haven//ActiveSync//EN"


class Refused(Exception):
    """A request answered with ``status`` (and a reason for the log)."""

    def __init__(self, status: int, reason: str):
        super().__init__(reason)
        self.status = status


# -- the calendar object (pure) --------------------------------------------------------------------

def _copy(component):
    return type(component).from_ical(component.to_ical())


def _events(cal) -> list:
    return [c for c in cal.subcomponents if c.name == "VEVENT"]


def _recurrence_key(event) -> Optional[datetime]:
    rid = meeting._decoded(event, "RECURRENCE-ID")
    return None if rid is None else meeting.as_utc(rid)


def stored_calendar(inv) -> icalendar.Calendar:
    """A new calendar object of the invitation: its VTIMEZONEs and VEVENTs, METHOD left out."""
    cal = icalendar.Calendar()
    cal.add("PRODID", PRODID)
    cal.add("VERSION", "2.0")
    for component in inv.calendar.subcomponents:
        if component.name in ("VTIMEZONE", "VEVENT"):
            cal.add_component(_copy(component))
    return cal


def merge_update(cal, inv) -> None:
    """The invitation's VEVENTs into the stored ``cal``: each replaces the stored one with its
    RECURRENCE-ID when its SEQUENCE is not older, or is added; its zones come along."""
    zones = {str(c.get("TZID")) for c in cal.subcomponents if c.name == "VTIMEZONE"}
    for component in inv.calendar.subcomponents:
        if component.name == "VTIMEZONE" and str(component.get("TZID")) not in zones:
            cal.subcomponents.insert(0, _copy(component))
    for event in inv.calendar.walk("VEVENT"):
        key = _recurrence_key(event)
        old = next((e for e in _events(cal) if _recurrence_key(e) == key), None)
        if old is None:
            cal.add_component(_copy(event))
        elif meeting._sequence(event) >= meeting._sequence(old):
            cal.subcomponents[cal.subcomponents.index(old)] = _copy(event)


def occurrence(cal, instance: datetime):
    """The override of the occurrence starting at ``instance`` (UTC): the stored one, or a new
    one made from the master (RECURRENCE-ID and DTSTART in the master's zone, the same length,
    no recurrence of its own).  None when there is no master."""
    for event in _events(cal):
        if _recurrence_key(event) == instance:
            return event
    master = next((e for e in _events(cal) if "RECURRENCE-ID" not in e and "RRULE" in e), None)
    if master is None:
        return None
    start, end, all_day = meeting.times(master)
    local = meeting._decoded(master, "DTSTART")
    if all_day:
        when = instance.date()
    elif local.tzinfo is None:
        when = instance.replace(tzinfo=None)
    else:
        when = instance.astimezone(local.tzinfo)
    event = _copy(master)
    for name in ("RRULE", "RDATE", "EXDATE", "DTSTART", "DTEND", "DURATION", "RECURRENCE-ID"):
        event.pop(name, None)
    event.add("DTSTART", when)
    event.add("DTEND", when + (end - start))
    event.add("RECURRENCE-ID", when)
    cal.add_component(event)
    return event


def set_partstat(event, partstat: str, own: frozenset, address: str) -> None:
    """The user's ATTENDEE of ``event`` gets ``partstat`` (and no RSVP request); added when the
    event does not list the user."""
    found = False
    for attendee in meeting.attendees(event):
        if meeting.address_of(attendee) in own:
            attendee.params["PARTSTAT"] = partstat
            attendee.params.pop("RSVP", None)
            found = True
    if not found:
        event.add("ATTENDEE", icalendar.vCalAddress("mailto:" + address), parameters={"PARTSTAT": partstat})


def cancel(cal, inv) -> bool:
    """A cancellation applied to the stored ``cal``: True when the whole event goes; an
    occurrence's cancellation becomes an EXDATE of the master (and its override goes)."""
    key = _recurrence_key(inv.event) if "RECURRENCE-ID" in inv.event else None
    if key is None:
        return True
    master = next((e for e in _events(cal) if "RECURRENCE-ID" not in e), None)
    for event in _events(cal):
        if _recurrence_key(event) == key:
            cal.subcomponents.remove(event)
    if master is None:
        return not _events(cal)
    local = meeting._decoded(master, "DTSTART")
    rid = meeting._decoded(inv.event, "RECURRENCE-ID")
    if isinstance(local, datetime) and local.tzinfo is not None and isinstance(rid, datetime):
        rid = meeting.as_utc(rid).astimezone(local.tzinfo)
    master.add("EXDATE", rid)
    return False


def respond(stored: Optional[str], inv, partstat: str, own: frozenset, address: str,
            instance: Optional[datetime]) -> tuple:
    """``(calendar text or None to delete the event, the VEVENT answered or None)`` for a
    response to ``inv`` (None: to the stored event alone).  ValueError when there is nothing
    to answer (no such occurrence, text that does not parse)."""
    try:
        cal = icalendar.Calendar.from_ical(stored) if stored is not None else None
    except Exception as e:
        raise ValueError(f"the stored event does not parse: {e}") from None
    if inv is not None and inv.method == "CANCEL":
        if cal is None or cancel(cal, inv):
            return None, None
        return cal.to_ical().decode("utf-8"), None
    if cal is None:
        cal = stored_calendar(inv)
    elif inv is not None:
        merge_update(cal, inv)
    if instance is not None:
        target = occurrence(cal, instance)
        if target is None:
            raise ValueError("no recurring event has that occurrence")
        targets = [target]
    else:
        targets = _events(cal)
    if not targets:
        raise ValueError("no VEVENT")
    for event in targets:
        set_partstat(event, partstat, own, address)
    answered = targets[0] if instance is not None else next(
        (e for e in targets if "RECURRENCE-ID" not in e), targets[0])
    return cal.to_ical().decode("utf-8"), answered


# -- the iTIP REPLY (pure) -------------------------------------------------------------------------

def _utc_value(value):
    return meeting.as_utc(value) if isinstance(value, datetime) else value


def reply_calendar(event, own: frozenset, now: datetime) -> icalendar.Calendar:
    """RFC 5546 §3.2.3: METHOD:REPLY with the user's ATTENDEE only and the event's UID, SEQUENCE
    and RECURRENCE-ID (times in UTC, so no VTIMEZONE is needed)."""
    cal = icalendar.Calendar()
    cal.add("PRODID", PRODID)
    cal.add("VERSION", "2.0")
    cal.add("METHOD", "REPLY")
    reply = icalendar.Event()
    reply.add("UID", str(event.get("UID", "")))
    reply.add("DTSTAMP", now)
    reply.add("SEQUENCE", meeting._sequence(event))
    for name in ("RECURRENCE-ID", "DTSTART", "DTEND"):
        value = meeting._decoded(event, name)
        if value is not None:
            reply.add(name, _utc_value(value))
    if event.get("SUMMARY") is not None:
        reply.add("SUMMARY", str(event.get("SUMMARY")))
    if event.get("ORGANIZER") is not None:
        reply["ORGANIZER"] = event["ORGANIZER"]
    for attendee in meeting.attendees(event):
        if meeting.address_of(attendee) in own:
            reply.add("ATTENDEE", attendee)
            break
    cal.add_component(reply)
    return cal


def reply_message(event, partstat: str, own: frozenset, sender: str, sender_name: str, comment: str,
                  now: datetime) -> tuple:
    """``(organizer address, RFC 5322 message)`` of the REPLY: a short text and the
    text/calendar part (method=REPLY), as calendar clients send it."""
    organizer = meeting.address_of(event.get("ORGANIZER"))
    summary = str(event.get("SUMMARY", "") or "")
    verb = VERB[partstat]
    msg = EmailMessage()
    msg["From"] = formataddr((sender_name, sender)) if sender_name else sender
    msg["To"] = organizer
    msg["Subject"] = f"{verb}: {summary}" if summary else verb
    msg.set_content((comment.strip() + "\n\n" if comment.strip() else "") +
                    f"{sender_name or sender} has {verb.lower()} this invitation: {summary}\n")
    ics = reply_calendar(event, own, now).to_ical().decode("utf-8")
    msg.add_alternative(ics, subtype="calendar", params={"method": "REPLY"})
    return organizer, msg.as_bytes(policy=msg.policy.clone(linesep="\r\n"))


# -- the command -------------------------------------------------------------------------------

def _instance(value: Optional[str]) -> Optional[datetime]:
    """An InstanceId ([MS-ASDTYPE] dateTime, ``2026-12-14T09:00:00.000Z``) as UTC."""
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        raise Refused(INVALID, f"InstanceId {value[:40]!r} is not a date-time") from None
    return meeting.as_utc(parsed)


async def meeting_response(ctx):
    """The command's handler: one Result per Request, in order."""
    body = ctx.body
    out = element("MeetingResponse", "MeetingResponse")
    requests = body.findall(q("MeetingResponse", "Request")) if body is not None and \
        body.tag == q("MeetingResponse", "MeetingResponse") else []
    if not requests:
        log.info("activesync %s: a MeetingResponse without a Request", ctx.account.address)
        sub(sub(out, "MeetingResponse", "Result"), "MeetingResponse", "Status", INVALID)
        return out
    for request in requests:
        result = sub(out, "MeetingResponse", "Result")
        request_id = text(request, "MeetingResponse", "RequestId")
        if request_id:
            sub(result, "MeetingResponse", "RequestId", request_id)
        try:
            calendar_id = await MeetingResponder(ctx, request).run()
        except Refused as e:
            log.info("activesync %s: MeetingResponse %s: %s", ctx.account.address, (request_id or "")[:80], e)
            sub(result, "MeetingResponse", "Status", e.status)
            continue
        except errors.TemporaryFailure:
            raise  # 503 with Retry-After (commands.py): the phone tries again
        except errors.StoreError as e:
            log.warning("activesync %s: MeetingResponse %s failed: %s", ctx.account.address,
                        (request_id or "")[:80], e)
            sub(result, "MeetingResponse", "Status", SERVER_ERROR)
            continue
        except Exception:  # a calendar object no code path expected: the phone gets Status 4, not a 500
            log.exception("activesync %s: MeetingResponse %s failed", ctx.account.address, (request_id or "")[:80])
            sub(result, "MeetingResponse", "Status", SERVER_ERROR)
            continue
        sub(result, "MeetingResponse", "Status", OK)
        if calendar_id is not None:
            sub(result, "MeetingResponse", "CalendarId", calendar_id)
    return out


class MeetingResponder:
    """One Request of a MeetingResponse."""

    def __init__(self, ctx, request):
        self.ctx, self.request = ctx, request
        self.store, self.account = ctx.store, ctx.account

    async def run(self) -> Optional[str]:
        """The CalendarId of the event answered (None when it was removed or declined)."""
        req = self.request
        partstat = PARTSTAT.get(text(req, "MeetingResponse", "UserResponse") or "")
        collection_id = text(req, "MeetingResponse", "CollectionId") or ""
        request_id = text(req, "MeetingResponse", "RequestId") or ""
        if partstat is None:
            raise Refused(INVALID, "UserResponse is not 1, 2 or 3")
        long_id = text(req, "Search", "LongId")
        if long_id and not collection_id:  # a Search result: its LongId is the mail ServerId (search.py)
            collection_id, request_id = long_id.partition(":")[0], long_id
        if not collection_id or not request_id:
            raise Refused(INVALID, "neither CollectionId and RequestId nor a LongId")
        instance = _instance(text(req, "MeetingResponse", "InstanceId")) if self.ctx.version >= (16, 0) else None
        own = await self._own_addresses()
        calendars = [p for p in (await pimfolders.load(self.store, self.account.id)).values() if p.klass == "Calendar"]
        mail = None
        mail_folders = {str(f.id) for f in await self.store.list_folders(self.account.id, "mail")}
        if collection_id in mail_folders:
            mail = await self._invitation(int(collection_id), request_id)
            inv, uid, item_id = mail[2], mail[2].uid, None
            calendar = next((p for p in calendars if p.type == pimfolders.DEFAULT_CALENDAR), None)
            if calendar is None:
                raise Refused(MAILBOX_ERROR, "the account has no calendar")
        else:
            calendar = next((p for p in calendars if p.server_id == collection_id), None)
            if calendar is None or not request_id.isdigit():
                raise Refused(MAILBOX_ERROR, f"no item {request_id[:80]!r} in collection {collection_id}")
            inv, uid, item_id = None, None, int(request_id)
        calendar_id, answered, removed = await self._update_calendar(calendar.folder, uid, item_id, inv, partstat,
                                                                     own, instance)
        if mail is not None:
            await self.store.delete_messages(self.account.id, mail[0], [mail[1]])
        if answered is not None and self.ctx.version >= (16, 0) \
                and req.find(q("MeetingResponse", "SendResponse")) is not None:
            await self._send_reply(answered, partstat, own)
        log.info("activesync %s: meeting %s %s%s", self.account.address, (uid or request_id)[:80],
                 "removed" if removed else partstat.lower(),
                 f" (occurrence {instance:%Y-%m-%dT%H:%M:%SZ})" if instance else "")
        return calendar_id if partstat != "DECLINED" and not removed else None

    async def _own_addresses(self) -> frozenset:
        aliases = [alias for alias, owner in await self.store.list_aliases() if owner == self.account.address]
        return frozenset(a.lower() for a in [self.account.address] + aliases)

    async def _invitation(self, folder_id: int, request_id: str) -> tuple:
        """``(folder id, uid, Invitation)`` of the mail ServerId ``request_id``."""
        folder, _, uid = request_id.partition(":")
        if folder != str(folder_id) or not uid.isdigit():
            raise Refused(INVALID, f"RequestId {request_id[:80]!r} is not a message of folder {folder_id}")
        pairs = await self.store.fetch_messages_with_bodies(folder_id, [int(uid)], structure=True)
        if not pairs:
            raise Refused(MAILBOX_ERROR, f"no message {request_id[:80]}")
        rec, raw = pairs[0]
        inv = await deferToThread(meeting.invitation, raw, rec.structure or {})
        if inv is None or inv.method not in ("REQUEST", "CANCEL") or not inv.uid:
            raise Refused(INVALID, f"message {request_id[:80]} is not a meeting request")
        return folder_id, int(uid), inv

    async def _stored(self, folder_id: int, uid: Optional[str], item_id: Optional[int]):
        """The live DavItem (with its text) of ``uid`` or of the id ``item_id`` in the folder, or None."""
        if item_id is None:
            item_id = next((i.id for i in await self.store.list_dav_items(folder_id) if i.uid == uid), None)
        found = await self.store.dav_items_by_id(self.account.id, [item_id]) if item_id is not None else []
        return next((i for i in found if i.folder_id == folder_id), None)

    async def _update_calendar(self, folder, uid: Optional[str], item_id: Optional[int], inv, partstat: str,
                               own: frozenset, instance: Optional[datetime]) -> tuple:
        """Read, answer and write back the event, the write conditional on what was read (a
        client that wrote meanwhile: read again and answer on its version).  ``(CalendarId or
        None, the VEVENT answered or None, whether the event was removed)``."""
        store, account_id, config = self.store, self.account.id, self.ctx.config
        for _attempt in range(WRITE_ATTEMPTS):
            existing = await self._stored(folder.id, uid, item_id)
            if inv is None and existing is None:
                raise Refused(MAILBOX_ERROR, f"no calendar item {item_id}")
            try:
                new_text, answered = await deferToThread(respond, existing.data if existing else None, inv, partstat,
                                                         own, self.account.address, instance)
                if new_text is not None:
                    row = await deferToThread(item_for, new_text, folder.kind, f"{self.account.address}/{folder.name}",
                                              existing.href if existing else "", config.max_item_size,
                                              config.max_occurrences)
            except ValueError as e:
                raise Refused(INVALID, f"the event cannot be answered: {e}") from None
            try:
                if new_text is None:
                    if existing is not None:
                        await store.delete_dav_item(account_id, folder.id, existing.href, expect=existing.etag)
                    return None, None, True
                stored, _replaced = await store.put_dav_item(account_id, folder.id, row,
                                                             expect=existing.etag if existing else "")
                return str(stored.id), answered, False
            except (errors.Conflict, errors.NotFound):
                continue  # another client wrote or removed it meanwhile
            except (errors.Exists, errors.InvalidInput) as e:
                raise Refused(SERVER_ERROR, f"the event cannot be stored: {e}") from None
        raise Refused(SERVER_ERROR, "the event kept changing under the response")

    async def _send_reply(self, event, partstat: str, own: frozenset) -> None:
        send = self.request.find(q("MeetingResponse", "SendResponse"))
        body = send.find(q("AirSyncBase", "Body")) if send is not None else None
        comment = text(body, "AirSyncBase", "Data") or "" if body is not None else ""
        organizer, raw = reply_message(event, partstat, own, self.account.address, self.account.name or "",
                                       comment, datetime.now(timezone.utc).replace(microsecond=0))
        if not organizer or organizer in own:
            return  # the user's own meeting: nobody to tell
        try:
            submission = await self.store.begin_submission(self.account.id, self.account.address)
            await submission.add_recipient(organizer)
            result = await submission.commit(raw)
        except errors.StoreError as e:
            log.warning("activesync %s: the meeting reply to %s was not sent: %s", self.account.address, organizer, e)
            return
        if result.refused is not None:
            log.warning("activesync %s: the meeting reply to %s was refused", self.account.address, organizer)
