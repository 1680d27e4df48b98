"""Haven's ManageSieve gateway (RFC 5804): clients manage an account's Sieve scripts, the rules
the delivery pipeline runs (Thunderbird's Sieve add-on, Roundcube's managesieve plugin,
sieve-connect, KMail).

Modules: ``parser`` (framing, literals, arguments, SASL payloads: pure), ``response`` (replies
as bytes: pure), ``protocol`` (the per-connection engine, the store error table), ``commands``
(handlers ``do_COMMAND``).

What it guarantees:
* The greeting is the capability list and OK (RFC 5804 §1.8): IMPLEMENTATION "Haven", SASL
  "PLAIN LOGIN" (empty while plaintext login is not allowed, see below), SIEVE (the extensions
  ``formats.sieve`` accepts in ``require``, read at run time), STARTTLS (before TLS and login, when
  a certificate is configured), OWNER (once logged in), UNAUTHENTICATE, VERSION "1.0".
* Commands: CAPABILITY, AUTHENTICATE (PLAIN, LOGIN; initial response or challenges), STARTTLS
  (capabilities re-issued under TLS, §2.2), LOGOUT, NOOP (with TAG), LISTSCRIPTS, GETSCRIPT,
  PUTSCRIPT, CHECKSCRIPT, SETACTIVE ("" deactivates), DELETESCRIPT, RENAMESCRIPT, HAVESPACE,
  UNAUTHENTICATE.  Strings are quoted (``\\"`` and ``\\\\`` escapes) or literals ``{n+}`` (and
  ``{n}``, see ``parser``).
* Replies carry RFC 5804 §1.4 response codes: NONEXISTENT, ALREADYEXISTS, ACTIVE (deleting the
  active script), QUOTA/MAXSIZE (a script over ``[rules] max_script_size``: refused while still
  on the wire when its literal is bigger, its octets read and dropped), QUOTA/MAXSCRIPTS (over
  ``[rules] max_scripts``), TRYLATER (the store cannot do it now), ENCRYPT-NEEDED.  A script
  that does not compile is refused with the compiler's "line N: reason" as the NO text.
* The store does all checking and storing (``store.interfaces``, the "Sieve scripts" section):
  a script is stored only when it compiled, and delivery runs the active one.
* ``allow_plaintext_auth``: ``loopback`` (default) allows AUTHENTICATE before STARTTLS only
  from this machine (e.g. a local webmail), ``yes`` from anywhere, ``no`` never; refused ones get
  ENCRYPT-NEEDED and SASL is announced empty.
* Limits: ``max_line_length`` per line; literals up to the script size limit (plus slack) in
  PUTSCRIPT/CHECKSCRIPT and ``max_line_length`` elsewhere; ``max_bad_commands`` malformed,
  unknown or out-of-state commands end the connection with BYE; autologout after
  ``login_timeout`` seconds before login and ``idle_timeout`` minutes after (RFC 5804 §1.3: at
  least 30).

Deliberately not done: see ``commands`` (SCRAM, security layers, proxy authorization, WARNINGS,
MAXREDIRECTS, NOTIFY, LANGUAGE, REFERRAL); an implicit-TLS listener (RFC 5804 defines only
STARTTLS on port 4190); per-IP connection limits.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from twisted.internet.protocol import Factory

from gateways.common.plaintext import PLAINTEXT_CHOICES
from gateways.common.settings import SectionSettings

from .protocol import ManageSieveServer


log = logging.getLogger("haven.managesieve")

#: octets a script literal may exceed the store's limit by and still be read whole: the store
#: then answers QUOTA/MAXSIZE itself, and a client whose idea of the size differs slightly (line
#: endings) is told by the store, not cut off on the wire
SCRIPT_LITERAL_SLACK = 4096
DEFAULT_MAX_SCRIPT_SIZE = 65536


@dataclass(frozen=True)
class ManageSieveConfig:
    max_line: int = 8192
    idle_timeout: float = 1800.0  # seconds (minutes in haven.ini)
    login_timeout: float = 60.0
    allow_plaintext_auth: str = "loopback"
    max_bad_commands: int = 20
    max_script_size: int = DEFAULT_MAX_SCRIPT_SIZE  # the store's [rules] max_script_size

    @property
    def max_script_literal(self) -> int:
        return self.max_script_size + SCRIPT_LITERAL_SLACK

    @classmethod
    def from_settings(cls, settings, limits=None) -> "ManageSieveConfig":
        """Read the ``[managesieve]`` section; a bad value stops start-up with a message naming
        the key."""
        config = SectionSettings("managesieve", settings)
        number = config.number
        plaintext = config.choice("allow_plaintext_auth", "loopback", PLAINTEXT_CHOICES)
        minutes = number("idle_timeout", 30.0, float, 0.01)
        if minutes < 30:
            log.warning("[managesieve] idle_timeout = %g: RFC 5804 §1.3 asks for at least 30 minutes "
                        "after login", minutes)
        max_script = int((limits or {}).get("max_script_size") or DEFAULT_MAX_SCRIPT_SIZE)
        return cls(max_line=number("max_line_length", 8192, int, 1024),
                   idle_timeout=minutes * 60,
                   login_timeout=number("login_timeout", 60.0, float, 0.01),
                   allow_plaintext_auth=plaintext,
                   max_bad_commands=number("max_bad_commands", 20, int, 1),
                   max_script_size=max_script)


class ManageSieveFactory(Factory):
    def __init__(self, ctx):
        self.ctx = ctx
        self.config = ManageSieveConfig.from_settings(ctx.settings, ctx.limits)

    def buildProtocol(self, addr):
        proto = ManageSieveServer(self.ctx, self.config)
        proto.factory = self
        return proto


def check_settings(ctx) -> None:
    """Read every ``[managesieve]`` key (start-up checks the whole config before it binds anything)."""
    ManageSieveConfig.from_settings(ctx.settings, ctx.limits)


def make_factory(ctx) -> Factory:
    """The service's entry point: a factory of ManageSieve connections on ``ctx.store``."""
    return ManageSieveFactory(ctx)
