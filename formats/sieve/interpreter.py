"""Run a compiled Sieve script against one message: tests, match types, action reduction.

See the package docstring for the invariants. Notes on choices the RFCs leave open:
- Header values are unfolded, RFC 2047-decoded and stripped before matching (RFC 5228 §5.7);
  raw 8-bit header bytes are read as UTF-8, else Latin-1. The header is parsed once per run,
  on first use; decoded values and address lists are cached per header name, so a script of
  many rules on the same fields does not decode them again.
- Address tests read every address of every named header (email.utils.getaddresses on the
  undecoded value, so an encoded display name cannot inject a comma); group names and empty
  entries are skipped. An address without "@" is all local part, with an empty domain.
- :detail of an address without "+" matches nothing (RFC 5233 §4); :user is then the whole
  local part.
- reject/ereject together with keep, fileinto or redirect, or twice, is a run-time error
  (RFC 5429 §2.1: more than one reject MUST be prohibited; delivering and rejecting together
  is NOT RECOMMENDED), so the message is kept. So is reject with vacation (RFC 5429 §2.1) and
  a second vacation (RFC 5230 §4.8).
- Flags (RFC 5232 §2): a flag list is split on spaces; \\Seen, \\Answered, \\Flagged,
  \\Deleted and \\Draft are recognised in any case and written in that canonical case; other
  "\\" flags (\\Recent included) and names that are not IMAP atoms are dropped; duplicates
  (case-insensitive) are dropped, keeping the first spelling; at most MAX_FLAGS flags.
  Keep/FileInto without :flags carry the internal flag variable as it is when they run; the
  implicit keep carries it as it is at the end (RFC 5232 §5). When two actions store into
  the same mailbox, the one kept gets the union of their flags.
- Variables (RFC 5229): a variable holds at most MAX_VARIABLE_SIZE characters (longer values
  are cut), and expanding one string adds at most MAX_EXPANSION characters to it. Match
  variables are set by a successful :matches of header, address, envelope, string and
  hasflag, never by body (RFC 5173 §6); each "*" takes the shortest run that lets the rest
  of the pattern match (RFC 5229 §3.2 examples: "[*] *", "coyote@**.com").
- Vacation: see formats.sieve.vacation for the rules; a reply refused by them is left out of
  Result.actions and the reason goes to Result.notes.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from email.parser import BytesHeaderParser
from email.policy import compat32
from email.utils import getaddresses
import functools
import re
from typing import Dict, Iterable, List, Optional

from formats.sieve import SieveError
from formats.sieve import model as m
from formats.sieve import vacation as _vacation
from formats.sieve.body import MessageBody, body_offset
from formats.sieve.headers import decode_words, header_text, strip_brackets, unfold

#: RFC 5228 §2.10.4: a script may not fan a message out without bound
MAX_REDIRECTS = 10
SUBADDRESS_SEPARATOR = "+"
DEFAULT_MAILBOX = "INBOX"
#: RFC 5229 §6 (at least 4000): characters one variable, match variables included, can hold
MAX_VARIABLE_SIZE = 4096
#: characters that variable expansion may add to one string argument
MAX_EXPANSION = 64 * 1024
#: flags in one flag list (RFC 5232); later ones are ignored
MAX_FLAGS = 100


@dataclass(frozen=True)
class Message:
    """The message being delivered. ``envelope_to`` is the original recipient (RFC 5233: it
    may carry a +detail); ``envelope_from`` may be "" or "<>" for a null reverse-path.
    ``user_addresses``: the recipient account's own addresses, lower-case (vacation, RFC 5230
    §4.6); ``envelope_to`` counts as one of them without being listed."""
    raw: bytes
    envelope_from: str
    envelope_to: str
    size: Optional[int] = None          # None: len(raw)
    user_addresses: tuple = ()

    def __post_init__(self):
        if self.size is None:
            object.__setattr__(self, "size", len(self.raw))


@dataclass
class Result:
    """What to do with the message. ``implicit_keep`` is True when the Keep in ``actions``
    is the implicit one (RFC 5228 §2.10.2); ``error`` is set when the script failed at run
    time, and then ``actions`` is just [Keep()]. ``notes``: things worth logging that are not
    errors, e.g. why a vacation reply was not sent."""
    actions: List[m.Action] = field(default_factory=list)
    implicit_keep: bool = False
    error: Optional[str] = None
    notes: List[str] = field(default_factory=list)


class SieveRuntimeError(SieveError):
    """A run-time error of the script (RFC 5228 §2.10.6); run() turns it into a Keep."""


def run(script: m.Script, message: Message) -> Result:
    """Evaluate ``script`` for ``message``. Never raises."""
    runner = None
    try:
        runner = _Run(message, script.extensions)
        return runner.execute(script)
    except SieveRuntimeError as e:
        return Result(actions=[m.Keep()], implicit_keep=True, error=str(e),
                      notes=runner.notes if runner else [])
    except Exception as e:          # a message is never lost to a broken script or a bug
        return Result(actions=[m.Keep()], implicit_keep=True,
                      error="internal error: %s: %s" % (type(e).__name__, e),
                      notes=runner.notes if runner else [])


class _Run:
    def __init__(self, message: Message, extensions: frozenset = frozenset()):
        self.message = message
        self.actions: List[m.Action] = []
        self.implicit_keep = True
        self.notes: List[str] = []
        self.flags: tuple = ()                  # RFC 5232 §2: the internal flag variable
        self.variables: Dict[str, str] = {}     # RFC 5229, names lower-cased
        self.match_variables: List[str] = []    # RFC 5229 §3.2: ${0}, ${1}, ...
        self.sets_match_variables = "variables" in extensions
        self.vacation_done = False
        self._headers = None
        self._decoded: Dict[str, List[str]] = {}
        self._addresses: Dict[str, List[str]] = {}
        self._folded: Dict[tuple, tuple] = {}
        self._body = None

    # --- commands ----------------------------------------------------------------------------

    def execute(self, script: m.Script) -> Result:
        self._block(script.commands)
        implicit = False
        if self.implicit_keep:
            implicit = self._add(m.Keep(flags=self.flags))      # RFC 5232 §5
        return Result(actions=self.actions, implicit_keep=implicit, notes=self.notes)

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
            if isinstance(cmd, m.SetVariable):
                self._set(cmd)
            elif isinstance(cmd, m.EditFlags):
                self._edit_flags(cmd)
            elif isinstance(cmd, m.VacationCommand):
                self._vacation(cmd)
            else:
                self._action(self._instantiate(cmd))
        return True

    def _instantiate(self, cmd) -> m.Action:
        """The action a compiled command stands for now: strings expanded, flags resolved."""
        if isinstance(cmd, m.Keep):
            return m.Keep(flags=self._flags_argument(cmd.flags))
        if isinstance(cmd, m.FileInto):
            return m.FileInto(mailbox=self._str(cmd.mailbox),
                              flags=self._flags_argument(cmd.flags),
                              copy=cmd.copy, create=cmd.create)
        if isinstance(cmd, m.Redirect):
            return m.Redirect(address=self._str(cmd.address), copy=cmd.copy)
        if isinstance(cmd, m.Reject):
            return m.Reject(reason=self._str(cmd.reason), extended=cmd.extended)
        return cmd

    def _action(self, action: m.Action) -> None:
        delivers = isinstance(action, (m.Keep, m.FileInto, m.Redirect))
        rejected = any(isinstance(a, m.Reject) for a in self.actions)
        if isinstance(action, m.Reject):
            if rejected:
                raise SieveRuntimeError("more than one reject/ereject")
            if any(isinstance(a, (m.Keep, m.FileInto, m.Redirect)) for a in self.actions):
                raise SieveRuntimeError("reject cannot be combined with keep, fileinto "
                                        "or redirect")
            if self.vacation_done:
                raise SieveRuntimeError("reject cannot be combined with vacation")
        elif delivers and rejected:
            raise SieveRuntimeError("reject cannot be combined with keep, fileinto or redirect")
        if isinstance(action, m.Redirect):
            if sum(isinstance(a, m.Redirect) for a in self.actions) >= MAX_REDIRECTS:
                raise SieveRuntimeError("more than %d redirects" % MAX_REDIRECTS)
        if not getattr(action, "copy", False):
            self.implicit_keep = False      # RFC 5228 §2.10.2; RFC 3894 §3 for :copy
        self._add(action)

    def _add(self, action: m.Action) -> bool:
        """Append unless an action with the same target is there (RFC 5228 §2.10.3); the one
        kept then also gets the other's flags."""
        key = _target(action)
        for i, existing in enumerate(self.actions):
            if _target(existing) == key:
                flags = getattr(action, "flags", ())
                if flags:
                    merged = normalise_flags(existing.flags + flags)
                    if merged != existing.flags:
                        self.actions[i] = replace(existing, flags=merged)
                return False
        self.actions.append(action)
        return True

    def _set(self, cmd: m.SetVariable) -> None:
        value = self._str(cmd.value)
        for modifier in cmd.modifiers:                  # RFC 5229 §4.1, in precedence order
            if modifier == ":lower":
                value = value.lower()
            elif modifier == ":upper":
                value = value.upper()
            elif modifier == ":lowerfirst":
                value = value[:1].lower() + value[1:]
            elif modifier == ":upperfirst":
                value = value[:1].upper() + value[1:]
            elif modifier == ":quotewildcard":
                value = _WILDCARD_CHARS.sub(r"\\\g<0>", value)
            elif modifier == ":length":
                value = str(len(value))
            else:
                raise SieveRuntimeError("unknown set modifier %s" % modifier)
        self.variables[cmd.name] = value[:MAX_VARIABLE_SIZE]

    def _edit_flags(self, cmd: m.EditFlags) -> None:
        """RFC 5232 §3: setflag replaces, addflag adds, removeflag removes."""
        given = [self._str(f) for f in cmd.flags]
        if cmd.variable is None:
            current = self.flags
        else:
            current = tuple(self.variables.get(cmd.variable, "").split(" "))
        if cmd.op == "setflag":
            flags = normalise_flags(given)
        elif cmd.op == "addflag":
            flags = normalise_flags(current + tuple(given))
        else:
            gone = {name.lower() for text in given for name in text.split(" ")}
            flags = tuple(f for f in normalise_flags(current) if f.lower() not in gone)
        if cmd.variable is None:
            self.flags = flags
        else:
            self.variables[cmd.variable] = " ".join(flags)[:MAX_VARIABLE_SIZE]

    def _flags_argument(self, flags) -> tuple:
        if flags is None:
            return self.flags                           # RFC 5232 §5
        return normalise_flags(self._str(f) for f in flags)

    def _vacation(self, cmd: m.VacationCommand) -> None:
        if self.vacation_done:
            raise SieveRuntimeError("more than one vacation")           # RFC 5230 §4.8
        if any(isinstance(a, m.Reject) for a in self.actions):
            raise SieveRuntimeError("reject cannot be combined with vacation")
        self.vacation_done = True                   # vacation keeps the implicit keep
        addresses = []
        for text in cmd.addresses:
            addresses.extend(a.lower() for _, a in getaddresses([self._str(text)]) if a)
        from_addr = self._str(cmd.from_addr) if cmd.from_addr is not None else None
        if from_addr is not None:
            parsed = getaddresses([from_addr])
            if len(parsed) != 1 or "@" not in parsed[0][1]:
                # RFC 5230 §4.4: an unusable :from is ignored
                self.notes.append("vacation: ignoring :from %r, not one address" % from_addr)
                from_addr = None
        vacation = m.Vacation(
            reason=self._str(cmd.reason),
            subject=self._str(cmd.subject) if cmd.subject is not None else None,
            from_addr=from_addr,
            addresses=tuple(addresses),
            seconds=cmd.seconds,
            handle=self._str(cmd.handle) if cmd.handle is not None else cmd.default_handle,
            mime=cmd.mime,
            recipient=strip_brackets(self.message.envelope_from))
        why = _vacation.refusal(vacation.recipient, self._raw_values,
                                self._own_addresses(vacation.addresses))
        if why:
            self.notes.append("vacation: no reply: " + why)
        else:
            self.actions.append(vacation)

    def _own_addresses(self, extra: Iterable[str]) -> frozenset:
        own = {a.strip().lower() for a in self.message.user_addresses if a}
        to = strip_brackets(self.message.envelope_to).lower()
        if to:
            own.add(to)
            local, at, domain = to.rpartition("@")
            if at and SUBADDRESS_SEPARATOR in local:
                own.add("%s@%s" % (local.split(SUBADDRESS_SEPARATOR, 1)[0], domain))
        own.update(extra)
        return frozenset(own)

    # --- strings (RFC 5229 §3) -----------------------------------------------------------------

    def _str(self, value: m.Str) -> str:
        if value.__class__ is str:
            return value
        out = []
        room = MAX_EXPANSION
        for part in value.parts:
            if part.__class__ is str:
                out.append(part)
                continue
            name = part.name
            if name[0].isdigit():
                index = int(name) if len(name) < 6 else -1
                text = (self.match_variables[index]
                        if 0 <= index < len(self.match_variables) else "")
            else:
                text = self.variables.get(name, "")
            text = text[:room]
            room -= len(text)
            out.append(text)
        return "".join(out)

    def _strs(self, values) -> list:
        return [self._str(v) for v in values]

    # --- tests -------------------------------------------------------------------------------

    def _test(self, test: m.Test) -> bool:
        # one dict lookup instead of an isinstance chain: a 50-rule script runs ~50 tests a message
        handler = _TESTS.get(test.__class__)
        if handler is None:
            raise SieveRuntimeError("unknown test %r" % (test,))
        return handler(self, test)

    def _header_test(self, test: m.HeaderTest) -> bool:
        return self._match(test.match, *self._values("h", test.headers, test.match.comparator, None))

    def _address_test(self, test: m.AddressTest) -> bool:
        return self._match(test.match, *self._values("a", test.headers, test.match.comparator, test.part))

    def _values(self, kind: str, names, comparator: str, part) -> tuple:
        """``(values, folded values)`` of header fields ``names``: decoded header values
        (kind "h") or address parts (kind "a").  Scripts test the same fields over and over
        (Subject, From, List-Id): with constant names both lists are made once per message."""
        key = (kind, names, comparator, part)
        cached = self._folded.get(key)
        if cached is not None:
            return cached
        if kind == "h":
            values = [v for name in names for v in self._decoded_values(self._str(name))]
        else:
            values = _parts([a for name in names for a in self._address_list(self._str(name))], part)
        result = (values, [_fold(comparator, v) for v in values])
        if all(n.__class__ is str for n in names):
            self._folded[key] = result
        return result

    def _exists_test(self, test: m.ExistsTest) -> bool:
        return all(self._raw_values(self._str(name)) for name in test.headers)

    def _size_test(self, test: m.SizeTest) -> bool:
        size = self.message.size                               # §5.9: strict both ways
        return size > test.limit if test.over else size < test.limit

    def _envelope_test(self, test: m.EnvelopeTest) -> bool:
        return self._match(test.match, self._envelope(test))

    def _hasflag_test(self, test: m.HasFlagTest) -> bool:      # RFC 5232 §4
        if test.variables:
            values = [f for name in test.variables
                      for f in self.variables.get(name, "").split(" ") if f]
        else:
            values = list(self.flags)
        keys = [k for text in self._strs(test.match.keys) for k in text.split(" ") if k]
        return self._match(test.match, values, keys=keys)

    def _string_test(self, test: m.StringTest) -> bool:        # RFC 5229 §5
        return self._match(test.match, self._strs(test.sources))

    def _body_test(self, test: m.BodyTest) -> bool:            # RFC 5173
        body = self._message_body()
        if test.transform == ":raw":
            values = body.raw()
        elif test.transform == ":content":
            values = body.content(self._strs(test.content_types))
        else:
            values = body.text()
        return self._match(test.match, values, sets_variables=False)

    def _match(self, match: m.Match, values: List[str], folded: Optional[List[str]] = None,
               keys=None, sets_variables: bool = True) -> bool:
        groups = None
        if sets_variables and self.sets_match_variables and match.type == ":matches":
            groups = []
        if keys is None:
            folded_keys = match.folded_keys
            if folded_keys is not None and match.type != ":matches":
                # the common case, without a per-message copy or fold of the keys
                if folded is None:
                    folded = [_fold(match.comparator, v) for v in values]
                if match.type == ":is":
                    return any(v == k for k in folded_keys for v in folded)
                if match.type == ":contains":
                    return any(k in v for k in folded_keys for v in folded)
            keys = self._strs(match.keys)
        hit = _matches(match, values, keys, groups, folded)
        if hit and groups:
            self.match_variables = groups           # RFC 5229 §3.2: only on success
        return hit

    def _raw_values(self, name: str) -> List[str]:
        if self._headers is None:
            raw = self.message.raw
            end = body_offset(raw)              # the parser is only given the header block
            parsed = BytesHeaderParser(policy=compat32).parsebytes(
                raw if end is None else raw[:end])
            self._headers = {}
            for field_name, value in parsed.raw_items():   # raw: not wrapped in Header
                self._headers.setdefault(field_name.lower(), []).append(
                    unfold(header_text(value)))
        return self._headers.get(name.lower(), [])

    def _decoded_values(self, name: str) -> List[str]:
        key = name.lower()
        values = self._decoded.get(key)
        if values is None:
            values = self._decoded[key] = [decode_words(v) for v in self._raw_values(key)]
        return values

    def _address_list(self, name: str) -> List[str]:
        key = name.lower()
        addresses = self._addresses.get(key)
        if addresses is None:
            addresses = self._addresses[key] = [
                address for _, address in getaddresses(self._raw_values(key)) if address]
        return addresses

    def _message_body(self) -> MessageBody:
        if self._body is None:
            self._body = MessageBody(self.message.raw)
        return self._body

    def _envelope(self, test: m.EnvelopeTest) -> List[str]:
        values = []
        for part in test.parts:
            part = self._str(part).lower()
            if part == "from":
                address = strip_brackets(self.message.envelope_from)
                if not address:
                    # RFC 5228 §5.4: a null reverse-path matches as "" whatever the part
                    values.append("")
                    continue
            elif part == "to":
                address = strip_brackets(self.message.envelope_to)
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


