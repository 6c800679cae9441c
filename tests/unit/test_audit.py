"""`audit` judging listed objects (the listing itself is exercised against a real API server in e2e)."""

from __future__ import annotations

from typing import Any

from tests.unit.helpers import deny_all, namespace, netpol, pod
from webhook.audit import audit_objects
from webhook.core.config import Config


def owned(obj: dict[str, Any], api_version: str, kind: str) -> dict[str, Any]:
    obj["metadata"]["ownerReferences"] = [{"apiVersion": api_version, "kind": kind, "name": "o", "uid": "1",
                                           "controller": True}]
    return obj


def keyed(report: Any) -> dict[tuple[str, str, str], Any]:
    return {(r.manifest.kind, r.namespace, r.manifest.name): r for r in report.results}


def test_pods_of_controllers_we_do_not_audit_are_judged_themselves() -> None:
    objects = {
        "Namespace": [namespace("shop")],
        "NetworkPolicy": [],
        "Pod": [
            owned(pod("rollout-pod", host_network=True), "apps/v1", "ReplicaSet"),
            owned(pod("argo"), "argoproj.io/v1alpha1", "Rollout"),
            owned(pod("kruise"), "apps.kruise.io/v1beta1", "StatefulSet"),  # same kind, another group
            owned(pod("vm"), "kubevirt.io/v1", "VirtualMachineInstance"),
        ],
    }
    results = keyed(audit_objects(Config(), objects))
    assert ("Pod", "shop", "rollout-pod") not in results  # judged through its ReplicaSet
    for name in ("argo", "kruise", "vm"):
        assert [v.rule for v in results["Pod", "shop", name].decision.violations] == ["deny-all-coverage"]


def test_unreadable_objects_are_errors_and_the_audit_goes_on() -> None:
    broken = netpol("legacy", policyTypes=["Ingress"], ingress=[{"ports": [{"port": "²"}]}])
    objects = {
        "Namespace": [namespace("shop")],
        "NetworkPolicy": [broken, deny_all()],
        "Pod": [pod()],
    }
    report = audit_objects(Config(), objects)
    results = keyed(report)
    error = results["NetworkPolicy", "shop", "legacy"]
    assert error.error is not None and error.error.startswith("cannot be read: spec.ingress[0].ports[0].port: '²'")
    assert error.as_json()["allowed"] is False and "error" in error.as_json()
    assert results["Pod", "shop", "web"].allowed  # the readable deny-all still covers the namespace
    assert results["NetworkPolicy", "shop", "default-deny-all"].allowed
    assert not report.allowed
