"""Mail Sync over real HTTP against `haven serve` on both engines: windows, items, the phone's
own changes, deletes from IMAP and the recovery of one, key replay, Fetch, MIME bodies, the time
window, and the empty Sync."""

from __future__ import annotations

import datetime

from imapclient import IMAPClient

from tests.gateways.activesync.client import EasClient, find, findall

MSG = (b"From: Sender <s@example.org>\r\nTo: %s\r\nSubject: %s\r\nMessage-ID: <%s@example.org>\r\n"
       b"Content-Type: text/plain; charset=utf-8\r\n\r\nbody of %s\r\n")


def sync_doc(key, cid, window=None, options="", commands="", extra=""):
    w = f"<WindowSize>{window}</WindowSize>" if window else ""
    c = f"<Commands>{commands}</Commands>" if commands else ""
    o = f"<Options>{options}</Options>" if options else ""
    return (f'<Sync xmlns="AirSync" xmlns:b="AirSyncBase" xmlns:e="Email"><Collections><Collection>'
            f"<SyncKey>{key}</SyncKey><CollectionId>{cid}</CollectionId>{extra}{w}{o}{c}</Collection>"
            f"</Collections></Sync>")


HTML_OPTS = "<b:BodyPreference><b:Type>2</b:Type><b:TruncationSize>5000</b:TruncationSize></b:BodyPreference>"


class Phone:
    def __init__(self, server, user, password, device="ApplSYNC01"):
        self.client = EasClient(server, user, password, device_id=device)
        status, answer = self.client.post("FolderSync", '<FolderSync xmlns="FolderHierarchy"><SyncKey>0</SyncKey></FolderSync>')
        self.folders = {find(a, "FolderHierarchy:DisplayName"): find(a, "FolderHierarchy:ServerId")
                        for a in findall(answer, "FolderHierarchy:Changes/FolderHierarchy:Add")}
        self.keys = {}

    def sync(self, name, window=None, options=HTML_OPTS, commands="", key=None, extra=""):
        cid = self.folders[name]
        key = key if key is not None else self.keys.get(name, "0")
        status, answer = self.client.post("Sync", sync_doc(key, cid, window, options, commands, extra))
        assert status == 200, status
        [coll] = findall(answer, "AirSync:Collections/AirSync:Collection")
        if find(coll, "AirSync:Status") == "1":
            self.keys[name] = find(coll, "AirSync:SyncKey")
        return coll


def commands(coll, kind):
    return findall(coll, f"AirSync:Commands/AirSync:{kind}")


def subjects(coll):
    return [find(a, "AirSync:ApplicationData/Email:Subject") for a in commands(coll, "Add")]


