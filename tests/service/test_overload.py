"""Overload bounds over real uvicorn + TLS: giant bodies wait for the byte budget and are shed with 429,
reviews beyond maxConcurrentReviews get 429 at once, and ordinary reviews keep their answers."""

from __future__ import annotations

import json
import socket
import ssl
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.service.conftest import make_client
from tests.service.support import ServerProcess, deny_all, namespace, pod, review, write_manifests

pytestmark = pytest.mark.service

BUDGET = 1024 * 1024


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, certs: tuple[Path, Path]) -> Iterator[ServerProcess]:
    workdir = tmp_path_factory.mktemp("overload")
    write_manifests(workdir / "state" / "cluster.yaml", [namespace("covered"), deny_all("covered")])
    config = {"server": {"maxBodyBytes": BUDGET, "maxInflightBodyBytes": BUDGET, "maxConcurrentReviews": 3}}
    process = ServerProcess(workdir, state=workdir / "state", cert_dir=certs[0], config=config)
    process.start(certs[1])
    yield process
    process.stop()


def open_tls(server: ServerProcess, context: ssl.SSLContext) -> ssl.SSLSocket:
    raw = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    return context.wrap_socket(raw, server_hostname="127.0.0.1")


def head(length: int) -> bytes:
    return (f"POST /validate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            f"Content-Length: {length}\r\n\r\n").encode()


def read_response(sock: ssl.SSLSocket) -> tuple[int, dict[str, str], bytes]:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, "connection closed before an answer"
        data += chunk
    header, _, body = data.partition(b"\r\n\r\n")
    lines = header.decode().split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    length = int(headers.get("content-length", "0"))
    while len(body) < length:
        body += sock.recv(65536)
    return int(lines[0].split()[1]), headers, body


def padded_review(size: int, uid: str) -> bytes:
    body = review("Pod", pod("covered"), uid=uid)
    body["request"]["object"]["metadata"]["annotations"] = {"pad": ""}
    raw = json.dumps(body).encode()
    body["request"]["object"]["metadata"]["annotations"]["pad"] = "x" * (size - len(raw))
    data = json.dumps(body).encode()
    assert len(data) == size
    return data


def test_a_giant_body_waiting_for_the_budget_is_shed_while_small_reviews_answer(
        server: ServerProcess, tls_context: ssl.SSLContext) -> None:
    holder = open_tls(server, tls_context)
    first = padded_review(BUDGET - 1000, "holder")
    holder.sendall(head(len(first)) + first[:1000])  # reserves the whole budget, then stalls
    time.sleep(0.3)
    second = open_tls(server, tls_context)
    started = time.monotonic()
    second.sendall(head(512 * 1024))
    with make_client(server.url, tls_context) as client:  # an ordinary review is not held up
        small_started = time.monotonic()
        answer = client.post("/validate", json=review("Pod", pod("covered")))
        assert answer.status_code == 200 and answer.json()["response"]["allowed"] is True
        assert time.monotonic() - small_started < 0.9
    status, headers, body = read_response(second)
    waited = time.monotonic() - started
    assert status == 429 and headers["retry-after"] == "1" and headers["connection"] == "close"
    assert "server.maxInflightBodyBytes" in json.loads(body)["error"]
    assert 0.8 < waited < 3.0, waited
    holder.sendall(first[1000:])  # the holder finishes: judged normally
    status, _, body = read_response(holder)
    assert status == 200 and json.loads(body)["response"]["uid"] == "holder"
    with make_client(server.url, tls_context) as client:  # and the budget is free again
        big = padded_review(600 * 1024, "after")
        answer = client.post("/validate", content=big, headers={"Content-Type": "application/json"})
        assert answer.status_code == 200 and answer.json()["response"]["uid"] == "after"
        metrics = client.get("/metrics").text
    assert 'netpol_guard_shed_total{bound="maxInflightBodyBytes"} 1.0' in metrics
    assert "netpol_guard_inflight_body_bytes 0.0" in metrics
    holder.close()
    second.close()


def test_reviews_beyond_max_concurrent_get_429_at_once(server: ServerProcess, tls_context: ssl.SSLContext) -> None:
    body = json.dumps(review("Pod", pod("covered"), uid="late")).encode()
    stalled = []
    for _ in range(3):  # three small reviews in progress, each waiting for the rest of its body
        sock = open_tls(server, tls_context)
        sock.sendall(head(len(body)) + body[:10])
        stalled.append(sock)
    time.sleep(0.3)
    extra = open_tls(server, tls_context)
    started = time.monotonic()
    extra.sendall(head(len(body)) + body)
    status, headers, answer = read_response(extra)
    assert status == 429 and time.monotonic() - started < 0.5
    assert "server.maxConcurrentReviews" in json.loads(answer)["error"]
    assert "connection" not in headers  # a small body is read and dropped: the connection stays usable
    for sock in stalled:
        sock.sendall(body[10:])
        status, _, answer = read_response(sock)
        assert status == 200 and json.loads(answer)["response"]["uid"] == "late"
        sock.close()
    extra.sendall(head(len(body)) + body)  # the same connection, now below the cap
    status, _, answer = read_response(extra)
    assert status == 200
    extra.close()
    with httpx.Client(base_url=server.url, verify=tls_context) as client:
        assert 'netpol_guard_shed_total{bound="maxConcurrentReviews"} 1.0' in client.get("/metrics").text
