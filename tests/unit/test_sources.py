"""Coverage sources read as their projects define them: what counts, what does not, and why."""

from __future__ import annotations

from typing import Any

import pytest

from webhook.core.errors import ObjectError
from webhook.core.sources import parse_source_policy
from webhook.core.sources.base import SourceCoverage, compose
from webhook.core.state import NamespaceInfo, parse_namespace

SHOP = parse_namespace({"metadata": {"name": "shop", "labels": {"team": "a"}}})
SYSTEM = parse_namespace({"metadata": {"name": "kube-system"}})
EVERYWHERE = [{"networks": ["0.0.0.0/0", "::/0"]}]


def cnp(name: str, tier: str = "Baseline", priority: int = 10, subject: Any = None, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "policy.networking.k8s.io/v1alpha2", "kind": "ClusterNetworkPolicy",
            "metadata": {"name": name},
            "spec": {"tier": tier, "priority": priority, "subject": subject or {"namespaces": {}}, **spec}}


def deny_both(**extra: Any) -> dict[str, Any]:
    return {"ingress": [{"action": "Deny", "from": [{"namespaces": {}}]}],
            "egress": [{"action": "Deny", "to": EVERYWHERE}], **extra}


def anp(name: str, priority: int, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "policy.networking.k8s.io/v1alpha1", "kind": "AdminNetworkPolicy",
            "metadata": {"name": name}, "spec": {"priority": priority, "subject": {"namespaces": {}}, **spec}}


def gnp(name: str = "deny-app-policy", api: str = "projectcalico.org/v3", **spec: Any) -> dict[str, Any]:
    return {"apiVersion": api, "kind": "GlobalNetworkPolicy", "metadata": {"name": name}, "spec": spec}


def ccnp(name: str = "default-deny", **spec: Any) -> dict[str, Any]:
    spec.setdefault("endpointSelector", {})
    return {"apiVersion": "cilium.io/v2", "kind": "CiliumClusterwideNetworkPolicy", "metadata": {"name": name},
            "spec": spec}


def cover(*objects: dict[str, Any], namespace: NamespaceInfo = SHOP,
          pod: dict[str, str] | None = None) -> SourceCoverage:
    policies = [parse_source_policy(o) for o in objects]
    return compose(namespace, [p for p in policies if p is not None], pod)


def reasons(coverage: SourceCoverage) -> list[str]:
    return [text for _, text in coverage.not_counting]


def both(coverage: SourceCoverage) -> tuple[bool, bool]:
    return bool(coverage.ingress_by), bool(coverage.egress_by)


# ----- ClusterNetworkPolicy -----
@pytest.mark.parametrize("tier", ["Admin", "Baseline"])
def test_cnp_default_deny_counts_in_both_tiers(tier: str) -> None:
    coverage = cover(cnp("default-deny", tier, **deny_both()))
    assert coverage.ingress_by == coverage.egress_by == ("ClusterNetworkPolicy default-deny",)


def test_cnp_equivalent_pods_peer_and_split_networks_count() -> None:
    spec = {"ingress": [{"action": "Deny", "from": [{"pods": {"namespaceSelector": {}, "podSelector": {}}}]}],
            "egress": [{"action": "Deny", "to": [{"networks": ["0.0.0.0/0"]}]},
                       {"action": "Deny", "to": [{"networks": ["::/0"]}]}]}
    assert both(cover(cnp("d", **spec))) == (True, True)


def test_cnp_deny_limited_to_a_port_does_not_count_and_says_why() -> None:
    spec = {"ingress": [{"action": "Deny", "from": [{"namespaces": {}}],
                         "protocols": [{"tcp": {"destinationPort": {"number": 80}}}]}]}
    coverage = cover(cnp("no-http", **spec))
    assert both(coverage) == (False, False)
    assert "ClusterNetworkPolicy no-http: its Ingress Deny is limited to TCP 80" in reasons(coverage)


@pytest.mark.parametrize(("egress", "why"), [
    ([{"action": "Deny", "to": [{"namespaces": {}}]}], "does not cover every destination"),
    ([{"action": "Deny", "to": [{"networks": ["0.0.0.0/0"]}]}], "covers only IPv4"),
    ([{"action": "Deny", "to": [{"networks": ["10.0.0.0/8", "::/0"]}]}], "covers only IPv6"),
])
def test_cnp_egress_needs_every_destination(egress: list[Any], why: str) -> None:
    coverage = cover(cnp("d", ingress=deny_both()["ingress"], egress=egress))
    assert both(coverage) == (True, False)
    assert any(why in reason for reason in reasons(coverage))


