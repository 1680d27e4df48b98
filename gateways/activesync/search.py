"""Looking things up from a phone: Search ([MS-ASCMD] 2.2.1.16) of the global address list and
of the mailbox, Find (2.2.1.2, 16.1) of the same two, and ResolveRecipients (2.2.1.15): the
names a user types into To resolved to addresses, with free/busy times.

- The global address list (GAL) is the accounts and aliases of the user's own domain (the
  domain of the logged-in address): a query never shows another domain's people.  An entry
  matches when the query starts its display name, a word of it, its address or its local part
  (case-insensitive); entries are sorted by display name.  Disabled and deleted accounts (and
  their aliases) are not listed.
- A mailbox search is the words of ``FreeText`` (each must occur, case-insensitive, in the
  subject, the From/To/Cc names and addresses or the text; :meth:`Store.text_matches` narrows
  the candidates and :meth:`Store.search_text` confirms), in one folder (``CollectionId``,
  with its subfolders under ``DeepTraversal``) or all mail folders, within ``GreaterThan`` /
  ``LessThan`` of ``DateReceived``; newest first.  A result's ``LongId`` is the message's mail
  ServerId ``<folder id>:<uid>``: ItemOperations Fetch and SmartReply/SmartForward take it as
  they take a ServerId.  Results are computed anew for every request (no server-side result
  set: ``RebuildResults`` changes nothing, a next Range sees the mailbox as it is then).
- ResolveRecipients: a To that is an address resolves to the local account or alias of that
  exact address (any domain served here), else to a contact of the user's address books with
  that e-mail; a name resolves to the GAL entries and contacts it starts (as GAL matching).  One
  match is Status 1, several Status 2 with up to ``MaxAmbiguousRecipients`` suggestions (3 when
  that cut the list), none 4.  Free/busy (``Availability``) of a local recipient is read from
  its default calendar ("Calendar"): 30-minute slots, ``2`` busy, ``1`` tentative, ``0`` free;
  other recipients get ``4`` (no data) in every slot.  No S/MIME certificates are kept: asked
  for, every recipient's ``Certificates`` is Status 7 (none valid) with a count of 0.

Invariants
- A range is ``m-n``; at most ``MAX_RESULTS`` (100) results are answered whatever the range
  asks; ``Total`` counts every match (GAL: an estimate, accounts past the page are not checked
  for being disabled).
- A malformed request is a protocol error Status (Search/Find 2, ResolveRecipients 5) and a log
  line, never an HTTP error; only store failures propagate (the command layer's 503).
- Parsing vCards and calendars runs in the CPU pool, never on the reactor.
"""

from __future__ import annotations

import datetime
import email.utils
import logging
import re
from dataclasses import dataclass
from typing import Optional

import icalendar
import vobject
from twisted.internet.threads import deferToThread

from formats import mime

from . import contacts, mailitem, mailsync
from .items import fetch_options
from .xmlutil import element, sub, text

try:  # expands every kind of recurrence (overridden instances too); vobject's rrule set if not
    import recurring_ical_events
except ImportError:  # pragma: no cover - depends on the installation
    recurring_ical_events = None

log = logging.getLogger("haven.activesync")

MAX_RESULTS = 100
#: Search and Store statuses ([MS-ASCMD] 2.2.3.177.13)
OK, BAD_REQUEST, SERVER_ERROR, TOO_COMPLEX = 1, 2, 3, 8
#: ResolveRecipients statuses ([MS-ASCMD] 2.2.3.177.12)
RESOLVED, AMBIGUOUS, AMBIGUOUS_PARTIAL, UNRESOLVED, RR_PROTOCOL = 1, 2, 3, 4, 5
NO_CERTIFICATE = 7
#: at most this many To elements, and this long a free/busy span (Exchange's 42 days)
MAX_TO, MAX_AVAILABILITY_DAYS = 100, 42
SLOT = 30 * 60
#: words of a FreeText query and messages' texts confirmed per store call
MAX_WORDS, TEXT_BATCH = 10, 250


class BadRequest(ValueError):
    """A request this module cannot answer as asked (the command's protocol error Status)."""


class TooComplex(BadRequest):
    """A query of a kind not searched (Status 8)."""


