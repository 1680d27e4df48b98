"""Search (GAL and mailbox), Find and ResolveRecipients over real HTTP against `haven serve` on
both engines: the GAL of the user's domain only, prefix matches, Range and Total; a delivered
message found by its words, fetched and forwarded by its LongId; recipients resolved to
accounts, aliases and the user's contacts, with free/busy from the recipient's calendar."""

from __future__ import annotations

import calendar
import secrets
import time

from imapclient import IMAPClient

from store.interfaces import NewItem
from tests.conftest import run_on_reactor
from tests.gateways.activesync.client import X, EasClient, find, findall
from tests.gateways.activesync.test_sync import Phone

DAY = "2031-03-04"
T10 = calendar.timegm(time.strptime(f"{DAY} 10:00", "%Y-%m-%d %H:%M"))


def person(eas, address: str, name=None, password=None) -> str:
    """A new account (with a password when one is given, for its phone)."""
    from auth.passwords import hash_password
    run_on_reactor(eas.admin_store().create_account, address, hash_password(password) if password else None, name)
    return address


def domain_people(eas):
    """A fresh domain with a user (and her phone) and colleagues; an alias; a disabled account."""
    d = f"d{secrets.token_hex(3)}.test"
    me = person(eas, f"me@{d}", "Mia Mine", "pw-me-1")
    for local, name in (("ann.lee", "Ann Lee"), ("anna.bell", "Anna Bell"), ("bob.stone", "Bob Stone"),
                        ("gone", "Ann Gone")):
        person(eas, f"{local}@{d}", name)
    run_on_reactor(eas.admin_store().add_alias, f"annex@{d}", f"bob.stone@{d}")
    run_on_reactor(eas.admin_store().disable_account, f"gone@{d}")
    return d, EasClient(eas, me, "pw-me-1", device_id="ApplSRCH" + secrets.token_hex(3))


def gal(phone, query: str, rng: str = ""):
    options = f"<Options><Range>{rng}</Range></Options>" if rng else ""
    status, answer = phone.post("Search", f'<Search xmlns="Search"><Store><Name>GAL</Name><Query>{query}</Query>'
                                          f'{options}</Store></Search>')
    assert status == 200 and find(answer, "Search:Status") == "1"
    return answer.find("{Search}Response/{Search}Store")


def emails(store_el) -> list:
    return [find(r, "Search:Properties/Gal:EmailAddress") for r in findall(store_el, "Search:Result")
            if r.find("{Search}Properties") is not None]


def test_gal_shows_the_users_domain_by_prefix(eas):
    d, phone = domain_people(eas)
    _other, stranger = domain_people(eas)  # the same names in another domain
    found = gal(phone, "ann")
    assert find(found, "Search:Status") == "1"
    assert emails(found) == [f"ann.lee@{d}", f"anna.bell@{d}", f"annex@{d}"]  # by display name; not "gone"
    assert find(found, "Search:Range") == "0-2" and find(found, "Search:Total") == "3"
    first = found.find("{Search}Result/{Search}Properties")
    assert (find(first, "Gal:DisplayName"), find(first, "Gal:FirstName"), find(first, "Gal:LastName"),
            find(first, "Gal:Alias")) == ("Ann Lee", "Ann", "Lee", "ann.lee")
    assert emails(gal(phone, "LEE")) == [f"ann.lee@{d}"]  # a word of the name, any case
    assert emails(gal(phone, "bob.s")) == [f"bob.stone@{d}"]  # the address
    page = gal(phone, "ann", "1-1")
    assert emails(page) == [f"anna.bell@{d}"] and find(page, "Search:Range") == "1-1"
    assert find(page, "Search:Total") == "3"
    assert emails(gal(phone, "ann", "0-100000")) == emails(found)  # a huge range is capped
    none = gal(phone, "zz")
    assert find(none, "Search:Total") == "0" and findall(none, "Search:Result") != [] and emails(none) == []
    theirs = emails(gal(stranger, "ann"))
    assert len(theirs) == 3 and all(a.endswith(_other) for a in theirs)  # never another domain's
    for bad in ("<Query>ann</Query><Options><Range>9-1</Range></Options>", "<Query></Query>",
                "<Query>x</Query><Options><Range>a-b</Range></Options>"):
        status, answer = phone.post("Search", f'<Search xmlns="Search"><Store><Name>GAL</Name>{bad}</Store></Search>')
        assert status == 200 and find(answer, "Search:Response/Search:Store/Search:Status") == "2"
    status, answer = phone.post("Search", '<Search xmlns="Search"/>')
    assert status == 200 and find(answer, "Search:Response/Search:Store/Search:Status") == "2"
    status, answer = phone.post("Search", '<Search xmlns="Search"><Store><Name>DocumentLibrary</Name>'
                                          '<Query>x</Query></Store></Search>')
    assert find(answer, "Search:Response/Search:Store/Search:Status") == "2"


