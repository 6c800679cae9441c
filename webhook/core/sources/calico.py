"""Calico GlobalNetworkPolicy and NetworkPolicy (projectcalico.org/v3 and crd.projectcalico.org/v1).

References: docs.tigera.io/calico/latest/reference/resources/globalnetworkpolicy,
.../networkpolicy, .../tier, and projectcalico/calico api/pkg/apis/projectcalico/v3
(policy_common.go, globalnetworkpolicy.go, networkpolicy.go). Both API groups carry
the same spec; a CRD copy and its v3 view are one policy here (same key).

- Selection: `selector` over the workload endpoint's labels (the pod's labels plus
  `projectcalico.org/namespace`, `projectcalico.org/orchestrator` and the
  namespace's labels prefixed `pcns.`), AND `namespaceSelector` over the
  namespace's labels, which always include `projectcalico.org/name` (GlobalNetworkPolicy
  only; a NetworkPolicy selects in its own namespace), AND `serviceAccountSelector`
  (service account labels are not known here: only an empty one selects for sure).
  An empty selector is `all()`. `global()` is valid only in a rule's namespaceSelector.
- `types` when absent: Ingress and Egress if the policy has both kinds of rules,
  Egress if it has only egress rules, otherwise Ingress.
- Once a policy of a tier selects an endpoint, traffic that no rule of that tier
  allows is denied at the end of the tier. So a selecting policy with the
  direction in its types counts, unless the first catch-all rule of that
  direction (no source, destination, protocol, ICMP, HTTP or IP version match)
  is an Allow or a Pass; a catch-all Deny first means everything is denied.
- Order: in a tier, policies go by `order` (absent: last), then by name. A catch-all
  Allow or Pass in a policy of the same tier, earlier in that order, selecting the same
  pods voids the Deny. Tiers are ordered by Tier objects, which netpol-guard does not
  read: a catch-all Allow in another tier is assumed to come first (it voids), a Pass
  in another tier only moves on to the next tier (it does not). A tier's end-of-tier
  action is taken to be Deny, Calico's default (`defaultAction`).
  `doNotTrack` and `preDNAT` policies apply to host endpoints only: they do not count.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from webhook.core.errors import ObjectError
from webhook.core.netpol import DIRECTIONS, Direction
from webhook.core.objects import mapping_at, namespace_of, required_name
from webhook.core.sources.base import Opener, Precedence, SourcePolicy, Tri, Unit
from webhook.core.sources.calico_selector import Selector, parse_field

if TYPE_CHECKING:
    from webhook.core.state import NamespaceInfo

NAME_LABEL = "projectcalico.org/name"
ENDPOINT_NAMESPACE = "projectcalico.org/namespace"
ORCHESTRATOR = "projectcalico.org/orchestrator"
NAMESPACE_PREFIX = "pcns."
GROUPS = ("projectcalico.org", "crd.projectcalico.org")
ACTIONS = ("Allow", "Deny", "Log", "Pass")
RULE_MATCH_FIELDS = ("ipVersion", "protocol", "notProtocol", "icmp", "notICMP", "http")
EVERY_V4 = ipaddress.ip_network("0.0.0.0/0")
EVERY_V6 = ipaddress.ip_network("::/0")


def namespace_labels(namespace: NamespaceInfo) -> dict[str, str]:
    """A namespace's labels as Calico sees them: always with projectcalico.org/name."""
    return {**namespace.labels, NAME_LABEL: namespace.name}


@dataclass(frozen=True, slots=True)
class CalicoSubject:
    namespace: str  # "" for a GlobalNetworkPolicy
    selector: Selector
    namespace_selector: Selector
    service_account_selector: Selector

    def select(self, namespace: NamespaceInfo, pod_labels: Mapping[str, str] | None) -> Tri:
        if self.namespace and namespace.name != self.namespace:
            return False
        ns_labels = namespace_labels(namespace)
        if not self.namespace_selector.matches(ns_labels):
            return False
        endpoint = dict(pod_labels or {})
        endpoint.update({f"{NAMESPACE_PREFIX}{k}": v for k, v in ns_labels.items()})
        endpoint[ENDPOINT_NAMESPACE] = namespace.name
        endpoint[ORCHESTRATOR] = "k8s"
        fixed = (ENDPOINT_NAMESPACE, ORCHESTRATOR)

        def known(key: str) -> bool:
            if key in fixed or key.startswith(NAMESPACE_PREFIX):
                return True
            return pod_labels is not None and not key.startswith("pcsa.") and key != "projectcalico.org/serviceaccount"

        answer = self.selector.evaluate(endpoint, known)
        if answer is False:
            return False
        accounts = self.service_account_selector.evaluate({}, lambda _key: False)
        if accounts is False:
            return False
        return True if answer is True and accounts is True else None

    def describe(self) -> str:
        parts = []
        if not self.selector.is_all:
            parts.append(f"selector {self.selector.describe()}")
        if not self.namespace_selector.is_all:
            parts.append(f"namespaceSelector {self.namespace_selector.describe()}")
        if not self.service_account_selector.is_all:
            parts.append(f"serviceAccountSelector {self.service_account_selector.describe()}")
        return ", ".join(parts) or "all()"


