"""Mutation fuzzing of POST /validate over real uvicorn + TLS: no input may give a 5xx, a dropped
connection, an unbounded answer or a traceback; the server is alive at the end.

Deterministic (seeded): each case takes a real AdmissionReview (Pod, Deployment, NetworkPolicy,
Namespace) and mutates one to three places, anywhere in the envelope or the object, with type
confusion (objects, lists, numbers, booleans, null), deletion, huge strings, deep nesting and odd
unicode. Every answer must be a 200 AdmissionReview echoing the uid, or a 4xx with a JSON error.
"""

from __future__ import annotations

import copy
import json
import random
import ssl
import time
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

CASES = 600
HUGE = 300_000  # characters: well past every clip, well under maxBodyBytes
MAX_ERROR_BODY = 4096
ODD = ["", "\u0000", "\u202e\u200b", "é" * 300, "😀" * 200, "\ufeff", "\ud7ff\ue000", "../../etc/passwd",
       "<script>", "%s%n", "a" * 70, "Namespace", "kube-system", "DELETE", "true", "-1", "1e309"]


def seeds() -> list[dict[str, Any]]:
    policy = allow_policy("covered", "allow-web", "web", cidr="10.1.0.0/16")
    old_ns = namespace("covered")
    new_ns = namespace("covered", {"team": "x"})
    return [
        review("Pod", pod("open")),
        review("Pod", pod("covered")),
        review("Deployment", deployment("open")),
        review("NetworkPolicy", policy),
        review("NetworkPolicy", None, operation="DELETE", old=deny_all("covered"), name="default-deny-all"),
        review("Namespace", new_ns, operation="UPDATE", old=old_ns),
    ]