MAIL = (b"From: Zed Sender <zed@example.org>\r\nTo: %s\r\nSubject: %s\r\nMessage-ID: <%s@example.org>\r\n"
        b"Content-Type: text/plain; charset=utf-8\r\n\r\n%s\r\n")


def mailbox_search(phone, query: str, options: str = "<Range>0-9</Range>"):
    status, answer = phone.client.post("Search", f'<Search xmlns="Search" xmlns:a="AirSync" xmlns:e="Email" '
                                                 f'xmlns:b="AirSyncBase"><Store><Name>Mailbox</Name><Query><And>'
                                                 f'<a:Class>Email</a:Class>{query}</And></Query>'
                                                 f'<Options>{options}</Options></Store></Search>')
    assert status == 200 and find(answer, "Search:Status") == "1"
    return answer.find("{Search}Response/{Search}Store")


def test_mailbox_search_then_fetch_and_forward_by_long_id(eas):
    user, password = eas.new_user("finder")
    friend, friend_pw = eas.new_user("friend")
    eas.deliver(user, MAIL % (user.encode(), b"Zebra crossing", b"z1", b"stripes everywhere"))
    eas.deliver(user, MAIL % (user.encode(), b"Lunch", b"z2", b"a zebra and a giraffe"))
    eas.deliver(user, MAIL % (user.encode(), b"Other", b"z3", b"nothing to see"))
    phone = Phone(eas, user, password, device="ApplFIND" + secrets.token_hex(3))
    inbox, archive = phone.folders["INBOX"], phone.folders["Archive"]
    found = mailbox_search(phone, f"<a:CollectionId>{inbox}</a:CollectionId><FreeText>ZEBRA</FreeText>",
                           "<Range>0-9</Range><b:BodyPreference><b:Type>1</b:Type></b:BodyPreference>")
    results = findall(found, "Search:Result")
    assert [find(r, "Search:Properties/Email:Subject") for r in results] == ["Lunch", "Zebra crossing"]
    assert find(found, "Search:Total") == "2" and find(found, "Search:Range") == "0-1"
    assert all(find(r, "AirSync:Class") == "Email" and find(r, "AirSync:CollectionId") == inbox for r in results)
    assert find(results[0], "Search:Properties/AirSyncBase:Body/AirSyncBase:Data").startswith("a zebra")
    long_id = find(results[1], "Search:LongId")
    assert long_id.startswith(inbox + ":")
    # every word, in the subject, the body or the sender's name
    assert [find(r, "Search:Properties/Email:Subject") for r in findall(
        mailbox_search(phone, "<FreeText>zebra giraffe</FreeText>"), "Search:Result")] == ["Lunch"]
    assert find(mailbox_search(phone, "<FreeText>zed stripes</FreeText>"), "Search:Total") == "1"
    assert find(mailbox_search(phone, f"<a:CollectionId>{archive}</a:CollectionId><FreeText>zebra</FreeText>"),
                "Search:Total") == "0"
    later = "<GreaterThan><e:DateReceived/><Value>2099-01-01T00:00:00.000Z</Value></GreaterThan>"
    assert find(mailbox_search(phone, f"<FreeText>zebra</FreeText>{later}"), "Search:Total") == "0"
    page = mailbox_search(phone, "<FreeText>zebra</FreeText>", "<Range>1-1</Range><RebuildResults/><DeepTraversal/>")
    assert find(page, "Search:Range") == "1-1" and find(page, "Search:Total") == "2"
    bad = mailbox_search(phone, "<FreeText>zebra</FreeText><a:CollectionId>999999</a:CollectionId>")
    assert find(bad, "Search:Status") == "2"
    complex_ = mailbox_search(phone, "<Or><FreeText>a</FreeText></Or>")
    assert find(complex_, "Search:Status") == "8"

    doc = (f'<ItemOperations xmlns="ItemOperations" xmlns:s="Search" xmlns:b="AirSyncBase"><Fetch><Store>Mailbox'
           f'</Store><s:LongId>{long_id}</s:LongId><Options><b:BodyPreference><b:Type>1</b:Type>'
           f'</b:BodyPreference></Options></Fetch></ItemOperations>')
    fetch = phone.client.post("ItemOperations", doc)[1].find("{ItemOperations}Response/{ItemOperations}Fetch")
    assert find(fetch, "ItemOperations:Status") == "1" and find(fetch, "Search:LongId") == long_id
    assert find(fetch, "ItemOperations:Properties/Email:Subject") == "Zebra crossing"

    forward = f"From: {user}\r\nTo: {friend}\r\nSubject: Fw: zebra\r\n\r\nlook at this\r\n".encode()
    el = X(f'<SmartForward xmlns="ComposeMail"><ClientId>f1</ClientId><Source><LongId>{long_id}</LongId>'
           f'</Source><Mime/></SmartForward>')
    el.find("{ComposeMail}Mime").text = forward
    status, answer = phone.client.post("SmartForward", el)
    assert status == 200 and answer is None
    got = _wait_for(eas, friend, friend_pw)
    assert b"look at this" in got and b"message/rfc822" in got and b"stripes everywhere" in got
    # another account's LongId names nothing of the friend's: no original to forward
    el.find("{ComposeMail}ClientId").text = "f2"
    status, answer = EasClient(eas, friend, friend_pw, device_id="ApplOTHER01").post("SmartForward", el)
    assert status == 200 and find(answer, "ComposeMail:Status") == "150"


