"""Reports from the engine's decisions: results, severities, pass results, summary, bounds, both formats."""

from __future__ import annotations

from typing import Any

import pytest

from tests.unit.helpers import deny_all, namespace, netpol, pod
from webhook.audit import as_judged, audit_run, controlled_by_audited_kind
from webhook.core.config import ConfigError, config_from_data
from webhook.core.reports import DIGEST_ANNOTATION, OMITTED_ANNOTATION, Reporter, ReportSet

T0 = 1_790_000_000


def deployment(name: str, ns: str, uid: str = "", host_network: bool = False) -> dict[str, Any]:
    spec: dict[str, Any] = {"containers": [{"name": "c", "image": "nginx"}]}
    if host_network:
        spec["hostNetwork"] = True
    metadata: dict[str, Any] = {"name": name, "namespace": ns}
    if uid:
        metadata["uid"] = uid
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": metadata,
            "spec": {"template": {"metadata": {"labels": {"app": name}}, "spec": spec}}}


def with_uid(obj: dict[str, Any], uid: str) -> dict[str, Any]:
    obj["metadata"]["uid"] = uid
    return obj


def reports(objects: dict[str, list[dict[str, Any]]], config: dict[str, Any] | None = None,
            timestamp: int = T0) -> ReportSet:
    cfg = config_from_data(config or {})
    run = audit_run(cfg, objects)
    judged = [as_judged(item) for item in run.report.results]
    return Reporter(cfg).build(judged, run.state, run.namespace_uids, timestamp)


