"""Sieve text -> :class:`formats.sieve.model.Script`, through sievelib's parser.

sievelib checks the grammar, argument types and that an extension's commands and tags are
only used after ``require``. This module then refuses extensions we do not implement, checks
what sievelib does not (require placement, a missing final ';', variable names, :days with
:seconds), unquotes strings, turns strings with variable references into Templates (RFC 5229
§3) and the tree into frozen dataclasses so that run() never touches sievelib objects.

sievelib 1.6 lacks a few things we need; they are added through its documented hook
``sievelib.commands.add_commands`` (it only adds/replaces entries in sievelib's command
table, idempotently, at import of this module): the ``ereject`` command (RFC 5429), the
``:user`` / ``:detail`` address parts (RFC 5233), allowed only after ``require "subaddress"``,
and the ``string`` test (RFC 5229 §5).

Strings that are names, not text, are never expanded and must be constant: capabilities in
``require``, comparator names, the variable name of ``set`` and the variable names of
setflag/addflag/removeflag/hasflag (RFC 5229 §4, RFC 5232 §3).
"""
from __future__ import annotations

import hashlib
import re

from sievelib import commands as _sc
from sievelib.parser import Parser

from formats.sieve import SieveError
from formats.sieve import model as m

#: extensions a script may ``require`` (RFC 5228 §3.2)
SUPPORTED_EXTENSIONS = frozenset({
    "fileinto", "envelope", "reject", "ereject", "copy", "mailbox", "subaddress",
    "comparator-i;octet", "comparator-i;ascii-casemap",
    "imap4flags", "body", "variables", "vacation", "vacation-seconds",
})
#: extensions planned but not implemented yet: refused with "not supported yet"
LATER_EXTENSIONS = frozenset()

DEFAULT_COMPARATOR = "i;ascii-casemap"       # RFC 5228 §2.7.3

#: RFC 5229 §6 asks for at least 128 distinct variables; more is a compile error
MAX_VARIABLES = 256

#: blocks (if/elsif/else) and tests (not, allof, anyof) nested deeper than this are a compile
#: error.  RFC 5228 sets no limit; an unbounded one lets one script exhaust the stack of every
#: delivery to its account.  Real filters nest a handful of levels.
MAX_NESTING = 32

# RFC 5230 §4.1 / RFC 6131 §2: the reply period, clamped to the site's limits
VACATION_DEFAULT_DAYS = 7
VACATION_MIN_DAYS = 1                        # RFC 5230 §4.1: ":days" is at least 1
VACATION_MIN_SECONDS = 60                    # ":seconds 0" would mean "reply every time"
VACATION_MAX_SECONDS = 365 * 86400

# --- sievelib additions ----------------------------------------------------------------------

_ADDRESS_PART = dict(_sc.address_part,
                     extension_values={":user": "subaddress", ":detail": "subaddress"})


def _with_subaddress(args_definition):
    return [_ADDRESS_PART if arg.get("name") == "address-part" else arg
            for arg in args_definition]


class AddressCommand(_sc.AddressCommand):
    args_definition = _with_subaddress(_sc.AddressCommand.args_definition)


class EnvelopeCommand(_sc.EnvelopeCommand):
    args_definition = _with_subaddress(_sc.EnvelopeCommand.args_definition)


class ErejectCommand(_sc.RejectCommand):
    extension = "ereject"


class StringCommand(_sc.TestCommand):
    """RFC 5229 §5: string [MATCH-TYPE] [COMPARATOR] <source: string-list> <key-list>."""
    extension = "variables"
    args_definition = [
        _sc.comparator,
        _sc.match_type,
        {"name": "source", "type": ["string", "stringlist"], "required": True},
        {"name": "key-list", "type": ["string", "stringlist"], "required": True},
    ]


_sc.add_commands([AddressCommand, EnvelopeCommand, ErejectCommand, StringCommand])

# --- compile ---------------------------------------------------------------------------------


def compile_script(text: str) -> m.Script:
    """Parse and check a Sieve script. Raises SieveError("line N: reason")."""
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError:
            raise SieveError("line 1: script is not UTF-8") from None   # RFC 5228 §2.2
    parser = Parser()           # a fresh one: Parser.error survives a later successful parse
    if not parser.parse(text):
        raise SieveError(parser.error)
    if getattr(parser, "_Parser__curcommand", None) is not None:
        # sievelib silently drops a last command that lacks its ';'
        # the line of the last thing written, not the empty line after a final newline
        raise SieveError("line %d: missing ';' at end of script" % (text.rstrip().count("\n") + 1))
    extensions = _check_requires(parser.result, text)
    try:
        commands = _Compiler(text, extensions).block(parser.result)
    except RecursionError:  # MAX_NESTING keeps the compiler far from the stack's end; never a crash
        raise SieveError("line %d: the script is nested too deeply" % _deepest_line(text)) from None
    return m.Script(commands=commands, extensions=extensions)


