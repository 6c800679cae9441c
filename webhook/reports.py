"""The background audit of `serve`: re-judge what runs, and keep policy reports in the cluster current.

Admission only sees writes; this loop sees what already exists (workloads admitted
before netpol-guard, in audit mode, or in a namespace that lost its default-deny).
It is a thin shell around the same pieces as `netpol-guard audit`:

- an informer cache of its own: list+watch (the reflector of webhook.cluster.reflector) of
  Namespaces, NetworkPolicies, the seven controller kinds and Pods, each object
  kept in a slim copy (identity, owner, pod-template labels and hostNetwork) so
  20,000 workloads cost megabytes, not the size of their specs;
- `audit.prepare` and `audit.judge_objects` over a snapshot of that cache (the engine of the webhook),
  then `core.reports.Reporter` for the report objects;
- a writer that creates or replaces one report per namespace and the cluster
  report by name, skips reports whose results did not change (a digest
  annotation), and deletes its own reports of namespaces no longer reported.

A pass runs every `audit.interval`, and `audit.debounce` after a relevant change (a
change of what the engine reads: labels, templates, policy specs; not a Pod's
status), never more than once per debounce while changes keep coming in. It
sleeps in proportion to the CPU it used so that it stays under `audit.cpuBudget`
of one core (the webhook in the same process keeps its share). It writes only
while `is_leader()` is true, so with several replicas only one writes.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, cast

from webhook.audit import KIND_ORDER, Objects, as_judged, judge_objects, namespace_uids, prepare
from webhook.cluster.reflector import KubernetesSource, _Reflector, _short
from webhook.core.config import Config
from webhook.core.engine import Engine
from webhook.core.reports import DIGEST_ANNOTATION, MANAGED_BY, REPORT_NAME, Reporter, ReportSet, report_kind
from webhook.core.sources.base import SourcePolicy
from webhook.core.workloads import TEMPLATE_PATHS
from webhook.kubeclient import load_configuration

log = logging.getLogger("netpol_guard.reports")

# kind -> (client API class, list-for-all-namespaces method): what the background audit watches.
WATCHED: dict[str, tuple[str, str]] = {
    "Namespace": ("CoreV1Api", "list_namespace"),
    "NetworkPolicy": ("NetworkingV1Api", "list_network_policy_for_all_namespaces"),
    "Deployment": ("AppsV1Api", "list_deployment_for_all_namespaces"),
    "StatefulSet": ("AppsV1Api", "list_stateful_set_for_all_namespaces"),
    "DaemonSet": ("AppsV1Api", "list_daemon_set_for_all_namespaces"),
    "ReplicaSet": ("AppsV1Api", "list_replica_set_for_all_namespaces"),
    "ReplicationController": ("CoreV1Api", "list_replication_controller_for_all_namespaces"),
    "CronJob": ("BatchV1Api", "list_cron_job_for_all_namespaces"),
    "Job": ("BatchV1Api", "list_job_for_all_namespaces"),
    "Pod": ("CoreV1Api", "list_pod_for_all_namespaces"),
}
# Judge this many objects between CPU-budget checks (a few milliseconds of work).
SLICE = 200
# While changes keep coming, a pass still runs at least this often (seconds; or the debounce if longer).
MAX_DELAY = 30.0
# Seconds between looks at the webhook cache's coverage-source policies (no events come from there).
SOURCE_POLL = 2.0
WRITE_TIMEOUT = (5.0, 30.0)
# (group, version, plural) of the namespaced and the cluster-scoped report of each format.
PLURALS = {"Report": "reports", "ClusterReport": "clusterreports",
           "PolicyReport": "policyreports", "ClusterPolicyReport": "clusterpolicyreports"}


# ----- slim copies -----
def slim(kind: str, obj: Mapping[str, Any]) -> dict[str, Any]:
    """What the engine and the reports read of an object; equal slim copies mean nothing relevant changed."""
    metadata = obj.get("metadata")
    meta: dict[str, Any] = {}
    if isinstance(metadata, Mapping):
        for key in ("name", "namespace", "uid", "generateName", "deletionTimestamp", "labels"):
            if metadata.get(key) is not None:
                meta[key] = metadata[key]
        owners = metadata.get("ownerReferences")
        if isinstance(owners, list):
            meta["ownerReferences"] = [
                {k: o.get(k) for k in ("apiVersion", "kind", "name", "controller")}
                for o in owners if isinstance(o, Mapping) and o.get("controller") is True
            ]
    else:
        meta = metadata  # type: ignore[assignment]  # malformed: keep it, the engine says what is wrong
    out: dict[str, Any] = {"apiVersion": obj.get("apiVersion"), "metadata": meta}
    if kind == "Namespace":
        status = obj.get("status")
        if isinstance(status, Mapping) and status.get("phase") is not None:
            out["status"] = {"phase": status["phase"]}
        return out
    if kind == "NetworkPolicy":
        out["spec"] = obj.get("spec")
        return out
    path = TEMPLATE_PATHS.get(kind)
    if path:
        if isinstance(meta, dict):
            meta.pop("labels", None)  # a controller's own labels are not judged, its template's are
        out.update(_slim_path(obj, path))
    else:  # a Pod: its own labels and hostNetwork
        spec = obj.get("spec")
        out["spec"] = {"hostNetwork": spec.get("hostNetwork")} if isinstance(spec, Mapping) else spec
    return out


def _slim_path(obj: Mapping[str, Any], path: tuple[str, ...]) -> dict[str, Any]:
    """The nodes along a template path, keeping of the template only its labels and hostNetwork."""
    node: Any = obj.get(path[0])
    if len(path) == 1:
        return {path[0]: _slim_template(node)}
    if not isinstance(node, Mapping):
        return {path[0]: node}  # malformed (or absent): kept as is, so the engine reports it
    return {path[0]: _slim_path(node, path[1:])}


def _slim_template(node: Any) -> Any:
    if not isinstance(node, Mapping):
        return node
    out: dict[str, Any] = {}
    metadata, spec = node.get("metadata"), node.get("spec")
    out["metadata"] = {"labels": metadata.get("labels")} if isinstance(metadata, Mapping) else metadata
    out["spec"] = {"hostNetwork": spec.get("hostNetwork")} if isinstance(spec, Mapping) else spec
    return out


class ObjectStore:
    """Slim copies of one kind's objects, keyed by namespace/name; says when something relevant changed."""

    def __init__(self, kind: str, on_change: Callable[[], None]) -> None:
        self.kind = kind
        self._on_change = on_change
        self._lock = threading.Lock()
        self._objects: dict[tuple[str, str], dict[str, Any]] = {}

    @staticmethod
    def _key(obj: Mapping[str, Any]) -> tuple[str, str]:
        metadata = obj.get("metadata")
        if not isinstance(metadata, Mapping):
            return ("", "")
        return (str(metadata.get("namespace") or ""), str(metadata.get("name") or ""))

    def put(self, obj: Mapping[str, Any]) -> None:
        copy = slim(self.kind, obj)
        key = self._key(obj)
        with self._lock:
            changed = self._objects.get(key) != copy
            self._objects[key] = copy
        if changed:
            self._on_change()

    def remove(self, obj: Mapping[str, Any]) -> None:
        with self._lock:
            changed = self._objects.pop(self._key(obj), None) is not None
        if changed:
            self._on_change()

    def replace(self, items: Iterable[Any]) -> None:
        fresh = {self._key(o): slim(self.kind, o) for o in items if isinstance(o, Mapping)}
        with self._lock:
            changed = fresh != self._objects
            self._objects = fresh
        if changed:
            self._on_change()

    def snapshot(self) -> list[dict[str, Any]]:
        with self._lock:
            return [self._objects[key] for key in sorted(self._objects)]

    def __len__(self) -> int:
        return len(self._objects)


