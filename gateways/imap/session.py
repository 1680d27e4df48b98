"""The selected mailbox of one connection: sequence numbers <-> UIDs, cached flags and modseqs,
and the reporting of other sessions' changes (RFC 3501 §5.2, §7.3.1, §7.4.1; RFC 7162 §3.2.10).

Invariants:
* ``uids`` is the client's view: ascending, message sequence number = index + 1.  It changes
  only when this session reports ``EXISTS``/``EXPUNGE``/``VANISHED`` (or expunges itself), never
  behind the client's back.
* ``highest_modseq`` is the folder modseq up to which every change has been reported or
  deliberately held back (expunges held back live in ``pending_expunge`` and their messages stay
  in ``uids`` until reported).
* A sync is skipped unless the push bus marked the session ``dirty`` (or a caller forces it), so
  an unchanged mailbox costs no query per command.  Its query is shared with every session
  asking for the same folder and modseq at the same time, and a session in IDLE is handed the
  shared answer without a coroutine of its own (:meth:`pushed`; gateways/imap/watch.py); either
  way :meth:`report` turns the answer into this session's responses.
* Flags in ``metas`` are what the client was last told; a change is reported only when the stored
  flags differ, so this session's own STORE (which already answered with FETCH) is not repeated.
* No FETCH names a keyword the client was not told of: ``announced`` holds the keywords of the
  last ``* FLAGS``; whoever writes flags first asks :meth:`announce`, which gives the new
  ``* FLAGS`` and ``* OK [PERMANENTFLAGS]`` when a keyword is new to this session (RFC 3501
  §7.2.6), and writes both in the same reactor turn (no await between), so no other response
  can come in between.

* \\Recent (RFC 3501 §2.3.2) is the store's claim (Store.claim_recent): a read-write session
  claims what is new when it SELECTs and whenever it is about to report new messages, so
  exactly one session, on whichever node, sees a message recent; ``recent`` holds the UIDs of
  the view that are recent here.  EXAMINE claims nothing: it sees as recent what nobody has
  claimed yet when it opens.  ``* n RECENT`` follows every ``* n EXISTS``.
* An IMAP4rev2 session (RFC 9051 §2.3.2: no \\Recent, no RECENT response) opens its mailbox
  with ``track_recent`` off: it claims nothing, so its messages stay recent for an IMAP4rev1
  session, and it is told of none (``recent`` stays empty, no ``* n RECENT``).
"""

from __future__ import annotations

from bisect import bisect_left
from dataclasses import replace
from typing import Callable, Optional

from twisted.internet.defer import DeferredLock

from store import errors

from . import response
from .searchres import SAVED
from .seqset import SequenceSet, format_set
from .states import IMAPError
from .watch import feed_for

RECENT = frozenset({"\\Recent"})


SYSTEM_FLAGS = "\\Answered \\Flagged \\Deleted \\Seen \\Draft"


