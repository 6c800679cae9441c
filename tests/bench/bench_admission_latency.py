"""Latency a registered netpol-guard adds to each API call, measured through a real kube-apiserver.

Not a test: `python tests/bench/bench_admission_latency.py [--count 300]` (binaries from
`make binaries`). On a local control plane it sends `dryRun=All` creates of a Pod into a
covered namespace over one kept-alive HTTPS connection (no kubectl start-up in the way):
COUNT without the webhook, COUNT with it registered (enforce overlay, failurePolicy Fail,
the webhook on loopback over TLS), then COUNT without again, and prints p50/p90/p99 of each
phase and the added p50 and p90 (with, minus the mean of the two phases without).
"""

from __future__ import annotations

import argparse
import http.client
import json
import ssl
import statistics
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlparse

import yaml

E2E = Path(__file__).resolve().parents[1] / "e2e"
sys.path.insert(0, str(E2E))
from build_binaries import ensure_binaries  # noqa: E402
from controlplane import ControlPlane  # noqa: E402
from harness import Webhook, install_base, register, unregister  # noqa: E402

NAMESPACE = "bench"


def pod_body() -> bytes:
    return json.dumps({"apiVersion": "v1", "kind": "Pod",
                       "metadata": {"name": "web", "namespace": NAMESPACE, "labels": {"app": "bench"}},
                       "spec": {"containers": [{"name": "c", "image": "nginx"}]}}).encode()


class API:
    """One kept-alive HTTPS connection to the API server as cluster-admin."""

    def __init__(self, cp: ControlPlane) -> None:
        url = urlparse(cp.server)
        context = ssl.create_default_context(cafile=str(cp.ca.cert))
        context.load_cert_chain(str(cp.admin.cert), str(cp.admin.key))
        self.connection = http.client.HTTPSConnection(url.hostname or "127.0.0.1", url.port, context=context,
                                                      timeout=30)

    def dry_run_create(self, body: bytes) -> tuple[int, float]:
        started = time.perf_counter()
        self.connection.request("POST", f"/api/v1/namespaces/{NAMESPACE}/pods?dryRun=All", body=body,
                                headers={"Content-Type": "application/json"})
        response = self.connection.getresponse()
        response.read()
        return response.status, (time.perf_counter() - started) * 1000


def phase(api: API, count: int) -> list[float]:
    body = pod_body()
    for _ in range(20):  # warm up connections on both sides
        api.dry_run_create(body)
    times = []
    for _ in range(count):
        status, ms = api.dry_run_create(body)
        if status != 201:
            raise RuntimeError(f"dry-run create answered {status}")
        times.append(ms)
    return times


def describe(times: list[float]) -> str:
    q = statistics.quantiles(times, n=100)
    return f"p50 {statistics.median(times):6.2f}  p90 {q[89]:6.2f}  p99 {q[98]:6.2f} ms"


def wait_until_gone(api: API, cp: ControlPlane, timeout: float = 30.0) -> None:
    """The API server drops a deleted webhook configuration asynchronously: probe until a host-network pod passes."""
    probe = json.dumps({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "probe", "namespace": "default"},
                        "spec": {"hostNetwork": True, "containers": [{"name": "c", "image": "x"}]}}).encode()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        api.connection.request("POST", "/api/v1/namespaces/default/pods?dryRun=All", body=probe,
                               headers={"Content-Type": "application/json"})
        response = api.connection.getresponse()
        response.read()
        if response.status == 201:
            return
        time.sleep(0.5)
    raise RuntimeError("the webhook configuration did not go away")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=300)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="netpol-guard-bench-"))
    with ControlPlane(work_dir=work / "cluster", bin_dir=ensure_binaries(quiet=True)) as cp:
        install_base(cp)
        cp.kubectl("create", "namespace", NAMESPACE, check=True)
        cp.kubectl("apply", "-f", "-", check=True, input=yaml.safe_dump({
            "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": "default-deny-all", "namespace": NAMESPACE},
            "spec": {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}}))
        webhook = Webhook(cp, work / "webhook")
        webhook.start()
        api = API(cp)
        try:
            before = phase(api, args.count)
            register(cp, webhook)
            guarded = phase(api, args.count)
            unregister(cp)
            wait_until_gone(api, cp)
            after = phase(api, args.count)
        finally:
            unregister(cp)
            webhook.stop()
    plain_p50 = (statistics.median(before) + statistics.median(after)) / 2
    plain_p90 = (statistics.quantiles(before, n=10)[-1] + statistics.quantiles(after, n=10)[-1]) / 2
    print(f"dry-run create of a Pod through kube-apiserver, {args.count} calls per phase (one kept-alive connection):")
    print(f"  without webhook (before)  {describe(before)}")
    print(f"  with netpol-guard         {describe(guarded)}")
    print(f"  without webhook (after)   {describe(after)}")
    print(f"  added by the webhook      p50 {statistics.median(guarded) - plain_p50:+.2f} ms, "
          f"p90 {statistics.quantiles(guarded, n=10)[-1] - plain_p90:+.2f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
