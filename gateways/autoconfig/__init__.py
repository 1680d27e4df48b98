"""Client autoconfiguration: what a mail client needs to set up an account from an address and
a password, served on the HTTP front door beside DAV.

    /mail/config-v1.1.xml                         Thunderbird's autoconfig (autoconfig.DOMAIN)
    /.well-known/autoconfig/mail/config-v1.1.xml  the same, asked at DOMAIN itself
    /apple/haven.mobileconfig                     an Apple configuration profile (login)

and the DNS records a domain publishes (``haven dns records DOMAIN``).  Like DAV, this package
exposes what the front door needs (``PATHS``, ``PROFILE_PREFIX``, ``make_autoconfig_resource``,
``make_profile_app``) and the service puts it into the mount table; it knows no front door
and no other protocol.

- ``published.py``: what clients are told (public host name, ports, TLS), from the listeners
  and ``[autoconfig]``;
- ``thunderbird.py``: the clientConfig XML (no login, no store);
- ``apple.py``: the ``.mobileconfig`` plist (behind the front door's login);
- ``dns.py``: the zone-file lines.

Invariants
- Nothing here reads the store: every answer depends on the configuration alone (and, for the
  profile, on the address the front door logged in), so it leaks no account and costs no query.
- Nothing is ever published as plain text: implicit TLS or STARTTLS for mail, ``https`` for
  DAV unless plain http logins are allowed from anywhere (``published.py``).

    /autodiscover/autodiscover.xml                Microsoft Autodiscover (login; any letter case)

- ``autodiscover.py``: Outlook's and ActiveSync phones' POX Autodiscover (behind the login).

Not yet: a signed profile.
"""

from __future__ import annotations

from .autodiscover import PREFIX as AUTODISCOVER_PREFIX, make_autodiscover_app
from .apple import CONTENT_TYPE, PROFILE_NAME, PROFILE_PREFIX, make_profile_app, mobileconfig
from .dns import records
from .published import MAIL_SERVICES, SECTION, Endpoint, Published, ServiceListeners, ascii_domain, publish
from .thunderbird import PATHS, AutoconfigResource, client_config

__all__ = ["AUTODISCOVER_PREFIX", "make_autodiscover_app", "CONTENT_TYPE", "PROFILE_NAME", "PROFILE_PREFIX", "make_profile_app", "mobileconfig", "records",
           "MAIL_SERVICES", "SECTION", "Endpoint", "Published", "ServiceListeners", "ascii_domain", "publish",
           "PATHS", "client_config", "make_autoconfig_resource"]


def make_autoconfig_resource(published: Published) -> AutoconfigResource:
    """The Twisted Web resource to mount at each of ``PATHS`` (no login)."""
    return AutoconfigResource(published)
