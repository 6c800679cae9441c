"""The generator's own behaviour with a recording stand-in for the API (the real API server is in e2e):
only creates, 409 is success, a gone or terminating namespace ends the attempt, failures back off and are
counted, and nothing is written without leadership."""

from __future__ import annotations

import time
from typing import Any

import pytest
from kubernetes import client

from tests.unit.helpers import deny_all, namespace, state
from webhook.core.config import config_from_data
from webhook.core.state import parse_namespace
from webhook.generate import Generator, _NotLeader, _Terminating, create_policy, render_backfill

CONFIG = config_from_data({"generate": {"enabled": True, "settleSeconds": 0}})


class ApiError(Exception):
    def __init__(self, status: int, body: str = "") -> None:
        super().__init__(f"HTTP {status}")
        self.status, self.body, self.reason = status, body, ""


class Networking:
    """create_namespaced_network_policy, recording each call; `failures` are raised first, in order."""

    def __init__(self, *failures: Exception) -> None:
        self.failures = list(failures)
        self.created: list[tuple[str, str]] = []

    def create_namespaced_network_policy(self, namespace: str, body: dict[str, Any], **_: Any) -> None:
        if self.failures:
            raise self.failures.pop(0)
        self.created.append((namespace, body["metadata"]["name"]))


class Counters:
    def __init__(self) -> None:
        self.generated = 0
        self.errors = 0

    def count_generated(self, policies: int) -> None:
        self.generated += policies

    def count_generate_error(self) -> None:
        self.errors += 1


class Leadership:
    def __init__(self, leading: bool) -> None:
        self.is_leader = leading
        self.callbacks: list[Any] = []

    def subscribe(self, started: Any, stopped: Any) -> None:
        self.callbacks.append((started, stopped))


def generator(networking: Networking, *objects: dict[str, Any], leading: bool = True,
              counters: Counters | None = None) -> Generator:
    gen = Generator(CONFIG, client.ApiClient(client.Configuration()), Leadership(leading), counters,
                    workers=1, cache=state(*objects))
    gen._networking = networking
    gen._started_leading()
    return gen


def info(name: str, **labels: str) -> Any:
    return parse_namespace(namespace(name, dict(labels)))


def test_creates_the_default_deny_then_the_dns_allow() -> None:
    networking, counters = Networking(), Counters()
    plan = generator(networking, counters=counters).handle("shop", info("shop"))
    assert plan.names == ("netpol-guard-default-deny", "netpol-guard-allow-dns")
    assert networking.created == [("shop", "netpol-guard-default-deny"), ("shop", "netpol-guard-allow-dns")]
    assert counters.generated == 2


def test_already_exists_is_success_and_not_counted_as_generated() -> None:
    networking, counters = Networking(ApiError(409)), Counters()
    gen = generator(networking, counters=counters)
    gen.handle("shop", info("shop"))
    assert networking.created == [("shop", "netpol-guard-allow-dns")]
    assert (gen.stats.generated, gen.stats.existed, counters.generated) == (1, 1, 1)


@pytest.mark.parametrize("seen", [info("shop", **{"netpol-guard.io/generate": "false"}), info("kube-public")])
def test_nothing_is_written_where_generation_does_not_govern(seen: Any) -> None:
    networking = Networking()
    assert generator(networking).handle(seen.name, seen).skip is not None
    assert networking.created == []


def test_nothing_is_written_where_a_deny_all_already_covers() -> None:
    networking = Networking()
    plan = generator(networking, deny_all("shop", "own")).handle("shop", info("shop"))
    assert plan.skip == "namespace shop is already covered (own)"
    assert networking.created == []


@pytest.mark.parametrize("error", [ApiError(404), ApiError(403, '{"message": "... because it is being terminated"}')])
def test_a_gone_or_terminating_namespace_ends_the_attempt(error: ApiError) -> None:
    with pytest.raises(_Terminating):
        create_policy(Networking(error), "shop", {"metadata": {"name": "x"}})


def test_other_errors_are_raised_for_the_retry() -> None:
    with pytest.raises(ApiError):
        create_policy(Networking(ApiError(500)), "shop", {"metadata": {"name": "x"}})
    with pytest.raises(ApiError):  # forbidden for another reason (RBAC) is an error, not "terminating"
        create_policy(Networking(ApiError(403, '{"message": "forbidden"}')), "shop", {"metadata": {"name": "x"}})


def test_failures_back_off_are_counted_and_retried_until_done() -> None:
    networking, counters = Networking(ApiError(500), ApiError(503)), Counters()
    gen = generator(networking, counters=counters)
    gen._infos["shop"] = info("shop")
    worker = gen._threads[1]  # the worker; the watch thread is not started (no API server here)
    worker.start()
    try:
        started = time.monotonic()
        gen._enqueue("shop", 0, 0)
        while len(networking.created) < 2 and time.monotonic() - started < 10:
            time.sleep(0.05)
    finally:
        gen._stopping.set()
        with gen._cond:
            gen._cond.notify_all()
        worker.join(timeout=5)
    assert networking.created == [("shop", "netpol-guard-default-deny"), ("shop", "netpol-guard-allow-dns")]
    assert (counters.errors, gen.stats.errors, counters.generated) == (2, 2, 2)
    assert time.monotonic() - started >= 0.25 * 3  # two backoffs: 0.5 s and 1 s, each jittered by 0.5-1.5x


def test_nothing_is_written_without_leadership() -> None:
    networking = Networking()
    gen = generator(networking, leading=False)
    with pytest.raises(_NotLeader):
        gen.handle("shop", info("shop"))
    assert networking.created == []


def test_only_namespaces_created_since_leading_are_queued_once() -> None:
    gen = generator(Networking())
    fresh = namespace("fresh")
    fresh["metadata"]["creationTimestamp"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    old = namespace("old")
    old["metadata"]["creationTimestamp"] = "2020-01-01T00:00:00Z"
    for obj in (fresh, old, fresh):
        gen._seen(obj)
    assert [item[2] for item in gen._queue] == ["fresh"]


def test_backfill_report() -> None:
    from webhook.core.generate import Plan
    from webhook.generate import BackfillResult

    results = [BackfillResult(Plan("a", ({"metadata": {"name": "p"}},)), created=("p",)),
               BackfillResult(Plan("b", skip="namespace b is exempt by name"))]
    assert render_backfill(results, "table", False) == (
        "created       a: p\n1 namespace got the generated policies; 1 left alone (exempt, opted out, "
        "not selected, terminating or already covered)\n")
    assert render_backfill(results, "table", True).splitlines()[0] == "would create  a: p"
