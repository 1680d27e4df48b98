"""Who may see what over CalDAV/CardDAV: HTTP Basic through Haven's portal (401 with a
challenge), and one account never reaching another's principal, collections or items (403,
the same answer whether the other account or resource exists or not)."""

from __future__ import annotations

import base64

from .wire import Dav, calendar_multiget_body, calendar_query_body, event, proppatch_body, sync_body, vcard

CHALLENGE = 'Basic realm="Haven", charset="UTF-8"'


def assert_challenge(r, what):
    assert r.status == 401, (what, r.status, r.text)
    assert r.header("WWW-Authenticate") == CHALLENGE, what


def test_no_credentials_wrong_password_and_unknown_user_get_401(haven, dav):
    href = dav.calendar + "secret.ics"
    assert dav.put(href, event("secret")).status == 201

    anon = Dav(haven)
    for method in ("GET", "PROPFIND", "PUT", "DELETE", "REPORT"):
        assert_challenge(anon.request(method, href if method != "REPORT" else dav.calendar), f"anonymous {method}")
    assert_challenge(Dav(haven, dav.user, dav.password + "x").get(href), "wrong password")
    assert_challenge(Dav(haven, dav.user, "").get(href), "empty password")
    assert_challenge(Dav(haven, "nobody@example.test", dav.password).get(href), "unknown user")
    for header in ("Basic !!!not-base64!!!", "Basic " + base64.b64encode(b"no-colon").decode(),
                   "Bearer abc", "Digest username=\"x\""):
        assert_challenge(anon.get(href, headers={"Authorization": header}), header)
    # none of that touched the item
    assert dav.get(href).status == 200


def test_another_user_gets_403_everywhere_in_my_tree(haven, dav, other):
    cal, contacts = dav.calendar, dav.contacts
    href = cal + "mine.ics"
    etag = dav.put(href, event("mine", summary="Private")).header("ETag")
    card = contacts + "me.vcf"
    assert dav.put(card, vcard("me-card", "Me Myself", "me@example.org")).status == 201
    _r, token, _ = dav.sync(cal)
    ctag = dav.ctag(cal)

    attempts = {
        "PROPFIND principal": ("PROPFIND", dav.principal, "", {"Depth": "0"}),
        "PROPFIND principal depth 1": ("PROPFIND", dav.principal, "", {"Depth": "1"}),
        "PROPFIND calendar": ("PROPFIND", cal, "", {"Depth": "1"}),
        "PROPFIND item": ("PROPFIND", href, "", {"Depth": "0"}),
        "GET item": ("GET", href, "", {}),
        "GET calendar": ("GET", cal, "", {}),
        "GET card": ("GET", card, "", {}),
        "PUT over item": ("PUT", href, event("mine", summary="Hijacked"), {"Content-Type": "text/calendar"}),
        "PUT new item": ("PUT", cal + "planted.ics", event("planted"), {"Content-Type": "text/calendar"}),
        "DELETE item": ("DELETE", href, "", {}),
        "DELETE calendar": ("DELETE", cal, "", {}),
        "PROPPATCH calendar": ("PROPPATCH", cal, proppatch_body({"displayname": "Owned"}), {}),
        "MKCALENDAR under principal": ("MKCALENDAR", dav.coll("planted"), "", {}),
        "REPORT sync": ("REPORT", cal, sync_body(token), {"Depth": "0"}),
        "REPORT query": ("REPORT", cal, calendar_query_body("20250101T000000Z", "20260101T000000Z"), {"Depth": "1"}),
        "REPORT multiget": ("REPORT", cal, calendar_multiget_body(href), {"Depth": "1"}),
        "MOVE item out": ("MOVE", href, "", {"Destination": f"http://127.0.0.1:{haven.http[1]}{other.calendar}x.ics"}),
    }
    answers = {what: other.request(m, path, body, headers).status for what, (m, path, body, headers) in attempts.items()}
    assert answers == {what: 403 for what in attempts}

    # unknown accounts and resources answer the same (nothing to learn from the status)
    assert other.propfind("/dav/nobody@example.test/").status == 403
    assert other.get(dav.coll("no-such-calendar") + "x.ics").status == 403
    assert other.get(cal + "no-such-item.ics").status == 403

    # and nothing changed for the owner
    got = dav.get(href)
    assert got.header("ETag") == etag and "SUMMARY:Private" in got.text
    assert dav.ctag(cal) == ctag
    assert set(dav.etags(cal)) == {href}
    assert dav.propfind(dav.coll("planted")).status == 404
    assert dav.sync(cal, token)[2] == {}


