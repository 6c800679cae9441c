"""What netpol-guard's ValidatingAdmissionPolicies cost the API server on the largest objects they judge.

Not a test: `python -m tests.bench.bench_vap [--no-cluster]` (vapcost and the control plane from
`make vapcost binaries`). Two parts:
1. vapcost (the API server's own admission CEL, tests/tools/vapcost) on the costliest shapes the size
   guard lets through (tests/tools/vap_shapes.py) and one entry over it: per policy, the largest cost of
   one expression or variable (limit 1,000,000), the policy's cost (budget 10,000,000) and CEL time.
2. A real kube-apiserver with the VAPs of the default config: wall time of server-side dry-run creates of
   those shapes (the ones under the 3 MiB request limit) and of a realistic policy at the guard, with
   the VAPs and without them.
"""

from __future__ import annotations

import argparse
import json
import ssl
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from tests.tools.build_vapcost import measure
from tests.tools.vap_shapes import SHAPES, over_the_guard, realistic
from webhook.core.config import config_from_data
from webhook.vap import PER_CALL_LIMIT, POLICY_BUDGET, generate

REPO = Path(__file__).resolve().parents[2]
E2E = REPO / "tests" / "e2e"
NAMESPACE = "bench-vap"
REQUEST_LIMIT = 3 * 1024 * 1024


def objects() -> dict[str, dict[str, Any]]:
    found = {name: build(name, NAMESPACE) for name, build in SHAPES.items()}
    found["realistic-1950-rules"] = realistic("realistic-1950-rules", NAMESPACE)
    found["one-over-the-guard"] = over_the_guard("one-over-the-guard", NAMESPACE)
    return found


def costs(policies: list[dict[str, Any]], found: dict[str, dict[str, Any]], work: Path) -> None:
    print(f"1. CEL cost per policy (vapcost; limits: {PER_CALL_LIMIT:,} per expression or variable, "
          f"{POLICY_BUDGET:,} per policy)")
    print(f"   {'object':34s} {'MB':>5s} {'policy':20s} {'per call':>10s} {'policy':>11s} {'CEL s':>6s}  verdicts")
    for result in measure(policies, found, work):
        if result["policy"].endswith("host-network"):
            continue
        name = result["object"]
        per_call = max([*result["costs"], *result["variables"].values()])
        verdicts = "".join({"true": "T", "false": "F"}.get(o, "E") for o in result["outcomes"])
        print(f"   {name:34s} {len(json.dumps(found[name])) / 1e6:5.2f} {result['policy'][13:]:20s} "
              f"{per_call:10,d} {result['cost']:11,d} {result['seconds']:6.2f}  {verdicts}")


def wall_times(policies: list[dict[str, Any]], found: dict[str, dict[str, Any]], work: Path) -> None:
    sys.path.insert(0, str(E2E))
    from build_binaries import ensure_binaries
    from controlplane import ControlPlane
    from vap_support import installed_vaps, resource_path

    with ControlPlane(work_dir=work / "cluster", bin_dir=ensure_binaries(quiet=True)) as cp:
        cp.kubectl("create", "namespace", NAMESPACE, check=True)
        context = ssl.create_default_context(cafile=str(cp.ca.cert))
        context.load_cert_chain(str(cp.admin.cert), str(cp.admin.key))

        def create(obj: dict[str, Any]) -> tuple[int, float]:
            request = urllib.request.Request(cp.server + resource_path(obj) + "?dryRun=All",
                                             data=json.dumps(obj).encode(), method="POST",
                                             headers={"Content-Type": "application/json"})
            started = time.perf_counter()
            try:
                with urllib.request.urlopen(request, context=context, timeout=120) as response:
                    status = response.status
                    response.read()
            except urllib.error.HTTPError as error:
                status = error.code
                error.read()
            return status, time.perf_counter() - started

        sendable = {n: o for n, o in found.items() if len(json.dumps(o)) <= REQUEST_LIMIT}
        plain = {n: create(o) for n, o in sendable.items()}
        with installed_vaps(cp, policies, NAMESPACE):
            guarded = {n: create(o) for n, o in sendable.items()}
        print("2. server-side dry-run create through kube-apiserver v1.36 (wall time, s)")
        print(f"   {'object':34s} {'MB':>5s} {'no VAPs':>8s} {'VAPs':>8s}  status with VAPs")
        for name in sendable:
            print(f"   {name:34s} {len(json.dumps(sendable[name])) / 1e6:5.2f} {plain[name][1]:8.2f} "
                  f"{guarded[name][1]:8.2f}  {guarded[name][0]}")
        for name in sorted(set(found) - set(sendable)):
            print(f"   {name}: {len(json.dumps(found[name])) / 1e6:.2f} MB, over the 3 MiB request limit (not sent)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--no-cluster", action="store_true", help="only the CEL costs (no control plane)")
    args = parser.parse_args()
    policies = generate(config_from_data(None))
    found = objects()
    with tempfile.TemporaryDirectory(prefix="netpol-guard-bench-vap-") as work:
        costs(policies, found, Path(work))
        if not args.no_cluster:
            wall_times(policies, found, Path(work))
    return 0


if __name__ == "__main__":
    sys.exit(main())
