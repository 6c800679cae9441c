"""Engine speed with coverage sources: 100 cluster-wide policies next to 10,000 namespaces.

Not a test: run `python -m tests.bench.bench_sources` and read the numbers.
Target: >= 20,000 decisions/s in namespace mode once a namespace's coverage is
computed (it is kept per namespace until a source policy or the namespace
changes); also printed: the cold cost (first decision in every namespace), pod
mode, and protect-deny-all on deleting the one policy all namespaces rely on.
"""

from __future__ import annotations

import random
import time
from typing import Any

from webhook.core.config import Config
from webhook.core.engine import Engine, Request, User
from webhook.core.sources import parse_source_policy
from webhook.core.sources.base import SourcePolicy
from webhook.core.state import ClusterState, NamespaceInfo

NAMESPACES = 10_000
POLICIES = 100
RECOMMENDED = {
    "apiVersion": "projectcalico.org/v3", "kind": "GlobalNetworkPolicy", "metadata": {"name": "deny-app-policy"},
    "spec": {"namespaceSelector": 'has(projectcalico.org/name) && projectcalico.org/name not in {"kube-system"}',
             "types": ["Ingress", "Egress"],
             "egress": [{"action": "Allow", "protocol": "UDP",
                         "destination": {"selector": 'k8s-app == "kube-dns"', "ports": [53]}}]},
}


def make_sources(rng: random.Random) -> list[SourcePolicy]:
    objects: list[dict[str, Any]] = [RECOMMENDED]
    for index in range(POLICIES - 1):
        team = f"team-{rng.randrange(50)}"
        shape = index % 3
        if shape == 0:
            objects.append({"apiVersion": "policy.networking.k8s.io/v1alpha2", "kind": "ClusterNetworkPolicy",
                            "metadata": {"name": f"cnp-{index}"},
                            "spec": {"tier": "Admin", "priority": index % 1000,
                                     "subject": {"namespaces": {"matchLabels": {"team": team}}},
                                     "ingress": [{"action": "Accept", "from": [{"namespaces": {}}],
                                                  "protocols": [{"tcp": {"destinationPort": {"number": 443}}}]}]}})
        elif shape == 1:
            objects.append({"apiVersion": "projectcalico.org/v3", "kind": "GlobalNetworkPolicy",
                            "metadata": {"name": f"gnp-{index}"},
                            "spec": {"order": index, "selector": f"app == 'app-{index}'",
                                     "namespaceSelector": f"team == '{team}'",
                                     "ingress": [{"action": "Allow", "protocol": "TCP",
                                                  "destination": {"ports": [8080]}}]}})
        else:
            objects.append({"apiVersion": "cilium.io/v2", "kind": "CiliumClusterwideNetworkPolicy",
                            "metadata": {"name": f"ccnp-{index}"},
                            "spec": {"endpointSelector": {"matchLabels": {
                                "io.cilium.k8s.namespace.labels.team": team, "app": f"app-{index}"}},
                                "ingress": [{"fromEndpoints": [{"matchLabels": {"role": "client"}}]}]}})
    policies = [parse_source_policy(o) for o in objects]
    return [p for p in policies if p is not None]


def request(namespace: str) -> Request:
    return Request(kind="Deployment", operation="CREATE", namespace=namespace, name="web", user=User("alice"),
                   object={"apiVersion": "apps/v1", "kind": "Deployment",
                           "metadata": {"name": "web", "namespace": namespace},
                           "spec": {"template": {"metadata": {"labels": {"app": "app-7", "tier": "web"}},
                                                 "spec": {"containers": [{"name": "c", "image": "nginx"}]}}}})


def main() -> None:
    rng = random.Random(7)
    names = [f"ns-{i}" for i in range(NAMESPACES)]
    state = ClusterState()
    state.replace_all([NamespaceInfo(n, {"kubernetes.io/metadata.name": n, "team": f"team-{i % 50}"})
                       for i, n in enumerate(names)], [])
    state.replace_source_policies(make_sources(rng))
    print(f"{NAMESPACES:,} namespaces, {POLICIES} cluster-wide policies")
    for mode in ("namespace", "pod"):
        engine = Engine(Config(coverage=mode))  # type: ignore[arg-type]
        requests = [request(n) for n in names]
        start = time.perf_counter()
        for item in requests:
            assert engine.review(item, state).allowed
        cold = time.perf_counter() - start
        done = 0
        start = time.perf_counter()
        while (elapsed := time.perf_counter() - start) < 2.0:
            for item in requests[done % NAMESPACES:done % NAMESPACES + 500]:
                engine.review(item, state)
            done += 500
        print(f"{mode:<10} first decision in every namespace: {cold:6.2f}s; then {done / elapsed:>10,.0f} decisions/s")
    engine = Engine(Config())
    delete = Request(kind="GlobalNetworkPolicy", operation="DELETE", namespace="", name="deny-app-policy",
                     old_object=RECOMMENDED, user=User("alice"))
    start = time.perf_counter()
    decision = engine.review(delete, state)
    print(f"protect-deny-all on deleting deny-app-policy: {time.perf_counter() - start:.2f}s "
          f"(allowed={decision.allowed})")


if __name__ == "__main__":
    main()
