"""Moving a user from Dovecot to Haven and back, against a real Dovecot 2.3 (bench/dovecot.py's
instance: IMAP only, ``/`` as hierarchy separator, the listescape plugin, a master user,
STARTTLS and IMAPS with a certificate for ``localhost`` that the ``haven`` processes trust
through SSL_CERT_FILE):

- in over IMAP: ``haven import --imap`` of a Dovecot account filled through Dovecot's IMAP
  (nested and non-ASCII folders, an empty one, system flags, keywords, INTERNALDATEs, 8-bit
  bodies), compared folder by folder through both servers' IMAP (names, BODY[] sha256, flags
  and keywords, INTERNALDATE); after new mail in Dovecot a second run brings only the new
  messages; a third over implicit TLS (``--tls``) finds nothing to do;
- in from disk: ``haven import ADDRESS MAILDIR`` of such an account's Maildir as Dovecot left it
  (dovecot-keywords, dovecot-uidlist, index files; LF line ends);
- out: ``haven export``, the export's ``mail/`` given to Dovecot as the account's
  mail_location (docs/export.md "Moving a user to Dovecot"), compared through both IMAPs.

One Dovecot for the module, on free ports, in a private directory of its own (not under
pytest's base directory: a pytest starting meanwhile makes that 0700 again, and Dovecot's mail
user must traverse it), stopped when the module ends whatever happened.  Each test has
accounts of its own.  .ci/run installs Dovecot; with CI=true a Dovecot that cannot be started
fails the tests, elsewhere they are skipped saying why.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import secrets
import shutil
import tempfile
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from imapclient import IMAPClient

from bench.dovecot import MAIL_USER, DovecotInstance
from gateways.cli.export import PIECE
from gateways.cli.importer import crlf, crlf_copy
from gateways.common.tls import make_self_signed
from tests.conftest import IN_CI, free_port

#: folders made in the source account besides INBOX ("Leer" stays empty)
FOLDERS = ["Archiv", "Archiv/2024", "Entwürfe", "Leer", "Sent", "v1.2"]
#: the folders subscribed to there
SUBSCRIBED = ["INBOX", "Archiv/2024", "Entwürfe", "v1.2"]
#: a new Haven account's own subscriptions (its Recovered Items is always listed as subscribed)
RECOVERED = "Recovered Items"
HAVEN_SUBSCRIBED = {"INBOX", "Archive", "Drafts", "Junk", "Sent", "Trash", RECOVERED}
#: (folder, flags and keywords) of each message; message i has INTERNALDATE BASE + i days i hours
PLAN = [("INBOX", [b"\\Seen"]),
        ("INBOX", [b"\\Flagged", b"$label1"]),
        ("INBOX", []),
        ("INBOX", [b"\\Answered", b"\\Seen", b"$Forwarded"]),
        ("Archiv", [b"\\Seen", b"NonJunk"]),
        ("Archiv/2024", [b"\\Seen", b"$Junk", b"Junk"]),
        ("Archiv/2024", [b"\\Seen", b"$NotJunk", b"$label1"]),
        ("Entwürfe", [b"\\Draft"]),
        ("Sent", [b"\\Seen", b"\\Answered"]),
        ("v1.2", [b"\\Seen", b"$label1"])]
#: a Dovecot master user (login, password): logs in as any account with "ACCOUNT*login"
MASTER = ("migrator", "master-" + secrets.token_hex(6))
#: what the module's Dovecot has beside bench/dovecot.py's configuration: the listescape plugin
#: (a "." inside a folder name level) and a master user, as docs/export.md sets them up
MASTER_CONF = """
mail_plugins = $mail_plugins listescape
auth_master_user_separator = *
passdb {{
  driver = passwd-file
  master = yes
  args = scheme=PLAIN username_format=%u {masters}
  result_success = continue
}}
"""
#: 1.5 MB of 8-bit text
BIG = (b"From: big@example.org\r\nSubject: gross\r\nMessage-ID: <big@example.org>\r\nContent-Type: text/plain; "
       b"charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n" + ("Größe " * 160 + "\r\n").encode() * 1500)
BASE = datetime(2024, 3, 5, 10, 11, 12, tzinfo=timezone(timedelta(hours=1)))


def message(tag: str, i: int) -> bytes:
    """Message ``i`` of a corpus: 8-bit UTF-8 text (one 7-bit, one without Message-ID)."""
    head = (b"From: Absender %d <a%d@example.org>\r\nTo: someone@example.test\r\nSubject: Nachricht %d\r\n"
            b"Date: Tue, 5 Mar 2024 10:11:12 +0100\r\n" % (i, i, i))
    if i != 7:
        head += b"Message-ID: <%s.%d@example.org>\r\n" % (tag.encode(), i)
    if i == 2:
        return head + b"\r\nplain ASCII, %d\r\n" % i
    return (head + b"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n"
            b"Content-Transfer-Encoding: 8bit\r\n\r\n" + "Grüße aus Köln, Nachricht {}\r\n".format(i).encode())


def fill(endpoint, user: str, password: str, tag: str, plan=PLAN, start: int = 0, folders=FOLDERS) -> None:
    """The corpus into an account through IMAP (CREATE, SUBSCRIBE, APPEND with flags and a date)."""
    c = IMAPClient(endpoint[0], port=endpoint[1], ssl=False, timeout=15)
    c.login(user, password)
    existing = {name for _f, _d, name in c.list_folders()}
    for name in folders:
        if name not in existing:
            c.create_folder(name)
    for name in SUBSCRIBED:
        c.subscribe_folder(name)
    for i, (folder, flags) in enumerate(plan, start):
        c.append(folder, message(tag, i), flags=flags, msg_time=BASE + timedelta(days=i, hours=i))
    c.logout()


def view(endpoint, user: str, password: str) -> dict:
    """folder -> sorted [(sha256 of BODY[], flags and keywords but \\Recent, INTERNALDATE as a
    Unix time)], every selectable folder, as IMAP shows it."""
    c = IMAPClient(endpoint[0], port=endpoint[1], ssl=False, timeout=15)
    c.normalise_times = False
    c.login(user, password)
    out = {}
    for flags, _delim, name in c.list_folders():
        if b"\\Noselect" in flags or b"\\NonExistent" in flags:
            continue
        c.select_folder(name, readonly=True)
        uids = c.search()
        data = c.fetch(uids, ["BODY.PEEK[]", "FLAGS", "INTERNALDATE"]) if uids else {}
        out[name] = sorted((hashlib.sha256(d[b"BODY[]"]).hexdigest(),
                            tuple(sorted(f.decode() for f in d[b"FLAGS"] if f != b"\\Recent")),
                            int(d[b"INTERNALDATE"].timestamp())) for d in data.values())
    c.logout()
    return out


def subscribed(endpoint, user: str, password: str) -> set:
    c = IMAPClient(*endpoint, ssl=False, timeout=15)
    c.login(user, password)
    names = {name for _f, _d, name in c.list_sub_folders()}
    c.logout()
    return names


def same_subscriptions(haven_endpoint, dovecot_endpoint, user, password, source, source_password) -> bool:
    """Haven's account is subscribed to what the Dovecot one was, and to its own defaults."""
    ours, theirs = subscribed(haven_endpoint, user, password), subscribed(dovecot_endpoint, source, source_password)
    return theirs == set(SUBSCRIBED) and theirs <= ours <= theirs | HAVEN_SUBSCRIBED


