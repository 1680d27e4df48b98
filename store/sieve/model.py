"""The compiled form of a Sieve script, and the actions a run produces.

Everything is a frozen dataclass: a compiled Script can be cached and shared between threads.
Strings are already unquoted (RFC 5228 §2.4.2), tags lower-cased, sizes in octets.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Tuple, Union


# --- actions: both the compiled commands and what run() returns -----------------------------

@dataclass(frozen=True)
class Keep:
    """Store the message in the default mailbox (INBOX). RFC 5228 §4.3."""
    flags: Tuple[str, ...] = ()


@dataclass(frozen=True)
class FileInto:
    """Store the message in ``mailbox``. RFC 5228 §4.1; ``copy`` RFC 3894 (does not cancel the
    implicit keep); ``create`` RFC 5490 §3.2 (create the mailbox if it does not exist)."""
    mailbox: str
    flags: Tuple[str, ...] = ()
    copy: bool = False
    create: bool = False


@dataclass(frozen=True)
class Discard:
    """Silently drop the message. RFC 5228 §4.4. Informative for the pipeline: it only means
    the implicit keep was cancelled; other actions in the same result still happen."""


@dataclass(frozen=True)
class Reject:
    """Refuse the message with ``reason``. RFC 5429: ``extended`` (ereject) means refuse in the
    SMTP/LMTP transaction whenever possible; plain reject may instead send a DSN/MDN."""
    reason: str
    extended: bool = False


@dataclass(frozen=True)
class Redirect:
    """Resend the message to ``address``. RFC 5228 §4.2; ``copy`` RFC 3894."""
    address: str
    copy: bool = False


Action = Union[Keep, FileInto, Discard, Reject, Redirect]


# --- tests -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Match:
    """Match type, comparator and key list shared by address, envelope and header tests."""
    type: str                 # ":is" | ":contains" | ":matches"
    comparator: str           # "i;ascii-casemap" | "i;octet"
    keys: Tuple[str, ...]


@dataclass(frozen=True)
class AddressTest:
    headers: Tuple[str, ...]
    part: str                 # ":all" | ":localpart" | ":domain" | ":user" | ":detail"
    match: Match


@dataclass(frozen=True)
class EnvelopeTest:
    parts: Tuple[str, ...]    # lower-cased: "from", "to"
    part: str
    match: Match


@dataclass(frozen=True)
class HeaderTest:
    headers: Tuple[str, ...]
    match: Match


@dataclass(frozen=True)
class ExistsTest:
    headers: Tuple[str, ...]


@dataclass(frozen=True)
class SizeTest:
    over: bool                # True for :over, False for :under
    limit: int                # octets


@dataclass(frozen=True)
class ConstTest:
    value: bool


@dataclass(frozen=True)
class AllOf:
    tests: Tuple["Test", ...]


@dataclass(frozen=True)
class AnyOf:
    tests: Tuple["Test", ...]


@dataclass(frozen=True)
class Not:
    test: "Test"


Test = Union[AddressTest, EnvelopeTest, HeaderTest, ExistsTest, SizeTest, ConstTest,
             AllOf, AnyOf, Not]


# --- control ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Stop:
    pass


@dataclass(frozen=True)
class If:
    """if / elsif / else: the first branch whose test is true runs; test None is ``else``."""
    branches: Tuple[Tuple[Optional[Test], Tuple["Command", ...]], ...]


Command = Union[Keep, FileInto, Discard, Reject, Redirect, Stop, If]


@dataclass(frozen=True)
class Script:
    commands: Tuple[Command, ...]
    extensions: frozenset = frozenset()
