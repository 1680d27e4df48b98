"""Settings Oof ([MS-ASCMD] 2.2.3.119): the phone reads and sets the account's out-of-office
replies, which the store keeps (Store.get_out_of_office / set_out_of_office) and the delivery
pipeline sends (store/rules.py).

Invariants
- ``OofState`` 0 off, 1 on, 2 scheduled between ``StartTime`` and ``EndTime`` (UTC dateTime);
  each ``OofMessage`` names its audience (``AppliesToInternal``, ``AppliesToExternalKnown``,
  ``AppliesToExternalUnknown``) with ``Enabled``, ``ReplyMessage`` and ``BodyType`` (Text or
  HTML, any case).
- A Set changes what it names: an audience without an ``OofMessage``, or a state without
  ``OofState``, stays as it was; a schedule without its times is refused.
- A Get answers every audience in the ``BodyType`` asked for (HTML reduced to text, text put
  in HTML, as asked); the times only for a schedule.
- Status: 1 done, 2 a request that is not a Get or a Set, 5 an invalid value (a state, a time,
  a body type), 6 a schedule whose end is not after its start, 4 the store failed; bad input
  is logged.
"""

from __future__ import annotations

import calendar
import html
import logging
import time
from dataclasses import replace
from datetime import datetime
from typing import Optional

from formats import mime
from store import errors
from store.interfaces import OOF_OFF, OOF_ON, OOF_SCHEDULED, OofReply

from .wbxml import qname as q
from .xmlutil import element, sub, text

log = logging.getLogger("haven.activesync")

OK, PROTOCOL_ERROR, SERVER_UNAVAILABLE, INVALID_ARGUMENTS, CONFLICTING_ARGUMENTS = 1, 2, 4, 5, 6
#: the audience element -> the OutOfOffice field
AUDIENCES = (("AppliesToInternal", "internal"), ("AppliesToExternalKnown", "external_known"),
             ("AppliesToExternalUnknown", "external_unknown"))


class Invalid(ValueError):
    def __init__(self, status: int, reason: str):
        super().__init__(reason)
        self.status = status


def parse_time(value: Optional[str]) -> int:
    """[MS-ASDTYPE] dateTime (``2026-12-24T00:00:00.000Z``) as a Unix time."""
    try:
        parsed = datetime.strptime((value or "").strip().rstrip("Z")[:19], "%Y-%m-%dT%H:%M:%S")
    except ValueError:
        raise Invalid(INVALID_ARGUMENTS, f"{(value or '')[:40]!r} is not a date-time") from None
    return calendar.timegm(parsed.timetuple())


def _body_type(value: Optional[str]) -> bool:
    """True for HTML, False for text."""
    kind = (value or "Text").strip().upper()
    if kind not in ("TEXT", "HTML"):
        raise Invalid(INVALID_ARGUMENTS, f"BodyType {kind[:20]!r} is not Text or HTML")
    return kind == "HTML"


def apply_set(current, set_el):
    """The OutOfOffice ``current`` changed as the Set element says."""
    oof = current
    state = text(set_el, "Settings", "OofState")
    if state is not None:
        if state not in ("0", "1", "2"):
            raise Invalid(INVALID_ARGUMENTS, f"OofState {state[:10]!r}")
        oof = replace(oof, state=int(state))
    if oof.state == OOF_SCHEDULED:
        start, end = text(set_el, "Settings", "StartTime"), text(set_el, "Settings", "EndTime")
        if start is not None or end is not None or state is not None:
            oof = replace(oof, start_at=parse_time(start), end_at=parse_time(end))
        if oof.end_at <= oof.start_at:
            raise Invalid(CONFLICTING_ARGUMENTS, "the end is not after the start")
    for message in set_el.findall(q("Settings", "OofMessage")):
        audience = next((field for name, field in AUDIENCES if message.find(q("Settings", name)) is not None), None)
        if audience is None:
            raise Invalid(PROTOCOL_ERROR, "an OofMessage names no audience")
        old = getattr(oof, audience)
        enabled = text(message, "Settings", "Enabled")
        reply = OofReply(enabled=(enabled == "1") if enabled is not None else old.enabled,
                         message=text(message, "Settings", "ReplyMessage") or "" if
                         message.find(q("Settings", "ReplyMessage")) is not None else old.message,
                         html=_body_type(text(message, "Settings", "BodyType")) if
                         message.find(q("Settings", "BodyType")) is not None else old.html)
        oof = replace(oof, **{audience: reply})
    return oof


def _as(reply: OofReply, html_wanted: bool) -> str:
    if reply.html == html_wanted:
        return reply.message
    if html_wanted:
        return "<html><body>" + html.escape(reply.message).replace("\n", "<br>\n") + "</body></html>"
    return mime.html_to_text(reply.message)


def get_element(oof, html_wanted: bool):
    """The ``Get`` element of a Get's answer."""
    get = element("Settings", "Get")
    sub(get, "Settings", "OofState", oof.state)
    if oof.state == OOF_SCHEDULED:
        sub(get, "Settings", "StartTime", time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(oof.start_at)))
        sub(get, "Settings", "EndTime", time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(oof.end_at)))
    for name, audience in AUDIENCES:
        reply = getattr(oof, audience)
        message = sub(get, "Settings", "OofMessage")
        sub(message, "Settings", name)
        sub(message, "Settings", "Enabled", "1" if reply.enabled else "0")
        sub(message, "Settings", "ReplyMessage", _as(reply, html_wanted))
        sub(message, "Settings", "BodyType", "HTML" if html_wanted else "Text")
    return get


async def settings_oof(ctx, request):
    """The ``Oof`` element answering the ``Oof`` element of a Settings request."""
    out = element("Settings", "Oof")
    store, account = ctx.store, ctx.account
    get_el, set_el = request.find(q("Settings", "Get")), request.find(q("Settings", "Set"))
    try:
        if get_el is not None:
            oof = await store.get_out_of_office(account.id)
            answer = get_element(oof, _body_type(text(get_el, "Settings", "BodyType")))
            sub(out, "Settings", "Status", OK)
            out.append(answer)
            return out
        if set_el is None:
            raise Invalid(PROTOCOL_ERROR, "neither Get nor Set")
        oof = apply_set(await store.get_out_of_office(account.id), set_el)
        await store.set_out_of_office(account.id, oof)
        log.info("activesync %s: out of office %s", account.address,
                 {OOF_OFF: "off", OOF_ON: "on"}.get(oof.state, "scheduled"))
    except Invalid as e:
        log.info("activesync %s: Settings Oof refused: %s", account.address, e)
        sub(out, "Settings", "Status", e.status)
        return out
    except (errors.InvalidInput, errors.TooBig) as e:
        log.info("activesync %s: Settings Oof refused: %s", account.address, e)
        sub(out, "Settings", "Status", INVALID_ARGUMENTS)
        return out
    except errors.StoreError as e:
        log.warning("activesync %s: Settings Oof failed: %s", account.address, e)
        sub(out, "Settings", "Status", SERVER_UNAVAILABLE)
        return out
    sub(out, "Settings", "Status", OK)
    return out
