"""README.md's "Running it for real" is run as written, so that it cannot rot; the production
sample config and the systemd unit say what the README promises.

How the install is run (``test_the_readme_install_runs``):

* The fenced ``sh`` blocks of the section, from its heading to the first ``###``, joined into one
  bash script (``set -euo pipefail``), in a copy of the source tree.
* Every absolute path under /etc, /var, /opt and /run becomes a path under a temporary root,
  in the script and in the copied ``conf/haven-production.ini``; that copy's listeners are moved
  to free loopback ports (the sample itself is checked for the standard ports below).
* The privileged steps, and only those, are skipped (``PRIVILEGED``): ``apt-get``, ``useradd``,
  ``chgrp``/``chown``, ``systemctl``/``journalctl``; ``install -o/-g`` loses its owner and group;
  ``runuser -u haven --`` runs the command as the test's user.
* ``python3 -m venv`` is this interpreter's ``-m venv --without-pip``, and ``pip install .`` this
  interpreter's pip (``--python`` the new venv) with ``--no-deps``: the project itself is built
  and installed as the README does it (a wheel, the ``haven`` console script, the package data:
  conf/haven.ini, the schema deltas), while its dependencies come from the test environment
  through a ``.pth`` file instead of the network.  A fresh venv with every dependency would take
  a minute; this takes a few seconds.  The build backend is fetched as for ``./dev``.

Then the installed ``haven serve`` runs with the installed config, and an IMAP client logs in
over STARTTLS as the account the README created, and reads a message delivered over the LMTP
unix socket.
"""

from __future__ import annotations

import configparser
import imaplib
import os
import re
import shutil
import signal
import smtplib
import ssl
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from conf import load_config
from tests.conftest import ROOT, free_port, wait_port

README = ROOT / "README.md"
SAMPLE = ROOT / "conf" / "haven-production.ini"
UNIT = ROOT / "systemd" / "haven.service"
SECTION = "## Running it for real"
#: commands that need root or a running systemd: skipped, each line marked in the script
PRIVILEGED = ("apt-get ", "useradd ", "chgrp ", "chown ", "systemctl ", "journalctl ")
#: absolute paths the install writes to, moved under the temporary root
ROOTED = re.compile(r"(?<![\w.])/(etc|var|opt|run)/")
STANDARD_PORTS = {("imap", "listen"): 143, ("imap", "tls_listen"): 993, ("pop3", "listen"): 110,
                  ("pop3", "tls_listen"): 995, ("submission", "listen"): 587, ("submission", "tls_listen"): 465,
                  ("managesieve", "listen"): 4190, ("http", "tls_listen"): 443}


def install_blocks(text: str) -> list[str]:
    """The ``sh`` blocks of the install section, in order."""
    section = text[text.index(SECTION):]
    section = section[:section.index("\n### ")]
    return re.findall(r"^```sh\n(.*?)^```", section, flags=re.S | re.M)


def rooted_script(blocks: list[str], root: Path) -> str:
    purelib = sysconfig.get_paths()["purelib"]
    lines = ["set -euo pipefail"]
    for line in "\n".join(blocks).splitlines():
        command = line.strip()
        if command.startswith(PRIVILEGED):
            lines.append(f": skipped, privileged: {command!r}")
            continue
        if command.startswith("install "):
            line = re.sub(r" -[og] \S+", "", line)
        line = line.replace("runuser -u haven -- ", "")
        venv = re.match(r"python3 -m venv (\S+)$", command)
        if venv:
            target = ROOTED.sub(f"{root}/\\1/", venv.group(1))
            version = f"python{sys.version_info.major}.{sys.version_info.minor}"
            lines.append(f"{sys.executable} -m venv --without-pip {target}")
            lines.append(f"echo {purelib} > {target}/lib/{version}/site-packages/haven-test-deps.pth")
            continue
        pip = re.match(r"(\S+)/bin/pip install \.(\s|$)", command)
        if pip:
            target = ROOTED.sub(f"{root}/\\1/", pip.group(1))
            lines.append(f"{sys.executable} -m pip --python {target}/bin/python install -q --no-deps .")
            continue
        lines.append(ROOTED.sub(f"{root}/\\1/", line))
    return "\n".join(lines) + "\n"