def test_initial_sync_in_windows_then_changes_both_ways(eas):
    user, password = eas.new_user("syncer")
    for n in range(5):
        eas.deliver(user, MSG % (user.encode(), b"m%d" % n, b"id%d" % n, b"m%d" % n))
    phone = Phone(eas, user, password)
    first = phone.sync("INBOX")
    assert find(first, "AirSync:Status") == "1" and commands(first, "Add") == []  # key 0: no items
    got = []
    while True:
        coll = phone.sync("INBOX", window=2)
        got += subjects(coll)
        assert len(commands(coll, "Add")) <= 2
        if coll.find("{AirSync}MoreAvailable") is None:
            break
    assert got == ["m4", "m3", "m2", "m1", "m0"]  # newest first
    phone.keys.pop("INBOX")  # a restart from key 0 is possible at any time
    phone.sync("INBOX")
    coll = phone.sync("INBOX")
    [item] = [a for a in commands(coll, "Add") if find(a, "AirSync:ApplicationData/Email:Subject") == "m2"]
    sid = find(item, "AirSync:ServerId")
    data = item.find("{AirSync}ApplicationData")
    assert find(data, "Email:From") == '"Sender" <s@example.org>' and find(data, "Email:Read") == "0"
    assert find(data, "AirSyncBase:Body/AirSyncBase:Type") == "2" and "body of m2" in find(data, "AirSyncBase:Body/AirSyncBase:Data")
    sids = {find(a, "AirSync:ApplicationData/Email:Subject"): find(a, "AirSync:ServerId") for a in commands(coll, "Add")}

    # IMAP marks one read: a Change for the phone
    c = IMAPClient(eas.imap[0], port=eas.imap[1], ssl=False, timeout=15)
    c.login(user, password)
    c.select_folder("INBOX")
    uid_of = {v[b"ENVELOPE"].subject.decode(): u for u, v in c.fetch(c.search(), ["ENVELOPE"]).items()}
    c.add_flags([uid_of["m0"]], [b"\\Seen"])
    coll = phone.sync("INBOX")
    [change] = commands(coll, "Change")
    assert find(change, "AirSync:ServerId") == sids["m0"] and find(change, "AirSync:ApplicationData/Email:Read") == "1"

    # the phone reads and flags m1 and sets a category: IMAP sees it, the phone is not told back
    coll = phone.sync("INBOX", commands=f'<Change><ServerId>{sids["m1"]}</ServerId><ApplicationData>'
                                        f'<e:Read>1</e:Read><e:Flag><e:Status>2</e:Status></e:Flag>'
                                        f'<e:Categories><e:Category>Work</e:Category></e:Categories>'
                                        f'</ApplicationData></Change>')
    assert commands(coll, "Change") == [] and commands(coll, "Delete") == []  # nor taken away from it
    flags = c.get_flags([uid_of["m1"]])[uid_of["m1"]]
    assert {b"\\Seen", b"\\Flagged", b"$label2"} <= set(flags)
    assert commands(phone.sync("INBOX"), "Change") == []

    # the phone deletes m2: into Trash (DeletesAsMoves), not echoed
    coll = phone.sync("INBOX", commands=f'<Delete><ServerId>{sid}</ServerId></Delete>')
    assert commands(coll, "Delete") == [] and coll.find("{AirSync}Responses") is None
    c.select_folder("Trash")
    assert [v[b"ENVELOPE"].subject for v in c.fetch(c.search(), ["ENVELOPE"]).values()] == [b"m2"]

    # IMAP deletes m3: a Delete; recovered by the admin: an Add again, with a new ServerId
    c.select_folder("INBOX")
    c.delete_messages([uid_of["m3"]])
    c.expunge()
    coll = phone.sync("INBOX")
    assert [find(d, "AirSync:ServerId") for d in commands(coll, "Delete")] == [sids["m3"]]
    [row] = [line.split("\t") for line in eas.cli("recover", "list", user).stdout.decode().splitlines()
             if line.endswith("m3")]
    assert eas.cli("recover", "restore", user, row[0]).returncode == 0
    coll = phone.sync("INBOX")
    assert subjects(coll) == ["m3"] and find(commands(coll, "Add")[0], "AirSync:ServerId") != sids["m3"]
    c.logout()


def test_replay_bad_keys_fetch_and_mime(eas):
    user, password = eas.new_user("replay")
    eas.deliver(user, MSG % (user.encode(), b"only", b"only1", b"only"))
    phone = Phone(eas, user, password, device="ApplREPLAY")
    phone.sync("INBOX")
    k1 = phone.keys["INBOX"]
    first = phone.sync("INBOX")
    assert subjects(first) == ["only"]
    # the answer was lost: the phone sends k1 again and gets the very same answer
    again = phone.sync("INBOX", key=k1)
    assert find(again, "AirSync:SyncKey") == find(first, "AirSync:SyncKey") and subjects(again) == ["only"]
    assert find(phone.sync("INBOX", key="{00000000000000000000000000000000}9"), "AirSync:Status") == "3"
    sid = find(commands(first, "Add")[0], "AirSync:ServerId")
    mime = ("<b:BodyPreference><b:Type>4</b:Type></b:BodyPreference><MIMESupport>2</MIMESupport>")
    coll = phone.sync("INBOX", options=mime, commands=f"<Fetch><ServerId>{sid}</ServerId></Fetch>")
    [fetch] = findall(coll, "AirSync:Responses/AirSync:Fetch")
    assert find(fetch, "AirSync:Status") == "1"
    data = fetch.find("{AirSync}ApplicationData/{AirSyncBase}Body/{AirSyncBase}Data").text
    assert isinstance(data, bytes) and data.endswith(MSG % (user.encode(), b"only", b"only1", b"only"))
    coll = phone.sync("INBOX", commands="<Fetch><ServerId>999:1</ServerId></Fetch>")
    assert find(findall(coll, "AirSync:Responses/AirSync:Fetch")[0], "AirSync:Status") == "8"


