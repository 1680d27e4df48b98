"""Whether a password may be sent without TLS, one rule for every gateway: the
``allow_plaintext_auth`` setting of IMAP, POP3, ManageSieve, submission and HTTP."""

from __future__ import annotations

import ipaddress


def is_loopback_ip(host: str) -> bool:
    """127.0.0.0/8 and ::1, also written IPv4-mapped (``::ffff:127.0.0.1``) or with a zone."""
    try:
        ip = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False
    mapped = getattr(ip, "ipv4_mapped", None)
    return (mapped or ip).is_loopback


def is_local(address) -> bool:
    """Loopback TCP or a unix socket (a Twisted address): the peer is this machine (a local
    proxy, webmail or client)."""
    host = getattr(address, "host", None)
    return True if host is None else is_loopback_ip(host)  # no host: a UNIXAddress


#: ``allow_plaintext_auth``: ``loopback`` (the default) allows a login without TLS only from
#: this machine (a local webmail, a TLS-terminating proxy), ``yes`` from anywhere, ``no`` never
PLAINTEXT_CHOICES = ("loopback", "yes", "no")


def plaintext_allowed(mode: str, tls: bool, local: bool) -> bool:
    """Whether a password may be sent: always over TLS, else as ``mode`` says."""
    return tls or mode == "yes" or (mode == "loopback" and local)
