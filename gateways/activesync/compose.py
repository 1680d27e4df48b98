"""SendMail, SmartReply and SmartForward ([MS-ASCMD] 2.2.1.17, 2.2.1.19, 2.2.1.20): a phone
sends mail through the same store operation as SMTP submission (Store.begin_submission: the
sender check, the soft quota, the rate limits, local delivery and the queue for the relay).

Invariants
- A ClientId is sent once: a repeated one (the phone retrying after a lost answer) is Status
  118 and sends nothing.
- The recipients are the message's To, Cc and Bcc; the Bcc field is taken out of what is sent
  (phones leave it in) and kept in the copy saved to ``\\Sent``.
- ``SaveInSentItems`` (or the query's ``SaveInSent=T``) appends the message, read, to the
  account's ``\\Sent`` folder: phones expect the server to do it (unlike IMAP clients, which
  save their own copy; SMTP submission never does).
- The original of a Smart* (FolderId/ItemId, a Search result's LongId, or the query's
  CollectionId/ItemId/LongId) must be in one of the account's own folders.
- Smart* without ``ReplaceMime`` add the original: a forward gets it attached (message/rfc822),
  a reply quotes its text under the phone's; the source message gets ``\\Answered`` or
  ``$Forwarded``.
- Errors are the ComposeMail Status codes: 113 over quota, 115 rate limited, 116 a recipient
  that does not exist, 119 no recipient, 120 refused (sender, relay), 122 too big, 110/111
  server errors; a successful send is an empty 200.
"""

from __future__ import annotations

import email.utils
import hashlib
import logging
import re
from typing import Optional

from formats import mime
from store import errors

from .xmlutil import element, text

log = logging.getLogger("haven.activesync")

SERVER_ERROR, RETRY_LATER, OVER_QUOTA, SEND_QUOTA, UNRESOLVED = 110, 111, 113, 115, 116
ALREADY_SENT, NO_RECIPIENT, SUBMISSION_FAILED, TOO_LARGE, INVALID_MIME = 118, 119, 120, 122, 107
#: the ClientId table's collection for sent mail (store: eas_client_ids)
SENT_COLLECTION = 0
_FIELD_START = re.compile(rb"(?im)^(bcc)[ \t]*:")


def status(cmd: str, code: int):
    return element("ComposeMail", cmd, element("ComposeMail", "Status", text=code))


def split_header(raw: bytes) -> tuple:
    """(header section with its final empty line, body)."""
    for sep in (b"\r\n\r\n", b"\n\n"):
        i = raw.find(sep)
        if i >= 0:
            return raw[:i + len(sep)], raw[i + len(sep):]
    return raw, b""


def without_bcc(raw: bytes) -> bytes:
    """``raw`` without its Bcc field (and the field's continuation lines)."""
    header, body = split_header(raw)
    lines = header.splitlines(keepends=True)
    out, skipping = [], False
    for line in lines:
        if skipping and line[:1] in (b" ", b"\t"):
            continue
        skipping = bool(_FIELD_START.match(line))
        if not skipping:
            out.append(line)
    return b"".join(out) + body


def recipients(raw: bytes) -> list:
    header = split_header(raw)[0]
    values = []
    for name in ("to", "cc", "bcc"):
        for field_name, value in mime.header_fields(header):
            if field_name.lower() == name:
                values.append(mime.decode_header_value(value.partition(b":")[2].decode("utf-8", "replace")))
    found = []
    for _name, address in email.utils.getaddresses(values):
        address = address.strip()
        if "@" in address and address.lower() not in (a.lower() for a in found):
            found.append(address)
    return found


def sender(raw: bytes, account) -> str:
    header = split_header(raw)[0]
    value = mime.header_value(header, "from") or ""
    addresses = [a for _n, a in email.utils.getaddresses([mime.decode_header_value(value)]) if "@" in a]
    return addresses[0] if addresses else account.address


