"""An email as ActiveSync carries it: the ``Email``, ``Email2`` and ``AirSyncBase`` elements of a
Sync Add/Fetch or an ItemOperations Fetch ([MS-ASEMAIL] 2.2.2, [MS-ASAIRS] 2.2.2), made from a
stored message (its cached envelope and structure, its raw bytes) and its flags.

Pure and synchronous (the command layer runs it in the CPU pool for big messages): records
and bytes in, ElementTree elements out, with the namespaces of gateways/activesync/wbxml.py
(``{Email}Subject``).

Invariants
- The body is what the phone asked for ([MS-ASAIRS] 2.2.2.9 BodyPreference, in its order):
  1 plain text (an HTML-only message reduced to text), 2 HTML (a plain-text message wrapped in
  ``<pre>``), 4 the whole MIME message when MIMESupport allows it (2: always; 1: S/MIME only);
  RTF (3) is never offered.  ``EstimatedDataSize`` is the size of the whole body in the chosen
  form; ``TruncationSize`` cuts at a character boundary (UTF-8 octets), and ``Truncated`` says
  so; with ``AllOrNone`` a body that does not fit is sent without ``Data``.
- Attachments are the leaves that are not the body shown: each has a ``FileReference`` the
  caller makes (ItemOperations fetches it), a decoded ``DisplayName`` (RFC 2047 and 2231), an
  estimated decoded size, and ``IsInline`` with its ``ContentId`` for images the HTML shows.
- Flags: ``\\Seen`` is ``Read``, ``\\Flagged`` a follow-up ``Flag`` (an empty ``Flag`` when not
  flagged, so a phone clears its own), keywords are ``Categories`` (Thunderbird's ``$label1``
  to ``$label5`` by their names; other ``$`` keywords, the system's, are not categories).
- Never raises for any stored message: a part that cannot be decoded gives empty text.
"""

from __future__ import annotations

import hashlib
import re
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from typing import Callable, Optional
from urllib.parse import unquote

from formats import mime

from .itip import calendar_part
from .wbxml import qname as q

PLAIN, HTML, RTF, MIME = 1, 2, 3, 4
#: Thunderbird's default tags, shown as the categories a phone knows by name
LABELS = {"$label1": "Important", "$label2": "Work", "$label3": "Personal", "$label4": "To Do", "$label5": "Later"}
CATEGORY_KEYWORDS = {name: kw for kw, name in LABELS.items()}
_PREFIX = re.compile(r"^\s*((re|fw|fwd|aw|wg|sv|vs|antw)(\[\d+\])?\s*:\s*)+", re.I)


def _add(parent, page: str, name: str, text=None):
    el = ET.SubElement(parent, q(page, name))
    if text is not None:
        el.text = text
    return el


@dataclass(frozen=True)
class BodyPreference:
    """One ``AirSyncBase:BodyPreference`` of a request."""
    type: int
    truncation: Optional[int] = None
    all_or_none: bool = False
    preview: int = 0  # characters of AirSyncBase:Preview asked for (0: none; at most 255)


def choose(prefs, mime_support: int = 0, smime: bool = False) -> BodyPreference:
    """The first preference this server can honour; plain text when none can (or none given)."""
    for pref in prefs or ():
        if pref.type in (PLAIN, HTML):
            return pref
        if pref.type == MIME and (mime_support == 2 or (mime_support == 1 and smime)):
            return pref
    return BodyPreference(PLAIN)


# -- the message's parts -------------------------------------------------------------------------

def _leaves(structure: dict, path: tuple = ()):
    """``(IMAP section path, part)`` of every leaf, depth first; an attached message is one leaf."""
    parts = structure.get("parts")
    if parts:
        for i, part in enumerate(parts, 1):
            yield from _leaves(part, path + (i,))
    else:
        yield (path or (1,)), structure


def _is_attachment(part: dict) -> bool:
    disposition = part.get("disposition")
    return bool(disposition and disposition[0] == "attachment")


def text_parts(structure: dict) -> dict:
    """``{"plain": part, "html": part}``: the first of each kind that is not an attachment,
    outside attached messages."""
    found = {}
    for _path, part in _leaves(structure):
        if part.get("type") == "text" and part.get("subtype") in ("plain", "html") and not _is_attachment(part):
            found.setdefault(part["subtype"], part)
    return found


def is_smime(structure: dict) -> bool:
    ctype = (structure.get("type"), structure.get("subtype"))
    if ctype == ("multipart", "signed"):
        return True
    return ctype[0] == "application" and ctype[1] in ("pkcs7-mime", "x-pkcs7-mime")


def message_class(structure: dict) -> str:
    ctype = (structure.get("type"), structure.get("subtype"))
    if ctype == ("multipart", "signed"):
        return "IPM.Note.SMIME.MultipartSigned"
    if is_smime(structure):
        return "IPM.Note.SMIME"
    return "IPM.Note"


# -- the body ---------------------------------------------------------------------------------

