"""ManageSieve (RFC 5804) over real loopback sockets against a real ``haven serve``, on both
engines: raw transcripts of every command, literals ``{n+}`` and ``{n}``, STARTTLS then
AUTHENTICATE, failures and their response codes, two users side by side, and a script uploaded
over ManageSieve running at an LMTP delivery."""

from __future__ import annotations

import base64
import time

import pytest
from imapclient import IMAPClient

from .wire import Sieve, capabilities, literal, plain

GOOD = b'require ["fileinto"];\r\nif header :contains "subject" "[list]" {\r\n  fileinto "Archive";\r\n}\r\n'
BROKEN = b'require "fileinto";\r\nif header :contains "subject" "x" {\r\n  fileinto "Archive"\r\n}\r\n'


@pytest.fixture
def user(haven):
    return haven.new_user("sieve")


def sieve(haven) -> Sieve:
    return Sieve(haven.managesieve)


def logged_in(haven, user) -> Sieve:
    s = sieve(haven)
    r = s.login(*user)
    assert r.status == b'OK "Logged in."', r
    return s


# -- greeting, capabilities, the non-authenticated state ----------------------------------------

def test_greeting_is_the_capability_list(haven):
    with sieve(haven) as s:
        assert s.greeting.status == b'OK "Haven ManageSieve ready."'
        caps = capabilities(s.greeting)
        assert caps["IMPLEMENTATION"] == "Haven"
        assert caps["SASL"] == "PLAIN LOGIN"  # plaintext login is allowed by default (and from loopback)
        assert caps["VERSION"] == "1.0"
        assert "STARTTLS" in caps and caps["STARTTLS"] is None
        assert "UNAUTHENTICATE" in caps
        assert "OWNER" not in caps  # RFC 5804 §1.8: never before login
        extensions = caps["SIEVE"].split()
        assert {"fileinto", "envelope", "reject"} <= set(extensions)
        assert not any(e in ("comparator-i;octet", "comparator-i;ascii-casemap") for e in extensions)
        from formats import sieve as compiler
        assert set(extensions) <= set(compiler.SUPPORTED_EXTENSIONS)
        again = s.cmd("CAPABILITY")
        assert again.lines == s.greeting.lines and again.status == b'OK "Capability completed."'
        assert s.cmd("capability").ok  # command names are case-insensitive


def test_commands_before_login(haven):
    with sieve(haven) as s:
        assert s.cmd("NOOP").status == b'OK "NOOP completed."'
        assert s.cmd('NOOP "STARTTLS-SYNC-42"').status == b'OK (TAG "STARTTLS-SYNC-42") "Done"'
        # RFC 5804 §2.13 example: the tag may come back as a literal; ours is quoted unless it must not be
        assert s.cmd(b'NOOP {3+}\r\na\"b').status == b'OK (TAG "a\\"b") "Done"'
        for command in ("LISTSCRIPTS", 'GETSCRIPT "x"', 'SETACTIVE ""', "UNAUTHENTICATE"):
            r = s.cmd(command)
            assert r.status.startswith(b"NO ") and b"before AUTHENTICATE" in r.status, (command, r)
        assert s.cmd("FROBNICATE").status == b'NO "Unknown command FROBNICATE"'
        assert s.cmd('AUTHENTICATE "DIGEST-MD5"').status == b'NO "Unsupported authentication mechanism"'
        s.send("\r\n")  # an empty line is ignored: the next reply is NOOP's
        assert s.cmd('NOOP "next"').status == b'OK (TAG "next") "Done"'
        assert s.cmd("LOGOUT").status == b'OK "Logout completed."'
        assert s.closed_by_server()


# -- AUTHENTICATE -----------------------------------------------------------------------------------

