"""The wire code the gateways share, without a server: the literal framer (gateways/common/
literals.py) through IMAP's and ManageSieve's shapes and a bare one, hostile input included; the
typed config reads (gateways/common/settings.py) and the gateways that use them; the
connection lifecycle's timer (gateways/common/lineproto.py)."""

from __future__ import annotations

import random
import re
from types import SimpleNamespace

import pytest
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport

from gateways.common.errors import StartupError
from gateways.common.lineproto import LineSession
from gateways.common.literals import Continue, LiteralFramer
from gateways.common.settings import SectionSettings, SettingError
from gateways.imap import IMAPConfig
from gateways.imap import framing as imap
from gateways.lmtp import make_protocol_factory
from gateways.managesieve import parser as sieve


class Bare(LiteralFramer):
    """The engine with the plainest shape: events are tuples."""
    literal_at_end = re.compile(rb"\{(?P<size>\d{1,20})(?P<plus>\+?)\}$")
    sync_waits = True
    max_literal_number = 4294967295
    head_window = 16

    def _identify(self, line):
        return line.split(b" ", 1)[0][:16] or None

    def _rejected(self, head, reason, size=0, fatal=False):
        return ("rejected", head, reason, size, fatal)

    def _text_piece(self, text, announcement):
        return text[:announcement.start()]

    def _literal_piece(self, data):
        return ("literal", data)

    def _frame(self, parts, head):
        return ("frame", head, tuple(parts))


def imap_framer(max_line=64, append=1000, other=10):
    return imap.Framer(max_line, lambda name: append if name == "APPEND" else other, max_command=2000)


def sieve_framer(max_line=64, script=1000):
    return sieve.Framer(max_line, lambda name: script if name == "PUTSCRIPT" else max_line)


def feed_in(framer, data: bytes, step: int) -> list:
    events = []
    for i in range(0, len(data), step):
        events += framer.feed(data[i:i + step])
    return events


FRAMERS = [imap_framer, sieve_framer, lambda: Bare(64, lambda head: 100)]


# -- the literal framer --------------------------------------------------------------------
def test_bare_shape_sync_and_nonsync_literals():
    f = Bare(64, lambda head: 100)
    assert f.feed(b"PUT {3}\r\n") == [Continue()]
    assert f.feed(b"abc rest {0+}\r\n\r\n") == [("frame", b"PUT", (b"PUT ", ("literal", b"abc"), b" rest ",
                                                                    ("literal", b""), b""))]
    assert f.idle


@pytest.mark.parametrize("make", FRAMERS)
def test_byte_at_a_time_is_the_same_as_all_at_once(make):
    rnd = random.Random(7888)
    alphabet = [b"a ", b"APPEND ", b"PUTSCRIPT ", b"NOOP", b" ", b"{3+}", b"{2}", b"{0}", b"{12}", b"{1200+}",
                b"{99999999999+}", b"~{2+}", b"\r\n", b"\n", b"x" * 9, b"{", b"}", b"+", b"\r"]
    for _ in range(300):
        stream = b"".join(rnd.choice(alphabet) for _ in range(rnd.randrange(80))) + b"\r\nz NOOP\r\n"
        whole = make().feed(stream)
        assert feed_in(make(), stream, 1) == whole
        assert feed_in(make(), stream, rnd.randrange(2, 40)) == whole


@pytest.mark.parametrize("make", FRAMERS)
def test_line_too_long_across_many_reads_is_refused_once(make):
    f = make()
    events = []
    for _ in range(50):  # 500 octets, 10 at a time, no LF: one refusal, then skipped
        events += f.feed(b"a FETCH 1,")
        assert len(f._buf) <= f.max_line + 1
    assert len(events) == 1 and "line-too-long" in repr(events[0]) and "fatal=True" not in repr(events[0])
    events = f.feed(b"9\r\na NOOP\r\n")
    assert len(events) == 1 and "NOOP" in repr(events[0]) and "Rejected" not in repr(events[0])