def parse_range(value: Optional[str], cap: int = MAX_RESULTS) -> tuple:
    """``(first, last)`` of a Range ``m-n`` (default ``0-(cap-1)``), at most ``cap`` results."""
    if value is None or not value.strip():
        return 0, cap - 1
    first, dash, last = value.strip().partition("-")
    if not (dash and first.isdigit() and last.isdigit()) or int(first) > int(last) or len(value) > 24:
        raise BadRequest(f"bad Range {value[:30]!r}")
    return int(first), min(int(last), int(first) + cap - 1)


def window(matches: list, first: int, last: int) -> list:
    return matches[first:last + 1]


# -- the global address list ---------------------------------------------------------------------

@dataclass(frozen=True)
class GalEntry:
    display: str
    address: str
    alias: str
    first: str = ""
    last: str = ""
    account_id: int = 0


def domain_of(address: str) -> str:
    return address.rpartition("@")[2].lower()


def _names(name: str) -> tuple:
    words = (name or "").split()
    return (" ".join(words[:-1]), words[-1]) if len(words) > 1 else ("", "")


async def gal_entries(store, account) -> list:
    """The GAL of ``account``'s domain: its accounts and aliases, sorted by display name."""
    domain = domain_of(account.address)
    people = {a.address.lower(): a for a in await store.list_accounts() if domain_of(a.address) == domain}
    out = []
    for a in people.values():
        first, last = _names(a.name or "")
        out.append(GalEntry(a.name or a.address.partition("@")[0], a.address, a.address.partition("@")[0], first,
                            last, a.id))
    for alias, owner in await store.list_aliases():
        if domain_of(alias) == domain:
            target = people.get(owner.lower())
            out.append(GalEntry(alias.partition("@")[0], alias, alias.partition("@")[0],
                                account_id=target.id if target else 0))
    out.sort(key=lambda e: (e.display.casefold(), e.address))
    return out


def gal_match(entry: GalEntry, query: str) -> bool:
    q = query.casefold()
    words = [entry.display, entry.address, entry.alias] + entry.display.split()
    return any(w.casefold().startswith(q) for w in words)


async def gal_search(store, account, query: str, first: int, last: int) -> tuple:
    """``(entries of the page, total)`` for a GAL query."""
    query = (query or "").strip()
    if not query:
        raise BadRequest("an empty GAL query")
    matches = [e for e in await gal_entries(store, account) if gal_match(e, query)]
    kept, skipped = await live(store, matches, last + 1)
    return kept[first:], len(matches) - skipped


async def live(store, entries: list, want: int) -> tuple:
    """``(up to want entries that are not disabled or deleted, how many were skipped)``."""
    page, skipped = [], 0
    for entry in entries:
        if len(page) >= want:
            break
        creds = await store.get_credentials(entry.address)
        if creds is None or creds.disabled:
            skipped += 1
        else:
            page.append(entry)
    return page, skipped


def gal_properties(parent, entry: GalEntry) -> None:
    sub(parent, "Gal", "DisplayName", entry.display)
    if entry.first:
        sub(parent, "Gal", "FirstName", entry.first)
    if entry.last:
        sub(parent, "Gal", "LastName", entry.last)
    sub(parent, "Gal", "Alias", entry.alias)
    sub(parent, "Gal", "EmailAddress", entry.address)


# -- the mailbox -----------------------------------------------------------------------------------

@dataclass
class MailQuery:
    words: list
    folders: list  # collection ids asked for ([]: every mail folder)
    deep: bool = False
    after: Optional[int] = None  # DateReceived strictly after (epoch seconds)
    before: Optional[int] = None


def _timestamp(value: str) -> int:
    m = re.match(r"^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.\d+)?Z?$", (value or "").strip())
    if not m:
        raise BadRequest(f"bad date {value[:40]!r}")
    try:
        when = datetime.datetime(*map(int, m.groups()), tzinfo=datetime.timezone.utc)
    except ValueError:
        raise BadRequest(f"bad date {value[:40]!r}") from None
    return int(when.timestamp())


