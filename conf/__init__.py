"""Haven's configuration: one INI file, defaults in the annotated ``conf/haven.ini``.

The file is chosen by ``--config PATH``, else ``$HAVEN_CONFIG``, else the bundled defaults.
Keys missing from the admin's file keep the bundled defaults; unknown sections or keys are
reported as errors so a typo never silently does nothing.
"""

from __future__ import annotations

import configparser
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional
from urllib.parse import unquote, urlsplit

DEFAULTS_PATH = Path(__file__).with_name("haven.ini")


class ConfigError(Exception):
    """A configuration problem, phrased as what to change."""


@dataclass(frozen=True)
class StoreURL:
    engine: str  # "sqlite" | "mysql"
    path: Optional[str] = None  # sqlite: absolute file path
    host: str = "127.0.0.1"
    port: int = 3306
    user: str = "root"
    password: str = ""
    database: str = ""


@dataclass(frozen=True)
class ListenAddress:
    kind: str  # "tcp" | "unix"
    host: str = ""
    port: int = 0
    path: str = ""

    def __str__(self) -> str:
        return f"unix:{self.path}" if self.kind == "unix" else f"{self.host}:{self.port}"


class Config:
    def __init__(self, parser: configparser.ConfigParser, path: Optional[Path]):
        self._p = parser
        self.path = path

    # -- raw access ------------------------------------------------------------------------
    def get(self, section: str, key: str) -> str:
        try:
            return self._p.get(section, key).strip()
        except (configparser.NoSectionError, configparser.NoOptionError):
            raise ConfigError(f"missing [{section}] {key}") from None

    def has(self, section: str, key: str) -> bool:
        return self._p.has_option(section, key)

    def sections(self) -> list:
        return self._p.sections()

    @classmethod
    def defaults(cls) -> "Config":
        """The bundled conf/haven.ini alone."""
        parser = configparser.ConfigParser(interpolation=None, inline_comment_prefixes=None)
        parser.read(DEFAULTS_PATH, encoding="utf-8")
        return cls(parser, None)

    def section(self, section: str) -> dict:
        return {k: v.strip() for k, v in self._p.items(section)} if self._p.has_section(section) else {}

    def getint(self, section: str, key: str) -> int:
        value = self.get(section, key)
        try:
            return int(value)
        except ValueError:
            raise ConfigError(f"[{section}] {key} = {value!r}: expected a whole number") from None

    def getfloat(self, section: str, key: str) -> float:
        value = self.get(section, key)
        try:
            return float(value)
        except ValueError:
            raise ConfigError(f"[{section}] {key} = {value!r}: expected a number") from None

    def getsize(self, section: str, key: str) -> int:
        value = self.get(section, key)
        try:
            return parse_size(value)
        except ValueError as e:
            raise ConfigError(f"[{section}] {key} = {value!r}: {e}") from None

    def getbool(self, section: str, key: str) -> bool:
        value = self.get(section, key).lower()
        if value in ("1", "yes", "true", "on"):
            return True
        if value in ("0", "no", "false", "off"):
            return False
        raise ConfigError(f"[{section}] {key} = {value!r}: expected yes or no")

    # -- typed views -----------------------------------------------------------------------
    @property
    def hostname(self) -> str:
        return self.get("server", "hostname")

    @property
    def data_dir(self) -> Path:
        """A relative data_dir is relative to the config file's folder (not to wherever the
        command runs); without a config file, to the current folder (``./dev run``)."""
        path = Path(self.get("server", "data_dir")).expanduser()
        if not path.is_absolute() and self.path is not None:
            path = Path(self.path).absolute().parent / path
        return path.absolute()

    def listen(self, section: str, key: str = "listen") -> Optional[ListenAddress]:
        value = self.get(section, key) if self._p.has_option(section, key) else ""
        return parse_listen(value, f"[{section}] {key}") if value else None

    def store_url(self) -> StoreURL:
        return parse_store_url(self.get("store", "url"), self.data_dir)


