"""``haven serve``: one reactor (asyncio-backed), the store, and every enabled gateway.

Invariants
- ``twisted.internet.asyncioreactor`` is installed before anything imports the reactor, so
  Twisted protocols and aiosmtpd servers share one asyncio loop (gateways/cli/runner.py does it).
- A gateway runs when its INI section has a non-empty ``listen``; a listener that cannot bind
  stops the start-up with a message naming the key to change.
- An empty database is initialised; an older schema is refused with the command to run.
- The purge job runs every ``[store] purge_interval`` hours.
- Every gateway's connections pass one :class:`~gateways.common.connlimit.ConnectionGate` (its
  section's ``max_connections``, ``max_connections_per_ip``); with ``proxy_protocol = yes`` its
  TCP listeners read a PROXY header from a ``[server] trusted_proxies`` peer first, outside
  the TLS layer of an implicit-TLS listener (gateways/common/clientaddr.py, proxyasync.py).
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import importlib
import logging
import logging.handlers
import os
import weakref
from pathlib import Path
from typing import Optional

from twisted.internet import defer, endpoints, task, threads
from twisted.logger import STDLibLogObserver, globalLogBeginner

from conf import Config, ConfigError, ListenAddress, StoreURL
from gateways.common.clientaddr import ProxyHeaderFactory, in_networks, trusted_networks, trusted_proxies
from gateways.common.connlimit import ConnectionGate, ListenerPolicy
from gateways.common.context import GatewayContext
from gateways.common.errors import StartupError
from gateways.common.plaintext import PLAINTEXT_CHOICES
from gateways.common.settings import SectionSettings
from gateways.common.tls import ServerCertificates, TLSSources, load_certificates, make_self_signed
from gateways.metrics import MetricsConfig
from store.errors import SchemaOutOfDate, TemporaryFailure
from store.settings import QuotaSettings, RateSettings, RuleSettings, StoreSettings, parse_junk_headers

log = logging.getLogger("haven.service")

#: [log] format
LOG_FORMATS = ("text", "json")
#: every section with listeners, as the metrics name its protocol
LISTENER_SECTIONS = ("imap", "pop3", "managesieve", "lmtp", "submission", "http")


def describe_store(config: Config) -> str:
    """Where the store is, for messages to the admin: the SQLite file, or the MariaDB URL without
    its password, and the config file it came from."""
    url = config.store_url()
    where = url.path if url.engine == "sqlite" else f"mysql://{url.user}@{url.host}:{url.port}/{url.database}"
    return f"{where} ([store] url of {config.path or 'the built-in defaults: no --config or HAVEN_CONFIG'})"


def _migrate_hint(config: Config) -> str:
    return f"haven{' --config ' + str(config.path) if config.path else ''} db migrate"


async def open_started_store(config: Config, reactor, poll: bool = True, create: bool = False,
                             check_schema: bool = True, observer=None):
    """The store, started, with its schema checked.  Only ``create`` (``haven db migrate``,
    ``haven serve --demo``) makes a new store: anything else refuses a missing SQLite file or a
    database without Haven's schema, naming the store and the config, so a mistyped data_dir or
    url never turns into an empty store that bounces all mail."""
    url = config.store_url()
    if url.engine == "sqlite" and not create and not Path(url.path).is_file():
        raise NoStore(f"no Haven store at {describe_store(config)}: create one with `{_migrate_hint(config)}`, "
                      "or fix data_dir / [store] url")
    store = open_store(config, observer=observer)
    store.start(reactor, poll=poll)
    try:
        current, latest = await store.schema_version()
    except TemporaryFailure:
        raise
    except Exception as e:
        raise StartupError(f"cannot open the store at {describe_store(config)}: {e}") from e
    if not check_schema:  # `haven db`: it reports or migrates itself
        return store
    if current is None:
        if not create:
            raise NoStore(f"the database at {describe_store(config)} holds no Haven store: create one with "
                          f"`{_migrate_hint(config)}`, or fix [store] url")
        applied = await store.migrate()
        log.info("initialised an empty database at %s (%s)", describe_store(config), ", ".join(applied))
        return store
    if current < latest:
        raise SchemaOutOfDate(f"the store at {describe_store(config)} has schema version {current}, this Haven "
                              f"needs {latest}: run `{_migrate_hint(config)}` (back up the database first)")
    if current > latest:
        raise StartupError(f"the database schema ({current}) is newer than this Haven ({latest}); "
                           f"upgrade Haven or point [store] url elsewhere")
    return store


class NoStore(StartupError):
    """The configured store does not exist (no SQLite file, or a database without the schema)."""


def store_settings(config: Config, poll_interval: Optional[float] = None, observer=None):
    """The plain values the store takes, read from the config (the store reads none itself);
    ``observer``: the process's metrics (a ``store.interfaces.StoreObserver``), or None."""
    try:
        junk = parse_junk_headers(config.get("rules", "junk_headers"))
    except ValueError as e:
        raise ConfigError(f"[rules] junk_headers: {e}") from None
    rules = RuleSettings(junk_headers=junk, max_script_size=config.getsize("rules", "max_script_size"),
                         max_scripts=config.getint("rules", "max_scripts"),
                         outbound=bool(config.get("submission", "relay")), hostname=config.hostname,
                         allow_from_mismatch=config.getbool("submission", "allow_from_mismatch"))
    quota = QuotaSettings(warn=config.getsize("quota", "warn"), soft=config.getsize("quota", "soft"),
                          hard=config.getsize("quota", "hard"))
    return StoreSettings(data_dir=config.data_dir, softdelete_lifetime=config.getfloat("store", "softdelete_lifetime"),
                         max_message_size=config.getint("server", "max_message_size"),
                         poll_interval=config.getfloat("store", "poll_interval") if poll_interval is None
                         else poll_interval,
                         inline_blob_size=config.getint("store", "inline_blob_size"), rules=rules, quota=quota,
                         rates=RateSettings(max_messages_per_hour=_count(config, "submission", "max_messages_per_hour"),
                                            max_recipients_per_hour=_count(config, "submission",
                                                                           "max_recipients_per_hour")),
                         observer=observer)


