"""Search-result handlers: SORT (RFC 5256, with ESORT's RETURN, RFC 5267 §3, and RFC 5957's
DISPLAYFROM/DISPLAYTO), THREAD (RFC 5256: ORDEREDSUBJECT, REFERENCES), and the ESEARCH
(RFC 4731) and SEARCHRES (RFC 5182) parts of SEARCH (cmd_message.py runs the search for all
three, ``search_matches``, and calls :meth:`SortCommands.search_program` and
:meth:`SortCommands.esearch_reply`).

Invariants:
* Sort keys and threads come from the store's cached ENVELOPE (and, for THREAD=REFERENCES, the
  cached header section for References): no message is opened.
* The CPU work (base subjects, dates, threading) runs in a worker thread once more than
  INLINE_MAX messages are involved (about 10 µs a message: 20,000 take 80 ms to sort by
  subject, 250 ms to thread); the algorithms are pure (sorting.py, thread.py).
* ``$`` is bound before the search runs, then a SEARCH/SORT with SAVE empties it at once, so a
  command that fails (NO here; BAD in protocol.py) leaves it empty (RFC 5182 §2.1); one that
  succeeds saves its result before the tagged OK.  Commands run strictly in order
  (protocol.py), which is the ordering RFC 5182 §2.4 asks of pipelined commands using ``$``.

Deliberately not done: CONTEXT=SORT/CONTEXT=SEARCH (RFC 5267 §4 live updates), PARTIAL
(RFC 9394), NOTSAVED (a result is always saved), THREAD=REFS.
"""

from __future__ import annotations

from twisted.internet import threads

from . import response, thread
from .searchres import bind_saved, uses_saved
from .seqset import format_pairs, format_set
from .sorting import SortInput, sort_messages

#: what these handlers add to CAPABILITY
CAPABILITIES = ("ESEARCH", "SEARCHRES", "SORT", "SORT=DISPLAY", "ESORT",
                "THREAD=ORDEREDSUBJECT", "THREAD=REFERENCES")
#: above this many messages the sort/thread computation leaves the reactor thread
INLINE_MAX = 200
#: messages per store call when reading envelopes
ENVELOPE_BATCH = 1000


class SortCommands:
    # -- shared with SEARCH ------------------------------------------------------------------
    def search_program(self, cmd) -> tuple:
        """The command's search keys with ``$`` bound; empties ``$`` when the command saves."""
        sel = self.selected
        node = cmd.args["criteria"]
        if uses_saved(node):
            node = bind_saved(node, sel.saved)
        returns = cmd.args.get("returns")
        if returns and "SAVE" in returns:
            sel.saved = []  # RFC 5182 §2.1: a SAVE that fails leaves the empty result
        return node

    def esearch_reply(self, cmd, matched: list, modseq: bool, ordered: bool = False) -> None:
        """The ESEARCH response (RFC 4731 §3.1) of ``matched`` (candidates, in result order:
        ascending, or ``ordered`` for ESORT) and the SAVE of RFC 5182 §2.1; a command without
        RETURN (an IMAP4rev2 SEARCH) is answered as RETURN (ALL)."""
        opts = set(cmd.args["returns"] or ()) or {"ALL"}  # RFC 4731 §3.1: RETURN () is ALL
        if "SAVE" in opts:
            saved = matched
            if matched and opts & {"MIN", "MAX"} and not opts & {"ALL", "COUNT"}:
                # RFC 5182 §2.1: with MIN and/or MAX alone, only those messages are saved
                saved = _ends(matched, opts, ordered)
            self.selected.saved = sorted({m.meta.uid for m in saved})
        data = opts - {"SAVE"}
        if not data:
            return  # RFC 5182 §2.1: SAVE alone answers no ESEARCH
        def num(m):
            return m.meta.uid if cmd.uid else m.seq
        out = [b"* ESEARCH (TAG " + response.string(cmd.tag) + b")"]
        if cmd.uid:
            out.append(b"UID")
        returned = []
        if matched:
            ends = _ends(matched, data, ordered)
            if "MIN" in data:
                out.append(b"MIN %d" % num(ends[0]))
            if "MAX" in data:
                out.append(b"MAX %d" % num(ends[-1]))
            returned = matched if data & {"ALL", "COUNT"} else ends
        if "COUNT" in data:
            out.append(b"COUNT %d" % len(matched))
        if matched and "ALL" in data:
            # RFC 4731 §3.1: no ALL when nothing matched; ESORT keeps the sort order (RFC 5267 §3.1)
            nums = [num(m) for m in matched]
            out.append(b"ALL " + (format_pairs(nums) if ordered else format_set(nums)).encode())
        if modseq and returned:
            # RFC 4731 §3.2: the highest mod-sequence of the messages returned
            out.append(b"MODSEQ %d" % max(m.meta.modseq for m in returned))
        self.write(b" ".join(out) + b"\r\n")

    # -- SORT (RFC 5256 §3, ESORT RFC 5267 §3) -------------------------------------------------
    async def do_SORT(self, cmd):
        matched, modseq = await self.search_matches(cmd)
        inputs = await self._sort_inputs(matched, False)
        order, line = await _compute(len(inputs), _sort_order, cmd.args["sort"], inputs, cmd.uid)
        if cmd.args["returns"] is not None:
            by_uid = {m.meta.uid: m for m in matched}
            self.esearch_reply(cmd, [by_uid[uid] for uid in order], modseq, ordered=True)
            return None
        if modseq and order:
            sorted_uids = set(order)
            # RFC 7162 §3.1.5: the highest mod-sequence of the messages returned
            line += b" (MODSEQ %d)" % max(m.meta.modseq for m in matched if m.meta.uid in sorted_uids)
        self.write(line + b"\r\n")
        return None

    # -- THREAD (RFC 5256 §3) ------------------------------------------------------------------
    async def do_THREAD(self, cmd):
        matched, _modseq = await self.search_matches(cmd)
        algorithm = cmd.args["algorithm"]
        inputs = await self._sort_inputs(matched, algorithm == "REFERENCES")
        text = await _compute(len(inputs), _thread_text, algorithm, inputs, cmd.uid)
        self.write(b"* THREAD" + (b" " + text.encode() if text else b"") + b"\r\n")
        return None

    async def _sort_inputs(self, matched: list, headers: bool) -> list:
        """(SortInput, raw header or None) of the matched messages still in the store."""
        folder_id = self.selected.folder.id
        seq_of = {m.meta.uid: m.seq for m in matched}
        uids = sorted(seq_of)
        out = []
        for i in range(0, len(uids), ENVELOPE_BATCH):
            recs = await self.store.fetch_messages(folder_id, uids[i:i + ENVELOPE_BATCH],
                                                   envelope=True, header=headers)
            for r in recs:
                meta = r.meta
                out.append((SortInput(seq_of[meta.uid], meta.uid, meta.internaldate, meta.size, r.envelope),
                            r.header))
        return out


def _ends(matched: list, opts, ordered: bool) -> list:
    """The MIN and/or MAX messages asked for: lowest and highest number, or for a sorted result
    the first and last (RFC 5267 §3.1)."""
    if ordered:
        first, last = matched[0], matched[-1]
    else:
        first = min(matched, key=lambda m: m.meta.uid)
        last = max(matched, key=lambda m: m.meta.uid)
    picked = []
    if "MIN" in opts or not opts & {"MIN", "MAX"}:
        picked.append(first)
    if ("MAX" in opts or not opts & {"MIN", "MAX"}) and (last is not first or not picked):
        picked.append(last)
    return picked


async def _compute(size: int, fn, *args):
    """``fn(*args)`` inline for small inputs, else in a worker thread (never on the reactor
    for a big mailbox: 20,000 messages are a few hundred milliseconds of CPU)."""
    if size <= INLINE_MAX:
        return fn(*args)
    return await threads.deferToThread(fn, *args)


def _sort_order(criteria: list, inputs: list, by_uid: bool) -> tuple:
    """(UIDs in sort order, the ``* SORT`` line without its MODSEQ and CRLF)."""
    order = sort_messages(criteria, [m for m, _header in inputs])
    numbers = [m.uid if by_uid else m.seq for m in order]
    return [m.uid for m in order], b"* SORT" + b"".join(b" %d" % n for n in numbers)


def _thread_text(algorithm: str, inputs: list, by_uid: bool) -> str:
    number = (lambda m: m.uid) if by_uid else (lambda m: m.seq)
    if algorithm == "ORDEREDSUBJECT":
        trees = thread.ordered_subject([m for m, _header in inputs], number)
    else:
        msgs = [m._replace(references=thread.references_of(header)) for m, header in inputs]
        trees = thread.references(msgs, number)
    return thread.render(trees)