def parse_calico_policy(obj: Mapping[str, Any], default_namespace: str = "default") -> SourcePolicy:
    """A GlobalNetworkPolicy or NetworkPolicy of either Calico API group; ObjectError names the field."""
    kind = obj.get("kind")
    metadata = mapping_at(obj.get("metadata"), "metadata")
    name = required_name(metadata)
    namespace = namespace_of(obj, default_namespace) if kind == "NetworkPolicy" else ""
    spec = mapping_at(obj.get("spec"), "spec")
    subject = CalicoSubject(
        namespace=namespace,
        selector=parse_field(spec.get("selector"), "spec.selector"),
        namespace_selector=(
            parse_field(spec.get("namespaceSelector"), "spec.namespaceSelector") if kind == "GlobalNetworkPolicy"
            else parse_field(None, "")
        ),
        service_account_selector=parse_field(spec.get("serviceAccountSelector"), "spec.serviceAccountSelector"),
    )
    rules = {d: _rules(spec.get(d.lower()), f"spec.{d.lower()}") for d in DIRECTIONS}
    types = _types(spec.get("types"), rules)
    tier = spec.get("tier") or "default"
    if not isinstance(tier, str):
        raise ObjectError("spec.tier", "must be a tier name")
    order = spec.get("order")
    if order is not None and (isinstance(order, bool) or not isinstance(order, int | float)):
        raise ObjectError("spec.order", f"must be a number, not {order!r}")
    label = f"{namespace}/{name}" if namespace else name
    at = Precedence(0, float("inf") if order is None else float(order), label, tier)
    host_only = [f for f in ("doNotTrack", "preDNAT") if spec.get(f) is True]
    deny: dict[Direction, Precedence] = {}
    why_not: dict[Direction, str] = {}
    openers: dict[Direction, tuple[Opener, ...]] = {}
    for direction in DIRECTIONS:
        if direction not in types:
            why_not[direction] = f"its types do not include {direction}"
            continue
        if host_only:
            why_not[direction] = f"{host_only[0]} policies apply to host endpoints only"
            continue
        first = _first_catch_all(rules[direction])
        if first is not None and first[1] in ("Allow", "Pass"):
            index, action = first
            why_not[direction] = f"its {direction} rule {index} ({action}, no match criteria) lets everything through"
            openers[direction] = (Opener("accept" if action == "Allow" else "pass", at,
                                         f"{direction.lower()} rule {index} ({action} everything)"),)
            continue
        deny[direction] = at
    short = name[len(tier) + 1:] if name.startswith(f"{tier}.") else name
    return SourcePolicy(
        source="calicoGlobalNetworkPolicy" if kind == "GlobalNetworkPolicy" else "calicoNetworkPolicy",
        family="calico", kind=str(kind), name=name, namespace=namespace,
        units=(Unit(subject=subject, deny=deny, why_not=why_not, openers=openers),),
        key=("calico", str(kind), namespace, short), deleting=metadata.get("deletionTimestamp") is not None,
    )


def _rules(raw: Any, path: str) -> list[Mapping[str, Any]]:
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise ObjectError(path, "must be a list of rules")
    rules = []
    for index, item in enumerate(raw):
        rule = mapping_at(item, f"{path}[{index}]")
        if rule.get("action") not in ACTIONS:
            raise ObjectError(f"{path}[{index}].action", f"must be one of {', '.join(ACTIONS)}, "
                                                         f"not {rule.get('action')!r}")
        for side in ("source", "destination"):
            entity = mapping_at(rule.get(side), f"{path}[{index}].{side}")
            for field_name in ("selector", "notSelector"):
                parse_field(entity.get(field_name), f"{path}[{index}].{side}.{field_name}")
            parse_field(entity.get("namespaceSelector"), f"{path}[{index}].{side}.namespaceSelector",
                        allow_global=True)
        rules.append(rule)
    return rules


def _types(raw: Any, rules: Mapping[Direction, list[Mapping[str, Any]]]) -> frozenset[Direction]:
    if raw:
        if not isinstance(raw, list) or any(t not in DIRECTIONS for t in raw):
            raise ObjectError("spec.types", f"must be a list of Ingress and/or Egress, not {raw!r}")
        return frozenset(raw)
    if rules["Egress"]:
        return frozenset(("Ingress", "Egress")) if rules["Ingress"] else frozenset(("Egress",))
    return frozenset(("Ingress",))


def _first_catch_all(rules: list[Mapping[str, Any]]) -> tuple[int, str] | None:
    """The first rule (index, action) that matches all traffic, Log rules aside."""
    for index, rule in enumerate(rules):
        if rule["action"] == "Log" or not _matches_everything(rule):
            continue
        return index, str(rule["action"])
    return None


def _matches_everything(rule: Mapping[str, Any]) -> bool:
    if any(rule.get(f) not in (None, {}, []) for f in RULE_MATCH_FIELDS):
        return False
    return all(_every_entity(mapping_at(rule.get(side), side)) for side in ("source", "destination"))


def _every_entity(entity: Mapping[str, Any]) -> bool:
    present = {k for k, v in entity.items() if v not in (None, "", [], {})}
    if not present:
        return True
    if present != {"nets"} or not isinstance(entity["nets"], list):
        return False
    networks = set()
    for cidr in entity["nets"]:
        try:
            networks.add(ipaddress.ip_network(str(cidr), strict=False))
        except ValueError:
            return False
    return EVERY_V4 in networks and EVERY_V6 in networks

