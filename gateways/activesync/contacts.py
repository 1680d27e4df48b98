"""A contact as ActiveSync carries it ([MS-ASCNTC]: the ``Contacts`` and ``Contacts2`` code
pages, the note as ``AirSyncBase:Body``) and as the store keeps it (the raw vCard text of an
address book item, store/dav.py): one conversion each way, pure, parsed and written with
vobject.

    to_eas(stored vCard, ...)                  -> AirSync:ApplicationData
    from_eas(ApplicationData, stored vCard, ...) -> the new vCard text, merged onto the stored one

The mapping (vCard property <- what is also read):
- ``N``: LastName, FirstName, MiddleName, Title (prefix), Suffix.  ``FN`` is the display name;
  ``FileAs`` (Outlook's filing name, often "Last, First") is ``FN`` unless it differs, then it
  is kept in ``X-EAS-FILEAS`` (so a CardDAV client never shows "Smith, John" as the name).  A
  changed ``N`` (or a new contact) recomputes ``FN`` from the name parts ("Dr. John Q. Smith
  Jr."), else from FileAs, the company or the first e-mail address; ``N`` and ``FN`` are always
  written.
- ``ORG``: CompanyName; Department (its second part).  ``TITLE``: JobTitle.  ``NICKNAME``,
  ``URL`` (WebPage, the first one), ``NOTE`` (the body), ``CATEGORIES``, ``PHOTO`` (Picture).
- ``EMAIL``: Email1-3Address are the first three in order, types and groups kept; an address
  sent as ``"Name" <addr>`` is stored as ``addr``.
- ``TEL`` by type: WORK (Business, Business2), HOME (Home, Home2), CELL/IPHONE (Mobile), WORK+FAX
  (BusinessFax), other FAX (HomeFax), CAR, PAGER, X-RADIO, X-ASSISTANT (AssistantPhoneNumber),
  MAIN (CompanyMainPhone), X-MMS (MMS); a number without a known type fills a free Home, Home2
  or Business2.  Numbers beyond the slots are not sent and stay as they are.
- ``ADR`` WORK, HOME, and the first other: Business/Home/OtherAddress Street, City, State,
  PostalCode, Country (the post office box and extended address stay).
- Birthday (``BDAY``), Anniversary (``ANNIVERSARY`` in vCard 4, else ``X-ANNIVERSARY``; also
  read: Apple's ``X-ABDATE`` labelled Anniversary, ``X-MS-ANNIVERSARY``, Evolution's and KDE's):
  dates only.  Sent as noon UTC of the date (``1980-05-01T12:00:00.000Z``: the same date on a
  phone that shows it in any zone from UTC-11 to UTC+11, and on one that cuts the time off).
  Received, a time is the date of the nearest UTC midnight: phones send the user's local
  midnight in UTC, ``1980-04-30T22:00:00.000Z`` from UTC+2 is May 1st, ``1980-05-01T05:00Z``
  from UTC-5 too; 12:00 itself counts for its own day.
- Spouse, ManagerName, AssistantName (``X-SPOUSE``, ``X-MANAGER``, ``X-ASSISTANT``; also read:
  Apple's ``X-ABRELATEDNAMES`` by label, vCard 4 ``RELATED;TYPE=spouse``, Outlook's ``X-MS-*``,
  Evolution's and KDE's), Children (``X-CHILD``, one per child), OfficeLocation
  (``X-EAS-OFFICE``), the Yomi names (Apple's ``X-PHONETIC-FIRST-NAME``, ``-LAST-NAME``,
  ``-ORG``), IMAddress1-3 (``IMPP`` and the ``X-JABBER``/``X-AIM``/... family; an IMPP URI is
  sent without its scheme, and keeps it when it comes back), CustomerId, GovernmentId,
  AccountName (``X-EAS-CUSTOMERID``, ``X-EAS-GOVERNMENTID``, ``X-EAS-ACCOUNTNAME``).

Invariants
- A merge changes only the properties of the fields it is given: everything else of the stored
  card (a fourth number or address, X- properties, Apple's ``itemN.`` groups and labels, UID,
  PRODID, VERSION) is written back as it was; a field sent back unchanged leaves its property
  as it was (groups, types, an IMPP scheme).
- Ghosting ([MS-ASCMD] 2.2.3.168 Supported): a field absent from the data is removed only when
  the client listed no ``Supported`` (``supported`` None) or listed it there; a client that
  does not know a field never deletes it.
- ``PHOTO``: not sent when bigger than ``max_picture`` octets (and then never deleted by a
  client that did not see it); a Picture bigger than that is refused (the stored one stays);
  an empty Picture deletes it.
- Unreadable text or data raises :class:`~gateways.activesync.pim.ConversionError`; nothing
  else escapes.  Pure and synchronous: callers run it in the CPU pool for many items.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import email.utils
import io
import logging
import re
import xml.etree.ElementTree as ET
from typing import Optional

import vobject

from formats import mime

from .mailitem import HTML, BodyPreference, truncate
from .pim import ConversionError
from .wbxml import qname as q

log = logging.getLogger("haven.activesync")

C, C2, BASE = "Contacts", "Contacts2", "AirSyncBase"
PRODID = "-//Haven//ActiveSync//EN"
MAX_PICTURE = 48 * 1024


def _qn(name: str) -> str:
    page, _, tag = name.rpartition(":")
    return q(page or C, tag)


# -- the fields ------------------------------------------------------------------------------

#: N parts by EAS tag
N_PARTS = (("LastName", "family"), ("FirstName", "given"), ("MiddleName", "additional"), ("Title", "prefix"),
           ("Suffix", "suffix"))
ADR_PARTS = (("Street", "street"), ("City", "city"), ("State", "region"), ("PostalCode", "code"),
             ("Country", "country"))
ADDRESSES = ("Business", "Home", "Other")

#: single-valued text fields: EAS name, vCard names read (the first is written), Apple label,
#: vCard 4 RELATED type
SIMPLE = (
    ("JobTitle", ("TITLE",), None, None),
    ("Contacts2:NickName", ("NICKNAME",), None, None),
    ("WebPage", ("URL",), None, None),
    ("OfficeLocation", ("X-EAS-OFFICE", "X-EVOLUTION-OFFICE", "X-KADDRESSBOOK-X-OFFICE"), None, None),
    ("Spouse", ("X-SPOUSE", "X-MS-SPOUSE", "X-EVOLUTION-SPOUSE", "X-KADDRESSBOOK-X-SPOUSESNAME"), "Spouse",
     "spouse"),
    ("Contacts2:ManagerName", ("X-MANAGER", "X-MS-MANAGER", "X-EVOLUTION-MANAGER", "X-KADDRESSBOOK-X-MANAGERSNAME"),
     "Manager", "manager"),
    ("AssistantName", ("X-ASSISTANT", "X-MS-ASSISTANT", "X-EVOLUTION-ASSISTANT",
                       "X-KADDRESSBOOK-X-ASSISTANTSNAME"), "Assistant", "assistant"),
    ("YomiFirstName", ("X-PHONETIC-FIRST-NAME",), None, None),
    ("YomiLastName", ("X-PHONETIC-LAST-NAME",), None, None),
    ("YomiCompanyName", ("X-PHONETIC-ORG",), None, None),
    ("Contacts2:CustomerId", ("X-EAS-CUSTOMERID",), None, None),
    ("Contacts2:GovernmentId", ("X-EAS-GOVERNMENTID",), None, None),
    ("Contacts2:AccountName", ("X-EAS-ACCOUNTNAME",), None, None),
)
#: date fields: EAS name, vCard names read (the first is written; vCard 4: ANNIVERSARY), Apple label
DATES = (("Birthday", ("BDAY",), None),
         ("Anniversary", ("X-ANNIVERSARY", "ANNIVERSARY", "X-MS-ANNIVERSARY", "X-EVOLUTION-ANNIVERSARY",
                          "X-KADDRESSBOOK-X-ANNIVERSARY"), "Anniversary"))
#: phone slots: EAS name, the kind of number it holds, the TYPE of a new one
PHONES = (("BusinessPhoneNumber", "work", ("WORK", "VOICE")), ("Business2PhoneNumber", "work", ("WORK", "VOICE")),
          ("HomePhoneNumber", "home", ("HOME", "VOICE")), ("Home2PhoneNumber", "home", ("HOME", "VOICE")),
          ("MobilePhoneNumber", "cell", ("CELL", "VOICE")), ("BusinessFaxNumber", "workfax", ("WORK", "FAX")),
          ("HomeFaxNumber", "fax", ("HOME", "FAX")), ("CarPhoneNumber", "car", ("CAR",)),
          ("PagerNumber", "pager", ("PAGER",)), ("RadioPhoneNumber", "radio", ("X-RADIO",)),
          ("AssistantPhoneNumber", "assistant", ("X-ASSISTANT",)),
          ("Contacts2:CompanyMainPhone", "main", ("MAIN",)), ("Contacts2:MMS", "mms", ("X-MMS",)))
#: slots an untyped number may fill, in order
UNTYPED_PHONE_SLOTS = ("HomePhoneNumber", "Home2PhoneNumber", "Business2PhoneNumber")
EMAILS = ("Email1Address", "Email2Address", "Email3Address")
IMS = ("Contacts2:IMAddress", "Contacts2:IMAddress2", "Contacts2:IMAddress3")
#: properties that carry an instant messaging address, in the order they fill IMAddress1-3
IM_NAMES = ("IMPP", "X-JABBER", "X-AIM", "X-ICQ", "X-MSN", "X-YAHOO", "X-SKYPE", "X-SKYPE-USERNAME",
            "X-GOOGLE-TALK", "X-GTALK", "X-GADUGADU", "X-QQ", "X-MS-IMADDRESS")
FILEAS = "X-EAS-FILEAS"


# -- reading a vCard --------------------------------------------------------------------------

def parse(text: str):
    """The vobject component of a stored vCard; ConversionError when it is not one."""
    try:
        card = vobject.readOne(text)
    except Exception as e:  # vobject raises many kinds (ParseError, binascii, Unicode ...)
        raise ConversionError(f"unreadable vCard: {str(e)[:200]}") from None
    if card.name != "VCARD":
        raise ConversionError(f"a {card.name} is not a vCard")
    _keep_raw_text(card, text)
    for prop in card.getChildren():
        if getattr(prop, "singletonparams", None):  # vCard 2.1 "TEL;WORK;VOICE:": as TYPE params
            prop.params.setdefault("TYPE", []).extend(prop.singletonparams)
            prop.singletonparams = []
    return card


_UNESCAPED_COMMA = re.compile(r"(?<!\\)(?:\\\\)*,")


def _keep_raw_text(card, text: str) -> None:
    """vobject cuts a single text value at its first unescaped comma (a vCard 4 ``PHOTO:data:
    image/jpeg;base64,...``, Google's ``NOTE:a, b``): such a property keeps its raw text instead
    (``encoded``: written back as it came; :func:`_val` reads it)."""
    raw: dict = {}
    try:
        for line, number in vobject.base.getLogicalLines(io.StringIO(text)):
            parsed = vobject.base.textLineToContentLine(line, number)
            raw.setdefault(parsed.name.upper(), []).append(parsed)
    except Exception:
        return
    for name, props in card.contents.items():
        for prop, line in zip(props, raw.get(name.upper(), [])):
            if isinstance(prop.behavior, type) and issubclass(prop.behavior, vobject.vcard.VCardTextBehavior) \
                    and "ENCODING" not in line.params and isinstance(line.value, str) \
                    and _UNESCAPED_COMMA.search(line.value):
                prop.value, prop.encoded = line.value, True


def _val(prop):
    """A property's value, also of one kept raw by :func:`_keep_raw_text`."""
    if getattr(prop, "encoded", False) and isinstance(prop.value, str):
        return re.sub(r"\\([\\,;nN])", lambda m: "\n" if m.group(1) in "nN" else m.group(1), prop.value)
    return prop.value


def _set(prop, value) -> None:
    prop.encoded = False
    prop.value = value


def _props(card, name: str) -> list:
    return list(card.contents.get(name.lower(), []))


def _types(prop) -> set:
    out = set()
    for value in prop.params.get("TYPE", []):
        out.update(v.strip().lower() for v in str(value).split(",") if v.strip())
    return out


def _label(card, prop) -> Optional[str]:
    """Apple's label of a grouped property (``item1.X-ABLabel:_$!<Spouse>!$_`` -> "spouse")."""
    if not prop.group:
        return None
    for other in _props(card, "X-ABLABEL"):
        if other.group == prop.group:
            value = _str(_val(other))
            return (value[4:-4] if value.startswith("_$!<") and value.endswith(">!$_") else value).lower()
    return None


def _str(value) -> str:
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value)
    return str(value) if value is not None else ""


