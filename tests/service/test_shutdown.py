"""SIGTERM over real TLS: exit 0 within 5 s with idle keep-alive connections open, finishing in-flight reviews."""

from __future__ import annotations

import json
import signal
import socket
import ssl
import time
from pathlib import Path

import httpx
import pytest

from tests.service.support import ServerProcess, deny_all, namespace, pod, review, write_manifests

pytestmark = pytest.mark.service


def test_sigterm_with_idle_keepalive_connections_and_one_in_flight(
        tmp_path: Path, certs: tuple[Path, Path], tls_context: ssl.SSLContext) -> None:
    write_manifests(tmp_path / "state" / "cluster.yaml", [namespace("covered"), deny_all("covered")])
    server = ServerProcess(tmp_path, state=tmp_path / "state", cert_dir=certs[0])
    server.start(certs[1])
    assert server.process is not None
    body = json.dumps(review("Pod", pod("covered"), uid="in-flight")).encode()
    # Idle keep-alive connections, as the API server's pool and Python clients leave them.
    idle_clients = [httpx.Client(base_url=server.url, verify=tls_context) for _ in range(3)]
    for client in idle_clients:
        assert client.get("/healthz").status_code == 200
    idle_raw = socket.create_connection(("127.0.0.1", server.port))
    idle_tls = tls_context.wrap_socket(idle_raw, server_hostname="127.0.0.1")  # handshake done, nothing sent
    # One review in flight: the server has its headers and part of its body.
    busy = tls_context.wrap_socket(socket.create_connection(("127.0.0.1", server.port), timeout=10),
                                   server_hostname="127.0.0.1")
    busy.sendall(f"POST /validate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                 f"Content-Length: {len(body)}\r\n\r\n".encode() + body[:20])
    time.sleep(0.3)
    started = time.monotonic()
    server.process.send_signal(signal.SIGTERM)
    time.sleep(0.5)
    busy.sendall(body[20:])  # the rest arrives after SIGTERM: still judged and answered
    answer = b""
    while b'"uid"' not in answer:
        chunk = busy.recv(65536)
        assert chunk, f"in-flight review dropped: {answer!r}"
        answer += chunk
    assert answer.startswith(b"HTTP/1.1 200") and b'"uid":"in-flight"' in answer
    code = server.process.wait(10)
    elapsed = time.monotonic() - started
    assert code == 0
    assert elapsed < 5.0, elapsed
    assert "Traceback" not in server.log()
    for client in idle_clients:
        client.close()
    idle_tls.close()
    busy.close()
