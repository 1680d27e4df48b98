"""The plain values the process hands the store: it reads no configuration itself.

``gateways/service.py`` builds these from haven.ini; tests build them directly.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional


@dataclass(frozen=True)
class RuleSettings:
    """Server-wide settings of the delivery rules (``[rules]`` in haven.ini)."""
    junk_headers: tuple = (("x-spam-flag", "yes"), ("x-spam-status", "yes"))
    max_script_size: int = 65536
    max_scripts: int = 32
    #: whether redirects and vacation replies can leave ([submission] relay is set)
    outbound: bool = False
    hostname: str = "localhost"
    #: [submission] allow_from_mismatch: a submitted message's From:/Sender: may name addresses
    #: that are not the account's
    allow_from_mismatch: bool = False


def parse_junk_headers(text: str) -> tuple:
    """``"X-Spam-Flag: YES, X-Spam-Status: Yes"`` -> ``(("x-spam-flag", "yes"), ...)``."""
    tests = []
    for item in (text or "").split(","):
        if not item.strip():
            continue
        name, colon, value = item.partition(":")
        if not colon or not name.strip() or not value.strip():
            raise ValueError(f"junk header test {item.strip()!r} is not 'Header-Name: value'")
        tests.append((name.strip().lower(), value.strip().lower()))
    return tuple(tests)


@dataclass(frozen=True)
class QuotaSettings:
    """The server-wide limits of ``[quota]`` in bytes (0 = unlimited); an account's own limits
    override them."""
    warn: int = 0
    soft: int = 0
    hard: int = 0


@dataclass(frozen=True)
class RateSettings:
    """What an account may submit per hour (``[submission]``; 0 = unlimited)."""
    max_messages_per_hour: int = 200
    max_recipients_per_hour: int = 1000


@dataclass(frozen=True)
class StoreSettings:
    data_dir: Path
    softdelete_lifetime: float = 30  # days; 0 = never purge
    max_message_size: int = 50 * 1024 * 1024
    poll_interval: float = 0.5  # seconds between polls for other processes' changes; 0 = off
    inline_blob_size: int = 65536  # messages up to this size live in their blobs row
    rules: RuleSettings = field(default_factory=RuleSettings)
    quota: QuotaSettings = field(default_factory=QuotaSettings)
    rates: RateSettings = field(default_factory=RateSettings)
    #: who watches the store (a store.interfaces.StoreObserver: the process's metrics); None:
    #: nobody, and nothing is measured
    observer: Optional[Any] = field(default=None, compare=False)