def same_mail(haven_view: dict, dovecot_view: dict) -> dict:
    """Haven's view restricted to Dovecot's folders and its own non-empty ones (a new Haven
    account has empty Drafts, Trash, Junk, Archive of its own)."""
    return {name: msgs for name, msgs in haven_view.items() if msgs or name in dovecot_view}


def _cli(haven, *args, input=b""):
    r = haven.cli(*args, input=input)
    assert r.returncode == 0, (args, r.stdout, r.stderr)
    return r.stdout.decode()


@pytest.fixture(scope="module")
def dovecot():
    base = Path(tempfile.mkdtemp(prefix="haven-dovecot-"))
    make_self_signed("localhost", base / "tls" / "cert.pem", base / "tls" / "key.pem")
    masters = base / "master-users"
    masters.write_text(f"{MASTER[0]}:{{PLAIN}}{MASTER[1]}\n")
    masters.chmod(0o644)
    inst = DovecotInstance(base=base / "dovecot", protocols=("imap",), imap_port=free_port(),
                           imaps_port=free_port(), users={}, separator="/",
                           tls_cert=base / "tls" / "cert.pem", tls_key=base / "tls" / "key.pem",
                           extra_conf=MASTER_CONF.format(masters=masters))
    try:
        inst.start(install=False)
    except (RuntimeError, OSError) as e:
        shutil.rmtree(base, ignore_errors=True)
        why = f"Dovecot could not be started: {e}"
        if IN_CI:
            pytest.fail("CI=true requires Dovecot (.ci/run installs dovecot-imapd). " + why, pytrace=False)
        pytest.skip(why)
    try:
        yield inst
    finally:
        inst.stop()
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def trust_dovecot(dovecot, monkeypatch):
    """``haven`` commands started from here check Dovecot's certificate against its own."""
    monkeypatch.setenv("SSL_CERT_FILE", str(dovecot.tls_cert))


