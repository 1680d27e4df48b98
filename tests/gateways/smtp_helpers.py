"""Helpers shared by the tests of the two SMTP gateways (LMTP and submission): reading back what
they delivered, over IMAP, and taking apart the trace lines they prepend."""

from __future__ import annotations

import imaplib
import re
from typing import List, Tuple

_RECEIVED = re.compile(
    rb"\AReceived: from (?P<helo>\S+) \((?P<peer>[^)]*)\)\r\n"
    rb"\tby (?P<by>\S+) \(Haven\) with (?P<proto>[A-Z0-9]+) id (?P<id>[0-9A-F]+);\r\n"
    rb"\t(?P<date>[^\r\n]+)\r\n")


def split_received(data: bytes) -> Tuple[dict, bytes]:
    """(fields of Haven's Received: line, the rest) of a message; fails if it does not start with
    exactly the line the gateways prepend."""
    m = _RECEIVED.match(data)
    assert m, f"no Haven Received: line at the start of {data[:300]!r}"
    return {k: v.decode("utf-8", "replace") for k, v in m.groupdict().items()}, data[m.end():]


def split_local(stored: bytes) -> Tuple[str, dict, bytes]:
    """(Return-Path, Received fields, the message as received) of a locally delivered message;
    fails if the trace is not the exact Return-Path + Received pair the gateways prepend."""
    m = re.match(rb"\AReturn-Path: <([^>\r\n]*)>\r\n", stored)
    assert m, f"no Return-Path at the start of {stored[:200]!r}"
    fields, rest = split_received(stored[m.end():])
    return m.group(1).decode("utf-8", "replace"), fields, rest


def imap_messages(haven, address: str, password: str, folder: str = "INBOX") -> List[bytes]:
    """Every message in ``folder`` as raw bytes (BODY.PEEK[]), ascending by UID."""
    conn = imaplib.IMAP4(*haven.imap, timeout=15)
    try:
        typ, data = conn.login(address, password)
        assert typ == "OK", data
        typ, data = conn.select(f'"{folder}"', readonly=True)
        assert typ == "OK", data
        if int(data[0]) == 0:
            return []
        typ, data = conn.uid("FETCH", "1:*", "(BODY.PEEK[])")
        assert typ == "OK", data
        return [item[1] for item in data if isinstance(item, tuple)]
    finally:
        try:
            conn.logout()
        except Exception:
            pass
