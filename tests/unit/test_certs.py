"""webhook.certs: the CA and serving certificate, CA reuse, atomic files, the caBundle in a manifest."""

from __future__ import annotations

import base64
import datetime as dt
import ipaddress
import ssl
import stat
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from webhook.certs import CertError, CertResult, load_ca_bundle, make_certs

SERVICE_NAMES = [
    "netpol-guard",
    "netpol-guard.netpol-guard",
    "netpol-guard.netpol-guard.svc",
    "netpol-guard.netpol-guard.svc.cluster.local",
]


def _cert(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def _sans(cert: x509.Certificate) -> x509.SubjectAlternativeName:
    return cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value


def _make(out: Path, hosts: list[str] | None = None, *, days: int = 365,
          webhook_manifest: str | None = None) -> CertResult:
    return make_certs(str(out), service="netpol-guard", namespace="netpol-guard", hosts=hosts or [], days=days,
                      webhook_manifest=webhook_manifest)


@pytest.fixture
def certs(tmp_path: Path) -> Path:
    out = tmp_path / "certs"
    _make(out, ["127.0.0.1", "webhook.example.com", "::1"])
    return out


def test_writes_the_four_files_into_a_new_directory(certs: Path) -> None:
    assert sorted(p.name for p in certs.iterdir()) == ["ca.crt", "ca.key", "tls.crt", "tls.key"]


def test_sans_are_exactly_the_service_names_and_the_hosts(certs: Path) -> None:
    sans = _sans(_cert(certs / "tls.crt"))
    assert sans.get_values_for_type(x509.DNSName) == [*SERVICE_NAMES, "webhook.example.com"]
    assert sans.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("127.0.0.1"),
                                                        ipaddress.ip_address("::1")]


def test_ip_host_is_an_ip_san_not_a_dns_name(certs: Path) -> None:
    sans = _sans(_cert(certs / "tls.crt"))
    assert ipaddress.IPv4Address("127.0.0.1") in sans.get_values_for_type(x509.IPAddress)
    assert "127.0.0.1" not in sans.get_values_for_type(x509.DNSName)


def test_no_hosts_gives_only_the_service_names(tmp_path: Path) -> None:
    make_certs(str(tmp_path), service="guard", namespace="sec", hosts=[])
    sans = _sans(_cert(tmp_path / "tls.crt"))
    assert sans.get_values_for_type(x509.DNSName) == ["guard", "guard.sec", "guard.sec.svc",
                                                      "guard.sec.svc.cluster.local"]
    assert sans.get_values_for_type(x509.IPAddress) == []


def test_serving_certificate_fields(certs: Path) -> None:
    cert = _cert(certs / "tls.crt")
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "netpol-guard.netpol-guard.svc"
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.SERVER_AUTH]
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False
    assert cert.extensions.get_extension_for_class(x509.KeyUsage).value.digital_signature


def test_ca_is_a_ca(certs: Path) -> None:
    ca = _cert(certs / "ca.crt")
    constraints = ca.extensions.get_extension_for_class(x509.BasicConstraints)
    assert constraints.value.ca is True and constraints.critical
    usage = ca.extensions.get_extension_for_class(x509.KeyUsage)
    assert usage.value.key_cert_sign and usage.critical
    ca.verify_directly_issued_by(ca)  # self-signed


def test_chain_verifies(certs: Path) -> None:
    ca, leaf = _cert(certs / "ca.crt"), _cert(certs / "tls.crt")
    leaf.verify_directly_issued_by(ca)
    assert ca.not_valid_after_utc >= leaf.not_valid_after_utc


def test_chain_fails_against_another_ca(certs: Path, tmp_path: Path) -> None:
    other = tmp_path / "other"
    _make(other)
    with pytest.raises(Exception):  # noqa: B017 - InvalidSignature or ValueError, depending on the keys
        _cert(certs / "tls.crt").verify_directly_issued_by(_cert(other / "ca.crt"))


def test_keys_match_certificates_and_python_ssl_accepts_the_pair(certs: Path) -> None:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(certs / "tls.crt", certs / "tls.key")  # raises on a mismatched pair
    ca_key = serialization.load_pem_private_key((certs / "ca.key").read_bytes(), password=None)
    assert ca_key.public_key() == _cert(certs / "ca.crt").public_key()


