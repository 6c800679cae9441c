"""End-to-end: netpol-guard's ValidatingAdmissionPolicies in a real kube-apiserver, with NO webhook registered.

This is the defence-in-depth promise: with netpol-guard down (or failurePolicy Ignore), the shape rules
still hold, refused with the rule id in the message; in audit mode the same objects are created with
`Warning:` lines. Also: the API server accepts every policy without type-checking warnings, and
evaluates objects up to the policies' size guard (the costliest shapes too) by the rules, never by a
cost error, and refuses larger ones by the guard's message.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from controlplane import ControlPlane
from vap_support import Api, ensure_namespace, installed_vaps, remove, render_cli, render_component, resource_path

from tests.tools.vap_shapes import SHAPES, over_the_guard, realistic

pytestmark = pytest.mark.e2e

NS = "vap-e2e"


def netpol(name: str, **spec: Any) -> dict[str, Any]:
    spec.setdefault("podSelector", {})
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": name, "namespace": NS}, "spec": spec}


def deployment(name: str, namespace: str = NS, host_network: bool = False) -> dict[str, Any]:
    spec: dict[str, Any] = {"containers": [{"name": "c", "image": "nginx"}]}
    if host_network:
        spec["hostNetwork"] = True
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "namespace": namespace},
            "spec": {"replicas": 0, "selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": {"app": name}}, "spec": spec}}}


# (object, the rule ids that must refuse it)
REFUSED: list[tuple[dict[str, Any], set[str]]] = [
    (netpol("open-ingress", policyTypes=["Ingress"], ingress=[{}]), {"allow-all-ingress"}),
    (netpol("internet", policyTypes=["Egress"], egress=[{"to": [{"ipBlock": {"cidr": "0.0.0.0/0"}}],
                                                         "ports": [{"port": 443}]}]),
     {"broad-cidr", "metadata-endpoint"}),
    (netpol("every-namespace", policyTypes=["Ingress"], ingress=[{"from": [{"namespaceSelector": {}}]}]),
     {"any-namespace"}),
    (netpol("every-namespace-by-name", policyTypes=["Ingress"], ingress=[{"from": [{"namespaceSelector": {
        "matchExpressions": [{"key": "kubernetes.io/metadata.name", "operator": "Exists"}]}}]}]), {"any-namespace"}),
    (netpol("imds", policyTypes=["Egress"], egress=[{"to": [{"ipBlock": {"cidr": "169.254.169.254/32"}}]}]),
     {"metadata-endpoint"}),
    (netpol("link-local", policyTypes=["Egress"], egress=[{"to": [{"ipBlock": {
        "cidr": "169.254.0.0/16", "except": ["169.254.169.254/32"]}}]}]), {"metadata-endpoint"}),
    (netpol("split-ports", policyTypes=["Ingress"], ingress=[{"from": [{"podSelector": {}}], "ports": [
        {"port": 1, "endPort": 600}, {"port": 601, "endPort": 1100}]}]), {"port-range"}),
    (netpol("split-cidrs", policyTypes=["Ingress"], ingress=[{"from": [
        {"ipBlock": {"cidr": "10.0.0.0/8"}}, {"ipBlock": {"cidr": "11.0.0.0/8"}}]}]), {"broad-cidr"}),
    (netpol("web-egress", policyTypes=["Egress"], egress=[{"ports": [{"port": 80}]}]),
     {"allow-all-egress", "metadata-endpoint"}),
    (deployment("host", host_network=True), {"host-network"}),
]

ALLOWED: list[dict[str, Any]] = [
    netpol("default-deny-all", policyTypes=["Ingress", "Egress"]),
    netpol("dns", policyTypes=["Egress"], egress=[{"ports": [{"port": 53, "protocol": "UDP"},
                                                             {"port": 53, "protocol": "TCP"}]}]),
    netpol("partners", policyTypes=["Ingress", "Egress"],
           ingress=[{"from": [{"ipBlock": {"cidr": "203.0.113.0/24", "except": ["203.0.113.7/32"]}},
                              {"namespaceSelector": {"matchLabels": {"team": "a"}}}], "ports": [{"port": 8443}]}],
           egress=[{"to": [{"ipBlock": {"cidr": "10.0.0.0/8"}}, {"ipBlock": {"cidr": "fd00:1::/32"}}]}]),
    netpol("monitoring", policyTypes=["Ingress"], ingress=[{"from": [{"namespaceSelector": {},
                                                                      "podSelector": {"matchLabels": {"app": "p"}}}],
                                                            "ports": [{"port": 1, "endPort": 1024}]}]),
    # Rules of a direction missing from policyTypes have no effect: not judged.
    netpol("ingress-only", policyTypes=["Ingress"], ingress=[{"from": [{"podSelector": {}}]}],
           egress=[{"to": [{"ipBlock": {"cidr": "0.0.0.0/0"}}]}]),
    deployment("web"),
]


def kubectl_apply(cp: ControlPlane, obj: dict[str, Any], *args: str) -> Any:
    return cp.kubectl("apply", *args, "-f", "-", input=yaml.safe_dump(obj))


def ref(obj: dict[str, Any]) -> str:
    return f"{obj['kind']} {obj['metadata']['namespace']}/{obj['metadata']['name']}"


@pytest.fixture(scope="module")
def namespace(cluster: ControlPlane) -> str:
    return ensure_namespace(cluster, NS)


@pytest.fixture(scope="module")
def enforced(cluster: ControlPlane, namespace: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """The shipped component (enforce mode, default config), applied the way a user would."""
    remove(cluster, namespace)
    assert cluster.kubectl("get", "validatingwebhookconfigurations", "-o", "name").stdout.strip() == ""
    with installed_vaps(cluster, render_component(cluster, tmp_path_factory.mktemp("component")), namespace):
        yield


def test_api_server_accepts_every_policy_without_type_check_warnings(cluster: ControlPlane, enforced: None) -> None:
    listed = json.loads(cluster.kubectl("get", "validatingadmissionpolicies", "-l",
                                        "app.kubernetes.io/managed-by=netpol-guard", "-o", "json",
                                        check=True).stdout)["items"]
    assert sorted(p["metadata"]["name"] for p in listed) == sorted(
        f"netpol-guard-{r}" for r in ("allow-all-ingress", "allow-all-egress", "any-namespace", "broad-cidr",
                                      "metadata-endpoint", "port-range", "host-network"))
    for policy in listed:
        checking = policy.get("status", {}).get("typeChecking", {})
        assert not checking.get("expressionWarnings"), (policy["metadata"]["name"], checking)


@pytest.mark.parametrize(("obj", "rules"), REFUSED, ids=[o["metadata"]["name"] for o, _ in REFUSED])
def test_shapes_are_refused_with_the_rule_id_and_nothing_is_stored(
        cluster: ControlPlane, enforced: None, obj: dict[str, Any], rules: set[str]) -> None:
    refused = kubectl_apply(cluster, obj)
    assert refused.returncode == 1, refused.stdout
    # The API server reports the first policy that denies; its rule id leads the message.
    denied_by = [r for r in rules if f"ValidatingAdmissionPolicy 'netpol-guard-{r}' with binding "
                 f"'netpol-guard-{r}' denied request: {r}: {ref(obj)}: " in refused.stderr]
    assert denied_by, refused.stderr
    kind = obj["kind"].lower()
    assert cluster.kubectl("get", kind, obj["metadata"]["name"], "-n", NS).returncode == 1


def test_the_exact_message_of_a_refusal(cluster: ControlPlane, enforced: None) -> None:
    refused = kubectl_apply(cluster, REFUSED[0][0])
    assert refused.stderr.strip() == (
        'Error from server (Forbidden): error when creating "STDIN": networkpolicies.networking.k8s.io '
        '"open-ingress" is forbidden: ValidatingAdmissionPolicy '
        "'netpol-guard-allow-all-ingress' with binding 'netpol-guard-allow-all-ingress' denied request: "
        "allow-all-ingress: NetworkPolicy vap-e2e/open-ingress: an ingress rule has no 'from', so it allows every "
        "source on ports that are not all configured open ports; fix: list the allowed peers in 'from', or open "
        "only the configured open ports (none)"
    )


@pytest.mark.parametrize("obj", ALLOWED, ids=[o["metadata"]["name"] for o in ALLOWED])
def test_allowed_shapes_are_created(cluster: ControlPlane, enforced: None, obj: dict[str, Any]) -> None:
    created = kubectl_apply(cluster, obj)
    assert created.returncode == 0, created.stderr
    assert "Warning" not in created.stderr


def test_exempt_namespace_and_deleting_objects_pass(cluster: ControlPlane, enforced: None) -> None:
    system = kubectl_apply(cluster, deployment("host", namespace="kube-system", host_network=True),
                           "--dry-run=server")
    assert system.returncode == 0, system.stderr


def test_a_policy_with_many_rules_at_the_size_guard_is_evaluated_to_the_end(cluster: ControlPlane,
                                                                              enforced: None) -> None:
    """1,950 rules a direction (rules plus ports: 5,850 of the guard's 6,000), about 0.4 MB, created for real:
    allowed by every rule; the same with one metadata peer in the very last rule is refused by that rule."""
    api = Api(cluster)
    clean = realistic("guard-clean", NS)
    body = json.dumps(clean).encode()
    assert len(body) > 400_000
    status, text, warnings = api.create(resource_path(clean), body, dry_run=False)
    assert status == 201, text[:2000]
    assert warnings == []
    bad = realistic("guard-bad", NS, last_peer={"ipBlock": {"cidr": "169.254.169.254/32"}})
    status, text, _ = api.create(resource_path(bad), json.dumps(bad).encode(), dry_run=False)
    assert status == 403, text[:2000]
    message = json.loads(text)["message"]
    assert ("metadata-endpoint: NetworkPolicy vap-e2e/guard-bad: an egress ipBlock lets pods reach the cloud "
            "metadata endpoint 169.254.169.254") in message, message


# The costliest shapes at the guard that fit the API server's 3 MiB request limit (the others, up to 5 MB, never
# reach admission: tests/manifests/test_vap_cost.py measures them all).
SENDABLE = sorted(name for name, build in SHAPES.items() if len(json.dumps(build(name, NS))) <= 3 * 1024 * 1024)


@pytest.mark.parametrize("shape", SENDABLE)
def test_the_costliest_shapes_at_the_size_guard_are_judged_by_the_rules(cluster: ControlPlane, enforced: None,
                                                                         shape: str) -> None:
    """Whatever the API server can take is judged by the rules' own messages, never a cost error."""
    assert len(SENDABLE) >= 5
    api = Api(cluster)
    obj = SHAPES[shape](f"shape-{shape}", NS)
    status, text, _ = api.create(resource_path(obj), json.dumps(obj).encode())
    message = json.loads(text).get("message", "") if status != 201 else ""
    assert "cost" not in message and "budget" not in message, message[:2000]
    assert status in (201, 403), (status, text[:2000])
    # Which rules refuse is each shape's business: port ranges and broad blocks are meant to.
    expected = {"metadata-blocks-in-one-rule": "broad-cidr: ", "ports-in-one-rule": "port-range: ",
                "long-rules-of-long-peer-lists": "broad-cidr: "}.get(shape)
    if expected is None:
        assert status == 201, message[:2000]
    else:
        assert status == 403 and f"denied request: {expected}" in message, message[:2000]


def test_a_policy_over_the_size_guard_is_refused_by_the_guard_message(cluster: ControlPlane, enforced: None) -> None:
    api = Api(cluster)
    obj = over_the_guard("over-the-guard", NS)
    status, text, _ = api.create(resource_path(obj), json.dumps(obj).encode())
    assert status == 403, text[:2000]
    message = json.loads(text)["message"]
    assert (": NetworkPolicy vap-e2e/over-the-guard: the NetworkPolicy is too large for this "
            "ValidatingAdmissionPolicy to judge within the API server's CEL cost budget: more than 6000 rules, "
            "peers") in message, message


def test_audit_mode_creates_with_warning_lines(cluster: ControlPlane, namespace: str, tmp_path: Path) -> None:
    remove(cluster, namespace)
    with installed_vaps(cluster, render_cli(None, "audit", tmp_path), namespace):
        for obj, rules in REFUSED:
            name = obj["metadata"]["name"]
            audited = {**obj, "metadata": {**obj["metadata"], "name": f"audit-{name}"}}
            created = kubectl_apply(cluster, audited)
            assert created.returncode == 0, created.stderr
            for rule in rules:
                assert (f"Warning: Validation failed for ValidatingAdmissionPolicy 'netpol-guard-{rule}' with binding "
                        f"'netpol-guard-{rule}': {rule}: {ref(audited)}: ") in created.stderr, created.stderr
            assert cluster.kubectl("get", obj["kind"].lower(), f"audit-{name}", "-n", NS).returncode == 0


def test_exemptions_and_mode_overrides_from_the_config(cluster: ControlPlane, namespace: str, tmp_path: Path) -> None:
    """Principals (matchConditions on request.userInfo), the label exemption and per-namespace modes
    (namespaceObject, in the validations) as the engine reads them."""
    config = {
        "exemptions": {"principals": {"users": ["gitops-bot"], "groups": ["platform"]},
                       "namespaceSelector": {"matchLabels": {"netpol-guard.io/exempt": "true"}}},
        "modeOverrides": [{"namespaceSelector": {"matchLabels": {"netpol-guard.io/mode": "audit"}}, "mode": "audit"}],
    }
    exempt = ensure_namespace(cluster, "vap-exempt", {"netpol-guard.io/exempt": "true"})
    audit = ensure_namespace(cluster, "vap-audit", {"netpol-guard.io/mode": "audit"})
    remove(cluster, namespace)
    with installed_vaps(cluster, render_cli(config, None, tmp_path), namespace):
        def open_policy(ns: str, name: str) -> dict[str, Any]:
            obj = netpol(name, policyTypes=["Ingress"], ingress=[{}])
            obj["metadata"]["namespace"] = ns
            return obj
        refused = kubectl_apply(cluster, open_policy(NS, "cfg-refused"), "--dry-run=server")
        assert refused.returncode == 1 and "denied request: allow-all-ingress: " in refused.stderr
        by_user = kubectl_apply(cluster, open_policy(NS, "cfg-user"), "--dry-run=server", "--as=gitops-bot",
                                 "--as-group=system:masters")
        assert by_user.returncode == 0, by_user.stderr
        by_group = kubectl_apply(cluster, open_policy(NS, "cfg-group"), "--dry-run=server", "--as=carol",
                                 "--as-group=platform", "--as-group=system:masters")
        assert by_group.returncode == 0, by_group.stderr
        assert kubectl_apply(cluster, open_policy(exempt, "cfg-label"), "--dry-run=server").returncode == 0
        warned = kubectl_apply(cluster, open_policy(audit, "cfg-audit"), "--dry-run=server")
        assert warned.returncode == 0, warned.stderr
        assert ("Warning: Validation failed for ValidatingAdmissionPolicy 'netpol-guard-allow-all-ingress-audit' "
                "with binding 'netpol-guard-allow-all-ingress-audit': allow-all-ingress: NetworkPolicy "
                "vap-audit/cfg-audit: ") in warned.stderr


def test_controller_updates_that_keep_the_pod_template_pass(cluster: ControlPlane, namespace: str,
                                                            tmp_path: Path) -> None:
    """As in the engine: scaling or annotating a hostNetwork Deployment admitted earlier (here: before the VAPs)
    is no opinion; changing its pod template is judged."""
    remove(cluster, namespace)
    assert kubectl_apply(cluster, deployment("legacy-host", host_network=True)).returncode == 0
    with installed_vaps(cluster, render_component(cluster, tmp_path / "component"), namespace):
        annotated = cluster.kubectl("annotate", "deployment", "legacy-host", "-n", NS, "owner=team-a")
        assert annotated.returncode == 0, annotated.stderr
        changed = cluster.kubectl("patch", "deployment", "legacy-host", "-n", NS, "--type=merge", "-p",
                                  '{"spec":{"template":{"metadata":{"annotations":{"x":"y"}}}}}')
        assert changed.returncode == 1
        assert ("denied request: host-network: Deployment vap-e2e/legacy-host: spec.template.spec.hostNetwork is "
                "true") in changed.stderr, changed.stderr