def rooted_config(text: str, root: Path) -> tuple[str, dict]:
    """The sample with its paths under ``root`` and its listeners on free loopback ports;
    and standard port -> the port used instead."""
    ports = {}

    def move(match):
        ports[int(match.group(2))] = port = free_port()
        return f"{match.group(1)}127.0.0.1:{port}"
    text = re.sub(r"^(\w*listen = )(?:0\.0\.0\.0|127\.0\.0\.1):(\d+)$", move, text, flags=re.M)
    return ROOTED.sub(f"{root}/\\1/", text), ports


def test_the_production_sample_names_the_standard_ports():
    parser = configparser.ConfigParser(interpolation=None)
    parser.read(SAMPLE)
    for (section, key), port in STANDARD_PORTS.items():
        assert parser.get(section, key) == f"0.0.0.0:{port}", (section, key)
    assert parser.get("lmtp", "listen") == "unix:/run/haven/lmtp.sock"
    for section in ("imap", "pop3", "submission", "managesieve"):
        assert parser.get(section, "allow_plaintext_auth") == "no", section
    assert parser.get("server", "data_dir") == "/var/lib/haven"
    assert parser.get("tls", "cert").startswith("/etc/haven/tls/")
    assert parser.get("log", "method") == "stderr"  # the journal
    load_config(str(SAMPLE))  # every section and key is one Haven knows


def test_the_unit_runs_what_the_readme_installs():
    unit = UNIT.read_text()
    settings = dict(re.findall(r"^(\w+)=(.*)$", unit, flags=re.M))
    venv = re.search(r"^python3 -m venv (\S+)$", "\n".join(install_blocks(README.read_text())), re.M).group(1)
    assert settings["ExecStart"] == f"{venv}/bin/haven serve"
    assert settings["Type"] == "notify" and int(settings["WatchdogSec"]) > 0
    assert settings["UMask"] == "0027" and settings["User"] == "haven"
    assert settings["CapabilityBoundingSet"] == "CAP_NET_BIND_SERVICE"
    assert settings["Environment"] == "HAVEN_CONFIG=/etc/haven/haven.ini"


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_the_unit_sandbox_exposure_is_low():
    r = subprocess.run(["systemd-analyze", "security", "--offline=yes", str(UNIT)], capture_output=True,
                       text=True, timeout=60)
    found = re.search(r"Overall exposure level for \S+: ([\d.]+)", r.stdout)
    if found is None:
        pytest.skip(f"systemd-analyze security --offline is not supported here: {r.stderr.strip()[:200]}")
    assert float(found.group(1)) <= 2.5, r.stdout
    assert "Unknown" not in r.stderr and "ignoring" not in r.stderr, r.stderr  # every directive understood


