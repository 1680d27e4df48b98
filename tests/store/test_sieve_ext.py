"""Sieve extensions (formats.sieve): imap4flags, body, variables, section by section; vacation
is in test_sieve_vacation.py."""
import base64
import quopri

import pytest

from formats.sieve import (
    Discard, FileInto, Keep, Message, Redirect, SieveError, compile_script, run,
)
from formats.sieve import body as sieve_body
from formats.sieve import compiler
from formats.sieve import interpreter
from tests.store.sieve_helpers import actions, filed, msg, result
# === imap4flags (RFC 5232) ====================================================================

FLAGS = 'require ["imap4flags", "fileinto"];\n'


def test_setflag_addflag_removeflag_on_the_internal_variable():
    # RFC 5232 §3: setflag replaces, addflag adds, removeflag removes
    script = FLAGS + ('setflag "\\\\Seen";\naddflag ["\\\\Answered", "Work"];\n'
                      'removeflag "\\\\Seen";\naddflag "Work \\\\Seen";')
    res = result(script, msg())
    assert res.actions == [Keep(flags=("\\Answered", "Work", "\\Seen"))]
    assert res.implicit_keep


def test_setflag_replaces():
    assert actions(FLAGS + 'addflag "a b"; setflag "c";', msg()) == [Keep(flags=("c",))]


@pytest.mark.parametrize("given, flags", [
    ('"\\\\seen \\\\ANSWERED \\\\flagged \\\\deleted \\\\draft"',
     ("\\Seen", "\\Answered", "\\Flagged", "\\Deleted", "\\Draft")),   # canonical case
    ('"  a   b  "', ("a", "b")),                        # §2: runs of spaces, leading/trailing
    ('["a", "", "b a", "A"]', ("a", "b")),              # §2: "" ignored; duplicates dropped
    ('"\\\\Recent x"', ("x",)),                         # §2: \Recent cannot be set
    ('"\\\\Unknown $Label1"', ("$Label1",)),            # unknown system flag dropped
    ('["a(b", "c*", "d%", "e]", "f\\"g", "ok", "h{1}"]', ("ok",)),     # not IMAP atoms
    ('"caf\u00e9 plain"', ("plain",)),                  # §2: non-ASCII is not allowed
])
def test_flag_normalisation(given, flags):
    assert actions(FLAGS + "setflag %s;" % given, msg()) == [Keep(flags=flags)]


def test_removeflag_is_case_insensitive():
    script = FLAGS + 'setflag "\\\\Seen Work"; removeflag ["\\\\SEEN", "work"];'
    assert actions(script, msg()) == [Keep()]


def test_keep_and_fileinto_take_the_flags_current_when_they_run():
    # RFC 5232 §5: without :flags, the internal variable's value at that moment
    script = FLAGS + ('setflag "one"; fileinto "A"; addflag "two"; keep;\n'
                      'setflag "three";')
    assert actions(script, msg()) == [FileInto("A", flags=("one",)),
                                      Keep(flags=("one", "two"))]


def test_implicit_keep_takes_the_final_flags():
    script = 'require ["imap4flags", "fileinto", "copy"];\n' \
             'setflag "one"; fileinto :copy "A"; setflag "\\\\Flagged";'
    res = result(script, msg())
    assert res.actions == [FileInto("A", flags=("one",), copy=True),
                           Keep(flags=("\\Flagged",))]
    assert res.implicit_keep


def test_flags_argument_replaces_the_internal_variable():
    script = FLAGS + ('setflag "internal";\n'
                      'fileinto :flags "\\\\Seen other" "A";\n'
                      'keep :flags ["x", "\\\\deleted"];\n'
                      'fileinto :flags "" "B";')
    assert actions(script, msg()) == [
        FileInto("A", flags=("\\Seen", "other")),
        Keep(flags=("x", "\\Deleted")),
        FileInto("B"),
    ]


def test_same_mailbox_twice_merges_flags():
    script = FLAGS + 'fileinto :flags "a" "A"; fileinto :flags "b a" "A"; keep :flags "k";' \
                     'fileinto :flags "i" "inbox";'
    assert actions(script, msg()) == [FileInto("A", flags=("a", "b")), Keep(flags=("k", "i"))]


def test_discard_with_flags_keeps_nothing():
    assert actions(FLAGS + 'setflag "x"; discard;', msg()) == [Discard()]


