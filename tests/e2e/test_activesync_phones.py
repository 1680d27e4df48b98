"""Phones end to end, as their traffic is shaped, on both engines: an iPhone (OPTIONS,
Provision, FolderSync, Settings, Sync in windows, Ping woken by an LMTP delivery), an Android
phone (base64 query, 14.1, MIME bodies, hanging Sync woken by an IMAP change), and a 16.1 phone
that never sends OPTIONS; Thunderbird over IMAP sees what the phones did."""

from __future__ import annotations

import base64
import struct
import threading
import time

from imapclient import IMAPClient

from gateways.activesync.wbxml import decode, encode
from tests.gateways.activesync.client import X, EasClient, find, findall
from tests.gateways.activesync.test_sync import MSG

EAS_SETTINGS = {"activesync.provisioning": "on"}

FOLDER_SYNC = '<FolderSync xmlns="FolderHierarchy"><SyncKey>0</SyncKey></FolderSync>'


def inbox_of(answer) -> str:
    return next(find(a, "FolderHierarchy:ServerId") for a in findall(answer, "FolderHierarchy:Changes/FolderHierarchy:Add")
                if find(a, "FolderHierarchy:DisplayName") == "INBOX")


def sync_xml(key, cid, options="", wait=""):
    return (f'<Sync xmlns="AirSync" xmlns:b="AirSyncBase"><Collections><Collection><SyncKey>{key}</SyncKey>'
            f'<CollectionId>{cid}</CollectionId><WindowSize>10</WindowSize>{options}</Collection></Collections>'
            f'{wait}</Sync>')


def collection(answer):
    return findall(answer, "AirSync:Collections/AirSync:Collection")[0]


def test_an_iphone(eas):
    user, password = eas.new_user("iphone")
    for n in range(25):
        eas.deliver(user, MSG % (user.encode(), b"m%02d" % n, b"ip%d" % n, b"m"))
    phone = EasClient(eas, user, password, device_id="ApplF17XYZ01", version="16.1")
    assert phone.raw("OPTIONS")[0] == 200
    phone.provision()
    status, tree = phone.post("FolderSync", FOLDER_SYNC)
    inbox = inbox_of(tree)
    status, answer = phone.post("Settings", '<Settings xmlns="Settings"><UserInformation><Get/></UserInformation>'
                                            '</Settings>')
    assert find(answer, "Settings:Status") == "1"
    key = find(collection(phone.post("Sync", sync_xml("0", inbox))[1]), "AirSync:SyncKey")
    got, more = 0, True
    options = ("<Options><FilterType>0</FilterType><b:BodyPreference><b:Type>2</b:Type><b:TruncationSize>"
               "32768</b:TruncationSize></b:BodyPreference></Options>")
    while more:
        coll = collection(phone.post("Sync", sync_xml(key, inbox, options))[1])
        key = find(coll, "AirSync:SyncKey")
        got += len(findall(coll, "AirSync:Commands/AirSync:Add"))
        more = coll.find("{AirSync}MoreAvailable") is not None
    assert got == 25
    box = {}
    ping = threading.Thread(target=lambda: box.update(answer=phone.post("Ping", (
        '<Ping xmlns="Ping"><HeartbeatInterval>120</HeartbeatInterval><Folders><Folder>'
        f'<Id>{inbox}</Id><Class>Email</Class></Folder></Folders></Ping>'))[1], at=time.monotonic()))
    ping.start()
    time.sleep(0.5)
    eas.deliver(user, MSG % (user.encode(), b"pushed", b"pushed", b"now"))
    sent = time.monotonic()
    ping.join(10)
    assert find(box["answer"], "Ping:Status") == "2" and box["at"] - sent < 1.0
    coll = collection(phone.post("Sync", sync_xml(key, inbox, options))[1])
    assert [find(a, "AirSync:ApplicationData/Email:Subject") for a in findall(coll, "AirSync:Commands/AirSync:Add")] \
        == ["pushed"]


