"""The shipped samples (webhook/samples) that the README uses to try netpol-guard without a cluster."""

from __future__ import annotations

import json
import ssl
from pathlib import Path

import pytest

from tests.service.conftest import make_client
from tests.service.support import REPO, ServerProcess

pytestmark = pytest.mark.service

SAMPLES = REPO / "webhook" / "samples"
EXPECTED = {  # sample review -> (allowed, rules named in the answer)
    "pod-in-shop.json": (True, []),
    "pod-in-legacy.json": (False, ["deny-all-coverage"]),
    "networkpolicy-allow-everything.json": (False, ["allow-all-ingress", "broad-cidr", "metadata-endpoint"]),
    "delete-default-deny-all.json": (False, ["protect-deny-all"]),
}


def test_every_sample_review_is_covered_here() -> None:
    assert sorted(p.name for p in (SAMPLES / "reviews").iterdir()) == sorted(EXPECTED)


@pytest.mark.parametrize("mode", ["enforce", "audit"])
def test_sample_reviews_against_the_sample_state(
    tmp_path: Path, certs: tuple[Path, Path], tls_context: ssl.SSLContext, mode: str
) -> None:
    server = ServerProcess(tmp_path, state=SAMPLES / "state", cert_dir=certs[0], extra_args=["--mode", mode])
    server.start(certs[1])
    try:
        with make_client(server.url, tls_context) as client:
            for name, (allowed, rules) in EXPECTED.items():
                body = json.loads((SAMPLES / "reviews" / name).read_text())
                response = client.post("/validate", json=body).json()["response"]
                assert response["uid"] == body["request"]["uid"]
                if mode == "audit":
                    assert response["allowed"] is True
                    assert sorted(response.get("auditAnnotations", {})) == rules, name
                else:
                    assert response["allowed"] is allowed, name
                    message = response.get("status", {}).get("message", "")
                    assert [r for r in rules if message.startswith(r) or f"\n{r}:" in message] == rules, name
    finally:
        assert server.stop() == 0
