"""End-to-end: a real kube-apiserver calls netpol-guard; kubectl shows users what we check here."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from controlplane import ControlPlane
from harness import AUDIT_LABEL, Webhook, register, wait_until_enforced

pytestmark = pytest.mark.e2e

DENIED = 'admission webhook "validate.netpol-guard.io" denied the request:'


def pod(namespace: str, name: str = "web", labels: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "labels": labels or {"app": name}},
        "spec": {"containers": [{"name": "c", "image": "nginx"}]},
    }


def deny_all(namespace: str, name: str = "default-deny-all") -> dict[str, Any]:
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]},
    }


def deployment(namespace: str, replicas: int = 2) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": namespace},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "c", "image": "nginx"}]},
            },
        },
    }


def apply(cp: ControlPlane, *objects: dict[str, Any], args: tuple[str, ...] = ()) -> Any:
    return cp.kubectl("apply", *args, "-f", "-", input=yaml.safe_dump_all(objects))


def new_namespace(cp: ControlPlane, name: str, labels: dict[str, str] | None = None) -> str:
    ns: dict[str, Any] = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}
    if labels:
        ns["metadata"]["labels"] = labels
    cp.kubectl("apply", "-f", "-", input=yaml.safe_dump(ns), check=True)
    return name


def wait_for(condition: Callable[[], bool], timeout: float = 60.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.5)


def test_pod_is_refused_until_the_namespace_has_a_default_deny(cluster: ControlPlane, webhook: Webhook) -> None:
    ns = new_namespace(cluster, "e2e-pod")
    refused = apply(cluster, pod(ns))
    assert refused.returncode == 1
    assert (
        f"{DENIED} deny-all-coverage: Pod {ns}/web: namespace {ns} has no default-deny for Ingress and "
        "Egress" in refused.stderr
    )
    assert (
        '"name":"default-deny-all","namespace":"e2e-pod"},"spec":{"podSelector":{},'
        '"policyTypes":["Ingress","Egress"]}' in refused.stderr
    )
    assert apply(cluster, deny_all(ns)).returncode == 0
    admitted = apply(cluster, pod(ns))
    assert admitted.returncode == 0, admitted.stderr
    assert admitted.stdout.strip() == "pod/web created"


def test_apply_of_a_directory_with_policy_first_is_admitted(
    cluster: ControlPlane, webhook: Webhook, tmp_path: Path
) -> None:
    ns = new_namespace(cluster, "e2e-dir")
    (tmp_path / "00-deny-all.yaml").write_text(yaml.safe_dump(deny_all(ns)))
    (tmp_path / "10-pod.yaml").write_text(yaml.safe_dump(pod(ns)))
    result = cluster.kubectl("apply", "-f", str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert result.stdout.split("\n")[:2] == [
        "networkpolicy.networking.k8s.io/default-deny-all created",
        "pod/web created",
    ]


def test_deployment_is_refused_at_apply_and_its_pods_are_admitted_when_covered(
    cluster: ControlPlane, webhook: Webhook
) -> None:
    bare = new_namespace(cluster, "e2e-deploy-bare")
    refused = apply(cluster, deployment(bare))
    assert refused.returncode == 1
    assert f"{DENIED} deny-all-coverage: Deployment {bare}/web" in refused.stderr
    covered = new_namespace(cluster, "e2e-deploy")
    assert apply(cluster, deny_all(covered)).returncode == 0
    assert apply(cluster, deployment(covered, replicas=2)).returncode == 0

    def pods() -> list[str]:
        out = cluster.kubectl("get", "pods", "-n", covered, "-l", "app=web", "-o", "name").stdout
        return out.split()

    wait_for(lambda: len(pods()) == 2, what="the ReplicaSet controller's pods")
    assert all(name.startswith("pod/web-") for name in pods())


def test_policies_that_reopen_everything_are_refused_with_their_rule_ids(
    cluster: ControlPlane, webhook: Webhook
) -> None:
    ns = new_namespace(cluster, "e2e-rules")
    policy = {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": "too-open", "namespace": ns},
        "spec": {
            "podSelector": {},
            "policyTypes": ["Ingress", "Egress"],
            "ingress": [{}],
            "egress": [{"to": [{"ipBlock": {"cidr": "0.0.0.0/0"}}, {"namespaceSelector": {}}]}],
        },
    }
    refused = apply(cluster, policy)
    assert refused.returncode == 1
    for line in (
        "allow-all-ingress: NetworkPolicy e2e-rules/too-open: spec.ingress[0] has no 'from'",
        "broad-cidr: NetworkPolicy e2e-rules/too-open: spec.egress[0].to[0].ipBlock.cidr 0.0.0.0/0",
        "metadata-endpoint: NetworkPolicy e2e-rules/too-open",
        "any-namespace: NetworkPolicy e2e-rules/too-open: spec.egress[0].to[1]",
    ):
        assert line in refused.stderr
    assert cluster.kubectl("get", "networkpolicy", "too-open", "-n", ns).returncode == 1  # nothing stored


def test_the_last_deny_all_cannot_be_deleted_but_the_namespace_can(cluster: ControlPlane, webhook: Webhook) -> None:
    ns = new_namespace(cluster, "e2e-delete")
    assert apply(cluster, deny_all(ns)).returncode == 0
    refused = cluster.kubectl("delete", "networkpolicy", "default-deny-all", "-n", ns)
    assert refused.returncode == 1
    assert (
        f"{DENIED} protect-deny-all: deleting NetworkPolicy {ns}/default-deny-all would leave namespace "
        f"{ns} without default-deny for Ingress and Egress" in refused.stderr
    )
    deleted = cluster.kubectl("delete", "namespace", ns, "--timeout=90s")
    assert deleted.returncode == 0, deleted.stderr
    assert cluster.kubectl("get", "namespace", ns).returncode == 1


def test_server_side_dry_run_gets_the_same_decision_and_stores_nothing(cluster: ControlPlane, webhook: Webhook) -> None:
    ns = new_namespace(cluster, "e2e-dry-run")
    refused = apply(cluster, pod(ns), args=("--dry-run=server",))
    assert refused.returncode == 1 and f"{DENIED} deny-all-coverage: Pod {ns}/web" in refused.stderr
    assert apply(cluster, deny_all(ns)).returncode == 0
    admitted = apply(cluster, pod(ns), args=("--dry-run=server",))
    assert admitted.returncode == 0 and admitted.stdout.strip() == "pod/web created (server dry run)"
    assert cluster.kubectl("get", "pod", "web", "-n", ns).returncode == 1


def test_a_namespace_in_audit_mode_admits_with_warnings(cluster: ControlPlane, webhook: Webhook) -> None:
    ns = new_namespace(cluster, "e2e-audit-label", {AUDIT_LABEL: "audit"})  # the admin may set it
    admitted = apply(cluster, pod(ns))
    assert admitted.returncode == 0, admitted.stderr
    assert (
        f"Warning: [audit mode, not enforced] deny-all-coverage: Pod {ns}/web: namespace {ns} has no "
        "default-deny for Ingress and Egress" in admitted.stderr
    )
    assert "Warning: fix: apply this default-deny first" in admitted.stderr


def test_only_admins_may_change_the_labels_that_decide_the_mode(cluster: ControlPlane, webhook: Webhook) -> None:
    ns = new_namespace(cluster, "e2e-labels")
    # RBAC lets alice label namespaces; only netpol-guard stands in her way.
    cluster.kubectl(
        "create", "clusterrole", "namespace-labeller", "--verb=get,patch,update", "--resource=namespaces", check=True
    )
    cluster.kubectl(
        "create", "clusterrolebinding", "alice-labels", "--clusterrole=namespace-labeller", "--user=alice", check=True
    )
    assert cluster.kubectl("label", "namespace", ns, "team=a", "--as=alice").returncode == 0
    as_user = cluster.kubectl("label", "namespace", ns, f"{AUDIT_LABEL}=audit", "--as=alice")
    assert as_user.returncode == 1
    assert (
        'admission webhook "namespaces.netpol-guard.io" denied the request: protected-labels: Namespace '
        f"{ns} adds {AUDIT_LABEL}=audit" in as_user.stderr
    )
    assert cluster.kubectl("label", "namespace", ns, f"{AUDIT_LABEL}=audit").returncode == 0  # system:masters


def test_rotated_certificate_is_served_without_failing_requests(cluster: ControlPlane, webhook: Webhook) -> None:
    ns = new_namespace(cluster, "e2e-rotate")
    assert apply(cluster, deny_all(ns)).returncode == 0
    before = webhook.serving_serial()
    failures: list[str] = []
    count = 0
    stop = threading.Event()

    def requests() -> None:
        nonlocal count
        while not stop.is_set():
            result = apply(cluster, pod(ns), args=("--dry-run=server",))
            count += 1
            if result.returncode != 0:
                failures.append(result.stderr)

    worker = threading.Thread(target=requests)
    worker.start()
    try:
        time.sleep(1.0)
        webhook.make_certs()  # same CA (the caBundle stays valid), new serving certificate
        wait_for(lambda: webhook.serving_serial() != before, timeout=30, what="the new certificate")
        time.sleep(1.5)
    finally:
        stop.set()
        worker.join()
    assert failures == []
    assert count >= 3


def test_every_shipped_manifest_is_accepted_by_the_api_server(cluster: ControlPlane, webhook: Webhook) -> None:
    for overlay in ("enforce", "audit"):
        rendered = cluster.kubectl("kustomize", f"manifests/overlays/{overlay}", check=True).stdout
        result = cluster.kubectl("apply", "--dry-run=server", "-f", "-", input=rendered)
        assert result.returncode == 0, f"{overlay}: {result.stderr}"


@pytest.mark.parametrize(
    ("verb", "resource", "allowed"),
    [
        ("get", "namespaces", "yes"),
        ("list", "namespaces", "yes"),
        ("watch", "namespaces", "yes"),
        ("get", "networkpolicies.networking.k8s.io", "yes"),
        ("list", "networkpolicies.networking.k8s.io", "yes"),
        ("watch", "networkpolicies.networking.k8s.io", "yes"),
        ("create", "networkpolicies.networking.k8s.io", "no"),
        ("delete", "namespaces", "no"),
        ("update", "namespaces", "no"),
        ("list", "pods", "no"),
        ("get", "secrets", "no"),
        ("list", "configmaps", "no"),
    ],
)
def test_service_account_can_only_read_namespaces_and_policies(
    cluster: ControlPlane, verb: str, resource: str, allowed: str
) -> None:
    answer = cluster.kubectl(
        "auth", "can-i", verb, resource, "--all-namespaces", "--as=system:serviceaccount:netpol-guard:netpol-guard"
    )
    assert answer.stdout.strip() == allowed


def test_service_account_rules_are_exactly_read_only_namespaces_and_policies(cluster: ControlPlane) -> None:
    listing = cluster.kubectl(
        "auth", "can-i", "--list", "-n", "e2e-none", "--as=system:serviceaccount:netpol-guard:netpol-guard", check=True
    ).stdout
    # Columns: Resources, Non-Resource URLs, Resource Names, Verbs. Rows with no resource are URL grants
    # every authenticated user has (discovery, health); self-reviews come from system:basic-user.
    granted = {}
    for line in listing.splitlines()[1:]:
        match = re.match(r"^(\S+)\s+\[.*?\]\s+\[.*?\]\s+\[(.*)\]$", line)
        if match and not match.group(1).startswith("["):
            granted[match.group(1)] = match.group(2)
    ours = {k: v for k, v in granted.items() if not k.startswith("selfsubject")}
    read = "get list watch"
    coverage_sources = {  # cluster-wide and CNI policies that give coverage (read only where served)
        f"{resource}.{group}": read for group, resources in (
            ("policy.networking.k8s.io", ("clusternetworkpolicies", "adminnetworkpolicies",
                                          "baselineadminnetworkpolicies")),
            ("projectcalico.org", ("globalnetworkpolicies", "networkpolicies")),
            ("crd.projectcalico.org", ("globalnetworkpolicies", "networkpolicies")),
            ("cilium.io", ("ciliumnetworkpolicies", "ciliumclusterwidenetworkpolicies")),
        ) for resource in resources
    }
    assert ours == {"namespaces": read, "networkpolicies.networking.k8s.io": read, **coverage_sources}


def test_audit_mode_everywhere_admits_with_warnings(cluster: ControlPlane, webhook: Webhook) -> None:
    ns = new_namespace(cluster, "e2e-audit-global")
    webhook.restart("--mode", "audit")
    try:
        wait_until_enforced(cluster)
        admitted = apply(cluster, pod(ns))
        assert admitted.returncode == 0, admitted.stderr
        assert f"Warning: [audit mode, not enforced] deny-all-coverage: Pod {ns}/web" in admitted.stderr
    finally:
        webhook.restart()


def test_webhook_down_with_fail_policy_blocks_but_kube_system_stays_writable(
    cluster: ControlPlane, webhook: Webhook
) -> None:
    ns = new_namespace(cluster, "e2e-down")
    assert apply(cluster, deny_all(ns)).returncode == 0
    webhook.stop()
    try:
        blocked = apply(cluster, pod(ns))
        assert blocked.returncode == 1
        assert 'failed calling webhook "validate.netpol-guard.io"' in blocked.stderr
        system = apply(cluster, pod("kube-system", name="still-writable"))
        assert system.returncode == 0, system.stderr
    finally:
        webhook.start()
        register(cluster, webhook)
    assert apply(cluster, pod(ns)).returncode == 0
