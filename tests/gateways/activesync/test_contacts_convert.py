"""gateways/activesync/contacts.py: stored vCards (tests/data/contacts, shaped like real exports)
to EAS ApplicationData and back, through the WBXML codec."""

from __future__ import annotations

import base64
import datetime
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from gateways.activesync import contacts
from gateways.activesync.mailitem import BodyPreference
from gateways.activesync.pim import ConversionError
from gateways.activesync.wbxml import decode, encode

DATA = Path(__file__).resolve().parents[2] / "data" / "contacts"
V = (16, 1)
SAMPLES = ("apple-icloud", "google", "outlook", "thunderbird", "minimal")


def sample(name: str) -> str:
    return (DATA / f"{name}.vcf").read_text(encoding="utf-8")


def wire(el):
    """``el`` through WBXML and back: every tag must have a token."""
    return decode(encode(el))


def fields(data) -> dict:
    """ApplicationData as {"Page:Tag": text or [texts]} (Body: its Data)."""
    out = {}
    for child in data:
        page, _, tag = child.tag[1:].partition("}")
        if tag == "Body":
            out["Body"] = child.find("{AirSyncBase}Data").text
        elif len(child):
            out[f"{page}:{tag}"] = [c.text for c in child]
        else:
            out[f"{page}:{tag}"] = child.text
    return out


def app_data(**values) -> ET.Element:
    """ApplicationData from keyword fields (``Contacts2_NickName=`` for page Contacts2)."""
    data = ET.Element("{AirSync}ApplicationData")
    for key, value in values.items():
        page, _, tag = key.rpartition("_") if key.startswith("Contacts2_") else ("Contacts", "", key)
        el = ET.SubElement(data, f"{{{page}}}{tag}")
        if isinstance(value, list):
            for item in value:
                ET.SubElement(el, "{Contacts}Category" if tag == "Categories" else "{Contacts}Child").text = item
        elif tag == "Body":
            data.remove(el)
            body = ET.SubElement(data, "{AirSyncBase}Body")
            ET.SubElement(body, "{AirSyncBase}Type").text = "1"
            ET.SubElement(body, "{AirSyncBase}Data").text = value
        else:
            el.text = value
    return data


def normalized(text: str) -> str:
    return contacts.parse(text).serialize()


def lines(text: str) -> list:
    return text.replace("\r\n ", "").splitlines()


# -- vCard -> EAS --------------------------------------------------------------------------------

def test_apple_icloud_card():
    got = fields(wire(contacts.to_eas(sample("apple-icloud"), V)))
    assert got["Contacts:FileAs"] == "Dr. Johnny Q. Appleseed Jr."
    assert (got["Contacts:FirstName"], got["Contacts:LastName"], got["Contacts:MiddleName"], got["Contacts:Title"],
            got["Contacts:Suffix"]) == ("Johnny", "Appleseed", "Q.", "Dr.", "Jr.")
    assert (got["Contacts:CompanyName"], got["Contacts:Department"], got["Contacts:JobTitle"]) == \
        ("Apple Inc.", "Cupertino Campus", "Engineer")
    assert [got[f"Contacts:Email{i}Address"] for i in (1, 2, 3)] == \
        ["johnny@icloud.example", "j.appleseed@apple.example", "johnny.home@example.net"]  # the 4th is not sent
    assert got["Contacts:MobilePhoneNumber"] == "+1 (408) 555-0101"
    assert got["Contacts:BusinessPhoneNumber"] == "+1 (408) 555-0103"
    assert got["Contacts:HomePhoneNumber"] == "+1 (408) 555-0104"
    assert got["Contacts:BusinessFaxNumber"] == "+1 (408) 555-0105"
    assert got["Contacts:Home2PhoneNumber"] == "+1 (408) 555-0106"  # the untyped "Boat" number
    assert got["Contacts:HomeAddressStreet"] == "22 Orchard Road\nApt 3"
    assert got["Contacts:BusinessAddressPostalCode"] == "95014"
    assert got["Contacts:Spouse"] == "Jane Appleseed" and got["Contacts2:ManagerName"] == "Tim Manager"
    assert got["Contacts:Birthday"] == "1980-05-01T12:00:00.000Z"
    assert got["Contacts:Anniversary"] == "2005-06-18T12:00:00.000Z"
    assert got["Contacts2:IMAddress"] == "johnny@jabber.example"
    assert got["Contacts2:NickName"] == "Jo" and got["Contacts:YomiFirstName"] == "Jonī"
    assert got["Contacts:WebPage"] == "https://www.apple.example/johnny"
    assert got["Contacts:Categories"] == ["Friends", "Apple"]
    assert got["Body"] == "Met at WWDC.\nLikes apples, pears."
    assert base64.b64decode(got["Contacts:Picture"]).startswith(b"\xff\xd8\xff")


