"""Coverage removals this process has allowed and its cache has not seen yet (protect-deny-all under concurrency).

Two DELETEs of a namespace's two deny-alls, sent at the same moment, were each judged
against a cache in which the other policy still existed, so both were allowed and
the namespace was left open. Two things close that within one process:

- decisions that can remove coverage (NetworkPolicy DELETE and UPDATE) are taken
  one at a time per namespace (`NamespaceLocks`), including their live confirm;
- a removal just allowed counts as done (`PendingRemovals`) when the next request
  for that namespace is judged, until the watch shows it (the policy is gone, or
  holds the new version) or a short TTL passes (the write failed after we allowed it).

Across replicas nothing is shared: see the README ("protect-deny-all with several replicas").
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass

from webhook.core.netpol import NetworkPolicy
from webhook.core.state import ClusterView, NamespaceInfo, NamespaceOverride

# Long enough for the watch to deliver the change (usually milliseconds), short enough that a write refused
# after our answer (another webhook, a conflict) blocks the namespace's last deny-all for only a moment.
PENDING_TTL_SECONDS = 15.0


class NamespaceLocks:
    """One asyncio.Lock per namespace, dropped when nobody holds or waits for it."""

    def __init__(self) -> None:
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}

    @asynccontextmanager
    async def hold(self, namespace: str) -> AsyncIterator[None]:
        lock, users = self._locks.get(namespace, (asyncio.Lock(), 0))
        self._locks[namespace] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[namespace]
            if users <= 1:
                del self._locks[namespace]
            else:
                self._locks[namespace] = (lock, users - 1)

    def __len__(self) -> int:
        return len(self._locks)


@dataclass(frozen=True, slots=True)
class _Pending:
    expires: float
    replacement: NetworkPolicy | None  # None: deleted


class PendingRemovals:
    """NetworkPolicy deletes and updates allowed by this process, applied on top of the cache until it catches up."""

    def __init__(self, ttl: float = PENDING_TTL_SECONDS, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl = ttl
        self._clock = clock
        self._entries: dict[str, dict[str, _Pending]] = {}

    def record(self, namespace: str, name: str, replacement: NetworkPolicy | None) -> None:
        self._entries.setdefault(namespace, {})[name] = _Pending(self._clock() + self.ttl, replacement)

    def pending(self, namespace: str) -> int:
        return len(self._entries.get(namespace, {}))

    def apply(self, namespace: str, policies: Sequence[NetworkPolicy]) -> list[NetworkPolicy] | None:
        """`policies` with this namespace's pending changes applied, or None when nothing is pending.

        An entry the given policies already show (the policy is gone, or equals the new version) is confirmed
        and forgotten, as is one past its TTL.
        """
        entries = self._entries.get(namespace)
        if not entries:
            return None
        now = self._clock()
        by_name = {p.name: p for p in policies}
        for name, entry in list(entries.items()):
            current = by_name.get(name)
            confirmed = current is None if entry.replacement is None else current == entry.replacement
            if confirmed or entry.expires <= now:
                del entries[name]
        if not entries:
            del self._entries[namespace]
            return None
        result = [p for p in policies if p.name not in entries]
        result += [e.replacement for e in entries.values() if e.replacement is not None]
        return result

    def view(self, base: ClusterView, namespace: str) -> ClusterView:
        """The cached view with `namespace`'s pending changes applied."""
        applied = self.apply(namespace, base.policies(namespace))
        if applied is None:
            return base
        return NamespaceOverride(base, namespace, applied, base.namespace(namespace), base.unreadable(namespace))

    def live_view(self, base: ClusterView, namespace: str, info: NamespaceInfo | None,
                  policies: Sequence[NetworkPolicy], unreadable: Mapping[str, str]) -> ClusterView:
        """A live read of `namespace` over `base`, with the pending changes applied (the write may not be visible
        to the read yet either)."""
        applied = self.apply(namespace, policies)
        return NamespaceOverride(base, namespace, policies if applied is None else applied, info, unreadable)
