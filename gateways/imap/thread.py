"""THREAD (RFC 5256 §3): the ORDEREDSUBJECT and REFERENCES algorithms and the ``* THREAD``
rendering.  Pure: :class:`sorting.SortInput` records in, trees of sequence numbers (or UIDs)
out; no I/O.

A tree is ``(number, [children])``, ``number`` None for a dummy (a message the mailbox does not
hold, kept only to join its children, RFC 5256 REFERENCES step 4).

Invariants:
* Siblings, and threads, are ordered by sent date (RFC 5256 §2.2, INTERNALDATE when the Date
  header is unusable), ties by mailbox order; a dummy sorts as its first child.
* Message-IDs are compared as the text between the angle brackets, exactly (RFC 5256 §2.2 step
  1 compares them as strings; no case folding).
* Messages without a usable Message-ID, and the second and later holders of a duplicated one,
  get an ID of their own (step 1: "treated as if they had unique IDs").
"""

from __future__ import annotations

import re
from typing import Optional

from formats import mime

from .sorting import ENV_DATE, ENV_IN_REPLY_TO, ENV_MESSAGE_ID, ENV_SUBJECT, base_subject, casemap, sent_date

ALGORITHMS = ("ORDEREDSUBJECT", "REFERENCES")
_MSG_ID = re.compile(r"<([^<>]*)>")


def msg_ids(value) -> list:
    """The msg-ids of a header value (References, In-Reply-To, Message-ID), in order, without
    their angle brackets and with whitespace removed; empty ones dropped."""
    if not value:
        return []
    out = []
    for m in _MSG_ID.finditer(value):
        text = re.sub(r"[ \t\r\n]+", "", m.group(1))
        if text:
            out.append(text)
    return out


def references_of(header: Optional[bytes]) -> tuple:
    """The msg-ids of the References field(s) of a raw header section."""
    if not header:
        return ()
    out: list = []
    for name, raw in mime.header_fields(header):
        if name.lower() == "references":
            value = raw.split(b":", 1)[1] if b":" in raw else b""
            out += msg_ids(value.decode("latin-1"))
    return tuple(out)


def _env(m, i):
    env = m.envelope
    return env[i] if env and len(env) > i else None


def _when(m) -> tuple:
    return (sent_date(_env(m, ENV_DATE), m.internaldate), m.seq)


# -- ORDEREDSUBJECT (RFC 5256 §3 "ORDEREDSUBJECT") --------------------------------------------
def ordered_subject(messages: list, number=lambda m: m.seq) -> list:
    """Messages sorted by base subject then sent date, split into one thread per base subject:
    the first message is the parent, the others its children; threads in the order of their
    first message's sent date."""
    keyed = sorted(((casemap(base_subject(_env(m, ENV_SUBJECT))[0]), _when(m), m) for m in messages),
                   key=lambda t: (t[0], t[1]))
    threads = []
    current = None
    for subject, when, m in keyed:
        if current is not None and current[0] == subject:
            current[2][1].append((number(m), []))
            continue
        current = (subject, when, (number(m), []))
        threads.append(current)
    threads.sort(key=lambda t: t[1])
    return [t[2] for t in threads]


# -- REFERENCES (RFC 5256 §3 "REFERENCES", steps 1-6) -----------------------------------------
class _Container:
    __slots__ = ("msg", "parent", "children", "when", "gone")

    def __init__(self, msg=None):
        self.msg = msg
        self.parent: Optional[_Container] = None
        self.children: list = []
        self.when = None
        self.gone = False

    def reaches(self, other: "_Container") -> bool:
        """``other`` is this container or one of its ancestors."""
        c: Optional[_Container] = self
        while c is not None:
            if c is other:
                return True
            c = c.parent
        return False

    def unlink(self) -> None:
        if self.parent is not None:
            self.parent.children.remove(self)
            self.parent = None

    def adopt(self, child: "_Container") -> None:
        child.unlink()
        child.parent = self
        self.children.append(child)


def references(messages: list, number=lambda m: m.seq) -> list:
    """The REFERENCES algorithm over ``messages`` (SortInput with ``references`` filled)."""
    table: dict = {}
    order: list = []  # every container, in creation order (deterministic root order)

    def container(msg_id: str) -> _Container:
        c = table.get(msg_id)
        if c is None:
            c = table[msg_id] = _Container()
            order.append(c)
        return c

    for m in sorted(messages, key=lambda m: m.seq):
        # (1) the message's container; a missing or duplicate Message-ID gets a unique one
        ids = msg_ids(_env(m, ENV_MESSAGE_ID))
        own = ids[0] if ids else None
        if own is None or (own in table and table[own].msg is not None):
            own = "\0%d" % m.seq  # cannot collide: msg_ids never holds a NUL
        c = container(own)
        c.msg = m
        refs = list(m.references)
        if not refs:
            # no References: the first msg-id of In-Reply-To
            refs = msg_ids(_env(m, ENV_IN_REPLY_TO))[:1]
        # (1A) link the references in order, parent before child; an existing parent is kept
        # and no link may make a loop
        prev: Optional[_Container] = None
        for ref in refs:
            r = container(ref)
            # (only a container with children can be an ancestor: the walk is skipped otherwise)
            if prev is not None and r.parent is None and r is not prev and not (r.children and prev.reaches(r)):
                prev.adopt(r)
            prev = r
        # (1B) the last reference is the parent of this message: it replaces any parent the
        # message had (a truncated References header), unless that would make a loop
        if prev is not None and prev is not c and not (c.children and prev.reaches(c)):
            prev.adopt(c)
        elif prev is None:
            c.unlink()
    # (2) the root set; (3) the ID table is not needed any more
    roots = [c for c in order if c.parent is None]
    # (4) prune dummies
    roots = _prune(roots)
    # (5) gather threads by subject
    roots = _gather_by_subject(roots)
    # (6) sort siblings by sent date, a dummy as its first child (children before parents)
    for c in _post_order(roots):
        c.children.sort(key=lambda k: k.when)
        c.when = _when(c.msg) if c.msg is not None else (c.children[0].when if c.children else (0, 0))
    roots.sort(key=lambda c: c.when)
    return _trees(roots, number)


