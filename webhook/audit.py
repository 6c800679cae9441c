"""`netpol-guard audit`: judge what already runs in a cluster with the same engine as the webhook.

Every top-level workload (objects owned by a controller are judged through their
controller's template), every NetworkPolicy and every Namespace is judged as if
it were created now, against the cluster's live Namespaces and NetworkPolicies.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import replace
from typing import Any

from webhook.check import CheckReport, judge_as_created
from webhook.core.config import Config
from webhook.core.engine import Engine
from webhook.core.errors import ObjectError
from webhook.core.netpol import parse_network_policy
from webhook.core.state import ClusterState, parse_namespace
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
    state = ClusterState()
    try:
        state.replace_all(
            (parse_namespace(o) for o in objects["Namespace"]),
            (parse_network_policy(o) for o in objects["NetworkPolicy"]),
        )
    except ObjectError as error:
        raise AuditError(f"unreadable object in the cluster: {error}") from None
    engine = Engine(config)
    results = []
    for kind, _, _ in LISTED:
        for index, obj in enumerate(objects[kind]):
            if _controlled(obj):
                continue  # judged through its controller's pod template
            manifest = Manifest(source=CLUSTER, document=index + 1, obj={**obj, "kind": kind})
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
