"""The certificates every TLS listener and every STARTTLS serves, chosen per handshake.

Invariants
- Every handshake sends the whole chain its file holds: the leaf, then the intermediates (a
  CA's ``fullchain.pem``), on the Twisted listeners and STARTTLS (pyOpenSSL: IMAP, POP3,
  ManageSieve, HTTPS) and on the aiosmtpd ones (stdlib ``ssl``: submission, SMTPS) alike.
  ``twisted.internet.ssl.PrivateCertificate.loadPEM`` keeps only the first certificate, so it
  is not used here.
- The certificate is chosen per handshake from the client's server name (SNI, RFC 6066 §3):
  a certificate of ``[tls] cert_dir`` whose subjectAltName (or, without one, common name)
  names it exactly, else one naming ``*.`` + its parent domain, else the ``[tls] cert``/``key``
  default.  A client that sends no name gets the default.
- A :class:`CertificateSet` is loaded whole before it is used: every file read, every key
  matched to its certificate.  Any error is a :class:`StartupError` naming the key and file,
  and :meth:`ServerCertificates.install` is never reached, so a reload that fails leaves the
  previous set serving.
- Replacing the set changes only the handshakes that start afterwards: OpenSSL copies the
  certificate into each connection when it is made, so established sessions keep theirs.
- Loading reads files and parses keys: the service runs it in a thread when it reloads;
  :meth:`install` (a reference swap) runs on the reactor thread.
"""

from __future__ import annotations

import datetime
import logging
import os
import re
import ssl as stdlib_ssl
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from OpenSSL import SSL, crypto
from twisted.internet.interfaces import IOpenSSLServerConnectionCreator
from twisted.internet.ssl import CertificateOptions
from zope.interface import implementer

from gateways.common.errors import StartupError

log = logging.getLogger("haven.tls")

_KEY_BLOCK = re.compile(rb"-----BEGIN ((?:RSA |EC |ENCRYPTED )?PRIVATE KEY)-----.+?-----END \1-----", re.S)


@dataclass(frozen=True)
class TLSSources:
    """Where the certificates come from: ``[tls] cert``, ``key`` and ``cert_dir`` (empty: none)."""
    cert: str
    key: str
    cert_dir: str = ""


@dataclass(frozen=True)
class Credential:
    """One certificate chain and its key, ready for both TLS stacks."""
    path: str  # the file holding the chain
    names: tuple  # the DNS names it serves, lower case (wildcards as "*.example.org")
    not_after: datetime.datetime
    openssl: SSL.Context = field(repr=False)
    stdlib: stdlib_ssl.SSLContext = field(repr=False)

    def describe(self) -> str:
        return f"{', '.join(self.names) or '(no DNS name)'} until {self.not_after:%Y-%m-%d}"


@dataclass(frozen=True)
class CertificateSet:
    """The default credential and those of cert_dir by the names they serve."""
    default: Credential
    by_name: dict
    cert_dir: str = ""

    def choose(self, server_name) -> Credential:
        """The credential for a client's SNI server name (str, bytes or None)."""
        name = _normal_name(server_name)
        if not name or not self.by_name:
            return self.default
        found = self.by_name.get(name)
        if found is None and "." in name:
            found = self.by_name.get("*." + name.split(".", 1)[1])
        return found or self.default

    def describe(self) -> str:
        text = f"default {self.default.describe()}"
        if self.cert_dir:
            extra = sorted({id(c): c for c in self.by_name.values()}.values(), key=lambda c: c.path)
            text += f"; {len(extra)} from {self.cert_dir}" + "".join(f" ({c.describe()})" for c in extra)
        return text


def _normal_name(server_name) -> str:
    if server_name is None:
        return ""
    if isinstance(server_name, bytes):
        server_name = server_name.decode("ascii", "replace")
    try:
        server_name = server_name.encode("idna").decode("ascii")  # stdlib hands U-labels
    except UnicodeError:
        pass
    return server_name.rstrip(".").lower()