def test_without_imap4flags_keep_has_no_flags():
    assert actions("keep;", msg()) == [Keep()]
    with pytest.raises(SieveError, match="imap4flags"):
        compile_script('keep :flags "a";')
    with pytest.raises(SieveError, match="imap4flags"):
        compile_script('setflag "a";')


def test_variable_name_form_needs_variables():
    with pytest.raises(SieveError, match='line 2: setflag with a variable name needs '
                                         'require "variables"'):
        compile_script('require "imap4flags";\nsetflag "v" "a";')
    with pytest.raises(SieveError, match="hasflag with a variable name"):
        compile_script('require "imap4flags";\nif hasflag "v" "a" { keep; }')


VFLAGS = 'require ["imap4flags", "fileinto", "variables"];\n'


def test_flag_commands_on_a_variable():
    # RFC 5232 §3: with "variables" the first argument names the variable to edit
    script = VFLAGS + ('setflag "flagvar" "\\\\Deleted";\n'
                       'addflag "FlagVar" ["\\\\answered", "\\\\Deleted"];\n'
                       'addflag "internal";\n'
                       'fileinto :flags "${flagvar}" "A";\n'
                       'removeflag "flagvar" "\\\\Deleted";\n'
                       'fileinto "${flagvar}";')
    assert actions(script, msg()) == [FileInto("A", flags=("\\Deleted", "\\Answered")),
                                      FileInto("\\Answered", flags=("internal",))]


@pytest.mark.parametrize("test, expected", [
    ('hasflag "work"', True),                          # :is and i;ascii-casemap by default
    ('hasflag :is "wor"', False),
    ('hasflag :contains "wor"', True),
    (r'hasflag :matches "\\\\*"', True),          # a backslash, then anything
    ('hasflag :matches "\\\\*"', False),           # the key is the literal "*"
    ('hasflag :matches "?"', False),
    ('hasflag ["nope", "\\\\seen"]', True),
    ('hasflag "nope \\\\seen"', True),                 # §2: a key list may be space-separated
    ('hasflag :comparator "i;octet" "work"', False),
    ('hasflag :comparator "i;octet" "Work"', True),
    ('hasflag :contains ""', False),                   # §2: "" in a flag list is ignored
    ('not hasflag "Junk"', True),
])
def test_hasflag_on_the_internal_variable(test, expected):
    script = FLAGS + 'setflag "\\\\Seen Work";\nif %s { fileinto "yes"; }' % test
    assert (filed(script, msg()) == ["yes"]) is expected


def test_hasflag_without_flags_is_false():
    assert filed(FLAGS + 'if hasflag :contains "" { fileinto "yes"; }', msg()) == []


def test_hasflag_on_variables():
    # RFC 5232 §4: any flag of any listed variable against any key
    script = VFLAGS + ('set "MyVar" "NonJunk Urgent";\nset "Other" "$Label1";\n'
                       'if hasflag :contains "MyVar" "Junk" { fileinto "contains"; }\n'
                       'if hasflag :is "MyVar" "Junk" { fileinto "is"; }\n'
                       'if hasflag ["missing", "other"] "$label1" { fileinto "list"; }\n'
                       'if hasflag :matches "myvar" "*junk" { fileinto "m-${0}"; }')
    assert filed(script, msg()) == ["contains", "list", "m-NonJunk"]


RFC5232_EXAMPLE = r"""
require ["fileinto", "imap4flags", "variables"];

#
# Move large messages to a special mailbox
#
if size :over 1M
        {
        addflag "MyFlags" "Big";
        if header :is "From" "boss@company.example.com"
                   {
# The message will be marked as "\Flagged Big" when filed into
# mailbox "Big messages"
                   addflag "MyFlags" "\\Flagged";
                   }
        fileinto :flags "${MyFlags}" "Big messages";
        }

if header :is "From" "grandma@example.net"
        {
        addflag "MyFlags" ["\\Answered", "$MDNSent"];
        fileinto :flags "${MyFlags}" "GrandMa";
        }

if header :is "Sender" "owner-ietf-mta-filters@example.org"
        {
        set "MyFlags" "\\Flagged $Work";
        keep :flags "${MyFlags}";
        }
elsif address :domain :is ["From", "To"] "company.example.com"
        {
        keep :flags "${MyFlags}";
        }
elsif anyof (NOT address :all :contains
               ["To", "Cc"] "me@company.example.com",
             header :matches "subject"
               ["*make*money*fast*", "*university*dipl*mas*"])
        {
        removeflag "MyFlags" "\\Flagged";
        fileinto :flags "${MyFlags}" "spam";
        }
else
        {
        fileinto :flags "${MyFlags}" "personal";
        }
"""


