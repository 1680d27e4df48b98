"""The maildrop of one POP3 session: INBOX as it was at login, plus the session's DELE marks.

Invariants (RFC 1939 §5, §6):
* Message numbers 1..n name the live INBOX messages at login, ascending by UID, and keep naming
  the same messages for the whole session; later deliveries appear at the next login.
* A DELE only marks a number here.  :meth:`Maildrop.deleted_uids` is the one way marks reach the
  store, and the session calls it only at QUIT (the UPDATE state).
* Sizes are the store's RFC822.SIZE (:attr:`MessageMeta.size`).  RFC 1939 counts a message as
  transmitted, with CRLF line endings and without byte-stuffing; Haven stores messages with CRLF
  (LMTP turns bare LF into CRLF), so the two agree.  A message APPENDed over IMAP with bare LFs is
  sent with CRLF and so runs a few octets longer than listed.
* UIDL is ``"<uidvalidity>.<uid>"`` of INBOX: unique per account, stable across sessions and
  restarts (UIDs are never reused, RFC 3501 §2.3.1.1), printable, at most 21 characters
  (RFC 1939 §7: 1 to 70 characters in 0x21..0x7E).
"""

from __future__ import annotations

from typing import Sequence


class MaildropError(Exception):
    """A command named a message it cannot use; ``str(err)`` is the ``-ERR`` text."""


class Maildrop:
    def __init__(self, folder_id: int, uidvalidity: int, messages: Sequence):
        """``messages``: :class:`store.interfaces.MessageMeta` of the live INBOX, ascending by UID."""
        self.folder_id = folder_id
        self.uidvalidity = uidvalidity
        self.uids = [m.uid for m in messages]
        self.sizes = [m.size for m in messages]
        self.deleted: set = set()  # message numbers marked by DELE
        self._octets = sum(self.sizes)

    # -- totals over the messages not marked deleted (STAT, RSET, the login reply) -----------
    @property
    def count(self) -> int:
        return len(self.uids) - len(self.deleted)

    @property
    def octets(self) -> int:
        return self._octets - sum(self.sizes[n - 1] for n in self.deleted)

    def summary(self) -> str:
        return "%d message%s (%d octets)" % (self.count, "" if self.count == 1 else "s", self.octets)

    # -- single messages ---------------------------------------------------------------------
    def check(self, n: int) -> int:
        """``n`` if it names a message not marked deleted, else MaildropError."""
        if not 1 <= n <= len(self.uids):
            raise MaildropError("No such message, only %d in the maildrop" % len(self.uids))
        if n in self.deleted:
            raise MaildropError("Message %d already deleted" % n)
        return n

    def uid(self, n: int) -> int:
        return self.uids[self.check(n) - 1]

    def size(self, n: int) -> int:
        return self.sizes[self.check(n) - 1]

    def uidl(self, n: int) -> str:
        return "%d.%d" % (self.uidvalidity, self.uid(n))

    def mark_deleted(self, n: int) -> None:
        self.deleted.add(self.check(n))

    def reset(self) -> None:
        self.deleted.clear()

    def deleted_uids(self) -> list:
        return sorted(self.uids[n - 1] for n in self.deleted)

    # -- listings (LIST, UIDL without argument) ------------------------------------------------
    def scan_listing(self) -> list:
        deleted = self.deleted
        return [b"%d %d" % (i, size) for i, size in enumerate(self.sizes, 1) if i not in deleted]

    def uid_listing(self) -> list:
        deleted, prefix = self.deleted, b"%d." % self.uidvalidity
        return [b"%d %s%d" % (i, prefix, uid) for i, uid in enumerate(self.uids, 1) if i not in deleted]
