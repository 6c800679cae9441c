"""One test group per rule of the catalogue: what it rejects, what it lets through, and its message."""

from __future__ import annotations

from typing import Any

import pytest

from tests.unit.helpers import config, deny_all, netpol, review, rule_ids, state

COVERED = state(deny_all())


def judge(spec: dict[str, Any], cfg: Any = None, offline: bool = False) -> set[str]:
    spec.setdefault("policyTypes", ["Ingress", "Egress"])
    return rule_ids(review(netpol("p", **spec), COVERED, cfg, offline=offline))


# ----- allow-all-ingress -----
@pytest.mark.parametrize("rule", [{}, {"from": []}, {"ports": [{"port": 443}]}])
def test_allow_all_ingress(rule: dict[str, Any]) -> None:
    assert judge({"ingress": [rule]}) == {"allow-all-ingress"}


def test_ingress_with_a_source_is_fine() -> None:
    assert judge({"ingress": [{"from": [{"podSelector": {}}]}]}) == set()


def test_allow_all_ingress_open_ports() -> None:
    cfg = config(rules={"allow-all-ingress": {"openPorts": [{"port": 443}, {"port": 8000, "endPort": 8100}]}})
    assert judge({"ingress": [{"ports": [{"port": 443}]}]}, cfg) == set()
    assert judge({"ingress": [{"ports": [{"port": 8050, "endPort": 8100}]}]}, cfg) == set()
    assert judge({"ingress": [{"ports": [{"port": 443}, {"port": 80}]}]}, cfg) == {"allow-all-ingress"}
    assert judge({"ingress": [{"ports": [{"port": 443, "protocol": "UDP"}]}]}, cfg) == {"allow-all-ingress"}
    assert judge({"ingress": [{"ports": [{"port": 8050, "endPort": 8101}]}]}, cfg) == {"allow-all-ingress"}
    assert judge({"ingress": [{}]}, cfg) == {"allow-all-ingress"}  # no ports: every port


# ----- allow-all-egress -----
def test_allow_all_egress_but_dns_by_default() -> None:
    assert judge({"egress": [{}]}) == {"allow-all-egress"}
    assert judge({"egress": [{"ports": [{"port": 53, "protocol": "UDP"}, {"port": 53}]}]}) == set()
    assert judge({"egress": [{"ports": [{"port": 53}, {"port": 443}]}]}) == {"allow-all-egress"}
    assert judge({"egress": [{"to": [{"podSelector": {}}]}]}) == set()


def test_open_ports_can_be_emptied() -> None:
    cfg = config(rules={"allow-all-egress": {"openPorts": []}})
    assert judge({"egress": [{"ports": [{"port": 53, "protocol": "UDP"}]}]}, cfg) == {"allow-all-egress"}


# ----- any-namespace -----
@pytest.mark.parametrize(("peer", "flagged"), [
    ({"namespaceSelector": {}}, True),
    ({"namespaceSelector": {}, "podSelector": {}}, True),
    ({"namespaceSelector": {"matchLabels": {}}, "podSelector": {"matchExpressions": []}}, True),
    ({"namespaceSelector": {}, "podSelector": {"matchLabels": {"app": "prometheus"}}}, False),
    ({"namespaceSelector": {"matchLabels": {"team": "a"}}}, False),
    ({"podSelector": {}}, False),  # every pod of the policy's own namespace only
])
def test_any_namespace(peer: dict[str, Any], flagged: bool) -> None:
    assert ("any-namespace" in judge({"ingress": [{"from": [peer]}]})) is flagged
    assert ("any-namespace" in judge({"egress": [{"to": [peer]}]})) is flagged


# ----- broad-cidr -----
@pytest.mark.parametrize(("cidr", "flagged"), [
    ("0.0.0.0/0", True), ("10.0.0.0/8", False), ("10.0.0.0/7", True), ("192.168.1.0/24", False),
    ("::/0", True), ("2001:db8::/32", False), ("2001:db8::/31", True), ("10.1.2.3/7", True),
])
def test_broad_cidr(cidr: str, flagged: bool) -> None:
    assert ("broad-cidr" in judge({"ingress": [{"from": [{"ipBlock": {"cidr": cidr}}]}]})) is flagged


def test_broad_cidr_zero_is_always_flagged() -> None:
    cfg = config(rules={"broad-cidr": {"minPrefixV4": 0, "minPrefixV6": 0}})
    assert "broad-cidr" in judge({"ingress": [{"from": [{"ipBlock": {"cidr": "0.0.0.0/0"}}]}]}, cfg)
    assert "broad-cidr" not in judge({"ingress": [{"from": [{"ipBlock": {"cidr": "10.0.0.0/1"}}]}]}, cfg)
    stricter = config(rules={"broad-cidr": {"minPrefixV4": 16}})
    assert "broad-cidr" in judge({"ingress": [{"from": [{"ipBlock": {"cidr": "10.0.0.0/12"}}]}]}, stricter)


