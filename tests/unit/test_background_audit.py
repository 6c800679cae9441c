"""The background audit's pieces without an API server: slim copies, change detection, budget, pass, writer."""

from __future__ import annotations

import copy
import threading
import time
from typing import Any

import pytest

from tests.browser.sample import sample_objects
from tests.unit.helpers import pod
from webhook.audit import as_judged, audit_run
from webhook.core.config import config_from_data
from webhook.core.reports import DIGEST_ANNOTATION, Reporter, ReportSet
from webhook.reports import (
    WATCHED,
    BackgroundAudit,
    CpuBudget,
    ObjectStore,
    PassResult,
    ReportWriter,
    audit_pass,
    slim,
)


def full_objects() -> dict[str, list[dict[str, Any]]]:
    objects = sample_objects()
    for kind, items in objects.items():
        for index, obj in enumerate(items):
            obj["metadata"]["uid"] = f"{kind}-{index}"
            obj["metadata"]["annotations"] = {"big": "x" * 1000}
            obj.setdefault("status", {"phase": "Running", "conditions": [{"type": "Ready"}]})
    deployment = objects["Deployment"][0]
    deployment["spec"]["template"]["spec"]["containers"][0]["env"] = [{"name": "A", "value": "1"}]
    owned = pod("web-abc", "legacy")
    owned["metadata"]["ownerReferences"] = [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web",
                                             "uid": "rs", "controller": True, "blockOwnerDeletion": True}]
    operated = pod("db-0", "legacy")
    operated["metadata"]["ownerReferences"] = [{"apiVersion": "example.com/v1", "kind": "Database", "name": "db",
                                                "uid": "db", "controller": True}]
    bad = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "bad", "namespace": "legacy"},
           "spec": {"template": "not a mapping"}}
    objects["Pod"] = [owned, operated]
    objects["Deployment"].append(bad)
    return objects


def test_judging_slim_copies_gives_the_same_reports_as_the_full_objects() -> None:
    config = config_from_data({})
    full = full_objects()
    slimmed = {kind: [slim(kind, o) for o in items] for kind, items in full.items()}
    reports, result = audit_pass(config, slimmed)
    # The same judgement of the full objects, through the CLI audit's path (minus the unreadable one).
    readable = copy.deepcopy(full)
    readable["Deployment"] = readable["Deployment"][:-1]
    run = audit_run(config, readable)
    expected = Reporter(config).build([as_judged(r) for r in run.report.results], run.state,
                                      run.namespace_uids, int(result.started))
    for name, report in expected.namespaced.items():
        got = [r for r in reports.namespaced[name]["results"] if r["policy"] != "unreadable-object"]
        assert got == report["results"], name
    errors = [r for r in reports.namespaced["legacy"]["results"] if r["result"] == "error"]
    assert [e["resources"][0]["name"] for e in errors] == ["bad"]
    assert "spec.template" in errors[0]["message"]
    text = str(slimmed)
    assert "xxxx" not in text and "env" not in text and "Ready" not in text and "nginx" not in text
    assert result.coverage == {"half": (True, False), "legacy": (False, False), "payments": (True, True),
                               "shop": (True, True)}
    assert result.violations[("deny-all-coverage", "legacy")] == 3  # cron, old-web, and db-0 of the operator


def test_only_relevant_changes_trigger_a_pass() -> None:
    changes: list[int] = []
    store = ObjectStore("Pod", lambda: changes.append(1))
    obj = pod("web", "shop")
    store.replace([obj])
    assert len(changes) == 1
    status_only = copy.deepcopy(obj)
    status_only["status"] = {"phase": "Running"}
    status_only["metadata"]["resourceVersion"] = "42"
    store.put(status_only)
    store.replace([status_only])  # a relist with nothing new
    assert len(changes) == 1
    relabelled = copy.deepcopy(obj)
    relabelled["metadata"]["labels"] = {"app": "other"}
    store.put(relabelled)
    assert len(changes) == 2
    store.remove(relabelled)
    store.remove(relabelled)  # already gone: no change
    assert len(changes) == 3 and len(store) == 0
    deployments = ObjectStore("Deployment", lambda: changes.append(1))
    deployment = full_objects()["Deployment"][0]
    deployments.put(deployment)
    scaled = copy.deepcopy(deployment)
    scaled["spec"]["replicas"] = 5
    scaled["metadata"]["labels"] = {"only": "the controller's own labels"}
    deployments.put(scaled)
    assert len(changes) == 4
    host = copy.deepcopy(deployment)
    host["spec"]["template"]["spec"]["hostNetwork"] = True
    deployments.put(host)
    assert len(changes) == 5


def test_cpu_budget_sleeps_in_proportion() -> None:
    budget = CpuBudget(0.25, threading.Event())
    start = time.thread_time()
    while time.thread_time() - start < 0.05:
        pass
    wall = time.monotonic()
    budget.check()
    assert 0.14 <= budget.slept <= 0.3  # ~3x the CPU used
    assert time.monotonic() - wall >= 0.14
    unlimited = CpuBudget(1.0, threading.Event())
    unlimited.check()
    assert unlimited.slept == 0


