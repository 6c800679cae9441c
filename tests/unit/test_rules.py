"""One test group per rule of the catalogue: what it rejects, what it lets through, and its message."""

from __future__ import annotations

from typing import Any

import pytest

from tests.unit.helpers import config, deny_all, namespace, netpol, review, rule_ids, state

COVERED = state(deny_all())
NAME = "kubernetes.io/metadata.name"


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
    assert judge({"egress": [{}]}) == {"allow-all-egress", "metadata-endpoint"}
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
    # By construction: every namespace carries kubernetes.io/metadata.name.
    ({"namespaceSelector": {"matchExpressions": [{"key": NAME, "operator": "Exists"}]}}, True),
    ({"namespaceSelector": {"matchExpressions": [{"key": NAME, "operator": "NotIn", "values": ["kube-system"]}]}},
     True),
    ({"namespaceSelector": {"matchExpressions": [{"key": NAME, "operator": "Exists"},
                                                 {"key": NAME, "operator": "NotIn", "values": ["a"]}]},
      "podSelector": {}}, True),
    ({"namespaceSelector": {"matchExpressions": [{"key": NAME, "operator": "In", "values": ["monitoring"]}]}}, False),
    ({"namespaceSelector": {"matchExpressions": [{"key": NAME, "operator": "Exists"}],
                            "matchLabels": {"team": "a"}}}, False),
    ({"namespaceSelector": {"matchExpressions": [{"key": "team", "operator": "Exists"}]}}, False),
    ({"namespaceSelector": {"matchExpressions": [{"key": NAME, "operator": "Exists"}]},
      "podSelector": {"matchLabels": {"app": "x"}}}, False),
])
def test_any_namespace(peer: dict[str, Any], flagged: bool) -> None:
    assert ("any-namespace" in judge({"ingress": [{"from": [peer]}]})) is flagged
    assert ("any-namespace" in judge({"egress": [{"to": [peer]}]})) is flagged


def test_any_namespace_message_says_by_construction() -> None:
    peer = {"namespaceSelector": {"matchExpressions": [{"key": NAME, "operator": "Exists"}]}}
    (violation,) = review(netpol("p", policyTypes=["Ingress"], ingress=[{"from": [peer]}]), COVERED).violations
    assert violation.message == (
        "any-namespace: NetworkPolicy shop/p: spec.ingress[0].from[0] has namespaceSelector "
        "(kubernetes.io/metadata.name), which selects every namespace by construction (every namespace carries "
        "kubernetes.io/metadata.name) without a podSelector, i.e. every pod of every namespace")


def test_any_namespace_message_with_an_empty_pod_selector() -> None:
    peer = {"namespaceSelector": {}, "podSelector": {}}
    (violation,) = review(netpol("p", policyTypes=["Ingress"], ingress=[{"from": [peer]}]), COVERED).violations
    assert violation.message == (
        "any-namespace: NetworkPolicy shop/p: spec.ingress[0].from[0] has namespaceSelector: {} with an empty "
        "podSelector, i.e. every pod of every namespace")


def test_any_namespace_every_existing_namespace_where_namespaces_are_known() -> None:
    cluster = state(deny_all(), namespace("shop", {"env": "prod"}), namespace("db", {"env": "prod"}))
    peer = {"namespaceSelector": {"matchLabels": {"env": "prod"}}}
    policy = netpol("p", policyTypes=["Ingress"], ingress=[{"from": [peer]}])
    (violation,) = review(policy, cluster).violations
    assert violation.rule == "any-namespace"
    assert "(env=prod), which matches every existing namespace (2 of 2)" in violation.message
    # Offline (check), the inputs need not hold every namespace: only by-construction counts.
    assert review(policy, cluster, offline=True).violations == ()
    # One namespace it does not match is enough.
    wider = state(deny_all(), namespace("shop", {"env": "prod"}), namespace("db", {"env": "prod"}),
                  namespace("dev", {"env": "dev"}))
    assert review(policy, wider).violations == ()