def _read(label: str, path: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except FileNotFoundError:
        raise StartupError(f"{label} = {path}: no such file") from None
    except PermissionError:
        raise StartupError(f"{label} = {path}: not readable by this user (uid {os.getuid()}); "
                           f"fix the file's owner or mode") from None
    except OSError as e:
        raise StartupError(f"{label} = {path}: {e.strerror}") from None


def load_credential(cert_path: str, key_path: Optional[str], cert_label: str = "[tls] cert",
                    key_label: str = "[tls] key") -> Credential:
    """The chain in ``cert_path`` (leaf first) with the key in ``key_path`` (None: the key is in
    ``cert_path`` too).  StartupError naming the key and file when anything is wrong."""

    cert_pem = _read(cert_label, cert_path)
    try:
        chain = x509.load_pem_x509_certificates(cert_pem)
    except ValueError:
        raise StartupError(f"{cert_label} = {cert_path}: no PEM certificate in the file") from None
    key_pem = cert_pem if key_path is None else _read(key_label, key_path)
    key_where = f"{cert_label} = {cert_path}" if key_path is None else f"{key_label} = {key_path}"
    block = _KEY_BLOCK.search(key_pem)
    if block is None:
        raise StartupError(f"{key_where}: no PEM private key in the file")
    try:
        key = serialization.load_pem_private_key(block.group(0), password=None)
    except TypeError:
        raise StartupError(f"{key_where}: the private key is encrypted; Haven needs it without a "
                           f"passphrase (readable by the haven user only)") from None
    except Exception as e:  # ValueError, UnsupportedAlgorithm: cryptography's parse errors vary by key type
        raise StartupError(f"{key_where}: cannot read the private key ({e})") from None
    spki = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    if key.public_key().public_bytes(*spki) != chain[0].public_key().public_bytes(*spki):
        raise StartupError(f"{key_where} does not belong to the first certificate of {cert_label} = "
                           f"{cert_path} (the file must start with the server's own certificate, "
                           f"then its intermediates, as fullchain.pem does)")
    leaf = chain[0]
    not_after = getattr(leaf, "not_valid_after_utc", None) or \
        leaf.not_valid_after.replace(tzinfo=datetime.timezone.utc)  # cryptography < 42
    if not_after < datetime.datetime.now(datetime.timezone.utc):
        log.warning("%s = %s: the certificate expired on %s", cert_label, cert_path, not_after.date())
    if len(chain) == 1 and leaf.issuer != leaf.subject:
        log.warning("%s = %s holds no intermediate certificate: most clients will refuse it; "
                    "use the CA's full chain (fullchain.pem)", cert_label, cert_path)
    try:
        openssl = _openssl_context(key, chain)
        stdlib = stdlib_ssl.create_default_context(stdlib_ssl.Purpose.CLIENT_AUTH)
        stdlib.load_cert_chain(cert_path, key_path)
    except (OSError, SSL.Error, stdlib_ssl.SSLError, ValueError, TypeError) as e:
        raise StartupError(f"cannot use {cert_label} = {cert_path} with {key_where}: {e}") from None
    return Credential(path=cert_path, names=tuple(_dns_names(leaf)), not_after=not_after, openssl=openssl,
                      stdlib=stdlib)


def _openssl_context(key, chain) -> SSL.Context:
    """A pyOpenSSL context with Twisted's protocol versions and ciphers serving ``chain``."""
    context = CertificateOptions().getContext()
    _give(context.use_certificate, chain[0], crypto.X509.from_cryptography)
    _give(context.use_privatekey, key, crypto.PKey.from_cryptography_key)
    for intermediate in chain[1:]:  # sent after the leaf, in the file's order
        _give(context.add_extra_chain_cert, intermediate, crypto.X509.from_cryptography)
    context.check_privatekey()
    return context


def _give(method, value, convert) -> None:
    """pyOpenSSL takes cryptography objects since 24.3 and deprecates its own; older takes only its own."""
    try:
        method(value)
    except TypeError:
        method(convert(value))


def _dns_names(cert) -> list:
    try:
        names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value \
            .get_values_for_type(x509.DNSName)
    except x509.ExtensionNotFound:  # RFC 6125 §6.4.4: the CN only without DNS names
        names = [a.value for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
    return [n.rstrip(".").lower() for n in names if isinstance(n, str)]


def load_certificates(sources: TLSSources) -> CertificateSet:
    """Every certificate the sources name, loaded and checked (StartupError otherwise).

    cert_dir holds one ``NAME.pem`` per certificate: its chain (leaf first) and its private key,
    in either order (``cat privkey.pem fullchain.pem``), or the key in ``NAME.key`` beside it
    (which then wins).  The names served come from the certificate, not from NAME; files starting with ``.`` and
    files not ending in ``.pem`` are skipped (write ``.NAME.pem.tmp``, then rename)."""
    default = load_credential(sources.cert, sources.key)
    by_name: dict = {}
    if sources.cert_dir:
        folder = Path(sources.cert_dir)
        try:
            entries = sorted(p for p in folder.iterdir() if p.suffix == ".pem" and not p.name.startswith("."))
        except FileNotFoundError:
            raise StartupError(f"[tls] cert_dir = {folder}: no such directory") from None
        except NotADirectoryError:
            raise StartupError(f"[tls] cert_dir = {folder}: not a directory") from None
        except PermissionError:
            raise StartupError(f"[tls] cert_dir = {folder}: not readable by this user (uid {os.getuid()})") from None
        for pem in entries:
            key_file = pem.with_suffix(".key")
            key_path = str(key_file) if key_file.exists() else None
            credential = load_credential(str(pem), key_path, cert_label="[tls] cert_dir",
                                         key_label="[tls] cert_dir")
            if not credential.names:
                raise StartupError(f"[tls] cert_dir: {pem}: the certificate names no DNS host")
            for name in credential.names:
                other = by_name.get(name)
                # two files for one name (a renewal beside the old one): the later expiry serves
                if other is None or credential.not_after > other.not_after:
                    by_name[name] = credential
    return CertificateSet(default=default, by_name=by_name, cert_dir=sources.cert_dir)


@implementer(IOpenSSLServerConnectionCreator)
class ServerCertificates:
    """What the gateways are handed: ``ctx.tls`` is this object (Twisted listeners and
    ``transport.startTLS``), ``ctx.ssl_context`` its :attr:`ssl_context` (aiosmtpd listeners
    and STARTTLS).  Both look the certificate up in the current set at each handshake."""

    def __init__(self, certificates: CertificateSet):
        self.current = certificates
        certificates.default.openssl.set_tlsext_servername_callback(self._choose_openssl)
        # asyncio and aiosmtpd keep the context they were given; its SNI callback (called for
        # every ClientHello, with None when the client names no server) switches each
        # connection to the current credential.
        self.ssl_context = certificates.default.stdlib
        self.ssl_context.sni_callback = self._choose_stdlib

    def install(self, certificates: CertificateSet) -> None:
        """Serve ``certificates`` from the next handshake on (reactor thread)."""
        certificates.default.openssl.set_tlsext_servername_callback(self._choose_openssl)
        self.current = certificates

    def serverConnectionForTLS(self, tlsProtocol):  # IOpenSSLServerConnectionCreator
        return SSL.Connection(self.current.default.openssl, None)

    def _choose_openssl(self, connection) -> None:
        try:
            chosen = self.current.choose(connection.get_servername())
            if chosen.openssl is not connection.get_context():
                connection.set_context(chosen.openssl)
        except Exception:  # never abort a handshake over the choice: the default serves
            log.exception("choosing a certificate by SNI failed")

    def _choose_stdlib(self, ssl_object, server_name, _context):
        try:
            chosen = self.current.choose(server_name)
            if ssl_object.context is not chosen.stdlib:
                ssl_object.context = chosen.stdlib
        except Exception:
            log.exception("choosing a certificate by SNI failed")
        return None


def make_self_signed(hostname: str, cert_path: Path, key_path: Path) -> None:

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostname)])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=3650))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(hostname)]), critical=False)
            .sign(key, hashes.SHA256()))
    cert_path.parent.mkdir(parents=True, exist_ok=True)
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    os.chmod(key_path, 0o600)
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
