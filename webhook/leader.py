"""Leader election on a coordination.k8s.io Lease, so exactly one replica writes (generator, background audit).

Built on the kubernetes client's own framework (`kubernetes.leaderelection`): its
`LeaderElection` loop, its `Config` checks and its `LeaseLock`. What this module adds
is what that framework leaves to the caller:
- a lock bound to *our* ApiClient (the stock `LeaseLock` uses the process-global default
  client) and with request timeouts, so a hung API server cannot stall the renew loop past
  the renew deadline;
- stopping: the stock loop has no exit, so once `stop()` is called the lock refuses to
  create or renew, and the lease is released (holderIdentity cleared, which the framework's
  candidates take over at once) instead of making the others wait out the lease;
- several subscribers (the generator now, the issue-12 background audit later) told when
  leadership starts and stops, and `is_leader` for a last check before each write.

The framework's safety rests on renewDeadline < leaseDuration: a leader that cannot renew
stops leading (and our subscribers stop writing) before any other candidate may take over.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

log = logging.getLogger("netpol_guard.leader")
# Each follower's retry logs "yet to finish lease_duration ..." at INFO every retry period; we log transitions.
logging.getLogger("leaderelection").setLevel(logging.WARNING)

REQUEST_TIMEOUT = (3.0, 5.0)
WARN_EVERY_SECONDS = 60.0


@dataclass(frozen=True, slots=True)
class LeaseSettings:
    namespace: str
    name: str
    lease_duration: int = 15  # whole seconds: the Lease stores an integer
    renew_deadline: int = 10
    retry_period: int = 2


def default_identity() -> str:
    """The pod name (HOSTNAME in a pod) plus a random suffix: a restarted replica is a new candidate."""
    return f"{os.environ.get('HOSTNAME') or socket.gethostname()}_{uuid.uuid4().hex[:8]}"


class _Timed:
    """CoordinationV1Api with a request timeout on every call (the framework's lock passes none)."""

    def __init__(self, api: Any) -> None:
        self._api = api

    def __getattr__(self, name: str) -> Callable[..., Any]:
        method = getattr(self._api, name)

        def call(*args: Any, **kwargs: Any) -> Any:
            kwargs.setdefault("_request_timeout", REQUEST_TIMEOUT)
            return method(*args, **kwargs)

        return call


def _lease_lock_class() -> type:
    from kubernetes import client
    from kubernetes.leaderelection.resourcelock.leaselock import LeaseLock

    class BoundLeaseLock(LeaseLock):
        """The framework's LeaseLock on our ApiClient, refusing to create or renew once stopping."""

        def __init__(self, api_client: Any, name: str, namespace: str, identity: str,
                     stopping: threading.Event) -> None:
            base: Any = super()
            base.__init__(name, namespace, identity)
            self.api_instance: Any = _Timed(client.CoordinationV1Api(api_client))
            self.stopping = stopping
            self.warned_at = -WARN_EVERY_SECONDS

        def get(self, name: str, namespace: str) -> tuple[bool, Any]:
            base: Any = super()
            found, value = base.get(name, namespace)
            status = getattr(value, "status", None)
            if not found and status not in (404, None):
                # The framework logs this at INFO and retries forever; an operator must see it.
                now = time.monotonic()
                if now - self.warned_at > WARN_EVERY_SECONDS:
                    self.warned_at = now
                    hint = " (is manifests/components/generate applied?)" if status == 403 else ""
                    log.warning("cannot read lease %s/%s: HTTP %s%s; not leading", namespace, name, status, hint)
            return found, value

        def create(self, name: str, namespace: str, election_record: Any) -> bool:
            if self.stopping.is_set():
                return False
            base: Any = super()
            created = bool(base.create(name, namespace, election_record))
            now = time.monotonic()
            if not created and now - self.warned_at > WARN_EVERY_SECONDS:
                # Another candidate creating it first is normal; anything else (no such namespace, RBAC) is not,
                # and the framework only says so at INFO.
                self.warned_at = now
                log.warning("cannot create lease %s/%s (another replica may have won; otherwise check that "
                            "namespace %s exists and manifests/components/generate is applied)", namespace, name,
                            namespace)
            return created

        def update(self, name: str, namespace: str, updated_record: Any) -> bool:
            if self.stopping.is_set():
                return False
            base: Any = super()
            return bool(base.update(name, namespace, updated_record))

        def release(self) -> bool:
            """Clear holderIdentity if we hold the lease, so a candidate takes over without waiting it out."""
            for _ in range(3):
                try:
                    lease = self.api_instance.read_namespaced_lease(self.name, self.namespace)
                    if lease.spec is None or lease.spec.holder_identity != self.identity:
                        return False
                    lease.spec.holder_identity = None
                    self.api_instance.replace_namespaced_lease(self.name, self.namespace, lease)
                    return True
                except client.ApiException as error:
                    if error.status != 409:  # 409: renewed under us a moment ago; read again
                        log.warning("releasing lease %s/%s failed: HTTP %s", self.namespace, self.name,
                                    error.status)
                        return False
                except Exception as error:  # unreachable API server: the lease expires by itself
                    log.warning("releasing lease %s/%s failed: %s", self.namespace, self.name, error)
                    return False
            return False

    return BoundLeaseLock


class LeaderElector:
    """Campaigns for one Lease in a daemon thread; tells subscribers when leadership starts and stops."""

    def __init__(self, api_client: Any, settings: LeaseSettings, identity: str | None = None) -> None:
        self.settings = settings
        self.identity = identity or default_identity()
        self._stopping = threading.Event()
        self._leading = threading.Event()
        self._subscribers: list[tuple[Callable[[], None], Callable[[], None]]] = []
        self._lock = _lease_lock_class()(api_client, settings.name, settings.namespace, self.identity,
                                         self._stopping)
        self._thread = threading.Thread(target=self._run, name="leader-election", daemon=True)

    @property
    def is_leader(self) -> bool:
        return self._leading.is_set()

    def subscribe(self, started: Callable[[], None], stopped: Callable[[], None]) -> None:
        """`started` runs when this replica becomes leader, `stopped` when it stops (both must return quickly)."""
        self._subscribers.append((started, stopped))

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Stop campaigning; if leading, stop the subscribers first, then release the lease."""
        self._stopping.set()
        if self._leading.is_set():
            self._stopped_leading()
            if self._lock.release():
                log.info("released lease %s/%s", self.settings.namespace, self.settings.name)

    def wait_until_leader(self, timeout: float) -> bool:
        return self._leading.wait(timeout)

    # --- the framework's callbacks ---
    def _started_leading(self) -> None:
        if self._stopping.is_set():
            return
        self._leading.set()
        log.info("became leader of lease %s/%s as %s", self.settings.namespace, self.settings.name, self.identity)
        for started, _ in self._subscribers:
            try:
                started()
            except Exception:
                log.exception("a leadership subscriber failed to start")

    def _stopped_leading(self) -> None:
        if not self._leading.is_set():
            return
        self._leading.clear()
        log.info("stopped leading lease %s/%s", self.settings.namespace, self.settings.name)
        for _, stopped in self._subscribers:
            try:
                stopped()
            except Exception:
                log.exception("a leadership subscriber failed to stop")

    def _run(self) -> None:
        from kubernetes.leaderelection import electionconfig, leaderelection

        make_config: Any = electionconfig.Config
        election_class: Any = leaderelection.LeaderElection
        settings = self.settings
        while not self._stopping.is_set():
            config = make_config(
                self._lock, settings.lease_duration, settings.renew_deadline, settings.retry_period,
                self._started_leading, self._stopped_leading,
            )
            try:
                # Blocks while following; returns once leadership is lost (after onstopped_leading).
                election_class(config).run()
            except Exception as error:  # an API error the framework did not catch: campaign again
                log.warning("leader election failed, retrying: %s", error)
                self._stopped_leading()
            self._stopping.wait(settings.retry_period)