def _wait_for(eas, user, password) -> bytes:
    deadline = time.monotonic() + 10
    while True:
        c = IMAPClient(eas.imap[0], port=eas.imap[1], ssl=False, timeout=15)
        c.login(user, password)
        c.select_folder("INBOX")
        got = [v[b"BODY[]"] for v in c.fetch(c.search(), ["BODY.PEEK[]"]).values()]
        c.logout()
        if got or time.monotonic() > deadline:
            assert got, "nothing arrived"
            return got[0]
        time.sleep(0.1)


def test_find_mailbox_and_gal(eas):
    d, me = domain_people(eas)
    me.version = "16.1"
    run_on_reactor(eas.admin_store().add_alias, f"mia.alias@{d}", f"me@{d}")
    eas.deliver(f"me@{d}", MAIL % (f"me@{d}".encode(), b"Quarterly okapi report", b"f1", b"figures inside"))
    status, answer = me.post("Find", '<Find xmlns="Find" xmlns:a="AirSync"><SearchId>1</SearchId><ExecuteSearch>'
                                     '<MailBoxSearchCriterion><Query><a:Class>Email</a:Class><FreeText>okapi'
                                     '</FreeText></Query><Options><Range>0-4</Range><DeepTraversal/></Options>'
                                     '</MailBoxSearchCriterion></ExecuteSearch></Find>')
    assert status == 200 and find(answer, "Find:Status") == "1"
    response = answer.find("{Find}Response")
    assert find(response, "ItemOperations:Store") == "Mailbox" and find(response, "Find:Total") == "1"
    [result] = findall(response, "Find:Result")
    assert find(result, "Find:Properties/Email:Subject") == "Quarterly okapi report"
    assert find(result, "Find:Properties/Find:Preview").startswith("figures inside")
    assert find(result, "Find:Properties/Find:HasAttachments") == "0"
    assert find(result, "AirSync:ServerId").startswith(find(result, "AirSync:CollectionId") + ":")
    status, answer = me.post("Find", '<Find xmlns="Find"><SearchId>2</SearchId><ExecuteSearch><GalSearchCriterion>'
                                     '<Query>anna</Query><Options><Range>0-9</Range></Options>'
                                     '</GalSearchCriterion></ExecuteSearch></Find>')
    response = answer.find("{Find}Response")
    assert find(response, "ItemOperations:Store") == "GAL" and find(response, "Find:Total") == "1"
    assert find(response, "Find:Result/Find:Properties/Gal:EmailAddress") == f"anna.bell@{d}"
    status, answer = me.post("Find", '<Find xmlns="Find"><SearchId>3</SearchId></Find>')
    assert status == 200 and find(answer, "Find:Status") == "2"


