"""Installing netpol-guard's ValidatingAdmissionPolicies into the e2e control plane, with no webhook registered.

`installed_vaps` applies either the shipped kustomize component (rendered by the real kubectl) or
`netpol-guard vap` output for a given config and mode, waits until the API server enforces them
(it loads policies asynchronously), and removes them afterwards so other test modules see none.
"""

from __future__ import annotations

import contextlib
import os
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml
from controlplane import ControlPlane

REPO = Path(__file__).resolve().parents[2]
COMPONENT = REPO / "manifests" / "components" / "vap"
SELECTOR = "app.kubernetes.io/managed-by=netpol-guard"
KINDS = "validatingadmissionpolicybindings.admissionregistration.k8s.io," \
        "validatingadmissionpolicies.admissionregistration.k8s.io"


def render_component(cp: ControlPlane, work_dir: Path) -> list[dict[str, Any]]:
    """The component as a user gets it: a kustomization that lists it under `components`."""
    work_dir.mkdir(parents=True, exist_ok=True)
    (work_dir / "kustomization.yaml").write_text(yaml.safe_dump({
        "apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization",
        "components": [os.path.relpath(COMPONENT, work_dir)],
    }))
    proc = cp.kubectl("kustomize", str(work_dir), check=True)
    return [doc for doc in yaml.safe_load_all(proc.stdout) if doc]


def render_cli(config: dict[str, Any] | None, mode: str | None, work_dir: Path) -> list[dict[str, Any]]:
    work_dir.mkdir(parents=True, exist_ok=True)
    args = [sys.executable, "-m", "webhook", "vap"]
    if config is not None:
        path = work_dir / "vap-config.yaml"
        path.write_text(yaml.safe_dump(config))
        args += ["--config", str(path)]
    if mode is not None:
        args += ["--mode", mode]
    proc = subprocess.run(args, capture_output=True, text=True, check=True, cwd=REPO, timeout=60)
    return [doc for doc in yaml.safe_load_all(proc.stdout) if doc]


def probe_pod(namespace: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "vap-probe", "namespace": namespace},
        "spec": {"hostNetwork": True, "containers": [{"name": "c", "image": "x"}]},
    }


def wait_until_active(cp: ControlPlane, namespace: str, expect: str, timeout: float = 60.0) -> None:
    """Probe with a hostNetwork Pod (server dry-run) until the API server applies the policies."""
    deadline = time.monotonic() + timeout
    probe = yaml.safe_dump(probe_pod(namespace))
    while time.monotonic() < deadline:
        proc = cp.kubectl("create", "--dry-run=server", "-f", "-", input=probe)
        if expect in proc.stderr:
            return
        time.sleep(0.5)
    raise RuntimeError(f"the ValidatingAdmissionPolicies did not take effect ({expect!r} never seen)")


def wait_until_gone(cp: ControlPlane, namespace: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    probe = yaml.safe_dump(probe_pod(namespace))
    while time.monotonic() < deadline:
        proc = cp.kubectl("create", "--dry-run=server", "-f", "-", input=probe)
        if proc.returncode == 0 and "host-network" not in proc.stderr:
            return
        time.sleep(0.5)
    raise RuntimeError("the ValidatingAdmissionPolicies were not removed")


def remove(cp: ControlPlane, namespace: str) -> None:
    cp.kubectl("delete", KINDS, "-l", SELECTOR, "--ignore-not-found", check=True)
    wait_until_gone(cp, namespace)


@contextlib.contextmanager
def installed_vaps(cp: ControlPlane, documents: list[dict[str, Any]], namespace: str) -> Iterator[None]:
    """`documents` applied; active when entered; deleted (and no longer enforced) on exit."""
    cp.kubectl("apply", "-f", "-", input=yaml.safe_dump_all(documents), check=True)
    deny = any(d["kind"].endswith("Binding") and "Deny" in d["spec"]["validationActions"] for d in documents)
    wait_until_active(cp, namespace, "denied request" if deny else "Warning")
    try:
        yield
    finally:
        remove(cp, namespace)


def ensure_namespace(cp: ControlPlane, name: str, labels: dict[str, str] | None = None) -> str:
    namespace: dict[str, Any] = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}
    if labels:
        namespace["metadata"]["labels"] = labels
    cp.kubectl("apply", "-f", "-", input=yaml.safe_dump(namespace), check=True)
    return name


class Api:
    """Direct HTTPS to the API server as admin: fast server-side dry-run creates with their warnings."""

    def __init__(self, cp: ControlPlane) -> None:
        self.server = cp.server
        self.context = ssl.create_default_context(cafile=str(cp.ca.cert))
        self.context.load_cert_chain(str(cp.admin.cert), str(cp.admin.key))

    def create(self, path: str, body: bytes, dry_run: bool = True) -> tuple[int, str, list[str]]:
        """POST; returns (status, body, Warning header values)."""
        url = self.server + path + ("?dryRun=All" if dry_run else "")
        request = urllib.request.Request(url, data=body, method="POST",
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, context=self.context, timeout=60) as response:
                return response.status, response.read().decode(), response.headers.get_all("Warning") or []
        except urllib.error.HTTPError as error:
            return error.code, error.read().decode(), error.headers.get_all("Warning") or []


def resource_path(obj: dict[str, Any]) -> str:
    kind = obj["kind"]
    namespace = obj["metadata"]["namespace"]
    plural = {"NetworkPolicy": "networkpolicies", "Pod": "pods", "Deployment": "deployments",
              "StatefulSet": "statefulsets", "DaemonSet": "daemonsets", "ReplicaSet": "replicasets",
              "ReplicationController": "replicationcontrollers", "Job": "jobs", "CronJob": "cronjobs"}[kind]
    group, _, version = obj["apiVersion"].rpartition("/")
    prefix = f"/apis/{group}/{version}" if group else f"/api/{version}"
    return f"{prefix}/namespaces/{namespace}/{plural}"
