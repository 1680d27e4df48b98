"""``haven config check``: the configuration in effect (secrets masked), every value checked as
``haven serve`` checks it before starting; exit 78 with the one line to fix when one is bad."""

from __future__ import annotations

import sys

from conf import ConfigError
from gateways.cli.runner import EX_CONFIG, EX_OK, configure
from gateways.common.errors import StartupError
from gateways.configcheck import check_config, effective_config
from gateways.service import Service


def main(args) -> int:
    config = configure(args)
    if config is None:
        return EX_CONFIG
    from twisted.internet import reactor  # the reactor configure() installed, reached late
    print(effective_config(config), end="")
    try:
        check_config(config, Service(config, reactor).context)  # Service: [server]/[auth] networks
    except (ConfigError, StartupError) as e:
        print(f"haven: {e}", file=sys.stderr)
        return EX_CONFIG
    print(f"# {config.path or 'the built-in defaults'}: every value is valid", file=sys.stderr)
    return EX_OK
