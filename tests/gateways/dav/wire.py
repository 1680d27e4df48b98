"""Raw HTTP for the CalDAV/CardDAV tests: one http.client connection per request, Basic auth,
request bodies as literal XML, and a small multistatus reader.

Hrefs in answers are compared unquoted (Haven spells the principal ``/dav/user%40host/``; both
spellings name the same resource)."""

from __future__ import annotations

import base64
import http.client
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from urllib.parse import unquote

NS = {"D": "DAV:", "C": "urn:ietf:params:xml:ns:caldav", "CR": "urn:ietf:params:xml:ns:carddav",
      "CS": "http://calendarserver.org/ns/", "A": "http://apple.com/ns/ical/"}
XMLNS = " ".join(f'xmlns:{p}="{u}"' for p, u in NS.items())


def clark(qname: str) -> str:
    """``"D:getetag"`` -> ``"{DAV:}getetag"``."""
    prefix, _, local = qname.partition(":")
    return "{%s}%s" % (NS[prefix], local)


# -- responses -------------------------------------------------------------------------------

def _status_code(line: str | None):
    return int(line.split()[1]) if line else None


@dataclass
class Entry:
    """One DAV:response of a multistatus."""
    href: str
    status: int | None = None              # a response-level status (e.g. 404 in a sync report)
    props: dict = field(default_factory=dict)        # clark name -> element, from 200 propstats
    prop_status: dict = field(default_factory=dict)  # clark name -> status of its propstat

    def text(self, qname: str) -> str | None:
        el = self.props.get(clark(qname))
        return None if el is None else (el.text or "")

    def child_hrefs(self, qname: str) -> list:
        el = self.props.get(clark(qname))
        return [] if el is None else [unquote(h.text or "") for h in el.iter("{DAV:}href")]

    def resourcetypes(self) -> set:
        el = self.props.get(clark("D:resourcetype"))
        return set() if el is None else {child.tag for child in el}


@dataclass
class Response:
    status: int
    reason: str
    headers: http.client.HTTPMessage
    body: bytes

    def header(self, name: str):
        return self.headers.get(name)

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")

    def xml(self) -> ET.Element:
        return ET.fromstring(self.body)

    def entries(self) -> dict:
        """href (unquoted) -> Entry, for a 207 multistatus."""
        assert self.status == 207, (self.status, self.text[:500])
        out = {}
        for resp in self.xml().findall("{DAV:}response"):
            entry = Entry(href=unquote(resp.findtext("{DAV:}href")),
                          status=_status_code(resp.findtext("{DAV:}status")))
            for propstat in resp.findall("{DAV:}propstat"):
                code = _status_code(propstat.findtext("{DAV:}status"))
                for prop in propstat.find("{DAV:}prop"):
                    entry.prop_status[prop.tag] = code
                    if code == 200:
                        entry.props[prop.tag] = prop
            out[entry.href] = entry
        return out

    def sync_token(self) -> str:
        return self.xml().findtext("{DAV:}sync-token")

    def error_conditions(self) -> set:
        """The precondition elements of a DAV:error body (clark names)."""
        root = self.xml()
        assert root.tag == "{DAV:}error", self.text
        return {child.tag for child in root}


# -- the client ------------------------------------------------------------------------------

