"""An Apple configuration profile (``.mobileconfig``) for the logged-in account: mail (IMAP and
SMTP submission), calendars (CalDAV) and contacts (CardDAV) in one download.

Apple Mail and iOS do not read Thunderbird's autoconfig; they install a profile instead
(developer.apple.com/documentation/devicemanagement: the ``com.apple.mail.managed``,
``com.apple.caldav.account`` and ``com.apple.carddav.account`` payloads).

Invariants
- Served only behind the front door's Basic login (a WSGI mount with ``login``), for the
  account that logged in and no other: the address comes from the environ the front door
  fills (``haven.user``), never from the request.
- No password in it: the device asks for it when the profile is installed.
- Every PayloadUUID and PayloadIdentifier is derived from the public host name, the account's
  address and the payload's role (UUID version 5), so the same profile downloaded again
  replaces the installed one instead of adding a second account, and two accounts never share
  one.
- The profile is not signed: the device shows it as "unverified" before installing it.
- The plist is written by ``plistlib``, which escapes.
"""

from __future__ import annotations

import plistlib
import re
import uuid
from typing import Optional
from urllib.parse import urlsplit

from .published import Published

#: where the profile is downloaded (below the mount ``PROFILE_PREFIX``)
PROFILE_PREFIX = "/apple/"
PROFILE_NAME = "haven.mobileconfig"
CONTENT_TYPE = "application/x-apple-aspen-config"
#: the namespace of every UUID in a profile (fixed: changing it would duplicate installed accounts)
_NAMESPACE = uuid.UUID("5b0f9a52-7c1e-4d63-9a8e-2f4c1d6b8e07")


def _uuid(hostname: str, address: str, role: str) -> str:
    return str(uuid.uuid5(_NAMESPACE, f"{hostname}\n{address.lower()}\n{role}")).upper()


def _identifier(hostname: str, address: str) -> str:
    """A reverse-DNS identifier unique to the account on this server."""
    reverse = ".".join(reversed(hostname.split(".")))
    return f"{reverse}.haven.{_uuid(hostname, address, 'identifier').lower()}"


def _mail_payload(published: Published, address: str, base: str) -> Optional[dict]:
    incoming = published.preferred("imap")
    kind = "EmailTypeIMAP"
    if incoming is None:
        incoming, kind = published.preferred("pop3"), "EmailTypePOP"
    outgoing = published.preferred("submission")
    if incoming is None or outgoing is None:
        return None
    # UseSSL: true = implicit TLS; false = connect in plain and upgrade (Apple Mail uses
    # STARTTLS when the server offers it, which every Haven listener does)
    return {"PayloadType": "com.apple.mail.managed", "PayloadVersion": 1,
            "PayloadIdentifier": base + ".mail", "PayloadUUID": _uuid(published.hostname, address, "mail"),
            "PayloadDisplayName": f"Mail ({address})",
            "EmailAccountDescription": address, "EmailAccountType": kind, "EmailAddress": address,
            "IncomingMailServerHostName": incoming.host, "IncomingMailServerPortNumber": incoming.port,
            "IncomingMailServerUseSSL": incoming.implicit_tls,
            "IncomingMailServerAuthentication": "EmailAuthPassword",
            "IncomingMailServerUsername": address,
            "OutgoingMailServerHostName": outgoing.host, "OutgoingMailServerPortNumber": outgoing.port,
            "OutgoingMailServerUseSSL": outgoing.implicit_tls,
            "OutgoingMailServerAuthentication": "EmailAuthPassword",
            "OutgoingMailServerUsername": address, "OutgoingPasswordSameAsIncomingPassword": True}


def _dav_payloads(published: Published, address: str, base: str) -> list:
    if not published.dav_url:
        return []
    url = urlsplit(published.dav_url)
    port = url.port or (443 if url.scheme == "https" else 80)
    out = []
    for prefix, kind, role, what in (("CalDAV", "com.apple.caldav.account", "caldav", "Calendars"),
                                     ("CardDAV", "com.apple.carddav.account", "carddav", "Contacts")):
        out.append({"PayloadType": kind, "PayloadVersion": 1, "PayloadIdentifier": f"{base}.{role}",
                    "PayloadUUID": _uuid(published.hostname, address, role),
                    "PayloadDisplayName": f"{what} ({address})",
                    f"{prefix}AccountDescription": f"{what} {address}",
                    f"{prefix}HostName": url.hostname, f"{prefix}Port": port,
                    f"{prefix}UseSSL": url.scheme == "https",
                    # the context path: the device asks it for the current-user-principal
                    f"{prefix}PrincipalURL": published.dav_url,
                    f"{prefix}Username": address})
    return out


def mobileconfig(published: Published, address: str) -> bytes:
    """The profile for ``address`` (the account that logged in), as an XML plist."""
    base = _identifier(published.hostname, address)
    content = [p for p in [_mail_payload(published, address, base)] if p] + \
        _dav_payloads(published, address, base)
    profile = {"PayloadType": "Configuration", "PayloadVersion": 1, "PayloadIdentifier": base,
               "PayloadUUID": _uuid(published.hostname, address, "profile"),
               "PayloadDisplayName": f"{address} on {published.hostname}",
               "PayloadDescription": f"Mail, calendars and contacts of {address} on {published.hostname}. "
                                     f"The password is asked for when the profile is installed.",
               "PayloadOrganization": published.hostname, "PayloadRemovalDisallowed": False,
               "PayloadContent": content}
    return plistlib.dumps(profile, fmt=plistlib.FMT_XML, sort_keys=True)


def _filename(address: str) -> str:
    return "haven-" + re.sub(r"[^A-Za-z0-9._-]+", "-", address.replace("@", "-at-"))[:100] + ".mobileconfig"


def make_profile_app(published: Published):
    """The WSGI application to mount at ``PROFILE_PREFIX`` behind the front door's login."""

    def app(environ, start_response):
        address = environ.get("haven.user")
        if environ.get("PATH_INFO") != "/" + PROFILE_NAME or not address:
            return _text(start_response, "404 Not Found", "Not found\n")
        if environ.get("REQUEST_METHOD") not in ("GET", "HEAD"):
            return _text(start_response, "405 Method Not Allowed", "Use GET\n", [("Allow", "GET, HEAD")])
        body = mobileconfig(published, address)
        start_response("200 OK", [("Content-Type", CONTENT_TYPE), ("Content-Length", str(len(body))),
                                  ("Content-Disposition", f'attachment; filename="{_filename(address)}"'),
                                  ("Cache-Control", "no-store")])
        return [body] if environ["REQUEST_METHOD"] == "GET" else []
    return app


def _text(start_response, status: str, text: str, extra=()) -> list:
    body = text.encode("utf-8")
    start_response(status, [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(body))),
                            *extra])
    return [body]
