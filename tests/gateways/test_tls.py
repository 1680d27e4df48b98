"""TLS on every listener and every STARTTLS, as a client that trusts only a root CA sees it.

The certificates are made at test time: a root, an intermediate it signs, and leaves the
intermediate signs, so a handshake verifies only when the server sends the intermediate too
(what a Let's Encrypt fullchain.pem needs).  One server per test on SQLite: TLS does not
touch the store.
"""

from __future__ import annotations

import datetime
import signal
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.conftest import free_port

HOST = "mail.haven.test"


class CA:
    """root -> intermediate -> leaves, in PEM files under ``folder``."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.root_key, self.root = self._make("Haven Test Root", None, None, ca=True)
        self.inter_key, self.inter = self._make("Haven Test Intermediate", self.root_key, self.root, ca=True)
        self.root_file = folder / "root.pem"
        self.root_file.write_bytes(pem(self.root))

    @staticmethod
    def _make(cn, issuer_key, issuer, ca=False, names=(), days=30):
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.timezone.utc)
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
        builder = (x509.CertificateBuilder().subject_name(subject)
                   .issuer_name(issuer.subject if issuer else subject).public_key(key.public_key())
                   .serial_number(x509.random_serial_number())
                   .not_valid_before(now - datetime.timedelta(days=1))
                   .not_valid_after(now + datetime.timedelta(days=days))
                   .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
        if ca:
            builder = builder.add_extension(x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False, data_encipherment=False,
                key_agreement=False, key_cert_sign=True, crl_sign=True, encipher_only=False,
                decipher_only=False), critical=True)
        else:
            builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]),
                                            critical=False)
        builder = builder.add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        if issuer is not None:
            builder = builder.add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()), critical=False)
        return key, builder.sign(issuer_key or key, hashes.SHA256())

    def leaf(self, *names):
        """(key, certificate) for ``names``, signed by the intermediate."""
        return self._make(names[0], self.inter_key, self.inter, names=names)

    def fullchain(self, cert) -> bytes:
        return pem(cert) + pem(self.inter)

    def client(self, check_hostname: bool = True) -> ssl.SSLContext:
        """A client that trusts the root only (not the intermediate)."""
        context = ssl.create_default_context(cafile=str(self.root_file))
        context.check_hostname = check_hostname
        return context


def pem(cert) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def key_pem(key) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def der(cert) -> bytes:
    return cert.public_bytes(serialization.Encoding.DER)


@pytest.fixture
def ca(tmp_path):
    return CA(tmp_path)


def write_pair(folder: Path, key, cert, ca: CA) -> tuple:
    cert_file, key_file = folder / "fullchain.pem", folder / "privkey.pem"
    cert_file.write_bytes(ca.fullchain(cert))
    key_file.write_bytes(key_pem(key))
    return cert_file, key_file


def tls_server(haven_factory, cert_file, key_file, **overrides):
    """A server with every TLS listener: IMAPS and HTTPS besides the usual ones."""
    imaps, https = free_port(), free_port()
    server = haven_factory("sqlite", start=False, **{
        "tls.cert": str(cert_file), "tls.key": str(key_file),
        "imap.tls_listen": f"127.0.0.1:{imaps}", "http.tls_listen": f"127.0.0.1:{https}", **overrides})
    server.imaps, server.https = ("127.0.0.1", imaps), ("127.0.0.1", https)
    server.gateways += ["imaps", "https"]
    return server.start()


# -- one TLS handshake per listener, as each protocol reaches it ------------------------------

def _read_until(sock, done) -> bytes:
    data = b""
    while not done(data):
        chunk = sock.recv(4096)
        if not chunk:
            raise ConnectionError(f"closed by the server after {data!r}")
        data += chunk
    return data


def _last_line_starts(*prefixes):
    def done(data: bytes) -> bool:
        if not data.endswith(b"\r\n"):
            return False
        last = data[:-2].rsplit(b"\r\n", 1)[-1]
        return last.startswith(prefixes)
    return done


def _imap_starttls(sock):
    _read_until(sock, _last_line_starts(b"* OK"))
    sock.sendall(b"a STARTTLS\r\n")
    assert b"a OK" in _read_until(sock, _last_line_starts(b"a "))


def _pop3_stls(sock):
    _read_until(sock, _last_line_starts(b"+OK"))
    sock.sendall(b"STLS\r\n")
    assert _read_until(sock, _last_line_starts(b"+OK", b"-ERR")).startswith(b"+OK")


def _sieve_starttls(sock):
    _read_until(sock, _last_line_starts(b"OK"))
    sock.sendall(b"STARTTLS\r\n")
    assert _read_until(sock, _last_line_starts(b"OK", b"NO", b"BYE")).startswith(b"OK")


def _smtp_starttls(sock):
    _read_until(sock, _last_line_starts(b"220 "))
    sock.sendall(b"EHLO client.test\r\n")
    assert b"STARTTLS" in _read_until(sock, _last_line_starts(b"250 "))
    sock.sendall(b"STARTTLS\r\n")
    assert _read_until(sock, _last_line_starts(b"220 ", b"4", b"5")).startswith(b"220 ")


def _check_imap(tls):
    tls.sendall(b"b NOOP\r\n")
    assert b"b OK" in _read_until(tls, _last_line_starts(b"b "))


def _check_smtp(tls):
    tls.sendall(b"EHLO client.test\r\n")
    assert b"AUTH" in _read_until(tls, _last_line_starts(b"250 "))


#: listener -> (address attribute of HavenServer, plaintext preamble or None, check under TLS)
LISTENERS = {
    "IMAPS": ("imaps", None, lambda t: _read_until(t, _last_line_starts(b"* OK"))),
    "IMAP STARTTLS": ("imap", _imap_starttls, _check_imap),
    "POP3S": ("pop3s", None, lambda t: _read_until(t, _last_line_starts(b"+OK"))),
    "POP3 STLS": ("pop3", _pop3_stls, lambda t: (t.sendall(b"CAPA\r\n"),
                                                 _read_until(t, lambda d: d.endswith(b"\r\n.\r\n")))),
    "ManageSieve STARTTLS": ("managesieve", _sieve_starttls, lambda t: _read_until(t, _last_line_starts(b"OK"))),
    "submission STARTTLS": ("submission", _smtp_starttls, _check_smtp),
    "SMTPS": ("submissions", None, lambda t: (_read_until(t, _last_line_starts(b"220 ")), _check_smtp(t))),
    "HTTPS": ("https", None, lambda t: (t.sendall(b"GET /.well-known/caldav HTTP/1.0\r\n\r\n"),
                                        _read_until(t, lambda d: b"\r\n" in d))),
}


def handshake(server, listener: str, context: ssl.SSLContext, server_hostname=HOST) -> bytes:
    """The DER leaf the server presents on ``listener`` after a verified handshake (and a
    command under TLS, so the session is usable)."""
    attr, preamble, check = LISTENERS[listener]
    sock = socket.create_connection(getattr(server, attr), timeout=10)
    try:
        if preamble:
            preamble(sock)
        tls = context.wrap_socket(sock, server_hostname=server_hostname)
        check(tls)
        return tls.getpeercert(binary_form=True)
    finally:
        sock.close()


# -- the tests --------------------------------------------------------------------------------

def test_every_listener_sends_the_intermediate(ca, tmp_path, haven_factory):
    key, cert = ca.leaf(HOST)
    server = tls_server(haven_factory, *write_pair(tmp_path, key, cert, ca))
    client = ca.client()
    for listener in LISTENERS:
        try:
            assert handshake(server, listener, client) == der(cert), listener
        except ssl.SSLCertVerificationError as e:
            pytest.fail(f"{listener}: {e}")
    assert "TLS: default mail.haven.test until" in server.log()


def test_sni_chooses_the_certificate_by_name(ca, tmp_path, haven_factory):
    key, cert = ca.leaf(HOST)
    certs = tmp_path / "certs"
    certs.mkdir()
    one_key, one = ca.leaf("imap.one.test", "one.test")
    (certs / "one.pem").write_bytes(key_pem(one_key) + ca.fullchain(one))  # key and chain in one file
    two_key, two = ca.leaf("*.two.test")
    (certs / "two.pem").write_bytes(ca.fullchain(two))  # the key beside it
    (certs / "two.key").write_bytes(key_pem(two_key))
    (certs / ".half-written.pem").write_bytes(b"not yet")  # skipped
    server = tls_server(haven_factory, *write_pair(tmp_path, key, cert, ca), **{"tls.cert_dir": str(certs)})
    unverified = ca.client(check_hostname=False)
    unverified.verify_mode = ssl.CERT_NONE
    for listener in ("IMAPS", "POP3 STLS", "submission STARTTLS", "SMTPS", "HTTPS"):
        assert handshake(server, listener, ca.client(), "imap.one.test") == der(one), listener
        assert handshake(server, listener, ca.client(), "ONE.test") == der(one), listener
        assert handshake(server, listener, ca.client(), "caldav.two.test") == der(two), listener
        assert handshake(server, listener, ca.client(), HOST) == der(cert), listener
        assert handshake(server, listener, unverified, "other.test") == der(cert), listener
        assert handshake(server, listener, unverified, None) == der(cert), listener  # no SNI
    assert "2 from" in server.log()


def test_sighup_serves_new_certificates_and_keeps_sessions(ca, tmp_path, haven_factory):
    import imaplib
    key, cert = ca.leaf(HOST)
    cert_file, key_file = write_pair(tmp_path, key, cert, ca)
    log_file = tmp_path / "haven-file.log"
    server = tls_server(haven_factory, cert_file, key_file,
                        **{"log.method": "file", "log.file": str(log_file)})
    address, password = server.new_user("tls")
    session = imaplib.IMAP4_SSL(*server.imaps, ssl_context=ca.client(check_hostname=False), timeout=10)
    session.login(address, password)
    session.select("INBOX")
    assert session.sock.getpeercert(binary_form=True) == der(cert)

    # a renewal: new key and certificate in the same files, and logrotate moved the log away
    key2, cert2 = ca.leaf(HOST)
    write_pair(tmp_path, key2, cert2, ca)
    log_file.rename(tmp_path / "haven-file.log.1")
    server.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: "SIGHUP: reopened the log file; reloaded the TLS certificates" in read(log_file))
    for listener in LISTENERS:
        assert handshake(server, listener, ca.client()) == der(cert2), listener
    assert session.noop()[0] == "OK" and session.select("INBOX")[0] == "OK"  # the open session goes on
    assert session.sock.getpeercert(binary_form=True) == der(cert)

    # a broken file: logged, the certificates of the last good load keep serving
    cert_file.write_bytes(b"-----BEGIN CERTIFICATE-----\ngarbage\n-----END CERTIFICATE-----\n")
    server.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: "kept the previous TLS certificates" in read(log_file))
    assert f"[tls] cert = {cert_file}: no PEM certificate in the file" in read(log_file)
    for listener in ("IMAPS", "IMAP STARTTLS", "SMTPS", "submission STARTTLS", "HTTPS"):
        assert handshake(server, listener, ca.client()) == der(cert2), listener
    assert session.noop()[0] == "OK"
    session.logout()
    assert server.proc.poll() is None and "Traceback" not in read(log_file)


def read(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except FileNotFoundError:
        return ""


def wait_for(condition, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        time.sleep(0.05)


def test_bad_tls_files_stop_the_start_with_one_line(ca, tmp_path, haven_factory):
    key, cert = ca.leaf(HOST)
    cert_file, key_file = write_pair(tmp_path, key, cert, ca)
    other_key, _ = ca.leaf("other.test")
    wrong_key = tmp_path / "wrong.key"
    wrong_key.write_bytes(key_pem(other_key))
    reversed_chain = tmp_path / "reversed.pem"
    reversed_chain.write_bytes(pem(ca.inter) + pem(cert))
    locked_key = tmp_path / "locked.key"
    locked_key.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                             serialization.BestAvailableEncryption(b"passphrase")))
    keyless = tmp_path / "certs"
    keyless.mkdir()
    (keyless / "one.pem").write_bytes(ca.fullchain(cert))
    cases = [
        ({"tls.cert": str(tmp_path / "missing.pem"), "tls.key": str(key_file)},
         f"haven: [tls] cert = {tmp_path / 'missing.pem'}: no such file"),
        ({"tls.cert": str(cert_file), "tls.key": str(wrong_key)},
         f"haven: [tls] key = {wrong_key} does not belong to the first certificate of [tls] cert"),
        ({"tls.cert": str(reversed_chain), "tls.key": str(key_file)},
         f"haven: [tls] key = {key_file} does not belong to the first certificate"),
        ({"tls.cert": str(cert_file), "tls.key": str(key_file), "tls.cert_dir": str(tmp_path / "nowhere")},
         f"haven: [tls] cert_dir = {tmp_path / 'nowhere'}: no such directory"),
        ({"tls.cert": str(cert_file), "tls.key": str(locked_key)},
         f"haven: [tls] key = {locked_key}: the private key is encrypted"),
        ({"tls.cert": str(cert_file), "tls.key": str(key_file), "tls.cert_dir": str(keyless)},
         f"haven: [tls] cert_dir = {keyless / 'one.pem'}: no PEM private key in the file"),
    ]
    for overrides, message in cases:
        server = haven_factory("sqlite", start=False, **overrides)
        r = subprocess.run([sys.executable, "-m", "gateways.cli", "--config", str(server.config_path), "serve"],
                           capture_output=True, cwd=server.tmp, env=server.env(), timeout=60)
        assert r.returncode == 78, r.stderr
        assert message.encode() in r.stderr, r.stderr
        assert b"Traceback" not in r.stderr


def test_names_are_matched_exactly_then_one_wildcard_label(ca, tmp_path):
    """RFC 6125 §6.4.3: ``*.two.test`` covers ``a.two.test``, not ``two.test`` nor ``a.b.two.test``;
    of two files naming one host the later expiry serves (a renewal beside the old file)."""
    from gateways.common.tls import TLSSources, load_certificates
    key, cert = ca.leaf(HOST)
    cert_file, key_file = write_pair(tmp_path, key, cert, ca)
    certs = tmp_path / "certs"
    certs.mkdir()
    wild_key, wild = ca.leaf("*.two.test", "exact.one.test")
    (certs / "wild.pem").write_bytes(ca.fullchain(wild) + key_pem(wild_key))  # chain first, then the key
    old_key, old = CA._make("exact.one.test", ca.inter_key, ca.inter, names=("exact.one.test",), days=10)
    (certs / "old.pem").write_bytes(key_pem(old_key) + ca.fullchain(old))
    found = load_certificates(TLSSources(str(cert_file), str(key_file), str(certs)))
    chosen = {name: found.choose(name).names for name in
              ("a.two.test", "A.Two.Test.", b"a.two.test", "two.test", "a.b.two.test", "exact.one.test",
               "one.test", None, "")}
    assert chosen == {"a.two.test": ("*.two.test", "exact.one.test"),
                      "A.Two.Test.": ("*.two.test", "exact.one.test"),
                      b"a.two.test": ("*.two.test", "exact.one.test"),
                      "two.test": (HOST,), "a.b.two.test": (HOST,),
                      "exact.one.test": ("*.two.test", "exact.one.test"),  # it expires after old.pem
                      "one.test": (HOST,), None: (HOST,), "": (HOST,)}
