"""Generation, the pure part: which namespaces are governed, the exact policies, and that they pass our rules."""

from __future__ import annotations

from typing import Any

import pytest

from tests.unit.helpers import deny_all, namespace, netpol
from webhook.core.config import ConfigError, config_from_data
from webhook.core.coverage import Isolation, namespace_coverage
from webhook.core.engine import Engine, Request, User
from webhook.core.generate import Generation, own_rule_violations
from webhook.core.netpol import parse_network_policy
from webhook.core.state import ClusterState, parse_namespace

ON: dict[str, Any] = {"generate": {"enabled": True}}


def gen(data: dict[str, Any] | None = None) -> Generation:
    return Generation(config_from_data(data if data is not None else ON))


def info(name: str, labels: dict[str, str] | None = None, terminating: bool = False,
         created: str | None = None) -> Any:
    obj = namespace(name, labels, terminating)
    if created is not None:
        obj["metadata"]["creationTimestamp"] = created
    return parse_namespace(obj)


def test_defaults() -> None:
    settings = config_from_data({}).generate
    assert settings.enabled is False
    assert settings.policy_name == "netpol-guard-default-deny"
    assert settings.allow_dns is True
    assert settings.opt_out_label.key == "netpol-guard.io/generate"


def test_the_exact_policies() -> None:
    deny, dns = gen().policies("shop")
    labels = {"app.kubernetes.io/managed-by": "netpol-guard"}
    assert deny["metadata"]["name"] == "netpol-guard-default-deny"
    assert deny["metadata"]["namespace"] == "shop"
    assert deny["metadata"]["labels"] == labels
    assert "netpol-guard.io/generate=false" in deny["metadata"]["annotations"]["netpol-guard.io/opt-out"]
    assert deny["spec"] == {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}
    assert dns["metadata"]["name"] == "netpol-guard-allow-dns"
    assert dns["metadata"]["labels"] == labels
    assert dns["spec"] == {
        "podSelector": {},
        "policyTypes": ["Egress"],
        "egress": [{
            "to": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}},
                    "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}}}],
            "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}],
        }],
    }


def test_without_dns_only_the_deny_all_and_names_are_configurable() -> None:
    policies = gen({"generate": {"enabled": True, "allowDNS": False, "policyName": "deny"}}).policies("a")
    assert [p["metadata"]["name"] for p in policies] == ["deny"]


def test_dns_target_is_configurable() -> None:
    custom = {"generate": {"enabled": True, "dns": {
        "namespaceSelector": {"matchLabels": {"role": "dns"}},
        "podSelector": {"matchExpressions": [{"key": "app", "operator": "In", "values": ["coredns"]}]}}}}
    dns = gen(custom).policies("a")[1]
    assert dns["spec"]["egress"][0]["to"] == [{
        "namespaceSelector": {"matchLabels": {"role": "dns"}},
        "podSelector": {"matchExpressions": [{"key": "app", "operator": "In", "values": ["coredns"]}]},
    }]


def test_generated_policies_pass_our_own_rules_through_the_engine() -> None:
    config = config_from_data(ON)
    engine = Engine(config, offline=True)  # offline: explicit-policy-types is judged too
    for policy in Generation(config).policies("shop"):
        decision = engine.review(Request("NetworkPolicy", "CREATE", "shop", policy["metadata"]["name"],
                                         object=policy), ClusterState())
        assert decision.judged and decision.violations == (), policy["metadata"]["name"]
    assert own_rule_violations(config) == []


def test_generated_policies_cover_the_namespace() -> None:
    policies = [parse_network_policy(p) for p in gen().policies("shop")]
    assert namespace_coverage(policies) == Isolation(("netpol-guard-default-deny",),
                                                     ("netpol-guard-allow-dns", "netpol-guard-default-deny"))


def test_a_dns_target_breaking_our_rules_is_reported() -> None:
    config = config_from_data({"generate": {"enabled": True, "dns": {"namespaceSelector": {}, "podSelector": {}}}})
    problems = own_rule_violations(config)
    assert len(problems) == 1 and "netpol-guard-allow-dns" in problems[0] and "any-namespace" in problems[0]