@pytest.mark.parametrize("headers, size, expected", [
    ("From: boss@company.example.com\nTo: me@company.example.com\n", 2 << 20,
     [FileInto("Big messages", flags=("Big", "\\Flagged")), Keep(flags=("Big", "\\Flagged"))]),
    ("From: grandma@example.net\nTo: me@company.example.com\n", 2 << 20,
     [FileInto("Big messages", flags=("Big",)),
      FileInto("GrandMa", flags=("Big", "\\Answered", "$MDNSent")),
      Keep(flags=("Big", "\\Answered", "$MDNSent"))]),
    ("From: grandma@example.net\nTo: me@example.org\nCc: me@company.example.com\n", 100,
     [FileInto("GrandMa", flags=("\\Answered", "$MDNSent")),
      FileInto("personal", flags=("\\Answered", "$MDNSent"))]),
    ("Sender: owner-ietf-mta-filters@example.org\nTo: me@company.example.com\n", 100,
     [Keep(flags=("\\Flagged", "$Work"))]),
    ("From: x@bad.example\nTo: you@example.org\n", 2 << 20,
     [FileInto("Big messages", flags=("Big",)), FileInto("spam", flags=("Big",))]),
])
def test_rfc_5232_example(headers, size, expected):
    assert actions(RFC5232_EXAMPLE, msg(headers, size=size)) == expected


# === body (RFC 5173) ==========================================================================

BODY = 'require ["body", "fileinto"];\n'


def body_matches(test, message):
    return filed(BODY + "if %s { fileinto \"yes\"; }" % test, message) == ["yes"]


def b64(text, charset="utf-8"):
    return base64.encodebytes(text.encode(charset)).decode("ascii").replace("\n", "\r\n")


def qp(text, charset="utf-8"):
    return quopri.encodestring(text.encode(charset)).decode("ascii").replace("\n", "\r\n")


MIXED = msg(
    "From: a@example.org\nMIME-Version: 1.0\n"
    'Content-Type: multipart/mixed; boundary="XX"\n',
    "This is the prologue.\r\n"
    "--XX\r\n"
    "Content-Type: text/plain; charset=utf-8\r\n"
    "Content-Transfer-Encoding: base64\r\n\r\n"
    + b64("The missile is ready. Grüße\r\n") +
    "--XX\r\n"
    "Content-Type: text/html; charset=iso-8859-1\r\n"
    "Content-Transfer-Encoding: quoted-printable\r\n\r\n"
    + qp("<html><style>p {color: red}</style><p>Caf\u00e9 <b>au</b>&nbsp;lait</p>"
         "<p>next</p></html>\r\n", "iso-8859-1") +
    "--XX\r\n"
    "Content-Type: application/octet-stream\r\n"
    "Content-Transfer-Encoding: base64\r\n\r\n"
    + b64("secret coordinates inside a binary") +
    "--XX\r\n"
    "Content-Type: message/rfc822\r\n\r\n"
    "Subject: forwarded thing\r\nFrom: fw@example.org\r\n\r\n"
    "Inner body text\r\n"
    "--XX\r\n"
    "Content-Type: audio/ogg\r\n\r\nOggS\r\n"
    "--XX--\r\n"
    "The epilogue.\r\n")


