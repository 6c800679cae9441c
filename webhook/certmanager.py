"""Self-managed certificates (`server.certificates: self-signed`), and arming the webhook configurations.

Why: a webhook's CA must be in the API server's caBundle, its serving certificate
must be renewed before it expires, and a fresh install must never block anything
while neither exists yet. This shell does that from inside the cluster, the way
Gatekeeper's cert-controller and Kyverno's self-signed mode do, reusing
`webhook.certs` to make keys and certificates.

One Secret (in netpol-guard's namespace, labelled as ours) holds everything:

    ca.crt / ca.key   the CA that signs new serving certificates (the newest CA)
    ca-bundle.crt     every CA to trust: the newest, plus older ones still valid during a CA switch
    tls.crt / tls.key the serving certificate every replica presents
    annotation netpol-guard.io/ca-published-at: when the newest CA entered the bundle

Every replica runs the same loop (`sync`, every `syncSeconds`); there is no leader:
- read the Secret; if missing, make a CA and a serving certificate and *create* it.
  A 409 means another replica won the race: read theirs. Updates carry the
  resourceVersion, so two replicas renewing at once cannot both win either.
- `plan` (pure: material in, material out) renews the CA at two-thirds of its life,
  keeping the old CA in the bundle until it expires; renews the serving certificate
  at two-thirds of its life, but signs with a new CA only once that CA has been in
  the bundle for `caPropagation`, so the API server trusts a certificate before any
  replica presents it. No request fails during a switch.
- write tls.crt/tls.key and the bundle into a private directory, atomically; the TLS
  reloader (webhook.server.tls) swaps them into the live context without a restart.
- patch the bundle into the caBundle of each named ValidatingWebhookConfiguration, and
  *arm* it: set each webhook's failurePolicy to the value of the configuration's
  annotation `netpol-guard.io/failure-policy`, but only once its caBundle trusts the
  certificate this replica serves and this replica is ready. The manifests ship
  failurePolicy Ignore and no caBundle, so until then nothing can be blocked.

In cert-manager mode only the arming runs: cert-manager writes the Secret and its
CA injector the caBundle; the arming waits until that caBundle trusts what we serve.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import ipaddress
import logging
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from webhook import certs
from webhook.core.config import Config, SelfSignedSettings
from webhook.kubeclient import KubeConfigError, load_configuration

log = logging.getLogger("netpol_guard.certificates")

CA_CERT, CA_KEY, CA_BUNDLE, TLS_CERT, TLS_KEY = "ca.crt", "ca.key", "ca-bundle.crt", "tls.crt", "tls.key"
SECRET_KEYS = (CA_CERT, CA_KEY, CA_BUNDLE, TLS_CERT, TLS_KEY)
MANAGED_BY = ("app.kubernetes.io/managed-by", "netpol-guard")
PUBLISHED_ANNOTATION = "netpol-guard.io/ca-published-at"
FAILURE_POLICY_ANNOTATION = "netpol-guard.io/failure-policy"
FAILURE_POLICIES = ("Fail", "Ignore")
# Certificates start a little in the past for nodes whose clocks lag: 5 minutes, or a tenth of a short life.
MAX_SKEW = dt.timedelta(minutes=5)


class Conflict(Exception):
    """The object changed (or appeared) since it was read: re-read and plan again."""


# --- what the Secret holds ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Material:
    ca_cert: x509.Certificate
    ca_key: ec.EllipticCurvePrivateKey
    bundle: tuple[x509.Certificate, ...]
    tls_cert: x509.Certificate
    tls_key: bytes  # PEM
    ca_published: dt.datetime

    def data(self) -> dict[str, bytes]:
        return {
            CA_CERT: certs.cert_pem(self.ca_cert),
            CA_KEY: certs.key_pem(self.ca_key),
            CA_BUNDLE: self.bundle_pem(),
            TLS_CERT: certs.cert_pem(self.tls_cert),
            TLS_KEY: self.tls_key,
        }

    def annotations(self) -> dict[str, str]:
        return {PUBLISHED_ANNOTATION: self.ca_published.astimezone(dt.UTC).isoformat()}

    def bundle_pem(self) -> bytes:
        return b"".join(certs.cert_pem(cert) for cert in self.bundle)


def material_from_secret(data: Mapping[str, bytes], annotations: Mapping[str, str]) -> Material:
    """Parse and check what a Secret holds; ValueError says what is wrong with it."""
    missing = [key for key in SECRET_KEYS if key not in data]
    if missing:
        raise ValueError(f"missing {', '.join(missing)}")
    try:
        ca_cert = x509.load_pem_x509_certificate(data[CA_CERT])
        tls_cert = x509.load_pem_x509_certificate(data[TLS_CERT])
        bundle = tuple(x509.load_pem_x509_certificates(data[CA_BUNDLE]))
        ca_key = serialization.load_pem_private_key(data[CA_KEY], password=None)
        tls_key = serialization.load_pem_private_key(data[TLS_KEY], password=None)
    except (ValueError, TypeError) as error:
        raise ValueError(f"unparsable PEM: {error}") from None
    if not isinstance(ca_key, ec.EllipticCurvePrivateKey):
        raise ValueError("ca.key is not an ECDSA key")
    if certs.spki(ca_key.public_key()) != certs.spki(ca_cert.public_key()):
        raise ValueError("ca.key does not match ca.crt")
    if certs.spki(tls_key.public_key()) != certs.spki(tls_cert.public_key()):
        raise ValueError("tls.key does not match tls.crt")
    try:
        published = dt.datetime.fromisoformat(annotations[PUBLISHED_ANNOTATION])
    except (KeyError, ValueError):
        published = ca_cert.not_valid_before_utc  # conservative: as old as the CA itself
    if published.tzinfo is None:
        published = published.replace(tzinfo=dt.UTC)
    return Material(ca_cert, ca_key, bundle, tls_cert, data[TLS_KEY], published)


# --- the plan: pure, so every rotation case is a unit test ----------------------------------------------------


@dataclass(frozen=True)
class Identity:
    """Whom the serving certificate is for."""

    service: str
    namespace: str
    hosts: tuple[str, ...] = ()

    def sans(self) -> tuple[list[str], list[ipaddress.IPv4Address | ipaddress.IPv6Address]]:
        return certs.subject_alt_names(self.service, self.namespace, list(self.hosts))


def plan(current: Material | None, now: dt.datetime, settings: SelfSignedSettings, identity: Identity
         ) -> tuple[Material, tuple[str, ...]]:
    """The material to store from now on, and why it changed (empty: keep `current` as it is)."""
    reasons: list[str] = []
    if current is None:
        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca_cert = _new_ca(ca_key, now, settings.ca_validity)
        material = Material(ca_cert, ca_key, (ca_cert,), *_new_serving(ca_cert, ca_key, now, settings, identity),
                            ca_published=now)
        return material, ("no certificates yet: made a CA and a serving certificate",)

    material = current
    if _due(material.ca_cert, now):
        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca_cert = _new_ca(ca_key, now, settings.ca_validity)
        old = material.ca_cert
        material = replace(material, ca_cert=ca_cert, ca_key=ca_key, bundle=(ca_cert, *material.bundle),
                           ca_published=now)
        reasons.append(f"CA {old.serial_number:x} reached two-thirds of its life (expires "
                       f"{_iso(old.not_valid_after_utc)}): new CA {ca_cert.serial_number:x} added to the bundle")

    bundle = tuple(cert for cert in material.bundle if cert.not_valid_after_utc > now or cert == material.ca_cert)
    bundle = tuple(dict.fromkeys(bundle))  # no duplicates, order kept (newest first)
    if material.ca_cert not in bundle:
        bundle = (material.ca_cert, *bundle)
    if bundle != material.bundle:
        dropped = len(material.bundle) - len(bundle)
        material = replace(material, bundle=bundle)
        if dropped > 0:
            reasons.append(f"dropped {dropped} expired CA(s) from the bundle")

    why = _serving_problem(material, now, identity)
    if why is not None:
        usable = _chains(material.tls_cert, material.bundle) and _valid_at(material.tls_cert, now)
        waiting = now < material.ca_published + settings.ca_propagation
        if usable and waiting and not _chains(material.tls_cert, (material.ca_cert,)):
            pass  # the current certificate still works: wait until the new CA is trusted everywhere
        else:
            tls_cert, tls_key = _new_serving(material.ca_cert, material.ca_key, now, settings, identity)
            material = replace(material, tls_cert=tls_cert, tls_key=tls_key)
            reasons.append(f"serving certificate renewed ({why})")
    return material, tuple(reasons)


def _serving_problem(material: Material, now: dt.datetime, identity: Identity) -> str | None:
    cert = material.tls_cert
    if not _valid_at(cert, now):
        return f"it is not valid now (valid {_iso(cert.not_valid_before_utc)} to {_iso(cert.not_valid_after_utc)})"
    if not _chains(cert, material.bundle):
        return "no CA in the bundle signed it"
    if _due(cert, now):
        return f"it reached two-thirds of its life (expires {_iso(cert.not_valid_after_utc)})"
    dns_names, ips = identity.sans()
    try:
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return "it has no subjectAltName"
    if (sorted(sans.get_values_for_type(x509.DNSName)) != sorted(dns_names)
            or sorted(map(str, sans.get_values_for_type(x509.IPAddress))) != sorted(map(str, ips))):
        return "its names differ from the configured Service and hosts"
    return None


def _new_ca(key: ec.EllipticCurvePrivateKey, now: dt.datetime, validity: dt.timedelta) -> x509.Certificate:
    # A name of its own: during a switch two CAs share the bundle, and names tell them apart in logs and
    # in chain building (besides the key identifiers).
    return certs.make_ca(key, now - _skew(validity), now + validity,
                         common_name=f"{certs.CA_COMMON_NAME} {now:%Y-%m-%dT%H:%M:%S.%fZ}")


def _new_serving(ca_cert: x509.Certificate, ca_key: ec.EllipticCurvePrivateKey, now: dt.datetime,
                 settings: SelfSignedSettings, identity: Identity) -> tuple[x509.Certificate, bytes]:
    key = ec.generate_private_key(ec.SECP256R1())
    not_after = min(now + settings.cert_validity, ca_cert.not_valid_after_utc)  # never outlive the CA
    dns_names, ips = identity.sans()
    cert = certs.make_serving(key, ca_cert, ca_key, identity.service, identity.namespace, dns_names, ips,
                              now - _skew(settings.cert_validity), not_after)
    return cert, certs.key_pem(key)


def _skew(validity: dt.timedelta) -> dt.timedelta:
    return min(MAX_SKEW, validity / 10)


def _due(cert: x509.Certificate, now: dt.datetime) -> bool:
    start, end = cert.not_valid_before_utc, cert.not_valid_after_utc
    return now >= start + (end - start) * 2 / 3


def _valid_at(cert: x509.Certificate, now: dt.datetime) -> bool:
    return cert.not_valid_before_utc <= now < cert.not_valid_after_utc


def _chains(cert: x509.Certificate, cas: Sequence[x509.Certificate]) -> bool:
    for ca in cas:
        try:
            cert.verify_directly_issued_by(ca)
        except (ValueError, TypeError, InvalidSignature):
            continue
        return True
    return False


def _iso(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# --- arming the webhook configurations ------------------------------------------------------------------------


def webhook_patch(configuration: Mapping[str, Any], *, ca_bundle: str | None, serving: x509.Certificate | None,
                  ready: bool) -> list[dict[str, Any]]:
    """JSON Patch ops that set the caBundle (when given) and arm each webhook; [] when nothing changes.

    A webhook is armed (failurePolicy set from the annotation) only when its caBundle, after this
    patch, trusts the serving certificate and this replica is ready. The ops `test` the
    resourceVersion and each webhook's name, so a configuration changed meanwhile is never
    patched at the wrong index.
    """
    metadata = configuration.get("metadata") or {}
    desired = (metadata.get("annotations") or {}).get(FAILURE_POLICY_ANNOTATION)
    if desired is not None and desired not in FAILURE_POLICIES:
        log.warning("ignoring annotation %s=%r on ValidatingWebhookConfiguration %s: not Fail or Ignore",
                    FAILURE_POLICY_ANNOTATION, desired, metadata.get("name"))
        desired = None
    ops: list[dict[str, Any]] = []
    for index, webhook in enumerate(configuration.get("webhooks") or []):
        changes: list[dict[str, Any]] = []
        client = webhook.get("clientConfig") or {}
        bundle = client.get("caBundle") or ""
        if ca_bundle is not None and bundle != ca_bundle:
            changes.append({"op": "add", "path": f"/webhooks/{index}/clientConfig/caBundle", "value": ca_bundle})
            bundle = ca_bundle
        if (desired is not None and ready and webhook.get("failurePolicy") != desired
                and serving is not None and _bundle_trusts(bundle, serving)):
            changes.append({"op": "add", "path": f"/webhooks/{index}/failurePolicy", "value": desired})
        if changes:
            ops += [{"op": "test", "path": f"/webhooks/{index}/name", "value": webhook.get("name")}, *changes]
    if ops:
        ops.insert(0, {"op": "test", "path": "/metadata/resourceVersion", "value": metadata.get("resourceVersion")})
    return ops


def _bundle_trusts(ca_bundle_b64: str, serving: x509.Certificate) -> bool:
    try:
        cas = x509.load_pem_x509_certificates(base64.b64decode(ca_bundle_b64, validate=True))
    except ValueError:
        return False
    return _chains(serving, cas)


# --- where the objects live: the API server (or, in tests, anything with these methods) ------------------------


@dataclass(frozen=True)
class StoredSecret:
    data: dict[str, bytes]
    labels: dict[str, str]
    annotations: dict[str, str]
    resource_version: str


class SecretStore(Protocol):
    def read(self) -> StoredSecret | None: ...
    def create(self, data: dict[str, bytes], labels: dict[str, str], annotations: dict[str, str]) -> None: ...
    def replace(self, data: dict[str, bytes], labels: dict[str, str], annotations: dict[str, str],
                resource_version: str) -> None: ...


class WebhookStore(Protocol):
    def read(self, name: str) -> dict[str, Any] | None: ...
    def patch(self, name: str, ops: list[dict[str, Any]]) -> None: ...


class KubernetesSecretStore:
    """One named Secret, read and written with optimistic concurrency (409 becomes Conflict)."""

    def __init__(self, api_client: Any, namespace: str, name: str) -> None:
        from kubernetes import client

        self.api: Any = client.CoreV1Api(api_client)
        self.namespace, self.name = namespace, name
        self.where = f"Secret {namespace}/{name}"

    def read(self) -> StoredSecret | None:
        from kubernetes.client.exceptions import ApiException

        try:
            secret = self.api.read_namespaced_secret(self.name, self.namespace)
        except ApiException as error:
            if error.status == 404:
                return None
            raise
        meta = secret.metadata
        data = {key: base64.b64decode(value) for key, value in (secret.data or {}).items()}
        return StoredSecret(data, dict(meta.labels or {}), dict(meta.annotations or {}), meta.resource_version)

    def _body(self, data: dict[str, bytes], labels: dict[str, str], annotations: dict[str, str],
              resource_version: str | None) -> dict[str, Any]:
        metadata: dict[str, Any] = {"name": self.name, "namespace": self.namespace, "labels": labels,
                                    "annotations": annotations}
        if resource_version is not None:
            metadata["resourceVersion"] = resource_version
        return {"apiVersion": "v1", "kind": "Secret", "type": "Opaque", "metadata": metadata,
                "data": {key: base64.b64encode(value).decode("ascii") for key, value in data.items()}}

    def create(self, data: dict[str, bytes], labels: dict[str, str], annotations: dict[str, str]) -> None:
        from kubernetes.client.exceptions import ApiException

        try:
            self.api.create_namespaced_secret(self.namespace, self._body(data, labels, annotations, None))
        except ApiException as error:
            if error.status == 409:
                raise Conflict(f"{self.where} already exists") from None
            raise

    def replace(self, data: dict[str, bytes], labels: dict[str, str], annotations: dict[str, str],
                resource_version: str) -> None:
        from kubernetes.client.exceptions import ApiException

        try:
            self.api.replace_namespaced_secret(self.name, self.namespace,
                                               self._body(data, labels, annotations, resource_version))
        except ApiException as error:
            if error.status in (404, 409):
                raise Conflict(f"{self.where} changed since it was read") from None
            raise


class KubernetesWebhookStore:
    def __init__(self, api_client: Any) -> None:
        from kubernetes import client

        self.api: Any = client.AdmissionregistrationV1Api(api_client)
        self.client = api_client

    def read(self, name: str) -> dict[str, Any] | None:
        from kubernetes.client.exceptions import ApiException

        try:
            obj = self.api.read_validating_webhook_configuration(name)
        except ApiException as error:
            if error.status == 404:
                return None
            raise
        result: dict[str, Any] = self.client.sanitize_for_serialization(obj)
        return result

    def patch(self, name: str, ops: list[dict[str, Any]]) -> None:
        from kubernetes.client.exceptions import ApiException

        try:  # a list body is sent as application/json-patch+json
            self.api.patch_validating_webhook_configuration(name, ops)
        except ApiException as error:
            if error.status in (409, 422):  # a failed `test` op: it changed since it was read
                raise Conflict(f"ValidatingWebhookConfiguration {name} changed since it was read") from None
            raise


# --- the loops -------------------------------------------------------------------------------------------------


class WebhookArming:
    """Keeps caBundle (optionally) and failurePolicy of the named webhook configurations as they should be."""

    def __init__(self, webhooks: WebhookStore, names: Sequence[str], ready: Callable[[], bool]) -> None:
        self.webhooks, self.names, self.ready = webhooks, tuple(names), ready
        self._missing_logged: set[str] = set()

    def sync(self, *, ca_bundle: str | None, serving: x509.Certificate | None) -> None:
        for name in self.names:
            for _attempt in range(3):
                configuration = self.webhooks.read(name)
                if configuration is None:
                    if name not in self._missing_logged:
                        log.warning("ValidatingWebhookConfiguration %s not found; will retry", name)
                        self._missing_logged.add(name)
                    break
                self._missing_logged.discard(name)
                ops = webhook_patch(configuration, ca_bundle=ca_bundle, serving=serving, ready=self.ready())
                if not ops:
                    break
                try:
                    self.webhooks.patch(name, ops)
                except Conflict:
                    continue
                log.info("patched ValidatingWebhookConfiguration %s: %s", name,
                         ", ".join(sorted({op["path"].rsplit("/", 1)[-1] for op in ops if op["op"] == "add"})))
                break


class SelfSignedCertificates:
    """The self-signed loop of one replica: Secret -> files for the TLS reloader -> webhook configurations."""

    def __init__(self, settings: SelfSignedSettings, namespace: str, secrets: SecretStore, arming: WebhookArming,
                 out_dir: Path, clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC)) -> None:
        self.settings, self.secrets, self.arming, self.out_dir, self.clock = settings, secrets, arming, out_dir, clock
        self.identity = Identity(settings.service_name, namespace, tuple(settings.hosts))
        self.where = f"Secret {namespace}/{settings.secret_name}"
        self.material: Material | None = None
        self._written: dict[str, bytes] = {}

    def sync(self) -> Material:
        material = self._sync_secret()
        self._write_files(material)
        self.material = material
        bundle = base64.b64encode(material.bundle_pem()).decode("ascii")
        self.arming.sync(ca_bundle=bundle, serving=material.tls_cert)
        return material

    def _sync_secret(self) -> Material:
        for _attempt in range(5):
            stored = self.secrets.read()
            current: Material | None = None
            restored: tuple[str, ...] = ()
            if stored is not None:
                if stored.labels.get(MANAGED_BY[0]) != MANAGED_BY[1]:
                    raise certs.CertError(
                        f"{self.where} exists but is not managed by netpol-guard (no label "
                        f"{MANAGED_BY[0]}={MANAGED_BY[1]}); delete it or set server.selfSigned.secretName")
                try:
                    current = material_from_secret(stored.data, stored.annotations)
                except ValueError as error:
                    problem = f"it is unusable ({error})"
                    log.warning("%s: %s", self.where, problem)
                    restored = (problem,)
            else:
                restored = ("it was deleted",)
            if current is None and self.material is not None:
                # Deleted or broken while we run: put back the CA the API server trusts today, rather than a new
                # one every replica would switch to at once, before any caBundle could trust it.
                current = self.material
                restored = (f"{restored[0]}: restored from this replica's certificates",)
            else:
                restored = ()
            material, reasons = plan(current, self.clock(), self.settings, self.identity)
            reasons = (*restored, *reasons)
            if not reasons and stored is not None:
                return material
            labels = {**(stored.labels if stored else {}), MANAGED_BY[0]: MANAGED_BY[1]}
            annotations = {**(stored.annotations if stored else {}), **material.annotations()}
            try:
                if stored is None:
                    self.secrets.create(material.data(), labels, annotations)
                else:
                    self.secrets.replace(material.data(), labels, annotations, stored.resource_version)
            except Conflict as conflict:
                log.info("%s: another replica got there first; reading theirs", conflict)
                continue
            for reason in reasons:
                log.info("%s: %s", self.where, reason)
            return material
        raise certs.CertError(f"{self.where} kept changing while it was being written; will retry")

    def _write_files(self, material: Material) -> None:
        # ca.crt is the bundle (what a client of this replica should trust); tls.crt is renamed last.
        files = {certs.CA_CERT: material.bundle_pem(), certs.TLS_KEY: material.tls_key,
                 certs.TLS_CERT: certs.cert_pem(material.tls_cert)}
        if files == self._written:
            return
        certs.write_all_atomically(self.out_dir, [
            (certs.CA_CERT, files[certs.CA_CERT], 0o644),
            (certs.TLS_KEY, files[certs.TLS_KEY], 0o600),
            (certs.TLS_CERT, files[certs.TLS_CERT], 0o644),
        ])
        self._written = files


class CertificateManager:
    """What `serve` starts: the directory the TLS reloader reads, and a background loop keeping it current."""

    def __init__(self, cert_dir: str, interval: float, tick: Callable[[], object]) -> None:
        self.cert_dir, self.interval, self._tick = cert_dir, interval, tick
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="certificates", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self._tick()
            except Exception as error:  # the API server may be slow or down: keep serving, try again
                log.warning("certificate sync failed, keeping the current certificate: %s", _short(error))


def _short(error: BaseException) -> str:
    status, reason = getattr(error, "status", None), getattr(error, "reason", None)
    if status is not None:
        return f"HTTP {status} {reason or ''}".strip()
    return str(error) or type(error).__name__


def start_certificates(config: Config, ready: Callable[[], bool],
                       first_sync_timeout: float = 60.0) -> CertificateManager | None:
    """The manager for `server.certificates`, after its first successful sync (None for `files`).

    The first sync is retried until first_sync_timeout, so a replica starting while the API
    server is briefly unreachable does not crash-loop; after that it is a startup error.
    """
    settings = config.server
    if settings.certificates == "files":
        return None
    if settings.state is not None:
        raise certs.CertError(f"server.certificates: {settings.certificates} needs a cluster; "
                              "with --state use files (--cert-dir)")
    from kubernetes import client

    try:
        api_client = client.ApiClient(load_configuration(settings.kubeconfig))
    except KubeConfigError as error:
        raise certs.CertError(str(error)) from None
    names = settings.self_signed.webhook_configurations
    arming = WebhookArming(KubernetesWebhookStore(api_client), names, ready)
    tick: Callable[[], object]
    if settings.certificates == "cert-manager":
        cert_dir = settings.cert_dir

        def arm_only() -> None:
            try:
                serving = x509.load_pem_x509_certificate((Path(cert_dir) / certs.TLS_CERT).read_bytes())
            except (OSError, ValueError) as error:
                log.warning("cannot read the serving certificate to arm the webhooks: %s", error)
                return
            arming.sync(ca_bundle=None, serving=serving)

        tick = arm_only
    else:
        cert_dir = tempfile.mkdtemp(prefix="netpol-guard-tls-")
        manager = SelfSignedCertificates(
            settings.self_signed, config.namespace,
            KubernetesSecretStore(api_client, config.namespace, settings.self_signed.secret_name),
            arming, Path(cert_dir))
        tick = manager.sync
    deadline = time.monotonic() + first_sync_timeout
    while True:
        try:
            tick()
            break
        except certs.CertError:
            raise
        except Exception as error:
            if time.monotonic() >= deadline:
                raise certs.CertError(f"cannot set up {settings.certificates} certificates: {_short(error)}") from None
            log.warning("certificate setup failed, retrying: %s", _short(error))
            with contextlib.suppress(Exception):
                time.sleep(min(2.0, settings.self_signed.sync_seconds))
    return CertificateManager(cert_dir, settings.self_signed.sync_seconds, tick)
