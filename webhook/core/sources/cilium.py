"""Cilium CiliumNetworkPolicy and CiliumClusterwideNetworkPolicy (cilium.io/v2).

Shapes that count, each with the Cilium documentation that states its meaning:
- A rule whose `endpointSelector` selects the pods and that has an `ingress` or
  `ingressDeny` section (a non-empty list) puts them in default deny at ingress;
  the same for `egress`/`egressDeny` at egress. (docs.cilium.io, Security > Network
  Policy > Policy Enforcement Modes, "default": "If any rule selects an Endpoint
  and the rule has an ingress section, the endpoint goes into default deny at
  ingress"; CRD reference: "If omitted or empty, this rule does not apply".)
- `enableDefaultDeny: {ingress: true}` puts the selected pods in default deny at
  ingress even without rules; `false` means the rule does not (the CRD reference of
  `enableDefaultDeny`: "If not specified, the default is true for each traffic
  direction that has rules, and false otherwise").
- An `ingressDeny`/`egressDeny` rule with `fromEntities`/`toEntities` holding `all`
  and no `toPorts` denies everything, whatever the allows say ("Deny policies take
  precedence over allow policies", docs.cilium.io Security > Network Policy > Deny Policies).
Shapes that do not count: a section holding an empty rule `{}` (its meaning changed
between Cilium versions; we read it as allowing everything), or an allow rule with
entity `all` and no `toPorts` (allows everything); `nodeSelector` rules (host policies).
Such a catch-all allow in any policy selecting the pods also voids another policy's
default deny (allows add up); it never voids an explicit deny-all.

Selection: `endpointSelector` is a Kubernetes label selector over the pod's labels
plus `io.kubernetes.pod.namespace` and the namespace's labels as
`io.cilium.k8s.namespace.labels.<key>`; keys may carry the `k8s:` or `any:` source
prefix. A CiliumNetworkPolicy only selects pods of its own namespace.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from webhook.core.errors import ObjectError
from webhook.core.netpol import DIRECTIONS, Direction
from webhook.core.objects import mapping_at, namespace_of, required_name
from webhook.core.selectors import LabelSelector, parse_selector
from webhook.core.sources.base import Opener, Precedence, SourcePolicy, Tri, Unit, tri_match

if TYPE_CHECKING:
    from webhook.core.state import NamespaceInfo

POD_NAMESPACE = "io.kubernetes.pod.namespace"
NAMESPACE_LABELS = "io.cilium.k8s.namespace.labels."
SOURCES = ("k8s:", "any:")
EXPLICIT_DENY = Precedence(-2, 0)  # deny rules win over every allow
ALLOWS = Precedence(-1, 0)  # allows add up and come before the default deny
DEFAULT_DENY = Precedence(0, 0)


@dataclass(frozen=True, slots=True)
class EndpointSubject:
    namespace: str  # "" for a clusterwide policy
    selector: LabelSelector

    def select(self, namespace: NamespaceInfo, pod_labels: Mapping[str, str] | None) -> Tri:
        if self.namespace and namespace.name != self.namespace:
            return False
        labels = dict(pod_labels or {})
        labels.update({f"{NAMESPACE_LABELS}{k}": v for k, v in namespace.labels.items()})
        labels[POD_NAMESPACE] = namespace.name

        def known(key: str) -> bool:
            if key == POD_NAMESPACE or key.startswith(NAMESPACE_LABELS):
                return True
            return pod_labels is not None and not key.startswith("io.cilium.") and ":" not in key

        return tri_match(self.selector, labels, known)

    def describe(self) -> str:
        return f"endpointSelector {self.selector.describe()}"


def parse_cilium_policy(obj: Mapping[str, Any], default_namespace: str = "default") -> SourcePolicy:
    kind = str(obj.get("kind"))
    metadata = mapping_at(obj.get("metadata"), "metadata")
    name = required_name(metadata)
    namespace = namespace_of(obj, default_namespace) if kind == "CiliumNetworkPolicy" else ""
    raw_spec, raw_specs = obj.get("spec"), obj.get("specs")
    rules: list[tuple[str, Mapping[str, Any]]] = []
    if raw_spec is not None:
        rules.append(("spec", mapping_at(raw_spec, "spec")))
    if raw_specs is not None:
        if not isinstance(raw_specs, list):
            raise ObjectError("specs", "must be a list of rules")
        rules += [(f"specs[{i}]", mapping_at(r, f"specs[{i}]")) for i, r in enumerate(raw_specs)]
    if not rules:
        raise ObjectError("spec", "spec or specs is required")
    units = tuple(_unit(rule, path, namespace) for path, rule in rules)
    return SourcePolicy(
        source="ciliumNetworkPolicy" if namespace else "ciliumClusterwideNetworkPolicy", family="cilium",
        kind=kind, name=name, namespace=namespace, units=units, key=("cilium", kind, namespace, name),
        deleting=metadata.get("deletionTimestamp") is not None,
    )


def _unit(rule: Mapping[str, Any], path: str, namespace: str) -> Unit:
    if rule.get("nodeSelector") is not None:
        return Unit(subject=EndpointSubject(namespace, _NOTHING), why_not={
            d: "its rule selects nodes (a host policy), not pods" for d in DIRECTIONS})
    selector = _endpoint_selector(rule.get("endpointSelector"), f"{path}.endpointSelector")
    subject = EndpointSubject(namespace, selector)
    defaults = mapping_at(rule.get("enableDefaultDeny"), f"{path}.enableDefaultDeny")
    deny: dict[Direction, Precedence] = {}
    why_not: dict[Direction, str] = {}
    openers: dict[Direction, tuple[Opener, ...]] = {}
    for direction in DIRECTIONS:
        section = direction.lower()
        allows = _list(rule.get(section), f"{path}.{section}")
        denies = _list(rule.get(f"{section}Deny"), f"{path}.{section}Deny")
        entities = "fromEntities" if direction == "Ingress" else "toEntities"
        if any(_everything(r, entities, allow=False) for r in denies):
            deny[direction] = EXPLICIT_DENY
            continue
        flag = defaults.get(section)
        if flag is not None and not isinstance(flag, bool):
            raise ObjectError(f"{path}.enableDefaultDeny.{section}", "must be true or false")
        default_deny = flag if flag is not None else bool(allows or denies)
        catch_all = next((i for i, r in enumerate(allows) if _everything(r, entities, allow=True)), None)
        if catch_all is not None:
            shape = "{}" if not allows[catch_all] else f"{entities}: [all]"
            why_not[direction] = f"its {section} rule {catch_all} ({shape}) allows everything"
            openers[direction] = (Opener("accept", ALLOWS, f"{section} rule {catch_all} ({shape})"),)
        elif not default_deny:
            why_not[direction] = (f"enableDefaultDeny.{section} is false" if flag is False
                                  else f"it has no {section} section")
        else:
            deny[direction] = DEFAULT_DENY
    return Unit(subject=subject, deny=deny, why_not=why_not, openers=openers)


_NOTHING = LabelSelector(match_labels=((POD_NAMESPACE, ""),))


def _endpoint_selector(raw: Any, path: str) -> LabelSelector:
    if raw is None:
        raise ObjectError(path, "required (or nodeSelector)")
    selector = mapping_at(raw, path)
    normalised: dict[str, Any] = {}
    if selector.get("matchLabels") is not None:
        labels = mapping_at(selector["matchLabels"], f"{path}.matchLabels")
        normalised["matchLabels"] = {_strip(str(k)): v for k, v in labels.items()}
    if selector.get("matchExpressions") is not None:
        expressions = selector["matchExpressions"]
        if not isinstance(expressions, list):
            raise ObjectError(f"{path}.matchExpressions", "must be a list of requirements")
        normalised["matchExpressions"] = [
            {**e, "key": _strip(str(e.get("key")))} if isinstance(e, Mapping) else e for e in expressions
        ]
    return parse_selector(normalised, path)


def _strip(key: str) -> str:
    for prefix in SOURCES:
        if key.startswith(prefix):
            return key[len(prefix):]
    return key


def _everything(rule: Any, entities_field: str, *, allow: bool) -> bool:
    if not isinstance(rule, Mapping):
        raise ObjectError(entities_field, "a rule must be a mapping")
    if allow and not rule:
        return True  # the empty rule: read as allowing everything (contested between versions)
    entities = rule.get(entities_field) or []
    if not isinstance(entities, list) or "all" not in entities:
        return False
    return not rule.get("toPorts") and not rule.get("icmps")


def _list(raw: Any, path: str) -> list[Any]:
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise ObjectError(path, "must be a list of rules")
    return raw