@pytest.mark.parametrize("test, expected", [
    # §5.3 :text (the default): text parts, transfer encoding and charset decoded
    ('body :contains "missile"', True),
    ('body :text :contains "GRÜSSE"', False),
    ('body :text :contains "Grüße"', True),
    ('body :text :contains "Café au lait"', True),    # qp + latin-1, markup removed
    ('body :text :contains "color"', False),          # style dropped
    ('body :text :contains "<p>"', False),
    ('body :text :contains "coordinates"', False),    # not a text part
    ('body :text :contains "Inner body"', True),      # text/plain inside message/rfc822
    ('body :text :contains "prologue"', False),
    # §5.1 :raw: undecoded, MIME structure is just text
    ('body :raw :contains "missile"', False),
    ('body :raw :contains "--XX"', True),
    ('body :raw :contains "Caf=E9"', True),
    ('body :raw :contains "From: a@example.org"', False),    # the header is not the body
    # §5.2 :content
    ('body :content "text" :contains "missile"', True),
    ('body :content "text/plain" :contains "missile"', True),
    ('body :content "text/html" :contains "<b>au</b>"', True),   # decoded, markup kept
    ('body :content "TEXT/HTML" :contains "Café"', True),
    ('body :content "application" :contains "coordinates"', True),
    ('body :content "image" :contains ""', False),
    ('body :content "audio" :contains ""', True),
    ('body :content "multipart" :contains "prologue"', True),   # prologue/epilogue only
    ('body :content "multipart" :contains "epilogue"', True),
    ('body :content "multipart" :contains "missile"', False),
    ('body :content "message/rfc822" :contains "forwarded thing"', True),   # nested header
    ('body :content "message/rfc822" :contains "Inner body"', False),
    ('body :content "" :contains "coordinates"', True),
    ('body :content ["image", "text/plain"] :contains "missile"', True),
    ('body :content "text/" :contains ""', False),    # §5.2: odd slashes match nothing
    ('body :content "/plain" :contains ""', False),
    ('body :content "text/plain/x" :contains ""', False),
    # comparators and match types
    ('body :comparator "i;octet" :contains "MISSILE"', False),
    ('body :contains "MISSILE"', True),
    ('body :matches "*missile*ready*"', True),
    ('body :is "missile"', False),
])
def test_body_transforms(test, expected):
    assert body_matches(test, MIXED) is expected


RFC5173_EXAMPLE = """require ["body", "fileinto"];

# Save any message with any text MIME part that contains the
# words "missile" or "coordinates" in the "secrets" folder.

if body :content "text" :contains ["missile", "coordinates"] {
        fileinto "secrets";
}

# Save any message with an audio attachment in the "music" folder.

if body :content "audio" :contains "" {
        fileinto "music";
}
"""


def test_rfc_5173_example():
    assert filed(RFC5173_EXAMPLE, MIXED) == ["secrets", "music"]
    assert filed(RFC5173_EXAMPLE, msg("Subject: x\n", "nothing here\r\n")) == []


def test_body_of_a_plain_message():
    m = msg("Subject: x\n", "Hello World\r\nsecond line")
    assert body_matches('body :contains "world"', m)
    assert body_matches('body :raw :matches "Hello World?*line"', m)
    assert body_matches('body :content "text/plain" :contains "second"', m)  # no Content-Type
    assert body_matches('body :raw :is "Hello World"', msg("Subject: x\n", "Hello World"))


def test_body_8bit_without_charset():
    raw = "Subject: x\r\n\r\nGrüße\r\n".encode("latin-1")
    assert body_matches('body :contains "Grüße"', Message(raw, "a@b", "c@d"))


def test_no_body_means_every_body_test_is_false():
    # §4: a header not followed by an empty line: even "" does not match
    headers_only = Message(b"Subject: x\r\nFrom: a@b", "a@b", "c@d")
    for transform in (":raw", ":text", ':content ""'):
        assert not body_matches('body %s :contains ""' % transform, headers_only)
    empty_body = Message(b"Subject: x\r\n\r\n", "a@b", "c@d")
    assert body_matches('body :raw :contains ""', empty_body)
    assert body_matches('body :is ""', empty_body)


def test_body_does_not_set_match_variables():
    # RFC 5173 §6: body :matches leaves the match variables alone
    script = ('require ["body", "fileinto", "variables"];\n'
              'if header :matches "subject" "*" { }\n'
              'if body :matches "* body *" { fileinto "${1}"; }')
    assert filed(script, msg("Subject: subj\n", "the big body text\r\n")) == ["subj"]


def test_body_is_parsed_once_per_run(monkeypatch):
    calls = []
    real = sieve_body.BytesParser

    class Counting(real):
        def parsebytes(self, data, *args, **kwargs):
            calls.append(len(data))
            return super().parsebytes(data, *args, **kwargs)

    monkeypatch.setattr(sieve_body, "BytesParser", Counting)
    script = BODY + "".join('if body :contains "w%d" { fileinto "%d"; }\n'
                            'if body :content "text" :contains "x%d" { fileinto "c"; }\n'
                            % (i, i, i) for i in range(20))
    assert filed(script, MIXED) == []
    assert len(calls) == 1


