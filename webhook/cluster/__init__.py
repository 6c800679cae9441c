"""The cluster-state cache: where the service's `ClusterState` comes from (a shell around the core).

Two sources behind one protocol (`ClusterSource`, in `source`):
- `StaticSource` (`static`): manifests read once from disk (`serve --state DIR`).
- `KubernetesSource` (`reflector`): list+watch of the API server, plus the live read
  the service makes to confirm a deny.
"""

from __future__ import annotations

from collections.abc import Collection

from webhook.cluster.reflector import KubernetesSource
from webhook.cluster.source import ClusterSource, LiveNamespace
from webhook.cluster.static import StaticSource
from webhook.core.sources import SOURCE_NAMES
from webhook.errors import LiveReadError, SourceError

__all__ = ["ClusterSource", "KubernetesSource", "LiveNamespace", "LiveReadError", "SourceError", "StaticSource",
           "make_source"]


def make_source(
    state_dir: str | None, kubeconfig: str | None, sources: Collection[str] = SOURCE_NAMES,
    discovery_seconds: float = 30.0, stale_after: float | None = None,
) -> ClusterSource:
    """`--state DIR` wins; otherwise the API server. `sources`: the enabled coverage sources;
    `stale_after`: seconds of failing list/watch before the cache counts as stale (not ready)."""
    if state_dir is not None:
        return StaticSource(state_dir, sources)
    return KubernetesSource(kubeconfig, sources, discovery_seconds, stale_after)
