"""Self-managed certificates rotating under load: the real server (own process, real uvicorn over TLS).

The certificate loop of webhook.certmanager runs here, with in-memory stand-ins for the Secret
and the webhook configuration (the real API server is in tests/e2e/test_install.py), and very
short lives: serving certificates of 8 s (renewed every ~6 s), a CA of 24 s. It writes into the directory the server
reloads from, exactly as in `serve --self-signed`. Clients trust what the "API server" would:
the caBundle last patched into the webhook configuration. Over a CA rotation and several serving
rotations, every request over a new TLS connection must succeed.
"""

from __future__ import annotations

import base64
import datetime as dt
import socket
import ssl
import threading
import time
import urllib.request
from pathlib import Path

from cryptography import x509

from tests.service.support import ServerProcess, namespace, write_manifests
from tests.unit.test_certmanager import MemorySecrets, MemoryWebhooks, webhook_configuration
from webhook.certmanager import SelfSignedCertificates, WebhookArming
from webhook.core.config import SelfSignedSettings

SETTINGS = SelfSignedSettings.model_validate(
    {"certValidity": 8, "caValidity": 24, "caPropagation": 2, "hosts": ["127.0.0.1"]})


def test_no_request_fails_while_serving_certificate_and_ca_rotate(tmp_path: Path) -> None:
    cert_dir = tmp_path / "tls"
    cert_dir.mkdir()
    secrets, webhooks = MemorySecrets(), MemoryWebhooks(webhook_configuration())
    manager = SelfSignedCertificates(SETTINGS, "netpol-guard", secrets,
                                     WebhookArming(webhooks, ["netpol-guard"], lambda: True), cert_dir)
    manager.sync()
    write_manifests(tmp_path / "state" / "cluster.yaml", [namespace("open")])
    server = ServerProcess(tmp_path, state=tmp_path / "state", cert_dir=cert_dir,
                           config={"server": {"certReloadSeconds": 0.2}}).start(cert_dir / "ca.crt")
    stop = threading.Event()

    def certificate_loop() -> None:
        while not stop.wait(0.2):
            manager.sync()

    results: list[str] = []
    serials: set[int] = set()
    lock = threading.Lock()

    def client() -> None:
        while not stop.is_set():
            bundle = base64.b64decode(webhooks.configuration["webhooks"][0]["clientConfig"]["caBundle"])
            context = ssl.create_default_context(cadata=bundle.decode())
            try:
                with urllib.request.urlopen(f"{server.url}/healthz", context=context, timeout=5) as response:
                    outcome = "ok" if response.status == 200 else f"HTTP {response.status}"
            except Exception as error:  # any failure is what this test exists to catch
                outcome = f"{dt.datetime.now(dt.UTC):%X} {type(error).__name__}: {error}"
            with lock:
                results.append(outcome)

    def served_serial() -> int:
        with (socket.create_connection(("127.0.0.1", server.port), timeout=5) as raw,
              ssl._create_unverified_context().wrap_socket(raw, server_hostname="127.0.0.1") as tls):
            der = tls.getpeercert(binary_form=True)
        assert der is not None
        return x509.load_der_x509_certificate(der).serial_number

    def serves_new_ca() -> bool:
        material = manager.material
        if material is None or material.ca_cert == first_ca:
            return False
        try:
            material.tls_cert.verify_directly_issued_by(material.ca_cert)
        except Exception:
            return False
        return True

    first_ca = manager.material.ca_cert if manager.material else None
    threads = [threading.Thread(target=certificate_loop), *(threading.Thread(target=client) for _ in range(3))]
    try:
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + 40
        while time.monotonic() < deadline:
            serials.add(served_serial())
            if serves_new_ca():
                time.sleep(2)  # and some more load on the new CA
                break
            time.sleep(0.2)
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=10)
        server.stop()
    failures = [outcome for outcome in results if outcome != "ok"]
    print(f"\n{len(results)} requests over new TLS connections, {len(serials)} serving certificates seen, "
          f"{len(failures)} failed")
    assert manager.material is not None and manager.material.ca_cert != first_ca, "the CA never rotated"
    assert failures == []
    assert len(serials) >= 3 and len(results) >= 100
