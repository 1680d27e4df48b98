"""WBXML 1.3 for Exchange ActiveSync ([MS-ASWBXML]): bytes <-> xml.etree.ElementTree, pure.

The tree (docs/activesync.md says it for handler authors):

* A tag is ``"{Namespace}Name"`` with the code page's name as its namespace, e.g.
  ``{AirSync}Sync``, ``{Email}Subject``, ``{AirSyncBase}Body`` (the ``targetNamespace`` of the
  [MS-ASCMD] schemas).  :func:`qname` builds one.  The encoder also takes the ``"AirSync:"``
  spelling of the [MS-ASCMD] examples.
* An element's content is ``None`` (empty), a ``str`` (STR_I, STR_T and ENTITY runs joined) or
  ``bytes`` (OPAQUE: ConversationId, MIME data, TimeZone blobs ...): the type of ``.text`` says
  which, and the encoder writes ``bytes`` back as OPAQUE, so opaque data round-trips exactly.
* No attributes, no mixed content (text after a child element), no tails: EAS uses none.

Decoding (``decode``):

* header: version 1.1-1.3, public id 1 (unknown; also accepted: 0 with a string-table index,
  as libwbxml writes), charset 106 (UTF-8) only, a string table (STR_T reads from it);
* a code page beyond 25 is an error; an unknown token of a known page is dropped with its
  subtree (a newer client's tag must not fail the whole request);
* at most ``MAX_DEPTH`` (64) nested elements; every length is checked against what is left, so
  a huge mb_u_int32 is "truncated", never an allocation;
* any malformation raises :class:`WbxmlError` (and nothing else: the fuzz tests hold us to it).

Encoding (``encode``) writes version 1.3, public id 1, UTF-8, an empty string table; SWITCH_PAGE
only when the page changes; a token with the content bit only when there is content.  The
output is a list of pieces joined once: linear in the document's size.

Speed (CPython 3.11 on the 2-core development machine, best of three): a Sync response of
2,000 e-mails (1.1 MB: 13 tags of ApplicationData each, a 300-character body, an opaque
ConversationId) encodes in 0.12-0.3 s and decodes in 0.2-0.26 s; 8 times the data takes about
8 times as long (``tests/gateways/activesync/test_wbxml.py`` checks both, loosely).  Big
documents therefore belong in a worker pool, not on the reactor.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import List, Optional

from .codepages import NAMESPACES, TAGS, TOKENS

__all__ = ["WbxmlError", "decode", "encode", "qname", "MAX_DEPTH", "NAMESPACES"]

#: deepest element nesting accepted (a Sync response needs about 8)
MAX_DEPTH = 64

_SWITCH_PAGE, _END, _ENTITY, _STR_I, _LITERAL = 0x00, 0x01, 0x02, 0x03, 0x04
_STR_T, _OPAQUE = 0x83, 0xC3
_CONTENT, _ATTRIBUTES = 0x40, 0x80
_UTF8 = 106
#: tokens of WBXML that EAS never uses (extensions, processing instructions, literal tags)
_UNUSED = {0x40: "EXT_I_0", 0x41: "EXT_I_1", 0x42: "EXT_I_2", 0x43: "PI", 0x44: "LITERAL_C",
           0x80: "EXT_T_0", 0x81: "EXT_T_1", 0x82: "EXT_T_2", 0x84: "LITERAL_A", 0xC0: "EXT_0",
           0xC1: "EXT_1", 0xC2: "EXT_2", 0xC4: "LITERAL_AC", _LITERAL: "LITERAL"}


class WbxmlError(ValueError):
    """Malformed or unsupported WBXML, or a tree the encoder cannot write; ``str()`` says what
    and, when decoding, at which byte offset."""


def qname(namespace: str, name: str) -> str:
    """``qname("Email", "Subject") == "{Email}Subject"``."""
    return "{%s}%s" % (namespace, name)


# --- decoding ---------------------------------------------------------------------------------

def _mb_u_int32(data: bytes, pos: int):
    """(value, next position) of the multi-byte integer at ``pos`` (WBXML 1.3 §5.1)."""
    value = 0
    for i in range(5):
        if pos + i >= len(data):
            raise WbxmlError(f"truncated multi-byte integer at offset {pos}")
        byte = data[pos + i]
        value = (value << 7) | (byte & 0x7F)
        if not byte & 0x80:
            if value > 0xFFFFFFFF:
                raise WbxmlError(f"multi-byte integer over 32 bits at offset {pos}")
            return value, pos + i + 1
    raise WbxmlError(f"multi-byte integer longer than 5 bytes at offset {pos}")


def _utf8(raw: bytes, pos: int) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise WbxmlError(f"string at offset {pos} is not UTF-8") from None


def _cstring(data: bytes, pos: int, end: int):
    """(str, position after its NUL) of the NUL-terminated string at ``pos`` before ``end``."""
    nul = data.find(b"\0", pos, end)
    if nul < 0:
        raise WbxmlError(f"unterminated string at offset {pos}")
    return _utf8(data[pos:nul], pos), nul + 1


def _header(data: bytes):
    """(string table, offset of the body) after checking the header."""
    if not data:
        raise WbxmlError("empty document")
    if data[0] not in (0x01, 0x02, 0x03):
        raise WbxmlError(f"unsupported WBXML version byte 0x{data[0]:02x}")
    public_id, pos = _mb_u_int32(data, 1)
    index = None
    if public_id == 0:  # the public id is a string in the table (libwbxml writes this)
        index, pos = _mb_u_int32(data, pos)
    elif public_id != 1:
        raise WbxmlError(f"unsupported public id {public_id} (EAS uses 1)")
    charset, pos = _mb_u_int32(data, pos)
    if charset != _UTF8:
        raise WbxmlError(f"unsupported charset {charset} (only UTF-8, 106)")
    size, pos = _mb_u_int32(data, pos)
    if size > len(data) - pos:
        raise WbxmlError(f"string table of {size} bytes runs past the end of the document")
    table = data[pos:pos + size]
    if index is not None and (index >= size or b"\0" not in table[index:]):
        raise WbxmlError(f"public id index {index} is outside the string table")
    return table, pos + size


def decode(data: bytes) -> ET.Element:
    """The root element of a WBXML document; :class:`WbxmlError` if it is malformed."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise WbxmlError("WBXML input must be bytes")
    data = bytes(data)
    table, pos = _header(data)
    end = len(data)
    page = 0
    tags = TAGS[0]
    root: Optional[ET.Element] = None
    # the open elements; None for one dropped as unknown (its whole subtree is dropped too)
    stack: List[Optional[ET.Element]] = []
    # content runs of the innermost open element (str pieces, or bytes for opaque data)
    text: List = []
    ended = False
    while pos < end:
        at = pos
        token = data[pos]
        pos += 1
        if ended:
            raise WbxmlError(f"data after the root element at offset {at}")
        if token == _SWITCH_PAGE:
            if pos >= end:
                raise WbxmlError(f"truncated SWITCH_PAGE at offset {at}")
            page = data[pos]
            pos += 1
            if page >= len(TAGS):
                raise WbxmlError(f"unknown code page {page} at offset {at}")
            tags = TAGS[page]
        elif token == _END:
            if not stack:
                raise WbxmlError(f"END without an open element at offset {at}")
            element = stack.pop()
            if element is not None and text:
                element.text = _join(text, at)
            text = []
            ended = not stack
        elif token in (_STR_I, _STR_T, _ENTITY, _OPAQUE):
            if not stack:
                raise WbxmlError(f"content outside the root element at offset {at}")
            if token == _STR_I:
                value, pos = _cstring(data, pos, end)
            elif token == _STR_T:
                offset, pos = _mb_u_int32(data, pos)
                if offset >= len(table):
                    raise WbxmlError(f"string table offset {offset} out of range at offset {at}")
                value, _ = _cstring(table, offset, len(table))
            elif token == _ENTITY:
                code, pos = _mb_u_int32(data, pos)
                if code > 0x10FFFF or 0xD800 <= code <= 0xDFFF or code == 0:
                    raise WbxmlError(f"invalid character entity {code} at offset {at}")
                value = chr(code)
            else:
                size, pos = _mb_u_int32(data, pos)
                if size > end - pos:
                    raise WbxmlError(f"OPAQUE of {size} bytes runs past the end at offset {at}")
                value = data[pos:pos + size]
                pos += size
            parent = stack[-1]
            if parent is not None:
                if len(parent):
                    raise WbxmlError(f"content after a child element (mixed content) at offset {at}")
                text.append(value)
        elif token in _UNUSED:
            raise WbxmlError(f"{_UNUSED[token]} token 0x{token:02x} at offset {at} is not used by EAS")
        else:
            if token & _ATTRIBUTES:
                raise WbxmlError(f"tag with attributes at offset {at} (EAS uses none)")
            if root is not None and not stack:
                raise WbxmlError(f"second root element at offset {at}")
            if len(stack) >= MAX_DEPTH:
                raise WbxmlError(f"elements nested deeper than {MAX_DEPTH} at offset {at}")
            name = tags.get(token & 0x3F)
            parent = stack[-1] if stack else None
            if stack and parent is not None and text:
                raise WbxmlError(f"child element after content (mixed content) at offset {at}")
            if name is None or (stack and parent is None):
                element = None  # unknown token of a known page, or inside one: dropped
            elif parent is None:
                element = root = ET.Element(name)
            else:
                element = ET.SubElement(parent, name)
            if token & _CONTENT:
                stack.append(element)
            elif not stack:
                ended = True
    if stack:
        raise WbxmlError(f"truncated document: {len(stack)} element(s) not closed")
    if root is None:
        raise WbxmlError("no known root element")
    return root