def test_body_text_is_bounded(monkeypatch):
    monkeypatch.setattr(sieve_body, "MAX_BODY_TEXT", 1000)
    m = msg("Subject: x\n", "a" * 990 + " early " + "b" * 2000 + " late\r\n")
    assert body_matches('body :contains "early"', m)
    assert not body_matches('body :contains "late"', m)
    assert not body_matches('body :raw :contains "late"', m)


def test_body_mime_bomb_is_bounded(monkeypatch):
    monkeypatch.setattr(sieve_body, "MAX_PARTS", 5)
    parts = "".join("--B\r\nContent-Type: text/plain\r\n\r\npart%d\r\n" % i for i in range(50))
    m = msg('MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary="B"\n',
            parts + "--B--\r\n")
    assert body_matches('body :contains "part0"', m)
    assert not body_matches('body :contains "part40"', m)


def test_body_deep_nesting_is_not_parsed():
    depth = 300
    nest = "".join('Content-Type: multipart/mixed; boundary="b%d"\r\n\r\n--b%d\r\n' % (i, i)
                   for i in range(depth))
    raw = ("Subject: x\r\nMIME-Version: 1.0\r\n" + nest
           + "Content-Type: text/plain\r\n\r\nhello deep\r\n").encode()
    assert body_matches('body :contains "hello deep"', Message(raw, "a@b", "c@d"))


def test_body_multipart_without_boundary_reads_as_text():
    m = msg("MIME-Version: 1.0\nContent-Type: multipart/mixed\n", "hello there\r\n")
    assert body_matches('body :text :contains "hello"', m)


# === variables (RFC 5229) =====================================================================

VARS = 'require ["variables", "fileinto"];\n'


@pytest.mark.parametrize("text, expanded", [
    # RFC 5229 §3 examples ("company" holds "ACME")
    ("&%${}!", "&%${}!"),
    ("${doh!}", "${doh!}"),
    ("${full}", ""),
    ("${company}", "ACME"),
    ("${BAD${Company}}", "${BADACME}"),
    ("${President, ${Company} Inc.}", "${President, ACME Inc.}"),
    # more
    ("${COMPANY}-${company}", "ACME-ACME"),            # names are case-insensitive
    ("${1a}", "${1a}"),
    ("$${company}}", "$ACME}"),
    ("${ company}", "${ company}"),
])
def test_rfc_5229_section_3_expansion(text, expanded):
    script = VARS + 'set "company" "ACME";\nfileinto "%s";' % text
    assert filed(script, msg()) == [expanded]


def test_expansion_happens_after_escape_processing():
    # a backslash cannot stop expansion; "${dollar}{" is the way to write "${"
    script = VARS + ('set "a" "x";\nset "dollar" "$";\n'
                     'fileinto "\\${a}|\\\\${a}|regarding ${dollar}{beep}";')
    assert filed(script, msg()) == ["x|\\x|regarding ${beep}"]


def test_values_are_not_expanded_again():
    # §3: one pass only
    script = VARS + 'set "b" "B";\nset "a" "${dollar}{b}";\nset "dollar" "$";\n' \
                    'set "c" "${dollar}{b}";\nfileinto "${c}";'
    assert filed(script, msg()) == ["${b}"]


def test_without_variables_nothing_is_expanded():
    assert filed('require "fileinto"; fileinto "${x}";', msg()) == ["${x}"]


def test_namespaces_are_refused():
    with pytest.raises(SieveError, match='line 2: unknown variable namespace in "\\${env.x}"'):
        compile_script(VARS + 'fileinto "a${env.x}";')


@pytest.mark.parametrize("script, reason", [
    ('set "a.b" "x";', 'bad variable name "a.b"'),
    ('set "1a" "x";', 'bad variable name "1a"'),
    ('set "${a}" "x";', 'bad variable name'),
    ('set :lower :upper "a" "x";', "single case"),
    ('set :lowerfirst :upperfirst "a" "x";', "single first-case"),
    ('set "a";', "missing argument"),
    ('if string :count "gt" "a" "1" { keep; }', "relational"),
])
def test_set_and_string_compile_errors(script, reason):
    with pytest.raises(SieveError, match=reason):
        compile_script(VARS + script)


