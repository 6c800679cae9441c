"""Certificates for the webhook: a CA and a serving certificate, made with `cryptography`.

`netpol-guard certs` (and `make_certs`) writes four PEM files into one directory:

    ca.crt   the CA certificate; its base64 is the caBundle of the ValidatingWebhookConfiguration
    ca.key   the CA private key (mode 0600)
    tls.crt  the serving certificate, signed by the CA (what the server presents)
    tls.key  the serving private key (mode 0600)

Re-running reuses a valid CA already in the directory, so it rotates the serving
certificate without changing the caBundle registered with the API server. A CA
that has expired, or would expire before the new serving certificate, is
replaced (and the summary says the caBundle changed). A CA that cannot be read,
or whose key does not match, is an error: it is never silently overwritten.

Atomic writes and the order a reader should expect
--------------------------------------------------
Every file is written to a temporary file in the same directory, flushed and
fsync'ed, then renamed over the real name (rename is atomic on POSIX), so no
reader ever sees a half-written file. All temporary files are written before
the first rename; the renames then go in this order:

    ca.key -> ca.crt -> tls.key -> tls.crt

`tls.crt` is always renamed last, so a server that reloads when `tls.crt`
changes always finds the matching `tls.key` already in place. A reader that
happens to read between the last two renames gets the new key with the old
certificate; `ssl.SSLContext.load_cert_chain` rejects such a pair, so the reader
should keep its current context and retry on its next tick (which is what a
periodic reloader does anyway). In Kubernetes, Secret volumes are swapped
atomically by the kubelet and this window does not exist.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import ipaddress
import os
import re
import tempfile
from collections.abc import Iterator, MutableMapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes, PublicKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from webhook.errors import CertError as CertError  # re-exported: raised here

CA_CERT = "ca.crt"
CA_KEY = "ca.key"
TLS_CERT = "tls.crt"
TLS_KEY = "tls.key"

CA_COMMON_NAME = "netpol-guard CA"
CA_DAYS = 3650
MAX_DAYS = 36500  # 100 years; far past that, dates overflow what X.509 (and Python) can write
# Certificates start a little in the past so a node whose clock lags can still use them.
CLOCK_SKEW = dt.timedelta(minutes=5)

_DNS_LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
_HOST_LABEL = re.compile(r"^[a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?$")



@dataclass(frozen=True)
class CertResult:
    out_dir: Path
    dns_names: tuple[str, ...]
    ip_addresses: tuple[str, ...]
    not_after: dt.datetime  # of the serving certificate (UTC)
    ca_not_after: dt.datetime
    ca_bundle: str  # base64 of ca.crt's PEM, as the caBundle field wants it
    ca_reused: bool
    namespace: str = "netpol-guard"  # of the Service, for the `kubectl create secret` hint
    ca_replaced_reason: str | None = None  # why an existing CA was not reused
    webhook_manifest: Path | None = None
    webhooks_updated: tuple[str, ...] = field(default_factory=tuple)

    @property
    def files(self) -> dict[str, Path]:
        return {name: self.out_dir / name for name in (CA_CERT, CA_KEY, TLS_CERT, TLS_KEY)}

    @property
    def sans(self) -> tuple[str, ...]:
        return tuple(f"DNS:{name}" for name in self.dns_names) + tuple(f"IP:{ip}" for ip in self.ip_addresses)

    def summary(self) -> str:
        files = self.files
        if self.ca_reused:
            ca_note = "reused the existing CA: the caBundle is unchanged"
        elif self.ca_replaced_reason:
            ca_note = f"made a new CA ({self.ca_replaced_reason}): update the caBundle"
        else:
            ca_note = "made a new CA"
        lines = [
            f"Wrote certificates to {self.out_dir} ({ca_note}):",
            f"  {files[CA_CERT]}  CA certificate, expires {_iso(self.ca_not_after)}",
            f"  {files[CA_KEY]}  CA private key (mode 0600)",
            f"  {files[TLS_CERT]}  serving certificate, expires {_iso(self.not_after)}",
            f"  {files[TLS_KEY]}  serving private key (mode 0600)",
            f"SANs: {', '.join(self.sans)}",
            f"Serving certificate expires: {_iso(self.not_after)}",
        ]
        if self.webhook_manifest is not None:
            lines.append(f"caBundle written into {self.webhook_manifest} "
                         f"(webhooks: {', '.join(self.webhooks_updated)})")
        lines += [
            "Create the Secret the Deployment mounts with:",
            f"  kubectl -n {self.namespace} create secret tls netpol-guard-tls "
            f"--cert={files[TLS_CERT]} --key={files[TLS_KEY]}",
            f"caBundle: {self.ca_bundle}",
        ]
        return "\n".join(lines)


def make_certs(out_dir: str, *, service: str, namespace: str, hosts: list[str], days: int = 365,
               webhook_manifest: str | None = None) -> CertResult:
    """Make (or rotate) the serving certificate in out_dir, reusing a valid CA there; see the module doc."""
    _check_dns_label(service, "service name")
    _check_dns_label(namespace, "namespace")
    if not 1 <= days <= MAX_DAYS:
        raise CertError(f"--days must be between 1 and {MAX_DAYS}, not {days}")
    dns_names, ips = _subject_alt_names(service, namespace, hosts)

    # Read and check the manifest before writing anything, so bad input leaves no half-done work.
    manifest: tuple[Path, list[Any]] | None = None
    if webhook_manifest is not None:
        manifest_path = Path(webhook_manifest)
        manifest = (manifest_path, _load_manifest(manifest_path))

    directory = Path(out_dir)
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise CertError(f"cannot create the certificate directory {directory}: {error.strerror or error}") from None
    if not directory.is_dir():
        raise CertError(f"{directory} is not a directory")

    now = dt.datetime.now(dt.UTC)
    not_after = now + dt.timedelta(days=days)
    existing, replaced_reason = _existing_ca(directory, now, not_after)
    writes: list[tuple[str, bytes, int]] = []
    if existing is not None:
        ca_cert, ca_key = existing
    else:
        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca_cert = _make_ca(ca_key, now, max(CA_DAYS, days + 1))
        writes += [(CA_KEY, _key_pem(ca_key), 0o600), (CA_CERT, _cert_pem(ca_cert), 0o644)]

    tls_key = ec.generate_private_key(ec.SECP256R1())
    tls_cert = _make_serving(tls_key, ca_cert, ca_key, service, namespace, dns_names, ips, now, not_after)
    writes += [(TLS_KEY, _key_pem(tls_key), 0o600), (TLS_CERT, _cert_pem(tls_cert), 0o644)]
    _write_all_atomically(directory, writes)

    ca_bundle = base64.b64encode(_cert_pem(ca_cert)).decode("ascii")
    updated: tuple[str, ...] = ()
    if manifest is not None:
        updated = _write_ca_bundle(manifest[0], manifest[1], ca_bundle)
    return CertResult(
        out_dir=directory,
        dns_names=tuple(dns_names),
        ip_addresses=tuple(str(ip) for ip in ips),
        not_after=tls_cert.not_valid_after_utc,
        ca_not_after=ca_cert.not_valid_after_utc,
        ca_bundle=ca_bundle,
        ca_reused=existing is not None,
        namespace=namespace,
        ca_replaced_reason=replaced_reason,
        webhook_manifest=manifest[0] if manifest is not None else None,
        webhooks_updated=updated,
    )


def load_ca_bundle(out_dir: str) -> str:
    """The caBundle (base64 of ca.crt's PEM) for certificates made in out_dir."""
    path = Path(out_dir) / CA_CERT
    try:
        data = path.read_bytes()
    except OSError as error:
        raise CertError(f"cannot read {path}: {error.strerror or error} (run `netpol-guard certs` first)") from None
    try:
        x509.load_pem_x509_certificate(data)
    except ValueError:
        raise CertError(f"{path} is not a PEM certificate") from None
    return base64.b64encode(data).decode("ascii")


# --- names -------------------------------------------------------------------------------------------------


def _check_dns_label(value: str, what: str) -> None:
    if not _DNS_LABEL.match(value):
        raise CertError(f"invalid {what} {value!r}: must be a DNS-1123 label "
                        "(lowercase letters, digits and '-', at most 63 characters)")


def _subject_alt_names(service: str, namespace: str, hosts: list[str]
                       ) -> tuple[list[str], list[ipaddress.IPv4Address | ipaddress.IPv6Address]]:
    dns_names = [service, f"{service}.{namespace}", f"{service}.{namespace}.svc",
                 f"{service}.{namespace}.svc.cluster.local"]
    ips: list[ipaddress.IPv4Address | ipaddress.IPv6Address] = []
    for host in hosts:
        try:
            ip = ipaddress.ip_address(host.strip("[]") if ":" in host else host)
        except ValueError:
            name = _normalised_host(host)
            if name not in dns_names:
                dns_names.append(name)
        else:
            if ip not in ips:
                ips.append(ip)
    return dns_names, ips


def _normalised_host(host: str) -> str:
    name = host.rstrip(".").lower() if host not in (".", "") else ""
    labels = name.split(".") if name else []
    if labels and labels[0] == "*":  # a wildcard is allowed as the whole left-most label only
        labels = labels[1:]
    if not labels or len(name) > 253 or not all(_HOST_LABEL.match(label) for label in labels):
        raise CertError(f"invalid --host {host!r}: not an IP address or a DNS name")
    if all(label.isdigit() for label in labels):
        raise CertError(f"invalid --host {host!r}: not an IP address or a DNS name")
    return name


# --- certificates ------------------------------------------------------------------------------------------


def _make_ca(key: ec.EllipticCurvePrivateKey, now: dt.datetime, days: int) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, CA_COMMON_NAME)])
    public = key.public_key()
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - CLOCK_SKEW)
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(digital_signature=True, key_cert_sign=True, crl_sign=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .sign(key, hashes.SHA256())
    )


