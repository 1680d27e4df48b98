"""What clients are told: the public name, and per service the ports and how TLS starts.

Haven cannot see a NAT or a proxy in front of it, so by default what it publishes is what it
listens on: ``[autoconfig] hostname`` (else ``[server] hostname``) and the port of each
configured listener, never its bind address (0.0.0.0, or 127.0.0.1 behind a local proxy).
A listener bound to loopback is not published: only a proxy on this machine reaches it, and
the proxy's port is what clients need.  ``[autoconfig]`` overrides a service's list (``imap = ssl:993 starttls:143``, ``none``) or the
front door's public URL (``http_url``) when clients reach Haven elsewhere.

Invariants
- An implicit-TLS listener (``tls_listen``) is published as ``SSL`` and comes first; a plain
  listener as ``STARTTLS`` (every mail listener offers STARTTLS: the service always has a
  certificate, self-signed at worst).  Nothing is ever published as ``plain``: a client told
  so would send the password in the clear, which ``allow_plaintext_auth = loopback`` (the
  default) refuses from anywhere but this machine.
- CalDAV/CardDAV are published at ``https://`` when ``[http] tls_listen`` is set; over plain
  ``http://`` only when ``[http] allow_plaintext_auth = yes`` (else a remote client's login
  would be refused) or when the admin gave ``http_url``.
- Everything here is pure: plain values in (the process reads the config), plain values out.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Mapping, Optional, Tuple
from urllib.parse import urlsplit

from gateways.common.plaintext import is_loopback_ip
from gateways.common.settings import SectionSettings, SettingError

SECTION = "autoconfig"
#: the mail services a client configures, each an INI section with ``listen`` (and maybe
#: ``tls_listen``) and ``allow_plaintext_auth``
MAIL_SERVICES = ("imap", "pop3", "submission", "managesieve")
SSL, STARTTLS = "SSL", "STARTTLS"  # the socketType words of Thunderbird's format
_SECURITY = {"ssl": SSL, "tls": SSL, "starttls": STARTTLS}
_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")


def ascii_domain(text: str) -> Optional[str]:
    """``text`` as a lower-case ASCII host name (U-labels turned into A-labels), or None when it
    is not one (RFC 1123 §2.1 labels, at most 253 characters, at least two labels)."""
    text = (text or "").strip().rstrip(".").lower()
    if not text or len(text) > 253:
        return None
    try:
        text = text.encode("idna").decode("ascii")
    except UnicodeError:
        return None
    labels = text.split(".")
    if len(text) > 253 or not all(_LABEL.match(label) for label in labels):
        return None
    return text


@dataclass(frozen=True)
class ServiceListeners:
    """What Haven listens on for one service, as the process read it from the config: (bind
    address, port) of ``listen`` and ``tls_listen`` (TCP only: a unix socket is no use to a
    client), and the section's ``allow_plaintext_auth``."""
    listen: Optional[Tuple[str, int]] = None
    tls_listen: Optional[Tuple[str, int]] = None
    plaintext_auth: str = "loopback"

    @property
    def any(self) -> bool:
        return bool(self.listen or self.tls_listen)


def _public_port(where: Optional[Tuple[str, int]]) -> Optional[int]:
    """The port of a listener other machines can reach: not one bound to loopback (only a
    proxy on this machine reaches that one, and the proxy's port is what clients use)."""
    if where is None:
        return None
    host, port = where
    return None if host.lower() == "localhost" or is_loopback_ip(host) else port


@dataclass(frozen=True)
class Endpoint:
    """One way to reach a service: host, port and how TLS starts (``SSL`` or ``STARTTLS``)."""
    host: str
    port: int
    security: str

    @property
    def implicit_tls(self) -> bool:
        return self.security == SSL


@dataclass(frozen=True)
class Published:
    """What clients are told.  Each mail service's endpoints come most preferred first; an
    empty tuple means the service is not offered."""
    hostname: str
    imap: Tuple[Endpoint, ...] = ()
    pop3: Tuple[Endpoint, ...] = ()
    submission: Tuple[Endpoint, ...] = ()
    managesieve: Tuple[Endpoint, ...] = ()
    #: the front door's public base URL without a trailing slash (autoconfig is fetched there),
    #: or None when [http] does not listen where other machines reach it
    http_url: Optional[str] = None
    #: the CalDAV/CardDAV context URL (``.../dav/``), or None when no remote client could log in
    dav_url: Optional[str] = None
    #: autoconfig and the Apple profile are served ([autoconfig] enabled, and [http] listens,
    #: perhaps on loopback behind a proxy)
    enabled: bool = False
    #: why nothing is published (a [server] hostname that is no host name), else None
    unusable: Optional[str] = None

    def endpoints(self, service: str) -> Tuple[Endpoint, ...]:
        return getattr(self, service)

    def preferred(self, service: str) -> Optional[Endpoint]:
        found = self.endpoints(service)
        return found[0] if found else None


