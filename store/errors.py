"""The store's one closed error taxonomy.

Every gateway maps these (and only these) to its wire replies, in one table per gateway:
IMAP ``NO [TRYCREATE]``/``[OVERQUOTA]``, SMTP/LMTP 451/452/550/552, HTTP 404/409/503/507.
No gateway ever sees a driver exception: the engines translate sqlite3/pymysql errors into
:class:`TemporaryFailure` (retryable: locked, deadlock, connection lost) before they leave the store.
"""


class StoreError(Exception):
    """Base class. ``str(err)`` is safe to show to a client: no paths, no SQL."""


class NotFound(StoreError):
    """The account, folder, message or item does not exist (or is soft-deleted)."""


class Exists(StoreError):
    """Something with that name already exists."""


class Conflict(StoreError):
    """A conditional write lost: the item is no longer what the writer read (another client
    changed or deleted it meanwhile, or created it)."""


class Expunged(StoreError):
    """The message was expunged (soft-deleted) by another session meanwhile."""


class PermissionDenied(StoreError):
    """The operation is not allowed on this object (e.g. deleting INBOX)."""


class Rejected(PermissionDenied):
    """The recipient's rules refused the message (Sieve reject/ereject); ``str(err)`` is the
    script's reason, meant for the sender."""


class OverQuota(StoreError):
    """The account is over its quota."""


class TooBig(StoreError):
    """The message or item exceeds a configured size limit."""


class TemporaryFailure(StoreError):
    """The store cannot do it now (database down, disk full, lock timeout). Try again later."""


class StoreUnavailable(TemporaryFailure):
    """The database cannot be reached or refuses Haven: every gateway answers it as the
    temporary failure it is.  ``detail`` says what happened, for the admin (never shown to a
    client: it names the database); ``permanent`` when only a configuration change fixes it
    (access denied, unknown database or host, an SQLite file that cannot be opened)."""

    def __init__(self, detail: str, permanent: bool):
        super().__init__("the store is unavailable, try again later")
        self.detail = detail
        self.permanent = permanent


class RateLimited(TemporaryFailure):
    """The account sent as much as its limit allows for now ([submission] max_messages_per_hour,
    max_recipients_per_hour); it may send again later."""


class InvalidInput(StoreError):
    """The request is malformed (bad folder name, bad flag, unparseable data)."""


class SchemaOutOfDate(StoreError):
    """The database schema is older than this code; run ``haven db migrate``."""