@pytest.mark.parametrize(("namespace_info", "why"), [
    (info("kube-system"), "namespace kube-system is exempt by name"),
    (info("netpol-guard"), "namespace netpol-guard is exempt by name"),
    (info("legacy"), "namespace legacy is exempt by name"),
    (info("lab", {"tier": "lab"}), "namespace lab is exempt by label (tier=lab)"),
    (info("out", {"netpol-guard.io/generate": "false"}), "namespace out opted out (netpol-guard.io/generate=false)"),
    (info("dying", terminating=True), "namespace dying is terminating"),
    (info("other", {"team": "b"}), "namespace other does not match generate.namespaceSelector (team=a)"),
    (info("shop", {"team": "a"}), None),
    (info("shop", {"team": "a", "netpol-guard.io/generate": "true"}), None),
])
def test_which_namespaces_are_governed(namespace_info: Any, why: str | None) -> None:
    generation = gen({
        "exemptions": {"namespaces": ["legacy"], "namespaceSelector": {"matchLabels": {"tier": "lab"}}},
        "generate": {"enabled": True, "namespaceSelector": {"matchLabels": {"team": "a"}}},
    })
    assert generation.not_governed(namespace_info) == why


def test_plan_skips_a_namespace_already_covered() -> None:
    covered = namespace_coverage([parse_network_policy(deny_all("shop", "own-deny"))])
    plan = gen().plan(info("shop"), covered)
    assert plan.policies == () and plan.skip == "namespace shop is already covered (own-deny)"
    half = namespace_coverage([parse_network_policy(netpol("in", "shop", policyTypes=["Ingress"]))])
    assert gen().plan(info("shop"), half).names == ("netpol-guard-default-deny", "netpol-guard-allow-dns")


def test_waits_only_for_young_governed_uncovered_namespaces() -> None:
    generation = gen()
    created = "2026-11-22T20:00:00Z"
    young = info("shop", created=created)
    at = young.created
    assert at is not None
    assert generation.awaits_generation(young, Isolation(), at + 3) is True
    assert generation.awaits_generation(young, Isolation(), at + 11) is False
    assert generation.awaits_generation(young, Isolation(("d",), ("d",)), at + 1) is False
    assert generation.awaits_generation(info("kube-public", created=created), Isolation(), at + 1) is False
    assert generation.awaits_generation(info("shop"), Isolation(), at + 1) is False  # no creationTimestamp
    assert gen({}).awaits_generation(young, Isolation(), at + 1) is False  # generation off


def test_opt_out_label_is_protected_only_with_generation_on() -> None:
    assert "netpol-guard.io/generate" not in config_from_data({}).protected_label_keys()
    keys = config_from_data({"generate": {"enabled": True, "namespaceSelector": {"matchLabels": {"team": "a"}}}}
                            ).protected_label_keys()
    assert {"netpol-guard.io/generate", "team"} <= keys


def test_only_admins_may_opt_a_namespace_out() -> None:
    engine = Engine(config_from_data(ON))
    opted_out = namespace("shop", {"netpol-guard.io/generate": "false"})
    request = Request("Namespace", "CREATE", "", "shop", object=opted_out, user=User("dev"))
    decision = engine.review(request, ClusterState())
    assert [v.rule for v in decision.denials] == ["protected-labels"]
    admin = Request("Namespace", "CREATE", "", "shop", object=opted_out,
                    user=User("root", frozenset({"system:masters"})))
    assert engine.review(admin, ClusterState()).violations == ()


@pytest.mark.parametrize(("data", "field"), [
    ({"generate": {"policyName": "Not_Valid"}}, "generate.policyName"),
    ({"generate": {"allowDNS": True, "policyName": "x", "dnsPolicyName": "x"}}, "dnsPolicyName must differ"),
    ({"generate": {"leaseDurationSeconds": 5, "renewDeadlineSeconds": 8}}, "renewDeadlineSeconds"),
    ({"generate": {"waitSeconds": 5}}, "generate.waitSeconds"),
    ({"generate": {"bogus": 1}}, "generate.bogus: unknown key"),
])
def test_bad_generate_settings_are_named(data: dict[str, Any], field: str) -> None:
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
        config_from_data(data)


def test_creation_timestamp_is_read() -> None:
    assert info("a", created="2026-11-22T20:00:00Z").created == 1795377600.0
    assert info("a", created="yesterday").created is None
