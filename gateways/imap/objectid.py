"""OBJECTID (RFC 8474): the stable identifiers of mailboxes, messages and threads.

- MAILBOXID is ``F`` and the folder's id in the store: it survives RENAME and a new mailbox
  of an old name gets a new one (§4).
- EMAILID is ``M`` and the start of the message's blob id, the SHA-256 of its octets: the
  same for a message and its copies and moves (§5.1), never changed, the same in every session
  and on every node.  Two messages with the very same octets share it, which RFC 8474 allows
  (an EMAILID names immutable content).
- THREADID is ``T`` and a digest of the thread's root Message-ID: the first id of References
  (RFC 5322 §3.6.4: each reply repeats its parent's References, so the first is the thread's
  start), else In-Reply-To, else the message's own Message-ID.  Computed from the header alone,
  so it needs no stored state and is the same on every node; a message without any of those
  fields is a thread of its own (its EMAILID's digest).  Replies whose clients dropped
  References land in the thread of their parent's root only when their In-Reply-To names it.

Each id is 1 + 24 characters of ``objectid`` (``[A-Za-z0-9_-]``, at most 255, §3).
"""

from __future__ import annotations

import hashlib
import re

from formats import mime

_MSGID = re.compile(rb"<([^<>\s]+)>")


def mailbox_id(folder_id: int) -> str:
    return "F%d" % folder_id


def email_id(blob_id: str) -> str:
    return "M" + blob_id[:24]


def thread_root(header: bytes) -> bytes:
    """The Message-ID (without brackets) that names a message's thread, or b"" without one."""
    fields = {}
    for name, raw in mime.header_fields(header):
        fields.setdefault(name.lower(), raw.partition(b":")[2])
    for name in ("references", "in-reply-to", "message-id"):
        m = _MSGID.search(fields.get(name, b""))
        if m:
            return m.group(1)
    return b""


def thread_id(header: bytes, blob_id: str) -> str:
    root = thread_root(header) or blob_id.encode("ascii")
    return "T" + hashlib.sha256(root).hexdigest()[:24]
