"""The cluster cache cannot go back in time: watch events and live reads are merged per object by
resourceVersion, in both interleavings (no API server needed: the reflector's apply path and the
live-read merge are driven directly)."""

from __future__ import annotations

import threading
from types import SimpleNamespace
from typing import Any

from webhook.cluster.reflector import _Reflector, merge_live
from webhook.cluster.source import LiveNamespace
from webhook.cluster.versions import Versions, revision
from webhook.core.state import ClusterState

NS = "shop"


def policy(name: str, rv: int | str, ingress_only: bool = False) -> dict[str, Any]:
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": name, "namespace": NS, "resourceVersion": str(rv)},
            "spec": {"podSelector": {}, "policyTypes": ["Ingress"] if ingress_only else ["Ingress", "Egress"]}}


def namespace(rv: int, labels: dict[str, str] | None = None) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": NS, "resourceVersion": str(rv), "labels": labels or {}}}


def listing(rv: int, *items: dict[str, Any]) -> dict[str, Any]:
    return {"kind": "NetworkPolicyList", "metadata": {"resourceVersion": str(rv)}, "items": list(items)}


class Cache:
    def __init__(self) -> None:
        self.source = SimpleNamespace(state=ClusterState(), versions=Versions(), write_lock=threading.Lock(),
                                      touch=lambda: None)
        self.policies = _Reflector(self.source, "NetworkPolicy", list_call=lambda **_: None)  # type: ignore[arg-type]
        self.namespaces = _Reflector(self.source, "Namespace", list_call=lambda **_: None)  # type: ignore[arg-type]

    def watch(self, kind: str, obj: dict[str, Any]) -> None:
        reflector = self.namespaces if obj["kind"] == "Namespace" else self.policies
        reflector._apply({"type": kind, "object": obj}, "0")

    def live(self, ns_obj: dict[str, Any] | None, policies: dict[str, Any]) -> LiveNamespace:
        return merge_live(self.source.state, self.source.versions, NS, ns_obj, policies)

    def covered(self) -> tuple[bool, bool]:
        coverage = self.source.state.coverage(NS)
        return coverage.ingress, coverage.egress

    def names(self) -> list[str]:
        return [p.name for p in self.source.state.policies(NS)]


def test_a_watch_deletion_applied_first_is_not_undone_by_an_older_live_read() -> None:
    cache = Cache()
    cache.watch("ADDED", namespace(1))
    cache.watch("ADDED", policy("deny-all", 10))
    # The live read lists at revision 12 (deny-all still there); before it is merged, the watch deletes it at 15.
    cache.watch("DELETED", policy("deny-all", 15))
    seen = cache.live(namespace(1), listing(12, policy("deny-all", 10))).policies
    assert cache.names() == [] and seen == []
    assert cache.covered() == (False, False)


def test_a_live_read_applied_first_is_not_undone_by_older_watch_events() -> None:
    cache = Cache()
    cache.watch("ADDED", namespace(1))
    cache.watch("ADDED", policy("deny-all", 10, ingress_only=True))
    # The live read at revision 20 sees deny-all as changed at 18 (both directions) and a new policy at 19.
    live = cache.live(namespace(1), listing(20, policy("deny-all", 18), policy("extra", 19, ingress_only=True)))
    assert sorted(p.name for p in live.policies) == ["deny-all", "extra"] and live.info is not None
    assert cache.covered() == (True, True)
    # The lagging watch now delivers what the live read already knew, and older history.
    cache.watch("MODIFIED", policy("deny-all", 16, ingress_only=True))
    cache.watch("DELETED", policy("extra", 12))  # an earlier incarnation of "extra"
    assert cache.covered() == (True, True) and cache.names() == ["deny-all", "extra"]
    cache.watch("MODIFIED", policy("deny-all", 18))
    cache.watch("ADDED", policy("extra", 19, ingress_only=True))
    # Newer events still apply.
    cache.watch("MODIFIED", policy("deny-all", 25, ingress_only=True))
    assert cache.covered() == (True, False)
    cache.watch("DELETED", policy("extra", 26))
    assert cache.names() == ["deny-all"]


def test_a_live_read_removes_only_what_is_older_than_its_listing() -> None:
    cache = Cache()
    cache.watch("ADDED", namespace(1))
    cache.watch("ADDED", policy("old", 5))
    cache.watch("ADDED", policy("brand-new", 31))  # created after the listing below
    seen = cache.live(namespace(1), listing(30)).policies
    assert [p.name for p in seen] == ["brand-new"] and cache.names() == ["brand-new"]
    cache.watch("ADDED", policy("old", 5))  # the old version again, from a lagging watch: stays deleted
    assert cache.names() == ["brand-new"]


def test_namespace_labels_follow_the_newest_writer() -> None:
    cache = Cache()
    cache.watch("ADDED", namespace(3, {"mode": "audit"}))
    cache.watch("MODIFIED", namespace(9, {}))  # an exemption label removed at 9
    info = cache.live(namespace(3, {"mode": "audit"}), listing(8)).info  # a live read older than that
    assert info is not None and "mode" not in info.labels
    current = cache.source.state.namespace(NS)
    assert current is not None and "mode" not in current.labels


def test_a_relist_replaces_versions_and_non_numeric_versions_always_apply() -> None:
    cache = Cache()
    cache.watch("ADDED", policy("deny-all", 50))
    cache.policies._replace([policy("deny-all", 7)])  # after 410 Gone: the listing is authoritative
    assert cache.source.versions.known(("NetworkPolicy", NS, "deny-all")) == 7
    cache.watch("MODIFIED", policy("deny-all", 8, ingress_only=True))
    assert cache.covered() == (True, False)
    cache.watch("MODIFIED", policy("deny-all", "opaque"))
    assert cache.covered() == (True, True)
    assert revision("12") == 12 and revision("x1") is None and revision("١٢") is None and revision(None) is None


def test_tombstones_expire() -> None:
    versions = Versions(tombstone_seconds=0.0)
    versions.drop(("NetworkPolicy", NS, "a"), 5)
    versions.drop(("NetworkPolicy", NS, "b"), 6)  # pruning runs on each drop
    assert versions.known(("NetworkPolicy", NS, "a")) is None


def test_an_unreadable_policy_in_a_live_read_is_kept_by_name_and_versioned() -> None:
    cache = Cache()
    cache.watch("ADDED", namespace(1))
    broken = policy("odd", 12)
    broken["spec"]["ingress"] = [{"ports": [{"port": "Not_A_Name"}]}]
    live = cache.live(namespace(1), listing(13, broken, policy("deny-all", 11)))
    assert list(live.unreadable) == ["odd"] and [p.name for p in live.policies] == ["deny-all"]
    cache.watch("DELETED", policy("odd", 10))  # an older incarnation's deletion: the unreadable one stays
    assert list(cache.source.state.unreadable(NS)) == ["odd"]
    cache.live(namespace(1), listing(20, policy("deny-all", 11)))  # gone at 20
    assert dict(cache.source.state.unreadable(NS)) == {}