def _deepest_line(text: str) -> int:
    """The line where ``(`` and ``{`` nest deepest, outside strings and comments (for the
    nesting error: sievelib's tree carries no line numbers)."""
    depth = deepest = 0
    line = best = 1
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c == "\n":
            line += 1
        elif c == '"':  # a quoted string; \" and \\ escape
            i += 1
            while i < n and text[i] != '"':
                if text[i] == "\\":
                    i += 1
                elif text[i] == "\n":
                    line += 1
                i += 1
        elif c == "#":
            while i < n and text[i] != "\n":
                i += 1
            continue
        elif text.startswith("/*", i):
            end = text.find("*/", i + 2)
            end = n if end < 0 else end + 2
            line += text.count("\n", i, end)
            i = end
            continue
        elif text.startswith("text:", i):  # a multi-line string ends with a line holding "."
            end = re.compile(r"\r?\n\.\r?\n").search(text, i)
            end = n if end is None else end.end()
            line += text.count("\n", i, end)
            i = end
            continue
        elif c in "({":
            depth += 1
            if depth > deepest:
                deepest, best = depth, line
        elif c in ")}":
            depth -= 1
        i += 1
    return best


def _line_of(text: str, needle: str) -> int:
    pos = text.find(needle)
    return text.count("\n", 0, pos) + 1 if pos >= 0 else 1


def _check_requires(commands, text: str) -> frozenset:
    extensions = set()
    seen_other = False
    for cmd in commands:
        if cmd.name != "require":
            seen_other = True
            continue
        if seen_other:
            # RFC 5228 §3.2: require only before any other command
            raise SieveError("line %d: require must come before any other command"
                             % _line_of(text, "require"))
        for ext in (_string(t) for t in _tokens(cmd.arguments["capabilities"])):
            line = _line_of(text, '"%s"' % ext)
            if ext in LATER_EXTENSIONS:
                raise SieveError('line %d: extension "%s" is not supported yet' % (line, ext))
            if ext not in SUPPORTED_EXTENSIONS:
                raise SieveError('line %d: unsupported extension "%s"' % (line, ext))
            extensions.add(ext)
    return frozenset(extensions)


_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")                  # RFC 5228 §8.1
# RFC 5229 §3: variable-ref = "${" [namespace] variable-name "}"
_REFERENCE = re.compile(r"\$\{([^${}]*)\}")
_VARIABLE_NAME = re.compile(r"[0-9]+|[A-Za-z_][A-Za-z0-9_]*")
_NAMESPACED = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\.(?:[0-9]+|[A-Za-z_][A-Za-z0-9_]*))+")