def test_string_test_needs_variables():
    with pytest.raises(SieveError, match="variables"):
        compile_script('if string "a" "a" { keep; }')


def test_too_many_variables():
    text = VARS + "".join('set "v%d" "x";\n' % i for i in range(300))
    with pytest.raises(SieveError, match="more than 256 variables"):
        compile_script(text)


@pytest.mark.parametrize("text", [
    "if " + "allof(" * 33 + "true" + ")" * 33 + " { keep; }",
    "if " + "not " * 5000 + "true { keep; }",
    "if true {" * 40 + "keep;" + "}" * 40,
    "if " + "anyof(" * 100000 + "true" + ")" * 100000 + " { keep; }",
])
def test_nesting_is_bounded(text):
    with pytest.raises(SieveError, match=r"^line 1: blocks and tests nested more than 32 deep$"):
        compile_script(text)


def test_nesting_up_to_the_limit_compiles():
    compile_script("if " + "allof(" * 31 + "true" + ")" * 31 + " { keep; }")
    compile_script("if true {" * 32 + "keep;" + "}" * 32)


def test_deepest_line_skips_strings_and_comments():
    text = 'keep; # ((((((\n/* {{{{{{ */\nif header :is "x" "(((((" {\n  if allof(true, not allof(true)) { keep; }\n}\n'
    assert compiler._deepest_line(text) == 4


def test_rfc_5229_set_example():
    script = VARS + ('set "honorific"  "Mr";\n'
                     'set "first_name" "Wile";\n'
                     'set "last_name"  "Coyote";\n'
                     'set "vacation" text:\n'
                     'Dear ${HONORIFIC} ${last_name},\n'
                     "I'm out, please leave a message after the meep.\n"
                     '.\n;\n'
                     'fileinto "${vacation}";')
    assert filed(script, msg()) == [
        "Dear Mr Coyote,\nI'm out, please leave a message after the meep.\n"]


@pytest.mark.parametrize("modifiers, value, stored", [
    # RFC 5229 §4.1 examples ("a" holds "juMBlEd lETteRS")
    ("", "${a}", "juMBlEd lETteRS"),
    (":length", "${a}", "15"),
    (":lower", "${a}", "jumbled letters"),
    (":upperfirst", "${a}", "JuMBlEd lETteRS"),
    (":upperfirst :lower", "${a}", "Jumbled letters"),
    (":quotewildcard", "Rock*", "Rock\\*"),
    # precedence, whatever the order written: 40 case, 30 first, 20 quotewildcard, 10 length
    (":lower :upperfirst", "${a}", "Jumbled letters"),
    (":upper :lowerfirst", "${a}", "jUMBLED LETTERS"),
    (":length :quotewildcard", "a*?\\\\", "7"),
    (":quotewildcard :upper", "a*b", "A\\*B"),
    (":length", "", "0"),
    (":length", "Grüße", "5"),                          # characters, not octets
    (":upperfirst", "", ""),
])
def test_set_modifiers(modifiers, value, stored):
    script = VARS + 'set "a" "juMBlEd lETteRS";\nset %s "b" "%s";\nfileinto "${b}";' % (
        modifiers, value)
    assert filed(script, msg()) == [stored]


RFC5229_MATCH_EXAMPLE = VARS + """
if header :matches "List-ID" "*<*@*" {
    fileinto "INBOX.lists.${2}"; stop;
}

# Imagine the header
# Subject: [acme-users] [fwd] version 1.0 is out
if header :matches "Subject" "[*] *" {
    # ${1} will hold "acme-users",
    # ${2} will hold "[fwd] version 1.0 is out"
    fileinto "INBOX.lists.${1}"; fileinto "rest ${2}"; stop;
}

# Imagine the header
# To: coyote@ACME.Example.COM
if address :matches ["To", "Cc"] ["coyote@**.com",
        "wile@**.com"] {
    # ${0} is the matching address
    # ${1} is always the empty string
    # ${2} is part of the domain name ("ACME.Example")
    fileinto "INBOX.business.${2}"; fileinto "0=${0} 1=${1}"; stop;
} else {
    # Control wouldn't reach this block if any match was
    # successful, so no match variables are set at this
    # point.
}

if anyof (true, address :domain :matches "To" "*.com") {
    # The second test is never evaluated, so there are
    # still no match variables set.
    fileinto "none=${0}${1}"; stop;
}
"""