@pytest.mark.parametrize("make", FRAMERS)
def test_endless_line_is_fatal_and_memory_stays_bounded(make):
    f = make()
    events = []
    for _ in range(200):
        events += f.feed(b"z" * 10)
        assert len(f._buf) <= f.max_line + 1
    assert any(getattr(e, "fatal", False) or (isinstance(e, tuple) and e[-1] is True) for e in events)


def test_line_exactly_at_the_limit_whatever_the_reads():
    line = b"a " + b"x" * 62  # 64 octets: the limit
    for make in (imap_framer, sieve_framer):
        whole = make().feed(line + b"\r\n")
        assert whole and "Rejected" not in repr(whole)
        assert feed_in(make(), line + b"\r\n", 1) == whole
        assert "line-too-long" in repr(make().feed(line + b"y\r\n"))


def test_imap_giant_literal_announcements():
    # synchronizing: refused at once with a tagged reply, never a "+"; the stream goes on
    f = imap_framer()
    assert f.feed(b"a APPEND INBOX {99999999999999999999}\r\nb NOOP\r\n") == [
        imap.Rejected("a", "APPEND", "literal-too-big", 99999999999999999999), imap.Frame(b"b NOOP")]
    # non-synchronizing: read and thrown away, nothing buffered
    f = imap_framer()
    assert f.feed(b"a APPEND INBOX {5000000+}\r\n") == []
    for _ in range(100):
        assert f.feed(b"x" * 50000) == []
        assert len(f._buf) == 0 and f._parts == []
    assert f.feed(b"\r\nb NOOP\r\n") == [imap.Rejected("a", "APPEND", "literal-too-big", 5000000),
                                         imap.Frame(b"b NOOP")]
    # beyond 20 digits it is no literal announcement at all
    assert f.feed(b"c APPEND INBOX {123456789012345678901}\r\n") == [
        imap.Frame(b"c APPEND INBOX {123456789012345678901}")]


def test_imap_command_budget_counts_every_literal():
    f = imap_framer(max_line=64, append=1000)  # budget max(1000, 2000) + 64
    stream = b"a APPEND INBOX {900+}\r\n" + b"x" * 900 + b" {900+}\r\n" + b"y" * 900 + b" {900+}\r\n" + b"z" * 900
    events = f.feed(stream + b"\r\nb NOOP\r\n")
    assert events == [imap.Rejected("a", "APPEND", "literal-too-big", 900), imap.Frame(b"b NOOP")]


def test_literal_size_beyond_32_bits_is_fatal_for_managesieve():
    assert sieve_framer().feed(b"PUTSCRIPT \"s\" {4294967296+}\r\n") == [
        sieve.Rejected("PUTSCRIPT", "bad-literal", fatal=True)]
    assert sieve_framer().feed(b"PUTSCRIPT \"s\" {99999999999999999999}\r\n") == [
        sieve.Rejected("PUTSCRIPT", "bad-literal", fatal=True)]
    # 2^32 - 1 is a number: too big for the limit, so it is skipped, not fatal
    f = sieve_framer()
    assert f.feed(b"PUTSCRIPT \"s\" {4294967295+}\r\n" + b"x" * 1000) == []
    assert len(f._buf) == 0 and f._discard_left == 4294967295 - 1000
    assert Bare(64, lambda head: 10).feed(b"X {4294967296}\r\n") == [("rejected", b"X", "bad-literal", 0, True)]


def test_managesieve_sync_literal_is_read_like_a_nonsync_one():
    # RFC 5804 §4 allows only {n+}; {n} is read the same (the documented leniency): no Continue
    f = sieve_framer(script=5)
    assert f.feed(b"PUTSCRIPT \"s\" {3}\r\nabc\r\n") == [
        sieve.Frame((b'PUTSCRIPT "s" ', sieve.Literal(b"abc"), b""), "PUTSCRIPT")]
    assert f.feed(b"PUTSCRIPT \"s\" {9}\r\n123456789 {2}\r\nab\r\nNOOP\r\n") == [
        sieve.Rejected("PUTSCRIPT", "literal-too-big", 9), sieve.Frame((b"NOOP",), "NOOP")]