class _Compiler:
    """Turns sievelib's tree into model objects; knows the script's text (for line numbers)
    and whether strings hold variable references."""

    def __init__(self, text: str, extensions: frozenset):
        self.text = text
        self.variables = "variables" in extensions
        self.names = set()          # variables the script can write
        self.depth = 0              # blocks and tests around the one being compiled

    def _nested(self, compile_one, node):
        """``compile_one(node)`` one level deeper; past MAX_NESTING a SieveError with its line."""
        self.depth += 1
        if self.depth > MAX_NESTING:
            raise SieveError("line %d: blocks and tests nested more than %d deep"
                             % (_deepest_line(self.text), MAX_NESTING))
        try:
            return compile_one(node)
        finally:
            self.depth -= 1

    def block(self, commands) -> tuple:
        out = []
        for cmd in commands:
            name = cmd.name
            if name == "require":
                continue
            if name == "if":
                out.append([(self.test(cmd.arguments["test"]), self._nested(self.block, cmd.children))])
            elif name in ("elsif", "else"):
                # sievelib enforces that these follow an if/elsif of the same block
                test = self.test(cmd.arguments["test"]) if name == "elsif" else None
                out[-1].append((test, self._nested(self.block, cmd.children)))
            else:
                out.append(self.action(cmd))
        if len(self.names) > MAX_VARIABLES:
            raise SieveError("line %d: more than %d variables"
                             % (self.text.count("\n") + 1, MAX_VARIABLES))
        return tuple(m.If(branches=tuple(c)) if isinstance(c, list) else c for c in out)

    # --- actions ---------------------------------------------------------------------------------

    def action(self, cmd):
        args = cmd.arguments
        extra = cmd.extra_arguments
        name = cmd.name
        if name == "keep":
            return m.Keep(flags=self.flags_argument(cmd))
        if name == "discard":
            return m.Discard()
        if name == "stop":
            return m.Stop()
        if name == "fileinto":
            return m.FileInto(mailbox=self.string(args["mailbox"]),
                              flags=self.flags_argument(cmd),
                              copy="copy" in args, create="create" in args)
        if name == "redirect":
            return m.Redirect(address=self.string(args["address"]), copy="copy" in args)
        if name in ("reject", "ereject"):
            return m.Reject(reason=self.string(args["text"]), extended=name == "ereject")
        if name in ("setflag", "addflag", "removeflag"):
            variable = None
            if "variable-name" in args:
                # RFC 5232 §3: the variable-name form exists only with "variables"
                variable = self.variable_name(args["variable-name"], name)
            return m.EditFlags(op=name, flags=self.strings(args["list-of-flags"]),
                               variable=variable)
        if name == "set":
            # RFC 5229 §4.1: precedence 40 (:lower/:upper), 30 (:lowerfirst/:upperfirst),
            # 20 (:quotewildcard), 10 (:length); sievelib refuses two of the same level
            modifiers = tuple(args[k].lower() for k in ("case", "first-case", "quotewildcard",
                                                        "length") if k in args)
            if "encoding" in args:
                raise SieveError("line %d: set modifier %s is not supported"
                                 % (_line_of(self.text, args["encoding"]), args["encoding"]))
            return m.SetVariable(name=self.variable_name(args["name"], "set"),
                                 value=self.string(args["value"]), modifiers=modifiers)
        if name == "vacation":
            return self.vacation(cmd, args, extra)
        raise SieveError("command %s is not supported" % name)

    def flags_argument(self, cmd):
        """RFC 5232 §5: None when :flags is absent (the internal variable applies)."""
        if "flags" not in cmd.arguments:
            return None
        return self.strings(cmd.extra_arguments["flags"])

    def vacation(self, cmd, args, extra) -> m.VacationCommand:
        if "days" in args and "seconds" in args:
            # RFC 6131 §2: :seconds replaces :days
            raise SieveError("line %d: vacation takes :days or :seconds, not both"
                             % _line_of(self.text, ":seconds"))
        if "seconds" in args:
            seconds = max(VACATION_MIN_SECONDS, _number(extra["seconds"]))
        else:
            days = _number(extra["days"]) if "days" in args else VACATION_DEFAULT_DAYS
            seconds = max(VACATION_MIN_DAYS, days) * 86400
        seconds = min(seconds, VACATION_MAX_SECONDS)
        reason = _string(args["reason"])
        subject = _string(extra["subject"]) if "subject" in args else None
        from_addr = _string(extra["from"]) if "from" in args else None
        mime = "mime" in args
        # RFC 5230 §4.2: without :handle, replies count as "the same vacation" when reason,
        # :subject, :from and :mime are the same, as written (before variable expansion)
        digest = hashlib.sha256("\0".join(
            (reason, subject or "", from_addr or "", "mime" if mime else "")).encode("utf-8"))
        return m.VacationCommand(
            reason=self.template(reason),
            subject=self.template(subject) if subject is not None else None,
            from_addr=self.template(from_addr) if from_addr is not None else None,
            addresses=self.strings(extra["addresses"]) if "addresses" in args else (),
            seconds=seconds,
            handle=self.string(extra["handle"]) if "handle" in args else None,
            default_handle=digest.hexdigest(),
            mime=mime)

    # --- tests -----------------------------------------------------------------------------------

    def test(self, cmd):
        args = cmd.arguments
        name = cmd.name
        if name in ("true", "false"):
            return m.ConstTest(name == "true")
        if name == "not":
            return m.Not(self._nested(self.test, args["test"]))
        if name in ("allof", "anyof"):
            tests = tuple(self._nested(self.test, t) for t in args["tests"])
            return m.AllOf(tests) if name == "allof" else m.AnyOf(tests)
        if name == "exists":
            return m.ExistsTest(self.strings(args["header-names"]))
        if name == "size":
            return m.SizeTest(over=args["comparator"].lower() == ":over",
                              limit=_number(args["limit"]))
        if name == "header":
            return m.HeaderTest(self.strings(args["header-names"]), self.match(cmd))
        if name == "address":
            return m.AddressTest(self.strings(args["header-list"]), _address_part(cmd),
                                 self.match(cmd))
        if name == "envelope":
            parts = tuple(p.lower() if isinstance(p, str) else p
                          for p in self.strings(args["header-list"]))
            return m.EnvelopeTest(parts, _address_part(cmd), self.match(cmd))
        if name == "hasflag":
            variables = ()
            if "variable-list" in args:
                variables = tuple(self.variable_name(v, "hasflag")
                                  for v in _tokens(args["variable-list"]))
            return m.HasFlagTest(variables, self.match(cmd, "list-of-flags"))
        if name == "string":
            return m.StringTest(self.strings(args["source"]), self.match(cmd))
        if name == "body":
            transform = args.get("body-transform", ":text").lower()     # RFC 5173 §5
            types = ()
            if transform == ":content":
                types = self.strings(cmd.extra_arguments["body-transform"])
            return m.BodyTest(transform, types, self.match(cmd))
        raise SieveError("test %s is not supported" % name)

    def match(self, cmd, keys: str = "key-list") -> m.Match:
        comparator = cmd.extra_arguments.get("comparator")
        return m.Match(type=cmd.arguments.get("match-type", ":is").lower(),
                       comparator=_string(comparator) if comparator else DEFAULT_COMPARATOR,
                       keys=self.strings(cmd.arguments[keys]))

    # --- strings ---------------------------------------------------------------------------------

    def string(self, token: str) -> m.Str:
        return self.template(_string(token))

    def strings(self, value) -> tuple:
        return tuple(self.string(t) for t in _tokens(value))

    def template(self, text: str) -> m.Str:
        """RFC 5229 §3: with "variables", "${name}" and "${N}" are expanded at run time.
        Escapes were already processed, so "\\${x}" in a script still expands (§3). A
        "${...}" that is not a valid reference stays literal text; one with a namespace
        ("${env.x}") is an error since no namespace extension is supported."""
        if not self.variables or "${" not in text:
            return text
        parts = []
        pos = 0
        for found in _REFERENCE.finditer(text):
            inner = found.group(1)
            if _VARIABLE_NAME.fullmatch(inner):
                name = (inner.lstrip("0") or "0") if inner.isdigit() else inner.lower()
                parts.append(text[pos:found.start()])
                parts.append(m.VariableRef(name))
                pos = found.end()
            elif _NAMESPACED.fullmatch(inner):
                raise SieveError('line %d: unknown variable namespace in "${%s}"'
                                 % (_line_of(self.text, "${" + inner), inner))
        if not parts:
            return text
        parts.append(text[pos:])
        return m.Template(parts=tuple(p for p in parts if p != ""), text=text)

    def variable_name(self, token: str, command: str) -> str:
        """A constant variable name (RFC 5229 §4: "MUST be a constant string and conform to
        the syntax of identifier"), lower-cased: names are case-insensitive."""
        name = _string(token)
        line = _line_of(self.text, token)
        if not self.variables:
            raise SieveError('line %d: %s with a variable name needs require "variables"'
                             % (line, command))
        if not _IDENTIFIER.fullmatch(name):
            raise SieveError('line %d: bad variable name "%s"' % (line, name))
        self.names.add(name.lower())
        return name.lower()


