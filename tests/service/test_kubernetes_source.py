"""`serve --kubeconfig` against a small fake API server: list+watch, live confirm, fail closed, 410 relist.

The fake speaks just enough of the Kubernetes API (plain HTTP, JSON, chunked
watch streams) to drive the reflector and the confirm-before-deny read; the real
API server is covered by the e2e tier.
"""

from __future__ import annotations

import json
import queue
import ssl
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import httpx
import pytest
import yaml

from tests.service.conftest import make_client
from tests.service.support import ServerProcess, deny_all, namespace, pod, review

pytestmark = pytest.mark.service

NETPOL = "/apis/networking.k8s.io/v1"


class FakeAPI:
    def __init__(self) -> None:
        self.namespaces: dict[str, dict[str, Any]] = {}
        self.policies: dict[tuple[str, str], dict[str, Any]] = {}
        self.live_policies: dict[str, list[dict[str, Any]]] = {}  # what live reads see, when set
        self.fail_live: set[str] = set()
        self.fail_collections = False  # every list and watch answers 500 (an API server in trouble)
        self.events: dict[str, queue.Queue[dict[str, Any]]] = {
            "ns": queue.Queue(), "np": queue.Queue(), "custom": queue.Queue()}
        self.live_reads = 0
        self.requests: list[str] = []  # every path asked for
        self.lists = {"ns": 0, "np": 0, "custom": 0}
        self.version = 100
        self.stopping = threading.Event()
        # Custom resources: (group, version) -> plural -> items; served only once added (a CRD installed later).
        self.custom: dict[tuple[str, str], dict[str, list[dict[str, Any]]]] = {}
        api = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *_: Any) -> None:
                pass

            def do_GET(self) -> None:
                url = urlparse(self.path)
                query = parse_qs(url.query)
                path = url.path.rstrip("/") or "/"
                api.requests.append(path)
                if path == "/apis":
                    groups = [{"name": g, "versions": [{"groupVersion": f"{g}/{v}", "version": v}]}
                              for g, v in api.custom]
                    self.reply(200, {"kind": "APIGroupList", "groups": groups})
                elif path.count("/") == 3 and tuple(path.split("/")[2:]) in api.custom:
                    group, version = path.split("/")[2:]
                    self.reply(200, {"kind": "APIResourceList", "groupVersion": f"{group}/{version}", "resources": [
                        {"name": plural, "namespaced": False, "kind": "X", "verbs": ["list", "watch"]}
                        for plural in api.custom[(group, version)]]})
                elif path.count("/") == 4 and tuple(path.split("/")[2:4]) in api.custom:
                    group, version, plural = path.split("/")[2:]
                    if query.get("watch") == ["true"]:
                        self.collection("custom", query, [])
                    else:
                        self.reply(200, {"metadata": {"resourceVersion": str(api.version)},
                                         "items": api.custom[(group, version)].get(plural, [])})
                elif path == "/api/v1/namespaces":
                    self.collection("ns", query, list(api.namespaces.values()))
                elif path == f"{NETPOL}/networkpolicies":
                    self.collection("np", query, list(api.policies.values()))
                elif path.startswith("/api/v1/namespaces/"):
                    name = path.rsplit("/", 1)[1]
                    api.live_reads += 1
                    if name in api.fail_live:
                        self.reply(500, {"kind": "Status", "code": 500, "message": "etcd is sad"})
                    elif name in api.namespaces:
                        self.reply(200, api.namespaces[name])
                    else:
                        self.reply(404, {"kind": "Status", "code": 404, "reason": "NotFound"})
                elif path.startswith(f"{NETPOL}/namespaces/") and path.endswith("/networkpolicies"):
                    name = path.split("/")[-2]
                    items = api.live_policies.get(name)
                    if items is None:
                        items = [p for (ns, _), p in api.policies.items() if ns == name]
                    self.reply(200, {"kind": "NetworkPolicyList", "metadata": {"resourceVersion": str(api.version)},
                                     "items": items})
                else:
                    self.reply(404, {"kind": "Status", "code": 404})

            def reply(self, status: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def collection(self, key: str, query: dict[str, list[str]], items: list[dict[str, Any]]) -> None:
                if api.fail_collections:
                    self.reply(500, {"kind": "Status", "code": 500, "message": "etcdserver: request timed out"})
                    return
                if query.get("watch") != ["true"]:
                    api.lists[key] += 1
                    self.reply(200, {"metadata": {"resourceVersion": str(api.version)}, "items": items})
                    return
                assert query.get("allowWatchBookmarks") == ["true"]
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                deadline = time.monotonic() + 3  # short watches: the reflector must re-watch
                while time.monotonic() < deadline and not api.stopping.is_set():
                    try:
                        event = api.events[key].get(timeout=0.1)
                    except queue.Empty:
                        continue
                    line = json.dumps(event).encode() + b"\n"
                    self.wfile.write(f"{len(line):x}\r\n".encode() + line + b"\r\n")
                    self.wfile.flush()
                    if event["type"] == "ERROR":
                        break
                self.wfile.write(b"0\r\n\r\n")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def add_namespace(self, obj: dict[str, Any]) -> None:
        self.namespaces[obj["metadata"]["name"]] = obj

    def add_policy(self, obj: dict[str, Any]) -> None:
        self.version += 1
        obj = {**obj, "metadata": {**obj["metadata"], "resourceVersion": str(self.version)}}
        self.policies[(obj["metadata"]["namespace"], obj["metadata"]["name"])] = obj

    def kubeconfig(self, path: Path) -> Path:
        path.write_text(yaml.safe_dump({
            "apiVersion": "v1", "kind": "Config", "current-context": "fake",
            "clusters": [{"name": "fake", "cluster": {"server": f"http://127.0.0.1:{self.port}"}}],
            "users": [{"name": "fake", "user": {"token": "not-a-real-token"}}],
            "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "fake"}}],
        }), encoding="utf-8")
        return path


def unreadable(ns: str) -> dict[str, Any]:
    policy = deny_all(ns, "legacy")
    policy["spec"]["ingress"] = [{"ports": [{"port": "Not_A_Name"}]}]
    return policy


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeAPI]:
    api = FakeAPI()
    for name in ("covered", "bare", "racing", "broken", "late", "relisted", "odd", "oddbare", "cluster-wide",
                 "confirmed"):
        api.add_namespace(namespace(name))
    api.add_policy(deny_all("covered"))
    # Stored by the API server, unreadable to us (not an IANA service name): kept by name, never hiding the rest.
    api.add_policy(deny_all("odd"))
    api.add_policy(unreadable("odd"))
    api.add_policy(unreadable("oddbare"))
    api.thread.start()
    yield api
    api.stopping.set()
    api.server.shutdown()


