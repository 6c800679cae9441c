"""What one NetworkPolicy rule opens, taken as a whole: pure helpers the rules (and the VAP export) share.

Rules judge the union of a rule's entries, never one entry at a time: 64 port
ranges of 1,024 ports open every port, 126 /8 blocks open most of the internet,
and a namespaceSelector of `kubernetes.io/metadata.name Exists` is `{}` by
another name. Splitting a range or a CIDR into pieces must never change a verdict,
so these functions compute sizes of unions, not of entries.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from webhook.core.netpol import IPBlock, IPNetwork, Port
from webhook.core.objects import NAME_LABEL
from webhook.core.selectors import LabelSelector

ALL_PORTS = 65535  # ports 1-65535 of one protocol

Interval = tuple[int, int]  # inclusive


def merge_intervals(intervals: Iterable[Interval]) -> list[Interval]:
    """Sorted, disjoint, non-adjacent inclusive intervals covering exactly the same integers."""
    merged: list[Interval] = []
    for low, high in sorted(intervals):
        if merged and low <= merged[-1][1] + 1:
            if high > merged[-1][1]:
                merged[-1] = (merged[-1][0], high)
        else:
            merged.append((low, high))
    return merged


def subtract_intervals(intervals: Iterable[Interval], removed: Iterable[Interval]) -> list[Interval]:
    """`intervals` minus `removed`, both inclusive; the result is merged."""
    result: list[Interval] = []
    cuts = merge_intervals(removed)
    for low, high in merge_intervals(intervals):
        start = low
        for cut_low, cut_high in cuts:
            if cut_high < start or cut_low > high:
                continue
            if cut_low > start:
                result.append((start, cut_low - 1))
            start = max(start, cut_high + 1)
            if start > high:
                break
        if start <= high:
            result.append((start, high))
    return result


def interval_size(intervals: Iterable[Interval]) -> int:
    return sum(high - low + 1 for low, high in intervals)


# ----- ports -----
def port_interval(port: Port) -> Interval | None:
    """The numeric ports one entry opens (all of them for an entry without a port); None for a named port."""
    if port.port is None:
        return (1, ALL_PORTS)
    if isinstance(port.port, str):
        return None
    return (port.port, port.end_port if port.end_port is not None else port.port)


def distinct_ports(ports: Iterable[Port]) -> dict[str, int]:
    """Distinct ports per protocol of one rule's `ports` (ranges and single ports together).

    A named port counts as one port per distinct name: it resolves to one port of each selected pod.
    """
    numeric: dict[str, list[Interval]] = {}
    named: dict[str, set[str]] = {}
    for port in ports:
        interval = port_interval(port)
        if interval is None:
            named.setdefault(port.protocol, set()).add(str(port.port))
        else:
            numeric.setdefault(port.protocol, []).append(interval)
    protocols = sorted(set(numeric) | set(named))
    return {p: interval_size(merge_intervals(numeric.get(p, ()))) + len(named.get(p, ())) for p in protocols}


def ports_overlap(ports: Iterable[Port] | None, wanted: Iterable[tuple[str, Interval]]) -> bool:
    """Whether a rule's ports (None: every port) include any of `wanted` (protocol, interval) numeric ports."""
    wanted = list(wanted)
    if ports is None:
        return bool(wanted)
    for port in ports:
        interval = port_interval(port)
        if interval is None:
            continue  # a named port resolves against pods' containerPorts, never an address outside the cluster
        for protocol, (low, high) in wanted:
            if protocol == port.protocol and interval[0] <= high and low <= interval[1]:
                return True
    return False


# ----- addresses -----
def network_interval(network: IPNetwork) -> Interval:
    return int(network.network_address), int(network.broadcast_address)


def block_intervals(block: IPBlock) -> list[Interval]:
    """The addresses an ipBlock lets through: its CIDR minus its excepts."""
    return subtract_intervals([network_interval(block.cidr)], (network_interval(e) for e in block.excepts))


IPV4_MAPPED = ipaddress.IPv6Network("::ffff:0:0/96")  # ::ffff:a.b.c.d is the IPv4 address a.b.c.d
_MAPPED_LOW, _MAPPED_HIGH = network_interval(IPV4_MAPPED)


def mapped_ipv4_intervals(block: IPBlock) -> list[Interval]:
    """The IPv4 addresses an IPv6 ipBlock lets through as IPv4-mapped addresses (inside ::ffff:0:0/96).

    `::ffff:0:0/96` is every IPv4 address and `::ffff:169.254.169.254/128` the metadata address: a socket that
    connects to one talks IPv4. Exact: the block's intervals (minus excepts) cut to the mapped range.
    """
    if block.cidr.version != 6:
        return []
    return [
        (max(low, _MAPPED_LOW) - _MAPPED_LOW, min(high, _MAPPED_HIGH) - _MAPPED_LOW)
        for low, high in block_intervals(block) if low <= _MAPPED_HIGH and high >= _MAPPED_LOW
    ]


@dataclass(frozen=True, slots=True)
class AddressUnion:
    version: int  # 4 or 6
    addresses: int  # distinct addresses in the union (CIDRs minus excepts)

    @property
    def everything(self) -> bool:
        return self.addresses == (1 << (32 if self.version == 4 else 128))


def address_union(blocks: Iterable[IPBlock]) -> dict[int, AddressUnion]:
    """Per IP family, how many distinct addresses the union of these ipBlocks (each minus its excepts) holds.

    IPv4-mapped IPv6 addresses (::ffff:0:0/96) count as the IPv4 addresses they are, as well as IPv6 ones.
    """
    by_version: dict[int, list[Interval]] = {}
    for block in blocks:
        by_version.setdefault(block.cidr.version, []).extend(block_intervals(block))
        mapped = mapped_ipv4_intervals(block)
        if mapped:
            by_version.setdefault(4, []).extend(mapped)
    return {
        version: AddressUnion(version, interval_size(merge_intervals(intervals)))
        for version, intervals in sorted(by_version.items())
    }


def block_limit(version: int, min_prefix: int) -> int:
    """Addresses in one block of the configured prefix (2**24 for /8 in IPv4)."""
    return 1 << ((32 if version == 4 else 128) - min_prefix)


def too_broad(union: AddressUnion, min_prefix: int) -> bool:
    """More addresses than one /min_prefix block, or every address of the family (always, whatever the prefix)."""
    return union.everything or union.addresses > block_limit(union.version, min_prefix)


def reaches(blocks: Iterable[IPBlock], address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """Whether any of these ipBlocks lets `address` through."""
    return any(block.contains(address) for block in blocks)


# ----- namespaces -----
def selects_every_namespace_by_construction(selector: LabelSelector) -> bool:
    """True for a namespaceSelector that matches every namespace whatever namespaces exist.

    That is `{}`, or no matchLabels and only `Exists` / `NotIn` requirements on kubernetes.io/metadata.name, a
    label every namespace carries (NotIn leaves out a few names, never the namespaces created tomorrow).
    """
    if selector.match_labels:
        return False
    return all(r.key == NAME_LABEL and r.operator in ("Exists", "NotIn") for r in selector.requirements)


def selects_every_namespace(selector: LabelSelector, namespace_labels: Iterable[Mapping[str, str]]) -> bool:
    """True when the selector matches each of the given (existing) namespaces, and there is at least one."""
    seen = False
    for labels in namespace_labels:
        seen = True
        if not selector.matches(labels):
            return False
    return seen