def mail_query(query, deep: bool) -> MailQuery:
    """A Search Query (``And`` of Class, CollectionId, FreeText, GreaterThan, LessThan) or a
    Find MailBoxSearchCriterion Query; BadRequest (or TooComplex) for anything else."""
    if query is None:
        raise BadRequest("no Query")
    out = MailQuery([], [], deep)
    terms = list(query)
    while terms:
        el = terms.pop(0)
        page, _, name = el.tag[1:].partition("}")
        if name == "And" and page == "Search":
            terms.extend(el)
        elif name == "Class":
            if _value(el) not in ("Email", ""):
                raise TooComplex(f"a search of class {_value(el)[:20]}")
        elif name == "CollectionId":
            out.folders.append(_value(el))
        elif name == "FreeText":
            out.words += [w.casefold() for w in _value(el).split()]
        elif name in ("GreaterThan", "LessThan") and el.find("{Email}DateReceived") is not None:
            when = _timestamp(text(el, "Search", "Value") or "")
            if name == "GreaterThan":
                out.after = when
            else:
                out.before = when
        else:
            raise TooComplex(f"{name} is not searched")
    if len(out.words) > MAX_WORDS:
        raise TooComplex("too many words")
    if not out.words and out.after is None and out.before is None:
        raise BadRequest("nothing to search for")
    return out


def _value(el) -> str:
    value = el.text or ""
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


async def mail_matches(ctx, query: MailQuery) -> list:
    """``[(internaldate, folder, meta)]`` of the matching messages, newest first."""
    store = ctx.store
    folders = await store.list_folders(ctx.account.id, "mail")
    if query.folders:
        named = [f for f in folders if str(f.id) in query.folders]
        if len(named) != len(set(query.folders)):
            raise BadRequest("an unknown CollectionId")
        chosen = {f.id: f for f in named}
        if query.deep:
            for f in folders:
                if any(f.name.startswith(n.name + "/") for n in named):
                    chosen[f.id] = f
        folders = list(chosen.values())
    found = []
    for folder in folders:
        metas = [m for m in await store.list_messages(folder.id)
                 if (query.after is None or m.internaldate > query.after)
                 and (query.before is None or m.internaldate < query.before)]
        if query.words and metas:
            metas = await _with_words(store, folder.id, metas, query.words)
        found += [(m.internaldate, folder, m) for m in metas]
    found.sort(key=lambda t: (t[0], t[1].id, t[2].uid), reverse=True)
    return found


async def _with_words(store, folder_id: int, metas: list, words: list) -> list:
    maybe = await store.text_matches(folder_id, [("text", w) for w in words])
    if maybe is not None:
        metas = [m for m in metas if m.uid in maybe]
    out = []
    for i in range(0, len(metas), TEXT_BATCH):
        batch = metas[i:i + TEXT_BATCH]
        records = await store.fetch_messages(folder_id, [m.uid for m in batch], envelope=True)
        heads = await deferToThread(lambda records=records: {r.meta.uid: _header_text(r.envelope) for r in records})
        need = {m.uid for m in batch if m.uid in heads and not all(w in heads[m.uid] for w in words)}
        hits = await store.search_text(folder_id, sorted(need), words) if need else {}
        for m in batch:
            if m.uid not in heads:
                continue  # expunged meanwhile
            if m.uid not in need or all(w in heads[m.uid] or w in hits.get(m.uid, ()) for w in words):
                out.append(m)
    return out


def _header_text(envelope) -> str:
    env = list(envelope or []) + [None] * 10
    parts = [mime.decode_header_value(env[1] or "")]
    for lst in (env[2], env[5], env[6]):
        parts += [mailitem.addresses(lst), mailitem.display_names(lst)]
    return " ".join(parts).casefold()


async def mail_items(ctx, page: list, opts: dict) -> dict:
    """(folder id, uid) -> ApplicationData of the page's messages."""
    out = {}
    by_folder: dict = {}
    for _when, folder, meta in page:
        by_folder.setdefault(folder.id, (folder, []))[1].append(meta.uid)
    for folder_id, (folder, uids) in by_folder.items():
        built = await mailsync.MailSync(ctx, folder, element("AirSync", "Collection"), 1).items(sorted(uids), opts)
        out.update({(folder_id, uid): data for uid, data in built.items()})
    return out


# -- Search ------------------------------------------------------------------------------------

