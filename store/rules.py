"""Server-side rules at delivery: Sieve scripts, junk filing, vacation memory and quotas.

The delivery pipeline (:class:`store.sqlstore.SqlDelivery`) runs in three steps per message:

1. **resolve** (DB pool, at RCPT): the recipient plus its account's ``rules_version`` and
   whether it has an active script (:func:`resolve_for_delivery_txn`);
2. **plan** (:func:`make_plan`; pure CPU work, no SQL, only when a recipient has a script or
   the message is junk; on the DB thread just before the transaction for a message stored
   inline, in the CPU pool with the blob write for a bigger one): the junk header test, then
   the recipient's Sieve script, turned into a :class:`Plan`: where copies go with which
   flags, what to reject, redirect or reply.  Outgoing messages (redirects, vacation replies)
   are built and their blobs written here;
3. **apply** (DB pool, in the same transaction as every other row of the delivery,
   :func:`store.messages.deliver_txn` with the ``*_txn`` helpers below): the quota check,
   folder lookups (``:create``), the message rows, local redirects and replies straight into
   their INBOX, the outbound-queue rows of remote ones, the vacation memory and the quota
   warning.  So a redirect or a reply is durable exactly when the delivery is: none is lost,
   none is sent for a message the MTA will retry.

Invariants
- A message is never lost to a rule: a script that fails at run time, a missing folder without
  ``:create``, a redirect that cannot go out (no relay configured, a loop), a plan that cannot
  be made at all all end in a copy in the INBOX and a log line.
- Junk (the configured header test, or ``haven deliver -j``) files into the special-use Junk
  folder and the user's script does not run for it (like a global ``sieve_before`` script that
  ends in ``stop``): no vacation reply ever answers spam.
- Quota usage counts live messages only (soft-deleted ones do not); it is read from the
  ``messages_usage`` index in the delivery's own transaction.
"""

from __future__ import annotations

import hashlib
import logging
import re
import time
import unicodedata
from dataclasses import dataclass, field
from email.utils import formatdate, make_msgid
from typing import Callable, Optional

from store import errors
from store.engines import Txn
from store.folders import create_folder_txn, get_folder_txn, normalize_name
from store.interfaces import INBOX, Quota, Recipient, SieveScriptInfo

log = logging.getLogger("haven.rules")

#: Received lines after which a message is not redirected any more (RFC 5321 §6.3 loop detection)
MAX_HOPS = 30
#: how much of the header section the junk test looks at
JUNK_SCAN_LIMIT = 256 * 1024
JUNK = "\\Junk"  # a Plan target: the account's special-use Junk folder


# -- settings --------------------------------------------------------------------------------

@dataclass(frozen=True)
class RuleSettings:
    """Server-wide settings of the rules (``[rules]`` and ``[quota]`` in haven.ini)."""
    junk_headers: tuple = (("x-spam-flag", "yes"), ("x-spam-status", "yes"))
    max_script_size: int = 65536
    max_scripts: int = 32
    quota_warn: int = 0
    quota_soft: int = 0
    quota_hard: int = 0
    #: whether redirects and vacation replies can leave ([submission] relay is set)
    outbound: bool = False
    hostname: str = "localhost"


def parse_junk_headers(text: str) -> tuple:
    """``"X-Spam-Flag: YES, X-Spam-Status: Yes"`` -> ``(("x-spam-flag", "yes"), ...)``."""
    tests = []
    for item in (text or "").split(","):
        if not item.strip():
            continue
        name, colon, value = item.partition(":")
        if not colon or not name.strip() or not value.strip():
            raise ValueError(f"junk header test {item.strip()!r} is not 'Header-Name: value'")
        tests.append((name.strip().lower(), value.strip().lower()))
    return tuple(tests)


# -- script names and storage ----------------------------------------------------------------

