"""End-to-end: the ways around the rules, tried with kubectl against a real API server.

Label changes through the status subresource, creating a namespace with an exempt
name, a Deployment admitted in audit mode once its namespace enforces, and parallel
deletes of every deny-all of a namespace.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import yaml
from controlplane import ControlPlane
from harness import AUDIT_LABEL, E2E_CONFIG, Webhook, register, unregister
from test_scenarios import apply, deny_all, deployment, new_namespace, wait_for

pytestmark = pytest.mark.e2e

EXEMPT_NAME = "e2e-exempt-monitoring"
NAMESPACES_DENIED = 'admission webhook "namespaces.netpol-guard.io" denied the request:'


@pytest.fixture(scope="module")
def webhook(cluster: ControlPlane, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Webhook]:
    """The shared e2e config plus one exempt namespace name."""
    config: dict[str, Any] = {**E2E_CONFIG, "exemptions": {"namespaces": [EXEMPT_NAME]}}
    server = Webhook(cluster, tmp_path_factory.mktemp("webhook-evasions"), config)
    server.start()
    register(cluster, server)
    try:
        yield server
    finally:
        unregister(cluster)
        server.stop()


@pytest.fixture(scope="module")
def alice(cluster: ControlPlane) -> str:
    """RBAC lets alice create namespaces and change their labels, status included: only netpol-guard stops her."""
    rbac = [
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": "e2e-ns-editor"},
         "rules": [{"apiGroups": [""], "resources": ["namespaces", "namespaces/status"],
                    "verbs": ["get", "list", "create", "patch", "update"]}]},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
         "metadata": {"name": "e2e-ns-editor-alice"},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "e2e-ns-editor"},
         "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "alice"}]},
    ]
    cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump_all(rbac), check=True)
    return "--as=alice"


def labels_of(cluster: ControlPlane, ns: str) -> dict[str, str]:
    out = cluster.kubectl("get", "namespace", ns, "-o", "json", check=True).stdout
    labels: dict[str, str] = json.loads(out)["metadata"].get("labels", {})
    return labels


def test_a_protected_label_cannot_be_changed_through_namespace_status(
        cluster: ControlPlane, webhook: Webhook, alice: str) -> None:
    ns = new_namespace(cluster, "e2e-status-labels")
    patch = json.dumps({"metadata": {"labels": {AUDIT_LABEL: "audit"}}})
    refused = cluster.kubectl("patch", "namespace", ns, "--subresource=status", "--type=merge", "-p", patch, alice)
    assert refused.returncode == 1
    assert f"{NAMESPACES_DENIED} protected-labels: Namespace {ns} adds {AUDIT_LABEL}=audit" in refused.stderr
    assert AUDIT_LABEL not in labels_of(cluster, ns)
    # Other labels through status are fine, and an admin may change the protected one there too.
    other = json.dumps({"metadata": {"labels": {"team": "a"}}})
    assert cluster.kubectl("patch", "namespace", ns, "--subresource=status", "--type=merge", "-p", other,
                           alice).returncode == 0
    admin = cluster.kubectl("patch", "namespace", ns, "--subresource=status", "--type=merge", "-p", patch)
    assert admin.returncode == 0, admin.stderr
    assert labels_of(cluster, ns)[AUDIT_LABEL] == "audit"


def test_a_namespace_with_an_exempt_name_needs_an_admin(cluster: ControlPlane, webhook: Webhook, alice: str) -> None:
    refused = cluster.kubectl("create", "namespace", EXEMPT_NAME, alice)
    assert refused.returncode == 1
    assert (f"{NAMESPACES_DENIED} protected-labels: Namespace {EXEMPT_NAME}: the name {EXEMPT_NAME} is exempt by "
            "name (exemptions.namespaces); creating a namespace with an exempt name needs an admin principal"
            in refused.stderr)
    assert cluster.kubectl("get", "namespace", EXEMPT_NAME).returncode == 1
    assert cluster.kubectl("create", "namespace", "e2e-not-exempt", alice).returncode == 0
    created = cluster.kubectl("create", "namespace", EXEMPT_NAME)  # system:masters
    assert created.returncode == 0, created.stderr


def test_a_deployment_admitted_in_audit_mode_keeps_working_once_the_namespace_enforces(
        cluster: ControlPlane, webhook: Webhook) -> None:
    ns = new_namespace(cluster, "e2e-audit-then-enforce", {AUDIT_LABEL: "audit"})
    admitted = apply(cluster, deployment(ns, replicas=1))
    assert admitted.returncode == 0 and "[audit mode, not enforced] deny-all-coverage" in admitted.stderr

    def replica_sets() -> list[dict[str, Any]]:
        out = cluster.kubectl("get", "replicasets", "-n", ns, "-o", "json", check=True).stdout
        items: list[dict[str, Any]] = json.loads(out)["items"]
        return items

    wait_for(lambda: len(replica_sets()) == 1, what="the Deployment's ReplicaSet")
    assert cluster.kubectl("label", "namespace", ns, f"{AUDIT_LABEL}-").returncode == 0  # now enforced
    annotated = cluster.kubectl("annotate", "deployment", "web", "-n", ns, "team=shop")
    assert annotated.returncode == 0, annotated.stderr
    scaled = cluster.kubectl("scale", "deployment", "web", "-n", ns, "--replicas=0")
    assert scaled.returncode == 0, scaled.stderr
    orphaned = cluster.kubectl("delete", "deployment", "web", "-n", ns, "--cascade=orphan")
    assert orphaned.returncode == 0, orphaned.stderr
    # The garbage collector's ReplicaSet UPDATE (template unchanged) must not be refused.
    wait_for(lambda: not replica_sets()[0]["metadata"].get("ownerReferences"), timeout=60,
             what="the ReplicaSet to lose its ownerReference")
    assert "netpol-guard" not in cluster.kubectl("get", "events", "-n", ns).stdout


def test_parallel_deletes_of_every_deny_all_leave_one(cluster: ControlPlane, webhook: Webhook) -> None:
    parallel = 3
    for run in range(6):
        ns = new_namespace(cluster, f"e2e-race-{run}")
        names = [f"deny-{i}" for i in range(parallel)]
        assert apply(cluster, *(deny_all(ns, name) for name in names)).returncode == 0
        results: dict[str, int] = {}
        start = threading.Barrier(parallel)
        threads = [threading.Thread(target=_delete, args=(cluster, ns, name, start, results)) for name in names]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        left = cluster.kubectl("get", "networkpolicies", "-n", ns, "-o", "name", check=True).stdout.split()
        assert len(left) == 1, (run, results, left)
        assert sorted(results.values()) == [0] * (parallel - 1) + [1], results


def _delete(cluster: ControlPlane, ns: str, name: str, start: threading.Barrier, results: dict[str, int]) -> None:
    start.wait()  # all at the same moment
    results[name] = cluster.kubectl("delete", "networkpolicy", name, "-n", ns).returncode
