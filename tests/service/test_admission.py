"""POST /validate against the real server (enforce mode, a config file, --state), over TLS."""

from __future__ import annotations

import json
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.service.conftest import make_client
from tests.service.support import (
    ServerProcess,
    allow_policy,
    deny_all,
    deployment,
    namespace,
    pod,
    review,
    write_manifests,
)

pytestmark = pytest.mark.service

CONFIG: dict[str, Any] = {
    "exemptions": {"namespaces": ["legacy"], "principals": {"users": ["ci-bot"]}},
    "modeOverrides": [{"namespaceSelector": {"matchLabels": {"netpol-guard.io/mode": "audit"}}, "mode": "audit"}],
    "rules": {"broad-cidr": {"action": "warn"}},
}
SECRET = "s3cr3t-env-value-never-logged"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, certs: tuple[Path, Path]) -> Iterator[ServerProcess]:
    workdir = tmp_path_factory.mktemp("admission")
    write_manifests(workdir / "state" / "cluster.yaml", [
        namespace("covered"), deny_all("covered"), allow_policy("covered", "allow-web", "web"),
        namespace("open"),
        namespace("trial", {"netpol-guard.io/mode": "audit"}),
        namespace("legacy"),
        namespace("dying", terminating=True), deny_all("dying"),
    ])
    process = ServerProcess(workdir, state=workdir / "state", cert_dir=certs[0], config=CONFIG)
    process.start(certs[1])
    yield process
    process.stop()


@pytest.fixture(scope="module")
def client(server: ServerProcess, tls_context: ssl.SSLContext) -> Iterator[httpx.Client]:
    with make_client(server.url, tls_context) as http:
        yield http


def send(client: httpx.Client, body: dict[str, Any]) -> dict[str, Any]:
    answer = client.post("/validate", json=body)
    assert answer.status_code == 200, answer.text
    data = answer.json()
    assert data["apiVersion"] == "admission.k8s.io/v1" and data["kind"] == "AdmissionReview"
    assert "patch" not in data["response"] and "patchType" not in data["response"]
    response: dict[str, Any] = data["response"]
    return response


def test_pod_in_covered_namespace_is_allowed_and_uid_echoed(client: httpx.Client) -> None:
    response = send(client, review("Pod", pod("covered"), uid="uid-allowed-1"))
    assert response == {"uid": "uid-allowed-1", "allowed": True}


def test_pod_in_uncovered_namespace_is_denied_with_403_and_fix(client: httpx.Client) -> None:
    response = send(client, review("Pod", pod("open"), uid="uid-denied-1"))
    assert response["uid"] == "uid-denied-1"
    assert response["allowed"] is False
    status = response["status"]
    assert status["code"] == 403 and status["reason"] == "Forbidden"
    assert "deny-all-coverage" in status["message"]
    assert "Pod open/web-0" in status["message"]
    assert '"name":"default-deny-all","namespace":"open"' in status["message"]
    assert response["auditAnnotations"] == {
        "deny-all-coverage": "denied: deny-all-coverage: Pod open/web-0: namespace open has no default-deny for "
                                  "Ingress and Egress",
    }


def test_deployment_template_is_judged(client: httpx.Client) -> None:
    assert send(client, review("Deployment", deployment("open")))["allowed"] is False
    assert send(client, review("Deployment", deployment("covered")))["allowed"] is True


def test_dry_run_gets_the_same_decision(client: httpx.Client) -> None:
    for ns, allowed in (("open", False), ("covered", True)):
        real = send(client, review("Pod", pod(ns), uid="same"))
        dry = send(client, review("Pod", pod(ns), uid="same", dry_run=True))
        assert real == dry
        assert real["allowed"] is allowed


def test_host_network_pod_is_denied_even_when_covered(client: httpx.Client) -> None:
    response = send(client, review("Pod", pod("covered", host_network=True)))
    assert response["allowed"] is False
    assert "host-network" in response["status"]["message"]


def test_per_namespace_audit_override_warns_instead(client: httpx.Client) -> None:
    response = send(client, review("Pod", pod("trial")))
    assert response["allowed"] is True
    assert "status" not in response
    assert any(w.startswith("[audit mode, not enforced] deny-all-coverage") for w in response["warnings"])
    assert list(response["auditAnnotations"]) == ["deny-all-coverage"]


def test_warn_rule_warns_in_enforce_mode(client: httpx.Client) -> None:
    policy = allow_policy("covered", "egress-wide", "web", cidr="10.0.0.0/4")
    response = send(client, review("NetworkPolicy", policy))
    assert response["allowed"] is True
    assert any("broad-cidr" in w and "10.0.0.0/4" in w for w in response["warnings"])
    assert "broad-cidr" in response["auditAnnotations"]
    assert all("/" not in key for key in response["auditAnnotations"])


