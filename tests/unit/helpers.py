"""Small builders for manifests used across the unit tests (plain dicts, as kubectl would send)."""

from __future__ import annotations

from typing import Any

from webhook.core.config import Config, config_from_data
from webhook.core.engine import Decision, Engine, Request, User
from webhook.core.netpol import NetworkPolicy, parse_network_policy
from webhook.core.state import ClusterState, NamespaceInfo, parse_namespace


def netpol(name: str, namespace: str = "shop", **spec: Any) -> dict[str, Any]:
    spec.setdefault("podSelector", {})
    if "policy_types" in spec:
        spec["policyTypes"] = spec.pop("policy_types")
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    }


def deny_all(namespace: str = "shop", name: str = "default-deny-all") -> dict[str, Any]:
    return netpol(name, namespace, policyTypes=["Ingress", "Egress"])


def pod(name: str = "web", namespace: str = "shop", labels: dict[str, str] | None = None,
        host_network: bool = False) -> dict[str, Any]:
    spec: dict[str, Any] = {"containers": [{"name": "c", "image": "nginx"}]}
    if host_network:
        spec["hostNetwork"] = True
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "labels": labels or {"app": name}},
        "spec": spec,
    }


def namespace(name: str, labels: dict[str, str] | None = None, terminating: bool = False) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": name, "labels": labels or {}}
    if terminating:
        metadata["deletionTimestamp"] = "2026-11-22T00:00:00Z"
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": metadata}


def state(*objects: dict[str, Any]) -> ClusterState:
    namespaces: list[NamespaceInfo] = []
    policies: list[NetworkPolicy] = []
    for obj in objects:
        if obj["kind"] == "Namespace":
            namespaces.append(parse_namespace(obj))
        else:
            policies.append(parse_network_policy(obj))
    cluster = ClusterState()
    cluster.replace_all(namespaces, policies)
    return cluster


def config(**data: Any) -> Config:
    return config_from_data(data)


def review(obj: dict[str, Any], cluster: ClusterState, cfg: Config | None = None, *,
           operation: str = "CREATE", old: dict[str, Any] | None = None, user: str = "alice",
           groups: tuple[str, ...] = (), offline: bool = False) -> Decision:
    engine = Engine(cfg or Config(), offline=offline)
    metadata = (obj if obj is not None else old or {}).get("metadata", {})
    kind = (obj or old or {})["kind"]
    request = Request(
        kind=kind,
        operation=operation,  # type: ignore[arg-type]
        namespace="" if kind == "Namespace" else metadata.get("namespace", "default"),
        name=metadata.get("name", ""),
        object=obj if operation != "DELETE" else None,
        old_object=old,
        user=User(user, frozenset(groups)),
    )
    return engine.review(request, cluster, with_isolation=True)


def rule_ids(decision: Decision) -> set[str]:
    return {v.rule for v in decision.violations}