async def search(ctx):
    body = ctx.body
    out = element("Search", "Search")
    store_el = element("Search", "Store")
    store_q = body.find("{Search}Store") if body is not None and body.tag == "{Search}Search" else None
    sub(out, "Search", "Status", OK)
    sub(out, "Search", "Response").append(store_el)
    if store_q is None:
        log.info("activesync %s: Search without a Store", ctx.account.address)
        sub(store_el, "Search", "Status", BAD_REQUEST)
        return out
    name = (text(store_q, "Search", "Name") or "").strip().lower()
    options = store_q.find("{Search}Options")
    try:
        first, last = parse_range(text(options, "Search", "Range") if options is not None else None)
        if name == "gal":
            query = store_q.find("{Search}Query")
            page, total = await gal_search(ctx.store, ctx.account, _value(query) if query is not None else "",
                                           first, last)
            sub(store_el, "Search", "Status", OK)
            for entry in page:
                gal_properties(sub(sub(store_el, "Search", "Result"), "Search", "Properties"), entry)
        elif name == "mailbox":
            deep = options is not None and options.find("{Search}DeepTraversal") is not None
            query = mail_query(store_q.find("{Search}Query"), deep)
            matches = await mail_matches(ctx, query)
            total = len(matches)
            page = window(matches, first, last)
            opts = fetch_options(options) if options is not None else {}
            items = await mail_items(ctx, page, opts)
            sub(store_el, "Search", "Status", OK)
            page = [(when, folder, meta) for when, folder, meta in page if (folder.id, meta.uid) in items]
            for _when, folder, meta in page:
                result = sub(store_el, "Search", "Result")
                sub(result, "AirSync", "Class", "Email")
                sub(result, "Search", "LongId", mailsync.server_id(folder.id, meta.uid))
                sub(result, "AirSync", "CollectionId", folder.id)
                props = sub(result, "Search", "Properties")
                for child in list(items[(folder.id, meta.uid)]):
                    props.append(child)
        else:
            raise BadRequest(f"the store {name[:30]!r} is not searched")
    except BadRequest as e:
        log.info("activesync %s: Search refused: %s", ctx.account.address, e)
        for child in list(store_el):
            store_el.remove(child)
        sub(store_el, "Search", "Status", TOO_COMPLEX if isinstance(e, TooComplex) else BAD_REQUEST)
        return out
    if not page:
        sub(store_el, "Search", "Result")  # [MS-ASCMD] 2.2.3.155.3: an empty Result for no match
    else:
        sub(store_el, "Search", "Range", f"{first}-{first + len(page) - 1}")
    sub(store_el, "Search", "Total", total)
    return out


# -- Find (16.1) -----------------------------------------------------------------------------------

FIND_OK, FIND_BAD_REQUEST = 1, 2


async def find(ctx):
    body = ctx.body
    out = element("Find", "Find")
    execute = body.find("{Find}ExecuteSearch") if body is not None and body.tag == "{Find}Find" else None
    criterion = None
    if execute is not None:
        criterion = execute.find("{Find}MailBoxSearchCriterion")
        if criterion is None:
            criterion = execute.find("{Find}GalSearchCriterion")
    if criterion is None:
        log.info("activesync %s: Find without a search criterion", ctx.account.address)
        sub(out, "Find", "Status", FIND_BAD_REQUEST)
        return out
    options = criterion.find("{Find}Options")
    response = element("Find", "Response")
    try:
        first, last = parse_range(text(options, "Find", "Range") if options is not None else None)
        if criterion.tag == "{Find}GalSearchCriterion":
            page, total = await gal_search(ctx.store, ctx.account, text(criterion, "Find", "Query") or "", first,
                                           last)
            sub(response, "ItemOperations", "Store", "GAL")
            sub(response, "Find", "Status", FIND_OK)
            for entry in page:
                gal_properties(sub(sub(response, "Find", "Result"), "Find", "Properties"), entry)
        else:
            deep = options is not None and options.find("{Find}DeepTraversal") is not None
            matches = await mail_matches(ctx, mail_query(criterion.find("{Find}Query"), deep))
            total = len(matches)
            page = window(matches, first, last)
            items = await mail_items(ctx, page, {"body": [[mailitem.PLAIN, 0, False, 255]]})
            page = [p for p in page if (p[1].id, p[2].uid) in items]
            sub(response, "ItemOperations", "Store", "Mailbox")
            sub(response, "Find", "Status", FIND_OK)
            for _when, folder, meta in page:
                _find_result(response, folder, meta, items[(folder.id, meta.uid)])
    except BadRequest as e:
        log.info("activesync %s: Find refused: %s", ctx.account.address, e)
        sub(out, "Find", "Status", FIND_BAD_REQUEST)
        return out
    sub(out, "Find", "Status", FIND_OK)
    out.append(response)
    if page:
        sub(response, "Find", "Range", f"{first}-{first + len(page) - 1}")
    sub(response, "Find", "Total", total)
    return out