def test_time_window_and_unknown_collections(eas):
    user, password = eas.new_user("window")
    c = IMAPClient(eas.imap[0], port=eas.imap[1], ssl=False, timeout=15)
    c.login(user, password)
    old = datetime.datetime.now() - datetime.timedelta(days=30)
    c.append("INBOX", MSG % (user.encode(), b"old", b"old1", b"old"), msg_time=old)
    c.append("INBOX", MSG % (user.encode(), b"new", b"new1", b"new"))
    c.logout()
    phone = Phone(eas, user, password, device="ApplWINDOW")
    phone.sync("INBOX", options="<FilterType>3</FilterType>" + HTML_OPTS)  # one week
    assert subjects(phone.sync("INBOX")) == ["new"]  # the options stay with the state
    coll = phone.sync("INBOX", options="<FilterType>0</FilterType>")
    assert subjects(coll) == ["old"]
    coll = phone.sync("INBOX", options="<FilterType>1</FilterType>")
    assert [find(d, "AirSync:ServerId") for d in commands(coll, "SoftDelete")]  # the old one leaves
    status, answer = phone.client.post("Sync", sync_doc("0", "999999"))
    assert find(answer, "AirSync:Collections/AirSync:Collection/AirSync:Status") == "12"
    status, answer = phone.client.post("Sync", sync_doc("0", "outbox"))
    assert find(answer, "AirSync:Collections/AirSync:Collection/AirSync:Status") == "1"


def test_empty_sync_reuses_the_last_request(eas):
    user, password = eas.new_user("empty")
    fresh = EasClient(eas, user, password, device_id="ApplEMPTY0")
    status, answer = fresh.post("Sync")
    assert status == 200 and find(answer, "AirSync:Status") == "13"
    phone = Phone(eas, user, password, device="ApplEMPTY1")
    phone.sync("INBOX")
    phone.sync("INBOX")
    eas.deliver(user, MSG % (user.encode(), b"later", b"later1", b"later"))
    # the phone sends an empty Sync: the last one again (with the key it had then)
    status, answer = phone.client.post("Sync")
    [coll] = findall(answer, "AirSync:Collections/AirSync:Collection")
    assert status == 200 and find(coll, "AirSync:Status") == "1" and subjects(coll) == ["later"]
    assert find(coll, "AirSync:SyncKey") != phone.keys["INBOX"]


def test_a_phone_delete_is_an_imap_expunge_and_recoverable(eas):
    user, password = eas.new_user("phonedel")
    for s in (b"keep", b"gone"):
        eas.deliver(user, MSG % (user.encode(), s, s, s))
    phone = Phone(eas, user, password, device="ApplDEL01")
    phone.sync("INBOX")
    coll = phone.sync("INBOX")
    sids = {find(a, "AirSync:ApplicationData/Email:Subject"): find(a, "AirSync:ServerId")
            for a in commands(coll, "Add")}
    c = IMAPClient(eas.imap[0], port=eas.imap[1], ssl=False, timeout=15)
    c.login(user, password)
    c.enable("QRESYNC")
    c.select_folder("INBOX")
    gone_uid = int(sids["gone"].partition(":")[2])
    # DeletesAsMoves 0: a delete for good (soft: recoverable), not a move into Trash
    phone.sync("INBOX", commands=f"<Delete><ServerId>{sids['gone']}</ServerId></Delete>",
               extra="<DeletesAsMoves>0</DeletesAsMoves>")
    responses = c.noop()[1]
    assert any(r[0] == b"VANISHED" or (len(r) > 1 and r[1] == b"EXPUNGE") for r in responses) or \
        gone_uid not in c.search(), responses
    assert gone_uid not in c.search()
    c.select_folder("Trash")
    assert c.search() == []
    c.logout()
    [row] = [line.split("\t") for line in eas.cli("recover", "list", user).stdout.decode().splitlines()
             if line.endswith("gone")]
    assert eas.cli("recover", "restore", user, row[0]).returncode == 0
    assert subjects(phone.sync("INBOX")) == ["gone"]


def test_partial_sync_fills_in_from_the_last_request(eas):
    user, password = eas.new_user("partial")
    phone = Phone(eas, user, password, device="ApplPART01")
    inbox, sent = phone.folders["INBOX"], phone.folders["Sent"]

    def both(k1, k2, partial=""):
        return ('<Sync xmlns="AirSync"><Collections>'
                f"<Collection><SyncKey>{k1}</SyncKey><CollectionId>{inbox}</CollectionId></Collection>"
                f"<Collection><SyncKey>{k2}</SyncKey><CollectionId>{sent}</CollectionId></Collection>"
                f"</Collections>{partial}</Sync>")

    def keys(answer):
        return {find(c, "AirSync:CollectionId"): (find(c, "AirSync:SyncKey"), c)
                for c in findall(answer, "AirSync:Collections/AirSync:Collection")}
    got = keys(phone.client.post("Sync", both("0", "0"))[1])
    got = keys(phone.client.post("Sync", both(got[inbox][0], got[sent][0]))[1])  # the full request, cached
    eas.deliver(user, MSG % (user.encode(), b"partly", b"partly1", b"partly"))
    doc = ('<Sync xmlns="AirSync"><Collections>'
           f"<Collection><SyncKey>{got[sent][0]}</SyncKey><CollectionId>{sent}</CollectionId></Collection>"
           "</Collections><Partial/></Sync>")
    status, answer = phone.client.post("Sync", doc)
    after = keys(answer)
    assert set(after) == {inbox, sent}  # INBOX from the cached request, with the key it holds now
    assert subjects(after[inbox][1]) == ["partly"]


