"""Coverage sources in the engine: workloads admitted, messages, pod mode, protect-deny-all, the cached view."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.unit.helpers import config, deny_all, namespace, pod, review, rule_ids
from tests.unit.test_sources import RECOMMENDED, ccnp, cnp, deny_both, gnp
from webhook.check import render, run_check
from webhook.core.config import ConfigError, config_from_data
from webhook.core.sources import parse_source_policy
from webhook.core.state import ClusterState, parse_namespace
from webhook.loading import Manifest, state_from_manifests


def cluster(*objects: dict[str, Any], sources: tuple[str, ...] | None = None) -> ClusterState:
    manifests = [Manifest("test", i + 1, o) for i, o in enumerate(objects)]
    return state_from_manifests(manifests, "default", *(() if sources is None else (sources,)))


def deployment(name: str = "web", ns: str = "shop", labels: dict[str, str] | None = None) -> dict[str, Any]:
    labels = labels or {"app": name}
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "namespace": ns},
            "spec": {"selector": {"matchLabels": labels},
                     "template": {"metadata": {"labels": labels}, "spec": {"containers": [{"name": "c"}]}}}}


NAMESPACES = [namespace(n) for n in ("shop", "blog", "kube-system")]


@pytest.mark.parametrize("policy", [
    gnp(**RECOMMENDED),
    cnp("default-deny", **deny_both()),
    ccnp(enableDefaultDeny={"ingress": True, "egress": True}),
])
def test_a_cluster_wide_default_deny_admits_workloads(policy: dict[str, Any]) -> None:
    view = cluster(*NAMESPACES, policy)
    decision = review(deployment(), view)
    assert decision.allowed
    assert decision.isolation is not None and decision.isolation.complete
    assert not review(deployment(), cluster(*NAMESPACES, policy, sources=("networkPolicy",))).allowed


def test_messages_name_what_covers_and_what_does_not_count() -> None:
    ingress_only = gnp("deny-ingress", types=["Ingress"])
    no_http = cnp("no-http", ingress=[{"action": "Deny", "from": [{"namespaces": {}}],
                                       "protocols": [{"tcp": {"destinationPort": {"number": 80}}}]}])
    decision = review(deployment(), cluster(*NAMESPACES, ingress_only, no_http))
    assert rule_ids(decision) == {"deny-all-coverage"}
    message = decision.violations[0].message
    assert "has no default-deny for Egress (covered Ingress: GlobalNetworkPolicy deny-ingress)" in message
    assert "seen but not counting: " in message
    assert "ClusterNetworkPolicy no-http: it has no Egress rules" in message
    assert "GlobalNetworkPolicy deny-ingress: its types do not include Egress" in message


def test_pod_mode_reads_pod_labels() -> None:
    by_pod = gnp("web-only", selector="app == 'web'", types=["Ingress", "Egress"])
    view = cluster(*NAMESPACES, by_pod)
    pod_mode = config(coverage="pod")
    assert review(deployment("web"), view, pod_mode).allowed
    assert not review(deployment("db"), view, pod_mode).allowed
    assert not review(deployment("web"), view).allowed  # namespace mode: not every pod of shop


def test_namespace_netpol_and_source_add_up() -> None:
    ingress_np = {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
                  "metadata": {"name": "deny-in", "namespace": "shop"},
                  "spec": {"podSelector": {}, "policyTypes": ["Ingress"]}}
    egress_gnp = gnp("deny-out", types=["Egress"])
    assert review(deployment(), cluster(*NAMESPACES, ingress_np, egress_gnp)).allowed


def delete(obj: dict[str, Any], view: ClusterState, **kwargs: Any) -> Any:
    return review(None, view, operation="DELETE", old=obj, **kwargs)  # type: ignore[arg-type]


def test_deleting_a_cluster_wide_deny_that_namespaces_rely_on_is_refused() -> None:
    policy = gnp(**RECOMMENDED)
    names = [f"team-{i}" for i in range(7)]
    view = cluster(*[namespace(n) for n in names], namespace("gone", terminating=True),
                   namespace("kube-system"), policy)
    decision = delete(policy, view)
    assert rule_ids(decision) == {"protect-deny-all"}
    message = decision.violations[0].message
    assert message.startswith("protect-deny-all: deleting GlobalNetworkPolicy deny-app-policy would leave "
                              "7 namespaces without default-deny: team-0 (Ingress and Egress), team-1")
    assert message.endswith("and 2 more")
    assert "gone" not in message and "kube-system" not in message
    assert decision.namespace == ""
    # Covered by their own NetworkPolicies as well: nothing is lost.
    covered = cluster(*[namespace(n) for n in names], *[deny_all(n) for n in names], policy)
    assert delete(policy, covered).allowed
    audit = delete(policy, view, cfg=config(mode="audit"))
    assert audit.allowed and rule_ids(audit) == {"protect-deny-all"}


def test_updates_that_weaken_and_creations_that_void_are_refused() -> None:
    policy = cnp("default-deny", **deny_both())
    view = cluster(namespace("shop"), policy)
    weakened = cnp("default-deny", ingress=deny_both()["ingress"],
                   egress=[{"action": "Deny", "to": [{"networks": ["0.0.0.0/0"]}]}])
    decision = review(weakened, view, operation="UPDATE", old=policy)
    assert rule_ids(decision) == {"protect-deny-all"}
    assert "this change to ClusterNetworkPolicy default-deny would leave 1 namespace without default-deny: " \
           "shop (Egress)" in decision.violations[0].message
    assert review(policy, view, operation="UPDATE", old=policy).allowed
    opener = cnp("open-all", "Admin", 0, ingress=[{"action": "Accept", "from": [{"namespaces": {}}]}])
    decision = review(opener, view)
    assert rule_ids(decision) == {"protect-deny-all"}
    assert "creating ClusterNetworkPolicy open-all" in decision.violations[0].message
    assert review(cnp("more", **deny_both()), view).allowed


def test_deleting_a_namespace_netpol_is_allowed_when_a_source_still_covers() -> None:
    view = cluster(namespace("shop"), deny_all("shop"), gnp(**RECOMMENDED))
    assert delete(deny_all("shop"), view).allowed
    alone = cluster(namespace("shop"), deny_all("shop"))
    assert not delete(deny_all("shop"), alone).allowed


def test_calico_networkpolicy_is_not_read_as_a_kubernetes_one() -> None:
    calico = {"apiVersion": "projectcalico.org/v3", "kind": "NetworkPolicy",
              "metadata": {"name": "deny", "namespace": "shop"},
              "spec": {"selector": "all()", "types": ["Ingress", "Egress"], "ingress": [{"action": "Deny"}]}}
    view = cluster(namespace("shop"), calico)
    assert review(deployment(), view).allowed
    assert view.policies("shop") == ()
    decision = delete(calico, view)
    assert "deleting NetworkPolicy shop/deny would leave 1 namespace" in decision.violations[0].message


def test_cached_coverage_follows_changes() -> None:
    view = ClusterState()
    view.replace_all([parse_namespace(namespace("shop", {"team": "a"}))], [])
    assert not view.coverage("shop").complete
    policy = parse_source_policy(cnp("d", subject={"namespaces": {"matchLabels": {"team": "a"}}}, **deny_both()))
    assert policy is not None
    view.set_source_policy(policy)
    assert view.coverage("shop").complete
    view.set_namespace(parse_namespace(namespace("shop", {"team": "b"})))
    assert not view.coverage("shop").complete
    view.set_namespace(parse_namespace(namespace("shop", {"team": "a"})))
    assert view.coverage("shop").complete
    view.remove_source_policy(policy.key)
    assert not view.coverage("shop").complete
    assert view.source_policies("shop") == ()


def test_config_coverage_sources() -> None:
    assert "calicoGlobalNetworkPolicy" in config().coverage_sources
    with pytest.raises(ConfigError, match="unknown coverage source"):
        config_from_data({"coverageSources": ["networkPolicy", "calico"]})
    with pytest.raises(ConfigError, match="networkPolicy must be listed"):
        config_from_data({"coverageSources": ["ciliumNetworkPolicy"]})


def test_check_reports_cluster_scoped_kinds_with_empty_namespace(tmp_path: Path) -> None:
    bundle = tmp_path / "bundle.yaml"
    documents = [gnp(**RECOMMENDED), cnp("base", **deny_both()), deployment(), pod("p", "shop")]
    bundle.write_text("\n---\n".join(json.dumps(d) for d in documents))
    report = run_check([str(bundle)], config())
    rows = json.loads(render(report, "json"))["results"]
    assert [(r["kind"], r["namespace"], r["allowed"]) for r in rows] == [
        ("GlobalNetworkPolicy", "", True), ("ClusterNetworkPolicy", "", True),
        ("Deployment", "shop", True), ("Pod", "shop", True)]
    only_np = run_check([str(bundle)], config(coverageSources=["networkPolicy"]))
    assert [r.decision.allowed for r in only_np.results] == [True, True, False, False]


def test_only_reasons_for_uncovered_directions_are_named() -> None:
    egress_np = {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
                 "metadata": {"name": "deny-out", "namespace": "shop"},
                 "spec": {"podSelector": {}, "policyTypes": ["Egress"]}}
    no_http = cnp("no-http", ingress=[{"action": "Deny", "from": [{"namespaces": {}}],
                                       "protocols": [{"tcp": {"destinationPort": {"number": 80}}}]}])
    decision = review(deployment(), cluster(*NAMESPACES, egress_np, no_http))
    message = decision.violations[0].message
    assert message.endswith("has no default-deny for Ingress (covered Egress: deny-out); seen but not counting: "
                            "ClusterNetworkPolicy no-http: its Ingress Deny is limited to TCP 80")
