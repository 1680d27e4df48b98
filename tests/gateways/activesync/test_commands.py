"""ActiveSync commands over real HTTP against `haven serve` on both engines: an iPhone-shaped
start (Provision, FolderSync, Settings), the provisioning rule, FolderSync deltas and key
replay, and bad requests (a status and a log line, never a 500)."""

from __future__ import annotations

import base64
import struct
import xml.etree.ElementTree as ET

from imapclient import IMAPClient

from gateways.activesync.wbxml import decode, encode
from tests.conftest import HavenServer, run_on_reactor
from tests.gateways.activesync.client import EasClient, X, find, findall, started

FOLDER_SYNC = '<FolderSync xmlns="FolderHierarchy"><SyncKey>%s</SyncKey></FolderSync>'


EAS_SETTINGS = {"activesync.provisioning": "on"}


def folders(answer) -> dict:
    return {find(a, "FolderHierarchy:DisplayName"): (find(a, "FolderHierarchy:ServerId"),
                                                     find(a, "FolderHierarchy:ParentId"),
                                                     find(a, "FolderHierarchy:Type"))
            for a in findall(answer, "FolderHierarchy:Changes/FolderHierarchy:Add")}


def test_an_iphone_starts(eas):
    user, password = eas.new_user("iphone")
    phone = EasClient(eas, user, password)
    status, headers, _ = phone.raw("OPTIONS")
    assert status == 200 and "16.1" in headers["ms-asprotocolversions"]
    # provisioning = on: nothing but Provision before the device has its key
    status, answer = phone.post("FolderSync", FOLDER_SYNC % "0")
    assert status == 200 and find(answer, "FolderHierarchy:Status") == "142"
    key = phone.provision()
    status, answer = phone.post("FolderSync", FOLDER_SYNC % "0")
    assert status == 200 and find(answer, "FolderHierarchy:Status") == "1", answer
    tree = folders(answer)
    assert tree["INBOX"][2] == "2" and tree["Drafts"][2] == "3" and tree["Trash"][2] == "4"
    assert tree["Sent"][2] == "5" and tree["Outbox"] == ("outbox", "0", "6") and tree["Junk"][2] == "12"
    assert find(answer, "FolderHierarchy:Changes/FolderHierarchy:Count") == str(len(tree))
    status, answer = phone.post("Settings", """<Settings xmlns="Settings"><UserInformation><Get/></UserInformation>
        <DeviceInformation><Set><Model>iPhone15,2</Model><FriendlyName>Ann's phone</FriendlyName></Set>
        </DeviceInformation></Settings>""")
    assert find(answer, "Settings:Status") == "1"
    base = "Settings:UserInformation/Settings:Get/Settings:Accounts/Settings:Account/"
    assert find(answer, base + "Settings:PrimarySmtpAddress") == user
    assert [e.text for e in findall(answer, base + "Settings:EmailAddresses/Settings:SMTPAddress")] == [user]
    assert find(answer, "Settings:DeviceInformation/Settings:Status") == "1"
    # a wrong policy key is refused with 144; the right one works
    phone.policy_key = str(int(key) ^ 1)
    assert find(phone.post("FolderSync", FOLDER_SYNC % "0")[1], "FolderHierarchy:Status") == "144"
    phone.policy_key = key
    assert find(phone.post("FolderSync", FOLDER_SYNC % "0")[1], "FolderHierarchy:Status") == "1"
    store = eas.admin_store()
    account = run_on_reactor(store.get_account, user)
    device = run_on_reactor(store.get_device, account.id, phone.device_id)
    assert (device.model, device.os, device.device_type) == ("iPhone15,2", "iOS 17.5", "iPhone")


