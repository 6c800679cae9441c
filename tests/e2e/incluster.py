"""`netpol-guard serve` as if it ran in a pod, against the real local API server.

The local control plane has no kubelet, so a replica is a local process with the
in-cluster environment emulated: KUBERNETES_SERVICE_HOST/PORT point at the API
server, and NETPOL_GUARD_SERVICEACCOUNT_DIR holds what the kubelet would mount
(a ServiceAccount token made by `kubectl create token`, the cluster CA,
the namespace). So `load_incluster_config`, the self-signed Secret flow and the
caBundle patching run exactly as in a pod, as the shipped ServiceAccount, with
the shipped RBAC.

The API server reaches the replicas through `Balancer`, a TCP pass-through on
loopback that spreads connections over them, as a Service would: TLS runs end
to end between the API server and each replica. The shipped overlay is applied
with one test-only patch (`local_overlay`): the webhooks' clientConfig becomes
that balancer's URL instead of the Service.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import yaml
from controlplane import ControlPlane
from cryptography import x509
from harness import REPO, free_port


def local_overlay(cp: ControlPlane, directory: Path, overlay: str, url: str) -> Path:
    """A kustomization that is manifests/overlays/<overlay> with the webhooks pointed at url."""
    directory.mkdir(parents=True, exist_ok=True)
    base = os.path.relpath(REPO / "manifests" / "overlays" / overlay, directory)  # kustomize wants relative
    proc = cp.kubectl("kustomize", str(REPO / "manifests" / "overlays" / overlay), check=True)
    (configuration,) = [doc for doc in yaml.safe_load_all(proc.stdout)
                        if doc and doc["kind"] == "ValidatingWebhookConfiguration"]
    ops = [{"op": "replace", "path": f"/webhooks/{index}/clientConfig", "value": {"url": f"{url}/validate"}}
           for index in range(len(configuration["webhooks"]))]
    (directory / "kustomization.yaml").write_text(yaml.safe_dump({
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": [base],
        "patches": [{"target": {"group": "admissionregistration.k8s.io", "kind": "ValidatingWebhookConfiguration",
                                "name": "netpol-guard"}, "patch": yaml.safe_dump(ops)}],
    }))
    return directory


def shipped_config(cp: ControlPlane, overlay: str) -> dict[str, Any]:
    """The config.yaml of the overlay's ConfigMap, as a pod would read it."""
    proc = cp.kubectl("kustomize", str(REPO / "manifests" / "overlays" / overlay), check=True)
    (config_map,) = [doc for doc in yaml.safe_load_all(proc.stdout)
                     if doc and doc["kind"] == "ConfigMap" and doc["metadata"]["name"] == "netpol-guard-config"]
    config: dict[str, Any] = yaml.safe_load(config_map["data"]["config.yaml"])
    return config


class Balancer:
    """Round-robin TCP pass-through from one loopback port to the *ready* replicas, like a Service.

    As the endpoints controller does, a replica receives connections only while its /readyz
    passes (checked every 0.2 s with the shipped probe's rules); `candidates` are all replicas' ports.
    """

    def __init__(self) -> None:
        self.port = free_port()
        self.candidates: list[int] = []
        self.backends: list[int] = []
        self._next = itertools.count()
        self._listener = socket.create_server(("127.0.0.1", self.port))
        self._listener.settimeout(0.5)
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()
        self._endpoints = threading.Thread(target=self._watch_readiness, daemon=True)
        self._endpoints.start()

    def _watch_readiness(self) -> None:
        """The shipped readinessProbe's rules: 2 s timeout, out after 3 failures in a row, in after 1 success."""
        context = ssl._create_unverified_context()  # readiness only; trust is what the tests check
        failures: dict[int, int] = {}
        while not self._stopped.wait(0.2):
            for port in list(self.candidates):
                ok = False
                with (contextlib.suppress(OSError, urllib.error.URLError),
                      urllib.request.urlopen(f"https://127.0.0.1:{port}/readyz", context=context,
                                             timeout=2) as response):
                    ok = response.status == 200
                failures[port] = 0 if ok else failures.get(port, 3) + 1  # never ready: starts out
            self.backends = [port for port in self.candidates if failures.get(port, 3) < 3]

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def _accept(self) -> None:
        while not self._stopped.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        backends = list(self.backends)
        if not backends:
            client.close()  # no replica yet: the call fails, as with a Service without endpoints
            return
        port = backends[next(self._next) % len(backends)]
        try:
            upstream = socket.create_connection(("127.0.0.1", port), timeout=5)
        except OSError:
            client.close()
            return
        upstream.settimeout(None)
        threading.Thread(target=_pump, args=(upstream, client), daemon=True).start()
        _pump(client, upstream)

    def close(self) -> None:
        self._stopped.set()
        self._listener.close()
        self._thread.join(timeout=2)
        self._endpoints.join(timeout=3)