VCARD = ("BEGIN:VCARD\r\nVERSION:3.0\r\nUID:{uid}\r\nFN:{name}\r\nN:{last};{first};;;\r\n"
         "EMAIL;TYPE=INTERNET:{email}\r\nEND:VCARD\r\n")
EVENT = ("BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//test//EN\r\nBEGIN:VEVENT\r\nUID:{uid}\r\n"
         "DTSTAMP:20310101T000000Z\r\nDTSTART:{start}\r\nDTEND:{end}\r\nSUMMARY:x\r\n{extra}END:VEVENT\r\n"
         "END:VCALENDAR\r\n")


def put(eas, address: str, kind: str, href: str, uid: str, data: str, start=0, end=0):
    store = eas.admin_store()
    account = run_on_reactor(store.get_account, address)
    [coll] = [c for c in run_on_reactor(store.list_dav_collections, account.id) if c.folder.kind == kind]
    run_on_reactor(store.put_dav_item, account.id, coll.folder.id,
                   NewItem(href, uid, f'"{uid}"', "VCARD" if kind == "contacts" else "VEVENT", data, start, end))


def resolve(phone, *names, options=""):
    to = "".join(f"<To>{n}</To>" for n in names)
    status, answer = phone.post("ResolveRecipients", f'<ResolveRecipients xmlns="ResolveRecipients">{to}'
                                                     f'{options}</ResolveRecipients>')
    assert status == 200
    return answer