class Compose:
    def __init__(self, max_message_size: int):
        self.max_message_size = max_message_size

    async def send_mail(self, ctx):
        return await self._send(ctx, "SendMail", None)

    async def smart_reply(self, ctx):
        return await self._send(ctx, "SmartReply", "reply")

    async def smart_forward(self, ctx):
        return await self._send(ctx, "SmartForward", "forward")

    async def _send(self, ctx, cmd: str, smart: Optional[str]):
        store, account, device_id = ctx.store, ctx.account, ctx.request.device_id
        body = ctx.body
        if body is None:  # message/rfc822 in the body: the query carries the options
            raw, client_id, save = ctx.raw, None, ctx.request.save_in_sent
            source = None
            replace = True
            if not raw:
                return status(cmd, INVALID_MIME)
        else:
            mime_el = body.find("{ComposeMail}Mime")
            if mime_el is None or not mime_el.text:
                return status(cmd, INVALID_MIME)
            raw = mime_el.text if isinstance(mime_el.text, bytes) else mime_el.text.encode("utf-8")
            client_id = text(body, "ComposeMail", "ClientId")
            save = body.find("{ComposeMail}SaveInSentItems") is not None or ctx.request.save_in_sent
            replace = body.find("{ComposeMail}ReplaceMime") is not None
            source = body.find("{ComposeMail}Source")
        raw = raw.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
        if len(raw) > self.max_message_size:
            return status(cmd, TOO_LARGE)
        if client_id and await store.server_id_for_client_id(account.id, device_id, SENT_COLLECTION, client_id):
            log.info("activesync %s: %s ClientId %s was sent already", account.address, cmd, client_id[:64])
            return status(cmd, ALREADY_SENT)
        original = None
        if smart:
            original = await self._original(ctx, source)
            if original is None and not replace:
                return status(cmd, 150)  # the item to reply to or forward was not found
            if original is not None and not replace:
                raw = quoted(raw, original[1]) if smart == "reply" else forwarded(raw, original[1])
        to = recipients(raw)
        if not to:
            return status(cmd, NO_RECIPIENT)
        try:
            submission = await store.begin_submission(account.id, sender(raw, account))
            added = 0
            for address in to:
                try:
                    await submission.add_recipient(address)
                    added += 1
                except errors.NotFound:
                    log.info("activesync %s: %s to unknown %s", account.address, cmd, address)
            if not added:
                return status(cmd, UNRESOLVED)
            result = await submission.commit(without_bcc(raw))
        except errors.OverQuota as e:
            log.info("activesync %s: %s refused: %s", account.address, cmd, e)
            return status(cmd, OVER_QUOTA)
        except errors.RateLimited as e:
            log.info("activesync %s: %s refused: %s", account.address, cmd, e)
            return status(cmd, SEND_QUOTA)
        except errors.TooBig:
            return status(cmd, TOO_LARGE)
        except (errors.PermissionDenied, errors.InvalidInput) as e:
            log.info("activesync %s: %s refused: %s", account.address, cmd, e)
            return status(cmd, SUBMISSION_FAILED)
        except errors.TemporaryFailure as e:
            log.warning("activesync %s: %s failed for now: %s", account.address, cmd, e)
            return status(cmd, RETRY_LATER)
        if result.refused is not None:
            return status(cmd, SUBMISSION_FAILED)
        log.info("activesync %s: %s sent (%d local, %d remote, %d octets)", account.address, cmd,
                 len(result.local), len(result.remote), result.size)
        if client_id:
            await store.remember_client_id(account.id, device_id, SENT_COLLECTION, client_id,
                                           str(result.queue_id or 0))
        if original is not None:
            folder_id, uid = original[0], original[2]
            flag = "\\Answered" if smart == "reply" else "$Forwarded"
            try:
                await store.store_flags(account.id, folder_id, [uid], "add", [flag])
            except errors.StoreError as e:
                log.warning("activesync %s: could not flag the original: %s", account.address, e)
        if save:
            await self._save_sent(ctx, raw)
        return None  # an empty 200: sent

    async def _original(self, ctx, source):
        """(folder id, raw bytes, uid) of the Source of a Smart* command, or None."""
        folder_id = text(source, "ComposeMail", "FolderId") if source is not None else None
        item_id = text(source, "ComposeMail", "ItemId") if source is not None else None
        long_id = text(source, "ComposeMail", "LongId") if source is not None else None
        if folder_id is None and long_id is None:  # 14.0 and older name it in the query
            folder_id = ctx.request.parameters.get("CollectionId")
            item_id = ctx.request.parameters.get("ItemId")
            long_id = ctx.request.parameters.get("LongId") if folder_id is None else None
        if folder_id is None and long_id:  # a Search result's LongId is the message's ServerId
            folder_id, item_id = long_id.partition(":")[0], long_id
        if not folder_id or not item_id or not folder_id.isdigit():
            return None
        folder, _, uid = item_id.partition(":")
        if folder != folder_id or not uid.isdigit():
            return None
        if int(folder_id) not in {f.id for f in await ctx.store.list_folders(ctx.account.id, "mail")}:
            return None  # not a folder of this account's
        pairs = await ctx.store.fetch_messages_with_bodies(int(folder_id), [int(uid)])
        if not pairs:
            return None
        return int(folder_id), pairs[0][1], int(uid)

    async def _save_sent(self, ctx, raw: bytes) -> None:
        sent = next((f for f in await ctx.store.list_folders(ctx.account.id, "mail") if f.special_use == "\\Sent"),
                    None)
        if sent is None:
            log.warning("activesync %s: no \\Sent folder to save a sent message in", ctx.account.address)
            return
        try:
            await ctx.store.append_message(ctx.account.id, sent.id, raw, ["\\Seen"])
        except errors.StoreError as e:  # sent is sent; the copy is a convenience
            log.warning("activesync %s: the sent message was not saved: %s", ctx.account.address, e)