def test_allow_all_ingress_policy_is_denied(client: httpx.Client) -> None:
    policy = deny_all("covered", "open-door")
    policy["spec"]["ingress"] = [{}]
    response = send(client, review("NetworkPolicy", policy))
    assert response["allowed"] is False
    assert "allow-all-ingress" in response["status"]["message"]


def test_exempt_namespace_and_exempt_principal(client: httpx.Client) -> None:
    response = send(client, review("Pod", pod("legacy")))
    assert response["allowed"] is True and "warnings" not in response
    response = send(client, review("Pod", pod("open"), user="ci-bot"))
    assert response["allowed"] is True and "warnings" not in response
    system = send(client, review("Pod", pod("kube-system")))
    assert system["allowed"] is True


def test_delete_of_the_last_deny_all_is_refused(client: httpx.Client) -> None:
    response = send(client, review("NetworkPolicy", None, operation="DELETE", old=deny_all("covered")))
    assert response["allowed"] is False
    assert "protect-deny-all" in response["status"]["message"]


def test_delete_of_deny_all_in_terminating_namespace_is_allowed(client: httpx.Client) -> None:
    response = send(client, review("NetworkPolicy", None, operation="DELETE", old=deny_all("dying")))
    assert response["allowed"] is True


def test_delete_of_an_allow_policy_is_allowed(client: httpx.Client) -> None:
    old = allow_policy("covered", "allow-web", "web")
    assert send(client, review("NetworkPolicy", None, operation="DELETE", old=old))["allowed"] is True


def test_unknown_kind_has_no_opinion(client: httpx.Client) -> None:
    config_map = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": "open"}}
    assert send(client, review("ConfigMap", config_map, uid="cm")) == {"uid": "cm", "allowed": True}


def test_malformed_object_is_bad_input_400_naming_the_field(client: httpx.Client) -> None:
    policy = allow_policy("covered", "bad", "web", cidr="banana")
    answer = client.post("/validate", json=review("NetworkPolicy", policy))
    assert answer.status_code == 400
    error = answer.json()["error"]
    assert error.startswith("request.object: NetworkPolicy covered/bad: spec.egress[1].to[0].ipBlock.cidr")
    assert "banana" in error


def test_a_named_port_that_is_not_a_service_name_is_400(client: httpx.Client) -> None:
    policy = deny_all("covered", "odd")
    policy["spec"]["ingress"] = [{"from": [{"podSelector": {}}], "ports": [{"port": "²"}]}]
    answer = client.post("/validate", json=review("NetworkPolicy", policy))
    assert answer.status_code == 400
    assert "spec.ingress[0].ports[0].port: '²' is not a port number or an IANA service name" in \
        answer.json()["error"]


def _lenient(kind: str) -> dict[str, Any]:
    """Inputs the API server refuses: each must be 400 naming the field, never judged leniently."""
    policy = deny_all("covered", "odd")
    if kind == "quoted-port":
        policy["spec"]["ingress"] = [{"from": [{"podSelector": {}}], "ports": [{"port": "80"}]}]
    elif kind == "except":
        policy["spec"]["ingress"] = [{"from": [{"ipBlock": {"cidr": "10.0.0.0/8", "except": ["11.0.0.0/16"]}}]}]
    elif kind == "zoned":
        policy["spec"]["egress"] = [{"to": [{"ipBlock": {"cidr": "fd00:ec2::254%eth0/128"}}]}]
    elif kind == "labels":
        policy["metadata"]["labels"] = []
    elif kind == "name":
        policy["metadata"]["name"] = "[x]"
    elif kind == "host-network":
        return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "covered"},
                "spec": {"hostNetwork": "true", "containers": []}}
    return policy


@pytest.mark.parametrize(("case", "expected"), [
    ("quoted-port", "spec.ingress[0].ports[0].port: '80' is a quoted number"),
    ("except", "spec.ingress[0].from[0].ipBlock.except[0]: 11.0.0.0/16 must be a strict subset of cidr 10.0.0.0/8"),
    ("zoned", "spec.egress[0].to[0].ipBlock.cidr: invalid CIDR 'fd00:ec2::254%eth0/128': a zoned address"),
    ("labels", "metadata.labels: must map label keys to string values"),
    ("name", "metadata.name: '[x]' is not a DNS-1123 subdomain"),
    ("host-network", "spec.hostNetwork: must be true or false, not 'true'"),
])
def test_inputs_the_api_server_refuses_are_400(client: httpx.Client, case: str, expected: str) -> None:
    obj = _lenient(case)
    answer = client.post("/validate", json=review(obj["kind"], obj))
    assert answer.status_code == 400
    assert expected in answer.json()["error"]


def v1beta1() -> bytes:
    body = review("Pod", pod("open"))
    body["apiVersion"] = "admission.k8s.io/v1beta1"
    return json.dumps(body).encode()


def without_object() -> bytes:
    body = review("Pod", pod("open"))
    del body["request"]["object"]
    return json.dumps(body).encode()


def without_uid() -> bytes:
    body = review("Pod", pod("open"))
    del body["request"]["uid"]
    return json.dumps(body).encode()


