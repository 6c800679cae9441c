"""`netpol-guard audit` against the real API server: what already exists, judged by the same engine."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest
import yaml
from controlplane import ControlPlane
from harness import REPO

pytestmark = pytest.mark.e2e


def deployment(namespace: str) -> dict[str, object]:
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "namespace": namespace},
            "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}},
                     "template": {"metadata": {"labels": {"app": "web"}},
                                  "spec": {"containers": [{"name": "c", "image": "nginx"}]}}}}


def test_audit_reports_existing_workloads_and_policies(cluster: ControlPlane) -> None:
    objects = [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "audit-open"}},
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "audit-covered"}},
        {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
         "metadata": {"name": "default-deny-all", "namespace": "audit-covered"},
         "spec": {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}},
        {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
         "metadata": {"name": "to-internet", "namespace": "audit-covered"},
         "spec": {"podSelector": {}, "policyTypes": ["Egress"],
                  "egress": [{"to": [{"ipBlock": {"cidr": "0.0.0.0/0",
                                                   "except": ["169.254.0.0/16", "100.100.100.200/32"]}}]}]}},
        deployment("audit-open"),
        deployment("audit-covered"),
    ]
    cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump_all(objects), check=True)
    deadline = time.monotonic() + 60
    while len(cluster.kubectl("get", "pods", "-n", "audit-open", "-o", "name").stdout.split()) < 1:
        assert time.monotonic() < deadline, "the ReplicaSet controller never created the pod"
        time.sleep(0.5)

    proc = subprocess.run([sys.executable, "-m", "webhook", "audit", "--kubeconfig", str(cluster.kubeconfig),
                           "-o", "json"], capture_output=True, text=True, cwd=REPO, timeout=60)
    assert proc.returncode == 1, proc.stderr
    results = {(r["kind"], r["namespace"], r["name"]): r for r in json.loads(proc.stdout)["results"]}
    open_web = results[("Deployment", "audit-open", "web")]
    assert not open_web["allowed"]
    assert [v["rule"] for v in open_web["violations"]] == ["deny-all-coverage"]
    assert open_web["isolation"] == {"ingress": False, "egress": False}
    covered_web = results[("Deployment", "audit-covered", "web")]
    assert covered_web["allowed"] and covered_web["isolation"] == {"ingress": True, "egress": True}
    assert [v["rule"] for v in results[("NetworkPolicy", "audit-covered", "to-internet")]["violations"]] == \
        ["broad-cidr"]
    # Pods and ReplicaSets owned by a controller are judged through the Deployment, not listed again.
    assert not [key for key in results if key[0] in ("Pod", "ReplicaSet") and key[1].startswith("audit-")]
    assert results[("Namespace", "", "kube-system")]["violations"] == []


def test_audit_without_a_reachable_cluster_exits_2() -> None:
    proc = subprocess.run([sys.executable, "-m", "webhook", "audit", "--kubeconfig", "/nonexistent/kubeconfig"],
                          capture_output=True, text=True, cwd=REPO, timeout=60)
    assert proc.returncode == 2
    assert "cannot load Kubernetes client configuration (/nonexistent/kubeconfig)" in proc.stderr
    assert "Traceback" not in proc.stderr
