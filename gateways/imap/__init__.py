"""Haven's IMAP gateway on the shared store: IMAP4rev1 (RFC 3501) and IMAP4rev2 (RFC 9051).

Modules: ``framing`` (bytes -> complete commands, literals, limits), ``parser`` (command grammar,
pure), ``search`` (search keys: grammar and evaluation), ``response`` (ENVELOPE/BODYSTRUCTURE
and string serialization), ``fetch`` (FETCH rendering), ``session`` (the selected mailbox:
sequence numbers, change reporting), ``protocol`` (the per-connection engine), ``cmd_*``
(handlers ``do_VERB``; ``cmd_quota`` for RFC 9208; ``cmd_sort`` for SORT, THREAD, ESEARCH
results and SEARCHRES; ``cmd_metadata`` for RFC 5464), ``parse_sort`` and ``metadata`` (their
grammar), ``sorting`` and ``thread`` (the SORT keys and THREAD algorithms, pure), ``searchres``
(``$``), ``objectid`` (RFC 8474's MAILBOXID, EMAILID, THREADID), ``utf7`` (modified UTF-7 names),
``fetch_ext`` (PREVIEW, BINARY of streamed messages), ``compress`` (COMPRESS=DEFLATE), ``watch``
(what the sessions of a process share to hear of changes: IDLE fan-out).

What it guarantees:
* Extensions advertised and implemented: IMAP4rev2 (below), LITERAL+, SASL-IR, ID, ENABLE, IDLE, NAMESPACE, UIDPLUS,
  MOVE, UNSELECT, CHILDREN, SPECIAL-USE, CREATE-SPECIAL-USE, LIST-EXTENDED, LIST-STATUS,
  CONDSTORE, QRESYNC, STATUS=SIZE, APPENDLIMIT, QUOTA with QUOTA=RES-STORAGE (RFC 9208; see
  cmd_quota for the root and the units), STARTTLS (when a TLS context is configured and the
  transport is not TLS already), AUTH=PLAIN; ESEARCH, SEARCHRES, SORT, SORT=DISPLAY, ESORT,
  THREAD=ORDEREDSUBJECT, THREAD=REFERENCES (cmd_sort); METADATA (cmd_metadata), OBJECTID
  (objectid); BINARY (RFC 3516), MULTIAPPEND (RFC 3502, all or none), PREVIEW (RFC 8970),
  UTF8=ACCEPT (RFC 6855), COMPRESS=DEFLATE (RFC 4978).
* Quotas: GETQUOTAROOT/GETQUOTA report the account's hard limit and its usage (one root, ``""``,
  present only while a hard limit is set); APPEND and COPY past it answer ``NO [OVERQUOTA]``
  and the connection goes on (the literal was read whole, to its spool file, before the store
  refused it);
  SETQUOTA answers ``NO [NOPERM]`` (limits are set with ``haven user quota``).
* Every session sees other sessions' (and LMTP's) changes at its next command, and at once while
  in IDLE: the push bus marks the session dirty, a ``changes_since`` query fills in the rest,
  one per (folder, modseq) for all the sessions asking at once, and one \\Recent claim per
  folder (``watch``): 10,000 sessions in IDLE on one mailbox hear of a delivery through one
  query, each told exactly what it would have been told alone (bench/fanout.py).
* Limits: ``max_line_length`` (default 64 KiB; longer lines -> BAD), ``max_literal_size``
  (APPEND; default the service's ``max_message_size``, 50 MiB; larger -> ``NO [TOOBIG]``, never
  buffered), 64 KiB literals for other commands, autologout after ``idle_timeout`` minutes
  (default 30, RFC 3501 §5.4), ``login_timeout`` seconds (default 60) before authentication,
  counted from the connection (input does not extend it).  Before login, lines and literals are
  held to 8 KiB (a LOGIN or an AUTHENTICATE response; an APPEND is refused unread).
* Big messages never sit whole in a session's memory: an APPEND literal over 256 KiB goes to a
  spool file in ``data_dir/spool`` as it arrives (reading pauses while 256 KiB wait to be
  written), and FETCH of a message over 1 MiB sends its body literals read from the store
  256 KiB at a time, as the client takes them.  (The store reads a big APPEND whole once, for
  its MIME analysis: one such message at a time.)
* ``allow_plaintext_auth``: ``loopback`` (default) allows LOGIN/AUTHENTICATE without TLS only
  from this machine (a local webmail or TLS proxy), ``yes`` from anywhere, ``no`` never; where it
  is not allowed LOGINDISABLED is advertised and LOGIN answers ``NO [PRIVACYREQUIRED]``
  (RFC 3501 §6.2.3, RFC 5530) until STARTTLS, or on the implicit-TLS listener.

* \\Recent (RFC 3501 §2.3.2): exactly one session sees a new message recent, the first
  read-write IMAP4rev1 one to SELECT the mailbox or be told of the message, on whichever node
  (Store.claim_recent); EXAMINE claims nothing.  SELECT and every EXISTS report ``* n RECENT``,
  FETCH FLAGS carries it, STATUS RECENT counts what nobody claimed, SEARCH NEW/OLD/RECENT use it.

* IMAP4rev2 (RFC 9051), advertised next to IMAP4rev1: a session is IMAP4rev1 until ``ENABLE
  IMAP4rev2`` (authenticated state only, like UTF8=ACCEPT), and an IMAP4rev1 session behaves
  exactly as without it.  What ENABLE IMAP4rev2 changes, going through Appendix E:
  - mailbox names are UTF-8 both ways, as with UTF8=ACCEPT (§5.1; ``utf8_names``), but SEARCH
    CHARSET stays allowed; CREATE/RENAME refuse a name that is not Net-Unicode (NFC, no
    controls): ``NO [CANNOT]`` (§5.1 "MUST prohibit", as RFC 6855 §3 for UTF8=ACCEPT; names
    are never normalized, so a mailbox made otherwise by an IMAP4rev1 client stays reachable);
  - no \\Recent (§2.3.2): the session claims nothing, sends no ``* n RECENT`` (SELECT, EXISTS),
    no \\Recent in FLAGS; RECENT, NEW, OLD (and KEYWORD \\Recent) in SEARCH and RECENT in
    STATUS are BAD, since RFC 9051 §9 has them no more (rather than keys that quietly match
    nothing);
  - SEARCH always answers ``* ESEARCH`` (§6.4.4: no RETURN is RETURN (ALL)); SORT and THREAD
    are no part of IMAP4rev2 and keep their responses;
  - SELECT/EXAMINE send no ``[UNSEEN n]`` and end with ``* LIST () "/" name``, with OLDNAME
    when the client spelled the name otherwise, e.g. "inbox" (§6.3.2);
  - DELETE of a name that is only a level above mailboxes answers ``NO [HASCHILDREN]`` (§6.3.5).
  The rest of RFC 9051 is done for every session already: what it folds in (NAMESPACE,
  UNSELECT, UIDPLUS's APPENDUID/COPYUID, ESEARCH, SEARCHRES ``$``, ENABLE, IDLE, SASL-IR,
  LIST-EXTENDED, LIST-STATUS, MOVE with COPYUID, LITERAL- (as LITERAL+), RFC 5530 codes, BINARY
  FETCH and literal8 APPEND, the SPECIAL-USE attributes), STATUS DELETED and SIZE, [CLOSED] when
  SELECT replaces a mailbox, UID in every unsolicited FETCH, MESSAGE/GLOBAL in BODYSTRUCTURE
  like MESSAGE/RFC822, and one selectability flag a LIST line (\\NonExistent in an extended
  LIST, \\Noselect in a basic one).  CHECK and LSUB, gone from or deprecated by RFC 9051, stay.

Deliberate deviations / not done: no CATENATE, CONTEXT=SEARCH/SORT, PARTIAL, NOTIFY, ACL,
QUOTASET, QUOTA=RES-MESSAGE; a single personal namespace; no \\All or \\Flagged (virtual)
mailboxes, so CREATE ... USE (\\All) answers ``NO [USEATTR]``; no OLDNAME in LIST after a RENAME
(that is NOTIFY's, RFC 5465, and the store keeps no name history).
"""

