"""A bad configuration value stops `haven serve` with one line naming the section, key, value and
what is expected (exit 78) before anything is created or bound; `haven config check` prints what
is in effect, secrets masked."""

from __future__ import annotations

import grp
import os
import socket
import stat
import subprocess
import sys

import pytest

from tests.conftest import ROOT, free_port


def haven(tmp_path, *args, config: str):
    path = tmp_path / "haven.ini"
    path.write_text(config)
    return subprocess.run([sys.executable, "-m", "gateways.cli", "--config", str(path), *args],
                          capture_output=True, cwd=tmp_path, timeout=60)


BAD = [
    ("[imap]\nidle_timeout = soon\n", b"[imap] idle_timeout = 'soon': expected a duration"),
    ("[imap]\nlisten = 127.0.0.73:99999\n", b"[imap] listen = '127.0.0.73:99999': expected HOST:PORT"),
    ("[pop3]\nmax_bad_commands = x\n", b"[pop3] max_bad_commands"),
    ("[http]\nthreads = 0\n", b"[http] threads"),
    ("[auth]\ntrusted_networks = webmail\n", b"[auth] trusted_networks = 'webmail': 'webmail' is not an IP address"),
    ("[auth]\nblock_after = -1\n", b"[auth] block_after = '-1': expected 0 or more"),
    ("[lmtp]\nover_quota = sometimes\n", b"[lmtp] over_quota"),
    ("[submission]\nrelay = nowhere\n", b"[submission] relay"),
    ("[tls]\ncert = /nonexistent/cert.pem\nkey = /nonexistent/key.pem\n",
     b"[tls] cert = /nonexistent/cert.pem: no such file"),
    ("[pop3]\nlisten = 127.0.0.1:{imap}\n", b"already the address of [imap] listen"),
    ("[metrics]\nlisten = 9180\n", b"[metrics] listen = '9180': expected HOST:PORT"),
    ("[metrics]\nlisten = 127.0.0.1:{imap}\n", b"[metrics] listen = 127.0.0.1:"),
    ("[metrics]\nhealth_timeout = 0\n", b"[metrics] health_timeout = '0': expected at least 0.1"),
    ("[metrics]\nqueue_interval = often\n", b"[metrics] queue_interval = 'often': expected a duration"),
    ("[metrics]\nhttp_healthz = maybe\n", b"[metrics] http_healthz = 'maybe': expected yes or no"),
    ("[log]\nformat = xml\n", b"[log] format = 'xml': expected text or json"),
    ("[lmtp]\nlisten = unix:/nonexistent/lmtp.sock\nsocket_group = no-such-group-here\n",
     b"[lmtp] socket_group = 'no-such-group-here': no such group"),
]


@pytest.mark.parametrize("extra,message", BAD, ids=[m.decode().split(" =")[0].split(":")[0] for _, m in BAD])
def test_a_bad_value_stops_serve_before_anything_is_made(tmp_path, extra, message):
    imap = free_port()
    config = (f"[server]\ndata_dir = {tmp_path / 'data'}\n"
              + "".join(f"[{s}]\nlisten =\n" for s in ("pop3", "lmtp", "submission", "managesieve", "http")
                        if f"[{s}]" not in extra)
              + ("" if "[imap]" in extra else f"[imap]\nlisten = 127.0.0.1:{imap}\n")
              + extra.replace("{imap}", str(imap)))
    if "[imap]" in extra and "listen" not in extra:
        config = config.replace("[imap]\n", f"[imap]\nlisten = 127.0.0.1:{imap}\n", 1)
    r = haven(tmp_path, "serve", config=config)
    assert r.returncode == 78, r.stderr
    assert r.stderr.startswith(b"haven: ") and message in r.stderr, r.stderr
    assert b"Traceback" not in r.stderr and r.stderr.count(b"\n") == 1, r.stderr
    assert not (tmp_path / "data").exists()  # no store, no self-signed certificate
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", imap), timeout=1).close()
    check = haven(tmp_path, "config", "check", config=config)
    assert check.returncode == 78 and message in check.stderr


