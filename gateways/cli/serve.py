"""``haven serve``: every enabled gateway on one reactor in the foreground, until SIGTERM or
SIGINT; SIGHUP reloads the TLS certificates and reopens the log file (``systemctl reload``);
``--demo`` makes sure a demo account exists and says how to reach it.  Under systemd
(``Type=notify``) it says when it is ready, reloading and stopping, and pings the watchdog
(gateways/cli/systemd.py)."""

from __future__ import annotations

import logging
import os
import secrets
import signal
import sys

from twisted.internet import defer

from conf import ConfigError
from gateways.cli import systemd
from gateways.cli.runner import EX_CONFIG, EX_SOFTWARE, configure, hash_password, unavailable_exit
from gateways.common.errors import StartupError
from gateways.configcheck import check_config
from gateways.service import Service
from store import errors

log = logging.getLogger("haven")

DEMO_ADDRESS = "demo@localhost"


def main(args) -> int:
    config = configure(args)
    if config is None:
        return EX_CONFIG
    from twisted.internet import reactor  # the reactor configure() installed, reached late
    try:
        service = Service(config, reactor, create_store=args.demo)
    except (StartupError, ConfigError) as e:
        print(f"haven: {e}", file=sys.stderr)
        return EX_CONFIG
    status = {"code": 0}
    watchdog = []

    async def start():
        try:
            check_config(config, service.context)  # every value, before a file is made or a port bound
            await service.start()
            if args.demo:
                address, password = await ensure_demo(service.store, config)
                print(demo_banner(config, address, password), file=sys.stderr, flush=True)
            log.info("Haven started (%s store)", config.store_url().engine)
            status["ready"] = True
            systemd.notify("READY=1", f"STATUS=serving on the {config.store_url().engine} store")
            interval = systemd.watchdog_interval()
            if interval:
                watchdog.append(systemd.Watchdog(reactor, interval, service.store.schema_version))
                watchdog[0].start()
        except errors.StoreUnavailable as e:
            print(f"haven: {e.detail}", file=sys.stderr)
            status["code"] = unavailable_exit(e)
            reactor.stop()
        except (StartupError, ConfigError, errors.SchemaOutOfDate, errors.StoreError) as e:
            print(f"haven: {e}", file=sys.stderr)
            status["code"] = EX_CONFIG
            reactor.stop()
        except Exception:
            log.exception("start-up failed")
            status["code"] = EX_SOFTWARE
            reactor.stop()

    def shutdown(*_):
        reactor.callFromThread(reactor.stop)

    async def reload_now():
        if not status.get("ready"):  # still starting: it reads the certificates anyway
            return
        systemd.notify("RELOADING=1", systemd.monotonic_usec(), "STATUS=reloading")
        try:
            await service.reload()
        finally:
            systemd.notify("READY=1", "STATUS=serving (reloaded)")

    def reload(*_):
        reactor.callFromThread(lambda: defer.Deferred.fromCoroutine(reload_now()))

    async def stop():
        systemd.notify("STOPPING=1", "STATUS=stopping")
        for dog in watchdog:
            dog.stop()
        await service.stop()

    reactor.callWhenRunning(lambda: defer.Deferred.fromCoroutine(start()))
    reactor.addSystemEventTrigger("before", "shutdown", lambda: defer.Deferred.fromCoroutine(stop()))
    signal.signal(signal.SIGTERM, shutdown)
    signal.signal(signal.SIGINT, shutdown)
    signal.signal(signal.SIGHUP, reload)
    reactor.run(installSignalHandlers=False)
    return status["code"]


async def ensure_demo(store, config):
    """(address, password) of the demo account, made with a fresh password if missing; the
    password is kept in data_dir/demo-password (None when that file is gone)."""
    secret_file = config.data_dir / "demo-password"
    try:
        await store.get_account(DEMO_ADDRESS)
        password = secret_file.read_text().strip() if secret_file.exists() else None
    except errors.NotFound:
        password = secrets.token_urlsafe(9)
        await store.create_account(DEMO_ADDRESS, await hash_password(password), "Demo User")
        secret_file.write_text(password + "\n")
        os.chmod(secret_file, 0o600)
    return DEMO_ADDRESS, password


def demo_banner(config, address: str, password) -> str:
    """What `haven serve --demo` tells a new user: where the data is, the login, the ports."""
    password = password or "(see data_dir/demo-password)"
    services = [(name, config.listen(section)) for name, section in
                (("IMAP", "imap"), ("POP3", "pop3"), ("submission", "submission"), ("LMTP", "lmtp"),
                 ("ManageSieve (filters, out-of-office)", "managesieve"))]
    ports = "   ".join(f"{name}: {where}" for name, where in services if where)
    imap = config.listen("imap")
    lines = [f"  Haven is running on the {config.store_url().engine} store in {config.data_dir}",
             f"  demo account: {address}   password: {password}",
             f"  {ports}"]
    http = config.listen("http")
    if http and http.kind == "tcp":
        lines.append(f"  calendars and contacts (CalDAV/CardDAV): http://{http.host}:{http.port}/  "
                     "(enter this URL and the login above in Thunderbird, DAVx5, iOS, ...)")
        if config.getbool("activesync", "enabled"):
            lines.append(f"  phones (Exchange ActiveSync: mail, calendar, contacts, tasks): server {http.host}:{http.port}, no TLS on loopback "
                         "(a phone on the network needs [http] tls_listen)")
    if imap and imap.kind == "tcp":
        lines.append(f"  try:  curl -s --url 'imap://{imap.host}:{imap.port}/INBOX' --user '{address}:{password}'"
                     " -X 'STATUS INBOX (MESSAGES)'")
    return "\n" + "\n".join(lines) + "\n"

