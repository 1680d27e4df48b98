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
import datetime
import importlib
import logging
import logging.handlers
import os
import ssl as stdlib_ssl
from pathlib import Path
from typing import Optional

from twisted.internet import defer, endpoints, ssl, task
from twisted.logger import STDLibLogObserver, globalLogBeginner

from conf import Config, ConfigError, ListenAddress
from gateways.common.clientaddr import ProxyHeaderFactory, trusted_networks, trusted_proxies
from gateways.common.connlimit import ConnectionGate, ListenerPolicy
from gateways.common.context import GatewayContext
from gateways.common.errors import StartupError
from store.errors import SchemaOutOfDate, TemporaryFailure
from store.settings import QuotaSettings, RuleSettings, StoreSettings, parse_junk_headers

log = logging.getLogger("haven.service")


async def open_started_store(config: Config, reactor, poll: bool = True, init_empty: bool = True,
                             check_schema: bool = True):
    """The store, started, with its schema checked (an empty database initialised)."""
    store = open_store(config)
    store.start(reactor, poll=poll)
    try:
        current, latest = await store.schema_version()
    except TemporaryFailure:
        raise
    except Exception as e:
        raise StartupError(f"cannot open the store at [store] url ({config.store_url().engine}): {e}") from e
    if not check_schema:
        return store
    if current is None and init_empty:
        applied = await store.migrate()
        log.info("initialised an empty database (%s)", ", ".join(applied))
    elif current is None or current < latest:
        raise SchemaOutOfDate(f"the database schema is at version {current or 0}, this Haven needs {latest}: "
                              f"run `haven db migrate` (back up the database first)")
    elif current > latest:
        raise StartupError(f"the database schema ({current}) is newer than this Haven ({latest}); "
                           f"upgrade Haven or point [store] url elsewhere")
    return store


def store_settings(config: Config, poll_interval: Optional[float] = None):
    """The plain values the store takes, read from the config (the store reads none itself)."""
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
                         inline_blob_size=config.getint("store", "inline_blob_size"), rules=rules, quota=quota)


def open_store(config: Config, poll_interval: Optional[float] = None):
    """The SQL store the config names, not started.  The one place that builds a store."""
    from store.sqlstore import open_store as open_sql_store  # only when needed: start-up time of the `haven` command
    return open_sql_store(config.store_url(), store_settings(config, poll_interval),
                          pool_size=config.getint("store", "pool_size"),
                          busy_timeout_ms=config.getint("store", "busy_timeout_ms"))


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


def tls_options(cert_path: str, key_path: str):
    """Twisted CertificateOptions (IMAP, POP3)."""
    try:
        pem = Path(cert_path).read_bytes() + b"\n" + Path(key_path).read_bytes()
        return ssl.PrivateCertificate.loadPEM(pem).options()
    except Exception as e:
        raise StartupError(f"cannot load [tls] cert={cert_path} key={key_path}: {e}") from e


def ssl_context(cert_path: str, key_path: str):
    """A stdlib server SSLContext from the same pair (aiosmtpd gateways)."""
    context = stdlib_ssl.create_default_context(stdlib_ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(cert_path, key_path)
    except (OSError, stdlib_ssl.SSLError) as e:
        raise StartupError(f"cannot load [tls] cert={cert_path} key={key_path}: {e}") from e
    return context


def make_self_signed(hostname: str, cert_path: Path, key_path: Path) -> None:
    from cryptography import x509  # only when needed: start-up time of the `haven` command
    from cryptography.hazmat.primitives import hashes, serialization  # only when needed: start-up time of the `haven` command
    from cryptography.hazmat.primitives.asymmetric import ec  # only when needed: start-up time of the `haven` command
    from cryptography.x509.oid import NameOID  # only when needed: start-up time of the `haven` command

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostname)])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=3650))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(hostname)]), critical=False)
            .sign(key, hashes.SHA256()))
    cert_path.parent.mkdir(parents=True, exist_ok=True)
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    os.chmod(key_path, 0o600)
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def http_mounts(ctx: GatewayContext) -> list:
    """The front door's mount table: CalDAV/CardDAV under /dav/ with its well-known redirects
    (and later ActiveSync and autoconfig beside them)."""
    from gateways import dav  # loaded only when [http] listens (start-up time of the CLI)
    from gateways.http import App, Redirect  # only when needed: start-up time of the `haven` command
    return [App(dav.PREFIX, dav.make_application(ctx))] + \
        [Redirect(path, location) for path, location in dav.REDIRECTS.items()]


