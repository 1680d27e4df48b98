"""What every store command shares: the reactor, the configuration and logging, the store
opened on the reactor for one coroutine, and the exit code.

Invariants
- The asyncio reactor is installed before anything reaches ``twisted.internet.reactor``.
- A command talks to the store only through its contract (``store.interfaces``); the process
  (``gateways.service``) builds it.  The CLI hashes passwords in the reactor's thread pool, its
  own CPU pool, never in the store's.
- Exit codes follow sysexits(3); ``haven deliver`` answers an MTA, so every failure of Haven
  itself is 75 (EX_TEMPFAIL: try again later), never a bounce.
"""

from __future__ import annotations

import asyncio
import logging
import sys

from twisted.internet import asyncioreactor, defer, threads

from conf import ConfigError, load_config
from gateways.common.errors import StartupError
from gateways.service import open_started_store, setup_logging
from store import errors

EX_OK, EX_USAGE, EX_DATAERR, EX_NOUSER, EX_SOFTWARE, EX_TEMPFAIL, EX_NOPERM, EX_CONFIG = 0, 64, 65, 67, 70, 75, 77, 78

log = logging.getLogger("haven")


def install_reactor() -> None:
    """The asyncio reactor, so that Twisted protocols and aiosmtpd share one loop."""
    if "twisted.internet.reactor" not in sys.modules:
        asyncioreactor.install(asyncio.new_event_loop())


def configure(args):
    """The reactor installed, the configuration read and logging set up; None (after saying
    why) when the configuration is unusable."""
    install_reactor()
    try:
        config = load_config(args.config)
        setup_logging(config, args.verbose)
    except ConfigError as e:
        print(f"haven: {e}", file=sys.stderr)
        return None
    return config


def run_command(args, command, *, stdin: bool = False, check_schema: bool = True, for_mta: bool = False,
                create: bool = False) -> int:
    """Run ``await command(store, args, raw)`` on a started store and return its exit code.

    ``raw`` is standard input when ``stdin`` is set (read before the store opens), else None.
    ``check_schema=False`` opens a store whose schema is out of date or missing (``haven db``);
    ``create`` lets it make a new SQLite file (``haven db migrate``): no other command does.
    ``for_mta``: every failure is temporary (75) and logged, for an MTA's pipe transport."""
    config = configure(args)
    if config is None:
        return EX_TEMPFAIL if for_mta else EX_CONFIG
    args.loaded_config = config
    raw = sys.stdin.buffer.read() if stdin else None
    try:
        return _run_on_reactor(config, command, args, raw, check_schema, create)
    except (StartupError, ConfigError) as e:
        print(f"haven: {e}", file=sys.stderr)
        return EX_TEMPFAIL if for_mta else EX_CONFIG
    except errors.SchemaOutOfDate as e:
        print(f"haven: {e}", file=sys.stderr)
        return EX_TEMPFAIL if for_mta else EX_CONFIG
    except errors.StoreUnavailable as e:
        print(f"haven: {e.detail}", file=sys.stderr)
        return unavailable_exit(e, for_mta)
    except errors.TemporaryFailure as e:
        print(f"haven: {e}", file=sys.stderr)
        return EX_TEMPFAIL
    except errors.StoreError as e:
        print(f"haven: {e}", file=sys.stderr)
        return EX_TEMPFAIL if for_mta else EX_DATAERR
    except Exception:
        if not for_mta:
            raise
        # an MTA must retry rather than bounce when Haven itself failed
        log.exception("%s failed", args.command)
        return EX_TEMPFAIL


def unavailable_exit(e, for_mta: bool = False) -> int:
    """78 when only a config change helps (access denied, no such database), 75 when trying
    again later may (the database is down); an MTA always hears 75 so it keeps the mail."""
    return EX_CONFIG if e.permanent and not for_mta else EX_TEMPFAIL


def _run_on_reactor(config, command, args, raw, check_schema: bool, create: bool) -> int:
    """Open the store, run one command on the reactor, stop the reactor."""
    from twisted.internet import reactor  # the reactor install_reactor() chose, reached late
    outcome = {}

    async def go():
        store = await open_started_store(config, reactor, poll=False, check_schema=check_schema, create=create)
        return await command(store, args, raw)

    def done(result):
        outcome["result"] = result
        reactor.stop()

    def start():
        d = defer.Deferred.fromCoroutine(go())
        d.addBoth(done)

    reactor.callWhenRunning(start)
    reactor.run(installSignalHandlers=False)
    result = outcome.get("result")
    if hasattr(result, "raiseException"):
        result.raiseException()
    return result or 0


async def hash_password(password: str) -> str:
    """The password's hash, computed in the reactor's thread pool (the CLI's CPU pool)."""
    from auth.passwords import hash_password as hash_now  # passlib and argon2: only commands that hash
    return await threads.deferToThread(hash_now, password)