class FakeApiError(Exception):
    def __init__(self, status: int, body: str = "") -> None:
        super().__init__(f"HTTP {status}")
        self.status, self.reason, self.body = status, "", body


class FakeCustomObjects:
    """The five CustomObjectsApi calls the writer makes, over a dict (plain data, for the unit tier)."""

    def __init__(self) -> None:
        self.objects: dict[tuple[str, str], dict[str, Any]] = {}
        self.version = 0
        self.calls: list[str] = []
        self.conflict_once = False
        self.terminating: set[str] = set()

    def _store(self, namespace: str, body: dict[str, Any]) -> None:
        self.version += 1
        stored = copy.deepcopy(body)
        stored["metadata"]["resourceVersion"] = str(self.version)
        self.objects[(namespace, body["metadata"]["name"])] = stored

    def list_cluster_custom_object(self, group: str, version: str, plural: str, **kw: Any) -> dict[str, Any]:
        self.calls.append("list")
        return {"items": [copy.deepcopy(o) for (ns, _), o in sorted(self.objects.items()) if ns]}

    def get_cluster_custom_object(self, group: str, version: str, plural: str, name: str, **kw: Any) -> Any:
        if ("", name) not in self.objects:
            raise FakeApiError(404)
        return copy.deepcopy(self.objects[("", name)])

    def get_namespaced_custom_object(self, group: str, version: str, ns: str, plural: str, name: str,
                                     **kw: Any) -> Any:
        if (ns, name) not in self.objects:
            raise FakeApiError(404)
        return copy.deepcopy(self.objects[(ns, name)])

    def create_namespaced_custom_object(self, group: str, version: str, ns: str, plural: str, body: Any,
                                        **kw: Any) -> None:
        self.calls.append(f"create {ns}")
        if ns in self.terminating:
            raise FakeApiError(403, f"unable to create new content in namespace {ns} because it is being terminated")
        if (ns, body["metadata"]["name"]) in self.objects:
            raise FakeApiError(409)
        self._store(ns, body)

    def create_cluster_custom_object(self, group: str, version: str, plural: str, body: Any, **kw: Any) -> None:
        self.calls.append("create cluster")
        self._store("", body)

    def replace_namespaced_custom_object(self, group: str, version: str, ns: str, plural: str, name: str,
                                         body: Any, **kw: Any) -> None:
        self.calls.append(f"replace {ns}")
        current = self.objects[(ns, name)]
        if self.conflict_once or body["metadata"].get("resourceVersion") != current["metadata"]["resourceVersion"]:
            self.conflict_once = False
            self.version += 1
            current["metadata"]["resourceVersion"] = str(self.version)
            raise FakeApiError(409)
        self._store(ns, body)

    def replace_cluster_custom_object(self, group: str, version: str, plural: str, name: str, body: Any,
                                      **kw: Any) -> None:
        self.calls.append("replace cluster")
        self._store("", body)

    def delete_namespaced_custom_object(self, group: str, version: str, ns: str, plural: str, name: str,
                                        **kw: Any) -> None:
        self.calls.append(f"delete {ns}")
        del self.objects[(ns, name)]


@pytest.fixture
def writer() -> tuple[ReportWriter, FakeCustomObjects]:
    out = ReportWriter.__new__(ReportWriter)
    ReportWriter.__init__(out, None, "openreports")
    fake = FakeCustomObjects()
    out.api = fake  # type: ignore[assignment]
    return out, fake


def test_writer_creates_then_skips_unchanged_then_replaces_and_deletes_stale(
        writer: tuple[ReportWriter, FakeCustomObjects]) -> None:
    report_writer, fake = writer
    config = config_from_data({})
    objects = full_objects()
    reports, _ = audit_pass(config, objects)
    first = PassResult(started=0)
    report_writer.write(reports, first)
    assert (first.written, first.unchanged, first.deleted, first.errors) == (5, 0, 0, [])
    assert sorted(ns for ns, _ in fake.objects) == ["", "half", "legacy", "payments", "shop"]

    fake.calls.clear()
    again, _ = audit_pass(config, objects)
    second = PassResult(started=0)
    report_writer.write(again, second)
    assert (second.written, second.unchanged) == (0, 5)
    assert fake.calls == ["list"]  # nothing changed: nothing written

    objects["NetworkPolicy"].append({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
                                     "metadata": {"name": "deny", "namespace": "legacy"},
                                     "spec": {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}})
    objects["Namespace"] = [n for n in objects["Namespace"] if n["metadata"]["name"] != "half"]
    fake.conflict_once = True  # someone else touched the legacy report meanwhile: re-read, replace once more
    fixed, _ = audit_pass(config, objects)
    third = PassResult(started=0)
    report_writer.write(fixed, third)
    assert third.errors == [] and third.written == 1 and third.deleted == 1
    legacy = fake.objects[("legacy", "netpol-guard")]
    assert [r["result"] for r in legacy["results"]] == ["error", "pass"]  # the unreadable one stays an error
    assert legacy["metadata"]["annotations"][DIGEST_ANNOTATION] == \
        fixed.namespaced["legacy"]["metadata"]["annotations"][DIGEST_ANNOTATION]
    assert ("half", "netpol-guard") not in fake.objects


