"""``haven dns records DOMAIN``: the DNS records to publish for a mail domain, zone-file style,
derived from the configuration (the listeners and ``[autoconfig]``).  Needs no store and no
running server."""

from __future__ import annotations

import sys

from conf import ConfigError, load_config
from gateways import autoconfig
from gateways.cli.runner import EX_CONFIG, EX_OK, EX_USAGE
from gateways.common.errors import StartupError
from gateways.service import published_services


def main(args) -> int:
    domain = autoconfig.ascii_domain(args.domain)
    if domain is None or "." not in domain:
        print(f"haven: {args.domain!r} is not a domain name (e.g. example.org)", file=sys.stderr)
        return EX_USAGE
    try:
        published = published_services(load_config(args.config))
    except (ConfigError, StartupError) as e:
        print(f"haven: {e}", file=sys.stderr)
        return EX_CONFIG
    if published.unusable:
        print(f"haven: {published.unusable}", file=sys.stderr)
        return EX_CONFIG
    print("\n".join(autoconfig.records(published, domain)))
    return EX_OK
