"""policy.networking.k8s.io/v1alpha1 AdminNetworkPolicy and BaselineAdminNetworkPolicy.

Reference: kubernetes-sigs/network-policy-api apis/v1alpha1/{adminnetworkpolicy,
baselineadminnetworkpolicy,shared}_types.go. These are the predecessors of
ClusterNetworkPolicy and are read the same way (see clusternetworkpolicy.py):
- AdminNetworkPolicy sits in the admin tier (before NetworkPolicy), ordered by
  `priority` (0-1000, lower first); actions Allow, Deny, Pass.
- BaselineAdminNetworkPolicy (a singleton named `default`) sits after
  NetworkPolicy; actions Allow and Deny.
- A rule's `ports` (portNumber, namedPort, portRange) restricts it; `from`/`to`
  peers are as in ClusterNetworkPolicy (egress `networks` also match pod-to-pod).
We treat the admin tier of both APIs as one tier and the baseline of both as one,
so an AdminNetworkPolicy catch-all Allow voids a ClusterNetworkPolicy Baseline Deny.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from webhook.core.errors import ObjectError
from webhook.core.sources.base import SourcePolicy
from webhook.core.sources.clusternetworkpolicy import Dialect, read_policy


def describe_ports(raw: Any, path: str) -> str:
    parts = []
    for index, item in enumerate(raw):
        where = f"{path}[{index}]"
        if not isinstance(item, Mapping):
            raise ObjectError(where, "must be a mapping")
        if isinstance(item.get("portNumber"), Mapping):
            number = item["portNumber"]
            parts.append(f"{number.get('protocol') or 'TCP'} {number.get('port')}")
        elif item.get("namedPort"):
            parts.append(f"port {item['namedPort']}")
        elif isinstance(item.get("portRange"), Mapping):
            span = item["portRange"]
            parts.append(f"{span.get('protocol') or 'TCP'} {span.get('start')}-{span.get('end')}")
        else:
            raise ObjectError(where, "one of portNumber, namedPort or portRange is required")
    return ", ".join(parts)


ADMIN = Dialect(
    source="adminNetworkPolicy", kind="AdminNetworkPolicy", accept="Allow",
    actions=("Allow", "Deny", "Pass"), ports_field="ports", describe_ports=describe_ports,
)
BASELINE = Dialect(
    source="baselineAdminNetworkPolicy", kind="BaselineAdminNetworkPolicy", accept="Allow",
    actions=("Allow", "Deny"), ports_field="ports", describe_ports=describe_ports,
)


def parse_admin_network_policy(obj: Mapping[str, Any]) -> SourcePolicy:
    spec = obj.get("spec") or {}
    if not isinstance(spec, Mapping):
        raise ObjectError("spec", "must be a mapping")
    priority = spec.get("priority")
    if isinstance(priority, bool) or not isinstance(priority, int) or not 0 <= priority <= 1000:
        raise ObjectError("spec.priority", f"required, an integer from 0 to 1000, not {priority!r}")
    return read_policy(obj, ADMIN, "Admin", float(priority))


def parse_baseline_admin_network_policy(obj: Mapping[str, Any]) -> SourcePolicy:
    return read_policy(obj, BASELINE, "Baseline", 0.0)
