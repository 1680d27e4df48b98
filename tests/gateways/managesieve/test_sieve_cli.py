"""``haven sieve`` as an admin uses it, next to a running ``haven serve``: what the CLI stores
is what ManageSieve clients see and the other way round, on both engines."""

from __future__ import annotations

from .wire import Sieve, literal

SCRIPT = b'require "fileinto";\r\nif header :is "x-list" "a" {\r\n  fileinto "Archive";\r\n}\r\n'


def test_sieve_cli_and_managesieve_agree(haven, tmp_path):
    user, password = haven.new_user("cli")
    path = tmp_path / "rules.sieve"
    path.write_bytes(SCRIPT)
    r = haven.cli("sieve", "put", user, "rules", str(path), "--activate")
    assert r.returncode == 0, r.stderr
    assert r.stdout.decode() == f"stored script 'rules' of {user}, active\n"
    r = haven.cli("sieve", "put", user, "spare", "-", input=b"keep;\n")
    assert r.returncode == 0, r.stderr
    r = haven.cli("sieve", "list", user)
    assert r.stdout.decode() == f"rules\t{len(SCRIPT)} bytes\tactive\nspare\t6 bytes\n"
    assert haven.cli("sieve", "get", user, "rules").stdout == SCRIPT
    with Sieve(haven.managesieve) as s:
        assert s.login(user, password).ok
        assert s.cmd("LISTSCRIPTS").lines == [b'"rules" ACTIVE', b'"spare"']
        assert s.cmd('GETSCRIPT "rules"').lines == [b"{%d}\r\n" % len(SCRIPT) + SCRIPT]
        assert s.cmd(b'PUTSCRIPT "from-client" ' + literal(b"discard;\r\n")).ok
    assert haven.cli("sieve", "get", user, "from-client").stdout == b"discard;\r\n"

    # a script that does not compile: its line and reason, a non-zero exit, nothing stored
    r = haven.cli("sieve", "put", user, "bad", "-", input=b'require "fileinto";\nfileinto "x"\n')
    assert r.returncode == 65 and b"script 'bad' not stored: line " in r.stderr, r.stderr
    r = haven.cli("sieve", "put", user, "latin1", "-", input=b"# caf\xe9\nkeep;\n")
    assert r.returncode == 65 and b"not UTF-8" in r.stderr
    assert b"bad" not in haven.cli("sieve", "list", user).stdout

    # the active script cannot be deleted; deactivating (two spellings) frees it
    r = haven.cli("sieve", "delete", user, "rules")
    assert r.returncode == 65 and b"active" in r.stderr
    assert haven.cli("sieve", "activate", user, "spare").returncode == 0
    assert b"spare\t6 bytes\tactive" in haven.cli("sieve", "list", user).stdout
    assert haven.cli("sieve", "activate", user, "--none").returncode == 0
    assert b"active" not in haven.cli("sieve", "list", user).stdout
    assert haven.cli("sieve", "activate", user, "rules").returncode == 0
    assert haven.cli("sieve", "deactivate", user).returncode == 0
    assert b"active" not in haven.cli("sieve", "list", user).stdout
    assert haven.cli("sieve", "activate", user).returncode == 64  # neither NAME nor --none
    assert haven.cli("sieve", "activate", user, "spare", "--none").returncode == 64  # both
    r = haven.cli("sieve", "delete", user, "rules")
    assert r.returncode == 0 and r.stdout.decode() == f"deleted script 'rules' of {user}\n"

    # errors name what is missing
    r = haven.cli("sieve", "get", user, "rules")
    assert r.returncode == 65 and b"no script rules" in r.stderr
    r = haven.cli("sieve", "activate", user, "missing")
    assert r.returncode == 65 and b"no script missing" in r.stderr
    r = haven.cli("sieve", "list", "nobody@example.test")
    assert r.returncode == 65
    r = haven.cli("sieve", "put", user, "x", str(tmp_path / "missing.sieve"))
    assert r.returncode == 65 and b"No such file" in r.stderr
    with Sieve(haven.managesieve) as s:
        assert s.login(user, password).ok
        assert s.cmd("LISTSCRIPTS").lines == [b'"from-client"', b'"spare"']