def _version(card) -> str:
    found = _props(card, "VERSION")
    return str(found[0].value) if found else "3.0"


def _find_simple(card, names, apple_label, related_type):
    for name in names:
        for prop in _props(card, name):
            return prop
    if apple_label:
        for prop in _props(card, "X-ABRELATEDNAMES") + _props(card, "X-ABDATE"):
            if _label(card, prop) == apple_label.lower():
                return prop
    if related_type:
        for prop in _props(card, "RELATED"):
            if related_type in _types(prop):
                return prop
    return None


def _phone_kind(types: set) -> Optional[str]:
    if "fax" in types:
        return "workfax" if "work" in types else "fax"
    for kind, marks in (("pager", {"pager"}), ("car", {"car"}), ("cell", {"cell", "iphone", "mobile"}),
                        ("radio", {"x-radio", "radio"}), ("assistant", {"x-assistant", "assistant"}),
                        ("main", {"main", "x-main", "x-company-main"}), ("mms", {"x-mms", "mms"}),
                        ("work", {"work"}), ("home", {"home"})):
        if types & marks:
            return kind
    return None


def _phone_slots(card) -> dict:
    """EAS phone name -> its TEL property."""
    slots, untyped = {}, []
    for prop in _props(card, "TEL"):
        kind = _phone_kind(_types(prop))
        if kind is None:
            untyped.append(prop)
            continue
        slot = next((name for name, k, _ in PHONES if k == kind and name not in slots), None)
        if slot is not None:
            slots[slot] = prop
    for prop in untyped:
        slot = next((name for name in UNTYPED_PHONE_SLOTS if name not in slots), None)
        if slot is not None:
            slots[slot] = prop
    return slots


