"""`serve --state DIR`: Namespaces, NetworkPolicies and coverage-source policies read once from manifests on disk.

Synced at once and never changes; there is no API server, so no live confirm.
"""

from __future__ import annotations

import time
from collections.abc import Collection
from itertools import chain

from webhook.cluster.source import LiveNamespace
from webhook.core.sources import SOURCE_NAMES
from webhook.core.state import ClusterState
from webhook.errors import InputError, LiveReadError, SourceError
from webhook.loading import expand_paths, read_manifests, state_from_manifests


class StaticSource:
    """State from manifests on disk, read once at start."""

    live = False

    def __init__(self, directory: str, sources: Collection[str] = SOURCE_NAMES) -> None:
        try:
            self.state = _load_state(directory, sources)
        except InputError as error:
            raise SourceError(f"--state: {error}") from None
        self._loaded_at = time.monotonic()

    @property
    def synced(self) -> bool:
        return True

    def not_ready_reason(self) -> str | None:
        return None

    def age_seconds(self) -> float | None:
        return time.monotonic() - self._loaded_at

    def start(self) -> None:
        pass

    def stop(self) -> None:
        pass

    def live_namespace(self, namespace: str) -> LiveNamespace:
        raise LiveReadError("no API server in --state mode")


def _load_state(directory: str, sources: Collection[str] = SOURCE_NAMES) -> ClusterState:
    """state_from_manifests over the whole directory, reading one file at a time.

    Raw YAML dicts are many times bigger than the parsed policies; feeding the manifests
    lazily, file by file, keeps only one file's worth alive at once, which keeps the peak
    (and so the resident size) of a large state down. Later files win, as later documents do.
    """
    files = expand_paths([directory])
    return state_from_manifests(chain.from_iterable(read_manifests([file]) for file in files), "default", sources)
