"""The AdmissionReview boundary, without a server: typed envelope, 400 naming the field, clipped answers."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.service.support import pod, review
from webhook.core.config import Config
from webhook.errors import BadReview
from webhook.server.review import Outcome, failure_outcome, parse_review, review_response


def body(**changes: Any) -> bytes:
    data = review("Pod", pod("shop"), uid="u-1")
    for path, value in changes.items():
        target = data
        *parents, last = path.split("__")
        for part in parents:
            target = target[part]
        target[last] = value
    return json.dumps(data).encode()


def problem(raw: bytes) -> str:
    with pytest.raises(BadReview) as caught:
        parse_review(raw)
    return str(caught.value)


def test_a_real_review_parses() -> None:
    parsed = parse_review(body())
    assert (parsed.uid, parsed.request.kind, parsed.request.namespace, parsed.request.name) == (
        "u-1", "Pod", "shop", "web-0")
    assert parsed.request.operation == "CREATE" and parsed.request.dry_run is False
    assert parsed.request.user.username == "alice" and parsed.request.user.groups == {"system:authenticated"}


@pytest.mark.parametrize(("changes", "expected"), [
    ({"request__operation": {"a": 1}}, "request.operation: Input should be 'CREATE', 'UPDATE', 'DELETE' or 'CONNECT'"),
    ({"request__operation": ["CREATE"]}, "request.operation: Input should be"),
    ({"request__uid": 7}, "request.uid: Input should be a valid string"),
    ({"request__uid": ""}, "request.uid: String should have at least 1 character"),
    ({"request__kind": "Pod"}, "request.kind: must be an object"),
    ({"request__kind": {"group": ""}}, "request.kind.kind: required"),
    ({"request__dryRun": "true"}, "request.dryRun: Input should be a valid boolean"),
    ({"request__userInfo__groups": ["a", 1]}, "request.userInfo.groups[1]: Input should be a valid string"),
    ({"request__userInfo": []}, "request.userInfo: must be an object"),
    ({"request__object": [1]}, "request.object: must be an object"),
    ({"request__namespace": {"x": 1}}, "request.namespace: Input should be a valid string"),
    ({"request__subResource": 3}, "request.subResource: Input should be a valid string"),
    ({"request__options": "yes"}, "request.options: must be an object"),
    ({"request__name": "n" * 254}, "request.name: String should have at most 253 characters"),
    ({"request__object": None}, "request.object: required for CREATE of a Pod"),
    ({"kind": "Pod"}, "kind: not an AdmissionReview (kind is 'Pod')"),
    ({"apiVersion": "admission.k8s.io/v1beta1"}, "apiVersion: unsupported apiVersion 'admission.k8s.io/v1beta1'"),
])
def test_each_mismatch_names_its_field(changes: dict[str, Any], expected: str) -> None:
    assert expected in problem(body(**changes))


def test_json_problems_and_non_objects() -> None:
    assert problem(b"{nope").startswith("malformed JSON: ")
    assert problem(b"[" * 5000 + b"]" * 5000) == "malformed JSON: recursion limit exceeded at line 1 column 202"
    assert problem(b"[1]") == "(body): the body must be a JSON object (an AdmissionReview)"


def test_nulls_the_api_server_may_send_are_accepted() -> None:
    parsed = parse_review(body(request__oldObject=None, request__options=None, request__dryRun=None,
                               request__userInfo={"username": None, "groups": None}))
    assert parsed.request.dry_run is False and parsed.request.user.username == ""


def test_quoted_values_are_clipped_and_problems_bounded() -> None:
    message = problem(body(kind="K" * 3_000_000))
    assert len(message) < 400 and "K" * 257 not in message
    many = review("Pod", pod("shop"))
    many["request"]["userInfo"]["groups"] = list(range(1000))
    message = problem(json.dumps(many).encode())
    assert message.count("Input should be a valid string") == 5 and message.endswith("(and 995 more)")


def test_answers_bound_every_message() -> None:
    outcome = Outcome(allowed=False, decision="denied", mode="enforce", message="deny: " + "L" * 100_000,
                      warnings=["w " + "W" * 10_000] * 100, annotations={"rule": "A" * 10_000})
    response = review_response("u-1", outcome)["response"]
    assert response["uid"] == "u-1"
    assert len(response["status"]["message"]) <= 4096 and "L" * 257 not in response["status"]["message"]
    assert len(response["warnings"]) == 32 and all(len(w) <= 4096 for w in response["warnings"])
    assert len(response["auditAnnotations"]["rule"]) <= 4096


def test_the_fail_mode_answer_follows_failclosed() -> None:
    closed = failure_outcome(Config(), "the object", "why")
    assert closed.allowed is False and closed.message is not None and "failing closed" in closed.message
    opened = failure_outcome(Config.model_validate({"failClosed": False}), "the object", "why")
    assert opened.allowed is True and "allowed because failClosed is false" in opened.warnings[0]