@pytest.fixture(scope="module")
def server(fake: FakeAPI, tmp_path_factory: pytest.TempPathFactory,
           certs: tuple[Path, Path]) -> Iterator[ServerProcess]:
    workdir = tmp_path_factory.mktemp("kube")
    process = ServerProcess(workdir, state=None, cert_dir=certs[0], config={"server": {"sourceDiscoverySeconds": 0.5}},
                            extra_args=["--kubeconfig", str(fake.kubeconfig(workdir / "kubeconfig"))])
    process.start(certs[1])
    yield process
    process.stop()


@pytest.fixture(scope="module")
def client(server: ServerProcess, tls_context: ssl.SSLContext) -> Iterator[httpx.Client]:
    with make_client(server.url, tls_context) as http:
        deadline = time.monotonic() + 10
        while http.get("/readyz").status_code != 200 and time.monotonic() < deadline:
            time.sleep(0.05)
        yield http


def decide(client: httpx.Client, ns: str) -> dict[str, Any]:
    response: dict[str, Any] = client.post("/validate", json=review("Pod", pod(ns))).json()["response"]
    return response


def test_synced_from_list(client: httpx.Client) -> None:
    assert client.get("/readyz").text == "ok"
    metrics = client.get("/metrics").text
    assert "netpol_guard_cache_synced 1.0" in metrics
    assert 'netpol_guard_cache_objects{kind="Namespace"} 10.0' in metrics
    assert 'netpol_guard_cache_objects{kind="NetworkPolicy"} 2.0' in metrics
    assert 'netpol_guard_cache_unreadable_objects{kind="NetworkPolicy"} 2.0' in metrics