_SYSTEM_FLAGS = {f.lower(): f for f in
                 ("\\Seen", "\\Answered", "\\Flagged", "\\Deleted", "\\Draft")}
# RFC 3501 §9: atom-specials are "(" ")" "{" SP CTL "%" "*" DQUOTE "\" "]"
_FLAG_KEYWORD = re.compile(r'[^(){ %*"\\\]\x00-\x1f\x7f-\U0010ffff]+')
_WILDCARD_CHARS = re.compile(r"[*?\\]")


def normalise_flags(texts: Iterable[str]) -> tuple:
    """RFC 5232 §2: the flags named in ``texts`` (each a space-separated list), normalised as
    described in the module docstring."""
    out = []
    seen = set()
    for text in texts:
        for name in text.split(" "):
            if not name:
                continue
            if name.startswith("\\"):
                name = _SYSTEM_FLAGS.get(name.lower())
                if name is None:        # \Recent and unknown system flags cannot be set
                    continue
            elif not _FLAG_KEYWORD.fullmatch(name):
                continue
            key = name.lower()
            if key not in seen and len(out) < MAX_FLAGS:
                seen.add(key)
                out.append(name)
    return tuple(out)


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


_ASCII_LOWER = m.ASCII_LOWER
_COMPARATORS = ("i;ascii-casemap", "i;octet")