def test_an_android_phone(eas):
    user, password = eas.new_user("android")
    eas.deliver(user, MSG % (user.encode(), b"hello", b"and1", b"droid"))
    phone = EasClient(eas, user, password, device_id="androidc1f2e3", device_type="Android", version="14.1")
    phone.provision()

    def b64(cmd_code: int, doc: str):
        device, dtype = phone.device_id.encode(), b"Android"
        raw = bytes([141, cmd_code]) + struct.pack("<H", 0x0409) + bytes([len(device)]) + device + bytes([4]) + \
            struct.pack("<I", int(phone.policy_key)) + bytes([len(dtype)]) + dtype
        status, _h, data = phone.raw("POST", base64.b64encode(raw).decode(), encode(X(doc)),
                                     headers={"MS-ASProtocolVersion": ""})
        assert status == 200
        return decode(data) if data else None
    inbox = inbox_of(b64(9, FOLDER_SYNC))
    key = find(collection(b64(0, sync_xml("0", inbox))), "AirSync:SyncKey")
    mime = "<Options><MIMESupport>2</MIMESupport><b:BodyPreference><b:Type>4</b:Type></b:BodyPreference></Options>"
    coll = collection(b64(0, sync_xml(key, inbox, mime)))
    key = find(coll, "AirSync:SyncKey")
    [add] = findall(coll, "AirSync:Commands/AirSync:Add")
    data = add.find("{AirSync}ApplicationData/{AirSyncBase}Body/{AirSyncBase}Data").text
    assert isinstance(data, bytes) and data.endswith(MSG % (user.encode(), b"hello", b"and1", b"droid"))
    # a hanging Sync, woken by Thunderbird flagging the message
    box = {}
    t = threading.Thread(target=lambda: box.update(answer=b64(0, sync_xml(key, inbox, mime,
                                                                              "<Wait>5</Wait>"))))
    t.start()
    time.sleep(0.5)
    c = IMAPClient(eas.imap[0], port=eas.imap[1], ssl=False, timeout=15)
    c.login(user, password)
    c.select_folder("INBOX")
    c.add_flags(c.search(), [b"\\Flagged"])
    t.join(10)
    [change] = findall(collection(box["answer"]), "AirSync:Commands/AirSync:Change")
    assert find(change, "AirSync:ApplicationData/Email:Flag/Email:Status") == "2"
    c.logout()


def test_a_16_1_phone_without_options(eas):
    user, password = eas.new_user("sixteen")
    eas.deliver(user, MSG % (user.encode(), b"first", b"six1", b"x"))
    phone = EasClient(eas, user, password, device_id="OutlookMobile01", device_type="Outlook", version="16.1")
    phone.provision()  # straight to Provision: no OPTIONS first
    inbox = inbox_of(phone.post("FolderSync", FOLDER_SYNC)[1])
    key = find(collection(phone.post("Sync", sync_xml("0", inbox))[1]), "AirSync:SyncKey")
    coll = collection(phone.post("Sync", sync_xml(key, inbox))[1])
    [add] = findall(coll, "AirSync:Commands/AirSync:Add")
    sid = find(add, "AirSync:ServerId")
    # read and deleted on the phone: Thunderbird sees it in Trash, read
    key = find(coll, "AirSync:SyncKey")
    doc = sync_xml(key, inbox).replace("</WindowSize>", "</WindowSize><Commands><Change><ServerId>"
                                                         f"{sid}</ServerId><ApplicationData><Read xmlns=\"Email\">1"
                                                         "</Read></ApplicationData></Change><Delete><ServerId>"
                                                         f"{sid}</ServerId></Delete></Commands>")
    assert find(collection(phone.post("Sync", doc)[1]), "AirSync:Status") == "1"
    c = IMAPClient(eas.imap[0], port=eas.imap[1], ssl=False, timeout=15)
    c.login(user, password)
    c.select_folder("INBOX")
    assert c.search() == []
    c.select_folder("Trash")
    [(uid, data)] = c.fetch(c.search(), ["FLAGS"]).items()
    assert b"\\Seen" in data[b"FLAGS"]
    c.logout()