def _override(settings: SectionSettings, service: str, hostname: str) -> Optional[Tuple[Endpoint, ...]]:
    """``[autoconfig] <service>``: None (empty: derive), () for ``none``, else the endpoints."""
    raw = settings.value(service)
    if raw is None:
        return None
    if raw.lower() == "none":
        return ()
    out = []
    for item in raw.replace(",", " ").split():
        word, sep, port = item.partition(":")
        security = _SECURITY.get(word.lower())
        if security is None or not sep or not port.isdigit() or not 0 < int(port) < 65536:
            raise SettingError(f"[{SECTION}] {service} = {raw!r}: expected a list of ssl:PORT or starttls:PORT "
                               f"(e.g. ssl:993 starttls:143), or none")
        if service == "managesieve" and security == SSL:
            raise SettingError(f"[{SECTION}] managesieve = {raw!r}: ManageSieve has no implicit TLS; "
                               f"use starttls:PORT")
        out.append(Endpoint(hostname, int(port), security))
    return tuple(out)


def _derived(listeners: Optional[ServiceListeners], hostname: str) -> Tuple[Endpoint, ...]:
    if listeners is None:
        return ()
    out = []
    tls_port, plain_port = _public_port(listeners.tls_listen), _public_port(listeners.listen)
    if tls_port:  # RFC 8314 §3: implicit TLS preferred
        out.append(Endpoint(hostname, tls_port, SSL))
    if plain_port:
        out.append(Endpoint(hostname, plain_port, STARTTLS))
    return tuple(out)


def _url(scheme: str, host: str, port: int) -> str:
    default = {"http": 80, "https": 443}[scheme]
    return f"{scheme}://{host}" + ("" if port == default else f":{port}")


def _http_url(settings: SectionSettings, http: Optional[ServiceListeners], hostname: str):
    """(public base URL, whether remote clients may log in there) of the front door."""
    raw = settings.value("http_url")
    if raw is not None:
        parts = urlsplit(raw)
        host = ascii_domain(parts.hostname or "")
        try:
            port = parts.port
        except ValueError:
            port = -1
        if parts.scheme not in ("http", "https") or host is None or port == -1 or parts.path not in ("", "/") \
                or parts.query or parts.fragment or parts.username:
            raise SettingError(f"[{SECTION}] http_url = {raw!r}: expected the front door's public URL, "
                               f"e.g. https://mail.example.net or https://mail.example.net:8443")
        return _url(parts.scheme, host, port or {"http": 80, "https": 443}[parts.scheme]), True
    if http is None:
        return None, False
    tls_port, plain_port = _public_port(http.tls_listen), _public_port(http.listen)
    if tls_port:
        return _url("https", hostname, tls_port), True
    if plain_port:
        return _url("http", hostname, plain_port), http.plaintext_auth == "yes"
    return None, False


def publish(listeners: Mapping[str, ServiceListeners], settings: Optional[Mapping[str, str]], *,
            hostname: str, dav_path: str) -> Published:
    """What clients are told, from the listeners of each service (``MAIL_SERVICES`` and
    ``http``), the ``[autoconfig]`` section and ``[server] hostname``.  A bad ``[autoconfig]``
    value is a :class:`SettingError` naming the key.  ``dav_path`` is DAV's context path
    (``/dav/``), where the front door's ``/.well-known/caldav`` redirects."""
    s = SectionSettings(SECTION, settings)
    public = s.value("hostname")
    host = ascii_domain(public or hostname)
    if host is None and public:
        raise SettingError(f"[{SECTION}] hostname = {public!r}: expected the host name clients connect to, "
                           f"e.g. mail.example.net")
    if host is None:  # not a reason to refuse to start: only autoconfiguration needs a host name
        return Published(hostname=hostname, unusable=f"[server] hostname = {hostname!r} is not a host name "
                                                     f"clients can connect to: set [{SECTION}] hostname")
    services = {}
    for service in MAIL_SERVICES:
        given = _override(s, service, host)
        services[service] = given if given is not None else _derived(listeners.get(service), host)
    http_url, logins = _http_url(s, listeners.get("http"), host)
    dav_url = http_url + dav_path if http_url and logins else None
    http = listeners.get("http")
    served = http is not None and http.any and s.boolean("enabled", True)
    return Published(hostname=host, http_url=http_url, dav_url=dav_url, enabled=served, **services)
