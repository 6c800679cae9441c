"""End-to-end: generation of the default-deny on a real control plane, with the generate component's RBAC.

netpol-guard serves as its ServiceAccount with the RBAC of overlays/enforce plus
components/generate, so every write the generator makes is proved possible (and
every other write impossible) with exactly the shipped permissions.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from controlplane import ControlPlane
from harness import E2E_CONFIG, REPO, SERVICE_ACCOUNT, Webhook, register, unregister

pytestmark = pytest.mark.e2e

DENY, DNS = "netpol-guard-default-deny", "netpol-guard-allow-dns"
GENERATED = sorted([DNS, DENY])
DENIED = 'admission webhook "validate.netpol-guard.io" denied the request:'
LEASE = ("-n", "netpol-guard", "get", "lease", "netpol-guard-leader", "-o", "jsonpath={.spec.holderIdentity}")
CONFIG: dict[str, Any] = {
    **E2E_CONFIG,
    "exemptions": {"namespaces": ["gen-exempt", "gen-old"]},
    # settleSeconds well above kubectl's own start-up: a Deployment applied right after `kubectl create
    # namespace` always arrives before the generated policy, so the webhook's wait is what is tested.
    "generate": {"enabled": True, "leaseDurationSeconds": 6, "renewDeadlineSeconds": 4, "retryPeriodSeconds": 1,
                 "settleSeconds": 0.7, "waitSeconds": 2.0},
}


def namespace(name: str, labels: dict[str, str] | None = None) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels or {}}}


def deployment(ns: str) -> dict[str, Any]:
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "namespace": ns},
            "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}},
                     "template": {"metadata": {"labels": {"app": "web"}},
                                  "spec": {"containers": [{"name": "c", "image": "nginx"}]}}}}


def deny_all(ns: str, name: str) -> dict[str, Any]:
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": {"name": name, "namespace": ns},
            "spec": {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}}


def apply(cp: ControlPlane, *objects: dict[str, Any]) -> subprocess.CompletedProcess[str]:
    return cp.kubectl("apply", "-f", "-", input=yaml.safe_dump_all(objects))


def policies(cp: ControlPlane, ns: str) -> dict[str, dict[str, Any]]:
    out = cp.kubectl("get", "networkpolicies", "-n", ns, "-o", "json", check=True).stdout
    return {item["metadata"]["name"]: item for item in json.loads(out)["items"]}


def wait_for(condition: Callable[[], bool], timeout: float = 30.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


def metric(server: Webhook, name: str) -> float:
    status, text = server.get("/metrics")
    assert status == 200
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"{name} not in /metrics")


def settle() -> None:
    """Longer than settleSeconds plus a write: what the generator would have done, it has done."""
    time.sleep(2.0)


@pytest.fixture(scope="module")
def generating(cluster: ControlPlane, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Webhook]:
    """netpol-guard serve --generate, the generate component's RBAC applied, the leader, registered."""
    work = tmp_path_factory.mktemp("generate")
    (work / "manifests").symlink_to(REPO / "manifests")
    (work / "kustomization.yaml").write_text(
        "resources: [manifests/overlays/enforce]\ncomponents: [manifests/components/generate]\n")
    rendered = [o for o in yaml.safe_load_all(cluster.kubectl("kustomize", str(work), check=True).stdout) if o]
    objects = [o for o in rendered if o["kind"] != "ValidatingWebhookConfiguration"]
    cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump_all(objects), check=True)
    server = Webhook(cluster, work / "a", CONFIG)
    server.start("--generate")
    register(cluster, server)
    wait_for(lambda: metric(server, "netpol_guard_leader") == 1.0, what="replica a to lead")
    try:
        yield server
    finally:
        unregister(cluster)
        server.stop()


def test_auth_can_i_proves_the_exact_write_permissions(cluster: ControlPlane, generating: Webhook) -> None:
    def can(*args: str) -> str:
        return cluster.kubectl("auth", "can-i", "--as", SERVICE_ACCOUNT, *args).stdout.strip()

    assert can("create", "networkpolicies.networking.k8s.io", "-n", "any-namespace") == "yes"
    for verb in ("update", "patch", "delete", "deletecollection"):
        assert can(verb, "networkpolicies.networking.k8s.io", "-n", "any-namespace") == "no", verb
    assert can("create", "leases.coordination.k8s.io", "-n", "netpol-guard") == "yes"
    assert can("get", "leases.coordination.k8s.io/netpol-guard-leader", "-n", "netpol-guard") == "yes"
    assert can("update", "leases.coordination.k8s.io/netpol-guard-leader", "-n", "netpol-guard") == "yes"
    assert can("update", "leases.coordination.k8s.io/someone-elses", "-n", "netpol-guard") == "no"
    assert can("delete", "leases.coordination.k8s.io/netpol-guard-leader", "-n", "netpol-guard") == "no"
    assert can("create", "leases.coordination.k8s.io", "-n", "default") == "no"
    for verb in ("create", "update", "patch", "delete"):
        assert can(verb, "namespaces") == "no", verb
    assert can("create", "pods", "-n", "default") == "no"


