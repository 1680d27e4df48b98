"""The strings a ``body`` test (RFC 5173) matches, taken from one message at most once.

A :class:`MessageBody` is made per run and asked lazily: the first ``body`` test parses the
MIME structure, later ones reuse it, and each part is decoded once.

- ``:raw`` (§5.1): everything after the first empty line, undecoded, as one string.
- ``:content`` (§5.2): each MIME part whose type matches, decoded (Content-Transfer-Encoding
  removed; text/* also converted from its charset). A matching multipart contributes its
  prologue and epilogue as two strings, a matching message/rfc822 the header of the
  enclosed message as one string; the walk always descends into both.
- ``:text`` (§5.3): every text/* part as for ``:content "text"``, with the markup of
  text/html removed (scripts and styles dropped, entities decoded).
- A message with no empty line after its header has no body: every list is empty, so every
  ``body`` test is false (§4).

Bounds, so that a hostile message costs little: only the first MAX_BODY_PARSE octets are
MIME-parsed (a text part after a huge attachment may be missed); at most MAX_BODY_TEXT
characters of decoded text per message, shared by all parts in the order they are first
asked for (``:raw`` separately takes at most MAX_BODY_TEXT octets); at most MAX_PARTS parts
and MAX_DEPTH levels of nesting. The stdlib parser slows down with deep nesting, so a message
declaring more than MAX_MULTIPARTS boundaries is not MIME-parsed; it, and a message the
parser cannot read, is matched as one text/plain part (the undecoded body). So is a multipart
part without a usable boundary.
"""
from __future__ import annotations

from email.parser import BytesParser
from email.policy import compat32
from html.parser import HTMLParser
import re
from typing import List, Optional

from formats.sieve.headers import header_text

MAX_BODY_PARSE = 8 << 20
MAX_BODY_TEXT = 1 << 20
MAX_PARTS = 500
MAX_DEPTH = 20
MAX_MULTIPARTS = 100

_BLANK_LINE = re.compile(rb"\n\r?\n")
_BOUNDARY = re.compile(rb"boundary\s*=", re.IGNORECASE)

# kinds of parts
_LEAF, _MULTIPART, _MESSAGE = "leaf", "multipart", "message"


def body_offset(raw: bytes) -> Optional[int]:
    """Where the body starts (after the first empty line), or None when there is none."""
    if raw.startswith(b"\r\n"):
        return 2
    if raw.startswith(b"\n"):
        return 1
    found = _BLANK_LINE.search(raw)
    return found.end() if found else None


