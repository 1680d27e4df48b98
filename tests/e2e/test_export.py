"""haven export: an account's mail as Maildir++ that Python's mailbox module (and Dovecot) read
back byte for byte, with flags, keywords, dates and the folder tree; calendars as .ics,
address books as .vcf, Sieve scripts; a second run writes only what is new."""

from __future__ import annotations

import mailbox
import os

from icalendar import Calendar
from imapclient import IMAPClient

from gateways.imap import utf7

EVENTS = """BEGIN:VCALENDAR\r
VERSION:2.0\r
PRODID:-//test//EN\r
BEGIN:VTIMEZONE\r
TZID:Europe/Paris\r
BEGIN:STANDARD\r
DTSTART:19701025T030000\r
TZOFFSETFROM:+0200\r
TZOFFSETTO:+0100\r
END:STANDARD\r
END:VTIMEZONE\r
BEGIN:VEVENT\r
UID:{uid}\r
DTSTAMP:20260101T000000Z\r
DTSTART;TZID=Europe/Paris:20261201T100000\r
SUMMARY:{summary}\r
END:VEVENT\r
END:VCALENDAR\r
"""
CARD = "BEGIN:VCARD\r\nVERSION:3.0\r\nUID:{uid}\r\nFN:{name}\r\nN:{name};;;;\r\nEND:VCARD\r\n"
SCRIPT = b'require "fileinto";\r\nif header :contains "subject" "x" { fileinto "Archive"; }\r\n'


def _cli(haven, *args, input=b""):
    r = haven.cli(*args, input=input)
    assert r.returncode == 0, (args, r.stderr)
    return r.stdout.decode()


def _calendar_contacts_and_script(haven, user, tmp_path, summaries, name) -> None:
    """Events in Calendar, one card in Contacts, an active script, as clients would leave them."""
    for i, summary in enumerate(summaries):
        _cli(haven, "dav", "import", user, "Calendar", "-", input=EVENTS.format(uid=f"ev{i}", summary=summary).encode())
    _cli(haven, "dav", "import", user, "Contacts", "-", input=CARD.format(uid="c1", name=name).encode())
    script = tmp_path / "rules.sieve"
    script.write_bytes(SCRIPT)
    _cli(haven, "sieve", "put", user, "rules", str(script))
    _cli(haven, "sieve", "activate", user, "rules")


def test_export_is_maildir_ics_vcf_and_sieve(haven, tmp_path):
    user, password = haven.new_user("export")
    raws = [b"From: a@example.org\r\nSubject: one\r\n\r\nfirst\r\n",
            b"From: b@example.org\r\nSubject: two\r\n\r\nsecond\r\n.dot line\r\n",
            b"From: c@example.org\r\nSubject: three\r\n\r\nthird\r\n"]
    c = IMAPClient(haven.imap[0], port=haven.imap[1], ssl=False, timeout=15)
    c.login(user, password)
    c.create_folder("Projets/Réunions")
    c.create_folder("v1.2")
    c.append("INBOX", raws[0], flags=[b"\\Seen", b"$Label1"], msg_time=None)
    c.append("INBOX", raws[1], flags=[b"\\Flagged", b"\\Answered", b"$Important"])
    c.append("Projets/Réunions", raws[2], flags=[b"\\Draft"])
    c.append("v1.2", raws[0])
    c.select_folder("INBOX")
    fetched = {uid: (d[b"BODY[]"], d[b"INTERNALDATE"]) for uid, d in c.fetch([1, 2], ["BODY.PEEK[]", "INTERNALDATE"]).items()}
    c.logout()
    _calendar_contacts_and_script(haven, user, tmp_path, ["Meeting 0", "Meeting 1"], "Zoé")

    dest = tmp_path / "out"
    out = _cli(haven, "export", user, str(dest))
    assert "4 messages" in out and "4 written" in out and "2 items" in out and "1 cards" in out, out

    md = mailbox.Maildir(dest / "mail", factory=None, create=False)
    by_body = {md.get_bytes(key): md.get_message(key) for key in md.keys()}
    assert set(by_body) == {fetched[1][0], fetched[2][0]}  # byte for byte as IMAP sends them
    first, second = by_body[fetched[1][0]], by_body[fetched[2][0]]
    keywords = (dest / "mail" / "dovecot-keywords").read_text().split("\n")
    letter = {line.split(" ", 1)[1]: "abcdefghijklmnopqrstuvwxyz"[int(line.split(" ")[0])]
              for line in keywords if line}
    assert first.get_flags() == "S" + letter["$Label1"]
    assert second.get_flags() == "FR" + letter["$Important"]
    assert abs(first.get_date() - fetched[1][1].timestamp()) < 1  # mtime = INTERNALDATE
    names = sorted(md.list_folders())
    expected = sorted(["Archive", "Drafts", "Junk", "Sent", "Trash", utf7.encode("Projets"),
                       utf7.encode("Projets") + "." + utf7.encode("Réunions"), "v1&AC4-2"])
    assert names == expected, names
    sub = md.get_folder(utf7.encode("Projets") + "." + utf7.encode("Réunions"))
    [key] = sub.keys()
    assert sub.get_message(key).get_flags() == "D" and sub.get_bytes(key) == raws[2]
    dotted = md.get_folder("v1&AC4-2")
    assert [dotted.get_bytes(k) for k in dotted.keys()] == [raws[0]]
    assert "Archive" in (dest / "mail" / "subscriptions").read_text().split()

    cal = Calendar.from_ical((dest / "calendars" / "Calendar.ics").read_bytes())
    assert sorted(str(e.get("SUMMARY")) for e in cal.walk("VEVENT")) == ["Meeting 0", "Meeting 1"]
    assert len(list(cal.walk("VTIMEZONE"))) == 1  # each zone once
    cards = (dest / "contacts" / "Contacts.vcf").read_text(encoding="utf-8")
    assert cards.count("BEGIN:VCARD") == 1 and "FN:Zoé" in cards
    assert (dest / "sieve" / "rules.sieve").read_bytes() == SCRIPT
    assert (dest / "sieve" / "ACTIVE").read_text().strip() == "rules"

    # again: nothing new to write; one new message: only it
    before = {p: os.stat(p).st_mtime_ns for p in (dest / "mail" / "cur").iterdir()}
    assert "0 written, 4 there already" in _cli(haven, "export", user, str(dest))
    haven.deliver(user, b"From: d@example.org\r\nSubject: four\r\n\r\nfourth\r\n")
    assert "5 messages in 9 folders (1 written, 4 there already" in _cli(haven, "export", user, str(dest))
    assert all(os.stat(p).st_mtime_ns == t for p, t in before.items())