class _StoreReflector(_Reflector):
    """webhook.cluster.reflector's list+watch (410 relist, backoff, bookmarks), applied to an ObjectStore."""

    def __init__(self, owner: _Informers, store: ObjectStore, list_call: Callable[..., Any]) -> None:
        # The reflector reads only `stopping`, `touch` and `synced_after` of its owner.
        super().__init__(cast(KubernetesSource, owner), store.kind, list_call)
        self.store = store
        self.thread.name = f"audit-reflector-{store.kind}"

    def _set(self, obj: Mapping[str, Any]) -> None:
        self.store.put(obj)

    def _delete(self, obj: Mapping[str, Any]) -> None:
        self.store.remove(obj)

    def _replace(self, items: list[Any]) -> None:
        self.store.replace(items)


class Informers(Protocol):
    """What the loop needs of an informer cache."""

    stores: dict[str, ObjectStore]

    @property
    def synced(self) -> bool: ...

    def start(self) -> None: ...

    def stop(self) -> None: ...


class _Informers:
    """The background audit's informer cache: one reflector and store per watched kind."""

    def __init__(self, api_client: Any, on_change: Callable[[], None]) -> None:
        from kubernetes import client

        self.stopping = threading.Event()
        self.stores = {kind: ObjectStore(kind, on_change) for kind in WATCHED}
        self._reflectors = [
            _StoreReflector(self, self.stores[kind], getattr(getattr(client, api)(api_client), method))
            for kind, (api, method) in WATCHED.items()
        ]

    @property
    def synced(self) -> bool:
        return all(r.synced for r in self._reflectors)

    def not_synced(self) -> list[str]:
        return [r.kind + (f" ({r.last_error})" if r.last_error else "") for r in self._reflectors if not r.synced]

    def synced_after(self, reflector: _Reflector) -> bool:
        return all(r.synced or r is reflector for r in self._reflectors)

    def touch(self) -> None:
        pass

    def start(self) -> None:
        for reflector in self._reflectors:
            reflector.thread.start()

    def stop(self) -> None:
        self.stopping.set()
        for reflector in self._reflectors:
            reflector.interrupt()
        for reflector in self._reflectors:
            if reflector.thread.is_alive():
                reflector.thread.join(timeout=2.0)


