"""The serving TLS context, and certificate rotation without a restart.

We build the `ssl.SSLContext` ourselves (uvicorn would build its own from file
names and never look at them again) and keep it for the life of the process.
Rotation re-loads the certificate into that same context: every new handshake
wraps a fresh SSL object from the context, so it gets the new certificate,
while connections already open keep the one they negotiated.

`load_cert_chain` on a live context is not atomic: if the new certificate loads
but the key does not match, the context is left broken. So each candidate pair
is read once, checked on a scratch context, and only then loaded into the live
context from the very same bytes (via memory-backed files), never re-read from
disk in between. A half-written or mismatched pair is logged and ignored; the
old certificate keeps serving and the next tick tries again.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import ssl
import tempfile
from collections.abc import Iterator
from pathlib import Path

from cryptography import x509

from webhook.errors import TLSError as TLSError  # re-exported: raised here

log = logging.getLogger("netpol_guard.tls")

CERT_FILE = "tls.crt"
KEY_FILE = "tls.key"
# TLS 1.2 suites: forward secrecy and AEAD only (TLS 1.3 suites are always the strong defaults).
TLS12_CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20"



def new_server_context() -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_ciphers(TLS12_CIPHERS)
    context.options |= ssl.OP_NO_COMPRESSION | ssl.OP_CIPHER_SERVER_PREFERENCE
    context.set_alpn_protocols(["http/1.1"])
    return context


@contextlib.contextmanager
def _as_files(cert: bytes, key: bytes) -> Iterator[tuple[str, str]]:
    """Paths holding exactly these bytes (`load_cert_chain` only takes paths).

    memfd keeps the private key off disk and works on a read-only root filesystem;
    elsewhere fall back to a private temporary directory.
    """
    if hasattr(os, "memfd_create"):
        fds = [os.memfd_create("netpol-guard-tls", 0) for _ in range(2)]
        try:
            for fd, data in zip(fds, (cert, key), strict=True):
                os.write(fd, data)
            yield f"/proc/self/fd/{fds[0]}", f"/proc/self/fd/{fds[1]}"
        finally:
            for fd in fds:
                os.close(fd)
        return
    with tempfile.TemporaryDirectory(prefix="netpol-guard-tls-") as directory:
        paths = (os.path.join(directory, CERT_FILE), os.path.join(directory, KEY_FILE))
        for path, data in zip(paths, (cert, key), strict=True):
            with open(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600), "wb") as handle:
                handle.write(data)
        yield paths


def _load(context: ssl.SSLContext, cert: bytes, key: bytes) -> None:
    with _as_files(cert, key) as (cert_path, key_path):
        context.load_cert_chain(cert_path, key_path)


def describe_certificate(cert: bytes) -> str:
    """Serial and expiry of the first certificate in a PEM chain, for log lines."""
    try:
        parsed = x509.load_pem_x509_certificate(cert)
    except ValueError:
        return "unparsable certificate"
    return f"serial {parsed.serial_number:x}, expires {parsed.not_valid_after_utc.isoformat()}"


class CertificateReloader:
    """Owns the live SSLContext and refreshes its certificate when tls.crt/tls.key change."""

    def __init__(self, cert_dir: str, interval: float) -> None:
        self.cert_path = Path(cert_dir) / CERT_FILE
        self.key_path = Path(cert_dir) / KEY_FILE
        self.interval = interval
        self.context = new_server_context()
        cert, key = self._read_or_raise()
        try:
            _load(self.context, cert, key)
        except (ssl.SSLError, OSError) as error:
            raise TLSError(f"cannot load {self.cert_path} with {self.key_path}: {_reason(error)}") from None
        self._digest = _digest(cert, key)
        self.description = describe_certificate(cert)
        self.reloads = 0

    def _read_or_raise(self) -> tuple[bytes, bytes]:
        for path in (self.cert_path, self.key_path):
            if not path.is_file():
                raise TLSError(f"{path}: no such file (need {CERT_FILE} and {KEY_FILE} in the certificate directory; "
                               "`netpol-guard certs --out-dir DIR` makes a pair)")
        try:
            return self.cert_path.read_bytes(), self.key_path.read_bytes()
        except OSError as error:
            raise TLSError(f"cannot read the certificate files: {error}") from None

    def check(self) -> bool:
        """One tick: reload when the pair on disk differs from the one in use. True when it reloaded."""
        try:
            cert, key = self.cert_path.read_bytes(), self.key_path.read_bytes()
        except OSError as error:
            log.warning("certificate files unreadable, keeping the current certificate: %s", error)
            return False
        digest = _digest(cert, key)
        if digest == self._digest:
            return False
        scratch = new_server_context()
        try:
            _load(scratch, cert, key)
        except (ssl.SSLError, OSError) as error:
            # Typically mid-rotation (new key, old cert): keep serving and try again next tick.
            log.warning("new certificate pair does not load yet, keeping the current one: %s", _reason(error))
            return False
        _load(self.context, cert, key)
        self._digest = digest
        self.description = describe_certificate(cert)
        self.reloads += 1
        log.info("reloaded the serving certificate (%s)", self.description)
        return True

    async def run(self) -> None:
        """Poll forever in the event loop's thread, so the context is never changed mid-handshake."""
        while True:
            await asyncio.sleep(self.interval)
            try:
                self.check()
            except Exception:  # never let a reload bug stop the poller
                log.exception("certificate reload failed")


def require_client_certificates(context: ssl.SSLContext, ca_file: str) -> str:
    """Refuse, at the TLS handshake, every client without a certificate signed by the CA in `ca_file`.

    For `serve --client-ca` (config `server.clientCA`): the API server presents its certificate when its
    AdmissionConfiguration's `kubeConfigFile` names one for our Service (see the README). Read at start;
    a new client CA needs a restart. Returns a description for the start-up log line.
    """
    try:
        pem = Path(ca_file).read_bytes()
    except OSError as error:
        raise TLSError(f"--client-ca {ca_file}: {error.strerror or error}") from None
    try:
        authorities = x509.load_pem_x509_certificates(pem)
    except ValueError:
        raise TLSError(f"--client-ca {ca_file}: not a PEM certificate (bundle)") from None
    try:
        context.load_verify_locations(cadata=pem.decode("ascii"))
    except (ssl.SSLError, UnicodeDecodeError) as error:
        raise TLSError(f"--client-ca {ca_file}: cannot use it: {_reason(error)}") from None
    context.verify_mode = ssl.CERT_REQUIRED
    return ", ".join(authority.subject.rfc4514_string() for authority in authorities)


def _digest(cert: bytes, key: bytes) -> bytes:
    return hashlib.sha256(cert + b"\0" + key).digest()


def _reason(error: BaseException) -> str:
    if isinstance(error, ssl.SSLError):
        return error.reason or str(error)
    return str(error)
