"""Background audit: time and memory of one full pass over a large cluster.

Not a test: run `python -m tests.bench.bench_reports` and read the numbers.
Cluster: 2,000 namespaces (1,500 covered by a deny-all, 300 half covered, 200 open),
10,000 NetworkPolicies, 20,000 top-level workloads (8,000 Deployments, 2,000
StatefulSets, 1,000 DaemonSets, 2,000 CronJobs, 2,000 Jobs, 5,000 bare Pods), plus the
8,000 ReplicaSets and 16,000 Pods the Deployments own (cached, skipped when judging).
Objects go through the informer's ObjectStore (slim copies) exactly as from a watch.
Target: a full pass (judge + build every report) under 30 s on one core (cpuBudget 1.0).
"""

from __future__ import annotations

import gc
import resource
import threading
import time
from typing import Any

from webhook.core.config import config_from_data
from webhook.reports import WATCHED, CpuBudget, ObjectStore, audit_pass

NAMESPACES, POLICIES_PER_NS, OWNED_PODS = 2000, 5, 2
CONTAINER = {"name": "app", "image": "registry.example/app:1.2.3", "ports": [{"containerPort": 8080}],
             "env": [{"name": f"VAR_{i}", "value": "x" * 20} for i in range(10)],
             "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}}}


def rss_mb() -> float:
    with open("/proc/self/statm") as statm:
        pages = int(statm.read().split()[1])
    return pages * resource.getpagesize() / 2**20


def meta(name: str, namespace: str, uid: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "namespace": namespace, "uid": uid, "resourceVersion": "12345",
            "labels": {"app": name, "team": "t"}, "annotations": {"note": "y" * 200}, **extra}


def pod_spec(index: int) -> dict[str, Any]:
    return {"containers": [CONTAINER], "hostNetwork": index % 97 == 0, "serviceAccountName": "default"}


def template(name: str, index: int) -> dict[str, Any]:
    return {"metadata": {"labels": {"app": name, "tier": "web" if index % 2 else "api"}}, "spec": pod_spec(index)}


def cluster() -> dict[str, list[dict[str, Any]]]:
    objects: dict[str, list[dict[str, Any]]] = {kind: [] for kind in WATCHED}
    plan = ["Deployment"] * 4 + ["StatefulSet", "CronJob", "Job", "Pod", "Pod"]
    counter = 0
    for n in range(NAMESPACES):
        ns = f"team-{n:04d}"
        objects["Namespace"].append({"apiVersion": "v1", "kind": "Namespace",
                                     "metadata": {"name": ns, "uid": f"ns-{n}", "labels": {"team": str(n % 50)}},
                                     "status": {"phase": "Active"}})
        types = ["Ingress", "Egress"] if n < 1500 else (["Ingress"] if n < 1800 else [])
        for p in range(POLICIES_PER_NS):
            if p == 0 and types:
                spec: dict[str, Any] = {"podSelector": {}, "policyTypes": types}
            else:
                spec = {"podSelector": {"matchLabels": {"app": f"w{n}-{p}"}}, "policyTypes": ["Ingress", "Egress"],
                        "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"team": str(p)}}}],
                                     "ports": [{"port": 8080, "protocol": "TCP"}]}],
                        "egress": [{"to": [{"ipBlock": {"cidr": "10.0.0.0/8" if p % 3 else "0.0.0.0/0"}}]}]}
            objects["NetworkPolicy"].append({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
                                             "metadata": meta(f"policy-{p}", ns, f"np-{n}-{p}"), "spec": spec})
        for w in range(10):
            kind = plan[w % len(plan)] if w < 9 else ("DaemonSet" if n % 2 else "Pod")
            name = f"w{n}-{w}"
            counter += 1
            uid = f"wl-{counter}"
            if kind == "Pod":
                objects["Pod"].append({"apiVersion": "v1", "kind": "Pod", "metadata": meta(name, ns, uid),
                                       "spec": pod_spec(w), "status": {"phase": "Running"}})
                continue
            group = {"CronJob": "batch/v1", "Job": "batch/v1"}.get(kind, "apps/v1")
            spec = {"replicas": 2, "selector": {"matchLabels": {"app": name}}, "template": template(name, w)}
            if kind == "CronJob":
                spec = {"schedule": "*/5 * * * *", "jobTemplate": {"spec": {"template": template(name, w)}}}
            objects[kind].append({"apiVersion": group, "kind": kind, "metadata": meta(name, ns, uid), "spec": spec,
                                  "status": {"replicas": 2}})
            if kind == "Deployment":
                owner = [{"apiVersion": "apps/v1", "kind": "Deployment", "name": name, "uid": uid, "controller": True}]
                objects["ReplicaSet"].append({"apiVersion": "apps/v1", "kind": "ReplicaSet",
                                              "metadata": meta(f"{name}-abc", ns, f"rs-{uid}", ownerReferences=owner),
                                              "spec": {"template": template(name, w)}})
                rs_owner = [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": f"{name}-abc", "uid": f"rs-{uid}",
                             "controller": True}]
                for r in range(OWNED_PODS):
                    objects["Pod"].append({"apiVersion": "v1", "kind": "Pod",
                                           "metadata": meta(f"{name}-abc-{r}", ns, f"pod-{uid}-{r}",
                                                            ownerReferences=rs_owner),
                                           "spec": pod_spec(w), "status": {"phase": "Running"}})
    return objects


def main() -> None:
    config = config_from_data({"audit": {"cpuBudget": 1.0}})
    base = rss_mb()
    raw = cluster()
    counts = {kind: len(items) for kind, items in raw.items()}
    top_level = sum(counts[k] for k in ("Deployment", "StatefulSet", "DaemonSet", "CronJob", "Job")) + \
        sum(1 for p in raw["Pod"] if "ownerReferences" not in p["metadata"])
    print(f"cluster: {counts['Namespace']} namespaces, {counts['NetworkPolicy']} policies, {top_level} top-level "
          f"workloads ({sum(counts.values()) - counts['Namespace'] - counts['NetworkPolicy']} workload objects "
          "cached, owned ones included)")
    stores = {kind: ObjectStore(kind, lambda: None) for kind in WATCHED}
    start = time.perf_counter()
    for kind, items in raw.items():
        stores[kind].replace(items)
    fill = time.perf_counter() - start
    del raw
    gc.collect()
    cached = rss_mb()
    print(f"informer cache (slim copies): filled in {fill:.1f} s; RSS {cached:.0f} MB "
          f"({cached - base:.0f} MB over the interpreter with the app loaded)")
    for run in range(2):
        snapshot = {kind: store.snapshot() for kind, store in stores.items()}
        cpu = time.process_time()
        wall = time.perf_counter()
        reports, result = audit_pass(config, snapshot, CpuBudget(1.0, threading.Event()))
        wall = time.perf_counter() - wall
        cpu = time.process_time() - cpu
        results = sum(len(r["results"]) for r in reports.all())
        print(f"pass {run + 1}: {result.objects} objects judged, {len(reports.namespaced)} reports, {results} results "
              f"in {wall:.1f} s wall, {cpu:.1f} s CPU (one core; target < 30 s); RSS {rss_mb():.0f} MB, "
              f"peak {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")
        del snapshot, reports
    budget = 0.5
    snapshot = {kind: store.snapshot() for kind, store in stores.items()}
    wall = time.perf_counter()
    audit_pass(config, snapshot, CpuBudget(budget, threading.Event()))
    print(f"with cpuBudget {budget}: {time.perf_counter() - wall:.1f} s wall (the pass yields the rest of the core)")


if __name__ == "__main__":
    main()