def _fold(comparator: str, text: str) -> str:
    # RFC 4790 §9.2: i;ascii-casemap folds A-Z only, so folding keeps every index in place
    return text.translate(_ASCII_LOWER) if comparator == "i;ascii-casemap" else text


def _matches(match: m.Match, values: List[str], keys: List[str],
             groups: Optional[list] = None, folded: Optional[List[str]] = None) -> bool:
    """True if any value matches any key (RFC 5228 §2.7.1). For a :matches hit, ``groups``
    (when given) receives the match variables: the value, then one string per wildcard.
    ``folded``: ``values`` already folded by the comparator."""
    comparator = match.comparator
    if comparator not in _COMPARATORS:
        raise SieveRuntimeError("unknown comparator %s" % comparator)
    if folded is None:
        folded = [_fold(comparator, v) for v in values]
    for key in keys:
        if match.type == ":is":
            key = _fold(comparator, key)
            hit = any(v == key for v in folded)
        elif match.type == ":contains":
            key = _fold(comparator, key)
            hit = any(key in v for v in folded)
        elif match.type == ":matches":
            pattern = _pattern(key, comparator, True)
            for index, value in enumerate(folded):
                if _glob(pattern, value):
                    if groups is not None:
                        groups[:] = _captures(_pattern(key, comparator, False),
                                              values[index], value)
                    return True
            hit = False
        else:
            raise SieveRuntimeError("unknown match type %s" % match.type)
        if hit:
            return True
    return False


