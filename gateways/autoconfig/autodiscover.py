"""Microsoft Autodiscover, the plain-old-XML form: what Outlook and Exchange ActiveSync phones
(iOS Mail, Android, Outlook mobile) ask for before anything else.

    POST /autodiscover/autodiscover.xml     (any letter case: Outlook writes /Autodiscover/...)

behind the front door's Basic login (the same portal, throttle and failure delay as every
login), so an answer only ever describes the account that logged in.  Two schemas, as the
request's ``AcceptableResponseSchema`` asks:

- ``mobilesync`` ([MS-ASCMD] 2.2.2.1 Autodiscover): the ActiveSync URL (``MobileSync``);
- ``outlook`` ([MS-OXDSCLI] 2006a): IMAP, POP3 and SMTP servers, ports and TLS, as
  autoconfig publishes them (published.py), with the address as login name.

Invariants
- The request body is parsed with defusedxml (no entities, no external references) and is
  small (the front door's ``max_request_size``); a body that is not an Autodiscover request, or
  asks for another schema, gets the schema's error answer (600 Invalid Request, 601 schema not
  supported) with status 200, as Exchange answers, never a 500.
- The answer names the account that logged in, whatever address the request carried (an alias
  or another spelling): the client learns nothing about any other account.
- The ActiveSync URL is ``[activesync] public_url``, else the front door's public URL plus
  ``/Microsoft-Server-ActiveSync``, else the request's own scheme and Host (a phone that
  reached this URL reaches the endpoint beside it).
- Without ``[activesync] enabled`` a mobilesync request is answered 601 (not offered), so a
  phone asks for its settings instead of trying an endpoint that is not there.
- A GET (a browser, a probe) is 405 with ``Allow: POST``; nothing here reads the store.
"""

from __future__ import annotations

import logging
import xml.etree.ElementTree as ET
from typing import Optional

import defusedxml.ElementTree as DefusedET
from defusedxml import DefusedXmlException

from .published import Published

log = logging.getLogger("haven.autoconfig")

PREFIX = "/autodiscover/"
NAME = "autodiscover.xml"
#: the ActiveSync endpoint's path on the front door (MS-ASHTTP 2.2.1.1)
ACTIVESYNC_PATH = "/Microsoft-Server-ActiveSync"

_BASE = "http://schemas.microsoft.com/exchange/autodiscover/"
REQUEST_NS = _BASE + "mobilesync/requestschema/2006"
OUTLOOK_REQUEST_NS = _BASE + "outlook/requestschema/2006"
RESPONSE_NS = _BASE + "responseschema/2006"
MOBILESYNC = _BASE + "mobilesync/responseschema/2006"
OUTLOOK = _BASE + "outlook/responseschema/2006a"
CONTENT_TYPE = "text/xml; charset=utf-8"


class AutodiscoverRequest:
    """The two things a request says: the address and the schema it wants the answer in."""

    def __init__(self, address: str, schema: str):
        self.address, self.schema = address, schema


def parse_request(body: bytes) -> Optional[AutodiscoverRequest]:
    """The request, or None when ``body`` is not an Autodiscover request (malformed XML,
    entities, another document)."""
    try:
        root = DefusedET.fromstring(body)
    except (ET.ParseError, DefusedXmlException, ValueError):
        return None
    if _local(root.tag) != "Autodiscover":
        return None
    address = schema = None
    for el in root.iter():
        name = _local(el.tag)
        if name == "EMailAddress" and el.text:
            address = el.text.strip()
        elif name == "AcceptableResponseSchema" and el.text:
            schema = el.text.strip()
    if schema is None:  # the request's own namespace says which family it is
        ns = root.tag[1:].partition("}")[0] if root.tag.startswith("{") else ""
        schema = MOBILESYNC if ns == REQUEST_NS else OUTLOOK if ns == OUTLOOK_REQUEST_NS else ""
    return AutodiscoverRequest(address or "", schema)


def _local(tag: str) -> str:
    return tag.rpartition("}")[2]


def _sub(parent, tag: str, text: Optional[str] = None):
    el = ET.SubElement(parent, tag)
    if text is not None:
        el.text = text
    return el


def _document(response) -> bytes:
    root = ET.Element("Autodiscover", xmlns=RESPONSE_NS)
    root.append(response)
    return b'<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(root, encoding="utf-8", xml_declaration=False)


