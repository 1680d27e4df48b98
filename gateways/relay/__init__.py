"""The outbound relay: what the store queued for remote recipients goes to the smarthost.

The service calls :func:`start_relay` (when submission listens or ``[submission] relay`` is
set: redirects and vacation replies of the delivery rules leave through the same queue).
``spooler.py`` takes due work from the store's outbound queue, ``client.py`` speaks SMTP to
the smarthost, ``dsn.py`` writes the bounces.  It reads the relay's ``[submission]`` keys
through :mod:`gateways.common.relayconf` and knows the submission gateway only through the
store: a submission queues (``store.begin_submission``), the store calls the ``on_outbound``
hook after the commit, the spooler wakes.

Guarantees
----------
* Nothing accepted is lost: a message leaves the queue only once every recipient is sent,
  failed or expired and the DSN for the failed ones is delivered (see spooler.py).
* A message whose submission is still committing its local copies is held by the store, on
  every node; this package has no in-memory state that a second node would lack.
* ``relay_password`` is never sent in clear to a non-loopback relay unless ``relay_tls = none``.

Deliberately not done here (yet)
--------------------------------
* No direct delivery to recipients' MX hosts: a smarthost does that.
* One relay connection at a time; no per-domain queues or rate limits.
"""

from __future__ import annotations

from gateways.common.context import GatewayContext
from gateways.common.relayconf import parse_outbound
from gateways.relay.spooler import Spooler

__all__ = ["start_relay"]


def start_relay(ctx: GatewayContext) -> Spooler:
    """Start relaying the outbound queue of ``ctx.store`` (``ctx.settings`` is the
    ``[submission]`` section); the store's ``on_outbound`` hook wakes it.  The result's
    ``stop()`` ends it.  Raises StartupError (naming the key) for a malformed setting."""
    return Spooler(ctx.store, ctx.hostname, parse_outbound(ctx.settings)).start()