def confusion(rng: random.Random) -> Any:
    choice = rng.randrange(12)
    if choice == 0:
        return None
    if choice == 1:
        return {"x": [1, {"y": None}]}
    if choice == 2:
        return ["CREATE", 1, None]
    if choice == 3:
        return rng.choice([0, -1, 2**70, 1.5, float("1e308")])
    if choice == 4:
        return rng.choice([True, False])
    if choice == 5:
        return "x" * HUGE
    if choice == 6:
        return "🙂" + "\u202e" * (HUGE // 10)
    if choice == 7:  # deep nesting
        value: Any = "bottom"
        for _ in range(rng.choice([50, 150, 400])):
            value = [value] if rng.random() < 0.5 else {"k": value}
        return value
    if choice == 8:
        return {f"key-{i}" * 8: "v" * 40 for i in range(rng.choice([10, 2000]))}
    if choice == 9:
        return [rng.choice(ODD) for _ in range(rng.choice([3, 5000]))]
    return rng.choice(ODD)


def paths(value: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    yield prefix
    if isinstance(value, dict):
        for key, item in value.items():
            yield from paths(item, (*prefix, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from paths(item, (*prefix, index))


def mutate(body: dict[str, Any], rng: random.Random) -> dict[str, Any]:
    body = copy.deepcopy(body)
    for _ in range(rng.choice([1, 1, 2, 3])):
        candidates = [p for p in paths(body) if p]
        # Bias towards the envelope and metadata, where type confusion used to crash the server.
        envelope = [p for p in candidates if len(p) <= 3 or p[:3] == ("request", "object", "metadata")]
        path = rng.choice(envelope if envelope and rng.random() < 0.6 else candidates)
        parent: Any = body
        for part in path[:-1]:
            parent = parent[part]
        last = path[-1]
        if rng.random() < 0.15 and isinstance(parent, dict):
            del parent[last]
        elif rng.random() < 0.1 and isinstance(parent, dict):
            parent["x" * rng.choice([10, HUGE])] = confusion(rng)
        else:
            parent[last] = confusion(rng)
    return body


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, certs: tuple[Path, Path]) -> Iterator[ServerProcess]:
    workdir = tmp_path_factory.mktemp("hostile")
    write_manifests(workdir / "state" / "cluster.yaml", [
        namespace("covered"), deny_all("covered"), namespace("open"), namespace("steady"), deny_all("steady"),
    ])
    process = ServerProcess(workdir, state=workdir / "state", cert_dir=certs[0])
    process.start(certs[1])
    yield process
    process.stop()


@pytest.fixture(scope="module")
def client(server: ServerProcess, tls_context: ssl.SSLContext) -> Iterator[httpx.Client]:
    with make_client(server.url, tls_context) as http:
        yield http


def check_answer(answer: httpx.Response, sent: dict[str, Any]) -> str:
    assert answer.status_code < 500, answer.text[:500]
    assert answer.headers["content-type"].startswith("application/json")
    if answer.status_code == 200:
        data = answer.json()
        assert data["apiVersion"] == "admission.k8s.io/v1" and data["kind"] == "AdmissionReview"
        assert data["response"]["uid"] == sent["request"]["uid"]
        response = data["response"]
        assert len(response.get("status", {}).get("message", "")) <= MAX_ERROR_BODY
        for warning in response.get("warnings", []):
            assert len(warning) <= MAX_ERROR_BODY
        return "200"
    assert 400 <= answer.status_code < 500
    assert len(answer.content) <= MAX_ERROR_BODY, len(answer.content)
    assert answer.json()["error"]
    return str(answer.status_code)


def test_mutated_reviews_get_a_review_or_a_4xx(client: httpx.Client, server: ServerProcess) -> None:
    rng = random.Random(20261122)
    bases = seeds()
    counts: dict[str, int] = {}
    for index in range(CASES):
        body = mutate(bases[index % len(bases)], rng)
        data = json.dumps(body).encode()
        try:
            answer = client.post("/validate", content=data, headers={"Content-Type": "application/json"})
        except httpx.HTTPError as error:  # a dropped connection fails the test, naming the case
            pytest.fail(f"case {index}: {type(error).__name__}: {error}\n{data[:300]!r}")
        try:
            status = check_answer(answer, body)
        except (AssertionError, KeyError, TypeError) as error:
            pytest.fail(f"case {index}: {error!r}\nsent {data[:300]!r}\ngot {answer.status_code} {answer.text[:300]}")
        counts[status] = counts.get(status, 0) + 1
    # Both kinds of answer happened: the fuzzer reached the engine, not only the envelope check.
    assert counts.get("200", 0) > CASES // 10 and counts.get("400", 0) > CASES // 10, counts
    assert client.get("/healthz").status_code == 200
    # A namespace no mutated review names: its answer is what it was. ("covered" may have a removal pending
    # for a while: a fuzzed DELETE that was allowed counts as done until the cache shows it, see pending.py.)
    ok = client.post("/validate", json=review("Pod", pod("steady")))
    assert ok.status_code == 200 and ok.json()["response"]["allowed"] is True
    time.sleep(0.2)
    log = server.log()
    assert "Traceback" not in log
    longest = max(len(line) for line in log.splitlines())
    assert longest < 16_384, longest  # every client value in a log line is clipped
    assert not any("unparsed" in event for event in server.log_events())


@pytest.mark.parametrize("field", ["kind", "apiVersion", "request.kind.kind", "request.uid", "request.namespace",
                                   "request.name", "request.operation", "request.userInfo.username"])
def test_a_three_megabyte_value_is_clipped_everywhere(client: httpx.Client, server: ServerProcess,
                                                      field: str) -> None:
    body = review("Pod", pod("open"), uid=f"huge-{field}")
    target: Any = body
    *parents, last = field.split(".")
    for part in parents:
        target = target[part]
    target[last] = "Z" * (3 * 1024 * 1024 - 4096)
    answer = client.post("/validate", json=body)
    assert answer.status_code in (200, 400), answer.status_code
    assert len(answer.content) <= MAX_ERROR_BODY
    assert "Z" * 257 not in answer.text  # at most 256 characters of any one client value
    time.sleep(0.1)
    for line in server.log().splitlines():
        assert "Z" * 257 not in line