def test_google_outlook_thunderbird_cards():
    google = fields(wire(contacts.to_eas(sample("google"), V)))
    assert google["Contacts:WebPage"] == "http://www.example.com/grace"
    assert google["Contacts:BusinessPhoneNumber"] == "+1 202-555-0171"
    assert google["Contacts:Business2PhoneNumber"] == "+1 202-555-0172"
    assert google["Contacts:HomePhoneNumber"] == "+1 202-555-0173"  # untyped
    assert google["Contacts:Anniversary"] == "1930-06-15T12:00:00.000Z"
    outlook = fields(wire(contacts.to_eas(sample("outlook"), V)))  # vCard 2.1, bare TYPE parameters
    assert outlook["Contacts:PagerNumber"] == "+44 20 7946 0006" and outlook["Contacts:CarPhoneNumber"] == \
        "+44 20 7946 0007"
    assert outlook["Contacts:AssistantName"] == "Mary Somerville"
    assert outlook["Contacts:Birthday"] == "1815-12-10T12:00:00.000Z"
    assert outlook["Contacts2:IMAddress"] == "ada@im.example"
    tb = fields(wire(contacts.to_eas(sample("thunderbird"), V)))  # vCard 4.0
    assert tb["Contacts:HomeFaxNumber"] == "+44 1908 640405"
    assert tb["Contacts:Anniversary"] == "1604-06-23T12:00:00.000Z"  # no year: Outlook's 1604
    assert fields(wire(contacts.to_eas(sample("minimal"), V))) == {"Contacts:FileAs": "Only A Name"}


@pytest.mark.parametrize("name", ["broken-no-end", "broken-garbage", "broken-line"])
def test_broken_cards_raise_conversion_error(name):
    with pytest.raises(ConversionError):
        contacts.to_eas(sample(name), V)
    with pytest.raises(ConversionError):
        contacts.from_eas(app_data(FirstName="x"), sample(name), V, "u")
    with pytest.raises(ConversionError):
        contacts.to_eas("BEGIN:VCALENDAR\r\nEND:VCALENDAR\r\n", V)


def test_body_preference_and_picture_cap():
    text = sample("apple-icloud")
    data = contacts.to_eas(text, V, BodyPreference(1, truncation=6), max_picture=100)
    body = data.find("{AirSyncBase}Body")
    assert body.find("{AirSyncBase}Data").text == "Met at"
    assert body.find("{AirSyncBase}Truncated").text == "1"
    assert body.find("{AirSyncBase}EstimatedDataSize").text == "33"
    assert data.find("{Contacts}Picture") is None  # 214 octets > 100
    html = contacts.to_eas(text, V, BodyPreference(2)).find("{AirSyncBase}Body")
    assert html.find("{AirSyncBase}Type").text == "2" and "<pre>Met at WWDC." in html.find("{AirSyncBase}Data").text


# -- dates -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("sent, day", [
    ("1980-05-01T00:00:00.000Z", "1980-05-01"),  # midnight UTC
    ("1980-04-30T22:00:00.000Z", "1980-05-01"),  # local midnight of UTC+2
    ("1980-05-01T05:00:00.000Z", "1980-05-01"),  # local midnight of UTC-5
    ("1980-05-01T12:00:00.000Z", "1980-05-01"),  # what this server sends
    ("1980-04-30T13:00:00Z", "1980-05-01"),  # UTC+11
    ("1980-05-01", "1980-05-01"),
])
def test_dates_keep_the_day_the_user_typed(sent, day):
    assert contacts.date_of(sent) == datetime.date.fromisoformat(day)
    card = contacts.from_eas(app_data(FirstName="D", Birthday=sent, Anniversary=sent), None, V, "d1")
    assert "BDAY:" + day in lines(card) and "X-ANNIVERSARY:" + day in lines(card)
    assert fields(contacts.to_eas(card, V))["Contacts:Birthday"] == day + "T12:00:00.000Z"


