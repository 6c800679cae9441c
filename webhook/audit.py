"""`netpol-guard audit`: judge what already runs in a cluster with the same engine as the webhook.

Every top-level workload (objects owned by one of the seven controller kinds are
judged through their controller's template; a Pod run by any other controller,
such as an operator's custom resource, is judged itself), every NetworkPolicy
and every Namespace is judged as if it were created now, against the cluster's
live Namespaces and NetworkPolicies. The background audit of `serve`
(webhook.reports) judges its informer cache through the same `judge_objects`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, replace
from typing import Any

from webhook.check import CheckReport, CheckResult, judge_as_created
from webhook.core.config import Config
from webhook.core.engine import Engine
from webhook.core.errors import ObjectError
from webhook.core.netpol import parse_network_policy
from webhook.core.reports import Judged, object_ref
from webhook.core.state import ClusterState, ClusterView, parse_namespace
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
KIND_ORDER = tuple(kind for kind, _, _ in LISTED)

# (API group, kind) of the controllers whose pod templates are judged: what they control is judged through them.
CONTROLLERS = frozenset({
    ("apps", "Deployment"), ("apps", "StatefulSet"), ("apps", "DaemonSet"), ("apps", "ReplicaSet"),
    ("", "ReplicationController"), ("batch", "Job"), ("batch", "CronJob"),
})



@dataclass(frozen=True)
class Unreadable:
    """An object the engine could not read (the background audit reports it as an error result)."""

    manifest: Manifest
    namespace: str
    error: str


@dataclass(frozen=True)
class AuditRun:
    """One audit: the results (check's shape) and the state they were judged against (for pages and reports)."""

    report: CheckReport
    state: ClusterState
    namespace_uids: dict[str, str]


def run_audit(config: Config, kubeconfig: str | None) -> AuditRun:
    return audit_objects(config, dict(_list_all(kubeconfig)))


def audit_objects(config: Config, objects: Mapping[str, list[Mapping[str, Any]]]) -> AuditRun:
    """The audit of listed objects (kind -> raw objects); raises AuditError for an unreadable one."""
    state = ClusterState()
    try:
        state.replace_all(
            (parse_namespace(o) for o in objects.get("Namespace", ())),
            (parse_network_policy(o) for o in objects.get("NetworkPolicy", ())),
        )
    except ObjectError as error:
        raise AuditError(f"unreadable object in the cluster: {error}") from None
    results = []
    for judged in judge_objects(Engine(config), state, objects):
        if isinstance(judged, Unreadable):
            raise AuditError(f"{judged.manifest.where}: {judged.error}")
        results.append(judged)
    return AuditRun(CheckReport(results), state, namespace_uids(objects.get("Namespace", ())))


def judge_objects(engine: Engine, view: ClusterView, objects: Mapping[str, Iterable[Mapping[str, Any]]]
                  ) -> Iterator[CheckResult | Unreadable]:
    """Judge every listed object (by kind, in KIND_ORDER) as if created now; one at a time, lazily."""
    for kind in KIND_ORDER:
        for index, obj in enumerate(objects.get(kind, ())):
            if controlled_by_judged_kind(obj):
                continue  # judged through its controller's pod template
            manifest = Manifest(source=CLUSTER, document=index + 1, obj={**obj, "kind": kind})
            try:
                result = judge_as_created(engine, view, manifest, "default")
            except ObjectError as error:
                yield Unreadable(manifest, "" if kind == "Namespace" else manifest.namespace("default"), str(error))
                continue
            if kind == "Namespace":
                # protected-labels judges label *changes*; labels a namespace already has are not one.
                kept = tuple(v for v in result.decision.violations if v.rule != "protected-labels")
                result = replace(result, decision=replace(result.decision, violations=kept))
            yield result


def as_judged(item: CheckResult | Unreadable) -> Judged:
    """An audit result as the report builder takes it."""
    ref = object_ref(item.manifest.obj, item.manifest.kind, item.namespace)
    if isinstance(item, Unreadable):
        return Judged(ref, None, item.error)
    return Judged(ref, item.decision)


def controlled_by_judged_kind(obj: Mapping[str, Any]) -> bool:
    """True when the object's controller is one of the seven kinds whose templates are judged."""
    metadata = obj.get("metadata")
    owners = metadata.get("ownerReferences") if isinstance(metadata, Mapping) else None
    if not isinstance(owners, list):
        return False
    for owner in owners:
        if isinstance(owner, Mapping) and owner.get("controller") is True:
            api_version = str(owner.get("apiVersion") or "")
            group = api_version.rpartition("/")[0]
            return (group, str(owner.get("kind") or "")) in CONTROLLERS
    return False


def namespace_uids(namespaces: Iterable[Mapping[str, Any]]) -> dict[str, str]:
    uids = {}
    for obj in namespaces:
        metadata = obj.get("metadata")
        if isinstance(metadata, Mapping) and isinstance(metadata.get("name"), str):
            uids[metadata["name"]] = str(metadata.get("uid") or "")
    return uids


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
