"""From the engine's decisions to policy reports: OpenReports `Report`/`ClusterReport` or wgpolicyk8s.io PolicyReports.

Pure data in, report objects (plain dicts, ready to write) out, so the background
audit of `serve` and any test build exactly the same reports from the same
decisions. Nothing here judges anything: every fail and warn result is one
violation of `Engine.review`, worded as the engine worded it, so a report and
`netpol-guard audit --output json` on the same cluster cannot disagree. What
this module adds is the reporting vocabulary: severity and category per rule,
pass results for covered namespaces, a summary, and a bound on the size.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from webhook.core.config import Config, ReportFormat, Severity
from webhook.core.engine import Decision, Violation
from webhook.core.state import ClusterView

SOURCE = "netpol-guard"
REPORT_NAME = "netpol-guard"
MANAGED_BY = {"app.kubernetes.io/managed-by": "netpol-guard"}
# How many results a report left out to stay within maxResults (absent when none were).
OMITTED_ANNOTATION = "netpol-guard.io/omitted-results"
# A digest of everything but timestamps: a pass that finds nothing new rewrites nothing.
DIGEST_ANNOTATION = "netpol-guard.io/results-digest"
# Result policy for an object the engine could not read (no rule could be evaluated on it).
UNREADABLE = "unreadable-object"

Result = Literal["pass", "fail", "warn", "error"]

DEFAULT_SEVERITY: dict[str, Severity] = {
    "deny-all-coverage": "high",
    "host-network": "high",
    "allow-all-ingress": "high",
    "allow-all-egress": "medium",
    "any-namespace": "medium",
    "broad-cidr": "medium",
    "metadata-endpoint": "high",
    "port-range": "low",
    "explicit-policy-types": "info",
    "protect-deny-all": "high",
    "protected-labels": "medium",
    UNREADABLE: "medium",
}

CATEGORIES: dict[str, str] = {
    "deny-all-coverage": "Isolation",
    "host-network": "Isolation",
    "protect-deny-all": "Isolation",
    "allow-all-ingress": "NetworkPolicy breadth",
    "allow-all-egress": "NetworkPolicy breadth",
    "any-namespace": "NetworkPolicy breadth",
    "broad-cidr": "NetworkPolicy breadth",
    "metadata-endpoint": "NetworkPolicy breadth",
    "port-range": "NetworkPolicy breadth",
    "explicit-policy-types": "NetworkPolicy hygiene",
    "protected-labels": "netpol-guard integrity",
    UNREADABLE: "netpol-guard integrity",
}

_RESULT_ORDER = {"fail": 0, "error": 1, "warn": 2, "pass": 3}
_SEVERITY_ORDER = {"critical": 0, "high": 1, "medium": 2, "low": 3, "info": 4}
# The offending field as the rules name it in their messages, e.g. spec.egress[0].to[1].ipBlock.
_FIELD = re.compile(r"\bspec(?:\.[A-Za-z]+|\[\d+\])+")


@dataclass(frozen=True, slots=True)
class ObjectRef:
    """A Kubernetes object reference (corev1.ObjectReference) as it appears in a result's `resources`."""

    api_version: str
    kind: str
    namespace: str  # "" for cluster-scoped objects
    name: str
    uid: str = ""

    def as_json(self) -> dict[str, str]:
        ref = {"apiVersion": self.api_version, "kind": self.kind}
        if self.namespace:
            ref["namespace"] = self.namespace
        ref["name"] = self.name
        if self.uid:
            ref["uid"] = self.uid
        return ref


def object_ref(obj: Mapping[str, Any], kind: str, namespace: str) -> ObjectRef:
    """The reference of a raw object as listed from the API server (or read from a manifest)."""
    metadata = obj.get("metadata")
    metadata = metadata if isinstance(metadata, Mapping) else {}
    api_version = obj.get("apiVersion")
    return ObjectRef(
        api_version=api_version if isinstance(api_version, str) else "",
        kind=kind, namespace=namespace,
        name=str(metadata.get("name") or ""), uid=str(metadata.get("uid") or ""),
    )


