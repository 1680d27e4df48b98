"""CalDAV (RFC 4791) and CardDAV (RFC 6352) on the shared store, with Radicale as the protocol
engine.  This package is a WSGI application and what the HTTP front door needs to mount it:
``PREFIX``, ``REDIRECTS`` and ``make_application(ctx)``; the service puts them into the front
door's mount table (gateways/http knows no DAV, and this package knows no front door).

- ``radicale_app.py``: Radicale's configuration, its auth and rights plugins, the WSGI wrapper;
- ``storage.py``: Radicale's storage plugin over ``store.dav`` (folders of kind calendar,
  tasks and contacts; items with indexed time bounds; sync tokens from the store's modseq);
- ``../common/davitems.py``: iCalendar/vCard text into store rows (shared with ActiveSync and the CLI).

Invariants
- Every request reaching the application was authenticated by the front door, which puts the
  account into the WSGI environ as ``haven.user`` and ``haven.account_id``.
- Radicale's code runs on the front door's bounded thread pool (``[http] threads``), never on
  the reactor.
- Radicale parses XML with defusedxml (no entity expansion, no external entities).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Optional

from gateways.common.context import GatewayContext
from gateways.common.settings import SectionSettings

#: where CalDAV and CardDAV live; every principal, calendar and address book is below it
PREFIX = "/dav/"
#: RFC 6764 §5: the well-known URIs lead a client to the context path.  A client given only
#: http://host:port/ (DAVx5, Thunderbird) asks "/" first.
REDIRECTS = {"/.well-known/caldav": PREFIX, "/.well-known/carddav": PREFIX, "/": PREFIX}
#: DAV's limits are keys of the front door's section (conf/haven.ini)
SECTION = "http"


@dataclass(frozen=True)
class DavConfig:
    max_request_size: int = 10485760  # Radicale's own check of the body it reads
    max_item_size: int = 2097152
    max_occurrences: int = 10000  # 0: no bound
    #: display names of the Deleted views; empty switches one off
    deleted_events: str = "Deleted events"
    deleted_contacts: str = "Deleted contacts"

    @classmethod
    def from_settings(cls, settings: Optional[Mapping[str, str]]) -> "DavConfig":
        """DAV's keys of ``[http]``; a bad value stops start-up naming the key."""
        s = SectionSettings(SECTION, settings)

        def name(key: str, default: str) -> str:
            # unlike other keys, present but empty means "off", not "the default"
            value = (settings or {}).get(key)
            return default if value is None else str(value).strip()
        return cls(max_request_size=s.number("max_request_size", cls.max_request_size, int, 1),
                   max_item_size=s.number("max_item_size", cls.max_item_size, int, 1),
                   max_occurrences=s.number("max_occurrences", cls.max_occurrences, int, 0),
                   deleted_events=name("deleted_events", cls.deleted_events),
                   deleted_contacts=name("deleted_contacts", cls.deleted_contacts))


def make_application(ctx: GatewayContext):
    """The WSGI application to mount at ``PREFIX`` (behind Basic auth through the portal)."""
    from gateways.dav.radicale_app import make_application as make_radicale  # Radicale only when DAV runs
    return make_radicale(ctx.store.dav, DavConfig.from_settings(ctx.settings))