class MessageBody:
    def __init__(self, raw: bytes):
        self._raw = raw
        self._offset = body_offset(raw)
        self._parts = None              # [(content type, kind, email.message.Message)]
        self._decoded = {}              # (index, strip html) -> [str]
        self._budget = MAX_BODY_TEXT
        self._raw_body = None

    def raw(self) -> List[str]:
        if self._offset is None:
            return []
        if self._raw_body is None:
            chunk = self._raw[self._offset:self._offset + MAX_BODY_TEXT]
            self._raw_body = [chunk.decode("utf-8", "replace")]
        return self._raw_body

    def content(self, types: List[str]) -> List[str]:
        specs = [t.lower() for t in types]
        out = []
        for index, (ctype, _, _) in enumerate(self._walk()):
            if any(_type_matches(spec, ctype) for spec in specs):
                out.extend(self._strings(index, strip_html=False))
        return out

    def text(self) -> List[str]:
        out = []
        for index, (ctype, kind, _) in enumerate(self._walk()):
            if kind == _LEAF and ctype.startswith("text/"):
                out.extend(self._strings(index, strip_html=ctype == "text/html"))
        return out

    # --- internals -------------------------------------------------------------------------------

    def _walk(self) -> list:
        if self._parts is None:
            self._parts = []
            if self._offset is not None:
                window = self._raw[:MAX_BODY_PARSE]
                try:
                    if len(_BOUNDARY.findall(window)) > MAX_MULTIPARTS:
                        raise ValueError("too many multipart boundaries")
                    root = BytesParser(policy=compat32).parsebytes(window)
                    _collect(root, 0, self._parts)
                except Exception:       # the parser gave up: match the body as plain text
                    self._parts = [("text/plain", _LEAF, None)]
        return self._parts

    def _strings(self, index: int, strip_html: bool) -> List[str]:
        key = (index, strip_html)
        if key not in self._decoded:
            ctype, kind, part = self._parts[index]
            if kind == _MULTIPART:
                strings = [part.preamble or "", part.epilogue or ""]
            elif kind == _MESSAGE:
                strings = [_header_text(part.get_payload()[0])]
            else:
                text = self._decode(ctype, part)
                strings = [_html_text(text) if strip_html else text]
            strings = [self._charge(s) for s in strings]
            self._decoded[key] = strings
        return self._decoded[key]

    def _charge(self, text: str) -> str:
        text = text[:self._budget]
        self._budget -= len(text)
        return text

    def _decode(self, ctype: str, part) -> str:
        if part is None:                # fallback: the whole body, undecoded
            data = self._raw[self._offset:]
            charset = None
        else:
            data = part.get_payload(decode=True) or b""
            charset = part.get_content_charset() if ctype.startswith("text/") else None
        data = data[:self._budget * 4]  # at most 4 octets per character in any charset
        if charset:
            try:
                return data.decode(charset)
            except (LookupError, UnicodeError):
                pass
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:      # text in an unnamed 8-bit charset; binary as is
            if ctype.startswith("text/"):
                return data.decode("latin-1")
            return data.decode("utf-8", "replace")


def _collect(part, depth: int, out: list) -> None:
    """Pre-order walk of the MIME tree: multipart and message/rfc822 are descended into."""
    if len(out) >= MAX_PARTS:
        return
    ctype = part.get_content_type()
    payload = part.get_payload()
    if part.is_multipart() and isinstance(payload, list):
        nested = ctype.startswith("message/")
        if nested and not payload:
            return
        out.append((ctype, _MESSAGE if nested else _MULTIPART, part))
        if depth < MAX_DEPTH:
            for sub in payload:
                _collect(sub, depth + 1, out)
    elif ctype.startswith("multipart/"):
        out.append(("text/plain", _LEAF, part))     # no boundary found: read it as text
    else:
        out.append((ctype, _LEAF, part))


def _type_matches(spec: str, ctype: str) -> bool:
    """RFC 5173 §5.2: "" is any type, "type" any subtype of it, "type/subtype" exactly that;
    a spec that starts or ends with "/" or has two slashes matches nothing."""
    if spec == "":
        return True
    if spec.startswith("/") or spec.endswith("/") or spec.count("/") > 1:
        return False
    if "/" in spec:
        return ctype == spec
    return ctype.split("/", 1)[0] == spec


def _header_text(message) -> str:
    return "".join("%s: %s\r\n" % (name, header_text(value))
                   for name, value in message.raw_items())


class _TextOfHTML(HTMLParser):
    _BREAKS = frozenset({"br", "p", "div", "tr", "td", "th", "li", "h1", "h2", "h3", "h4",
                         "h5", "h6", "table", "blockquote", "pre", "hr"})

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.out = []
        self.hidden = 0

    def handle_starttag(self, tag, attrs):
        if tag in ("script", "style"):
            self.hidden += 1
        elif tag in self._BREAKS:
            self.out.append("\n")

    def handle_endtag(self, tag):
        if tag in ("script", "style") and self.hidden:
            self.hidden -= 1
        elif tag in self._BREAKS:
            self.out.append("\n")

    def handle_data(self, data):
        if not self.hidden:
            self.out.append(data)


def _html_text(html: str) -> str:
    parser = _TextOfHTML()
    try:
        parser.feed(html)
        parser.close()
    except Exception:                   # broken markup: match what was read so far
        pass
    return "".join(parser.out).replace("\xa0", " ")      # &nbsp; is a space to the reader
