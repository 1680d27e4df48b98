"""The ActiveSync request line (gateways/activesync/query.py): the plain and the base64 query of
[MS-ASHTTP] §2.2.1.1.1, the protocol version header, and bad input (seeded fuzz)."""

from __future__ import annotations

import base64
import random
import struct

import pytest

from gateways.activesync.query import (COMMAND_CODES, COMMANDS, SUPPORTED_VERSIONS, VERSIONS_HEADER,
                                       EasRequest, QueryError, UnknownCommand, parse_protocol_version,
                                       parse_request, version_tuple)
from tests.fuzz import mutated, truncated

#: [MS-ASHTTP] §2.2.1.1.1.1: the spec's example, equivalent to (§2.2.1.1.1) the plain
#: "Cmd=Sync&User=rmjones&DeviceId=v140Device&DeviceType=SmartPhone" with version 14.0 (the
#: example's base64 names no User: it is the version byte 0x8C = 140, Sync = 0, locale 0x0409,
#: "v140Device", no policy key, "SmartPhone")
SPEC_BASE64 = "jAAJBAp2MTQwRGV2aWNlAApTbWFydFBob25l"


def encoded(version=141, code=0, locale=0x0409, device_id=b"ABC123", policy_key=None,
            device_type=b"iPhone", params=()) -> str:
    """The base64 form, built field by field as §2.2.1.1.1.1 lays it out."""
    out = bytes([version, code]) + struct.pack("<H", locale)
    out += bytes([len(device_id)]) + device_id
    out += b"\x00" if policy_key is None else b"\x04" + struct.pack("<I", policy_key)
    out += bytes([len(device_type)]) + device_type
    for tag, value in params:
        out += bytes([tag, len(value)]) + value
    return base64.b64encode(out).decode("ascii")


def test_the_spec_example_of_the_base64_form():
    assert parse_request(SPEC_BASE64) == EasRequest(
        cmd="Sync", device_id="v140Device", device_type="SmartPhone", protocol_version="14.0",
        locale=0x0409, encoded=True)


def test_the_spec_example_of_the_plain_form():
    assert parse_request("Cmd=Sync&User=rmjones&DeviceId=v140Device&DeviceType=SmartPhone",
                         "14.0") == EasRequest(
        cmd="Sync", device_id="v140Device", device_type="SmartPhone", protocol_version="14.0",
        user="rmjones")


def test_base64_form_with_policy_key_and_parameters():
    query = encoded(version=161, code=3, policy_key=3942919513, params=[
        (8, b"alice@example.org"), (1, b"2"), (3, b"2:17"), (4, b"RgAAAA"), (6, b"2026-12-06"),
        (7, b"\x01"), (2, b"ignored tag")])
    req = parse_request(query)
    assert (req.cmd, req.protocol_version, req.policy_key, req.user, req.encoded) == (
        "SmartReply", "16.1", 3942919513, "alice@example.org", True)
    assert req.parameters == {"CollectionId": "2", "ItemId": "2:17", "LongId": "RgAAAA",
                              "Occurrence": "2026-12-06", "SaveInSent": "T", "AcceptMultiPart": "F"}
    assert req.save_in_sent and not req.accept_multipart


def test_base64_form_attachment_name_and_multipart():
    req = parse_request(encoded(code=19, params=[(0, "Anhang ä.pdf".encode()), (7, b"\x02")]))
    assert req.cmd == "ItemOperations"
    assert req.parameters["AttachmentName"] == "Anhang ä.pdf"
    assert req.accept_multipart and not req.save_in_sent


def test_base64_form_ignores_the_headers_and_tolerates_escapes_and_missing_padding():
    # a device id whose encoding has "/" or "+" in it, and a length that needs padding
    query = next(q for q in (encoded(version=140, code=9, device_id=b"?>" * n) for n in range(1, 9))
                 if ("/" in q or "+" in q) and q.endswith("="))
    escaped = query.replace("+", "%2B").replace("/", "%2F").replace("=", "%3D")
    for form in (query, escaped, query.rstrip("=")):
        req = parse_request(form, protocol_version="16.1", policy_key="5")
        assert (req.cmd, req.protocol_version, req.policy_key) == ("FolderSync", "14.0", None)