def check_script_name(name: str) -> str:
    """RFC 5804 §1.6: 1..128 characters, no control characters (nor U+2028/U+2029), NFC."""
    if not isinstance(name, str) or not name:
        raise errors.InvalidInput("script name missing")
    name = unicodedata.normalize("NFC", name)
    if len(name) > 128:
        raise errors.InvalidInput("script name longer than 128 characters")
    if any(unicodedata.category(c) == "Cc" or c in "\u2028\u2029" for c in name):
        raise errors.InvalidInput("script name contains control characters")
    return name


def _bump_rules(txn: Txn, account_id: int) -> None:
    txn.execute("UPDATE accounts SET rules_version = rules_version + 1 WHERE id = ?", (account_id,))


def _script_row(txn: Txn, account_id: int, name: str):
    return txn.execute("SELECT id, active, script FROM sieve_scripts WHERE account_id = ? AND name = ?",
                       (account_id, name)).fetchone()


def _s(value) -> str:
    return value.decode("utf-8") if isinstance(value, (bytes, bytearray)) else value


def list_scripts_txn(txn: Txn, account_id: int) -> list:
    rows = txn.execute("SELECT name, active, script FROM sieve_scripts WHERE account_id = ?",
                       (account_id,)).fetchall()
    out = [SieveScriptInfo(name=_s(r[0]), active=bool(r[1]), size=len(r[2].encode("utf-8"))) for r in rows]
    return sorted(out, key=lambda i: i.name)


def get_script_txn(txn: Txn, account_id: int, name: str) -> str:
    row = _script_row(txn, account_id, check_script_name(name))
    if row is None:
        raise errors.NotFound(f"no script {name}")
    return row[2]


def space_txn(txn: Txn, account_id: int, name: str, size: int, settings: RuleSettings) -> None:
    name = check_script_name(name)
    if size > settings.max_script_size:
        raise errors.TooBig(f"a script may have at most {settings.max_script_size} octets")
    if _script_row(txn, account_id, name) is None:
        count = txn.scalar("SELECT COUNT(*) FROM sieve_scripts WHERE account_id = ?", (account_id,))
        if count >= settings.max_scripts:
            raise errors.OverQuota(f"an account may have at most {settings.max_scripts} scripts")


def put_script_txn(txn: Txn, account_id: int, name: str, text: str, settings: RuleSettings) -> None:
    """``text`` was compiled by the caller already."""
    name = check_script_name(name)
    space_txn(txn, account_id, name, len(text.encode("utf-8")), settings)
    row = _script_row(txn, account_id, name)
    now = int(time.time())
    if row is None:
        txn.execute("INSERT INTO sieve_scripts (account_id, name, script, active, updated_at) VALUES (?, ?, ?, 0, ?)",
                    (account_id, name, text, now))
    else:
        txn.execute("UPDATE sieve_scripts SET script = ?, updated_at = ? WHERE id = ?", (text, now, row[0]))
        if row[1]:
            _bump_rules(txn, account_id)


def set_active_txn(txn: Txn, account_id: int, name: Optional[str]) -> None:
    if name:
        row = _script_row(txn, account_id, check_script_name(name))
        if row is None:
            raise errors.NotFound(f"no script {name}")
        txn.execute("UPDATE sieve_scripts SET active = 0 WHERE account_id = ? AND id <> ?", (account_id, row[0]))
        txn.execute("UPDATE sieve_scripts SET active = 1 WHERE id = ?", (row[0],))
    else:
        txn.execute("UPDATE sieve_scripts SET active = 0 WHERE account_id = ?", (account_id,))
    _bump_rules(txn, account_id)


def delete_script_txn(txn: Txn, account_id: int, name: str) -> None:
    row = _script_row(txn, account_id, check_script_name(name))
    if row is None:
        raise errors.NotFound(f"no script {name}")
    if row[1]:
        raise errors.PermissionDenied("the active script cannot be deleted; deactivate it first")
    txn.execute("DELETE FROM sieve_scripts WHERE id = ?", (row[0],))


def rename_script_txn(txn: Txn, account_id: int, old: str, new: str) -> None:
    old, new = check_script_name(old), check_script_name(new)
    row = _script_row(txn, account_id, old)
    if row is None:
        raise errors.NotFound(f"no script {old}")
    if old == new:
        return
    if _script_row(txn, account_id, new) is not None:
        raise errors.Exists(f"a script named {new} exists")
    txn.execute("UPDATE sieve_scripts SET name = ? WHERE id = ?", (new, row[0]))