def _make_serving(key: ec.EllipticCurvePrivateKey, ca_cert: x509.Certificate, ca_key: CertificateIssuerPrivateKeyTypes,
                  service: str, namespace: str, dns_names: list[str],
                  ips: list[ipaddress.IPv4Address | ipaddress.IPv6Address],
                  now: dt.datetime, not_after: dt.datetime) -> x509.Certificate:
    sans: list[x509.GeneralName] = [x509.DNSName(name) for name in dns_names]
    sans += [x509.IPAddress(ip) for ip in ips]
    try:
        ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
        aki = x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski)
    except x509.ExtensionNotFound:  # a CA brought from elsewhere may lack one
        aki = x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key())
    return (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"{service}.{namespace}.svc")]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - CLOCK_SKEW)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(digital_signature=True), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(aki, critical=False)
        .sign(ca_key, hashes.SHA256())
    )


def _key_usage(*, digital_signature: bool = False, key_cert_sign: bool = False, crl_sign: bool = False
               ) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=digital_signature, content_commitment=False, key_encipherment=False,
        data_encipherment=False, key_agreement=False, key_cert_sign=key_cert_sign, crl_sign=crl_sign,
        encipher_only=False, decipher_only=False,
    )


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _spki(public_key: PublicKeyTypes) -> bytes:
    return public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        if not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca:
            return False
    except x509.ExtensionNotFound:
        return False
    try:
        return cert.extensions.get_extension_for_class(x509.KeyUsage).value.key_cert_sign
    except x509.ExtensionNotFound:
        return True  # RFC 5280: no keyUsage extension means no restriction