def test_authenticate_plain_initial_response_and_owner(haven, user):
    with sieve(haven) as s:
        assert s.login(*user).status == b'OK "Logged in."'
        caps = capabilities(s.cmd("CAPABILITY"))
        assert caps["OWNER"] == user[0]
        assert "STARTTLS" not in caps  # RFC 5804 §1.8: not after AUTHENTICATE
        # RFC 5804 §2.1: no second AUTHENTICATE, no STARTTLS once logged in
        assert s.login(*user).status.startswith(b"NO ")
        assert s.cmd("STARTTLS").status.startswith(b"NO ")
        assert s.cmd("LISTSCRIPTS").status == b'OK "Listscripts completed."'


def test_authenticate_continuations_quoted_and_literal(haven, user):
    with sieve(haven) as s:
        # the empty challenge, answered with a quoted string
        s.send('AUTHENTICATE "PLAIN"\r\n')
        assert s.line() == b'""'
        assert s.cmd('"%s"' % plain(*user)).status == b'OK "Logged in."'
    with sieve(haven) as s:
        # answered with a non-synchronising literal
        s.send('AUTHENTICATE "PLAIN"\r\n')
        assert s.line() == b'""'
        assert s.cmd(literal(plain(*user).encode())).status == b'OK "Logged in."'
    with sieve(haven) as s:
        # the mechanism and the initial response as literals, in one go
        s.send(b"AUTHENTICATE {5+}\r\nPLAIN " + literal(plain(*user).encode()) + b"\r\n")
        assert s.response().status == b'OK "Logged in."'
    with sieve(haven) as s:
        s.send('AUTHENTICATE "PLAIN"\r\n')
        assert s.line() == b'""'
        assert s.cmd('"*"').status == b'NO "Authentication cancelled."'  # RFC 5804 §2.1
        assert s.login(*user).ok


def test_authenticate_login_mechanism(haven, user):
    b64 = lambda text: base64.b64encode(text.encode()).decode()  # noqa: E731
    with sieve(haven) as s:
        s.send('AUTHENTICATE "LOGIN"\r\n')
        assert base64.b64decode(s.line().strip(b'"')) == b"Username:"
        s.send('"%s"\r\n' % b64(user[0]))
        assert base64.b64decode(s.line().strip(b'"')) == b"Password:"
        assert s.cmd('"%s"' % b64(user[1])).status == b'OK "Logged in."'
    with sieve(haven) as s:
        # both answers pipelined right after the command, as sievelib sends them
        s.send('AUTHENTICATE "LOGIN"\r\n"%s"\r\n"%s"\r\n' % (b64(user[0]), b64(user[1])))
        assert s.line().startswith(b'"') and s.line().startswith(b'"')
        assert s.response().status == b'OK "Logged in."'


def test_wrong_password_then_bye_after_three_failures(haven, user):
    with sieve(haven) as s:
        started = time.monotonic()
        assert s.login(user[0], "wrong").status == b'NO "Authentication failed."'
        assert s.login("nobody@example.test", "wrong").status == b'NO "Authentication failed."'
        assert s.cmd("NOOP").ok  # still usable between failures
        assert s.cmd('AUTHENTICATE "PLAIN" "%s"' % plain(user[0], user[1], authzid="other@example.test")).status \
            == b'BYE "Too many failed authentication attempts."'
        assert s.closed_by_server()
        assert time.monotonic() - started >= 0.05  # the portal's failure delay applied
    with sieve(haven) as s:
        assert s.cmd('AUTHENTICATE "PLAIN" "not base64!"').status.startswith(b"NO ")
        # an authorization identity equal to the login is fine
        assert s.cmd('AUTHENTICATE "PLAIN" "%s"' % plain(user[0], user[1], authzid=user[0].upper())).ok


