"""Cluster-wide coverage sources against the real API server, with the projects' own CRDs.

The CRDs come from sigs.k8s.io/network-policy-api's and Calico's Go modules
(tests/e2e/fetch_crds.py). ClusterNetworkPolicy's CRD is installed before netpol-guard starts;
AdminNetworkPolicy's, BaselineAdminNetworkPolicy's and Calico's only after, so the service must
discover them while running. Calico's policies are applied as crd.projectcalico.org/v1, the only
form a plain API server serves (projectcalico.org/v3 needs Calico's aggregated API server).
The Calico tests come last: the recommended policy covers every namespace that is not a system one.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from controlplane import ControlPlane
from fetch_crds import crd_files, ensure_crds
from harness import E2E_CONFIG, REPO, Webhook, register, unregister

pytestmark = pytest.mark.e2e

EVERYWHERE = [{"networks": ["0.0.0.0/0", "::/0"]}]
CNP_CRD = "policy.networking.k8s.io_clusternetworkpolicies.yaml"
LATE_CRDS = ("policy.networking.k8s.io_adminnetworkpolicies.yaml",
             "policy.networking.k8s.io_baselineadminnetworkpolicies.yaml")
CALICO_CRDS = ("crd.projectcalico.org_globalnetworkpolicies.yaml", "crd.projectcalico.org_networkpolicies.yaml")
CALICO_DNS = {"selector": 'k8s-app == "kube-dns"', "ports": [53]}
# Calico's recommended cluster-wide default deny ("Enable a default deny policy for Kubernetes pods"):
# every namespace but the system ones, Ingress and Egress, DNS egress allowed.
DENY_APP_POLICY: dict[str, Any] = {
    "apiVersion": "crd.projectcalico.org/v1", "kind": "GlobalNetworkPolicy", "metadata": {"name": "deny-app-policy"},
    "spec": {"namespaceSelector": 'has(projectcalico.org/name) && projectcalico.org/name not in '
                                  '{"kube-system", "calico-system", "calico-apiserver"}',
             "types": ["Ingress", "Egress"],
             "egress": [{"action": "Allow", "protocol": "UDP", "destination": CALICO_DNS},
                        {"action": "Allow", "protocol": "TCP", "destination": CALICO_DNS}]},
}


def apply(cluster: ControlPlane, *objects: dict[str, Any]) -> subprocess.CompletedProcess[str]:
    result: subprocess.CompletedProcess[str] = cluster.kubectl(
        "apply", "-f", "-", input=yaml.safe_dump_all(objects))
    return result


def install_crd(cluster: ControlPlane, path: Path) -> None:
    cluster.kubectl("apply", "--server-side", "-f", str(path), check=True)
    name = yaml.safe_load(path.read_text())["metadata"]["name"]
    cluster.kubectl("wait", "--for=condition=Established", f"crd/{name}", "--timeout=60s", check=True)


def namespace(name: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}


def deployment(ns: str) -> dict[str, Any]:
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "namespace": ns},
            "spec": {"replicas": 0, "selector": {"matchLabels": {"app": "web"}},
                     "template": {"metadata": {"labels": {"app": "web"}},
                                  "spec": {"containers": [{"name": "c", "image": "nginx"}]}}}}


def cnp(name: str, tier: str, subject_namespace: str, *, egress: bool = True) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "tier": tier, "priority": 100,
        "subject": {"namespaces": {"matchLabels": {"kubernetes.io/metadata.name": subject_namespace}}},
        "ingress": [{"action": "Deny", "from": [{"namespaces": {}}]}],
    }
    if egress:
        spec["egress"] = [{"action": "Deny", "to": EVERYWHERE}]
    return {"apiVersion": "policy.networking.k8s.io/v1alpha2", "kind": "ClusterNetworkPolicy",
            "metadata": {"name": name}, "spec": spec}


@pytest.fixture(scope="module")
def crds() -> dict[str, Path]:
    return crd_files(ensure_crds(quiet=True))


@pytest.fixture(scope="module")
def served(cluster: ControlPlane, crds: dict[str, Path], tmp_path_factory: pytest.TempPathFactory,
           ) -> Iterator[Webhook]:
    install_crd(cluster, crds[CNP_CRD])
    server = Webhook(cluster, tmp_path_factory.mktemp("sources"),
                     {**E2E_CONFIG, "server": {"sourceDiscoverySeconds": 1}})
    server.start()
    register(cluster, server)
    try:
        yield server
    finally:
        unregister(cluster)
        server.stop()
        for name in (CNP_CRD, *LATE_CRDS):  # deleting a CRD deletes its objects: leave no deny-all behind
            cluster.kubectl("delete", "-f", str(crds[name]), "--ignore-not-found", "--wait=true")


def test_baseline_default_deny_lets_a_deployment_in(cluster: ControlPlane, served: Webhook) -> None:
    apply(cluster, namespace("cnp-baseline"))
    refused = apply(cluster, deployment("cnp-baseline"))
    assert refused.returncode != 0 and "deny-all-coverage" in refused.stderr
    assert apply(cluster, cnp("baseline-deny", "Baseline", "cnp-baseline")).returncode == 0
    admitted = apply(cluster, deployment("cnp-baseline"))  # the live confirm or the watch has it
    assert admitted.returncode == 0, admitted.stderr


def test_deleting_it_is_refused_while_namespaces_depend_on_it(cluster: ControlPlane, served: Webhook) -> None:
    proc = cluster.kubectl("delete", "clusternetworkpolicy", "baseline-deny")
    assert proc.returncode != 0
    assert ("protect-deny-all: deleting ClusterNetworkPolicy baseline-deny would leave 1 namespace without "
            "default-deny: cnp-baseline (Ingress and Egress)") in proc.stderr
    weaken = cnp("baseline-deny", "Baseline", "cnp-baseline", egress=False)
    proc = apply(cluster, weaken)
    assert proc.returncode != 0 and "protect-deny-all" in proc.stderr
    assert cluster.kubectl("get", "clusternetworkpolicy", "baseline-deny").returncode == 0


def test_an_ingress_only_policy_is_not_enough(cluster: ControlPlane, served: Webhook) -> None:
    apply(cluster, namespace("cnp-ingress-only"))
    assert apply(cluster, cnp("ingress-only", "Admin", "cnp-ingress-only", egress=False)).returncode == 0
    proc = apply(cluster, deployment("cnp-ingress-only"))
    assert proc.returncode != 0
    assert ("namespace cnp-ingress-only has no default-deny for Egress (covered Ingress: ClusterNetworkPolicy "
            "ingress-only)") in proc.stderr
    assert "ClusterNetworkPolicy ingress-only: it has no Egress rules" in proc.stderr


def test_a_crd_installed_after_start_is_picked_up(cluster: ControlPlane, served: Webhook,
                                                  crds: dict[str, Path]) -> None:
    apply(cluster, namespace("banp-late"))
    for name in LATE_CRDS:
        install_crd(cluster, crds[name])
    banp = {"apiVersion": "policy.networking.k8s.io/v1alpha1", "kind": "BaselineAdminNetworkPolicy",
            "metadata": {"name": "default"},
            "spec": {"subject": {"namespaces": {"matchLabels": {"kubernetes.io/metadata.name": "banp-late"}}},
                     "ingress": [{"action": "Deny", "from": [{"namespaces": {}}]}],
                     "egress": [{"action": "Deny", "to": EVERYWHERE}]}}
    created = apply(cluster, banp)
    assert created.returncode == 0, created.stderr
    deadline = time.monotonic() + 30
    while True:
        proc = apply(cluster, deployment("banp-late"))
        if proc.returncode == 0:
            break
        assert time.monotonic() < deadline, f"never admitted: {proc.stderr}\n{served.log_tail()}"
        time.sleep(0.5)
    assert "watching BaselineAdminNetworkPolicy" in served.log_path.read_text()
    proc = cluster.kubectl("delete", "baselineadminnetworkpolicy", "default")
    assert proc.returncode != 0 and "protect-deny-all" in proc.stderr


def test_audit_reads_cluster_wide_policies(cluster: ControlPlane, served: Webhook) -> None:
    proc = subprocess.run([sys.executable, "-m", "webhook", "audit", "--kubeconfig", str(cluster.kubeconfig),
                           "-o", "json"], capture_output=True, text=True, cwd=REPO, timeout=60)
    assert proc.returncode in (0, 1), proc.stderr
    results = {(r["kind"], r["namespace"], r["name"]): r for r in json.loads(proc.stdout)["results"]}
    assert results[("Deployment", "cnp-baseline", "web")]["allowed"]
    assert results[("ClusterNetworkPolicy", "", "baseline-deny")]["allowed"]
    assert ("Deployment", "cnp-ingress-only", "web") not in results  # it was refused


@pytest.fixture(scope="module")
def calico(cluster: ControlPlane, served: Webhook, crds: dict[str, Path]) -> Iterator[None]:
    for name in CALICO_CRDS:
        install_crd(cluster, crds[name])
    deadline = time.monotonic() + 30
    while "watching GlobalNetworkPolicy.crd.projectcalico.org/v1" not in served.log_path.read_text():
        assert time.monotonic() < deadline, f"Calico's CRDs never discovered:\n{served.log_tail()}"
        time.sleep(0.5)
    try:
        yield
    finally:  # deleting the CRDs deletes deny-app-policy, which covers every other test's namespaces
        for name in CALICO_CRDS:
            cluster.kubectl("delete", "-f", str(crds[name]), "--ignore-not-found", "--wait=true")


def test_an_ingress_only_calico_policy_is_not_enough(cluster: ControlPlane, calico: None) -> None:
    apply(cluster, namespace("calico-ingress-only"))
    ingress_only = {"apiVersion": "crd.projectcalico.org/v1", "kind": "GlobalNetworkPolicy",
                    "metadata": {"name": "ingress-only"},
                    "spec": {"namespaceSelector": 'projectcalico.org/name == "calico-ingress-only"',
                             "types": ["Ingress"]}}
    created = apply(cluster, ingress_only)
    assert created.returncode == 0, created.stderr
    proc = apply(cluster, deployment("calico-ingress-only"))
    assert proc.returncode != 0
    assert ("namespace calico-ingress-only has no default-deny for Egress (covered Ingress: GlobalNetworkPolicy "
            "ingress-only)") in proc.stderr
    assert "GlobalNetworkPolicy ingress-only: its types do not include Egress" in proc.stderr


def test_calicos_recommended_default_deny_lets_a_deployment_in(cluster: ControlPlane, calico: None) -> None:
    apply(cluster, namespace("calico-app"))
    refused = apply(cluster, deployment("calico-app"))
    assert refused.returncode != 0 and "deny-all-coverage" in refused.stderr
    created = apply(cluster, DENY_APP_POLICY)
    assert created.returncode == 0, created.stderr
    stored = json.loads(cluster.kubectl("get", "globalnetworkpolicies.crd.projectcalico.org", "deny-app-policy",
                                        "-o", "json", check=True).stdout)
    assert stored["spec"]["types"] == ["Ingress", "Egress"]  # the real CRD's schema kept what counts
    admitted = apply(cluster, deployment("calico-app"))
    assert admitted.returncode == 0, admitted.stderr
    # Ingress from ingress-only and Egress from deny-app-policy add up.
    admitted = apply(cluster, deployment("calico-ingress-only"))
    assert admitted.returncode == 0, admitted.stderr


def test_deleting_calicos_default_deny_is_refused_while_namespaces_depend_on_it(
        cluster: ControlPlane, calico: None) -> None:
    proc = cluster.kubectl("delete", "globalnetworkpolicies.crd.projectcalico.org", "deny-app-policy")
    assert proc.returncode != 0
    found = re.search(r"protect-deny-all: deleting GlobalNetworkPolicy deny-app-policy would leave (\d+) "
                      r"namespaces without default-deny: (.*?)(?: and (\d+) more)?\n", proc.stderr)
    assert found is not None, proc.stderr
    count, named, more = int(found[1]), found[2].split(", "), int(found[3] or 0)
    assert len(named) == min(count, 5) and count == len(named) + more
    # Sorted by name; the namespaces covered by their own cluster-wide policies do not depend on it.
    assert "calico-app (Ingress and Egress), calico-ingress-only (Egress)" in found[2]
    assert not {"banp-late", "cnp-baseline", "kube-system"} & {n.split(" ")[0] for n in named}
    weakened = {**DENY_APP_POLICY, "spec": {**DENY_APP_POLICY["spec"], "types": ["Ingress"]}}
    proc = apply(cluster, weakened)
    assert proc.returncode != 0
    assert "protect-deny-all: this change to GlobalNetworkPolicy deny-app-policy would leave" in proc.stderr
    assert "calico-app (Egress)" in proc.stderr
    assert cluster.kubectl("get", "globalnetworkpolicies.crd.projectcalico.org", "deny-app-policy").returncode == 0
