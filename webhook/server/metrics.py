"""Prometheus metrics of one app instance (its own registry, so tests can build several apps)."""

from __future__ import annotations

import math

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

from webhook.cluster import ClusterSource
from webhook.core.engine import Engine

# Decisions from the cache take well under a millisecond; a live confirm adds an API round trip.
DURATION_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class Metrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "netpol_guard_requests_total", "Admission requests answered, by outcome.",
            ["kind", "operation", "decision", "mode"], registry=self.registry,
        )
        self.violations = Counter(
            "netpol_guard_violations_total", "Rule violations found, by rule and action (deny or warn).",
            ["rule", "action"], registry=self.registry,
        )
        self.duration = Histogram(
            "netpol_guard_decision_duration_seconds", "Time to decide one admission request (parse to answer).",
            buckets=DURATION_BUCKETS, registry=self.registry,
        )
        self.cache_synced = Gauge(
            "netpol_guard_cache_synced", "1 once the cluster cache has its initial state.", registry=self.registry,
        )
        self.cache_age = Gauge(
            "netpol_guard_cache_age_seconds", "Seconds since the last successful list or watch event.",
            registry=self.registry,
        )
        self.cache_objects = Gauge(
            "netpol_guard_cache_objects", "Objects held in the cluster cache.", ["kind"], registry=self.registry,
        )
        self.shed = Counter(
            "netpol_guard_shed_total", "Reviews answered 429 because an overload bound was reached, by bound.",
            ["bound"], registry=self.registry,
        )
        self.in_progress = Gauge(
            "netpol_guard_reviews_in_progress", "Reviews being read, waiting or judged (at scrape time).",
            registry=self.registry,
        )
        self.inflight_bytes = Gauge(
            "netpol_guard_inflight_body_bytes", "Bytes of large bodies reserved in the budget (at scrape time).",
            registry=self.registry,
        )
        self.generated = Counter(
            "netpol_guard_generated", "NetworkPolicies created by generation (AlreadyExists not counted).",
            registry=self.registry,
        )
        self.generate_errors = Counter(
            "netpol_guard_generate_errors", "Failed generation attempts (each is logged and retried with backoff).",
            registry=self.registry,
        )
        self.leader = Gauge(
            "netpol_guard_leader", "1 while this replica holds the generation Lease.", registry=self.registry,
        )
        self.cache_unreadable = Gauge(
            "netpol_guard_cache_unreadable_objects",
            "Objects that exist in the cluster but netpol-guard cannot read (see the log); decisions about their "
            "namespace are taken on the readable ones.", ["kind"], registry=self.registry,
        )
        self.uncovered = Gauge(
            "netpol_guard_uncovered_namespaces",
            "Namespaces netpol-guard judges (not exempt, not terminating) without deny-all coverage, by mode.",
            ["mode"], registry=self.registry,
        )
        # `.labels()` costs a dict build and a lock per call; the label sets are few, so keep the children.
        self._request_children: dict[tuple[str, str, str, str], Counter] = {}
        self._violation_children: dict[tuple[str, str], Counter] = {}

    def count_request(self, kind: str, operation: str, decision: str, mode: str) -> None:
        key = (kind, operation, decision, mode)
        child = self._request_children.get(key)
        if child is None:
            child = self._request_children[key] = self.requests.labels(*key)
        child.inc()

    def count_shed(self, bound: str) -> None:
        self.shed.labels(bound).inc()

    def count_violation(self, rule: str, action: str) -> None:
        key = (rule, action)
        child = self._violation_children.get(key)
        if child is None:
            child = self._violation_children[key] = self.violations.labels(*key)
        child.inc()

    def count_generated(self, policies: int) -> None:
        self.generated.inc(policies)

    def count_generate_error(self) -> None:
        self.generate_errors.inc()

    def render(self, source: ClusterSource, engine: Engine | None = None) -> bytes:
        """The text exposition, with the cache gauges read from the source at scrape time."""
        self.cache_synced.set(1 if source.synced else 0)
        age = source.age_seconds()
        self.cache_age.set(math.nan if age is None else age)
        namespaces, policies = source.state.counts()
        self.cache_objects.labels("Namespace").set(namespaces)
        self.cache_objects.labels("NetworkPolicy").set(policies)
        bad_namespaces, bad_policies = source.state.unreadable_counts()
        self.cache_unreadable.labels("Namespace").set(bad_namespaces)
        self.cache_unreadable.labels("NetworkPolicy").set(bad_policies)
        if engine is not None and source.synced:
            counts = {"enforce": 0, "audit": 0}
            for _, namespace_mode in engine.uncovered_namespaces(source.state):
                counts[namespace_mode] += 1
            for label, count in counts.items():
                self.uncovered.labels(label).set(count)
        return generate_latest(self.registry)
