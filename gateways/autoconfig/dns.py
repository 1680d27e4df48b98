"""The DNS records a mail domain publishes so that clients find Haven (``haven dns records``).

- MX: where other servers deliver (the MTA in front of Haven, which hands mail over LMTP);
- RFC 6186 SRV records for IMAP, POP3 and submission (``_submissions`` from RFC 8314 §5.1),
  implicit TLS at a lower priority value (preferred) than STARTTLS; a service not offered is
  ``0 0 0 .`` (RFC 6186 §4, RFC 2782): "decidedly not available";
- RFC 5804 §1.8 ``_sieve._tcp`` for ManageSieve;
- RFC 6764 §3 ``_caldavs``/``_carddavs`` (and the plain ``_caldav``/``_carddav``) SRV records
  with their TXT ``path=`` (§4: the context path, where ``/.well-known/caldav`` leads);
- ``autoconfig.DOMAIN`` as a CNAME of the host name, where Thunderbird asks first.
"""

from __future__ import annotations

from typing import List
from urllib.parse import urlsplit

from .published import Published

#: RFC 8314 §5.1: implicit TLS first (a lower priority value is preferred)
PRIORITY = {True: 0, False: 10}
_MAIL = (("imap", "_imaps", "_imap"), ("pop3", "_pop3s", "_pop3"), ("submission", "_submissions", "_submission"))


def _srv(owner: str, priority: int, port: int, target: str) -> str:
    return f"{owner:<34} IN SRV   {priority} 1 {port} {target}."


def _none(owner: str) -> str:
    return f"{owner:<34} IN SRV   0 0 0 ."


def records(published: Published, domain: str) -> List[str]:
    """Zone-file lines (with ``;`` comments) for ``domain`` (an ASCII host name)."""
    host = published.hostname
    lines = [f"; DNS records for mail addresses @{domain}, served by Haven at {host}",
             "; (TTLs are yours to choose; names are absolute, with the trailing dot)", "",
             "; where other servers deliver: your MTA, which hands mail to Haven over LMTP",
             f"{domain + '.':<34} IN MX    10 {host}.", "",
             "; RFC 6186: how mail clients find IMAP, POP3 and submission (0 0 0 . = not offered)"]
    for service, secure, plain in _MAIL:
        endpoints = published.endpoints(service)
        for label, tls in ((secure, True), (plain, False)):
            owner = f"{label}._tcp.{domain}."
            found = [e for e in endpoints if e.implicit_tls == tls]
            lines += [_srv(owner, PRIORITY[tls] + i, e.port, e.host) for i, e in enumerate(found)] or [_none(owner)]
    lines += ["", "; RFC 5804: ManageSieve (Sieve filter rules)"]
    sieve = published.endpoints("managesieve")
    owner = f"_sieve._tcp.{domain}."
    lines += [_srv(owner, i, e.port, e.host) for i, e in enumerate(sieve)] or [_none(owner)]
    lines += ["", "; RFC 6764: CalDAV and CardDAV, and their context path"]
    dav = urlsplit(published.dav_url) if published.dav_url else None
    for kind in ("caldav", "carddav"):
        for tls in (True, False):
            owner = f"_{kind}{'s' if tls else ''}._tcp.{domain}."
            if dav is not None and (dav.scheme == "https") == tls:
                lines.append(_srv(owner, 0, dav.port or (443 if tls else 80), dav.hostname))
                lines.append(f'{owner:<34} IN TXT   "path={dav.path}"')
            else:
                lines.append(_none(owner))
    lines.append("")
    if published.enabled:
        lines.append("; Thunderbird's autoconfig: it asks https://autoconfig.DOMAIN/mail/config-v1.1.xml, then http")
        lines.append(f"{'autoconfig.' + domain + '.':<34} IN CNAME {host}.")
        web = urlsplit(published.http_url) if published.http_url else None
        if web is None:
            lines.append("; note: [http] listens on loopback only: a proxy in front must pass these paths on "
                         "(and set [autoconfig] http_url)")
        elif web.port not in (None, 80, 443):
            lines.append(f"; note: Thunderbird asks on ports 443 and 80 only, the front door is at "
                         f"{published.http_url}: forward one of them, or set [autoconfig] http_url")
        lines.append(f"; over https the certificate must name autoconfig.{domain} too")
    else:
        lines.append("; no autoconfig.DOMAIN record: [autoconfig] enabled = no, or [http] does not listen")
    lines += ["", "; A listener bound to loopback (127.0.0.1) is not published: clients use the port of a proxy",
              "; in front of it, which [autoconfig] imap, pop3, submission, managesieve and http_url name."]
    return lines
