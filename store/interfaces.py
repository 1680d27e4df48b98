"""The contract every gateway codes against.

Gateways and the CLI import only this module (with the records of :mod:`store.records`
it re-exports), :mod:`store.errors` and the neutral format
package :mod:`formats` (MIME analysis, the Sieve language: bytes in, plain data out, no I/O).
They never import an engine, a driver or the SQL modules; ``gateways/service.py`` alone builds
the store (:mod:`store.sqlstore`) and hands it on.  tests/test_layering.py holds these rules.

Thread and loop rules
---------------------
* Every ``async def`` here runs on the reactor thread and must be driven by Twisted
  (``Deferred.fromCoroutine(coro)`` or ``await`` inside another Twisted-driven coroutine).
  From an asyncio coroutine (aiosmtpd handlers) use :func:`as_future`.
* SQL runs in the store's DB thread pool, blob I/O and MIME analysis in its CPU pool; no method
  blocks the reactor.
* Change events are published on the :class:`PushBus` only after the transaction committed, on
  the reactor thread.

Identity and ordering
---------------------
* Every change to a message, folder or DAV item bumps the owning account's ``modseq`` and stamps
  the row with it.  A folder's ``highest_modseq`` is the highest modseq of any row in it,
  tombstones included, so ``changes_since(folder, m)`` answers CONDSTORE/QRESYNC, sync tokens and
  ActiveSync sync keys alike.
* UIDs in a folder are strictly ascending and never reused (RFC 3501 §2.3.1.1); a restored
  message gets a new UID.
* Deletes are soft: the row stays as a tombstone (``deleted_at`` set, modseq bumped) until the
  purge job removes it after ``softdelete_lifetime`` days.

Flags are strings exactly as IMAP spells them: system flags with a backslash (``\\Seen``,
``\\Answered``, ``\\Flagged``, ``\\Deleted``, ``\\Draft``), keywords without.  System flags are
case-insensitive and returned in the canonical spelling above; keywords keep their case.
"""

from __future__ import annotations

from typing import Callable, Iterable, Mapping, Optional, Sequence

from twisted.internet import threads

from formats import mime
from store.handles import (DELIVERY_OUTCOMES, BlobStream, BlockingDav, Delivery, PushBus, StoreObserver,
                           Submission, as_future)
from store.records import (SYSTEM_FLAGS, SPECIAL_USES, INBOX, DELIMITER, FOLDER_KINDS, OUTBOUND_LEASE, QUEUED,
                            SENT, FAILED, EXPIRED, Account, AccountSummary, Credentials, Recipient, Folder,
                            FolderStatus, MessageMeta, MessageRecord, Changes, StoreResult, CopyResult, ChangeEvent,
                            DeliveryResult, SieveScriptInfo, Quota, OutboundRecipient, OutboundMessage,
                            PurgeReport, SubmissionResult, DAV_KINDS, DavItem, DavCollection, NewItem,
                            LoginState, LoginFailures, METADATA_MAX_ENTRIES, METADATA_MAX_VALUE,
                            LAST_LOGIN_RESOLUTION, RECOVERY_ALL, recovery_view_id, is_recovery_view,
                            EAS_HIERARCHY, EAS_INITIAL_KEY, EAS_TASK_VIEW, EAS_MAX_CACHED_REQUEST, EAS_MAX_RESPONSE,
                            EAS_MAX_HELD,
                            EAS_MAX_OPTIONS, EAS_MAX_SNAPSHOT, EAS_CLIENT_ID_LIFETIME, EAS_LAST_SEEN_RESOLUTION,
                            EasDevice, EasSyncState, eas_next_sync_key, OOF_OFF, OOF_ON, OOF_SCHEDULED,
                            OOF_MAX_MESSAGE, OofReply, OutOfOffice)

#: the whole contract: its records (store/records.py) and its interfaces
__all__ = ["DAV_KINDS", "DELIMITER", "EXPIRED", "FAILED", "FOLDER_KINDS", "INBOX", "LAST_LOGIN_RESOLUTION",
           "METADATA_MAX_ENTRIES", "METADATA_MAX_VALUE", "OUTBOUND_LEASE", "RECOVERY_ALL",
           "recovery_view_id", "is_recovery_view",
           "QUEUED", "SENT", "SPECIAL_USES", "SYSTEM_FLAGS", "Account", "AccountSummary", "BlockingDav",
           "ChangeEvent", "Changes", "CopyResult", "Credentials", "DavCollection", "DavItem", "Delivery",
           "DeliveryResult",
           "Folder", "FolderStatus", "LoginFailures", "LoginState", "MessageMeta", "MessageRecord",
           "NewItem", "OutboundMessage", "OutboundRecipient", "PurgeReport", "PushBus", "Quota", "Recipient",
           "SieveScriptInfo", "Store", "StoreObserver", "DELIVERY_OUTCOMES", "StoreResult", "Submission",
           "SubmissionResult", "as_future",
           "EAS_CLIENT_ID_LIFETIME", "EAS_HIERARCHY", "EAS_INITIAL_KEY", "EAS_TASK_VIEW", "EAS_LAST_SEEN_RESOLUTION",
           "EAS_MAX_CACHED_REQUEST", "EAS_MAX_HELD", "EAS_MAX_OPTIONS", "EAS_MAX_RESPONSE", "EAS_MAX_SNAPSHOT",
           "EasDevice", "EasSyncState", "eas_next_sync_key",
           "OOF_OFF", "OOF_ON", "OOF_SCHEDULED", "OOF_MAX_MESSAGE", "OofReply", "OutOfOffice"]