_SIZE_UNITS = {"": 1, "B": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


def parse_size(value: str) -> int:
    """``"500M"`` -> 524288000: a whole number of bytes with an optional K, M, G or T (powers
    of 1024; a trailing "B"/"iB" is allowed: 2GB, 2GiB); ``0`` = unlimited."""
    text = value.strip().upper().replace(" ", "")
    if text.endswith("IB"):
        text = text[:-2]
    elif text.endswith("B") and len(text) > 1 and text[-2] in "KMGT":
        text = text[:-1]
    number, unit = text, ""
    if text and text[-1] in _SIZE_UNITS and not text[-1].isdigit():
        number, unit = text[:-1], text[-1]
    try:
        amount = float(number)
    except ValueError:
        raise ValueError("expected a size such as 500M, 2G or 0 (unlimited)") from None
    if amount < 0:
        raise ValueError("a size cannot be negative")
    return int(amount * _SIZE_UNITS[unit])


def format_size(n: int) -> str:
    """``1536`` -> ``"1.5 KiB"``: a size for people (the CLI's quota lines)."""
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n} bytes"


def parse_listen(value: str, where: str) -> ListenAddress:
    if value.startswith("unix:"):
        path = value[5:]
        if not path:
            raise ConfigError(f"{where} = {value!r}: give a socket path, e.g. unix:/run/haven/lmtp.sock")
        return ListenAddress("unix", path=path)
    host, sep, port = value.rpartition(":")
    host = host.strip("[]")
    if not sep or not port.isdigit() or not host or not 0 < int(port) < 65536:
        raise ConfigError(f"{where} = {value!r}: expected HOST:PORT, e.g. 127.0.0.1:1143")
    return ListenAddress("tcp", host=host, port=int(port))


def parse_store_url(url: str, data_dir: Path) -> StoreURL:
    parts = urlsplit(url)
    if parts.scheme == "sqlite":
        # sqlite:///rel/path.db -> path "/rel/path.db" relative to data_dir;
        # sqlite:////abs/path.db -> path "//abs/path.db" absolute.
        raw = parts.path
        if raw.startswith("//"):
            path = Path(raw[1:])
        elif raw.startswith("/") and len(raw) > 1:
            path = data_dir / raw[1:]
        else:
            raise ConfigError(f"[store] url = {url!r}: expected sqlite:///haven.db or sqlite:////abs/path.db")
        return StoreURL("sqlite", path=str(path))
    if parts.scheme in ("mysql", "mariadb"):
        database = parts.path.lstrip("/")
        if not database or not parts.hostname:
            raise ConfigError(f"[store] url = {url!r}: expected mysql://user:password@host:3306/database")
        return StoreURL("mysql", host=parts.hostname, port=parts.port or 3306,
                        user=unquote(parts.username or "root"), password=unquote(parts.password or ""),
                        database=database)
    raise ConfigError(f"[store] url = {url!r}: the engine must be sqlite or mysql")


def load_config(path: Optional[str] = None) -> Config:
    """Bundled defaults, overlaid with ``path`` (or ``$HAVEN_CONFIG``) when given."""
    parser = Config.defaults()._p
    chosen = path or os.environ.get("HAVEN_CONFIG") or None
    if chosen:
        p = Path(chosen)
        if not p.is_file():
            raise ConfigError(f"config file {chosen} does not exist (given by "
                              f"{'--config' if path else 'HAVEN_CONFIG'})")
        user = configparser.ConfigParser(interpolation=None)
        try:
            user.read(p, encoding="utf-8")
        except configparser.Error as e:
            raise ConfigError(f"{chosen}: {e}") from None
        for section in user.sections():
            if not parser.has_section(section):
                raise ConfigError(f"{chosen}: unknown section [{section}]")
            for key, value in user.items(section, raw=True):
                if not parser.has_option(section, key) and key not in user.defaults():
                    raise ConfigError(f"{chosen}: unknown key {key!r} in [{section}]")
                parser.set(section, key, value)
        return Config(parser, p)
    return Config(parser, None)
