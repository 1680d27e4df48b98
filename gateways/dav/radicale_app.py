"""Radicale configured for Haven: its auth and rights plugins, and the WSGI wrapper around it.

Authentication happens before Radicale, in the HTTP front door (``gateways/http/``),
through Haven's portal like every other gateway (throttling, failure delay, no hashing on the
reactor).  The front door puts the account's address into the WSGI environ as ``haven.user``;
no request header can produce that key.  Radicale's auth plugin below only accepts that
address, and its rights plugin lets a user reach nothing but their own principal and the
calendars and address books directly under it.  The Deleted views (``.deleted-events``,
``.deleted-contacts``) are read-only: Radicale gets "r" for them, so it advertises only
DAV:read (RFC 3744 §5.4 current-user-privilege-set) and clients show them read-only; a write
into or out of them is answered 403 with the reason by the wrapper before Radicale sees it.
"""

from __future__ import annotations

import io
import logging
import re
import threading
from typing import Optional
from urllib.parse import unquote, urlsplit
from xml.etree.ElementTree import ParseError

import defusedxml.ElementTree as DefusedET
from defusedxml import DefusedXmlException
from radicale import auth as radicale_auth
from radicale import config as radicale_config
from radicale import pathutils
from radicale import rights as radicale_rights
from radicale.app import Application

from gateways.common import vobject_speed, vtimezone
from gateways.common.davitems import check_component_nesting
from gateways.dav import storage as dav_storage

log = logging.getLogger("haven.dav")

_request = threading.local()  # the address the front door authenticated, per worker thread


class Auth(radicale_auth.BaseAuth):
    """Trusts exactly the login the front door verified for this request."""

    def get_external_login(self, environ):
        return environ.get("haven.user") or "", ""

    def _login(self, login: str, password: str) -> str:
        user = getattr(_request, "user", None)
        return login if user and login == user else ""


class Rights(radicale_rights.BaseRights):
    """Like Radicale's owner_only, narrowed: the principal is read-only (it holds no items and
    cannot be deleted), and only calendars and address books can be made under it; the Deleted
    views (``read_only``) are read-only."""

    read_only: frozenset = frozenset()

    def authorization(self, user: str, user_groups, path: str) -> str:
        if not user:
            return ""
        sane = pathutils.strip_path(path)
        if not sane:
            return "R"
        parts = sane.split("/")
        if parts[0] != user:
            return ""
        if len(parts) == 1:
            return "R"
        if len(parts) == 2:
            return "r" if parts[1] in self.read_only else "rw"
        return ""


