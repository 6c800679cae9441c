"""Isolation of a pod and deny-all coverage of a namespace.

A pod is isolated for a direction when at least one policy of its own namespace
selects it and has that direction in its effective policyTypes (policies are
additive, order never matters). A namespace is covered when its policies with an
empty podSelector, taken together, isolate both Ingress and Egress.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from webhook.core.netpol import DIRECTIONS, Direction, NetworkPolicy
from webhook.core.sources.base import SourceCoverage


@dataclass(frozen=True, slots=True)
class Isolation:
    """Which policies isolate a pod (or which default-denies cover a namespace), per direction."""

    ingress_by: tuple[str, ...] = ()
    egress_by: tuple[str, ...] = ()
    # Cluster-wide or CNI policies seen for the uncovered directions that do not count, "Kind name: why".
    not_counting: tuple[str, ...] = ()

    @property
    def ingress(self) -> bool:
        return bool(self.ingress_by)

    @property
    def egress(self) -> bool:
        return bool(self.egress_by)

    @property
    def complete(self) -> bool:
        return self.ingress and self.egress

    def by(self, direction: Direction) -> tuple[str, ...]:
        return self.ingress_by if direction == "Ingress" else self.egress_by

    @property
    def missing(self) -> tuple[Direction, ...]:
        return tuple(d for d in DIRECTIONS if not self.by(d))

    def as_dict(self) -> dict[str, bool]:
        return {"ingress": self.ingress, "egress": self.egress}


NOT_ISOLATED = Isolation()


def isolation_of(pod_labels: Mapping[str, str], policies: Iterable[NetworkPolicy]) -> Isolation:
    """Real isolation of a pod with these labels, given the policies of its namespace."""
    ingress: list[str] = []
    egress: list[str] = []
    for policy in policies:
        if policy.deleting or not policy.pod_selector.matches(pod_labels):
            continue
        if "Ingress" in policy.policy_types:
            ingress.append(policy.name)
        if "Egress" in policy.policy_types:
            egress.append(policy.name)
    return Isolation(tuple(sorted(ingress)), tuple(sorted(egress)))


def namespace_coverage(policies: Iterable[NetworkPolicy]) -> Isolation:
    """Coverage from the namespace-wide (empty podSelector) policies only.

    Allow rules inside those policies do not remove coverage; the rules judge them.
    """
    return isolation_of({}, (p for p in policies if p.selects_all_pods))


def with_sources(isolation: Isolation, sources: SourceCoverage) -> Isolation:
    """NetworkPolicy isolation plus what the other coverage sources deny (policies are additive)."""
    if not (sources.ingress_by or sources.egress_by or sources.not_counting):
        return isolation
    combined = Isolation(isolation.ingress_by + sources.ingress_by, isolation.egress_by + sources.egress_by)
    missing = combined.missing
    # Only what was seen for a direction still uncovered is worth saying.
    reasons = tuple(dict.fromkeys(text for direction, text in sources.not_counting if direction in missing))
    return Isolation(combined.ingress_by, combined.egress_by, reasons)
