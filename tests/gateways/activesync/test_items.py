"""MoveItems, GetItemEstimate and ItemOperations over real HTTP against `haven serve` on both
engines."""

from __future__ import annotations

import base64
import struct
import xml.etree.ElementTree as ET

from imapclient import IMAPClient

from gateways.activesync.wbxml import decode, encode
from tests.gateways.activesync.client import X, find, findall
from tests.gateways.activesync.test_sync import MSG, Phone

PDF = b"%PDF-1.4 " + bytes(range(256)) * 4
WITH_FILE = (b"From: s@example.org\r\nTo: u@example.test\r\nSubject: with a file\r\nMIME-Version: 1.0\r\n"
             b"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nsee attached\r\n"
             b"--b\r\nContent-Type: application/pdf; name=report.pdf\r\nContent-Disposition: attachment; "
             b"filename=report.pdf\r\nContent-Transfer-Encoding: base64\r\n\r\n"
             + base64.encodebytes(PDF).replace(b"\n", b"\r\n") + b"--b--\r\n")


def synced(eas, name, device, *subjects):
    user, password = eas.new_user(name)
    for s in subjects:
        eas.deliver(user, MSG % (user.encode(), s, s, s))
    phone = Phone(eas, user, password, device=device)
    phone.sync("INBOX")
    coll = phone.sync("INBOX")
    sids = {find(a, "AirSync:ApplicationData/Email:Subject"): find(a, "AirSync:ServerId")
            for a in findall(coll, "AirSync:Commands/AirSync:Add")}
    return user, password, phone, sids


def test_move_items(eas):
    user, password, phone, sids = synced(eas, "mover", "ApplMOVE01", b"a", b"b")
    phone.sync("Archive")
    phone.sync("Archive")
    inbox, archive = phone.folders["INBOX"], phone.folders["Archive"]
    status, answer = phone.client.post("MoveItems", f"""<MoveItems xmlns="Move">
        <Move><SrcMsgId>{sids["a"]}</SrcMsgId><SrcFldId>{inbox}</SrcFldId><DstFldId>{archive}</DstFldId></Move>
        <Move><SrcMsgId>{inbox}:999999</SrcMsgId><SrcFldId>{inbox}</SrcFldId><DstFldId>{archive}</DstFldId></Move>
        <Move><SrcMsgId>{sids["b"]}</SrcMsgId><SrcFldId>{inbox}</SrcFldId><DstFldId>424242</DstFldId></Move>
        <Move><SrcMsgId>{sids["b"]}</SrcMsgId><SrcFldId>{inbox}</SrcFldId><DstFldId>{inbox}</DstFldId></Move>
        </MoveItems>""")
    responses = findall(answer, "Move:Response")
    assert [find(r, "Move:Status") for r in responses] == ["3", "1", "2", "4"]
    dst = find(responses[0], "Move:DstMsgId")
    assert dst.startswith(f"{archive}:")
    # the phone moved it itself: no Delete from INBOX, no Add in Archive
    assert findall(phone.sync("INBOX"), "AirSync:Commands/AirSync:Delete") == []
    assert findall(phone.sync("Archive"), "AirSync:Commands/AirSync:Add") == []
    c = IMAPClient(eas.imap[0], port=eas.imap[1], ssl=False, timeout=15)
    c.login(user, password)
    c.select_folder("Archive")
    assert [v[b"ENVELOPE"].subject for v in c.fetch(c.search(), ["ENVELOPE"]).values()] == [b"a"]
    c.logout()
    assert b"\ta\n" not in eas.cli("recover", "list", user).stdout + b"\n"  # a move, not a delete


def test_get_item_estimate(eas):
    user, password, phone, _sids = synced(eas, "estimate", "ApplEST01", b"x")
    for n in range(3):
        eas.deliver(user, MSG % (user.encode(), b"n%d" % n, b"n%d" % n, b"n"))
    inbox = phone.folders["INBOX"]
    doc = (f'<GetItemEstimate xmlns="GetItemEstimate" xmlns:a="AirSync"><Collections>'
           f'<Collection><a:SyncKey>{phone.keys["INBOX"]}</a:SyncKey><CollectionId>{inbox}</CollectionId>'
           f'</Collection><Collection><a:SyncKey>1</a:SyncKey><CollectionId>{phone.folders["Sent"]}</CollectionId>'
           f'</Collection></Collections></GetItemEstimate>')
    status, answer = phone.client.post("GetItemEstimate", doc)
    [mine, sent] = findall(answer, "GetItemEstimate:Response")
    assert find(mine, "GetItemEstimate:Status") == "1"
    assert find(mine, "GetItemEstimate:Collection/GetItemEstimate:Estimate") == "3"
    assert find(sent, "GetItemEstimate:Status") == "4"  # never synced