def _pump(source: socket.socket, target: socket.socket) -> None:
    try:
        while data := source.recv(65536):
            target.sendall(data)
    except OSError:
        pass
    finally:
        for sock in (source, target):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                sock.close()


class Replica:
    """One emulated in-cluster `netpol-guard serve` (self-signed certificates: no --cert-dir)."""

    def __init__(self, cp: ControlPlane, work_dir: Path, config: dict[str, Any]) -> None:
        self.cp, self.work_dir = cp, work_dir
        self.port = free_port()
        self.sa_dir = work_dir / "serviceaccount"
        self.config_path = work_dir / "config.yaml"
        self.log_path = work_dir / "serve.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.sa_dir.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(yaml.safe_dump(config))
        token = cp.kubectl("create", "token", "netpol-guard", "-n", "netpol-guard", "--duration", "2h",
                           check=True).stdout.strip()
        (self.sa_dir / "token").write_text(token)
        (self.sa_dir / "ca.crt").write_bytes(Path(cp.ca.cert).read_bytes())
        (self.sa_dir / "namespace").write_text("netpol-guard")

    def env(self) -> dict[str, str]:
        server = urlparse(self.cp.server)
        env = {key: value for key, value in os.environ.items() if key != "KUBECONFIG"}
        env.update({
            "KUBERNETES_SERVICE_HOST": server.hostname or "127.0.0.1",
            "KUBERNETES_SERVICE_PORT": str(server.port),
            "NETPOL_GUARD_SERVICEACCOUNT_DIR": str(self.sa_dir),
            "HOME": str(self.work_dir),  # no ~/.kube/config to fall back on: in-cluster or nothing
            "PYTHONUNBUFFERED": "1",
        })
        return env

    def start(self) -> None:
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "webhook", "serve", "--config", str(self.config_path),
             "--host", "127.0.0.1", "--port", str(self.port)],
            stdout=log, stderr=subprocess.STDOUT, cwd=REPO, env=self.env())
        log.close()

    def wait_ready(self, timeout: float = 60.0) -> None:
        assert self.process is not None
        deadline = time.monotonic() + timeout
        context = ssl._create_unverified_context()  # only asks "ready?"; trust is checked by the tests
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"serve exited with {self.process.returncode}:\n{self.log_tail()}")
            with (contextlib.suppress(OSError, urllib.error.URLError),
                  urllib.request.urlopen(f"https://127.0.0.1:{self.port}/readyz", context=context,
                                         timeout=2) as response):
                if response.status == 200:
                    return
            time.sleep(0.2)
        raise RuntimeError(f"serve not ready after {timeout}s:\n{self.log_tail()}")

    def served_certificate(self) -> x509.Certificate:
        context = ssl._create_unverified_context()
        with (socket.create_connection(("127.0.0.1", self.port), timeout=3) as raw,
              context.wrap_socket(raw, server_hostname="127.0.0.1") as tls):
            der = tls.getpeercert(binary_form=True)
        assert der is not None
        return x509.load_der_x509_certificate(der)

    def stop(self) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def log_tail(self, lines: int = 40) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        return ""