def test_starttls_then_authenticate(haven, user):
    with sieve(haven) as s:
        assert "STARTTLS" in capabilities(s.greeting)
        assert s.cmd("STARTTLS").status == b'OK "Begin TLS negotiation now."'
        again = s.starttls()  # RFC 5804 §2.2: capabilities re-issued under TLS, without STARTTLS
        assert again.status == b'OK "TLS negotiation successful."'
        caps = capabilities(again)
        assert "STARTTLS" not in caps and caps["SASL"] == "PLAIN LOGIN" and caps["VERSION"] == "1.0"
        assert s.cmd("STARTTLS").status.startswith(b"NO ")
        assert s.login(*user).status == b'OK "Logged in."'
        assert s.cmd("PUTSCRIPT \"tls\" " + literal(GOOD).decode()).ok
        assert s.cmd("LISTSCRIPTS").lines == [b'"tls"']


def test_plaintext_pipelined_after_starttls_is_discarded(haven, user):
    with sieve(haven) as s:
        # CVE-2011-0411 pattern: a command injected behind STARTTLS must not run
        s.send("STARTTLS\r\nAUTHENTICATE \"PLAIN\" \"%s\"\r\nNOOP \"injected\"\r\n" % plain(*user))
        assert s.response().status == b'OK "Begin TLS negotiation now."'
        assert s.starttls().ok
        r = s.cmd("LISTSCRIPTS")
        assert r.status.startswith(b"NO ") and b"before AUTHENTICATE" in r.status  # not logged in
        assert s.cmd('NOOP "after"').status == b'OK (TAG "after") "Done"'


# -- the script commands ----------------------------------------------------------------------------

def test_script_lifecycle_transcript(haven, user):
    with logged_in(haven, user) as s:
        assert s.cmd("LISTSCRIPTS").lines == []
        assert s.cmd('HAVESPACE "main" %d' % len(GOOD)).status == b'OK "Putscript would succeed."'
        # {n+}: the octets follow at once (RFC 5804 §4 literal-c2s)
        assert s.cmd(b'PUTSCRIPT "main" ' + literal(GOOD)).status == b'OK "Putscript completed."'
        # {n}: accepted the same way, without a continuation (see gateways.managesieve.parser)
        other = b'keep;\r\n'
        assert s.cmd(b'PUTSCRIPT "other" ' + literal(other, sync=True)).ok
        # a quoted script, with both escapes
        assert s.cmd(b'PUTSCRIPT "quoted" "# a \\"quote\\" and a \\\\ here"').ok
        unquoted = b'# a "quote" and a \\ here'
        r = s.cmd('GETSCRIPT "quoted"')
        assert r.lines == [b"{%d}\r\n" % len(unquoted) + unquoted] and r.status == b'OK "Getscript completed."'
        r = s.cmd('GETSCRIPT "main"')
        assert r.lines == [b"{%d}\r\n" % len(GOOD) + GOOD]
        assert s.cmd("LISTSCRIPTS").lines == [b'"main"', b'"other"', b'"quoted"']
        assert s.cmd('SETACTIVE "main"').status == b'OK "Setactive completed."'
        assert s.cmd("LISTSCRIPTS").lines == [b'"main" ACTIVE', b'"other"', b'"quoted"']
        # RFC 5804 §2.10: the active script cannot be deleted
        r = s.cmd('DELETESCRIPT "main"')
        assert r.status.startswith(b"NO (ACTIVE) ") and r.code == b"ACTIVE"
        # RFC 5804 §2.11
        assert s.cmd('RENAMESCRIPT "main" "other"').code == b"ALREADYEXISTS"
        assert s.cmd('RENAMESCRIPT "missing" "new"').code == b"NONEXISTENT"
        assert s.cmd('RENAMESCRIPT "main" "renamed"').status == b'OK "Renamescript completed."'
        assert s.cmd("LISTSCRIPTS").lines == [b'"other"', b'"quoted"', b'"renamed" ACTIVE']  # stays active
        # replacing the active script keeps it active
        assert s.cmd(b'PUTSCRIPT "renamed" ' + literal(other)).ok
        assert s.cmd("LISTSCRIPTS").lines[-1] == b'"renamed" ACTIVE'
        assert s.cmd('SETACTIVE "other"').ok
        assert s.cmd("LISTSCRIPTS").lines == [b'"other" ACTIVE', b'"quoted"', b'"renamed"']
        assert s.cmd('SETACTIVE ""').status == b'OK "No script is active now."'
        assert s.cmd('SETACTIVE ""').ok  # RFC 5804 §2.8: not an error when none is active
        assert all(b"ACTIVE" not in line for line in s.cmd("LISTSCRIPTS").lines)
        assert s.cmd('DELETESCRIPT "other"').status == b'OK "Deletescript completed."'
        for command in ('GETSCRIPT "other"', 'DELETESCRIPT "other"', 'SETACTIVE "other"'):
            r = s.cmd(command)
            assert r.code == b"NONEXISTENT", (command, r)
        assert s.cmd("CHECKSCRIPT " + literal(GOOD).decode()).status == b'OK "Script is valid."'
        assert s.cmd("CHECKSCRIPT " + literal(b"").decode()).ok  # an empty script is valid Sieve
        assert s.cmd(b'PUTSCRIPT "empty" {0+}\r\n').status == b'NO "An empty script is refused"'
        assert s.cmd("LOGOUT").ok


