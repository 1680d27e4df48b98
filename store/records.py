"""The contract's records: the plain values that cross it (accounts, folders, messages, delivery
and queue results, calendar and contact items) and its constants.  :mod:`store.interfaces`
re-exports every name; gateways import them from there.  Nothing here does I/O."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

SYSTEM_FLAGS = ("\\Seen", "\\Answered", "\\Flagged", "\\Deleted", "\\Draft")
SPECIAL_USES = ("\\Drafts", "\\Sent", "\\Trash", "\\Junk", "\\Archive")
INBOX = "INBOX"
#: hierarchy delimiter of folder names in the store
DELIMITER = "/"

FOLDER_KINDS = ("mail", "calendar", "contacts", "tasks")

#: Recovery views (store/recovery.py) have negative folder ids, never a real folder's:
#: ``-(folder id)`` is what was deleted from that folder (and others of the account with its
#: name), ``-(RECOVERY_ALL + account id)`` everything recoverable of the account.
RECOVERY_ALL = 1 << 40


def recovery_view_id(account_id: int, origin_folder_id: Optional[int] = None) -> int:
    return -origin_folder_id if origin_folder_id is not None else -(RECOVERY_ALL + account_id)


def is_recovery_view(folder_id: int) -> bool:
    return folder_id < 0


#: seconds an outbound-queue consumer owns the recipients it took before they come due again
OUTBOUND_LEASE = 600
#: a queued recipient's states
QUEUED, SENT, FAILED, EXPIRED = "queued", "sent", "failed", "expired"


@dataclass(frozen=True)
class Account:
    id: int
    address: str
    name: Optional[str]
    created_at: int


#: ``accounts.last_login`` is written only when the stored value is older than this (seconds),
#: so an account that logs in all day costs one write an hour, not one per login
LAST_LOGIN_RESOLUTION = 3600


@dataclass(frozen=True)
class Credentials:
    account_id: int
    address: str
    password_hash: Optional[str]
    disabled: bool
    name: Optional[str] = None
    created_at: int = 0
    last_login: int = 0  # Unix time, to LAST_LOGIN_RESOLUTION; 0: never

    @property
    def account(self) -> "Account":
        return Account(id=self.account_id, address=self.address, name=self.name, created_at=self.created_at)


@dataclass(frozen=True)
class AccountSummary:
    """An account as ``haven user list`` shows it.  ``state``: ``active``, ``disabled`` (no
    login, no delivery) or ``deleted`` (the same, until the purge removes it at ``purge_at``;
    0: never, softdelete_lifetime is 0).  Times are Unix seconds, 0 when not set; usage counts
    the live messages, as the quota does."""

    account: Account
    state: str
    deleted_at: int
    purge_at: int
    last_login: int
    used_bytes: int
    used_messages: int


@dataclass(frozen=True)
class Recipient:
    """A resolved delivery address: the account it lands in and the RFC 5233 ``+detail``."""

    account_id: int
    address: str  # the account's canonical address
    original: str  # the address as given in RCPT TO
    detail: Optional[str] = None


@dataclass(frozen=True)
class Folder:
    id: int
    account_id: int
    name: str  # full path, DELIMITER-separated, "INBOX" for the inbox
    kind: str  # one of FOLDER_KINDS
    special_use: Optional[str]  # one of SPECIAL_USES or None
    subscribed: bool
    uidvalidity: int
    uidnext: int
    highest_modseq: int
    recent_uid: int = 0  # UIDs above it are \\Recent to the next session that claims them (Store.claim_recent)


@dataclass(frozen=True)
class FolderStatus:
    folder: Folder
    messages: int
    unseen: int
    deleted: int  # messages with \\Deleted set (still live)
    size: int  # sum of RFC822.SIZE of live messages
    recent: int = 0  # live messages no session has claimed as \\Recent yet (IMAP STATUS RECENT)


@dataclass(frozen=True)
class MessageMeta:
    """What a session keeps per message: cheap, no header data."""

    uid: int
    modseq: int
    flags: frozenset
    internaldate: int  # seconds since the epoch, UTC
    size: int  # RFC822.SIZE, octets of the stored message


@dataclass(frozen=True)
class MessageRecord:
    """One message with the cached data FETCH needs; ``blob_id`` reads the raw bytes.

    ``envelope`` and ``structure`` are the JSON shapes produced by :func:`formats.mime.analyze`
    (ENVELOPE list; PART dict with absolute offsets into the raw message).  ``header`` is the raw
    RFC 822 header section including its terminating blank line.  Fields that were not asked for
    are None.
    """

    meta: MessageMeta
    blob_id: str
    envelope: Optional[list] = None
    structure: Optional[dict] = None
    header: Optional[bytes] = None


@dataclass(frozen=True)
class Changes:
    """What changed in a folder since a modseq.

    ``updated`` holds live messages whose modseq is above the given one (new ones included),
    ordered by UID; ``expunged`` the UIDs of messages soft-deleted since then, ascending.
    """

    highest_modseq: int
    updated: list = field(default_factory=list)
    expunged: list = field(default_factory=list)


@dataclass(frozen=True)
class StoreResult:
    """Result of :meth:`Store.store_flags`: messages whose flags changed (new meta) and the UIDs
    that failed an ``unchanged_since`` test (RFC 7162 §3.1.3)."""

    updated: list
    failed: list


@dataclass(frozen=True)
class CopyResult:
    """``pairs`` maps source UIDs to new UIDs in the destination, ascending by source UID."""

    uidvalidity: int
    pairs: list


@dataclass(frozen=True)
class ChangeEvent:
    """Published on the push bus after a commit.  ``kind`` is "message", "folder" or "dav";
    ``folder_id`` is None for account-wide or unknown changes (e.g. seen via the DB poller)."""

    account_id: int
    folder_id: Optional[int]
    modseq: int
    kind: str


@dataclass(frozen=True)
class DeliveryResult:
    """Per-recipient outcome: ``error`` None means accepted: stored (durable) into ``folder``
    (the first copy when rules filed it more than once), or discarded / redirected by the
    recipient's rules (``folder`` None).  ``error`` :class:`~store.errors.Rejected` carries the
    reason of a Sieve reject.  ``actions`` says what the rules did, for the log
    (e.g. ``("fileinto Lists", "redirect <a@b.example>", "vacation")``)."""

    recipient: Recipient
    error: Optional[Exception] = None
    folder: Optional[str] = None
    uid: Optional[int] = None
    actions: tuple = ()


@dataclass(frozen=True)
class SieveScriptInfo:
    name: str
    active: bool
    size: int  # octets of the UTF-8 text


@dataclass(frozen=True)
class Quota:
    """An account's usage and effective limits, in bytes; a limit of 0 means unlimited.
    Over warn: one warning message lands in the INBOX.  Over soft: submission refuses to send
    (552 5.2.2), APPEND still works.  Over hard: deliveries and APPEND are refused."""
    used_bytes: int
    used_messages: int
    warn: int = 0
    soft: int = 0
    hard: int = 0

    @property
    def over_warn(self) -> bool:
        return 0 < self.warn <= self.used_bytes

    @property
    def over_soft(self) -> bool:
        return 0 < self.soft <= self.used_bytes

    def room_for(self, size: int) -> bool:
        """Whether ``size`` more octets stay within the hard limit."""
        return self.hard <= 0 or self.used_bytes + size <= self.hard


@dataclass(frozen=True)
class OutboundRecipient:
    id: int
    address: str
    status: str
    attempts: int
    next_attempt: int
    last_error: Optional[str]
    last_attempt: int  # when the state last changed (the time of the last attempt once final)


@dataclass(frozen=True)
class OutboundMessage:
    id: int
    account_id: int
    mail_from: str
    blob_id: str
    size: int
    created_at: int
    recipients: list = field(default_factory=list)


@dataclass(frozen=True)
class PurgeReport:
    messages: int
    folders: int
    blobs: int
    dav_items: int = 0  # calendar objects and vCards
    accounts: int = 0  # deleted accounts removed with all they owned


@dataclass(frozen=True)
class SubmissionResult:
    """What became of a submitted message (:meth:`Submission.commit`).

    ``local``: one :class:`DeliveryResult` per local recipient, in the order they were added
    (``error`` None: delivered; else that recipient gets a DSN, queued with the message's
    header section).  ``remote``: the remote addresses, queued as ``queue_id`` (None when there
    were none).  ``size``: octets of the message as stored and queued (trace and completed
    header fields included, without ``Return-Path:``).  ``refused``: not None when the message
    was refused as a whole because its only recipients, all local, refused it for good (the
    first of them); then nothing was kept."""

    local: list
    remote: tuple
    queue_id: Optional[int]
    size: int
    refused: Optional[DeliveryResult] = None


# -- calendars and contacts (store/dav.py) ---------------------------------------------------

#: folder kinds served over CalDAV / CardDAV, and the collection tag of each
DAV_KINDS = {"calendar": "VCALENDAR", "tasks": "VCALENDAR", "contacts": "VADDRESSBOOK"}


@dataclass
class DavItem:
    id: int
    folder_id: int
    href: str
    uid: str
    etag: str
    component: str  # VEVENT, VTODO, VJOURNAL, VCARD
    data: Optional[str]  # None when only metadata was asked for
    dtstart: int
    dtend: int
    modseq: int
    updated_at: int


@dataclass
class DavCollection:
    folder: Folder
    props: dict = field(default_factory=dict)
    purged_modseq: int = 0

    @property
    def tag(self) -> str:
        return DAV_KINDS[self.folder.kind]


@dataclass
class NewItem:
    """One calendar object or vCard as a writer (the CalDAV gateway, the CLI) hands it to the
    store: the store keeps the text and never parses it."""
    href: str
    uid: str
    etag: str
    component: str
    data: str
    dtstart: int
    dtend: int


@dataclass(frozen=True)
class LoginState:
    """What the login throttle needs to know before checking a password, read in one go.

    ``subject`` names who the login is for in the failure counters: ``"id:<account id>"`` when
    the login is an account's address or alias (aliases share it), else the login as typed.
    The counts are of distinct wrong passwords recorded since the time asked for: from this
    client address (any account), for this subject (any address), and for the pair."""
    credentials: Optional[Credentials]
    subject: str
    ip_failures: int = 0
    subject_failures: int = 0
    pair_failures: int = 0


@dataclass(frozen=True)
class LoginFailures:
    """One (client address, subject) pair's recorded failures, for ``haven auth status``;
    ``address`` is the account's address when the subject is an account."""
    remote_ip: str
    subject: str
    address: str
    failures: int
    first_at: int
    last_at: int


#: IMAP METADATA (RFC 5464) limits of the store: octets one value may hold, entries one mailbox
#: (or the server view of one account) may hold
METADATA_MAX_VALUE = 32768
METADATA_MAX_ENTRIES = 100