def _count(config: Config, section: str, key: str) -> int:
    value = config.getint(section, key)
    if value < 0:
        raise ConfigError(f"[{section}] {key} = {value}: expected 0 (unlimited) or more")
    return value


def open_store(config: Config, poll_interval: Optional[float] = None, observer=None):
    """The SQL store the config names, not started.  The one place that builds a store."""
    from store.sqlstore import open_store as open_sql_store  # only when needed: start-up time of the `haven` command
    return open_sql_store(config.store_url(), store_settings(config, poll_interval, observer),
                          pool_size=config.getint("store", "pool_size"),
                          busy_timeout_ms=config.getint("store", "busy_timeout_ms"))


def open_backup_store(config: Config, src: Path):
    """The store in a backup directory (`haven backup`: ``haven.db`` and ``blobs/``), not started,
    for reading: no poller, its own data_dir."""
    from store.sqlstore import open_store as open_sql_store  # only when needed: start-up time of the `haven` command
    settings = dataclasses.replace(store_settings(config, poll_interval=0), data_dir=Path(src))
    return open_sql_store(StoreURL(engine="sqlite", path=str(Path(src) / "haven.db")), settings, pool_size=1)


def tls_paths(config: Config) -> tuple[str, str]:
    """[tls] cert and key, or a self-signed pair made in data_dir/tls/ on first use."""
    cert_path, key_path = config.get("tls", "cert"), config.get("tls", "key")
    if bool(cert_path) != bool(key_path):
        raise StartupError("[tls] cert and key must both be set (or both empty for a self-signed pair)")
    if not cert_path:
        tls_dir = config.data_dir / "tls"
        cert_path, key_path = str(tls_dir / "cert.pem"), str(tls_dir / "key.pem")
        if not (os.path.exists(cert_path) and os.path.exists(key_path)):
            make_self_signed(config.hostname, Path(cert_path), Path(key_path))
            log.warning("made a self-signed certificate for %s in %s", config.hostname, tls_dir)
    return cert_path, key_path


