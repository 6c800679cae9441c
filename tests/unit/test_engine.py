"""Coverage, workloads, modes, exemptions, protect-deny-all and protected-labels through Engine.review."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from tests.unit.helpers import config, deny_all, namespace, netpol, pod, review, rule_ids, state
from webhook.core.state import NamespaceOverride
from webhook.core.workloads import TEMPLATE_PATHS


def workload(kind: str, labels: dict[str, str] | None = None, host_network: bool = False) -> dict[str, Any]:
    template: dict[str, Any] = {"metadata": {"labels": labels or {"app": "web"}},
                                "spec": {"containers": [{"name": "c", "image": "nginx"}]}}
    if host_network:
        template["spec"]["hostNetwork"] = True
    obj: dict[str, Any] = {"kind": kind, "metadata": {"name": "web", "namespace": "shop"}}
    if kind == "Pod":
        obj.update(template)
        obj["metadata"] = {"name": "web", "namespace": "shop", "labels": labels or {"app": "web"}}
    elif kind == "CronJob":
        obj["spec"] = {"schedule": "* * * * *", "jobTemplate": {"spec": {"template": template}}}
    else:
        obj["spec"] = {"replicas": 1, "template": template}
    return obj


# ----- namespace coverage -----
@pytest.mark.parametrize("kind", sorted(TEMPLATE_PATHS))
def test_every_workload_kind_is_judged(kind: str) -> None:
    uncovered = review(workload(kind), state())
    assert rule_ids(uncovered) == {"deny-all-coverage"}
    assert not uncovered.allowed
    assert review(workload(kind), state(deny_all())).allowed


@pytest.mark.parametrize(("policies", "missing"), [
    ([], "Ingress and Egress"),
    ([netpol("default-deny-ingress", policyTypes=["Ingress"])], "Egress"),
    ([netpol("no-types")], "Egress"),  # no policyTypes and no egress rules: Ingress only
    ([netpol("egress-only", policyTypes=["Egress"])], "Ingress"),
    ([netpol("selective", policyTypes=["Ingress", "Egress"], podSelector={"matchLabels": {"app": "web"}})],
     "Ingress and Egress"),  # not namespace-wide
])
def test_missing_directions_are_named(policies: list[dict[str, Any]], missing: str) -> None:
    decision = review(pod(), state(*policies))
    (violation,) = decision.violations
    assert f"namespace shop has no default-deny for {missing}" in violation.message
    assert violation.fix is not None and '"podSelector":{}' in violation.fix


def test_two_single_direction_policies_cover_together() -> None:
    cluster = state(netpol("default-deny-ingress", policyTypes=["Ingress"]),
                    netpol("default-deny-egress", policyTypes=["Egress"]))
    assert review(pod(), cluster).allowed


def test_allow_rules_inside_the_deny_all_do_not_remove_coverage() -> None:
    cluster = state(netpol("deny-but-dns", policyTypes=["Ingress", "Egress"],
                           egress=[{"ports": [{"port": 53, "protocol": "UDP"}]}]))
    assert review(pod(), cluster).allowed


def test_empty_selector_in_other_spelling_counts() -> None:
    cluster = state(netpol("d", policyTypes=["Ingress", "Egress"], podSelector={"matchExpressions": []}))
    assert review(pod(), cluster).allowed


def test_policies_of_other_namespaces_do_not_count() -> None:
    assert not review(pod(), state(deny_all("other"))).allowed


def test_fix_message_holds_the_exact_default_deny() -> None:
    decision = review(pod(), state(netpol("default-deny-ingress", policyTypes=["Ingress"])))
    assert decision.violations[0].fix == (
        "fix: apply this default-deny first (NetworkPolicies before workloads): "
        '{"apiVersion":"networking.k8s.io/v1","kind":"NetworkPolicy","metadata":{"name":"default-deny-egress",'
        '"namespace":"shop"},"spec":{"podSelector":{},"policyTypes":["Egress"]}}')
    assert decision.confirm_namespace == "shop"


# ----- pod coverage mode and isolation -----
POD_MODE = config(coverage="pod")


def test_pod_mode_uses_the_policies_selecting_the_pod() -> None:
    cluster = state(netpol("web", policyTypes=["Ingress", "Egress"], podSelector={"matchLabels": {"app": "web"}}))
    assert review(pod(labels={"app": "web"}), cluster, POD_MODE).allowed
    other = review(pod(labels={"app": "api"}), cluster, POD_MODE)
    assert rule_ids(other) == {"deny-all-coverage"}
    assert "no NetworkPolicy selecting its pods (app=api) isolates Ingress and Egress" in other.violations[0].message


def test_isolation_is_real_per_pod_whatever_the_mode() -> None:
    cluster = state(netpol("a", policyTypes=["Ingress"], podSelector={"matchLabels": {"app": "web"}}),
                    netpol("b", egress=[{}], podSelector={"matchExpressions": [
                        {"key": "app", "operator": "NotIn", "values": ["db"]}]}))
    web = review(pod(labels={"app": "web"}), cluster)
    assert web.isolation is not None and web.isolation.as_dict() == {"ingress": True, "egress": True}
    assert web.isolation.ingress_by == ("a", "b")
    db = review(pod(labels={"app": "db"}), cluster)
    assert db.isolation is not None and db.isolation.as_dict() == {"ingress": False, "egress": False}
    unlabelled = review(pod(labels={"x": "y"}), cluster)  # NotIn matches a missing key
    assert unlabelled.isolation is not None and unlabelled.isolation.as_dict() == {"ingress": True, "egress": True}


# ----- host-network -----
def test_host_network_is_refused_even_when_covered() -> None:
    decision = review(workload("Deployment", host_network=True), state(deny_all()))
    assert rule_ids(decision) == {"host-network"}
    # Coverage says nothing about pods outside NetworkPolicy: only host-network speaks, whatever the namespace.
    assert rule_ids(review(workload("Deployment", host_network=True), state())) == {"host-network"}
    assert decision.isolation is not None and not decision.isolation.ingress  # outside NetworkPolicy
    assert decision.violations[0].message.startswith(
        "host-network: Deployment shop/web: spec.template.spec.hostNetwork")


# ----- modes -----
def test_audit_mode_warns_instead_of_denying() -> None:
    decision = review(pod(), state(), config(mode="audit"))
    assert decision.allowed
    assert [v.action for v in decision.violations] == ["warn"]
    assert decision.warnings()[0].startswith("[audit mode, not enforced] deny-all-coverage: Pod shop/web")
    assert set(decision.audit_annotations()) == {"deny-all-coverage"}
    assert all("/" not in key for key in decision.audit_annotations())


def test_mode_override_by_namespace_label() -> None:
    cfg = config(modeOverrides=[{"namespaceSelector": {"matchLabels": {"rollout": "audit"}}, "mode": "audit"}])
    assert not review(pod(), state(namespace("shop")), cfg).allowed
    assert review(pod(), state(namespace("shop", {"rollout": "audit"})), cfg).allowed
    flipped = config(mode="audit", modeOverrides=[{"namespaceSelector": {"matchLabels": {"strict": "1"}},
                                                   "mode": "enforce"}])
    assert not review(pod(), state(namespace("shop", {"strict": "1"})), flipped).allowed


# ----- exemptions -----
@pytest.mark.parametrize("name", ["kube-system", "kube-public", "kube-node-lease", "netpol-guard"])
def test_system_namespaces_are_exempt(name: str) -> None:
    decision = review(pod(namespace=name), state())
    assert decision.allowed and decision.violations == () and decision.exempt


def test_exemptions_by_name_label_and_principal() -> None:
    cfg = config(exemptions={"namespaces": ["legacy"],
                             "namespaceSelector": {"matchLabels": {"netpol-guard.io/exempt": "true"}},
                             "principals": {"users": ["ci-bot"], "groups": ["platform"],
                                            "serviceAccounts": ["argocd:argocd-application-controller"]}})
    assert review(pod(namespace="legacy"), state(), cfg).exempt
    assert review(pod(), state(namespace("shop", {"netpol-guard.io/exempt": "true"})), cfg).exempt
    assert review(pod(), state(), cfg, user="ci-bot").exempt
    assert review(pod(), state(), cfg, groups=("platform",)).exempt
    assert review(pod(), state(), cfg, user="system:serviceaccount:argocd:argocd-application-controller").exempt
    assert not review(pod(), state(), cfg, user="bob").allowed


def test_objects_being_deleted_are_never_judged() -> None:
    obj = pod()
    obj["metadata"]["deletionTimestamp"] = "2026-11-22T00:00:00Z"
    assert review(obj, state(), operation="UPDATE", old=pod()).exempt == "the object is being deleted"


# ----- updates -----
def test_controller_updates_are_judged_like_creates() -> None:
    old = workload("Deployment")
    new = copy.deepcopy(old)
    new["spec"]["template"]["metadata"]["labels"]["version"] = "2"
    assert not review(new, state(), operation="UPDATE", old=old).allowed
    assert review(new, state(deny_all()), operation="UPDATE", old=old).allowed


@pytest.mark.parametrize("kind", sorted(set(TEMPLATE_PATHS) - {"Pod"}))
def test_controller_updates_that_keep_the_pod_template_get_no_opinion(kind: str) -> None:
    # Scaling, the garbage collector removing an ownerReference (kubectl delete --cascade=orphan), annotations.
    old = workload(kind)
    new = copy.deepcopy(old)
    new["metadata"]["annotations"] = {"note": "x"}
    new["metadata"]["ownerReferences"] = []
    new.setdefault("spec", {})["replicas"] = 0
    decision = review(new, state(), operation="UPDATE", old=old)
    assert decision.allowed and not decision.judged and decision.violations == ()
    hostile = copy.deepcopy(old)
    template = hostile
    for key in TEMPLATE_PATHS[kind]:
        template = template[key]
    template.setdefault("spec", {})["hostNetwork"] = True
    assert rule_ids(review(hostile, state(deny_all()), operation="UPDATE", old=old)) == {"host-network"}


def test_pod_update_is_judged_only_in_pod_mode() -> None:
    cluster = state(netpol("web", policyTypes=["Ingress", "Egress"], podSelector={"matchLabels": {"app": "web"}}))
    old = pod(labels={"app": "web"})
    new = pod(labels={"app": "other"})
    assert review(new, cluster, operation="UPDATE", old=old).allowed  # namespace mode: no opinion
    assert not review(new, cluster, POD_MODE, operation="UPDATE", old=old).allowed
    assert review(old, cluster, POD_MODE, operation="UPDATE", old=old).allowed


# ----- protect-deny-all -----
def test_deleting_the_last_deny_all_is_refused() -> None:
    policy = deny_all()
    decision = review(None, state(policy), operation="DELETE", old=policy)  # type: ignore[arg-type]
    assert rule_ids(decision) == {"protect-deny-all"}
    assert decision.violations[0].message == (
        "protect-deny-all: deleting NetworkPolicy shop/default-deny-all would leave namespace shop without "
        "default-deny for Ingress and Egress")
    assert decision.confirm_namespace == "shop"


def test_deleting_one_of_two_deny_alls_is_allowed() -> None:
    first, second = deny_all(), deny_all(name="backup-deny")
    assert review(None, state(first, second), operation="DELETE", old=first).allowed  # type: ignore[arg-type]


def test_delete_without_old_object_uses_the_cached_policy() -> None:
    from webhook.core.config import Config
    from webhook.core.engine import Engine, Request

    request = Request(kind="NetworkPolicy", operation="DELETE", namespace="shop", name="default-deny-all")
    decision = Engine(Config()).review(request, state(deny_all()))
    assert rule_ids(decision) == {"protect-deny-all"}
    other = Request(kind="NetworkPolicy", operation="DELETE", namespace="shop", name="not-cached")
    assert Engine(Config()).review(other, state(deny_all())).allowed


def test_deleting_in_a_terminating_namespace_is_allowed() -> None:
    policy = deny_all()
    cluster = state(policy, namespace("shop", terminating=True))
    assert review(None, cluster, operation="DELETE", old=policy).allowed  # type: ignore[arg-type]


def test_deleting_other_policies_is_allowed() -> None:
    allow = netpol("allow-web", policyTypes=["Ingress"], ingress=[{"from": [{"podSelector": {}}]}])
    assert review(None, state(deny_all(), allow), operation="DELETE", old=allow).allowed  # type: ignore[arg-type]


def test_update_that_narrows_the_deny_all_is_refused() -> None:
    old = deny_all()
    new = netpol("default-deny-all", policyTypes=["Ingress"])
    decision = review(new, state(old), operation="UPDATE", old=old)
    assert rule_ids(decision) == {"protect-deny-all"}
    assert "without default-deny for Egress" in decision.violations[0].message


def test_live_override_view_replaces_one_namespace() -> None:
    cached = state()
    from webhook.core.netpol import parse_network_policy
    fresh = NamespaceOverride(cached, "shop", [parse_network_policy(deny_all())])
    assert review(pod(), fresh).allowed  # type: ignore[arg-type]
    assert not review(pod(namespace="other"), fresh).allowed  # type: ignore[arg-type]


# ----- protected-labels -----
PROTECTING = config(exemptions={"namespaceSelector": {"matchLabels": {"netpol-guard.io/exempt": "true"}}},
                    modeOverrides=[{"namespaceSelector": {"matchExpressions": [
                        {"key": "rollout", "operator": "Exists"}]}, "mode": "audit"}])


def test_protected_labels_cannot_be_added_changed_or_removed() -> None:
    plain = namespace("shop", {"team": "a"})
    exempted = namespace("shop", {"team": "a", "netpol-guard.io/exempt": "true"})
    adding = review(exempted, state(), PROTECTING, operation="UPDATE", old=plain)
    assert rule_ids(adding) == {"protected-labels"}
    assert "adds netpol-guard.io/exempt=true" in adding.violations[0].message
    removing = review(plain, state(), PROTECTING, operation="UPDATE", old=namespace("shop", {"rollout": "x"}))
    assert "removes rollout=x" in removing.violations[0].message
    assert not review(namespace("new", {"rollout": "1"}), state(), PROTECTING).allowed
    assert review(namespace("shop", {"team": "b"}), state(), PROTECTING, operation="UPDATE", old=plain).allowed


def test_admins_may_change_protected_labels() -> None:
    plain = namespace("shop")
    exempted = namespace("shop", {"netpol-guard.io/exempt": "true"})
    assert review(exempted, state(), PROTECTING, operation="UPDATE", old=plain, groups=("system:masters",)).allowed


def test_the_name_label_set_by_the_api_server_is_never_a_change() -> None:
    cfg = config(modeOverrides=[{"namespaceSelector": {"matchExpressions": [
        {"key": "kubernetes.io/metadata.name", "operator": "In", "values": ["shop"]}]}, "mode": "audit"}])
    assert review(namespace("shop", {"kubernetes.io/metadata.name": "shop"}), state(), cfg).allowed


def test_unknown_kinds_have_no_opinion() -> None:
    decision = review({"kind": "ConfigMap", "metadata": {"name": "c", "namespace": "shop"}}, state())
    assert decision.allowed and not decision.judged


def test_protected_labels_follow_the_global_mode_not_the_namespace_override() -> None:
    audit_ns = namespace("shop", {"rollout": "on"})
    stripped = namespace("shop", {"rollout": "on", "netpol-guard.io/exempt": "true"})
    decision = review(stripped, state(audit_ns), PROTECTING, operation="UPDATE", old=audit_ns)
    assert [(v.rule, v.action) for v in decision.violations] == [("protected-labels", "deny")]


def test_label_exemptions_do_not_open_protected_labels() -> None:
    cfg = config(exemptions={"namespaceSelector": {"matchLabels": {"netpol-guard.io/exempt": "true"}},
                             "principals": {"users": ["ci"]}})
    exempted = namespace("shop", {"netpol-guard.io/exempt": "true"})
    # An exempt namespace may not shed (or change) its own exemption label without an admin...
    assert rule_ids(review(namespace("shop"), state(exempted), cfg, operation="UPDATE", old=exempted)) == \
        {"protected-labels"}
    # Exempt principals are trusted with everything, as the contract says (e.g. a GitOps controller).
    assert review(exempted, state(), cfg, operation="UPDATE", old=namespace("shop"), user="ci").exempt


def test_deleting_a_single_direction_default_deny_is_refused() -> None:
    ingress_only = netpol("default-deny-ingress", policyTypes=["Ingress"])
    decision = review(None, state(ingress_only), operation="DELETE", old=ingress_only)  # type: ignore[arg-type]
    assert rule_ids(decision) == {"protect-deny-all"}
    assert decision.violations[0].message.endswith("without default-deny for Ingress")


def test_normalised_cidrs_are_noted() -> None:
    policy = netpol("p", policyTypes=["Egress"], egress=[{"to": [{"ipBlock": {"cidr": "10.1.2.3/16"}}],
                                                           "ports": [{"port": 443}]}])
    decision = review(policy, state(deny_all()))
    assert decision.allowed and decision.violations == ()
    assert decision.notes == ("NetworkPolicy shop/p: spec.egress[0].to[0].ipBlock.cidr 10.1.2.3/16 has host bits "
                              "set; it means 10.1.0.0/16",)


# ----- stored objects we cannot read -----
UNREADABLE = netpol("legacy", policyTypes=["Ingress", "Egress"], ingress=[{"ports": [{"port": "Not_A_Name"}]}])


def test_an_unreadable_stored_policy_never_blocks_its_own_delete() -> None:
    decision = review(None, state(), operation="DELETE", old=UNREADABLE)  # type: ignore[arg-type]
    assert decision.allowed and decision.violations == ()
    assert decision.notes == ("NetworkPolicy shop/legacy as stored cannot be read (spec.ingress[0].ports[0].port: "
                              "'Not_A_Name' is not a port number or an IANA service name (at most 15 characters "
                              "a-z, 0-9 and '-', at least one letter, no '--', no '-' at either end)); "
                              "judged without it",)
    # Fixing it (an UPDATE to something readable) is judged on the new object alone.
    fixed = deny_all(name="legacy")
    assert review(fixed, state(), operation="UPDATE", old=UNREADABLE).allowed


def test_an_unreadable_policy_never_hides_the_rest_of_its_namespace() -> None:
    from webhook.core.netpol import parse_network_policy
    from webhook.core.state import ClusterState

    cluster = ClusterState()
    cluster.replace_all([], [parse_network_policy(deny_all())], [("shop", "legacy", "spec.ingress[0]: bad")])
    assert review(pod(), cluster).allowed  # judged on the readable deny-all
    cluster.remove_policy("shop", "default-deny-all")
    (violation,) = review(pod(), cluster).violations
    assert violation.message == (
        "deny-all-coverage: Pod shop/web: namespace shop has no default-deny for Ingress and Egress; judged on the "
        "readable policies only, these could not be read: NetworkPolicy shop/legacy: spec.ingress[0]: bad")
    # A later readable version replaces the unreadable entry, and a delete forgets it.
    cluster.set_policy(parse_network_policy(deny_all(name="legacy")))
    assert cluster.unreadable("shop") == {} and review(pod(), cluster).allowed
    cluster.set_unreadable("shop", "legacy", "broken again")
    assert cluster.policies("shop") == () and cluster.unreadable("shop") == {"legacy": "broken again"}
    cluster.remove_policy("shop", "legacy")
    assert cluster.unreadable("shop") == {}


# ----- exempt names -----
EXEMPT_NAMES = config(exemptions={"namespaces": ["monitoring"], "principals": {"users": ["gitops"]}},
                      rules={"broad-cidr": {"exemptNamespaces": ["egress-gateway", "monitoring"]}})


@pytest.mark.parametrize(("name", "sources"), [
    ("monitoring", "exemptions.namespaces, rules.broad-cidr.exemptNamespaces"),
    ("egress-gateway", "rules.broad-cidr.exemptNamespaces"),
])
def test_creating_a_namespace_with_an_exempt_name_needs_an_admin(name: str, sources: str) -> None:
    decision = review(namespace(name), state(), EXEMPT_NAMES)
    (violation,) = decision.violations
    assert (violation.rule, violation.action) == ("protected-labels", "deny")
    assert violation.message == (
        f"protected-labels: Namespace {name}: the name {name} is exempt by name ({sources}); creating a namespace "
        "with an exempt name needs an admin principal")
    assert review(namespace(name), state(), EXEMPT_NAMES, groups=("system:masters",)).allowed
    assert review(namespace(name), state(), EXEMPT_NAMES, user="gitops").allowed  # exempt principal
    assert review(namespace("shop"), state(), EXEMPT_NAMES).allowed


@pytest.mark.parametrize("name", ["kube-system", "kube-public", "kube-node-lease", "netpol-guard"])
def test_built_in_exempt_namespaces_exist_from_the_start_and_are_never_sent(name: str) -> None:
    # The shipped webhook configuration never sends them; check agrees with what the cluster would do.
    assert review(namespace(name), state(), EXEMPT_NAMES).allowed


def test_existing_exempt_namespaces_keep_working() -> None:
    monitoring = namespace("monitoring", {"team": "obs"})
    updated = namespace("monitoring", {"team": "obs", "x": "y"})
    assert review(updated, state(monitoring), EXEMPT_NAMES, operation="UPDATE", old=monitoring).allowed
    assert review(pod(namespace="monitoring"), state(monitoring), EXEMPT_NAMES).exempt == \
        "namespace monitoring is exempt by name"
    off = config(exemptions={"namespaces": ["monitoring"]}, rules={"protected-labels": {"action": "off"}})
    assert review(namespace("monitoring"), state(), off).allowed


@pytest.mark.parametrize("value", ["true", "false", 1, 0, [True], {}])
def test_host_network_that_is_not_a_boolean_is_bad_input_never_false(value: Any) -> None:
    from webhook.core.errors import ObjectError
    deployment = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d", "namespace": "shop"},
                  "spec": {"template": {"spec": {"hostNetwork": value, "containers": []}}}}
    with pytest.raises(ObjectError) as caught:
        review(deployment, state(namespace("shop"), deny_all()))
    assert str(caught.value) == f"spec.template.spec.hostNetwork: must be true or false, not {value!r}"
