"""Observability on the wire: ``[metrics] listen`` serves Prometheus metrics and ``/healthz``.

A real server with metrics on; the test speaks IMAP, LMTP and HTTP to it and reads /metrics
with prometheus_client's own parser, checking that each counter moved by exactly what the test
did, under the right labels.  /healthz is 200 while the store answers and 503 (with the reason)
while its accounts table is gone (tests/e2e/test_login_outage.py's outage).  With the defaults
there is no metrics listener and prometheus_client is never imported; ``[log] format = json``
writes one JSON object per line."""

from __future__ import annotations

import base64
import imaplib
import json
import poplib
import smtplib
import socket
import ssl
import time
import urllib.error
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import ENGINES, HavenServer, free_port, require_engine
from tests.e2e.test_login_outage import outage
from tests.e2e.test_push import Idler

MESSAGE = b"From: a@example.org\r\nSubject: metrics\r\n\r\ncount me\r\n"


def with_metrics(tmp, engine: str, **overrides) -> HavenServer:
    port = free_port()
    server = HavenServer(tmp, engine, {"metrics.listen": f"127.0.0.1:{port}", "store.busy_timeout_ms": "200",
                                       "auth.failure_delay": "0", **overrides})
    server.metrics = ("127.0.0.1", port)
    server.gateways.append("metrics")
    return server


@pytest.fixture(scope="module", params=ENGINES)
def server(request, tmp_path_factory):
    require_engine(request.param)
    s = with_metrics(tmp_path_factory.mktemp(f"haven-metrics-{request.param}"), request.param,
                     **{"auth.block_after": "3"})
    s.start()
    yield s
    s.close()


def get(address, path: str, headers=None) -> tuple:
    req = urllib.request.Request(f"http://{address[0]}:{address[1]}{path}", headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=15) as r:
            return r.status, r.headers, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read().decode()


def scrape(server) -> dict:
    """{(sample name, frozenset of labels): value} of one scrape."""
    status, headers, body = get(server.metrics, "/metrics")
    assert status == 200 and headers["Content-Type"].startswith("text/plain"), (status, body)
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(body) for s in family.samples}


def value(samples: dict, name: str, **labels) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def moved(before: dict, after: dict, name: str, **labels) -> float:
    return value(after, name, **labels) - value(before, name, **labels)


def imap_login(server, user, password) -> bool:
    c = imaplib.IMAP4(*server.imap)
    try:
        c.login(user, password)
        c.logout()
        return True
    except imaplib.IMAP4.error:
        c.shutdown()
        return False


def propfind(server, user, password) -> int:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    with socket.create_connection(server.http, timeout=10) as s:
        s.sendall(f"PROPFIND /dav/{user}/ HTTP/1.1\r\nHost: h\r\nDepth: 0\r\nAuthorization: Basic {token}\r\n"
                  "Content-Length: 0\r\nConnection: close\r\n\r\n".encode())
        return int(s.makefile("rb").readline().split()[1])


def eventually(check, timeout: float = 10):
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result or time.monotonic() > deadline:
            return result
        time.sleep(0.05)