@pytest.mark.parametrize("headers, boxes", [
    ("List-ID: Sieve list <sieve@example.org>\n", ["INBOX.lists.sieve"]),
    ("Subject: [acme-users] [fwd] version 1.0 is out\n",
     ["INBOX.lists.acme-users", "rest [fwd] version 1.0 is out"]),
    ("To: coyote@ACME.Example.COM\n",
     ["INBOX.business.ACME.Example", "0=coyote@ACME.Example.COM 1="]),
    ("To: someone@example.org\n", ["none="]),
])
def test_rfc_5229_match_variables(headers, boxes):
    assert filed(RFC5229_MATCH_EXAMPLE, msg(headers)) == boxes


def test_failed_match_leaves_match_variables_alone():
    script = VARS + ('if header :matches "subject" "* world" {}\n'
                     'if header :matches "subject" "zzz*" {}\n'
                     'if header :is "subject" "hello world" {}\n'
                     'fileinto "${1}|${0}|${2}";')
    assert filed(script, msg("Subject: hello world\n")) == ["hello|hello world|"]


def test_match_variable_numbers():
    script = VARS + ('if header :matches "subject" "?-*-*" {\n'
                     '  fileinto "${1}${00}${01}${3}${10}${99999999999999999999}";\n}')
    assert filed(script, msg("Subject: a-b-c\n")) == ["aa-b-cac"]


@pytest.mark.parametrize("key, value, groups", [
    ("*a?b*c*", "qqa-bxxcyy", ["qqa-bxxcyy", "qq", "-", "xx", "yy"]),
    ("*", "", ["", ""]),
    ("a*", "a", ["a", ""]),
    ("*x*", "axbxc", ["axbxc", "a", "bxc"]),
    ("*x*x", "axbxcx", ["axbxcx", "a", "bxc"]),
    ("??*?", "abcde", ["abcde", "a", "b", "cd", "e"]),
    ("*\\\\**", "a*b*c", ["a*b*c", "a", "b*c"]),        # a literal "*" between two stars
])
def test_match_variable_captures(key, value, groups):
    script = VARS + ('if header :matches "subject" "%s" {\n'
                     '  fileinto "${0}|${1}|${2}|${3}|${4}|${5}";\n}' % key)
    expected = "|".join((groups + [""] * 6)[:6])
    assert filed(script, msg("Subject: %s\n" % value)) == [expected]


def test_match_variables_keep_the_value_case():
    script = VARS + 'if header :matches "subject" "*WORLD" { fileinto "${1}"; }'
    assert filed(script, msg("Subject: Hello World\n")) == ["Hello "]


def test_match_variables_from_envelope_and_string():
    script = 'require ["variables", "fileinto", "envelope"];\n' \
             'if envelope :matches "from" "*@*" { fileinto "${2}/${1}"; }\n' \
             'if string :matches "x-${1}-y" "x-*-y" { fileinto "again ${1}"; }'
    assert filed(script, msg()) == ["example.org/sender", "again sender"]


def test_wildcards_from_variables_are_significant_in_matches():
    # §4.1: hence :quotewildcard
    script = VARS + ('set "pat" "*sale*";\nset :quotewildcard "lit" "*sale*";\n'
                     'if header :matches "subject" "${pat}" { fileinto "pattern"; }\n'
                     'if header :matches "subject" "${lit}" { fileinto "literal"; }')
    assert filed(script, msg("Subject: big sale now\n")) == ["pattern"]
    assert filed(script, msg("Subject: *sale*\n")) == ["pattern", "literal"]


def test_variables_in_every_string_argument():
    script = ('require ["variables", "fileinto", "envelope", "reject", "imap4flags", "copy"];\n'
              'set "h" "X-Folder";\nset "e" "TO";\n'
              'if header :matches "${h}" "*" { set "box" "${1}"; }\n'
              'if exists "${h}" { fileinto :copy "${box}"; }\n'
              'if address :is "${h}" "" { keep; }\n'
              'if envelope :domain "${e}" "example.com" { redirect :copy "x@${box}.example"; }\n'
              'keep :flags "${box}";')
    assert actions(script, msg("X-Folder: Work\n")) == [
        FileInto("Work", copy=True), Redirect("x@Work.example", copy=True), Keep(flags=("Work",))]


