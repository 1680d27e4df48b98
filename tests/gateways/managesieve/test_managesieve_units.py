"""The ManageSieve gateway's pure parts: framing with literals and limits, argument parsing,
SASL payloads, reply encoding, the [managesieve] settings, the import rule.  No server needed."""

from __future__ import annotations

import base64
import random

import pytest

from gateways.managesieve import SCRIPT_LITERAL_SLACK, ManageSieveConfig
from gateways.managesieve.parser import (Atom, Frame, Framer, Literal, ParseError, Rejected, decode_sasl_plain,
                                         parse_args, parse_command, parse_number)
from gateways.managesieve.response import capability_lines, literal, reply, string
from gateways.common.errors import StartupError


def framer(max_line=100, script=1000):
    return Framer(max_line, lambda name: script if name in ("PUTSCRIPT", "CHECKSCRIPT") else max_line)


def command(data: bytes):
    events = framer().feed(data)
    assert len(events) == 1 and isinstance(events[0], Frame), events
    return parse_command(events[0])


def test_framer_lines_and_literals_in_pieces():
    f = framer()
    stream = b'PUTSCRIPT "a" {7+}\r\nkeep;\r\n\r\nCHECKSCRIPT {5}\r\nabcde\r\nNOOP\nLOGOUT\r\n'
    events = []
    for i in range(len(stream)):  # one octet at a time: nothing depends on read sizes
        events += f.feed(stream[i:i + 1])
    assert events == [
        Frame((b'PUTSCRIPT "a" ', Literal(b"keep;\r\n"), b""), "PUTSCRIPT"),
        Frame((b"CHECKSCRIPT ", Literal(b"abcde"), b""), "CHECKSCRIPT"),
        Frame((b"NOOP",), "NOOP"),
        Frame((b"LOGOUT",), "LOGOUT"),
    ]
    assert f.idle


def test_framer_several_literals_and_empty_ones():
    events = framer().feed(b"RENAMESCRIPT {1+}\r\na {0+}\r\n\r\n")
    assert parse_command(events[0]).args == (b"a", b"")
    assert framer().feed(b"{4+}\r\nabcd\r\n") == [Frame((b"", Literal(b"abcd"), b""), None)]


def test_framer_refuses_a_big_literal_and_stays_in_step():
    f = framer(script=10)
    # the refused literal holds command lines; they and the rest of the command are skipped
    events = f.feed(b'PUTSCRIPT "x" {40+}\r\n' + b"LOGOUT\r\n" * 5 + b" {3+}\r\nabc\r\nNOOP\r\n")
    assert events == [Rejected("PUTSCRIPT", "literal-too-big", 40), Frame((b"NOOP",), "NOOP")]
    assert f.idle
    # a synchronising literal is read the same way (no continuation in ManageSieve)
    assert f.feed(b"CHECKSCRIPT {11}\r\n" + b"x" * 11 + b"\r\nNOOP\r\n") == \
        [Rejected("CHECKSCRIPT", "literal-too-big", 11), Frame((b"NOOP",), "NOOP")]
    # other commands get max_line-sized literals
    assert framer(max_line=20).feed(b"NOOP {21+}\r\n" + b"y" * 21 + b"\r\n")[0].reason == "literal-too-big"


def test_framer_long_lines_and_fatal_sizes():
    f = framer(max_line=10)
    assert f.feed(b"0123456789\r\n") == [Frame((b"0123456789",), None)]  # exactly the limit
    assert f.feed(b"NOOP 6789AB\r\nNOOP\r\n") == [Rejected("NOOP", "line-too-long"), Frame((b"NOOP",), "NOOP")]
    assert f.feed(b"#" * 30) == [Rejected(None, "line-too-long")]  # reported once, skipped to its end
    assert f.feed(b"y" * 30) == []
    assert f.feed(b"z\r\nLOGOUT\r\n") == [Frame((b"LOGOUT",), "LOGOUT")]
    assert f.feed(b"q" * 50) == [Rejected(None, "line-too-long")]
    assert f.feed(b"q" * 200) == [Rejected(None, "line-too-long", fatal=True)]  # endless junk
    assert framer().feed(b"PUTSCRIPT {4294967296+}\r\n") == [Rejected("PUTSCRIPT", "bad-literal", fatal=True)]
    f.feed(b"half")
    f.reset()
    assert f.feed(b"NOOP\r\n") == [Frame((b"NOOP",), "NOOP")]


def test_framer_fuzz_never_loses_step():
    rnd = random.Random(5804)
    alphabet = [b"NOOP", b" ", b'"', b"\\", b"{3+}", b"{2}", b"\r\n", b"x", b"\xff", b"{", b"}", b"+"]
    for _ in range(300):
        stream = b"".join(rnd.choice(alphabet) for _ in range(rnd.randrange(60))) + b"\r\nNOOP \"end\"\r\n"
        f = framer(max_line=16, script=16)
        events = []
        i = 0
        while i < len(stream):
            step = rnd.randrange(1, 7)
            events += f.feed(stream[i:i + step])
            i += step
        for event in events:
            assert isinstance(event, (Frame, Rejected))
            if isinstance(event, Frame):
                assert event.size <= 16 * 4 + 16 * 4
                try:
                    parse_command(event)
                except ParseError:
                    pass


