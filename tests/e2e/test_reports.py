"""The background audit on a real control plane, with the reports component's RBAC and CRDs installed.

netpol-guard runs as its ServiceAccount with exactly the base and the reports component's
roles, and writes OpenReports (then PolicyReports) that must agree with
`netpol-guard audit --output json` on the same cluster.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
import yaml
from controlplane import ControlPlane
from crds import POLICYREPORT, crd_files
from harness import REPO, Webhook

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

INTERVAL = 30  # seconds: the test-configured audit.interval
CONFIG = {"audit": {"interval": f"{INTERVAL}s", "debounce": "1s", "cpuBudget": 1.0}}
T = TypeVar("T")


def component_objects(cp: ControlPlane, tmp: Path) -> list[dict[str, Any]]:
    """The objects the reports component adds to an overlay (RBAC, CRDs), rendered by kubectl."""
    overlay = tmp / "with-reports"
    overlay.mkdir()
    (overlay / "kustomization.yaml").write_text(yaml.safe_dump({
        "apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization",
        "resources": [os.path.relpath(REPO / "manifests" / "overlays" / "enforce", overlay)],
        "components": [os.path.relpath(REPO / "manifests" / "components" / "reports", overlay)],
    }))
    rendered = cp.kubectl("kustomize", str(overlay), check=True).stdout
    return [o for o in yaml.safe_load_all(rendered)
            if o and (o["kind"] == "CustomResourceDefinition"
                      or o["metadata"]["name"].startswith("netpol-guard-reports"))]


def wait_for(what: str, probe: Callable[[], T | None], timeout: float) -> T:
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.5)


def get(cp: ControlPlane, resource: str, namespace: str | None = None) -> dict[str, Any] | None:
    args = ["get", resource, "netpol-guard", "-o", "json"]
    if namespace:
        args += ["-n", namespace]
    proc = cp.kubectl(*args)
    return json.loads(proc.stdout) if proc.returncode == 0 else None


def outcomes(report: dict[str, Any]) -> set[tuple[str, str, str, str]]:
    """(result, policy, kind, name) of every result."""
    return {(r["result"], r["policy"], r["resources"][0]["kind"], r["resources"][0]["name"])
            for r in report.get("results") or []}


def deployment(name: str, namespace: str, host_network: bool = False) -> dict[str, Any]:
    spec: dict[str, Any] = {"containers": [{"name": "c", "image": "nginx"}]}
    if host_network:
        spec["hostNetwork"] = True
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "namespace": namespace},
            "spec": {"replicas": 1, "selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": {"app": name}}, "spec": spec}}}


def deny_all(namespace: str) -> dict[str, Any]:
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": "default-deny-all", "namespace": namespace},
            "spec": {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}}


@pytest.fixture(scope="module")
def reporter(cluster: ControlPlane, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Webhook]:
    work = tmp_path_factory.mktemp("reports")
    objects = component_objects(cluster, work)
    cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump_all(objects), check=True)
    for path in crd_files(POLICYREPORT):  # for the policyreport format (Kyverno's CRDs, pinned)
        cluster.kubectl("apply", "-f", str(path), check=True)
    for crd in ("reports.openreports.io", "clusterreports.openreports.io", "policyreports.wgpolicyk8s.io",
                "clusterpolicyreports.wgpolicyk8s.io"):
        cluster.kubectl("wait", "--for", "condition=Established", f"crd/{crd}", "--timeout=60s", check=True)
    cluster.kubectl("apply", "-f", "-", check=True, input=yaml.safe_dump_all([
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "rep-open"}},
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "rep-covered"}},
        deny_all("rep-covered"),
        {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
         "metadata": {"name": "to-internet", "namespace": "rep-covered"},
         "spec": {"podSelector": {"matchLabels": {"app": "web"}}, "policyTypes": ["Egress"],
                  "egress": [{"to": [{"ipBlock": {"cidr": "0.0.0.0/0", "except": ["169.254.0.0/16"]}}]}]}},
        deployment("web", "rep-open"), deployment("web", "rep-covered"),
        deployment("agent", "rep-covered", host_network=True),
        {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "naked", "namespace": "rep-open"},
         "spec": {"containers": [{"name": "c", "image": "nginx"}]}},
    ]))
    server = Webhook(cluster, work / "webhook", CONFIG)  # not registered: admission is not under test here
    server.start("--audit-background")
    try:
        yield server
    finally:
        server.stop()
        # The component's own grants leave with this module: later modules prove the base role read-only.
        cluster.kubectl("delete", "--ignore-not-found", "-n", "netpol-guard", "-f",
                        str(REPO / "manifests/components/reports/rbac.yaml"), check=True)


def audit_json(cluster: ControlPlane) -> list[dict[str, Any]]:
    proc = subprocess.run([sys.executable, "-m", "webhook", "audit", "--kubeconfig", str(cluster.kubeconfig),
                           "-o", "json"], capture_output=True, text=True, cwd=REPO, timeout=60, check=False)
    assert proc.returncode in (0, 1), proc.stderr
    results: list[dict[str, Any]] = json.loads(proc.stdout)["results"]
    return results


def test_reports_appear_within_one_interval_and_agree_with_audit(cluster: ControlPlane, reporter: Webhook) -> None:
    opened = wait_for("the Report of rep-open", lambda: get(cluster, "reports.openreports.io", "rep-open"),
                      INTERVAL + 15)
    assert opened["source"] == "netpol-guard"
    assert outcomes(opened) == {("fail", "deny-all-coverage", "Deployment", "web"),
                                ("fail", "deny-all-coverage", "Pod", "naked")}
    assert opened["summary"] == {"pass": 0, "fail": 2, "warn": 0, "error": 0, "skip": 0}
    covered = wait_for("the Report of rep-covered", lambda: get(cluster, "reports.openreports.io", "rep-covered"),
                       15)
    assert outcomes(covered) == {("pass", "deny-all-coverage", "Namespace", "rep-covered"),
                                 ("fail", "broad-cidr", "NetworkPolicy", "to-internet"),
                                 # 100.100.100.200 (Alibaba Cloud) is outside the except
                                 ("fail", "metadata-endpoint", "NetworkPolicy", "to-internet"),
                                 ("fail", "host-network", "Deployment", "agent")}
    assert get(cluster, "clusterreports.openreports.io") is not None
    # The held-out comparison, in small: every fail/warn result is one violation of `audit -o json`.
    for namespace, report in (("rep-open", opened), ("rep-covered", covered)):
        expected = {("fail" if v["action"] == "deny" else "warn", v["rule"], r["kind"], r["name"], v["message"])
                    for r in audit_json(cluster) if r["namespace"] == namespace for v in r["violations"]}
        got = {(x["result"], x["policy"], x["resources"][0]["kind"], x["resources"][0]["name"], x["message"])
               for x in report["results"] if x["result"] != "pass"}
        assert got == expected, namespace
    # Namespaces exempt by default get no report.
    assert get(cluster, "reports.openreports.io", "kube-system") is None
    status, metrics = reporter.get("/metrics")
    assert status == 200
    assert 'netpol_guard_namespace_coverage{direction="Egress",namespace="rep-covered"} 1.0' in metrics
    assert 'netpol_guard_namespace_coverage{direction="Ingress",namespace="rep-open"} 0.0' in metrics
    assert 'netpol_guard_audit_violations{namespace="rep-open",rule="deny-all-coverage"} 2.0' in metrics


def test_fixing_a_namespace_turns_it_to_pass_on_the_next_change(cluster: ControlPlane, reporter: Webhook) -> None:
    wait_for("the Report of rep-open", lambda: get(cluster, "reports.openreports.io", "rep-open"), INTERVAL + 15)
    cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump(deny_all("rep-open")), check=True)
    applied = time.monotonic()

    def passed() -> dict[str, Any] | None:
        report = get(cluster, "reports.openreports.io", "rep-open")
        return report if report and outcomes(report) == {("pass", "deny-all-coverage", "Namespace", "rep-open")} \
            else None

    report = wait_for("rep-open to pass", passed, INTERVAL)
    # Change-triggered (debounce 1s), not the 30 s timer.
    assert time.monotonic() - applied < INTERVAL / 2
    assert report["summary"]["pass"] == 1 and report["summary"]["fail"] == 0
    assert report["results"][0]["properties"]["ingressCoveredBy"] == "default-deny-all"


def test_deleting_a_namespace_removes_its_report(cluster: ControlPlane, reporter: Webhook) -> None:
    cluster.kubectl("create", "namespace", "rep-doomed", check=True)
    cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump(deployment("web", "rep-doomed")), check=True)
    wait_for("the Report of rep-doomed", lambda: get(cluster, "reports.openreports.io", "rep-doomed"), INTERVAL)
    # A report netpol-guard does not manage: the namespace controller alone must remove it.
    cluster.kubectl("apply", "-f", "-", check=True, input=yaml.safe_dump({
        "apiVersion": "openreports.io/v1alpha1", "kind": "Report",
        "metadata": {"name": "someone-else", "namespace": "rep-doomed"}, "source": "other", "results": []}))
    cluster.kubectl("delete", "namespace", "rep-doomed", "--wait=true", "--timeout=90s", check=True)
    assert cluster.kubectl("get", "namespace", "rep-doomed").returncode != 0
    # Gone with its namespace, and not written back by a later pass.
    time.sleep(3)
    listed = json.loads(cluster.kubectl("get", "reports.openreports.io", "-A", "-o", "json", check=True).stdout)
    assert "rep-doomed" not in {item["metadata"]["namespace"] for item in listed["items"]}
    # A pass that raced the deletion skipped the terminating namespace instead of failing a write.
    assert not [line for line in reporter.log_tail(400).splitlines() if "rep-doomed" in line and "write" in line]


def test_policyreport_format(cluster: ControlPlane, reporter: Webhook) -> None:
    reporter.set_config({"audit": {**CONFIG["audit"], "reportFormat": "policyreport"}})
    reporter.restart("--audit-background")
    try:
        report = wait_for("the PolicyReport of rep-covered",
                          lambda: get(cluster, "policyreports.wgpolicyk8s.io", "rep-covered"), INTERVAL + 15)
        assert report["apiVersion"] == "wgpolicyk8s.io/v1alpha2" and report["kind"] == "PolicyReport"
        assert ("fail", "broad-cidr", "NetworkPolicy", "to-internet") in outcomes(report)
        assert {r["source"] for r in report["results"]} == {"netpol-guard"}
        assert get(cluster, "clusterpolicyreports.wgpolicyk8s.io") is not None
        # The reports of the previous format are removed, not left to go stale.
        assert get(cluster, "reports.openreports.io", "rep-covered") is None
        assert get(cluster, "clusterreports.openreports.io") is None
    finally:
        reporter.set_config(CONFIG)
        reporter.restart("--audit-background")


def test_audit_html_from_the_cluster(cluster: ControlPlane, reporter: Webhook) -> None:
    proc = subprocess.run([sys.executable, "-m", "webhook", "audit", "--kubeconfig", str(cluster.kubeconfig),
                           "-o", "html"], capture_output=True, text=True, cwd=REPO, timeout=60, check=False)
    assert proc.returncode in (0, 1), proc.stderr
    assert proc.stdout.startswith("<!DOCTYPE html>")
    assert 'data-namespace="rep-covered" data-coverage="covered"' in proc.stdout