def test_imap_sync_literal_in_the_rest_of_a_refused_command_ends_it():
    # after a refused {n+} the client may still announce a {m}: it waits for "+", so the
    # command ends there and the refusal is answered
    f = imap_framer(other=10)
    assert f.feed(b"a LOGIN {20+}\r\n" + b"u" * 20 + b" {3}\r\n") == [
        imap.Rejected("a", "LOGIN", "literal-too-big", 20)]
    assert f.feed(b"b NOOP\r\n") == [imap.Frame(b"b NOOP")]


@pytest.mark.parametrize("make", [imap_framer, sieve_framer])
def test_over_long_line_after_a_refused_literal_is_one_refusal(make):
    f = make()
    name = b"a APPEND INBOX" if make is imap_framer else b'PUTSCRIPT "s"'
    events = f.feed(name + b" {5000+}\r\n" + b"x" * 5000 + b" " + b"y" * 300 + b"\r\nz NOOP\r\n")
    assert len(events) == 2 and "literal-too-big" in repr(events[0]) and "NOOP" in repr(events[1])


def test_reset_forgets_everything():
    for make in FRAMERS:
        f = make()
        f.feed(b"a APPEND INBOX {50+}\r\npartial")
        assert not f.idle
        f.reset()
        assert f.idle and len(f.feed(b"a NOOP\r\n")) == 1


# -- typed config reads --------------------------------------------------------------------
def test_section_settings_reads():
    s = SectionSettings("x", {"n": " 12 ", "f": "1.5", "b": "On", "c": "Temporary", "d": "2", "e": ""})
    assert s.number("n", 0, int, 1) == 12 and s.number("e", 7, int, 1) == 7
    assert s.boolean("b", False) is True and s.boolean("missing", True) is True
    assert s.choice("c", "permanent", ("permanent", "temporary")) == "temporary"
    assert s.choice("missing", "permanent", ("permanent", "temporary")) == "permanent"
    assert s.duration("d", 30, 0.01, unit=60) == 120.0 and s.duration("missing", 30, 0.01, unit=60) == 1800.0
    assert s.duration("f", 1, 0) == 1.5
    units = SectionSettings("x", {"a": "30s", "b": "5m", "c": "2h", "d": "5d", "e": "1W", "f": "1.5h"})
    assert [units.duration(k, 0, unit=60) for k in "abcdef"] == [30, 300, 7200, 432000, 604800, 5400]
    words = SectionSettings("x", {"t": "TRUE", "o": "off", "l": "Loopback"})
    assert [words.choice(k, "loopback", ("loopback", "yes", "no")) for k in "tol"] == ["yes", "no", "loopback"]
    hosts = SectionSettings("x", {"h": "smtp.example.net:587", "v6": "[2001:db8::1]:25"})
    assert hosts.host_port("h") == ("smtp.example.net", 587) and hosts.host_port("v6") == ("2001:db8::1", 25)


@pytest.mark.parametrize("key, read", [
    ("n", lambda s: s.number("n", 0, int, 0)),
    ("n", lambda s: s.duration("n", 1, 0)),
    ("c", lambda s: s.choice("c", "a", ("a", "b"))),
    ("b", lambda s: s.boolean("b", True)),
    ("d", lambda s: s.duration("d", 1, 1)),
    ("t", lambda s: s.duration("t", 1, 0)),
    ("h", lambda s: s.host_port("h")),
    ("p", lambda s: s.host_port("p")),
])
def test_section_settings_errors_name_the_key(key, read):
    s = SectionSettings("sec", {"n": "nan", "c": "maybe", "b": "maybe", "d": "0.5", "t": "5 minutes",
                                "h": "smtp.example.net", "p": "h:65536"})
    with pytest.raises(SettingError, match=r"^\[sec\] %s = " % key) as info:
        read(s)
    assert isinstance(info.value, StartupError) and isinstance(info.value, ValueError)
    with pytest.raises(SettingError):
        SectionSettings("sec", {"n": "inf"}).number("n", 0, float, 0)
    with pytest.raises(SettingError):
        SectionSettings("sec", {"n": "1.5"}).number("n", 0, int, 0)