def test_tls_handshake_with_the_ca_bundle_and_the_service_name(certs: Path) -> None:
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(certs / "tls.crt", certs / "tls.key")
    client_ctx = ssl.create_default_context(cadata=base64.b64decode(load_ca_bundle(str(certs))).decode())
    c_in, c_out, s_in, s_out = ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO()
    client = client_ctx.wrap_bio(c_in, c_out, server_hostname="netpol-guard.netpol-guard.svc")
    server = server_ctx.wrap_bio(s_in, s_out, server_side=True)
    done = {"client": False, "server": False}
    for _ in range(10):
        for name, side, out_bio, peer_in in (("client", client, c_out, s_in), ("server", server, s_out, c_in)):
            if not done[name]:
                try:
                    side.do_handshake()
                    done[name] = True
                except ssl.SSLWantReadError:
                    pass
            peer_in.write(out_bio.read())
        if all(done.values()):
            break
    assert all(done.values())


def test_key_permissions(certs: Path) -> None:
    assert stat.S_IMODE((certs / "tls.key").stat().st_mode) == 0o600
    assert stat.S_IMODE((certs / "ca.key").stat().st_mode) == 0o600
    assert stat.S_IMODE((certs / "tls.crt").stat().st_mode) == 0o644
    assert stat.S_IMODE((certs / "ca.crt").stat().st_mode) == 0o644


def test_no_temporary_files_are_left(certs: Path) -> None:
    _make(certs)
    assert not [p.name for p in certs.iterdir() if p.name.startswith(".")]


def test_rerun_reuses_the_ca_and_rotates_the_serving_certificate(certs: Path) -> None:
    ca_before = (certs / "ca.crt").read_bytes()
    ca_key_before = (certs / "ca.key").read_bytes()
    bundle_before = load_ca_bundle(str(certs))
    leaf_before = _cert(certs / "tls.crt")
    key_before = (certs / "tls.key").read_bytes()

    result = _make(certs, ["10.0.0.5"])

    assert (certs / "ca.crt").read_bytes() == ca_before
    assert (certs / "ca.key").read_bytes() == ca_key_before
    assert load_ca_bundle(str(certs)) == bundle_before == result.ca_bundle
    assert result.ca_reused
    leaf = _cert(certs / "tls.crt")
    assert leaf.serial_number != leaf_before.serial_number
    assert (certs / "tls.key").read_bytes() != key_before
    leaf.verify_directly_issued_by(_cert(certs / "ca.crt"))
    assert _sans(leaf).get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("10.0.0.5")]


def _write_ca(out: Path, *, not_after: dt.datetime, ca: bool = True) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "old CA")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(min(now, not_after) - dt.timedelta(days=30)).not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(True, False, False, False, False, ca, ca, False, False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    out.mkdir(parents=True, exist_ok=True)
    (out / "ca.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (out / "ca.key").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                   serialization.NoEncryption()))


def test_an_existing_external_ca_is_reused(tmp_path: Path) -> None:
    _write_ca(tmp_path, not_after=dt.datetime.now(dt.UTC) + dt.timedelta(days=1000))
    before = (tmp_path / "ca.crt").read_bytes()
    result = _make(tmp_path)
    assert result.ca_reused
    assert (tmp_path / "ca.crt").read_bytes() == before
    _cert(tmp_path / "tls.crt").verify_directly_issued_by(_cert(tmp_path / "ca.crt"))


def test_an_rsa_ca_without_key_identifiers_is_reused(tmp_path: Path) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "corporate CA")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=1000))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    (tmp_path / "ca.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "ca.key").write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                                        serialization.PrivateFormat.TraditionalOpenSSL,
                                                        serialization.NoEncryption()))
    assert _make(tmp_path).ca_reused
    _cert(tmp_path / "tls.crt").verify_directly_issued_by(cert)


def test_an_expired_ca_is_replaced_and_the_summary_says_so(tmp_path: Path) -> None:
    _write_ca(tmp_path, not_after=dt.datetime.now(dt.UTC) - dt.timedelta(days=1))
    before = (tmp_path / "ca.crt").read_bytes()
    result = _make(tmp_path)
    assert not result.ca_reused
    assert (tmp_path / "ca.crt").read_bytes() != before
    assert "expired" in result.summary() and "update the caBundle" in result.summary()
    _cert(tmp_path / "tls.crt").verify_directly_issued_by(_cert(tmp_path / "ca.crt"))


