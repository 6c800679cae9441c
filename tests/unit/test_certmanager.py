"""Self-managed certificates: the rotation plan, the Secret race, and arming the webhook configurations."""

from __future__ import annotations

import base64
import datetime as dt
import threading
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509

from webhook import certs
from webhook.certmanager import (
    MANAGED_BY,
    Conflict,
    Identity,
    Material,
    SelfSignedCertificates,
    StoredSecret,
    WebhookArming,
    material_from_secret,
    plan,
    webhook_patch,
)
from webhook.core.config import ConfigError, SelfSignedSettings, config_from_data

T0 = dt.datetime(2030, 1, 1, tzinfo=dt.UTC)
SETTINGS = SelfSignedSettings.model_validate(
    {"certValidity": 30, "caValidity": 90, "caPropagation": 3, "hosts": ["127.0.0.1"]})
IDENTITY = Identity("netpol-guard", "netpol-guard", ("127.0.0.1",))


def at(seconds: float) -> dt.datetime:
    return T0 + dt.timedelta(seconds=seconds)


def chains(cert: x509.Certificate, ca: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(ca)
    except Exception:
        return False
    return True


def fresh() -> Material:
    material, reasons = plan(None, T0, SETTINGS, IDENTITY)
    assert reasons == ("no certificates yet: made a CA and a serving certificate",)
    return material


def test_fresh_material_is_a_ca_and_a_serving_certificate_it_signed() -> None:
    material = fresh()
    assert material.bundle == (material.ca_cert,)
    assert chains(material.tls_cert, material.ca_cert)
    sans = material.tls_cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "netpol-guard.netpol-guard.svc" in sans.get_values_for_type(x509.DNSName)
    assert [str(ip) for ip in sans.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    assert material.tls_cert.not_valid_after_utc == at(30).replace(microsecond=0)
    # Round trip through the Secret's data.
    again = material_from_secret(material.data(), material.annotations())
    assert again.ca_cert == material.ca_cert and again.tls_cert == material.tls_cert
    assert again.ca_published == T0


def test_nothing_changes_before_two_thirds_of_the_serving_life() -> None:
    material = fresh()
    assert plan(material, at(18.9), SETTINGS, IDENTITY) == (material, ())


def test_serving_certificate_renewed_at_two_thirds_with_the_same_ca() -> None:
    material = fresh()
    # cert life runs from T0 - 3 s (skew: a tenth of 30 s) to T0 + 30 s: two-thirds is at T0 + 19 s.
    renewed, reasons = plan(material, at(20), SETTINGS, IDENTITY)
    assert len(reasons) == 1 and reasons[0].startswith("serving certificate renewed (it reached two-thirds")
    assert renewed.ca_cert == material.ca_cert and renewed.bundle == material.bundle
    assert renewed.tls_cert != material.tls_cert and chains(renewed.tls_cert, material.ca_cert)


def test_ca_rotation_keeps_both_cas_trusted_and_switches_serving_only_after_propagation() -> None:
    material = fresh()
    material, _ = plan(material, at(20), SETTINGS, IDENTITY)  # serving renewed: valid T0+17..50 s
    material, _ = plan(material, at(40), SETTINGS, IDENTITY)  # and again: valid T0+37..70 s, due at T0+59 s
    old_ca = material.ca_cert
    # CA life runs from T0 - 9 s to T0 + 90 s: two-thirds is at T0 + 57 s.
    rotated, reasons = plan(material, at(58), SETTINGS, IDENTITY)
    assert any("reached two-thirds of its life" in reason and "added to the bundle" in reason for reason in reasons)
    assert rotated.ca_cert != old_ca and rotated.bundle == (rotated.ca_cert, old_ca)
    assert rotated.ca_published == at(58)
    # The serving certificate (due at T0 + 59 s) still chains to the old CA, which is still trusted:
    # it is not switched to the new CA before the new CA had caPropagation (3 s) in the bundle.
    assert rotated.tls_cert == material.tls_cert
    assert plan(rotated, at(60), SETTINGS, IDENTITY) == (rotated, ())
    switched, reasons = plan(rotated, at(61.5), SETTINGS, IDENTITY)
    assert reasons == (reasons[0],) and reasons[0].startswith("serving certificate renewed")
    assert chains(switched.tls_cert, switched.ca_cert)
    assert switched.bundle == (switched.ca_cert, old_ca)  # the old CA stays until it expires
    pruned, reasons = plan(switched, at(91), SETTINGS, IDENTITY)
    assert pruned.bundle == (switched.ca_cert,)
    assert "dropped 1 expired CA(s) from the bundle" in reasons


def test_serving_certificate_never_outlives_its_ca() -> None:
    settings = SETTINGS.model_copy(update={"ca_validity": dt.timedelta(seconds=35)})
    material, _ = plan(None, T0, settings, IDENTITY)
    renewed, reasons = plan(material, at(20), settings, IDENTITY)
    assert reasons and renewed.ca_cert == material.ca_cert
    assert renewed.tls_cert.not_valid_after_utc == material.ca_cert.not_valid_after_utc  # capped: T0 + 35 s
    # An expired serving certificate is replaced at once, with the newest CA (nothing to wait for).
    expired, reasons = plan(material, at(95), SETTINGS, IDENTITY)
    assert chains(expired.tls_cert, expired.ca_cert)
    assert expired.tls_cert.not_valid_after_utc <= expired.ca_cert.not_valid_after_utc
    assert any("it is not valid now" in reason for reason in reasons)


def test_changed_hosts_reissue_the_serving_certificate() -> None:
    material = fresh()
    other = Identity("netpol-guard", "netpol-guard", ("127.0.0.1", "webhook.example.com"))
    renewed, reasons = plan(material, at(1), SETTINGS, other)
    assert reasons == ("serving certificate renewed (its names differ from the configured Service and hosts)",)
    sans = renewed.tls_cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "webhook.example.com" in sans.get_values_for_type(x509.DNSName)


def test_material_from_a_broken_secret_names_the_problem() -> None:
    data = fresh().data()
    with pytest.raises(ValueError, match=r"missing ca\.key"):
        material_from_secret({k: v for k, v in data.items() if k != "ca.key"}, {})
    other = fresh().data()
    with pytest.raises(ValueError, match=r"tls\.key does not match tls\.crt"):
        material_from_secret({**data, "tls.key": other["tls.key"]}, {})
    with pytest.raises(ValueError, match="unparsable PEM"):
        material_from_secret({**data, "ca-bundle.crt": b"junk"}, {})


def test_durations_and_limits_in_the_config() -> None:
    config = config_from_data({"server": {"certificates": "self-signed",
                                      "selfSigned": {"certValidity": "P30D", "caValidity": "P3650D"}}})
    assert config.server.self_signed.cert_validity == dt.timedelta(days=30)
    with pytest.raises(ConfigError, match="caValidity must be at least certValidity"):
        config_from_data({"server": {"selfSigned": {"certValidity": "P30D", "caValidity": "P1D"}}})
    with pytest.raises(ConfigError, match="caPropagation must be under a ninth of caValidity"):
        config_from_data({"server": {"selfSigned": {"caValidity": 90, "certValidity": 30, "caPropagation": 10}}})
    with pytest.raises(ConfigError, match="certificates"):
        config_from_data({"server": {"certificates": "letsencrypt"}})
    # Renewal starts with a third of the life left, and must reach the server (sync + reload) in time.
    with pytest.raises(ConfigError, match=r"selfSigned.certValidity leaves 10s .* make it at least 120s"):
        config_from_data({"server": {"selfSigned": {"certValidity": 30, "caValidity": 90, "caPropagation": 5}}})
    assert config_from_data({"server": {"certificates": "files",
                                        "selfSigned": {"certValidity": 30, "caValidity": 90, "caPropagation": 5}}})
    short = {"certValidity": 30, "caValidity": 90, "caPropagation": 5, "syncSeconds": 1}
    assert config_from_data({"server": {"certReloadSeconds": 1, "selfSigned": short}})


# --- the loop against in-memory stores (the real API server is in tests/e2e/test_install.py) ---------------


class MemorySecrets:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.secret: StoredSecret | None = None
        self.version = 0
        self.creates = 0

    def read(self) -> StoredSecret | None:
        with self.lock:
            return self.secret

    def create(self, data: dict[str, bytes], labels: dict[str, str], annotations: dict[str, str]) -> None:
        with self.lock:
            if self.secret is not None:
                raise Conflict("exists")
            self.creates += 1
            self._store(data, labels, annotations)

    def replace(self, data: dict[str, bytes], labels: dict[str, str], annotations: dict[str, str],
                resource_version: str) -> None:
        with self.lock:
            if self.secret is None or self.secret.resource_version != resource_version:
                raise Conflict("changed")
            self._store(data, labels, annotations)

    def _store(self, data: dict[str, bytes], labels: dict[str, str], annotations: dict[str, str]) -> None:
        self.version += 1
        self.secret = StoredSecret(dict(data), dict(labels), dict(annotations), str(self.version))


def webhook_configuration(annotation: str | None = "Fail") -> dict[str, Any]:
    annotations = {"netpol-guard.io/failure-policy": annotation} if annotation else {}
    return {
        "metadata": {"name": "netpol-guard", "resourceVersion": "7", "annotations": annotations},
        "webhooks": [
            {"name": "validate.netpol-guard.io", "failurePolicy": "Ignore", "clientConfig": {"url": "https://x"}},
            {"name": "namespaces.netpol-guard.io", "failurePolicy": "Ignore", "clientConfig": {"url": "https://x"}},
        ],
    }


class MemoryWebhooks:
    def __init__(self, configuration: dict[str, Any]) -> None:
        self.configuration = configuration
        self.patches: list[list[dict[str, Any]]] = []

    def read(self, name: str) -> dict[str, Any] | None:
        return self.configuration if name == "netpol-guard" else None

    def patch(self, name: str, ops: list[dict[str, Any]]) -> None:
        self.patches.append(ops)
        for op in ops:
            if op["op"] != "add":
                continue
            _, _, index, *rest = op["path"].split("/")
            target = self.configuration["webhooks"][int(index)]
            for key in rest[:-1]:
                target = target.setdefault(key, {})
            target[rest[-1]] = op["value"]


def manager(secrets: MemorySecrets, webhooks: MemoryWebhooks, out: Path, ready: bool = True,
            clock: Any = lambda: T0) -> SelfSignedCertificates:
    arming = WebhookArming(webhooks, ["netpol-guard", "absent"], lambda: ready)
    return SelfSignedCertificates(SETTINGS, "netpol-guard", secrets, arming, out, clock=clock)


def test_two_replicas_racing_create_exactly_one_ca_and_serve_the_same_pair(tmp_path: Path) -> None:
    secrets, webhooks = MemorySecrets(), MemoryWebhooks(webhook_configuration())
    replicas = [manager(secrets, webhooks, tmp_path / f"r{i}") for i in range(4)]
    for replica in replicas:
        (tmp_path / replica.out_dir.name).mkdir()
    barrier = threading.Barrier(len(replicas))
    results: list[Material] = []

    def run(replica: SelfSignedCertificates) -> None:
        barrier.wait()
        results.append(replica.sync())

    threads = [threading.Thread(target=run, args=(replica,)) for replica in replicas]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert secrets.creates == 1 and secrets.version == 1
    assert len({m.ca_cert.serial_number for m in results}) == 1
    assert len({(tmp_path / f"r{i}" / "tls.crt").read_bytes() for i in range(4)}) == 1
    assert secrets.secret is not None and secrets.secret.labels[MANAGED_BY[0]] == MANAGED_BY[1]


def test_sync_patches_the_ca_bundle_and_arms_only_when_trusted_and_ready(tmp_path: Path) -> None:
    secrets, webhooks = MemorySecrets(), MemoryWebhooks(webhook_configuration())
    not_ready = manager(secrets, webhooks, tmp_path, ready=False)
    material = not_ready.sync()
    bundle = base64.b64encode(material.bundle_pem()).decode()
    assert [w["clientConfig"]["caBundle"] for w in webhooks.configuration["webhooks"]] == [bundle, bundle]
    assert [w["failurePolicy"] for w in webhooks.configuration["webhooks"]] == ["Ignore", "Ignore"]
    assert webhooks.patches[0][0] == {"op": "test", "path": "/metadata/resourceVersion", "value": "7"}
    assert {"op": "test", "path": "/webhooks/1/name", "value": "namespaces.netpol-guard.io"} in webhooks.patches[0]
    assert (tmp_path / "ca.crt").read_bytes() == material.bundle_pem()
    manager(secrets, webhooks, tmp_path, ready=True).sync()
    assert [w["failurePolicy"] for w in webhooks.configuration["webhooks"]] == ["Fail", "Fail"]
    count = len(webhooks.patches)
    manager(secrets, webhooks, tmp_path, ready=True).sync()
    assert len(webhooks.patches) == count  # nothing to change: no patch at all


def test_arming_never_happens_while_the_ca_bundle_does_not_trust_the_serving_certificate() -> None:
    material, other = fresh(), fresh()
    configuration = webhook_configuration()
    foreign = base64.b64encode(other.bundle_pem()).decode()
    for webhook in configuration["webhooks"]:
        webhook["clientConfig"]["caBundle"] = foreign
    assert webhook_patch(configuration, ca_bundle=None, serving=material.tls_cert, ready=True) == []
    for webhook in configuration["webhooks"]:
        webhook["clientConfig"]["caBundle"] = "not base64!"
    assert webhook_patch(configuration, ca_bundle=None, serving=material.tls_cert, ready=True) == []
    # cert-manager mode: the injected bundle trusts what we serve, so arm.
    trusted = base64.b64encode(material.bundle_pem()).decode()
    for webhook in configuration["webhooks"]:
        webhook["clientConfig"]["caBundle"] = trusted
    ops = webhook_patch(configuration, ca_bundle=None, serving=material.tls_cert, ready=True)
    assert [op for op in ops if op["op"] == "add"] == [
        {"op": "add", "path": "/webhooks/0/failurePolicy", "value": "Fail"},
        {"op": "add", "path": "/webhooks/1/failurePolicy", "value": "Fail"},
    ]


def test_a_bad_failure_policy_annotation_is_ignored_not_applied() -> None:
    material = fresh()
    bundle = base64.b64encode(material.bundle_pem()).decode()
    ops = webhook_patch(webhook_configuration("Maybe"), ca_bundle=bundle, serving=material.tls_cert, ready=True)
    assert all(not op["path"].endswith("failurePolicy") for op in ops)
    ops = webhook_patch(webhook_configuration(None), ca_bundle=bundle, serving=material.tls_cert, ready=True)
    assert all(not op["path"].endswith("failurePolicy") for op in ops)


def test_a_secret_not_made_by_netpol_guard_is_never_overwritten(tmp_path: Path) -> None:
    secrets, webhooks = MemorySecrets(), MemoryWebhooks(webhook_configuration())
    secrets.secret = StoredSecret({"tls.crt": b"x", "tls.key": b"y"}, {}, {}, "1")
    with pytest.raises(certs.CertError, match="exists but is not managed by netpol-guard"):
        manager(secrets, webhooks, tmp_path).sync()
    assert secrets.secret.data == {"tls.crt": b"x", "tls.key": b"y"}


def test_an_unusable_managed_secret_is_replaced(tmp_path: Path) -> None:
    secrets, webhooks = MemorySecrets(), MemoryWebhooks(webhook_configuration())
    secrets.secret = StoredSecret({"tls.crt": b"x"}, {MANAGED_BY[0]: MANAGED_BY[1]}, {}, "1")
    material = manager(secrets, webhooks, tmp_path).sync()
    assert secrets.secret is not None and secrets.secret.data["ca.crt"] == certs.cert_pem(material.ca_cert)


def test_rotation_over_time_always_serves_a_certificate_the_published_bundle_trusts(tmp_path: Path) -> None:
    """Walk 200 s in 0.5 s steps (CA life 90 s): what is served always chains to a CA published long enough."""
    secrets, webhooks = MemorySecrets(), MemoryWebhooks(webhook_configuration())
    now = [T0]
    replica = manager(secrets, webhooks, tmp_path, clock=lambda: now[0])
    published_at: dict[int, dt.datetime] = {}
    cas_seen: set[int] = set()
    for step in range(400):
        now[0] = at(step * 0.5)
        material = replica.sync()
        for ca in material.bundle:
            published_at.setdefault(ca.serial_number, now[0])
        served = material.tls_cert
        assert served.not_valid_before_utc <= now[0] < served.not_valid_after_utc
        (issuer,) = [ca for ca in material.bundle if chains(served, ca)]
        cas_seen.add(issuer.serial_number)
        if len(published_at) > 1 and issuer.serial_number != min(published_at, key=published_at.__getitem__):
            assert now[0] - published_at[issuer.serial_number] >= SETTINGS.ca_propagation
    assert len(cas_seen) >= 2  # the CA did rotate, and serving followed


def test_a_secret_deleted_or_broken_while_running_is_restored_with_the_same_ca(tmp_path: Path) -> None:
    secrets, webhooks = MemorySecrets(), MemoryWebhooks(webhook_configuration())
    replica = manager(secrets, webhooks, tmp_path)
    first = replica.sync()
    secrets.secret = None  # kubectl delete secret netpol-guard-ca
    again = replica.sync()
    assert secrets.creates == 2 and again.ca_cert == first.ca_cert and again.tls_cert == first.tls_cert
    assert secrets.secret is not None
    secrets.secret = replace(secrets.secret, data={**secrets.secret.data, "ca.key": b"garbage"})
    third = replica.sync()
    assert third.ca_cert == first.ca_cert
    assert secrets.secret.data["ca.key"] == certs.key_pem(first.ca_key)
    # A replica that never held certificates has nothing to restore: it makes new ones.
    secrets.secret = None
    (tmp_path / "other").mkdir()
    fresh = manager(secrets, webhooks, tmp_path / "other").sync()
    assert fresh.ca_cert != first.ca_cert