def test_create_namespace_then_deployment_at_once_is_admitted_after_the_policy(
        cluster: ControlPlane, generating: Webhook) -> None:
    created = cluster.kubectl("create", "namespace", "gen-at-once")
    assert created.returncode == 0, created.stderr
    admitted = apply(cluster, deployment("gen-at-once"))
    assert admitted.returncode == 0, admitted.stderr
    assert admitted.stdout.strip() == "deployment.apps/web created"
    found = policies(cluster, "gen-at-once")
    assert sorted(found) == GENERATED
    web = json.loads(cluster.kubectl("get", "deployment", "web", "-n", "gen-at-once", "-o", "json").stdout)
    # resourceVersions are etcd revisions here: the policies were written before the Deployment.
    for policy in found.values():
        assert int(policy["metadata"]["resourceVersion"]) < int(web["metadata"]["resourceVersion"])
        assert policy["metadata"]["labels"] == {"app.kubernetes.io/managed-by": "netpol-guard"}
    assert found[DENY]["spec"] == {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}
    assert "netpol-guard.io/generate=false" in found[DENY]["metadata"]["annotations"]["netpol-guard.io/opt-out"]
    (decision,) = [json.loads(line) for line in generating.log_tail(400).splitlines()
                   if '"kind":"Deployment"' in line and '"namespace":"gen-at-once"' in line]
    assert decision["decision"] == "allowed" and decision["confirmed"] is True
    assert 0 < decision["waited_s"] < 2.0  # it waited for the generated policy, then admitted


def test_one_apply_of_namespace_and_deployment_succeeds(cluster: ControlPlane, generating: Webhook) -> None:
    result = apply(cluster, namespace("gen-bundle"), deployment("gen-bundle"))
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["namespace/gen-bundle created", "deployment.apps/web created"]
    assert sorted(policies(cluster, "gen-bundle")) == GENERATED


def test_exempt_and_opted_out_namespaces_get_nothing(cluster: ControlPlane, generating: Webhook) -> None:
    # Both are decisions only an admin may take (the kubectl user here is system:masters).
    assert apply(cluster, namespace("gen-exempt")).returncode == 0
    assert apply(cluster, namespace("gen-out", {"netpol-guard.io/generate": "false"})).returncode == 0
    settle()
    assert policies(cluster, "gen-exempt") == {}
    assert policies(cluster, "gen-out") == {}
    refused = apply(cluster, deployment("gen-out"))
    assert refused.returncode == 1 and f"{DENIED} deny-all-coverage" in refused.stderr
    assert "waited" not in refused.stderr  # an opted-out namespace is not waited for


def test_opting_out_is_reserved_to_admins(cluster: ControlPlane, generating: Webhook) -> None:
    role = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": "gen-dev"},
            "rules": [{"apiGroups": [""], "resources": ["namespaces"], "verbs": ["create", "get", "patch"]}]}
    binding = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
               "metadata": {"name": "gen-dev"},
               "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "gen-dev"},
               "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "dev"}]}
    assert apply(cluster, role, binding).returncode == 0
    sneaky = namespace("gen-sneaky", {"netpol-guard.io/generate": "false"})
    refused = cluster.kubectl("create", "--as", "dev", "-f", "-", input=yaml.safe_dump(sneaky))
    assert refused.returncode == 1
    assert ('admission webhook "namespaces.netpol-guard.io" denied the request: protected-labels: Namespace '
            "gen-sneaky adds netpol-guard.io/generate=false") in refused.stderr
    plain = cluster.kubectl("create", "--as", "dev", "-f", "-", input=yaml.safe_dump(namespace("gen-dev")))
    assert plain.returncode == 0, plain.stderr
    wait_for(lambda: sorted(policies(cluster, "gen-dev")) == GENERATED, what="gen-dev policies")


def test_a_namespace_arriving_with_its_own_deny_all_gets_nothing(cluster: ControlPlane, generating: Webhook) -> None:
    result = apply(cluster, namespace("gen-own"), deny_all("gen-own", "own-deny"), deployment("gen-own"))
    assert result.returncode == 0, result.stderr
    settle()
    assert sorted(policies(cluster, "gen-own")) == ["own-deny"]


def test_deleting_the_generated_policy_is_refused_then_allowed_and_never_recreated(
        cluster: ControlPlane, generating: Webhook) -> None:
    assert apply(cluster, namespace("gen-del")).returncode == 0
    wait_for(lambda: sorted(policies(cluster, "gen-del")) == GENERATED, what="generated policies")
    refused = cluster.kubectl("delete", "networkpolicy", DENY, "-n", "gen-del")
    assert refused.returncode == 1
    assert f"{DENIED} protect-deny-all: deleting NetworkPolicy gen-del/{DENY}" in refused.stderr
    assert apply(cluster, deny_all("gen-del", "team-deny")).returncode == 0
    deleted = cluster.kubectl("delete", "networkpolicy", DENY, "-n", "gen-del")
    assert deleted.returncode == 0, deleted.stderr
    settle()
    assert sorted(policies(cluster, "gen-del")) == sorted([DNS, "team-deny"])