def tls_sources(config: Config) -> TLSSources:
    """[tls] cert, key and cert_dir, the pair self-signed in data_dir/tls/ when both are empty."""
    cert, key = tls_paths(config)
    return TLSSources(cert=cert, key=key, cert_dir=config.get("tls", "cert_dir"))


def published_services(config: Config):
    """What clients are told (gateways/autoconfig/published.py): the public host name, and the
    ports and TLS of every configured listener, with the ``[autoconfig]`` overrides."""
    from gateways import autoconfig, dav  # only when needed: start-up time of the `haven` command

    def tcp(section: str, key: str):
        where = config.listen(section, key)
        return (where.host, where.port) if where is not None and where.kind == "tcp" else None
    listeners = {section: autoconfig.ServiceListeners(tcp(section, "listen"), tcp(section, "tls_listen"),
                                                      config.get(section, "allow_plaintext_auth"))
                 for section in autoconfig.MAIL_SERVICES + ("http",)}
    return autoconfig.publish(listeners, config.section(autoconfig.SECTION), hostname=config.hostname,
                              dav_path=dav.PREFIX)


def http_mounts(ctx: GatewayContext, published=None, health=None, activesync=None) -> list:
    """The front door's mount table: CalDAV/CardDAV under /dav/ with its well-known redirects,
    and with ``published`` (``published_services``) client autoconfiguration beside them
    when ``[autoconfig] enabled`` (Microsoft Autodiscover among them, told of ``activesync``,
    the ``[activesync]`` section); with ``health`` (a HealthCheck, ``[metrics] http_healthz``)
    ``/healthz``."""
    from gateways import dav  # loaded only when [http] listens (start-up time of the CLI)
    from gateways.http import App, Mount, Redirect  # only when needed: start-up time of the `haven` command
    table = [App(dav.PREFIX, dav.make_application(ctx))] + \
        [Redirect(path, location) for path, location in dav.REDIRECTS.items()]
    eas = SectionSettings("activesync", activesync)
    if eas.boolean("enabled", True):
        from gateways import activesync as eas_gateway  # only when enabled: start-up time of the CLI
        limits = dav.DavConfig.from_settings(ctx.settings)  # a phone's event is stored as a CalDAV PUT's
        commands = eas_gateway.make_commands(ctx.store, activesync,
                                             int((ctx.limits or {}).get("max_message_size") or 50 << 20),
                                             limits.max_item_size, limits.max_occurrences)
        endpoint = eas_gateway.make_endpoint(ctx.store, commands)
        table.append(Mount(eas_gateway.PREFIX, endpoint, fold_case=True, login=True,
                           plaintext=eas.choice("allow_plaintext_auth", "loopback", PLAINTEXT_CHOICES)))
    if published is not None and published.enabled:
        from gateways import autoconfig  # loaded only when [http] listens (start-up time of the CLI)
        leaf = autoconfig.make_autoconfig_resource(published)
        table += [Mount(path, leaf) for path in autoconfig.PATHS]
        table.append(App(autoconfig.PROFILE_PREFIX, autoconfig.make_profile_app(published)))
        table.append(App(autoconfig.AUTODISCOVER_PREFIX,
                         autoconfig.make_autodiscover_app(published, eas.boolean("enabled", True),
                                                          eas.value("public_url")),
                         fold_case=True))
    if health is not None:
        from gateways.metrics.health import HealthResource  # only with [metrics] http_healthz
        table.append(Mount(HEALTH_PATH, HealthResource(health)))
    return table


#: where the health check answers (the metrics listener; the front door with http_healthz)
HEALTH_PATH = "/healthz"