@pytest.mark.parametrize("code, name", sorted(COMMAND_CODES.items()))
def test_every_command_code(code, name):
    assert parse_request(encoded(code=code)).cmd == name
    assert parse_request(f"Cmd={name.lower()}&DeviceId=a&DeviceType=b", "14.1").cmd == name


def test_plain_form_parameters_and_headers():
    req = parse_request("cmd=SmartForward&user=DOMAIN%5Calice&deviceid=ABC&devicetype=Android"
                        "&CollectionId=5&ItemId=5%3A9&SaveInSent=t&Locale=1033", "16.0", "1234")
    assert (req.cmd, req.user, req.policy_key, req.protocol_version) == (
        "SmartForward", "DOMAIN\\alice", 1234, "16.0")
    assert req.parameters == {"CollectionId": "5", "ItemId": "5:9", "SaveInSent": "T"}
    assert req.save_in_sent
    # a PolicyKey parameter wins over the header; utf-8 in values
    req = parse_request("Cmd=Ping&DeviceId=%C3%A9&DeviceType=x&PolicyKey=0", "14.1", "99")
    assert (req.policy_key, req.device_id) == (0, "é")
    assert parse_request(b"Cmd=Ping&DeviceId=a&DeviceType=x", "14.1").policy_key is None


@pytest.mark.parametrize("query, version, message", [
    ("", "14.1", "no query"),
    ("Cmd=&DeviceId=a&DeviceType=b", "14.1", "Cmd is required"),
    ("Cmd&DeviceId=a&DeviceType=b", "14.1", "Cmd is required"),
    ("Cmd=Sync&DeviceType=b", "14.1", "DeviceId is required"),
    ("Cmd=Sync&DeviceId=a", "14.1", "DeviceType is required"),
    ("Cmd=Sync&DeviceId=a&DeviceType=b", None, "no MS-ASProtocolVersion"),
    ("Cmd=Sync&DeviceId=a&DeviceType=b", "12.1", "unsupported protocol version 12.1"),
    ("Cmd=Sync&DeviceId=a&DeviceType=b", "fourteen", "malformed protocol version"),
    ("Cmd=Sync&Cmd=Ping&DeviceId=a&DeviceType=b", "14.1", "Cmd given twice"),
    ("Cmd=Sync&DeviceId=%FF&DeviceType=b", "14.1", "not UTF-8"),
    ("Cmd=Sync&DeviceId=a%0Ab&DeviceType=b", "14.1", "control characters"),
    ("Cmd=Sync&DeviceId=" + "a" * 129 + "&DeviceType=b", "14.1", "longer than 128"),
    ("Cmd=Sync&DeviceId=a&DeviceType=b&PolicyKey=-1", "14.1", "32-bit"),
    ("Cmd=Sync&DeviceId=a&DeviceType=b&PolicyKey=4294967296", "14.1", "32-bit"),
    ("Cmd=SendMail&DeviceId=a&DeviceType=b&SaveInSent=yes", "14.1", "T or F"),
    ("DeviceId=a&DeviceType=b", "14.1", "neither plain"),
    ("jAAJBAp2MTQwRGV2aWNlAApTbWFydFBob2!", None, "neither plain"),
    ("a" * 9000, None, "longer than 8192"),
])
def test_bad_queries(query, version, message):
    with pytest.raises(QueryError, match=message) as caught:
        parse_request(query, version)
    assert not isinstance(caught.value, UnknownCommand)


def test_unknown_commands_are_their_own_error():
    with pytest.raises(UnknownCommand, match="'Frobnicate'"):
        parse_request("Cmd=Frobnicate&DeviceId=a&DeviceType=b", "14.1")
    for code in (5, 8, 24, 255):  # 5-8: 2.5's GetHierarchy ... MoveCollection
        with pytest.raises(UnknownCommand, match=f"code {code}"):
            parse_request(encoded(code=code))


