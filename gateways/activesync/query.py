"""The request line of an ActiveSync POST ([MS-ASHTTP] §2.2.1.1.1), pure: the query string and
two headers in, one :class:`EasRequest` out.

    POST /Microsoft-Server-ActiveSync?Cmd=Sync&User=alice&DeviceId=ABC&DeviceType=iPhone
    POST /Microsoft-Server-ActiveSync?jAAJBAp2MTQwRGV2aWNlAApTbWFydFBob25l

* The plain form (§2.2.1.1.1.2): ``Cmd``, ``User``, ``DeviceId``, ``DeviceType`` and the
  command parameters ``AttachmentName``, ``CollectionId``, ``ItemId``, ``LongId``,
  ``Occurrence``, ``SaveInSent`` (§2.2.1.1.1.2.5), names matched case-insensitively, values
  percent-decoded as UTF-8; the protocol version comes from the ``MS-ASProtocolVersion`` header
  (§2.2.1.1.2.6), the policy key from ``X-MS-PolicyKey`` (§2.2.1.1.2.8) or a ``PolicyKey``
  parameter.  Other parameters are ignored.
* The base64 form (§2.2.1.1.1.1): protocol version byte (141 = "14.1"), command code byte
  (§2.2.1.1.1.1.2), locale (2 bytes, little-endian), device id, policy key (0 or 4 bytes,
  little-endian) and device type, each after a length byte, then command parameters as
  (tag, length, value) (§2.2.1.1.1.1.3; the Options bitmask becomes ``SaveInSent`` and
  ``AcceptMultiPart``).  The headers are not read: the bytes carry both.  Unknown parameter
  tags are skipped (their length is still checked).

A query is the base64 form unless one of its ``&``-separated pairs is named ``Cmd``: base64
may end in ``=`` but never holds ``&``, and a pair named ``Cmd`` is no base64 of a request.

Invariants: every malformation raises :class:`QueryError` (HTTP 400), an unknown command its
subclass :class:`UnknownCommand` (HTTP 501), nothing else; the versions this server speaks are
:data:`SUPPORTED_VERSIONS`, in one place (the ``MS-ASProtocolVersions`` header of OPTIONS is
:data:`VERSIONS_HEADER`).
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass, field
from typing import Dict, Optional, Tuple, Union
from urllib.parse import parse_qsl, unquote_to_bytes

__all__ = ["EasRequest", "QueryError", "UnknownCommand", "parse_request", "parse_protocol_version",
           "version_tuple", "SUPPORTED_VERSIONS", "VERSIONS_HEADER", "COMMANDS", "COMMAND_CODES"]

#: the protocol versions served, oldest first ([MS-ASHTTP] §2.2.1.1.2.6 lists the values)
SUPPORTED_VERSIONS: Tuple[str, ...] = ("14.0", "14.1", "16.0", "16.1")
#: the MS-ASProtocolVersions header of an OPTIONS answer
VERSIONS_HEADER = ",".join(SUPPORTED_VERSIONS)

#: command code -> command ([MS-ASHTTP] §2.2.1.1.1.1.2; 5-8 belong to 2.5 only and are not here)
COMMAND_CODES: Dict[int, str] = {
    0: "Sync", 1: "SendMail", 2: "SmartForward", 3: "SmartReply", 4: "GetAttachment",
    9: "FolderSync", 10: "FolderCreate", 11: "FolderDelete", 12: "FolderUpdate", 13: "MoveItems",
    14: "GetItemEstimate", 15: "MeetingResponse", 16: "Search", 17: "Settings", 18: "Ping",
    19: "ItemOperations", 20: "Provision", 21: "ResolveRecipients", 22: "ValidateCert", 23: "Find",
}
#: every command name, in code order
COMMANDS: Tuple[str, ...] = tuple(COMMAND_CODES.values())
_COMMAND_BY_NAME = {name.lower(): name for name in COMMANDS}

#: base64 form parameter tag -> name ([MS-ASHTTP] §2.2.1.1.1.1.3; 7 is Options, 8 is User)
_PARAMETER_TAGS = {0: "AttachmentName", 1: "CollectionId", 3: "ItemId", 4: "LongId", 6: "Occurrence"}
_OPTIONS, _USER = 7, 8
_SAVE_IN_SENT, _ACCEPT_MULTIPART = 0x01, 0x02

#: plain form names (lower case) -> canonical name
_PLAIN = {name.lower(): name for name in (
    "Cmd", "User", "DeviceId", "DeviceType", "PolicyKey", "AttachmentName", "CollectionId",
    "ItemId", "LongId", "Occurrence", "SaveInSent")}

#: longest device id or type accepted (the spec allows 32 characters; some clients send more)
MAX_ID = 128
#: longest query accepted, either form
MAX_QUERY = 8192
_VERSION = re.compile(r"\d{1,2}\.\d\Z")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class QueryError(ValueError):
    """A request line the server cannot take (HTTP 400); ``str()`` says why."""


class UnknownCommand(QueryError):
    """A command this server does not know (HTTP 501)."""


@dataclass(frozen=True)
class EasRequest:
    """What the request line says.  ``parameters`` holds the command parameters present, by
    their plain-form names, values as strings (``SaveInSent`` and ``AcceptMultiPart`` are
    ``"T"`` or ``"F"``)."""

    cmd: str
    device_id: str
    device_type: str
    protocol_version: str
    user: Optional[str] = None
    policy_key: Optional[int] = None
    locale: Optional[int] = None
    parameters: Dict[str, str] = field(default_factory=dict)
    encoded: bool = False  # the base64 form

    @property
    def save_in_sent(self) -> bool:
        return self.parameters.get("SaveInSent") == "T"

    @property
    def accept_multipart(self) -> bool:
        return self.parameters.get("AcceptMultiPart") == "T"


def version_tuple(version: str) -> Tuple[int, int]:
    """``"16.1"`` -> ``(16, 1)``, for comparisons (``version_tuple(v) >= (16, 0)``)."""
    major, _, minor = version.partition(".")
    return int(major), int(minor)


def parse_protocol_version(value: Optional[str]) -> str:
    """The version an ``MS-ASProtocolVersion`` header names, if this server speaks it."""
    if value is None or not value.strip():
        raise QueryError("no MS-ASProtocolVersion header")
    value = value.strip()
    if not _VERSION.match(value):
        raise QueryError(f"malformed protocol version {value[:20]!r}")
    if value not in SUPPORTED_VERSIONS:
        raise QueryError(f"unsupported protocol version {value} (supported: {VERSIONS_HEADER})")
    return value


def parse_request(query: Union[str, bytes], protocol_version: Optional[str] = None,
                  policy_key: Optional[str] = None) -> EasRequest:
    """The request line's query (the part after ``?``), with the values of the
    ``MS-ASProtocolVersion`` and ``X-MS-PolicyKey`` headers (``None`` when absent; only the
    plain form reads them)."""
    if isinstance(query, (bytes, bytearray)):
        try:
            query = bytes(query).decode("ascii")
        except UnicodeDecodeError:
            raise QueryError("query is not ASCII (non-ASCII must be percent-encoded)") from None
    if not query:
        raise QueryError("no query: Cmd, DeviceId and DeviceType are required")
    if len(query) > MAX_QUERY:
        raise QueryError(f"query longer than {MAX_QUERY} characters")
    if any(pair.partition("=")[0].lower() == "cmd" for pair in query.split("&")):
        return _plain(query, protocol_version, policy_key)
    return _encoded(query)


def _policy_key(value: str) -> int:
    value = value.strip()
    if not value.isascii() or not value.isdigit() or len(value) > 10 or int(value) > 0xFFFFFFFF:
        raise QueryError(f"policy key {value[:20]!r} is not a 32-bit unsigned number")
    return int(value)


def _checked_id(what: str, value: Optional[str]) -> str:
    if not value:
        raise QueryError(f"{what} is required")
    if len(value) > MAX_ID or _CONTROL.search(value):
        raise QueryError(f"{what} is longer than {MAX_ID} characters or has control characters")
    return value


def _plain(query: str, header_version: Optional[str], header_policy_key: Optional[str]) -> EasRequest:
    try:
        pairs = parse_qsl(query, keep_blank_values=True, strict_parsing=False,
                          encoding="utf-8", errors="strict")
    except UnicodeDecodeError:
        raise QueryError("a query value is not UTF-8") from None
    values: Dict[str, str] = {}
    for key, value in pairs:
        name = _PLAIN.get(key.lower())
        if name is None:
            continue  # a parameter this server does not use
        if name in values:
            raise QueryError(f"{name} given twice")
        values[name] = value
    name = values.pop("Cmd")
    if not name:
        raise QueryError("Cmd is required")
    cmd = _COMMAND_BY_NAME.get(name.lower())
    if cmd is None:
        raise UnknownCommand(f"unknown command {name[:40]!r}")
    device_id = _checked_id("DeviceId", values.pop("DeviceId", None))
    device_type = _checked_id("DeviceType", values.pop("DeviceType", None))
    user = values.pop("User", None) or None
    key = values.pop("PolicyKey", None)
    if key is None:
        key = header_policy_key
    save = values.get("SaveInSent")
    if save is not None:
        if save.upper() not in ("T", "F"):
            raise QueryError("SaveInSent must be T or F")
        values["SaveInSent"] = save.upper()
    return EasRequest(cmd=cmd, device_id=device_id, device_type=device_type,
                      protocol_version=parse_protocol_version(header_version), user=user,
                      policy_key=_policy_key(key) if key not in (None, "") else None,
                      parameters=values)


class _Reader:
    """Bounds-checked reads from the decoded bytes of the base64 form."""

    def __init__(self, data: bytes):
        self.data = data
        self.pos = 0

    def take(self, n: int, what: str) -> bytes:
        if n > len(self.data) - self.pos:
            raise QueryError(f"encoded query ends inside the {what}")
        out = self.data[self.pos:self.pos + n]
        self.pos += n
        return out

    def byte(self, what: str) -> int:
        return self.take(1, what)[0]

    def counted(self, what: str) -> bytes:
        return self.take(self.byte(f"{what} length"), what)

    def text(self, what: str, raw: Optional[bytes] = None) -> str:
        raw = self.counted(what) if raw is None else raw
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise QueryError(f"{what} is not UTF-8") from None


def _encoded(query: str) -> EasRequest:
    text = unquote_to_bytes(query).strip()  # some clients percent-encode + / =
    text += b"=" * (-len(text) % 4)  # and some drop the padding
    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise QueryError("query is neither plain (Cmd=...) nor valid base64") from None
    reader = _Reader(data)
    version_byte = reader.byte("protocol version")
    version = parse_protocol_version(f"{version_byte // 10}.{version_byte % 10}")
    code = reader.byte("command code")
    cmd = COMMAND_CODES.get(code)
    if cmd is None:
        raise UnknownCommand(f"unknown command code {code}")
    locale = int.from_bytes(reader.take(2, "locale"), "little")
    device_id = _checked_id("DeviceId", reader.text("DeviceId"))
    key_bytes = reader.counted("policy key")
    if len(key_bytes) not in (0, 4):
        raise QueryError(f"policy key of {len(key_bytes)} bytes (0 or 4)")
    policy_key = int.from_bytes(key_bytes, "little") if key_bytes else None
    device_type = _checked_id("DeviceType", reader.text("DeviceType"))
    parameters: Dict[str, str] = {}
    user = None
    while reader.pos < len(data):
        tag = reader.byte("parameter tag")
        raw = reader.counted(f"parameter {tag}")
        if tag == _OPTIONS:
            if len(raw) != 1 or "SaveInSent" in parameters:
                raise QueryError("Options must be one byte, given once")
            parameters["SaveInSent"] = "T" if raw[0] & _SAVE_IN_SENT else "F"
            parameters["AcceptMultiPart"] = "T" if raw[0] & _ACCEPT_MULTIPART else "F"
        elif tag == _USER:
            if user is not None:
                raise QueryError("User given twice")
            user = reader.text("User", raw)
        elif tag in _PARAMETER_TAGS:
            name = _PARAMETER_TAGS[tag]
            if name in parameters:
                raise QueryError(f"{name} given twice")
            parameters[name] = reader.text(name, raw)
    return EasRequest(cmd=cmd, device_id=device_id, device_type=device_type,
                      protocol_version=version, user=user or None, policy_key=policy_key,
                      locale=locale, parameters=parameters, encoded=True)