class SelectedMailbox:
    #: a recovery mailbox (gateways/imap/recovered.py): no modseqs, no \\Recent
    view = False

    def __init__(self, folder, readonly: bool, metas: list, track_recent: bool = True):
        self.folder = folder
        self.readonly = readonly
        self.track_recent = track_recent  # False in an IMAP4rev2 session
        self.uids: list = [m.uid for m in metas]
        self.metas: dict = {m.uid: m for m in metas}
        self.highest_modseq: int = folder.highest_modseq
        self.pending_expunge: set = set()
        self.saved: list = []  # RFC 5182: the saved search result "$", UIDs (searchres.py)
        self.dirty = False
        self.marks = 0  # push events that marked it dirty (mark_dirty), for watch.py
        self.lock = DeferredLock()
        self.announced: set = self.keywords()  # the keywords of the last * FLAGS (flags_lines)
        self.recent: set = set()  # UIDs of the view that are \\Recent in this session
        self.claims: list = []  # (floor, top) ranges claimed: floor < uid <= top are recent here
        self.claimed_top = 0  # the highest top claimed
        self.recent_floor: Optional[int] = None  # read-only: UIDs above it are recent, unclaimed

    # -- \\Recent --------------------------------------------------------------------------
    def claimed(self, floor: int, top: int) -> None:
        """A claim of ``Store.claim_recent``: the messages of the view in it become recent."""
        if top > floor:
            self.claims.append((floor, top))
            self.claimed_top = max(self.claimed_top, top)
            self.recent.update(u for u in self.uids if floor < u <= top)

    def unclaimed_above(self, floor: int) -> None:
        """Read-only (EXAMINE): what nobody had claimed at open is recent here, and stays so."""
        self.recent_floor = floor
        self.recent.update(u for u in self.uids if u > floor)

    def is_recent(self, uid: int) -> bool:
        if self.recent_floor is not None:
            return uid > self.recent_floor
        return any(floor < uid <= top for floor, top in self.claims)

    def shown(self, meta):
        """``meta`` as this session shows it: with \\Recent when the message is recent here."""
        if meta.uid in self.recent:
            return replace(meta, flags=meta.flags | RECENT)
        return meta

    def wants_claim(self, changes) -> int:
        """The newest UID of ``changes`` this session would claim before reporting them (0: no
        claim: read-only, an IMAP4rev2 session (no \\Recent), nothing new, or new messages
        within a claim of its own)."""
        if self.readonly or not self.track_recent:
            return 0
        last = self.uids[-1] if self.uids else 0
        newest = max((m.uid for m in changes.updated if m.uid > last), default=0)
        # every UID up to claimed_top is claimed already, by us or by another
        return newest if newest > self.claimed_top else 0

    async def claim_new(self, store, changes) -> None:
        """Before ``changes`` are reported: claim what is new beyond the last claim (read-write
        sessions only; a failed claim only leaves the messages recent to another session).
        A claim another session of this process made already covers skips the store (watch.py)."""
        newest = self.wants_claim(changes)
        if not newest:
            return
        try:
            await feed_for(store).claim_recent(self, newest)  # nothing when another has them
        except errors.StoreError:
            return

    # -- lookups ---------------------------------------------------------------------------
    @property
    def count(self) -> int:
        return len(self.uids)

    def seq_of(self, uid: int) -> Optional[int]:
        i = bisect_left(self.uids, uid)
        if i < len(self.uids) and self.uids[i] == uid:
            return i + 1
        return None

    def resolve(self, seqset: SequenceSet, uid_mode: bool) -> list:
        """UIDs (ascending) named by a sequence set; SeqSetError for a bad sequence number."""
        if seqset is SAVED:  # RFC 5182 §2.1: "$" names the same messages with or without UID
            return sorted(u for u in self.saved if u in self.metas)
        if uid_mode:
            return seqset.uids(self.uids)
        uids = self.uids
        return [uids[s - 1] for s in seqset.seqs(len(uids))]

    def keywords(self) -> set:
        out = set()
        for flags in {m.flags for m in self.metas.values()}:  # few distinct sets in a mailbox
            out.update(f for f in flags if not f.startswith("\\"))
        return out

    def flags_lines(self) -> bytes:
        """``* FLAGS`` and ``* OK [PERMANENTFLAGS]`` with the keywords announced so far."""
        keywords = " ".join(sorted(self.announced))
        flags = (SYSTEM_FLAGS + (" " + keywords if keywords else "")).encode("utf-8", "replace")
        out = b"* FLAGS (%s)\r\n" % flags
        if self.readonly:
            return out + b"* OK [PERMANENTFLAGS ()] Read-only mailbox\r\n"
        return out + b"* OK [PERMANENTFLAGS (%s \\*)] Flags permitted\r\n" % flags

    def announce(self, flag_sets) -> bytes:
        """The ``* FLAGS`` lines to send before flags from ``flag_sets`` (iterables of flags)
        when one of them holds a keyword not announced yet (b"" otherwise); the keywords count
        as announced from now on, so the caller writes the lines at once."""
        announced = self.announced
        new = {f for flags in flag_sets for f in flags if f not in announced and not f.startswith("\\")}
        if not new:
            return b""
        announced |= new
        return self.flags_lines()

    # -- updates from this session's own commands -------------------------------------------
    def update_metas(self, metas) -> None:
        for m in metas:
            if m.uid in self.metas:
                self.metas[m.uid] = m

    def remove(self, uids) -> list:
        """Drop expunged UIDs; returns their sequence numbers, descending (the order in which
        ``* n EXPUNGE`` lines can be sent without renumbering, RFC 3501 §7.4.1)."""
        gone = set(u for u in uids if u in self.metas)
        if not gone:
            return []
        seqs = [i + 1 for i, u in enumerate(self.uids) if u in gone]
        self.uids = [u for u in self.uids if u not in gone]
        for u in gone:
            del self.metas[u]
        self.pending_expunge -= gone
        self.recent -= gone
        seqs.reverse()
        return seqs

    def expunge_lines(self, uids, qresync: bool) -> bytes:
        present = [u for u in uids if u in self.metas]
        if not present:
            return b""
        seqs = self.remove(present)
        if qresync:
            # RFC 7162 §3.2.10: VANISHED replaces EXPUNGE once QRESYNC is enabled
            return b"* VANISHED %s\r\n" % format_set(present).encode()
        return b"".join(b"* %d EXPUNGE\r\n" % s for s in seqs)

    # -- changes by others ---------------------------------------------------------------
    def modseqs_needed(self) -> None:
        """A command uses mod-sequences (FETCH MODSEQ or CHANGEDSINCE, STORE UNCHANGEDSINCE,
        SEARCH MODSEQ): BAD in a mailbox that has none (RFC 7162 §3.1.2.2)."""
        if self.view:
            raise IMAPError("BAD", "This mailbox has no mod-sequences (NOMODSEQ)")

    def wants(self, event) -> bool:
        """Whether a push event (``ChangeEvent``) may change this mailbox."""
        return event.folder_id is None or event.folder_id == self.folder.id

    def mark_dirty(self) -> None:
        """The push bus said the folder changed: the next sync asks the store."""
        self.dirty = True
        self.marks += 1

    async def sync(self, store, write: Callable[[bytes], None], allow_expunge: bool,
                   condstore: bool, qresync: bool, force: bool = False) -> None:
        """Report what changed since ``highest_modseq``: EXISTS, FETCH (FLAGS), EXPUNGE."""
        if not (self.dirty or force or (allow_expunge and self.pending_expunge)):
            return
        await self.lock.acquire()
        try:
            changes = None
            if self.dirty or force:
                self.dirty = False
                changes = await self.changes(store)
            data = self.report(changes, allow_expunge, condstore, qresync)
            if data:
                write(data)
        finally:
            self.lock.release()

    async def changes(self, store):
        """What changed since ``highest_modseq``: one query for every session asking the same
        this turn (watch.py), after claiming what is new as \\Recent."""
        changes = await feed_for(store).changes_since(self.folder.id, self.highest_modseq)
        await self.claim_new(store, changes)
        return changes

    def report(self, changes, allow_expunge: bool, condstore: bool, qresync: bool) -> bytes:
        """The responses for ``changes`` (None: none fetched) and, with ``allow_expunge``, for
        the expunges held back; the view moves on as they are made, so the caller writes them."""
        out = []
        if changes is not None:
            self._apply(changes, out, condstore)
        if allow_expunge and self.pending_expunge:
            out.append(self.expunge_lines(sorted(self.pending_expunge), qresync))
        return b"".join(out)

    def pushed(self, changes, modseq: int, marks: int, claimed: int, condstore: bool,
               qresync: bool) -> Optional[bytes]:
        """IDLE fan-out (watch.py): the responses for ``changes``, the store's changes since
        ``modseq`` by a query that started when ``marks`` push events had marked this session,
        exactly as :meth:`sync` would report them now (``claimed``: every UID up to it is
        claimed recent by someone); None when they cannot be used as they are (a sync of its
        own running, the view moved past ``modseq``, a claim to make): the caller then syncs
        the session on its own.  Still dirty afterwards when another event came after the
        query started."""
        if self.lock.locked:
            return None  # its own sync reports when it is done
        if not self.dirty:
            return self.report(None, True, condstore, qresync)  # a sync of its own saw it
        if modseq != self.highest_modseq or self.wants_claim(changes) > claimed:
            return None
        if marks == self.marks:
            self.dirty = False
        return self.report(changes, True, condstore, qresync)

    def _apply(self, changes, out: list, condstore: bool) -> None:
        last = self.uids[-1] if self.uids else 0
        out.append(self.announce(m.flags for m in changes.updated))  # before any FETCH or EXISTS
        new = []
        for meta in changes.updated:
            old = self.metas.get(meta.uid)
            if old is None:
                if meta.uid > last:
                    new.append(meta)
                continue
            if meta.uid in self.pending_expunge:
                continue
            self.metas[meta.uid] = meta
            if old.flags != meta.flags or (condstore and old.modseq != meta.modseq):
                seq = self.seq_of(meta.uid)
                out.append(self.fetch_line(seq, meta, condstore))
        for uid in changes.expunged:
            if uid in self.metas:
                self.pending_expunge.add(uid)
        if new:
            new.sort(key=lambda m: m.uid)
            for m in new:
                self.uids.append(m.uid)
                self.metas[m.uid] = m
                if self.is_recent(m.uid):
                    self.recent.add(m.uid)
            out.append(self.exists_lines())
        self.highest_modseq = max(self.highest_modseq, changes.highest_modseq)

    def exists_lines(self) -> bytes:
        """RFC 3501 §7.3.1, §7.3.2: EXISTS gives the size of the mailbox, RECENT the number of
        messages recent in this session; IMAP4rev2 has no RECENT (RFC 9051 §7.4.1)."""
        if not self.track_recent:
            return b"* %d EXISTS\r\n" % len(self.uids)
        return b"* %d EXISTS\r\n* %d RECENT\r\n" % (len(self.uids), len(self.recent))

    def fetch_line(self, seq: int, meta, condstore: bool) -> bytes:
        # RFC 7162 §3.2: unsolicited flag updates carry MODSEQ once CONDSTORE is enabled
        line = b"* %d FETCH (UID %d FLAGS %s" % (seq, meta.uid, response.flag_list(self.shown(meta).flags))
        if condstore:
            line += b" MODSEQ (%d)" % meta.modseq
        return line + b")\r\n"
