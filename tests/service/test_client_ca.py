"""`serve --client-ca`: a client without a certificate signed by that CA is refused at the TLS handshake."""

from __future__ import annotations

import datetime as dt
import ssl
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tests.service.support import REPO, ServerProcess, deny_all, namespace, pod, review, write_manifests

pytestmark = pytest.mark.service


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def client_pki(directory: Path, label: str) -> tuple[Path, Path, Path]:
    """(ca.crt, client.crt, client.key): a CA and a clientAuth certificate it signed."""
    directory.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (x509.CertificateBuilder().subject_name(_name(f"{label} client CA")).issuer_name(_name(f"{label} client CA"))
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now).not_valid_after(now + dt.timedelta(days=2))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                       data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                       crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder().subject_name(_name("kube-apiserver")).issuer_name(ca.subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now).not_valid_after(now + dt.timedelta(days=2))
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    paths = (directory / "ca.crt", directory / "client.crt", directory / "client.key")
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return paths


def test_only_clients_with_a_certificate_from_the_client_ca_are_answered(
        tmp_path: Path, certs: tuple[Path, Path]) -> None:
    trusted = client_pki(tmp_path / "trusted", "trusted")
    stranger = client_pki(tmp_path / "stranger", "stranger")
    write_manifests(tmp_path / "state" / "cluster.yaml", [namespace("covered"), deny_all("covered")])
    server = ServerProcess(tmp_path, state=tmp_path / "state", cert_dir=certs[0],
                           config={"server": {"clientCA": str(trusted[0])}})

    def context(client: tuple[Path, Path, Path] | None) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=str(certs[1]))
        if client is not None:
            ctx.load_cert_chain(str(client[1]), str(client[2]))
        return ctx

    # ServerProcess.start probes /healthz without a client certificate: start it by hand and wait for the log.
    with open(server.log_path, "wb") as log:
        process = subprocess.Popen(server.args, stdout=log, stderr=subprocess.STDOUT, cwd=REPO)
    try:
        deadline = time.monotonic() + 20
        while '"serving"' not in server.log() and time.monotonic() < deadline:
            assert process.poll() is None, server.log()
            time.sleep(0.05)
        time.sleep(0.3)
        body = review("Pod", pod("covered"))
        with httpx.Client(base_url=server.url, verify=context(trusted)) as client:
            answer = client.post("/validate", json=body)
            assert answer.status_code == 200 and answer.json()["response"]["allowed"] is True
        for who in (None, stranger):
            with httpx.Client(base_url=server.url, verify=context(who)) as client, \
                    pytest.raises(httpx.TransportError):  # the handshake fails: no HTTP answer at all
                client.post("/validate", json=body)
        assert "client_ca" in server.log() and "trusted client CA" in server.log()
    finally:
        process.terminate()
        assert process.wait(10) == 0


def test_a_bad_client_ca_is_a_clear_startup_error(tmp_path: Path, certs: tuple[Path, Path]) -> None:
    not_pem = tmp_path / "ca.txt"
    not_pem.write_text("hello")
    for path, expected in ((str(tmp_path / "missing.crt"), "No such file"), (str(not_pem), "not a PEM")):
        result = subprocess.run([sys.executable, "-m", "webhook", "serve", "--host", "127.0.0.1", "--port", "1",
                                 "--cert-dir", str(certs[0]), "--state", str(tmp_path), "--client-ca", path],
                                capture_output=True, text=True, cwd=REPO, timeout=60)
        assert result.returncode == 2
        assert f"--client-ca {path}: " in result.stderr and expected in result.stderr
        assert "Traceback" not in result.stderr + result.stdout