def _find_result(response, folder, meta, data) -> None:
    """[MS-ASCMD] 2.2.3.139.1: the summary of a message Find shows in its list."""
    result = sub(response, "Find", "Result")
    sub(result, "AirSync", "Class", "Email")
    sub(result, "AirSync", "ServerId", mailsync.server_id(folder.id, meta.uid))
    sub(result, "AirSync", "CollectionId", folder.id)
    props = sub(result, "Find", "Properties")
    for name in ("Subject", "DateReceived", "DisplayTo"):
        sub(props, "Email", name, text(data, "Email", name) or "")
    cc = email.utils.getaddresses([text(data, "Email", "Cc") or ""])
    sub(props, "Find", "DisplayCc", "; ".join(n or a for n, a in cc if n or a))
    sub(props, "Find", "DisplayBcc", "")
    sub(props, "Email", "Importance", text(data, "Email", "Importance") or "1")
    sub(props, "Email", "Read", text(data, "Email", "Read") or "0")
    sub(props, "Email2", "IsDraft", "1" if "\\Draft" in meta.flags else "0")
    body = data.find("{AirSyncBase}Body")
    sub(props, "Find", "Preview", (text(body, "AirSyncBase", "Preview") or "") if body is not None else "")
    sub(props, "Find", "HasAttachments", "1" if data.find("{AirSyncBase}Attachments") is not None else "0")
    sub(props, "Email", "From", text(data, "Email", "From") or "")


# -- ResolveRecipients ----------------------------------------------------------------------------

@dataclass(frozen=True)
class Candidate:
    kind: int  # 1 GAL (a local account or alias), 2 a contact
    display: str
    address: str
    account_id: int = 0  # the local account whose calendar answers free/busy


async def contact_entries(store, account) -> list:
    """``(display name, [addresses])`` of every card in the account's address books."""
    texts = []
    for coll in await store.list_dav_collections(account.id):
        if coll.folder.kind == "contacts":
            texts += [item.data for item in await store.list_dav_items(coll.folder.id, with_data=True) if item.data]
    return await deferToThread(_read_cards, texts) if texts else []


def _read_cards(texts: list) -> list:
    out = []
    for data in texts:
        try:
            card = contacts.parse(data)
        except contacts.ConversionError as e:
            log.info("activesync: a card is left out of recipient resolution: %s", e)
            continue
        fields = contacts.read_fields(card, 0)
        addresses = [fields[k] for k in contacts.EMAILS if k in fields]
        addresses += [str(p.value).strip() for p in card.contents.get("email", [])[3:]]
        if addresses:
            out.append((fields.get("FileAs", "") or addresses[0], addresses))
    return out


async def resolve(ctx, to: str, gal: list, cards: list) -> list:
    """The candidates a To names (see the module's docstring)."""
    store = ctx.store
    name, address = email.utils.parseaddr(to)
    if "@" in address and " " not in address:
        found = []
        local = await store.get_credentials(address)
        if local is not None and not local.disabled:
            account = await store.get_account_by_id(local.account_id)
            found.append(Candidate(1, account.name or name or local.address, address.lower(), account.id))
        else:
            found += [Candidate(2, display or name or address, a) for display, addrs in cards for a in addrs
                      if a.lower() == address.lower()]
        return found[:1]
    query = to.strip().casefold()
    if not query:
        return []
    entries, _skipped = await live(store, [e for e in gal if gal_match(e, query)], MAX_RESULTS)
    found = [Candidate(1, e.display, e.address, e.account_id) for e in entries]
    seen = {c.address.lower() for c in found}
    for display, addrs in cards:
        words = [display] + display.split() + addrs
        if any(w.casefold().startswith(query) for w in words) and addrs[0].lower() not in seen:
            seen.add(addrs[0].lower())
            found.append(Candidate(2, display, addrs[0]))
    return found


