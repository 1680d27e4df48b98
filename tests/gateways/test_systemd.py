"""``haven serve`` under systemd's ``Type=notify``: READY=1 once every listener answers,
WATCHDOG=1 at half of $WATCHDOG_USEC, RELOADING=1 / READY=1 around SIGHUP, STOPPING=1 at
shutdown; and a clean shutdown with sessions still open (no "Task was destroyed" from asyncio),
each listener logged once.  A datagram socket in the test plays systemd's $NOTIFY_SOCKET."""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import time

import pytest

from gateways.cli import systemd
from tests.conftest import ROOT, HavenServer


def _receive(sock: socket.socket, want: str, timeout: float = 20.0) -> list:
    """Messages up to and including the first that contains the field ``want``."""
    got, deadline = [], time.monotonic() + timeout
    while time.monotonic() < deadline:
        sock.settimeout(max(0.05, deadline - time.monotonic()))
        try:
            message = sock.recv(4096).decode()
        except socket.timeout:
            break
        got.append(message)
        if want in message.split("\n"):
            return got
    raise AssertionError(f"no {want} from haven serve; got {got}")


@pytest.fixture
def notify_socket():
    name = f"haven-test-{secrets.token_hex(4)}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + name)
    yield "@" + name, sock
    sock.close()


def test_serve_speaks_the_notify_protocol(haven_factory, notify_socket):
    address, sock = notify_socket
    server: HavenServer = haven_factory("sqlite", start=False)
    plain_env = server.env
    server.env = lambda: {**plain_env(), "NOTIFY_SOCKET": address, "WATCHDOG_USEC": "400000"}
    server.start()
    ready = _receive(sock, "READY=1")
    assert not any("WATCHDOG=1" in m for m in ready), "a watchdog ping before READY=1"
    for name in server.gateways:  # READY=1 means every listener is bound
        socket.create_connection(getattr(server, name), timeout=2).close()
    pings = _receive(sock, "WATCHDOG=1", timeout=2) + _receive(sock, "WATCHDOG=1", timeout=2)
    assert pings.count("WATCHDOG=1") >= 2

    server.proc.send_signal(signal.SIGHUP)
    reload = _receive(sock, "READY=1")
    reloading = next(m for m in reload if "RELOADING=1" in m.split("\n"))
    stamp = int(dict(f.split("=", 1) for f in reloading.split("\n"))["MONOTONIC_USEC"])
    assert abs(stamp - time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000) < 10_000_000

    # sessions open at shutdown: an LMTP and a submission connection mid-dialogue
    open_sessions = [socket.create_connection(server.lmtp, timeout=5),
                     socket.create_connection(server.submission, timeout=5)]
    for s in open_sessions:
        assert s.recv(100).startswith(b"220 ")
    server.proc.send_signal(signal.SIGTERM)
    _receive(sock, "STOPPING=1")
    assert server.proc.wait(15) == 0
    for s in open_sessions:
        s.close()
    log = server.log()
    assert "Task was destroyed" not in log
    assert " starting on " not in log and "Starting factory" not in log
    assert log.count(f"listening on 127.0.0.1:{server.imap[1]} ([imap] listen)") == 1


def test_notify_without_systemd_and_with_a_path(tmp_path, monkeypatch):
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert systemd.notify("READY=1") is False
    path = tmp_path / "notify"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(path))
        monkeypatch.setenv("NOTIFY_SOCKET", str(path))
        assert systemd.notify("READY=1", "STATUS=ok") is True
        assert sock.recv(100) == b"READY=1\nSTATUS=ok"
    path.unlink()  # nobody listening: dropped, never an exception
    assert systemd.notify("STOPPING=1") is False


def test_watchdog_interval(monkeypatch):
    monkeypatch.delenv("WATCHDOG_USEC", raising=False)
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    assert systemd.watchdog_interval() is None
    monkeypatch.setenv("WATCHDOG_USEC", "60000000")
    assert systemd.watchdog_interval() == 30.0
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid() + 1))  # another process is watched
    assert systemd.watchdog_interval() is None


def test_log_lines_for_the_journal(tmp_path):
    """With standard error on the journal ($JOURNAL_STREAM), lines carry a syslog priority
    and no time stamp; on anything else they keep theirs."""
    program = ("import logging; from conf import load_config; from gateways.service import setup_logging; "
               "setup_logging(load_config(None)); logging.getLogger('haven.x').error('broken'); "
               "logging.getLogger('haven.x').info('fine')")
    out = tmp_path / "stderr"
    env = {k: v for k, v in os.environ.items() if k != "HAVEN_CONFIG"}
    env["PYTHONPATH"] = str(ROOT)
    with open(out, "wb") as f:
        st = os.fstat(f.fileno())
        for journal in (f"{st.st_dev}:{st.st_ino}", "1:1"):
            subprocess.run([sys.executable, "-c", program], stderr=f, env={**env, "JOURNAL_STREAM": journal},
                           check=True, timeout=60)
    lines = out.read_text().splitlines()
    assert lines[:2] == ["<3>haven.x ERROR broken", "<6>haven.x INFO fine"]
    assert lines[2].endswith(" haven.x ERROR broken") and not lines[2].startswith("<")


def test_each_listener_and_the_relay_notice_are_logged_once(haven_factory):
    server = haven_factory("sqlite")
    server.stop()
    log = server.log()
    for name in server.gateways:
        assert log.count(f"listening on 127.0.0.1:{getattr(server, name)[1]} ") == 1, log
    assert log.count("[submission] relay is empty: mail to remote addresses is refused") == 1, log
    assert "Task was destroyed" not in log
