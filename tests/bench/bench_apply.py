"""Added latency of `kubectl apply` of a Pod with netpol-guard registered, on a real local control plane.

Not a test: run `python tests/bench/bench_apply.py [--count 50]` (the binaries must be built:
`make binaries`). It applies COUNT Pods into a covered namespace without the webhook, then
COUNT more with the webhook registered (enforce overlay, failurePolicy Fail), and prints the
medians and the difference. Every kubectl is a new process, as a user's would be.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import yaml

E2E = Path(__file__).resolve().parents[1] / "e2e"
sys.path.insert(0, str(E2E))
from build_binaries import ensure_binaries  # noqa: E402
from controlplane import ControlPlane  # noqa: E402
from harness import Webhook, install_base, register, unregister, wait_until_enforced  # noqa: E402


def pod(namespace: str, name: str) -> str:
    return yaml.safe_dump({"apiVersion": "v1", "kind": "Pod",
                           "metadata": {"name": name, "namespace": namespace, "labels": {"app": "bench"}},
                           "spec": {"containers": [{"name": "c", "image": "nginx"}]}})


def timed_apply(cp: ControlPlane, namespace: str, name: str) -> float:
    start = time.perf_counter()
    cp.kubectl("apply", "-f", "-", input=pod(namespace, name), check=True)
    return (time.perf_counter() - start) * 1000


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=50)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="netpol-guard-bench-"))
    with ControlPlane(work_dir=work / "cluster", bin_dir=ensure_binaries(quiet=True)) as cp:
        install_base(cp)
        namespace = "bench"
        cp.kubectl("create", "namespace", namespace, check=True)
        cp.kubectl("apply", "-f", "-", check=True, input=yaml.safe_dump({
            "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": "default-deny-all", "namespace": namespace},
            "spec": {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}}))
        webhook = Webhook(cp, work / "webhook")
        webhook.start()
        try:
            for warm in range(3):  # warm kubectl's discovery cache
                timed_apply(cp, namespace, f"warm-{warm}")
            without = [timed_apply(cp, namespace, f"plain-{i}") for i in range(args.count)]
            register(cp, webhook)
            wait_until_enforced(cp)
            timed_apply(cp, namespace, "warm-guarded")
            with_webhook = [timed_apply(cp, namespace, f"guarded-{i}") for i in range(args.count)]
        finally:
            unregister(cp)
            webhook.stop()
    plain, guarded = statistics.median(without), statistics.median(with_webhook)
    print(f"kubectl apply of a Pod, median of {args.count} each (ms):")
    print(f"  without webhook  {plain:8.1f}   (p90 {statistics.quantiles(without, n=10)[-1]:.1f})")
    print(f"  with netpol-guard{guarded:8.1f}   (p90 {statistics.quantiles(with_webhook, n=10)[-1]:.1f})")
    print(f"  added latency    {guarded - plain:8.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