def _existing_ca(directory: Path, now: dt.datetime, needed_until: dt.datetime
                 ) -> tuple[tuple[x509.Certificate, CertificateIssuerPrivateKeyTypes] | None, str | None]:
    """The CA in directory if it can sign the new certificate; (None, why) when a new one must be made.

    Raises CertError when a CA is there but unusable in a way a new CA would paper over
    (half a pair, unreadable, key not matching): that needs a human decision.
    """
    cert_path, key_path = directory / CA_CERT, directory / CA_KEY
    has_cert, has_key = cert_path.exists(), key_path.exists()
    if not has_cert and not has_key:
        return None, None
    if has_cert != has_key:
        present, missing = (cert_path, key_path) if has_cert else (key_path, cert_path)
        raise CertError(f"{present} exists but {missing} does not; restore it, or delete {present} "
                        "to make a new CA (which changes the caBundle)")
    try:
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    except (OSError, ValueError) as error:
        raise CertError(f"cannot use the existing CA certificate {cert_path}: {error}; "
                        "delete ca.crt and ca.key to make a new CA") from None
    try:
        loaded = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as error:
        raise CertError(f"cannot use the existing CA key {key_path}: {error}; "
                        "delete ca.crt and ca.key to make a new CA") from None
    if not isinstance(loaded, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
        raise CertError(f"{key_path} holds a {type(loaded).__name__}; netpol-guard signs with ECDSA or RSA CA keys")
    key: CertificateIssuerPrivateKeyTypes = loaded
    if _spki(key.public_key()) != _spki(cert.public_key()):
        raise CertError(f"{key_path} is not the key of {cert_path}; restore the matching pair, "
                        "or delete both to make a new CA")
    if not _is_ca(cert):
        raise CertError(f"{cert_path} is not a CA certificate (needs basicConstraints CA:TRUE and keyCertSign); "
                        "delete ca.crt and ca.key to make a new CA")
    if cert.not_valid_after_utc <= now:
        return None, f"the previous CA expired on {_iso(cert.not_valid_after_utc)}"
    if cert.not_valid_after_utc < needed_until:
        return None, f"the previous CA expires on {_iso(cert.not_valid_after_utc)}, before the new certificate"
    if cert.not_valid_before_utc > now:
        return None, f"the previous CA is not valid before {_iso(cert.not_valid_before_utc)}"
    return (cert, key), None


def _iso(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# --- files -------------------------------------------------------------------------------------------------


def _write_all_atomically(directory: Path, writes: list[tuple[str, bytes, int]]) -> None:
    """Write every temp file first, then rename them in list order (see the module doc for the order)."""
    staged: list[tuple[str, str]] = []
    try:
        for name, data, mode in writes:
            staged.append((_write_temp(directory, name, data, mode), name))
        for temp, name in staged:
            os.replace(temp, directory / name)
        _fsync_dir(directory)
    except OSError as error:
        for temp, _ in staged:
            with contextlib.suppress(OSError):
                os.unlink(temp)
        raise CertError(f"cannot write certificates to {directory}: {error.strerror or error}") from None


def _write_temp(directory: Path, name: str, data: bytes, mode: int) -> str:
    fd, temp = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=directory)
    try:
        os.fchmod(fd, mode)  # mkstemp creates 0600; certificates are world-readable
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise
    return temp


def _fsync_dir(directory: Path) -> None:
    with contextlib.suppress(OSError):  # not every filesystem lets a directory be opened for fsync
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


# --- the ValidatingWebhookConfiguration manifest -----------------------------------------------------------


def _load_manifest(path: Path) -> list[Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise CertError(f"cannot read the webhook manifest {path}: {error.strerror or error}") from None
    try:
        documents = [doc for doc in yaml.safe_load_all(text) if doc is not None]
    except yaml.YAMLError as error:
        raise CertError(f"{path}: not valid YAML: {error}") from None
    found = False
    for where, obj in _webhook_configurations(documents):
        found = True
        webhooks = obj.get("webhooks")
        if not isinstance(webhooks, list) or not webhooks:
            raise CertError(f"{path}: {where}: ValidatingWebhookConfiguration has no webhooks to set a caBundle on")
        for index, webhook in enumerate(webhooks):
            if not isinstance(webhook, MutableMapping):
                raise CertError(f"{path}: {where}: webhooks[{index}] is not a mapping")
            client = webhook.get("clientConfig")
            if client is not None and not isinstance(client, MutableMapping):
                raise CertError(f"{path}: {where}: webhooks[{index}].clientConfig is not a mapping")
    if not found:
        raise CertError(f"{path}: no ValidatingWebhookConfiguration found (nothing to write the caBundle into)")
    return documents


def _webhook_configurations(documents: list[Any]) -> Iterator[tuple[str, MutableMapping[str, Any]]]:
    for number, doc in enumerate(documents, start=1):
        if not isinstance(doc, MutableMapping):
            continue
        if doc.get("kind") == "ValidatingWebhookConfiguration":
            yield f"document {number}", doc
        elif doc.get("kind") == "List" and isinstance(doc.get("items"), list):
            for index, item in enumerate(doc["items"]):
                if isinstance(item, MutableMapping) and item.get("kind") == "ValidatingWebhookConfiguration":
                    yield f"document {number}, item {index}", item


def _write_ca_bundle(path: Path, documents: list[Any], ca_bundle: str) -> tuple[str, ...]:
    names: list[str] = []
    for _, obj in _webhook_configurations(documents):
        for webhook in obj["webhooks"]:
            client = webhook.get("clientConfig")
            if client is None:
                client = webhook["clientConfig"] = {}
            client["caBundle"] = ca_bundle
            names.append(str(webhook.get("name", "?")))
    text = yaml.safe_dump_all(documents, sort_keys=False, default_flow_style=False, width=1 << 16)
    directory = path.parent if str(path.parent) else Path(".")
    try:
        mode = path.stat().st_mode & 0o777
        temp = _write_temp(directory, path.name, text.encode("utf-8"), mode)
        os.replace(temp, path)
    except OSError as error:
        raise CertError(f"cannot write the webhook manifest {path}: {error.strerror or error}") from None
    return tuple(names)