def _address_slots(card) -> dict:
    slots = {}
    for prop in _props(card, "ADR"):
        types = _types(prop)
        kind = "Business" if "work" in types else "Home" if "home" in types else "Other"
        if kind not in slots:
            slots[kind] = prop
    return slots


def _ims(card) -> list:
    return [prop for name in IM_NAMES for prop in _props(card, name)]


def _im_value(prop) -> str:
    value = _str(_val(prop)).strip()
    if prop.name == "IMPP":
        scheme, colon, rest = value.partition(":")
        if colon and re.fullmatch(r"[A-Za-z][A-Za-z0-9+.-]*", scheme):
            return rest
    return value


def _children(card) -> list:
    found = _props(card, "X-CHILD")
    found += [p for p in _props(card, "X-ABRELATEDNAMES") if _label(card, p) == "child"]
    found += [p for p in _props(card, "RELATED") if "child" in _types(p)]
    return found


def _categories(card) -> list:
    out = []
    for prop in _props(card, "CATEGORIES"):
        values = _val(prop) if isinstance(_val(prop), list) else _str(_val(prop)).split(",")
        out += [v.strip() for v in values if v and v.strip()]
    return out


def _photo(card) -> Optional[bytes]:
    for prop in _props(card, "PHOTO"):
        value = _val(prop)
        if isinstance(value, bytes):
            return value
        value = _str(value)
        if value.startswith("data:") and ";base64," in value:
            try:
                return base64.b64decode(value.partition(";base64,")[2], validate=False)
            except (binascii.Error, ValueError):
                return None
        return None  # a URI to fetch: not ours to send
    return None


