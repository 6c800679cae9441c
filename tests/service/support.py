"""Helpers for the service tier and the service benchmark: certificates, state dirs, a real server process.

The server always runs as a separate process (`python -m webhook serve ...`) on a
free loopback port over real TLS, exactly as it runs in a cluster.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml
from cryptography import x509

from webhook.certs import make_certs

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def make_test_certs(directory: Path) -> Path:
    """CA + serving certificate for 127.0.0.1/localhost; returns the CA file. Re-running rotates the serving cert."""
    make_certs(str(directory), service="netpol-guard", namespace="netpol-guard",
               hosts=["127.0.0.1", "localhost"], days=2)
    return directory / "ca.crt"


def client_context(ca: Path) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(ca))


def served_serial(port: int, ca: Path, timeout: float = 5.0) -> int:
    """Serial number of the certificate the server presents on a brand-new connection."""
    context = client_context(ca)
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as raw, \
            context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return int(x509.load_der_x509_certificate(der).serial_number)


def write_manifests(path: Path, objects: Sequence[Mapping[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump_all(list(objects), sort_keys=False), encoding="utf-8")


def namespace(name: str, labels: Mapping[str, str] | None = None, terminating: bool = False) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": name}
    if labels:
        metadata["labels"] = dict(labels)
    if terminating:
        metadata["deletionTimestamp"] = "2024-01-01T00:00:00Z"
    obj: dict[str, Any] = {"apiVersion": "v1", "kind": "Namespace", "metadata": metadata}
    if terminating:
        obj["status"] = {"phase": "Terminating"}
    return obj


def deny_all(ns: str, name: str = "default-deny-all") -> dict[str, Any]:
    return {
        "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
        "metadata": {"name": name, "namespace": ns},
        "spec": {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]},
    }


def allow_policy(ns: str, name: str, app: str, port: int = 8080, cidr: str | None = None) -> dict[str, Any]:
    """A realistic allow policy: ingress from the namespace's frontend pods, egress to DNS (and a CIDR)."""
    egress: list[dict[str, Any]] = [{"ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}]}]
    if cidr is not None:
        egress.append({"to": [{"ipBlock": {"cidr": cidr}}], "ports": [{"protocol": "TCP", "port": 443}]})
    return {
        "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
        "metadata": {"name": name, "namespace": ns, "labels": {"app.kubernetes.io/name": app}},
        "spec": {
            "podSelector": {"matchLabels": {"app": app}},
            "policyTypes": ["Ingress", "Egress"],
            "ingress": [{
                "from": [
                    {"podSelector": {"matchLabels": {"role": "frontend"}}},
                    {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ingress-nginx"}},
                     "podSelector": {"matchLabels": {"app.kubernetes.io/name": "ingress-nginx"}}},
                ],
                "ports": [{"protocol": "TCP", "port": port}],
            }],
            "egress": egress,
        },
    }


def pod(ns: str, name: str = "web-0", labels: Mapping[str, str] | None = None,
        host_network: bool = False) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "containers": [{
            "name": "app", "image": "registry.example.com/shop/web:1.4.2",
            "ports": [{"containerPort": 8080, "name": "http"}],
            "env": [{"name": "LOG_LEVEL", "value": "info"}],
            "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}},
        }],
        "serviceAccountName": "web",
    }
    if host_network:
        spec["hostNetwork"] = True
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": ns, "labels": dict(labels or {"app": "web"})},
        "spec": spec,
    }


def deployment(ns: str, name: str = "web", replicas: int = 3) -> dict[str, Any]:
    template = pod(ns, name)
    del template["metadata"]["name"], template["metadata"]["namespace"]
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": ns, "labels": {"app": name}},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": template["metadata"], "spec": template["spec"]}},
    }


def review(kind: str, obj: Mapping[str, Any] | None, *, operation: str = "CREATE", ns: str | None = None,
           name: str | None = None, old: Mapping[str, Any] | None = None, user: str = "alice",
           groups: Sequence[str] = ("system:authenticated",), dry_run: bool = False,
           uid: str | None = None) -> dict[str, Any]:
    """An AdmissionReview admission.k8s.io/v1 request as the API server sends it."""
    source = obj if obj is not None else old
    metadata = (source or {}).get("metadata", {})
    group, _, version = {"Pod": "/v1", "Namespace": "/v1", "ConfigMap": "/v1", "Deployment": "apps/v1",
                         "NetworkPolicy": "networking.k8s.io/v1"}.get(kind, "example.com/v1").rpartition("/")
    resource = kind.lower()[:-1] + "ies" if kind.endswith("y") else kind.lower() + "s"
    request: dict[str, Any] = {
        "uid": uid or str(uuid.uuid4()),
        "kind": {"group": group, "version": version, "kind": kind},
        "resource": {"group": group, "version": version, "resource": resource},
        "requestKind": {"group": group, "version": version, "kind": kind},
        "name": name if name is not None else metadata.get("name", ""),
        "operation": operation,
        "userInfo": {"username": user, "uid": "0f1e", "groups": list(groups)},
        "object": obj,
        "oldObject": old,
        "dryRun": dry_run,
        "options": {"apiVersion": "meta.k8s.io/v1", "kind": f"{operation.title()}Options"},
    }
    if kind != "Namespace":
        request["namespace"] = ns if ns is not None else metadata.get("namespace", "default")
    return {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": request}


class ServerProcess:
    """`python -m webhook serve` on a free loopback port; stdout/stderr to a log file."""

    def __init__(self, workdir: Path, *, state: Path | None, cert_dir: Path, config: Mapping[str, Any] | None = None,
                 extra_args: Sequence[str] = (), port: int | None = None) -> None:
        self.workdir = workdir
        self.port = port or free_port()
        self.cert_dir = cert_dir
        self.log_path = workdir / f"server-{self.port}.log"
        args = [sys.executable, "-m", "webhook", "serve", "--host", "127.0.0.1", "--port", str(self.port),
                "--cert-dir", str(cert_dir)]
        if state is not None:
            args += ["--state", str(state)]
        if config is not None:
            config_path = workdir / f"config-{self.port}.yaml"
            config_path.write_text(yaml.safe_dump(dict(config)), encoding="utf-8")
            args += ["--config", str(config_path)]
        self.args = [*args, *extra_args]
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def start(self, ca: Path, timeout: float = 60.0) -> ServerProcess:
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(self.args, stdout=log, stderr=subprocess.STDOUT, cwd=REPO, env=env)
        deadline = time.monotonic() + timeout
        context = client_context(ca)
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited with {self.process.returncode}:\n{self.log()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as raw, \
                        context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
                    tls.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                    if tls.recv(64).startswith(b"HTTP/1.1 200"):
                        return self
            except OSError:
                pass
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"server not healthy within {timeout}s:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace") if self.log_path.exists() else ""

    def log_events(self) -> list[dict[str, Any]]:
        events = []
        for line in self.log().splitlines():
            try:
                events.append(json.loads(line))
            except ValueError:
                events.append({"unparsed": line})
        return events

    def stop(self, timeout: float = 10.0) -> int | None:
        if self.process is None or self.process.poll() is not None:
            return None if self.process is None else self.process.returncode
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait(timeout)