# ----- broad-cidr -----
@pytest.mark.parametrize(("cidr", "flagged"), [
    ("0.0.0.0/0", True), ("10.0.0.0/8", False), ("10.0.0.0/7", True), ("192.168.1.0/24", False),
    ("::/0", True), ("2001:db8::/32", False), ("2001:db8::/31", True), ("10.1.2.3/7", True),
])
def test_broad_cidr(cidr: str, flagged: bool) -> None:
    assert ("broad-cidr" in judge({"ingress": [{"from": [{"ipBlock": {"cidr": cidr}}]}]})) is flagged


def blocks(*cidrs: str, excepts: dict[str, list[str]] | None = None) -> list[dict[str, Any]]:
    return [{"ipBlock": {"cidr": c, **({"except": excepts[c]} if excepts and c in excepts else {})}}
            for c in cidrs]


def test_broad_cidr_judges_the_union_of_a_rules_blocks() -> None:
    many = [f"{n}.0.0.0/8" for n in range(1, 127)]
    assert "broad-cidr" in judge({"egress": [{"to": blocks(*many)}]})
    assert "broad-cidr" in judge({"egress": [{"to": blocks("10.0.0.0/8", "11.0.0.0/8")}]})
    # Overlapping blocks count once, and excepts take addresses away.
    assert "broad-cidr" not in judge({"egress": [{"to": blocks("10.0.0.0/8", "10.1.0.0/16")}]})
    assert "broad-cidr" not in judge({"egress": [{"to": blocks("10.0.0.0/7", excepts={"10.0.0.0/7": ["11.0.0.0/8"]})}]})
    # Separate rules are separate; each family has its own limit.
    assert "broad-cidr" not in judge({"egress": [{"to": blocks("10.0.0.0/8")}, {"to": blocks("11.0.0.0/8")}]})
    assert "broad-cidr" not in judge({"egress": [{"to": blocks("10.0.0.0/8", "2001:db8::/32")}]})
    assert "broad-cidr" not in judge({"egress": [{"to": blocks("192.168.0.0/16")}]})


def test_broad_cidr_union_message_names_the_blocks_and_the_excess() -> None:
    decision = review(netpol("p", policyTypes=["Egress"], egress=[{"to": blocks("10.0.0.0/8", "11.0.0.0/9")}]),
                      COVERED)
    (violation,) = decision.violations
    assert violation.message == (
        "broad-cidr: NetworkPolicy shop/p: the ipBlocks of spec.egress[0].to: [0] 10.0.0.0/8, [1] 11.0.0.0/9 "
        "together hold 25165824 IPv4 addresses, 8388608 more than one /8 (16777216)")


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
    # 169.254.170.2 (ECS) and 169.254.170.23 (EKS Pod Identity) are metadata endpoints too.
    ({"cidr": "169.254.0.0/16", "except": ["169.254.169.254/32"]}, True),
    ({"cidr": "169.254.0.0/16", "except": ["169.254.169.0/24"]}, True),
    ({"cidr": "169.254.0.0/16", "except": ["169.254.169.254/32", "169.254.170.0/24"]}, False),
    ({"cidr": "169.254.170.2/32"}, True),
    ({"cidr": "100.100.100.0/24"}, True),
    ({"cidr": "10.0.0.0/8"}, False),
    ({"cidr": "fd00:ec2::/32"}, True),
    ({"cidr": "fd00:ec2::/32", "except": ["fd00:ec2::254/128"]}, True),  # fd00:ec2::23
    ({"cidr": "fd00:ec2::/32", "except": ["fd00:ec2::254/128", "fd00:ec2::23/128"]}, False),
])
def test_metadata_endpoint_on_egress(block: dict[str, Any], flagged: bool) -> None:
    assert ("metadata-endpoint" in judge({"egress": [{"to": [{"ipBlock": block}], "ports": [{"port": 80}]}]})) \
        is flagged


