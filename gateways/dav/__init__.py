"""CalDAV (RFC 4791) and CardDAV (RFC 6352) on the shared store, with Radicale as the protocol
engine.  ``make_site(ctx)`` builds the ``[http]`` listener's Twisted Web site:

- ``web.py``: the front door (auth through the portal, body limits, /.well-known redirects);
- ``radicale_app.py``: Radicale's configuration and its auth and rights plugins;
- ``storage.py``: Radicale's storage plugin over ``store.dav`` (folders of kind calendar,
  tasks and contacts; items with indexed time bounds; sync tokens from the store's modseq);
- ``items.py``: turning iCalendar/vCard text into store rows outside Radicale (the CLI).

Radicale's code runs on a bounded thread pool of its own (``[http] threads``), never on the
reactor.
"""

from __future__ import annotations

from twisted.python.threadpool import ThreadPool

from gateways.common.context import GatewayContext


def make_site(ctx: GatewayContext, reactor=None):
    if reactor is None:
        from twisted.internet import reactor
    from gateways.dav.radicale_app import make_application
    from gateways.dav.web import make_site as make_web_site
    pool = ThreadPool(minthreads=1, maxthreads=max(1, int(ctx.settings.get("threads", 8))), name="haven-dav")
    pool.start()
    reactor.addSystemEventTrigger("during", "shutdown", pool.stop)
    app = make_application(ctx.store.dav, ctx.settings)
    return make_web_site(reactor, pool, app, ctx.portal, ctx.settings)
