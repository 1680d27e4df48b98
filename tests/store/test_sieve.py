"""Sieve interpreter (formats.sieve), section by section of RFC 5228 and its extensions."""
import pytest

from formats.sieve import (
    Discard, FileInto, Keep, Message, Redirect, Reject, SieveError, compile_script, run,
)


def msg(headers="", body="body\r\n", env_from="sender@example.org",
        env_to="me@example.com", size=None):
    raw = (headers.replace("\n", "\r\n") + "\r\n" + body).encode("utf-8")
    return Message(raw=raw, envelope_from=env_from, envelope_to=env_to, size=size)


def actions(script, message):
    result = run(compile_script(script), message)
    assert result.error is None, result.error
    return result.actions


def matches(test, message, require=""):
    """Evaluate one test: True iff the script files the message into "yes"."""
    script = 'require ["fileinto"%s];\nif %s { fileinto "yes"; }' % (require, test)
    return actions(script, message) == [FileInto("yes")]


# --- §2.4 literals, §2.9/§8 grammar: parse errors carry the line -------------------------------

@pytest.mark.parametrize("text, line, reason", [
    ("foo;", 1, "unknown command 'foo'"),
    ('keep;\n\nif true {\n  keep;\n}\nbar;', 6, "unknown command 'bar'"),
    ('if true {\n  keep;\n}\nelse\n  discard;', 5, "test command"),
    ("keep", 1, "missing ';'"),
    ('require "fileinto";\nfileinto "x"\n\n', 2, "missing ';'"),  # the line written, not the last
    ('fileinto "x";', 1, "extension 'fileinto' not loaded"),
    ('require "fileinto";\nfileinto :copy "x";', 2, "extension 'copy' not loaded"),
    ('require "fileinto";\nif size :over 1Q { keep; }', 2, ""),
    ('if header :comparator "i;foo" "a" "b" { keep; }', 1, "i;foo"),
    ('if address :user "to" "a" { keep; }', 1, "extension 'subaddress' not loaded"),
    ('ereject "no";', 1, "extension 'ereject' not loaded"),
])
def test_parse_errors_name_line_and_reason(text, line, reason):
    with pytest.raises(SieveError) as info:
        compile_script(text)
    assert str(info.value).startswith("line %d: " % line)
    assert reason in str(info.value)
    assert isinstance(info.value, ValueError)


def test_strings_escapes_and_multiline():
    script = compile_script('require "reject";\nreject text: # why\n'
                            'Not "here".\n..dotted\n.\n;')
    assert run(script, msg()).actions == [Reject('Not "here".\n.dotted\n')]
    assert actions(r'require "fileinto"; fileinto "a\"b\\c";', msg()) == [FileInto('a"b\\c')]


def test_comments_and_case_insensitive_identifiers():
    script = '# hash\n/* bracket\n comment */\nIF NOT FALSE { DISCARD; }'
    assert actions(script, msg()) == [Discard()]


# --- §3.2 require ------------------------------------------------------------------------------

@pytest.mark.parametrize("ext", ["imap4flags", "body", "variables", "vacation",
                                 "vacation-seconds"])
def test_require_of_extensions_added_later(ext):
    script = compile_script('require "fileinto";\nrequire ["copy", "%s"];\nkeep;' % ext)
    assert ext in script.extensions


@pytest.mark.parametrize("ext", ["relational", "regex", "date", "editheader", "include"])
def test_require_of_unimplemented_extensions_is_refused(ext):
    with pytest.raises(SieveError, match='line 2: unsupported extension "%s"' % ext):
        compile_script('require "fileinto";\nrequire ["copy", "%s"];\nkeep;' % ext)


def test_require_of_unknown_extension_is_refused():
    with pytest.raises(SieveError, match='unsupported extension "foo"'):
        compile_script('require "foo";')


def test_require_after_a_command_is_refused():
    with pytest.raises(SieveError, match="line 2: require must come before"):
        compile_script('keep;\nrequire "fileinto";')


def test_supported_extensions_compile():
    script = compile_script('require ["fileinto", "envelope", "reject", "ereject", "copy", '
                            '"mailbox", "subaddress", "comparator-i;octet"];')
    assert "subaddress" in script.extensions


# --- §2.10.2 implicit keep, §4 actions ---------------------------------------------------------

def test_empty_script_keeps():
    result = run(compile_script(""), msg())
    assert result.actions == [Keep()] and result.implicit_keep and result.error is None


def test_discard_cancels_implicit_keep():
    result = run(compile_script("discard;"), msg())
    assert result.actions == [Discard()] and not result.implicit_keep


def test_explicit_keep_is_not_implicit():
    result = run(compile_script("keep;"), msg())
    assert result.actions == [Keep()] and not result.implicit_keep