def active_script_txn(txn: Txn, account_id: int) -> tuple:
    """``(rules_version, script text or None, the account's own addresses)`` for the pipeline."""
    account = txn.execute("SELECT a.rules_version, a.address, s.script FROM accounts a LEFT JOIN sieve_scripts s "
                          "ON s.account_id = a.id AND s.active = 1 WHERE a.id = ?", (account_id,)).fetchone()
    if account is None:
        raise errors.NotFound("no such account")
    addresses = [account[1]] + [r[0] for r in txn.execute("SELECT address FROM aliases WHERE account_id = ?",
                                                          (account_id,)).fetchall()]
    return account[0] or 0, account[2], tuple(a.lower() for a in addresses if a)


def drop_account_txn(txn: Txn, account_id: int) -> None:
    txn.execute("DELETE FROM sieve_scripts WHERE account_id = ?", (account_id,))
    txn.execute("DELETE FROM vacation_replies WHERE account_id = ?", (account_id,))


def purge_vacation_txn(txn: Txn, now: int) -> int:
    txn.execute("DELETE FROM vacation_replies WHERE expires_at < ?", (now,))
    return txn.rowcount


# -- quotas ----------------------------------------------------------------------------------

def _limits_txn(txn: Txn, account_id: int, settings: RuleSettings) -> tuple:
    row = txn.execute("SELECT quota_warn, quota_soft, quota_hard, quota_warned FROM accounts WHERE id = ?",
                      (account_id,)).fetchone()
    if row is None:
        raise errors.NotFound("no such account")
    warn = settings.quota_warn if row[0] is None else row[0]
    soft = settings.quota_soft if row[1] is None else row[1]
    hard = settings.quota_hard if row[2] is None else row[2]
    return warn, soft, hard, bool(row[3])


def usage_txn(txn: Txn, account_id: int) -> tuple:
    row = txn.execute("SELECT COALESCE(SUM(size), 0), COUNT(*) FROM messages WHERE account_id = ? AND deleted_at = 0",
                      (account_id,)).fetchone()
    return int(row[0]), int(row[1])


def quota_txn(txn: Txn, account_id: int, settings: RuleSettings) -> Quota:
    warn, soft, hard, _warned = _limits_txn(txn, account_id, settings)
    used, count = usage_txn(txn, account_id)
    return Quota(used_bytes=used, used_messages=count, warn=warn, soft=soft, hard=hard)


def set_quota_txn(txn: Txn, account_id: int, limits: dict, settings: RuleSettings) -> Quota:
    for key in ("warn", "soft", "hard"):
        value = limits.get(key)
        if value is None:
            continue
        if value < -1:
            raise errors.InvalidInput(f"{key}: a size is 0 (unlimited), -1 (server default) or more")
        txn.execute(f"UPDATE accounts SET quota_{key} = ? WHERE id = ?", (None if value == -1 else value, account_id))
    return quota_txn(txn, account_id, settings)


def check_append_quota_txn(txn: Txn, account_id: int, size: int, settings: RuleSettings) -> None:
    """APPEND/COPY: OverQuota when ``size`` more octets would pass the hard limit."""
    _warn, _soft, hard, _warned = _limits_txn(txn, account_id, settings)
    if hard > 0 and usage_txn(txn, account_id)[0] + size > hard:
        raise errors.OverQuota("over the mailbox's hard quota")


# -- resolve ---------------------------------------------------------------------------------