def body_text(raw: bytes, structure: dict, kind: int) -> tuple:
    """``(text, native type)`` of the message as plain text (``PLAIN``) or HTML (``HTML``)."""
    parts = text_parts(structure)
    native = HTML if "html" in parts and "plain" not in parts else PLAIN if parts else MIME
    if kind == HTML:
        if "html" in parts:
            return mime.part_text(raw, parts["html"]), native
        text = mime.part_text(raw, parts["plain"]) if "plain" in parts else ""
        return "<html><body><pre>" + _escape(text) + "</pre></body></html>", native
    if "plain" in parts:
        return mime.part_text(raw, parts["plain"]), native
    if "html" in parts:
        return mime.html_to_text(mime.part_text(raw, parts["html"])), native
    return "", native


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def truncate(data: bytes, size: Optional[int]) -> tuple:
    """``(data, truncated)``: at most ``size`` octets, not cutting a UTF-8 character."""
    if size is None or len(data) <= size:
        return data, False
    cut = max(0, size)
    while cut > 0 and (data[cut] & 0xC0) == 0x80:
        cut -= 1
    return data[:cut], True


def body(raw: bytes, structure: dict, pref: BodyPreference):
    """``(AirSyncBase:Body element, native body type)`` in the form ``pref`` asks for."""
    if pref.type == MIME:
        # the message octet for octet: OPAQUE (bytes), as a string would lose 8-bit text in
        # another charset and cannot hold a NUL
        full = raw
        native = body_text(raw, structure, PLAIN)[1]
        text, truncated = truncate(full, pref.truncation)
    else:
        content, native = body_text(raw, structure, pref.type)
        full = content.encode("utf-8")
        data, truncated = truncate(full, pref.truncation)
        text = data.decode("utf-8", "replace")
    el = ET.Element(q("AirSyncBase", "Body"))
    _add(el, "AirSyncBase", "Type", str(pref.type))
    _add(el, "AirSyncBase", "EstimatedDataSize", str(len(full)))
    _add(el, "AirSyncBase", "Truncated", "1" if truncated else "0")
    if not (truncated and pref.all_or_none):
        _add(el, "AirSyncBase", "Data", text)
    if pref.preview:
        _add(el, "AirSyncBase", "Preview", mime.preview(raw, structure)[:min(pref.preview, 255)])
    return el, native


# -- attachments -----------------------------------------------------------------------------

def _param(params, name: str) -> Optional[str]:
    for key, value in params or ():
        if key.lower() == name:
            return value
    return None


def filename(part: dict) -> Optional[str]:
    """The part's file name: Content-Disposition ``filename``, else Content-Type ``name``,
    RFC 2231 (``utf-8''%XX``, as formats/mime keeps it) and RFC 2047 decoded."""
    disposition = part.get("disposition")
    dparams = disposition[1] if disposition else None
    for params, key in ((dparams, "filename*"), (part.get("params"), "name*")):
        extended = _param(params, key)  # RFC 2231 §4: charset'language'%XX, as formats/mime keeps it
        if extended:
            charset, _lang, rest = (extended.split("'", 2) + ["", ""])[:3]
            try:
                return unquote(rest, encoding=charset or "utf-8", errors="replace")
            except LookupError:
                return unquote(rest, errors="replace")
    name = _param(dparams, "filename") or _param(part.get("params"), "name")
    return mime.decode_header_value(name) if name else None


def attachments(structure: dict, file_reference: Callable[[str], str]):
    """The ``AirSyncBase:Attachments`` element, or None without attachments.  The body's own
    text parts are not attachments; an attached message is one."""
    shown = {id(p) for p in text_parts(structure).values()}
    el = None
    for path, part in _leaves(structure):
        if id(part) in shown or part.get("type") == "multipart":
            continue
        name = filename(part)
        inline_image = part.get("type") == "image" and part.get("id") and not _is_attachment(part)
        if part.get("type") == "text" and not name and not _is_attachment(part):
            continue  # an alternative text the body does not show: not a file
        if el is None:
            el = ET.Element(q("AirSyncBase", "Attachments"))
        att = _add(el, "AirSyncBase", "Attachment")
        section = ".".join(str(n) for n in path)
        if not name:
            name = "message.eml" if part.get("type") == "message" else f"part-{section}"
        _add(att, "AirSyncBase", "DisplayName", name)
        _add(att, "AirSyncBase", "FileReference", file_reference(section))
        _add(att, "AirSyncBase", "Method", "5" if part.get("type") == "message" else "1")
        size = int(part.get("size") or 0)
        if (part.get("encoding") or "").upper() == "BASE64":
            size = size * 3 // 4
        _add(att, "AirSyncBase", "EstimatedDataSize", str(size))
        if part.get("id"):
            _add(att, "AirSyncBase", "ContentId", part["id"].strip().strip("<>"))
        if inline_image:
            _add(att, "AirSyncBase", "IsInline", "1")
    return el