def test_a_data_dir_that_is_a_file_is_refused(tmp_path):
    (tmp_path / "afile").write_text("x")
    r = haven(tmp_path, "serve", config=f"[server]\ndata_dir = {tmp_path / 'afile'}\n")
    assert r.returncode == 78 and b"[server] data_dir" in r.stderr and b"is not a folder" in r.stderr, r.stderr


def test_config_check_prints_what_is_in_effect_with_secrets_masked(tmp_path):
    r = haven(tmp_path, "config", "check", config=(
        "[store]\nurl = mysql://haven:s3cret-pw@db.example:3306/haven\n"
        "[submission]\nrelay = smtp.example:587\nrelay_user = me\nrelay_password = hunter2\n"))
    out = r.stdout.decode()
    assert r.returncode == 0, r.stderr
    assert "s3cret-pw" not in out and "hunter2" not in out
    assert "url = mysql://haven:********@db.example:3306/haven    ; set" in out
    assert "relay_password = ********    ; set" in out
    assert "\n[imap]\n" in out and "failure_delay = 2.0\n" in out  # defaults, unmarked
    assert str(tmp_path / "haven.ini") in out
    assert b"every value is valid" in r.stderr


def test_version(tmp_path):
    r = subprocess.run([sys.executable, "-m", "gateways.cli", "--version"], capture_output=True, cwd=ROOT)
    assert r.returncode == 0 and r.stdout.startswith(b"haven ") and r.stdout.strip() != b"haven"


def _mysql(tmp_path, url: str, *args):
    return haven(tmp_path, *args, config=f"[server]\ndata_dir = {tmp_path / 'data'}\n[store]\nurl = {url}\n")


def test_database_errors_say_what_happened(tmp_path):
    """Access denied, an unknown database and a refused connection are told apart (not "the
    store is busy"), with 78 when the config must change and 75 when later may work; `haven
    deliver` says 75 to every one so the MTA keeps the mail."""
    from tests.conftest import MYSQL_URL, require_engine
    require_engine("mariadb")
    from urllib.parse import urlsplit
    u = urlsplit(MYSQL_URL)
    host = f"{u.hostname}:{u.port or 3306}"
    r = _mysql(tmp_path, f"mysql://nosuchuser:wrong@{host}/test", "user", "list")
    assert r.returncode == 78 and b"refused user 'nosuchuser': access denied" in r.stderr, r.stderr
    r = _mysql(tmp_path, f"mysql://{u.username or 'root'}@{host}/haven_no_such_db", "user", "list")
    assert r.returncode == 78 and b"has no database 'haven_no_such_db'" in r.stderr, r.stderr
    r = _mysql(tmp_path, f"mysql://{u.username or 'root'}@{host}/haven_no_such_db", "deliver", "a@b.example")
    assert r.returncode == 75, r.stderr
    closed = free_port()
    r = _mysql(tmp_path, f"mysql://root@127.0.0.1:{closed}/test", "user", "list")
    assert r.returncode == 75 and f"cannot connect to MariaDB/MySQL at 127.0.0.1:{closed}".encode() in r.stderr, \
        r.stderr
    assert b"Traceback" not in r.stderr


def test_the_lmtp_socket_gets_its_group(haven_factory, tmp_path):
    """``[lmtp] socket_group``: the unix socket is 0660 and belongs to that group (here one
    of the test user's own, as it must be), so that Postfix's lmtp client may connect."""
    gid = ([g for g in os.getgroups() if g != os.getegid()] or [os.getegid()])[0]
    path = tmp_path / "lmtp.sock"
    server = haven_factory("sqlite", start=False, **{"lmtp.listen": f"unix:{path}",
                                                      "lmtp.socket_group": grp.getgrgid(gid).gr_name})
    server.gateways.remove("lmtp")
    server.start()
    mode = path.stat()
    assert mode.st_gid == gid and stat.S_IMODE(mode.st_mode) == 0o660
    with socket.socket(socket.AF_UNIX) as s:
        s.connect(str(path))
        assert s.recv(100).startswith(b"220 ")
    server.stop()
    assert server.proc.returncode == 0 and not path.exists()  # removed at stop