def test_item_operations_fetch_and_empty(eas):
    user, password = eas.new_user("ops")
    eas.deliver(user, WITH_FILE)
    phone = Phone(eas, user, password, device="ApplOPS01")
    phone.sync("INBOX")
    coll = phone.sync("INBOX")
    [add] = findall(coll, "AirSync:Commands/AirSync:Add")
    [att] = findall(add, "AirSync:ApplicationData/AirSyncBase:Attachments/AirSyncBase:Attachment")
    assert find(att, "AirSyncBase:DisplayName") == "report.pdf"
    ref = find(att, "AirSyncBase:FileReference")
    doc = (f'<ItemOperations xmlns="ItemOperations" xmlns:b="AirSyncBase"><Fetch><Store>Mailbox</Store>'
           f'<b:FileReference>{ref}</b:FileReference></Fetch></ItemOperations>')
    status, answer = phone.client.post("ItemOperations", doc)
    fetch = answer.find("{ItemOperations}Response/{ItemOperations}Fetch")
    assert find(fetch, "ItemOperations:Status") == "1"
    assert find(fetch, "ItemOperations:Properties/AirSyncBase:ContentType") == "application/pdf"
    assert base64.b64decode(find(fetch, "ItemOperations:Properties/ItemOperations:Data")) == PDF
    ranged = doc.replace("</Fetch>", "<Options><Range>0-8</Range></Options></Fetch>")
    fetch = phone.client.post("ItemOperations", ranged)[1].find("{ItemOperations}Response/{ItemOperations}Fetch")
    assert base64.b64decode(find(fetch, "ItemOperations:Properties/ItemOperations:Data")) == PDF[:9]
    bad = doc.replace(ref, ref.rsplit(":", 1)[0] + ":9")
    fetch = phone.client.post("ItemOperations", bad)[1].find("{ItemOperations}Response/{ItemOperations}Fetch")
    assert find(fetch, "ItemOperations:Status") == "15"
    sid, inbox = find(add, "AirSync:ServerId"), phone.folders["INBOX"]
    doc = (f'<ItemOperations xmlns="ItemOperations" xmlns:a="AirSync" xmlns:b="AirSyncBase"><Fetch><Store>Mailbox'
           f'</Store><a:CollectionId>{inbox}</a:CollectionId><a:ServerId>{sid}</a:ServerId><Options>'
           f'<a:MIMESupport>2</a:MIMESupport><b:BodyPreference><b:Type>4</b:Type></b:BodyPreference></Options>'
           f'</Fetch></ItemOperations>')
    fetch = phone.client.post("ItemOperations", doc)[1].find("{ItemOperations}Response/{ItemOperations}Fetch")
    assert find(fetch, "ItemOperations:Status") == "1"
    data = fetch.find("{ItemOperations}Properties/{AirSyncBase}Body/{AirSyncBase}Data").text
    assert data.endswith(WITH_FILE)
    doc = (f'<ItemOperations xmlns="ItemOperations" xmlns:a="AirSync"><EmptyFolderContents>'
           f'<a:CollectionId>{inbox}</a:CollectionId></EmptyFolderContents></ItemOperations>')
    empty = phone.client.post("ItemOperations", doc)[1].find("{ItemOperations}Response/{ItemOperations}EmptyFolderContents")
    assert find(empty, "ItemOperations:Status") == "1"
    assert b"with a file" in eas.cli("recover", "list", user).stdout  # soft: recoverable
    assert [find(d, "AirSync:ServerId") for d in findall(phone.sync("INBOX"), "AirSync:Commands/AirSync:Delete")] == [sid]


def test_item_operations_multipart(eas):
    user, password = eas.new_user("multipart")
    eas.deliver(user, WITH_FILE)
    phone = Phone(eas, user, password, device="ApplOPS02")
    phone.sync("INBOX")
    [add] = findall(phone.sync("INBOX"), "AirSync:Commands/AirSync:Add")
    [att] = findall(add, "AirSync:ApplicationData/AirSyncBase:Attachments/AirSyncBase:Attachment")
    doc = (f'<ItemOperations xmlns="ItemOperations" xmlns:b="AirSyncBase"><Fetch><Store>Mailbox</Store>'
           f'<b:FileReference>{find(att, "AirSyncBase:FileReference")}</b:FileReference></Fetch></ItemOperations>')
    status, headers, body = phone.client.raw("POST", phone.client.query("ItemOperations"), encode(X(doc)),
                                             headers={"MS-ASAcceptMultiPart": "T"})
    assert status == 200 and headers["content-type"] == "application/vnd.ms-sync.multipart"
    (count,) = struct.unpack_from("<i", body, 0)
    spans = [struct.unpack_from("<ii", body, 4 + 8 * i) for i in range(count)]
    parts = [body[o:o + n] for o, n in spans]
    assert count == 2 and parts[1] == PDF
    fetch = decode(parts[0]).find("{ItemOperations}Response/{ItemOperations}Fetch")
    assert find(fetch, "ItemOperations:Properties/ItemOperations:Part") == "1"