@pytest.mark.skipif(shutil.which("openssl") is None, reason="the README's self-signed certificate needs openssl")
def test_the_readme_install_runs(tmp_path):
    root, tree = tmp_path / "root", tmp_path / "haven"
    (root / "etc/systemd/system").mkdir(parents=True)  # there on every Debian
    tree.mkdir()
    for name in ("setup.cfg", "pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, tree / name)
    for package in ("auth", "conf", "formats", "gateways", "store", "systemd"):
        shutil.copytree(ROOT / package, tree / package, ignore=shutil.ignore_patterns("__pycache__"))
    config_text, ports = rooted_config(SAMPLE.read_text(), root)
    (tree / "conf" / "haven-production.ini").write_text(config_text)
    assert set(STANDARD_PORTS.values()) <= set(ports)

    script = rooted_script(install_blocks(README.read_text()), root)
    env = {k: v for k, v in os.environ.items() if k not in ("HAVEN_CONFIG", "VIRTUAL_ENV", "PYTHONPATH")}
    r = subprocess.run(["bash", "-c", script], cwd=tree, env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, f"{script}\n--- stdout\n{r.stdout}\n--- stderr\n{r.stderr}"
    assert "[server]" in r.stdout and "; set" in r.stdout  # haven config check printed it

    haven, config = root / "opt/haven/bin/haven", root / "etc/haven/haven.ini"
    assert haven.is_file() and (root / "var/lib/haven/haven.db").is_file()
    assert (root / "etc/systemd/system/haven.service").read_text() == UNIT.read_text()
    assert "hostname = mail.example.org" in config.read_text()
    address, password = re.search(r"echo '([^']+)' \| haven user add (\S+)", README.read_text()).group(2, 1)

    log = open(tmp_path / "serve.log", "wb")
    serve = subprocess.Popen([str(haven), "--config", str(config), "serve"], cwd=tmp_path, env=env,
                             stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_port(ports[143], serve)
        for port in ports.values():
            wait_port(port, serve)
        tls = ssl.create_default_context()
        tls.check_hostname, tls.verify_mode = False, ssl.CERT_NONE
        lmtp = smtplib.LMTP(str(root / "run/haven/lmtp.sock"))
        lmtp.sendmail("sender@example.net", [address], b"Subject: installed\r\n\r\nit works\r\n")
        lmtp.quit()
        imap = imaplib.IMAP4("127.0.0.1", ports[143])
        assert imap.capabilities and "LOGINDISABLED" in imap.capabilities  # no password before TLS
        imap.starttls(tls)
        imap.login(address, password)
        assert imap.select("INBOX") == ("OK", [b"1"])
        imap.logout()
        imaps = imaplib.IMAP4_SSL("127.0.0.1", ports[993], ssl_context=tls)
        assert imaps.sock.getpeercert(binary_form=True)  # the README's certificate, from /etc/haven/tls
        imaps.logout()
    finally:
        serve.send_signal(signal.SIGTERM)
        try:
            serve.wait(15)
        finally:
            serve.kill()
            log.close()
    assert serve.returncode == 0, (tmp_path / "serve.log").read_text()



def _postfix(name: str) -> str:
    """A conf/postfix/ snippet without its comments."""
    text = (ROOT / "conf" / "postfix" / name).read_text()
    return "\n".join(line for line in text.splitlines() if line.strip() and not line.startswith("#"))


def test_the_postfix_snippets_fit_the_install():
    """main.cf's transport is the unchrooted service of master.cf, on the sample's socket;
    the pipe runs the installed `haven` with the installed config, one recipient at a time."""
    main = dict(re.findall(r"^(\w+) = (.*)$", _postfix("main.cf"), flags=re.M))
    service, _, where = main["virtual_transport"].partition(":")
    columns = _postfix("master.cf").split()
    assert columns[0] == service and columns[1] == "unix" and columns[4] == "n" and columns[7] == "lmtp"
    parser = configparser.ConfigParser(interpolation=None)
    parser.read(SAMPLE)
    assert where == parser.get("lmtp", "listen")

    pipe_main = dict(re.findall(r"^(\w+) = (.*)$", _postfix("pipe-main.cf"), flags=re.M))
    pipe = _postfix("pipe-master.cf").split()
    assert pipe[:8] == [pipe_main["virtual_transport"], "unix", "-", "n", "n", "-", "-", "pipe"]
    assert pipe_main[f"{pipe[0]}_destination_recipient_limit"] == "1"
    haven = dict(re.findall(r"^(\w+)=(.*)$", UNIT.read_text(), flags=re.M))["ExecStart"].split()[0]
    argv = " ".join(pipe[pipe.index(f"argv={haven}"):])
    assert argv.startswith(f"argv={haven} --config /etc/haven/haven.ini deliver -f ${{sender}} ${{recipient}}")
    assert "user=haven" in pipe

    # README's Postfix recipe edits the installed sample's socket_group line
    edit = re.search(r"sed -i 's/\^(socket_group =\.\*)/([^/]+)/' /etc/haven/haven.ini", README.read_text())
    assert edit, "the Postfix recipe no longer sets [lmtp] socket_group"
    edited = re.sub("^" + edit.group(1), edit.group(2), SAMPLE.read_text(), flags=re.M)
    assert "\nsocket_group = postfix\n" in edited