def test_compile_errors_carry_the_line(haven, user):
    with logged_in(haven, user) as s:
        r = s.cmd(b'PUTSCRIPT "broken" ' + literal(BROKEN))
        assert r.status.startswith(b'NO "line 4: ') or r.status.startswith(b'NO "line 3: '), r
        assert s.cmd("LISTSCRIPTS").lines == []  # RFC 5804 §2.6: not stored
        r = s.cmd(b"CHECKSCRIPT " + literal(BROKEN))
        assert r.status.startswith(b'NO "line ') and not r.ok
        r = s.cmd(b"CHECKSCRIPT " + literal(b'require "x-unknown-extension";\r\nkeep;\r\n'))
        assert r.status.startswith(b'NO "line 1: ') and b"x-unknown-extension" in r.status, r
        # nesting without end: refused with its line and the limit, no internal error
        deep = b"keep;\r\nif " + b"allof(" * 2000 + b"true" + b")" * 2000 + b" { discard; }\r\n"
        for command in (b'PUTSCRIPT "deep" ', b"CHECKSCRIPT "):
            r = s.cmd(command + literal(deep))
            assert r.status == b'NO "line 2: blocks and tests nested more than 32 deep"', r
        # a script that is not UTF-8 never reaches the compiler
        r = s.cmd(b'PUTSCRIPT "latin1" ' + literal(b"# caf\xe9\r\nkeep;\r\n"))
        assert r.status == b'NO "The script is not valid UTF-8"'


def test_sizes_and_limits(haven, user):
    with logged_in(haven, user) as s:
        limit = 64 * 1024  # [rules] max_script_size default
        r = s.cmd('HAVESPACE "big" %d' % (limit + 1))
        assert r.code == b"QUOTA/MAXSIZE" and r.status.startswith(b"NO "), r
        assert s.cmd('HAVESPACE "big" %d' % limit).ok
        assert s.cmd('HAVESPACE "big" 99999999999').status.startswith(b"NO ")  # beyond 32 bits
        assert s.cmd('HAVESPACE "big" "12"').status.startswith(b"NO ")  # a number, not a string
        # a script literal far over the limit is refused while it is on the wire; its octets
        # (here full of command lines) are read and thrown away, the connection goes on
        junk = (b"LOGOUT\r\nDELETESCRIPT \"x\"\r\n" * 20000)[:limit * 3]
        r = s.cmd(b'PUTSCRIPT "huge" ' + literal(junk))
        assert r.code == b"QUOTA/MAXSIZE", r
        assert s.cmd(b"CHECKSCRIPT " + literal(junk, sync=True)).code == b"QUOTA/MAXSIZE"
        # just over the limit but within the read slack: the store says so, with the same code
        over = b"#" * (limit - 10) + b"\r\nkeep;\r\n" + b"#" * 20
        assert s.cmd(b'PUTSCRIPT "over" ' + literal(over)).code == b"QUOTA/MAXSIZE"
        exact = b"#" * (limit - 9) + b"\r\nkeep;\r\n"
        assert len(exact) == limit and s.cmd(b'PUTSCRIPT "exact" ' + literal(exact)).ok
        assert s.cmd('NOOP "still here"').status == b'OK (TAG "still here") "Done"'
        assert s.cmd("LISTSCRIPTS").lines == [b'"exact"']


