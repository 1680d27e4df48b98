"""The delivery rules' verdict per message: pure CPU work, no SQL.

The delivery pipeline (:mod:`store.delivery`) runs in three steps per message:

1. **resolve** (DB pool, at RCPT): the recipient plus its account's ``rules_version`` and
   whether it has rules (an active script, an out-of-office);
2. **plan** (:func:`make_plan`, this module; only when a recipient has rules or the message
   is junk; on the DB thread just before the transaction for a message stored inline, in the
   CPU pool with the blob write for a bigger one): the junk header test, then the recipient's
   Sieve script and out-of-office, turned into a :class:`Plan`: where copies go with which flags, what to
   reject, redirect or reply.  Outgoing messages (redirects, vacation replies) are built and
   their blobs written here, through the ``prepare`` function the caller hands in;
3. **apply** (DB pool, in the same transaction as every other row of the delivery,
   :mod:`store.delivery`): the quota check, folder lookups (``:create``), the message rows,
   local redirects and replies straight into their INBOX, the outbound-queue rows of remote
   ones, the vacation memory and the quota warning.  So a redirect or a reply is durable
   exactly when the delivery is: none is lost, none is sent for a message the MTA will retry.

Invariants
- A message is never lost to a rule: a script that fails at run time, a redirect that cannot
  go out (a loop), a plan that cannot be made at all all end in a copy in the INBOX and a note
  for the log line.
- Junk (the configured header test, or ``haven deliver -j``) files into the special-use Junk
  folder and the user's script does not run for it (like a global ``sieve_before`` script that
  ends in ``stop``): no vacation reply ever answers spam.
- An active out-of-office (:class:`~store.interfaces.OutOfOffice`) answers after the user's
  script ran, as a vacation action would, by the same rules (RFC 5230 §4.5-4.7, RFC 3834: no
  reply to a list, bulk or automatic message, a bounce, a mailer, the user's own address, nor
  to mail that does not name the user) and the same memory (one reply per sender per period);
  a vacation reply of the script takes its place, and a reject leaves none.  A sender of the
  account's domain is internal.
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass, field
from typing import Callable, Optional

from formats import sieve
from formats.sieve import vacation as sieve_vacation
from store.interfaces import INBOX, OOF_ON, OutOfOffice, Recipient
from store.settings import RuleSettings

log = logging.getLogger("haven.rules")

#: Received lines after which a message is not redirected any more (RFC 5321 §6.3 loop detection)
MAX_HOPS = 30
#: how much of the header section the junk test looks at
JUNK_SCAN_LIMIT = 256 * 1024
JUNK = "\\Junk"  # a Plan target: the account's special-use Junk folder


# -- plan (pure CPU work; no SQL) ------------------------------------------------------------

@dataclass(frozen=True)
class Copy:
    """One copy to store: ``target`` is a folder name or :data:`JUNK`."""
    target: str
    flags: tuple = ()
    create: bool = False


@dataclass
class Outgoing:
    """A message the rules send (redirect, vacation reply), blob already written."""
    kind: str  # "redirect" | "vacation"
    mail_from: str
    recipient: str
    prepared: object  # store.changelog.PreparedMessage
    vacation_key: Optional[str] = None
    vacation_seconds: int = 0
    keep_instead: bool = False  # a redirect without :copy: keep the message if it cannot leave


@dataclass
class Plan:
    stores: list = field(default_factory=list)
    reject: Optional[str] = None
    outgoing: list = field(default_factory=list)
    notes: list = field(default_factory=list)  # for the log: what the rules did and why not

    def describe(self, notes: bool = True, unsent: tuple = ()) -> tuple:
        """What the rules did, for the log; ``unsent``: outgoing messages that did not go (their
        note says why)."""
        out = []
        for s in self.stores:
            out.append("junk" if s.target == JUNK else f"fileinto {s.target}" if s.target != INBOX else "keep")
        if not self.stores and self.reject is None and not any(o.kind == "redirect" for o in self.outgoing):
            out.append("discard")
        if self.reject is not None:
            out.append("reject")
        out += [f"redirect <{o.recipient}>" if o.kind == "redirect" else f"vacation <{o.recipient}>"
                for o in self.outgoing if not any(o is u for u in unsent)]
        return tuple(out + (self.notes if notes else []))


_HEADER_END = re.compile(rb"\r?\n\r?\n")


def header_section(raw: bytes, limit: int = JUNK_SCAN_LIMIT) -> bytes:
    m = _HEADER_END.search(raw, 0, limit)
    return raw[:m.start()] if m else raw[:limit]


def _header_values(head: bytes, name: str) -> list:
    pattern = re.compile(rb"^" + re.escape(name.encode("ascii")) + rb"[ \t]*:(.*(?:\r?\n[ \t].*)*)",
                         re.IGNORECASE | re.MULTILINE)
    return [re.sub(rb"\s+", b" ", m.group(1)).strip().decode("latin-1") for m in pattern.finditer(head)]


def is_junk(raw: bytes, tests: tuple) -> bool:
    """The junk header test: a header named in ``tests`` whose value starts with the given
    word, case-insensitively (``X-Spam-Status: Yes, score=7.2`` matches ``yes``)."""
    if not tests:
        return False
    head = header_section(raw)
    for name, value in tests:
        for found in _header_values(head, name):
            found = found.lower()
            if found == value or (found.startswith(value) and not found[len(value)].isalnum()):
                return True
    return False


def _is_loop(head: bytes, address: str) -> bool:
    if len(_header_values(head, "received")) > MAX_HOPS:
        return True
    return any(v.strip().strip("<>").lower() == address for v in _header_values(head, "delivered-to"))


def _strip_return_path(raw: bytes) -> bytes:
    """A relayed copy carries no Return-Path (RFC 5321 §4.4: only the final delivery adds it)."""
    while raw[:12].lower() == b"return-path:":
        end = raw.find(b"\n")
        if end < 0:
            return raw
        raw = raw[end + 1:]
    return raw


def make_plan(raw: bytes, mail_from: str, rcpt: Recipient, script, addresses: tuple, junk: bool,
              settings: RuleSettings, prepare: Callable, now: float, oof: Optional[OutOfOffice] = None,
              known: bool = False) -> Plan:
    """The rules' verdict for one recipient.  ``script`` is a compiled Sieve script or None;
    ``prepare(raw)`` writes a blob and returns its PreparedMessage (for outgoing messages);
    ``oof`` the account's out-of-office settings (None: off), ``known`` whether the sender is in
    the account's address books."""
    plan = Plan()
    if junk:
        plan.stores.append(Copy(JUNK))
        return plan
    if script is None:
        plan.stores.append(Copy(INBOX))
    else:
        _run_script(plan, raw, mail_from, rcpt, script, addresses, settings, prepare, now)
    if oof is not None and plan.reject is None and not any(o.kind == "vacation" for o in plan.outgoing):
        _out_of_office(plan, oof, raw, mail_from, rcpt, addresses, settings, prepare, now, known)
    return plan


