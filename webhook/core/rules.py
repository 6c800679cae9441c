"""The rule catalogue: stable ids, what each applies to, and the checks on NetworkPolicy content.

Each check returns Findings (rule id, a one-line reason naming the object and the
field, and the fix). Whether a finding denies or warns is decided by the engine
from the rule's action and the namespace's mode.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Literal

from webhook.core.config import Config, MetadataEndpointSettings, OpenPort
from webhook.core.netpol import IPBlock, NetworkPolicy, Port, Rule
from webhook.core.objects import NAME_LABEL
from webhook.core.reach import (
    address_union,
    block_limit,
    distinct_ports,
    mapped_ipv4_intervals,
    ports_overlap,
    selects_every_namespace,
    selects_every_namespace_by_construction,
    too_broad,
)
from webhook.core.state import NamespaceInfo


@dataclass(frozen=True, slots=True)
class RuleInfo:
    id: str
    applies_to: str
    rejects: str


WORKLOADS = "Pod and the pod templates of Deployment, StatefulSet, DaemonSet, ReplicaSet, " \
    "ReplicationController, Job, CronJob"

CATALOGUE: tuple[RuleInfo, ...] = (
    RuleInfo("deny-all-coverage", WORKLOADS, "landing where deny-all coverage is missing for Ingress and/or Egress"),
    RuleInfo("host-network", WORKLOADS, "hostNetwork: true, which no NetworkPolicy can isolate"),
    RuleInfo("allow-all-ingress", "NetworkPolicy", "an ingress rule with no `from` (every source), "
             "unless all its ports are configured open ports"),
    RuleInfo("allow-all-egress", "NetworkPolicy", "an egress rule with no `to` (every destination), "
             "unless all its ports are configured open ports (default DNS)"),
    RuleInfo("any-namespace", "NetworkPolicy", "a peer whose namespaceSelector selects every namespace ({}, "
             "only Exists/NotIn on kubernetes.io/metadata.name, or every existing one) with no or an empty "
             "podSelector: every pod of every namespace"),
    RuleInfo("broad-cidr", "NetworkPolicy", "a rule whose ipBlocks minus excepts, together, hold more addresses "
             "than one block of the configured prefix (0.0.0.0/0 and ::/0 always)"),
    RuleInfo("metadata-endpoint", "NetworkPolicy", "egress that can reach a cloud metadata address: an ipBlock "
             "holding one, or a rule with no `to` whose ports include the metadata ports"),
    RuleInfo("port-range", "NetworkPolicy", "a rule whose distinct ports per protocol exceed the configured "
             "maximum"),
    RuleInfo("explicit-policy-types", "NetworkPolicy (offline `check` only)", "no policyTypes field"),
    RuleInfo("protect-deny-all", "NetworkPolicy DELETE/UPDATE", "a change that leaves the namespace without coverage"),
    RuleInfo("protected-labels", "Namespace CREATE/UPDATE (and namespaces/status)", "changing labels that "
             "netpol-guard's exemptions, mode overrides or generation (opt-out label, selector) read, or creating a "
             "namespace whose name is exempt, unless the requester is an admin principal"),
)


@dataclass(frozen=True, slots=True)
class Violation:
    """A rule broken by an object: what the checks find and what decisions carry (one type for both).

    The checks produce it with action "deny", what it does when the rule is enforced; the engine then lowers it
    to "warn" (a `warn` rule, or audit mode) or drops it (rule `off`, namespace exempt from the rule).
    """

    rule: str
    message: str  # one line: rule id, object, why
    fix: str | None = None  # one line: what to do about it
    action: Literal["deny", "warn"] = "deny"

    @property
    def text(self) -> str:
        return self.message if self.fix is None else f"{self.message}\n{self.fix}"


Finding = Violation  # what a check returns before the engine applies the rule's action


def policy_findings(
    policy: NetworkPolicy, config: Config, offline: bool, namespaces: Sequence[NamespaceInfo] | None = None,
) -> list[Finding]:
    """Every content rule broken by a NetworkPolicy (actions and exemptions are applied later).

    `namespaces`: every existing namespace, where they are known (webhook, audit), so that
    any-namespace also catches a selector that happens to match all of them.
    """
    ref = f"NetworkPolicy {policy.ref}"
    rules = config.rules
    findings: list[Finding] = []
    # Rules of a direction missing from the effective policyTypes have no effect in Kubernetes: nothing to judge.
    ingress = policy.ingress if "Ingress" in policy.policy_types else ()
    egress = policy.egress if "Egress" in policy.policy_types else ()
    findings += _allow_all(ingress, rules.allow_all_ingress.open_ports, ref, "allow-all-ingress")
    findings += _allow_all(egress, rules.allow_all_egress.open_ports, ref, "allow-all-egress")
    for rule in ingress + egress:
        findings += _any_namespace(rule, ref, namespaces)
        findings += _broad_cidr(rule, ref, rules.broad_cidr.min_prefix_v4, rules.broad_cidr.min_prefix_v6)
        if rule.direction == "Egress":
            findings += _metadata_endpoint(rule, ref, rules.metadata_endpoint)
        findings += _port_range(rule, ref, rules.port_range.max_ports)
    if offline and not policy.explicit_policy_types:
        types = ", ".join(sorted(policy.policy_types))
        findings.append(Finding(
            "explicit-policy-types",
            f"explicit-policy-types: {ref} has no policyTypes, so Kubernetes treats it as [{types}]",
            "fix: state policyTypes, e.g. [Ingress, Egress] for a default-deny of both directions",
        ))
    return findings


def _allow_all(rules: Iterable[Rule], open_ports: list[OpenPort], ref: str, rule_id: str) -> Iterator[Finding]:
    word = "from" if rule_id == "allow-all-ingress" else "to"
    who = "every source" if word == "from" else "every destination"
    allowed = ", ".join(_describe_open(p) for p in open_ports) or "none"
    for rule in rules:
        if rule.peers is not None:
            continue
        if rule.ports is not None and all(_port_is_open(port, open_ports) for port in rule.ports):
            continue
        ports = "all ports" if rule.ports is None else ", ".join(p.describe() for p in rule.ports)
        yield Finding(
            rule_id,
            f"{rule_id}: {ref}: {rule.field} has no '{word}', so it allows {who} on {ports}",
            f"fix: list the allowed peers in '{word}', or open only the configured open ports ({allowed})",
        )


def _describe_open(port: OpenPort) -> str:
    if port.end_port is not None:
        return f"{port.port}-{port.end_port}/{port.protocol}"
    return f"{port.port}/{port.protocol}"


def _port_is_open(port: Port, open_ports: list[OpenPort]) -> bool:
    """True when every port this entry opens is inside the configured open ports."""
    same_protocol = [p for p in open_ports if p.protocol == port.protocol]
    if port.port is None:
        return False
    if isinstance(port.port, str):
        return any(p.port == port.port for p in same_protocol)
    ranges = sorted(
        (p.port, p.end_port if p.end_port is not None else p.port)
        for p in same_protocol if isinstance(p.port, int)
    )
    needed_from = port.port
    needed_to = port.end_port if port.end_port is not None else port.port
    for low, high in ranges:
        if low <= needed_from <= high:
            needed_from = high + 1
            if needed_from > needed_to:
                return True
    return False


def _any_namespace(rule: Rule, ref: str, namespaces: Sequence[NamespaceInfo] | None) -> Iterator[Finding]:
    for index, peer in enumerate(rule.peers or ()):
        selector = peer.namespace_selector
        if selector is None or not (peer.pod_selector is None or peer.pod_selector.is_empty):
            continue
        if selector.is_empty:
            why = "namespaceSelector: {}"
        elif selects_every_namespace_by_construction(selector):
            why = (f"namespaceSelector ({selector.describe()}), which selects every namespace by construction "
                   f"(every namespace carries {NAME_LABEL})")
        elif namespaces is not None and selects_every_namespace(selector, (n.labels for n in namespaces)):
            why = (f"namespaceSelector ({selector.describe()}), which matches every existing namespace "
                   f"({len(namespaces)} of {len(namespaces)})")
        else:
            continue
        yield Finding(
            "any-namespace",
            f"any-namespace: {ref}: {rule.peers_field}[{index}] has {why} "
            f"{'without a podSelector' if peer.pod_selector is None else 'with an empty podSelector'}, "
            "i.e. every pod of every namespace",
            "fix: select namespaces by label (e.g. kubernetes.io/metadata.name In [...]) or add a podSelector",
        )


def _ip_blocks(rule: Rule) -> Iterator[tuple[int, IPBlock]]:
    for index, peer in enumerate(rule.peers or ()):
        if peer.ip_block is not None:
            yield index, peer.ip_block


def _entries(field: str, labelled: Sequence[str], limit: int = 6) -> str:
    """`field[0] a, field[3] b, ... and N more`: which entries add up."""
    shown = ", ".join(labelled[:limit])
    more = f" and {len(labelled) - limit} more" if len(labelled) > limit else ""
    return f"{field}: {shown}{more}"


def _broad_cidr(rule: Rule, ref: str, min_v4: int, min_v6: int) -> Iterator[Finding]:
    blocks = list(_ip_blocks(rule))
    for version, union in address_union(b for _, b in blocks).items():
        minimum = min_v4 if version == 4 else min_v6
        if not too_broad(union, minimum):
            continue
        family = [(i, b) for i, b in blocks
                  if b.cidr.version == version or (version == 4 and mapped_ipv4_intervals(b))]
        limit = block_limit(version, minimum)
        if union.everything:
            why = "every IPv4 address" if version == 4 and any(b.cidr.version == 6 for _, b in family) else \
                "every address (the whole internet)"
        else:
            why = (f"{union.addresses} IPv{version} addresses, {union.addresses - limit} more than one "
                   f"/{minimum} ({limit})")
            if version == 4 and any(b.cidr.version == 6 for _, b in family):
                why += " (IPv4-mapped IPv6 addresses, ::ffff:0:0/96, are IPv4 addresses)"
        if len(family) == 1:
            index, block = family[0]
            where = f"{rule.peers_field}[{index}].ipBlock.cidr {block.describe()}{_excepting(block)} holds"
        else:
            labelled = [f"[{i}] {b.describe()}{_excepting(b)}" for i, b in family]
            where = f"the ipBlocks of {_entries(rule.peers_field, labelled)} together hold"
        yield Finding(
            "broad-cidr",
            f"broad-cidr: {ref}: {where} {why}",
            f"fix: use the narrowest CIDRs that hold the real peers (at most one /{minimum} in all)",
        )


def _excepting(block: IPBlock) -> str:
    return f" except {', '.join(str(e) for e in block.excepts)}" if block.excepts else ""


def _metadata_endpoint(rule: Rule, ref: str, settings: MetadataEndpointSettings) -> Iterator[Finding]:
    if rule.peers is None:
        if ports_overlap(rule.ports, settings.port_intervals):
            ports = "every port" if rule.ports is None else ", ".join(p.describe() for p in rule.ports)
            metadata_ports = ", ".join(_describe_open(p) for p in settings.ports)
            yield Finding(
                "metadata-endpoint",
                f"metadata-endpoint: {ref}: {rule.field} has no 'to' and opens {ports}, so pods can reach the "
                f"cloud metadata endpoints ({', '.join(settings.addresses)}) on {metadata_ports}",
                "fix: list the allowed destinations in 'to' and except the metadata addresses from any ipBlock",
            )
        return
    for index, block in _ip_blocks(rule):
        for address in settings.ip_addresses:
            if block.contains(address):
                mapped = address.version == 4 and block.cidr.version == 6
                host = f"::ffff:{address}/128" if mapped else f"{address}/{address.max_prefixlen}"
                yield Finding(
                    "metadata-endpoint",
                    f"metadata-endpoint: {ref}: {rule.peers_field}[{index}].ipBlock {block.describe()} "
                    f"lets pods reach the cloud metadata endpoint {address}"
                    + (f" (as the IPv4-mapped ::ffff:{address})" if mapped else ""),
                    f"fix: add {host} to ipBlock.except",
                )


def _port_range(rule: Rule, ref: str, max_ports: int) -> Iterator[Finding]:
    # Entries without a port (all ports of a protocol) are what a rule without `ports` means too: not a range.
    ports = [(i, p) for i, p in enumerate(rule.ports or ()) if p.port is not None]
    for protocol, count in distinct_ports(p for _, p in ports).items():
        if count <= max_ports:
            continue
        entries = [(i, p) for i, p in ports if p.protocol == protocol]
        if len(entries) == 1:
            index, port = entries[0]
            where = f"{rule.field}.ports[{index}] opens {port.describe()},"
        else:
            labelled = [f"[{i}] {p.describe()}" for i, p in entries]
            where = f"{_entries(rule.field + '.ports', labelled)} together open"
        yield Finding(
            "port-range",
            f"port-range: {ref}: {where} {count} distinct {protocol} ports, {count - max_ports} more than "
            f"the maximum of {max_ports}",
            "fix: list the ports that are really used, or narrower ranges",
        )


def normalised_cidr_notes(policy: NetworkPolicy) -> list[str]:
    """Say which CIDRs had host bits set or leading zeros, and what Kubernetes reads them as."""
    notes = []
    for rule in policy.rules:
        for index, block in _ip_blocks(rule):
            where = f"NetworkPolicy {policy.ref}: {rule.peers_field}[{index}].ipBlock"
            if block.normalised:
                notes.append(f"{where}.cidr {block.written} has host bits set; it means {block.cidr}")
            if block.leading_zeros:
                notes.append(f"{where} is written with leading zeros, which the API server's legacy CIDR parser "
                             f"reads as decimal, never octal: {block.written} means {block.cidr}"
                             + (f", except {', '.join(map(str, block.excepts))}" if block.excepts else ""))
    return notes