def dovecot_user(dovecot, name: str, mail: str | None = None) -> tuple[str, str]:
    address = f"{name}-{secrets.token_hex(3)}@example.test"
    password = "dc-" + secrets.token_hex(6)
    dovecot.add_user(address, password, mail=mail)
    return address, password


def test_pull_from_dovecot_over_imap(haven, dovecot, trust_dovecot):
    imap = (dovecot.host, dovecot.imap_port)
    source, source_password = dovecot_user(dovecot, "pull")
    fill(imap, source, source_password, source)
    target, target_password = haven.new_user("fromdovecot")
    # STARTTLS on the IMAP port, the certificate checked (no --insecure)
    args = ("import", target, "--imap", f"localhost:{dovecot.imap_port}", "--user", source, "--password-stdin")
    out = _cli(haven, *args, input=source_password.encode() + b"\n")
    assert f"{len(PLAN)} messages into 6 folders (0 already there" in out, out
    assert tls_logins(dovecot, source) == 1
    theirs = view(imap, source, source_password)
    assert sorted(theirs) == sorted(["INBOX", *FOLDERS])
    ours = view(haven.imap, target, target_password)
    assert same_mail(ours, theirs) == theirs
    assert same_subscriptions(haven.imap, imap, target, target_password, source, source_password)

    # more mail over there, and flags changed there: the new messages come, the flags follow
    fill(imap, source, source_password, source, plan=[("INBOX", [b"\\Seen"]), ("Archiv/2024", [b"$label2"])],
         start=len(PLAN))
    c = IMAPClient(*imap, ssl=False, timeout=15)
    c.login(source, source_password)
    c.select_folder("INBOX")
    first, second = sorted(c.search())[:2]
    c.add_flags([first], [b"\\Flagged"])
    c.set_flags([second], [b"\\Seen", b"$label9"])
    c.logout()
    out = _cli(haven, *args, input=source_password.encode() + b"\n")
    assert f"2 messages into 2 folders ({len(PLAN)} already there, skipped, 2 of them with new flags" in out, out
    theirs = view(imap, source, source_password)
    assert same_mail(view(haven.imap, target, target_password), theirs) == theirs

    # implicit TLS (--tls), as the master user: the same account, nothing new
    args = ("import", target, "--imap", f"localhost:{dovecot.imaps_port}", "--tls", "--user",
            f"{source}*{MASTER[0]}", "--password-stdin")
    out = _cli(haven, *args, input=MASTER[1].encode() + b"\n")
    assert f"0 messages into 0 folders ({len(PLAN) + 2} already there" in out, out
    assert tls_logins(dovecot, source) == 3


def tls_logins(dovecot, user: str) -> int:
    """How many logins to ``user`` Dovecot logged as made over TLS (STARTTLS or IMAPS)."""
    return sum(1 for line in dovecot.log().splitlines()
               if "Login: " in line and f"user=<{user}>" in line and ", TLS" in line)


