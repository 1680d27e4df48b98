"""Thunderbird's autoconfig file (clientConfig version 1.1), asked for before any password.

Thunderbird asks, in turn, ``https://autoconfig.DOMAIN/mail/config-v1.1.xml?emailaddress=A``,
the same over http, then ``https://DOMAIN/.well-known/autoconfig/mail/config-v1.1.xml?
emailaddress=A`` (and over http).  Format: wiki.mozilla.org/Thunderbird:Autoconfiguration:
ConfigFileFormat.  K-9/Thunderbird for Android, Evolution, KMail and FairEmail read it too.

Invariants
- No login, no store: the answer depends only on the configuration and on the domain of the
  address asked about, so it tells nothing about which accounts (or domains) exist, and an
  unauthenticated request costs no database query.  Any syntactically valid domain gets the
  same servers; serving only Haven's own domains would need a lookup per anonymous request
  and would tell a scanner which domains are hosted here, for no gain (the servers are the
  same for every domain).
- The address itself is never echoed: usernames are ``%EMAILADDRESS%``, which the client fills
  in.  Only its domain is, once checked to be a host name; an address whose domain is not
  one is refused with 400.  The document is built with ElementTree, which escapes.
- ``socketType`` is ``SSL`` or ``STARTTLS`` (published.py), never ``plain``; authentication is
  ``password-cleartext`` (AUTH PLAIN/LOGIN inside TLS: Haven offers no challenge-response
  mechanism).
- ``addressBook`` and ``calendar`` (siblings of ``emailProvider``, as the format defines them)
  name the CalDAV/CardDAV context URL with ``http-basic``.  Thunderbird (through 128) does not
  read them: after the mail account is set up it finds address books and calendars through the
  RFC 6764 records of the mail domain (``haven dns records``) and ``/.well-known/caldav``.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import Optional

from twisted.web import resource

from .published import Published, ascii_domain

#: the two paths Thunderbird asks at (the ``autoconfig.DOMAIN`` host form and the well-known one)
PATHS = ("/mail/config-v1.1.xml", "/.well-known/autoconfig/mail/config-v1.1.xml")
#: longest ``emailaddress`` looked at (RFC 5321 §4.5.3.1.3: a path is at most 256 octets)
MAX_ADDRESS = 320

_TYPES = {"imap": ("incomingServer", "imap"), "pop3": ("incomingServer", "pop3"),
          "submission": ("outgoingServer", "smtp")}


class BadRequest(ValueError):
    """The request names no usable domain; the message says what is expected."""


def domain_for(emailaddress: Optional[str], host_header: Optional[str], fallback: str) -> str:
    """The mail domain the document is for: the domain of ``emailaddress`` when given (else
    BadRequest), else the Host the client asked (without ``autoconfig.``), else ``fallback``."""
    if emailaddress is not None:
        if len(emailaddress) > MAX_ADDRESS:
            raise BadRequest(f"emailaddress is longer than {MAX_ADDRESS} characters")
        local, at, domain = emailaddress.strip().rpartition("@")
        found = ascii_domain(domain) if at and local else None
        if found is None:
            raise BadRequest("expected emailaddress=user@example.org")
        return found
    header = host_header or ""
    host = None if header.startswith("[") else ascii_domain(header.split(":", 1)[0])  # [v6]: no name
    if host and host.startswith("autoconfig.") and host.count(".") >= 2:
        host = host[len("autoconfig."):]
    return host or fallback


def _server(parent, tag: str, kind: str, endpoint) -> None:
    server = ET.SubElement(parent, tag, type=kind)
    ET.SubElement(server, "hostname").text = endpoint.host
    ET.SubElement(server, "port").text = str(endpoint.port)
    ET.SubElement(server, "socketType").text = endpoint.security
    ET.SubElement(server, "authentication").text = "password-cleartext"
    ET.SubElement(server, "username").text = "%EMAILADDRESS%"


def client_config(published: Published, domain: str) -> bytes:
    """The clientConfig document for mail addresses of ``domain`` (an ASCII host name)."""
    root = ET.Element("clientConfig", version="1.1")
    provider = ET.SubElement(root, "emailProvider", id=domain)
    ET.SubElement(provider, "domain").text = domain
    ET.SubElement(provider, "displayName").text = f"{domain} mail"
    ET.SubElement(provider, "displayShortName").text = domain
    for service in ("imap", "pop3", "submission"):  # the order Thunderbird shows (IMAP before POP3)
        tag, kind = _TYPES[service]
        for endpoint in published.endpoints(service):
            _server(provider, tag, kind, endpoint)
    if published.dav_url:
        for tag, kind in (("addressBook", "carddav"), ("calendar", "caldav")):
            book = ET.SubElement(root, tag, type=kind)
            ET.SubElement(book, "username").text = "%EMAILADDRESS%"
            ET.SubElement(book, "authentication").text = "http-basic"
            ET.SubElement(book, "serverURL").text = published.dav_url
    ET.indent(root)
    return b'<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="utf-8") + b"\n"


class AutoconfigResource(resource.Resource):
    """``GET`` (and ``HEAD``) of the clientConfig document; anything below it is not found."""
    isLeaf = True

    def __init__(self, published: Published):
        super().__init__()
        self._published = published

    def render_GET(self, request):
        if request.postpath not in ([], [b""]):
            return _text(request, 404, "Not found\n")
        raw = request.args.get(b"emailaddress")
        try:
            address = raw[0].decode("utf-8") if raw else None
            host = request.getHeader(b"host")
            domain = domain_for(address, host.decode("ascii", "replace") if host else None,
                                self._published.hostname)
        except (BadRequest, UnicodeDecodeError) as e:
            reason = str(e) if isinstance(e, BadRequest) else "emailaddress is not UTF-8"
            return _text(request, 400, f"Bad request: {reason}\n")
        request.setHeader(b"Content-Type", b"application/xml; charset=utf-8")
        request.setHeader(b"Cache-Control", b"no-cache")
        return client_config(self._published, domain)

    def render_HEAD(self, request):
        return self.render_GET(request)


def _text(request, code: int, text: str) -> bytes:
    request.setResponseCode(code)
    request.setHeader(b"Content-Type", b"text/plain; charset=utf-8")
    return text.encode("utf-8")