# -- dates ----------------------------------------------------------------------------------

_DATE = re.compile(r"^(\d{4}|--)-?(\d{2})-?(\d{2})")
#: the year Outlook and Apple use for a date without one
NO_YEAR = "1604"


def vcard_date(value: str) -> Optional[datetime.date]:
    """The date of a vCard date value (``1980-05-01``, ``19800501``, ``--0501``, with or
    without a time), None when there is none."""
    m = _DATE.match((value or "").strip())
    if not m:
        return None
    year = NO_YEAR if m.group(1) == "--" else m.group(1)
    try:
        return datetime.date(int(year), int(m.group(2)), int(m.group(3)))
    except ValueError:
        return None


def eas_date(day: datetime.date) -> str:
    """The EAS datetime of a date: noon UTC (see the module's docstring)."""
    return f"{day.year:04d}-{day.month:02d}-{day.day:02d}T12:00:00.000Z"


_EAS_TIME = re.compile(r"^(\d{4})-(\d{2})-(\d{2})(?:[T ](\d{2}):(\d{2})(?::(\d{2}))?)?")


def date_of(value: str) -> Optional[datetime.date]:
    """The date a phone's datetime means: the date of the nearest UTC midnight (a local
    midnight east of UTC arrives the evening before), 12:00 counting for its own day."""
    m = _EAS_TIME.match((value or "").strip())
    if not m:
        return None
    try:
        day = datetime.date(int(m.group(1)), int(m.group(2)), int(m.group(3)))
    except ValueError:
        return None
    hms = tuple(int(g or 0) for g in m.group(4, 5, 6))
    return day + datetime.timedelta(days=1) if hms > (12, 0, 0) else day