def resolve_for_delivery_txn(txn: Txn, original: str) -> tuple:
    """``(Recipient, rules_version, has_active_script)``."""
    from store.accounts import resolve_recipient_txn
    rcpt = resolve_recipient_txn(txn, original)
    row = txn.execute("SELECT a.rules_version, s.id FROM accounts a LEFT JOIN sieve_scripts s "
                      "ON s.account_id = a.id AND s.active = 1 WHERE a.id = ?", (rcpt.account_id,)).fetchone()
    return rcpt, (row[0] or 0) if row else 0, bool(row and row[1] is not None)


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
    prepared: object  # store.messages.PreparedMessage
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
              settings: RuleSettings, prepare: Callable, now: float) -> Plan:
    """The rules' verdict for one recipient.  ``script`` is a compiled Sieve script or None;
    ``prepare(raw)`` writes a blob and returns its PreparedMessage (for outgoing messages)."""
    plan = Plan()
    if junk:
        plan.stores.append(Copy(JUNK))
        return plan
    if script is None:
        plan.stores.append(Copy(INBOX))
        return plan
    from formats import sieve
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
    return plan


def _vacation(plan: Plan, action, raw: bytes, rcpt: Recipient, settings: RuleSettings, prepare, now) -> None:
    from formats import sieve
    to = (action.recipient or "").strip().strip("<>").lower()
    if not to:
        return
    reply = sieve.build_vacation_reply(action, raw, rcpt.address, settings.hostname, now)
    key = hashlib.sha256(f"{action.handle}\0{to}".encode("utf-8")).hexdigest()
    # RFC 5230 §5.1 / RFC 3834 §3.3: the reply's envelope sender is null, so nothing answers it
    plan.outgoing.append(Outgoing("vacation", "", to, prepare(reply), vacation_key=key,
                                  vacation_seconds=max(1, int(action.seconds))))


# -- apply (DB pool, inside the delivery's transaction) --------------------------------------

def _junk_folder_txn(txn: Txn, account_id: int):
    row = txn.execute("SELECT name FROM folders WHERE account_id = ? AND special_use = ? AND deleted_at = 0 "
                      "AND kind = 'mail' ORDER BY id LIMIT 1", (account_id, JUNK)).fetchone()
    if row is not None:
        return get_folder_txn(txn, account_id, row[0])
    try:
        return get_folder_txn(txn, account_id, "Junk")
    except errors.NotFound:
        return create_folder_txn(txn, account_id, "Junk", "mail", JUNK)


def target_folder_txn(txn: Txn, account_id: int, item: Copy, notes: list):
    """The folder for one copy; INBOX (with a note) when the target is missing or unusable."""
    if item.target == JUNK:
        return _junk_folder_txn(txn, account_id)
    try:
        name = normalize_name(item.target)
        folder = get_folder_txn(txn, account_id, name)
        if folder.kind == "mail":
            return folder
        notes.append(f"fileinto {item.target}: not a mail folder; kept in INBOX")
    except errors.NotFound:
        if item.create:
            try:
                return create_folder_txn(txn, account_id, name, "mail", None)
            except errors.StoreError as e:
                notes.append(f"fileinto :create {item.target}: {e}; kept in INBOX")
        else:
            notes.append(f"fileinto {item.target}: no such folder; kept in INBOX")
    except errors.InvalidInput as e:
        notes.append(f"fileinto {item.target}: {e}; kept in INBOX")
    return get_folder_txn(txn, account_id, INBOX)


def quota_gate_txn(txn: Txn, account_id: int, size: int, settings: RuleSettings) -> Optional[tuple]:
    """Before storing: raises OverQuota past the hard limit; returns the state the warning step
    needs ``(warn, used_before, warned, hard)``, or None when the account has no limits."""
    warn, _soft, hard, warned = _limits_txn(txn, account_id, settings)
    if warn <= 0 and hard <= 0:
        return None
    used = usage_txn(txn, account_id)[0]
    if hard > 0 and used + size > hard:
        raise errors.OverQuota("mailbox full")
    return warn, used, warned, hard


