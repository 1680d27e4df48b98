"""The ``[submission]`` INI section as typed values, checked once at start-up.

Every key is documented (with its default) in ``conf/haven.ini``; the defaults here are the
same and only matter when a caller passes an incomplete mapping (tests, the bench).  A bad
value raises :class:`~gateways.common.errors.StartupError` (``SettingsError`` here) naming
the key and what to write instead.  The relay's keys (``relay``, ``relay_*``,
``retry_schedule``, ``max_queue_age``, ``queue_interval``) are read by
:mod:`gateways.common.relayconf`, which the relay reads too: the whole section is checked
whichever of the two starts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Optional, Tuple

from gateways.common.errors import StartupError
from gateways.common.plaintext import PLAINTEXT_CHOICES
from gateways.common.relayconf import OutboundSettings, RelaySettings, parse_outbound, section

DEFAULT_MAX_MESSAGE_SIZE = 50 * 1024 * 1024

#: a malformed ``[submission]`` value; the message says which key and what is expected
SettingsError = StartupError


@dataclass(frozen=True)
class SubmissionSettings:
    allow_plaintext_auth: str = "loopback"  # loopback | yes | no
    max_recipients: int = 100
    timeout: float = 300.0
    max_message_size: Optional[int] = DEFAULT_MAX_MESSAGE_SIZE
    outbound: OutboundSettings = field(default_factory=OutboundSettings)

    @property
    def relay(self) -> Optional[RelaySettings]:
        """The smarthost; None when ``relay`` is empty (remote recipients are refused)."""
        return self.outbound.relay

    @property
    def retry_schedule(self) -> Tuple[float, ...]:
        return self.outbound.retry_schedule

    @property
    def max_queue_age(self) -> float:
        return self.outbound.max_queue_age

    @property
    def queue_interval(self) -> float:
        return self.outbound.queue_interval


def parse_settings(settings: Optional[Mapping[str, str]], limits: Optional[Mapping[str, int]] = None
                   ) -> SubmissionSettings:
    s = section(settings)
    max_size = (limits or {}).get("max_message_size", DEFAULT_MAX_MESSAGE_SIZE)
    outbound = parse_outbound(s)
    return SubmissionSettings(
        allow_plaintext_auth=s.choice("allow_plaintext_auth", "loopback", PLAINTEXT_CHOICES),
        max_recipients=s.number("max_recipients", 100, int, 1),
        timeout=s.number("timeout", 300.0, float, 1),
        max_message_size=int(max_size) or None,
        outbound=outbound,
    )