class _FailureReason(logging.Filter):
    """Keeps the reason Radicale logs for a refused request so the client gets it too (Radicale
    answers a bare "Bad Request"), and drops the traceback Radicale attaches to warnings about
    client input: bad input is the client's problem, not a server fault."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.WARNING:
            message = record.getMessage()
            if message.startswith("Bad ") and getattr(dav_storage.failure, "reason", None) is None:
                reason = str(record.args[-1]) if record.args else message
                dav_storage.note_failure(reason)
            if record.levelno < logging.ERROR:
                record.exc_info = None
                record.exc_text = None
        return True


#: the root element each XML method's body must have (RFC 4918 §9.1, §9.2, §9.3.1; RFC 4791 §5.3.1)
_ROOTS = {"PROPFIND": "{DAV:}propfind", "PROPPATCH": "{DAV:}propertyupdate", "MKCOL": "{DAV:}mkcol",
          "MKCALENDAR": "{urn:ietf:params:xml:ns:caldav}mkcalendar", "REPORT": None}


def check_xml_body(method: str, body: bytes):
    """The reason to refuse an XML request body, or None.  Radicale parses with defusedxml too,
    but answers a DTD or entity declaration, or a body of the wrong kind, with a 500."""
    if method not in _ROOTS or not body.strip():
        return None
    try:
        root = DefusedET.fromstring(body)
    except DefusedXmlException:
        return "XML with DTDs or entity declarations is not accepted"
    except (ParseError, ValueError) as e:
        return f"malformed XML: {e}"
    expected = _ROOTS[method]
    if expected and root.tag != expected:
        return f"{method} expects a {expected} body, not {root.tag}"
    if method == "REPORT" and root.tag not in REPORTS:
        return UNSUPPORTED_REPORT
    if _depth_over(root, MAX_XML_DEPTH):
        return f"XML nested more than {MAX_XML_DEPTH} elements deep"
    return None


_D, _C, _CR = "{DAV:}", "{urn:ietf:params:xml:ns:caldav}", "{urn:ietf:params:xml:ns:carddav}"
#: the REPORTs Radicale answers (RFC 3253 §3.8, RFC 4791 §7, RFC 6352 §8, RFC 6578 §3); any
#: other body would be read as a query and could fail inside it
REPORTS = frozenset([_C + "calendar-query", _C + "calendar-multiget", _C + "free-busy-query",
                     _CR + "addressbook-query", _CR + "addressbook-multiget", _D + "sync-collection",
                     _D + "expand-property", _D + "principal-property-search",
                     _D + "principal-search-property-set"])
UNSUPPORTED_REPORT = "unsupported REPORT"
_SUPPORTED_REPORT_ERROR = (b'<?xml version="1.0" encoding="utf-8"?>\n'
                           b'<D:error xmlns:D="DAV:"><D:supported-report/></D:error>\n')


#: the deepest DAV body a client sends is a calendar-query filter, about ten elements deep;
#: Radicale walks bodies recursively, so a deeper one would end in a RecursionError
MAX_XML_DEPTH = 64


def _depth_over(root, limit: int) -> bool:
    """Whether the tree under ``root`` is more than ``limit`` elements deep (without recursion)."""
    level = [root]
    for _ in range(limit):
        level = [child for element in level for child in element]
        if not level:
            return False
    return True


_UID_LINE = re.compile(rb"^UID(?:;[^:\r\n]*)?:([^\r\n]*)", re.M)


def _uid_hint(body: bytes):
    """The first UID line of a calendar object or vCard, unparsed (a hint, see begin_request)."""
    m = _UID_LINE.search(body)
    if m is None:
        return None
    try:
        return m.group(1).decode("utf-8").strip() or None
    except UnicodeDecodeError:
        return None


#: methods that change what they name (RFC 4918 §9; RFC 4791 §5.3.1; RFC 6352 §6.3.1)
_WRITES = frozenset(["PUT", "DELETE", "MKCOL", "MKCALENDAR", "PROPPATCH", "MOVE", "COPY", "POST", "LOCK"])


def _view_of(path: str, views) -> tuple:
    """(the Deleted view a request path below the DAV prefix is in, or None; the path's parts)."""
    parts = pathutils.strip_path(pathutils.sanitize_path(path)).split("/")
    return (views[parts[1]] if len(parts) > 1 and parts[1] in views else None), parts


def refuse_view_write(environ, views, dav) -> Optional[tuple]:
    """``(status, reason)`` for a write into, or a MOVE/COPY out of, a Deleted view; None for
    any other request.

    Deliberate: a MOVE out of a view is refused, not turned into a restore: MOVE deletes its
    source (RFC 4918 §9.9), which the view does not grant (RFC 3744 §3.10 DAV:unbind).  Clients
    "move" between calendars as a copy (a PUT into the target, which restores) and a DELETE of
    the source: that DELETE answers 404 once the item has left the view, which clients take as
    done, and 403 while it is still listed."""
    method = environ.get("REQUEST_METHOD", "")
    if method not in _WRITES or not views:
        return None
    name, parts = _view_of(environ.get("PATH_INFO", ""), views)
    if name is None and method in ("MOVE", "COPY"):
        dest = unquote(urlsplit(environ.get("HTTP_DESTINATION", "")).path)
        prefix = environ.get("SCRIPT_NAME", "").rstrip("/")
        if prefix and dest.startswith(prefix + "/"):
            dest = dest[len(prefix):]
        name = _view_of(dest, views)[0]
    if name is None:
        return None
    if method in ("MOVE", "COPY"):
        return "403 Forbidden", (f"{name} is read-only: items cannot be moved into or out of it.  To get an "
                                 "item back, copy it into one of your calendars or address books (a PUT with "
                                 "its UID restores it).")
    if method == "DELETE" and len(parts) == 3 and parts[0] == environ.get("haven.user"):
        item_id = dav_storage.view_id(parts[2])
        if item_id is None or not dav.deleted_items(environ.get("haven.account_id"), [item_id]):
            return "404 Not Found", f"{parts[2]} is not (any more) in {name}: restored or purged"
    return "403 Forbidden", dav_storage.READ_ONLY.format(name=name)


def _text_response(start_response, status: str, text: str):
    body = text.encode("utf-8", "replace")
    start_response(status, [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(body)))])
    return [body]