def test_metadata_endpoint_rules_without_to() -> None:
    # An egress rule with no `to` that opens TCP 80 reaches the metadata service, even where allow-all-egress
    # lets it pass through its open ports.
    open_http = config(rules={"allow-all-egress": {"openPorts": [{"port": 80}, {"port": 53, "protocol": "UDP"}]}})
    assert judge({"egress": [{"ports": [{"port": 80}]}]}, open_http) == {"metadata-endpoint"}
    assert judge({"egress": [{"ports": [{"port": 53, "protocol": "UDP"}]}]}, open_http) == set()
    assert judge({"egress": [{}]}) == {"allow-all-egress", "metadata-endpoint"}
    assert judge({"egress": [{"ports": [{"port": 1, "endPort": 1024}]}]}) == {"allow-all-egress", "metadata-endpoint"}
    assert judge({"egress": [{"ports": [{"protocol": "TCP"}]}]}) == {"allow-all-egress", "metadata-endpoint"}
    assert judge({"egress": [{"ports": [{"port": 80, "protocol": "UDP"}]}]}) == {"allow-all-egress"}
    assert judge({"egress": [{"ports": [{"port": "http"}]}]}) == {"allow-all-egress"}  # named: pods only
    # DNS to anywhere stays fine.
    assert judge({"egress": [{"ports": [{"port": 53, "protocol": "UDP"}, {"port": 53}]}]}) == set()


def test_metadata_endpoint_configurable() -> None:
    cfg = config(rules={"metadata-endpoint": {"addresses": ["10.9.9.9"], "ports": [{"port": 8080}]}})
    assert "metadata-endpoint" in judge({"egress": [{"to": blocks("10.0.0.0/8"), "ports": [{"port": 443}]}]}, cfg)
    assert "metadata-endpoint" not in judge({"egress": [{"to": blocks("169.254.0.0/16")}]}, cfg)
    assert "metadata-endpoint" in judge({"egress": [{"ports": [{"port": 8000, "endPort": 8100}]}]}, cfg)
    assert "metadata-endpoint" not in judge({"egress": [{"ports": [{"port": 80}]}]}, cfg)


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


def ports(*entries: tuple[int, int | None] | str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for entry in entries:
        if isinstance(entry, str):
            out.append({"port": entry})
        else:
            out.append({"port": entry[0], **({"endPort": entry[1]} if entry[1] is not None else {})})
    return out


def test_port_range_judges_the_distinct_ports_of_a_rule() -> None:
    peers = [{"podSelector": {}}]
    sixty_four = [(1 + 1024 * i, min(1024 * (i + 1), 65535)) for i in range(64)]
    assert "port-range" in judge({"ingress": [{"from": peers, "ports": ports(*sixty_four)}]})
    assert "port-range" in judge({"ingress": [{"from": peers, "ports": ports((1, 600), (601, 1025))}]})
    # Overlaps count once; protocols are counted apart; three separate ports are fine.
    assert "port-range" not in judge({"ingress": [{"from": peers, "ports": ports((1, 1024), (1, 1024), (80, None))}]})
    assert "port-range" not in judge({"ingress": [{"from": peers, "ports": [
        {"port": 1, "endPort": 1024}, {"port": 1, "endPort": 1024, "protocol": "UDP"}]}]})
    assert "port-range" not in judge({"ingress": [{"from": peers, "ports": ports((80, None), (443, None), "http")}]})
    # Separate rules are separate.
    assert "port-range" not in judge({"ingress": [{"from": peers, "ports": ports((1, 1024))},
                                                  {"from": peers, "ports": ports((1025, 2048))}]})


def test_port_range_message_names_the_entries_and_the_excess() -> None:
    policy = netpol("p", policyTypes=["Ingress"], ingress=[{"from": [{"podSelector": {}}],
                                                            "ports": ports((1, 600), (601, 1030), (80, None))}])
    (violation,) = review(policy, COVERED).violations
    assert violation.message == (
        "port-range: NetworkPolicy shop/p: spec.ingress[0].ports: [0] 1-600/TCP, [1] 601-1030/TCP, [2] 80/TCP "
        "together open 1030 distinct TCP ports, 6 more than the maximum of 1024")
    single = netpol("p", policyTypes=["Ingress"], ingress=[{"from": [{"podSelector": {}}], "ports": ports((1, 2000))}])
    (violation,) = review(single, COVERED).violations
    assert violation.message == ("port-range: NetworkPolicy shop/p: spec.ingress[0].ports[0] opens 1-2000/TCP, "
                                 "2000 distinct TCP ports, 976 more than the maximum of 1024")


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


# ----- IPv4-mapped IPv6 (::ffff:0:0/96) -----
@pytest.mark.parametrize(("cidr", "flagged"), [
    ("::ffff:0:0/96", True),  # every IPv4 address
    ("::ffff:10.0.0.0/104", False),  # 10.0.0.0/8
    ("::ffff:10.0.0.0/103", True),  # 10.0.0.0/7
    ("::/80", True),  # holds ::ffff:0:0/96
    ("64:ff9b::/96", False),  # NAT64: not judged as IPv4 (reaches IPv4 only through a NAT64 gateway)
])
def test_broad_cidr_reads_ipv4_mapped_blocks_as_ipv4(cidr: str, flagged: bool) -> None:
    assert ("broad-cidr" in judge({"egress": [{"to": blocks(cidr), "ports": [{"port": 443}]}]})) is flagged


def test_broad_cidr_mapped_message_and_union_with_ipv4() -> None:
    decision = review(netpol("p", policyTypes=["Egress"], egress=[{"to": blocks("::ffff:0:0/96"),
                                                                    "ports": [{"port": 443}]}]), COVERED)
    (violation,) = [v for v in decision.violations if v.rule == "broad-cidr"]
    assert violation.message == ("broad-cidr: NetworkPolicy shop/p: spec.egress[0].to[0].ipBlock.cidr ::ffff:0:0/96 "
                                 "holds every IPv4 address")
    # A /8 written as IPv4 plus another /8 written IPv4-mapped hold two /8s together.
    decision = review(netpol("p", policyTypes=["Egress"], egress=[{"to": blocks("10.0.0.0/8", "::ffff:11.0.0.0/104"),
                                                                    "ports": [{"port": 443}]}]), COVERED)
    (violation,) = decision.violations
    assert violation.message == (
        "broad-cidr: NetworkPolicy shop/p: the ipBlocks of spec.egress[0].to: [0] 10.0.0.0/8, [1] ::ffff:11.0.0.0/104 "
        "together hold 33554432 IPv4 addresses, 16777216 more than one /8 (16777216) (IPv4-mapped IPv6 addresses, "
        "::ffff:0:0/96, are IPv4 addresses)")


@pytest.mark.parametrize(("block", "flagged"), [
    ({"cidr": "::ffff:169.254.169.254/128"}, True),
    ({"cidr": "::ffff:a9fe:a9fe/128"}, True),
    ({"cidr": "::ffff:0:0/96", "except": ["::ffff:169.254.0.0/112", "::ffff:100.100.100.200/128"]}, False),
    ({"cidr": "::ffff:0:0/96", "except": ["::ffff:169.254.169.254/128"]}, True),  # 169.254.170.2 stays
    ({"cidr": "64:ff9b::a9fe:a9fe/128"}, False),
])
def test_metadata_endpoint_through_ipv4_mapped_addresses(block: dict[str, Any], flagged: bool) -> None:
    spec = {"egress": [{"to": [{"ipBlock": block}], "ports": [{"port": 80}]}]}
    assert ("metadata-endpoint" in judge(spec)) is flagged


def test_metadata_endpoint_mapped_message_names_the_mapped_except() -> None:
    decision = review(netpol("p", policyTypes=["Egress"], egress=[{"to": blocks("::ffff:169.254.169.254/128"),
                                                                    "ports": [{"port": 80}]}]), COVERED)
    (violation,) = decision.violations
    assert violation.message == (
        "metadata-endpoint: NetworkPolicy shop/p: spec.egress[0].to[0].ipBlock ::ffff:169.254.169.254/128 lets pods "
        "reach the cloud metadata endpoint 169.254.169.254 (as the IPv4-mapped ::ffff:169.254.169.254)")
    assert violation.fix == "fix: add ::ffff:169.254.169.254/128 to ipBlock.except"