def test_a_date_keeps_the_stored_form():
    text = sample("outlook")  # BDAY:18151210
    out = contacts.from_eas(app_data(Birthday="1815-12-09T23:00:00.000Z"), text, V, "x", supported=set())
    assert "BDAY:18151210" in lines(out)
    out = contacts.from_eas(app_data(Birthday="1815-12-11T23:00:00.000Z"), text, V, "x", supported=set())
    assert "BDAY:18151212" in lines(out)
    with pytest.raises(ConversionError):
        contacts.from_eas(app_data(Birthday="yesterday"), text, V, "x", supported=set())


# -- EAS -> vCard ---------------------------------------------------------------------------------

EVERYTHING = dict(
    FileAs="Smith, John", FirstName="John", LastName="Smith", MiddleName="Q", Title="Dr.", Suffix="III",
    CompanyName="Acme", Department="Sales", JobTitle="Boss", OfficeLocation="B2", WebPage="https://acme.example",
    Spouse="Jane", AssistantName="Ann", YomiFirstName="Jon", YomiLastName="Sumisu", YomiCompanyName="Akume",
    Email1Address='"John Smith" <john@acme.example>', Email2Address="john@home.example",
    Email3Address="js@other.example", BusinessPhoneNumber="+1 1", Business2PhoneNumber="+1 2",
    HomePhoneNumber="+1 3", Home2PhoneNumber="+1 4", MobilePhoneNumber="+1 5", BusinessFaxNumber="+1 6",
    HomeFaxNumber="+1 7", CarPhoneNumber="+1 8", PagerNumber="+1 9", RadioPhoneNumber="+1 10",
    AssistantPhoneNumber="+1 11", BusinessAddressStreet="1 Main St\nSuite 5", BusinessAddressCity="Springfield",
    BusinessAddressState="IL", BusinessAddressPostalCode="62701", BusinessAddressCountry="USA",
    HomeAddressStreet="2 Elm", HomeAddressCity="Shelbyville", HomeAddressState="IL", HomeAddressPostalCode="62565",
    HomeAddressCountry="USA", OtherAddressStreet="3 Oak", OtherAddressCity="Ogdenville",
    OtherAddressState="XX", OtherAddressPostalCode="1", OtherAddressCountry="USA", Birthday="1980-04-30T22:00:00.000Z",
    Anniversary="2005-06-18T00:00:00.000Z", Categories=["Work", "VIP"], Children=["Tom", "Tina"],
    Picture=base64.b64encode(b"\x89PNG\r\n\x1a\n" + bytes(100)).decode(), Body="Line one\nLine two",
    Contacts2_NickName="Johnny", Contacts2_ManagerName="Mr. Burns", Contacts2_CompanyMainPhone="+1 12",
    Contacts2_MMS="+1 13", Contacts2_IMAddress="john@jabber.example", Contacts2_IMAddress2="aim:johnny",
    Contacts2_IMAddress3="skype-john", Contacts2_CustomerId="C-1", Contacts2_GovernmentId="G-2",
    Contacts2_AccountName="acct")


def test_eas_to_vcard_to_eas_keeps_every_field():
    sent = wire(app_data(**EVERYTHING))
    card = contacts.from_eas(sent, None, V, "new-uid")
    assert {"VERSION:3.0", "PRODID:-//Haven//ActiveSync//EN", "UID:new-uid", "N:Smith;John;Q;Dr.;III",
            "FN:Dr. John Q Smith III", "X-EAS-FILEAS:Smith\\, John"} <= set(lines(card))
    assert "EMAIL;TYPE=INTERNET:john@acme.example" in lines(card)
    back = fields(wire(contacts.to_eas(card, V)))
    want = fields(sent)
    want["Contacts:Email1Address"] = "john@acme.example"  # the address of "Name" <addr>
    want["Contacts:Birthday"] = "1980-05-01T12:00:00.000Z"
    want["Contacts:Anniversary"] = "2005-06-18T12:00:00.000Z"
    assert back == want


def test_new_contact_always_has_n_and_fn():
    card = contacts.from_eas(app_data(Email1Address="only@example.com"), None, V, "u1")
    assert {"N:;;;;", "FN:only@example.com", "UID:u1"} <= set(lines(card))
    card = contacts.from_eas(app_data(FileAs="Acme Corp", CompanyName="Acme Corp"), None, V, "u2")
    assert "FN:Acme Corp" in lines(card) and not any(l.startswith("X-EAS-FILEAS") for l in lines(card))
    with pytest.raises(ConversionError):
        contacts.from_eas(None, None, V, "u3")