# -- addresses and headers ----------------------------------------------------------------------

def _address(addr) -> Optional[str]:
    name, _adl, mailbox, host = (list(addr) + [None] * 4)[:4]
    if not mailbox:
        return None
    email = f"{mailbox}@{host}" if host else mailbox
    if name:
        display = mime.decode_header_value(name).replace("\\", "").replace('"', "'")
        return f'"{display}" <{email}>'
    return email


def addresses(lst) -> str:
    return ", ".join(a for a in (_address(x) for x in lst or ()) if a)


def display_names(lst) -> str:
    out = []
    for addr in lst or ():
        name, _adl, mailbox, host = (list(addr) + [None] * 4)[:4]
        if name:
            out.append(mime.decode_header_value(name))
        elif mailbox:
            out.append(f"{mailbox}@{host}" if host else mailbox)
    return "; ".join(out)


def importance(raw: bytes) -> str:
    """0 low, 1 normal, 2 high, from ``Importance`` or ``X-Priority``."""
    header = raw[:64 * 1024]
    value = (mime.header_value(header, "importance") or "").strip().lower()
    if value in ("high", "low"):
        return "2" if value == "high" else "0"
    prio = (mime.header_value(header, "x-priority") or "").strip()[:1]
    return "2" if prio in ("1", "2") else "0" if prio in ("4", "5") else "1"


def thread_topic(subject: str) -> str:
    return _PREFIX.sub("", subject or "")


def utc(ts: int) -> str:
    """[MS-ASDTYPE] 2.3: ``2026-12-06T01:00:00.000Z``."""
    return time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(ts))


def categories(flags) -> list:
    out = []
    for f in sorted(flags):
        if f in LABELS:
            out.append(LABELS[f])
        elif not f.startswith(("\\", "$")):
            out.append(f)
    return out


def keyword_of(category: str) -> str:
    """The keyword a category a phone sets is stored as (the inverse of :func:`categories`)."""
    return CATEGORY_KEYWORDS.get(category, category.replace(" ", "_"))


_MSGID = re.compile(r"<([^<>\s]+)>")


def conversation_id(raw: bytes) -> bytes:
    """``Email2:ConversationId``: 16 octets naming the thread, from its root Message-ID: the
    first of References (each reply repeats its parent's), else In-Reply-To, else the
    message's own, as IMAP's THREADID."""
    header = raw[:64 * 1024]
    for name in ("references", "in-reply-to", "message-id"):
        found = _MSGID.search(mime.header_value(header, name) or "")
        if found:
            return hashlib.md5(found.group(1).encode("utf-8", "replace")).digest()
    return hashlib.md5(raw[:4096]).digest()


# -- the whole item ----------------------------------------------------------------------------

def application_data(envelope, structure: dict, raw: bytes, flags, internaldate: int, pref: BodyPreference,
                     file_reference: Callable[[str], str], version: float = 16.1):
    """The ``AirSync:ApplicationData`` element of one message."""
    env = list(envelope or [None] * 10) + [None] * 10
    subject = mime.decode_header_value(env[1] or "")
    data = ET.Element(q("AirSync", "ApplicationData"))
    for name, value in (("To", addresses(env[5])), ("Cc", addresses(env[6])), ("From", addresses(env[2]))):
        if value:
            _add(data, "Email", name, value)
    _add(data, "Email", "Subject", subject)
    if env[4] and env[4] != env[2]:
        _add(data, "Email", "ReplyTo", addresses(env[4]))
    _add(data, "Email", "DateReceived", utc(internaldate))
    _add(data, "Email", "DisplayTo", display_names(env[5]))
    _add(data, "Email", "ThreadTopic", thread_topic(subject))
    _add(data, "Email", "Importance", importance(raw))
    _add(data, "Email", "Read", "1" if "\\Seen" in flags else "0")
    files = attachments(structure, file_reference)
    if files is not None:
        data.append(files)
    body_el, native = body(raw, structure, pref)
    data.append(body_el)
    _add(data, "Email", "MessageClass", message_class(structure))
    _add(data, "Email", "InternetCPID", "65001")
    flag = _add(data, "Email", "Flag")
    if "\\Flagged" in flags:
        _add(flag, "Email", "Status", "2")
        _add(flag, "Email", "FlagType", "Flag for follow up")
    _add(data, "Email", "ContentClass", "urn:content-classes:message")
    _add(data, "AirSyncBase", "NativeBodyType", str(native if native != MIME else PLAIN))
    if version >= 14.0:
        _add(data, "Email2", "ConversationId", conversation_id(raw))
    names = categories(flags)
    if names:
        cats = _add(data, "Email", "Categories")
        for name in names:
            _add(cats, "Email", "Category", name)
    if calendar_part(structure) is not None:  # an invitation, cancellation or reply
        from . import meeting  # iCalendar's parser: loaded by the first invitation, not at start-up
        meeting.annotate(data, raw, structure, version)
    return data

