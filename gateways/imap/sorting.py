"""SORT (RFC 5256 §3) and the pieces THREAD shares with it: base subjects (§2.1), sent dates,
the i;ascii-casemap collation, sort keys from the store's cached ENVELOPE.  Pure: plain data in,
plain data out, no I/O; the handler (cmd_sort.py) runs it off the reactor for big mailboxes.

Invariants:
* String keys compare with i;ascii-casemap (RFC 5256 §3: "the i;ascii-casemap collation"):
  ASCII letters folded to upper case, everything else compared octet by octet (code point order
  of the decoded text, which is the order of its UTF-8 octets).
* Ties are broken by mailbox order (RFC 5256 §3: "sorted according to the order in which they
  appear in the mailbox"), REVERSE included: only the criterion is reversed, never the tie-break.
* The sent date is the Date header's instant in UTC; when it is absent or cannot be parsed the
  INTERNALDATE is used (RFC 5256 §2.2).

Deliberate choices: address keys use the first address that is not a group marker (RFC 5256
says "the first From address"; a group's start has no host).  DISPLAYFROM/DISPLAYTO (RFC 5957
§3) use the RFC 2047-decoded display name, else ``mailbox@host``.
"""

from __future__ import annotations

import datetime
import email.utils
import re
from typing import NamedTuple, Optional

from formats import mime

#: the sort keys of RFC 5256 §3 and RFC 5957 §3
SORT_KEYS = frozenset({"ARRIVAL", "CC", "DATE", "FROM", "SIZE", "SUBJECT", "TO", "DISPLAYFROM", "DISPLAYTO"})

# ENVELOPE positions (RFC 3501 §7.4.2, the cached JSON list of formats.mime)
ENV_DATE, ENV_SUBJECT, ENV_FROM, ENV_TO, ENV_CC, ENV_IN_REPLY_TO, ENV_MESSAGE_ID = 0, 1, 2, 5, 6, 8, 9

_CASEMAP = str.maketrans("abcdefghijklmnopqrstuvwxyz", "ABCDEFGHIJKLMNOPQRSTUVWXYZ")


def casemap(text: str) -> str:
    """i;ascii-casemap (RFC 4790 §9.2): only a-z are folded."""
    return text.translate(_CASEMAP)


class SortInput(NamedTuple):
    """One message to sort or thread: its mailbox position and cached data."""
    seq: int
    uid: int
    internaldate: int
    size: int
    envelope: Optional[list]
    references: tuple = ()  # msg-ids of References (THREAD=REFERENCES only)


# -- base subject (RFC 5256 §2.1) ---------------------------------------------------------
_WSP = re.compile(r"[ \t\r\n]+")
_TRAILER = re.compile(r"(?:\(fwd\)|[ \t])\Z", re.I)  # subj-trailer = "(fwd)" / WSP
_BLOB = r"\[[^\[\]]*\][ \t]*"  # subj-blob = "[" *BLOBCHAR "]" *WSP
_REFWD = re.compile(r"(?:%s)*(?:re|fwd?)[ \t]*(?:%s)?:" % (_BLOB, _BLOB), re.I)  # subj-leader
_BLOB_RE = re.compile(_BLOB)