def test_another_user_cannot_read_my_items_through_their_own_collections(haven, dav, other):
    href = dav.calendar + "mine.ics"
    assert dav.put(href, event("mine-too", summary="Private")).status == 201
    assert other.put(other.calendar + "theirs.ics", event("theirs")).status == 201

    # a multiget on their own calendar naming my item
    r = other.report(other.calendar, calendar_multiget_body(href, other.calendar + "theirs.ics"))
    entries = r.entries()
    assert "Private" not in r.text and "mine-too" not in r.text
    assert entries.get(href) is None or entries[href].status in (403, 404)
    # moving their item into my calendar
    r = other.request("MOVE", other.calendar + "theirs.ics",
                      headers={"Destination": f"http://127.0.0.1:{haven.http[1]}{dav.calendar}theirs.ics"})
    assert r.status == 403
    assert set(dav.etags(dav.calendar)) == {href}
    assert other.get(other.calendar + "theirs.ics").status == 200


def test_a_new_password_and_a_deleted_account_take_effect_at_once(haven, dav):
    """Logins are cached after a successful check: the cache must not outlive the password or
    the account."""
    href = dav.calendar + "cached.ics"
    assert dav.put(href, event("cached")).status == 201
    assert dav.get(href).status == 200                            # the login is verified (and cached)

    result = haven.cli("user", "passwd", dav.user, "--password-stdin", input=b"new-" + dav.password.encode() + b"\n")
    assert result.returncode == 0, result.stderr
    assert_challenge(dav.get(href), "the old password")
    renewed = Dav(haven, dav.user, "new-" + dav.password)
    assert renewed.get(href).status == 200

    result = haven.cli("user", "del", dav.user)
    assert result.returncode == 0, result.stderr
    assert_challenge(renewed.get(href), "a deleted account")
    result = haven.cli("user", "restore", dav.user)
    assert result.returncode == 0, result.stderr
    assert renewed.get(href).status == 200                        # restored, with its calendar
    result = haven.cli("user", "del", "--now", "--yes", dav.user)
    assert result.returncode == 0, result.stderr
    assert_challenge(renewed.get(href), "a removed account")

    # an account made again under the address starts empty
    result = haven.cli("user", "add", dav.user, "--password-stdin", input=b"again-pw\n")
    assert result.returncode == 0, result.stderr
    again = Dav(haven, dav.user, "again-pw")
    assert again.get(href).status == 404
    assert again.etags(again.calendar) == {}
    assert again.sync(again.calendar)[2] == {}


def test_https_listener_serves_the_same_tree(engine, haven_factory):
    """[http] tls_listen: the same site over TLS with the [tls] certificate (self-signed here)."""
    import http.client
    import ssl
    import time

    from tests.conftest import free_port
    port = free_port()
    server = haven_factory(engine, **{"http.tls_listen": f"127.0.0.1:{port}"})
    address, password = server.new_user("tls")
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    auth = "Basic " + base64.b64encode(f"{address}:{password}".encode()).decode()
    deadline = time.monotonic() + 10
    while True:
        try:
            conn = http.client.HTTPSConnection("127.0.0.1", port, context=context, timeout=10)
            conn.request("PROPFIND", f"/dav/{address}/", headers={"Authorization": auth, "Depth": "1"})
            break
        except ConnectionRefusedError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
    r = conn.getresponse()
    body = r.read().decode()
    assert r.status == 207 and "/Calendar/" in body and "/Contacts/" in body
    conn.request("GET", "/.well-known/carddav")
    r = conn.getresponse()
    r.read()
    assert (r.status, r.getheader("Location")) == (301, "/dav/")
