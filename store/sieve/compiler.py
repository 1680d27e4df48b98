"""Sieve text -> :class:`store.sieve.model.Script`, through sievelib's parser.

sievelib checks the grammar, argument types and that an extension's commands and tags are
only used after ``require``. This module then refuses extensions we do not implement, checks
what sievelib does not (require placement, a missing final ';'), unquotes strings and turns
the tree into frozen dataclasses so that run() never touches sievelib objects.

sievelib 1.6 lacks two things we need; they are added through its documented hook
``sievelib.commands.add_commands`` (it only adds/replaces entries in sievelib's command
table, idempotently, at import of this module): the ``ereject`` command (RFC 5429) and the
``:user`` / ``:detail`` address parts (RFC 5233), allowed only after ``require "subaddress"``.
"""
from __future__ import annotations

import re

from sievelib import commands as _sc
from sievelib.parser import Parser

from store.sieve import SieveError
from store.sieve import model as m

#: extensions a script may ``require`` (RFC 5228 §3.2)
SUPPORTED_EXTENSIONS = frozenset({
    "fileinto", "envelope", "reject", "ereject", "copy", "mailbox", "subaddress",
    "comparator-i;octet", "comparator-i;ascii-casemap",
})
#: extensions planned but not implemented yet: refused with "not supported yet"
LATER_EXTENSIONS = frozenset({"imap4flags", "body", "variables", "vacation"})

DEFAULT_COMPARATOR = "i;ascii-casemap"       # RFC 5228 §2.7.3

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


_sc.add_commands([AddressCommand, EnvelopeCommand, ErejectCommand])

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
        raise SieveError("line %d: missing ';' at end of script" % (text.count("\n") + 1))
    extensions = _check_requires(parser.result, text)
    return m.Script(commands=_block(parser.result), extensions=extensions)


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
        for ext in _strings(cmd.arguments["capabilities"]):
            line = _line_of(text, '"%s"' % ext)
            if ext in LATER_EXTENSIONS:
                raise SieveError('line %d: extension "%s" is not supported yet' % (line, ext))
            if ext not in SUPPORTED_EXTENSIONS:
                raise SieveError('line %d: unsupported extension "%s"' % (line, ext))
            extensions.add(ext)
    return frozenset(extensions)


def _block(commands) -> tuple:
    out = []
    for cmd in commands:
        name = cmd.name
        if name == "require":
            continue
        if name == "if":
            out.append([(_test(cmd.arguments["test"]), _block(cmd.children))])
        elif name in ("elsif", "else"):
            # sievelib enforces that these follow an if/elsif of the same block
            test = _test(cmd.arguments["test"]) if name == "elsif" else None
            out[-1].append((test, _block(cmd.children)))
        else:
            out.append(_action(cmd))
    return tuple(m.If(branches=tuple(c)) if isinstance(c, list) else c for c in out)


def _action(cmd):
    args = cmd.arguments
    name = cmd.name
    if name == "keep":
        return m.Keep()
    if name == "discard":
        return m.Discard()
    if name == "stop":
        return m.Stop()
    if name == "fileinto":
        return m.FileInto(mailbox=_string(args["mailbox"]), copy="copy" in args,
                          create="create" in args)
    if name == "redirect":
        return m.Redirect(address=_string(args["address"]), copy="copy" in args)
    if name in ("reject", "ereject"):
        return m.Reject(reason=_string(args["text"]), extended=name == "ereject")
    raise SieveError("command %s is not supported" % name)


def _test(cmd):
    args = cmd.arguments
    name = cmd.name
    if name in ("true", "false"):
        return m.ConstTest(name == "true")
    if name == "not":
        return m.Not(_test(args["test"]))
    if name in ("allof", "anyof"):
        tests = tuple(_test(t) for t in args["tests"])
        return m.AllOf(tests) if name == "allof" else m.AnyOf(tests)
    if name == "exists":
        return m.ExistsTest(_strings(args["header-names"]))
    if name == "size":
        return m.SizeTest(over=args["comparator"].lower() == ":over",
                          limit=_number(args["limit"]))
    if name == "header":
        return m.HeaderTest(_strings(args["header-names"]), _match(cmd))
    if name == "address":
        return m.AddressTest(_strings(args["header-list"]), _address_part(cmd), _match(cmd))
    if name == "envelope":
        parts = tuple(p.lower() for p in _strings(args["header-list"]))
        return m.EnvelopeTest(parts, _address_part(cmd), _match(cmd))
    raise SieveError("test %s is not supported" % name)


def _match(cmd) -> m.Match:
    comparator = cmd.extra_arguments.get("comparator")
    return m.Match(type=cmd.arguments.get("match-type", ":is").lower(),
                   comparator=_string(comparator) if comparator else DEFAULT_COMPARATOR,
                   keys=_strings(cmd.arguments["key-list"]))


def _address_part(cmd) -> str:
    return cmd.arguments.get("address-part", ":all").lower()   # RFC 5228 §2.7.4


_QUANTIFIERS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}   # RFC 5228 §2.4.1


def _number(value: str) -> int:
    found = re.fullmatch(r"(\d+)([kKmMgG]?)", value)
    if not found:
        raise SieveError("bad number %r" % value)
    return int(found.group(1)) * _QUANTIFIERS[found.group(2).lower()]


def _strings(value) -> tuple:
    return tuple(_string(v) for v in (value if isinstance(value, list) else [value]))


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