def test_cnp_ingress_from_some_namespaces_does_not_count() -> None:
    spec = {"ingress": [{"action": "Deny", "from": [{"namespaces": {"matchLabels": {"x": "y"}}}]}]}
    assert not cover(cnp("d", **spec)).ingress_by


def test_cnp_catch_all_accept_before_deny_in_the_same_policy() -> None:
    spec = deny_both()
    spec["ingress"].insert(0, {"action": "Accept", "from": [{"namespaces": {}}]})
    coverage = cover(cnp("d", **spec))
    assert both(coverage) == (False, True)
    # A narrower Accept first is an allow rule: the Deny after it still counts.
    spec["ingress"][0] = {"action": "Accept", "from": [{"namespaces": {"matchLabels": {"a": "b"}}}]}
    assert both(cover(cnp("d", **spec))) == (True, True)


def test_cnp_admin_catch_all_accept_voids_a_baseline_deny_for_the_pods_it_selects() -> None:
    opener = cnp("open", "Admin", 1, {"pods": {"namespaceSelector": {}, "podSelector": {"matchLabels": {"app": "x"}}}},
                 ingress=[{"action": "Accept", "from": [{"namespaces": {}}]}])
    base = cnp("base", **deny_both())
    coverage = cover(base, opener)
    assert both(coverage) == (False, True)  # namespace mode: some pods of shop are opened
    assert any("voided by ClusterNetworkPolicy open" in r for r in reasons(coverage))
    assert both(cover(base, opener, pod={"app": "x"})) == (False, True)
    assert both(cover(base, opener, pod={"app": "y"})) == (True, True)


def test_cnp_pass_voids_only_its_own_tier() -> None:
    passing = cnp("pass", "Admin", 1, ingress=[{"action": "Pass", "from": [{"namespaces": {}}]}])
    assert both(cover(cnp("base", "Baseline", **deny_both()), passing)) == (True, True)
    assert both(cover(cnp("admin", "Admin", 5, **deny_both()), passing)) == (False, True)
    # Lower precedence (higher priority number) does not void; equal priority has no defined order: it may.
    assert both(cover(cnp("admin", "Admin", 0, **deny_both()), passing)) == (True, True)
    assert both(cover(cnp("admin", "Admin", 1, **deny_both()), passing)) == (False, True)


def test_cnp_subject_must_select_every_pod_in_namespace_mode() -> None:
    partial = cnp("d", subject={"pods": {"namespaceSelector": {}, "podSelector": {"matchLabels": {"app": "web"}}}},
                  **deny_both())
    coverage = cover(partial)
    assert both(coverage) == (False, False)
    assert any("does not select every pod" in r for r in reasons(coverage))
    assert both(cover(partial, pod={"app": "web"})) == (True, True)
    other = cnp("d", subject={"namespaces": {"matchLabels": {"team": "b"}}}, **deny_both())
    assert cover(other) == SourceCoverage()


def test_cnp_malformed_names_the_field() -> None:
    with pytest.raises(ObjectError, match=r"spec.tier"):
        parse_source_policy(cnp("d", "Middle"))
    with pytest.raises(ObjectError, match=r"spec.ingress\[0\].action"):
        parse_source_policy(cnp("d", ingress=[{"action": "Allow", "from": [{"namespaces": {}}]}]))
    with pytest.raises(ObjectError, match=r"spec.subject"):
        parse_source_policy(cnp("d", subject={"namespaces": {}, "pods": {}}))
    with pytest.raises(ObjectError, match=r"spec.egress\[0\].to\[0\].networks\[0\]"):
        parse_source_policy(cnp("d", egress=[{"action": "Deny", "to": [{"networks": ["nope"]}]}]))


# ----- AdminNetworkPolicy / BaselineAdminNetworkPolicy -----
def test_anp_and_banp() -> None:
    banp = {"apiVersion": "policy.networking.k8s.io/v1alpha1", "kind": "BaselineAdminNetworkPolicy",
            "metadata": {"name": "default"}, "spec": {"subject": {"namespaces": {}}, **deny_both()}}
    assert cover(banp).ingress_by == ("BaselineAdminNetworkPolicy default",)
    allow_all = anp("open", 3, ingress=[{"action": "Allow", "from": [{"namespaces": {}}]}])
    assert both(cover(banp, allow_all)) == (False, True)
    ports = anp("dns", 3, ingress=[{"action": "Deny", "from": [{"namespaces": {}}],
                                    "ports": [{"portNumber": {"protocol": "UDP", "port": 53}}]}])
    coverage = cover(ports)
    assert not coverage.ingress_by
    assert "AdminNetworkPolicy dns: its Ingress Deny is limited to UDP 53" in reasons(coverage)
    with pytest.raises(ObjectError, match=r"spec\.priority"):
        parse_source_policy(anp("x", 1001))