class Service:
    def __init__(self, config: Config, reactor):
        self.config = config
        self.reactor = reactor
        self.store = None
        self.portal = None
        self.listeners = []  # twisted ports
        self.servers = []  # asyncio servers
        self.spooler = None
        self.tls = self.ssl_context = None
        self._purge: Optional[task.LoopingCall] = None
        self.trusted_proxies = trusted_proxies(config.section("server"))
        self.trusted_networks = trusted_networks(config.section("auth"))
        self.gates = {}  # section -> ConnectionGate

    def gate(self, section: str) -> ConnectionGate:
        """The one gate of a gateway, shared by its listeners."""
        if section not in self.gates:
            self.gates[section] = ConnectionGate(section, ListenerPolicy.from_settings(section, self.config.section(section)),
                                                 exempt=self.trusted_networks, proxies=self.trusted_proxies)
        return self.gates[section]

    def context(self, section: str) -> GatewayContext:
        return GatewayContext(store=self.store, portal=self.portal, hostname=self.config.hostname,
                              settings=self.config.section(section), tls=self.tls,
                              ssl_context=self.ssl_context,
                              limits={"max_message_size": self.config.getint("server", "max_message_size"),
                                      "max_script_size": self.config.getsize("rules", "max_script_size")},
                              disclose_version=self.config.getbool("server", "disclose_version"),
                              gate=self.gate(section), trusted_proxies=self.trusted_proxies,
                              trusted_networks=self.trusted_networks)

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
        self.store = await open_started_store(self.config, self.reactor)
        self.portal = make_portal(self.store, self.config)
        cert, key = tls_paths(self.config)
        self.tls, self.ssl_context = tls_options(cert, key), ssl_context(cert, key)
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
        log.info("listening on %s (%s)", where, key)

    async def _start_twisted(self, section: str, module: str) -> None:
        plain, secure = self.config.listen(section), self.config.listen(section, "tls_listen")
        if not (plain or secure):
            return
        factory = importlib.import_module(module).make_factory(self.context(section))
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
        site = make_site(ctx, self.reactor, http_mounts(ctx))
        if plain:
            await self._listen_twisted("[http] listen", plain, site, section="http")
        if secure:
            await self._listen_twisted("[http] tls_listen", secure, site, tls=self.tls, section="http")

    async def _listen_asyncio(self, key: str, where: ListenAddress, factory, ssl_context=None,
                              section: str = "") -> None:
        from gateways.common.proxyasync import guarded_factory  # only when needed: start-up time
        proxy = self._proxy_protocol(section, where)
        factory = guarded_factory(factory, self.gate(section), proxy=proxy, trusted=self.trusted_proxies,
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
            await self._listen_asyncio(f"[{section}] listen", plain, gateway.make_protocol_factory(ctx),
                                       section=section)
        if secure:
            await self._listen_asyncio(f"[{section}] {tls_key}", secure,
                                       gateway.make_protocol_factory(ctx, implicit_tls=True),
                                       ssl_context=self.ssl_context, section=section)

    def _run_purge(self):
        d = defer.Deferred.fromCoroutine(self.store.purge())
        d.addErrback(lambda f: log.error("purge failed: %s", f.getErrorMessage()))
        return None

    async def stop(self) -> None:
        if self._purge is not None and self._purge.running:
            self._purge.stop()
        for port in self.listeners:
            await port.stopListening()
        for server in self.servers:
            server.close()
        if self.spooler is not None:
            await self.spooler.stop()


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
    fmt = "%(name)s %(levelname)s %(message)s" if method == "syslog" else \
        "%(asctime)s %(name)s %(levelname)s %(message)s"
    handler.setFormatter(logging.Formatter(fmt))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    try:
        root.setLevel(level)
    except ValueError:
        raise ConfigError(f"[log] level = {level!r}: expected debug, info, warn or error") from None
    globalLogBeginner.beginLoggingTo([STDLibLogObserver(name="twisted")], redirectStandardIO=False,
                                     discardBuffer=True)