class Service:
    def __init__(self, config: Config, reactor, create_store: bool = False):
        self.config = config
        self.reactor = reactor
        self.create_store = create_store  # `haven serve --demo`: an empty store may be made
        self.store = None
        self.portal = None
        self.listeners = []  # twisted ports
        self.servers = []  # asyncio servers
        self.sessions = weakref.WeakSet()  # their open connections (aiosmtpd protocols)
        self.socket_paths = []  # their unix sockets, removed at stop
        self.spooler = None
        self.tls = self.ssl_context = None
        self.published = None  # what clients are told (published_services)
        self.certificates: Optional[ServerCertificates] = None
        self._purge: Optional[task.LoopingCall] = None
        self._backlog: Optional[defer.Deferred] = None
        self._stopping = False
        self.trusted_proxies = trusted_proxies(config.section("server"))
        self.trusted_networks = trusted_networks(config.section("auth"))
        self.gates = {}  # section -> ConnectionGate
        self.metrics = None  # gateways.metrics.recorder.Metrics, with [metrics] listen
        self.health = None  # gateways.metrics.health.HealthCheck, with a listener that serves it
        self._queue_watch = None

    def gate(self, section: str) -> ConnectionGate:
        """The one gate of a gateway, shared by its listeners."""
        if section not in self.gates:
            self.gates[section] = ConnectionGate(section, ListenerPolicy.from_settings(section, self.config.section(section)),
                                                 exempt=self.trusted_networks, proxies=self.trusted_proxies)
        return self.gates[section]

    def context(self, section: str) -> GatewayContext:
        portal = self.portal
        if self.metrics is not None and portal is not None:
            from gateways.metrics.counting import CountingPortal  # only with [metrics] listen
            portal = CountingPortal(portal, functools.partial(self.metrics.login, section))
        return GatewayContext(store=self.store, portal=portal, hostname=self.config.hostname,
                              settings=self.config.section(section), tls=self.tls,
                              ssl_context=self.ssl_context,
                              limits={"max_message_size": self.config.getint("server", "max_message_size"),
                                      "max_script_size": self.config.getsize("rules", "max_script_size")},
                              disclose_version=self.config.getbool("server", "disclose_version"),
                              spool_dir=str(self.config.data_dir / "spool"), gate=self.gate(section),
                              trusted_proxies=self.trusted_proxies, trusted_networks=self.trusted_networks)


    def _proxy_protocol(self, section: str, where: ListenAddress) -> bool:
        """Whether ``[section] proxy_protocol`` applies to the listener at ``where``."""
        if not self.gate(section).policy.proxy_protocol:
            return False
        if where.kind == "unix":
            raise StartupError(f"[{section}] proxy_protocol = yes: {where} is a unix socket; the PROXY "
                               f"protocol is for TCP listeners behind a proxy")
        if not self.trusted_proxies:
            raise StartupError(f"[{section}] proxy_protocol = yes but [server] trusted_proxies is empty: "
                               f"every connection would be refused; name the proxies' addresses")
        return True

    async def start(self) -> None:
        from auth.cred import make_portal  # only when needed: start-up time of the `haven` command
        metrics_config = MetricsConfig.from_settings(self.config.section("metrics"))
        if self.config.listen("metrics"):
            from gateways.metrics.recorder import Metrics  # prometheus_client loads only with [metrics] listen
            self.metrics = Metrics()
            self.metrics.protocols(s for s in LISTENER_SECTIONS if self.config.listen(s)
                                   or self.config.listen(s, "tls_listen"))
        self.store = await open_started_store(self.config, self.reactor, create=self.create_store,
                                              observer=self.metrics)
        if self.metrics is not None or metrics_config.http_healthz:
            from gateways.metrics.health import HealthCheck  # only when a listener serves /healthz
            self.health = HealthCheck(self.store, self.reactor, metrics_config.health_timeout)
        # data_dir/spool: the unnamed files of messages being received (gateways/common/spool.py)
        (self.config.data_dir / "spool").mkdir(parents=True, exist_ok=True)
        self.portal = make_portal(self.store, self.config,
                                  functools.partial(in_networks, networks=self.trusted_networks))
        self.published = published_services(self.config)  # a bad [autoconfig] key stops start-up, HTTP or not
        if self.published.unusable:
            log.warning("no client autoconfiguration: %s", self.published.unusable)
        self.tls_sources = tls_sources(self.config)
        self.certificates = ServerCertificates(load_certificates(self.tls_sources))
        log.info("TLS: %s", self.certificates.current.describe())
        # ctx.tls for Twisted listeners and STARTTLS, ctx.ssl_context for aiosmtpd: both
        # look up the current certificates at each handshake, so a reload reaches them
        self.tls, self.ssl_context = self.certificates, self.certificates.ssl_context
        # Twisted gateways: make_factory(ctx) -> protocol.Factory
        await self._start_twisted("imap", "gateways.imap")
        await self._start_twisted("pop3", "gateways.pop3")
        await self._start_twisted("managesieve", "gateways.managesieve")  # STARTTLS only, no tls_listen
        # aiosmtpd gateways: make_protocol_factory(ctx, implicit_tls=False) -> asyncio factory
        await self._start_asyncio("lmtp", "gateways.lmtp", tls_key=None)
        await self._start_asyncio("submission", "gateways.submission")
        await self._start_http()
        if (self.config.listen("submission") or self.config.listen("submission", "tls_listen")
                or self.config.get("submission", "relay")):
            # also without a submission listener: redirects and vacation replies of the
            # delivery rules leave through the same queue; the store's on_outbound hook wakes it
            from gateways.relay import start_relay  # only when needed: start-up time of the `haven` command
            self.spooler = start_relay(self.context("submission"))
        hours = self.config.getfloat("store", "purge_interval")
        if hours > 0:
            self._purge = task.LoopingCall(self._run_purge)
            self._purge.start(hours * 3600, now=True)
        self._backlog = defer.Deferred.fromCoroutine(self._build_text_index())
        self._backlog.addErrback(lambda f: log.error("text index backlog failed: %s", f.getErrorMessage()))
        await self._start_metrics(metrics_config)

    async def _start_metrics(self, metrics_config) -> None:
        """``[metrics] listen``: /metrics and /healthz on their own listener, and the outbound
        queue's numbers read every ``queue_interval``."""
        if self.metrics is None:
            return
        from gateways.metrics.recorder import QueueWatch  # prometheus_client loads only with [metrics] listen
        from gateways.metrics.site import make_metrics_site  # only with [metrics] listen
        self._queue_watch = QueueWatch(self.store, self.metrics, metrics_config.queue_interval)
        self._queue_watch.start()
        await self._listen_twisted("[metrics] listen", self.config.listen("metrics"),
                                   make_metrics_site(self.metrics, self.health))

    def _counted(self, section: str, factory, asyncio_factory: bool = False):
        """``factory`` with its connections counted under ``section`` (metrics on), else itself."""
        if self.metrics is None:
            return factory
        from gateways.metrics.counting import CountingFactory, counting_asyncio  # only with [metrics] listen
        opened = functools.partial(self.metrics.opened, section)
        closed = functools.partial(self.metrics.closed, section)
        if asyncio_factory:
            return counting_asyncio(factory, opened, closed)
        return CountingFactory(factory, opened, closed)

    async def _listen_twisted(self, key: str, where: ListenAddress, factory, tls=None, section: str = "") -> None:
        if section and self._proxy_protocol(section, where):
            # the PROXY header comes before the TLS handshake: TLS goes inside the wrapper
            from twisted.protocols.tls import TLSMemoryBIOFactory  # only when needed: start-up time
            if tls is not None:
                factory, tls = TLSMemoryBIOFactory(tls, False, factory), None
            factory = ProxyHeaderFactory(factory, self.trusted_proxies, section, self.gate(section).refusals,
                                         self.reactor)
        if where.kind == "unix":
            ep = endpoints.UNIXServerEndpoint(self.reactor, where.path)
        elif tls is not None:
            ep = endpoints.SSL4ServerEndpoint(self.reactor, where.port, tls, interface=where.host)
        else:
            ep = endpoints.TCP4ServerEndpoint(self.reactor, where.port, interface=where.host) \
                if ":" not in where.host else endpoints.TCP6ServerEndpoint(self.reactor, where.port,
                                                                         interface=where.host)
        try:
            port = await ep.listen(factory)
        except Exception as e:
            raise StartupError(f"cannot listen on {key} = {where}: {e}") from e
        self.listeners.append(port)
        log.info("listening on %s (%s)", where, key)  # Twisted's own line is dropped (QuietTwistedPorts)

    async def _start_twisted(self, section: str, module: str) -> None:
        plain, secure = self.config.listen(section), self.config.listen(section, "tls_listen")
        if not (plain or secure):
            return
        factory = self._counted(section, importlib.import_module(module).make_factory(self.context(section)))
        factory.noisy = False  # no "Starting factory" lines: the listener is logged once, below
        if plain:
            await self._listen_twisted(f"[{section}] listen", plain, factory, section=section)
        if secure:
            await self._listen_twisted(f"[{section}] tls_listen", secure, factory, tls=self.tls, section=section)

    async def _start_http(self) -> None:
        """The HTTP front door: one Twisted Web site serving the mount table."""
        plain, secure = self.config.listen("http"), self.config.listen("http", "tls_listen")
        if not (plain or secure):
            return
        from gateways.http import make_site  # loaded only when [http] listens
        ctx = self.context("http")
        health = self.health if MetricsConfig.from_settings(self.config.section("metrics")).http_healthz else None
        site = self._counted("http", make_site(ctx, self.reactor, http_mounts(ctx, self.published, health,
                                                                                   self.config.section("activesync"))))
        site.noisy = False
        if plain:
            await self._listen_twisted("[http] listen", plain, site, section="http")
        if secure:
            await self._listen_twisted("[http] tls_listen", secure, site, tls=self.tls, section="http")

    async def _listen_asyncio(self, key: str, where: ListenAddress, factory, ssl_context=None,
                              section: str = "") -> None:
        from gateways.common.proxyasync import guarded_factory  # only when needed: start-up time
        proxy = self._proxy_protocol(section, where)
        factory = guarded_factory(self._tracked(factory), self.gate(section), proxy=proxy, trusted=self.trusted_proxies,
                                  ssl_context=ssl_context)
        if proxy:
            ssl_context = None  # the PROXY header precedes the handshake: the wrapper adds TLS after it
        loop = asyncio.get_event_loop()
        try:
            if where.kind == "unix":
                Path(where.path).parent.mkdir(parents=True, exist_ok=True)
                if os.path.exists(where.path):
                    os.unlink(where.path)
                server = await defer.Deferred.fromFuture(asyncio.ensure_future(
                    loop.create_unix_server(factory, where.path, ssl=ssl_context)))
                os.chmod(where.path, 0o660)
                self.socket_paths.append(where.path)
                group = self.config.get(section, "socket_group") if self.config.has(section, "socket_group") else ""
                if group:
                    os.chown(where.path, -1, socket_group_id(f"[{section}] socket_group", group))
            else:
                server = await defer.Deferred.fromFuture(asyncio.ensure_future(
                    loop.create_server(factory, where.host, where.port, reuse_address=True, ssl=ssl_context)))
        except Exception as e:
            raise StartupError(f"cannot listen on {key} = {where}: {e}") from e
        self.servers.append(server)
        log.info("listening on %s (%s)", where, key)

    async def _start_asyncio(self, section: str, module: str, tls_key: Optional[str] = "tls_listen") -> None:
        plain = self.config.listen(section)
        secure = self.config.listen(section, tls_key) if tls_key else None
        if not (plain or secure):
            return
        gateway = importlib.import_module(module)
        ctx = self.context(section)
        if plain:
            await self._listen_asyncio(f"[{section}] listen", plain,
                                       self._counted(section, gateway.make_protocol_factory(ctx), True),
                                       section=section)
        if secure:
            await self._listen_asyncio(f"[{section}] {tls_key}", secure,
                                       self._counted(section, gateway.make_protocol_factory(ctx, implicit_tls=True),
                                                     True),
                                       ssl_context=self.ssl_context, section=section)

    async def reload(self) -> None:
        """SIGHUP: the certificates read again (new handshakes get them, established sessions
        keep theirs; a bad file keeps the old ones) and the log file reopened (logrotate)."""
        done = []
        if reopen_log_file():
            done.append("reopened the log file")
        if self.certificates is not None:
            try:
                certificates = await threads.deferToThread(load_certificates, self.tls_sources)
            except StartupError as e:
                log.error("SIGHUP: kept the previous TLS certificates: %s", e)
            except Exception:
                log.exception("SIGHUP: kept the previous TLS certificates")
            else:
                self.certificates.install(certificates)
                done.append(f"reloaded the TLS certificates: {certificates.describe()}")
        if done:
            log.info("SIGHUP: %s", "; ".join(done))

    async def _build_text_index(self) -> None:
        """Messages stored before the text index existed (schema delta 007) are indexed here, in
        the background, a batch at a time with a pause between (the writer stays free for
        deliveries); searches treat them as candidates meanwhile.  Done once: new messages are
        indexed as they are stored."""
        from twisted.internet import reactor  # the installed one
        total = 0
        while not self._stopping:
            n = await self.store.index_backlog()
            if not n:
                break
            if not total:
                log.info("text index: indexing messages stored before it")
            total += n
            await task.deferLater(reactor, 0.05, lambda: None)
        if total:
            log.info("text index: %d stored messages indexed", total)

    def _run_purge(self):
        d = defer.Deferred.fromCoroutine(self.store.purge())
        d.addErrback(lambda f: log.error("purge failed: %s", f.getErrorMessage()))
        return None

    async def stop(self) -> None:
        self._stopping = True
        if self._backlog is not None:
            await self._backlog  # its current batch
        if self._purge is not None and self._purge.running:
            self._purge.stop()
        if self._queue_watch is not None:
            self._queue_watch.stop()
        for port in self.listeners:
            await port.stopListening()
        for server in self.servers:
            server.close()
        for path in self.socket_paths:
            try:
                os.unlink(path)  # no stale socket outlives the process
            except OSError:
                pass
        await self._close_sessions()
        if self.spooler is not None:
            await self.spooler.stop()

    def _tracked(self, factory):
        """``factory`` that remembers each connection it makes, for stop() to close."""
        def make():
            protocol = factory()
            self.sessions.add(protocol)
            return protocol
        return make

    async def _close_sessions(self, timeout: float = 5.0) -> None:
        """Close the open LMTP and submission connections and wait for their session tasks
        (asyncio's Server.close() leaves them open on Python 3.11, and the loop would then
        destroy their pending tasks: "Task was destroyed but it is pending!").  A commit in
        progress finishes first: its task ends once the store has answered."""
        tasks = []
        for session in list(self.sessions):
            task_ = getattr(session, "_handler_coroutine", None)  # aiosmtpd's session task
            if session.transport is not None:
                session.transport.close()
            if task_ is not None and not task_.done():
                tasks.append(task_)
        if tasks:
            await defer.Deferred.fromFuture(asyncio.ensure_future(asyncio.wait(tasks, timeout=timeout)))


