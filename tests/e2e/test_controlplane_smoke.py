"""Smoke tests for the local control plane used by the e2e suite.

They need the binaries built beforehand by ``python tests/e2e/build_binaries.py``
(``make binaries``; ~7 min cold on 2 cores, instant once cached) and take ~10 s
to start the control plane.
"""

from __future__ import annotations

import json
import pathlib
import sys
import time
from collections.abc import Callable

import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from controlplane import ControlPlane

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def cp(cluster: ControlPlane) -> ControlPlane:
    """The session's control plane (tests/e2e/conftest.py); these tests run before any webhook is registered."""
    return cluster


def wait_for(cond: Callable[[], bool], timeout: float = 60.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.5)


def test_kubectl_lists_system_namespaces(cp: ControlPlane) -> None:
    out = cp.kubectl("get", "ns", "-o", "name", check=True).stdout.split()
    assert {"namespace/default", "namespace/kube-system"} <= set(out)
    assert f"control plane is running at {cp.server}" in cp.kubectl("cluster-info", check=True).stdout


def test_rbac_denies_default_service_account(cp: ControlPlane) -> None:
    res = cp.kubectl("auth", "can-i", "list", "pods", "--as=system:serviceaccount:default:default")
    assert res.stdout.strip() == "no"  # exit code 1 means "no", not an error
    assert cp.kubectl("auth", "can-i", "list", "pods", check=True).stdout.strip() == "yes"


def test_deployment_replicaset_creates_pods(cp: ControlPlane) -> None:
    ns = "smoke-deploy"
    cp.kubectl("create", "namespace", ns, check=True)
    cp.kubectl(
        "create", "deployment", "web", "--image=registry.invalid/web:1", "--replicas=2", "-n", ns,
        check=True,
    )  # fmt: skip

    def pods() -> list[dict[str, object]]:
        out = cp.kubectl("get", "pods", "-n", ns, "-l", "app=web", "-o", "json", check=True)
        return list(json.loads(out.stdout)["items"])

    # No kubelet/scheduler: pods stay Pending, but the ReplicaSet controller
    # must have created them (and the ServiceAccount admission let them in).
    wait_for(lambda: len(pods()) == 2, what="2 pods from the web Deployment")
    assert cp.kubectl("get", "rs", "-n", ns, "-o", "name", check=True).stdout.strip()


def test_namespace_deletion_completes(cp: ControlPlane) -> None:
    ns = "smoke-delete"
    cp.kubectl("create", "namespace", ns, check=True)
    cp.kubectl("create", "configmap", "cfg", "--from-literal=a=b", "-n", ns, check=True)
    # --wait makes kubectl block until the namespace controller has removed all
    # content and the finalizer; without kube-controller-manager it would hang.
    cp.kubectl("delete", "namespace", ns, "--wait=true", "--timeout=90s", check=True)
    res = cp.kubectl("get", "namespace", ns)
    assert res.returncode != 0 and "NotFound" in res.stderr
