"""`netpol-guard audit`: judge what already runs in a cluster with the same engine as the webhook.

Every top-level workload (objects owned by a controller are judged through their
controller's template), every NetworkPolicy and every Namespace is judged as if
it were created now, against the cluster's live Namespaces and NetworkPolicies.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import replace
from typing import Any

from webhook.check import CheckReport, judge_as_created
from webhook.core.config import Config
from webhook.core.engine import Engine
from webhook.core.errors import ObjectError
from webhook.core.netpol import parse_network_policy
from webhook.core.sources import SourceKind
from webhook.core.sources.base import SourcePolicy
from webhook.core.state import ClusterState, parse_namespace
from webhook.discovery import DiscoveryError, served_source_kinds, why
from webhook.errors import AuditError as AuditError  # re-exported: raised here
from webhook.kubeclient import load_configuration
from webhook.loading import CLUSTER, Manifest

# (kind, client API class, list method), in report order.
LISTED: tuple[tuple[str, str, str], ...] = (
    ("Namespace", "CoreV1Api", "list_namespace"),
    ("NetworkPolicy", "NetworkingV1Api", "list_network_policy_for_all_namespaces"),
    ("Deployment", "AppsV1Api", "list_deployment_for_all_namespaces"),
    ("StatefulSet", "AppsV1Api", "list_stateful_set_for_all_namespaces"),
    ("DaemonSet", "AppsV1Api", "list_daemon_set_for_all_namespaces"),
    ("ReplicaSet", "AppsV1Api", "list_replica_set_for_all_namespaces"),
    ("ReplicationController", "CoreV1Api", "list_replication_controller_for_all_namespaces"),
    ("CronJob", "BatchV1Api", "list_cron_job_for_all_namespaces"),
    ("Job", "BatchV1Api", "list_job_for_all_namespaces"),
    ("Pod", "CoreV1Api", "list_pod_for_all_namespaces"),
)



def run_audit(config: Config, kubeconfig: str | None) -> CheckReport:
    objects = dict(_list_all(kubeconfig))
    sources = list(_list_sources(kubeconfig, config.coverage_sources))
    state = ClusterState()
    try:
        state.replace_all(
            (parse_namespace(o) for o in objects["Namespace"]),
            (parse_network_policy(o) for o in objects["NetworkPolicy"]),
        )
        policies: dict[tuple[str, ...], SourcePolicy] = {}
        for source_kind, source_items in sources:
            for item in source_items:
                policy = source_kind.parse(item, "default")
                policies.setdefault(policy.key, policy)
        state.replace_source_policies(policies.values())
    except ObjectError as error:
        raise AuditError(f"unreadable object in the cluster: {error}") from None
    engine = Engine(config)
    results = []
    listed = [(kind, "", objects[kind]) for kind, _, _ in LISTED]
    listed += [(k.kind, f"{k.group}/{k.version}", items) for k, items in sources]
    for kind, api_version, items in listed:
        for index, obj in enumerate(items):
            if _controlled(obj):
                continue  # judged through its controller's pod template
            typed = {**obj, "kind": kind, **({"apiVersion": api_version} if api_version else {})}
            manifest = Manifest(source=CLUSTER, document=index + 1, obj=typed)
            try:
                result = judge_as_created(engine, state, manifest, "default")
            except ObjectError as error:
                raise AuditError(f"{manifest.where}: {error}") from None
            if kind == "Namespace":
                # protected-labels judges label *changes*; labels a namespace already has are not one.
                kept = tuple(v for v in result.decision.violations if v.rule != "protected-labels")
                result = replace(result, decision=replace(result.decision, violations=kept))
            results.append(result)
    return CheckReport(results)


def _controlled(obj: Mapping[str, Any]) -> bool:
    owners = (obj.get("metadata") or {}).get("ownerReferences") or []
    return any(isinstance(o, Mapping) and o.get("controller") for o in owners)


def _list_all(kubeconfig: str | None) -> Iterator[tuple[str, list[Mapping[str, Any]]]]:
    from kubernetes import client

    api = client.ApiClient(load_configuration(kubeconfig))
    for kind, api_class, method in LISTED:
        lister = getattr(getattr(client, api_class)(api), method)
        try:
            # Raw camelCase JSON, exactly like manifests, so the core reads both the same way.
            response = lister(_preload_content=False, _request_timeout=30)
            body = json.loads(response.data)
        except Exception as error:  # the client raises ApiException, urllib3 and socket errors
            status = getattr(error, "status", None)
            why = f"HTTP {status} {getattr(error, 'reason', '')}".strip() if status else str(error).splitlines()[0]
            raise AuditError(f"cannot list {kind}s: {why}") from None
        yield kind, [item for item in body.get("items") or [] if isinstance(item, Mapping)]


def _list_sources(
    kubeconfig: str | None, enabled: Iterable[str],
) -> Iterator[tuple[SourceKind, list[Mapping[str, Any]]]]:
    from kubernetes import client

    api = client.ApiClient(load_configuration(kubeconfig))
    try:
        kinds = served_source_kinds(api, enabled)
    except DiscoveryError as error:
        raise AuditError(str(error)) from None
    for kind in kinds:
        try:
            response = client.CustomObjectsApi(api).list_cluster_custom_object(
                kind.group, kind.version, kind.plural, _preload_content=False, _request_timeout=30)
            body = json.loads(getattr(response, "data", b"{}"))
        except Exception as error:
            raise AuditError(f"cannot list {kind.kind}s ({kind.group}): {why(error)}") from None
        yield kind, [item for item in body.get("items") or [] if isinstance(item, Mapping)]
