"""CardDAV (RFC 6352) over raw HTTP against a real ``haven serve`` (both engines): discovery,
address books made with extended MKCOL, vCards in and out, addressbook-query and -multiget,
sync-collection and the UID rule."""

from __future__ import annotations

from .wire import Dav, addressbook_multiget_body, addressbook_query_body, clark, vcard


def test_carddav_discovery_from_well_known(haven, dav):
    r = Dav(haven).request("PROPFIND", "/.well-known/carddav", headers={"Depth": "0"})
    assert (r.status, r.header("Location")) == (301, "/dav/")
    principal = dav.propfind(r.header("Location"), ("D:current-user-principal",)).entries()["/dav/"] \
        .child_hrefs("D:current-user-principal")
    assert principal == [dav.principal]
    home = dav.propfind(dav.principal, ("CR:addressbook-home-set",)).entries()[dav.principal] \
        .child_hrefs("CR:addressbook-home-set")
    assert home == [dav.principal]
    books = {h for h, e in dav.propfind(home[0], ("D:resourcetype",), depth="1").entries().items()
             if clark("CR:addressbook") in e.resourcetypes()}
    assert books == {dav.contacts, dav.coll(".deleted-contacts")}


def test_address_book_lifecycle_with_extended_mkcol(dav):
    book = dav.coll("friends")
    r = dav.mkaddressbook(book, displayname="Friends", description="People I know")
    assert r.status == 201, r.text
    entry = dav.propfind(book, ("D:resourcetype", "D:displayname", "CR:addressbook-description",
                                "CR:supported-address-data")).entries()[book]
    assert entry.resourcetypes() == {clark("CR:addressbook"), clark("D:collection")}
    assert entry.text("D:displayname") == "Friends"
    assert entry.text("CR:addressbook-description") == "People I know"

    assert dav.mkaddressbook(book, displayname="Twice").status == 405       # RFC 4918 §9.3.1
    assert dav.proppatch(book, displayname="Pals").status == 207
    assert dav.propfind(book, ("D:displayname",)).entries()[book].text("D:displayname") == "Pals"

    href = book + "ann.vcf"
    r = dav.put(href, vcard("card-ann", "Ann Example", "ann@example.org"))
    assert r.status == 201, r.text
    got = dav.get(href)
    assert got.status == 200
    assert got.header("Content-Type").startswith("text/vcard")
    assert got.header("ETag") == r.header("ETag")
    assert "FN:Ann Example" in got.text and "UID:card-ann" in got.text

    r = dav.put(href, vcard("card-ann", "Ann Changed", "ann@example.org"))
    assert r.status == 204
    assert "FN:Ann Changed" in dav.get(href).text
    assert dav.etags(book) == {href: r.header("ETag")}

    v4 = book + "v4.vcf"
    assert dav.put(v4, vcard("card-v4", "Zoë Ünicode", "zoe@example.org", version="4.0")).status == 201
    got = dav.get(v4).text
    assert "FN:Zoë Ünicode" in got and "VERSION:4.0" in got

    assert dav.delete(href).status in (200, 204)
    assert dav.get(href).status == 404
    assert set(dav.etags(book)) == {v4}
    assert dav.delete(book).status in (200, 204)
    assert dav.propfind(book).status == 404
    assert book not in dav.propfind(dav.principal, depth="1").entries()


def test_addressbook_query_and_multiget(dav):
    book = dav.contacts
    people = {"alice.vcf": ("card-alice", "Alice Smith", "alice@example.org"),
              "bob.vcf": ("card-bob", "Bob Jones", "bob@example.net"),
              "carol.vcf": ("card-carol", "Carol Smithers", "carol@example.org")}
    etags = {}
    for name, (uid, fn, email) in people.items():
        r = dav.put(book + name, vcard(uid, fn, email))
        assert r.status == 201
        etags[book + name] = r.header("ETag")

    def query(prop, text, match_type="contains"):
        entries = dav.report(book, addressbook_query_body(prop, text, match_type)).entries()
        return {h.rsplit("/", 1)[1] for h in entries}

    assert query("FN", "smith") == {"alice.vcf", "carol.vcf"}
    assert query("FN", "SMITH") == {"alice.vcf", "carol.vcf"}          # i;unicode-casemap
    assert query("FN", "Bob", "starts-with") == {"bob.vcf"}
    assert query("EMAIL", "example.net", "ends-with") == {"bob.vcf"}
    assert query("FN", "Alice Smith", "equals") == {"alice.vcf"}
    assert query("FN", "nobody") == set()

    r = dav.report(book, addressbook_query_body("EMAIL", "carol@"))
    (entry,) = r.entries().values()
    assert "FN:Carol Smithers" in entry.text("CR:address-data")
    assert entry.text("D:getetag") == etags[book + "carol.vcf"]

    alice, bob, missing = book + "alice.vcf", book + "bob.vcf", book + "missing.vcf"
    entries = dav.report(book, addressbook_multiget_body(alice, bob, missing)).entries()
    assert set(entries) == {alice, bob, missing}
    assert entries[missing].status == 404
    for href in (alice, bob):
        assert entries[href].text("D:getetag") == etags[href]
        assert f"UID:{people[href.rsplit('/', 1)[1]][0]}" in entries[href].text("CR:address-data")


def test_address_book_sync_and_ctag(dav):
    book = dav.contacts
    a, b = book + "a.vcf", book + "b.vcf"
    ctag0 = dav.ctag(book)
    assert dav.put(a, vcard("sync-card-a", "A Person")).status == 201
    _r, token, changes = dav.sync(book)
    assert changes == {a: 200}
    ctag1 = dav.ctag(book)
    assert ctag1 != ctag0

    assert dav.put(b, vcard("sync-card-b", "B Person")).status == 201
    assert dav.delete(a).status in (200, 204)
    _r, token2, changes = dav.sync(book, token)
    assert changes == {a: 404, b: 200}
    assert dav.ctag(book) not in (ctag0, ctag1)
    assert dav.sync(book, token2)[2] == {}


def test_a_card_uid_lives_under_one_href_only(dav):
    book = dav.contacts
    assert dav.put(book + "one.vcf", vcard("dup-card", "Dup One")).status == 201
    r = dav.put(book + "two.vcf", vcard("dup-card", "Dup Two"))
    assert r.status == 409
    assert r.error_conditions() == {clark("CR:no-uid-conflict")}
    assert set(dav.etags(book)) == {book + "one.vcf"}
