"""The submission gateway's replies, and its store-error → reply table after DATA (RFC 5321
§4.2, RFC 3463 enhanced codes, RFC 4954 for AUTH).  What both SMTP gateways answer alike, the
RCPT table (``rcpt_error``) and replies such as ``TEMPFAIL``, is defined in
:mod:`gateways.common.smtpwire` and re-exported here, so the handler finds every reply in one place.

A store failure is always a 4xx (the client keeps the message and retries); only answers that
stay the same on a retry (no such user, too big, over quota) are 5xx, as over LMTP.
"""

from __future__ import annotations

from gateways.common.smtpwire import (BAD_RECIPIENT, BAD_SENDER, SIZE_EXCEEDED, TEMPFAIL, TOO_BIG,  # noqa: F401 (re-exported)
                               TOO_MANY_RECIPIENTS, rcpt_error)
from store import errors

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
NEEDS_SMTPUTF8 = "553 5.6.7 Non-ASCII address needs MAIL FROM with SMTPUTF8"
NULL_SENDER = "553 5.7.1 Sender address rejected: the null sender <> is for bounces only"
NOT_OWNED = "553 5.7.1 Sender address rejected: not owned by user {0}"
RELAY_NOT_CONFIGURED = "550 5.7.1 <{0}>: Relaying is not configured on this server"
#: at MAIL, for an account over its soft quota (RFC 3463 X.2.2 mailbox full)
OVER_SOFT_QUOTA = "552 5.2.2 Mailbox over quota: delete some mail before sending"
#: the account reached [submission] max_messages_per_hour or max_recipients_per_hour.
#: At RCPT (RFC 5321 §4.2.5, §3.3: a 4yz to RCPT keeps that recipient queued at the client,
#: which sends it again later) and, when parallel sessions raced past the limit, at DATA
#: (§4.2.5: 451 after DATA, the client keeps the whole message); RFC 3463 X.7.1: delivery not
#: authorized by policy.  Temporary: the same message goes through once the hour has passed.
RATE_LIMITED = "451 4.7.1 Sending rate limit reached, try again later"


def data_error(err: BaseException) -> str:
    """The reply after DATA when the message as a whole could not be accepted: only a verdict
    about the message itself (too big, over quota, a header sender that is not the user's) is
    permanent; any store failure is a 4xx."""
    if isinstance(err, errors.TooBig):
        return TOO_BIG
    if isinstance(err, errors.RateLimited):
        return RATE_LIMITED
    if isinstance(err, errors.OverQuota):
        return "552 5.2.2 Mailbox full"
    if isinstance(err, errors.PermissionDenied):  # the header From:/Sender: is not the user's
        return "553 5.7.1 " + " ".join(str(err).split())[:300]
    return TEMPFAIL


def accepted(queue_id: str) -> str:
    return f"250 2.0.0 Ok: queued as {queue_id}"
