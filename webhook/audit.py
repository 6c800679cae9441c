"""`netpol-guard audit`: judge what already runs in a cluster with the same engine as the webhook.

Every top-level workload, every NetworkPolicy and every Namespace is judged as if
it were created now, against the cluster's live Namespaces and NetworkPolicies.
An object owned by a controller we audit (a Pod of a ReplicaSet, a ReplicaSet of a
Deployment) is judged through that controller's template; one owned by anything
else (Argo Rollouts, OpenKruise, KubeVirt) is judged itself, so nothing goes
unreported. An object we cannot read is reported as an error and the audit goes on.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import replace
from typing import Any

from webhook.check import CheckReport, CheckResult, judge_as_created
from webhook.core.config import Config
from webhook.core.engine import Decision, Engine
from webhook.core.errors import ObjectError
from webhook.core.netpol import NetworkPolicy, parse_network_policy
from webhook.core.sources import SourceKind
from webhook.core.sources.base import SourcePolicy
from webhook.core.state import ClusterState, NamespaceInfo, parse_namespace
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
# Owners whose pod template the audit judges: (API group, kind). A same-named kind of another group
# (OpenKruise's apps.kruise.io StatefulSet) is not one of them.
AUDITED_OWNERS = frozenset({
    ("apps", "Deployment"), ("apps", "StatefulSet"), ("apps", "DaemonSet"), ("apps", "ReplicaSet"),
    ("", "ReplicationController"), ("batch", "CronJob"), ("batch", "Job"),
})
PAGE_SIZE = 500


def run_audit(config: Config, kubeconfig: str | None) -> CheckReport:
    return audit_objects(config, dict(_list_all(kubeconfig)), list(_list_sources(kubeconfig, config.coverage_sources)))


def audit_objects(
    config: Config, objects: Mapping[str, list[Mapping[str, Any]]],
    sources: Iterable[tuple[SourceKind, list[Mapping[str, Any]]]] = (),
) -> CheckReport:
    """Judge listed objects (kind -> raw items, as the API server returns them), and the coverage-source
    policies listed from the kinds the cluster serves."""
    sources = list(sources)
    errors: dict[tuple[str, int], CheckResult] = {}  # (kind, index) of what could not be read
    namespaces: list[NamespaceInfo] = []
    for index, obj in enumerate(objects.get("Namespace", [])):
        try:
            namespaces.append(parse_namespace(obj))
        except ObjectError as error:
            errors["Namespace", index] = _error(_manifest("Namespace", index, obj), config, error)
    policies: list[NetworkPolicy] = []
    unreadable: list[tuple[str, str, str]] = []
    for index, obj in enumerate(objects.get("NetworkPolicy", [])):
        try:
            policies.append(parse_network_policy(obj))
        except ObjectError as error:
            manifest = _manifest("NetworkPolicy", index, obj)
            unreadable.append((manifest.namespace("default"), manifest.name, str(error)))
            errors["NetworkPolicy", index] = _error(manifest, config, error)
    state = ClusterState()
    state.replace_all(namespaces, policies, unreadable)
    found: dict[tuple[str, ...], SourcePolicy] = {}
    source_errors: list[CheckResult] = []
    typed_sources: list[Manifest] = []
    for source_kind, items in sources:
        for index, obj in enumerate(items):
            manifest = Manifest(source=CLUSTER, document=index + 1,
                                obj={**obj, "kind": source_kind.kind,
                                     "apiVersion": f"{source_kind.group}/{source_kind.version}"})
            try:
                policy = source_kind.parse(manifest.obj, "default")
            except ObjectError as error:
                source_errors.append(_error(manifest, config, error))
                continue
            found.setdefault(policy.key, policy)
            typed_sources.append(manifest)
    state.replace_source_policies(found.values())
    engine = Engine(config)
    results: list[CheckResult] = []
    for kind, _, _ in LISTED:
        for index, obj in enumerate(objects.get(kind, [])):
            if (kind, index) in errors:
                results.append(errors[kind, index])
                continue
            if _controlled_by_audited_kind(obj):
                continue  # judged through its controller's pod template
            manifest = _manifest(kind, index, obj)
            try:
                result = judge_as_created(engine, state, manifest, "default")
            except ObjectError as error:
                results.append(_error(manifest, config, error))
                continue
            if kind == "Namespace":
                # protected-labels judges label *changes*; labels a namespace already has are not one.
                kept = tuple(v for v in result.decision.violations if v.rule != "protected-labels")
                result = replace(result, decision=replace(result.decision, violations=kept))
            results.append(result)
    for manifest in typed_sources:
        results.append(judge_as_created(engine, state, manifest, "default"))
    return CheckReport(results + source_errors)


def _manifest(kind: str, index: int, obj: Mapping[str, Any]) -> Manifest:
    return Manifest(source=CLUSTER, document=index + 1, obj={**obj, "kind": kind})


def _error(manifest: Manifest, config: Config, error: ObjectError) -> CheckResult:
    namespace = "" if manifest.kind == "Namespace" else manifest.namespace("default")
    decision = Decision(kind=manifest.kind, namespace=namespace, name=manifest.name, mode=config.mode, judged=False)
    return CheckResult(manifest, namespace, decision, error=f"cannot be read: {error}")


def _controlled_by_audited_kind(obj: Mapping[str, Any]) -> bool:
    metadata = obj.get("metadata")
    owners = (metadata.get("ownerReferences") if isinstance(metadata, Mapping) else None) or []
    for owner in owners:
        if not isinstance(owner, Mapping) or not owner.get("controller"):
            continue
        api_version = owner.get("apiVersion")
        group = api_version.rpartition("/")[0] if isinstance(api_version, str) else None
        if (group, owner.get("kind")) in AUDITED_OWNERS:
            return True
    return False


def _list_all(kubeconfig: str | None) -> Iterator[tuple[str, list[Mapping[str, Any]]]]:
    from kubernetes import client

    api = client.ApiClient(load_configuration(kubeconfig))
    for kind, api_class, method in LISTED:
        lister = getattr(getattr(client, api_class)(api), method)
        items: list[Mapping[str, Any]] = []
        token: str | None = None
        while True:
            try:
                # Raw camelCase JSON, exactly like manifests, so the core reads both the same way; paginated
                # with limit/continue so a large cluster never needs one huge response.
                kwargs: dict[str, Any] = {"limit": PAGE_SIZE, "_preload_content": False, "_request_timeout": 30}
                if token:
                    kwargs["_continue"] = token
                response = lister(**kwargs)
                body = json.loads(response.data)
            except Exception as error:  # the client raises ApiException, urllib3 and socket errors
                status = getattr(error, "status", None)
                why = (f"HTTP {status} {getattr(error, 'reason', '')}".strip() if status
                       else str(error).splitlines()[0])
                raise AuditError(f"cannot list {kind}s: {why}") from None
            items.extend(item for item in body.get("items") or [] if isinstance(item, Mapping))
            token = (body.get("metadata") or {}).get("continue")
            if not token:
                break
        yield kind, items


def _list_sources(
    kubeconfig: str | None, enabled: Iterable[str],
) -> Iterator[tuple[SourceKind, list[Mapping[str, Any]]]]:
    """Every policy of the enabled coverage-source kinds the cluster serves (none required)."""
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