RFC5229_STRING_EXAMPLE = VARS + """
set "state" "${state} pending";
if string :matches " ${state} " "* pending *" {
    # the above test always succeeds
    fileinto "ok";
}
"""


def test_rfc_5229_string_example():
    assert filed(RFC5229_STRING_EXAMPLE, msg()) == ["ok"]


@pytest.mark.parametrize("test, expected", [
    ('string "abc" "ABC"', True),                      # :is, i;ascii-casemap by default
    ('string :comparator "i;octet" "abc" "ABC"', False),
    ('string :contains ["x", "abc"] "b"', True),
    ('string ["", "  "] ""', True),
    ('string " a " "a"', False),                       # §5: no whitespace stripping
    ('string "${nothing}" ""', True),
])
def test_string_test(test, expected):
    assert (filed(VARS + "if %s { fileinto \"yes\"; }" % test, msg()) == ["yes"]) is expected


def test_variable_size_is_bounded():
    script = VARS + ('set "a" "0123456789abcdef";\n'
                     + "".join('set "a" "${a}${a}";\n' for _ in range(12))
                     + 'set :length "n" "${a}";\nfileinto "${n}";')
    assert filed(script, msg()) == [str(interpreter.MAX_VARIABLE_SIZE)]


def test_expansion_is_bounded(monkeypatch):
    monkeypatch.setattr(interpreter, "MAX_EXPANSION", 10)
    script = VARS + 'set "a" "0123456789";\nfileinto "<${a}${a}>";'
    assert filed(script, msg()) == ["<0123456789>"]


def test_matches_capture_on_a_long_header_is_bounded():
    script = VARS + 'if header :matches "subject" "*b*" { set :length "n" "${1}"; ' \
                    'fileinto "${n}"; }'
    assert filed(script, msg("Subject: " + "a" * 6000 + "b\n")) == [
        str(interpreter.MAX_VARIABLE_SIZE)]


# === cost: many rules, one parse =============================================================

def fifty_rules():
    rules = []
    for i in range(50):
        if i % 5 == 4:
            rules.append('if address :domain :is ["from", "sender"] "list%d.example" '
                         '{ fileinto "L%d"; stop; }' % (i, i))
        else:
            rules.append('if header :contains "subject" "xyz%d" { fileinto "A%d"; stop; }'
                         % (i, i))
    return compile_script('require ["fileinto"];\n' + "\n".join(rules))


def test_fifty_rules_parse_the_header_once_and_never_the_body(monkeypatch):
    calls = []
    real = interpreter.BytesHeaderParser

    class Counting(real):
        def parsebytes(self, data, *args, **kwargs):
            calls.append(data)
            return super().parsebytes(data, *args, **kwargs)

    monkeypatch.setattr(interpreter, "BytesHeaderParser", Counting)
    decoded = []
    monkeypatch.setattr(interpreter, "decode_words",
                        _counting(interpreter.decode_words, decoded))
    m = msg("From: a@list49.example\nSubject: =?utf-8?q?Caf=C3=A9?=\n", "line\r\n" * 10000)
    assert run(fifty_rules(), m).actions == [FileInto("L49")]
    assert len(calls) == 1 and b"line" not in calls[0]
    assert len(decoded) == 1                        # the subject, decoded once for 40 rules


def _counting(function, calls):
    def wrapper(*args):
        calls.append(args)
        return function(*args)
    return wrapper


def test_fifty_rules_stay_cheap():
    import time
    script = fifty_rules()
    m = msg("".join("Received: from h%d\n" % i for i in range(20))
            + "From: One <one@example.org>\nSubject: hello\n", "line\r\n" * 20000)
    start = time.perf_counter()
    for _ in range(200):
        assert run(script, m).actions == [Keep()]
    assert (time.perf_counter() - start) / 200 < 0.02    # generous: ~1 ms on a laptop


def test_runtime_error_keeps_notes():
    script = compile_script('require ["vacation", "reject"];\nvacation "a";\nreject "b";')
    res = run(script, msg("To: x@example.org\n"))
    assert res.actions == [Keep()] and res.error and res.notes
