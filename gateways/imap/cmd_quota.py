"""Quota handlers (RFC 9208): GETQUOTAROOT, GETQUOTA, SETQUOTA; the wire form of the store's
:class:`~store.interfaces.Quota`.

Invariants:
* One quota root per account, named ``""`` (root names are the server's choice; mox uses ``""``
  too, Dovecot ``"User quota"``); every mailbox of the account is under it, since the limit is
  the account's and usage is the sum over all its folders.
* One resource, STORAGE (``QUOTA=RES-STORAGE``), in units of 1024 octets (RFC 9208 §5.1): the
  usage is the store's (live messages only: soft-deleted ones do not count) rounded up, the
  limit is the account's *hard* limit rounded down, so a client never believes it has more room
  than APPEND grants.  Haven's warn and soft limits (a warning message in the INBOX, submission
  refusing to send) have no IMAP counterpart and are not reported.
* A root exists only while the account has a hard limit.  RFC 9208 §7 wants at least one
  resource in a QUOTA response (``quota-list``), and without a limit there is none to list, so
  an unlimited account's mailboxes have no quota root (``* QUOTAROOT "INBOX"`` alone) and
  ``GETQUOTA ""`` answers ``NO [NONEXISTENT]``.  (An RFC 2087 server would send
  ``* QUOTA "" ()``, which RFC 9208's grammar no longer allows.)
* SETQUOTA is refused, ``NO [NOPERM]``, and QUOTASET is not advertised (RFC 9208 §4.1.3): limits
  are the administrator's, set with ``haven user quota``.  A malformed SETQUOTA is still BAD.
* APPEND and COPY past the hard limit end ``NO [OVERQUOTA]`` (RFC 9208, RFC 5530) through the
  protocol's one store-error table; MOVE does not change the usage and is never refused for it.

Deliberately not done: the MESSAGE resource (Haven has no message-count limit, so neither
``QUOTA=RES-MESSAGE`` nor a MESSAGE line; STATUS DELETED is answered all the same); the optional
untagged ``NO [OVERQUOTA]`` after an APPEND/COPY that crosses a soft limit (an RFC 9208 MAY;
it would cost a usage query per APPEND); refusing an over-quota APPEND before its literal is
sent (the framer answers ``+`` before the store is asked).
"""

from __future__ import annotations

from typing import Optional

from . import response
from .states import IMAPError

#: the name of every account's one quota root
ROOT = b""


def storage_resources(quota) -> Optional[bytes]:
    """The ``quota-list`` of a :class:`~store.interfaces.Quota`, e.g. ``(STORAGE 12 20480)``; None
    when the account has no hard limit (then it has no quota root at all)."""
    if quota.hard <= 0:
        return None
    used_kib = -(-quota.used_bytes // 1024)  # RFC 9208 §5.1: units of 1024 octets
    return b"(STORAGE %d %d)" % (used_kib, quota.hard // 1024)


class QuotaCommands:
    async def do_GETQUOTAROOT(self, cmd):
        # RFC 9208 §4.1.2: QUOTAROOT names the mailbox's roots, then one QUOTA per root
        name = cmd.args["mailbox"]
        await self.mail_folder(name)  # NO [NONEXISTENT] for a mailbox that does not exist
        resources = storage_resources(await self.store.get_quota(self.account.id))
        if resources is None:
            self.write(b"* QUOTAROOT %s\r\n" % response.mailbox(name, self.utf8_names))
            return None
        root = response.string(ROOT)
        self.write(b"* QUOTAROOT %s %s\r\n* QUOTA %s %s\r\n"
                   % (response.mailbox(name, self.utf8_names), root, root, resources))
        return None

    async def do_GETQUOTA(self, cmd):
        # RFC 9208 §4.1.1
        if cmd.args["root"] == ROOT:
            resources = storage_resources(await self.store.get_quota(self.account.id))
            if resources is not None:
                self.write(b"* QUOTA %s %s\r\n" % (response.string(ROOT), resources))
                return None
        raise IMAPError("NO", "No such quota root", "NONEXISTENT")

    async def do_SETQUOTA(self, cmd):
        # RFC 9208 §4.1.3: a server without QUOTASET does not let clients change limits
        raise IMAPError("NO", "Quota limits are set by the server administrator", "NOPERM")
