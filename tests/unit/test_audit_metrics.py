"""The background audit's dashboard metrics: values, bounded namespaces, no stale series."""

from __future__ import annotations

from prometheus_client.exposition import generate_latest

from webhook.reports import PassResult
from webhook.server.metrics import Metrics


def scrape(metrics: Metrics) -> set[str]:
    return {line for line in generate_latest(metrics.registry).decode().splitlines() if not line.startswith("#")}


def test_coverage_violations_and_pass_timing() -> None:
    metrics = Metrics(namespace_limit=500)
    assert not [line for line in scrape(metrics) if "audit" in line or "coverage" in line]  # no pass yet
    metrics.observe_audit(PassResult(
        started=1_790_000_000.0, duration=1.5, objects=42,
        coverage={"shop": (True, True), "legacy": (False, False), "half": (True, False)},
        violations={("deny-all-coverage", "legacy"): 2, ("broad-cidr", "shop"): 1}, errors=["x"],
    ))
    lines = scrape(metrics)
    assert {
        'netpol_guard_namespace_coverage{direction="Ingress",namespace="shop"} 1.0',
        'netpol_guard_namespace_coverage{direction="Egress",namespace="shop"} 1.0',
        'netpol_guard_namespace_coverage{direction="Ingress",namespace="half"} 1.0',
        'netpol_guard_namespace_coverage{direction="Egress",namespace="half"} 0.0',
        'netpol_guard_namespace_coverage{direction="Egress",namespace="legacy"} 0.0',
        'netpol_guard_audit_violations{namespace="legacy",rule="deny-all-coverage"} 2.0',
        'netpol_guard_audit_violations{namespace="shop",rule="broad-cidr"} 1.0',
        'netpol_guard_namespaces{coverage="covered"} 1.0',
        'netpol_guard_namespaces{coverage="partial"} 1.0',
        'netpol_guard_namespaces{coverage="uncovered"} 1.0',
        "netpol_guard_audit_last_duration_seconds 1.5",
        "netpol_guard_audit_last_run_timestamp_seconds 1.79e+09",
        "netpol_guard_audit_objects 42.0",
        "netpol_guard_audit_write_errors 1.0",
    } <= lines


def test_namespace_series_are_bounded_least_covered_first_and_replaced_each_pass() -> None:
    metrics = Metrics(namespace_limit=2)
    coverage = {f"ok-{i}": (True, True) for i in range(50)}
    coverage |= {"open-a": (False, False), "half-b": (True, False)}
    violations = {("deny-all-coverage", "open-a"): 3, ("broad-cidr", "ok-1"): 1, ("broad-cidr", "ok-2"): 2,
                  ("any-namespace", ""): 1}
    metrics.observe_audit(PassResult(started=0, coverage=coverage, violations=violations))
    lines = scrape(metrics)
    namespaces = {line.split('namespace="')[1].split('"')[0] for line in lines
                  if line.startswith("netpol_guard_namespace_coverage")}
    assert namespaces == {"open-a", "half-b"}
    assert 'netpol_guard_audit_violations{namespace="(other)",rule="broad-cidr"} 3.0' in lines
    assert 'netpol_guard_audit_violations{namespace="",rule="any-namespace"} 1.0' in lines  # cluster-scoped
    assert 'netpol_guard_namespaces{coverage="covered"} 50.0' in lines
    # The next pass replaces everything: a deleted namespace leaves no series behind.
    metrics.observe_audit(PassResult(started=1, coverage={"ok-1": (True, True)}))
    lines = scrape(metrics)
    assert not [line for line in lines if "open-a" in line or "(other)" in line]
    assert 'netpol_guard_namespace_coverage{direction="Ingress",namespace="ok-1"} 1.0' in lines