@dataclass(frozen=True, slots=True)
class Judged:
    """One object and what the engine said about it; `decision` is None when it could not be read."""

    ref: ObjectRef
    decision: Decision | None
    error: str | None = None


@dataclass(frozen=True, slots=True)
class ReportResult:
    policy: str
    result: Result
    severity: Severity
    category: str
    message: str
    resource: ObjectRef
    properties: Mapping[str, str] = field(default_factory=dict)

    def sort_key(self) -> tuple[int, int, str, str, str, str]:
        return (_RESULT_ORDER[self.result], _SEVERITY_ORDER[self.severity], self.resource.kind,
                self.resource.name, self.policy, self.message)

    def as_json(self, timestamp: int) -> dict[str, Any]:
        entry: dict[str, Any] = {
            "source": SOURCE, "policy": self.policy, "rule": self.policy, "category": self.category,
            "severity": self.severity, "timestamp": {"seconds": timestamp, "nanos": 0},
            "result": self.result, "scored": True, "resources": [self.resource.as_json()],
            "message": self.message,
        }
        if self.properties:
            entry["properties"] = dict(self.properties)
        return entry


@dataclass(frozen=True)
class ReportSet:
    """Every report one audit pass writes: one per namespace with something to say, and the cluster one."""

    namespaced: dict[str, dict[str, Any]]
    cluster: dict[str, Any]

    def all(self) -> list[dict[str, Any]]:
        return [*self.namespaced.values(), self.cluster]


