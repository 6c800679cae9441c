"""NetworkPolicies at the VAP size guard (webhook.vap.MAX_ENTRIES), shaped to cost the most.

Each shape fills both directions up to the guard for the entries the policies count (rules plus peers,
ports, or ports of rules without peers), with the elements that make each policy walk the most: ipBlocks
that hold metadata endpoints excepted by their first excepts, namespaceSelectors of FIRST name-only
expressions, port ranges, and rule lists longer than a chunk. Used by tests/manifests/test_vap_cost.py
(costs against the API server's limits, measured by vapcost), tests/e2e/test_vap.py (the real API server
evaluates them) and tests/bench/bench_vap.py.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from webhook.vap import CHUNK, FIRST, MAX_ENTRIES

Obj = dict[str, Any]
NAME_LABEL = "kubernetes.io/metadata.name"


def netpol(name: str, namespace: str, ingress: list[Obj], egress: list[Obj]) -> Obj:
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"podSelector": {}, "policyTypes": ["Ingress", "Egress"], "ingress": ingress, "egress": egress}}


def metadata_block(index: int) -> Obj:
    """Holds 169.254.169.254, .170.2 and .170.23, all excepted among the first FIRST excepts."""
    return {"ipBlock": {"cidr": "169.254.0.0/16", "except": [
        "169.254.169.254/32", "169.254.170.2/32", "169.254.170.23/32", f"169.254.{index % 100}.0/24",
        f"169.254.{100 + index % 50}.0/24"]}}


def ipv6_metadata_block(index: int) -> Obj:
    return {"ipBlock": {"cidr": "fd00:ec2::/112", "except": [
        "fd00:ec2::254/128", "fd00:ec2::23/128", f"fd00:ec2::{index % 200 + 1000:x}/128", "fd00:ec2::8000/113"]}}


def long_ipv6_metadata_block(index: int) -> Obj:
    """IPv6 written out in full (the API server takes it, with a warning): the longest strings to parse, and
    both IPv6 metadata addresses excepted only by the third except, so every except is read."""
    def full(low: int, prefix: int) -> str:
        return f"fd00:0ec2:0000:0000:0000:0000:0000:{low:04x}/{prefix}"
    return {"ipBlock": {"cidr": full(0, 112), "except": [full(0x8000, 113), full(0x4000, 114), full(0, 118),
                                                         full(0x1000 + index % 256, 128)]}}


def name_only_selector(index: int) -> Obj:
    """FIRST name-only expressions (read in full), more after them, and pod labels: not every pod."""
    expressions = [{"key": NAME_LABEL, "operator": "NotIn", "values": [f"ns-{index}-{k}"]} for k in range(FIRST)]
    expressions.append({"key": "team", "operator": "In", "values": ["a"]})
    return {"namespaceSelector": {"matchExpressions": expressions}, "podSelector": {"matchLabels": {"app": "x"}}}


def port_range(index: int) -> Obj:
    low = 1000 + index % 50000
    return {"port": low, "endPort": low + 1, "protocol": ("TCP", "UDP", "SCTP")[index % 3]}


def _one_rule(peer: Callable[[int], Obj]) -> Callable[[str, str], Obj]:
    """One rule per direction holding MAX_ENTRIES - 1 peers."""
    def build(name: str, namespace: str) -> Obj:
        count = MAX_ENTRIES - 1
        return netpol(name, namespace, [{"from": [peer(i) for i in range(count)]}],
                      [{"to": [peer(i) for i in range(count)]}])
    return build


def _many_rules(peers: int, ports: int, peer: Callable[[int], Obj]) -> Callable[[str, str], Obj]:
    """As many rules as fit, each with `peers` peers and `ports` ports (rules longer than CHUNK)."""
    def build(name: str, namespace: str) -> Obj:
        rules = MAX_ENTRIES // (1 + max(peers, ports))
        assert rules > CHUNK
        def rule(key: str, r: int) -> Obj:
            return {key: [peer(r * peers + k) for k in range(peers)],
                    "ports": [port_range(r * ports + k) for k in range(ports)]}
        return netpol(name, namespace, [rule("from", r) for r in range(rules)], [rule("to", r) for r in range(rules)])
    return build


def _chunked_both(name: str, namespace: str) -> Obj:
    """More rules than a chunk, and in them a peer list longer than a chunk (both walked in chunks)."""
    rules = CHUNK + 4
    long = MAX_ENTRIES - 2 * rules + 1
    def rule(key: str, r: int) -> Obj:
        return {key: [metadata_block(r * long + k) for k in range(long if r == rules // 2 else 1)]}
    return netpol(name, namespace, [rule("from", r) for r in range(rules)], [rule("to", r) for r in range(rules)])


def _open_ports(name: str, namespace: str) -> Obj:
    """Egress rules without peers opening only DNS (allowed by allow-all-egress, walked by metadata's port
    check), ingress rules of ports (port-range)."""
    rules = MAX_ENTRIES // 3
    dns = [{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}]
    return netpol(name, namespace, [{"from": [{"podSelector": {}}], "ports": [port_range(r), port_range(r + 1)]}
                                    for r in range(rules)], [{"ports": dns} for _ in range(rules)])


SHAPES: dict[str, Callable[[str, str], Obj]] = {
    "metadata-blocks-in-one-rule": _one_rule(metadata_block),
    "ipv6-metadata-blocks-in-one-rule": _one_rule(ipv6_metadata_block),
    "long-ipv6-blocks-in-one-rule": _one_rule(long_ipv6_metadata_block),
    "name-selectors-in-one-rule": _one_rule(name_only_selector),
    "ports-in-one-rule": lambda name, namespace: netpol(
        name, namespace, [{"from": [{"podSelector": {}}], "ports": [port_range(i) for i in range(MAX_ENTRIES - 1)]}],
        [{"to": [{"podSelector": {}}], "ports": [port_range(i) for i in range(MAX_ENTRIES - 1)]}]),
    "many-rules-of-one-peer-and-port": _many_rules(1, 1, metadata_block),
    "many-rules-of-two-selectors": _many_rules(2, 1, name_only_selector),
    "many-rules-of-dns-or-ranges": _open_ports,
    "long-rules-of-long-peer-lists": _chunked_both,
}


REALISTIC_RULES = 1950  # a direction's rules plus ports: 5,850 of the guard's 6,000


def realistic(name: str, namespace: str, rules: int = REALISTIC_RULES, last_peer: Obj | None = None) -> Obj:
    """A realistic policy at the guard: `rules` rules a direction, each of one /32 peer and two ports, allowed
    by every rule; `last_peer` is added to the very last egress rule."""
    def rule(key: str, r: int) -> Obj:
        return {key: [{"ipBlock": {"cidr": f"10.{r // 65536}.{r // 256 % 256}.{r % 256}/32"}}],
                "ports": [{"port": 1000 + r % 50000}, {"port": 53, "protocol": "UDP"}]}
    egress = [rule("to", r) for r in range(rules)]
    if last_peer is not None:
        egress[-1]["to"].append(last_peer)
    return netpol(name, namespace, [rule("from", r) for r in range(rules)], egress)


def over_the_guard(name: str, namespace: str) -> Obj:
    """One entry more than the guard counts for rules and peers, in the egress direction only."""
    return netpol(name, namespace, [], [{"to": [{"ipBlock": {"cidr": f"10.{i // 65536}.{i // 256 % 256}.{i % 256}/32"}}
                                                for i in range(MAX_ENTRIES)]}])