def test_folder_sync_deltas_and_keys(eas):
    user, password, phone, first, key1 = started(eas, "deltas", "ANDROIDc1234")
    c = IMAPClient(eas.imap[0], port=eas.imap[1], ssl=False, timeout=15)
    c.login(user, password)
    c.create_folder("Projects")
    c.create_folder("Projects/2024")
    c.rename_folder("Junk", "Spam")
    c.delete_folder("Archive")
    c.logout()
    status, second = phone.post("FolderSync", FOLDER_SYNC % key1)
    assert find(second, "FolderHierarchy:Status") == "1"
    adds = folders(second)
    assert set(adds) == {"Projects", "2024"} and adds["2024"][1] == adds["Projects"][0]  # parent first
    [upd] = findall(second, "FolderHierarchy:Changes/FolderHierarchy:Update")
    assert find(upd, "FolderHierarchy:DisplayName") == "Spam"
    assert find(upd, "FolderHierarchy:ServerId") == folders(first)["Junk"][0]  # a rename keeps the id
    deleted = [find(d, "FolderHierarchy:ServerId") for d in findall(second, "FolderHierarchy:Changes/FolderHierarchy:Delete")]
    assert deleted == [folders(first)["Archive"][0]]
    key2 = find(second, "FolderHierarchy:SyncKey")
    # the phone lost that answer and asks again with the old key: the same answer, not a new delta
    status, again = phone.post("FolderSync", FOLDER_SYNC % key1)
    assert find(again, "FolderHierarchy:SyncKey") == key2 and folders(again) == adds
    status, third = phone.post("FolderSync", FOLDER_SYNC % key2)
    assert find(third, "FolderHierarchy:Changes/FolderHierarchy:Count") == "0"
    # an unknown key: Status 9, and key 0 always starts over
    assert find(phone.post("FolderSync", FOLDER_SYNC % "{deadbeef}7")[1], "FolderHierarchy:Status") == "9"
    assert find(phone.post("FolderSync", FOLDER_SYNC % key1)[1], "FolderHierarchy:Status") == "9"  # too old now
    for _ in range(2):
        assert find(phone.post("FolderSync", FOLDER_SYNC % "0")[1], "FolderHierarchy:Status") == "1"


def test_bad_requests_get_a_status_not_a_500(eas):
    user, password = eas.new_user("badreq")
    phone = EasClient(eas, user, password, device_id="BADREQ1")
    assert phone.raw("POST", "Cmd=FolderSync&User=x")[0] == 400  # no DeviceId/DeviceType
    assert phone.raw("POST", phone.query("Frobnicate"))[0] == 501
    assert phone.raw("POST", phone.query("FolderSync"), b"\x03\x01\x6a\x00\x45\x5c")[0] == 400  # truncated WBXML
    assert phone.raw("POST", "!!!not-base64!!!")[0] == 400
    assert phone.raw("POST", phone.query("FolderSync"), headers={"MS-ASProtocolVersion": "2.5"})[0] == 400
    status, answer = phone.post("Provision", '<Provision xmlns="Provision"><Policies><Policy>'
                                             '<PolicyType>MS-WAP-Provisioning-XML</PolicyType></Policy></Policies></Provision>')
    assert find(answer, "Provision:Policies/Provision:Policy/Provision:Status") == "3"
    status, answer = phone.post("Provision", '<Provision xmlns="Provision"><Policies><Policy>'
                                             '<PolicyType>MS-EAS-Provisioning-WBXML</PolicyType><PolicyKey>12345</PolicyKey>'
                                             '<Status>1</Status></Policy></Policies></Provision>')
    assert find(answer, "Provision:Policies/Provision:Policy/Provision:Status") == "5"  # never issued
    assert "Traceback" not in eas.log()


def test_base64_query_of_an_older_phone(eas):
    user, password = eas.new_user("b64")
    phone = EasClient(eas, user, password, device_id="B64DEV", version="14.1")
    phone.provision()
    device, dtype = b"B64DEV", b"SmartPhone"
    # MS-ASHTTP 2.2.1.1.1.1: version 141, command 9 (FolderSync), locale, device id, policy key, type
    raw = bytes([141, 9]) + struct.pack("<H", 0x0409) + bytes([len(device)]) + device + bytes([4]) + \
        struct.pack("<I", int(phone.policy_key)) + bytes([len(dtype)]) + dtype
    status, _headers, data = phone.raw("POST", base64.b64encode(raw).decode(), encode(X(FOLDER_SYNC % "0")),
                                       headers={"MS-ASProtocolVersion": ""})
    assert status == 200 and find(decode(data), "FolderHierarchy:Status") == "1"