# ----- one pass -----
@dataclass
class PassResult:
    """What one pass found and did (for logs and metrics)."""

    started: float  # wall-clock time
    duration: float = 0.0
    objects: int = 0
    coverage: dict[str, tuple[bool, bool]] = field(default_factory=dict)  # reported namespace -> (ingress, egress)
    violations: dict[tuple[str, str], int] = field(default_factory=dict)  # (rule, namespace) -> count
    written: int = 0
    unchanged: int = 0
    deleted: int = 0
    errors: list[str] = field(default_factory=list)


class CpuBudget:
    """Sleep in proportion to the CPU used since the last check, to stay under `fraction` of one core."""

    def __init__(self, fraction: float, stop: threading.Event) -> None:
        self.fraction = fraction
        self.stop = stop
        self._mark = time.thread_time()
        self.slept = 0.0

    def check(self) -> None:
        now = time.thread_time()
        used, self._mark = now - self._mark, now
        if self.fraction < 1 and used > 0:
            pause = used * (1 - self.fraction) / self.fraction
            self.slept += pause
            self.stop.wait(pause)
            self._mark = time.thread_time()


def audit_pass(config: Config, objects: Objects, budget: CpuBudget | None = None,
               source_policies: Iterable[SourcePolicy] = ()) -> tuple[ReportSet, PassResult]:
    """Judge a snapshot of the cache and build every report; pure apart from the budget's sleeps.
    `source_policies`: the cluster-wide and CNI policies (already parsed) that add coverage."""
    result = PassResult(started=time.time())
    clock = time.monotonic()
    prepared = prepare(config, objects)
    state = prepared.state
    state.replace_source_policies(source_policies)
    judged = []
    for index, item in enumerate(judge_objects(Engine(config), prepared, objects)):
        judged.append(as_judged(item))
        for violation in item.decision.violations:
            key = (violation.rule, item.namespace)
            result.violations[key] = result.violations.get(key, 0) + 1
        if budget is not None and index % SLICE == SLICE - 1:
            budget.check()
    result.objects = len(judged)
    reports = Reporter(config).build(judged, state, namespace_uids(objects.get("Namespace", [])),
                                     int(result.started))
    for name in reports.namespaced:
        coverage = state.coverage(name)
        result.coverage[name] = (coverage.ingress, coverage.egress)
    result.duration = time.monotonic() - clock
    return reports, result


