"""Per-object resourceVersions of what the cache holds, so no write can take it back in time.

Two writers update the cache: the watch (events in resourceVersion order) and the live read
before a deny (a get + list that can finish after newer watch events were applied, or before
older ones arrive). Without versions, a live read could put back a deny-all the watch had just
deleted, or an older watch event could undo what a newer live read found. Every write is
therefore checked per object: it applies only when its resourceVersion is newer than the one
held, and a deletion leaves a tombstone (its resourceVersion) for a while, so an older read
cannot resurrect the object.

resourceVersions are opaque by contract, but the API server's are etcd revisions (integers)
and client-go's own caches compare them the same way; a version that is not an integer is
applied unconditionally (the old behaviour).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Iterable

Key = tuple[str, str, str]  # (kind, namespace, name); namespace "" for cluster-scoped kinds

# How long a deletion is remembered: far longer than a live read can take (two 1 s requests).
TOMBSTONE_SECONDS = 120.0


def revision(value: object) -> int | None:
    """A resourceVersion as a number, or None when it is missing or not an integer."""
    if isinstance(value, str) and value.isascii() and value.isdigit():
        return int(value)
    return None


class Versions:
    """resourceVersions held per object, and recent deletions. Not thread-safe: use under the cache's lock."""

    def __init__(self, tombstone_seconds: float = TOMBSTONE_SECONDS) -> None:
        self._held: dict[Key, int] = {}
        self._tombstones: OrderedDict[Key, tuple[int, float]] = OrderedDict()
        self._tombstone_seconds = tombstone_seconds

    def known(self, key: Key) -> int | None:
        """The newest version seen for `key`: held, or the deletion's."""
        held = self._held.get(key)
        if held is not None:
            return held
        tombstone = self._tombstones.get(key)
        return None if tombstone is None else tombstone[0]

    def newer(self, key: Key, version: int | None) -> bool:
        """Whether a write at `version` may replace what the cache has for `key`."""
        if version is None:
            return True
        known = self.known(key)
        return known is None or version > known

    def hold(self, key: Key, version: int | None) -> None:
        """`key` is now in the cache at `version`."""
        self._tombstones.pop(key, None)
        if version is None:
            self._held.pop(key, None)
        else:
            self._held[key] = version

    def drop(self, key: Key, version: int | None) -> None:
        """`key` was deleted at `version` (remembered for a while, so an older read cannot bring it back)."""
        self._held.pop(key, None)
        self._tombstones.pop(key, None)
        if version is not None:
            self._tombstones[key] = (version, time.monotonic())
        self._prune()

    def reset(self, kind: str, held: Iterable[tuple[Key, int | None]]) -> None:
        """A complete listing of `kind` replaced the cache's: forget everything else known of that kind."""
        for key in [k for k in self._held if k[0] == kind]:
            del self._held[key]
        for key in [k for k in self._tombstones if k[0] == kind]:
            del self._tombstones[key]
        for key, version in held:
            if version is not None:
                self._held[key] = version

    def _prune(self) -> None:
        cutoff = time.monotonic() - self._tombstone_seconds
        while self._tombstones:
            key, (_, at) = next(iter(self._tombstones.items()))
            if at > cutoff:
                break
            del self._tombstones[key]