def test_counters_move_by_what_each_protocol_did(server):
    user, password = server.new_user("metrics")
    before = scrape(server)
    assert imap_login(server, user, password)
    assert not imap_login(server, user, "wrong")
    server.deliver(user, MESSAGE)
    with smtplib.LMTP(*server.lmtp, timeout=30) as lmtp:
        with pytest.raises(smtplib.SMTPRecipientsRefused):
            lmtp.sendmail("a@example.org", ["nobody-here@example.test"], MESSAGE)
    assert propfind(server, user, password) == 207
    # connections are counted open until the server has seen them close
    eventually(lambda: moved(before, scrape(server), "haven_connections_open", protocol="imap") == 0)
    after = scrape(server)

    assert moved(before, after, "haven_logins_total", protocol="imap", result="ok") == 1
    assert moved(before, after, "haven_logins_total", protocol="imap", result="failed") == 1
    assert moved(before, after, "haven_logins_total", protocol="imap", result="blocked") == 0
    assert moved(before, after, "haven_logins_total", protocol="http", result="ok") == 1
    assert moved(before, after, "haven_logins_total", protocol="pop3", result="ok") == 0
    assert moved(before, after, "haven_connections_total", protocol="imap") == 2
    assert moved(before, after, "haven_connections_total", protocol="lmtp") == 2
    assert moved(before, after, "haven_connections_total", protocol="http") == 1
    assert moved(before, after, "haven_connections_total", protocol="pop3") == 0
    assert value(after, "haven_connections_open", protocol="imap") == 0
    assert moved(before, after, "haven_deliveries_total", result="delivered") == 1
    assert moved(before, after, "haven_deliveries_total", result="unknown_user") == 1
    assert moved(before, after, "haven_deliveries_total", result="over_quota") == 0
    # the store's latency histogram, by transaction name: one group commit for the delivery
    assert moved(before, after, "haven_store_operation_seconds_count", operation="deliver") == 1
    assert moved(before, after, "haven_store_operation_seconds_count", operation="resolve_recipient") == 2
    assert moved(before, after, "haven_store_operation_seconds_bucket", operation="deliver", le="+Inf") == 1
    assert moved(before, after, "haven_store_operation_seconds_sum", operation="deliver") > 0
    assert value(after, "haven_store_pool_threads") == (1 if server.engine == "sqlite" else 8)
    assert 0 <= value(after, "haven_store_pool_threads_in_use") <= value(after, "haven_store_pool_threads")
    # the outbound queue, as last read (at start and every queue_interval)
    assert value(after, "haven_outbound_queue_messages") == 0
    assert value(after, "haven_outbound_queue_oldest_age_seconds") == 0
    assert value(after, "haven_outbound_queue_updated_timestamp_seconds") > time.time() - 60
    assert value(after, "process_resident_memory_bytes") > 0


def test_tls_listeners_and_starttls_are_counted_and_still_work(server):
    """The counting wraps the protocol under TLS (implicit and STARTTLS) without changing it."""
    user, password = server.new_user("tls")
    insecure = ssl._create_unverified_context()
    before = scrape(server)
    pop = poplib.POP3_SSL(*server.pop3s, context=insecure, timeout=10)
    pop.user(user)
    assert pop.pass_(password).startswith(b"+OK")
    pop.quit()
    with smtplib.SMTP_SSL(*server.submissions, context=insecure, timeout=10) as smtp:
        smtp.login(user, password)
    imap = imaplib.IMAP4(*server.imap)
    imap.starttls(insecure)
    imap.login(user, password)
    imap.logout()
    eventually(lambda: all(value(scrape(server), "haven_connections_open", protocol=p) == 0
                           for p in ("pop3", "submission", "imap")))
    after = scrape(server)
    for protocol in ("pop3", "submission", "imap"):
        assert moved(before, after, "haven_connections_total", protocol=protocol) == 1, protocol
        assert moved(before, after, "haven_logins_total", protocol=protocol, result="ok") == 1, protocol
        assert value(after, "haven_connections_open", protocol=protocol) == 0, protocol


def test_blocked_logins_and_over_quota_deliveries(server):
    user, password = server.new_user("limits")
    before = scrape(server)
    for attempt in range(3):  # [auth] block_after = 3 distinct wrong passwords
        assert not imap_login(server, user, f"wrong-{attempt}")
    assert not imap_login(server, user, password)  # refused without a check
    assert server.cli("user", "quota", user, "--hard", "1").returncode == 0
    with smtplib.LMTP(*server.lmtp, timeout=30) as lmtp:
        with pytest.raises(smtplib.SMTPDataError):
            lmtp.sendmail("a@example.org", [user], MESSAGE)
    after = scrape(server)
    assert moved(before, after, "haven_logins_total", protocol="imap", result="failed") == 3
    assert moved(before, after, "haven_logins_total", protocol="imap", result="blocked") == 1
    assert moved(before, after, "haven_logins_total", protocol="imap", result="ok") == 0
    assert moved(before, after, "haven_deliveries_total", result="over_quota") == 1
    assert moved(before, after, "haven_deliveries_total", result="delivered") == 0
    server.cli("auth", "unblock", user)


def test_a_spooled_delivery_counts_once(server):
    """LMTP DATA over 256 KiB goes to a spool file first; the recipient still counts once."""
    user, _password = server.new_user("big")
    before = scrape(server)
    server.deliver(user, MESSAGE + b"x" * 78 + b"\r\n" * 1 + (b"y" * 998 + b"\r\n") * 400)
    after = scrape(server)
    assert moved(before, after, "haven_deliveries_total", result="delivered") == 1
    assert moved(before, after, "haven_store_operation_seconds_count", operation="deliver") == 1