def ctx(settings=None, limits=None):
    return SimpleNamespace(settings=settings or {}, limits=limits or {}, store=None, hostname="h")


def test_imap_config_through_section_settings():
    c = IMAPConfig.from_context(ctx(limits={"max_message_size": 1000}))
    assert (c.max_line, c.max_literal_size, c.idle_timeout, c.login_timeout, c.allow_plaintext_auth) == \
        (65536, 1000, 1800.0, 60.0, "loopback")
    c = IMAPConfig.from_context(ctx({"max_line_length": "8192", "max_literal_size": "5000", "idle_timeout": "0.5",
                                     "login_timeout": "10", "allow_plaintext_auth": "no"}))
    assert (c.max_line, c.max_literal_size, c.idle_timeout, c.login_timeout, c.allow_plaintext_auth) == \
        (8192, 5000, 30.0, 10.0, "no")
    assert IMAPConfig.from_context(ctx()).max_literal_size == 50 * 1024 * 1024
    for key, value in (("max_line_length", "big"), ("idle_timeout", "-1"), ("allow_plaintext_auth", "perhaps"),
                       ("max_literal_size", "1.5")):
        with pytest.raises(StartupError, match=r"\[imap\] %s" % key):
            IMAPConfig.from_context(ctx({key: value}))


def test_lmtp_settings_through_section_settings():
    assert callable(make_protocol_factory(ctx({"max_recipients": "5", "timeout": "0", "over_quota": "Temporary"})))
    for settings, limits, where in (({"max_recipients": "0"}, {}, r"\[lmtp\] max_recipients"),
                                    ({"timeout": "soon"}, {}, r"\[lmtp\] timeout"),
                                    ({"over_quota": "bounce"}, {}, r"\[lmtp\] over_quota"),
                                    ({}, {"max_message_size": "-1"}, r"\[server\] max_message_size")):
        with pytest.raises(ValueError, match=where):  # a SettingError: also a StartupError
            make_protocol_factory(ctx(settings, limits))


# -- the connection lifecycle --------------------------------------------------------------
class Echo(LineSession):
    """A LineSession whose one command waits until the test lets it finish."""
    label = "echo"

    def __init__(self, clock):
        super().__init__(SimpleNamespace(store=None), SimpleNamespace(idle_timeout=10.0, max_bad_commands=2))
        self.callLater = clock.callLater
        self.gate = None
        self.autologouts = 0

    def dataReceived(self, data):
        for line in data.split(b"\n")[:-1]:
            self._accept(line)
        self._pump()

    async def _run(self, item):
        if item == b"boom":
            raise RuntimeError("a bug")
        if item == b"bad":
            self.count_bad_command(b"bye\n")
            return
        from twisted.internet.defer import Deferred
        self.gate = Deferred()
        await self.gate
        self.write(b"done\n")

    def _internal_error(self):
        self.write(b"internal error\n")

    def _autologout(self):
        self.autologouts += 1
        super()._autologout()


def test_timer_is_rearmed_through_a_long_command_and_runs_after_it():
    clock = Clock()
    proto = Echo(clock)
    transport = StringTransport()
    proto.makeConnection(transport)
    proto.dataReceived(b"slow\n")
    clock.advance(25)  # fired twice while the command ran: re-armed, not closed
    assert proto.autologouts == 0 and not transport.disconnecting
    proto.gate.callback(None)
    assert transport.value() == b"done\n"
    clock.advance(9)
    assert proto.autologouts == 0
    clock.advance(2)  # idle after the command: the timer still runs
    assert proto.autologouts == 1 and transport.disconnecting


def test_unexpected_errors_and_bad_commands():
    proto = Echo(Clock())
    transport = StringTransport()
    proto.makeConnection(transport)
    proto.dataReceived(b"boom\nbad\n")
    assert transport.value() == b"internal error\n" and not transport.disconnecting
    proto.dataReceived(b"bad\n")
    assert transport.value().endswith(b"bye\n") and transport.disconnecting