def test_deleting_a_namespace_leaves_the_others_alone(cluster: ControlPlane, generating: Webhook) -> None:
    assert apply(cluster, namespace("gen-keep"), namespace("gen-drop")).returncode == 0
    wait_for(lambda: sorted(policies(cluster, "gen-keep")) == GENERATED, what="gen-keep policies")
    wait_for(lambda: sorted(policies(cluster, "gen-drop")) == GENERATED, what="gen-drop policies")
    before = {name: p["metadata"]["uid"] for name, p in policies(cluster, "gen-keep").items()}
    errors = metric(generating, "netpol_guard_generate_errors_total")
    deleted = cluster.kubectl("delete", "namespace", "gen-drop", "--wait=true", timeout=120)
    assert deleted.returncode == 0, deleted.stderr
    after = {name: p["metadata"]["uid"] for name, p in policies(cluster, "gen-keep").items()}
    assert after == before
    assert metric(generating, "netpol_guard_generate_errors_total") == errors


def test_backfill_dry_run_lists_and_changes_nothing_then_backfill_creates(
        cluster: ControlPlane, generating: Webhook, tmp_path: Path) -> None:
    # gen-old predates generation for it: exempt in the running config, then the operator widens it.
    assert apply(cluster, namespace("gen-old", {"backfill": "yes"})).returncode == 0
    settle()
    assert policies(cluster, "gen-old") == {}
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({"generate": {"namespaceSelector": {"matchLabels": {"backfill": "yes"}}}}))

    def backfill(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "webhook", "generate", "--backfill", *args, "--config",
                               str(config), "--kubeconfig", str(generating.kubeconfig)],
                              capture_output=True, text=True, timeout=60, cwd=REPO)

    dry = backfill("--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert dry.stdout.splitlines()[0] == f"would create  gen-old: {DENY}, {DNS}"
    assert dry.stdout.splitlines()[-1].startswith("1 namespace would get the generated policies; ")
    assert dry.stdout.splitlines()[-1].endswith("; dry run, nothing changed")
    assert policies(cluster, "gen-old") == {}
    done = backfill()
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[0] == f"created       gen-old: {DENY}, {DNS}"
    assert sorted(policies(cluster, "gen-old")) == GENERATED
    again = backfill()  # covered now: nothing to do, nothing updated
    assert again.returncode == 0 and again.stdout.startswith("0 namespaces got the generated policies")
    assert backfill().returncode == 0
    assert subprocess.run([sys.executable, "-m", "webhook", "generate"], capture_output=True, text=True,
                          cwd=REPO).returncode == 2  # never without --backfill


def test_two_replicas_only_the_leader_writes_and_a_killed_leader_hands_over(
        cluster: ControlPlane, generating: Webhook, tmp_path: Path) -> None:
    leader_a = cluster.kubectl(*LEASE).stdout
    standby = Webhook(cluster, tmp_path / "b", CONFIG)
    standby.start("--generate")
    try:
        time.sleep(2)
        assert metric(standby, "netpol_guard_leader") == 0.0
        assert cluster.kubectl(*LEASE).stdout == leader_a
        created_a = metric(generating, "netpol_guard_generated_total")
        assert apply(cluster, namespace("gen-two")).returncode == 0
        wait_for(lambda: sorted(policies(cluster, "gen-two")) == GENERATED, what="gen-two policies")
        settle()
        assert metric(generating, "netpol_guard_generated_total") == created_a + 2
        assert metric(standby, "netpol_guard_generated_total") == 0.0
        # The webhook calls go to b from now on, then a dies without releasing its Lease.
        register(cluster, standby)
        assert generating.process is not None
        generating.process.kill()
        generating.process.wait()
        killed = time.monotonic()
        wait_for(lambda: metric(standby, "netpol_guard_leader") == 1.0, timeout=20, what="b to lead")
        handover = time.monotonic() - killed
        lease = CONFIG["generate"]
        assert handover <= lease["leaseDurationSeconds"] + 2 * lease["retryPeriodSeconds"], handover
        assert cluster.kubectl(*LEASE).stdout not in ("", leader_a)
        result = apply(cluster, namespace("gen-after"), deployment("gen-after"))
        assert result.returncode == 0, result.stderr
        assert sorted(policies(cluster, "gen-after")) == GENERATED
        settle()
        assert metric(standby, "netpol_guard_generated_total") == 2.0  # gen-after only: gen-two was covered
        assert metric(standby, "netpol_guard_generate_errors_total") == 0.0
    finally:
        standby.stop()
        generating.process = None