def test_phone_change_resending_what_it_got_keeps_the_card():
    """A phone that changed nothing sends back what it was sent: with or without a Supported
    list, the card stays as it was (groups, labels, the 4th e-mail, the 2nd mobile number, X-
    properties, PHOTO, UID, PRODID)."""
    for name in SAMPLES:
        text = sample(name)
        sent = wire(contacts.to_eas(text, V))
        for supported in (None, set(), {"{Contacts}FirstName", "{Contacts}Picture", "{Contacts}Email1Address"}):
            want = normalized(text)
            if name == "minimal":  # N is required: written when missing
                want = want.replace("FN:Only A Name\r\n", "FN:Only A Name\r\nN:;;;;\r\n")
            assert contacts.from_eas(sent, text, V, "ignored", supported) == want, (name, supported)


def test_an_edit_keeps_what_eas_cannot_carry():
    text = sample("apple-icloud")
    sent = wire(contacts.to_eas(text, V))
    sent.find("{Contacts}MobilePhoneNumber").text = "+1 (408) 555-9999"
    sent.find("{Contacts}JobTitle").text = "Senior Engineer"
    sent.remove(sent.find("{Contacts}Spouse"))  # deleted on the phone (no Supported: ghosting applies)
    out = lines(contacts.from_eas(sent, text, V, "x"))
    assert "TEL;TYPE=CELL,VOICE,pref:+1 (408) 555-9999" in out  # in place: types kept
    assert "TEL;TYPE=IPHONE,CELL,VOICE:+1 (408) 555-0102" in out  # no slot for it: untouched
    assert "TITLE:Senior Engineer" in out
    assert "EMAIL;TYPE=INTERNET,HOME:fourth@example.org" in out
    assert not any("Jane Appleseed" in l or "item6." in l for l in out)  # the group's label went with it
    assert "item7.X-ABRELATEDNAMES:Tim Manager" in out and "item7.X-ABLABEL:_$!<Manager>!$_" in out
    assert "X-SOCIALPROFILE;TYPE=twitter:https://twitter.com/johnny" in out
    assert "UID:5AD380FD-B2DE-4261-BA99-DE1D1DB52FBE" in out
    assert any(l.startswith("PHOTO;ENCODING=b;TYPE=JPEG:/9j/") for l in out)


def test_ghosting_follows_supported():
    text = sample("google")
    only_names = app_data(FirstName="Grace", LastName="Hopper")
    kept = lines(contacts.from_eas(only_names, text, V, "x", supported={"{Contacts}FirstName"}))
    assert "TITLE:Rear Admiral" in kept and "NOTE:Wrote the first compiler." in kept
    assert "item2.X-ABRELATEDNAMES:Vincent Hopper" in kept
    gone = lines(contacts.from_eas(only_names, text, V, "x", supported={"{Contacts}JobTitle", "{AirSyncBase}Body",
                                                                          "{Contacts}MiddleName"}))
    assert not any(l.startswith(("TITLE", "NOTE")) for l in gone)
    assert "N:Hopper;Grace;;;" in gone and "FN:Grace Hopper" in gone
    assert "NICKNAME:Amazing Grace" in gone  # not listed: kept
    bare = lines(contacts.from_eas(only_names, text, V, "x"))  # no Supported: what is not sent is gone
    assert not any(l.startswith(("TITLE", "NOTE", "EMAIL", "TEL", "ADR", "BDAY", "CATEGORIES", "item"))
                   for l in bare)