# Threads may be thousands of messages deep (a long reply chain, or a crafted one): every walk
# over them is iterative, never recursive.
def _post_order(roots: list) -> list:
    """Every container under ``roots``, each after all of its descendants."""
    out, stack = [], list(roots)
    while stack:
        c = stack.pop()
        out.append(c)
        stack.extend(c.children)
    out.reverse()
    return out


def _prune(roots: list) -> list:
    for c in _post_order(roots):
        c.children = _prune_level(c.children, False)
    return _prune_level(roots, True)


def _prune_level(children: list, at_root: bool) -> list:
    """One level of step 4, its children's levels being pruned already."""
    out = []
    for c in children:
        if c.msg is None:
            if not c.children:
                continue  # (4A) a dummy without children goes
            if not at_root or len(c.children) == 1:
                # (4B) its children take its place, except that several children are not
                # promoted to the root level
                for k in c.children:
                    k.parent = c.parent
                out += c.children
                continue
        out.append(c)
    return out


def _subject(c: _Container) -> tuple:
    """(casemapped base subject, is_reply) of a root: its message's, or a dummy's first child's."""
    m = c.msg if c.msg is not None else (c.children[0].msg if c.children else None)
    if m is None:
        return "", False
    base, reply = base_subject(_env(m, ENV_SUBJECT))
    return casemap(base), reply


def _gather_by_subject(roots: list) -> list:
    # (5A-C) the subject table
    table: dict = {}
    for c in roots:
        subject, reply = _subject(c)
        if not subject:
            continue
        old = table.get(subject)
        if old is None:
            table[subject] = c
        elif (old.msg is not None and c.msg is None) or \
                (old.msg is not None and c.msg is not None and _subject(old)[1] and not reply):
            table[subject] = c
    # (5D) merge roots of one subject
    out = []
    for c in roots:
        if c.gone:
            continue
        subject, reply = _subject(c)
        old = table.get(subject) if subject else None
        if old is None or old is c:
            out.append(c)
            continue
        if old.msg is None and c.msg is None:
            # (i) both dummies: the current one's children join the table's
            for k in list(c.children):
                old.adopt(k)
            c.gone = True
        elif old.msg is None:
            # (ii) the table holds a dummy: the message becomes its child
            old.adopt(c)
            c.gone = True
        elif c.msg is None:
            # (ii) the current one is a dummy: the table's message becomes its child
            c.adopt(old)
            old.gone = True
            table[subject] = c
            out.append(c)
        elif reply and not _subject(old)[1]:
            # (iii) a reply or forward under the original
            old.adopt(c)
            c.gone = True
        else:
            # (iv) siblings under a new dummy, which takes the table's place
            dummy = _Container()
            old_index = next((i for i, x in enumerate(out) if x is old), None)
            dummy.adopt(old)
            dummy.adopt(c)
            c.gone = True
            table[subject] = dummy
            if old_index is not None:
                out[old_index] = dummy
            else:  # the table's container comes later in the root set
                old.gone = True
                out.append(dummy)
    return [c for c in out if not c.gone]


def _trees(roots: list, number) -> list:
    """The containers as ``(number or None, [children])`` trees."""
    out: list = []
    stack = [(c, out) for c in reversed(roots)]
    while stack:
        c, siblings = stack.pop()
        node = (number(c.msg) if c.msg is not None else None, [])
        siblings.append(node)
        stack.extend((k, node[1]) for k in reversed(c.children))
    return out


# -- rendering (RFC 5256 §4 thread-list) -----------------------------------------------------
def render(trees: list) -> str:
    """``(2)(3 6 (4 23)(44 7 96))``: each thread in parentheses; a message with one child is
    followed by it, with several by one parenthesized subthread each; a dummy shows only its
    subthreads."""
    out: list = []
    stack: list = []
    for t in reversed(trees):
        stack += [")", t, "("]
    while stack:
        item = stack.pop()
        if item.__class__ is str:
            out.append(item)
            continue
        node = item
        while True:
            num, kids = node
            if num is not None:
                out.append(str(num))
                if len(kids) == 1:
                    out.append(" ")
                    node = kids[0]
                    continue
                if kids:
                    out.append(" ")
            for k in reversed(kids):
                stack += [")", k, "("]
            break
    return "".join(out)