# ----- writing -----
class ReportWriter:
    """Create, replace (by name, with the resourceVersion read) or delete netpol-guard's reports."""

    def __init__(self, api_client: Any, report_format: str) -> None:
        from kubernetes import client

        self.api = client.CustomObjectsApi(api_client)
        api_version, self.kind = report_kind(report_format, cluster=False)  # type: ignore[arg-type]
        self.group, _, self.version = api_version.partition("/")
        _, self.cluster_kind = report_kind(report_format, cluster=True)  # type: ignore[arg-type]
        self.plural, self.cluster_plural = PLURALS[self.kind], PLURALS[self.cluster_kind]
        self.selector = ",".join(f"{k}={v}" for k, v in MANAGED_BY.items())

    def write(self, reports: ReportSet, result: PassResult, budget: CpuBudget | None = None,
              allowed: Callable[[], bool] = lambda: True) -> bool:
        """Bring the cluster's reports to `reports`. Stops (returning False) as soon as `allowed()` is false:
        a replica that lost leadership mid-pass must not keep writing next to the new leader."""
        existing = self._existing()
        for namespace, report in reports.namespaced.items():
            if not allowed():
                return False
            self._put(namespace, report, existing.pop(namespace, None), result)
            if budget is not None:
                budget.check()
        for namespace in sorted(existing):  # ours, in namespaces that are no longer reported (exempt, gone)
            if not allowed():
                return False
            try:
                self.api.delete_namespaced_custom_object(self.group, self.version, namespace, self.plural,
                                                         REPORT_NAME, _request_timeout=WRITE_TIMEOUT)
                result.deleted += 1
            except Exception as error:
                if getattr(error, "status", None) != 404:
                    result.errors.append(f"delete {self.kind} {namespace}/{REPORT_NAME}: {_short(error)}")
        if not allowed():
            return False
        self._put("", reports.cluster, self._read(""), result)
        return True

    def delete_all(self) -> int:
        """Delete every report of this format that netpol-guard wrote; 0 when the kind is not installed."""
        removed = 0
        try:
            existing = self._existing()
            for namespace in sorted(existing):
                self.api.delete_namespaced_custom_object(self.group, self.version, namespace, self.plural,
                                                         REPORT_NAME, _request_timeout=WRITE_TIMEOUT)
                removed += 1
            if self._read("") is not None:
                self.api.delete_cluster_custom_object(self.group, self.version, self.cluster_plural, REPORT_NAME,
                                                      _request_timeout=WRITE_TIMEOUT)
                removed += 1
        except Exception as error:
            if getattr(error, "status", None) not in (404, 403):  # CRD not installed, or no RBAC for it
                log.warning("cannot remove netpol-guard's %s reports: %s", self.kind, _short(error))
        return removed

    def _existing(self) -> dict[str, Mapping[str, Any]]:
        listing: Any = self.api.list_cluster_custom_object(self.group, self.version, self.plural,
                                                      label_selector=self.selector, _request_timeout=WRITE_TIMEOUT)
        found = {}
        for item in listing.get("items") or []:
            metadata = item.get("metadata") or {}
            if metadata.get("name") == REPORT_NAME and metadata.get("namespace"):
                found[metadata["namespace"]] = metadata
        return found

    def _put(self, namespace: str, report: dict[str, Any], current: Mapping[str, Any] | None,
             result: PassResult) -> None:
        what = f"{report['kind']} {namespace + '/' if namespace else ''}{REPORT_NAME}"
        digest = report["metadata"]["annotations"][DIGEST_ANNOTATION]
        try:
            if current is not None and (current.get("annotations") or {}).get(DIGEST_ANNOTATION) == digest:
                result.unchanged += 1
                return
            for attempt in range(2):
                try:
                    if current is None:
                        self._create(namespace, report)
                    else:
                        body = {**report, "metadata": {**report["metadata"],
                                                       "resourceVersion": current.get("resourceVersion")}}
                        self._replace(namespace, body)
                    result.written += 1
                    return
                except Exception as error:
                    # 409: created meanwhile, or replaced since we read it; read it again once.
                    if getattr(error, "status", None) != 409 or attempt:
                        raise
                    current = self._read(namespace)
        except Exception as error:
            status = getattr(error, "status", None)
            if status in (403, 404) and namespace and "terminat" in str(getattr(error, "body", "")).lower():
                return  # the namespace is being deleted: its report goes with it
            if status == 404 and namespace:
                return  # the namespace is gone
            result.errors.append(f"write {what}: {_short(error)}")

    def _create(self, namespace: str, report: dict[str, Any]) -> None:
        if namespace:
            self.api.create_namespaced_custom_object(self.group, self.version, namespace, self.plural, report,
                                                     _request_timeout=WRITE_TIMEOUT)
        else:
            self.api.create_cluster_custom_object(self.group, self.version, self.cluster_plural, report,
                                                  _request_timeout=WRITE_TIMEOUT)

    def _replace(self, namespace: str, report: dict[str, Any]) -> None:
        if namespace:
            self.api.replace_namespaced_custom_object(self.group, self.version, namespace, self.plural,
                                                      REPORT_NAME, report, _request_timeout=WRITE_TIMEOUT)
        else:
            self.api.replace_cluster_custom_object(self.group, self.version, self.cluster_plural, REPORT_NAME,
                                                   report, _request_timeout=WRITE_TIMEOUT)

    def _read(self, namespace: str) -> Mapping[str, Any] | None:
        item: Any
        try:
            if namespace:
                item = self.api.get_namespaced_custom_object(self.group, self.version, namespace, self.plural,
                                                             REPORT_NAME, _request_timeout=WRITE_TIMEOUT)
            else:
                item = self.api.get_cluster_custom_object(self.group, self.version, self.cluster_plural,
                                                          REPORT_NAME, _request_timeout=WRITE_TIMEOUT)
        except Exception as error:
            if getattr(error, "status", None) == 404:
                return None
            raise
        metadata: Mapping[str, Any] = item.get("metadata") or {}
        return metadata