def _join(pieces: list, at: int):
    if len(pieces) == 1:
        return pieces[0]
    kinds = {type(p) for p in pieces}
    if len(kinds) > 1:
        raise WbxmlError(f"element ending at offset {at} mixes opaque data and strings")
    return (b"" if bytes in kinds else "").join(pieces)


# --- encoding ---------------------------------------------------------------------------------

_HEADER = bytes([0x03, 0x01, _UTF8, 0x00])  # WBXML 1.3, public id 1, UTF-8, no string table


def _mb(value: int) -> bytes:
    out = [value & 0x7F]
    value >>= 7
    while value:
        out.append(0x80 | (value & 0x7F))
        value >>= 7
    return bytes(reversed(out))


def _token(tag) -> tuple:
    found = TOKENS.get(tag) if isinstance(tag, str) else None
    if found is None and isinstance(tag, str) and tag.startswith("{") and ":}" in tag:
        found = TOKENS.get(tag.replace(":}", "}", 1))  # "{AirSync:}Sync", as MS-ASCMD writes it
    if found is None:
        raise WbxmlError(f"no ActiveSync code page has the tag {tag!r}")
    return found


def encode(root: ET.Element) -> bytes:
    """The WBXML document of ``root``; :class:`WbxmlError` for a tag no code page has, an
    attribute, a tail, content that is neither str nor bytes, a NUL in a string, or nesting
    deeper than ``MAX_DEPTH``."""
    out = [_HEADER]
    page = 0
    append = out.append
    # iterative walk: (element, depth) to open, or None to close the element opened last
    todo: list = [(root, 1)]
    while todo:
        item = todo.pop()
        if item is None:
            append(b"\x01")
            continue
        element, depth = item
        if depth > MAX_DEPTH:
            raise WbxmlError(f"elements nested deeper than {MAX_DEPTH}")
        if element.attrib:
            raise WbxmlError(f"{element.tag} has attributes (EAS uses none)")
        if depth > 1 and element.tail is not None and element.tail.strip():
            raise WbxmlError(f"{element.tag} has a tail (EAS uses no mixed content)")
        elem_page, token = _token(element.tag)
        if elem_page != page:
            append(bytes((_SWITCH_PAGE, elem_page)))
            page = elem_page
        content = element.text
        if content is not None and len(element):
            if isinstance(content, bytes) or content.strip():
                raise WbxmlError(f"{element.tag} has both content and child elements")
            content = None  # indentation whitespace of a pretty-printed tree
        if content is None and not len(element):
            append(bytes((token,)))
            continue
        append(bytes((token | _CONTENT,)))
        if isinstance(content, str):
            raw = _utf8_out(content, element.tag)
            if b"\0" in raw:
                raise WbxmlError(f"{element.tag} has a NUL character (WBXML strings cannot hold one)")
            append(b"\x03" + raw + b"\0")
        elif isinstance(content, (bytes, bytearray)):
            append(b"\xc3" + _mb(len(content)) + bytes(content))
        elif content is not None:
            raise WbxmlError(f"{element.tag} has content of type {type(content).__name__}, "
                             "not str or bytes")
        todo.append(None)
        todo.extend((child, depth + 1) for child in reversed(element))
    return b"".join(out)


def _utf8_out(text: str, tag: str) -> bytes:
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        raise WbxmlError(f"{tag} has text that is not valid Unicode (a lone surrogate)") from None
