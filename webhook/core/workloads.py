"""Finding the pods an object will create: a Pod itself, or a controller's pod template.

Judging templates matters: a Pod refused inside a ReplicaSet controller fails
where nobody looks, so we refuse the Deployment at `kubectl apply` instead.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from webhook.core.errors import ObjectError, clip_repr
from webhook.core.objects import labels_of

# kind -> path of the pod template inside the object (empty: the object is the pod).
TEMPLATE_PATHS: dict[str, tuple[str, ...]] = {
    "Pod": (),
    "Deployment": ("spec", "template"),
    "StatefulSet": ("spec", "template"),
    "DaemonSet": ("spec", "template"),
    "ReplicaSet": ("spec", "template"),
    "ReplicationController": ("spec", "template"),
    "Job": ("spec", "template"),
    "CronJob": ("spec", "jobTemplate", "spec", "template"),
}
WORKLOAD_KINDS = frozenset(TEMPLATE_PATHS)


@dataclass(frozen=True, slots=True)
class PodTemplate:
    labels: Mapping[str, str]
    host_network: bool
    field: str  # where the template sits, e.g. `spec.template` ("" for a Pod)


def pod_template(kind: str, obj: Mapping[str, Any]) -> PodTemplate | None:
    """The pod (template) of a workload object, or None when `kind` creates no pods."""
    path = TEMPLATE_PATHS.get(kind)
    if path is None:
        return None
    node: Any = obj
    walked: list[str] = []
    for key in path:
        walked.append(key)
        if node is not None and not isinstance(node, Mapping):
            raise ObjectError(".".join(walked[:-1]), "must be a mapping")
        node = node.get(key) if node is not None else None
    field = ".".join(path)
    if node is None:
        node = {}
    if not isinstance(node, Mapping):
        raise ObjectError(field, "must be a mapping")
    spec = node.get("spec") or {}
    if not isinstance(spec, Mapping):
        raise ObjectError(f"{field}.spec" if field else "spec", "must be a mapping")
    labels = labels_of(node, f"{field}.metadata" if field else "metadata")
    host_network = spec.get("hostNetwork", False)
    if host_network is None:
        host_network = False
    if not isinstance(host_network, bool):
        # Never read as false: the API server refuses anything but a boolean, so this is bad input, not a pass.
        where = f"{field}.spec.hostNetwork" if field else "spec.hostNetwork"
        raise ObjectError(where, f"must be true or false, not {clip_repr(host_network)}")
    return PodTemplate(labels=labels, host_network=host_network, field=field)
