"""The real server under parallel coverage removals, and on subresources (real uvicorn over TLS).

protect-deny-all must hold when N DELETEs of a namespace's N deny-alls arrive at the
same moment: within one process they are judged one at a time per namespace, each
seeing the removals allowed before it, so exactly one deny-all is always left.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.service.support import ServerProcess, deny_all, namespace, pod, review, write_manifests

pytestmark = pytest.mark.service

RUNS = 25
PARALLEL = 6
ADMINS = ("system:masters", "system:authenticated")


def deny_alls(ns: str) -> list[dict[str, Any]]:
    return [deny_all(ns, f"deny-{i}") for i in range(PARALLEL)]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, certs: tuple[Path, Path]) -> Iterator[ServerProcess]:
    workdir = tmp_path_factory.mktemp("races")
    objects: list[dict[str, Any]] = []
    for run in range(RUNS):
        objects += [namespace(f"race-{run}"), *deny_alls(f"race-{run}")]
    objects += [namespace("dry"), *deny_alls("dry"), namespace("updates"), *deny_alls("updates")[:2]]
    objects += [namespace("guarded", {"netpol-guard.io/exempt": "false"})]
    write_manifests(workdir / "state" / "cluster.yaml", objects)
    config = {"exemptions": {"namespaceSelector": {"matchLabels": {"netpol-guard.io/exempt": "true"}}}}
    process = ServerProcess(workdir, state=workdir / "state", cert_dir=certs[0], config=config)
    process.start(certs[1])
    yield process
    process.stop()


async def send_all(url: str, context: ssl.SSLContext, bodies: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Send every review at once, each on its own connection, as several API servers would."""
    async def one(body: dict[str, Any]) -> dict[str, Any]:
        async with httpx.AsyncClient(base_url=url, verify=context, timeout=20.0) as client:
            answer = await client.post("/validate", json=body)
            assert answer.status_code == 200, answer.text
            response: dict[str, Any] = answer.json()["response"]
            return response
    return list(await asyncio.gather(*(one(body) for body in bodies)))


def deletes(ns: str, dry_run: bool = False) -> list[dict[str, Any]]:
    return [review("NetworkPolicy", None, operation="DELETE", old=policy, dry_run=dry_run) for policy in deny_alls(ns)]


def test_parallel_deletes_of_every_deny_all_always_leave_one(server: ServerProcess,
                                                              tls_context: ssl.SSLContext) -> None:
    for run in range(RUNS):
        answers = asyncio.run(send_all(server.url, tls_context, deletes(f"race-{run}")))
        allowed = [a for a in answers if a["allowed"]]
        refused = [a for a in answers if not a["allowed"]]
        assert (len(allowed), len(refused)) == (PARALLEL - 1, 1), (run, answers)
        assert "protect-deny-all" in refused[0]["status"]["message"]


def test_dry_run_deletes_remove_nothing(server: ServerProcess, tls_context: ssl.SSLContext) -> None:
    # A dry run changes nothing, so it must not count as a removal for the requests after it.
    for _ in range(2):
        answers = asyncio.run(send_all(server.url, tls_context, deletes("dry", dry_run=True)))
        assert all(a["allowed"] for a in answers), answers


def test_an_allowed_update_that_drops_a_direction_counts_as_done(server: ServerProcess,
                                                                  tls_context: ssl.SSLContext) -> None:
    first, second = deny_alls("updates")[:2]
    narrowed = {**first, "spec": {"podSelector": {}, "policyTypes": ["Ingress"]}}
    with httpx.Client(base_url=server.url, verify=tls_context, timeout=10.0) as client:
        update = client.post("/validate", json=review("NetworkPolicy", narrowed, operation="UPDATE", old=first))
        assert update.json()["response"]["allowed"] is True  # the other deny-all still isolates Egress
        delete = client.post("/validate", json=review("NetworkPolicy", None, operation="DELETE", old=second))
        response = delete.json()["response"]
        assert response["allowed"] is False
        assert "without default-deny for Egress" in response["status"]["message"]


# ----- subresources -----
def test_namespace_status_label_changes_are_judged_like_the_namespace(server: ServerProcess,
                                                                        tls_context: ssl.SSLContext) -> None:
    old = namespace("guarded", {"netpol-guard.io/exempt": "false"})
    new = namespace("guarded", {"netpol-guard.io/exempt": "true"})
    body = review("Namespace", new, operation="UPDATE", old=old)
    body["request"]["subResource"] = "status"
    with httpx.Client(base_url=server.url, verify=tls_context, timeout=10.0) as client:
        response = client.post("/validate", json=body).json()["response"]
        assert response["allowed"] is False
        assert "protected-labels: Namespace guarded changes netpol-guard.io/exempt from false to true" in \
            response["status"]["message"]
        admin = review("Namespace", new, operation="UPDATE", old=old, groups=ADMINS)
        admin["request"]["subResource"] = "status"
        assert client.post("/validate", json=admin).json()["response"]["allowed"] is True
        # namespaces/finalize (namespace deletion) is never blocked, whatever it carries.
        finalize = review("Namespace", new, operation="UPDATE", old=old)
        finalize["request"]["subResource"] = "finalize"
        assert client.post("/validate", json=finalize).json()["response"] == {"uid": finalize["request"]["uid"],
                                                                                "allowed": True}


def test_other_subresources_get_no_opinion(server: ServerProcess, tls_context: ssl.SSLContext) -> None:
    # Pod status in namespace coverage mode: labels there cannot change coverage.
    old = pod("race-0", labels={"app": "web"})
    new = pod("race-0", labels={"app": "other"})
    bodies = []
    for kind, sub, obj, previous in (("Pod", "status", new, old), ("Pod", "ephemeralcontainers", new, old),
                                     ("Deployment", "scale", {"kind": "Scale"}, {"kind": "Scale"})):
        body = review(kind, obj, operation="UPDATE", old=previous, ns="open", name="web")
        body["request"]["subResource"] = sub
        bodies.append(body)
    with httpx.Client(base_url=server.url, verify=tls_context, timeout=10.0) as client:
        for body in bodies:
            assert client.post("/validate", json=body).json()["response"] == {"uid": body["request"]["uid"],
                                                                               "allowed": True}


def test_pod_status_label_changes_are_judged_in_pod_mode(tmp_path: Path, certs: tuple[Path, Path],
                                                         tls_context: ssl.SSLContext) -> None:
    selected = deny_all("shop", "web-isolated")
    selected["spec"]["podSelector"] = {"matchLabels": {"app": "web"}}
    write_manifests(tmp_path / "state" / "cluster.yaml", [namespace("shop"), selected])
    server = ServerProcess(tmp_path, state=tmp_path / "state", cert_dir=certs[0], config={"coverage": "pod"})
    server.start(certs[1])
    try:
        old = pod("shop", labels={"app": "web"})
        new = pod("shop", labels={"app": "escaped"})
        body = review("Pod", new, operation="UPDATE", old=old)
        body["request"]["subResource"] = "status"
        with httpx.Client(base_url=server.url, verify=tls_context, timeout=10.0) as client:
            response = client.post("/validate", json=body).json()["response"]
            assert response["allowed"] is False
            assert "deny-all-coverage" in response["status"]["message"]
            same = review("Pod", old, operation="UPDATE", old=old)
            same["request"]["subResource"] = "status"
            assert client.post("/validate", json=same).json()["response"]["allowed"] is True
    finally:
        server.stop()
