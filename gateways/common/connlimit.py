"""Connection limits of a listener: ``max_connections`` open connections in all, at most
``max_connections_per_ip`` of them from one client address (the real one, after PROXY), and the
``proxy_protocol`` switch, as every gateway section has them.

Invariants
- A connection is counted from the moment it is admitted until its ``Admission`` is released
  (once, however often ``release`` is called); a refused connection is never counted.
- The per-address limit does not apply to loopback, to a unix socket, to ``[auth]
  trusted_networks`` (a webmail host) or to a trusted proxy that sent no PROXY header (it
  carries many clients); the total applies to everyone.
- Refusals are logged at most once per address per :data:`REFUSAL_LOG_INTERVAL` seconds; the
  next line carries the count of the ones in between, so a flood cannot fill the log.
- A refused connection gets its protocol's own answer (written by the gateway) and is closed;
  the listener keeps accepting everyone else.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Callable, Dict, Optional, Tuple

from gateways.common.clientaddr import Networks, in_networks, ip_of, normalize_ip
from gateways.common.settings import SectionSettings

log = logging.getLogger("haven.limits")

#: at most one log line per refused address in this many seconds (with the count since)
REFUSAL_LOG_INTERVAL = 60.0
_MAX_REMEMBERED = 10000

#: (max_connections_per_ip, max_connections) per section.  Per address: IMAP clients keep
#: several connections per account (Thunderbird up to 5 plus IDLE) and an office NAT hides
#: many accounts behind one address, so 50 (Postfix's smtpd_client_connection_count_limit);
#: POP3 and submission clients use one short connection at a time, 20; ManageSieve one per
#: editing session, 10; HTTP 50 connections (browsers and DAV clients open 6-8; requests in
#: flight are [http] max_requests_per_ip).  LMTP: 0, no per-address limit, since the MTA
#: delivers over many parallel connections from one address (Postfix
#: lmtp_destination_concurrency_limit) and is trusted.  1000 in all, far below the default
#: file descriptor limit of a systemd service (524288) yet above what one node should serve
#: before an admin raises it knowingly.
DEFAULT_LIMITS: Dict[str, Tuple[int, int]] = {
    "imap": (50, 1000), "pop3": (20, 1000), "managesieve": (10, 1000), "submission": (20, 1000),
    "lmtp": (0, 1000), "http": (50, 1000),
}


@dataclass(frozen=True)
class ListenerPolicy:
    """A gateway section's ``proxy_protocol``, ``max_connections_per_ip`` and
    ``max_connections`` (0 = no limit)."""
    proxy_protocol: bool = False
    max_connections_per_ip: int = 0
    max_connections: int = 0

    @classmethod
    def from_settings(cls, section: str, settings) -> "ListenerPolicy":
        per_ip, total = DEFAULT_LIMITS.get(section, (0, 0))
        s = SectionSettings(section, settings)
        return cls(proxy_protocol=s.boolean("proxy_protocol", False),
                   max_connections_per_ip=s.number("max_connections_per_ip", per_ip, int, 0),
                   max_connections=s.number("max_connections", total, int, 0))


class RefusalLog:
    """Log lines for refused connections, at most one per address per interval."""

    def __init__(self, label: str, interval: float = REFUSAL_LOG_INTERVAL,
                 clock: Callable[[], float] = time.monotonic):
        self.label = label
        self.interval = interval
        self.clock = clock
        self._seen: Dict[str, list] = {}  # address -> [time of the last line, refusals since]

    def note(self, address: str, message: str) -> None:
        """One refusal of ``address``; ``message`` has one ``%s`` for the address."""
        now = self.clock()
        entry = self._seen.get(address)
        if entry is not None and now - entry[0] < self.interval:
            entry[1] += 1
            return
        more = entry[1] if entry else 0
        if len(self._seen) >= _MAX_REMEMBERED:
            self._seen = {a: e for a, e in self._seen.items() if now - e[0] < self.interval}
            if len(self._seen) >= _MAX_REMEMBERED:
                self._seen.clear()
        self._seen[address] = [now, 0]
        log.warning("%s: " + message + "%s", self.label, address,
                    " (%d more refused since the last line)" % more if more else "")


class Admission:
    """One admitted connection; :meth:`release` when it closes."""
    __slots__ = ("_gate", "_key")

    def __init__(self, gate: "ConnectionGate", key: Optional[str]):
        self._gate, self._key = gate, key

    def release(self) -> None:
        gate, self._gate = self._gate, None
        if gate is not None:
            gate._release(self._key)


class ConnectionGate:
    """The open connections of one gateway (all its listeners), by client address."""

    def __init__(self, label: str, policy: ListenerPolicy, exempt: Networks = (), proxies: Networks = (),
                 refusals: Optional[RefusalLog] = None, what: str = "connection",
                 per_ip_key: str = "max_connections_per_ip"):
        self.label = label
        self.what, self.per_ip_key = what, per_ip_key
        self.policy = policy
        self.exempt = tuple(exempt)
        self.proxies = tuple(proxies)
        self.refusals = refusals or RefusalLog(label)
        self.open = 0
        self._per_ip: Dict[str, int] = {}

    def _limited(self, host: Optional[str], proxied: bool) -> bool:
        """Whether the per-address limit applies to ``host``."""
        ip = ip_of(host)
        if ip is None or ip.is_loopback or in_networks(host, self.exempt):
            return False
        return proxied or not in_networks(host, self.proxies)

    def admit(self, host: Optional[str], proxied: bool = False) -> Tuple[Optional[Admission], str]:
        """(an Admission, "") or (None, "address" | "server"): which limit refused it.
        ``host`` is the client's address (None for a unix socket); ``proxied`` says a PROXY
        header or X-Forwarded-For named it (then a trusted proxy's own address counts too)."""
        policy = self.policy
        if policy.max_connections and self.open >= policy.max_connections:
            self.refusals.note(normalize_ip(host) or "local", "refused a %s from %%s: %d open ([%s] "
                               "max_connections)" % (self.what, self.open, self.label))
            return None, "server"
        key = normalize_ip(host) if policy.max_connections_per_ip and self._limited(host, proxied) else None
        if key is not None:
            count = self._per_ip.get(key, 0)
            if count >= policy.max_connections_per_ip:
                self.refusals.note(key, "refused a %s from %%s: %d open from that address ([%s] %s)"
                                   % (self.what, count, self.label, self.per_ip_key))
                return None, "address"
            self._per_ip[key] = count + 1
        self.open += 1
        return Admission(self, key), ""

    def _release(self, key: Optional[str]) -> None:
        self.open -= 1
        if key is not None:
            left = self._per_ip.get(key, 1) - 1
            if left > 0:
                self._per_ip[key] = left
            else:
                self._per_ip.pop(key, None)

    def count(self, host: str) -> int:
        return self._per_ip.get(normalize_ip(host) or "", 0)