def test_broad_cidr_message_says_when_host_bits_were_normalised() -> None:
    decision = review(netpol("p", policyTypes=["Egress"], egress=[{"to": [{"ipBlock": {"cidr": "10.1.2.3/6"}}],
                                                                    "ports": [{"port": 443}]}]), COVERED)
    (violation,) = [v for v in decision.violations if v.rule == "broad-cidr"]
    assert "10.1.2.3/6 (host bits set; means 8.0.0.0/6)" in violation.message
    assert violation.message.startswith("broad-cidr: NetworkPolicy shop/p: spec.egress[0].to[0].ipBlock.cidr")


# ----- metadata-endpoint -----
@pytest.mark.parametrize(("block", "flagged"), [
    ({"cidr": "169.254.0.0/16"}, True),
    ({"cidr": "169.254.169.254/32"}, True),
    ({"cidr": "169.254.0.0/16", "except": ["169.254.169.254/32"]}, False),
    ({"cidr": "169.254.0.0/16", "except": ["169.254.169.0/24"]}, False),
    ({"cidr": "10.0.0.0/8"}, False),
    ({"cidr": "fd00:ec2::/32"}, True),
    ({"cidr": "fd00:ec2::/32", "except": ["fd00:ec2::254/128"]}, False),
])
def test_metadata_endpoint_on_egress(block: dict[str, Any], flagged: bool) -> None:
    assert ("metadata-endpoint" in judge({"egress": [{"to": [{"ipBlock": block}], "ports": [{"port": 80}]}]})) \
        is flagged


def test_metadata_endpoint_is_about_egress_only() -> None:
    assert "metadata-endpoint" not in judge({"ingress": [{"from": [{"ipBlock": {"cidr": "169.254.0.0/16"}}]}]})


# ----- port-range -----
def test_port_range() -> None:
    assert "port-range" not in judge({"ingress": [{"from": [{"podSelector": {}}],
                                                   "ports": [{"port": 1000, "endPort": 2023}]}]})
    assert "port-range" in judge({"ingress": [{"from": [{"podSelector": {}}],
                                               "ports": [{"port": 1000, "endPort": 2024}]}]})
    cfg = config(rules={"port-range": {"maxPorts": 10}})
    assert "port-range" in judge({"egress": [{"to": [{"podSelector": {}}],
                                              "ports": [{"port": 1, "endPort": 11}]}]}, cfg)


# ----- explicit-policy-types -----
def test_explicit_policy_types_only_offline_and_warns() -> None:
    policy = netpol("p", ingress=[{"from": [{"podSelector": {}}]}])
    online = review(policy, COVERED)
    offline = review(policy, COVERED, offline=True)
    assert rule_ids(online) == set()
    assert [(v.rule, v.action) for v in offline.violations] == [("explicit-policy-types", "warn")]
    assert offline.allowed


# ----- actions and per-rule exemptions -----
def test_rule_actions_and_exempt_namespaces() -> None:
    policy = netpol("p", policyTypes=["Ingress"], ingress=[{}])
    assert [v.action for v in review(policy, COVERED).violations] == ["deny"]
    warn = config(rules={"allow-all-ingress": {"action": "warn"}})
    assert [v.action for v in review(policy, COVERED, warn).violations] == ["warn"]
    off = config(rules={"allow-all-ingress": {"action": "off"}})
    assert review(policy, COVERED, off).violations == ()
    exempt = config(rules={"allow-all-ingress": {"exemptNamespaces": ["shop"]}})
    assert review(policy, COVERED, exempt).violations == ()


def test_rules_of_a_direction_outside_policy_types_are_not_judged() -> None:
    # Kubernetes ignores them: explicit policyTypes win over the rules present.
    assert judge({"policyTypes": ["Egress"], "ingress": [{}], "egress": [{"to": [{"podSelector": {}}]}]}) == set()
    assert judge({"policyTypes": ["Ingress"], "ingress": [{"from": [{"podSelector": {}}]}],
                  "egress": [{}, {"to": [{"ipBlock": {"cidr": "0.0.0.0/0"}}]}]}) == set()


def test_quoted_numeric_open_ports_are_numbers() -> None:
    cfg = config(rules={"allow-all-ingress": {"openPorts": [{"port": "80"}]}})
    assert judge({"ingress": [{"ports": [{"port": 80}]}]}, cfg) == set()