class Store:
    """The shared store.  Only the methods below are the contract; see the module docstring for
    the threading rules.  Raises only :mod:`store.errors` exceptions."""

    bus: PushBus
    #: calendars and contacts for code on worker threads of its own (Radicale's WSGI pool)
    dav: "BlockingDav"

    # -- the process ----------------------------------------------------------------------
    def start(self, reactor, poll: bool = True) -> None:
        """Start the store's pools (and, with ``poll``, the poller that notices other
        processes' changes).  Called once, on the reactor thread, before any other method."""
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    async def schema_version(self) -> tuple:
        """``(current version or None for an empty database, latest version this code knows)``."""
        raise NotImplementedError

    async def migrate(self) -> list:
        """Apply the missing schema deltas; returns their names.  Only ``haven db migrate`` and
        an empty database at ``haven serve`` call it."""
        raise NotImplementedError

    async def health_check(self) -> tuple:
        """What a health check asks (``/healthz``): ``(current, latest)`` as :meth:`schema_version`,
        read in one short transaction that also reads the tables every login and delivery needs
        (accounts, folders, messages), so a database that answers but has lost them is not
        healthy.  Raises TemporaryFailure (StoreUnavailable) when the database cannot answer."""
        raise NotImplementedError

    # -- accounts --------------------------------------------------------------------------
    async def create_account(self, address: str, password_hash: Optional[str], name: Optional[str] = None) -> Account:
        """Create an account with INBOX, Drafts, Sent, Trash, Junk, Archive (special-use set), a
        default calendar ("Calendar") and address book ("Contacts").  Raises Exists, InvalidInput."""
        raise NotImplementedError

    async def addresses_with_local_part(self, local: str) -> list:
        """The addresses of the live accounts named ``local@`` any domain (at most 3: callers
        want to know whether exactly one is), for logins without a domain (ActiveSync)."""
        raise NotImplementedError

    async def get_account(self, address: str) -> Account:
        """Raises NotFound."""
        raise NotImplementedError

    async def get_account_by_id(self, account_id: int) -> Account:
        """Raises NotFound."""
        raise NotImplementedError

    async def list_accounts(self) -> list:
        raise NotImplementedError

    async def delete_account(self, address: str) -> None:
        """Removes the account and everything it owns at once (not a soft delete), whatever its
        state. Raises NotFound."""
        raise NotImplementedError

    # The lifecycle: an account is active, disabled or deleted.  Disabled and deleted accounts
    # log in nowhere and receive nothing (their addresses and aliases resolve as unknown) but
    # keep their data; a deleted one is removed by :meth:`purge` once ``softdelete_lifetime``
    # days have passed, and its address stays taken until then.  :meth:`get_account` and the
    # admin's commands still find both.
    async def disable_account(self, address: str) -> bool:
        """Disable a live account; returns False when it already was.  Raises NotFound, and
        InvalidInput for a deleted account (restore it instead)."""
        raise NotImplementedError

    async def enable_account(self, address: str) -> bool:
        """Enable a disabled account; returns False when it already was.  Raises NotFound, and
        InvalidInput for a deleted account (restore it instead)."""
        raise NotImplementedError

    async def mark_account_deleted(self, address: str) -> int:
        """Soft-delete an account: refused like a disabled one, data kept.  Returns when
        :meth:`purge` will remove it (Unix time; 0: never).  Raises NotFound, and InvalidInput
        when it is already deleted."""
        raise NotImplementedError

    async def restore_account(self, address: str) -> None:
        """Bring a deleted account back, active, with all its data.  Raises NotFound, and
        InvalidInput when it is not deleted."""
        raise NotImplementedError

    async def record_login(self, account_id: int) -> None:
        """Note a successful login now.  Writes only when the stored last login is older than
        :data:`LAST_LOGIN_RESOLUTION`, so callers may call it on every login; :attr:`Credentials.last_login` lets them
        skip even the call."""
        raise NotImplementedError

    async def list_account_summaries(self) -> list:
        """:class:`AccountSummary` of every account (all states), sorted by address."""
        raise NotImplementedError

    async def get_credentials(self, address: str) -> Optional[Credentials]:
        """Credentials of the account an address (or alias) logs in as; None when unknown."""
        raise NotImplementedError

    async def set_password_hash(self, account_id: int, password_hash: str) -> None:
        raise NotImplementedError

    # -- IMAP METADATA (RFC 5464) ---------------------------------------------------------------
    async def get_metadata(self, account_id: int, folder_id: Optional[int], names: Sequence[str],
                           depth: str = "0") -> list:
        """``[(name, value bytes)]`` sorted by name, of the entries ``names`` of a folder (None:
        the server's entries as this account sees them) and, with ``depth`` ``"1"`` or
        ``"infinity"``, of their children or all their descendants (RFC 5464 §4.2.2).  Names
        are lower-case paths such as ``/private/comment``; missing entries are left out."""
        raise NotImplementedError

    async def set_metadata(self, account_id: int, folder_id: Optional[int],
                           values: Mapping[str, Optional[bytes]]) -> None:
        """Write every entry of ``values`` (None removes it) in one transaction.  Raises TooBig
        for a value over the store's limit and InvalidInput when the folder would hold too many
        entries (nothing is written then)."""
        raise NotImplementedError

    # -- the login throttle's counters (auth/cred.py) ----------------------------------------
    async def login_state(self, login: str, remote_ip: str, since: int) -> LoginState:
        """The credentials ``login`` names (as :meth:`get_credentials`) and the distinct wrong
        passwords recorded since ``since`` (epoch seconds) from ``remote_ip``, for the login's
        subject, and for the pair, in one read."""
        raise NotImplementedError

    async def record_login_failure(self, subject: str, remote_ip: str, secret_tag: str, now: int,
                                   since: int) -> int:
        """Record one wrong password (``secret_tag``: a keyed digest of it; the same tag again
        only refreshes the time) and prune rows older than ``since``.  Returns the pair's count
        of distinct failures since ``since``, this one included."""
        raise NotImplementedError

    async def clear_login_failures(self, remote_ip: Optional[str] = None, subject: Optional[str] = None) -> int:
        """Forget the failures of a client address, of a subject, or of the pair when both are
        given; returns the rows removed."""
        raise NotImplementedError

    async def list_login_failures(self, since: int) -> list:
        """:class:`LoginFailures` per (client address, subject) since ``since``, most failures first."""
        raise NotImplementedError

    async def add_alias(self, alias: str, address: str) -> None:
        """Mail to ``alias`` is delivered to the account ``address``. Raises Exists, NotFound."""
        raise NotImplementedError

    async def delete_alias(self, alias: str) -> None:
        """Raises NotFound."""
        raise NotImplementedError

    async def list_aliases(self) -> list:
        """``[(alias, account address)]`` sorted by alias."""
        raise NotImplementedError

    async def resolve_recipient(self, address: str) -> Recipient:
        """See :meth:`Delivery.add_recipient`."""
        raise NotImplementedError

    async def is_local_domain(self, domain: str) -> bool:
        """True when mail for ``domain`` is Haven's own (an account or alias exists in it), so an
        unknown user there is a 550, not a relay."""
        raise NotImplementedError

    # -- folders ---------------------------------------------------------------------------
    async def list_folders(self, account_id: int, kind: Optional[str] = "mail") -> list:
        """Live folders of the account (all kinds when ``kind`` is None), sorted by name."""
        raise NotImplementedError

    async def get_folder(self, account_id: int, name: str) -> Folder:
        """Raises NotFound."""
        raise NotImplementedError

    async def create_folder(self, account_id: int, name: str, kind: str = "mail",
                            special_use: Optional[str] = None) -> Folder:
        """Raises Exists, InvalidInput (empty component, bad kind)."""
        raise NotImplementedError

    async def delete_folder(self, account_id: int, name: str) -> None:
        """Soft-deletes the folder and its messages.  Children are not touched (RFC 3501 §6.3.4:
        the caller refuses or accepts inferior names).  Raises NotFound, PermissionDenied (INBOX)."""
        raise NotImplementedError

    async def rename_folder(self, account_id: int, old: str, new: str) -> None:
        """Renames the folder and all its inferiors (their UIDVALIDITY is kept).  Renaming INBOX
        moves all its messages into a new folder ``new`` and leaves INBOX empty (RFC 3501 §6.3.5).
        Raises NotFound, Exists."""
        raise NotImplementedError

    async def set_subscribed(self, account_id: int, name: str, subscribed: bool) -> None:
        """Subscribe to the folder ``name`` (NotFound when there is none), or unsubscribe the
        name, whether or not a folder has it now (NotFound when it is neither subscribed nor a
        folder).  A subscription is a name (RFC 3501 §6.3.6): deleting the folder keeps it,
        renaming the folder moves it.  A new account's mail folders are subscribed; a folder
        created later is not."""
        raise NotImplementedError

    async def list_subscriptions(self, account_id: int) -> list:
        """The subscribed names, sorted, those of folders that no longer exist included
        (``Folder.subscribed`` tells it of a live folder)."""
        raise NotImplementedError

    async def folder_status(self, account_id: int, name: str) -> FolderStatus:
        """Raises NotFound."""
        raise NotImplementedError

    async def claim_recent(self, folder_id: int) -> tuple:
        """Claim the folder's messages that no session has seen as \\Recent yet (IMAP, RFC 3501
        §2.3.2: exactly one session sees a message recent).  Returns ``(floor, top)``: the
        messages with ``floor < uid <= top`` are the caller's, and nobody else's, whichever node
        the other sessions are on; ``floor == top`` when there was nothing new.  Every UID
        stored before the call is at most ``top``.  New messages (delivery, APPEND, COPY, MOVE,
        restore) get UIDs above every claim; ``Folder.recent_uid`` and ``FolderStatus.recent``
        tell what is still unclaimed.  Raises NotFound, TemporaryFailure."""
        raise NotImplementedError

    # -- messages --------------------------------------------------------------------------
    async def list_messages(self, folder_id: int) -> list:
        """All live messages of the folder as :class:`MessageMeta`, ascending by UID (SELECT)."""
        raise NotImplementedError

    async def fetch_messages(self, folder_id: int, uids: Sequence[int], envelope: bool = False,
                             structure: bool = False, header: bool = False) -> list:
        """:class:`MessageRecord` for the live messages among ``uids``, ascending by UID; UIDs
        that are not (or no longer) live are left out."""
        raise NotImplementedError

    async def read_blob(self, blob_id: str) -> bytes:
        """The raw message bytes.  Raises NotFound if the blob is missing (logged loudly)."""
        raise NotImplementedError

    async def open_blob(self, blob_id: str) -> "BlobStream":
        """The raw message bytes as a :class:`BlobStream`, for messages too big to hold
        (POP3 RETR, IMAP FETCH of a big body).  The caller closes it.  Raises NotFound if the
        blob is missing.  (Correct but slow default: the whole message is read.)"""
        return BlobStream(await self.read_blob(blob_id))

    # -- batched reads: correct but slow defaults on the methods above; a backend overrides
    # -- them with one pool hop per batch (IMAP FETCH of bodies, SEARCH BODY/TEXT) -----------
    async def read_blobs(self, blob_ids: Iterable[str], prefix: Optional[Mapping[str, int]] = None) -> dict:
        """``{blob_id: raw bytes}`` for every blob of ``blob_ids``, read as one batch.

        ``prefix`` may map a blob id to the number of leading octets the caller needs; that
        value may then end there (never sooner, unless the message does), which saves inflating
        what follows, e.g. attachments after the text.  Raises NotFound if a blob is missing."""
        return {blob_id: await self.read_blob(blob_id) for blob_id in dict.fromkeys(blob_ids)}

    async def fetch_messages_with_bodies(self, folder_id: int, uids: Sequence[int], envelope: bool = False,
                                         structure: bool = False, header: bool = False) -> list:
        """:meth:`fetch_messages` with each message's raw bytes: ``[(MessageRecord, bytes)]``,
        ascending by UID, live messages only.  For messages stored inline in the database this is
        one pool hop in all.  Raises NotFound if a blob is missing."""
        recs = await self.fetch_messages(folder_id, uids, envelope, structure, header)
        raws = await self.read_blobs(r.blob_id for r in recs)
        return [(r, raws[r.blob_id]) for r in recs]

    async def search_text(self, folder_id: int, uids: Sequence[int], needles: Iterable[str]) -> dict:
        """The full-text part of IMAP SEARCH BODY/TEXT (RFC 3501 §6.4.4: case-insensitive
        substring): ``{uid: frozenset of the needles found}`` for the live messages among ``uids``.

        ``needles`` are casefolded ``str``, looked for in :func:`formats.mime.decoded_text`
        casefolded (every text/* body transfer- and charset-decoded, HTML tags stripped, headers
        of encapsulated messages), see :func:`formats.mime.find_text`.  Runs off the reactor; a
        backend may answer from an index instead of scanning."""
        needles = frozenset(needles)
        recs = await self.fetch_messages(folder_id, uids, structure=True)
        raws = await self.read_blobs(r.blob_id for r in recs)

        def scan() -> dict:
            return {r.meta.uid: mime.find_text(raws[r.blob_id], r.structure or
                                               mime.analyze(raws[r.blob_id])["structure"], needles)
                    for r in recs}
        return await threads.deferToThread(scan)

    async def message_previews(self, folder_id: int, uids: Sequence[int]) -> dict:
        """IMAP PREVIEW (RFC 8970): ``{uid: preview text}`` for the live messages among
        ``uids``, each :func:`formats.mime.preview` of the message ("" when it has no text
        part).  Runs off the reactor; a backend may cache them.  (Correct but slow default:
        computed every time from the start of each message.)"""
        recs = await self.fetch_messages(folder_id, uids, structure=True)
        extents = {r.blob_id: mime.preview_extent(r.structure) for r in recs if r.structure is not None}
        raws = await self.read_blobs([r.blob_id for r in recs], prefix={b: n for b, n in extents.items() if n})

        def make() -> dict:
            return {r.meta.uid: mime.preview(raws[r.blob_id], r.structure or
                                             mime.analyze(raws[r.blob_id])["structure"]) for r in recs}
        return await threads.deferToThread(make)

    async def text_candidates(self, folder_id: int, terms: Sequence[tuple]) -> Optional[set]:
        """The text index (store/fulltext.py): the UIDs of the folder's live messages that may
        match *every* term, or None when the store has no index (every message may).

        ``terms``: ``(field, needle)`` pairs, ``needle`` a casefolded ``str`` looked for as a
        case-insensitive substring (RFC 3501 §6.4.4); ``field`` is one of ``"subject"``,
        ``"from"``, ``"to"``, ``"cc"``, ``"bcc"`` (the field's values, RFC 2047-decoded, and
        its addresses' names and addr-specs), ``"body"`` (:func:`formats.mime.decoded_text`, as
        :meth:`search_text`), ``"text"`` (body or the decoded header section).  Unknown fields
        and empty needles are ignored (no term left: None).

        The answer is a superset of the exact one: messages not indexed yet (stored before the
        index, being built in the background) or not indexable (too long) are always in it.
        For ``"body"`` it is otherwise exact; callers needing exactness for the other fields
        confirm the candidates with their own rules (IMAP SEARCH does).  Serves IMAP SEARCH,
        and is meant for ActiveSync Search and DAV text-match.  One query, in the DB pool."""
        return None

    async def text_matches(self, folder_id: int, terms: Sequence[tuple]) -> Optional[dict]:
        """:meth:`text_candidates` with what the index knows of each: ``{uid: indexed}``, where
        ``indexed`` is True when the message's text is in the index (so every term was tested
        on it, and a ``"body"`` term holds for it exactly) and False when it is a candidate only
        because it is not indexed (yet, or at all)."""
        return None

    async def index_backlog(self, limit: int = 200) -> int:
        """Index the contents of up to ``limit`` stored messages that have no text index entry
        yet (stored before the index existed); returns how many contents were indexed, 0 once
        the pass is over.  One pass over the messages per store object (each call goes on where
        the last stopped; messages stored meanwhile are indexed as they are stored).  ``haven
        serve`` calls it in the background until it returns 0.  Text extraction in the CPU
        pool, SQL in the DB pool."""
        return 0

    async def changes_since(self, folder_id: int, modseq: int) -> Changes:
        """Also answers for a folder deleted meanwhile (its messages are then all expunged);
        NotFound only once the purge job removed it."""
        raise NotImplementedError

    async def append_message(self, account_id: int, folder_id: int, raw,
                             flags: Iterable[str] = (), internaldate: Optional[int] = None) -> tuple:
        """Store ``raw`` into the folder; returns ``(uidvalidity, uid)``.  ``raw`` is bytes or a
        seekable binary file holding the message (a spooled literal), read from its start in the
        store's threads; the caller keeps it open until this returns, then closes it.  Raises
        NotFound, TooBig, OverQuota, TemporaryFailure."""
        raise NotImplementedError

    async def append_messages(self, account_id: int, folder_id: int, messages: Sequence[tuple]) -> tuple:
        """IMAP MULTIAPPEND (RFC 3502): store every ``(raw, flags, internaldate)`` of
        ``messages`` into the folder in one transaction, all or none; returns
        ``(uidvalidity, [uid, ...])`` in the given order.  ``raw`` as for
        :meth:`append_message` (the caller keeps spooled files open until this returns).  The
        hard quota applies to the sum.  Raises as :meth:`append_message`."""
        raise NotImplementedError

    async def store_flags(self, account_id: int, folder_id: int, uids: Sequence[int], op: str,
                          flags: Iterable[str], unchanged_since: Optional[int] = None) -> StoreResult:
        """``op`` is "add", "remove" or "replace".  Messages whose flags do not change keep their
        modseq and are not in ``updated``.  Raises InvalidInput for a malformed flag."""
        raise NotImplementedError

    async def copy_messages(self, account_id: int, folder_id: int, uids: Sequence[int],
                            dest_folder_id: int) -> CopyResult:
        """Copies keep flags and internal date and share the blob.  Raises NotFound (dest)."""
        raise NotImplementedError

    async def move_messages(self, account_id: int, folder_id: int, uids: Sequence[int],
                            dest_folder_id: int) -> CopyResult:
        """Copy then soft-delete the sources, in one transaction (RFC 6851)."""
        raise NotImplementedError

    async def expunge(self, account_id: int, folder_id: int, uids: Optional[Sequence[int]] = None) -> list:
        """Soft-deletes live messages flagged ``\\Deleted`` (only those among ``uids`` when given);
        returns their UIDs ascending."""
        raise NotImplementedError

    async def delete_messages(self, account_id: int, folder_id: int, uids: Sequence[int]) -> list:
        """Soft-deletes the live messages among ``uids`` whatever their flags (POP3 DELE at
        QUIT); returns their UIDs ascending.  Other sessions see them expunged."""
        raise NotImplementedError

    # -- delivery --------------------------------------------------------------------------
    def begin_delivery(self, mail_from: str) -> Delivery:
        raise NotImplementedError

    # -- submission ------------------------------------------------------------------------
    async def begin_submission(self, account_id: int, mail_from: str) -> Submission:
        """Start sending a message as the account ``account_id``.  ``mail_from`` must be one of
        its addresses (its own, a ``+detail`` of it, an alias), else PermissionDenied; an
        account over its soft quota may not send: OverQuota (the text says how far over;
        warn and hard do not matter here).  Raises TemporaryFailure.  The account's (its
        aliases included) usage of the last hour against ``StoreSettings.rates`` is read here
        and checked at each recipient and at commit (RateLimited there)."""
        raise NotImplementedError

    # -- outbound queue (SMTP submission, redirects and vacation replies) -------------------
    # A recipient's status is "queued", "sent", "failed" or "expired"; see OutboundMessage.
    async def enqueue_outbound(self, account_id: int, mail_from: str, recipients: Sequence[str],
                               raw: bytes) -> int:
        """Durably queue ``raw`` for remote ``recipients`` (blob fsynced, rows committed before
        it returns); returns the queue id.  Raises TooBig, TemporaryFailure."""
        raise NotImplementedError

    def on_outbound(self, callback: Callable[[], None]) -> Callable[[], None]:
        """Call ``callback()`` (reactor thread, after the commit) whenever this process queued
        outbound mail (a submission, a redirect, a vacation reply), so a spooler can take it at
        once instead of at its next poll.  Returns the function that removes the callback."""
        raise NotImplementedError

    async def take_due_outbound(self, limit: int = 50) -> list:
        """Messages with recipients due for an attempt (only those recipients), leased to the
        caller for ``OUTBOUND_LEASE`` seconds so no other spooler takes them meanwhile; and
        finished messages whose DSN is still owed (all recipients, none of them queued)."""
        raise NotImplementedError

    async def record_outbound_attempt(self, queue_id: int, outcomes: dict) -> list:
        """``outcomes``: recipient id -> (status, error or None, next attempt time or None).
        When no recipient is left queued, returns every recipient's final state (for the DSN)
        and leases the message to the caller, who calls :meth:`finish_outbound` once the DSN is
        delivered; else []."""
        raise NotImplementedError

    async def finish_outbound(self, queue_id: int) -> None:
        """Remove a finished message from the queue (after its DSN).  A finished message that is
        never finished here comes back from take_due_outbound (all recipients final) after the
        lease, so its DSN is retried.  Raises NotFound."""
        raise NotImplementedError

    async def list_outbound(self) -> list:
        raise NotImplementedError

    async def get_outbound(self, queue_id: int):
        """Raises NotFound."""
        raise NotImplementedError

    async def retry_outbound(self, queue_id: Optional[int] = None) -> int:
        """Make queued recipients (of one message, or all) due now; returns how many."""
        raise NotImplementedError

    async def delete_outbound(self, queue_id: int) -> None:
        """Drop a message from the queue without a DSN.  Raises NotFound."""
        raise NotImplementedError

    async def outbound_summary(self) -> tuple:
        """``(messages, recipients still queued, created_at of the oldest message or None)`` of
        the whole outbound queue, in one cheap query (for monitoring)."""
        raise NotImplementedError

    # -- Sieve scripts (RFC 5804 semantics; store/rules.py) ----------------------------------
    # Names are 1..128 Unicode characters, no control characters (RFC 5804 §1.6).  At most one
    # script per account is active; the delivery pipeline runs it.
    async def list_sieve_scripts(self, account_id: int) -> list:
        """:class:`SieveScriptInfo` per script, by name."""
        raise NotImplementedError

    async def get_sieve_script(self, account_id: int, name: str) -> str:
        """The script's text.  Raises NotFound."""
        raise NotImplementedError

    async def check_sieve_script(self, text: str) -> None:
        """Compile ``text`` without saving it.  Raises InvalidInput("line N: reason") when it
        does not compile, TooBig when it is over ``max_script_size``."""
        raise NotImplementedError

    async def put_sieve_script(self, account_id: int, name: str, text: str) -> None:
        """Create or replace a script (an active one stays active).  Raises InvalidInput (bad
        name, does not compile: "line N: reason"), TooBig (over ``max_script_size``), OverQuota
        (a new script beyond ``max_scripts``)."""
        raise NotImplementedError

    async def sieve_space(self, account_id: int, name: str, size: int) -> None:
        """HAVESPACE: returns when a script ``name`` of ``size`` octets could be stored, else
        raises TooBig or OverQuota (InvalidInput for a bad name)."""
        raise NotImplementedError

    async def set_active_sieve_script(self, account_id: int, name: Optional[str]) -> None:
        """Activate ``name`` (deactivating any other); None or "" deactivates all.  NotFound."""
        raise NotImplementedError

    async def delete_sieve_script(self, account_id: int, name: str) -> None:
        """Raises NotFound, PermissionDenied when the script is the active one."""
        raise NotImplementedError

    async def rename_sieve_script(self, account_id: int, old: str, new: str) -> None:
        """Keeps the active mark.  Raises NotFound, Exists, InvalidInput (bad name)."""
        raise NotImplementedError

    # -- out of office (ActiveSync Settings Oof; replies made by store/rules.py) ---------------
    # While an account's OutOfOffice is active, every delivery to it is answered as a Sieve
    # vacation is (RFC 5230/3834: never a list, bulk, automatic or junk message, nor the user's
    # own; one reply per sender per period), after the account's own script ran (a script's own
    # vacation reply takes its place).  A sender of the account's domain is internal.
    async def get_out_of_office(self, account_id: int) -> OutOfOffice:
        """The account's settings (all off when never set).  Raises NotFound (no such account)."""
        raise NotImplementedError

    async def set_out_of_office(self, account_id: int, oof: OutOfOffice) -> OutOfOffice:
        """Replace the account's settings; returns them as stored.  A new period (``since`` =
        now, so every sender is answered again) begins when the state, start or end changes;
        a change of the messages alone keeps it.  Delivery uses them from the next message on.
        Raises NotFound, InvalidInput (an unknown state, a schedule whose end is not after its
        start), TooBig (a message over OOF_MAX_MESSAGE octets)."""
        raise NotImplementedError

    # -- quotas (Zarafa's warn / soft / hard) ----------------------------------------------
    async def get_quota(self, account_id: int) -> "Quota":
        """Usage (live messages only: soft-deleted ones do not count) and effective limits."""
        raise NotImplementedError

    async def set_quota(self, account_id: int, warn: Optional[int] = None, soft: Optional[int] = None,
                        hard: Optional[int] = None) -> "Quota":
        """Set the account's limits in bytes: None leaves one unchanged, 0 = unlimited, -1 =
        back to the server default.  Returns the new :class:`Quota`."""
        raise NotImplementedError

    # -- soft-delete lifecycle -------------------------------------------------------------
    async def list_deleted(self, account_id: int) -> list:
        """Soft-deleted messages (recoverable items): list of dicts with id, folder, uid,
        deleted_at, size, subject."""
        raise NotImplementedError

    async def restore_messages(self, account_id: int, message_ids: Sequence[int]) -> int:
        """Brings soft-deleted messages back (new UIDs; the folder is recreated if it was deleted).
        Returns how many were restored."""
        raise NotImplementedError

    # Recovery views (store/recovery.py, ids in store/scope.py): the recoverable messages as
    # read-only folders a user opens in a client (IMAP's "Recovered Items"; meant for ActiveSync
    # too).  A view's id goes to the folder methods above: list_messages, fetch_messages(_with_
    # bodies), search_text, text_matches and message_previews read it; store_flags sets the
    # tombstones' flags (no modseq); copy_messages / move_messages out of it restore into the
    # destination (new UIDs, flags kept but \Deleted) and the messages leave the view;
    # expunge removes the \Deleted ones for good; APPEND, COPY/MOVE into a view and
    # delete_messages raise PermissionDenied; changes_since answers nothing (a view has no
    # modseqs: list it again), claim_recent claims nothing.
    async def recovery_view(self, account_id: int, origin: Optional[str] = None) -> Folder:
        """The view of what was deleted from the folder named ``origin`` (every folder of the
        account that had that name), or with None from every folder; ``name`` is ``origin``
        ("" for all), ``highest_modseq`` 0, ``uidvalidity`` stable for the account.  Raises
        NotFound when the account never had a mail folder of that name."""
        raise NotImplementedError

    async def recoverable_origins(self, account_id: int) -> list:
        """The names of the folders that recoverable messages were deleted from, sorted."""
        raise NotImplementedError

    async def recovery_status(self, account_id: int, origin: Optional[str] = None) -> FolderStatus:
        """:meth:`folder_status` of :meth:`recovery_view` (``recent`` 0)."""
        raise NotImplementedError

    async def list_deleted_dav(self, account_id: int, kinds: Optional[Sequence[str]] = None) -> list:
        """Recoverable (soft-deleted, not moved, not restored) calendar objects and vCards, the
        newest deletion first: dicts with id (the tombstone's, stable until the purge), folder
        (the collection's name), kind (``"calendar"``: events, to-dos, journals of calendars
        and task lists; ``"contacts"``: vCards), href, component, uid, deleted_at, size, etag,
        dtstart, dtend, modseq (of the deletion) and data (None here).  ``kinds``: a subset of
        ``("calendar", "contacts")``, None for both; another value raises InvalidInput.

        What the user's "Deleted events" / "Deleted contacts" (CalDAV, CardDAV; ActiveSync
        later) show.  An item leaves the list when it is restored: by :meth:`restore_dav`, or
        by a write that makes its UID live (again) in a collection of the account, of the same
        kind (:meth:`put_dav_item`, a DAV PUT or MOVE), and when the purge removes it."""
        raise NotImplementedError

    async def deleted_dav_items(self, account_id: int, item_ids: Sequence[int]) -> list:
        """The recoverable items among ``item_ids`` as :meth:`list_deleted_dav` lists them, with
        ``data`` (their iCalendar/vCard text); ids that are not (any more) are left out."""
        raise NotImplementedError

    async def deleted_dav_changes(self, account_id: int, kind: str, since: int) -> tuple:
        """The sync state of one kind's deleted items (RFC 6578 for the DAV views, a SyncKey for
        ActiveSync): ``(modseq now, purged, [(id, href) deleted after since], [(id, href)
        restored after since])``.  ``since`` below ``purged`` (the purge removed tombstones after it was
        handed out) cannot be answered incrementally: the client starts over.  The modseq now
        changes with every deletion, restore and purge of the account's items of that kind."""
        raise NotImplementedError

    async def restore_dav(self, account_id: int, item_ids: Sequence[int]) -> tuple:
        """Bring deleted items back under their old name (their collection is recreated if it
        was deleted).  Returns ``(restored count, [reason per item that could not come back])``."""
        raise NotImplementedError

    async def purge(self, older_than_days: Optional[float] = None) -> PurgeReport:
        """Removes tombstones and deleted accounts (with everything they own) older than
        ``older_than_days`` (default: the configured ``softdelete_lifetime``, where 0 means
        never; an explicit 0 means everything deleted), and blobs no row references any more."""
        raise NotImplementedError

    # -- calendars and contacts (coroutines; Radicale's threads use ``dav``) ----------------
    # -- backups (store/backup.py) ----------------------------------------------------------
    async def backup(self, dest: str) -> dict:
        """An online, consistent backup of the whole store into the directory ``dest``: the
        database as an SQLite store file (``haven.db``, Haven's portable format, whatever this
        store's engine) and the blob files it names that ``dest`` does not hold yet
        (incremental).  Returns counts: ``copied``, ``present``, ``missing`` blob files,
        ``bytes`` copied, ``database_bytes``."""
        raise NotImplementedError

    async def verify_backup(self, src: str) -> tuple:
        """``(messages checked, [problems])`` of the backup in ``src``: the database's
        integrity and every message's bytes hashed against its name."""
        raise NotImplementedError

    async def list_dav_collections(self, account_id: int) -> list:
        """:class:`DavCollection` of every calendar, task list and address book of the account."""
        raise NotImplementedError

    async def list_dav_items(self, folder_id: int, with_data: bool = False) -> list:
        """Live :class:`DavItem` of a collection (``data`` None unless ``with_data``)."""
        raise NotImplementedError

    async def put_dav_item(self, account_id: int, folder_id: int, item: "NewItem",
                           expect: Optional[str] = None) -> tuple:
        """Create or overwrite one calendar object or vCard (``item.href``).  Returns ``(stored
        DavItem, whether it replaced one)``.  Raises NotFound (collection), Exists (the UID is
        another item's), InvalidInput (bad href).  When the write makes the UID live in the
        collection (a new item, or an overwrite that changes the UID; not an edit), the
        account's recoverable deleted items of that UID and kind are restored by it in the same
        transaction (they leave :meth:`list_deleted_dav`): writing an item back is how a user
        undoes its deletion.

        ``expect`` makes the write conditional, checked in its transaction: ``""`` the href must
        not be live (a create), an ETag the live item must still have it (an edit of what the
        writer read); Conflict when not, nothing written.  CalDAV's If-Match / If-None-Match
        and ActiveSync's Change use it, so an edit racing another client's is refused, never
        lost.  Publishes ``kind="dav"`` on the push bus (as every DAV write below)."""
        raise NotImplementedError

    async def delete_dav_item(self, account_id: int, folder_id: int, href: str,
                              expect: Optional[str] = None) -> int:
        """Soft-delete the live item ``href`` (a tombstone ``haven recover`` offers); returns the
        modseq.  NotFound when it is not live; ``expect``: the ETag it must still have (Conflict)."""
        raise NotImplementedError

    async def move_dav_item(self, account_id: int, src_folder_id: int, href: str, dst_folder_id: int,
                            dst_href: str) -> int:
        """Move a live item to another collection of the account (overwriting ``dst_href``); the
        source keeps a tombstone marked moved (not recoverable).  Returns the modseq."""
        raise NotImplementedError

    async def dav_items_by_id(self, account_id: int, item_ids: Sequence[int], with_data: bool = True) -> list:
        """The account's live :class:`DavItem` among ``item_ids``, with their text unless told
        otherwise; deleted items and ids of other accounts are left out."""
        raise NotImplementedError

    async def dav_changes(self, account_id: int, folder_id: int, since: int) -> tuple:
        """``(the collection's modseq now, the highest modseq the purge removed, [ids of live
        items changed or made after since], [ids of items deleted or moved away after since])``,
        oldest change first.  NotFound for a collection that is gone or another account's."""
        raise NotImplementedError

    async def dav_components(self, account_id: int) -> dict:
        """``{folder id: {components of its live items}}`` ("VEVENT", "VTODO", "VCARD", ...) of
        the account's collections that hold any."""
        raise NotImplementedError

    # -- ActiveSync: devices, sync states, client ids (store/activesync.py) -------------------
    # A device is (account id, DeviceId): the same DeviceId on two accounts is two devices.  Every
    # method below but record_device and list_devices raises NotFound for a device never
    # recorded, and InvalidInput for a DeviceId that is not 1 to 128 characters without control
    # characters (compared exactly).  A collection id is a folder's id (mail, calendar, contacts,
    # tasks; a calendar's task view: its id + EAS_TASK_VIEW) or EAS_HIERARCHY (0) for FolderSync.
    # Deleting an account removes its devices, states and client ids; a soft-deleted account keeps
    # them until the purge.
    async def record_device(self, account_id: int, device_id: str, device_type: Optional[str] = None,
                            user_agent: Optional[str] = None, protocol_version: Optional[str] = None,
                            model: Optional[str] = None, os: Optional[str] = None) -> EasDevice:
        """Create the device (first and last seen now) or note that it was seen now (``last_seen``
        moves only when older than EAS_LAST_SEEN_RESOLUTION seconds, or when a field changed); the
        arguments that are not None replace what is stored (cut to the column widths: 128 for the
        type, 255 for model, OS and user agent, 16 for the protocol version).  Returns it.
        Raises NotFound (no such account)."""
        raise NotImplementedError

    async def get_device(self, account_id: int, device_id: str) -> EasDevice:
        raise NotImplementedError

    async def list_devices(self, account_id: Optional[int] = None) -> list:
        """:class:`EasDevice` of the account (every account's when None), by account and DeviceId."""
        raise NotImplementedError

    async def delete_device(self, account_id: int, device_id: str) -> None:
        """Forget the device with its sync states and client ids (it starts over as new)."""
        raise NotImplementedError

    async def issue_policy_key(self, account_id: int, device_id: str) -> int:
        """A new random pending policy key (32-bit unsigned, never 0) for Provision's first
        phase; it replaces any pending one, the acknowledged one stays until acknowledged."""
        raise NotImplementedError

    async def acknowledge_policy_key(self, account_id: int, device_id: str, pending_key: int) -> int:
        """The device acknowledged ``pending_key``: when it is the pending key, a new random final
        key becomes the acknowledged one and is returned (the pending one is cleared); else 0 and
        nothing changes (issue a new one)."""
        raise NotImplementedError

    async def request_wipe(self, account_id: int, device_id: str, account_only: bool = False) -> None:
        """Mark the device to be wiped (``wipe_state`` "requested", a done mark is cleared);
        ``account_only``: EAS 16.1's wipe of this account's data only (``wipe_account_only``)."""
        raise NotImplementedError

    async def confirm_wipe(self, account_id: int, device_id: str) -> None:
        """The device reported the wipe done (``wipe_state`` "done"; the first report's time is
        kept).  Raises InvalidInput when no wipe was requested."""
        raise NotImplementedError

    async def clear_wipe(self, account_id: int, device_id: str) -> None:
        """Back to ``wipe_state`` "none" (an admin cancelled the wipe or let the device back)."""
        raise NotImplementedError

    async def cache_device_request(self, account_id: int, device_id: str, kind: str,
                                   data: Optional[bytes]) -> None:
        """Keep the device's last ``kind`` request ("ping" or "sync": the Ping and the last full
        Sync, which a later empty request repeats); None forgets it.  Raises TooBig over
        EAS_MAX_CACHED_REQUEST octets (nothing is written), InvalidInput for another kind."""
        raise NotImplementedError

    async def cached_device_request(self, account_id: int, device_id: str, kind: str) -> Optional[bytes]:
        """The request :meth:`cache_device_request` kept, or None."""
        raise NotImplementedError

    async def get_sync_state(self, account_id: int, device_id: str, collection_id: int) -> Optional[EasSyncState]:
        """The device's state of the collection, None when it has none (it must start with 0)."""
        raise NotImplementedError

    async def sync_modseqs(self, account_id: int, collection_ids: Iterable[int]) -> dict:
        """``{(device id, collection id): modseq reached}`` for every device of the account with a
        state of one of ``collection_ids``: one query for all the parked Pings of an account."""
        raise NotImplementedError

    async def adjust_held_ids(self, account_id: int, device_id: str, collection_id: int, add: Iterable[int] = (),
                              remove: Iterable[int] = ()) -> bool:
        """Add to and remove from the ids the device holds of a collection, its SyncKeys left
        as they are: what the device did itself (MoveItems: the source item is gone from it,
        the destination one is already there, so no Sync sends it back).  False when the device
        has no state of the collection (nothing to adjust)."""
        raise NotImplementedError

    async def save_sync_state(self, account_id: int, device_id: str, collection_id: int, expected_key: str,
                              new_key: str, modseq: int, held: Optional[Iterable[int]] = None,
                              filter_type: Optional[int] = None, options: Optional[Mapping] = None,
                              response: Optional[bytes] = None, snapshot=None) -> bool:
        """Advance the state from ``expected_key`` (the key the request came with) to ``new_key``
        (:func:`eas_next_sync_key`), if and only if ``expected_key`` is still the current key:
        of several requests with one key exactly one gets True, the others False and change
        nothing.  The replaced key becomes ``previous_key``; ``response`` (the response carrying
        ``new_key``) is kept for replay to a device that repeats it.  ``held`` (the ids the device
        now holds), ``filter_type``, ``options`` (JSON-able: body preferences and the like) and
        ``snapshot`` (JSON-able: what ids cannot tell, e.g. the names and parents a FolderSync
        sent) replace the stored ones unless None.

        ``expected_key`` EAS_INITIAL_KEY ("0") starts over: the state is replaced whatever its key
        (False only when a concurrent start-over of the same collection won), and the
        collection's client ids go; for EAS_HIERARCHY every state and client id of the device
        goes (but SendMail's, collection 0).  Raises InvalidInput (``new_key`` empty, "0", over
        64 characters or equal to ``expected_key``; negative ids), TooBig (over EAS_MAX_RESPONSE,
        EAS_MAX_HELD, EAS_MAX_OPTIONS or EAS_MAX_SNAPSHOT; nothing is written)."""
        raise NotImplementedError

    async def add_dav_items(self, account_id: int, device_id: str, collection_id: int, folder_id: int,
                            adds: Sequence) -> list:
        """A phone's Adds to a calendar, task list or address book, in one transaction: ``adds``
        is ``[(ClientId or None, NewItem)]``, the answer one ``(ServerId or None, reason, the
        modseq it was written with or 0)`` each.
        A ClientId answered before (within EAS_CLIENT_ID_LIFETIME) gets its ServerId again and
        nothing is written; a new item is stored as :meth:`put_dav_item` with ``expect=""``
        stores it (under another name when its own is taken), its ServerId (the item id) then
        remembered for the ClientId; an item whose UID is another live item's, or that is
        refused otherwise, gets None and the reason.  Publishes ``kind="dav"`` once."""
        raise NotImplementedError

    async def server_id_for_client_id(self, account_id: int, device_id: str, collection_id: int,
                                      client_id: str) -> Optional[str]:
        """The ServerId an Add (or, collection 0, a SendMail) with this ClientId made, or None:
        a device repeating a request it got no answer to is told the same ServerId, and nothing
        is added twice."""
        raise NotImplementedError

    async def remember_client_id(self, account_id: int, device_id: str, collection_id: int, client_id: str,
                                 server_id: str) -> str:
        """Record ClientId -> ServerId (kept EAS_CLIENT_ID_LIFETIME seconds) and return the
        ServerId the store holds for it: ``server_id``, or the one a concurrent request recorded
        first.  Raises InvalidInput (a ClientId over 255 octets, an empty one)."""
        raise NotImplementedError
