"""Selected-state message handlers: FETCH, STORE, SEARCH, COPY, MOVE, EXPUNGE (and their UID
forms), IDLE.

Invariants:
* Message sets are resolved against the session's view (session.SelectedMailbox), so sequence
  numbers mean what the client was last told; UIDs unknown to the session are ignored.
* FETCH works in batches (a few hundred messages, a few dozen when bodies are read) and waits
  for the transport to drain between batches: memory stays bounded for ``FETCH 1:* BODY[]``.
  Without bodies the next batch is read while the current one is rendered and sent; with bodies,
  each batch is one store call (:meth:`Store.fetch_messages_with_bodies`), not one per message.
* Messages expunged by another session meanwhile are left out of FETCH and the command ends
  ``OK [EXPUNGEISSUED]`` (RFC 2180 §4.1.2 lets the server send what it can; RFC 5530 code).
* CONDSTORE is enabled implicitly by MODSEQ/CHANGEDSINCE/UNCHANGEDSINCE use (RFC 7162 §3.1).
* COPY and MOVE into the selected mailbox itself work (new UIDs, COPYUID; MOVE expunges the
  sources), as in Dovecot and Cyrus.

ESEARCH and SEARCHRES results, SORT and THREAD: cmd_sort.py.

Deliberately not done: COPY/MOVE across accounts.
"""

from __future__ import annotations

from bisect import bisect_left
from dataclasses import replace

from twisted.internet.defer import Deferred, succeed

from store import errors

from . import response
from .fetch import FetchPlan, cut_partial, filter_header
from .fetch_ext import binary_piece, check_encodings, fill_previews
from .parser import FetchItem
from .search import Context, run_search, uses_modseq
from .seqset import format_pairs, format_set
from .states import IMAPError

FETCH_BATCH = 250
FETCH_BODY_BATCH = 25
FETCH_BODY_BYTES = 16 << 20
#: a message bigger than this is FETCHed piece by piece (Store.open_blob), STREAM_PIECE at a time
STREAM_BODY = 1 << 20
STREAM_PIECE = 256 << 10


class _MetaRecord:
    """A FETCH record made from a session's MessageMeta alone (the items of
    FetchPlan.meta_only): what MessageRecord offers, without a store read."""
    __slots__ = ("meta",)
    blob_id = ""
    envelope = structure = header = None

    def __init__(self, meta):
        self.meta = meta