# -- Smart*: the original added ----------------------------------------------------------------

def _boundary(raw: bytes) -> bytes:
    return b"haven-" + hashlib.sha1(raw).hexdigest()[:24].encode()


def forwarded(raw: bytes, original: bytes) -> bytes:
    """The phone's message with the original attached as message/rfc822."""
    header, body = split_header(raw)
    boundary = _boundary(raw + original)
    kept, content = _content_fields(header)
    inner = content + b"\r\n" + body
    return (kept + b"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"" + boundary + b"\"\r\n\r\n"
            + b"--" + boundary + b"\r\n" + inner + b"\r\n--" + boundary + b"\r\n"
            + b"Content-Type: message/rfc822\r\nContent-Disposition: attachment\r\n\r\n" + original
            + b"\r\n--" + boundary + b"--\r\n")


def quoted(raw: bytes, original: bytes) -> bytes:
    """The phone's reply with the original's text quoted under it, when the reply is plain text
    in one part; otherwise the reply as it is."""
    header, body = split_header(raw)
    ctype = (mime.header_value(header, "content-type") or "text/plain").lower()
    if not ctype.startswith("text/plain"):
        return raw
    analyzed = mime.analyze(original)
    parts = [p for p in (mime.preview_part(analyzed["structure"]),) if p is not None]
    if not parts:
        return raw
    old = mime.part_text(original, parts[0])
    if parts[0].get("subtype") == "html":
        old = mime.html_to_text(old)
    reply = mime.part_text(raw, analyzed_body(header, len(header), len(raw)))
    env = analyzed["envelope"] or [None] * 10
    who = mime.decode_header_value(((env[2] or [[None, None, "", ""]])[0][0]) or "") or "the sender"
    text_out = reply.rstrip("\r\n") + "\r\n\r\n" + f"{who} wrote:\r\n" + "".join(
        "> " + line + "\r\n" for line in old.replace("\r\n", "\n").rstrip("\n").split("\n"))
    kept, _content = _content_fields(header)
    return (kept + b"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n"
            b"Content-Transfer-Encoding: 8bit\r\n\r\n" + text_out.encode("utf-8"))


def analyzed_body(header: bytes, start: int, end: int) -> dict:
    """A leaf part over ``raw[start:end]`` with the header's Content-Type and encoding."""
    ctype = mime.header_value(header, "content-type") or "text/plain"
    charset = re.search(r'charset="?([^";\s]+)', ctype, re.I)
    return {"body_start": start, "end": end, "encoding": (mime.header_value(header, "content-transfer-encoding")
                                                          or "7bit").strip(),
            "params": [["charset", charset.group(1)]] if charset else []}


def _content_fields(header: bytes) -> tuple:
    """(the header without its MIME fields, those fields), both CRLF-terminated lines."""
    lines = header.rstrip(b"\r\n").split(b"\r\n")
    kept, content, current = [], [], None
    for line in lines:
        if line[:1] in (b" ", b"\t") and current is not None:
            current.append(line)
            continue
        name = line.split(b":", 1)[0].strip().lower()
        current = content if name.startswith(b"content-") or name == b"mime-version" else kept
        if name != b"mime-version":
            current.append(line)
        else:
            current = None
    kept_b = b"".join(line + b"\r\n" for line in kept)
    content_b = b"".join(line + b"\r\n" for line in content) or b"Content-Type: text/plain; charset=utf-8\r\n"
    return kept_b, content_b

