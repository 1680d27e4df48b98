"""The submission gateway's replies, and its one table from :mod:`store.errors` to them
(RFC 5321 §4.2, RFC 3463 enhanced codes, RFC 4954 for AUTH).

A store failure is always a 4xx (the client keeps the message and retries); only answers that
stay the same on a retry are 5xx.
"""

from __future__ import annotations

from store import errors

TEMPFAIL = "451 4.3.0 Temporary failure, try again later"
AUTH_OK = "235 2.7.0 Authentication successful"
AUTH_INVALID = "535 5.7.8 Authentication credentials invalid"
AUTH_TEMPFAIL = "454 4.7.0 Temporary authentication failure"
AUTH_NEEDS_TLS = "538 5.7.11 Encryption required for requested authentication mechanism"
AUTH_ALREADY = "503 5.5.1 Already authenticated"
AUTH_IN_TRANSACTION = "503 5.5.1 AUTH not permitted during a mail transaction"
AUTH_UNKNOWN_MECH = "504 5.5.4 Unrecognized authentication type"
AUTH_NEEDS_EHLO = "503 5.5.1 Error: send EHLO first"
AUTH_REQUIRED = "530 5.7.0 Authentication required"
TLS_ACTIVE = "503 5.5.1 TLS already active"
TLS_UNAVAILABLE = "454 4.7.0 TLS not available"
SIZE_EXCEEDED = "552 5.3.4 Message size exceeds fixed maximum message size"
TOO_BIG = "552 5.3.4 Message too big"
TOO_MANY_RECIPIENTS = "452 4.5.3 Too many recipients"
BAD_SENDER = "553 5.1.7 Bad sender address syntax"
BAD_RECIPIENT = "553 5.1.3 Bad recipient address syntax"
NEEDS_SMTPUTF8 = "553 5.6.7 Non-ASCII address needs MAIL FROM with SMTPUTF8"
NULL_SENDER = "553 5.7.1 Sender address rejected: the null sender <> is for bounces only"
NOT_OWNED = "553 5.7.1 Sender address rejected: not owned by user {0}"
RELAY_NOT_CONFIGURED = "550 5.7.1 <{0}>: Relaying is not configured on this server"
NO_VALID_RECIPIENTS = "503 5.5.1 Error: need RCPT command"
INTERNAL = "421 4.3.0 {0} Internal error, closing connection"


def rcpt_error(err: BaseException, address: str) -> str:
    """The reply to ``RCPT TO:<address>`` of a local address the store refused with ``err``."""
    if isinstance(err, errors.NotFound):
        return f"550 5.1.1 <{address}>: Recipient address rejected: User unknown"
    if isinstance(err, errors.InvalidInput):
        return f"553 5.1.3 <{address}>: Recipient address rejected: bad address syntax"
    if isinstance(err, errors.OverQuota):
        return f"452 4.2.2 <{address}>: Recipient address rejected: mailbox full"
    if isinstance(err, errors.PermissionDenied):
        return f"550 5.7.1 <{address}>: Recipient address rejected: delivery not permitted"
    return f"451 4.3.0 <{address}>: Temporary failure, try again later"


def data_error(err: BaseException) -> str:
    """The reply after DATA when the message as a whole could not be accepted: only a verdict
    about the message itself (too big) is permanent; any store failure is a 4xx."""
    if isinstance(err, errors.TooBig):
        return TOO_BIG
    if isinstance(err, errors.OverQuota):
        return "452 4.2.2 Mailbox full, try again later"
    return TEMPFAIL


def accepted(queue_id: str) -> str:
    return f"250 2.0.0 Ok: queued as {queue_id}"
