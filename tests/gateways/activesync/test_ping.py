"""Ping (push) over real HTTP against `haven serve` on both engines: an LMTP delivery ends a
parked Ping at once, the heartbeat ends a quiet one, a phone's own change does not wake it, a
newer Ping ends an older one, the empty Ping, and the limits."""

from __future__ import annotations

import threading
import time


from tests.gateways.activesync.client import EasClient, find, findall
from tests.gateways.activesync.test_sync import MSG, Phone, sync_doc


EAS_SETTINGS = {"activesync.min_heartbeat": "1", "activesync.max_heartbeat": "30", "activesync.max_folders": "3",
                "http.idle_timeout": "1"}  # a parked Ping outlives the idle timeout


def ping_doc(seconds, *ids):
    folders = "".join(f"<Folder><Id>{i}</Id><Class>Email</Class></Folder>" for i in ids)
    return f'<Ping xmlns="Ping"><HeartbeatInterval>{seconds}</HeartbeatInterval><Folders>{folders}</Folders></Ping>'


def in_background(fn):
    box = {}

    def run():
        start = time.monotonic()
        box["result"] = fn()
        box["took"] = time.monotonic() - start
    t = threading.Thread(target=run)
    t.start()
    return t, box


def synced_phone(eas, name, device):
    user, password = eas.new_user(name)
    phone = Phone(eas, user, password, device=device)
    phone.sync("INBOX")
    phone.sync("INBOX")
    return user, phone


def test_a_delivery_ends_a_parked_ping(eas):
    user, phone = synced_phone(eas, "pushed", "ApplPING01")
    inbox = phone.folders["INBOX"]
    phone.sync("Sent")
    phone.sync("Sent")
    t, box = in_background(lambda: phone.client.post("Ping", ping_doc(20, inbox, phone.folders["Sent"])))
    time.sleep(0.8)
    assert t.is_alive()  # parked
    sent = time.monotonic()
    eas.deliver(user, MSG % (user.encode(), b"push", b"push1", b"push"))
    t.join(10)
    latency = time.monotonic() - sent
    status, answer = box["result"]
    assert status == 200 and find(answer, "Ping:Status") == "2"
    assert [f.text for f in findall(answer, "Ping:Folders/Ping:Folder")] == [inbox]
    assert latency < 2.0, latency
    # unsynced changes answer at once; after the Sync the heartbeat runs out: Status 1
    status, answer = phone.client.post("Ping", ping_doc(2, inbox))
    assert find(answer, "Ping:Status") == "2"
    phone.sync("INBOX")
    t, box = in_background(lambda: phone.client.post("Ping", ping_doc(2, inbox)))
    t.join(10)
    assert find(box["result"][1], "Ping:Status") == "1" and 1.8 < box["took"] < 6


def test_own_changes_and_newer_pings(eas):
    user, phone = synced_phone(eas, "own", "ApplPING02")
    eas.deliver(user, MSG % (user.encode(), b"mine", b"mine1", b"mine"))
    coll = phone.sync("INBOX")
    sid = find(findall(coll, "AirSync:Commands/AirSync:Add")[0], "AirSync:ServerId")
    inbox = phone.folders["INBOX"]
    t, box = in_background(lambda: phone.client.post("Ping", ping_doc(3, inbox)))
    time.sleep(0.5)
    phone.sync("INBOX", commands=f"<Change><ServerId>{sid}</ServerId><ApplicationData><e:Read>1</e:Read>"
                                 f"</ApplicationData></Change>")
    t.join(10)
    assert find(box["result"][1], "Ping:Status") == "1"  # its own change did not wake it
    t1, box1 = in_background(lambda: phone.client.post("Ping", ping_doc(20, inbox)))
    time.sleep(0.5)
    t2, box2 = in_background(lambda: phone.client.post("Ping", ping_doc(2, inbox)))
    t1.join(5)
    assert find(box1["result"][1], "Ping:Status") == "1" and box1["took"] < 5  # ended by the newer one
    t2.join(10)


def test_empty_ping_and_limits(eas):
    user, password = eas.new_user("pinglimits")
    fresh = EasClient(eas, user, password, device_id="ApplPING03")
    status, answer = fresh.post("Ping")
    assert find(answer, "Ping:Status") == "3"  # nothing to repeat
    phone = Phone(eas, user, password, device="ApplPING04")
    inbox = phone.folders["INBOX"]
    status, answer = phone.client.post("Ping", ping_doc(100, inbox))
    assert find(answer, "Ping:Status") == "5" and find(answer, "Ping:HeartbeatInterval") == "30"
    status, answer = phone.client.post("Ping", ping_doc(0, inbox))
    assert find(answer, "Ping:Status") == "5" and find(answer, "Ping:HeartbeatInterval") == "1"
    status, answer = phone.client.post("Ping", ping_doc(5, *list(phone.folders.values())[:4]))
    assert find(answer, "Ping:Status") == "6" and find(answer, "Ping:MaxFolders") == "3"
    status, answer = phone.client.post("Ping", ping_doc(5, "424242"))
    assert find(answer, "Ping:Status") == "7"
    # a full Ping is remembered; the empty one repeats it (INBOX never synced here: changes)
    status, answer = phone.client.post("Ping", ping_doc(5, inbox))
    assert find(answer, "Ping:Status") == "2"
    status, answer = phone.client.post("Ping")
    assert find(answer, "Ping:Status") == "2" and [f.text for f in findall(answer, "Ping:Folders/Ping:Folder")] == [inbox]
    status, answer = phone.client.post("Ping", '<Ping xmlns="Ping"><HeartbeatInterval>2</HeartbeatInterval></Ping>')
    assert find(answer, "Ping:Status") == "2"  # folders from the last one


def test_hanging_sync(eas):
    user, phone = synced_phone(eas, "hanging", "ApplHANG01")
    inbox = phone.folders["INBOX"]
    key = phone.keys["INBOX"]

    def hanging(seconds, key=key, commands=""):
        doc = sync_doc(key, inbox, commands=commands).replace("</Collections>",
                                                              f"</Collections><HeartbeatInterval>{seconds}"
                                                              "</HeartbeatInterval>")
        return phone.client.post("Sync", doc)

    # nothing new: it waits, then answers empty and the key stays the phone's
    t, box = in_background(lambda: hanging(2))
    t.join(10)
    status, answer = box["result"]
    assert status == 200 and answer is None and 1.8 < box["took"] < 6
    # a delivery while it waits: the answer carries it at once
    t, box = in_background(lambda: hanging(20))
    time.sleep(0.8)
    assert t.is_alive()
    eas.deliver(user, MSG % (user.encode(), b"hang", b"hang1", b"hang"))
    t.join(10)
    status, answer = box["result"]
    [coll] = findall(answer, "AirSync:Collections/AirSync:Collection")
    assert [find(a, "AirSync:ApplicationData/Email:Subject")
            for a in findall(coll, "AirSync:Commands/AirSync:Add")] == ["hang"] and box["took"] < 5
    new_key = find(coll, "AirSync:SyncKey")
    # out of range: Status 14 with the limit
    for value, limit in (("0", "1"), ("100", "30")):
        status, answer = phone.client.post("Sync", sync_doc(new_key, inbox).replace(
            "</Collections>", f"</Collections><HeartbeatInterval>{value}</HeartbeatInterval>"))
        assert (find(answer, "AirSync:Status"), find(answer, "AirSync:Limit")) == ("14", limit)
    status, answer = phone.client.post("Sync", sync_doc(new_key, inbox).replace(
        "</Collections>", "</Collections><Wait>0</Wait>"))
    assert find(answer, "AirSync:Status") == "14"