def socket_group_id(key: str, group: str) -> int:
    """The id of the group a unix socket is given (``[lmtp] socket_group``), which this process
    must be able to give it (its own groups; root any): ConfigError naming ``key`` otherwise."""
    import grp  # Unix only, like unix sockets
    try:
        gid = int(group) if group.isdigit() else grp.getgrnam(group).gr_gid
    except KeyError:
        raise ConfigError(f"{key} = {group!r}: no such group") from None
    if os.geteuid() != 0 and gid != os.getegid() and gid not in os.getgroups():
        raise ConfigError(f"{key} = {group!r}: this user (uid {os.getuid()}) is not a member of that group, "
                          f"so it cannot give the socket to it (usermod -aG {group} USER)")
    return gid


class QuietTwistedPorts(logging.Filter):
    """Drops Twisted's "IMAPFactory starting on 1143" and "(TCP Port 1143 Closed)" lines: the
    service logs each listener once itself, with its address and the key that set it."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not (" starting on " in message or message.startswith("(") and message.endswith(" Closed)"))


def stderr_is_journal() -> bool:
    """Is standard error systemd's journal (``$JOURNAL_STREAM`` names its device and inode)?"""
    try:
        device, inode = (int(n) for n in os.environ.get("JOURNAL_STREAM", "").split(":"))
        st = os.fstat(2)
    except (ValueError, OSError):
        return False
    return (st.st_dev, st.st_ino) == (device, inode)