def test_drafts_of_a_16_phone(eas):
    user, password = eas.new_user("drafter")
    phone = Phone(eas, user, password, device="ApplDRAFT1")
    phone.sync("Drafts")
    phone.sync("Drafts")
    add = ("<Add><ClientId>d1</ClientId><ApplicationData><e:To>friend@example.org</e:To>"
           "<e:Subject>half written</e:Subject><b:Body><b:Type>1</b:Type><b:Data>first words</b:Data></b:Body>"
           "</ApplicationData></Add>")
    coll = phone.sync("Drafts", commands=add)
    [resp] = findall(coll, "AirSync:Responses/AirSync:Add")
    assert find(resp, "AirSync:Status") == "1" and find(resp, "AirSync:ClientId") == "d1"
    sid = find(resp, "AirSync:ServerId")
    assert commands(coll, "Add") == [] and commands(coll, "Delete") == []  # not sent back, nor taken away
    again = phone.sync("Drafts", commands=add)  # the same ClientId: the same draft, once
    assert find(findall(again, "AirSync:Responses/AirSync:Add")[0], "AirSync:ServerId") == sid
    c = IMAPClient(eas.imap[0], port=eas.imap[1], ssl=False, timeout=15)
    c.login(user, password)
    c.select_folder("Drafts")
    [(uid, data)] = c.fetch(c.search(), ["BODY.PEEK[]", "FLAGS"]).items()
    assert b"first words" in data[b"BODY[]"] and b"To: friend@example.org" in data[b"BODY[]"]
    assert b"\\Draft" in data[b"FLAGS"]
    # edited on the phone: the new text replaces it; the next Sync swaps the ids
    coll = phone.sync("Drafts", commands=f"<Change><ServerId>{sid}</ServerId><ApplicationData>"
                                         "<e:Subject>done</e:Subject><b:Body><b:Type>1</b:Type><b:Data>all the words"
                                         "</b:Data></b:Body></ApplicationData></Change>")
    assert [find(d, "AirSync:ServerId") for d in commands(coll, "Delete")] == [sid]
    assert subjects(coll) == ["done"]
    c.select_folder("Drafts")
    bodies = [v[b"BODY[]"] for v in c.fetch(c.search(), ["BODY.PEEK[]"]).values()]
    assert len(bodies) == 1 and b"all the words" in bodies[0]
    c.logout()
    # not in INBOX
    phone.sync("INBOX")
    coll = phone.sync("INBOX", commands=add.replace("d1", "d2"))
    assert find(findall(coll, "AirSync:Responses/AirSync:Add")[0], "AirSync:Status") == "6"


def test_a_conflict_is_won_by_the_server_unless_the_phone_says(eas):
    user, password = eas.new_user("conflict")
    eas.deliver(user, MSG % (user.encode(), b"both", b"both1", b"x"))
    phone = Phone(eas, user, password, device="ApplCONF01")
    phone.sync("INBOX")
    sid = find(commands(phone.sync("INBOX"), "Add")[0], "AirSync:ServerId")
    c = IMAPClient(eas.imap[0], port=eas.imap[1], ssl=False, timeout=15)
    c.login(user, password)
    c.select_folder("INBOX")
    c.add_flags(c.search(), [b"\\Flagged"])  # changed here meanwhile
    change = (f"<Change><ServerId>{sid}</ServerId><ApplicationData><e:Read>1</e:Read></ApplicationData></Change>")
    coll = phone.sync("INBOX", commands=change)
    [resp] = findall(coll, "AirSync:Responses/AirSync:Change")
    assert find(resp, "AirSync:Status") == "7"  # the server's version wins, and is sent
    [sent] = commands(coll, "Change")
    assert find(sent, "AirSync:ApplicationData/Email:Flag/Email:Status") == "2"
    assert b"\\Seen" not in c.get_flags(c.search())[c.search()[0]]
    c.add_flags(c.search(), [b"$label1"])
    coll = phone.sync("INBOX", commands=change, options="<Conflict>0</Conflict>" + HTML_OPTS)  # the phone wins
    assert findall(coll, "AirSync:Responses/AirSync:Change") == []
    assert b"\\Seen" in c.get_flags(c.search())[c.search()[0]]
    c.logout()