async def resolve_recipients(ctx):
    body = ctx.body
    if body is None or body.tag != "{ResolveRecipients}ResolveRecipients":
        return element("ResolveRecipients", "ResolveRecipients", element("ResolveRecipients", "Status",
                                                                          text=RR_PROTOCOL))
    names = [_value(el).strip() for el in body.findall("{ResolveRecipients}To")]
    options = body.find("{ResolveRecipients}Options")
    try:
        if not names or len(names) > MAX_TO or any(len(n) > 256 for n in names):
            raise BadRequest(f"{len(names)} To elements")
        max_ambiguous = _number(options, "MaxAmbiguousRecipients", 19, 0, 9999)
        certificates = (text(options, "ResolveRecipients", "CertificateRetrieval") or "1") in ("2", "3") \
            if options is not None else False
        span = _availability(options)
    except BadRequest as e:
        log.info("activesync %s: ResolveRecipients refused: %s", ctx.account.address, e)
        return element("ResolveRecipients", "ResolveRecipients", element("ResolveRecipients", "Status",
                                                                          text=RR_PROTOCOL))
    gal = await gal_entries(ctx.store, ctx.account)
    cards = await contact_entries(ctx.store, ctx.account)
    out = element("ResolveRecipients", "ResolveRecipients")
    sub(out, "ResolveRecipients", "Status", 1)
    for to in names:
        found = await resolve(ctx, to, gal, cards)
        response = sub(out, "ResolveRecipients", "Response")
        sub(response, "ResolveRecipients", "To", to)
        if len(found) == 1:
            status, shown = RESOLVED, found
        elif found:
            shown = found[:max_ambiguous]
            status = AMBIGUOUS if len(shown) == len(found) else AMBIGUOUS_PARTIAL
        else:
            status, shown = UNRESOLVED, []
        sub(response, "ResolveRecipients", "Status", status)
        sub(response, "ResolveRecipients", "RecipientCount", len(shown))
        for c in shown:
            recipient = sub(response, "ResolveRecipients", "Recipient")
            sub(recipient, "ResolveRecipients", "Type", c.kind)
            sub(recipient, "ResolveRecipients", "DisplayName", c.display)
            sub(recipient, "ResolveRecipients", "EmailAddress", c.address)
            if span is not None and status == RESOLVED:
                availability = sub(recipient, "ResolveRecipients", "Availability")
                sub(availability, "ResolveRecipients", "Status", 1)
                sub(availability, "ResolveRecipients", "MergedFreeBusy",
                    await free_busy(ctx.store, c.account_id, *span) if c.account_id else
                    "4" * _slots(*span))
            if certificates and status == RESOLVED:  # 2.2.3.145: none for suggestions
                certs = sub(recipient, "ResolveRecipients", "Certificates")
                sub(certs, "ResolveRecipients", "Status", NO_CERTIFICATE)
                sub(certs, "ResolveRecipients", "CertificateCount", 0)
    return out


def _number(options, name: str, default: int, low: int, high: int) -> int:
    value = text(options, "ResolveRecipients", name) if options is not None else None
    if value is None:
        return default
    if not value.strip().isdigit() or not low <= int(value) <= high:
        raise BadRequest(f"{name} {value[:20]!r}")
    return int(value)


def _availability(options) -> Optional[tuple]:
    """(start, end) epoch seconds of the free/busy span asked for, None when not asked."""
    el = options.find("{ResolveRecipients}Availability") if options is not None else None
    if el is None:
        return None
    start = _timestamp(text(el, "ResolveRecipients", "StartTime") or "")
    end_text = text(el, "ResolveRecipients", "EndTime")
    end = _timestamp(end_text) if end_text else start + 7 * 86400
    if end < start + SLOT or end - start > MAX_AVAILABILITY_DAYS * 86400:
        raise BadRequest("an Availability span out of range")
    return start, end