class HavenDav:
    """The WSGI application: Radicale with the request's user and error bodies filled in."""

    def __init__(self, app: Application, views=None, dav=None):
        self.app = app
        self.views = dict(views or {})  # the Deleted views: path segment -> display name
        self.dav = dav

    def __call__(self, environ, start_response):
        # PEP 3333 hands the path over as latin-1; clients send UTF-8 (Radicale's own server
        # re-decodes it the same way).
        try:
            for key in ("PATH_INFO", "SCRIPT_NAME"):
                environ[key] = environ.get(key, "").encode("latin-1").decode("utf-8")
        except UnicodeError:
            return _text_response(start_response, "400 Bad Request", "Bad Request: the path is not UTF-8\n")
        method = environ.get("REQUEST_METHOD", "")
        refused = refuse_view_write(environ, self.views, self.dav)
        if refused:
            status, reason = refused
            log.info("refused %s %s for %s: %s", method, environ.get("PATH_INFO"), environ.get("haven.user"),
                     reason.split(":")[0])
            return _text_response(start_response, status, f"{status.split(' ', 1)[1]}: {reason}\n")
        if method in _ROOTS:
            length = int(environ.get("CONTENT_LENGTH") or 0)
            body = environ["wsgi.input"].read(length) if length else b""
            reason = check_xml_body(method, body)
            if reason == UNSUPPORTED_REPORT:  # RFC 3253 §3.6: 403 with the DAV:supported-report precondition
                log.info("refused %s %s: %s", method, environ.get("PATH_INFO"), reason)
                start_response("403 Forbidden", [("Content-Type", "application/xml; charset=utf-8"),
                                                 ("Content-Length", str(len(_SUPPORTED_REPORT_ERROR)))])
                return [_SUPPORTED_REPORT_ERROR]
            if reason:
                log.info("refused %s %s: %s", method, environ.get("PATH_INFO"), reason)
                return _text_response(start_response, "400 Bad Request", f"Bad Request: {reason}\n")
            environ["wsgi.input"] = io.BytesIO(body)
        uid_hint = None
        if method == "PUT":
            length = int(environ.get("CONTENT_LENGTH") or 0)
            body = environ["wsgi.input"].read(length) if length else b""
            environ["wsgi.input"] = io.BytesIO(body)
            reason = check_component_nesting(body)
            if reason:
                log.info("refused PUT %s: %s", environ.get("PATH_INFO"), reason)
                return _text_response(start_response, "400 Bad Request", f"Bad Request: {reason}\n")
            uid_hint = _uid_hint(body)
        _request.user = environ.get("haven.user")
        dav_storage.begin_request(_request.user, environ.get("haven.account_id"), uid_hint,
                                  bool(environ.get("HTTP_IF_MATCH") or environ.get("HTTP_IF_NONE_MATCH")))
        captured: list = []

        def capture(status, headers, exc_info=None):
            captured[:] = [status, headers]
        body = self.app(environ, capture)
        status, headers = captured
        code = int(status.split()[0])
        reason = dav_storage.failure.reason
        if code >= 500 and dav_storage.failure.temporary:
            status, body = "503 Service Unavailable", [b"The store is busy; try again shortly.\n"]
            headers = [("Content-Type", "text/plain; charset=utf-8"), ("Retry-After", "5")]
        elif code == 400 and reason and dav_storage.failure.precondition:
            # another client's write came between Radicale's precondition check and the store's
            # transaction (RFC 9110 §13.1.1: the condition no longer holds)
            status, body = "412 Precondition Failed", [f"Precondition Failed: {reason}\n".encode("utf-8", "replace")]
            headers = [("Content-Type", "text/plain; charset=utf-8")]
        elif code == 400 and reason:
            body = [f"Bad Request: {reason}\n".encode("utf-8", "replace")]
            headers = [("Content-Type", "text/plain; charset=utf-8")]
        if headers is not captured[1]:
            headers.append(("Content-Length", str(sum(len(b) for b in body))))
        _request.user = None
        dav_storage.begin_request(None, None)
        start_response(status, headers)
        return body


def make_application(dav_access, config) -> HavenDav:
    """Radicale's WSGI app over ``dav_access`` (store.dav.DavAccess), limits from ``config``
    (a :class:`gateways.dav.DavConfig`)."""
    vtimezone.install()
    vobject_speed.install()
    views = {segment: name for segment, name in ((".deleted-events", config.deleted_events),
                                                 (".deleted-contacts", config.deleted_contacts)) if name}
    assert set(views) <= set(dav_storage.DELETED_VIEWS)
    rights = type("Rights", (Rights,), {"read_only": frozenset(views)})
    configuration = radicale_config.load()
    configuration.update({
        "server": {
            "max_content_length": str(config.max_request_size),
            "max_resource_size": str(config.max_item_size),
            "max_vevent_rrule_occurrence": str(config.max_occurrences),
            "delay_on_error": "0",
        },
        "auth": {"type": Auth, "delay": "0", "realm": "Haven", "cache_logins": "False"},
        "rights": {"type": rights},
        "storage": {"type": lambda c: dav_storage.Storage(c, dav_access, views)},
        "web": {"type": "none"},
        "hook": {"type": "none"},
        "logging": {"mask_passwords": "True", "bad_put_request_content": "False"},
    }, "haven", privileged=True)
    radicale_logger = logging.getLogger("radicale")
    if not any(isinstance(f, _FailureReason) for f in radicale_logger.filters):
        radicale_logger.addFilter(_FailureReason())
    # Radicale logs every request at INFO; Haven's own access line is enough below DEBUG.
    if logging.getLogger().getEffectiveLevel() > logging.DEBUG:
        radicale_logger.setLevel(logging.WARNING)
    return HavenDav(Application(configuration), views, dav_access)