def test_keep_then_discard_still_keeps():
    # RFC 5228 §4.4: discard only cancels the implicit keep
    assert actions("keep; discard;", msg()) == [Keep(), Discard()]


def test_fileinto_and_redirect_cancel_implicit_keep():
    script = 'require "fileinto"; fileinto "Lists"; redirect "other@example.net";'
    assert actions(script, msg()) == [FileInto("Lists"), Redirect("other@example.net")]


def test_copy_keeps_implicit_keep():
    # RFC 3894 §3
    script = 'require ["fileinto", "copy"]; fileinto :copy "A"; redirect :copy "b@x.org";'
    result = run(compile_script(script), msg())
    assert result.actions == [FileInto("A", copy=True), Redirect("b@x.org", copy=True), Keep()]
    assert result.implicit_keep


def test_fileinto_create():
    script = 'require ["fileinto", "mailbox"]; fileinto :create "New/Folder";'
    assert actions(script, msg()) == [FileInto("New/Folder", create=True)]


def test_duplicate_targets_collapse():
    # RFC 5228 §2.10.3
    script = ('require "fileinto"; fileinto "A"; fileinto "A"; keep; fileinto "inbox"; '
              'redirect "x@y.org"; redirect "X@Y.org";')
    assert actions(script, msg()) == [FileInto("A"), Keep(), Redirect("x@y.org")]


def test_reject_and_ereject():
    assert actions('require "reject"; reject "go away";', msg()) == [Reject("go away")]
    assert actions('require "ereject"; ereject "no";', msg()) == [Reject("no", extended=True)]


@pytest.mark.parametrize("script", [
    'require "reject"; reject "a"; reject "b";',
    'require ["reject", "fileinto"]; fileinto "x"; reject "a";',
    'require "reject"; reject "a"; keep;',
])
def test_reject_conflicts_are_runtime_errors_that_keep(script):
    result = run(compile_script(script), msg())
    assert result.actions == [Keep()] and result.implicit_keep and "reject" in result.error


# --- §3.1 if/elsif/else, §3.3 stop ---------------------------------------------------------------

@pytest.mark.parametrize("subject, box", [("one", "1"), ("two", "2"), ("three", "other")])
def test_if_elsif_else(subject, box):
    script = ('require "fileinto";\n'
              'if header :is "subject" "one" { fileinto "1"; }\n'
              'elsif header :is "subject" "two" { fileinto "2"; }\n'
              'else { fileinto "other"; }')
    assert actions(script, msg("Subject: %s\n" % subject)) == [FileInto(box)]


def test_stop_ends_the_script_and_keeps_implicit_keep():
    script = 'require "fileinto"; if true { stop; } fileinto "never";'
    result = run(compile_script(script), msg())
    assert result.actions == [Keep()] and result.implicit_keep


def test_stop_after_action():
    script = 'require "fileinto"; fileinto "a"; if true { if true { stop; } } fileinto "b";'
    assert actions(script, msg()) == [FileInto("a")]


# --- §2.7.1 match types and §2.7.3 comparators ---------------------------------------------------

@pytest.mark.parametrize("test, expected", [
    # :is / :contains, default comparator folds ASCII case only (RFC 4790 §9.2)
    ('header :is "Subject" "Hello World"', True),
    ('header :is "Subject" "HELLO world"', True),
    ('header :is "Subject" "Hello"', False),
    ('header :contains "Subject" "lo wo"', True),
    ('header :contains "Subject" ""', True),
    ('header :contains "Subject" ["nope", "WORLD"]', True),
    ('header :contains :comparator "i;octet" "Subject" "WORLD"', False),
    ('header :is :comparator "i;octet" "Subject" "Hello World"', True),
    # :matches: "*" any run, "?" exactly one character
    ('header :matches "Subject" "Hello*"', True),
    ('header :matches "Subject" "*World"', True),
    ('header :matches "Subject" "H?llo*"', True),
    ('header :matches "Subject" "Hello?World"', True),
    ('header :matches "Subject" "Hello??World"', False),
    ('header :matches "Subject" "*o*o*"', True),
    ('header :matches "Subject" "*"', True),
    ('header :matches "Subject" "Hello"', False),
    ('header :matches :comparator "i;octet" "Subject" "hello*"', False),
])
def test_match_types(test, expected):
    assert matches(test, msg("Subject: Hello World\n")) is expected


def test_matches_escapes():
    # RFC 5228 §2.7.1: "\\*" in the script is the string \* : a literal star
    m = msg("Subject: [*] a?b\\c\n")
    assert matches(r'header :matches "Subject" "[\\*] a\\?b\\\\c"', m)
    assert not matches(r'header :matches "Subject" "[\\*] a\\?bc"', m)
    assert not matches(r'header :matches "Subject" "\\*"', m)
    assert matches(r'header :matches "Subject" "[*]*"', m)


