"""The LMTP gateway's own pure pieces: its store-error → reply table after DATA, and its import
rules.

The byte-level pieces it shares with submission (DATA decoding, trace headers, reply codes) are
tested once, in tests/gateways/test_smtpwire.py; the protocol itself over real sockets in
test_lmtp_protocol.py.
"""

import pytest

from gateways.lmtp import replies
from store import errors


@pytest.mark.parametrize("err, after_data, commit", [
    (errors.NotFound(), "550 5.1.1", "451 4.3.0"),  # at commit: the store failing
    (errors.InvalidInput(), "451 4.3.0", "451 4.3.0"),
    (errors.OverQuota(), "552 5.2.2", "552 5.2.2"),  # permanent: the MTA bounces
    (errors.PermissionDenied(), "451 4.3.0", "451 4.3.0"),
    (errors.TooBig(), "552 5.3.4", "552 5.3.4"),
    (errors.TemporaryFailure(), "451 4.3.0", "451 4.3.0"),
    (RuntimeError(), "451 4.3.0", "451 4.3.0"),
])
def test_store_error_replies_after_data(err, after_data, commit):
    # A store failure is never a 5xx; each reply names its recipient (RFC 2033 §4.2).  The RCPT
    # table is shared with submission (tests/gateways/test_smtpwire.py).
    assert replies.delivery_error(err, "a@b").startswith(after_data + " <a@b> ")
    assert replies.commit_error(err, "a@b").startswith(commit + " <a@b> ")
