"""The LMTP gateway's replies, and its store-error → reply table after DATA (RFC 5321 §4.2,
RFC 2033 §4.2, RFC 3463 enhanced codes).  Nothing else in the gateway spells a store error as a
reply.  What both SMTP gateways answer alike, the RCPT table (``rcpt_error``) and replies such
as ``TEMPFAIL``, is defined in :mod:`gateways.common.smtpwire` and re-exported here, so the handler
finds every reply in one place.

A store failure is always a 4xx: the MTA keeps the message and retries.  Only answers that are
certain to stay the same on a retry (no such user, too big, over quota) are 5xx.
"""

from __future__ import annotations

from gateways.common.smtpwire import (BAD_RECIPIENT, BAD_SENDER, SIZE_EXCEEDED, TEMPFAIL,  # noqa: F401 (re-exported)
                               TOO_MANY_RECIPIENTS, rcpt_error)
from store import errors

NEED_LHLO = "503 5.5.1 Error: send LHLO first"
NO_HELO = '500 5.5.1 Error: command "{0}" not recognized; LMTP starts with LHLO'
NO_AUTH = "502 5.5.1 Error: AUTH not available over LMTP"


def reply_text(text: str, limit: int = 400) -> str:
    """A reason from a user's script as one line of printable ASCII (RFC 5321 §4.2)."""
    text = " ".join(str(text).split())
    text = "".join(c if " " <= c <= "~" else "?" for c in text)
    return text[:limit] or "Rejected"


def delivery_error(err: BaseException, address: str, over_quota_temporary: bool = False) -> str:
    """The post-DATA reply for one recipient whose :class:`DeliveryResult` carries ``err``
    (RFC 2033 §4.2).  A Sieve reject/ereject is the preferred per-recipient 550 5.7.1 of
    RFC 5429 §2.1, with the script's reason; over the hard quota is 552 5.2.2, or 452 4.2.2
    with ``[lmtp] over_quota = temporary`` (RFC 3463: mailbox full)."""
    if isinstance(err, errors.Rejected):
        return f"550 5.7.1 <{address}> {reply_text(str(err))}"
    if isinstance(err, errors.OverQuota):
        if over_quota_temporary:
            return f"452 4.2.2 <{address}> Mailbox full, try again later"
        return f"552 5.2.2 <{address}> Mailbox full"
    if isinstance(err, errors.TooBig):
        return f"552 5.3.4 <{address}> Message too big"
    if isinstance(err, errors.NotFound):
        return f"550 5.1.1 <{address}> User unknown"
    return f"451 4.3.0 <{address}> Temporary failure, try again later"


def commit_error(err: BaseException, address: str) -> str:
    """The reply for every recipient when :meth:`Delivery.commit` itself raised ``err``: only a
    verdict about the message as a whole (too big, over quota) is permanent; anything else,
    NotFound included, is the store failing and therefore 4xx (DESIGN: never a lost message)."""
    if isinstance(err, (errors.TooBig, errors.OverQuota)):
        return delivery_error(err, address)
    return f"451 4.3.0 <{address}> Temporary failure, try again later"


def delivered(address: str, queue_id: str) -> str:
    return f"250 2.0.0 <{address}> Ok: delivered as {queue_id}"
