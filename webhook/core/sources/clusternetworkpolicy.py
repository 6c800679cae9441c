"""policy.networking.k8s.io/v1alpha2 ClusterNetworkPolicy, read as SIG Network's API defines it.

Reference: kubernetes-sigs/network-policy-api apis/v1alpha2/clusternetworkpolicy_types.go
(and network-policy-api.sigs.k8s.io). The shared reading here also serves the
v1alpha1 AdminNetworkPolicy / BaselineAdminNetworkPolicy module.

- Tiers are evaluated Admin, then NetworkPolicy, then Baseline; inside a tier a
  lower `priority` goes first, and within a policy rules go in written order.
  Two policies of one tier with equal priority have no defined order: we assume
  either may go first.
- Accept/Allow and Deny are final; Pass skips the rest of the current tier.
- Subject: `namespaces` (every pod of the selected namespaces) or `pods`
  (namespaceSelector AND podSelector). Host-network pods are never selected.
- A Deny counts for a direction when it has no `protocols`/`ports` restriction
  and covers every peer that direction can express:
  * Ingress: every pod of every namespace (`namespaces: {}` or `pods` with two
    empty selectors). Ingress peers cannot name sources outside the cluster, so
    this is all an ingress rule can say.
  * Egress: every destination, i.e. `networks` holding 0.0.0.0/0 and ::/0
    (the API says a Networks rule also matches pod-to-pod traffic). `namespaces: {}`
    alone leaves the outside world open.
  Deny rules of one policy add up (0.0.0.0/0 in one rule, ::/0 in another).
- A catch-all Accept (or Pass) that is evaluated before the Deny for the same pods
  means the Deny never fires: inside the policy it stops the reading; in another
  policy it is an `Opener` that voids the Deny (see base.compose). Narrower
  Accept/Pass rules are allow rules and do not remove coverage.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from webhook.core.errors import ObjectError
from webhook.core.netpol import DIRECTIONS, Direction, parse_cidr
from webhook.core.objects import mapping_at, required_name
from webhook.core.selectors import LabelSelector, parse_selector
from webhook.core.sources.base import Opener, Precedence, SourcePolicy, Tri, Unit, tri_match

if TYPE_CHECKING:
    from webhook.core.state import NamespaceInfo

TIERS = {"Admin": 0, "Baseline": 2}
ALL_V4 = ipaddress.ip_network("0.0.0.0/0")
ALL_V6 = ipaddress.ip_network("::/0")


@dataclass(frozen=True, slots=True)
class NamespacedSubject:
    """`namespaces: sel` (pod_selector None) or `pods: {namespaceSelector, podSelector}`."""

    namespace_selector: LabelSelector
    pod_selector: LabelSelector | None

    def select(self, namespace: NamespaceInfo, pod_labels: Mapping[str, str] | None) -> Tri:
        if not self.namespace_selector.matches(namespace.labels):
            return False
        if self.pod_selector is None or self.pod_selector.is_empty:
            return True
        if pod_labels is None:
            return tri_match(self.pod_selector, {}, lambda _key: False)
        return self.pod_selector.matches(pod_labels)

    def describe(self) -> str:
        if self.pod_selector is None:
            return f"namespaces: {self.namespace_selector.describe()}"
        return (f"pods: namespaceSelector {self.namespace_selector.describe()}, "
                f"podSelector {self.pod_selector.describe()}")


@dataclass(frozen=True, slots=True)
class Dialect:
    """What differs between ClusterNetworkPolicy and (Baseline)AdminNetworkPolicy."""

    source: str
    kind: str
    accept: str  # "Accept" or "Allow"
    actions: tuple[str, ...]
    ports_field: str  # "protocols" or "ports"
    describe_ports: Callable[[Any, str], str]  # raw list, path -> "TCP 80, UDP 53"


def parse_subject(raw: Any, path: str) -> NamespacedSubject:
    subject = mapping_at(raw, path)
    namespaces, pods = subject.get("namespaces"), subject.get("pods")
    if (namespaces is None) == (pods is None):
        raise ObjectError(path, "exactly one of namespaces or pods is required")
    if namespaces is not None:
        return NamespacedSubject(parse_selector(namespaces, f"{path}.namespaces"), None)
    pods_map = mapping_at(pods, f"{path}.pods")
    return NamespacedSubject(
        parse_selector(pods_map.get("namespaceSelector") or {}, f"{path}.pods.namespaceSelector"),
        parse_selector(pods_map.get("podSelector") or {}, f"{path}.pods.podSelector"),
    )


def read_policy(
    obj: Mapping[str, Any], dialect: Dialect, tier: str, priority: float,
) -> SourcePolicy:
    """The common reading once kind-specific fields (tier, priority) are known."""
    metadata = mapping_at(obj.get("metadata"), "metadata")
    name = required_name(metadata)
    spec = mapping_at(obj.get("spec"), "spec")
    subject = parse_subject(spec.get("subject"), "spec.subject")
    at = Precedence(TIERS[tier], priority)
    deny: dict[Direction, Precedence] = {}
    why_not: dict[Direction, str] = {}
    openers: dict[Direction, tuple[Opener, ...]] = {}
    for direction in DIRECTIONS:
        field_name = direction.lower()
        raw_rules = spec.get(field_name) or []
        if not isinstance(raw_rules, list):
            raise ObjectError(f"spec.{field_name}", "must be a list of rules")
        verdict, opened = _read_direction(raw_rules, direction, dialect, at)
        if verdict is None:
            deny[direction] = at
        else:
            why_not[direction] = verdict
        if opened is not None:
            openers[direction] = (opened,)
    unit = Unit(subject=subject, deny=deny, why_not=why_not, openers=openers)
    return SourcePolicy(
        source=dialect.source, family="npapi", kind=dialect.kind, name=name, namespace="", units=(unit,),
        key=(dialect.kind, name), deleting=metadata.get("deletionTimestamp") is not None,
    )


def _read_direction(
    raw_rules: list[Any], direction: Direction, dialect: Dialect, at: Precedence,
) -> tuple[str | None, Opener | None]:
    """(None if the direction is fully denied else why not, the first catch-all Accept/Pass)."""
    if not raw_rules:
        return f"it has no {direction} rules", None
    peers_key = "from" if direction == "Ingress" else "to"
    v4 = v6 = everyone = False
    first_reason: str | None = None
    denies = 0
    for index, item in enumerate(raw_rules):
        where = f"spec.{direction.lower()}[{index}]"
        rule = mapping_at(item, where)
        action = rule.get("action")
        if action not in dialect.actions:
            raise ObjectError(f"{where}.action", f"must be one of {', '.join(dialect.actions)}, not {action!r}")
        raw_peers = rule.get(peers_key)
        if not isinstance(raw_peers, list) or not raw_peers:
            raise ObjectError(f"{where}.{peers_key}", "must be a non-empty list of peers")
        ports = rule.get(dialect.ports_field)
        if ports is not None and not isinstance(ports, list):
            raise ObjectError(f"{where}.{dialect.ports_field}", "must be a list")
        restricted = dialect.describe_ports(ports, f"{where}.{dialect.ports_field}") if ports else ""
        peers = _read_peers(raw_peers, f"{where}.{peers_key}", direction, deny=action == "Deny")
        all_peers = peers.everyone(direction)
        if action != "Deny":
            if all_peers and not restricted:
                # A catch-all Accept/Pass: every later rule of this direction is dead, and it may void others.
                opener = Opener("accept" if action == dialect.accept else "pass", at,
                                f"{direction.lower()} rule {index} ({action} everything)")
                return (f"its {direction} rule {index} ({action}, every peer, every port) comes before any "
                        f"Deny of everything"), opener
            continue
        denies += 1
        if restricted:
            first_reason = first_reason or f"its {direction} Deny is limited to {restricted}"
            continue
        everyone = everyone or (direction == "Ingress" and all_peers)
        v4 = v4 or peers.v4
        v6 = v6 or peers.v6
        if everyone or (v4 and v6):
            return None, None
        if first_reason is None:
            first_reason = (
                f"its {direction} Deny covers only some sources ({peers.text})" if direction == "Ingress" else
                f"its Egress Deny does not cover every destination ({peers.text}; needs networks 0.0.0.0/0 "
                "and ::/0)"
            )
    if denies == 0:
        return f"it has no {direction} Deny rule", None
    if direction == "Egress" and (v4 or v6) and not (v4 and v6):
        return f"its Egress Deny covers only {'IPv4' if v4 else 'IPv6'} (needs networks 0.0.0.0/0 and ::/0)", None
    return first_reason, None


@dataclass(frozen=True, slots=True)
class _Peers:
    all_pods: bool
    v4: bool
    v6: bool
    text: str

    def everyone(self, direction: Direction) -> bool:
        return self.all_pods if direction == "Ingress" else self.v4 and self.v6


def _read_peers(raw: list[Any], path: str, direction: Direction, *, deny: bool) -> _Peers:
    all_pods = v4 = v6 = False
    texts = []
    for index, item in enumerate(raw):
        where = f"{path}[{index}]"
        peer = mapping_at(item, where)
        known = {"namespaces", "pods"} | ({"nodes", "networks", "domainNames"} if direction == "Egress" else set())
        present = [k for k in peer if peer[k] is not None]
        unknown = set(present) - known
        if unknown:
            raise ObjectError(where, f"unknown peer field(s) {', '.join(sorted(map(str, unknown)))}")
        if len(present) > 1:
            raise ObjectError(where, "exactly one peer field must be set")
        if not present:
            # The API: an implementation seeing no known field fails closed; for Deny that is "Deny all".
            all_pods = all_pods or deny
            v4 = v4 or deny
            v6 = v6 or deny
            texts.append("(empty peer)")
            continue
        field_name = present[0]
        if field_name == "namespaces":
            selector = parse_selector(peer["namespaces"], f"{where}.namespaces")
            all_pods = all_pods or selector.is_empty
            texts.append(f"namespaces {selector.describe()}")
        elif field_name == "pods":
            pods = mapping_at(peer["pods"], f"{where}.pods")
            ns = parse_selector(pods.get("namespaceSelector") or {}, f"{where}.pods.namespaceSelector")
            pod = parse_selector(pods.get("podSelector") or {}, f"{where}.pods.podSelector")
            all_pods = all_pods or (ns.is_empty and pod.is_empty)
            texts.append(f"pods {ns.describe()}/{pod.describe()}")
        elif field_name == "networks":
            networks = peer["networks"]
            if not isinstance(networks, list):
                raise ObjectError(f"{where}.networks", "must be a list of CIDRs")
            for n, cidr in enumerate(networks):
                network = parse_cidr(cidr, f"{where}.networks[{n}]").network
                v4 = v4 or network == ALL_V4
                v6 = v6 or network == ALL_V6
            texts.append(f"networks {', '.join(map(str, networks))}")
        else:
            texts.append(field_name)
    return _Peers(all_pods, v4, v6, "; ".join(texts))


def describe_protocols(raw: Any, path: str) -> str:
    """ClusterNetworkPolicy `protocols`: [{tcp|udp|sctp: {destinationPort: {number|range}}}|{destinationNamedPort}]."""
    parts = []
    for index, item in enumerate(raw):
        entry = mapping_at(item, f"{path}[{index}]")
        if entry.get("destinationNamedPort"):
            parts.append(f"port {entry['destinationNamedPort']}")
            continue
        for protocol in ("tcp", "udp", "sctp"):
            if protocol in entry:
                spec = mapping_at(entry[protocol], f"{path}[{index}].{protocol}")
                port = mapping_at(spec.get("destinationPort"), f"{path}[{index}].{protocol}.destinationPort")
                parts.append(f"{protocol.upper()}{_port_text(port)}")
                break
        else:
            raise ObjectError(f"{path}[{index}]", "one of tcp, udp, sctp or destinationNamedPort is required")
    return ", ".join(parts)


def _port_text(port: Mapping[str, Any]) -> str:
    if port.get("number"):
        return f" {port['number']}"
    if isinstance(port.get("range"), Mapping):
        return f" {port['range'].get('start')}-{port['range'].get('end')}"
    return ""



CLUSTER_NETWORK_POLICY = Dialect(
    source="clusterNetworkPolicy", kind="ClusterNetworkPolicy", accept="Accept",
    actions=("Accept", "Deny", "Pass"), ports_field="protocols", describe_ports=describe_protocols,
)


def parse_cluster_network_policy(obj: Mapping[str, Any]) -> SourcePolicy:
    spec = mapping_at(obj.get("spec"), "spec")
    tier = spec.get("tier")
    if tier not in TIERS:
        raise ObjectError("spec.tier", f"must be Admin or Baseline, not {tier!r}")
    priority = spec.get("priority", 0)
    if isinstance(priority, bool) or not isinstance(priority, int) or not 0 <= priority <= 1000:
        raise ObjectError("spec.priority", f"must be an integer from 0 to 1000, not {priority!r}")
    return read_policy(obj, CLUSTER_NETWORK_POLICY, tier, float(priority))
