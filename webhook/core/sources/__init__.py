"""Coverage sources beside networking.k8s.io/v1 NetworkPolicy: one module per project.

Each module reads its kinds into `base.SourcePolicy` (plain data: what the policy
denies, for which pods, per direction, and why a direction does not count);
`base.compose` combines them per namespace or pod. This registry maps an API
group and kind to its reader and to its `coverageSources` key.

Where org rules on cluster-wide *allow* rules (allow-all, broad CIDRs, metadata
addresses, every namespace) would plug in: a `findings(policy, config)` beside each
reader here, called from `Engine._judge_source_policy` like `rules.policy_findings`
is for NetworkPolicy. They are out of scope for now.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from webhook.core.sources.adminnetworkpolicy import (
    parse_admin_network_policy,
    parse_baseline_admin_network_policy,
)
from webhook.core.sources.base import SourcePolicy
from webhook.core.sources.calico import parse_calico_policy
from webhook.core.sources.cilium import parse_cilium_policy
from webhook.core.sources.clusternetworkpolicy import parse_cluster_network_policy

NETWORK_POLICY = "networkPolicy"


@dataclass(frozen=True, slots=True)
class SourceKind:
    source: str  # coverageSources key
    group: str
    version: str  # the served version we read
    kind: str
    plural: str
    namespaced: bool
    parse: Callable[[Mapping[str, Any], str], SourcePolicy]


def _cluster(parse: Callable[[Mapping[str, Any]], SourcePolicy]) -> Callable[[Mapping[str, Any], str], SourcePolicy]:
    return lambda obj, _namespace: parse(obj)


SOURCE_KINDS: tuple[SourceKind, ...] = (
    SourceKind("clusterNetworkPolicy", "policy.networking.k8s.io", "v1alpha2", "ClusterNetworkPolicy",
               "clusternetworkpolicies", False, _cluster(parse_cluster_network_policy)),
    SourceKind("adminNetworkPolicy", "policy.networking.k8s.io", "v1alpha1", "AdminNetworkPolicy",
               "adminnetworkpolicies", False, _cluster(parse_admin_network_policy)),
    SourceKind("baselineAdminNetworkPolicy", "policy.networking.k8s.io", "v1alpha1", "BaselineAdminNetworkPolicy",
               "baselineadminnetworkpolicies", False, _cluster(parse_baseline_admin_network_policy)),
    SourceKind("calicoGlobalNetworkPolicy", "projectcalico.org", "v3", "GlobalNetworkPolicy",
               "globalnetworkpolicies", False, parse_calico_policy),
    SourceKind("calicoGlobalNetworkPolicy", "crd.projectcalico.org", "v1", "GlobalNetworkPolicy",
               "globalnetworkpolicies", False, parse_calico_policy),
    SourceKind("calicoNetworkPolicy", "projectcalico.org", "v3", "NetworkPolicy",
               "networkpolicies", True, parse_calico_policy),
    SourceKind("calicoNetworkPolicy", "crd.projectcalico.org", "v1", "NetworkPolicy",
               "networkpolicies", True, parse_calico_policy),
    SourceKind("ciliumNetworkPolicy", "cilium.io", "v2", "CiliumNetworkPolicy",
               "ciliumnetworkpolicies", True, parse_cilium_policy),
    SourceKind("ciliumClusterwideNetworkPolicy", "cilium.io", "v2", "CiliumClusterwideNetworkPolicy",
               "ciliumclusterwidenetworkpolicies", False, parse_cilium_policy),
)
SOURCE_NAMES: tuple[str, ...] = (NETWORK_POLICY, *dict.fromkeys(k.source for k in SOURCE_KINDS))
_BY_GROUP_KIND = {(k.group, k.kind): k for k in SOURCE_KINDS}


def group_of(api_version: object) -> str:
    """The API group of an apiVersion ("" for the core group)."""
    text = api_version if isinstance(api_version, str) else ""
    return text.rsplit("/", 1)[0] if "/" in text else ""


def source_kind(group: str, kind: str) -> SourceKind | None:
    return _BY_GROUP_KIND.get((group, kind))


def source_kind_of(obj: Mapping[str, Any]) -> SourceKind | None:
    """The coverage source kind of a manifest, by its apiVersion's group and kind."""
    return source_kind(group_of(obj.get("apiVersion")), str(obj.get("kind", "")))


def parse_source_policy(obj: Mapping[str, Any], default_namespace: str = "default") -> SourcePolicy | None:
    """Read a manifest of a coverage-source kind (None for any other kind). Raises ObjectError."""
    found = source_kind_of(obj)
    return None if found is None else found.parse(obj, default_namespace)