# -- vCard -> EAS ------------------------------------------------------------------------------

def read_fields(card, max_picture: int = MAX_PICTURE) -> dict:
    """EAS field name (``"FirstName"``, ``"Contacts2:NickName"``) -> value: a str, a list (Categories,
    Children), bytes (Picture); only the fields the card has."""
    out: dict = {}

    def put(name, value):
        if value not in (None, "", []):
            out[name] = value
    names = _props(card, "N")
    if names:
        for tag, attr in N_PARTS:
            put(tag, _str(getattr(names[0].value, attr, "")).strip())
    fn = _props(card, "FN")
    put("FileAs", _str(_val(_props(card, FILEAS)[0])) if _props(card, FILEAS) else
        (_str(_val(fn[0])) if fn else ""))
    org = _props(card, "ORG")
    if org:
        parts = org[0].value if isinstance(org[0].value, list) else [_str(_val(org[0]))]
        put("CompanyName", parts[0] if parts else "")
        put("Department", parts[1] if len(parts) > 1 else "")
    for tag, names_, label, related in SIMPLE:
        prop = _find_simple(card, names_, label, related)
        if prop is not None:
            value = _str(_val(prop))
            put(tag, value.replace("\\:", ":") if tag == "WebPage" else value)
    for tag, names_, label in DATES:
        prop = _find_simple(card, names_, label, None)
        day = vcard_date(_str(_val(prop))) if prop is not None else None
        if day is not None:
            out[tag] = eas_date(day)
    for tag, prop in zip(EMAILS, _props(card, "EMAIL")):
        put(tag, _str(_val(prop)).strip())
    for tag, prop in _phone_slots(card).items():
        put(tag, _str(_val(prop)).strip())
    for kind, prop in _address_slots(card).items():
        for tag, attr in ADR_PARTS:
            put(f"{kind}Address{tag}", _str(getattr(prop.value, attr, "")).strip())
    for tag, prop in zip(IMS, _ims(card)):
        put(tag, _im_value(prop))
    put("Categories", _categories(card))
    put("Children", [_str(_val(p)) for p in _children(card) if _str(_val(p))])
    notes = _props(card, "NOTE")
    put("Body", _str(_val(notes[0])) if notes else "")
    photo = _photo(card)
    if photo and len(photo) <= max_picture:
        out["Picture"] = photo
    return out


#: the order of the elements in ApplicationData
ORDER = (["FileAs"] + [t for t, _ in N_PARTS] + ["CompanyName", "Department"] + [s[0] for s in SIMPLE]
         + [d[0] for d in DATES] + list(EMAILS) + [p[0] for p in PHONES]
         + [f"{kind}Address{tag}" for kind in ADDRESSES for tag, _ in ADR_PARTS] + list(IMS)
         + ["Categories", "Children", "Picture"])


def to_eas(text: str, version: tuple, body: Optional[BodyPreference] = None,
           max_picture: int = MAX_PICTURE) -> ET.Element:
    """The ``AirSync:ApplicationData`` of a stored vCard; raises ConversionError."""
    fields = read_fields(parse(text), max_picture)
    data = ET.Element(q("AirSync", "ApplicationData"))
    for name in ORDER:
        value = fields.get(name)
        if value is None:
            continue
        if name in ("Categories", "Children"):
            holder = ET.SubElement(data, _qn(name))
            for item in value:
                ET.SubElement(holder, _qn("Category" if name == "Categories" else "Child")).text = item
        elif name == "Picture":
            ET.SubElement(data, _qn(name)).text = base64.b64encode(value).decode("ascii")
        else:
            ET.SubElement(data, _qn(name)).text = value
    note = fields.get("Body")
    if note is not None:
        data.append(_body(note, version, body))
    return data


