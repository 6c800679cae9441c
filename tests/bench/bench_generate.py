"""Generation under a burst: COUNT namespaces created as fast as the API server takes them.

Not a test: run `python tests/bench/bench_generate.py [--count 1000] [--threads 16]` (the binaries
must be built: `make binaries`). A real local control plane gets netpol-guard's RBAC with the
generate component, `netpol-guard serve --generate` as its ServiceAccount, registered as the
webhook (so the namespace creations and the generator's own writes are judged, as in a
cluster). THREADS clients then create COUNT namespaces back to back; a watch on
NetworkPolicies notes when each namespace's default-deny appears. Printed: time to the last
generated policy, creation -> policy latency (p50, p99, max), errors, and the generator
process's CPU seconds and peak RSS. Target: p99 < 1 s, no error.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import yaml

E2E = Path(__file__).resolve().parents[1] / "e2e"
sys.path.insert(0, str(E2E))
from build_binaries import ensure_binaries  # noqa: E402
from controlplane import ControlPlane  # noqa: E402
from harness import REPO, Webhook, install_base, register, unregister  # noqa: E402

POLICY = "netpol-guard-default-deny"


def proc_stats(pid: int) -> tuple[float, float]:
    """(CPU seconds user+system, peak RSS in MB) of a process, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    cpu = (int(fields[11]) + int(fields[12])) / ticks
    peak = 0.0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            peak = int(line.split()[1]) / 1024
    return cpu, peak


def install_generate_rbac(cp: ControlPlane, work: Path) -> None:
    (work / "manifests").symlink_to(REPO / "manifests")
    (work / "kustomization.yaml").write_text(
        "resources: [manifests/overlays/enforce]\ncomponents: [manifests/components/generate]\n")
    objects = [o for o in yaml.safe_load_all(cp.kubectl("kustomize", str(work), check=True).stdout)
               if o and o["kind"] != "ValidatingWebhookConfiguration"]
    cp.kubectl("apply", "-f", "-", input=yaml.safe_dump_all(objects), check=True)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=16)
    args = parser.parse_args()
    from kubernetes import client, config, watch

    work = Path(tempfile.mkdtemp(prefix="netpol-guard-bench-generate-"))
    with ControlPlane(work_dir=work / "cluster", bin_dir=ensure_binaries(quiet=True)) as cp:
        install_base(cp)
        (work / "rbac").mkdir()
        install_generate_rbac(cp, work / "rbac")
        webhook = Webhook(cp, work / "webhook", {"generate": {"enabled": True}})
        webhook.start("--generate")
        assert webhook.process is not None
        pid = webhook.process.pid
        register(cp, webhook)
        api = client.ApiClient(config.new_client_from_config(str(cp.kubeconfig)).configuration)
        api.configuration.connection_pool_maxsize = args.threads + 4
        core, networking = client.CoreV1Api(api), client.NetworkingV1Api(api)
        deadline = time.monotonic() + 30
        while "1.0" not in [line.split()[-1] for line in webhook.get("/metrics")[1].splitlines()
                            if line.startswith("netpol_guard_leader ")]:
            if time.monotonic() > deadline:
                raise RuntimeError("the generator did not become leader")
            time.sleep(0.2)

        created: dict[str, float] = {}
        seen: dict[str, float] = {}
        errors: list[str] = []
        done = threading.Event()
        version = networking.list_network_policy_for_all_namespaces().metadata.resource_version

        def watch_policies() -> None:
            stream = watch.Watch()
            for event in stream.stream(networking.list_network_policy_for_all_namespaces,
                                       resource_version=version, timeout_seconds=600):
                obj = event["object"]
                if event["type"] == "ADDED" and obj.metadata.name == POLICY:
                    seen.setdefault(obj.metadata.namespace, time.monotonic())
                    if len(seen) >= args.count:
                        break
            done.set()

        watcher = threading.Thread(target=watch_policies, daemon=True)
        watcher.start()
        cpu_before, _ = proc_stats(pid)

        def create(i: int) -> None:
            name = f"bench-{i:05d}"
            try:
                core.create_namespace({"metadata": {"name": name}}, _request_timeout=30)
                created[name] = time.monotonic()
            except Exception as error:
                errors.append(f"{name}: {error}")

        started = time.monotonic()
        with ThreadPoolExecutor(args.threads) as pool:
            list(pool.map(create, range(args.count)))
        creation_s = time.monotonic() - started
        done.wait(timeout=300)
        cpu_after, peak_rss = proc_stats(pid)
        _status, metrics = webhook.get("/metrics")
        unregister(cp)
        webhook.stop()

    latencies = sorted(seen[ns] - created[ns] for ns in created if ns in seen)
    generate_errors = [line for line in metrics.splitlines() if line.startswith("netpol_guard_generate_errors_total")]
    missing = len(created) - len(latencies)
    last = max(seen.values()) - started if seen else float("nan")
    result = {
        "namespaces": args.count, "client_threads": args.threads, "create_errors": len(errors),
        "creation_s": round(creation_s, 2), "rate_per_s": round(len(created) / creation_s, 1),
        "time_to_last_policy_s": round(last, 2), "missing_policies": missing,
        "latency_p50_ms": round(statistics.median(latencies) * 1000, 1) if latencies else None,
        "latency_p99_ms": round(latencies[int(len(latencies) * 0.99) - 1] * 1000, 1) if latencies else None,
        "latency_max_ms": round(latencies[-1] * 1000, 1) if latencies else None,
        "generator_cpu_s": round(cpu_after - cpu_before, 2), "generator_peak_rss_mb": round(peak_rss, 1),
        "generate_errors_metric": generate_errors,
        "load_average_1m": round(os.getloadavg()[0], 2), "cpus": os.cpu_count(),
    }
    print(json.dumps(result))
    print(f"{args.count} namespaces created in {creation_s:.1f}s ({result['rate_per_s']}/s, "
          f"{len(errors)} create errors); last generated policy after {last:.2f}s; missing {missing}")
    print(f"creation -> default-deny: p50 {result['latency_p50_ms']} ms, p99 {result['latency_p99_ms']} ms, "
          f"max {result['latency_max_ms']} ms (target p99 < 1000 ms)")
    print(f"generator (serve --generate): {result['generator_cpu_s']} CPU s during the burst, "
          f"peak RSS {result['generator_peak_rss_mb']} MB; {generate_errors}")
    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} (the API server's write latency "
          "bounds the generator: it makes one create per policy and nothing else on this path)")
    for error in errors[:5]:
        print("  create error:", error)
    return 0 if not errors and not missing else 1


if __name__ == "__main__":
    sys.exit(main())
