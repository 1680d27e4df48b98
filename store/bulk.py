"""Pool-thread side of the store's batched reads (:meth:`SqlStore.read_blobs`,
:meth:`SqlStore.fetch_messages_with_bodies`, :meth:`SqlStore.search_text`).

One pool hop per batch instead of one or two per message is what makes IMAP FETCH of bodies and
SEARCH BODY/TEXT fast; this module is the work done inside the hop.

Invariants:
- Plain functions for the CPU pool (or the DB pool thread, for small inline blobs): blocking I/O
  and CPU work, no SQL, no reactor.
- Same bytes and errors as :meth:`SqlStore.read_blob`: NotFound (logged) for a missing blob,
  TemporaryFailure for unreadable or corrupt data.
- A prefix read returns at least the octets asked for (all of a shorter message) and inflates
  little more: blob files are read in pieces and inline data inflated up to the limit, so a
  text search never inflates the attachments stored after the text.
"""

from __future__ import annotations

import json
import logging
import threading
from collections import OrderedDict
from typing import Optional

from formats import mime
from store import errors
from store.blobs import BlobStore, decompress_prefix

log = logging.getLogger("haven.store")

#: inline blobs of one FETCH batch are inflated on the DB thread up to this many compressed octets
#: (one pool hop for the common case); bigger batches go to the CPU pool
INFLATE_ON_DB_THREAD = 256 * 1024
#: octets of recently read messages kept by a :class:`RawCache` by default, and the largest kept
RAW_CACHE_BYTES = 32 << 20
RAW_CACHE_ITEM = 1 << 20


class RawCache:
    """Recently read messages, raw, by blob id; shared by the pool threads (locked).

    IMAP clients read a message in pieces (BODYSTRUCTURE, then BODY[1], BODY[2]... or a partial
    BODY[]<0.2048> first), and every piece would otherwise read and inflate the whole blob again:
    this is what the OS page cache does for a Maildir server.  A blob id is the hash of the bytes,
    so an entry never goes stale.  Least recently used entries go past ``max_bytes``; messages
    over ``max_item`` octets are not kept.
    """

    def __init__(self, max_bytes: int = RAW_CACHE_BYTES, max_item: int = RAW_CACHE_ITEM):
        self.max_bytes = max_bytes
        self.max_item = max_item
        self.size = 0
        self._entries: OrderedDict = OrderedDict()
        self._lock = threading.Lock()

    def get(self, blob_id: str) -> Optional[bytes]:
        with self._lock:
            raw = self._entries.get(blob_id)
            if raw is not None:
                self._entries.move_to_end(blob_id)
            return raw

    def put(self, blob_id: str, raw: bytes) -> bytes:
        if len(raw) <= self.max_item:
            with self._lock:
                if blob_id not in self._entries:
                    self._entries[blob_id] = raw
                    self.size += len(raw)
                    while self.size > self.max_bytes:
                        self.size -= len(self._entries.popitem(last=False)[1])
        return raw


def inflate(blob_id: str, data: bytes, limit: Optional[int] = None) -> bytes:
    """Inline compressed bytes -> the raw message (its first ``limit`` octets or more)."""
    if limit is None:
        return BlobStore.decompress(blob_id, data)
    return decompress_prefix(blob_id, data, max(limit, 1))


def read_file(blobs: BlobStore, blob_id: str, limit: Optional[int] = None) -> bytes:
    """A blob file -> the raw message (its first ``limit`` octets or more)."""
    try:
        if limit is None:
            return blobs.read(blob_id)
        with open(blobs.path(blob_id), "rb") as f:
            return decompress_prefix(blob_id, f, max(limit, 1))
    except FileNotFoundError:
        log.error("blob %s is referenced but missing from %s", blob_id, blobs.root)
        raise errors.NotFound(f"message data {blob_id[:12]} is missing") from None
    except errors.NotFound:
        log.error("blob %s is referenced but missing from %s", blob_id, blobs.root)
        raise
    except OSError as e:
        raise errors.TemporaryFailure("cannot read message from disk") from e


def load(blobs: BlobStore, cache: RawCache, blob_ids, stored: dict, prefix: dict) -> dict:
    """``{blob_id: raw}``; ``stored`` holds the inline bytes (None or absent: a file).  Whole
    messages read are kept in ``cache``."""
    out = {}
    for blob_id in blob_ids:
        raw = cache.get(blob_id)
        if raw is None:
            data = stored.get(blob_id)
            limit = prefix.get(blob_id)
            raw = read_file(blobs, blob_id, limit) if data is None else inflate(blob_id, data, limit)
            if limit is None:
                cache.put(blob_id, raw)
        out[blob_id] = raw
    return out


def scan_text(blobs: BlobStore, cache: RawCache, rows: list, needles: frozenset) -> dict:
    """:func:`formats.mime.find_text` of each ``(uid, blob_id, structure JSON, inline data)`` row,
    inflating only the part of the message that holds text (nothing is added to ``cache``: a
    scan of a whole mailbox would only flush it)."""
    out = {}
    for uid, blob_id, structure_json, data in rows:
        structure = json.loads(structure_json) if structure_json else None
        raw = cache.get(blob_id)
        if raw is None:
            limit = mime.text_extent(structure) if structure else None
            raw = read_file(blobs, blob_id, limit) if data is None else inflate(blob_id, data, limit)
        if not structure:
            structure = mime.analyze(raw)["structure"]
        out[uid] = mime.find_text(raw, structure, needles)
    return out