class JournalFormatter(logging.Formatter):
    """Lines for the journal: no time stamp (it keeps its own) and the level as a syslog
    priority prefix (``<3>``), so that ``journalctl -p err -u haven`` finds the errors."""

    PRIORITIES = ((logging.CRITICAL, 2), (logging.ERROR, 3), (logging.WARNING, 4), (logging.INFO, 6))

    def format(self, record: logging.LogRecord) -> str:
        priority = next((p for level, p in self.PRIORITIES if record.levelno >= level), 7)
        return f"<{priority}>{super().format(record)}"


def reopen_log_file() -> bool:
    """Reopen the log file of ``[log] method = file`` (after logrotate moved or truncated it)."""
    reopened = False
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.FileHandler):
            handler.acquire()
            try:
                if handler.stream is not None:
                    handler.stream.close()
                handler.stream = handler._open()
                if isinstance(handler, logging.handlers.WatchedFileHandler):
                    handler._statstream()  # it watches the new file from now on
            finally:
                handler.release()
            reopened = True
    return reopened


def setup_logging(config: Config, verbose: bool = False) -> None:
    level = "DEBUG" if verbose else config.get("log", "level").upper()
    level = {"WARN": "WARNING"}.get(level, level)
    method = config.get("log", "method")
    if method == "file":
        path = config.get("log", "file")
        if not path:
            raise ConfigError("[log] method = file needs [log] file = /path/to/haven.log")
        handler = logging.handlers.WatchedFileHandler(path)
    elif method == "syslog":
        handler = logging.handlers.SysLogHandler(address="/dev/log")
        handler.ident = "haven: "
    elif method == "stderr":
        handler = logging.StreamHandler()
    else:
        raise ConfigError(f"[log] method = {method!r}: expected stderr, file or syslog")
    style = config.get("log", "format").lower()
    if style == "json":
        from gateways.logformat import JsonFormatter  # only with [log] format = json
        handler.setFormatter(JsonFormatter())
    elif style == "text":
        if method == "stderr" and stderr_is_journal():
            handler.setFormatter(JournalFormatter("%(name)s %(levelname)s %(message)s"))
        else:
            fmt = "%(name)s %(levelname)s %(message)s" if method == "syslog" else \
                "%(asctime)s %(name)s %(levelname)s %(message)s"
            handler.setFormatter(logging.Formatter(fmt))
    else:
        raise ConfigError(f"[log] format = {config.get('log', 'format')!r}: expected text or json")
    root = logging.getLogger()
    root.handlers[:] = [handler]
    try:
        root.setLevel(level)
    except ValueError:
        raise ConfigError(f"[log] level = {level!r}: expected debug, info, warn or error") from None
    twisted_log = logging.getLogger("twisted")
    if not any(isinstance(f, QuietTwistedPorts) for f in twisted_log.filters):
        twisted_log.addFilter(QuietTwistedPorts())
    globalLogBeginner.beginLoggingTo([STDLibLogObserver(name="twisted")], redirectStandardIO=False,
                                     discardBuffer=True)
