"""Run a compiled Sieve script against one message: tests, match types, action reduction.

See the package docstring for the invariants. Notes on choices the RFCs leave open:
- Header values are unfolded, RFC 2047-decoded and stripped before matching (RFC 5228 §5.7);
  raw 8-bit header bytes are read as UTF-8, else Latin-1.
- Address tests read every address of every named header (email.utils.getaddresses on the
  undecoded value, so an encoded display name cannot inject a comma); group names and empty
  entries are skipped. An address without "@" is all local part, with an empty domain.
- :detail of an address without "+" matches nothing (RFC 5233 §4); :user is then the whole
  local part.
- reject/ereject together with keep, fileinto or redirect, or twice, is a run-time error
  (RFC 5429 §2.1: more than one reject MUST be prohibited; delivering and rejecting together
  is NOT RECOMMENDED), so the message is kept.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from email.header import decode_header, make_header
from email.parser import BytesHeaderParser
from email.policy import compat32
from email.utils import getaddresses
import re
from typing import List, Optional

from store.sieve import SieveError
from store.sieve import model as m

#: RFC 5228 §2.10.4: a script may not fan a message out without bound
MAX_REDIRECTS = 10
SUBADDRESS_SEPARATOR = "+"
DEFAULT_MAILBOX = "INBOX"


@dataclass(frozen=True)
class Message:
    """The message being delivered. ``envelope_to`` is the original recipient (RFC 5233: it
    may carry a +detail); ``envelope_from`` may be "" or "<>" for a null reverse-path."""
    raw: bytes
    envelope_from: str
    envelope_to: str
    size: Optional[int] = None          # None: len(raw)

    def __post_init__(self):
        if self.size is None:
            object.__setattr__(self, "size", len(self.raw))


@dataclass
class Result:
    """What to do with the message. ``implicit_keep`` is True when the Keep in ``actions``
    is the implicit one (RFC 5228 §2.10.2); ``error`` is set when the script failed at run
    time, and then ``actions`` is just [Keep()]."""
    actions: List[m.Action] = field(default_factory=list)
    implicit_keep: bool = False
    error: Optional[str] = None


class SieveRuntimeError(SieveError):
    """A run-time error of the script (RFC 5228 §2.10.6); run() turns it into a Keep."""


def run(script: m.Script, message: Message) -> Result:
    """Evaluate ``script`` for ``message``. Never raises."""
    try:
        return _Run(message).execute(script)
    except SieveRuntimeError as e:
        return Result(actions=[m.Keep()], implicit_keep=True, error=str(e))
    except Exception as e:          # a message is never lost to a broken script or a bug
        return Result(actions=[m.Keep()], implicit_keep=True,
                      error="internal error: %s: %s" % (type(e).__name__, e))


class _Run:
    def __init__(self, message: Message):
        self.message = message
        self.actions: List[m.Action] = []
        self.implicit_keep = True
        self._headers = None

    # --- commands ----------------------------------------------------------------------------

    def execute(self, script: m.Script) -> Result:
        self._block(script.commands)
        implicit = False
        if self.implicit_keep:
            implicit = self._add(m.Keep())
        return Result(actions=self.actions, implicit_keep=implicit)

    def _block(self, commands) -> bool:
        """Run commands in order; False once ``stop`` ran (RFC 5228 §3.3)."""
        for cmd in commands:
            if isinstance(cmd, m.Stop):
                return False
            if isinstance(cmd, m.If):
                for test, block in cmd.branches:
                    if test is None or self._test(test):
                        if not self._block(block):
                            return False
                        break
                continue
            self._action(cmd)
        return True

    def _action(self, action: m.Action) -> None:
        delivers = isinstance(action, (m.Keep, m.FileInto, m.Redirect))
        rejected = any(isinstance(a, m.Reject) for a in self.actions)
        if isinstance(action, m.Reject):
            if rejected:
                raise SieveRuntimeError("more than one reject/ereject")
            if any(isinstance(a, (m.Keep, m.FileInto, m.Redirect)) for a in self.actions):
                raise SieveRuntimeError("reject cannot be combined with keep, fileinto "
                                        "or redirect")
        elif delivers and rejected:
            raise SieveRuntimeError("reject cannot be combined with keep, fileinto or redirect")
        if isinstance(action, m.Redirect):
            if sum(isinstance(a, m.Redirect) for a in self.actions) >= MAX_REDIRECTS:
                raise SieveRuntimeError("more than %d redirects" % MAX_REDIRECTS)
        if not getattr(action, "copy", False):
            self.implicit_keep = False      # RFC 5228 §2.10.2; RFC 3894 §3 for :copy
        self._add(action)

    def _add(self, action: m.Action) -> bool:
        """Append unless an action with the same target is there (RFC 5228 §2.10.3)."""
        key = _target(action)
        if any(_target(a) == key for a in self.actions):
            return False
        self.actions.append(action)
        return True

    # --- tests -------------------------------------------------------------------------------

    def _test(self, test: m.Test) -> bool:
        if isinstance(test, m.ConstTest):
            return test.value
        if isinstance(test, m.Not):
            return not self._test(test.test)
        if isinstance(test, m.AllOf):
            return all(self._test(t) for t in test.tests)      # short-circuit, §5.2
        if isinstance(test, m.AnyOf):
            return any(self._test(t) for t in test.tests)
        if isinstance(test, m.SizeTest):                       # §5.9: strict both ways
            size = self.message.size
            return size > test.limit if test.over else size < test.limit
        if isinstance(test, m.ExistsTest):
            return all(self._raw_values(name) for name in test.headers)
        if isinstance(test, m.HeaderTest):
            values = [_decode(v) for name in test.headers for v in self._raw_values(name)]
            return _matches(test.match, values)
        if isinstance(test, m.AddressTest):
            addresses = [addr for name in test.headers
                         for _, addr in getaddresses(self._raw_values(name)) if addr]
            return _matches(test.match, _parts(addresses, test.part))
        if isinstance(test, m.EnvelopeTest):
            return _matches(test.match, self._envelope(test))
        raise SieveRuntimeError("unknown test %r" % (test,))

    def _raw_values(self, name: str) -> List[str]:
        if self._headers is None:
            parsed = BytesHeaderParser(policy=compat32).parsebytes(self.message.raw)
            self._headers = {}
            for field_name, value in parsed.raw_items():   # raw: not wrapped in Header
                self._headers.setdefault(field_name.lower(), []).append(
                    _unfold(_text(value)))
        return self._headers.get(name.lower(), [])

    def _envelope(self, test: m.EnvelopeTest) -> List[str]:
        values = []
        for part in test.parts:
            if part == "from":
                address = _strip_brackets(self.message.envelope_from)
                if not address:
                    # RFC 5228 §5.4: a null reverse-path matches as "" whatever the part
                    values.append("")
                    continue
            elif part == "to":
                address = _strip_brackets(self.message.envelope_to)
            else:
                continue
            values.extend(_parts([address], test.part))
        return values


# --- helpers ---------------------------------------------------------------------------------

def _target(action: m.Action):
    if isinstance(action, m.Keep):
        return ("mailbox", DEFAULT_MAILBOX)
    if isinstance(action, m.FileInto):
        # IMAP: INBOX is case-insensitive (RFC 3501 §5.1)
        name = action.mailbox
        return ("mailbox", DEFAULT_MAILBOX if name.upper() == DEFAULT_MAILBOX else name)
    if isinstance(action, m.Redirect):
        return ("redirect", action.address.lower())
    return (type(action).__name__,)


def _text(value) -> str:
    """compat32 hands back 8-bit header bytes as surrogate escapes: read UTF-8, else Latin-1."""
    try:
        value.encode("utf-8")
        return value
    except UnicodeEncodeError:
        raw = value.encode("ascii", "surrogateescape")
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            return raw.decode("latin-1")


_FOLD = re.compile(r"\r?\n(?=[ \t])")


def _unfold(value: str) -> str:
    return _FOLD.sub("", value)           # RFC 5322 §2.2.3


def _decode(value: str) -> str:
    """RFC 2047 encoded-words decoded; an unknown charset or a broken word stays as is."""
    try:
        decoded = str(make_header(decode_header(value)))
    except (LookupError, ValueError, UnicodeError, AssertionError):
        decoded = value
    return decoded.strip()


def _strip_brackets(address: str) -> str:
    address = address.strip()
    if address.startswith("<") and address.endswith(">"):
        address = address[1:-1].strip()
    return address


def _parts(addresses, part: str) -> List[str]:
    out = []
    for address in addresses:
        local, at, domain = address.rpartition("@")
        if not at:
            local, domain = address, ""
        if part == ":all":
            out.append(address)
        elif part == ":localpart":
            out.append(local)
        elif part == ":domain":
            out.append(domain)
        elif part == ":user":
            out.append(local.split(SUBADDRESS_SEPARATOR, 1)[0])
        elif part == ":detail":
            if SUBADDRESS_SEPARATOR in local:
                out.append(local.split(SUBADDRESS_SEPARATOR, 1)[1])
        else:
            raise SieveRuntimeError("unknown address part %s" % part)
    return out


_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def _matches(match: m.Match, values: List[str]) -> bool:
    """True if any value matches any key (RFC 5228 §2.7.1)."""
    if match.comparator == "i;ascii-casemap":       # RFC 4790 §9.2: only A-Z fold
        fold = lambda s: s.translate(_ASCII_LOWER)  # noqa: E731
    elif match.comparator == "i;octet":
        fold = lambda s: s                          # noqa: E731
    else:
        raise SieveRuntimeError("unknown comparator %s" % match.comparator)
    values = [fold(v) for v in values]
    for key in match.keys:
        if match.type == ":is":
            key = fold(key)
            hit = any(v == key for v in values)
        elif match.type == ":contains":
            key = fold(key)
            hit = any(key in v for v in values)
        elif match.type == ":matches":
            pattern = _wildcards(key, fold)
            hit = any(_glob(pattern, v) for v in values)
        else:
            raise SieveRuntimeError("unknown match type %s" % match.type)
        if hit:
            return True
    return False


_STAR = object()
_ANY = object()


def _wildcards(key: str, fold) -> list:
    """RFC 5228 §2.7.1: "*" any run, "?" one character, "\\" makes the next one literal."""
    tokens = []
    chars = iter(key)
    for c in chars:
        if c == "\\":
            c = next(chars, "\\")
            tokens.append(fold(c))
        elif c == "*":
            if not tokens or tokens[-1] is not _STAR:
                tokens.append(_STAR)
        elif c == "?":
            tokens.append(_ANY)
        else:
            tokens.append(fold(c))
    return tokens


def _glob(pattern: list, value: str) -> bool:
    """Wildcard match in O(len(pattern) * len(value)), no backtracking blow-up."""
    p = t = 0
    star, mark = -1, 0
    while t < len(value):
        if p < len(pattern) and pattern[p] is not _STAR and (
                pattern[p] is _ANY or pattern[p] == value[t]):
            p += 1
            t += 1
        elif p < len(pattern) and pattern[p] is _STAR:
            star, mark = p, t
            p += 1
        elif star >= 0:
            p = star + 1
            mark += 1
            t = mark
        else:
            return False
    while p < len(pattern) and pattern[p] is _STAR:
        p += 1
    return p == len(pattern)
