"""Service benchmark: the real server over TLS, driven from a separate load-generator process.

    .venv/bin/python -m tests.bench.bench_service [--seconds 10] [--connections 4] [--rate 500]

For a small state (10 namespaces) and a large one (10,000 namespaces, 50,000
NetworkPolicies) it starts `python -m webhook serve --state DIR` on a free
loopback port, then runs a load generator in another process that sends a
realistic mix of AdmissionReviews (Pod and Deployment creates, NetworkPolicy
creates; about half denied) over keep-alive HTTPS and reports:

- max throughput: requests/s with a few concurrent keep-alive connections;
- latency at a fixed rate (open loop; latency counted from the scheduled send
  time, so a stalled server cannot hide its queueing): p50/p99;
- the server's resident memory (VmRSS) with the large state.

Targets: >= 1,500 req/s on one worker; p99 < 10 ms at 500 req/s; large-state
p99 within 1.5x of small; RSS < 500 MB. Traffic goes to 127.0.0.1 only.
Not a pytest test (bench_*.py is outside the default test_*.py collection).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import random
import ssl
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a file: make `tests.service` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.service.support import (
    REPO,
    ServerProcess,
    allow_policy,
    client_context,
    deny_all,
    deployment,
    make_test_certs,
    namespace,
    pod,
    review,
)

COVERED_SHARE = 0.8  # of namespaces with a deny-all; the others are open (pods there are denied)


# ----- state and traffic -----
def write_state(directory: Path, namespaces: int, policies_per_namespace: int) -> list[tuple[str, bool]]:
    """A state dir as one JSON List per 1,000 namespaces; returns (namespace, covered) pairs."""
    directory.mkdir(parents=True, exist_ok=True)
    rng = random.Random(7)
    names: list[tuple[str, bool]] = []
    batch: list[dict[str, Any]] = []
    apps = ("web", "api", "worker", "cache", "db", "auth", "search", "billing")

    def flush(index: int) -> None:
        (directory / f"state-{index:05d}.json").write_text(
            json.dumps({"apiVersion": "v1", "kind": "List", "items": batch}), encoding="utf-8")
        batch.clear()

    for i in range(namespaces):
        name = f"team-{i:05d}"
        covered = rng.random() < COVERED_SHARE
        names.append((name, covered))
        batch.append(namespace(name, {"team": f"t{i % 97}", "env": rng.choice(("prod", "staging", "dev"))}))
        count = policies_per_namespace
        if covered:
            batch.append(deny_all(name))
            count -= 1
        for j in range(count):
            app = apps[j % len(apps)]
            batch.append(allow_policy(name, f"allow-{app}-{j}", app, port=8000 + j,
                                      cidr=f"10.{i % 250}.{j}.0/24" if j % 2 else None))
        if len(batch) >= 5000:
            flush(i)
    if batch:
        flush(namespaces)
    return names


def traffic(names: list[tuple[str, bool]], count: int = 400) -> list[bytes]:
    """Pre-encoded HTTP requests: a realistic mix, about half denied."""
    rng = random.Random(11)
    requests = []
    for i in range(count):
        ns, _covered = rng.choice(names)
        choice = i % 4
        if choice == 0:
            body = review("Pod", pod(ns, f"web-{i}"))
        elif choice == 1:
            body = review("Deployment", deployment(ns, f"api-{i}"))
        elif choice == 2:
            body = review("NetworkPolicy", allow_policy(ns, f"allow-{i}", "web", cidr="10.20.0.0/16"))
        else:  # an allow-all ingress policy: denied by allow-all-ingress
            policy = deny_all(ns, f"open-{i}")
            policy["spec"]["ingress"] = [{}]
            body = review("NetworkPolicy", policy)
        payload = json.dumps(body).encode()
        head = (f"POST /validate HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(payload)}\r\n\r\n").encode()
        requests.append(head + payload)
    return requests


# ----- the load generator (runs in its own process) -----
class Connection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, port: int, context: ssl.SSLContext) -> Connection:
        reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=context, server_hostname="127.0.0.1")
        return cls(reader, writer)

    async def call(self, request: bytes) -> bool:
        self.writer.write(request)
        head = await self.reader.readuntil(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n"):
            if line[:15].lower() == b"content-length:":
                length = int(line[15:])
        body = await self.reader.readexactly(length)
        return head.startswith(b"HTTP/1.1 200") and b'"uid"' in body

    def close(self) -> None:
        self.writer.close()


async def max_throughput(port: int, context: ssl.SSLContext, requests: list[bytes], seconds: float,
                         connections: int) -> dict[str, Any]:
    conns = [await Connection.open(port, context) for _ in range(connections)]
    for conn in conns:  # warm up
        for request in requests[:20]:
            await conn.call(request)
    done, errors = 0, 0
    deadline = time.perf_counter() + seconds

    async def worker(conn: Connection, offset: int) -> None:
        nonlocal done, errors
        i = offset
        while time.perf_counter() < deadline:
            ok = await conn.call(requests[i % len(requests)])
            done += 1
            errors += not ok
            i += 1

    started = time.perf_counter()
    await asyncio.gather(*(worker(c, k * 97) for k, c in enumerate(conns)))
    elapsed = time.perf_counter() - started
    for conn in conns:
        conn.close()
    return {"requests_per_second": round(done / elapsed), "requests": done, "errors": errors}


async def fixed_rate(port: int, context: ssl.SSLContext, requests: list[bytes], seconds: float, rate: float,
                     connections: int) -> dict[str, Any]:
    pool: asyncio.Queue[Connection] = asyncio.Queue()
    for _ in range(connections):
        pool.put_nowait(await Connection.open(port, context))
    latencies: list[float] = []
    errors = 0
    total = int(seconds * rate)
    start = time.perf_counter() + 0.2

    async def one(i: int, scheduled: float) -> None:
        nonlocal errors
        conn = await pool.get()
        try:
            ok = await conn.call(requests[i % len(requests)])
        finally:
            pool.put_nowait(conn)
        latencies.append(time.perf_counter() - scheduled)  # from the scheduled time: no coordinated omission
        errors += not ok

    tasks = []
    for i in range(total):
        scheduled = start + i / rate
        delay = scheduled - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(i, scheduled)))
    await asyncio.gather(*tasks)
    while not pool.empty():
        pool.get_nowait().close()
    latencies.sort()

    def quantile(q: float) -> float:
        return round(latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1000, 2)

    return {"rate": rate, "requests": len(latencies), "errors": errors, "p50_ms": quantile(0.50),
            "p90_ms": quantile(0.90), "p99_ms": quantile(0.99), "max_ms": round(latencies[-1] * 1000, 2)}


def client_main(args: argparse.Namespace) -> None:
    names = json.loads(Path(args.names).read_text(encoding="utf-8"))
    requests = traffic([(n, c) for n, c in names])
    context = client_context(Path(args.ca))
    # The load generator is the measuring instrument: its own GC pauses must not count as server latency.
    gc.collect()
    gc.disable()
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    if args.client == "max":
        result = asyncio.run(max_throughput(args.port, context, requests, args.seconds, args.connections))
    else:
        result = asyncio.run(fixed_rate(args.port, context, requests, args.seconds, args.rate, 8))
    print(json.dumps(result))


# ----- orchestration -----
def run_client(kind: str, port: int, ca: Path, names_file: Path, args: argparse.Namespace) -> dict[str, Any]:
    command = [sys.executable, "-m", "tests.bench.bench_service", "--client", kind, "--port", str(port),
               "--ca", str(ca), "--names", str(names_file), "--seconds", str(args.seconds),
               "--connections", str(args.connections), "--rate", str(args.rate)]
    output = subprocess.run(command, capture_output=True, text=True, cwd=REPO, timeout=args.seconds + 60, check=True)
    result: dict[str, Any] = json.loads(output.stdout.strip().splitlines()[-1])
    return result


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (robust to other load on the machine, unlike req/s)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    import os

    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024, 1)
    return float("nan")


def bench(label: str, namespaces: int, per_namespace: int, workdir: Path, cert_dir: Path, ca: Path,
          args: argparse.Namespace) -> dict[str, Any]:
    state = workdir / f"state-{label}"
    names = write_state(state, namespaces, per_namespace)
    names_file = workdir / f"names-{label}.json"
    names_file.write_text(json.dumps(names), encoding="utf-8")
    server = ServerProcess(workdir, state=state, cert_dir=cert_dir)
    started = time.perf_counter()
    server.start(ca, timeout=300)
    startup = time.perf_counter() - started
    try:
        result: dict[str, Any] = {"state": label, "namespaces": namespaces, "policies": namespaces * per_namespace,
                                  "startup_s": round(startup, 1), "rss_idle_mb": rss_mb(server.pid)}
        cpu_before = cpu_seconds(server.pid)
        result["max"] = run_client("max", server.port, ca, names_file, args)
        result["cpu_us_per_review"] = round((cpu_seconds(server.pid) - cpu_before) / max(1, result["max"]["requests"])
                                            * 1e6, 1)
        result["fixed"] = run_client("rate", server.port, ca, names_file, args)
        result["rss_mb"] = rss_mb(server.pid)
        errors = [e for e in server.log_events() if e.get("level") in ("error", "critical")]
        result["server_errors"] = len(errors)
    finally:
        server.stop()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each phase (max 20)")
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--rate", type=float, default=500.0)
    parser.add_argument("--only", choices=["small", "large"])
    parser.add_argument("--client", choices=["max", "rate"], help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--ca", help=argparse.SUPPRESS)
    parser.add_argument("--names", help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.seconds = min(args.seconds, 20.0)
    if args.client:
        client_main(args)
        return
    with tempfile.TemporaryDirectory(prefix="netpol-guard-bench-") as tmp:
        workdir = Path(tmp)
        ca = make_test_certs(workdir / "certs")
        results = []
        if args.only in (None, "small"):
            results.append(bench("small", 10, 5, workdir, workdir / "certs", ca, args))
        if args.only in (None, "large"):
            results.append(bench("large", 10_000, 5, workdir, workdir / "certs", ca, args))
    for result in results:
        fixed, top = result["fixed"], result["max"]
        print(f"{result['state']:>5}: {result['namespaces']} namespaces, {result['policies']} policies "
              f"(startup {result['startup_s']} s)")
        print(f"       max throughput: {top['requests_per_second']} req/s ({args.connections} connections, "
              f"{top['errors']} errors); server CPU per review {result['cpu_us_per_review']} us "
              f"(= {1e6 / result['cpu_us_per_review']:.0f} reviews/s per core)")
        print(f"       at {fixed['rate']:.0f} req/s: p50 {fixed['p50_ms']} ms, p90 {fixed['p90_ms']} ms, "
              f"p99 {fixed['p99_ms']} ms, max {fixed['max_ms']} ms ({fixed['errors']} errors)")
        print(f"       server RSS: {result['rss_mb']} MB (idle after load: {result['rss_idle_mb']} MB before load); "
              f"server error log lines: {result['server_errors']}")
    print(json.dumps(results))


if __name__ == "__main__":
    main()