def test_pictures_in_and_out():
    text = sample("apple-icloud")
    photo_line = next(l for l in lines(normalized(text)) if l.startswith("PHOTO"))
    no_picture = app_data(FirstName="Johnny", LastName="Appleseed")
    # not in Supported: never deleted
    assert photo_line in lines(contacts.from_eas(no_picture, text, V, "x", supported={"{Contacts}FirstName"}))
    # listed (or no list) and absent: deleted, unless it was too big to be sent
    assert not any(l.startswith("PHOTO") for l in lines(contacts.from_eas(no_picture, text, V, "x")))
    assert photo_line in lines(contacts.from_eas(no_picture, text, V, "x", max_picture=100))
    # an empty Picture deletes
    cleared = app_data(FirstName="Johnny", Picture="")
    assert not any(l.startswith("PHOTO") for l in lines(contacts.from_eas(cleared, text, V, "x", supported=set())))
    # too big: the stored one stays; a new one replaces it
    big = app_data(Picture=base64.b64encode(b"\xff\xd8" + bytes(5000)).decode())
    assert photo_line in lines(contacts.from_eas(big, text, V, "x", supported=set(), max_picture=1000))
    small = base64.b64encode(b"GIF89a" + bytes(10)).decode()
    out = lines(contacts.from_eas(app_data(Picture=small), text, V, "x", supported=set()))
    assert f"PHOTO;ENCODING=b;TYPE=GIF:{small}" in out
    v4 = lines(contacts.from_eas(app_data(Picture=small), sample("thunderbird"), V, "x", supported=set()))
    assert f"PHOTO:data:image/gif;base64,{small}" in v4
    assert fields(contacts.to_eas("\r\n".join(v4) + "\r\n", V))["Contacts:Picture"] == small


def test_names_fileas_and_display_name():
    text = sample("apple-icloud")
    renamed = lines(contacts.from_eas(app_data(FirstName="John", LastName="Appleseed", FileAs="Appleseed, John"),
                                      text, V, "x", supported={"{Contacts}FirstName", "{Contacts}FileAs"}))
    assert "N:Appleseed;John;Q.;Dr.;Jr." in renamed and "FN:Dr. John Q. Appleseed Jr." in renamed
    assert "X-EAS-FILEAS:Appleseed\\, John" in renamed
    same = lines(contacts.from_eas(app_data(FileAs="Dr. Johnny Q. Appleseed Jr."), text, V, "x", supported=set()))
    assert not any(l.startswith("X-EAS-FILEAS") for l in same)


def test_emails_ims_categories_children_body():
    text = sample("thunderbird")
    out = lines(contacts.from_eas(app_data(Email2Address="Alan T <alan@new.example>", Contacts2_IMAddress="alan@x",
                                           Contacts2_IMAddress2="turing@y", Categories=["Maths"],
                                           Children=["None"]), text, V, "x", supported=set()))
    assert "EMAIL;TYPE=home:alan@new.example" in out and "EMAIL;PREF=1:alan@bletchley.example" in out
    assert "IMPP:xmpp:alan@x" in out and "IMPP:im:turing@y" in out  # the scheme stays; a new one gets im:
    assert "CATEGORIES:Maths" in out and "X-CHILD:None" in out
    html = app_data()
    body = ET.SubElement(html, "{AirSyncBase}Body")
    ET.SubElement(body, "{AirSyncBase}Type").text = "2"
    ET.SubElement(body, "{AirSyncBase}Data").text = "<html><body><p>Bold <b>move</b></p></body></html>"
    assert any(l.startswith("NOTE:Bold move") for l in lines(contacts.from_eas(html, text, V, "x", supported=set())))
    truncated = app_data()
    body = ET.SubElement(truncated, "{AirSyncBase}Body")
    ET.SubElement(body, "{AirSyncBase}Truncated").text = "1"
    ET.SubElement(body, "{AirSyncBase}Data").text = "Eni"
    assert "NOTE:Enigma." in lines(contacts.from_eas(truncated, text, V, "x"))  # a cut note is not the note


def test_unescaped_commas_survive_a_merge():
    """vobject cuts a text value at an unescaped comma; a merge writes such values back whole."""
    photo = base64.b64encode(b"\xff\xd8" + bytes(30)).decode()
    text = ("BEGIN:VCARD\r\nVERSION:4.0\r\nUID:c1\r\nFN:Comma Person\r\nN:Person;Comma;;;\r\n"
            f"PHOTO:data:image/jpeg;base64,{photo}\r\nNOTE:one, two, three\r\nX-FOO:a,b\r\nEND:VCARD\r\n")
    got = fields(contacts.to_eas(text, V))
    assert got["Contacts:Picture"] == photo and got["Body"] == "one, two, three"
    out = lines(contacts.from_eas(app_data(FirstName="Comma", LastName="Person"), text, V, "x",
                                  supported={"{Contacts}FirstName"}))
    assert f"PHOTO:data:image/jpeg;base64,{photo}" in out
    assert "NOTE:one, two, three" in out and "X-FOO:a,b" in out
    changed = lines(contacts.from_eas(app_data(Body="new, note"), text, V, "x", supported=set()))
    assert "NOTE:new\\, note" in changed
