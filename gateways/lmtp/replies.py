"""The LMTP gateway's one table from :mod:`store.errors` to wire replies (RFC 5321 §4.2,
RFC 3463 enhanced codes).  Nothing else in the gateway spells a store error as a reply.

A store failure is always a 4xx: the MTA keeps the message and retries.  Only answers that are
certain to stay the same on a retry (no such user, too big, over quota) are 5xx.
"""

from __future__ import annotations

from store import errors

TEMPFAIL = "451 4.3.0 Temporary failure, try again later"
TOO_BIG = "552 5.3.4 Message too big"
SIZE_EXCEEDED = "552 5.3.4 Message size exceeds fixed maximum message size"
TOO_MANY_RECIPIENTS = "452 4.5.3 Too many recipients"
BAD_SENDER = "553 5.1.7 Bad sender address syntax"
BAD_RECIPIENT = "553 5.1.3 Bad recipient address syntax"
NEED_LHLO = "503 5.5.1 Error: send LHLO first"
NO_HELO = '500 5.5.1 Error: command "{0}" not recognized; LMTP starts with LHLO'
NO_AUTH = "502 5.5.1 Error: AUTH not available over LMTP"
NO_VALID_RECIPIENTS = "503 5.5.1 Error: need RCPT command"
INTERNAL = "421 4.3.0 {0} Internal error, closing connection"


def rcpt_error(err: BaseException, address: str) -> str:
    """The reply to ``RCPT TO:<address>`` when :meth:`Delivery.add_recipient` raised ``err``."""
    if isinstance(err, errors.NotFound):
        return f"550 5.1.1 <{address}>: Recipient address rejected: User unknown"
    if isinstance(err, errors.InvalidInput):
        return f"553 5.1.3 <{address}>: Recipient address rejected: bad address syntax"
    if isinstance(err, errors.OverQuota):
        return f"552 5.2.2 <{address}>: Recipient address rejected: mailbox full"
    if isinstance(err, errors.PermissionDenied):
        return f"550 5.7.1 <{address}>: Recipient address rejected: delivery not permitted"
    return f"451 4.3.0 <{address}>: Temporary failure, try again later"


def delivery_error(err: BaseException, address: str) -> str:
    """The post-DATA reply for one recipient whose :class:`DeliveryResult` carries ``err``
    (RFC 2033 §4.2)."""
    if isinstance(err, errors.OverQuota):
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
