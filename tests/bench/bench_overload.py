"""Overload benchmark: giant reviews must not OOM the server nor shed the ordinary ones.

    .venv/bin/python -m tests.bench.bench_overload [--seconds 30] [--attackers 32] [--limit-mb 384]

Starts `python -m webhook serve --state DIR` (small state) on a loopback port over TLS. A
load generator (its own process) runs `--attackers` clients, each sending ~3 MB
AdmissionReviews back to back (half one 3 MB annotation, half 30,000 env entries, which
expand the most once parsed), while one normal client sends an ordinary Pod review every
20 ms. Meanwhile the server's RSS is sampled every 50 ms. Printed: the normal client's
decisions (share of HTTP 200), p50/p99/max latency and any 5xx; the attackers' answers by
status; the peak RSS against `--limit-mb` (the Deployment's memory limit); and whether
the same normal review gives the same decision after the storm.

Checks (exit 1 when one fails): normal >= 95% HTTP 200, p99 < 500 ms, no 5xx anywhere,
peak RSS under the limit, same decision after. Traffic goes to 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.service.support import (
    REPO,
    ServerProcess,
    client_context,
    deny_all,
    make_test_certs,
    namespace,
    pod,
    review,
    write_manifests,
)

GIANT = 3 * 1024 * 1024 - 64 * 1024  # just under the default maxBodyBytes (3 MiB)


def giant_bodies() -> list[bytes]:
    with_blob = review("Pod", pod("covered", "giant-blob"))
    with_blob["request"]["object"]["metadata"]["annotations"] = {"blob": "x" * GIANT}
    with_env = review("Pod", pod("covered", "giant-env"))
    entry = {"name": "VARIABLE_NAME_00000", "value": "v" * 60}
    count = GIANT // (len(json.dumps(entry)) + 2)
    with_env["request"]["object"]["spec"]["containers"][0]["env"] = [
        {"name": f"VARIABLE_NAME_{i:05d}", "value": "v" * 60} for i in range(count)]
    return [http(json.dumps(body).encode()) for body in (with_blob, with_env)]


def http(payload: bytes) -> bytes:
    return (f"POST /validate HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(payload)}\r\n\r\n").encode() + payload


async def call(port: int, context: ssl.SSLContext, conn: list[Any], request: bytes,
               timeout: float) -> tuple[int, bytes]:
    """One request on a kept-alive connection (reopened when closed); (status, body), status 0 on failure."""
    try:
        if not conn:
            conn.extend(await asyncio.wait_for(asyncio.open_connection(
                "127.0.0.1", port, ssl=context, server_hostname="127.0.0.1"), timeout))
        reader, writer = conn
        writer.write(request)
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout)
        status = int(head.split(b" ", 2)[1])
        length, close = 0, False
        for line in head.split(b"\r\n"):
            lower = line.lower()
            if lower.startswith(b"content-length:"):
                length = int(line[15:])
            elif lower.startswith(b"connection:") and b"close" in lower:
                close = True
        body = await asyncio.wait_for(reader.readexactly(length), timeout)
        if close:
            writer.close()
            conn.clear()
        return status, body
    except (OSError, asyncio.IncompleteReadError, TimeoutError, ValueError, IndexError):
        if conn:
            conn[1].close()
            conn.clear()
        return 0, b""


async def storm(port: int, ca: Path, seconds: float, attackers: int) -> dict[str, Any]:
    """The attackers (their own process: encrypting 3 MB bodies is heavy, and must not delay the normal client)."""
    context = client_context(ca)
    giants = giant_bodies()
    deadline = time.perf_counter() + seconds
    attack_status: dict[str, int] = {}

    async def attacker(k: int) -> None:
        conn: list[Any] = []
        i = k
        while time.perf_counter() < deadline:
            status, _ = await call(port, context, conn, giants[i % 2], 10.0)
            attack_status[str(status)] = attack_status.get(str(status), 0) + 1
            i += 1
            if status == 0:
                await asyncio.sleep(0.01)

    await asyncio.gather(*(attacker(k) for k in range(attackers)))
    return {"attackers": attack_status}


async def ordinary(port: int, ca: Path, seconds: float) -> dict[str, Any]:
    """The normal client: an ordinary Pod review every 20 ms, from 1 s into the storm to its end."""
    context = client_context(ca)
    normal_body = review("Pod", pod("covered", "normal"), uid="normal-1")
    normal = http(json.dumps(normal_body).encode())
    deadline = time.perf_counter() + seconds
    normal_status: dict[str, int] = {}
    latencies: list[float] = []

    async def run() -> None:
        conn: list[Any] = []
        await asyncio.sleep(1.0)  # let the storm build
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            status, _ = await call(port, context, conn, normal, 10.0)
            latencies.append(time.perf_counter() - started)
            normal_status[str(status)] = normal_status.get(str(status), 0) + 1
            await asyncio.sleep(max(0.0, 0.02 - (time.perf_counter() - started)))

    before = await call(port, context, [], normal, 10.0)
    await run()
    await asyncio.sleep(1.5)  # the storm's process ends with it
    after = await call(port, context, [], normal, 10.0)
    latencies.sort()

    def quantile(q: float) -> float:
        return round(latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1000, 1) if latencies else -1.0

    def decision(answer: tuple[int, bytes]) -> Any:
        return json.loads(answer[1])["response"]["allowed"] if answer[0] == 200 else f"HTTP {answer[0]}"

    return {"normal": normal_status, "normal_p50_ms": quantile(0.5), "normal_p99_ms": quantile(0.99),
            "normal_max_ms": quantile(1.0), "decision_before": decision(before), "decision_after": decision(after)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--attackers", type=int, default=32)
    parser.add_argument("--limit-mb", type=float, default=384.0, help="the Deployment's memory limit (MiB)")
    parser.add_argument("--config", help="a YAML config for the server (e.g. to try other bounds)")
    parser.add_argument("--client", choices=["storm", "normal"], help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--ca", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.client == "storm":
        print(json.dumps(asyncio.run(storm(args.port, Path(args.ca), args.seconds, args.attackers))))
        return 0
    if args.client == "normal":
        print(json.dumps(asyncio.run(ordinary(args.port, Path(args.ca), args.seconds))))
        return 0
    with tempfile.TemporaryDirectory(prefix="netpol-guard-overload-") as tmp:
        workdir = Path(tmp)
        ca = make_test_certs(workdir / "certs")
        write_manifests(workdir / "state" / "cluster.yaml", [namespace("covered"), deny_all("covered")])
        config = None
        if args.config:
            import yaml

            config = yaml.safe_load(Path(args.config).read_text())
        server = ServerProcess(workdir, state=workdir / "state", cert_dir=workdir / "certs", config=config)
        server.start(ca)
        peak = [0.0]
        stop = threading.Event()

        def sample() -> None:
            status = Path(f"/proc/{server.pid}/status")
            while not stop.wait(0.05):
                try:
                    for line in status.read_text().splitlines():
                        if line.startswith("VmRSS:"):
                            peak[0] = max(peak[0], int(line.split()[1]) / 1024)
                except OSError:
                    return

        idle = 0.0
        for line in Path(f"/proc/{server.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                idle = int(line.split()[1]) / 1024
        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        command = [sys.executable, "-m", "tests.bench.bench_overload", "--port", str(server.port), "--ca", str(ca),
                   "--seconds", str(args.seconds), "--attackers", str(args.attackers), "--client"]
        try:
            clients = [subprocess.Popen([*command, kind], stdout=subprocess.PIPE, text=True, cwd=REPO)
                       for kind in ("storm", "normal")]
            outputs = [client.communicate(timeout=args.seconds + 120)[0] for client in clients]
        finally:
            stop.set()
            sampler.join()
            server.stop()
        result: dict[str, Any] = {}
        for output in outputs:
            result.update(json.loads(output.strip().splitlines()[-1]))
        tracebacks = server.log().count("Traceback")
    normal = result["normal"]
    total = sum(normal.values())
    ok_share = normal.get("200", 0) / total if total else 0.0
    fives = sum(v for k, v in {**normal, **result["attackers"]}.items() if k.startswith("5"))
    print(f"overload: {args.attackers} clients x 3 MB reviews for {args.seconds:.0f} s, one normal client")
    print(f"  normal client: {total} reviews, {ok_share:.1%} HTTP 200 {normal}; "
          f"p50 {result['normal_p50_ms']} ms, p99 {result['normal_p99_ms']} ms, max {result['normal_max_ms']} ms")
    print(f"  giant reviews answered: {result['attackers']} (0 = connection closed or timed out)")
    print(f"  server RSS: idle {idle:.0f} MB, peak {peak[0]:.0f} MB (limit {args.limit_mb:.0f} MB); "
          f"5xx: {fives}; tracebacks: {tracebacks}")
    print(f"  same review before/after: {result['decision_before']} / {result['decision_after']}")
    print(json.dumps({**result, "rss_idle_mb": round(idle), "rss_peak_mb": round(peak[0]), "ok_share": ok_share}))
    good = (ok_share >= 0.95 and result["normal_p99_ms"] < 500 and fives == 0 and peak[0] < args.limit_mb
            and tracebacks == 0 and result["decision_before"] == result["decision_after"] is True)
    return 0 if good else 1


if __name__ == "__main__":
    sys.exit(main())