class MessageCommands:
    def _writable(self):
        if self.selected.readonly:
            raise IMAPError("NO", "Mailbox is open read-only (EXAMINE)", "READ-ONLY")

    # -- FETCH -------------------------------------------------------------------------------
    async def do_FETCH(self, cmd):
        sel = self.selected
        args = cmd.args
        uids = sel.resolve(args["set"], cmd.uid)
        items = list(args["items"])
        names = {i.name for i in items}
        changedsince = args["changedsince"]
        if cmd.uid and "UID" not in names:
            items.insert(0, FetchItem("UID"))  # RFC 3501 §6.4.8
        if changedsince is not None or "MODSEQ" in names:
            sel.modseqs_needed()
            self.condstore = True  # RFC 7162 §3.1.4
        if "MODSEQ" not in names and not sel.view and (changedsince is not None or (self.condstore and "FLAGS" in names)):
            # RFC 7162 §3.1.4.1 (CHANGEDSINCE implies MODSEQ) and §3.1.2 (once CONDSTORE is
            # enabled, FETCH responses that carry FLAGS carry MODSEQ too)
            items.append(FetchItem("MODSEQ"))
        if args["vanished"]:
            if not cmd.uid or not self.qresync:
                raise IMAPError("BAD", "VANISHED needs UID FETCH and ENABLE QRESYNC")
            await self._vanished_earlier(args["set"], changedsince)
        plan = FetchPlan(items, sel.readonly, decode_params=self.rev2)  # RFC 9051 §7.5.2
        folder = sel.folder
        cache = self.envelopes if plan.envelope else None
        batches = self._batches(uids, plan.blob)

        # What a client sends on opening a folder (UID FLAGS RFC822.SIZE INTERNALDATE ENVELOPE)
        # is answered from the session's own state when the ENVELOPE cache holds the batch and
        # the push bus has told the session of no change it has not taken in yet: no store
        # read.  A change whose event is still on its way (another node's, within the poll
        # interval) comes as an untagged FETCH or EXPUNGE at the end of this command or the
        # next (RFC 3501 §5.2, §7.4.2), as if it had been committed a moment later.
        from_session = plan.meta_only and changedsince is None and not plan.sets_seen

        def start(batch: tuple) -> tuple:
            chunk, streamed = batch
            # ENVELOPEs served from the cache are taken now: they cannot be evicted under us
            envs = cache.get_many(folder.id, folder.uidvalidity, chunk) if cache is not None else {}
            if (from_session and not sel.dirty and not sel.pending_expunge
                    and len(envs) == (len(chunk) if plan.envelope else 0)):
                metas = sel.metas
                recs = [_MetaRecord(metas[u]) for u in chunk if u in metas]
                return chunk, envs, streamed, succeed((recs, None))
            return chunk, envs, streamed, Deferred.fromCoroutine(
                self._fetch_batch(plan, folder.id, chunk, changedsince, len(envs) < len(chunk), streamed))

        missing = False
        first = next(batches, None)
        ahead = start(first) if first is not None else None
        try:
            while ahead is not None:
                chunk, envs, streamed, d = ahead
                ahead = None
                recs, raws = await d
                if not plan.blob:
                    # the next batch is read while this one is rendered and sent; bodies are not
                    # read ahead, so memory stays one batch of them
                    following = next(batches, None)
                    ahead = start(following) if following is not None else None
                if len(recs) < len(chunk):
                    missing = True
                if changedsince is not None:
                    recs = [r for r in recs if r.meta.modseq > changedsince]
                seen_changed: set = set()
                if plan.sets_seen:
                    recs, seen_changed = await self._set_seen(recs)
                if plan.preview:
                    await fill_previews(self.store, plan, folder.id, recs)
                if streamed:  # one big message, its bodies read and sent piece by piece
                    for r in recs:
                        await self._send_streamed(plan, r, envs, seen_changed, cache)
                    out = None
                else:
                    if plan.blob and raws is None:
                        blobs = await self.store.read_blobs(r.blob_id for r in recs)
                        raws = {r.meta.uid: blobs[r.blob_id] for r in recs}
                    out = self._render_batch(plan, recs, raws or {}, envs, seen_changed, cache)
                if out:
                    self.write(b"".join(out))
                    await self.drained()
                if self._closed:
                    return None
                if plan.blob:
                    following = next(batches, None)
                    ahead = start(following) if following is not None else None
        finally:
            if ahead is not None:
                ahead[3].addErrback(lambda _failure: None)  # nobody awaits it after an error
        if missing:
            return ("EXPUNGEISSUED", "Some messages were expunged meanwhile")
        return None

    async def _fetch_batch(self, plan: FetchPlan, folder_id: int, chunk: list, changedsince,
                           envelope: bool, streamed: bool = False) -> tuple:
        """(records, {uid: raw} or None when the bodies are still to be read).  Bodies come with
        the records in one store call, except with CHANGEDSINCE, which usually leaves most out,
        and for a message to be streamed (read later, piece by piece)."""
        envelope = plan.envelope and envelope
        if plan.blob and changedsince is None and not streamed:
            pairs = await self.store.fetch_messages_with_bodies(
                folder_id, chunk, envelope=envelope, structure=plan.structure, header=plan.header)
            return [r for r, _raw in pairs], {r.meta.uid: raw for r, raw in pairs}
        recs = await self.store.fetch_messages(folder_id, chunk, envelope=envelope,
                                               structure=plan.structure, header=plan.header)
        return recs, None

    async def _set_seen(self, recs: list) -> tuple:
        """RFC 3501 §6.4.5: a non-PEEK body fetch sets \\Seen.  (records, UIDs newly seen)."""
        need = [r.meta.uid for r in recs if "\\Seen" not in r.meta.flags]
        if not need:
            return recs, set()
        res = await self.store.store_flags(self.account.id, self.selected.folder.id, need, "add", ["\\Seen"])
        new = {m.uid: m for m in res.updated}
        return [replace(r, meta=new[r.meta.uid]) if r.meta.uid in new else r for r in recs], set(new)

    def _render_batch(self, plan: FetchPlan, recs: list, raws: dict, envs: dict, seen_changed: set,
                      cache) -> list:
        sel = self.selected
        folder = sel.folder
        metas = sel.metas
        out = []
        uids = sel.uids
        i = bisect_left(uids, recs[0].meta.uid) if recs else 0  # recs ascend: walk, not search
        for r in recs:
            uid = r.meta.uid
            while i < len(uids) and uids[i] < uid:
                i += 1
            if i == len(uids) or uids[i] != uid:
                continue
            seq = i + 1
            if plan.has_flags or uid in seen_changed:
                known = metas.get(uid)
                if known is not None and r.meta.modseq >= known.modseq:
                    metas[uid] = r.meta  # the client now knows these flags
            env = envs.get(uid)
            if env is None and cache is not None:
                env = response.envelope(r.envelope)
                cache.put(folder.id, folder.uidvalidity, uid, env)
            if uid in sel.recent:
                r = _MetaRecord(sel.shown(r.meta)) if r.__class__ is _MetaRecord else replace(r, meta=sel.shown(r.meta))  # with \Recent, after metas took the stored flags
            out.append(plan.render(seq, r, raws.get(uid), uid in seen_changed, env))
        if plan.has_flags or seen_changed:
            # RFC 3501 §7.2.6: a keyword another session just set is announced first
            out.insert(0, sel.announce(r.meta.flags for r in recs))
        return out

    def _batches(self, uids: list, bodies: bool):
        """Slices of ``uids`` as ``(uids, streamed)``: FETCH_BATCH messages, or when bodies are
        read at most FETCH_BODY_BATCH messages and about FETCH_BODY_BYTES octets (at least one
        message); a message over STREAM_BODY octets alone, to be streamed."""
        if not bodies:
            for i in range(0, len(uids), FETCH_BATCH):
                yield uids[i:i + FETCH_BATCH], False
            return
        metas = self.selected.metas
        chunk, size = [], 0
        for uid in uids:
            meta = metas.get(uid)
            octets = meta.size if meta is not None else 0
            if octets > STREAM_BODY:
                if chunk:
                    yield chunk, False
                    chunk, size = [], 0
                yield [uid], True
                continue
            if chunk and (len(chunk) >= FETCH_BODY_BATCH or size + octets > FETCH_BODY_BYTES):
                yield chunk, False
                chunk, size = [], 0
            chunk.append(uid)
            size += octets
        if chunk:
            yield chunk, False

    async def _send_streamed(self, plan: FetchPlan, rec, envs: dict, seen_changed: set, cache) -> None:
        """One FETCH response of a big message, its body literals read from the store a piece
        at a time, each piece written once the transport took the previous one: the session
        holds STREAM_PIECE octets of the message, not the message.  A store failure in the
        middle of a literal cannot be answered in step: it is logged and the connection closed
        (the client sees the connection drop, never a short literal)."""
        uid = rec.meta.uid
        seq = self.selected.seq_of(uid)
        if seq is None:
            return
        env = envs.get(uid)
        if env is None and cache is not None:
            env = response.envelope(rec.envelope)
            cache.put(self.selected.folder.id, self.selected.folder.uidvalidity, uid, env)
        if plan.has_flags or uid in seen_changed:
            known = self.selected.metas.get(uid)
            if known is not None and rec.meta.modseq >= known.modseq:
                self.selected.metas[uid] = rec.meta
        rec = replace(rec, meta=self.selected.shown(rec.meta))  # with \Recent, after metas took the stored flags
        # Opened before the response starts: a missing blob is still an ordinary NO.
        pieces = plan.render_streamed(seq, rec, uid in seen_changed, env)
        check_encodings(pieces)  # UNKNOWN-CTE is a tagged NO, never half a response
        reader = _SpanReader(self.store, rec.blob_id)
        await reader.open()
        if plan.has_flags or uid in seen_changed:
            self.write(self.selected.announce([rec.meta.flags]))
        try:
            for piece in pieces:
                if isinstance(piece, bytes):
                    self.write(piece)
                elif piece.decode is not None or piece.size_only:  # BINARY, BINARY.SIZE (RFC 3516)
                    self.write(await binary_piece(reader, piece))
                elif piece.fields is not None:  # HEADER.FIELDS of an inner message: small
                    header = await reader.read(piece.start, piece.end)
                    data = filter_header(header, piece.fields, piece.negate)
                    start, end = cut_partial(0, len(data), piece.partial)
                    self.write(response.literal(data[start:end]))
                else:
                    self.write(b"{%d}\r\n" % (piece.end - piece.start))
                    async for data in reader.pieces(piece.start, piece.end):
                        await self.drained()  # one piece waits in the transport at most
                        if self._closed:
                            return
                        self.write(data)
                if self._closed:
                    return
        except errors.StoreError as e:
            self.log.warning("imap %s: FETCH of uid %d failed while sending: %s", self.peer, uid, e)
            self.close()
        finally:
            reader.close()

    async def _vanished_earlier(self, seqset, changedsince: int) -> None:
        # RFC 7162 §3.2.6: UIDs in the set expunged since CHANGEDSINCE
        sel = self.selected
        changes = await self.store.changes_since(sel.folder.id, changedsince)
        largest = max([sel.uids[-1] if sel.uids else 0] + list(changes.expunged))
        gone = [u for u in changes.expunged if seqset.contains(u, largest) and u not in sel.metas]
        if gone:
            self.write(b"* VANISHED (EARLIER) %s\r\n" % format_set(gone).encode())

    # -- STORE -------------------------------------------------------------------------------
    async def do_STORE(self, cmd):
        self._writable()
        sel = self.selected
        args = cmd.args
        uids = sel.resolve(args["set"], cmd.uid)
        flags = [f for f in args["flags"] if f != "\\Recent"]
        unchanged = args["unchangedsince"]
        if unchanged is not None:
            sel.modseqs_needed()
            self.condstore = True  # RFC 7162 §3.1.3
        if not uids:
            return None
        res = await self.store.store_flags(self.account.id, sel.folder.id, uids, args["op"], flags, unchanged)
        updated = {m.uid: m for m in res.updated}
        sel.update_metas(res.updated)
        failed = set(res.failed)
        out = [sel.announce(m.flags for m in res.updated)]  # RFC 3501 §7.2.6: new keywords first
        for uid in uids:
            if uid in failed:
                continue
            seq = sel.seq_of(uid)
            meta = updated.get(uid) or sel.metas.get(uid)
            if seq is None or meta is None:
                continue
            if not args["silent"]:
                items = [b"FLAGS " + response.flag_list(sel.shown(meta).flags)]
            elif unchanged is not None and uid in updated:
                items = []  # RFC 7162 §3.1.3: MODSEQ is sent even with .SILENT
            else:
                continue
            if cmd.uid:
                items.insert(0, b"UID %d" % uid)
            if self.condstore and not sel.view:
                items.append(b"MODSEQ (%d)" % meta.modseq)
            out.append(b"* %d FETCH (%s)\r\n" % (seq, b" ".join(items)))
        self.write(b"".join(out))
        if failed:
            nums = sorted(failed) if cmd.uid else sorted(filter(None, (sel.seq_of(u) for u in failed)))
            return ("MODIFIED %s" % format_set(nums), "Conditional STORE failed")
        return None

    # -- SEARCH ------------------------------------------------------------------------------
    async def do_SEARCH(self, cmd):
        matched, modseq = await self.search_matches(cmd)
        if cmd.args["returns"] is not None or self.rev2:
            # RFC 4731 ESEARCH (cmd_sort.py); IMAP4rev2 answers every SEARCH so, RETURN or not
            # (RFC 9051 §6.4.4: no RETURN is RETURN (ALL); its SEARCH response is obsolete)
            return self.esearch_reply(cmd, matched, modseq)
        nums = [m.meta.uid if cmd.uid else m.seq for m in matched]
        nums.sort()
        line = b"* SEARCH" + b"".join(b" %d" % n for n in nums)
        if modseq and matched:
            # RFC 7162 §3.1.5: the highest mod-sequence of the messages returned
            line += b" (MODSEQ %d)" % max(m.meta.modseq for m in matched)
        self.write(line + b"\r\n")

    async def search_matches(self, cmd) -> tuple:
        """(the :class:`Candidate` s matching the command's search keys, ascending; whether MODSEQ
        is one of them): the search of SEARCH, SORT and THREAD."""
        sel = self.selected
        node = self.search_program(cmd)  # SEARCHRES "$" (cmd_sort.py)
        modseq = uses_modseq(node)
        if modseq:
            sel.modseqs_needed()
            self.condstore = True
        ctx = Context(sel.count, sel.uids[-1] if sel.uids else 0, sel.recent)
        return await run_search(self.store, sel.folder.id, list(sel.uids), sel.metas, node, ctx), modseq

    # -- COPY / MOVE / EXPUNGE -----------------------------------------------------------------
    async def do_COPY(self, cmd):
        sel = self.selected
        uids = sel.resolve(cmd.args["set"], cmd.uid)
        dest = await self.target_folder(cmd.args["mailbox"])
        if not uids:
            return None
        res = await self.store.copy_messages(self.account.id, sel.folder.id, uids, dest.id)
        if dest.id == sel.folder.id or sel.view:
            sel.dirty = True  # the copies come as EXISTS; restored ones leave a recovery mailbox
        if not res.pairs:
            return None
        src = [p[0] for p in res.pairs]
        dst = [p[1] for p in res.pairs]
        # RFC 4315 §3: COPYUID uidvalidity source-set destination-set
        return ("COPYUID %d %s %s" % (res.uidvalidity, format_pairs(src), format_pairs(dst)), "COPY completed")

    async def do_MOVE(self, cmd):
        self._writable()
        sel = self.selected
        uids = sel.resolve(cmd.args["set"], cmd.uid)
        dest = await self.target_folder(cmd.args["mailbox"])
        if not uids:
            return None
        res = await self.store.move_messages(self.account.id, sel.folder.id, uids, dest.id)
        src = [p[0] for p in res.pairs]
        dst = [p[1] for p in res.pairs]
        out = []
        if res.pairs:
            # RFC 6851 §4.3: COPYUID in an untagged OK before the expunges
            out.append(b"* OK [COPYUID %d %s %s] Moved\r\n" % (res.uidvalidity, format_pairs(src).encode(),
                                                                 format_pairs(dst).encode()))
        out.append(sel.expunge_lines(src, self.qresync))
        self.write(b"".join(out))
        if dest.id == sel.folder.id:
            # a MOVE into the mailbox itself (as Dovecot and Cyrus allow): the copies come back
            # as EXISTS after the expunges of their sources
            sel.dirty = True
        return None

    async def do_EXPUNGE(self, cmd):
        self._writable()
        sel = self.selected
        uids = None
        if cmd.uid:
            uids = sel.resolve(cmd.args["set"], True)  # RFC 4315 §2.1 UID EXPUNGE
            if not uids:
                return None
        gone = await self.store.expunge(self.account.id, sel.folder.id, uids)
        self.write(sel.expunge_lines(gone, self.qresync))
        return None

    # -- IDLE (RFC 2177) ---------------------------------------------------------------------
    async def do_IDLE(self, cmd):
        self.write(b"+ idling\r\n")
        self.idling = True
        try:
            if self.selected is not None:
                await self.sync(allow_expunge=True)
            line = await self.next_line()
        finally:
            self.idling = False
        if line is None:
            return None
        if line.strip().upper() != b"DONE":
            raise IMAPError("BAD", "Expected DONE to end IDLE")
        return "IDLE terminated"


class _SpanReader:
    """Ranges of one message read through :meth:`Store.open_blob`, in any order: forward by
    skipping, backward by opening the blob again."""

    def __init__(self, store, blob_id: str):
        self.store, self.blob_id = store, blob_id
        self.stream, self.pos = None, 0

    async def open(self) -> None:
        self.close()
        self.stream, self.pos = await self.store.open_blob(self.blob_id), 0

    async def _seek(self, start: int) -> None:
        if self.stream is None or start < self.pos:
            await self.open()
        if start > self.pos:
            await self.stream.skip(start - self.pos)
            self.pos = start

    async def read(self, start: int, end: int) -> bytes:
        await self._seek(start)
        data = await self.stream.read(end - start)
        self.pos += len(data)
        return data

    async def pieces(self, start: int, end: int):
        """Octets start..end, STREAM_PIECE at a time."""
        await self._seek(start)
        while self.pos < end:
            data = await self.stream.read(min(STREAM_PIECE, end - self.pos))
            if not data:
                raise errors.TemporaryFailure("message data shorter than its size")
            self.pos += len(data)
            yield data

    def close(self) -> None:
        if self.stream is not None:
            self.stream.close()
            self.stream = None
