"""The engine's view of a cluster: Namespaces and NetworkPolicies, coverage precomputed.

`ClusterState` is plain in-memory data. The shells fill it: the informer from a
list+watch, `check` and `serve --state` from manifests. Coverage is recomputed
for one namespace whenever one of its namespace-wide policies changes, so a
decision costs a dictionary lookup whatever the number of policies.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from webhook.core.coverage import Isolation, namespace_coverage, with_sources
from webhook.core.netpol import NetworkPolicy
from webhook.core.objects import NAME_LABEL as NAME_LABEL  # re-exported: long imported from here
from webhook.core.objects import labels_of, metadata_of, required_name
from webhook.core.sources.base import SourcePolicy, compose


@dataclass(frozen=True, slots=True)
class NamespaceInfo:
    name: str
    labels: Mapping[str, str] = field(default_factory=dict)
    terminating: bool = False
    created: float | None = None  # metadata.creationTimestamp, seconds since the epoch (whole seconds)


def parse_namespace(obj: Mapping[str, Any]) -> NamespaceInfo:
    metadata = metadata_of(obj)
    name = required_name(metadata)
    labels = labels_of(obj)
    status = obj.get("status") or {}
    terminating = metadata.get("deletionTimestamp") is not None or (
        isinstance(status, Mapping) and status.get("phase") == "Terminating"
    )
    return NamespaceInfo(name=name, labels={**labels, NAME_LABEL: name}, terminating=terminating,
                         created=_timestamp(metadata.get("creationTimestamp")))


def _timestamp(raw: Any) -> float | None:
    """An RFC 3339 time as the API server writes it ("2026-11-22T20:00:00Z"); None when absent or unreadable."""
    if not isinstance(raw, str):
        return None
    try:
        moment = datetime.fromisoformat(raw)
    except ValueError:
        return None
    return moment.timestamp() if moment.tzinfo is not None else None


class ClusterView(Protocol):
    """What the engine reads of a cluster."""

    def namespace(self, name: str) -> NamespaceInfo | None: ...

    def policies(self, namespace: str) -> Sequence[NetworkPolicy]: ...

    def coverage(self, namespace: str) -> Isolation: ...

    def source_policies(self, namespace: str) -> Sequence[SourcePolicy]:
        """Cluster-wide and CNI policies that may select pods of `namespace`."""
        ...

    def namespace_names(self) -> list[str]: ...

    def all_namespaces(self) -> Sequence[NamespaceInfo]:
        """Every namespace known to exist (empty when unknown, e.g. offline)."""
        ...

    def unreadable(self, namespace: str) -> Mapping[str, str]:
        """Policies of the namespace that exist but could not be read: name -> what was wrong."""
        ...


def namespace_or_default(view: ClusterView, name: str) -> NamespaceInfo:
    """The namespace as the view knows it, or as the API server would label a new one."""
    return view.namespace(name) or NamespaceInfo(name=name, labels={NAME_LABEL: name})


class ClusterState:
    """A mutable ClusterView, safe to update from one thread while others read."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._namespaces: dict[str, NamespaceInfo] = {}
        self._policies: dict[str, dict[str, NetworkPolicy]] = {}
        self._policy_lists: dict[str, tuple[NetworkPolicy, ...]] = {}
        self._coverage: dict[str, Isolation] = {}
        # Cluster-wide and CNI policies. Their effect on a namespace is computed on first use and kept until
        # a source policy (any namespace) or the namespace itself changes: generations tell stale entries.
        self._sources: dict[tuple[str, ...], SourcePolicy] = {}
        self._source_list: tuple[SourcePolicy, ...] = ()
        self._source_generation = 0
        self._namespace_generation: dict[str, int] = {}
        self._combined: dict[str, tuple[int, int, Isolation, tuple[SourcePolicy, ...]]] = {}
        self._namespace_list: tuple[NamespaceInfo, ...] | None = None
        self._unreadable: dict[str, dict[str, str]] = {}
        self._unreadable_namespaces: dict[str, str] = {}

    # --- reads (lock-free: each read sees one whole immutable value) ---
    def namespace(self, name: str) -> NamespaceInfo | None:
        return self._namespaces.get(name)

    def policies(self, namespace: str) -> Sequence[NetworkPolicy]:
        return self._policy_lists.get(namespace, ())

    def coverage(self, namespace: str) -> Isolation:
        if not self._source_list:
            found = self._coverage.get(namespace)
            return found if found is not None else Isolation()
        return self._with_sources(namespace)[0]

    def source_policies(self, namespace: str) -> Sequence[SourcePolicy]:
        if not self._source_list:
            return ()
        return self._with_sources(namespace)[1]

    def all_source_policies(self) -> tuple[SourcePolicy, ...]:
        return self._source_list

    def _with_sources(self, namespace: str) -> tuple[Isolation, tuple[SourcePolicy, ...]]:
        source_generation = self._source_generation
        namespace_generation = self._namespace_generation.get(namespace, 0)
        cached = self._combined.get(namespace)
        if cached is not None and cached[0] == source_generation and cached[1] == namespace_generation:
            return cached[2], cached[3]
        sources = self._source_list
        info = self._namespaces.get(namespace) or NamespaceInfo(namespace, {NAME_LABEL: namespace})
        relevant = tuple(p for p in sources if p.applies_to_namespace(info))
        own = self._coverage.get(namespace) or Isolation()
        isolation = with_sources(own, compose(info, relevant))
        # A writer that ran meanwhile bumped a generation: this entry is then ignored by the next read.
        self._combined[namespace] = (source_generation, namespace_generation, isolation, relevant)
        return isolation, relevant

    def all_namespaces(self) -> Sequence[NamespaceInfo]:
        found = self._namespace_list
        if found is None:
            found = self._namespace_list = tuple(self._namespaces.values())
        return found

    def unreadable(self, namespace: str) -> Mapping[str, str]:
        return self._unreadable.get(namespace, {})

    def namespace_names(self) -> list[str]:
        return sorted(set(self._namespaces) | set(self._policy_lists))

    def counts(self) -> tuple[int, int]:
        """(namespaces, policies) held; policies include the cluster-wide and CNI ones."""
        return len(self._namespaces), sum(len(p) for p in self._policy_lists.values()) + len(self._source_list)

    def unreadable_counts(self) -> tuple[int, int]:
        """(namespaces, policies) that exist but could not be read."""
        return len(self._unreadable_namespaces), sum(len(p) for p in self._unreadable.values())

    def note_unreadable_namespace(self, name: str, problem: str) -> None:
        """A Namespace that exists but cannot be read: counted (and logged by the caller), its last version kept."""
        with self._lock:
            self._unreadable_namespaces[name] = problem

    # --- writes ---
    def set_namespace(self, info: NamespaceInfo) -> None:
        with self._lock:
            self._namespaces[info.name] = info
            self._bump(info.name)
            self._namespace_list = None
            self._unreadable_namespaces.pop(info.name, None)

    def remove_namespace(self, name: str) -> None:
        with self._lock:
            self._namespaces.pop(name, None)
            self._bump(name)
            self._namespace_list = None
            self._unreadable_namespaces.pop(name, None)

    def set_source_policy(self, policy: SourcePolicy) -> None:
        with self._lock:
            self._sources[policy.key] = policy
            self._sources_changed()

    def remove_source_policy(self, key: tuple[str, ...]) -> None:
        with self._lock:
            if self._sources.pop(key, None) is not None:
                self._sources_changed()

    def replace_source_policies(self, policies: Iterable[SourcePolicy], kinds: Iterable[str] | None = None) -> None:
        """Swap in a complete listing of source policies (of the given kinds only, when named)."""
        with self._lock:
            if kinds is None:
                self._sources = {}
            else:
                replaced = set(kinds)
                self._sources = {k: p for k, p in self._sources.items() if p.kind not in replaced}
            for policy in policies:
                self._sources[policy.key] = policy
            self._sources_changed()

    def _sources_changed(self) -> None:
        self._source_list = tuple(sorted(self._sources.values(), key=lambda p: p.key))
        self._source_generation += 1

    def _bump(self, namespace: str) -> None:
        self._namespace_generation[namespace] = self._namespace_generation.get(namespace, 0) + 1

    def set_policy(self, policy: NetworkPolicy) -> None:
        with self._lock:
            self._forget_unreadable(policy.namespace, policy.name)
            self._policies.setdefault(policy.namespace, {})[policy.name] = policy
            self._refresh(policy.namespace)

    def set_unreadable(self, namespace: str, name: str, problem: str) -> None:
        """A policy exists but cannot be read: keep its name (messages cite it), drop any earlier readable copy."""
        with self._lock:
            self._unreadable.setdefault(namespace, {})[name] = problem
            if self._policies.get(namespace, {}).pop(name, None) is not None:
                self._refresh(namespace)

    def remove_policy(self, namespace: str, name: str) -> None:
        with self._lock:
            self._forget_unreadable(namespace, name)
            if self._policies.get(namespace, {}).pop(name, None) is not None:
                self._refresh(namespace)

    def replace_policies(
        self, namespace: str, policies: Iterable[NetworkPolicy], unreadable: Mapping[str, str] | None = None,
    ) -> None:
        """Swap in the complete policy set of one namespace (a live read)."""
        with self._lock:
            self._policies[namespace] = {p.name: p for p in policies}
            if unreadable:
                self._unreadable[namespace] = dict(unreadable)
            else:
                self._unreadable.pop(namespace, None)
            self._refresh(namespace)

    def replace_namespace_sources(self, namespace: str, policies: Iterable[SourcePolicy]) -> None:
        """Swap in the complete namespaced source policies of one namespace (a live read)."""
        with self._lock:
            self._sources = {k: p for k, p in self._sources.items() if p.namespace != namespace}
            for policy in policies:
                self._sources[policy.key] = policy
            self._sources_changed()

    def replace_all(
        self, namespaces: Iterable[NamespaceInfo], policies: Iterable[NetworkPolicy],
        unreadable: Iterable[tuple[str, str, str]] = (),
    ) -> None:
        """Swap in a complete listing (initial sync or relist after 410 Gone).

        `unreadable`: (namespace, name, problem) of policies that exist but could not be read.
        """
        by_namespace: dict[str, dict[str, NetworkPolicy]] = {}
        for policy in policies:
            by_namespace.setdefault(policy.namespace, {})[policy.name] = policy
        lists = {ns: tuple(sorted(p.values(), key=lambda x: x.name)) for ns, p in by_namespace.items()}
        coverage = {ns: namespace_coverage(p) for ns, p in lists.items()}
        broken: dict[str, dict[str, str]] = {}
        for namespace, name, problem in unreadable:
            broken.setdefault(namespace, {})[name] = problem
        with self._lock:
            self._namespaces = {n.name: n for n in namespaces}
            self._namespace_list = None
            self._policies = by_namespace
            self._policy_lists = lists
            self._coverage = coverage
            self._source_generation += 1  # every cached combination is stale
            self._unreadable = broken

    def _forget_unreadable(self, namespace: str, name: str) -> None:
        broken = self._unreadable.get(namespace)
        if broken is not None and broken.pop(name, None) is not None and not broken:
            del self._unreadable[namespace]

    def _refresh(self, namespace: str) -> None:
        self._bump(namespace)
        policies = self._policies.get(namespace, {})
        if not policies:
            self._policies.pop(namespace, None)
            self._policy_lists.pop(namespace, None)
            self._coverage.pop(namespace, None)
            return
        listed = tuple(sorted(policies.values(), key=lambda p: p.name))
        self._policy_lists[namespace] = listed
        self._coverage[namespace] = namespace_coverage(listed)


