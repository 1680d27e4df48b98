"""Email items as ActiveSync carries them ([MS-ASEMAIL], [MS-ASAIRS]): fields, the body in each
form a phone asks for, truncation, attachments, flags and categories."""

from __future__ import annotations

import base64
import xml.etree.ElementTree as ET

from formats import mime
from gateways.activesync.mailitem import (HTML, MIME, PLAIN, RTF, BodyPreference, application_data, choose,
                                          keyword_of, truncate)
from gateways.activesync.wbxml import decode, encode

ALTERNATIVE = (
    b"From: =?utf-8?q?J=C3=BCrgen?= <j@example.org>\r\nTo: Ann <ann@example.test>, bob@example.test\r\n"
    b"Cc: c@example.test\r\nSubject: Re: Fwd: Plan\r\nMessage-ID: <m2@example.org>\r\n"
    b"References: <root@example.org> <m1@example.org>\r\nImportance: high\r\nMIME-Version: 1.0\r\n"
    b"Content-Type: multipart/mixed; boundary=outer\r\n\r\n"
    b"--outer\r\nContent-Type: multipart/alternative; boundary=alt\r\n\r\n"
    b"--alt\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n"
    b"Gr=C3=BC=C3=9Fe, the plan.\r\n"
    b"--alt\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<p>Gr\xc3\xbc\xc3\x9fe, <b>the plan</b>.</p>\r\n"
    b"--alt--\r\n"
    b"--outer\r\nContent-Type: application/pdf; name*=utf-8''R%C3%A9sum%C3%A9.pdf\r\n"
    b"Content-Disposition: attachment; filename*=utf-8''R%C3%A9sum%C3%A9.pdf\r\n"
    b"Content-Transfer-Encoding: base64\r\n\r\n" + base64.encodebytes(b"%PDF" * 300).replace(b"\n", b"\r\n") +
    b"--outer\r\nContent-Type: image/png\r\nContent-ID: <logo@x>\r\nContent-Transfer-Encoding: base64\r\n\r\n"
    b"iVBORw0KGgo=\r\n--outer--\r\n")

HTML_ONLY = (b"From: h@example.org\r\nTo: ann@example.test\r\nSubject: html\r\nMIME-Version: 1.0\r\n"
             b"Content-Type: text/html; charset=iso-8859-1\r\n\r\n"
             b"<html><head><style>p{}</style></head><body><p>Caf\xe9 &amp; more<br>line</p></body></html>\r\n")


def item(raw, flags=(), pref=BodyPreference(PLAIN), version=16.1):
    a = mime.analyze(raw)
    data = application_data(a["envelope"], a["structure"], raw, frozenset(flags), 1796520000, pref,
                            lambda section: f"7:42:{section}", version)
    return {el.tag: el for el in data}, data


def text(el, tag):
    found = el.find(tag)
    return None if found is None else found.text


def test_fields_of_a_message():
    fields, data = item(ALTERNATIVE, ["\\Seen", "\\Flagged", "$label2", "projekt", "$Forwarded"])
    assert fields["{Email}From"].text == '"Jürgen" <j@example.org>'
    assert fields["{Email}To"].text == '"Ann" <ann@example.test>, bob@example.test'
    assert fields["{Email}DisplayTo"].text == "Ann; bob@example.test"
    assert fields["{Email}Cc"].text == "c@example.test"
    assert fields["{Email}Subject"].text == "Re: Fwd: Plan"
    assert fields["{Email}ThreadTopic"].text == "Plan"
    assert fields["{Email}DateReceived"].text == "2026-12-06T01:20:00.000Z"
    assert fields["{Email}Importance"].text == "2" and fields["{Email}Read"].text == "1"
    assert text(fields["{Email}Flag"], "{Email}Status") == "2"
    assert [c.text for c in fields["{Email}Categories"]] == ["Work", "projekt"]  # $Forwarded is no category
    assert fields["{Email}MessageClass"].text == "IPM.Note"
    assert fields["{AirSyncBase}NativeBodyType"].text == "1"
    conv = fields["{Email2}ConversationId"].text
    assert isinstance(conv, bytes) and len(conv) == 16
    other = ALTERNATIVE.replace(b"<m2@example.org>", b"<m3@example.org>").replace(b"<m1@", b"<m9@")
    assert item(other)[0]["{Email2}ConversationId"].text == conv  # the same root: the same conversation
    unread, _ = item(HTML_ONLY)
    assert unread["{Email}Read"].text == "0" and len(unread["{Email}Flag"]) == 0  # an empty Flag: cleared
    assert "{Email}Categories" not in unread and unread["{Email}Importance"].text == "1"