def test_a_ca_expiring_before_the_new_certificate_is_replaced(tmp_path: Path) -> None:
    _write_ca(tmp_path, not_after=dt.datetime.now(dt.UTC) + dt.timedelta(days=10))
    result = _make(tmp_path, days=30)
    assert not result.ca_reused
    _cert(tmp_path / "tls.crt").verify_directly_issued_by(_cert(tmp_path / "ca.crt"))


def test_days_sets_the_serving_validity(tmp_path: Path) -> None:
    _make(tmp_path, days=30)
    leaf = _cert(tmp_path / "tls.crt")
    expected = dt.datetime.now(dt.UTC) + dt.timedelta(days=30)
    assert abs(leaf.not_valid_after_utc - expected) < dt.timedelta(minutes=1)
    assert leaf.not_valid_before_utc <= dt.datetime.now(dt.UTC)


def test_summary_lists_files_sans_expiry_and_ca_bundle(certs: Path) -> None:
    result = _make(certs, ["127.0.0.1"])
    text = result.summary()
    for name in ("ca.crt", "ca.key", "tls.crt", "tls.key"):
        assert str(certs / name) in text
    assert "DNS:netpol-guard.netpol-guard.svc.cluster.local" in text and "IP:127.0.0.1" in text
    assert "expires" in text
    assert f"caBundle: {load_ca_bundle(str(certs))}" in text.splitlines()
    assert "create secret tls netpol-guard-tls" in text


def test_load_ca_bundle_is_base64_of_ca_crt(certs: Path) -> None:
    assert base64.b64decode(load_ca_bundle(str(certs))) == (certs / "ca.crt").read_bytes()


def test_load_ca_bundle_without_certificates(tmp_path: Path) -> None:
    with pytest.raises(CertError, match=r"ca\.crt"):
        load_ca_bundle(str(tmp_path))


WEBHOOK_MANIFEST = """\
# leading comment
apiVersion: v1
kind: Namespace
metadata:
  name: netpol-guard
---
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingWebhookConfiguration
metadata:
  name: netpol-guard
webhooks:
- name: validate.netpol-guard.io
  admissionReviewVersions: [v1]
  sideEffects: None
  clientConfig:
    service: {namespace: netpol-guard, name: netpol-guard, path: /validate, port: 443}
    caBundle: ""
- name: namespaces.netpol-guard.io
  admissionReviewVersions: [v1]
  sideEffects: None
  clientConfig:
    service: {namespace: netpol-guard, name: netpol-guard, path: /validate, port: 443}
---
apiVersion: v1
kind: Service
metadata:
  name: netpol-guard
"""


def test_ca_bundle_is_written_into_every_webhook_of_the_manifest(tmp_path: Path) -> None:
    manifest = tmp_path / "webhook.yaml"
    manifest.write_text(WEBHOOK_MANIFEST)
    result = _make(tmp_path / "certs", webhook_manifest=str(manifest))
    documents = list(yaml.safe_load_all(manifest.read_text()))
    assert [d["kind"] for d in documents] == ["Namespace", "ValidatingWebhookConfiguration", "Service"]
    bundle = load_ca_bundle(str(tmp_path / "certs"))
    webhooks = documents[1]["webhooks"]
    assert [w["clientConfig"]["caBundle"] for w in webhooks] == [bundle, bundle]
    assert webhooks[0]["clientConfig"]["service"]["path"] == "/validate"
    assert result.webhooks_updated == ("validate.netpol-guard.io", "namespaces.netpol-guard.io")
    assert str(manifest) in result.summary()


def test_ca_bundle_in_a_list_and_a_webhook_without_client_config(tmp_path: Path) -> None:
    manifest = tmp_path / "webhook.yaml"
    manifest.write_text(yaml.safe_dump({"apiVersion": "v1", "kind": "List", "items": [
        {"apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingWebhookConfiguration",
         "metadata": {"name": "x"}, "webhooks": [{"name": "validate.netpol-guard.io"}]}]}))
    _make(tmp_path / "certs", webhook_manifest=str(manifest))
    doc = yaml.safe_load(manifest.read_text())
    assert doc["items"][0]["webhooks"][0]["clientConfig"]["caBundle"] == load_ca_bundle(str(tmp_path / "certs"))


def test_manifest_without_a_validating_webhook_configuration(tmp_path: Path) -> None:
    manifest = tmp_path / "deploy.yaml"
    manifest.write_text("apiVersion: v1\nkind: Service\nmetadata: {name: x}\n")
    with pytest.raises(CertError, match="no ValidatingWebhookConfiguration"):
        _make(tmp_path / "certs", webhook_manifest=str(manifest))
    assert not (tmp_path / "certs").exists()  # checked before anything is written
    assert manifest.read_text() == "apiVersion: v1\nkind: Service\nmetadata: {name: x}\n"