class NamespaceOverride:
    """A view that replaces one namespace's policies (a live read) and defers the rest to `base`."""

    def __init__(
        self, base: ClusterView, namespace: str, policies: Iterable[NetworkPolicy],
        info: NamespaceInfo | None = None, unreadable: Mapping[str, str] | None = None,
        sources: Iterable[SourcePolicy] | None = None,
    ) -> None:
        """`sources`: the cluster-wide and CNI policies read live as well (default: what `base` holds)."""
        self._base = base
        self._namespace = namespace
        self._info = info
        self._unreadable = dict(unreadable or {})
        self._policies = tuple(sorted(policies, key=lambda p: p.name))
        info = info or base.namespace(namespace) or NamespaceInfo(namespace, {NAME_LABEL: namespace})
        self._sources = (
            tuple(base.source_policies(namespace)) if sources is None
            else tuple(p for p in sources if p.applies_to_namespace(info))
        )
        self._coverage = with_sources(namespace_coverage(self._policies), compose(info, self._sources))

    def namespace(self, name: str) -> NamespaceInfo | None:
        if name == self._namespace and self._info is not None:
            return self._info
        return self._base.namespace(name)

    def policies(self, namespace: str) -> Sequence[NetworkPolicy]:
        return self._policies if namespace == self._namespace else self._base.policies(namespace)

    def coverage(self, namespace: str) -> Isolation:
        return self._coverage if namespace == self._namespace else self._base.coverage(namespace)

    def source_policies(self, namespace: str) -> Sequence[SourcePolicy]:
        return self._sources if namespace == self._namespace else self._base.source_policies(namespace)

    def namespace_names(self) -> list[str]:
        return self._base.namespace_names()

    def all_namespaces(self) -> Sequence[NamespaceInfo]:
        return self._base.all_namespaces()

    def unreadable(self, namespace: str) -> Mapping[str, str]:
        return self._unreadable if namespace == self._namespace else self._base.unreadable(namespace)