from __future__ import annotations

from dataclasses import dataclass

from twisted.internet.protocol import Factory

from gateways.common.plaintext import PLAINTEXT_CHOICES
from gateways.common.settings import SectionSettings, SettingError

from .fetch import EnvelopeCache
from .protocol import IMAPServer
from .recovered import DEFAULT_NAME as DEFAULT_RECOVERED

DEFAULT_MAX_MESSAGE = 50 * 1024 * 1024


@dataclass
class IMAPConfig:
    max_line: int = 65536
    max_literal_size: int = DEFAULT_MAX_MESSAGE
    max_small_literal: int = 65536
    idle_timeout: float = 1800.0
    login_timeout: float = 60.0
    allow_plaintext_auth: str = "loopback"
    recovered_items: str = DEFAULT_RECOVERED

    @classmethod
    def from_context(cls, ctx) -> "IMAPConfig":
        """Read the ``[imap]`` section; a bad value stops start-up with a message naming the key."""
        config = SectionSettings("imap", ctx.settings)
        number = config.number
        max_message = int((ctx.limits or {}).get("max_message_size") or DEFAULT_MAX_MESSAGE)
        return cls(
            max_line=number("max_line_length", 65536, int, 1024),
            max_literal_size=number("max_literal_size", max_message, int, 0),
            idle_timeout=config.duration("idle_timeout", 30.0, 0.01, unit=60),  # minutes in haven.ini
            login_timeout=config.duration("login_timeout", 60.0, 0.01),
            allow_plaintext_auth=config.choice("allow_plaintext_auth", "loopback", PLAINTEXT_CHOICES),
            recovered_items=_recovery_name(config),
        )


def _recovery_name(config) -> str:
    name = config.text("recovered_items", DEFAULT_RECOVERED).strip("/")
    if name and (name.upper() == "INBOX" or "//" in name or any(c in name for c in "*%\"\\")
                 or any(ord(c) < 0x20 or ord(c) == 0x7F for c in name)):
        raise SettingError(f"[imap] recovered_items: {name!r} is not a mailbox name IMAP clients can use")
    return name


class IMAPFactory(Factory):
    def __init__(self, ctx):
        self.ctx = ctx
        self.config = IMAPConfig.from_context(ctx)
        self.envelopes = EnvelopeCache()  # one for all connections of this service

    def buildProtocol(self, addr):
        proto = IMAPServer(self.ctx, self.config, self.envelopes)
        proto.factory = self
        return proto


def check_settings(ctx) -> None:
    """Read every ``[imap]`` key (start-up checks the whole config before it binds anything)."""
    IMAPConfig.from_context(ctx)


def make_factory(ctx) -> Factory:
    """The service's entry point: a factory of IMAP connections on ``ctx.store``."""
    return IMAPFactory(ctx)