def test_import_of_a_dovecot_maildir_then_the_rest_over_imap(haven, dovecot, trust_dovecot):
    """The bulk from disk, then at the cut-over what came since over IMAP: the two agree on
    what is there already (Dovecot keeps LF line ends on disk and serves CRLF)."""
    imap = (dovecot.host, dovecot.imap_port)
    source, source_password = dovecot_user(dovecot, "maildir")
    fill(imap, source, source_password, source)
    c = IMAPClient(*imap, ssl=False, timeout=15)
    c.login(source, source_password)
    c.append("Archiv", BIG, flags=[b"\\Seen"], msg_time=BASE)  # over STREAM_OVER: copied a piece at a time
    c.logout()
    theirs = view(imap, source, source_password)  # Dovecot's own index and uidlist files are there now
    maildir = dovecot.mail_dir / source
    assert (maildir / "dovecot-uidlist").is_file() and (maildir / ".Archiv.2024" / "dovecot-keywords").is_file()
    assert b"\r\n" not in next((maildir / ".Archiv" / "cur").iterdir()).read_bytes()
    target, target_password = haven.new_user("frommaildir")
    out = _cli(haven, "import", target, str(maildir))
    assert f"{len(PLAN) + 1} messages into 6 folders (0 already there" in out, out
    assert same_mail(view(haven.imap, target, target_password), theirs) == theirs
    assert same_subscriptions(haven.imap, imap, target, target_password, source, source_password)
    out = _cli(haven, "import", target, str(maildir))
    assert f"0 messages into 0 folders ({len(PLAN) + 1} already there" in out, out

    fill(imap, source, source_password, source, plan=[("v1.2", [b"\\Flagged"])], start=len(PLAN))
    out = _cli(haven, "import", target, "--imap", f"localhost:{dovecot.imap_port}", "--user", source,
               "--password-stdin", input=source_password.encode() + b"\n")
    assert f"1 messages into 1 folders ({len(PLAN) + 1} already there" in out, out
    theirs = view(imap, source, source_password)
    assert same_mail(view(haven.imap, target, target_password), theirs) == theirs


@pytest.mark.parametrize("data", [b"a\nb\r\nc\n", b"x" * (PIECE - 1) + b"\r\nnext\n",
                                  b"x" * (PIECE - 1) + b"\n\n" + b"y\n" * PIECE, b"\r" * (PIECE + 3) + b"\n"])
def test_lf_to_crlf_a_piece_at_a_time(data):
    """A CR ending one piece and the LF starting the next are one line end, not two."""
    out = io.BytesIO()
    assert crlf_copy(io.BytesIO(data), out) == len(out.getvalue())
    assert out.getvalue() == crlf(data) == re.sub(rb"(?<!\r)\n", b"\r\n", data)


def test_export_to_dovecot(haven, dovecot):
    user, password = haven.new_user("todovecot")
    fill(haven.imap, user, password, user)
    haven.deliver(user, message(user, 20))  # with LMTP's Return-Path and Received lines
    c = IMAPClient(*haven.imap, ssl=False, timeout=15)
    c.login(user, password)
    c.unsubscribe_folder("Junk")
    c.logout()
    dest = dovecot.base / ("export-" + secrets.token_hex(3))
    _cli(haven, "export", user, str(dest))
    shutil.chown(dest, MAIL_USER, MAIL_USER)  # Dovecot writes its index beside the messages
    for parent, dirs, files in os.walk(dest):
        for name in dirs + files:
            shutil.chown(os.path.join(parent, name), MAIL_USER, MAIL_USER)
    dovecot.add_user(user, password, mail=f"maildir:{dest}/mail")

    imap = (dovecot.host, dovecot.imap_port)
    # Haven's Recovered Items is a view of deleted mail, not a folder: it is not exported
    ours = {name: msgs for name, msgs in view(haven.imap, user, password).items() if name != RECOVERED}
    theirs = view(imap, user, password)
    assert theirs == ours
    assert sum(len(msgs) for msgs in theirs.values()) == len(PLAN) + 1
    assert subscribed(imap, user, password) == subscribed(haven.imap, user, password) - {RECOVERED} == \
        (set(SUBSCRIBED) | HAVEN_SUBSCRIBED) - {"Junk", RECOVERED}