def _run_script(plan: Plan, raw: bytes, mail_from: str, rcpt: Recipient, script, addresses: tuple,
                settings: RuleSettings, prepare: Callable, now: float) -> None:
    message = sieve.Message(raw, envelope_from=mail_from or "", envelope_to=rcpt.original,
                            user_addresses=addresses)
    result = sieve.run(script, message)
    if result.error:
        log.warning("sieve script of <%s> failed (message kept in INBOX): %s", rcpt.address, result.error)
        plan.notes.append(f"script error: {result.error}")
    plan.notes += [str(n) for n in result.notes]
    head = None
    for action in result.actions:
        if isinstance(action, sieve.Keep):
            plan.stores.append(Copy(INBOX, tuple(action.flags)))
        elif isinstance(action, sieve.FileInto):
            plan.stores.append(Copy(action.mailbox, tuple(action.flags), action.create))
        elif isinstance(action, sieve.Reject):
            plan.reject = action.reason or "rejected by the recipient's rules"
        elif isinstance(action, sieve.Redirect):
            address = action.address.strip().strip("<>").lower()
            head = header_section(raw) if head is None else head
            if _is_loop(head, rcpt.address):
                plan.notes.append(f"redirect <{address}> skipped: mail loop")
                if not action.copy and not any(s.target == INBOX for s in plan.stores):
                    plan.stores.append(Copy(INBOX))  # never lose the message to a redirect
                continue
            copy = b"Delivered-To: " + rcpt.address.encode() + b"\r\n" + _strip_return_path(raw)
            plan.outgoing.append(Outgoing("redirect", mail_from or "", address, prepare(copy),
                                          keep_instead=not action.copy))
        elif isinstance(action, sieve.Vacation):
            _vacation(plan, action, raw, rcpt, settings, prepare, now)
    if plan.reject is not None:
        plan.stores = []
        plan.outgoing = []


def _vacation(plan: Plan, action, raw: bytes, rcpt: Recipient, settings: RuleSettings, prepare, now) -> None:
    to = (action.recipient or "").strip().strip("<>").lower()
    if not to:
        return
    reply = sieve.build_vacation_reply(action, raw, rcpt.address, settings.hostname, now)
    key = hashlib.sha256(f"{action.handle}\0{to}".encode("utf-8")).hexdigest()
    # RFC 5230 §5.1 / RFC 3834 §3.3: the reply's envelope sender is null, so nothing answers it
    plan.outgoing.append(Outgoing("vacation", "", to, prepare(reply), vacation_key=key,
                                  vacation_seconds=max(1, int(action.seconds))))




#: how long a sender stays answered while an out-of-office without an end is on
OOF_OPEN_PERIOD = 365 * 86400


def _out_of_office(plan: Plan, oof: OutOfOffice, raw: bytes, mail_from: str, rcpt: Recipient, addresses: tuple,
                   settings: RuleSettings, prepare: Callable, now: float, known: bool) -> None:
    """The out-of-office reply to this message, when one is due: an Outgoing vacation reply."""
    if not oof.active(now):
        return
    sender = (mail_from or "").strip().strip("<>")
    head = header_section(raw)
    own = frozenset(a.lower() for a in addresses) | {rcpt.address.lower()}
    why = sieve_vacation.refusal(sender, lambda name: _header_values(head, name), own)
    if why:
        plan.notes.append("out of office: no reply: " + why)
        return
    internal = sender.rpartition("@")[2].lower() == rcpt.address.rpartition("@")[2].lower()
    reply = oof.reply_for(internal, known)
    if reply is None:
        plan.notes.append("out of office: no reply for this sender")
        return
    audience = "internal" if internal else "known" if known else "unknown"
    text = reply.message.replace("\r\n", "\n")
    action = sieve.Vacation(reason=("Content-Type: text/html; charset=utf-8\n\n" + text) if reply.html else text,
                            handle=f"out-of-office {oof.since} {audience}", mime=reply.html, recipient=sender)
    message = sieve.build_vacation_reply(action, raw, rcpt.address, settings.hostname, now)
    to = sender.lower()
    seconds = int(oof.end_at - now) if oof.state != OOF_ON else OOF_OPEN_PERIOD
    key = hashlib.sha256(f"{action.handle}\0{to}".encode("utf-8")).hexdigest()
    plan.outgoing.append(Outgoing("vacation", "", to, prepare(message), vacation_key=key,
                                  vacation_seconds=max(1, seconds)))