def cluster(**extra: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    objects: dict[str, list[dict[str, Any]]] = {
        "Namespace": [with_uid(namespace("shop"), "ns-shop"), with_uid(namespace("legacy"), "ns-legacy"),
                      namespace("kube-system")],
        "NetworkPolicy": [deny_all("shop"),
                          netpol("to-internet", "shop", policyTypes=["Egress"],
                                 egress=[{"to": [{"ipBlock": {"cidr": "0.0.0.0/0"}}]}])],
        "Deployment": [deployment("web", "shop"), deployment("api", "legacy", uid="dep-api"),
                       deployment("agent", "kube-system", host_network=True)],
    }
    for kind, items in extra.items():
        objects.setdefault(kind, []).extend(items)
    return objects


def by_policy(report: dict[str, Any]) -> dict[tuple[str, str, str], dict[str, Any]]:
    return {(r["policy"], r["resources"][0]["kind"], r["resources"][0]["name"]): r for r in report["results"]}


def test_uncovered_namespace_fails_with_the_engines_message_and_missing_directions() -> None:
    out = reports(cluster())
    legacy = out.namespaced["legacy"]
    assert legacy["apiVersion"] == "openreports.io/v1alpha1" and legacy["kind"] == "Report"
    assert legacy["metadata"]["name"] == "netpol-guard" and legacy["metadata"]["namespace"] == "legacy"
    assert legacy["metadata"]["labels"] == {"app.kubernetes.io/managed-by": "netpol-guard"}
    assert legacy["source"] == "netpol-guard"
    assert legacy["configuration"] == {"limits": {"maxResults": 1000}}
    assert legacy["summary"] == {"pass": 0, "fail": 1, "warn": 0, "error": 0, "skip": 0}
    [result] = legacy["results"]
    assert result == {
        "source": "netpol-guard", "policy": "deny-all-coverage", "rule": "deny-all-coverage",
        "category": "Isolation", "severity": "high", "timestamp": {"seconds": T0, "nanos": 0},
        "result": "fail", "scored": True,
        "resources": [{"apiVersion": "apps/v1", "kind": "Deployment", "namespace": "legacy", "name": "api",
                       "uid": "dep-api"}],
        "message": "deny-all-coverage: Deployment legacy/api: namespace legacy has no default-deny for "
                   "Ingress and Egress\n" + result["properties"]["fix"],
        "properties": {"missing": "Ingress,Egress", "fix": result["properties"]["fix"]},
    }
    assert result["properties"]["fix"].startswith("fix: apply this default-deny first")


def test_covered_namespace_gets_a_pass_and_policy_findings_name_the_field() -> None:
    shop = reports(cluster()).namespaced["shop"]
    results = by_policy(shop)
    passed = results[("deny-all-coverage", "Namespace", "shop")]
    assert passed["result"] == "pass"
    assert passed["resources"] == [{"apiVersion": "v1", "kind": "Namespace", "name": "shop", "uid": "ns-shop"}]
    # Every namespace-wide policy of a direction counts (to-internet selects all pods, with Egress).
    assert passed["properties"] == {"ingressCoveredBy": "default-deny-all",
                                    "egressCoveredBy": "default-deny-all,to-internet"}
    cidr = results[("broad-cidr", "NetworkPolicy", "to-internet")]
    assert cidr["result"] == "fail" and cidr["severity"] == "medium" and cidr["category"] == "NetworkPolicy breadth"
    assert cidr["properties"]["field"].startswith("spec.egress[0]")
    assert ("deny-all-coverage", "Deployment", "web") not in results  # covered: no result of its own
    assert shop["summary"]["pass"] == 1 and shop["summary"]["fail"] == len(shop["results"]) - 1
    # Failures come before passes.
    assert [r["result"] for r in shop["results"]][-1] == "pass"


def test_partial_coverage_says_which_policy_covers_what() -> None:
    objects = cluster()
    objects["NetworkPolicy"].append(netpol("deny-ingress", "legacy", policyTypes=["Ingress"]))
    [result] = reports(objects).namespaced["legacy"]["results"]
    assert result["properties"]["missing"] == "Egress"
    assert result["properties"]["ingressCoveredBy"] == "deny-ingress"
    assert "legacy" not in [r["resources"][0]["name"] for r in result["resources"] if r["kind"] == "Namespace"]


def test_exempt_and_terminating_namespaces_get_no_report() -> None:
    objects = cluster(Namespace=[namespace("going", terminating=True), namespace("opted", {"team": "infra"})])
    out = reports(objects, {"exemptions": {"namespaceSelector": {"matchLabels": {"team": "infra"}}}})
    assert sorted(out.namespaced) == ["legacy", "shop"]


def test_audit_mode_still_fails_and_warn_rules_warn() -> None:
    objects = cluster(Pod=[pod("probe", "shop", host_network=True)])
    out = reports(objects, {"mode": "audit", "rules": {"host-network": {"action": "warn"}}})
    results = by_policy(out.namespaced["shop"])
    assert results[("broad-cidr", "NetworkPolicy", "to-internet")]["result"] == "fail"
    host = results[("host-network", "Pod", "probe")]
    assert host["result"] == "warn" and host["properties"]["field"] == "spec.hostNetwork"
    assert out.namespaced["shop"]["summary"]["warn"] == 1


def test_rules_turned_off_or_exempted_report_nothing_not_even_a_pass() -> None:
    out = reports(cluster(), {"rules": {"deny-all-coverage": {"action": "off"},
                                        "broad-cidr": {"exemptNamespaces": ["shop"]}}})
    assert out.namespaced["legacy"]["results"] == []
    assert {r["policy"] for r in out.namespaced["shop"]["results"]} == {"metadata-endpoint"}


def test_severity_is_configurable_per_rule() -> None:
    out = reports(cluster(), {"audit": {"severity": {"broad-cidr": "critical"}}})
    assert by_policy(out.namespaced["shop"])[("broad-cidr", "NetworkPolicy", "to-internet")]["severity"] == \
        "critical"


def test_unreadable_object_is_an_error_result_not_a_crash() -> None:
    bad = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "odd", "namespace": "legacy",
                                                           "labels": {"app": ["not", "a", "string"]}}}
    out = reports(cluster(Pod=[bad]))
    results = by_policy(out.namespaced["legacy"])
    error = results[("unreadable-object", "Pod", "odd")]
    assert error["result"] == "error"
    assert "metadata.labels" in error["message"]
    assert out.namespaced["legacy"]["summary"]["error"] == 1


def test_truncation_keeps_failures_first_and_counts_everything() -> None:
    deployments = [deployment(f"d{i:02}", "legacy") for i in range(12)]
    out = reports(cluster(Deployment=deployments), {"audit": {"maxResults": 5}})
    legacy = out.namespaced["legacy"]
    assert len(legacy["results"]) == 5
    assert legacy["summary"]["fail"] == 13  # api + d00..d11, also those left out
    assert legacy["metadata"]["annotations"][OMITTED_ANNOTATION] == "8"
    assert legacy["configuration"]["limits"]["maxResults"] == 5
    assert OMITTED_ANNOTATION not in reports(cluster()).namespaced["shop"]["metadata"]["annotations"]
    # Passes go first when something must go.
    many = [netpol(f"wide-{i}", "shop", policyTypes=["Ingress"], ingress=[{}]) for i in range(3)]
    shop = reports(cluster(NetworkPolicy=many), {"audit": {"maxResults": 3}}).namespaced["shop"]
    assert {r["result"] for r in shop["results"]} == {"fail"} and shop["summary"]["pass"] == 1