class Reporter:
    """Turns judged objects into reports, with one config's severities, format and limits."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.format: ReportFormat = config.audit.report_format
        self.max_results = config.audit.max_results
        self.severity: dict[str, Severity] = {**DEFAULT_SEVERITY, **config.audit.severity}
        self._exempt_names = config.exempt_namespace_names()
        selector = config.exemptions.namespace_selector
        self._exempt_selector = selector.compiled() if selector is not None else None

    # ----- results -----
    def results_for(self, judged: Judged, view: ClusterView) -> list[ReportResult]:
        """The fail/warn/error results of one judged object (none when it broke no rule). A message is the
        violation's text exactly as `audit --output json` gives it (reason, then the fix on a second line)."""
        if judged.decision is None:
            return [ReportResult(
                UNREADABLE, "error", self.severity[UNREADABLE], CATEGORIES[UNREADABLE],
                f"{UNREADABLE}: {judged.ref.kind} {judged.ref.name}: {judged.error or 'cannot be read'}",
                judged.ref,
            )]
        return [self._violation_result(judged.ref, judged.decision, v, view) for v in judged.decision.violations]

    def _violation_result(self, ref: ObjectRef, decision: Decision, violation: Violation,
                          view: ClusterView) -> ReportResult:
        # fail when the rule is meant to block (whatever the mode: in audit mode the policy is still broken);
        # warn for rules configured to warn only.
        result: Result = "warn" if self.config.rules.get(violation.rule).action == "warn" else "fail"
        properties: dict[str, str] = {}
        if violation.rule == "deny-all-coverage":
            coverage = decision.isolation if self.config.coverage == "pod" and decision.isolation is not None \
                else view.coverage(decision.namespace)
            properties["missing"] = ",".join(coverage.missing)
            for direction in ("Ingress", "Egress"):
                if coverage.by(direction):
                    properties[f"{direction.lower()}CoveredBy"] = ",".join(coverage.by(direction))
        else:
            found = _FIELD.search(violation.message)
            if found:
                properties["field"] = found.group(0)
        if violation.fix:
            properties["fix"] = violation.fix
        return ReportResult(violation.rule, result, self.severity.get(violation.rule, "medium"),
                            CATEGORIES.get(violation.rule, "NetworkPolicy breadth"), violation.text, ref,
                            properties)

    def namespace_pass(self, namespace: str, uid: str, view: ClusterView) -> ReportResult | None:
        """The good news: a pass result when the namespace's default-deny covers both directions."""
        coverage = view.coverage(namespace)
        settings = self.config.rules.deny_all_coverage
        if not coverage.complete or settings.action == "off" or namespace in settings.exempt_namespaces:
            return None
        ingress, egress = ",".join(coverage.ingress_by), ",".join(coverage.egress_by)
        return ReportResult(
            "deny-all-coverage", "pass", self.severity["deny-all-coverage"], CATEGORIES["deny-all-coverage"],
            f"deny-all-coverage: namespace {namespace} has default-deny for Ingress ({ingress}) and Egress ({egress})",
            ObjectRef("v1", "Namespace", "", namespace, uid),
            {"ingressCoveredBy": ingress, "egressCoveredBy": egress},
        )

    def reported_namespace(self, namespace: str, view: ClusterView) -> bool:
        """Whether a namespace gets a Report: it exists, is not being deleted and is not exempt."""
        info = view.namespace(namespace)
        if info is None or info.terminating or namespace in self._exempt_names:
            return False
        return self._exempt_selector is None or not self._exempt_selector.matches(info.labels)

    # ----- reports -----
    def build(self, judged: Iterable[Judged], view: ClusterView, namespaces: Mapping[str, str],
              timestamp: int) -> ReportSet:
        """All reports of one pass. `namespaces` maps every namespace name to its uid."""
        by_namespace: dict[str, list[ReportResult]] = {}
        cluster: list[ReportResult] = []
        for item in judged:
            results = self.results_for(item, view)
            if not results:
                continue
            if item.ref.namespace:
                by_namespace.setdefault(item.ref.namespace, []).extend(results)
            else:
                cluster.extend(results)
        reports = {}
        for namespace, uid in namespaces.items():
            if not self.reported_namespace(namespace, view):
                continue
            results = by_namespace.get(namespace, [])
            passed = self.namespace_pass(namespace, uid, view)
            if passed is not None:
                results.append(passed)
            reports[namespace] = self.report(namespace, results, timestamp)
        return ReportSet(reports, self.report("", cluster, timestamp))

    def report(self, namespace: str, results: list[ReportResult], timestamp: int) -> dict[str, Any]:
        """One report object; `namespace` "" gives the cluster-scoped one."""
        ordered = sorted(results, key=ReportResult.sort_key)
        kept = ordered[: self.max_results]
        summary = {"pass": 0, "fail": 0, "warn": 0, "error": 0, "skip": 0}
        for result in ordered:  # the summary counts every result, also those left out
            summary[result.result] += 1
        digest = hashlib.sha256(json.dumps(
            [r.as_json(0) for r in kept] + [summary], sort_keys=True, separators=(",", ":")
        ).encode()).hexdigest()[:32]
        annotations = {DIGEST_ANNOTATION: digest}
        if len(ordered) > len(kept):
            annotations[OMITTED_ANNOTATION] = str(len(ordered) - len(kept))
        metadata: dict[str, Any] = {"name": REPORT_NAME, "labels": dict(MANAGED_BY), "annotations": annotations}
        if namespace:
            metadata["namespace"] = namespace
        api_version, kind = report_kind(self.format, cluster=not namespace)
        report: dict[str, Any] = {"apiVersion": api_version, "kind": kind, "metadata": metadata}
        if self.format == "openreports":
            report["source"] = SOURCE
            report["configuration"] = {"limits": {"maxResults": self.max_results}}
        report["summary"] = summary
        report["results"] = [r.as_json(timestamp) for r in kept]
        return report


def report_kind(report_format: ReportFormat, *, cluster: bool) -> tuple[str, str]:
    """(apiVersion, kind) of the namespaced or the cluster-scoped report of a format."""
    if report_format == "openreports":
        return "openreports.io/v1alpha1", "ClusterReport" if cluster else "Report"
    return "wgpolicyk8s.io/v1alpha2", "ClusterPolicyReport" if cluster else "PolicyReport"