@pytest.mark.parametrize("content, message", [
    ("a: [unclosed\n", "not valid YAML"),
    ("kind: ValidatingWebhookConfiguration\nwebhooks: []\n", "no webhooks"),
    ("kind: ValidatingWebhookConfiguration\nwebhooks: [3]\n", "not a mapping"),
])
def test_bad_manifests(tmp_path: Path, content: str, message: str) -> None:
    manifest = tmp_path / "webhook.yaml"
    manifest.write_text(content)
    with pytest.raises(CertError, match=message):
        _make(tmp_path / "certs", webhook_manifest=str(manifest))


def test_missing_manifest(tmp_path: Path) -> None:
    with pytest.raises(CertError, match="cannot read the webhook manifest"):
        _make(tmp_path / "certs", webhook_manifest=str(tmp_path / "nope.yaml"))


@pytest.mark.parametrize("host", ["bad host", "-leading.example", "under_score.example", "a..b", "1.2.3",
                                  "256.1.1.1", "x" * 64 + ".example", ""])
def test_invalid_host(tmp_path: Path, host: str) -> None:
    with pytest.raises(CertError, match="invalid --host"):
        _make(tmp_path, [host])
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("kwargs, message", [
    ({"service": "Bad_Name"}, "invalid service name"),
    ({"namespace": "a.b"}, "invalid namespace"),
    ({"days": 0}, "--days"),
])
def test_invalid_names_and_days(tmp_path: Path, kwargs: dict[str, object], message: str) -> None:
    args: dict[str, object] = {"service": "netpol-guard", "namespace": "netpol-guard", "hosts": []}
    args.update(kwargs)
    with pytest.raises(CertError, match=message):
        make_certs(str(tmp_path), **args)  # type: ignore[arg-type]


def test_wildcard_host_is_allowed(tmp_path: Path) -> None:
    _make(tmp_path, ["*.example.com"])
    assert "*.example.com" in _sans(_cert(tmp_path / "tls.crt")).get_values_for_type(x509.DNSName)


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs Linux /proc")
def test_directory_nobody_can_write(tmp_path: Path) -> None:
    # /proc/self is a directory in which not even root can create files.
    with pytest.raises(CertError, match="cannot write certificates to /proc/self"):
        _make(Path("/proc/self"))


def test_out_dir_is_a_file(tmp_path: Path) -> None:
    target = tmp_path / "file"
    target.write_text("x")
    with pytest.raises(CertError):
        _make(target)
    with pytest.raises(CertError, match="cannot create the certificate directory"):
        _make(target / "sub")


@pytest.mark.parametrize("files, message", [
    ({"ca.crt": b"not a certificate"}, "ca.key does not"),
    ({"ca.key": b"not a key"}, "ca.crt does not"),
    ({"ca.crt": b"junk", "ca.key": b"junk"}, "cannot use the existing CA certificate"),
])
def test_broken_existing_ca_is_an_error_not_overwritten(tmp_path: Path, files: dict[str, bytes], message: str) -> None:
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    with pytest.raises(CertError, match=message):
        _make(tmp_path)
    for name, data in files.items():
        assert (tmp_path / name).read_bytes() == data


def test_mismatched_ca_pair_is_an_error(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    _make(a)
    _make(b)
    (a / "ca.key").write_bytes((b / "ca.key").read_bytes())
    with pytest.raises(CertError, match="is not the key of"):
        _make(a)


def test_non_ca_certificate_is_an_error(tmp_path: Path) -> None:
    _write_ca(tmp_path, not_after=dt.datetime.now(dt.UTC) + dt.timedelta(days=1000), ca=False)
    with pytest.raises(CertError, match="not a CA certificate"):
        _make(tmp_path)


def test_cli_certs_command(tmp_path: Path) -> None:
    from webhook.cli import main

    out = tmp_path / "certs"
    result = CliRunner().invoke(main, ["certs", "--out-dir", str(out), "--host", "127.0.0.1"])
    assert result.exit_code == 0, result.output
    assert "caBundle: " in result.output
    bad = CliRunner().invoke(main, ["certs", "--out-dir", str(out), "--host", "no spaces"])
    assert bad.exit_code == 2
    assert "invalid --host" in bad.output