def _body(note: str, version: tuple, pref: Optional[BodyPreference]) -> ET.Element:
    if version < (12, 0):
        el = ET.Element(q(C, "Body"))
        el.text = note
        return el
    pref = pref or BodyPreference(1)
    kind = HTML if pref.type == HTML else 1
    content = note if kind == 1 else "<html><body><pre>" + (
        note.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")) + "</pre></body></html>"
    full = content.encode("utf-8")
    cut, truncated = truncate(full, pref.truncation)
    el = ET.Element(q(BASE, "Body"))
    ET.SubElement(el, q(BASE, "Type")).text = str(kind)
    ET.SubElement(el, q(BASE, "EstimatedDataSize")).text = str(len(full))
    ET.SubElement(el, q(BASE, "Truncated")).text = "1" if truncated else "0"
    if not (truncated and pref.all_or_none):
        ET.SubElement(el, q(BASE, "Data")).text = cut.decode("utf-8", "replace")
    return el


# -- EAS -> vCard ------------------------------------------------------------------------------

def _given(data) -> dict:
    """EAS field name -> value of the ApplicationData: str ("" for an empty element), list
    (Categories, Children), or for Body the note's text (None: sent truncated, keep ours)."""
    out: dict = {}
    for child in data:
        page, _, tag = child.tag[1:].partition("}")
        if page == BASE and tag == "Body":
            out["Body"] = _note(child)
            continue
        if page == C and tag == "Body":
            out["Body"] = _text(child)
            continue
        if page not in (C, C2):
            continue
        name = tag if page == C else f"{C2}:{tag}"
        if tag in ("Categories", "Children"):
            out[name] = [_text(c) for c in child if _text(c).strip()]
        else:
            out[name] = _text(child)
    return out


def _text(el) -> str:
    value = el.text
    if value is None:
        return ""
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


def _note(body) -> Optional[str]:
    if (_text(body.find(q(BASE, "Truncated"))) if body.find(q(BASE, "Truncated")) is not None else "") == "1":
        return None
    data = body.find(q(BASE, "Data"))
    value = _text(data) if data is not None else ""
    if (_text(body.find(q(BASE, "Type"))) if body.find(q(BASE, "Type")) is not None else "1") == str(HTML):
        value = mime.html_to_text(value)
    return value.replace("\r\n", "\n")


def _new_card(uid: str):
    card = vobject.vCard()
    card.add("version").value = "3.0"
    card.add("prodid").value = PRODID
    card.add("uid").value = uid
    return card


def _add(card, name: str, value, types=(), group=None):
    prop = card.add(name.lower())
    prop.value = value
    if types:
        prop.params["TYPE"] = list(types)
    if group:
        prop.group = group
    return prop


def _remove(card, prop) -> None:
    card.remove(prop)
    if prop.group:  # Apple's label of a grouped property goes with it
        for other in _props(card, "X-ABLABEL") + _props(card, "X-ABADR"):
            if other.group == prop.group and not _group_used(card, prop.group):
                card.remove(other)


def _group_used(card, group: str) -> bool:
    return any(p.group == group and p.name not in ("X-ABLABEL", "X-ABADR") for p in card.getChildren())


class _Merge:
    """One ApplicationData applied to a card."""

    def __init__(self, card, given: dict, supported: Optional[set]):
        self.card, self.given, self.supported = card, given, supported

    def removable(self, name: str) -> bool:
        if self.supported is None:
            return True
        if name == "Body":
            return q(BASE, "Body") in self.supported or q(C, "Body") in self.supported
        return _qn(name) in self.supported

    def wanted(self, name: str):
        """(change it?, the new value or "" to remove)."""
        if name in self.given:
            return True, self.given[name]
        return self.removable(name), ""

    def text_prop(self, name: str, prop, new_name: str, types=(), convert=None, same=None):
        """Set or remove the single property ``prop`` (None: there is none) of field ``name``."""
        change, value = self.wanted(name)
        if not change:
            return
        value = (value or "").strip()
        if prop is None:
            if value:
                _add(self.card, new_name, convert(value) if convert else value, types)
            return
        if not value:
            _remove(self.card, prop)
        elif (same or (lambda p, v: _str(_val(p)).strip() == v))(prop, value):
            return
        else:
            _set(prop, convert(value) if convert else value)


def from_eas(data: ET.Element, stored: Optional[str], version: tuple, uid: str, supported: Optional[set] = None,
             max_picture: int = MAX_PICTURE) -> str:
    """The new vCard text: ``data`` (AirSync:ApplicationData) merged onto ``stored`` (None: a
    new contact of UID ``uid``).  ``supported``: the ``{Contacts}Name`` qnames of the client's
    Supported list, None when it sent none.  Raises ConversionError."""
    if data is None:
        raise ConversionError("no ApplicationData")
    card = parse(stored) if stored else _new_card(uid)
    m = _Merge(card, _given(data), supported)
    names_changed = _merge_names(m)
    _merge_org(m)
    for tag, names, label, related in SIMPLE:
        prop = _find_simple(card, names, label, related)
        m.text_prop(tag, prop, names[0], same=_same_url if tag == "WebPage" else None)
    for tag, names, label in DATES:
        prop = _find_simple(card, names, label, None)
        new_name = "ANNIVERSARY" if tag == "Anniversary" and _version(card) == "4.0" else names[0]
        m.text_prop(tag, prop, new_name, convert=_stored_date(prop),
                    same=lambda p, v: vcard_date(_str(_val(p))) == date_of(v))
    _merge_emails(m)
    _merge_phones(m)
    _merge_addresses(m)
    _merge_ims(m)
    _merge_lists(m)
    _merge_note(m)
    _merge_photo(m, max_picture)
    _merge_display_name(m, names_changed)
    try:
        return card.serialize()
    except Exception as e:
        raise ConversionError(f"the contact cannot be written as a vCard: {str(e)[:200]}") from None


def _same_url(prop, value: str) -> bool:
    return _str(_val(prop)).strip().replace("\\:", ":") == value


def _stored_date(prop):
    def convert(value: str) -> str:
        day = date_of(value)
        if day is None:
            raise ConversionError(f"not a date: {value[:40]!r}")
        compact = prop is not None and re.fullmatch(r"\d{8}", _str(_val(prop)).strip() or "")
        return day.strftime("%Y%m%d" if compact else "%Y-%m-%d")
    return convert


def _merge_names(m: _Merge) -> bool:
    card = m.card
    found = _props(card, "N")
    current = found[0].value if found else vobject.vcard.Name()
    parts = {attr: _str(getattr(current, attr, "")) for _, attr in N_PARTS}
    before = dict(parts)
    for tag, attr in N_PARTS:
        change, value = m.wanted(tag)
        if change and value.strip() != parts[attr].strip():
            parts[attr] = value.strip()
    if not found:
        _add(card, "N", vobject.vcard.Name(**parts))
        return parts != before or not any(parts.values())
    if parts != before:
        _set(found[0], vobject.vcard.Name(**parts))
        return True
    return False


def _trimmed(parts: list) -> list:
    parts = list(parts)
    while parts and not parts[-1]:
        parts.pop()
    return parts


def _merge_org(m: _Merge) -> None:
    found = _props(m.card, "ORG")
    parts = [_str(p) for p in found[0].value] if found and isinstance(found[0].value, list) else \
        ([_str(_val(found[0]))] if found else [])
    new = list(parts) + [""] * (2 - len(parts))
    for i, tag in enumerate(("CompanyName", "Department")):
        change, value = m.wanted(tag)
        if change:
            new[i] = value.strip()
    new = _trimmed(new)
    if new == _trimmed(parts):
        return
    if not any(new):
        if found:
            _remove(m.card, found[0])
    elif found:
        _set(found[0], new)
    else:
        _add(m.card, "ORG", new)


def _address_only(value: str) -> str:
    name, addr = email.utils.parseaddr(value)
    return addr if "@" in addr else value.strip()


def _merge_emails(m: _Merge) -> None:
    props = _props(m.card, "EMAIL")
    version = _version(m.card)
    for i, tag in enumerate(EMAILS):
        prop = props[i] if i < len(props) else None
        m.text_prop(tag, prop, "EMAIL", () if version == "4.0" else ("INTERNET",), convert=_address_only,
                    same=lambda p, v: _str(_val(p)).strip().lower() == _address_only(v).lower())


def _merge_phones(m: _Merge) -> None:
    slots = _phone_slots(m.card)
    for tag, _kind, types in PHONES:
        m.text_prop(tag, slots.get(tag), "TEL", types)


def _merge_addresses(m: _Merge) -> None:
    slots = _address_slots(m.card)
    for kind in ADDRESSES:
        prop = slots.get(kind)
        current = prop.value if prop is not None else vobject.vcard.Address()
        parts = {attr: _str(getattr(current, attr, "")) for attr in ("box", "extended", "street", "city", "region",
                                                                        "code", "country")}
        before = dict(parts)
        for tag, attr in ADR_PARTS:
            change, value = m.wanted(f"{kind}Address{tag}")
            if change and value.strip() != parts[attr].strip():
                parts[attr] = value.strip().replace("\r\n", "\n")
        if parts == before:
            continue
        if not any(parts.values()):
            if prop is not None:
                _remove(m.card, prop)
        elif prop is not None:
            _set(prop, vobject.vcard.Address(**parts))
        else:
            _add(m.card, "ADR", vobject.vcard.Address(**parts),
                 ({"Business": "WORK", "Home": "HOME"}.get(kind, "OTHER"),))


def _merge_ims(m: _Merge) -> None:
    props = _ims(m.card)
    for i, tag in enumerate(IMS):
        prop = props[i] if i < len(props) else None

        def convert(value, prop=prop):
            if prop is not None and prop.name == "IMPP":  # keeps the scheme it had
                scheme = _str(_val(prop)).partition(":")[0]
                return f"{scheme}:{value}" if ":" in _str(_val(prop)) else value
            return value if prop is not None else f"im:{value}"  # IMPP is a URI
        m.text_prop(tag, prop, "IMPP", convert=convert, same=lambda p, v: _im_value(p) == v)


def _merge_lists(m: _Merge) -> None:
    change, value = m.wanted("Categories")
    if change and list(value or []) != _categories(m.card):
        for prop in _props(m.card, "CATEGORIES"):
            _remove(m.card, prop)
        if value:
            _add(m.card, "CATEGORIES", list(value))
    change, value = m.wanted("Children")
    current = _children(m.card)
    if change and list(value or []) != [_str(_val(p)) for p in current]:
        for prop in current:
            _remove(m.card, prop)
        for child in value or []:
            _add(m.card, "X-CHILD", child)


def _merge_note(m: _Merge) -> None:
    if m.given.get("Body", "") is None:
        return  # a truncated body is not the note
    notes = _props(m.card, "NOTE")
    m.text_prop("Body", notes[0] if notes else None, "NOTE",
                same=lambda p, v: _str(_val(p)).replace("\r\n", "\n").strip() == v)


def _merge_photo(m: _Merge, max_picture: int) -> None:
    card = m.card
    current = _props(card, "PHOTO")
    if "Picture" in m.given:
        value = m.given["Picture"].strip()
        if not value:
            for prop in current:
                _remove(card, prop)
            return
        try:
            raw = base64.b64decode(value, validate=False)
        except (binascii.Error, ValueError):
            log.info("activesync: a contact's Picture is not base64; the stored one stays")
            return
        if len(raw) > max_picture:
            log.info("activesync: a contact's Picture of %d octets is over the limit of %d; the stored one stays",
                     len(raw), max_picture)
            return
        if _photo(card) == raw:
            return
        for prop in current:
            _remove(card, prop)
        kind = "PNG" if raw.startswith(b"\x89PNG") else "GIF" if raw.startswith(b"GIF8") else "JPEG"
        if _version(card) == "4.0":
            uri = _add(card, "PHOTO", f"data:image/{kind.lower()};base64," + base64.b64encode(raw).decode("ascii"))
            uri.encoded = True  # a URI: written as it is, not escaped as text
        else:
            prop = _add(card, "PHOTO", raw)
            prop.params["ENCODING"] = ["b"]
            prop.params["TYPE"] = [kind]
        return
    photo = _photo(card)
    if current and m.removable("Picture") and photo is not None and len(photo) <= max_picture:
        for prop in current:  # the client saw it and deleted it; one too big to send stays
            _remove(card, prop)


def _merge_display_name(m: _Merge, names_changed: bool) -> None:
    card = m.card
    fn = _props(card, "FN")
    fileas_props = _props(card, FILEAS)
    change, fileas = m.wanted("FileAs")
    fileas = (fileas or "").strip() if change else (_str(_val(fileas_props[0])) if fileas_props else None)
    if names_changed or not fn or not _str(_val(fn[0])).strip():
        name = _props(card, "N")[0].value
        display = " ".join(p for p in (_str(name.prefix), _str(name.given), _str(name.additional),
                                        _str(name.family), _str(name.suffix)) if p.strip())
        if not display:
            org = _props(card, "ORG")
            emails = _props(card, "EMAIL")
            display = fileas or (_str(org[0].value[0]) if org and isinstance(org[0].value, list) and org[0].value
                                 else "") or (_str(_val(emails[0])) if emails else "")
        if fn:
            if _str(_val(fn[0])) != display:
                _set(fn[0], display)
        else:
            _add(card, "FN", display)
    display = _str(_val(_props(card, "FN")[0]))
    if fileas and fileas != display:
        if fileas_props:
            _set(fileas_props[0], fileas)
        else:
            _add(card, FILEAS, fileas)
    elif fileas_props and (change or fileas == display):
        for prop in fileas_props:
            _remove(card, prop)
