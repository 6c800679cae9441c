"""What the service needs from a cluster-state source, whichever it is (static manifests or the API server)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

from webhook.core.netpol import NetworkPolicy
from webhook.core.state import ClusterState, NamespaceInfo


@dataclass(frozen=True, slots=True)
class LiveNamespace:
    """A namespace as the API server has it now: its info (None: not found) and its policies."""

    info: NamespaceInfo | None
    policies: list[NetworkPolicy]
    unreadable: Mapping[str, str] = field(default_factory=dict)  # policies that exist but cannot be read


class ClusterSource(Protocol):
    """What the service needs from a cluster-state source."""

    state: ClusterState

    @property
    def synced(self) -> bool:
        """True once the initial state is complete (every initial list succeeded)."""
        ...

    @property
    def live(self) -> bool:
        """True when `live_namespace` can read the API server (the deny confirm is possible)."""
        ...

    def not_ready_reason(self) -> str | None: ...

    def age_seconds(self) -> float | None:
        """Seconds since the last successful list or watch event; None before the first."""
        ...

    def start(self) -> None: ...

    def stop(self) -> None: ...

    def live_namespace(self, namespace: str) -> LiveNamespace:
        """Blocking: the namespace and its policies as the API server has them now. Raises LiveReadError."""
        ...
