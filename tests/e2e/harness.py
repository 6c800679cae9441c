"""netpol-guard installed into a real local control plane, for the e2e tests and the demo.

`install_base` applies everything from `manifests/overlays/<overlay>` except the
ValidatingWebhookConfiguration (so the namespace, RBAC and ServiceAccount are the
real ones); `Webhook` runs `netpol-guard serve` as a separate process with a
kubeconfig for that ServiceAccount (so it works with exactly the shipped RBAC);
`register` applies the shipped ValidatingWebhookConfiguration with
`clientConfig.url` pointing at the process and the caBundle from `netpol-guard certs`.
"""

from __future__ import annotations

import base64
import contextlib
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from controlplane import ControlPlane

REPO = Path(__file__).resolve().parents[2]
SERVICE_ACCOUNT = "system:serviceaccount:netpol-guard:netpol-guard"
# Namespaces labelled AUDIT_LABEL=audit run in audit mode (modeOverrides); the label is protected.
AUDIT_LABEL = "netpol-guard.io/mode"
E2E_CONFIG: dict[str, Any] = {
    "modeOverrides": [{"namespaceSelector": {"matchLabels": {AUDIT_LABEL: "audit"}}, "mode": "audit"}],
}


def render(cp: ControlPlane, overlay: str) -> list[dict[str, Any]]:
    """`kubectl kustomize manifests/overlays/<overlay>` as a list of objects."""
    proc = cp.kubectl("kustomize", str(REPO / "manifests" / "overlays" / overlay), check=True)
    return [doc for doc in yaml.safe_load_all(proc.stdout) if doc]


def install_base(cp: ControlPlane, overlay: str = "enforce") -> None:
    objects = [o for o in render(cp, overlay) if o["kind"] != "ValidatingWebhookConfiguration"]
    cp.kubectl("apply", "-f", "-", input=yaml.safe_dump_all(objects), check=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Webhook:
    """`netpol-guard serve` against the control plane, as netpol-guard's ServiceAccount."""

    def __init__(self, cp: ControlPlane, work_dir: Path, config: dict[str, Any] | None = None) -> None:
        self.cp = cp
        self.work_dir = work_dir
        self.cert_dir = work_dir / "certs"
        self.config_path = work_dir / "config.yaml"
        self.kubeconfig = work_dir / "netpol-guard.kubeconfig"
        self.log_path = work_dir / "webhook.log"
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        work_dir.mkdir(parents=True, exist_ok=True)
        self.make_certs()
        self._write_service_account_kubeconfig()
        self.set_config(config or {})

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def make_certs(self) -> None:
        """(Re)issue the serving certificate; the CA in cert_dir is reused, so the caBundle stays."""
        subprocess.run(
            [
                sys.executable,
                "-m",
                "webhook",
                "certs",
                "--out-dir",
                str(self.cert_dir),
                "--host",
                "127.0.0.1",
                "--host",
                "localhost",
            ],
            check=True,
            capture_output=True,
            cwd=REPO,
        )

    def ca_bundle(self) -> str:
        return base64.b64encode((self.cert_dir / "ca.crt").read_bytes()).decode()

    def set_config(self, config: dict[str, Any]) -> None:
        self.config_path.write_text(yaml.safe_dump(config))

    def _write_service_account_kubeconfig(self) -> None:
        token = self.cp.kubectl(
            "create", "token", "netpol-guard", "-n", "netpol-guard", "--duration", "24h", check=True
        ).stdout.strip()
        ca = base64.b64encode(Path(self.cp.ca.cert).read_bytes()).decode()
        self.kubeconfig.write_text(
            yaml.safe_dump(
                {
                    "apiVersion": "v1",
                    "kind": "Config",
                    "current-context": "netpol-guard",
                    "clusters": [
                        {"name": "e2e", "cluster": {"server": self.cp.server, "certificate-authority-data": ca}}
                    ],
                    "users": [{"name": "netpol-guard", "user": {"token": token}}],
                    "contexts": [{"name": "netpol-guard", "context": {"cluster": "e2e", "user": "netpol-guard"}}],
                }
            )
        )

    def start(self, *extra: str, timeout: float = 30.0) -> None:
        assert self.process is None, "already running"
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "webhook",
                "serve",
                "--kubeconfig",
                str(self.kubeconfig),
                "--cert-dir",
                str(self.cert_dir),
                "--config",
                str(self.config_path),
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                *extra,
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=REPO,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"netpol-guard serve exited with {self.process.returncode}:\n{self.log_tail()}")
            if self.get("/readyz")[0] == 200:
                return
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"netpol-guard serve not ready after {timeout}s:\n{self.log_tail()}")

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

    def restart(self, *extra: str) -> None:
        self.stop()
        self.start(*extra)

    def get(self, path: str) -> tuple[int, str]:
        context = ssl.create_default_context(cafile=str(self.cert_dir / "ca.crt"))
        try:
            with urllib.request.urlopen(self.url + path, context=context, timeout=2) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as error:
            return error.code, error.read().decode()
        except (OSError, ssl.SSLError):
            return 0, ""

    def serving_serial(self) -> int:
        """Serial number of the certificate the server presents to a new connection."""
        from cryptography import x509

        context = ssl.create_default_context(cafile=str(self.cert_dir / "ca.crt"))
        with (
            socket.create_connection(("127.0.0.1", self.port), timeout=2) as raw,
            context.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
        ):
            der = tls.getpeercert(binary_form=True)
        assert der is not None
        return x509.load_der_x509_certificate(der).serial_number

    def log_tail(self, lines: int = 40) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        return ""


def register(
    cp: ControlPlane, webhook: Webhook, overlay: str = "enforce", failure_policy: str | None = None
) -> dict[str, Any]:
    """Apply the shipped ValidatingWebhookConfiguration, pointed at the local process."""
    (configuration,) = [o for o in render(cp, overlay) if o["kind"] == "ValidatingWebhookConfiguration"]
    # With files certificates nothing arms the webhooks: set the overlay's armed failurePolicy here.
    armed = configuration["metadata"]["annotations"]["netpol-guard.io/failure-policy"]
    for entry in configuration["webhooks"]:
        entry["clientConfig"] = {"url": f"{webhook.url}/validate", "caBundle": webhook.ca_bundle()}
        entry["failurePolicy"] = failure_policy or armed
    cp.kubectl("apply", "-f", "-", input=yaml.safe_dump(configuration), check=True)
    wait_until_enforced(cp)
    return configuration


def wait_until_enforced(cp: ControlPlane, timeout: float = 30.0) -> None:
    """The API server picks up webhook configurations asynchronously: probe until a refusal shows."""
    probe = yaml.safe_dump(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "probe", "namespace": "default"},
            "spec": {"hostNetwork": True, "containers": [{"name": "c", "image": "x"}]},
        }
    )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        proc = cp.kubectl("create", "--dry-run=server", "-f", "-", input=probe)
        if "netpol-guard" in proc.stderr or "host-network" in proc.stderr:
            return
        time.sleep(0.5)
    raise RuntimeError("the webhook configuration did not take effect")


def unregister(cp: ControlPlane) -> None:
    cp.kubectl("delete", "validatingwebhookconfiguration", "netpol-guard", "--ignore-not-found", check=True)
