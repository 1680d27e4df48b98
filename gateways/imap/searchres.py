"""SEARCHRES (RFC 5182): the ``$`` sequence set and the saved search result it names.

The saved result is a list of UIDs on the session's :class:`SelectedMailbox` (``saved``), so it
names messages, not numbers (RFC 5182 §2.1: "$" works in UID and sequence-number commands alike)
and a message expunged meanwhile simply drops out of it.  A new SELECT/EXAMINE makes a new
SelectedMailbox, which starts with the empty result (§2.1).

Invariants:
* ``$`` is a whole sequence set on its own (RFC 5182 §3: ``sequence-set =/ seq-last-command``);
  ``$,1`` or ``1:$`` are BAD (the ordinary sequence-set grammar refuses them).
* A SEARCH or SORT with SAVE that fails empties ``$``: a NO in its handler (cmd_sort.py), a BAD
  from the parser in protocol.py (:func:`saving_command`).
* :data:`SAVED` is resolved only by SelectedMailbox.resolve and by :func:`bind_saved` (search
  keys); anywhere else (QRESYNC known-uids, VANISHED (EARLIER)) it raises SeqSetError, a BAD.
"""

from __future__ import annotations

import re

from .seqset import SeqSetError


class SavedMarker:
    """The unresolved ``$`` as the parser returns it."""

    has_star = False
    ranges = ()

    def _refuse(self, *_args):
        raise SeqSetError("$ (the saved search result) cannot be used here")

    seqs = uids = contains = numbers = _refuse

    def __repr__(self) -> str:
        return "SAVED"


SAVED = SavedMarker()


class SavedSet:
    """``$`` bound to the saved UIDs, as a search key's set (``contains`` asks about a UID)."""

    def __init__(self, uids):
        self._uids = frozenset(uids)

    def contains(self, n: int, _largest: int) -> bool:
        return n in self._uids


def bind_saved(node: tuple, saved) -> tuple:
    """The search program with ``$`` (as a sequence-number or UID set) replaced by the
    messages of ``saved`` (UIDs)."""
    kind = node[0]
    if kind in ("seq", "uid") and node[1] is SAVED:
        return ("uid", SavedSet(saved))
    if kind == "and":
        return ("and", [bind_saved(n, saved) for n in node[1]])
    if kind == "or":
        return ("or", bind_saved(node[1], saved), bind_saved(node[2], saved))
    if kind == "not":
        return ("not", bind_saved(node[1], saved))
    return node


def uses_saved(node: tuple) -> bool:
    kind = node[0]
    if kind in ("seq", "uid"):
        return node[1] is SAVED
    if kind == "and":
        return any(uses_saved(n) for n in node[1])
    if kind == "or":
        return uses_saved(node[1]) or uses_saved(node[2])
    if kind == "not":
        return uses_saved(node[1])
    return False


_SAVING = re.compile(rb"[^ ]+ +(?:UID +)?(?:SEARCH|SORT) +RETURN +\([^)]*\bSAVE\b", re.I)


def saving_command(data: bytes) -> bool:
    """The frame reads as a SEARCH or SORT with the SAVE result option, even though it failed
    to parse: RFC 5182 §2.1 empties ``$`` when such a command is BAD, too."""
    return _SAVING.match(data[:300]) is not None
