"""Audit mode, fail-open, startup errors and graceful shutdown of the real server process."""

from __future__ import annotations

import os
import signal
import ssl
import subprocess
import sys
from pathlib import Path

import pytest

from tests.service.conftest import make_client
from tests.service.support import REPO, ServerProcess, deny_all, namespace, pod, review, write_manifests

pytestmark = pytest.mark.service


def state_dir(root: Path) -> Path:
    write_manifests(root / "state" / "cluster.yaml", [namespace("covered"), deny_all("covered"), namespace("open")])
    return root / "state"


def test_audit_mode_allows_with_warnings_and_annotations(
    tmp_path: Path, certs: tuple[Path, Path], tls_context: ssl.SSLContext
) -> None:
    server = ServerProcess(tmp_path, state=state_dir(tmp_path), cert_dir=certs[0], extra_args=["--mode", "audit"])
    server.start(certs[1])
    try:
        with make_client(server.url, tls_context) as client:
            response = client.post("/validate", json=review("Pod", pod("open"), uid="a1")).json()["response"]
            assert response["uid"] == "a1" and response["allowed"] is True
            assert "status" not in response
            assert response["warnings"][0].startswith("[audit mode, not enforced] deny-all-coverage: Pod open/web-0")
            assert any(w.startswith("fix: apply this default-deny first") for w in response["warnings"])
            assert response["auditAnnotations"]["deny-all-coverage"].startswith("warned: deny-all-coverage:")
            policy = deny_all("covered", "everything")
            policy["spec"]["egress"] = [{"to": [{"ipBlock": {"cidr": "0.0.0.0/0"}}]}]
            response = client.post("/validate", json=review("NetworkPolicy", policy)).json()["response"]
            assert response["allowed"] is True
            assert "broad-cidr" in response["auditAnnotations"]
            metrics = client.get("/metrics").text
            assert 'netpol_guard_requests_total{decision="warned",kind="Pod",mode="audit",operation="CREATE"} 1.0' \
                in metrics
            assert 'netpol_guard_violations_total{action="warn",rule="deny-all-coverage"} 1.0' in metrics
    finally:
        assert server.stop() == 0


def test_a_malformed_object_is_bad_input_whatever_the_fail_mode(
    tmp_path: Path, certs: tuple[Path, Path], tls_context: ssl.SSLContext
) -> None:
    # failClosed decides when the cluster state cannot be read; a malformed object is the sender's error (400),
    # and the API server's failurePolicy decides what becomes of the request.
    server = ServerProcess(tmp_path, state=state_dir(tmp_path), cert_dir=certs[0], config={"failClosed": False})
    server.start(certs[1])
    try:
        with make_client(server.url, tls_context) as client:
            policy = deny_all("covered", "broken")
            policy["spec"]["podSelector"] = "everything"
            answer = client.post("/validate", json=review("NetworkPolicy", policy))
            assert answer.status_code == 400
            assert answer.json()["error"].startswith("request.object: NetworkPolicy covered/broken: spec.podSelector")
    finally:
        server.stop()


def run_serve(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "webhook", "serve", "--host", "127.0.0.1", *args],
        capture_output=True, text=True, timeout=30, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)},
    )


def test_missing_certificates_is_a_clear_startup_error(tmp_path: Path) -> None:
    result = run_serve("--port", "1", "--cert-dir", str(tmp_path / "nowhere"), "--state", str(state_dir(tmp_path)))
    assert result.returncode == 2
    assert "tls.crt" in result.stderr and "no such file" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout


def test_bad_state_manifest_names_file_and_document(tmp_path: Path, certs: tuple[Path, Path]) -> None:
    bad = deny_all("covered")
    bad["spec"]["ingress"] = [{"from": [{"ipBlock": {"cidr": "not-a-cidr"}}]}]
    write_manifests(tmp_path / "state" / "bad.yaml", [namespace("covered"), bad])
    result = run_serve("--port", "1", "--cert-dir", str(certs[0]), "--state", str(tmp_path / "state"))
    assert result.returncode == 2
    assert "bad.yaml: document 2" in result.stderr
    assert "not-a-cidr" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout


def test_port_in_use_is_a_clear_startup_error(tmp_path: Path, certs: tuple[Path, Path]) -> None:
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = run_serve("--port", str(port), "--cert-dir", str(certs[0]), "--state", str(state_dir(tmp_path)))
    assert result.returncode == 2
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout


def test_sigterm_shuts_down_gracefully_with_exit_0(tmp_path: Path, certs: tuple[Path, Path]) -> None:
    server = ServerProcess(tmp_path, state=state_dir(tmp_path), cert_dir=certs[0])
    server.start(certs[1])
    assert server.process is not None
    server.process.send_signal(signal.SIGTERM)
    assert server.process.wait(15) == 0
    assert "Traceback" not in server.log()
    assert any(e.get("event") == "stopped" for e in server.log_events())


def test_self_signed_without_a_cluster_is_a_clear_startup_error(tmp_path: Path) -> None:
    result = run_serve("--port", "1", "--self-signed", "--state", str(state_dir(tmp_path)))
    assert result.returncode == 2
    assert "server.certificates: self-signed needs a cluster; with --state use files (--cert-dir)" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout


def test_contradicting_certificate_flags_are_a_usage_error(tmp_path: Path, certs: tuple[Path, Path]) -> None:
    result = run_serve("--port", "1", "--self-signed", "--certificates", "files", "--cert-dir", str(certs[0]))
    assert result.returncode == 2
    assert "--self-signed contradicts --certificates files" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout
