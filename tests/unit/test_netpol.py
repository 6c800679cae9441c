from __future__ import annotations

import ipaddress
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.unit.helpers import netpol
from webhook.core.errors import ObjectError
from webhook.core.netpol import IPBlock, parse_network_policy


@pytest.mark.parametrize(("spec", "expected"), [
    ({}, {"Ingress"}),
    ({"egress": []}, {"Ingress"}),  # an empty egress list is no egress rule
    ({"egress": [{}]}, {"Ingress", "Egress"}),
    ({"policyTypes": []}, {"Ingress"}),  # empty field: defaulted like an absent one
    ({"policyTypes": ["Egress"]}, {"Egress"}),
    ({"policyTypes": ["Egress"], "ingress": [{}]}, {"Egress"}),  # explicit types win over rules present
    ({"policyTypes": ["Ingress"], "egress": [{}]}, {"Ingress"}),
    ({"policyTypes": ["Ingress", "Egress"]}, {"Ingress", "Egress"}),
])
def test_effective_policy_types(spec: dict[str, Any], expected: set[str]) -> None:
    policy = parse_network_policy(netpol("p", **spec))
    assert set(policy.policy_types) == expected
    assert policy.explicit_policy_types == bool(spec.get("policyTypes"))


@pytest.mark.parametrize("rule", [{}, {"from": []}, {"from": None}])
def test_missing_or_empty_from_means_every_source(rule: dict[str, Any]) -> None:
    policy = parse_network_policy(netpol("p", ingress=[rule]))
    assert policy.ingress[0].peers is None
    assert policy.ingress[0].ports is None


def test_peer_and_within_or_across() -> None:
    policy = parse_network_policy(netpol("p", ingress=[{"from": [
        {"namespaceSelector": {"matchLabels": {"team": "a"}}, "podSelector": {"matchLabels": {"app": "x"}}},
        {"podSelector": {"matchLabels": {"app": "y"}}},
    ]}]))
    both, local = policy.ingress[0].peers or ()
    assert both.matches_pod("shop", "other", {"app": "x"}, {"team": "a"})
    assert not both.matches_pod("shop", "other", {"app": "z"}, {"team": "a"})  # AND: pod fails
    assert not both.matches_pod("shop", "other", {"app": "x"}, {"team": "b"})  # AND: namespace fails
    assert local.matches_pod("shop", "shop", {"app": "y"}, {})
    assert not local.matches_pod("shop", "other", {"app": "y"}, {})  # podSelector alone: own namespace only


def test_ports_default_protocol_and_named_ports() -> None:
    policy = parse_network_policy(netpol("p", ingress=[{"ports": [
        {"port": 80}, {"port": "http", "protocol": "UDP"}, {"port": 1000, "endPort": 2000}, {"protocol": "SCTP"},
        {"port": "h2c"},
    ]}]))
    ports = policy.ingress[0].ports or ()
    assert [(p.protocol, p.port, p.end_port) for p in ports] == [
        ("TCP", 80, None), ("UDP", "http", None), ("TCP", 1000, 2000), ("SCTP", None, None), ("TCP", "h2c", None)]


def test_a_quoted_number_is_not_a_port() -> None:
    # The API server refuses "8080": a named port is an IANA service name with at least one letter.
    with pytest.raises(ObjectError) as caught:
        parse_network_policy(netpol("p", ingress=[{"ports": [{"port": 80}, {"port": "8080"}]}]))
    assert str(caught.value) == (
        "spec.ingress[0].ports[1].port: '8080' is a quoted number, which the API server refuses as a named port "
        "(a name needs at least one letter): write 8080 without quotes")


@pytest.mark.parametrize(("rule", "path"), [
    ({"ports": [{"port": 0}]}, "spec.ingress[0].ports[0].port"),
    ({"ports": [{"port": 100, "endPort": 50}]}, "spec.ingress[0].ports[0].endPort"),
    ({"ports": [{"port": "http", "endPort": 90}]}, "spec.ingress[0].ports[0].endPort"),
    ({"ports": [{"port": 80, "protocol": "ICMP"}]}, "spec.ingress[0].ports[0].protocol"),
    ({"from": [{"ipBlock": {"cidr": "10.0.0.0/33"}}]}, "spec.ingress[0].from[0].ipBlock.cidr"),
    ({"from": [{"ipBlock": {"cidr": "10.0.0.0"}}]}, "spec.ingress[0].from[0].ipBlock.cidr"),
    ({"from": [{"ipBlock": {"cidr": "10.0.0.0/8", "except": ["fd00::/8"]}}]},
     "spec.ingress[0].from[0].ipBlock.except[0]"),
    ({"from": [{"ipBlock": {"cidr": "10.0.0.0/8"}, "podSelector": {}}]}, "spec.ingress[0].from[0]"),
    ({"from": [{"ipBlock": {"cidr": "10.0.0.0/8", "except": ["10.0.0.0/8"]}}]},
     "spec.ingress[0].from[0].ipBlock.except[0]"),
    ({"from": [{"ipBlock": {"cidr": "10.0.0.0/8", "except": ["10.0.0.0/16", "11.0.0.0/16"]}}]},
     "spec.ingress[0].from[0].ipBlock.except[1]"),
    ({"from": [{"ipBlock": {"cidr": "10.0.0.0/16", "except": ["10.0.0.0/8"]}}]},
     "spec.ingress[0].from[0].ipBlock.except[0]"),
    ({"from": [{"ipBlock": {"cidr": "fd00:ec2::254%eth0/128"}}]}, "spec.ingress[0].from[0].ipBlock.cidr"),
    ({"from": [{"ipBlock": {"cidr": "fd00::/16", "except": ["fd00:ec2::254%eth0/128"]}}]},
     "spec.ingress[0].from[0].ipBlock.except[0]"),
    ({"ports": [{"port": "80"}]}, "spec.ingress[0].ports[0].port"),
    ({"from": [{}]}, "spec.ingress[0].from[0]"),
    ({"form": []}, "spec.ingress[0]"),
])
def test_malformed_policies_name_the_field(rule: dict[str, Any], path: str) -> None:
    with pytest.raises(ObjectError) as caught:
        parse_network_policy(netpol("p", ingress=[rule]))
    assert caught.value.path == path


def test_host_bits_are_normalised_and_said() -> None:
    policy = parse_network_policy(netpol("p", egress=[{"to": [{"ipBlock": {"cidr": "10.1.2.3/8"}}]}]))
    block = (policy.egress[0].peers or ())[0].ip_block
    assert block is not None
    assert str(block.cidr) == "10.0.0.0/8"
    assert block.normalised
    assert block.describe() == "10.1.2.3/8 (host bits set; means 10.0.0.0/8)"


def test_ipv6_block_with_except() -> None:
    policy = parse_network_policy(netpol("p", egress=[{"to": [
        {"ipBlock": {"cidr": "fd00::/8", "except": ["fd00:ec2::/32"]}}]}]))
    block = (policy.egress[0].peers or ())[0].ip_block
    assert block is not None
    assert block.contains(ipaddress.ip_address("fd01::1"))
    assert not block.contains(ipaddress.ip_address("fd00:ec2::254"))
    assert not block.contains(ipaddress.ip_address("10.0.0.1"))  # other family never matches


@given(
    network=st.ip_addresses(v=4).map(lambda a: ipaddress.ip_network(f"{a}/{int(a) % 33}", strict=False)),
    excluded=st.lists(st.ip_addresses(v=4).map(lambda a: ipaddress.ip_network(f"{a}/{8 + int(a) % 25}",
                                                                                  strict=False)), max_size=3),
    probe=st.ip_addresses(v=4),
)
def test_ip_block_contains_matches_integer_arithmetic(
    network: ipaddress.IPv4Network, excluded: list[ipaddress.IPv4Network], probe: ipaddress.IPv4Address,
) -> None:
    block = IPBlock(cidr=network, excepts=tuple(excluded), written=str(network))

    def inside(net: ipaddress.IPv4Network) -> bool:
        mask = (0xFFFFFFFF << (32 - net.prefixlen)) & 0xFFFFFFFF
        return int(probe) & mask == int(net.network_address)

    assert block.contains(probe) == (inside(network) and not any(inside(e) for e in excluded))


@given(address=st.ip_addresses(), prefix=st.integers(min_value=0, max_value=128))
def test_cidr_normalisation_keeps_the_prefix(address: ipaddress.IPv4Address | ipaddress.IPv6Address,
                                             prefix: int) -> None:
    prefix = prefix % (address.max_prefixlen + 1)
    policy = parse_network_policy(netpol("p", egress=[{"to": [{"ipBlock": {"cidr": f"{address}/{prefix}"}}]}]))
    block = (policy.egress[0].peers or ())[0].ip_block
    assert block is not None
    assert block.cidr.prefixlen == prefix
    assert address in block.cidr
    assert block.normalised == (block.cidr.network_address != address)


@pytest.mark.parametrize("name", ["http", "h2c", "a", "my-port", "x" * 15, "8080-web", "web8"])
def test_named_ports_are_iana_service_names(name: str) -> None:
    policy = parse_network_policy(netpol("p", ingress=[{"ports": [{"port": name}]}]))
    assert (policy.ingress[0].ports or ())[0].port == name


@pytest.mark.parametrize("name", ["²", "HTTP", "x" * 16, "-web", "web-", "we--b", "80/tcp", "web_1", "٨٠", "",
                                  "http port"])
def test_other_string_ports_are_bad_input(name: str) -> None:
    with pytest.raises(ObjectError) as caught:
        parse_network_policy(netpol("p", ingress=[{"ports": [{"port": name}]}]))
    assert caught.value.path == "spec.ingress[0].ports[0].port"
    assert "IANA service name" in caught.value.problem or "between 1 and 65535" in caught.value.problem


@pytest.mark.parametrize(("written", "means"), [
    ("010.0.0.0/8", "10.0.0.0/8"), ("192.168.001.000/24", "192.168.1.0/24"), ("0010.000.0.0/016", "10.0.0.0/16"),
])
def test_cidrs_with_leading_zeros_are_decimal_like_the_api_servers_legacy_parser(written: str, means: str) -> None:
    policy = parse_network_policy(netpol("p", egress=[{"to": [{"ipBlock": {"cidr": written, "except": [
        "010.0.0.0/24" if means.startswith("10.") else "192.168.1.0/25"]}}]}]))
    block = (policy.egress[0].peers or ())[0].ip_block
    assert block is not None
    assert str(block.cidr) == means
    assert block.leading_zeros
    assert block.describe() == f"{written} (leading zeros are decimal; means {means})"


@pytest.mark.parametrize("cidr", ["10.0.0.0/255.0.0.0", "256.0.0.0/8", "10.0.0/8", "10.0.0.0/ 8", "10.0.0.0/x"])
def test_cidrs_the_api_server_refuses(cidr: str) -> None:
    with pytest.raises(ObjectError) as caught:
        parse_network_policy(netpol("p", egress=[{"to": [{"ipBlock": {"cidr": cidr}}]}]))
    assert caught.value.path == "spec.egress[0].to[0].ipBlock.cidr"