def test_matches_is_linear_on_hostile_input():
    m = msg("Subject: " + "a" * 5000 + "\n")
    assert not matches('header :matches "Subject" "*a*a*a*a*a*a*a*a*b"', m)


def test_rfc_2_7_1_examples():
    # "a" :contains "a" true; "ABC" :matches "a?c" true with the default comparator
    assert matches('header :contains "X" "a"', msg("X: a\n"))
    assert matches('header :matches "X" "a?c"', msg("X: ABC\n"))
    assert matches('header :matches "X" "*"', msg("X: \n"))     # empty value matches "*"


# --- §5.1 address, §2.7.4 address parts, RFC 5233 subaddress -----------------------------------

ADDR = msg('From: "Tim" <tim@example.com>\n'
           'To: Alice <alice+lists@Example.ORG>, bob@example.net\n'
           'Cc: undisclosed-recipients:;\n')


@pytest.mark.parametrize("test, expected", [
    ('address :is :all "from" "tim@example.com"', True),        # RFC 5228 §5.1 example
    ('address "from" "tim@example.com"', True),                 # :all and :is by default
    ('address :is :all "from" "Tim"', False),                   # the display name is no address
    ('address :localpart "to" "bob"', True),
    ('address :domain :is "to" "example.org"', True),
    ('address :domain :matches "to" "*.net"', True),
    ('address :all :contains ["to", "cc"] "alice+lists@"', True),
    ('address :is "cc" ""', False),
    ('address :user "to" "alice"', True),
    ('address :detail "to" "lists"', True),
    ('address :detail "to" "LISTS"', True),
    ('address :detail :matches "to" "*"', True),                 # alice has a detail
    ('address :detail :matches "from" "*"', False),             # tim has none
    ('address :user "to" "bob"', True),                         # no "+": user = local part
])
def test_address(test, expected):
    assert matches(test, ADDR, ', "subaddress"') is expected


def test_address_with_encoded_display_name():
    m = msg("From: =?utf-8?q?M=C3=BCller=2C_Hans?= <hans@example.de>\n")
    assert matches('address :all :is "from" "hans@example.de"', m)


def test_detail_empty_and_absent():
    # RFC 5233 §4: "alice+" has an empty detail, "alice" has none
    assert matches('envelope :detail "to" ""', msg(env_to="alice+@x.org"),
                   ', "envelope", "subaddress"')
    assert not matches('envelope :detail "to" ""', msg(env_to="alice@x.org"),
                       ', "envelope", "subaddress"')


# --- §5.4 envelope ------------------------------------------------------------------------------

@pytest.mark.parametrize("test, message, expected", [
    ('envelope :all :is "from" "sender@example.org"', msg(), True),
    ('envelope :domain "to" "EXAMPLE.com"', msg(), True),
    ('envelope :user "to" "me"', msg(env_to="<me+shop@example.com>"), True),
    ('envelope :detail "to" "shop"', msg(env_to="me+shop@example.com"), True),
    ('envelope :is "from" ""', msg(env_from="<>"), True),       # null reverse-path
    ('envelope :domain :is "from" ""', msg(env_from=""), True),
    ('envelope :is "from" "x"', msg(env_from=""), False),
    ('envelope :is "x-unknown" ""', msg(), False),
])
def test_envelope(test, message, expected):
    assert matches(test, message, ', "envelope", "subaddress"') is expected


# --- §5.5 exists, §5.7 header ----------------------------------------------------------------------

def test_exists():
    m = msg("From: a@b.c\nX-Caffeine: \n")
    assert matches('exists "x-caffeine"', m)
    assert matches('exists ["From", "X-Caffeine"]', m)
    assert not matches('exists ["From", "Sender"]', m)
    assert matches('not exists "Sender"', m)


def test_rfc_5_7_header_examples():
    m = msg("X-Caffeine: \nFrom: Idiot <idiot@example.com>\n")
    assert matches('header :contains "X-Caffeine" ""', m)      # exists, even empty
    assert not matches('header :contains "X-Caffeine" ""', msg("From: a@b.c\n"))
    assert matches('header :contains ["from", "to"] "idiot@example.com"', m)


def test_header_repeated_and_folded():
    m = msg("Received: from a\nReceived: from b\n  by c\nSubject: long\n\tfolded\n")
    assert matches('header :is "received" "from b  by c"', m)
    assert matches('header :is "subject" "long\tfolded"', m)


def test_rfc2047_subjects():
    m = msg("Subject: =?utf-8?q?Caf=C3=A9_ouvert?=\n")
    assert matches('header :is "subject" "Café ouvert"', m)
    assert matches('header :contains "subject" "CAFé"', m)       # ASCII-only case folding
    assert not matches('header :contains "subject" "CAFÉ"', m)
    m = msg("Subject: =?iso-8859-1?b?R3L832U=?= =?utf-8?q?_=E2=82=AC?=\n")
    assert matches('header :is "subject" "Grüße €"', m)


