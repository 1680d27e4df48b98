"""Vacation (RFC 5230): whether a reply may be sent at all, and the reply message itself.

Both are pure: the interpreter calls :func:`refusal` while running a script; the delivery
pipeline calls :func:`build_vacation_reply` once it has decided, from its own record of
earlier replies (RFC 5230 §4.2), that this sender gets one now.
"""
from __future__ import annotations

from datetime import datetime, timezone
from email.message import EmailMessage
from email.parser import BytesHeaderParser, HeaderParser
from email.policy import SMTP, compat32
from email.utils import format_datetime, getaddresses
import hashlib
import re
from typing import Callable, Iterable, List, Optional

from formats.sieve.body import body_offset
from formats.sieve.headers import decode_words, header_text, unfold
from formats.sieve.model import Vacation

#: RFC 2369 / RFC 2919 list header fields: a message carrying one came through a list
LIST_HEADERS = ("list-id", "list-help", "list-subscribe", "list-unsubscribe", "list-post",
                "list-owner", "list-archive")
#: RFC 5230 §4.6: one of the user's addresses must appear in one of these
RECIPIENT_HEADERS = ("to", "cc", "bcc", "resent-to", "resent-cc", "resent-bcc")
#: RFC 3834 §2 / RFC 5230 §4.7: senders that are programs, not people
_SYSTEM_SENDERS = frozenset({"mailer-daemon", "listserv", "majordomo"})
_BULK_PRECEDENCE = frozenset({"bulk", "list", "junk"})
#: a long thread's References keeps its first and its most recent ids (RFC 5322 §3.6.4)
MAX_REFERENCES = 20
AUTO_SUBMITTED = "auto-replied (vacation)"           # RFC 3834 §5, RFC 5230 §5
#: the reply must survive relays without 8BITMIME: non-ASCII text goes quoted-printable/base64
_POLICY = SMTP.clone(cte_type="7bit")

_KEYWORD = re.compile(r"\s*([A-Za-z0-9-]*)")
_MSG_ID = re.compile(r"<[^<>\s]+>")


def own_address(address: str, own: Iterable[str]) -> bool:
    """True if ``address`` is one of ``own`` (lower-case), also once a "+detail" is removed
    from its local part (RFC 5233): mail to me+news@example.com is mail to me."""
    address = address.strip().lower()
    if address in own:
        return True
    local, at, domain = address.rpartition("@")
    if at and "+" in local:
        return "%s@%s" % (local.split("+", 1)[0], domain) in own
    return False


def refusal(recipient: str, header_values: Callable[[str], List[str]],
            own: frozenset) -> Optional[str]:
    """Why no reply may go to ``recipient`` (the envelope sender) for this message, or None.

    ``header_values(name)`` gives the message's unfolded raw values of a header field;
    ``own`` holds the user's addresses, lower-case."""
    if not recipient or recipient == "<>":
        return "the envelope sender is empty (a bounce or a notification)"
    if not recipient.isascii():
        return "the sender %s is not an ASCII address (SMTPUTF8 replies are not supported)" \
            % recipient
    local = recipient.rpartition("@")[0].lower() or recipient.lower()
    if local in _SYSTEM_SENDERS or local.startswith("owner-") or local.endswith("-request"):
        return "the sender %s is a mailer or a list" % recipient
    if own_address(recipient, own):
        return "the sender %s is the user's own address" % recipient
    for value in header_values("auto-submitted"):
        keyword = _KEYWORD.match(value).group(1).lower()
        if keyword != "no":                         # RFC 3834 §2, RFC 5230 §4.7
            return "the message is Auto-Submitted: %s" % value.strip()
    for value in header_values("precedence"):
        if value.strip().lower() in _BULK_PRECEDENCE:
            return "the message has Precedence: %s" % value.strip()
    for name in LIST_HEADERS:
        if header_values(name):
            return "the message came through a mailing list (%s)" % name
    for _, address in getaddresses([v for name in RECIPIENT_HEADERS
                                    for v in header_values(name)]):
        if address and own_address(address, own):
            return None
    return "none of the user's addresses is in To, Cc, Bcc or Resent-To/Cc/Bcc"


# --- the reply -------------------------------------------------------------------------------

