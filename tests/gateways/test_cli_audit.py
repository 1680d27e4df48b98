"""The audit trail of the ``haven`` command (gateways/cli/audit.py): each change an admin makes
is one ``haven.audit`` line in the configured log ([log] method = file here), naming who, what
and when, never a password; and each state-changing command says on stdout what it changed.
Real processes, both engines."""

from __future__ import annotations

import getpass
import re
import subprocess
import sys

import pytest

from tests.conftest import HavenServer, run_on_reactor
from tests.gateways.dav.wire import event

MESSAGE = b"From: a@example.org\nSubject: audited\n\nhello\n"
SCRIPT = b'require "fileinto";\nif header :contains "subject" "x" { fileinto "INBOX"; }\n'
LINE = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d),\d+ haven\.audit INFO audit: user=(\S+)(?: as=\S+)? action=(\S+)(.*)$")


@pytest.fixture
def admin(engine, tmp_path):
    """A configured, not running Haven logging to a file, at level error (the trail is kept
    whatever the level)."""
    log_file = tmp_path / "audit.log"
    server = HavenServer(tmp_path, engine, {"log.method": "file", "log.file": str(log_file), "log.level": "error"})
    server.audit_log = log_file
    assert b"applied" in server.cli("db", "migrate", check=True).stdout
    assert "action=db.migrate applied=" in log_file.read_text()
    log_file.unlink()  # the trail of what the tests do next
    yield server
    server.close()


def audit_lines(admin) -> list:
    if not admin.audit_log.exists():
        return []
    out = []
    for line in admin.audit_log.read_text().splitlines():
        if " haven.audit " in line:
            m = LINE.match(line)
            assert m, line
            out.append((m.group(2), m.group(3), m.group(4).strip()))
    return out


def ok(admin, *args, input: bytes = b"") -> str:
    r = admin.cli(*args, input=input)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip(), f"`haven {' '.join(args)}` printed nothing"
    return r.stdout.decode()


def test_every_admin_change_is_one_audit_line(admin, tmp_path):
    me = getpass.getuser()
    a = "alice@example.test"
    expected = []

    def step(action, fields, *args, input=b""):
        ok(admin, *args, input=input)
        expected.append((action, fields))

    step("user.add", f"address={a} name=Alice", "user", "add", a, "--name", "Alice", "--password-stdin",
         input=b"s3cret-pw\n")
    step("user.passwd", f"address={a}", "user", "passwd", a, "--password-stdin", input=b"other-s3cret\n")
    step("user.quota", f"address={a} hard=2G", "user", "quota", a, "--hard", "2G")
    ok(admin, "user", "quota", a)  # showing is not a change
    step("alias.add", f"alias=boss@example.test address={a}", "alias", "add", "boss@example.test", a)
    step("alias.del", "alias=boss@example.test", "alias", "del", "boss@example.test")
    script = tmp_path / "rules.sieve"
    script.write_bytes(SCRIPT)
    step("sieve.put", f"address={a} script=rules size={len(SCRIPT)}", "sieve", "put", a, "rules", str(script))
    step("sieve.activate", f"address={a} script=rules", "sieve", "activate", a, "rules")
    step("sieve.deactivate", f"address={a}", "sieve", "deactivate", a)
    step("sieve.delete", f"address={a} script=rules", "sieve", "delete", a, "rules")
    step("dav.import", f"address={a} collection=Calendar file=- created=1 replaced=0", "dav", "import", a,
         "Calendar", "-", input=event("audit-1", summary="Audited").encode())

    # a soft-deleted message to restore (expunged through the store contract)
    assert admin.cli("deliver", a, input=MESSAGE).returncode == 0
    admin.new_user("helper")  # opens this process's store on the server's database
    store = admin._store

    async def expunge():
        account = await store.get_account(a)
        folder = await store.get_folder(account.id, "INBOX")
        uids = [m.uid for m in await store.list_messages(folder.id)]
        await store.delete_messages(account.id, folder.id, uids)
        await store.expunge(account.id, folder.id)
        return (await store.list_deleted(account.id))[0]["id"]
    message_id = run_on_reactor(expunge)
    step("recover.restore", f"address={a} messages={message_id} restored=1", "recover", "restore", a,
         str(message_id))
    # the restored message's tombstone goes, but it is not a message removed
    step("purge", "days=0.0 messages=0 dav_items=0 folders=0 blobs=0 accounts=0", "purge", "--days", "0")
    step("user.disable", f"address={a}", "user", "disable", a)
    ok(admin, "user", "disable", a)  # already disabled: not a change
    step("user.enable", f"address={a}", "user", "enable", a)
    step("user.del", f"address={a}", "user", "del", a)
    step("user.restore", f"address={a}", "user", "restore", a)
    step("user.del", f"address={a} now=yes", "user", "del", a, "--now", "--yes")

    lines = audit_lines(admin)
    assert [(action, fields) for _user, action, fields in lines] == expected
    assert {user for user, _a, _f in lines} == {me}
    text = admin.audit_log.read_text()
    assert "s3cret" not in text and "$argon2" not in text
    # the level (error) kept everything else out
    assert "haven.store INFO" not in text


def test_queue_commands_and_sudo_user(admin):
    ok(admin, "user", "add", "q@example.test", "--password-stdin", input=b"pw\n")
    admin.new_user("helper")
    store = admin._store
    account = run_on_reactor(store.get_account, "q@example.test")
    queue_id = run_on_reactor(store.enqueue_outbound, account.id, "q@example.test", ["x@remote.example"], MESSAGE)
    env = admin.env()
    env["SUDO_USER"] = "operator"
    r = subprocess.run([sys.executable, "-m", "gateways.cli", "--config", str(admin.config_path), "queue", "retry"],
                       capture_output=True, cwd=admin.tmp, env=env, timeout=60)
    assert r.returncode == 0 and b"1 recipient due now" in r.stdout
    assert b"deleted message" in admin.cli("queue", "delete", str(queue_id)).stdout
    lines = audit_lines(admin)
    assert lines[-2] == ("operator", "queue.retry", "id=all recipients=1")
    # the one who ran sudo, and as whom
    assert f"user=operator as={getpass.getuser()} action=queue.retry" in admin.audit_log.read_text()
    assert lines[-1] == (getpass.getuser(), "queue.delete", f"id={queue_id}")
