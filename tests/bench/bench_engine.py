"""Engine speed: coverage decisions per second for a pod template against 1, 100 and 10,000 policies.

Not a test: run `python -m tests.bench.bench_engine` and read the numbers.
Targets: >= 20,000 decisions/s in namespace mode at any policy count (coverage is
precomputed per namespace); >= 2,000/s in pod mode with 1,000 policies.
"""

from __future__ import annotations

import random
import time
from typing import Any

from webhook.core.config import Config
from webhook.core.engine import Engine, Request, User
from webhook.core.netpol import NetworkPolicy, parse_network_policy
from webhook.core.state import ClusterState, NamespaceInfo

NAMESPACE = "bench"


def make_policies(count: int, rng: random.Random) -> list[NetworkPolicy]:
    policies = [parse_network_policy({
        "metadata": {"name": "default-deny-all", "namespace": NAMESPACE},
        "spec": {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]},
    })]
    for index in range(count - 1):
        spec: dict[str, Any] = {
            "podSelector": {"matchLabels": {"app": f"app-{index}"},
                            "matchExpressions": [{"key": "tier", "operator": "In", "values": ["web", "api"]}]},
            "policyTypes": ["Ingress"],
            "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": f"app-{rng.randrange(count)}"}}}],
                         "ports": [{"port": 8080}]}],
        }
        policies.append(parse_network_policy({"metadata": {"name": f"allow-{index}", "namespace": NAMESPACE},
                                              "spec": spec}))
    return policies


def deployment() -> dict[str, Any]:
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": NAMESPACE},
            "spec": {"replicas": 2, "template": {"metadata": {"labels": {"app": "app-7", "tier": "web"}},
                                                 "spec": {"containers": [{"name": "c", "image": "nginx"}]}}}}


def rate(engine: Engine, state: ClusterState, seconds: float = 1.5) -> float:
    request = Request(kind="Deployment", operation="CREATE", namespace=NAMESPACE, name="web",
                      object=deployment(), user=User("alice"))
    assert engine.review(request, state).allowed
    done = 0
    start = time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        for _ in range(200):
            engine.review(request, state)
        done += 200
    return done / elapsed


def main() -> None:
    rng = random.Random(7)
    print(f"{'mode':<10} {'policies':>9} {'decisions/s':>12}")
    for mode, counts in (("namespace", (1, 100, 10_000)), ("pod", (1, 100, 1_000, 10_000))):
        engine = Engine(Config(coverage=mode))  # type: ignore[arg-type]
        for count in counts:
            state = ClusterState()
            state.replace_all([NamespaceInfo(NAMESPACE)], make_policies(count, rng))
            print(f"{mode:<10} {count:>9} {rate(engine, state):>12,.0f}")


if __name__ == "__main__":
    main()