_STAR = object()
_ANY = object()


def _pattern(key: str, comparator: str, collapse: bool) -> tuple:
    """RFC 5228 §2.7.1: "*" any run, "?" one character, "\\" makes the next one literal.
    ``collapse`` merges runs of "*" (same matches, fewer steps); captures need each star.
    Keys as written in scripts are short and repeat across messages: those are cached."""
    if len(key) <= 256:
        return _cached_pattern(key, comparator, collapse)
    return _tokens(key, comparator, collapse)


@functools.lru_cache(maxsize=4096)
def _cached_pattern(key: str, comparator: str, collapse: bool) -> tuple:
    return _tokens(key, comparator, collapse)


def _tokens(key: str, comparator: str, collapse: bool) -> tuple:
    tokens = []
    chars = iter(key)
    for c in chars:
        if c == "\\":
            c = next(chars, "\\")
            tokens.append(_fold(comparator, c))
        elif c == "*":
            if not (collapse and tokens and tokens[-1] is _STAR):
                tokens.append(_STAR)
        elif c == "?":
            tokens.append(_ANY)
        else:
            tokens.append(_fold(comparator, c))
    return tuple(tokens)


def _glob(pattern: tuple, value: str) -> bool:
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


def _captures(pattern: tuple, original: str, folded: str) -> List[str]:
    """Match variables of a successful match (RFC 5229 §3.2): the value, then what each
    wildcard took, each "*" as short as the rest of the pattern allows.

    The runs of pattern between stars are placed at their earliest positions, the last run
    at the end: when the whole pattern matches, that placement matches too, and it gives
    every star its shortest share. Memory stays O(1) beside the value; literal runs are found
    with str.find, runs with "?" with a plain (quantifier-free) regex."""
    runs = [[]]
    for token in pattern:
        if token is _STAR:
            runs.append([])
        else:
            runs[-1].append(token)
    starts = [0]
    end = len(runs[0])
    for run_ in runs[1:-1]:
        found = _find_run(run_, folded, end)
        if found < 0:                   # cannot happen after _glob said yes; stay safe
            return [original[:MAX_VARIABLE_SIZE]]
        starts.append(found)
        end = found + len(run_)
    if len(runs) > 1:
        starts.append(len(folded) - len(runs[-1]))
    groups = [original[:MAX_VARIABLE_SIZE]]
    for index, run_ in enumerate(runs):
        if index:
            previous_end = starts[index - 1] + len(runs[index - 1])
            groups.append(original[previous_end:starts[index]][:MAX_VARIABLE_SIZE])
        groups.extend(original[starts[index] + offset]
                      for offset, token in enumerate(run_) if token is _ANY)
    return groups


def _find_run(run_: list, text: str, start: int) -> int:
    if not any(token is _ANY for token in run_):
        return text.find("".join(run_), start)
    regex = re.compile("".join("." if token is _ANY else re.escape(token) for token in run_),
                       re.DOTALL)
    found = regex.search(text, start)
    return found.start() if found else -1


_TESTS = {
    m.HeaderTest: _Run._header_test,
    m.AddressTest: _Run._address_test,
    m.ConstTest: lambda run, test: test.value,
    m.Not: lambda run, test: not run._test(test.test),
    m.AllOf: lambda run, test: all(run._test(t) for t in test.tests),   # short-circuit, §5.2
    m.AnyOf: lambda run, test: any(run._test(t) for t in test.tests),
    m.SizeTest: _Run._size_test,
    m.ExistsTest: _Run._exists_test,
    m.EnvelopeTest: _Run._envelope_test,
    m.HasFlagTest: _Run._hasflag_test,
    m.StringTest: _Run._string_test,
    m.BodyTest: _Run._body_test,
}
