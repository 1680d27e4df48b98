"""Fuzz-style: no RecursionError (nor any other exception) reaches a ManageSieve client.  Deeply
nested, random, truncated and mutated Sieve scripts (seeded, tests/fuzz.py) go to the compiler
directly (SieveError, nothing else) and over the wire in CHECKSCRIPT/PUTSCRIPT to a real
``haven serve`` (both engines); random command lines follow.  Every one is answered OK or NO
and the session still serves the next command."""

from __future__ import annotations

import random

from formats.sieve import SieveError, compile_script
from gateways.managesieve.parser import Frame, ParseError, parse_command
from tests.fuzz import cases
from .wire import Sieve, literal

VALID = [b'require ["fileinto", "imap4flags", "vacation"];\n'
         b'if anyof (header :contains "subject" "x", not address :is "from" "a@b.c") {\n'
         b'  fileinto "Junk"; addflag "\\\\Seen"; stop;\n} elsif size :over 10K { discard; }\n'
         b'else { vacation :days 3 :subject "away" "text"; }\n',
         b'if allof (exists ["to", "cc"], header :matches "subject" "*[x]*") { keep; }\n',
         b'require "body"; if body :text :contains ["a", "b"] { redirect "x@example.org"; }\n']
NESTS = [(b"", b"if true {", b"}", b"keep;"), (b"if ", b"allof(", b")", b"true"),
         (b"if ", b"anyof(not ", b")", b"false"), (b"if ", b"not ", b"", b"true { keep; }"),
         (b"", b"{", b"}", b""), (b"", b"(", b")", b""), (b'if header "a" ', b"[", b"]", b'"x"')]
TOKENS = [b"if ", b"elsif ", b"else ", b"{", b"}", b"(", b")", b"[", b"]", b",", b";", b"not ", b"allof",
          b"anyof", b"true", b"false", b'"x"', b"keep", b"fileinto ", b":is ", b"text:\n", b"\n.\n", b"#c\n",
          b"/*", b"*/", b"\\", b'"', b" "]

COMMANDS = [b"CAPABILITY", b"LISTSCRIPTS", b"HAVESPACE", b"GETSCRIPT", b"SETACTIVE", b"DELETESCRIPT",
            b"RENAMESCRIPT", b"CHECKSCRIPT", b"NOOP", b"XYZZY", b""]
ARG_TOKENS = [b'"a"', b'"', b"\\", b" ", b"(", b")", b"{", b"}", b"+", b"12", b"4294967296", b"abc", b'"\\"',
              b"\xff", b"*"]


def sieve_cases(seed: int, n: int = 300) -> list:
    return cases(random.Random(seed), VALID, NESTS, TOKENS, n)


def test_compiler_answers_every_case_with_a_script_or_a_sieve_error():
    for script in sieve_cases(5228, 400):
        if len(script) > 65536:
            continue  # past [rules] max_script_size nothing compiles it (the wire test sends some)
        try:
            compile_script(script.decode("utf-8", "replace"))
        except SieveError:
            pass
        try:
            compile_script(script)  # as bytes (ManageSieve hands the literal over as it came)
        except SieveError:
            pass


def command_lines(seed: int, n: int = 200) -> list:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        args = b"".join(rng.choice(ARG_TOKENS) for _ in range(rng.randrange(0, 12)))
        if rng.random() < 0.2:
            args = b"(" * rng.choice((50, 5000)) + args
        line = rng.choice(COMMANDS) + b" " + args
        # no literal announced at the end of a line (its bytes would be the next line)
        out.append(line.replace(b"\r", b"").replace(b"\n", b"").rstrip(b"}") or b"NOOP")
    return out


def test_parser_answers_random_command_lines():
    for line in command_lines(5804, 300):
        try:
            parse_command(Frame((line,), None))
        except ParseError:
            pass


def test_fuzzed_scripts_and_commands_over_the_wire(haven):
    user, password = haven.new_user("sievefuzz")
    statuses = {}
    with Sieve(haven.managesieve) as s:
        assert s.login(user, password).ok
        for i, script in enumerate(sieve_cases(4190, 250)):
            verb = b'PUTSCRIPT "fuzz%d" ' % (i % 3) if i % 2 else b"CHECKSCRIPT "
            r = s.cmd(verb + literal(script))
            word = r.status.split(b" ", 1)[0].upper()
            assert word in (b"OK", b"NO"), (script[:100], r.status)
            assert b"RecursionError" not in r.status and b"Traceback" not in r.status
            statuses[word] = statuses.get(word, 0) + 1
        assert s.cmd("NOOP").ok and s.cmd("LISTSCRIPTS").ok
    byes = 0
    s = Sieve(haven.managesieve)
    assert s.login(user, password).ok
    try:
        for line in command_lines(5804):
            if not line.strip():  # a blank line is ignored, unanswered (parser.parse_command)
                s.send(line + b"\r\n")
                line = b"NOOP"
            r = s.cmd(line)
            word = r.status.split(b" ", 1)[0].upper()
            if word == b"BYE":  # too many invalid commands in a row: a protocol answer, then a new session
                assert b"Too many invalid commands" in r.status, r.status
                byes += 1
                s.close()
                s = Sieve(haven.managesieve)
                assert s.login(user, password).ok
                continue
            assert word in (b"OK", b"NO"), (line[:100], r.status)
        assert s.cmd("NOOP").ok and s.cmd("LISTSCRIPTS").ok
    finally:
        s.close()
    assert statuses.get(b"NO", 0) > 100 and statuses.get(b"OK", 0) > 0
    assert "RecursionError" not in haven.log()