def test_item_operations_moves_a_conversation(eas):
    user, password = eas.new_user("conversation")
    root = b"From: a@example.org\r\nSubject: plan\r\nMessage-ID: <root@example.org>\r\n\r\nstart\r\n"
    reply = (b"From: b@example.org\r\nSubject: Re: plan\r\nMessage-ID: <r1@example.org>\r\n"
             b"In-Reply-To: <root@example.org>\r\nReferences: <root@example.org>\r\n\r\nreply\r\n")
    other = b"From: c@example.org\r\nSubject: other\r\nMessage-ID: <other@example.org>\r\n\r\nnot it\r\n"
    for raw in (root, reply, other):
        eas.deliver(user, raw)
    phone = Phone(eas, user, password, device="ApplCONV01")
    phone.sync("INBOX")
    adds = findall(phone.sync("INBOX"), "AirSync:Commands/AirSync:Add")
    conv = next(a for a in adds if find(a, "AirSync:ApplicationData/Email:Subject") == "Re: plan").find(
        "{AirSync}ApplicationData/{Email2}ConversationId").text
    doc = X(f'<ItemOperations xmlns="ItemOperations"><Move><ConversationId/><DstFldId>{phone.folders["Archive"]}'
            f'</DstFldId></Move></ItemOperations>')
    doc.find("{ItemOperations}Move/{ItemOperations}ConversationId").text = conv
    status, answer = phone.client.post("ItemOperations", doc)
    move = answer.find("{ItemOperations}Response/{ItemOperations}Move")
    assert find(move, "ItemOperations:Status") == "1"
    c = IMAPClient(eas.imap[0], port=eas.imap[1], ssl=False, timeout=15)
    c.login(user, password)
    c.select_folder("Archive")
    assert sorted(v[b"ENVELOPE"].subject for v in c.fetch(c.search(), ["ENVELOPE"]).values()) == [b"Re: plan", b"plan"]
    c.select_folder("INBOX")
    assert [v[b"ENVELOPE"].subject for v in c.fetch(c.search(), ["ENVELOPE"]).values()] == [b"other"]
    c.logout()


def test_ids_of_another_account_are_not_found(eas):
    _u, _p, mine, sids = synced(eas, "owner", "ApplMINE01", b"private")
    user, password = eas.new_user("intruder")
    thief = Phone(eas, user, password, device="ApplTHIEF1")
    inbox = mine.folders["INBOX"]
    sid = sids["private"]
    # Sync of the other's folder: not one of this account's (the phone should FolderSync)
    status, answer = thief.client.post("Sync", '<Sync xmlns="AirSync"><Collections><Collection><SyncKey>0</SyncKey>'
                                               f'<CollectionId>{inbox}</CollectionId></Collection></Collections></Sync>')
    assert find(answer, "AirSync:Collections/AirSync:Collection/AirSync:Status") == "12"
    status, answer = thief.client.post("MoveItems", f'<MoveItems xmlns="Move"><Move><SrcMsgId>{sid}</SrcMsgId>'
                                                    f'<SrcFldId>{inbox}</SrcFldId><DstFldId>{thief.folders["INBOX"]}'
                                                    '</DstFldId></Move></MoveItems>')
    assert find(answer, "Move:Response/Move:Status") == "1"
    status, answer = thief.client.post("ItemOperations", (
        '<ItemOperations xmlns="ItemOperations" xmlns:a="AirSync" xmlns:b="AirSyncBase"><Fetch><Store>Mailbox</Store>'
        f'<b:FileReference>{sid}:1</b:FileReference></Fetch><Fetch><Store>Mailbox</Store><a:CollectionId>{inbox}'
        f'</a:CollectionId><a:ServerId>{sid}</a:ServerId></Fetch></ItemOperations>'))
    fetches = findall(answer, "ItemOperations:Response/ItemOperations:Fetch")
    assert [find(f, "ItemOperations:Status") for f in fetches] == ["15", "6"]
    assert b"private" not in ET.tostring(answer)
