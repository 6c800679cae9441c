"""The common shape every coverage source is read into, and its composition per namespace or pod.

A source module turns one manifest into a `SourcePolicy`: who it applies to
(`Unit.subject`), per direction whether it denies everything that direction can
express (`Unit.deny`, with its precedence) or why not (`Unit.why_not`), and its
catch-all Accept/Allow/Pass rules (`Unit.openers`), which void a Deny of lower
precedence in the same family (AdminNetworkPolicy/ClusterNetworkPolicy tiers and
priorities, Calico tiers and order). Cilium has no precedence between policies:
its units have no openers.

Subjects answer in three values: True (selects every pod asked about), False
(none), None (some, depending on pod labels we do not know). A namespace-wide
question (`pod_labels=None`) counts a Deny only on True and lets a catch-all
void it unless False: a namespace is covered only when every one of its pods is.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal, Protocol

from webhook.core.netpol import DIRECTIONS, Direction
from webhook.core.selectors import LabelSelector

if TYPE_CHECKING:
    from webhook.core.state import NamespaceInfo

Tri = bool | None


class Subject(Protocol):
    def select(self, namespace: NamespaceInfo, pod_labels: Mapping[str, str] | None) -> Tri:
        """True: selects every pod asked about; False: none; None: it depends on pod labels."""
        ...

    def describe(self) -> str: ...


@dataclass(frozen=True, slots=True, order=True)
class Precedence:
    """Where a rule sits in its family's evaluation order (smaller first).

    `tier` orders tiers (Admin 0 < NetworkPolicy < Baseline 2); tiers with the same number but
    different `tier_name` have an order not known here (Calico tiers: their Tier objects are not
    read). `order` is the priority/order inside the tier; `tie` breaks ties where the project
    defines it (Calico: the policy name), "" where it does not (equal ANP priorities: undefined).
    """

    tier: int
    order: float
    tie: str = ""
    tier_name: str = ""


@dataclass(frozen=True, slots=True)
class Opener:
    """A catch-all Accept/Allow ("accept") or Pass ("pass") rule: every peer, every port."""

    action: Literal["accept", "pass"]
    at: Precedence
    what: str  # e.g. "ingress rule 0 (Accept from everywhere)"


@dataclass(frozen=True, slots=True)
class Unit:
    """One subject with its effect; most policies have one, a Cilium `specs` list has several."""

    subject: Subject
    deny: Mapping[Direction, Precedence] = field(default_factory=dict)  # directions fully denied
    why_not: Mapping[Direction, str] = field(default_factory=dict)  # directions not denied, and why
    openers: Mapping[Direction, tuple[Opener, ...]] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class SourcePolicy:
    source: str  # the coverageSources key, e.g. "calicoGlobalNetworkPolicy"
    family: str  # precedence family: "npapi", "calico", "cilium"
    kind: str
    name: str
    namespace: str  # "" for cluster-scoped kinds
    units: tuple[Unit, ...]
    key: tuple[str, ...]  # identity in the cluster view (both Calico API groups share one key)
    deleting: bool = False

    @property
    def label(self) -> str:
        return f"{self.kind} {self.namespace + '/' if self.namespace else ''}{self.name}"

    def applies_to_namespace(self, namespace: NamespaceInfo) -> bool:
        """Whether this policy can matter to any pod of `namespace` (subject not surely False)."""
        if self.namespace and self.namespace != namespace.name:
            return False
        return any(unit.subject.select(namespace, None) is not False for unit in self.units)


@dataclass(frozen=True, slots=True)
class SourceCoverage:
    ingress_by: tuple[str, ...] = ()
    egress_by: tuple[str, ...] = ()
    # (direction, "Kind name: why") for policies seen for a direction no source covers
    not_counting: tuple[tuple[Direction, str], ...] = ()

    def by(self, direction: Direction) -> tuple[str, ...]:
        return self.ingress_by if direction == "Ingress" else self.egress_by


NONE = SourceCoverage()


def compose(
    namespace: NamespaceInfo, policies: Sequence[SourcePolicy], pod_labels: Mapping[str, str] | None = None,
) -> SourceCoverage:
    """Which source policies deny each direction for every pod of `namespace` (or for one pod)."""
    by: dict[Direction, list[str]] = {"Ingress": [], "Egress": []}
    reasons: dict[Direction, list[str]] = {"Ingress": [], "Egress": []}
    live = [p for p in policies if not p.deleting and (not p.namespace or p.namespace == namespace.name)]
    selected: list[tuple[SourcePolicy, Unit, Tri]] = []
    for policy in live:
        for unit in policy.units:
            answer = unit.subject.select(namespace, pod_labels)
            if answer is not False:
                selected.append((policy, unit, answer))
    for direction in DIRECTIONS:
        for policy, unit, answer in selected:
            at = unit.deny.get(direction)
            if at is None:
                why = unit.why_not.get(direction)
                if why:
                    reasons[direction].append(f"{policy.label}: {why}")
                continue
            if answer is not True:
                reasons[direction].append(
                    f"{policy.label}: its subject ({unit.subject.describe()}) does not select every pod"
                    + (" of the namespace" if pod_labels is None else " here"))
                continue
            voider = _voider(policy, at, direction, selected)
            if voider is not None:
                reasons[direction].append(f"{policy.label}: its {direction} Deny is voided by {voider}")
                continue
            if policy.label not in by[direction]:
                by[direction].append(policy.label)
    not_counting: list[tuple[Direction, str]] = []
    for direction in DIRECTIONS:
        if not by[direction]:
            not_counting += [(direction, reason) for reason in dict.fromkeys(reasons[direction])]
    return SourceCoverage(tuple(sorted(by["Ingress"])), tuple(sorted(by["Egress"])), tuple(not_counting))


def _voider(
    policy: SourcePolicy, at: Precedence, direction: Direction, selected: Iterable[tuple[SourcePolicy, Unit, Tri]],
) -> str | None:
    for other, unit, _ in selected:
        if other.family != policy.family or other.key == policy.key:
            continue
        for opener in unit.openers.get(direction, ()):
            if opener.at.tier == at.tier and opener.at.tier_name == at.tier_name:
                if (opener.at.order, opener.at.tie) <= (at.order, at.tie):
                    return f"{other.label} {opener.what}"  # earlier in the same tier (Accept, or Pass out of it)
            elif opener.action == "accept" and opener.at.tier <= at.tier:
                return f"{other.label} {opener.what}"  # an earlier tier, or one whose order is unknown
    return None


# ----- three-valued Kubernetes label selectors -----
def tri_match(selector: LabelSelector, labels: Mapping[str, str], known: Callable[[str], bool]) -> Tri:
    """A metav1.LabelSelector over labels of which only the keys `known` says are known."""
    result: Tri = True
    for key, value in selector.match_labels:
        if not known(key):
            result = None
        elif labels.get(key) != value:
            return False
    for requirement in selector.requirements:
        if not known(requirement.key):
            result = None
        elif not requirement.matches(labels):
            return False
    return result