def test_policyreport_format() -> None:
    out = reports(cluster(), {"audit": {"reportFormat": "policyreport"}})
    legacy = out.namespaced["legacy"]
    assert (legacy["apiVersion"], legacy["kind"]) == ("wgpolicyk8s.io/v1alpha2", "PolicyReport")
    assert "source" not in legacy and "configuration" not in legacy
    assert legacy["results"][0]["source"] == "netpol-guard"
    assert (out.cluster["apiVersion"], out.cluster["kind"]) == ("wgpolicyk8s.io/v1alpha2", "ClusterPolicyReport")
    assert "namespace" not in out.cluster["metadata"]


def test_cluster_report_holds_cluster_scoped_findings() -> None:
    out = reports(cluster())
    assert out.cluster["kind"] == "ClusterReport" and out.cluster["results"] == []
    bad_ns = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "", "labels": {}}}
    cfg = config_from_data({})
    run = audit_run(cfg, {"Namespace": [namespace("shop"), bad_ns]})
    judged = [as_judged(i) for i in run.report.results]
    # A nameless namespace cannot be read: an error result in the cluster report, not a crash.
    built = Reporter(cfg).build(judged, run.state, run.namespace_uids, T0)
    assert [r["result"] for r in built.cluster["results"]] == ["error"]
    assert built.cluster["results"][0]["policy"] == "unreadable-object"
    assert "metadata.name" in built.cluster["results"][0]["message"]
    assert built.cluster["summary"]["error"] == 1


def test_digest_ignores_timestamps_and_follows_results() -> None:
    first = reports(cluster(), timestamp=T0).namespaced["legacy"]
    again = reports(cluster(), timestamp=T0 + 600).namespaced["legacy"]
    assert first["metadata"]["annotations"][DIGEST_ANNOTATION] == again["metadata"]["annotations"][DIGEST_ANNOTATION]
    objects = cluster()
    objects["NetworkPolicy"].append(deny_all("legacy"))
    fixed = reports(objects).namespaced["legacy"]
    assert fixed["metadata"]["annotations"][DIGEST_ANNOTATION] != first["metadata"]["annotations"][DIGEST_ANNOTATION]
    assert [r["result"] for r in fixed["results"]] == ["pass"]


def test_pods_of_other_controllers_are_judged_themselves() -> None:
    by_rs = pod("web-1", "legacy")
    by_rs["metadata"]["ownerReferences"] = [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web",
                                             "uid": "1", "controller": True}]
    by_operator = pod("db-0", "legacy")
    by_operator["metadata"]["ownerReferences"] = [{"apiVersion": "example.com/v1", "kind": "Database",
                                                   "name": "db", "uid": "2", "controller": True}]
    assert controlled_by_audited_kind(by_rs) and not controlled_by_audited_kind(by_operator)
    legacy = reports(cluster(Pod=[by_rs, by_operator])).namespaced["legacy"]
    names = {r["resources"][0]["name"] for r in legacy["results"]}
    assert names == {"api", "db-0"}


@pytest.mark.parametrize(("raw", "seconds"), [("10m", 600.0), ("1h30m", 5400.0), ("45s", 45.0), ("500ms", 0.5),
                                              (30, 30.0)])
def test_audit_interval_takes_durations(raw: object, seconds: float) -> None:
    assert config_from_data({"audit": {"interval": raw}}).audit.interval == seconds


def test_audit_config_errors_name_the_field() -> None:
    with pytest.raises(ConfigError, match=r"audit\.interval: .*'ten minutes' is not a duration"):
        config_from_data({"audit": {"interval": "ten minutes"}})
    with pytest.raises(ConfigError, match=r"audit\.severity: .*unknown rule id\(s\): no-such-rule"):
        config_from_data({"audit": {"severity": {"no-such-rule": "high"}}})
    with pytest.raises(ConfigError, match=r"audit\.severity\.broad-cidr: "):
        config_from_data({"audit": {"severity": {"broad-cidr": "urgent"}}})
    with pytest.raises(ConfigError, match=r"audit\.reportFormat: "):
        config_from_data({"audit": {"reportFormat": "sarif"}})
    assert config_from_data({}).audit.interval == 600.0