def base_subject(raw: Optional[str]) -> tuple:
    """``(base subject, is_reply)`` of an unfolded Subject header value: RFC 5256 §2.1 steps 1-6;
    ``is_reply`` tells that a subj-refwd, "(fwd)" or the [fwd: ...] wrapper was removed (what
    THREAD=REFERENCES step 5 calls a reply or forward)."""
    if not raw:
        return "", False
    # (1) encoded words decoded, tabs and line breaks and runs of WSP -> one space
    text = _WSP.sub(" ", mime.decode_header_value(raw))
    reply = False
    while True:
        # (2) remove subj-trailer ("(fwd)" or WSP) from the end, repeatedly
        while True:
            m = _TRAILER.search(text)
            if not m:
                break
            if m.group(0) != " " and m.group(0) != "\t":
                reply = True
            text = text[:m.start()]
        # (5) repeat (3) and (4) until neither removes anything
        while True:
            changed = False
            # (3) remove subj-leader: (*subj-blob subj-refwd) / WSP
            while True:
                if text[:1] in (" ", "\t"):
                    text = text[1:]
                    changed = True
                    continue
                m = _REFWD.match(text)
                if not m:
                    break
                text = text[m.end():]
                reply = changed = True
            # (4) remove a leading subj-blob if what remains is a non-empty subj-base
            m = _BLOB_RE.match(text)
            if m and text[m.end():].strip(" \t"):
                text = text[m.end():]
                changed = True
            if not changed:
                break
        # (6) the subj-fwd wrapper "[fwd:" ... "]": remove it and start again at (2)
        if text[:5].lower() == "[fwd:" and text.endswith("]"):
            text = text[5:-1]
            reply = True
            continue
        return text, reply


# -- sent date and addresses -----------------------------------------------------------------
def sent_date(date_raw: Optional[str], internaldate: int) -> int:
    """RFC 5256 §2.2: the Date header as UTC seconds, else the INTERNALDATE."""
    if date_raw:
        try:
            dt = email.utils.parsedate_to_datetime(date_raw)
            if dt.tzinfo is None:  # "-0000": no zone information, taken as UTC
                return int(dt.replace(tzinfo=datetime.timezone.utc).timestamp())
            return int(dt.timestamp())
        except (TypeError, ValueError, IndexError, OverflowError):
            pass
    return internaldate


def _first_address(addrs) -> Optional[list]:
    for a in addrs or ():
        if isinstance(a, (list, tuple)) and len(a) >= 4 and a[3] is not None:
            return a
    return None


def address_key(addrs) -> str:
    """RFC 5256 §3 FROM/TO/CC: the addr-mailbox of the first address."""
    a = _first_address(addrs)
    return casemap(a[2] or "") if a is not None else ""


def display_key(addrs) -> str:
    """RFC 5957 §3 DISPLAYFROM/DISPLAYTO: the decoded display name, else mailbox@host."""
    a = _first_address(addrs)
    if a is None:
        return ""
    name = _WSP.sub(" ", mime.decode_header_value(a[0] or "")).strip(" ")
    if name:
        return casemap(name)
    return casemap("%s@%s" % (a[2] or "", a[3] or ""))


def _field(env: Optional[list], i: int):
    return env[i] if env and len(env) > i else None


def sort_key(name: str, m: SortInput):
    env = m.envelope
    if name == "ARRIVAL":
        return m.internaldate
    if name == "SIZE":
        return m.size
    if name == "DATE":
        return sent_date(_field(env, ENV_DATE), m.internaldate)
    if name == "SUBJECT":
        return casemap(base_subject(_field(env, ENV_SUBJECT))[0])
    if name == "FROM":
        return address_key(_field(env, ENV_FROM))
    if name == "TO":
        return address_key(_field(env, ENV_TO))
    if name == "CC":
        return address_key(_field(env, ENV_CC))
    if name == "DISPLAYFROM":
        return display_key(_field(env, ENV_FROM))
    if name == "DISPLAYTO":
        return display_key(_field(env, ENV_TO))
    raise ValueError("unknown sort key %r" % (name,))


def sort_messages(criteria: list, messages: list) -> list:
    """The messages (:class:`SortInput`) in the order of ``criteria`` (``[(reverse, key)]``,
    most significant first), ties in mailbox order."""
    out = sorted(messages, key=lambda m: m.seq)
    # one stable pass per criterion, least significant first; reverse=True keeps equal
    # elements in their order, so ties stay in mailbox order under REVERSE too
    for reverse, name in reversed(criteria):
        keys = {m.seq: sort_key(name, m) for m in out}
        out.sort(key=lambda m: keys[m.seq], reverse=reverse)
    return out
