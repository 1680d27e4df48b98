"""The login throttle on the wire: guessing from one address blocks that address for that account
only, on every protocol; the owner logs in from anywhere else; a phone repeating a stale
password does not lock its owner out; ``haven auth status`` shows the block and ``haven auth
unblock`` lifts it; the block is logged once, in the line the fail2ban filter matches.

Two client addresses: the machine's non-loopback address (the "attacker") and 127.0.0.1 (the
owner).  Gateways listen on 0.0.0.0 so both reach the same listener."""

from __future__ import annotations

import base64
import http.client
import imaplib
import poplib
import re
import smtplib
import socket
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.conftest import HavenServer, free_port, non_loopback_ipv4

IP = non_loopback_ipv4()
FILTER = Path(__file__).resolve().parents[2] / "conf" / "fail2ban" / "filter.d" / "haven.conf"


def fail2ban_host(line: str):
    """The address fail2ban's filter (conf/fail2ban/filter.d/haven.conf) takes from a log line
    (``<HOST>`` as fail2ban reads it, for IPv4 and IPv6), or None when it does not match."""
    [failregex] = re.findall(r"^failregex = (.+)$", FILTER.read_text(), re.M)
    m = re.search(failregex.replace("<HOST>", r"(?P<host>[0-9A-Fa-f.:]+)"), line)
    return m and m.group("host")


def test_the_fail2ban_filter_reads_ipv4_and_ipv6():
    line = "haven.auth WARNING login blocked: address {} for account a@b.example after 10 wrong passwords within 900 s"
    assert fail2ban_host(line.format("203.0.113.9")) == "203.0.113.9"
    assert fail2ban_host(line.format("2001:db8::7")) == "2001:db8::7"
    assert fail2ban_host("haven.auth WARNING authentication failed for 'a@b' from 203.0.113.9") is None


@pytest.fixture(scope="module")
def server(haven, tmp_path_factory):
    if IP is None:
        pytest.skip("this machine has no non-loopback IPv4 address to connect from")
    ports = {name: free_port() for name in ("imap", "pop3", "http", "submission")}
    s = HavenServer(tmp_path_factory.mktemp(f"haven-throttle-{haven.engine}"), haven.engine, {
        **{f"{name}.listen": f"0.0.0.0:{port}" for name, port in ports.items()},
        **{f"{name}.allow_plaintext_auth": "yes" for name in ports},
        "auth.block_after": "4", "auth.max_penalty": "0.3", "auth.failure_delay": "0.05",
    })
    for name, port in ports.items():
        setattr(s, name, ("127.0.0.1", port))
    s.start()
    yield s
    s.close()


class _SourceIMAP(imaplib.IMAP4):
    def __init__(self, host, port, source):
        self._source = source
        super().__init__(host, port, timeout=20)

    def _create_socket(self, timeout):
        return socket.create_connection((self.host, self.port), timeout, source_address=(self._source, 0))


def imap_login(server, user, password, source):
    host = IP if source == IP else "127.0.0.1"
    m = _SourceIMAP(host, server.imap[1], source)
    try:
        m.login(user, password)
        return "OK"
    except imaplib.IMAP4.error as e:
        return str(e)
    finally:
        m.shutdown()


def pop3_login(server, user, password, source):
    host = IP if source == IP else "127.0.0.1"
    p = poplib.POP3(host, server.pop3[1], timeout=20)
    p.sock.close()  # poplib has no source address: reconnect from the chosen one
    p.sock = socket.create_connection((host, server.pop3[1]), 20, source_address=(source, 0))
    p.file = p.sock.makefile("rb")
    p._getresp()
    try:
        p.user(user)
        p.pass_(password)
        return "OK"
    except poplib.error_proto as e:
        return e.args[0].decode()
    finally:
        p.quit()


def dav_status(server, user, password, source) -> int:
    host = IP if source == IP else "127.0.0.1"
    c = http.client.HTTPConnection(host, server.http[1], timeout=20, source_address=(source, 0))
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    c.request("PROPFIND", "/dav/", headers={"Authorization": "Basic " + token, "Depth": "0"})
    status = c.getresponse().status
    c.close()
    return status


def submission_login(server, user, password, source) -> int:
    host = IP if source == IP else "127.0.0.1"
    s = smtplib.SMTP(host, server.submission[1], timeout=20, source_address=(source, 0))
    try:
        s.ehlo()
        code, _ = s.docmd("AUTH PLAIN", base64.b64encode(f"\0{user}\0{password}".encode()).decode())
        return code
    finally:
        s.close()


def test_guessing_blocks_only_the_guessing_address_for_that_account(server):
    user, password = server.new_user("bob")
    other, other_password = server.new_user("carol")
    # the repro: parallel wrong passwords over DAV from one address
    with ThreadPoolExecutor(12) as pool:
        statuses = list(pool.map(lambda i: dav_status(server, user, f"wrong{i}", IP), range(12)))
    assert statuses == [401] * 12
    # that address is now refused for bob, with the right password, on every protocol
    assert dav_status(server, user, password, IP) == 401
    assert "AUTHENTICATIONFAILED" in imap_login(server, user, password, IP)
    assert pop3_login(server, user, password, IP).startswith("-ERR")
    assert submission_login(server, user, password, IP) == 535
    # bob from anywhere else, and carol from the guessing address, are served
    assert dav_status(server, user, password, "127.0.0.1") == 207
    assert imap_login(server, user, password, "127.0.0.1") == "OK"
    assert pop3_login(server, user, password, "127.0.0.1") == "OK"
    assert submission_login(server, user, password, "127.0.0.1") == 235
    assert imap_login(server, other, other_password, IP) == "OK"
    # one log line for the block, in the words the fail2ban filter matches
    blocks = [line for line in server.log().splitlines() if "login blocked" in line]
    assert len(blocks) == 1 and f"address {IP} for account {user} " in blocks[0], blocks
    assert fail2ban_host(blocks[0]) == IP
    # the admin sees it and lifts it
    status = server.cli("auth", "status", check=True).stdout.decode()
    assert re.search(rf"{re.escape(IP)}\s+{re.escape(user)}\s+\d+ failures", status), status
    done = server.cli("auth", "unblock", IP, check=True).stdout.decode()
    assert done.startswith(f"unblocked client address {IP}: forgot ")
    assert imap_login(server, user, password, IP) == "OK"
    assert "no failed logins" in server.cli("auth", "status", check=True).stdout.decode() or \
        IP not in server.cli("auth", "status", check=True).stdout.decode()


def test_a_phone_with_a_stale_password_does_not_lock_out_its_owner(server):
    user, password = server.new_user("dee")
    for _ in range(10):
        assert "AUTHENTICATIONFAILED" in imap_login(server, user, "the-old-password", IP)
    assert imap_login(server, user, password, IP) == "OK"
    assert dav_status(server, user, password, IP) == 207


def test_unblock_by_account_address(server):
    user, password = server.new_user("eli")
    for i in range(5):
        assert dav_status(server, user, f"guess{i}", IP) == 401
    assert dav_status(server, user, password, IP) == 401
    done = server.cli("auth", "unblock", user.upper(), check=True).stdout.decode()
    assert done.startswith(f"unblocked account {user}: forgot 4 failed logins") or \
        done.startswith(f"unblocked account {user}: forgot 5 failed logins"), done
    assert dav_status(server, user, password, IP) == 207
    assert "nothing to unblock" in server.cli("auth", "unblock", "198.51.100.77", check=True).stdout.decode()
    assert server.cli("auth", "unblock", "not-an-ip").returncode == 64
