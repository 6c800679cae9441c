"""The rule catalogue: stable ids, what each applies to, and the checks on NetworkPolicy content.

Each check returns Findings (rule id, a one-line reason naming the object and the
field, and the fix). Whether a finding denies or warns is decided by the engine
from the rule's action and the namespace's mode.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from webhook.core.config import Config, OpenPort
from webhook.core.netpol import IPBlock, NetworkPolicy, Port, Rule


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
    RuleInfo("any-namespace", "NetworkPolicy", "a peer with namespaceSelector: {} and no or an empty "
             "podSelector: every pod of every namespace"),
    RuleInfo("broad-cidr", "NetworkPolicy", "an ipBlock.cidr wider than the configured prefix"),
    RuleInfo("metadata-endpoint", "NetworkPolicy", "egress to a block holding the cloud metadata endpoint"),
    RuleInfo("port-range", "NetworkPolicy", "a port range wider than the configured maximum"),
    RuleInfo("explicit-policy-types", "NetworkPolicy (offline `check` only)", "no policyTypes field"),
    RuleInfo("protect-deny-all", "NetworkPolicy DELETE/UPDATE", "a change that leaves the namespace without coverage"),
    RuleInfo("protected-labels", "Namespace CREATE/UPDATE", "changing labels that netpol-guard's exemptions or "
             "mode overrides read, unless the requester is an admin principal"),
)

METADATA_ENDPOINTS = (ipaddress.ip_address("169.254.169.254"), ipaddress.ip_address("fd00:ec2::254"))


@dataclass(frozen=True, slots=True)
class Finding:
    rule: str
    message: str  # one line: rule id, object, why
    fix: str | None = None  # one line: what to do about it

    @property
    def text(self) -> str:
        return self.message if self.fix is None else f"{self.message}\n{self.fix}"


def policy_findings(policy: NetworkPolicy, config: Config, offline: bool) -> list[Finding]:
    """Every content rule broken by a NetworkPolicy (actions and exemptions are applied later)."""
    ref = f"NetworkPolicy {policy.ref}"
    rules = config.rules
    findings: list[Finding] = []
    # Rules of a direction missing from the effective policyTypes have no effect in Kubernetes: nothing to judge.
    ingress = policy.ingress if "Ingress" in policy.policy_types else ()
    egress = policy.egress if "Egress" in policy.policy_types else ()
    findings += _allow_all(ingress, rules.allow_all_ingress.open_ports, ref, "allow-all-ingress")
    findings += _allow_all(egress, rules.allow_all_egress.open_ports, ref, "allow-all-egress")
    for rule in ingress + egress:
        findings += _any_namespace(rule, ref)
        findings += _broad_cidr(rule, ref, rules.broad_cidr.min_prefix_v4, rules.broad_cidr.min_prefix_v6)
        if rule.direction == "Egress":
            findings += _metadata_endpoint(rule, ref)
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


def _any_namespace(rule: Rule, ref: str) -> Iterator[Finding]:
    for index, peer in enumerate(rule.peers or ()):
        selector = peer.namespace_selector
        if selector is None or not selector.is_empty:
            continue
        if peer.pod_selector is None or peer.pod_selector.is_empty:
            yield Finding(
                "any-namespace",
                f"any-namespace: {ref}: {rule.peers_field}[{index}] has namespaceSelector: {{}} "
                "without a podSelector, i.e. every pod of every namespace",
                "fix: select namespaces by label (e.g. kubernetes.io/metadata.name) or add a podSelector",
            )


def _ip_blocks(rule: Rule) -> Iterator[tuple[int, IPBlock]]:
    for index, peer in enumerate(rule.peers or ()):
        if peer.ip_block is not None:
            yield index, peer.ip_block


def _broad_cidr(rule: Rule, ref: str, min_v4: int, min_v6: int) -> Iterator[Finding]:
    for index, block in _ip_blocks(rule):
        minimum = min_v4 if block.cidr.version == 4 else min_v6
        prefix = block.cidr.prefixlen
        if prefix == 0:
            why = "is every address (the whole internet)"
        elif prefix < minimum:
            why = f"is wider than the allowed /{minimum}"
        else:
            continue
        yield Finding(
            "broad-cidr",
            f"broad-cidr: {ref}: {rule.peers_field}[{index}].ipBlock.cidr {block.describe()} {why}",
            f"fix: use the narrowest CIDRs that hold the real peers (/{minimum} or narrower)",
        )


def _metadata_endpoint(rule: Rule, ref: str) -> Iterator[Finding]:
    for index, block in _ip_blocks(rule):
        for address in METADATA_ENDPOINTS:
            if block.contains(address):
                host = f"{address}/{address.max_prefixlen}"
                yield Finding(
                    "metadata-endpoint",
                    f"metadata-endpoint: {ref}: {rule.peers_field}[{index}].ipBlock {block.describe()} "
                    f"lets pods reach the cloud metadata endpoint {address}",
                    f"fix: add {host} to ipBlock.except",
                )


def _port_range(rule: Rule, ref: str, max_ports: int) -> Iterator[Finding]:
    for index, port in enumerate(rule.ports or ()):
        if port.end_port is None or not isinstance(port.port, int):
            continue
        count = port.end_port - port.port + 1
        if count > max_ports:
            yield Finding(
                "port-range",
                f"port-range: {ref}: {rule.field}.ports[{index}] opens {port.describe()}, "
                f"{count} ports (at most {max_ports})",
                "fix: list the ports that are really used, or narrower ranges",
            )


def normalised_cidr_notes(policy: NetworkPolicy) -> list[str]:
    """Say which CIDRs had host bits set, and what Kubernetes reads them as."""
    notes = []
    for rule in policy.rules:
        for index, block in _ip_blocks(rule):
            if block.normalised:
                notes.append(f"NetworkPolicy {policy.ref}: {rule.peers_field}[{index}].ipBlock.cidr "
                             f"{block.written} has host bits set; it means {block.cidr}")
    return notes