def error_document(code: int, message: str) -> bytes:
    """The schema-level error ([MS-OXDSCLI] 2.2.4.2.1.1: ErrorCode 600 invalid request, 601
    requested schema version not supported)."""
    response = ET.Element("Response")
    error = _sub(response, "Error", None)
    error.set("Time", "00:00:00")
    error.set("Id", "0")
    _sub(error, "ErrorCode", str(code))
    _sub(error, "Message", message)
    _sub(error, "DebugData", "")
    return _document(response)


def mobilesync_document(address: str, display_name: str, url: str) -> bytes:
    response = ET.Element("Response", xmlns=MOBILESYNC)
    _sub(response, "Culture", "en:us")
    user = _sub(response, "User")
    _sub(user, "DisplayName", display_name or address)
    _sub(user, "EMailAddress", address)
    server = _sub(_sub(_sub(response, "Action"), "Settings"), "Server")
    _sub(server, "Type", "MobileSync")
    _sub(server, "Url", url)
    _sub(server, "Name", url)
    return _document(response)


def outlook_document(published: Published, address: str, display_name: str) -> bytes:
    response = ET.Element("Response", xmlns=OUTLOOK)
    _sub(_sub(response, "User"), "DisplayName", display_name or address)
    account = _sub(response, "Account")
    _sub(account, "AccountType", "email")
    _sub(account, "Action", "settings")
    for service, kind in (("imap", "IMAP"), ("pop3", "POP3"), ("submission", "SMTP")):
        end = published.preferred(service)
        if end is None:
            continue
        proto = _sub(account, "Protocol")
        _sub(proto, "Type", kind)
        _sub(proto, "Server", end.host)
        _sub(proto, "Port", str(end.port))
        _sub(proto, "DomainRequired", "off")
        _sub(proto, "LoginName", address)
        _sub(proto, "SPA", "off")
        # SSL on: TLS of some kind; Encryption says which (2006a: SSL = implicit, TLS = STARTTLS)
        _sub(proto, "SSL", "on")
        _sub(proto, "Encryption", "SSL" if end.implicit_tls else "TLS")
        _sub(proto, "AuthRequired", "on")
        if kind == "SMTP":
            _sub(proto, "UsePOPAuth", "off")
            _sub(proto, "SMTPLast", "off")
    return _document(response)


def activesync_url(configured: Optional[str], published: Published, environ) -> str:
    """Where phones find the ActiveSync endpoint (see the module's invariants)."""
    if configured:
        return configured
    if published.http_url:
        return published.http_url + ACTIVESYNC_PATH
    scheme = environ.get("wsgi.url_scheme", "https")
    host = environ.get("HTTP_HOST") or f"{environ.get('SERVER_NAME', published.hostname)}:{environ.get('SERVER_PORT')}"
    return f"{scheme}://{host}{ACTIVESYNC_PATH}"


def make_autodiscover_app(published: Published, activesync: bool = False, public_url: Optional[str] = None):
    """The WSGI application to mount at ``PREFIX`` behind the front door's login.
    ``activesync``: the ActiveSync endpoint is served (``[activesync] enabled``), else a
    mobilesync request gets error 601; ``public_url``: ``[activesync] public_url`` (None:
    derived, see :func:`activesync_url`)."""

    def app(environ, start_response):
        address = environ.get("haven.user")
        if (environ.get("PATH_INFO") or "").lower() != "/" + NAME or not address:
            return _reply(start_response, "404 Not Found", b"Not found\n", "text/plain; charset=utf-8")
        if environ.get("REQUEST_METHOD") != "POST":
            return _reply(start_response, "405 Method Not Allowed", b"Use POST\n", "text/plain; charset=utf-8",
                          [("Allow", "POST")])
        try:
            size = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            size = 0
        body = environ["wsgi.input"].read(size) if size > 0 else b""
        request = parse_request(body)
        if request is None:
            log.info("autodiscover for %s: not an Autodiscover request (%d bytes)", address, len(body))
            answer = error_document(600, "Invalid Request")
        elif request.schema == MOBILESYNC and activesync:
            answer = mobilesync_document(address, address, activesync_url(public_url, published, environ))
        elif request.schema == OUTLOOK:
            answer = outlook_document(published, address, address)
        else:
            log.info("autodiscover for %s: schema %r not supported", address, request.schema[:200])
            answer = error_document(601, "Requested schema version not supported")
        return _reply(start_response, "200 OK", answer, CONTENT_TYPE)
    return app


def _reply(start_response, status: str, body: bytes, content_type: str, extra=()) -> list:
    start_response(status, [("Content-Type", content_type), ("Content-Length", str(len(body))),
                            ("Cache-Control", "no-store"), *extra])
    return [body]