def test_allowed_from_cache_without_live_read(client: httpx.Client, fake: FakeAPI) -> None:
    reads = fake.live_reads
    assert decide(client, "covered")["allowed"] is True
    assert fake.live_reads == reads


def test_deny_is_confirmed_live(client: httpx.Client, fake: FakeAPI) -> None:
    reads = fake.live_reads
    response = decide(client, "bare")
    assert response["allowed"] is False and "deny-all-coverage" in response["status"]["message"]
    assert fake.live_reads == reads + 1


def test_policy_applied_a_moment_ago_is_seen_by_the_confirm(client: httpx.Client, fake: FakeAPI) -> None:
    # The watch has not delivered it yet; only a live read sees it.
    fake.live_policies["racing"] = [deny_all("racing")]
    assert decide(client, "racing")["allowed"] is True
    reads = fake.live_reads
    assert decide(client, "racing")["allowed"] is True  # and the cache now has it: no second live read
    assert fake.live_reads == reads


def test_live_read_failure_fails_closed_with_reason(client: httpx.Client, fake: FakeAPI) -> None:
    fake.fail_live.add("broken")
    response = decide(client, "broken")
    assert response["allowed"] is False
    message = response["status"]["message"]
    assert "netpol-guard could not verify the cluster state" in message and "HTTP 500" in message
    assert "deny-all-coverage" in message


def wait_allowed(client: httpx.Client, ns: str) -> bool:
    deadline = time.monotonic() + 8
    while time.monotonic() < deadline:
        if decide(client, ns)["allowed"]:
            return True
        time.sleep(0.1)
    return False


def test_watch_event_updates_the_cache(client: httpx.Client, fake: FakeAPI) -> None:
    fake.fail_live.add("late")  # so an allow can only come from the watched cache
    fake.add_policy(deny_all("late"))
    fake.events["np"].put({"type": "ADDED", "object": fake.policies[("late", "default-deny-all")]})
    assert wait_allowed(client, "late")


def test_410_gone_relists(client: httpx.Client, fake: FakeAPI) -> None:
    fake.fail_live.add("relisted")
    lists = fake.lists["np"]
    fake.add_policy(deny_all("relisted"))  # never sent as an event: only a relist can find it
    fake.events["np"].put({"type": "BOOKMARK", "object": {"kind": "NetworkPolicy",
                                                          "metadata": {"resourceVersion": str(fake.version)}}})
    fake.events["np"].put({"type": "ERROR", "object": {"kind": "Status", "code": 410, "reason": "Expired"}})
    assert wait_allowed(client, "relisted")
    assert fake.lists["np"] == lists + 1


def test_an_unreadable_policy_never_hides_the_rest_of_its_namespace(client: httpx.Client, fake: FakeAPI) -> None:
    assert decide(client, "odd")["allowed"] is True  # judged on the readable deny-all
    response = decide(client, "oddbare")  # confirmed by a live read that holds the same unreadable policy
    assert response["allowed"] is False
    message = response["status"]["message"]
    assert "judged on the readable policies only, these could not be read: NetworkPolicy oddbare/legacy: " \
        "spec.ingress[0].ports[0].port: 'Not_A_Name' is not a port number or an IANA service name" in message
    # Its own DELETE is never blocked.
    delete = client.post("/validate", json=review("NetworkPolicy", None, operation="DELETE",
                                                  old=unreadable("oddbare"))).json()["response"]
    assert delete["allowed"] is True


def test_a_coverage_source_installed_later_is_discovered_and_watched(client: httpx.Client, fake: FakeAPI) -> None:
    fake.fail_live.add("cluster-wide")  # an allow can only come from the watched cache
    assert decide(client, "cluster-wide")["allowed"] is False
    baseline = {"apiVersion": "policy.networking.k8s.io/v1alpha2", "kind": "ClusterNetworkPolicy",
                "metadata": {"name": "baseline-deny", "resourceVersion": "1"},
                "spec": {"tier": "Baseline", "priority": 100, "subject": {"namespaces": {}},
                         "ingress": [{"action": "Deny", "from": [{"namespaces": {}}]}],
                         "egress": [{"action": "Deny", "to": [{"networks": ["0.0.0.0/0", "::/0"]}]}]}}
    fake.custom[("policy.networking.k8s.io", "v1alpha2")] = {"clusternetworkpolicies": [baseline]}
    assert wait_allowed(client, "cluster-wide")
    assert client.get("/readyz").text == "ok"
    # The CRD goes away: its policies stop counting.
    del fake.custom[("policy.networking.k8s.io", "v1alpha2")]
    deadline = time.monotonic() + 8
    while decide(client, "cluster-wide")["allowed"] and time.monotonic() < deadline:
        time.sleep(0.1)
    assert decide(client, "cluster-wide")["allowed"] is False