def test_writer_ignores_a_terminating_namespace(writer: tuple[ReportWriter, FakeCustomObjects]) -> None:
    report_writer, fake = writer
    fake.terminating = {"legacy"}
    reports, _ = audit_pass(config_from_data({}), full_objects())
    result = PassResult(started=0)
    report_writer.write(reports, result)
    assert result.errors == [] and result.written == 4


# ----- the loop: timer, change triggers, leadership -----
class FakeInformers:
    def __init__(self) -> None:
        self.stores: dict[str, ObjectStore] = {}
        self.synced = True

    def start(self) -> None:
        pass

    def stop(self) -> None:
        pass


class RecordingWriter:
    kind = "Report"

    def __init__(self) -> None:
        self.passes: list[ReportSet] = []
        self.stopped_early = 0
        self.cleared = 0

    def write(self, reports: ReportSet, result: PassResult, budget: object = None,
              allowed: Any = lambda: True) -> bool:
        if not allowed():
            self.stopped_early += 1
            return False
        self.passes.append(reports)
        return True

    def delete_all(self) -> int:
        self.cleared += 1
        return 0


def make_loop(config: dict[str, Any], leader: list[bool]) -> tuple[BackgroundAudit, RecordingWriter,
                                                                    RecordingWriter]:
    informers = FakeInformers()
    writer, stale = RecordingWriter(), RecordingWriter()
    loop = BackgroundAudit(config_from_data({"audit": config}), informers, writer,  # type: ignore[arg-type]
                           stale_writer=stale, is_leader=lambda: leader[0])  # type: ignore[arg-type]
    informers.stores = {kind: ObjectStore(kind, loop.changed) for kind in WATCHED}
    for kind, items in sample_objects().items():
        informers.stores[kind].replace(items)
    return loop, writer, stale


def wait_until(condition: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_loop_runs_at_once_then_on_changes_after_the_debounce_not_the_interval() -> None:
    loop, writer, stale = make_loop({"interval": "1h", "debounce": "200ms", "cpuBudget": 1.0}, [True])
    loop.start()
    try:
        wait_until(lambda: len(writer.passes) == 1)
        assert stale.cleared == 1  # the other format's reports are cleared once, before the first write
        time.sleep(0.4)
        assert len(writer.passes) == 1  # nothing changed: no pass until the hour is up
        started = time.monotonic()
        loop.informers.stores["NetworkPolicy"].put(
            {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
             "metadata": {"name": "deny", "namespace": "legacy"},
             "spec": {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}})
        wait_until(lambda: len(writer.passes) == 2)
        assert 0.15 <= time.monotonic() - started < 2.0
        legacy = writer.passes[-1].namespaced["legacy"]
        assert {r["result"] for r in legacy["results"]} == {"pass"}
        assert stale.cleared == 1
    finally:
        loop.stop()
    assert not loop.thread.is_alive()


def test_loop_writes_only_as_leader_and_at_once_on_becoming_one() -> None:
    leader = [False]
    loop, writer, _ = make_loop({"interval": "1h", "debounce": "50ms"}, leader)
    loop.start()
    try:
        time.sleep(0.4)
        assert writer.passes == []
        leader[0] = True
        loop.leadership_changed()
        wait_until(lambda: len(writer.passes) == 1, timeout=2.0)
    finally:
        loop.stop()


def test_a_pass_stops_writing_when_leadership_is_lost_midway() -> None:
    leader = [True]
    loop, writer, _ = make_loop({"interval": "1h"}, leader)
    original = loop.writer.write

    def lose_then_write(*args: Any, **kwargs: Any) -> bool:
        leader[0] = False  # lost between judging and writing
        return original(*args, **kwargs)  # type: ignore[no-any-return]

    loop.writer.write = lose_then_write  # type: ignore[method-assign]
    loop.run_once()
    assert writer.passes == [] and writer.stopped_early == 1


def test_cluster_wide_policies_from_the_webhook_cache_cover_and_trigger_a_pass() -> None:
    from tests.unit.test_sources import cnp, deny_both
    from webhook.core.sources import parse_source_policy

    policy = parse_source_policy(cnp("default-deny", **deny_both()))
    assert policy is not None
    sources: list[tuple[Any, ...]] = [()]
    loop, writer, _ = make_loop({"interval": "1h", "debounce": "50ms"}, [True])
    loop.source_policies = lambda: sources[0]
    loop.start()
    try:
        wait_until(lambda: len(writer.passes) == 1)
        assert writer.passes[0].namespaced["legacy"]["summary"]["fail"] == 2
        sources[0] = (policy,)  # the webhook's cache saw a new ClusterNetworkPolicy: a new tuple
        wait_until(lambda: len(writer.passes) == 2)
        legacy = writer.passes[1].namespaced["legacy"]
        assert [r["result"] for r in legacy["results"]] == ["pass"]
        assert "default-deny" in legacy["results"][0]["properties"]["ingressCoveredBy"]
    finally:
        loop.stop()
