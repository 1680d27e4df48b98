"""The contract's records: the plain values that cross it (accounts, folders, messages, delivery
and queue results, calendar and contact items) and its constants.  :mod:`store.interfaces`
re-exports every name; gateways import them from there.  Nothing here does I/O."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from typing import Any, Optional

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


#: OutOfOffice.state: no replies, replies now, replies from ``start_at`` until ``end_at``
OOF_OFF, OOF_ON, OOF_SCHEDULED = 0, 1, 2
#: the longest out-of-office message kept (octets of UTF-8)
OOF_MAX_MESSAGE = 64 * 1024


@dataclass(frozen=True)
class OofReply:
    """The automatic reply for one audience of an :class:`OutOfOffice`."""
    enabled: bool = False
    message: str = ""
    html: bool = False  # the message is HTML (else plain text)


@dataclass(frozen=True)
class OutOfOffice:
    """An account's out-of-office replies (ActiveSync Settings Oof, [MS-ASCMD] 2.2.3.119).
    ``internal`` answers senders of the account's own domain; the others answer senders found in
    the account's address books (``external_known``) or not (``external_unknown``).  ``since``
    (set by the store) is when the current period began: each sender is answered once per period."""
    state: int = OOF_OFF
    start_at: int = 0  # Unix times, for OOF_SCHEDULED
    end_at: int = 0
    internal: OofReply = OofReply()
    external_known: OofReply = OofReply()
    external_unknown: OofReply = OofReply()
    since: int = 0

    def active(self, now: float) -> bool:
        if self.state == OOF_ON:
            return True
        return self.state == OOF_SCHEDULED and self.start_at <= now < self.end_at

    def reply_for(self, internal: bool, known: bool) -> Optional[OofReply]:
        """The reply a sender gets (None: none), by where it writes from."""
        reply = self.internal if internal else self.external_known if known else self.external_unknown
        return reply if reply.enabled and reply.message.strip() else None


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


# -- ActiveSync (store/activesync.py) ------------------------------------------------------------

#: the collection id of a device's folder hierarchy (FolderSync) among its sync states
EAS_HIERARCHY = 0
#: a calendar's to-dos are a second ActiveSync collection of the folder (its task view): its sync
#: state and client ids are kept under the folder's id plus this
EAS_TASK_VIEW = 1 << 40
#: the SyncKey a device sends to start over (MS-ASCMD: FolderSync and Sync with SyncKey 0)
EAS_INITIAL_KEY = "0"
#: octets of a cached Ping or Sync request the store keeps (a bigger one is not cached: TooBig)
EAS_MAX_CACHED_REQUEST = 65536
#: octets of the response kept for replay with a state (a bigger one: TooBig, nothing saved)
EAS_MAX_RESPONSE = 4 << 20
#: item ids one sync state may hold
EAS_MAX_HELD = 1_000_000
#: characters of the JSON of a state's options (FilterType aside: body preferences and the like)
EAS_MAX_OPTIONS = 4096
#: characters of the JSON of a state's snapshot (the hierarchy's entries as the device holds them)
EAS_MAX_SNAPSHOT = 1 << 20
#: a device's ``last_seen`` is written only when the stored one is older than this (seconds)
EAS_LAST_SEEN_RESOLUTION = 60
#: seconds a ClientId -> ServerId mapping is kept (a device retries an Add or SendMail within
#: minutes; the purge job drops older ones)
EAS_CLIENT_ID_LIFETIME = 7 * 86400


@dataclass(frozen=True)
class EasDevice:
    """One ActiveSync device of one account (the same phone on two accounts is two devices).
    Times are Unix seconds, 0 when not set.  ``policy_key`` is the acknowledged policy key (0:
    none), ``pending_policy_key`` the one issued by Provision and not yet acknowledged (0: none)."""
    account_id: int
    device_id: str
    device_type: str = ""
    model: str = ""
    os: str = ""
    user_agent: str = ""
    protocol_version: str = ""
    policy_key: int = 0
    pending_policy_key: int = 0
    wipe_requested_at: int = 0
    wipe_done_at: int = 0
    first_seen: int = 0
    last_seen: int = 0
    #: the wipe requested is EAS 16.1's account-only one (the phone keeps the rest of itself)
    wipe_account_only: bool = False

    @property
    def wipe_state(self) -> str:
        """``none``, ``requested`` (the next request is answered with a wipe) or ``done`` (the
        device confirmed it)."""
        if self.wipe_done_at:
            return "done"
        return "requested" if self.wipe_requested_at else "none"


@dataclass(frozen=True)
class EasSyncState:
    """What the store keeps of one device's view of one collection (a folder's id, mail or DAV,
    or :data:`EAS_HIERARCHY` for FolderSync).

    ``held``: the ids the device holds, ascending (mail: UIDs in the folder; DAV: item ids; the
    hierarchy: folder ids); a Sync compares them with the folder's live ids, so a delete is
    found even after the purge removed its tombstone.  ``modseq``: the folder's modseq the
    device has seen changes up to.  ``last_response``: the response that carried ``sync_key``,
    to replay when the device repeats ``previous_key`` (it never got it).  ``snapshot``: any
    JSON value the gateway keeps with the state (FolderSync: the entries the device holds, to
    find renames and moves), None when none was saved."""
    collection_id: int
    sync_key: str
    previous_key: str
    modseq: int
    held: tuple
    filter_type: int = 0
    options: dict = field(default_factory=dict)
    last_response: Optional[bytes] = None
    updated_at: int = 0
    snapshot: Any = None


def eas_next_sync_key(key: str) -> str:
    """The SyncKey that follows ``key``: ``{generation}N`` where the generation is 32 random hex
    digits drawn when a device starts over (``key`` is "0", or not one of this form) and N counts
    the states since.  Opaque to the device, at most 64 characters (MS-ASCMD: SyncKey)."""
    if key.startswith("{") and "}" in key:
        generation, _, count = key[1:].partition("}")
        if len(generation) == 32 and count.isdigit():
            return f"{{{generation}}}{int(count) + 1}"
    return f"{{{secrets.token_hex(16)}}}1"