@pytest.mark.parametrize("raw, message", [
    (b"\x8d", "command code"),
    (b"\x8d\x00\x09", "locale"),
    (b"\x8d\x00\x09\x04", "DeviceId length"),
    (b"\x8d\x00\x09\x04\x05abc", "inside the DeviceId"),
    (b"\x8d\x00\x09\x04\x00\x00\x01x", "DeviceId is required"),
    (b"\x8d\x00\x09\x04\x01a\x04\x01\x02", "inside the policy key"),
    (b"\x8d\x00\x09\x04\x01a\x02\x01\x02\x01x", "policy key of 2 bytes"),
    (b"\x8d\x00\x09\x04\x01a\x00\x00", "DeviceType is required"),
    (b"\x8d\x00\x09\x04\x01a\x00\x02\xff\xfe", "DeviceType is not UTF-8"),
    (b"\x8d\x00\x09\x04\x01a\x00\x01x\x08", "parameter 8 length"),
    (b"\x8d\x00\x09\x04\x01a\x00\x01x\x08\x09abc", "inside the parameter 8"),
    (b"\x8d\x00\x09\x04\x01a\x00\x01x\x07\x02\x01\x01", "Options must be one byte"),
    (b"\x8d\x00\x09\x04\x01a\x00\x01x\x01\x01a\x01\x01b", "CollectionId given twice"),
    (b"\x8d\x00\x09\x04\x01a\x00\x01x\x08\x01a\x08\x01b", "User given twice"),
    (b"\x79\x00\x09\x04\x01a\x00\x01x", "unsupported protocol version 12.1"),
])
def test_bad_encoded_queries(raw, message):
    with pytest.raises(QueryError, match=message):
        parse_request(base64.b64encode(raw).decode())


def test_protocol_versions_in_one_place():
    assert SUPPORTED_VERSIONS == ("14.0", "14.1", "16.0", "16.1")
    assert VERSIONS_HEADER == "14.0,14.1,16.0,16.1"
    assert [parse_protocol_version(f" {v} ") for v in SUPPORTED_VERSIONS] == list(SUPPORTED_VERSIONS)
    for bad in ("2.5", "12.0", "12.1", "16.2", "", "  ", "16", "16.1.0", "x"):
        with pytest.raises(QueryError):
            parse_protocol_version(bad)
    assert version_tuple("16.1") > version_tuple("16.0") > version_tuple("14.1")
    assert COMMANDS[0] == "Sync" and COMMANDS[-1] == "Find" and len(COMMANDS) == 20


def test_fuzz_raises_only_query_error():
    rng = random.Random(1515)
    valid_raw = [base64.b64decode(encoded(code=c, params=[(8, b"u"), (7, b"\x03")]))
                 for c in (0, 3, 19)] + [base64.b64decode(SPEC_BASE64)]
    plain = ["Cmd=Sync&User=a&DeviceId=b&DeviceType=c", "Cmd=SendMail&DeviceId=b&DeviceType=c&SaveInSent=T"]
    parsed = 0
    for i in range(3000):
        kind = i % 4
        if kind == 0:
            query = base64.b64encode(mutated(rng, rng.choice(valid_raw), bytes(range(256)))).decode()
        elif kind == 1:
            query = base64.b64encode(truncated(rng, rng.choice(valid_raw))).decode()
        elif kind == 2:
            query = mutated(rng, rng.choice(plain).encode(), b"%&=+/ \xff\x00aZ9").decode("latin-1")
        else:
            query = bytes(rng.randrange(256) for _ in range(rng.randrange(60)))
        try:
            req = parse_request(query, rng.choice(["14.1", None, "9.9"]), rng.choice([None, "1", "x"]))
        except QueryError:
            continue
        parsed += 1
        assert req.cmd in COMMANDS and req.protocol_version in SUPPORTED_VERSIONS
        assert req.device_id and req.device_type
    assert parsed > 100