def _account_view(haven, user, password) -> dict:
    """folder -> sorted [(bytes, flags without \\Recent, INTERNALDATE)] as IMAP shows them."""
    c = IMAPClient(haven.imap[0], port=haven.imap[1], ssl=False, timeout=15)
    c.login(user, password)
    view = {}
    for _flags, _delim, name in c.list_folders():
        c.select_folder(name, readonly=True)
        uids = c.search()
        data = c.fetch(uids, ["BODY.PEEK[]", "FLAGS", "INTERNALDATE"]) if uids else {}
        view[name] = sorted((d[b"BODY[]"], tuple(sorted(f for f in d[b"FLAGS"] if f != b"\\Recent")),
                             d[b"INTERNALDATE"].timestamp()) for d in data.values())
    c.logout()
    return view


def test_export_then_import_gives_an_identical_account(haven, tmp_path):
    user, password = haven.new_user("source")
    c = IMAPClient(haven.imap[0], port=haven.imap[1], ssl=False, timeout=15)
    c.login(user, password)
    c.create_folder("Projets/Réunions")
    c.create_folder("a.b")
    for i in range(12):
        folder = ("INBOX", "Archive", "Projets/Réunions", "a.b")[i % 4]
        flags = [[b"\\Seen"], [b"\\Flagged", b"$Work"], [], [b"\\Answered", b"\\Seen", b"$Later", b"$Work"]][i % 4]
        c.append(folder, b"From: x%d@example.org\r\nMessage-ID: <m%d@example.org>\r\nSubject: n%d\r\n\r\nbody %d\r\n"
                 % (i, i, i, i), flags=flags)
    c.logout()
    haven.deliver(user, b"From: big@example.org\r\nSubject: big\r\n\r\n" + b"x" * 78 + b"\r\n" * 1 +
                  (b"y" * 998 + b"\r\n") * 1500)  # over a MiB: streamed both ways
    _calendar_contacts_and_script(haven, user, tmp_path, ["One"], "Ann")
    dest = tmp_path / "export"
    _cli(haven, "export", user, str(dest))

    other, other_password = haven.new_user("target")
    out = _cli(haven, "import", other, str(dest))
    assert "13 messages" in out and "2 calendar and contact items" in out and "1 Sieve scripts" in out, out
    assert _account_view(haven, other, other_password) == _account_view(haven, user, password)
    assert "Calendar\tcalendar\t1 item" in _cli(haven, "dav", "list", other)
    assert _cli(haven, "sieve", "get", other, "rules") == _cli(haven, "sieve", "get", user, "rules")
    assert _cli(haven, "sieve", "list", other) == _cli(haven, "sieve", "list", user)  # and it is active
    (dest / "contacts" / "Empty book.vcf").write_bytes(b"")  # an empty address book comes back empty
    again = _cli(haven, "import", other, str(dest))
    assert "Empty book\tcontacts\t0 items" in _cli(haven, "dav", "list", other)
    assert "0 messages into 0 folders (13 already there, skipped" in again, again


