"""The compiled form of a Sieve script, and the actions a run produces.

Everything is a frozen dataclass: a compiled Script can be cached and shared between threads.
Strings are already unquoted (RFC 5228 §2.4.2), tags lower-cased, sizes in octets.

In a compiled Script (never in a Result), a string argument is either a plain ``str`` or, when
the script requires "variables" and the string holds a variable reference, a :class:`Template`
that run() expands (RFC 5229 §3); and ``flags=None`` on Keep/FileInto means ":flags absent:
use the internal flag variable" (RFC 5232 §5). Actions in a Result always carry plain strings
and a flag tuple.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Optional, Tuple, Union


# --- strings with variable references (RFC 5229 §3) ------------------------------------------

@dataclass(frozen=True)
class VariableRef:
    """``${name}``: ``name`` lower-cased (names are case-insensitive); a match variable
    (``${0}``..) has its decimal index, without leading zeros, as name."""
    name: str


@dataclass(frozen=True)
class Template:
    """A string with variable references: ``parts`` are literal text and VariableRefs in
    order; ``text`` is the unexpanded string as written (after escape processing)."""
    parts: Tuple[Union[str, VariableRef], ...]
    text: str


Str = Union[str, Template]


# --- actions: both the compiled commands and what run() returns -----------------------------

@dataclass(frozen=True)
class Keep:
    """Store the message in the default mailbox (INBOX). RFC 5228 §4.3. ``flags``: IMAP flags
    to set on the stored message (RFC 5232), normalised (see the interpreter)."""
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


@dataclass(frozen=True)
class Vacation:
    """Send an automatic reply to ``recipient`` (the envelope sender). RFC 5230.

    run() only returns a Vacation that passed the rules the script alone can decide
    (RFC 5230 §4.6-4.7, RFC 3834 §2). The pipeline still has to (RFC 5230 §4.2): send at most
    one reply per (``handle``, ``recipient``) within ``seconds``; send it with an empty
    reverse-path (MAIL FROM:<>, RFC 5230 §5.1); build it with build_vacation_reply().

    ``subject`` None: "Auto: " + the original subject. ``from_addr`` None: the user's address.
    ``addresses``: the extra own addresses from :addresses, lower-case. ``handle``: from
    :handle, else a digest of the reason, :subject, :from and :mime as written in the script.
    ``mime``: ``reason`` is a whole MIME entity (its own Content-* header fields, a blank line,
    the body) rather than plain text.
    """
    reason: str
    subject: Optional[str] = None
    from_addr: Optional[str] = None
    addresses: Tuple[str, ...] = ()
    seconds: int = 7 * 86400
    handle: str = ""
    mime: bool = False
    recipient: str = ""


Action = Union[Keep, FileInto, Discard, Reject, Redirect, Vacation]


# --- tests -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Match:
    """Match type, comparator and key list shared by the tests that compare strings."""
    type: str                 # ":is" | ":contains" | ":matches"
    comparator: str           # "i;ascii-casemap" | "i;octet"
    keys: Tuple[Str, ...]

    @functools.cached_property
    def folded_keys(self) -> Optional[Tuple[str, ...]]:
        """The keys folded by the comparator when none holds a variable (the common case):
        computed once per compiled script rather than once per message; None otherwise."""
        if not all(k.__class__ is str for k in self.keys):
            return None
        if self.comparator == "i;ascii-casemap":   # RFC 4790 §9.2: A-Z only
            return tuple(k.translate(ASCII_LOWER) for k in self.keys)
        return self.keys


ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


@dataclass(frozen=True)
class AddressTest:
    headers: Tuple[Str, ...]
    part: str                 # ":all" | ":localpart" | ":domain" | ":user" | ":detail"
    match: Match


@dataclass(frozen=True)
class EnvelopeTest:
    parts: Tuple[Str, ...]    # lower-cased: "from", "to"
    part: str
    match: Match


@dataclass(frozen=True)
class HeaderTest:
    headers: Tuple[Str, ...]
    match: Match


@dataclass(frozen=True)
class ExistsTest:
    headers: Tuple[Str, ...]


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


@dataclass(frozen=True)
class HasFlagTest:
    """RFC 5232 §4: ``variables`` empty means the internal flag variable; ``match.keys`` are
    the flags to look for."""
    variables: Tuple[str, ...]
    match: Match


@dataclass(frozen=True)
class StringTest:
    """RFC 5229 §5: match ``sources`` (expanded strings) against ``match.keys``."""
    sources: Tuple[Str, ...]
    match: Match


@dataclass(frozen=True)
class BodyTest:
    """RFC 5173: ``transform`` is ":raw", ":content" (with ``content_types``) or ":text"."""
    transform: str
    content_types: Tuple[Str, ...]
    match: Match


Test = Union[AddressTest, EnvelopeTest, HeaderTest, ExistsTest, SizeTest, ConstTest,
             AllOf, AnyOf, Not, HasFlagTest, StringTest, BodyTest]


# --- control ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Stop:
    pass


@dataclass(frozen=True)
class If:
    """if / elsif / else: the first branch whose test is true runs; test None is ``else``."""
    branches: Tuple[Tuple[Optional[Test], Tuple["Command", ...]], ...]


@dataclass(frozen=True)
class SetVariable:
    """RFC 5229 §4: ``set``. ``modifiers`` in the order they apply (highest precedence first,
    RFC 5229 §4.1), e.g. (":lower", ":upperfirst", ":length")."""
    name: str                 # lower-cased identifier
    value: Str
    modifiers: Tuple[str, ...] = ()


@dataclass(frozen=True)
class EditFlags:
    """RFC 5232 §3: ``setflag`` / ``addflag`` / ``removeflag`` (``op``) on the internal flag
    variable, or on the variable ``variable`` (lower-cased) when given."""
    op: str                   # "setflag" | "addflag" | "removeflag"
    flags: Tuple[Str, ...]
    variable: Optional[str] = None


@dataclass(frozen=True)
class VacationCommand:
    """The compiled ``vacation`` command (RFC 5230 §4); run() turns it into a Vacation.
    ``seconds`` is already clamped to the site limits; ``default_handle`` is used when
    ``handle`` is None (RFC 5230 §4.2)."""
    reason: Str
    subject: Optional[Str]
    from_addr: Optional[Str]
    addresses: Tuple[Str, ...]
    seconds: int
    handle: Optional[Str]
    default_handle: str
    mime: bool


Command = Union[Keep, FileInto, Discard, Reject, Redirect, Stop, If, SetVariable, EditFlags,
                VacationCommand]


@dataclass(frozen=True)
class Script:
    commands: Tuple[Command, ...]
    extensions: frozenset = frozenset()