def test_push_latency_is_measured_from_commit_to_idle(server):
    user, password = server.new_user("idle")
    idler = Idler(server.imap, user, password)
    try:
        before = scrape(server)
        server.deliver(user, MESSAGE)
        idler.wait_exists(timeout=5)
        after = scrape(server)
    finally:
        idler.close()
    assert moved(before, after, "haven_push_latency_seconds_count") == 1
    assert 0 < moved(before, after, "haven_push_latency_seconds_sum") < 1
    assert moved(before, after, "haven_push_latency_seconds_bucket", le="1.0") == 1
    assert value(after, "haven_connections_open", protocol="imap") >= 1


def test_openmetrics_when_the_scraper_asks(server):
    status, headers, body = get(server.metrics, "/metrics",
                                {"Accept": "application/openmetrics-text; version=1.0.0"})
    assert status == 200 and headers["Content-Type"].startswith("application/openmetrics-text")
    assert body.rstrip().endswith("# EOF") and "haven_logins_total" in body


def test_healthz_is_ok_and_503_with_the_reason_while_the_store_is_broken(server):
    assert get(server.metrics, "/healthz")[::2] == (200, "ok\n")
    with outage(server):
        status, headers, body = get(server.metrics, "/healthz")
        assert status == 503 and body.startswith("store failed") and body.count("\n") == 1, body
        assert headers["Retry-After"]
    assert eventually(lambda: get(server.metrics, "/healthz")[0] == 200)
    assert "health: store failed" in server.log()


def test_the_metrics_listener_is_not_the_front_door(server):
    assert get(server.metrics, "/")[0] == 404
    assert get(server.metrics, "/dav/")[0] == 404
    assert get(server.http, "/metrics")[0] == 404
    assert get(server.http, "/healthz")[0] == 404  # [metrics] http_healthz = no


def test_http_healthz_puts_the_check_on_the_front_door_without_metrics(tmp_path, monkeypatch):
    monkeypatch.setenv("PYTHONPROFILEIMPORTTIME", "1")  # every import listed in the log
    s = HavenServer(tmp_path, "sqlite", {"metrics.http_healthz": "yes"})
    try:
        s.start()
        assert get(s.http, "/healthz")[::2] == (200, "ok\n")
        assert get(s.http, "/metrics")[0] == 404
        assert "prometheus_client" not in s.log()
    finally:
        s.close()


def test_metrics_are_off_by_default_and_prometheus_is_never_imported(tmp_path, monkeypatch):
    monkeypatch.setenv("PYTHONPROFILEIMPORTTIME", "1")  # every import listed in the log
    s = HavenServer(tmp_path, "sqlite")
    try:
        s.start()
        user, password = s.new_user("off")
        assert imap_login(s, user, password)
        s.deliver(user, MESSAGE)
        log = s.log()
    finally:
        s.close()
    assert "import time:" in log and "gateways.imap" in log  # the import log works
    assert "prometheus_client" not in log and "gateways.metrics.recorder" not in log
    assert "[metrics] listen" not in log


def test_prometheus_is_imported_when_metrics_are_on(tmp_path, monkeypatch):
    monkeypatch.setenv("PYTHONPROFILEIMPORTTIME", "1")
    s = with_metrics(tmp_path, "sqlite")
    try:
        s.start()
        log = s.log()
    finally:
        s.close()
    assert "prometheus_client" in log
    assert f"listening on 127.0.0.1:{s.metrics[1]} ([metrics] listen)" in log


def test_json_log_lines(tmp_path):
    s = HavenServer(tmp_path, "sqlite", {"log.format": "json"})
    try:
        s.start()
        user, _password = s.new_user("json")
        assert not imap_login(s, user, "wrong")  # a warning line
    finally:
        s.close()
    lines = [line for line in s.log().splitlines() if line.strip()]
    records = [json.loads(line) for line in lines]
    assert records and all({"time", "level", "logger", "message"} <= set(r) for r in records)
    assert all(r["time"].endswith("Z") and r["time"][10] == "T" for r in records)
    assert any(r["logger"] == "haven.auth" and r["level"] == "WARNING" and user in r["message"] for r in records)
    assert any(r["message"].startswith("Haven started") for r in records)