class Dav:
    """Raw requests to a HavenServer's HTTP listener as one user."""

    def __init__(self, haven, user: str | None = None, password: str | None = None, timeout: float = 30):
        self.host, self.port = haven.http
        self.user, self.password, self.timeout = user, password, timeout

    @property
    def principal(self) -> str:
        return f"/dav/{self.user}/"

    def coll(self, name: str) -> str:
        return f"/dav/{self.user}/{name}/"

    @property
    def calendar(self) -> str:
        return self.coll("Calendar")

    @property
    def contacts(self) -> str:
        return self.coll("Contacts")

    @property
    def deleted_views(self) -> tuple:
        """The read-only "Deleted events" and "Deleted contacts" every account has."""
        return self.coll(".deleted-events"), self.coll(".deleted-contacts")

    def request(self, method: str, path: str, body=b"", headers: dict | None = None, auth: bool = True,
                timeout: float | None = None) -> Response:
        conn = http.client.HTTPConnection(self.host, self.port, timeout=timeout or self.timeout)
        try:
            h = dict(headers or {})
            if auth and self.user is not None:
                token = base64.b64encode(f"{self.user}:{self.password}".encode()).decode()
                h.setdefault("Authorization", "Basic " + token)
            if isinstance(body, str):
                body = body.encode("utf-8")
            conn.request(method, path, body=body or None, headers=h)
            r = conn.getresponse()
            return Response(r.status, r.reason, r.headers, r.read())
        finally:
            conn.close()

    # -- WebDAV / CalDAV / CardDAV verbs -------------------------------------------------------
    def get(self, path, **kw) -> Response:
        return self.request("GET", path, **kw)

    def delete(self, path, headers=None) -> Response:
        return self.request("DELETE", path, headers=headers)

    def put(self, path, text: str, headers: dict | None = None) -> Response:
        ctype = "text/vcard" if "BEGIN:VCARD" in text[:40] else "text/calendar"
        return self.request("PUT", path, text, {"Content-Type": f"{ctype}; charset=utf-8", **(headers or {})})

    def propfind(self, path, props=("D:getetag",), depth="0") -> Response:
        return self.request("PROPFIND", path, propfind_body(*props), {"Depth": depth,
                                                                       "Content-Type": "application/xml"})

    def proppatch(self, path, **props) -> Response:
        return self.request("PROPPATCH", path, proppatch_body(props), {"Content-Type": "application/xml"})

    def report(self, path, body: str, depth="1", timeout: float | None = None) -> Response:
        return self.request("REPORT", path, body, {"Depth": depth, "Content-Type": "application/xml"},
                            timeout=timeout)

    def mkcalendar(self, path, displayname=None, color=None) -> Response:
        props = ""
        if displayname is not None:
            props += f"<D:displayname>{displayname}</D:displayname>"
        if color is not None:
            props += f"<A:calendar-color>{color}</A:calendar-color>"
        body = (f'<?xml version="1.0" encoding="utf-8"?><C:mkcalendar {XMLNS}>'
                f"<D:set><D:prop>{props}</D:prop></D:set></C:mkcalendar>") if props else b""
        return self.request("MKCALENDAR", path, body, {"Content-Type": "application/xml"} if props else {})

    def mkaddressbook(self, path, displayname=None, description=None) -> Response:
        props = "<D:resourcetype><D:collection/><CR:addressbook/></D:resourcetype>"
        if displayname is not None:
            props += f"<D:displayname>{displayname}</D:displayname>"
        if description is not None:
            props += f"<CR:addressbook-description>{description}</CR:addressbook-description>"
        body = f'<?xml version="1.0" encoding="utf-8"?><D:mkcol {XMLNS}><D:set><D:prop>{props}</D:prop></D:set></D:mkcol>'
        return self.request("MKCOL", path, body, {"Content-Type": "application/xml"})

    # -- composite helpers -----------------------------------------------------------------------
    def etags(self, path) -> dict:
        """href -> ETag of every item a Depth 1 PROPFIND lists (the collection itself left out)."""
        entries = self.propfind(path, ("D:getetag",), depth="1").entries()
        own = unquote(path)
        return {h: e.text("D:getetag") for h, e in entries.items() if h != own}

    def ctag(self, path) -> str:
        r = self.propfind(path, ("CS:getctag",))
        return r.entries()[unquote(path)].text("CS:getctag")

    def sync(self, path, token: str = "") -> tuple[Response, str, dict]:
        """(response, new token, href -> status (200 or 404)) of a sync-collection REPORT."""
        r = self.report(path, sync_body(token), depth="0")
        if r.status != 207:
            return r, None, {}
        changes = {}
        for href, entry in r.entries().items():
            changes[href] = entry.status if entry.status is not None else (
                200 if entry.props else next(iter(entry.prop_status.values()), None))
        return r, r.sync_token(), changes

    def query_hrefs(self, path, start: str, end: str, component: str = "VEVENT") -> set:
        r = self.report(path, calendar_query_body(start, end, component))
        return set(r.entries())


# -- request bodies ----------------------------------------------------------------------------

def propfind_body(*props: str) -> str:
    inner = "".join(f"<{p}/>" for p in props)
    return f'<?xml version="1.0" encoding="utf-8"?><D:propfind {XMLNS}><D:prop>{inner}</D:prop></D:propfind>'