@pytest.mark.parametrize(("body", "expected"), [
    (b"{not json", "malformed JSON"),
    (b"\xff\xfe\x00garbage", "malformed JSON"),
    (b"[1, 2]", "JSON object"),
    (json.dumps({"apiVersion": "v1", "kind": "Pod", "metadata": {}}).encode(), "not an AdmissionReview"),
    (json.dumps({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview"}).encode(), "request: required"),
    (without_uid(), "request.uid"),
    (v1beta1(), "unsupported apiVersion 'admission.k8s.io/v1beta1'"),
    (b"[" * 100_000 + b"]" * 100_000, "malformed JSON: recursion limit exceeded"),
    (without_object(), "request.object: required for CREATE of a Pod"),
], ids=["malformed", "not-utf8", "array", "not-review", "no-request", "no-uid", "v1beta1", "deep", "no-object"])
def test_bad_input_is_400_with_json_error(client: httpx.Client, body: bytes, expected: str) -> None:
    answer = client.post("/validate", content=body, headers={"Content-Type": "application/json"})
    assert answer.status_code == 400
    assert answer.headers["content-type"].startswith("application/json")
    error = answer.json()["error"]
    assert expected in error
    assert "Traceback" not in answer.text
    assert client.get("/healthz").status_code == 200
    assert send(client, review("Pod", pod("covered")))["allowed"] is True


def test_namespace_and_name_default_to_the_objects_metadata(client: httpx.Client) -> None:
    body = review("Pod", pod("open"))
    del body["request"]["namespace"]
    del body["request"]["name"]
    answer = send(client, body)
    assert answer["allowed"] is False
    assert answer["status"]["message"].startswith("deny-all-coverage: Pod open/web-0: namespace open has no")


def test_oversize_body_is_413_then_server_still_answers(client: httpx.Client) -> None:
    big = review("Pod", pod("covered"))
    big["request"]["object"]["metadata"]["annotations"] = {"blob": "x" * (3 * 1024 * 1024 + 10)}
    answer = client.post("/validate", json=big)
    assert answer.status_code == 413
    assert "maxBodyBytes" in answer.json()["error"]
    assert send(client, review("Pod", pod("covered")))["allowed"] is True


def test_oversize_chunked_body_is_413(client: httpx.Client) -> None:
    def chunks() -> Iterator[bytes]:
        for _ in range(4):
            yield b"x" * (1024 * 1024)

    answer = client.post("/validate", content=chunks())  # a generator: sent chunked, no Content-Length
    assert answer.status_code == 413
    assert send(client, review("Pod", pod("covered")))["allowed"] is True


def test_wrong_method_and_unknown_path(client: httpx.Client) -> None:
    answer = client.get("/validate")
    assert answer.status_code == 405
    assert "error" in answer.json()
    assert client.get("/nope").status_code == 404


def test_health_readiness_and_metrics(client: httpx.Client) -> None:
    send(client, review("Pod", pod("open")))
    send(client, review("Pod", pod("covered")))
    health = client.get("/healthz")
    assert (health.status_code, health.text) == (200, "ok")
    assert client.get("/readyz").status_code == 200
    metrics = client.get("/metrics")
    assert metrics.status_code == 200
    text = metrics.text
    assert 'netpol_guard_requests_total{decision="denied",kind="Pod",mode="enforce",operation="CREATE"}' in text
    assert 'netpol_guard_requests_total{decision="allowed",kind="Pod",mode="enforce",operation="CREATE"}' in text
    assert 'netpol_guard_violations_total{action="deny",rule="deny-all-coverage"}' in text
    assert "netpol_guard_decision_duration_seconds_bucket" in text
    assert "netpol_guard_cache_synced 1.0" in text
    assert 'netpol_guard_cache_objects{kind="Namespace"} 5.0' in text
    assert 'netpol_guard_cache_objects{kind="NetworkPolicy"} 3.0' in text
    assert "netpol_guard_cache_age_seconds" in text


def test_one_json_log_line_per_decision_without_bodies(client: httpx.Client, server: ServerProcess) -> None:
    body = review("Pod", pod("open"), uid="log-me", user="dave")
    body["request"]["object"]["spec"]["containers"][0]["env"][0]["value"] = SECRET
    send(client, body)
    lines = [e for e in server.log_events() if e.get("uid") == "log-me"]
    assert len(lines) == 1
    line = lines[0]
    assert line["event"] == "decision"
    for key, value in {"kind": "Pod", "namespace": "open", "name": "web-0", "operation": "CREATE",
                       "user": "dave", "dry_run": False, "decision": "denied", "mode": "enforce",
                       "rules": ["deny-all-coverage"]}.items():
        assert line[key] == value
    assert isinstance(line["duration_ms"], float)
    log = server.log()
    assert SECRET not in log
    assert "Traceback" not in log
    assert not any("unparsed" in e for e in server.log_events())