def test_import_of_an_mbox_file(haven, tmp_path):
    user, password = haven.new_user("mbox")
    path = tmp_path / "old.mbox"
    box = mailbox.mbox(path)
    for i, status in enumerate(("RO", "O", "RO")):
        msg = mailbox.mboxMessage(b"From: y@example.org\nSubject: s%d\nMessage-ID: <b%d@example.org>\n\nFrom the start\n"
                                  % (i, i))
        msg.set_from("y@example.org", time_=(2024, 3, 5 + i, 10, 11, 12, 0, 0, 0))
        msg.set_flags(status + ("F" if i == 2 else ""))
        box.add(msg)
    box.close()
    out = _cli(haven, "import", user, str(path), "--folder", "Old mail")
    assert "3 messages into 1 folders" in out, out
    c = IMAPClient(haven.imap[0], port=haven.imap[1], ssl=False, timeout=15)
    c.login(user, password)
    c.select_folder("Old mail", readonly=True)
    data = c.fetch(c.search(), ["BODY.PEEK[]", "FLAGS", "INTERNALDATE"])
    c.logout()
    got = sorted(data.values(), key=lambda d: d[b"INTERNALDATE"])
    assert [d[b"INTERNALDATE"].strftime("%d %H:%M:%S") for d in got] == ["05 10:11:12", "06 10:11:12", "07 10:11:12"]
    assert [set(d[b"FLAGS"]) - {b"\\Recent"} for d in got] == [{b"\\Seen"}, set(), {b"\\Seen", b"\\Flagged"}]
    # CRLF, the metadata fields gone, the >From quoting undone
    assert got[0][b"BODY[]"] == b"From: y@example.org\r\nSubject: s0\r\nMessage-ID: <b0@example.org>\r\n\r\nFrom the start\r\n"
    assert "0 messages into 0 folders (3 already there" in _cli(haven, "import", user, str(path), "--folder",
                                                                 "Old mail")


def test_import_pulls_an_account_from_another_imap_server(haven, tmp_path):
    """`haven import --imap` against an IMAP server (here another account of this Haven): every
    folder, flags, keywords and dates, a special-use folder into the local one of that use;
    run again, nothing is fetched twice."""
    user, password = haven.new_user("remote")
    c = IMAPClient(haven.imap[0], port=haven.imap[1], ssl=False, timeout=15)
    c.login(user, password)
    c.create_folder("Listes/python-dev")
    c.append("INBOX", b"From: a@example.org\r\nMessage-ID: <p1@example.org>\r\n\r\none\r\n", flags=[b"\\Seen", b"$Work"])
    c.append("Sent", b"From: me@example.org\r\nMessage-ID: <p2@example.org>\r\n\r\ntwo\r\n", flags=[b"\\Seen"])
    c.append("Listes/python-dev", b"From: l@example.org\r\n\r\nno message-id\r\n")
    c.append("INBOX", b"From: a@example.org\r\nMessage-ID: <p4@example.org>\r\n\r\ndeleted\r\n",
             flags=[b"\\Deleted"])
    c.select_folder("INBOX")
    c.expunge()  # in the source's Recovered Items: not pulled (deleted mail stays deleted)
    c.logout()
    other, other_password = haven.new_user("puller")
    host, port = haven.imap
    args = ("import", other, "--imap", f"{host}:{port}", "--user", user, "--password-stdin", "--insecure")
    out = _cli(haven, *args, input=password.encode() + b"\n")
    assert "3 messages into 3 folders" in out, out
    source, copy = _account_view(haven, user, password), _account_view(haven, other, other_password)
    assert len(source["Recovered Items/INBOX"]) == 1 and copy["Recovered Items"] == []
    assert "Recovered Items/INBOX" not in copy
    recovery = {"Recovered Items", "Recovered Items/INBOX"}
    assert {k: v for k, v in copy.items() if k not in recovery} == \
        {k: v for k, v in source.items() if k not in recovery}
    assert "0 messages into 0 folders (3 already there, skipped" in _cli(haven, *args, input=password.encode() + b"\n")
    r = haven.cli(*args, input=b"wrong\n")
    assert r.returncode == 69 and b"haven: " in r.stderr