# ----- Calico -----
RECOMMENDED = {
    "namespaceSelector": 'has(projectcalico.org/name) && projectcalico.org/name not in '
                         '{"kube-system", "calico-system", "calico-apiserver"}',
    "types": ["Ingress", "Egress"],
    "egress": [{"action": "Allow", "protocol": "UDP",
                "destination": {"selector": 'k8s-app == "kube-dns"', "ports": [53]}}],
}


@pytest.mark.parametrize("api", ["projectcalico.org/v3", "crd.projectcalico.org/v1"])
def test_calico_recommended_deny_app_policy(api: str) -> None:
    coverage = cover(gnp(api=api, **RECOMMENDED))
    assert coverage.ingress_by == coverage.egress_by == ("GlobalNetworkPolicy deny-app-policy",)
    assert cover(gnp(api=api, **RECOMMENDED), namespace=SYSTEM) == SourceCoverage()


@pytest.mark.parametrize(("spec", "expected"), [
    ({}, (True, False)),  # no rules: types default to Ingress
    ({"ingress": [{"action": "Deny"}]}, (True, False)),
    ({"egress": [{"action": "Deny"}]}, (False, True)),  # egress rules only: Egress only (not Kubernetes' rule)
    ({"ingress": [{"action": "Deny"}], "egress": [{"action": "Deny"}]}, (True, True)),
    ({"types": ["Egress"], "egress": []}, (False, True)),
])
def test_calico_types_default(spec: dict[str, Any], expected: tuple[bool, bool]) -> None:
    assert both(cover(gnp(**spec))) == expected


def test_calico_catch_all_rules() -> None:
    types = ["Ingress", "Egress"]
    assert both(cover(gnp(types=types, ingress=[{"action": "Allow"}]))) == (False, True)
    assert both(cover(gnp(types=types, ingress=[{"action": "Pass", "source": {}}]))) == (False, True)
    assert both(cover(gnp(types=types, ingress=[{"action": "Log"}, {"action": "Deny"}, {"action": "Allow"}]))) \
        == (True, True)  # the first catch-all decides; Log rules are skipped
    assert both(cover(gnp(types=types, ingress=[{"action": "Allow", "protocol": "TCP"}]))) == (True, True)
    wide = {"action": "Allow", "source": {"nets": ["0.0.0.0/0", "::/0"]}}
    assert both(cover(gnp(types=types, ingress=[wide]))) == (False, True)
    coverage = cover(gnp(types=types, ingress=[{"action": "Allow"}]))
    assert "GlobalNetworkPolicy deny-app-policy: its Ingress rule 0 (Allow, no match criteria) lets everything " \
           "through" in reasons(coverage)


def test_calico_order_and_tiers() -> None:
    deny = gnp("deny", order=100, types=["Ingress", "Egress"])
    assert both(cover(deny, gnp("allow", order=10, ingress=[{"action": "Allow"}]))) == (False, True)
    assert both(cover(deny, gnp("allow", order=200, ingress=[{"action": "Allow"}]))) == (True, True)
    assert both(cover(deny, gnp("allow", ingress=[{"action": "Allow"}]))) == (True, True)  # no order: last
    assert both(cover(deny, gnp("aaa", order=100, ingress=[{"action": "Pass"}]))) == (False, True)  # name breaks ties
    assert both(cover(deny, gnp("zzz", order=100, ingress=[{"action": "Pass"}]))) == (True, True)
    other_tier = gnp("security.open", tier="security", order=500, ingress=[{"action": "Allow"}])
    assert both(cover(deny, other_tier)) == (False, True)  # another tier's order is unknown: assumed first
    passing = gnp("security.pass", tier="security", ingress=[{"action": "Pass"}])
    assert both(cover(deny, passing)) == (True, True)  # Pass goes on to the next tier
    in_tier = gnp("security.deny", tier="security", order=100, types=["Ingress"])
    assert cover(in_tier).ingress_by == ("GlobalNetworkPolicy security.deny",)  # end of tier: Deny
    assert both(cover(in_tier, gnp("security.pass", tier="security", order=1, ingress=[{"action": "Pass"}]))) \
        == (False, False)
    assert both(cover(in_tier, gnp("platform.pass", tier="platform", order=1, ingress=[{"action": "Pass"}]))) \
        == (True, False)