def proppatch_body(props: dict) -> str:
    """``displayname="x", color="#fff", description="y"``."""
    names = {"displayname": "D:displayname", "color": "A:calendar-color",
             "description": "C:calendar-description", "addressbook_description": "CR:addressbook-description"}
    inner = "".join(f"<{names[k]}>{v}</{names[k]}>" for k, v in props.items())
    return (f'<?xml version="1.0" encoding="utf-8"?><D:propertyupdate {XMLNS}>'
            f"<D:set><D:prop>{inner}</D:prop></D:set></D:propertyupdate>")


def sync_body(token: str = "", props=("D:getetag",)) -> str:
    inner = "".join(f"<{p}/>" for p in props)
    tok = f"<D:sync-token>{token}</D:sync-token>" if token else "<D:sync-token/>"
    return (f'<?xml version="1.0" encoding="utf-8"?><D:sync-collection {XMLNS}>{tok}'
            f"<D:sync-level>1</D:sync-level><D:prop>{inner}</D:prop></D:sync-collection>")


def calendar_query_body(start: str, end: str, component: str = "VEVENT") -> str:
    return (f'<?xml version="1.0" encoding="utf-8"?><C:calendar-query {XMLNS}><D:prop><D:getetag/></D:prop>'
            f'<C:filter><C:comp-filter name="VCALENDAR"><C:comp-filter name="{component}">'
            f'<C:time-range start="{start}" end="{end}"/></C:comp-filter></C:comp-filter></C:filter>'
            "</C:calendar-query>")


def calendar_multiget_body(*hrefs: str) -> str:
    inner = "".join(f"<D:href>{h}</D:href>" for h in hrefs)
    return (f'<?xml version="1.0" encoding="utf-8"?><C:calendar-multiget {XMLNS}>'
            f"<D:prop><D:getetag/><C:calendar-data/></D:prop>{inner}</C:calendar-multiget>")


def addressbook_multiget_body(*hrefs: str) -> str:
    inner = "".join(f"<D:href>{h}</D:href>" for h in hrefs)
    return (f'<?xml version="1.0" encoding="utf-8"?><CR:addressbook-multiget {XMLNS}>'
            f"<D:prop><D:getetag/><CR:address-data/></D:prop>{inner}</CR:addressbook-multiget>")


def addressbook_query_body(prop: str, text: str, match_type: str = "contains") -> str:
    return (f'<?xml version="1.0" encoding="utf-8"?><CR:addressbook-query {XMLNS}>'
            "<D:prop><D:getetag/><CR:address-data/></D:prop>"
            f'<CR:filter><CR:prop-filter name="{prop}"><CR:text-match collation="i;unicode-casemap" '
            f'match-type="{match_type}">{text}</CR:text-match></CR:prop-filter></CR:filter></CR:addressbook-query>')


# -- calendar and contact objects --------------------------------------------------------------

def vevent(uid: str, start: str = "20250110T100000Z", end: str | None = "20250110T110000Z",
           summary: str = "Meeting", extra: str = "") -> str:
    """One VEVENT component (CRLF lines).  ``start``/``end`` are iCalendar values; a plain date
    (8 digits) makes an all-day event."""
    def dt(name, value):
        return f"{name};VALUE=DATE:{value}\r\n" if len(value) == 8 else f"{name}:{value}\r\n"
    return ("BEGIN:VEVENT\r\n" f"UID:{uid}\r\n" "DTSTAMP:20250101T000000Z\r\n" + dt("DTSTART", start)
            + (dt("DTEND", end) if end else "") + f"SUMMARY:{summary}\r\n" + extra + "END:VEVENT\r\n")


def vcalendar(*components: str) -> str:
    return ("BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//Haven tests//EN\r\n" + "".join(components)
            + "END:VCALENDAR\r\n")


def event(uid: str, **kw) -> str:
    return vcalendar(vevent(uid, **kw))


def vcard(uid: str, fn: str, email: str | None = None, version: str = "3.0") -> str:
    family, _, given = fn.partition(" ")
    return ("BEGIN:VCARD\r\n" f"VERSION:{version}\r\n" f"UID:{uid}\r\n" f"FN:{fn}\r\n" f"N:{given};{family};;;\r\n"
            + (f"EMAIL:{email}\r\n" if email else "") + "END:VCARD\r\n")