def build_vacation_reply(vacation: Vacation, original_raw: bytes, user_address: str,
                         hostname: str, now: float) -> bytes:
    """The complete reply (RFC 5322, CRLF line endings) to send to ``vacation.recipient``
    with an empty reverse-path.

    ``original_raw``: the message being replied to (only its header is read);
    ``user_address``: the From when the script gave no usable :from; ``hostname``: the right
    side of the new Message-ID; ``now``: the Date, as a Unix time. The Message-ID is derived
    from the handle, the recipient, ``now`` and the original's Message-ID, so building the
    same reply twice gives the same bytes.
    """
    end = body_offset(original_raw)
    original = BytesHeaderParser(policy=compat32).parsebytes(
        original_raw if end is None else original_raw[:end])

    def values(name: str) -> List[str]:
        return [unfold(header_text(v)) for k, v in original.raw_items() if k.lower() == name]

    original_id = _first_id(values("message-id"))
    subject = vacation.subject
    if subject is None:                             # RFC 5230 §4.3, RFC 3834 §3.1.5
        subjects = values("subject")
        subject = "Auto: " + (decode_words(subjects[0]) if subjects and subjects[0].strip()
                              else "(no subject)")
    reply = EmailMessage(policy=_POLICY)
    reply["From"] = _from_header(vacation.from_addr, user_address)
    reply["To"] = vacation.recipient
    reply["Subject"] = _one_line(subject)
    reply["Date"] = format_datetime(datetime.fromtimestamp(now, timezone.utc))
    token = hashlib.sha256("\0".join(
        (vacation.handle, vacation.recipient, repr(now), original_id or "")).encode("utf-8"))
    reply["Message-ID"] = "<vacation.%s@%s>" % (token.hexdigest()[:32], hostname)
    if original_id:                                 # RFC 5230 §5, RFC 5322 §3.6.4
        reply["In-Reply-To"] = original_id
        reply["References"] = " ".join(_references(values, original_id))
    reply["Auto-Submitted"] = AUTO_SUBMITTED
    if not vacation.mime:
        reply.set_content(_with_final_newline(vacation.reason.replace("\r\n", "\n")),
                          charset="utf-8")          # adds MIME-Version
        return reply.as_bytes()
    reply["MIME-Version"] = "1.0"
    head = b"".join(_POLICY.fold_binary(name, value) for name, value in reply.items())
    return head + _mime_entity(vacation.reason)


def _mime_entity(reason: str) -> bytes:
    """RFC 5230 §4.5 (:mime): ``reason`` is a MIME entity; its Content-* header fields join
    the reply's header and its body is sent as given (line endings made CRLF)."""
    text = reason.replace("\r\n", "\n")
    entity = HeaderParser(policy=compat32).parsestr(text, headersonly=True)
    body = entity.get_payload()
    if not isinstance(body, str):
        body = ""
    lines = []
    names = set()
    for name, value in entity.items():
        if name.lower().startswith("content-"):
            names.add(name.lower())
            lines.append("%s: %s" % (name, str(value).strip()))
    if "content-type" not in names:
        lines.append("Content-Type: text/plain; charset=utf-8")
    if "content-transfer-encoding" not in names and not body.isascii():
        lines.append("Content-Transfer-Encoding: 8bit")
    head = "".join(line.replace("\n", "\r\n") + "\r\n" for line in lines)
    return (head + "\r\n" + _with_final_newline(body).replace("\n", "\r\n")).encode("utf-8")


def _from_header(from_addr: Optional[str], user_address: str) -> str:
    """:from when it is one plain address with or without a display name, else the user's."""
    if from_addr:
        from_addr = _one_line(from_addr)
        parsed = getaddresses([from_addr])
        if len(parsed) == 1 and "@" in parsed[0][1] and parsed[0][1].isascii():
            return from_addr
    return user_address


def _references(values, original_id: str) -> List[str]:
    ids = _MSG_ID.findall(" ".join(values("references")))
    if not ids:
        in_reply_to = _MSG_ID.findall(" ".join(values("in-reply-to")))
        ids = in_reply_to if len(in_reply_to) == 1 else []
    if len(ids) >= MAX_REFERENCES:
        ids = ids[:1] + ids[-(MAX_REFERENCES - 2):]
    return ids + [original_id]


def _first_id(values: List[str]) -> Optional[str]:
    for value in values:
        found = _MSG_ID.search(value)
        if found:
            return found.group(0)
    return None


_LINE_BREAKS = re.compile(r"\s*[\r\n]+\s*")


def _one_line(value: str) -> str:
    """A header value never carries a line break of its own (no header injection)."""
    return _LINE_BREAKS.sub(" ", value).strip()


def _with_final_newline(text: str) -> str:
    return text if text.endswith("\n") else text + "\n"