def test_calico_selectors_on_pods_and_namespaces() -> None:
    by_pod = gnp(selector="app == 'web'", types=["Ingress", "Egress"])
    assert both(cover(by_pod)) == (False, False)
    assert both(cover(by_pod, pod={"app": "web"})) == (True, True)
    by_namespace_label = gnp(selector="pcns.team == 'a' && projectcalico.org/namespace == 'shop'",
                             types=["Ingress", "Egress"])
    assert both(cover(by_namespace_label)) == (True, True)
    namespaced = {"apiVersion": "projectcalico.org/v3", "kind": "NetworkPolicy",
                  "metadata": {"name": "deny", "namespace": "shop"}, "spec": {"types": ["Ingress", "Egress"]}}
    assert cover(namespaced).ingress_by == ("NetworkPolicy shop/deny",)
    assert cover(namespaced, namespace=SYSTEM) == SourceCoverage()
    accounts = gnp(serviceAccountSelector="role == 'x'", types=["Ingress"])
    assert not cover(accounts).ingress_by
    host = gnp(types=["Ingress"], doNotTrack=True)
    assert "host endpoints only" in reasons(cover(host))[0]
    with pytest.raises(ObjectError, match=r"spec.namespaceSelector: invalid Calico selector"):
        parse_source_policy(gnp(namespaceSelector="a =="))


# ----- Cilium -----
def test_cilium_sections_and_enable_default_deny() -> None:
    dns = [{"toEndpoints": [{"matchLabels": {"k8s:io.kubernetes.pod.namespace": "kube-system"}}]}]
    allowed_in = [{"fromEndpoints": [{"matchLabels": {"app": "web"}}]}]
    assert both(cover(ccnp(ingress=allowed_in, egress=dns))) == (True, True)
    assert both(cover(ccnp(egress=dns))) == (False, True)
    assert both(cover(ccnp(enableDefaultDeny={"ingress": True, "egress": True}))) == (True, True)
    coverage = cover(ccnp(ingress=allowed_in, egress=dns, enableDefaultDeny={"egress": False}))
    assert both(coverage) == (True, False)
    assert "CiliumClusterwideNetworkPolicy default-deny: enableDefaultDeny.egress is false" in reasons(coverage)
    assert both(cover(ccnp(ingress=[], egress=[]))) == (False, False)  # empty sections do not apply


def test_cilium_catch_alls() -> None:
    assert both(cover(ccnp(ingress=[{}], egress=[{"toEntities": ["all"]}]))) == (False, False)
    assert both(cover(ccnp(egress=[{"toEntities": ["all"], "toPorts": [{"ports": [{"port": "443"}]}]}]))) \
        == (False, True)
    deny_everything = ccnp(ingressDeny=[{"fromEntities": ["all"]}], enableDefaultDeny={"ingress": False})
    assert both(cover(deny_everything)) == (True, False)
    opener = {"apiVersion": "cilium.io/v2", "kind": "CiliumNetworkPolicy",
              "metadata": {"name": "open", "namespace": "shop"},
              "spec": {"endpointSelector": {}, "ingress": [{"fromEntities": ["all"]}]}}
    assert both(cover(ccnp(ingress=[{"fromEndpoints": [{}]}]), opener)) == (False, False)
    assert both(cover(deny_everything, opener)) == (True, False)  # deny wins over every allow


def test_cilium_endpoint_selector() -> None:
    not_system = {"matchExpressions": [{"key": "io.kubernetes.pod.namespace", "operator": "NotIn",
                                        "values": ["kube-system"]}]}
    policy = ccnp(endpointSelector=not_system, enableDefaultDeny={"ingress": True, "egress": True})
    assert both(cover(policy)) == (True, True)
    assert cover(policy, namespace=SYSTEM) == SourceCoverage()
    by_namespace_label = ccnp(endpointSelector={"matchLabels": {"k8s:io.cilium.k8s.namespace.labels.team": "a"}},
                              enableDefaultDeny={"ingress": True})
    assert both(cover(by_namespace_label)) == (True, False)
    by_pod = ccnp(endpointSelector={"matchLabels": {"app": "web"}}, enableDefaultDeny={"ingress": True})
    assert both(cover(by_pod)) == (False, False)
    assert both(cover(by_pod, pod={"app": "web"})) == (True, False)
    namespaced = {"apiVersion": "cilium.io/v2", "kind": "CiliumNetworkPolicy",
                  "metadata": {"name": "deny", "namespace": "other"},
                  "specs": [{"endpointSelector": {}, "enableDefaultDeny": {"ingress": True}}]}
    assert cover(namespaced) == SourceCoverage()
    hosts = ccnp(endpointSelector=None, nodeSelector={}, ingress=[{"fromEntities": ["cluster"]}])
    del hosts["spec"]["endpointSelector"]
    assert cover(hosts) == SourceCoverage()  # a host policy never selects pods
