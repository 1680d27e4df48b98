"""haven backup / backup --verify / restore on both engines: an online backup taken while LMTP
deliveries go on, checked, and one account brought back from it identical (bytes, flags, dates,
folders, calendar, scripts), into another account too, without touching the others."""

from __future__ import annotations

import threading

from imapclient import IMAPClient

from tests.conftest import ENGINES, mariadb_available
from tests.e2e.test_export import _account_view, _calendar_contacts_and_script, _cli


def test_backup_under_load_then_restore_an_account(haven, tmp_path):
    user, password = haven.new_user("saved")
    c = IMAPClient(haven.imap[0], port=haven.imap[1], ssl=False, timeout=15)
    c.login(user, password)
    c.create_folder("Projets/Réunions")
    for i in range(6):
        c.append(("INBOX", "Projets/Réunions", "Archive")[i % 3],
                 b"From: s@example.org\r\nMessage-ID: <k%d@example.org>\r\nSubject: %d\r\n\r\nbody\r\n" % (i, i),
                 flags=[[b"\\Seen"], [b"$Work", b"\\Flagged"], []][i % 3])
    c.append("INBOX", b"From: big@example.org\r\nSubject: big\r\n\r\n" + (b"z" * 998 + b"\r\n") * 1200)  # a file
    # blob, over a MiB: restored through a temporary file, a piece at a time
    c.logout()
    _calendar_contacts_and_script(haven, user, tmp_path, ["Kept"], "Kept Card")

    busy, busy_password = haven.new_user("busy")
    stop = threading.Event()
    delivered = []

    def load():
        i = 0
        while not stop.is_set():
            haven.deliver(busy, b"From: l@example.org\r\nMessage-ID: <load%d@example.org>\r\n\r\nload %d\r\n" % (i, i))
            delivered.append(i)
            i += 1
    thread = threading.Thread(target=load)
    thread.start()
    try:
        while len(delivered) < 20:
            threading.Event().wait(0.05)
        before = len(delivered)
        dest = tmp_path / "backup"
        out = _cli(haven, "backup", str(dest))
    finally:
        stop.set()
        thread.join()
    assert "message files copied" in out, out
    assert "0 problems" in _cli(haven, "backup", "--verify", str(dest))

    # one account back, into a new account: identical; the busy account is left as it is
    out = _cli(haven, "restore", str(dest), "--account", user, "--into", "copy@example.test")
    assert "7 messages" in out and "2 calendar and contact items" in out and "1 Sieve scripts" in out, out
    r = haven.cli("user", "passwd", "copy@example.test", "--password-stdin", input=b"copy-pw\n")
    assert r.returncode == 0, r.stderr
    assert _account_view(haven, "copy@example.test", "copy-pw") == _account_view(haven, user, password)
    assert "0 messages into 0 folders (7 there already)" in _cli(haven, "restore", str(dest), "--account", user,
                                                                  "--into", "copy@example.test")
    # the busy account as the snapshot saw it: every delivery acknowledged before the backup, in order
    out = _cli(haven, "restore", str(dest), "--account", busy, "--into", "busycopy@example.test")
    haven.cli("user", "passwd", "busycopy@example.test", "--password-stdin", input=b"b-pw\n")
    restored = _account_view(haven, "busycopy@example.test", "b-pw")["INBOX"]
    live = _account_view(haven, busy, busy_password)["INBOX"]
    assert before <= len(restored) <= len(live) and set(restored) <= set(live)

    # incremental: nothing new to copy; a damaged file is found
    again = _cli(haven, "backup", str(dest))
    assert "0 message files copied" in again and "1 there already" in again, again
    [blob] = [p for p in (dest / "blobs").rglob("*") if p.is_file()]
    blob.write_bytes(blob.read_bytes()[:-10] + b"0123456789")
    r = haven.cli("backup", "--verify", str(dest))
    assert r.returncode == 65 and b"blob " in r.stderr, (r.stdout, r.stderr)
    r = haven.cli("restore", str(dest), "--account", "nobody@example.test")
    assert r.returncode == 65 and b"has no account nobody@example.test" in r.stderr


def test_whole_restore_into_an_empty_store_on_either_engine(haven, haven_factory, tmp_path):
    """A new server on the other engine (when it is there; else the same) gets every account of
    the module's server back: passwords, names, states, aliases, mail, calendars, scripts."""
    engine = {"sqlite": "mariadb", "mariadb": "sqlite"}[haven.engine]
    if engine not in ENGINES or (engine == "mariadb" and not mariadb_available()):
        engine = haven.engine
    user, password = haven.new_user("whole")
    c = IMAPClient(haven.imap[0], port=haven.imap[1], ssl=False, timeout=15)
    c.login(user, password)
    c.append("Archive", b"From: w@example.org\r\nMessage-ID: <w1@example.org>\r\n\r\nkept\r\n", flags=[b"$Work"])
    c.logout()
    _calendar_contacts_and_script(haven, user, tmp_path, ["Whole"], "Whole Card")
    alias = "alias-of-" + user
    haven.cli("alias", "add", alias, user, check=True)
    off, _off_pw = haven.new_user("whole-off")
    haven.cli("user", "disable", off, check=True)
    gone, _gone_pw = haven.new_user("whole-gone")
    haven.cli("user", "del", gone, check=True)
    dest = tmp_path / "backup"
    _cli(haven, "backup", str(dest))

    fresh = haven_factory(engine)
    r = fresh.cli("restore", str(dest))
    assert r.returncode == 0, r.stderr
    assert b" aliases, " in r.stdout and b"accounts" in r.stdout, r.stdout
    assert _account_view(fresh, user, password) == _account_view(haven, user, password)  # the same password
    listing = fresh.cli("user", "list").stdout.decode()
    assert off in listing and gone not in listing
    assert any(off in line and "disabled" in line for line in listing.splitlines()), listing
    assert alias.encode() in fresh.cli("alias", "list").stdout
    # a second whole restore finds accounts there: refused, nothing touched
    r = fresh.cli("restore", str(dest))
    assert r.returncode == 65 and b"has accounts already" in r.stderr
    r = fresh.cli("restore", str(dest), "--into", "x@example.test")
    assert r.returncode == 64