def test_resolve_recipients_with_free_busy(eas):
    d, me = domain_people(eas)
    put(eas, f"me@{d}", "contacts", "carla.vcf", "card-carla",
        VCARD.format(uid="card-carla", name="Carla Contact", last="Contact", first="Carla",
                     email="carla@elsewhere.example"))
    put(eas, f"me@{d}", "contacts", "broken.vcf", "card-broken", "BEGIN:VCARD\r\nnot a card\r\n")
    put(eas, f"ann.lee@{d}", "calendar", "busy.ics", "ev-busy",
        EVENT.format(uid="ev-busy", start=f"{DAY.replace('-', '')}T100000Z", end=f"{DAY.replace('-', '')}T110000Z",
                     extra=""), T10, T10 + 3600)
    put(eas, f"ann.lee@{d}", "calendar", "free.ics", "ev-free",
        EVENT.format(uid="ev-free", start=f"{DAY.replace('-', '')}T093000Z", end=f"{DAY.replace('-', '')}T100000Z",
                     extra="TRANSP:TRANSPARENT\r\n"), T10 - 1800, T10)
    put(eas, f"ann.lee@{d}", "calendar", "weekly.ics", "ev-weekly",  # from a week before: its 2nd occurrence
        EVENT.format(uid="ev-weekly", start="20310225T113000Z", end="20310225T120000Z",
                     extra="RRULE:FREQ=WEEKLY;COUNT=3\r\nSTATUS:TENTATIVE\r\n"), T10 - 7 * 86400, T10 + 15 * 86400)
    options = (f"<Options><CertificateRetrieval>2</CertificateRetrieval><MaxAmbiguousRecipients>1"
               f"</MaxAmbiguousRecipients><Availability><StartTime>{DAY}T09:00:00.000Z</StartTime>"
               f"<EndTime>{DAY}T12:30:00.000Z</EndTime></Availability></Options>")
    answer = resolve(me, f"ann.lee@{d}", f"annex@{d}", "carla@elsewhere.example", "Carla", "ann",
                     "nobody@nowhere.example", options=options)
    assert find(answer, "ResolveRecipients:Status") == "1"
    by_to = {find(r, "ResolveRecipients:To"): r for r in findall(answer, "ResolveRecipients:Response")}
    ann = by_to[f"ann.lee@{d}"]
    assert find(ann, "ResolveRecipients:Status") == "1" and find(ann, "ResolveRecipients:RecipientCount") == "1"
    assert (find(ann, "ResolveRecipients:Recipient/ResolveRecipients:Type"),
            find(ann, "ResolveRecipients:Recipient/ResolveRecipients:DisplayName"),
            find(ann, "ResolveRecipients:Recipient/ResolveRecipients:EmailAddress")) == ("1", "Ann Lee", f"ann.lee@{d}")
    # 09:00 09:30(free: transparent) 10:00 10:30 (busy) 11:00 (free) 11:30 (tentative, weekly) 12:00
    assert find(ann, "ResolveRecipients:Recipient/ResolveRecipients:Availability/ResolveRecipients:MergedFreeBusy") \
        == "0022010"
    assert find(ann, "ResolveRecipients:Recipient/ResolveRecipients:Certificates/ResolveRecipients:Status") == "7"
    alias = by_to[f"annex@{d}"]
    assert find(alias, "ResolveRecipients:Status") == "1"
    assert find(alias, "ResolveRecipients:Recipient/ResolveRecipients:DisplayName") == "Bob Stone"
    assert find(alias, "ResolveRecipients:Recipient/ResolveRecipients:EmailAddress") == f"annex@{d}"
    for to in ("carla@elsewhere.example", "Carla"):
        carla = by_to[to]
        assert find(carla, "ResolveRecipients:Status") == "1"
        assert find(carla, "ResolveRecipients:Recipient/ResolveRecipients:Type") == "2"
        assert find(carla, "ResolveRecipients:Recipient/ResolveRecipients:EmailAddress") == "carla@elsewhere.example"
        assert find(carla, "ResolveRecipients:Recipient/ResolveRecipients:Availability/"
                           "ResolveRecipients:MergedFreeBusy") == "4444444"
    many = by_to["ann"]  # Ann Lee, Anna Bell, annex: one suggestion asked for
    assert find(many, "ResolveRecipients:Status") == "3" and find(many, "ResolveRecipients:RecipientCount") == "1"
    assert many.find("{ResolveRecipients}Recipient/{ResolveRecipients}Availability") is None
    nobody = by_to["nobody@nowhere.example"]
    assert find(nobody, "ResolveRecipients:Status") == "4" and findall(nobody, "ResolveRecipients:Recipient") == []
    suggestions = resolve(me, "ann").find("{ResolveRecipients}Response")
    assert find(suggestions, "ResolveRecipients:Status") == "2"
    assert find(suggestions, "ResolveRecipients:RecipientCount") == "3"
    for bad in (resolve(me), resolve(me, "x", options="<Options><Availability><StartTime>soon</StartTime>"
                                                        "</Availability></Options>"),
                resolve(me, "x", options=f"<Options><Availability><StartTime>{DAY}T09:00:00.000Z</StartTime>"
                                         f"<EndTime>{DAY}T08:00:00.000Z</EndTime></Availability></Options>")):
        assert find(bad, "ResolveRecipients:Status") == "5"
