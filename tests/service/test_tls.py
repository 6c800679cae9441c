"""TLS: protocol floor and certificate rotation without a restart, against the real server process."""

from __future__ import annotations

import socket
import ssl
import threading
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from tests.service.support import (
    ServerProcess,
    client_context,
    deny_all,
    make_test_certs,
    namespace,
    pod,
    review,
    served_serial,
    write_manifests,
)

pytestmark = pytest.mark.service


@pytest.fixture(scope="module")
def rotating(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerProcess, Path]]:
    """A server with its own certificate directory, re-read every 0.5 s."""
    workdir = tmp_path_factory.mktemp("tls")
    cert_dir = workdir / "certs"
    ca = make_test_certs(cert_dir)
    write_manifests(workdir / "state" / "cluster.yaml", [namespace("covered"), deny_all("covered")])
    server = ServerProcess(workdir, state=workdir / "state", cert_dir=cert_dir,
                           config={"server": {"certReloadSeconds": 0.5}})
    server.start(ca)
    yield server, ca
    server.stop()


def handshake(port: int, ca: Path, maximum: ssl.TLSVersion) -> str:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.load_verify_locations(str(ca))
    with warnings.catch_warnings():  # TLSv1/TLSv1_1 are deprecated: that is the point of the test
        warnings.simplefilter("ignore", DeprecationWarning)
        context.minimum_version = ssl.TLSVersion.TLSv1
        context.maximum_version = maximum
    # Let this client offer old protocols at all, so a failure is the server's refusal.
    context.set_ciphers("DEFAULT:@SECLEVEL=0")
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw, \
            context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
        return str(tls.version())


def test_tls_1_2_and_1_3_accepted(rotating: tuple[ServerProcess, Path]) -> None:
    server, ca = rotating
    assert handshake(server.port, ca, ssl.TLSVersion.TLSv1_2) == "TLSv1.2"
    assert handshake(server.port, ca, ssl.TLSVersion.TLSv1_3) == "TLSv1.3"


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_1, ssl.TLSVersion.TLSv1], ids=["tls1.1", "tls1.0"])
def test_tls_below_1_2_refused(rotating: tuple[ServerProcess, Path], version: ssl.TLSVersion) -> None:
    server, ca = rotating
    with pytest.raises(ssl.SSLError) as refused:
        handshake(server.port, ca, version)
    # Refused by the server (an alert or a closed connection after our ClientHello), not by this client
    # declining to offer the old version (NO_PROTOCOLS_AVAILABLE / UNSUPPORTED_PROTOCOL before sending).
    message = str(refused.value).upper()
    assert "NO_PROTOCOLS_AVAILABLE" not in message and "UNSUPPORTED_PROTOCOL" not in message
    assert isinstance(refused.value, ssl.SSLEOFError) or "VERSION" in message
    assert handshake(server.port, ca, ssl.TLSVersion.TLSv1_2) == "TLSv1.2"  # and nothing broke


def test_certificate_rotation_under_load(rotating: tuple[ServerProcess, Path]) -> None:
    server, ca = rotating
    cert_dir = server.cert_dir
    before = served_serial(server.port, ca)
    failures: list[str] = []
    done = threading.Event()
    count = [0]

    def traffic() -> None:
        # Mix a long-lived keep-alive connection with fresh connections (new handshakes) every few requests.
        context = client_context(ca)
        body = review("Pod", pod("covered"))
        keep = httpx.Client(base_url=server.url, verify=context, timeout=5)
        try:
            while not done.is_set():
                for http in (keep, None):
                    try:
                        if http is None:
                            with httpx.Client(base_url=server.url, verify=client_context(ca), timeout=5) as fresh:
                                answer = fresh.post("/validate", json=body)
                        else:
                            answer = http.post("/validate", json=body)
                        if answer.status_code != 200 or answer.json()["response"]["allowed"] is not True:
                            failures.append(f"{answer.status_code} {answer.text[:200]}")
                    except Exception as error:
                        failures.append(repr(error))
                    count[0] += 1
        finally:
            keep.close()

    thread = threading.Thread(target=traffic)
    thread.start()
    try:
        time.sleep(0.5)
        # First a half-done rotation: a new key next to the old certificate. It must be ignored.
        key = ec.generate_private_key(ec.SECP256R1())
        (cert_dir / "tls.key").write_bytes(key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
        time.sleep(1.5)
        assert served_serial(server.port, ca) == before
        # Then the real rotation (same CA, new serving certificate and key).
        make_test_certs(cert_dir)
        deadline = time.monotonic() + 5
        after = before
        while time.monotonic() < deadline and after == before:
            time.sleep(0.2)
            after = served_serial(server.port, ca)
        assert after != before, "new connections still get the old certificate"
        time.sleep(0.5)
    finally:
        done.set()
        thread.join(10)
    assert failures == []
    assert count[0] > 20
    log = server.log()
    assert "does not load yet" in log
    assert "reloaded the serving certificate" in log