def test_the_live_confirm_reads_cluster_wide_policies_too(client: httpx.Client, fake: FakeAPI) -> None:
    group = ("policy.networking.k8s.io", "v1alpha2")
    seen = len(fake.requests)
    fake.custom[group] = {"clusternetworkpolicies": []}
    deadline = time.monotonic() + 8  # discovery finds the kind (with nothing in it) and lists it
    listing = "/apis/policy.networking.k8s.io/v1alpha2/clusternetworkpolicies"
    while listing not in fake.requests[seen:]:
        assert time.monotonic() < deadline, "the kind was never listed"
        time.sleep(0.1)
    policy = {"apiVersion": "policy.networking.k8s.io/v1alpha2", "kind": "ClusterNetworkPolicy",
              "metadata": {"name": "confirmed-deny"},
              "spec": {"tier": "Admin", "priority": 1,
                       "subject": {"namespaces": {"matchLabels": {"kubernetes.io/metadata.name": "confirmed"}}},
                       "ingress": [{"action": "Deny", "from": [{"namespaces": {}}]}],
                       "egress": [{"action": "Deny", "to": [{"networks": ["0.0.0.0/0", "::/0"]}]}]}}
    fake.custom[group]["clusternetworkpolicies"].append(policy)  # never sent as a watch event
    reads = fake.live_reads
    assert decide(client, "confirmed")["allowed"] is True
    assert fake.live_reads == reads + 1
    del fake.custom[group]


def test_a_watch_failing_longer_than_the_bound_makes_readyz_not_ready(
        tmp_path: Path, certs: tuple[Path, Path], tls_context: ssl.SSLContext) -> None:
    api = FakeAPI()
    api.add_namespace(namespace("covered"))
    api.add_policy(deny_all("covered"))
    api.thread.start()
    server = ServerProcess(tmp_path, state=None, cert_dir=certs[0], config={"server": {"cacheStaleSeconds": 1}},
                           extra_args=["--kubeconfig", str(api.kubeconfig(tmp_path / "kubeconfig"))])
    server.start(certs[1])
    try:
        with make_client(server.url, tls_context) as http:
            def wait_for(status: int, seconds: float) -> httpx.Response:
                deadline = time.monotonic() + seconds
                while True:
                    answer = http.get("/readyz")
                    if answer.status_code == status or time.monotonic() > deadline:
                        return answer
                    time.sleep(0.1)

            assert wait_for(200, 10).status_code == 200
            api.fail_collections = True  # the running watches end within 3 s; every retry now fails
            answer = wait_for(503, 15)
            assert answer.status_code == 503, answer.text
            assert answer.text.startswith("cluster cache stale: ")
            assert "failing for" in answer.text and "server.cacheStaleSeconds (1s)" in answer.text
            assert "HTTP 500" in answer.text
            assert "netpol_guard_cache_synced 0.0" in http.get("/metrics").text
            response = http.post("/validate", json=review("Pod", pod("covered"))).json()["response"]
            assert response["allowed"] is False and "cluster cache stale" in response["status"]["message"]
            deadline = time.monotonic() + 10  # logged at the first retry past the bound
            while not any(e.get("level") == "error" and "cluster cache stale" in str(e.get("event"))
                          for e in server.log_events()):
                assert time.monotonic() < deadline, server.log()
                time.sleep(0.1)
            api.fail_collections = False  # recovered: ready again, and the log says so
            assert wait_for(200, 40).status_code == 200
            assert "netpol_guard_cache_synced 1.0" in http.get("/metrics").text
            assert any("recovered" in str(e.get("event")) for e in server.log_events())
    finally:
        server.stop()
        api.stopping.set()
        api.server.shutdown()