# ----- the loop -----
class BackgroundAudit:
    """The reporter: informers, a timer and change triggers, passes under a CPU budget, writes when leader."""

    def __init__(self, config: Config, informers: Informers, writer: ReportWriter, *,
                 stale_writer: ReportWriter | None = None,
                 is_leader: Callable[[], bool] = lambda: True,
                 on_pass: Callable[[PassResult], None] | None = None,
                 source_policies: Callable[[], tuple[SourcePolicy, ...]] = tuple) -> None:
        """`informers` must call `changed()` on relevant changes; `stale_writer` (the other format's) is
        cleared once, on the first pass as leader. `source_policies` gives the cluster-wide and CNI
        policies the webhook's cache holds (a new tuple whenever they change): they add coverage."""
        self.config = config
        self.settings = config.audit
        self.is_leader = is_leader
        self.on_pass = on_pass
        self.source_policies = source_policies
        self._sources_noticed: tuple[SourcePolicy, ...] = ()  # last tuple that triggered a pass
        self.stopping = threading.Event()
        self._wake = threading.Event()
        self._lock = threading.Lock()
        self._changes = 0  # relevant changes seen so far
        self._first_change: float | None = None  # monotonic time of the oldest change not yet judged
        self._last_change = 0.0
        self.informers = informers
        self.writer = writer
        self._stale_writer = stale_writer
        self.last: PassResult | None = None
        self.thread = threading.Thread(target=self._run, name="background-audit", daemon=True)

    @classmethod
    def connect(cls, config: Config, kubeconfig: str | None, *, is_leader: Callable[[], bool] = lambda: True,
                on_pass: Callable[[PassResult], None] | None = None,
                source_policies: Callable[[], tuple[SourcePolicy, ...]] = tuple) -> BackgroundAudit:
        """The background audit of `serve`, on the API server of `kubeconfig` (or in-cluster)."""
        from kubernetes import client

        configuration = load_configuration(kubeconfig)
        # One long-lived connection per watch, plus room for the lists after a relist.
        configuration.connection_pool_maxsize = len(WATCHED) + 4
        write_client = client.ApiClient(load_configuration(kubeconfig))
        report_format = config.audit.report_format
        other = "policyreport" if report_format == "openreports" else "openreports"
        holder: list[BackgroundAudit] = []
        informers = _Informers(client.ApiClient(configuration), lambda: holder[0].changed())
        audit = cls(config, informers, ReportWriter(write_client, report_format),
                    stale_writer=ReportWriter(write_client, other), is_leader=is_leader, on_pass=on_pass,
                    source_policies=source_policies)
        holder.append(audit)
        return audit

    def changed(self) -> None:
        """A relevant change was seen (called by the informers' stores)."""
        now = time.monotonic()
        with self._lock:
            self._changes += 1
            self._last_change = now
            if self._first_change is None:
                self._first_change = now
        self._wake.set()

    def leadership_changed(self) -> None:
        """Call when is_leader() may have changed: a new leader writes at once."""
        self._wake.set()

    def start(self) -> None:
        self.informers.start()
        self.thread.start()

    def stop(self) -> None:
        self.stopping.set()
        self._wake.set()
        self.informers.stop()
        if self.thread.is_alive():
            self.thread.join(timeout=5.0)

    def _due(self, next_full: float) -> float:
        with self._lock:
            if self._first_change is None:
                return next_full
            debounce = self.settings.debounce
            return min(next_full, self._last_change + debounce, self._first_change + max(MAX_DELAY, debounce))

    def _run(self) -> None:
        while not self.stopping.is_set() and not self.informers.synced:
            self.stopping.wait(0.2)
        next_full = time.monotonic()
        was_leader = False
        while not self.stopping.is_set():
            leader = self.is_leader()
            if not leader:
                was_leader = False
                self._wake.wait(5.0)
                self._wake.clear()
                continue
            if not was_leader:
                next_full = time.monotonic()  # just became the writer: write now
                was_leader = True
            current = self.source_policies()
            if current is not self._sources_noticed:
                self._sources_noticed = current
                self.changed()  # a cluster-wide or CNI policy changed in the webhook's cache
            now = time.monotonic()
            due = self._due(next_full)
            if now < due:
                # Wake at least every SOURCE_POLL seconds to notice changes of the coverage sources.
                self._wake.wait(min(due - now, SOURCE_POLL))
                self._wake.clear()
                continue
            with self._lock:
                seen = self._changes
            try:
                self.run_once()
            except Exception as error:  # one failed pass must not end the loop
                log.warning("background audit pass failed: %s", _short(error))
            with self._lock:
                if self._changes == seen:
                    self._first_change = None
                else:  # changed while judging: judge again after the debounce
                    self._first_change = self._last_change
            next_full = time.monotonic() + self.settings.interval

    def run_once(self) -> PassResult:
        """One full pass over the cache: judge, build, write. Blocking."""
        if self._stale_writer is not None:
            # After a switch of audit.reportFormat, our reports of the other format would go stale: remove them.
            removed = self._stale_writer.delete_all()
            if removed:
                log.info("removed %d netpol-guard reports of the %s kind", removed, self._stale_writer.kind)
            self._stale_writer = None
        budget = CpuBudget(self.settings.cpu_budget, self.stopping)
        snapshot = {kind: self.informers.stores[kind].snapshot() for kind in KIND_ORDER}
        reports, result = audit_pass(self.config, snapshot, budget, self.source_policies())
        clock = time.monotonic()
        if not self.writer.write(reports, result, budget, allowed=self.is_leader):
            log.info("background audit: stopped writing mid-pass, no longer the leader")
        result.duration += time.monotonic() - clock
        for error in result.errors[:10]:
            log.warning("background audit: %s", error)
        log.info("background audit pass: %d objects, %d reports written, %d unchanged, %d deleted, "
                 "%d errors in %.2fs (%.2fs pausing for the CPU budget)", result.objects, result.written,
                 result.unchanged, result.deleted, len(result.errors), result.duration, budget.slept)
        self.last = result
        if self.on_pass is not None:
            self.on_pass(result)
        return result