def after_store_txn(txn: Txn, account_id: int, address: str, gate: Optional[tuple], added: int,
                    settings: RuleSettings, prepare: Callable) -> Optional[tuple]:
    """The warn transition: one warning message when usage crosses ``warn`` (again only after it
    dropped below).  Returns ``(folder, uid)`` of the warning, or None."""
    if gate is None:
        return None
    warn, used, warned, hard = gate
    if warn <= 0:
        return None
    now_used = used + added
    if now_used < warn:
        if warned:
            txn.execute("UPDATE accounts SET quota_warned = 0 WHERE id = ?", (account_id,))
        return None
    if warned and used >= warn:
        return None
    txn.execute("UPDATE accounts SET quota_warned = 1 WHERE id = ?", (account_id,))
    from store.messages import bump_modseq_txn, ensure_blob_txn, insert_message_txn
    msg = prepare(quota_warning(address, now_used, warn, hard, settings.hostname))
    ensure_blob_txn(txn, msg)
    inbox = get_folder_txn(txn, account_id, INBOX)
    modseq = bump_modseq_txn(txn, account_id)
    return inbox, insert_message_txn(txn, account_id, inbox.id, msg, modseq), modseq


def human_size(n: int) -> str:
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n} bytes"


def quota_warning(address: str, used: int, warn: int, hard: int, hostname: str) -> bytes:
    hard = f" Above {human_size(hard)} new mail is refused." if hard > 0 else ""
    body = (f"Your mailbox {address} now holds {human_size(used)}, more than the warning level of "
            f"{human_size(warn)}.\r\n\r\nPlease delete or archive mail you no longer need "
            f"(and empty the Trash).{hard}\r\n")
    return (f"From: Mail System <postmaster@{hostname}>\r\n"
            f"To: <{address}>\r\n"
            f"Subject: Your mailbox is almost full\r\n"
            f"Date: {formatdate(localtime=False)}\r\n"
            f"Message-ID: {make_msgid(domain=hostname)}\r\n"
            f"Auto-Submitted: auto-generated\r\n"
            f"MIME-Version: 1.0\r\n"
            f"Content-Type: text/plain; charset=utf-8\r\n"
            f"Content-Transfer-Encoding: 8bit\r\n\r\n{body}").encode("utf-8")


def send_outgoing_txn(txn: Txn, account_id: int, out: Outgoing, now: int, settings: RuleSettings,
                      events: list) -> str:
    """Send one redirect or vacation reply: into the INBOX of a local account directly (no
    relay needed; ``events`` gets its change), else into the outbound queue.  A vacation reply
    goes only when this sender was not answered in the period (the memory row is written in
    the same transaction).  Returns "local", "queued" or why it was not sent."""
    from store.accounts import resolve_recipient_txn
    from store.messages import bump_modseq_txn, ensure_blob_txn, insert_message_txn
    from store.queue import enqueue_txn
    if out.kind == "vacation":
        row = txn.execute("SELECT expires_at FROM vacation_replies WHERE account_id = ? AND sender_key = ?",
                          (account_id, out.vacation_key)).fetchone()
        if row is not None and row[0] > now:
            return "already answered in this period"
    try:
        target = resolve_recipient_txn(txn, out.recipient)
    except (errors.NotFound, errors.InvalidInput):
        target = None
    if target is None and not settings.outbound:
        return "not sent: no relay configured ([submission] relay)"
    if target is not None:
        try:
            quota_gate_txn(txn, target.account_id, out.prepared.size, settings)
        except errors.OverQuota:
            return "not delivered: the recipient is over quota"
    if out.kind == "vacation":
        txn.execute("DELETE FROM vacation_replies WHERE account_id = ? AND sender_key = ?",
                    (account_id, out.vacation_key))
        txn.execute("INSERT INTO vacation_replies (account_id, sender_key, expires_at) VALUES (?, ?, ?)",
                    (account_id, out.vacation_key, now + out.vacation_seconds))
    if target is None:
        enqueue_txn(txn, account_id, out.mail_from, [out.recipient], out.prepared)
        return "queued"
    # A local recipient gets it in the INBOX, without running its own rules: a redirect chain
    # or two vacation scripts answering each other cannot loop.
    ensure_blob_txn(txn, out.prepared)
    inbox = get_folder_txn(txn, target.account_id, INBOX)
    modseq = bump_modseq_txn(txn, target.account_id)
    insert_message_txn(txn, target.account_id, inbox.id, out.prepared, modseq)
    events.append((target.account_id, inbox.id, modseq))
    return "local"
