"""Pure wire helpers of the submission gateway alone: bytes in, plain values out, no I/O
(fuzzable).  What it shares with LMTP (the DATA decoder, ``dot_stuff``, trace headers,
enhanced status codes, ``SIZE=``) is in :mod:`gateways.common.smtpwire`; the header fields an
MSA adds (RFC 6409 §8) are the store's to add, with :mod:`formats.headers`.

* :func:`is_loopback`: the peer test behind ``allow_plaintext_auth = loopback``.
"""

from __future__ import annotations

from gateways.common.plaintext import is_loopback_ip
from gateways.common.smtpwire import peer_ip


def is_loopback(peer) -> bool:
    """127.0.0.0/8 and ::1 (and their IPv4-mapped forms), for an asyncio peer."""
    ip = peer_ip(peer)
    return ip is not None and is_loopback_ip(ip)