def _address_part(cmd) -> str:
    return cmd.arguments.get("address-part", ":all").lower()   # RFC 5228 §2.7.4


_QUANTIFIERS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}   # RFC 5228 §2.4.1


def _number(value: str) -> int:
    found = re.fullmatch(r"(\d+)([kKmMgG]?)", value)
    if not found:
        raise SieveError("bad number %r" % value)
    return int(found.group(1)) * _QUANTIFIERS[found.group(2).lower()]


def _tokens(value) -> list:
    """sievelib gives a string-list as a list and a single string as itself."""
    return value if isinstance(value, list) else [value]


_ESCAPE = re.compile(r"\\(.)", re.DOTALL)


def _string(token: str) -> str:
    """Unquote one sievelib string token: "quoted" or text: multi-line."""
    if token.startswith('"'):
        return _ESCAPE.sub(r"\1", token[1:-1])          # RFC 5228 §2.4.2: \x -> x
    # multi-line (RFC 5228 §2.4.2): "text:" line, then lines up to a lone ".";
    # a line starting with ".." loses one dot
    body = token.split("\n", 1)[1] if "\n" in token else ""
    lines = body.splitlines(keepends=True)
    if lines and lines[-1].rstrip("\r\n") == ".":
        lines.pop()
    return "".join(line[1:] if line.startswith("..") else line for line in lines)