def _slots(start: int, end: int) -> int:
    return -(-(end - start) // SLOT)


async def free_busy(store, account_id: int, start: int, end: int) -> str:
    """MergedFreeBusy of the account's default calendar from ``start`` to ``end``."""
    calendars = [c.folder for c in await store.list_dav_collections(account_id) if c.folder.kind == "calendar"]
    calendar = next((f for f in calendars if f.name == "Calendar"), calendars[0] if calendars else None)
    if calendar is None:
        return "4" * _slots(start, end)
    texts = [i.data for i in await store.list_dav_items(calendar.id, with_data=True)
             if i.data and i.component == "VEVENT" and (not i.dtend or (i.dtstart < end and i.dtend > start))]
    return await deferToThread(merged_free_busy, texts, start, end)


def merged_free_busy(texts: list, start: int, end: int) -> str:
    """One digit per 30 minutes from ``start``: the busiest event in the slot (opaque events
    ``2``, tentative ``1``; transparent and cancelled ones are free)."""
    slots = [0] * _slots(start, end)
    for data in texts:
        try:
            found = _occurrences(data, start, end)
        except Exception as e:  # a calendar text we cannot read has no say in free/busy
            log.info("activesync: an event is left out of free/busy: %s", str(e)[:200])
            continue
        for s, e, value in found:
            for i in range(max(0, (s - start) // SLOT), min(len(slots), -(-(e - start) // SLOT))):
                slots[i] = max(slots[i], value)
    return "".join(str(v) for v in slots)


def _busy(transp, status) -> int:
    """2 busy, 1 tentative, 0 free (transparent or cancelled)."""
    if str(transp or "").upper() == "TRANSPARENT" or str(status or "").upper() == "CANCELLED":
        return 0
    return 1 if str(status or "").upper() == "TENTATIVE" else 2


def _seconds(value) -> Optional[int]:
    """Epoch seconds of a DTSTART-like value: floating times and all-day dates as UTC."""
    if isinstance(value, datetime.datetime):
        return int((value if value.tzinfo else value.replace(tzinfo=datetime.timezone.utc)).timestamp())
    if isinstance(value, datetime.date):
        return int(datetime.datetime(value.year, value.month, value.day, tzinfo=datetime.timezone.utc).timestamp())
    return None


def _length(start, end, duration) -> int:
    """Seconds an event lasts (DTEND, else DURATION, else a day for a date and 0 for a time)."""
    if end is not None and _seconds(end) is not None:
        return max(0, _seconds(end) - _seconds(start))
    if duration is not None:
        return int(duration.total_seconds())
    return 0 if isinstance(start, datetime.datetime) else 86400


def _occurrences(data: str, start: int, end: int) -> list:
    """``[(start, end, busy value)]`` of the events of one calendar object in the span, its
    recurrences expanded (recurring_ical_events when installed, else vobject's rrule set)."""
    if recurring_ical_events is None:
        return _occurrences_vobject(data, start, end)
    utc = datetime.timezone.utc
    cal = icalendar.Calendar.from_ical(data)
    out = []
    for ev in recurring_ical_events.of(cal).between(datetime.datetime.fromtimestamp(start, utc),
                                                     datetime.datetime.fromtimestamp(end, utc)):
        dtstart = ev.get("DTSTART")
        if dtstart is None:
            continue
        s = _seconds(dtstart.dt)
        length = _length(dtstart.dt, ev["DTEND"].dt if "DTEND" in ev else None,
                         ev["DURATION"].dt if "DURATION" in ev else None)
        out.append((s, s + max(length, 1), _busy(ev.get("TRANSP"), ev.get("STATUS"))))
    return out


#: occurrences of one recurring event looked at, at most (an endless rule stops here)
MAX_OCCURRENCES = 5000


def _occurrences_vobject(data: str, start: int, end: int) -> list:
    cal = vobject.readOne(data)
    events = list(getattr(cal, "vevent_list", []))
    moved = {(str(ev.uid.value), _seconds(ev.recurrence_id.value)) for ev in events
             if hasattr(ev, "recurrence_id") and hasattr(ev, "uid")}
    out = []
    for ev in events:
        if not hasattr(ev, "dtstart"):
            continue
        first = ev.dtstart.value
        length = max(1, _length(first, ev.dtend.value if hasattr(ev, "dtend") else None,
                                ev.duration.value if hasattr(ev, "duration") else None))
        busy = _busy(getattr(ev, "transp", None) and ev.transp.value, getattr(ev, "status", None) and ev.status.value)
        uid = str(ev.uid.value) if hasattr(ev, "uid") else ""
        if hasattr(ev, "recurrence_id") or not (hasattr(ev, "rrule") or hasattr(ev, "rdate")):
            starts = [_seconds(first)]
        else:
            starts = []
            for n, when in enumerate(ev.getrruleset(addRDate=True)):
                s = _seconds(when)
                if s >= end or n >= MAX_OCCURRENCES:
                    break
                if (uid, s) not in moved:
                    starts.append(s)
        out += [(s, s + length, busy) for s in starts if s < end and s + length > start]
    return out