def test_bodies_in_each_form():
    fields, _ = item(ALTERNATIVE, pref=BodyPreference(PLAIN))
    b = fields["{AirSyncBase}Body"]
    assert text(b, "{AirSyncBase}Type") == "1" and text(b, "{AirSyncBase}Data") == "Grüße, the plan."
    assert text(b, "{AirSyncBase}Truncated") == "0"
    assert text(b, "{AirSyncBase}EstimatedDataSize") == str(len("Grüße, the plan.".encode()))
    fields, _ = item(ALTERNATIVE, pref=BodyPreference(HTML, preview=10))
    b = fields["{AirSyncBase}Body"]
    assert text(b, "{AirSyncBase}Data").startswith("<p>Grüße, <b>the plan</b>") and \
        text(b, "{AirSyncBase}Preview") == "Grüße, the"
    fields, _ = item(HTML_ONLY, pref=BodyPreference(PLAIN))
    assert text(fields["{AirSyncBase}Body"], "{AirSyncBase}Data") == "Café & more\nline"
    assert fields["{AirSyncBase}NativeBodyType"].text == "2"
    fields, _ = item(HTML_ONLY.replace(b"text/html", b"text/plain").replace(b"<", b"[")
                     .replace(b"Content-Type: text/plain; charset=iso-8859-1", b"Content-Type: text/plain"),
                     pref=BodyPreference(HTML))
    assert text(fields["{AirSyncBase}Body"], "{AirSyncBase}Data").startswith("<html><body><pre>[html&gt;[head&gt;")
    fields, _ = item(ALTERNATIVE, pref=BodyPreference(MIME))
    b = fields["{AirSyncBase}Body"]
    assert text(b, "{AirSyncBase}Type") == "4" and text(b, "{AirSyncBase}Data") == ALTERNATIVE  # octet for octet


def test_truncation_and_all_or_none():
    data, cut = truncate("aü".encode(), 2)  # would split the ü
    assert (data, cut) == (b"a", True)
    assert truncate(b"abc", None) == (b"abc", False) and truncate(b"abc", 3) == (b"abc", False)
    fields, _ = item(ALTERNATIVE, pref=BodyPreference(PLAIN, truncation=4))
    b = fields["{AirSyncBase}Body"]
    assert text(b, "{AirSyncBase}Data") == "Grü" and text(b, "{AirSyncBase}Truncated") == "1"
    assert int(text(b, "{AirSyncBase}EstimatedDataSize")) > 4
    fields, _ = item(ALTERNATIVE, pref=BodyPreference(PLAIN, truncation=4, all_or_none=True))
    assert fields["{AirSyncBase}Body"].find("{AirSyncBase}Data") is None
    fields, _ = item(ALTERNATIVE, pref=BodyPreference(PLAIN, truncation=10000, all_or_none=True))
    assert text(fields["{AirSyncBase}Body"], "{AirSyncBase}Data") == "Grüße, the plan."


def test_attachments():
    fields, _ = item(ALTERNATIVE)
    atts = fields["{AirSyncBase}Attachments"]
    [pdf, logo] = atts
    assert text(pdf, "{AirSyncBase}DisplayName") == "Résumé.pdf"
    assert text(pdf, "{AirSyncBase}FileReference") == "7:42:2" and text(pdf, "{AirSyncBase}Method") == "1"
    assert abs(int(text(pdf, "{AirSyncBase}EstimatedDataSize")) - 1200) < 40
    assert pdf.find("{AirSyncBase}IsInline") is None
    assert text(logo, "{AirSyncBase}ContentId") == "logo@x" and text(logo, "{AirSyncBase}IsInline") == "1"
    assert text(logo, "{AirSyncBase}FileReference") == "7:42:3"
    assert "{AirSyncBase}Attachments" not in item(HTML_ONLY)[0]


def test_choice_of_body_and_categories_back():
    prefs = [BodyPreference(RTF), BodyPreference(MIME), BodyPreference(HTML)]
    assert choose(prefs, mime_support=0).type == HTML
    assert choose(prefs, mime_support=2).type == MIME
    assert choose(prefs, mime_support=1, smime=True).type == MIME
    assert choose([], 2).type == PLAIN and choose(None).type == PLAIN
    assert keyword_of("Work") == "$label2" and keyword_of("my tag") == "my_tag"


def test_never_raises_on_broken_messages():
    for raw in (b"", b"\x00\xff garbage", b"Content-Type: multipart/mixed; boundary=x\r\n\r\n--x\r\n",
                b"Content-Type: text/plain; charset=nonsense-42\r\nContent-Transfer-Encoding: base64\r\n\r\n!!!",
                b"Content-Type: text/plain; name*=bogus''%ZZ\r\nContent-Disposition: attachment\r\n\r\nx"):
        for kind in (PLAIN, HTML, MIME):
            item(raw, pref=BodyPreference(kind, truncation=5, preview=20))


def test_every_item_encodes_to_wbxml_and_back():
    """The elements made here are the codec's tags (gateways/activesync/wbxml.py): every form of
    body, with and without flags, encodes, and decodes to the same tree (opaque parts as bytes)."""
    def shape(el):
        return (el.tag, el.text, [shape(c) for c in el])

    for raw in (ALTERNATIVE, HTML_ONLY):
        for pref in (BodyPreference(PLAIN), BodyPreference(HTML, 100), BodyPreference(MIME),
                     BodyPreference(PLAIN, 5, True)):
            for flags in ((), ("\\Seen", "\\Flagged", "$label2", "projekt")):
                _, data = item(raw, flags, pref)
                root = ET.Element("{AirSync}Sync")
                root.append(data)
                assert shape(decode(encode(root))) == shape(root)
