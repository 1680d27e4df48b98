"""The one HTTP front door: the ``[http]`` listeners' Twisted Web site, in front of every
HTTP protocol Haven speaks.

    /dav/...               CalDAV and CardDAV (gateways/dav, a WSGI app)
    /.well-known/caldav    301 to /dav/ (RFC 6764 §5); so are /.well-known/carddav and "/"
    /mail/config-v1.1.xml, /.well-known/autoconfig/...   client autoconfiguration
    /apple/haven.mobileconfig                            (gateways/autoconfig)
    anything else          404, kept free for ActiveSync

What is mounted where is the service's mount table (``mounts.py``; gateways/service.py builds
it from what each protocol package exposes).  This package knows no protocol, and no protocol
package imports it.

- ``site.py``: the site, its request and channel: body and header limits, idle timeout, the
  access log;
- ``auth.py``: Basic authentication through the portal and the 401 challenge;
- ``wsgi.py``: the login gate in front of a mount, and a WSGI application on the shared
  bounded thread pool (``[http] threads``);
- ``mounts.py``: the mount table and the redirects.

Invariants
- Authentication runs on the reactor, before a worker thread is taken.
- The client address every mount sees (access log, portal throttling, the plaintext rule,
  Radicale's REMOTE_ADDR) is the real one: after a PROXY header, or from X-Forwarded-For when
  the peer is in ``[server] trusted_proxies`` (``site.py``).
- A request head has ``header_timeout`` seconds; connections and requests in progress per
  client address are capped (503 with Retry-After), see ``site.py``.
- A body over ``[http] max_request_size`` is refused with 413 before it is buffered.
- TLS is the service's: the same site listens on ``[http] listen`` and ``[http] tls_listen``.

Not yet: HTTP/2, authentication other than Basic.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Mapping, Optional

from twisted.python.threadpool import ThreadPool

from gateways.common.connlimit import ConnectionGate, ListenerPolicy
from gateways.common.context import GatewayContext
from gateways.common.plaintext import PLAINTEXT_CHOICES
from gateways.common.settings import SectionSettings

from .mounts import App, Mount, Redirect, build_root
from .site import HavenSite
from .wsgi import AccountResource, WsgiMountResource

__all__ = ["App", "Mount", "Redirect", "HttpConfig", "make_site"]


@dataclass(frozen=True)
class HttpConfig:
    threads: int = 8
    max_request_size: int = 10485760
    idle_timeout: float = 300.0
    allow_plaintext_auth: str = "loopback"
    header_timeout: float = 10.0
    max_requests_per_ip: int = 20

    @classmethod
    def from_settings(cls, settings: Optional[Mapping[str, str]]) -> "HttpConfig":
        """The front door's keys of ``[http]``; a bad value stops start-up naming the key."""
        s = SectionSettings("http", settings)
        return cls(threads=s.number("threads", cls.threads, int, 1),
                   max_request_size=s.number("max_request_size", cls.max_request_size, int, 1),
                   idle_timeout=s.number("idle_timeout", cls.idle_timeout, float, 1),
                   allow_plaintext_auth=s.choice("allow_plaintext_auth", cls.allow_plaintext_auth,
                                                 PLAINTEXT_CHOICES),
                   header_timeout=s.number("header_timeout", cls.header_timeout, float, 0),
                   max_requests_per_ip=s.number("max_requests_per_ip", cls.max_requests_per_ip, int, 0))


def make_site(ctx: GatewayContext, reactor, mounts: Iterable) -> HavenSite:
    """The site serving ``mounts`` (``App``/``Mount``/``Redirect`` entries).  WSGI apps share
    one bounded thread pool, started here and stopped when the reactor shuts down."""
    config = HttpConfig.from_settings(ctx.settings)
    pool = ThreadPool(minthreads=1, maxthreads=config.threads, name="haven-http")
    apps = []

    def app_resource(entry: App):
        apps.append(entry)
        return WsgiMountResource(reactor, pool, entry.app, ctx.portal, login=entry.login,
                                 plaintext=config.allow_plaintext_auth)
    def login_resource(entry: Mount):
        return AccountResource(entry.resource, ctx.portal, plaintext=entry.plaintext or config.allow_plaintext_auth)
    root = build_root(mounts, app_resource, login_resource)
    request_gate = None
    if config.max_requests_per_ip:
        request_gate = ConnectionGate("http", ListenerPolicy(max_connections_per_ip=config.max_requests_per_ip),
                                      exempt=ctx.trusted_networks, proxies=ctx.trusted_proxies,
                                      refusals=ctx.gate.refusals if ctx.gate is not None else None,
                                      what="request", per_ip_key="max_requests_per_ip")
    site = HavenSite(root, max_request_size=config.max_request_size, idle_timeout=config.idle_timeout,
                     disclose_version=ctx.disclose_version, header_timeout=config.header_timeout,
                     gate=ctx.gate, request_gate=request_gate, trusted_proxies=ctx.trusted_proxies)
    if apps:
        pool.start()
        reactor.addSystemEventTrigger("during", "shutdown", pool.stop)
        site.thread_pool = pool
    return site
