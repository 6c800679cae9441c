"""PendingRemovals: an allowed removal counts as done until the cache shows it or the TTL passes."""

from __future__ import annotations

from tests.unit.helpers import deny_all, netpol, state
from webhook.core.netpol import parse_network_policy
from webhook.server.pending import PendingRemovals


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_pending_delete_hides_the_policy_until_the_cache_confirms_it() -> None:
    clock = Clock()
    pending = PendingRemovals(ttl=15, clock=clock)
    cluster = state(deny_all(name="a"), deny_all(name="b"))
    pending.record("shop", "a", None)
    assert [p.name for p in pending.view(cluster, "shop").policies("shop")] == ["b"]
    assert not pending.view(cluster, "shop").coverage("other").complete  # other namespaces untouched
    cluster.remove_policy("shop", "a")  # the watch delivered the DELETE
    assert pending.view(cluster, "shop") is cluster and pending.pending("shop") == 0


def test_a_pending_change_expires_after_its_ttl() -> None:
    clock = Clock()
    pending = PendingRemovals(ttl=15, clock=clock)
    cluster = state(deny_all(name="a"))
    pending.record("shop", "a", None)
    clock.now += 14.9
    assert pending.view(cluster, "shop").policies("shop") == ()
    clock.now += 0.2  # the write never happened (refused after our answer): the cache is right again
    assert [p.name for p in pending.view(cluster, "shop").policies("shop")] == ["a"]


def test_a_pending_update_shows_the_new_version_until_the_watch_has_it() -> None:
    pending = PendingRemovals(ttl=15, clock=Clock())
    cluster = state(deny_all(name="a"))
    narrowed = parse_network_policy(netpol("a", policyTypes=["Ingress"]))
    pending.record("shop", "a", narrowed)
    assert pending.view(cluster, "shop").coverage("shop").missing == ("Egress",)
    cluster.set_policy(narrowed)
    pending.view(cluster, "shop")
    assert pending.pending("shop") == 0
