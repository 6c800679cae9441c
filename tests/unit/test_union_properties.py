"""Property tests: splitting a port range or a CIDR into pieces never changes a verdict.

The rules judge what a rule opens (the union of its entries), so for any split of
a range into sub-ranges and single ports, or of a CIDR into smaller CIDRs (each
keeping the excepts that fall inside it), the decision equals the one on the union.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from tests.unit.helpers import config, deny_all, netpol, review, state
from webhook.core.netpol import parse_network_policy
from webhook.core.reach import address_union, distinct_ports, subtract_intervals

COVERED = state(deny_all())
CFG = config(rules={"port-range": {"maxPorts": 1024}, "broad-cidr": {"minPrefixV4": 8, "minPrefixV6": 32}})


def verdicts(rule: dict[str, Any], direction: str = "egress") -> set[str]:
    policy = netpol("p", policyTypes=["Ingress", "Egress"], **{direction: [rule]})
    return {v.rule for v in review(policy, COVERED, CFG).violations if v.rule in ("port-range", "broad-cidr")}


@st.composite
def split_range(draw: st.DrawFn) -> tuple[tuple[int, int], list[tuple[int, int]]]:
    """A port range and a split of it into consecutive pieces (possibly overlapping, shuffled)."""
    low = draw(st.integers(1, 65535))
    high = draw(st.integers(low, min(65535, low + 5000)))
    cuts = sorted(draw(st.sets(st.integers(low + 1, high), max_size=12))) if high > low else []
    bounds = [low, *cuts, high + 1]
    pieces = [(bounds[i], bounds[i + 1] - 1) for i in range(len(bounds) - 1)]
    overlap = draw(st.booleans())
    if overlap and pieces:
        a, b = pieces[0]
        pieces.append((a, min(b, a + draw(st.integers(0, b - a)))))
    return (low, high), draw(st.permutations(pieces))


def port_entries(pieces: list[tuple[int, int]], protocol: str = "TCP") -> list[dict[str, Any]]:
    return [{"port": a, "protocol": protocol, **({"endPort": b} if b != a else {})} for a, b in pieces]


@settings(max_examples=300, deadline=None)
@given(split_range())
def test_any_split_of_a_port_range_gives_the_verdict_of_the_range(case: Any) -> None:
    whole, pieces = case
    peers = [{"podSelector": {}}]
    union = verdicts({"to": peers, "ports": port_entries([whole])})
    split = verdicts({"to": peers, "ports": port_entries(pieces)})
    assert split == union
    assert ("port-range" in union) == (whole[1] - whole[0] + 1 > 1024)


@st.composite
def split_cidr(draw: st.DrawFn) -> tuple[str, list[str], list[list[str]]]:
    """A CIDR with excepts, and a split of it into sub-CIDRs, each keeping the excepts inside it."""
    version = draw(st.sampled_from([4, 6]))
    bits = 32 if version == 4 else 128
    prefix = draw(st.integers(0, 24) if version == 4 else st.integers(0, 48))
    base = draw(st.integers(0, (1 << bits) - 1)) >> (bits - prefix) << (bits - prefix)
    kind = ipaddress.IPv4Network if version == 4 else ipaddress.IPv6Network
    network = kind((base, prefix))
    excepts = []
    for _ in range(draw(st.integers(0, 3))):
        sub_prefix = draw(st.integers(prefix + 1, min(bits, prefix + 12)))
        offset = draw(st.integers(0, (1 << (sub_prefix - prefix)) - 1))
        excepts.append(kind((base + (offset << (bits - sub_prefix)), sub_prefix)))
    # Split recursively: each piece either stays or halves, a few levels deep.
    pieces = [network]
    for _ in range(draw(st.integers(0, 5))):
        index = draw(st.integers(0, len(pieces) - 1))
        if pieces[index].prefixlen < bits:
            pieces[index:index + 1] = list(pieces[index].subnets(prefixlen_diff=1))
    kept = [[str(e) for e in excepts if e.subnet_of(p)] for p in pieces]
    # An except wider than a piece removes the whole piece: drop that piece instead.
    pairs = [(str(p), k) for p, k in zip(pieces, kept, strict=True)
             if not any(p.subnet_of(e) for e in excepts)]
    return str(network), [str(e) for e in excepts], [[c, *k] for c, k in pairs]


@settings(max_examples=300, deadline=None)
@given(split_cidr())
def test_any_split_of_a_cidr_gives_the_verdict_of_the_cidr(case: Any) -> None:
    whole, excepts, pieces = case
    union = verdicts({"to": [{"ipBlock": {"cidr": whole, **({"except": excepts} if excepts else {})}}]})
    split_peers = [{"ipBlock": {"cidr": c, **({"except": e} if e else {})}} for c, *e in pieces]
    split = verdicts({"to": split_peers}) if split_peers else set()
    assert split == union


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 65535), st.integers(0, 3000)), min_size=1, max_size=20))
def test_distinct_ports_is_the_size_of_the_set(raw: list[tuple[int, int]]) -> None:
    pieces = [(a, min(65535, a + n)) for a, n in raw]
    policy = parse_network_policy(netpol("p", ingress=[{"ports": port_entries(pieces)}]))
    expected = len({p for a, b in pieces for p in range(a, b + 1)})
    assert distinct_ports(policy.ingress[0].ports or ()) == {"TCP": expected}


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 255), st.integers(24, 32)), min_size=1, max_size=8),
       st.lists(st.tuples(st.integers(0, 255), st.integers(26, 32)), max_size=4))
def test_address_union_counts_each_address_once(blocks: list[tuple[int, int]], cuts: list[tuple[int, int]]) -> None:
    networks = [ipaddress.ip_network((0x0A000000 + (host << 0), prefix), strict=False) for host, prefix in blocks]
    peers = []
    for network in networks:
        excepts = [str(ipaddress.ip_network((0x0A000000 + h, p), strict=False)) for h, p in cuts]
        # The API server takes only an except that is a strict subset of its cidr.
        excepts = [e for e in excepts if ipaddress.ip_network(e).subnet_of(network)
                   and ipaddress.ip_network(e).prefixlen > network.prefixlen]
        peers.append({"ipBlock": {"cidr": str(network), **({"except": excepts} if excepts else {})}})
    policy = parse_network_policy(netpol("p", egress=[{"to": peers}]))
    expected: set[int] = set()
    for peer in peers:
        inside = {int(a) for a in ipaddress.ip_network(peer["ipBlock"]["cidr"])}
        for excluded in peer["ipBlock"].get("except", []):
            inside -= {int(a) for a in ipaddress.ip_network(excluded)}
        expected |= inside
    blocks_ = [p.ip_block for p in policy.egress[0].peers or () if p.ip_block is not None]
    assert address_union(blocks_)[4].addresses == len(expected)


def test_subtract_intervals() -> None:
    assert subtract_intervals([(1, 10)], [(3, 4), (8, 20)]) == [(1, 2), (5, 7)]
    assert subtract_intervals([(1, 10), (5, 15)], [(0, 0)]) == [(1, 15)]
    assert subtract_intervals([(1, 10)], [(1, 10)]) == []