def test_arguments():
    cmd = command(b'putscript "my \\"script\\" \\\\" {5+}\r\nkeep;\r\n')
    assert cmd.name == "PUTSCRIPT" and cmd.args == (b'my "script" \\', b"keep;")
    cmd = command(b"HAVESPACE  \"x\"   123\r\n")
    assert cmd.args == (b"x", "123") and isinstance(cmd.args[1], Atom) and parse_number(cmd.args[1]) == 123
    assert command(b'NOOP "\xc3\xa4"\r\n').args == ("ä".encode(),)
    assert command(b"\r\n") is None  # an empty line
    for bad, message in [(b'GETSCRIPT "open\r\n', "Unterminated"), (b'GETSCRIPT "a\\nb"\r\n', "Invalid escape"),
                         (b'GETSCRIPT "a""b"\r\n', "space"), (b'"NOOP"\r\n', "command name"),
                         (b"NOOP (x)\r\n", "Unexpected"), (b"NOOP {3+}x\r\n", "literal"),
                         (b'NOOP "a\0"\r\n', "NUL")]:
        with pytest.raises(ParseError, match=message):
            command(bad)
    with pytest.raises(ParseError):
        parse_args(Frame((b'NOOP"', Literal(b"x"), b""), "NOOP"))  # no space before the literal
    with pytest.raises(ParseError):
        parse_args(Frame((b"NOOP ", Literal(b"x"), b"y"), "NOOP"))  # no space after it
    for number in ("4294967296", "-1", "1e3", "١٢"):
        with pytest.raises(ParseError):
            parse_number(Atom(number))
    assert parse_number(Atom("4294967295")) == 4294967295


def test_sasl_plain():
    assert decode_sasl_plain(base64.b64encode(b"\0user@x\0pass word")) == ("", "user@x", "pass word")
    assert decode_sasl_plain(base64.b64encode(b"a\0b\0c")) == ("a", "b", "c")
    for bad in (b"not base64!", base64.b64encode(b"no nul"), base64.b64encode(b"\0\xff\0x")):
        with pytest.raises(ParseError):
            decode_sasl_plain(bad)


def test_reply_encoding():
    assert string("plain") == b'"plain"'
    assert string('a "b" \\c') == b'"a \\"b\\" \\\\c"'
    assert string("two\r\nlines") == b"{10}\r\ntwo\r\nlines"
    assert string("x" * 1025).startswith(b"{1025}\r\n")
    assert string("é") == '"é"'.encode()
    assert literal("é") == b"{2}\r\n\xc3\xa9"
    assert reply("OK") == b"OK\r\n"
    assert reply("NO", "QUOTA/MAXSIZE", "too big") == b'NO (QUOTA/MAXSIZE) "too big"\r\n'
    assert reply("OK", "TAG", "Done", code_arg="a\r\nb") == b'OK (TAG {4}\r\na\r\nb) "Done"\r\n'
    assert reply("NO", text="line 2: x\r\nline 3: y") == b"NO {20}\r\nline 2: x\r\nline 3: y\r\n"
    assert capability_lines([("VERSION", "1.0"), ("STARTTLS", None)]) == b'"VERSION" "1.0"\r\n"STARTTLS"\r\n'


def test_settings():
    c = ManageSieveConfig.from_settings({"listen": "127.0.0.1:4190"}, {"max_script_size": 1024})
    assert (c.max_line, c.idle_timeout, c.login_timeout, c.allow_plaintext_auth, c.max_bad_commands) == \
        (8192, 1800.0, 60.0, "loopback", 20)
    assert c.max_script_literal == 1024 + SCRIPT_LITERAL_SLACK
    c = ManageSieveConfig.from_settings({"allow_plaintext_auth": "no", "idle_timeout": "45",
                                         "max_line_length": "2048", "max_bad_commands": "5"})
    assert (c.allow_plaintext_auth, c.idle_timeout, c.max_line, c.max_bad_commands) == ("no", 2700.0, 2048, 5)
    for key, value in [("allow_plaintext_auth", "maybe"), ("idle_timeout", "soon"), ("max_line_length", "100"),
                       ("max_bad_commands", "0"), ("login_timeout", "-1")]:
        with pytest.raises(StartupError, match=r"\[managesieve\] %s" % key):
            ManageSieveConfig.from_settings({key: value})


def test_the_defaults_file_lists_every_key_read():
    from conf import load_config
    section = load_config().section("managesieve")
    assert section["listen"] == "127.0.0.1:4190"
    assert set(section) == {"listen", "allow_plaintext_auth", "idle_timeout", "login_timeout",
                            "max_line_length", "max_bad_commands",
                            # read by gateways/common/connlimit.py for every gateway
                            "proxy_protocol", "max_connections_per_ip", "max_connections"}
    ManageSieveConfig.from_settings(section)