def test_names_are_utf8_and_escaped(haven, user):
    with logged_in(haven, user) as s:
        name = 'Urlaub "Sommer" \\ ä€'
        quoted = '"Urlaub \\"Sommer\\" \\\\ ä€"'
        assert s.cmd(b"PUTSCRIPT " + quoted.encode() + b" " + literal("# Grüße\r\nkeep;\r\n".encode())).ok
        assert s.cmd("LISTSCRIPTS").lines == [quoted.encode()]
        r = s.cmd(b"GETSCRIPT " + literal(name.encode()))
        body = "# Grüße\r\nkeep;\r\n".encode()
        assert r.lines == [b"{%d}\r\n" % len(body) + body]  # octets, not characters
        assert s.cmd(b'PUTSCRIPT "bad\x01name" {6+}\r\nkeep;\n').status.startswith(b"NO ")
        assert s.cmd(b'PUTSCRIPT "" {6+}\r\nkeep;\n').status.startswith(b"NO ")
        assert s.cmd(b"PUTSCRIPT " + literal(b"x" * 129) + b" {6+}\r\nkeep;\n").status.startswith(b"NO ")
        assert s.cmd(b"GETSCRIPT " + literal(b"\xff")).status == b'NO "The script name is not valid UTF-8"'


def test_parser_errors_and_the_bad_command_limit(haven, user):
    with logged_in(haven, user) as s:
        assert s.cmd('GETSCRIPT "unterminated').status == b'NO "Unterminated quoted string"'
        assert s.cmd('GETSCRIPT "bad \\n escape"').status.startswith(b'NO "Invalid escape')
        assert s.cmd("GETSCRIPT atom").status.startswith(b'NO "Expected the script name as a string')
        assert s.cmd('GETSCRIPT "a" "b"').status == b'NO "Usage: GETSCRIPT \\"name\\""'
        assert s.cmd("LISTSCRIPTS extra").status == b'NO "LISTSCRIPTS takes no arguments"'
        r = s.cmd("NOOP " + "x" * 9000)  # [managesieve] max_line_length = 8192
        assert r.status == b'NO "Line too long (at most 8192 octets)"'
        assert s.cmd(b'NOOP {9000+}\r\n' + b"y" * 9000).status == b'NO "Literal too big (at most 8192 octets)"'
        assert s.cmd("NOOP").ok
        # 20 bad commands (the default max_bad_commands) end the session; 7 so far
        for _ in range(12):
            assert s.cmd("BOGUS").status == b'NO "Unknown command BOGUS"'
        s.send("BOGUS\r\n")
        assert s.response().status == b'NO "Unknown command BOGUS"'
        assert s.response().status == b'BYE "Too many invalid commands."'
        assert s.closed_by_server()


def test_a_literal_beyond_32_bits_ends_the_session(haven, user):
    with logged_in(haven, user) as s:
        # RFC 5804 §4: number < 2^32; past that the octet count cannot be trusted to skip
        s.send(b'PUTSCRIPT "x" {4294967296+}\r\nkeep;\r\nNOOP\r\n')
        assert s.response().status == b'BYE "Cannot resynchronize the command stream."'
        assert s.closed_by_server()


