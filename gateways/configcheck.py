"""The whole configuration read and checked before ``haven serve`` creates a file, opens the
store or binds a port; and ``haven config check``, which prints what is in effect.

Invariants
- Every key of every section is read here with the parser that will use it (the gateways'
  own ``check_settings``), so a bad value is one line naming ``[section] key``, its value and
  what is expected, exit 78, with nothing created; never a traceback half-way through start-up.
- Checks only read: the TLS files are opened for reading, not loaded; nothing is made.
"""

from __future__ import annotations

import importlib
import os
from urllib.parse import urlsplit, urlunsplit

from conf import Config, ConfigError
from gateways.common.clientaddr import trusted_networks, trusted_proxies
from gateways.common.relayconf import parse_outbound
from gateways.common.tls import TLSSources, load_certificates
from gateways.metrics import MetricsConfig
from gateways.service import LOG_FORMATS, published_services, socket_group_id, store_settings

#: every gateway with listeners: section -> its package (each has ``check_settings(ctx)``)
GATEWAYS = {"imap": "gateways.imap", "pop3": "gateways.pop3", "managesieve": "gateways.managesieve",
            "lmtp": "gateways.lmtp", "submission": "gateways.submission"}
LISTEN_KEYS = ("listen", "tls_listen")
#: keys whose values are secrets: `haven config check` shows them masked
SECRETS = {("submission", "relay_password")}


def check_config(config: Config, context) -> None:
    """Raise ConfigError (or a StartupError) for the first bad value.  ``context(section)`` is
    the service's GatewayContext builder (no store yet: the checks do not use one)."""
    _check_data_dir(config)
    config.store_url()
    store_settings(config)
    for key in ("pool_size", "busy_timeout_ms"):
        _at_least(config, "store", key, config.getint("store", key), 1)
    for key in ("softdelete_lifetime", "purge_interval", "poll_interval"):
        _at_least(config, "store", key, config.getfloat("store", key), 0)
    for key in ("failure_delay", "max_penalty", "throttle_window", "cache_ttl"):
        _at_least(config, "auth", key, config.getfloat("auth", key), 0)
    _at_least(config, "auth", "block_after", config.getint("auth", "block_after"), 0)
    trusted_networks(config.section("auth"))
    trusted_proxies(config.section("server"))
    config.getbool("server", "disclose_version")
    _at_least(config, "server", "max_message_size", config.getint("server", "max_message_size"), 0)
    if config.get("log", "format").lower() not in LOG_FORMATS:
        raise ConfigError(f"[log] format = {config.get('log', 'format')!r}: expected text or json")
    MetricsConfig.from_settings(config.section("metrics"))
    _check_tls(config)
    _check_listeners(config)
    for section, module in GATEWAYS.items():
        if any(config.listen(section, key) for key in LISTEN_KEYS if config.has(section, key)):
            importlib.import_module(module).check_settings(context(section))
    _check_socket_group(config)
    parse_outbound(config.section("submission"))
    published_services(config)  # [autoconfig]
    if config.listen("http") or config.listen("http", "tls_listen"):
        context("http")  # its connection limits
        from gateways.dav import DavConfig  # only when needed: start-up time of the `haven` command
        from gateways.http import HttpConfig  # only when needed: start-up time of the `haven` command
        HttpConfig.from_settings(config.section("http"))
        DavConfig.from_settings(config.section("http"))


def _at_least(config: Config, section: str, key: str, value, low) -> None:
    if value < low:
        raise ConfigError(f"[{section}] {key} = {config.get(section, key)!r}: expected {low} or more")


def _check_data_dir(config: Config) -> None:
    path = config.data_dir
    if path.exists() and not path.is_dir():
        raise ConfigError(f"[server] data_dir = {config.get('server', 'data_dir')!r}: {path} is not a folder")
    parent = next((p for p in [path, *path.parents] if p.exists()), None)
    if parent is not None and not os.access(parent, os.W_OK | os.X_OK):
        raise ConfigError(f"[server] data_dir = {config.get('server', 'data_dir')!r}: {parent} is not writable "
                          f"by this user (uid {os.getuid()})")


def _check_tls(config: Config) -> None:
    """[tls] cert, key and cert_dir loaded and checked as start-up loads them (nothing is made:
    with cert and key empty, the self-signed pair is made only once the whole config passed)."""
    cert, key = config.get("tls", "cert"), config.get("tls", "key")
    if bool(cert) != bool(key):
        raise ConfigError("[tls] cert and key must both be set (or both empty for a self-signed pair)")
    if cert:
        load_certificates(TLSSources(cert=cert, key=key, cert_dir=config.get("tls", "cert_dir")))


def _check_socket_group(config: Config) -> None:
    """[lmtp] socket_group names a group this user may give the socket to."""
    group = config.get("lmtp", "socket_group")
    where = config.listen("lmtp")
    if group and where is not None and where.kind == "unix":
        socket_group_id("[lmtp] socket_group", group)


def _check_listeners(config: Config) -> None:
    """Every listen key parses, and no two listeners share an address."""
    seen: dict = {}
    for section in (*GATEWAYS, "http", "metrics"):
        for key in LISTEN_KEYS:
            if not config.has(section, key):
                continue
            where = config.listen(section, key)
            if where is None:
                continue
            if str(where) in seen:
                raise ConfigError(f"[{section}] {key} = {where}: already the address of {seen[str(where)]}")
            seen[str(where)] = f"[{section}] {key}"


def effective_config(config: Config) -> str:
    """The configuration in effect as INI text, secrets masked, each value set by the file marked."""
    defaults = Config.defaults()
    lines = [f"# in effect: {config.path or 'the built-in defaults (no --config or HAVEN_CONFIG)'}",
             "# keys marked `; set` come from that file, the others are defaults"]
    for section in config.sections():
        lines.append(f"\n[{section}]")
        for key, value in config.section(section).items():
            shown = _masked(section, key, value)
            mark = "" if defaults.has(section, key) and defaults.get(section, key) == value else "    ; set"
            lines.append(f"{key} = {shown}{mark}".rstrip())
    return "\n".join(lines) + "\n"


def _masked(section: str, key: str, value: str) -> str:
    if not value:
        return value
    if (section, key) in SECRETS:
        return "********"
    if (section, key) == ("store", "url"):
        parts = urlsplit(value)
        if parts.password:
            netloc = parts.netloc.replace(":" + parts.password + "@", ":********@", 1)
            return urlunsplit(parts._replace(netloc=netloc))
    return value