def test_remote_wipe(eas):
    user, password = eas.new_user("wiped")
    phone = EasClient(eas, user, password, device_id="WIPEME")
    phone.provision()
    store = eas.admin_store()
    account = run_on_reactor(store.get_account, user)
    run_on_reactor(store.request_wipe, account.id, "WIPEME")
    assert find(phone.post("FolderSync", FOLDER_SYNC % "0")[1], "FolderHierarchy:Status") == "140"
    status, answer = phone.post("Provision", '<Provision xmlns="Provision"><Policies><Policy>'
                                             '<PolicyType>MS-EAS-Provisioning-WBXML</PolicyType></Policy></Policies></Provision>')
    assert answer.find("{Provision}RemoteWipe") is not None
    status, answer = phone.post("Provision", '<Provision xmlns="Provision"><RemoteWipe><Status>1</Status></RemoteWipe>'
                                             '</Provision>')
    assert find(answer, "Provision:Status") == "1"
    assert run_on_reactor(store.get_device, account.id, "WIPEME").wipe_state == "done"


def test_loose_and_off(tmp_path_factory):
    for mode in ("loose", "off"):
        server = HavenServer(tmp_path_factory.mktemp(f"haven-eas-{mode}"), "sqlite",
                             {"activesync.enabled": "yes", "activesync.provisioning": mode})
        server.start()
        try:
            user, password = server.new_user("mode")
            phone = EasClient(server, user, password, device_id="NOPROV")
            assert find(phone.post("FolderSync", FOLDER_SYNC % "0")[1], "FolderHierarchy:Status") == "1"
            phone.provision()
            phone.policy_key = "1"  # a stale key: refused unless provisioning is off
            expected = "144" if mode == "loose" else "1"
            assert find(phone.post("FolderSync", FOLDER_SYNC % "0")[1], "FolderHierarchy:Status") == expected
        finally:
            server.close()


def test_folder_create_update_delete(eas):
    user, password, phone, first, key = started(eas, "tree", "ApplTREE01")
    tree = folders(first)

    def change(cmd, inner):
        nonlocal key
        status, answer = phone.post(cmd, f'<{cmd} xmlns="FolderHierarchy"><SyncKey>{key}</SyncKey>{inner}</{cmd}>')
        if find(answer, "FolderHierarchy:Status") == "1":
            key = find(answer, "FolderHierarchy:SyncKey")
        return answer

    made = change("FolderCreate", "<ParentId>0</ParentId><DisplayName>Receipts</DisplayName><Type>12</Type>")
    assert find(made, "FolderHierarchy:Status") == "1"
    rid = find(made, "FolderHierarchy:ServerId")
    sub_made = change("FolderCreate", f"<ParentId>{rid}</ParentId><DisplayName>2026</DisplayName><Type>12</Type>")
    assert find(sub_made, "FolderHierarchy:Status") == "1"
    assert find(change("FolderCreate", "<ParentId>0</ParentId><DisplayName>Receipts</DisplayName><Type>12</Type>"),
                "FolderHierarchy:Status") == "2"  # exists
    assert find(change("FolderUpdate", f"<ServerId>{rid}</ServerId><ParentId>0</ParentId>"
                                       "<DisplayName>Bills</DisplayName>"), "FolderHierarchy:Status") == "1"
    assert find(change("FolderUpdate", f"<ServerId>{tree['INBOX'][0]}</ServerId><ParentId>0</ParentId>"
                                       "<DisplayName>Nope</DisplayName>"), "FolderHierarchy:Status") == "3"
    c = IMAPClient(eas.imap[0], port=eas.imap[1], ssl=False, timeout=15)
    c.login(user, password)
    names = {name for _f, _d, name in c.list_folders()}
    assert {"Bills", "Bills/2026"} <= names and "Receipts" not in names
    c.logout()
    # the phone made these changes itself: the next FolderSync has nothing for it
    status, answer = phone.post("FolderSync", FOLDER_SYNC % key)
    assert find(answer, "FolderHierarchy:Changes/FolderHierarchy:Count") == "0", answer
    key = find(answer, "FolderHierarchy:SyncKey")
    assert find(change("FolderDelete", f"<ServerId>{rid}</ServerId>"), "FolderHierarchy:Status") == "1"
    status, answer = phone.post("FolderSync", FOLDER_SYNC % key)
    assert find(answer, "FolderHierarchy:Changes/FolderHierarchy:Count") == "0", ET.tostring(answer)
    status, answer = phone.post("FolderDelete", '<FolderDelete xmlns="FolderHierarchy"><SyncKey>stale</SyncKey>'
                                                f'<ServerId>{rid}</ServerId></FolderDelete>')
    assert find(answer, "FolderHierarchy:Status") == "9"