def test_logout_ignores_what_follows_and_unauthenticate(haven, user):
    with logged_in(haven, user) as s:
        assert s.cmd(b'PUTSCRIPT "keep" ' + literal(b"keep;\r\n")).ok
        r = s.cmd("UNAUTHENTICATE")
        assert r.status == b'OK "Unauthenticate completed."'
        assert "OWNER" not in capabilities(s.cmd("CAPABILITY"))
        assert s.cmd("LISTSCRIPTS").status.startswith(b"NO ")
        assert s.login(*user).ok
        assert s.cmd("LISTSCRIPTS").lines == [b'"keep"']
        s.send('LOGOUT\r\nDELETESCRIPT "keep"\r\n')
        assert s.response().status == b'OK "Logout completed."'
        assert s.closed_by_server()
    with logged_in(haven, user) as s:
        assert s.cmd("LISTSCRIPTS").lines == [b'"keep"']  # the command after LOGOUT did not run


def test_two_users_are_isolated(haven):
    alice, bob = haven.new_user("alice"), haven.new_user("bob")
    with logged_in(haven, alice) as a, logged_in(haven, bob) as b:
        assert a.cmd(b'PUTSCRIPT "mine" ' + literal(GOOD)).ok
        assert a.cmd('SETACTIVE "mine"').ok
        assert b.cmd("LISTSCRIPTS").lines == []
        assert b.cmd('GETSCRIPT "mine"').code == b"NONEXISTENT"
        assert b.cmd('SETACTIVE "mine"').code == b"NONEXISTENT"
        assert b.cmd('DELETESCRIPT "mine"').code == b"NONEXISTENT"
        assert b.cmd('RENAMESCRIPT "mine" "yours"').code == b"NONEXISTENT"
        assert b.cmd(b'PUTSCRIPT "mine" ' + literal(b"discard;\r\n")).ok  # the same name, another account
        assert a.cmd('GETSCRIPT "mine"').lines == [b"{%d}\r\n" % len(GOOD) + GOOD]
        assert a.cmd("LISTSCRIPTS").lines == [b'"mine" ACTIVE']
        assert b.cmd("LISTSCRIPTS").lines == [b'"mine"']
        assert capabilities(b.cmd("CAPABILITY"))["OWNER"] == bob[0]


def test_the_active_script_runs_at_delivery(haven, user):
    with logged_in(haven, user) as s:
        assert s.cmd(b'PUTSCRIPT "sort" ' + literal(GOOD)).ok
        assert s.cmd('SETACTIVE "sort"').ok
    haven.deliver(user[0], b"Subject: [list] weekly\r\nMessage-ID: <l1@example.org>\r\n\r\nlist mail\r\n")
    haven.deliver(user[0], b"Subject: personal\r\nMessage-ID: <p1@example.org>\r\n\r\nhello\r\n")
    with IMAPClient(haven.imap[0], port=haven.imap[1], ssl=False, timeout=15) as c:
        c.login(*user)
        c.select_folder("Archive", readonly=True)
        archived = c.fetch(c.search("ALL"), ["BODY.PEEK[HEADER.FIELDS (SUBJECT)]"])
        subjects = [v[b"BODY[HEADER.FIELDS (SUBJECT)]"].strip() for v in archived.values()]
        assert subjects == [b"Subject: [list] weekly"]
        c.select_folder("INBOX", readonly=True)
        assert len(c.search("ALL")) == 1
    with logged_in(haven, user) as s:  # deactivated: delivery files into INBOX again
        assert s.cmd('SETACTIVE ""').ok
    haven.deliver(user[0], b"Subject: [list] again\r\nMessage-ID: <l2@example.org>\r\n\r\nlist mail\r\n")
    with IMAPClient(haven.imap[0], port=haven.imap[1], ssl=False, timeout=15) as c:
        c.login(*user)
        c.select_folder("INBOX", readonly=True)
        assert len(c.search("ALL")) == 2


def test_nothing_unexpected_in_the_server_log(haven):
    """Every transcript above ended in a reply, never in a traceback."""
    log = haven.log()
    assert "unexpected error" not in log and "Traceback" not in log, log[-3000:]