def test_broken_encoded_word_and_8bit_headers():
    assert matches('header :contains "subject" "=?x-unknown?q?a?="',
                   msg("Subject: =?x-unknown?q?a?=\n"))
    raw = "Subject: Grüße\r\n\r\nbody".encode("utf-8")
    assert matches('header :is "subject" "Grüße"', Message(raw, "a@b", "c@d"))
    raw = "Subject: Grüße\r\n\r\nbody".encode("latin-1")
    assert matches('header :is "subject" "Grüße"', Message(raw, "a@b", "c@d"))


# --- §5.2 / §5.3 / §5.8 / §5.6 / §5.10 / §5.11 boolean tests -----------------------------------------

def test_boolean_tests():
    m = msg("Subject: x\n")
    assert matches("true", m) and not matches("false", m)
    assert matches("allof (true, true)", m) and not matches("allof (true, false)", m)
    assert matches("anyof (false, true)", m) and not matches("anyof (false, false)", m)
    assert matches("not false", m) and matches("not not true", m)


# --- §5.9 size ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("test, size, expected", [
    ("size :over 100", 101, True),
    ("size :over 100", 100, False),
    ("size :under 100", 100, False),
    ("size :under 100", 99, True),
    ("size :over 1K", 1025, True),
    ("size :over 1K", 1024, False),
    ("size :under 2M", 2 * 1024 * 1024 - 1, True),
    ("size :over 1G", 1 << 30, False),
    ("size :over 1G", (1 << 30) + 1, True),
])
def test_size_suffixes(test, size, expected):
    assert matches(test, msg(size=size)) is expected


def test_size_defaults_to_raw_length():
    m = msg("Subject: x\n", body="y" * 2000)
    assert m.size == len(m.raw)
    assert matches("size :over 1K", m)


# --- §6 extended example (adapted: Sender list, company domain, spam, personal) ----------------------

RFC_EXAMPLE = """\
#
# Example Sieve Filter
# Declare any optional features or extension used by the script
#
require ["fileinto"];

#
# Handle messages from known mailing lists
# Move messages from IETF filter discussion list to filter mailbox
#
if header :is "Sender" "owner-ietf-mta-filters@imc.org"
        {
        fileinto "filter";  # move to "filter" mailbox
        }
#
# Keep all messages to or from people in my company
#
elsif address :DOMAIN :is ["From", "To"] "example.com"
        {
        keep;               # keep in "In" mailbox
        }

#
# Try and catch unsolicited email.  If a message is not to me,
# or it contains a subject known to be spam, file it away.
#
elsif anyof (NOT address :all :contains
               ["To", "Cc", "Bcc"] "me@example.com",
             header :matches "subject"
               ["*make*money*fast*", "*university*dipl*mas*"])
        {
        fileinto "spam";   # move to "spam" mailbox
        }
else
        {
        # Move all other (non-company) mail to "personal"
        # mailbox.
        fileinto "personal";
        }
"""


@pytest.mark.parametrize("headers, expected", [
    ("Sender: owner-ietf-mta-filters@imc.org\nTo: me@example.com\n", FileInto("filter")),
    ("From: boss@example.com\nTo: me@example.org\n", Keep()),
    ("From: spammer@bad.example\nTo: you@example.org\n", FileInto("spam")),
    ("From: x@bad.example\nTo: l@lists.example\nCc: me@example.com\nSubject: MAKE MONEY FAST!!\n",
     FileInto("spam")),
    ("From: x@bad.example\nTo: l@lists.example\nCc: me@example.com\n"
     "Subject: Your University Diplomas\n",
     FileInto("spam")),
    ("From: friend@elsewhere.example\nCc: me@example.com\nSubject: dinner\n",
     FileInto("personal")),
])
def test_rfc_6_extended_example(headers, expected):
    result = run(compile_script(RFC_EXAMPLE), msg(headers))
    assert result.error is None
    assert result.actions == [expected]
    assert result.implicit_keep is False


# --- §2.10.6 run-time errors never lose the message ----------------------------------------------

def test_runtime_error_falls_back_to_keep():
    script = compile_script('if header :is "subject" "x" { discard; }')
    broken = Message(raw="not bytes", envelope_from="a@b", envelope_to="c@d")
    result = run(script, broken)
    assert result.actions == [Keep()]
    assert result.implicit_keep
    assert result.error and "internal error" in result.error


def test_too_many_redirects_is_a_runtime_error():
    script = compile_script("".join('redirect "u%d@example.org";' % i for i in range(11)))
    result = run(script, msg())
    assert result.actions == [Keep()] and "redirects" in result.error
