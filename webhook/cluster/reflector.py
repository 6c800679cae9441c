"""`KubernetesSource`: the cluster-state cache kept by list+watch of the API server.

A reflector per kind (Namespaces, networking.k8s.io/v1 NetworkPolicies in all namespaces,
and each enabled coverage-source kind the cluster serves: found by API discovery at start and
every `server.sourceDiscoverySeconds`, so a CRD installed later is picked up and one removed
is dropped; none is required) in background threads, plus `live_namespace` for the
confirm-before-deny read (which re-reads the watched source kinds too).

The reflector is deliberately small and explicit rather than `kubernetes.informer`: list, then
watch from the list's resourceVersion (with bookmarks, so a quiet watch can resume without a
relist); a 410 Gone (HTTP status or ERROR event) means our resourceVersion is too old, so relist
and swap the whole kind in; any other failure backs off and retries. Objects are read as raw
camelCase JSON (`_preload_content=False`), exactly like manifests, so the core parses them the
same way whether they come from disk or from the API server.
"""

from __future__ import annotations

import contextlib
import gc
import json
import logging
import random
import socket
import threading
import time
from collections.abc import Callable, Collection, Iterator, Mapping
from functools import partial
from typing import Any

from webhook.cluster.source import LiveNamespace
from webhook.cluster.versions import Key, Versions, revision
from webhook.core.errors import ObjectError
from webhook.core.netpol import NetworkPolicy, parse_network_policy
from webhook.core.sources import SOURCE_NAMES, SourceKind
from webhook.core.sources.base import SourcePolicy
from webhook.core.state import ClusterState, NamespaceInfo, parse_namespace
from webhook.discovery import DiscoveryError, served_source_kinds
from webhook.errors import KubeConfigError, LiveReadError, SourceError
from webhook.kubeclient import load_configuration

log = logging.getLogger("netpol_guard.cluster")

# Live reads happen while the API server waits for our answer: keep them short.
LIVE_READ_TIMEOUT = 1.0
# Server-side watch timeout; the client read timeout is a little longer so a dead connection is noticed.
WATCH_SECONDS = 240
WATCH_READ_TIMEOUT = WATCH_SECONDS + 30
LIST_TIMEOUT = (5.0, 60.0)
BACKOFF_START, BACKOFF_MAX = 0.5, 30.0
STOP_SECONDS = 1.0


class _Gone(Exception):
    """410 Gone: the resourceVersion we watch from has been compacted away; relist."""


class _Reflector:
    """List+watch of one kind into the shared ClusterState, in one daemon thread."""

    def __init__(self, source: KubernetesSource, kind: str, list_call: Callable[..., Any]) -> None:
        self.source = source
        self.kind = kind
        self.list_call = list_call  # the client's list method; with watch=True it streams events
        self.synced = False
        self.last_error: str | None = None
        self.stopping = threading.Event()  # set by the source on stop, or when the kind is no longer served
        self.failing_since: float | None = None  # monotonic time of the first failure since the last success
        self._stale_logged = False
        self._response: Any = None
        self.thread = threading.Thread(target=self._run, name=f"reflector-{kind}", daemon=True)

    # --- the loop ---
    def _run(self) -> None:
        backoff = BACKOFF_START
        resource_version: str | None = None
        stop = self.stopping
        while not stop.is_set():
            try:
                if resource_version is None:
                    resource_version = self._list()
                    if not self.synced and self.source.synced_after(self):
                        # The initial cache is long-lived: keep it out of the collector's full passes.
                        gc.collect()
                        gc.freeze()
                    self.synced = True
                    self.last_error = None
                    backoff = BACKOFF_START
                resource_version = self._watch(resource_version)
                backoff = BACKOFF_START
            except _Gone:
                log.info("%s watch expired (410 Gone), relisting", self.kind)
                resource_version = None
            except Exception as error:
                if stop.is_set():
                    break
                self.last_error = _short(error)
                if self.failing_since is None:
                    self.failing_since = time.monotonic()
                log.warning("%s list/watch failed, retrying in %.1fs: %s", self.kind, backoff, self.last_error)
                reason = self.stale_reason()
                if reason is not None and not self._stale_logged:
                    self._stale_logged = True
                    log.error("cluster cache stale, not ready (reviews fail closed or open as failClosed says): %s",
                              reason)
                # Jitter so many replicas do not hammer a recovering API server in step.
                stop.wait(backoff * (0.5 + random.random()))
                backoff = min(backoff * 2, BACKOFF_MAX)

    def _succeeded(self) -> None:
        if self._stale_logged:
            log.info("%s list/watch recovered after %.0fs; cluster cache current again", self.kind,
                     time.monotonic() - (self.failing_since or time.monotonic()))
        self.failing_since = None
        self._stale_logged = False

    def stale_reason(self) -> str | None:
        """Why the cache is stale (this kind's list/watch failing longer than the bound), or None."""
        since = self.failing_since
        bound = self.source.stale_after
        if since is None or bound is None:
            return None
        failing = time.monotonic() - since
        if failing <= bound:
            return None
        return (f"{self.kind} list/watch failing for {failing:.0f}s, more than server.cacheStaleSeconds ({bound:g}s)"
                + (f"; last error: {self.last_error}" if self.last_error else ""))

    def _list(self) -> str:
        # Raw JSON (camelCase, like manifests) instead of the client's models: cheaper, and parsed by the core.
        response = self.list_call(_preload_content=False, _request_timeout=LIST_TIMEOUT)
        try:
            body = json.loads(response.data)
        finally:
            response.release_conn()
        items = body.get("items") or []
        self._replace(items)
        self.source.touch()
        self._succeeded()
        return str((body.get("metadata") or {}).get("resourceVersion") or "")

    def _watch(self, resource_version: str) -> str:
        try:
            response = self.list_call(
                watch=True, allow_watch_bookmarks=True, timeout_seconds=WATCH_SECONDS,
                resource_version=resource_version or None,
                _preload_content=False, _request_timeout=(5.0, WATCH_READ_TIMEOUT),
            )
        except Exception as error:
            if getattr(error, "status", None) == 410:
                raise _Gone() from None
            raise
        self._response = response
        self.source.touch()
        self._succeeded()
        try:
            for line in watch_lines(response):
                if self.stopping.is_set():
                    break
                event = json.loads(line)
                resource_version = self._apply(event, resource_version)
        finally:
            self._response = None
            response.release_conn()
        return resource_version

    def _apply(self, event: Mapping[str, Any], resource_version: str) -> str:
        kind, obj = event.get("type"), event.get("object")
        if not isinstance(obj, Mapping):
            return resource_version
        if kind == "ERROR":
            if obj.get("code") == 410:
                raise _Gone()
            raise RuntimeError(f"watch error: {obj.get('code')} {obj.get('message')}")
        metadata = obj.get("metadata") or {}
        new_version = str(metadata.get("resourceVersion") or resource_version)
        self.source.touch()
        if kind == "BOOKMARK":
            return new_version
        try:
            if kind in ("ADDED", "MODIFIED"):
                self._set(obj)
            elif kind == "DELETED":
                self._delete(obj)
        except ObjectError as error:
            # One unreadable object must not stop the cache, nor vanish from it: keep its name (messages cite it,
            # a metric counts it) and drop any earlier readable version, which no longer exists.
            self._unreadable(obj, error)
        return new_version

    # --- applying to the state (each write checked against the versions held: see versions.py) ---
    def _set(self, obj: Mapping[str, Any]) -> None:
        state, versions = self.source.state, self.source.versions
        key = _key(self.kind, obj)
        version = revision((obj.get("metadata") or {}).get("resourceVersion"))
        parsed = parse_namespace(obj) if self.kind == "Namespace" else parse_network_policy(obj, key[1])
        with self.source.write_lock:
            if not versions.newer(key, version):
                return  # a live read already put a newer version of this object in the cache
            if isinstance(parsed, NamespaceInfo):
                state.set_namespace(parsed)
            else:
                state.set_policy(parsed)
            versions.hold(key, version)

    def _delete(self, obj: Mapping[str, Any]) -> None:
        state, versions = self.source.state, self.source.versions
        key = _key(self.kind, obj)
        version = revision((obj.get("metadata") or {}).get("resourceVersion"))
        with self.source.write_lock:
            if not versions.newer(key, version):
                return  # the object was re-created after this deletion, and a live read has it
            if self.kind == "Namespace":
                state.remove_namespace(key[2])
            else:
                state.remove_policy(key[1], key[2])
            versions.drop(key, version)

    def _replace(self, items: list[Any]) -> None:
        """Swap in a complete listing of this kind (initial sync or relist) without touching the other kind."""
        state = self.source.state
        if self.kind == "Namespace":
            namespaces = {}
            for item in items:
                info = self._parse(item, lambda obj: parse_namespace(obj))
                if info is not None:
                    namespaces[info.name] = info
            with self.source.write_lock:
                for name in state.namespace_names():
                    if name not in namespaces and state.namespace(name) is not None:
                        state.remove_namespace(name)
                for info in namespaces.values():
                    state.set_namespace(info)
                self.source.versions.reset(self.kind, _versions(self.kind, items))
            return
        by_namespace: dict[str, list[NetworkPolicy]] = {}
        unreadable: dict[str, dict[str, str]] = {}
        for item in items:
            policy = self._parse(item, lambda obj: parse_network_policy(obj, _namespace_of(obj)), unreadable)
            if policy is not None:
                by_namespace.setdefault(policy.namespace, []).append(policy)
        with self.source.write_lock:
            for name in state.namespace_names():
                if name not in by_namespace and name not in unreadable and (state.policies(name)
                                                                            or state.unreadable(name)):
                    state.replace_policies(name, [])
            for name in set(by_namespace) | set(unreadable):
                state.replace_policies(name, by_namespace.get(name, []), unreadable.get(name))
            self.source.versions.reset(self.kind, _versions(self.kind, items))

    def _parse(self, item: Any, parse: Callable[[Mapping[str, Any]], Any],
               unreadable: dict[str, dict[str, str]] | None = None) -> Any:
        if not isinstance(item, Mapping):
            return None
        try:
            return parse(item)
        except ObjectError as error:
            metadata = item.get("metadata") or {}
            log.warning("unreadable %s %s/%s kept by name only: %s", self.kind, metadata.get("namespace", ""),
                        metadata.get("name", ""), error)
            if unreadable is not None:
                unreadable.setdefault(_namespace_of(item), {})[str(metadata.get("name", ""))] = str(error)
            else:
                self.source.state.note_unreadable_namespace(str(metadata.get("name", "")), str(error))
            return None

    def _unreadable(self, obj: Mapping[str, Any], error: ObjectError) -> None:
        metadata = obj.get("metadata") or {}
        name = str(metadata.get("name", ""))
        key = _key(self.kind, obj)
        version = revision(metadata.get("resourceVersion"))
        log.warning("unreadable %s %s/%s kept by name only: %s", self.kind, metadata.get("namespace", ""), name, error)
        with self.source.write_lock:
            if not self.source.versions.newer(key, version):
                return
            if self.kind == "Namespace":
                self.source.state.note_unreadable_namespace(name, str(error))
            else:
                self.source.state.set_unreadable(_namespace_of(obj), name, str(error))
            self.source.versions.hold(key, version)

    def interrupt(self) -> None:
        """Unblock a thread waiting in a watch read (closing from another thread can hang on the SSL lock)."""
        self.stopping.set()
        shutdown_stream(self._response)


class _SourceReflector(_Reflector):
    """List+watch of one coverage-source kind (a custom resource, all namespaces) into the state."""

    def __init__(self, source: KubernetesSource, kind: SourceKind, list_call: Callable[..., Any]) -> None:
        super().__init__(source, f"{kind.kind}.{kind.group}", list_call)
        self.source_kind = kind

    def _read(self, obj: Mapping[str, Any]) -> SourcePolicy:
        return self.source_kind.parse(obj, _namespace_of(obj))

    def _set(self, obj: Mapping[str, Any]) -> None:
        policy = self._read(obj)
        with self.source.write_lock:
            self.source.state.set_source_policy(policy)

    def _delete(self, obj: Mapping[str, Any]) -> None:
        policy = self._read(obj)  # a DELETED event carries the object's last state
        with self.source.write_lock:
            self.source.state.remove_source_policy(policy.key)

    def _replace(self, items: list[Any]) -> None:
        policies = [p for p in (self._parse(item, self._read) for item in items) if p is not None]
        with self.source.write_lock:
            self.source.state.replace_source_policies(policies, kinds=[self.source_kind.kind])

    def retire(self) -> None:
        """The kind is no longer served (its CRD was deleted): stop watching and forget its policies."""
        self.interrupt()
        with self.source.write_lock:
            self.source.state.replace_source_policies([], kinds=[self.source_kind.kind])


def _key(kind: str, obj: Mapping[str, Any]) -> Key:
    metadata = obj.get("metadata") or {}
    name = metadata.get("name") if isinstance(metadata, Mapping) else None
    return kind, "" if kind == "Namespace" else _namespace_of(obj), name if isinstance(name, str) else ""


def _versions(kind: str, items: list[Any]) -> Iterator[tuple[Key, int | None]]:
    for item in items:
        if isinstance(item, Mapping):
            yield _key(kind, item), revision((item.get("metadata") or {}).get("resourceVersion"))


def merge_live(state: ClusterState, versions: Versions, namespace: str, namespace_obj: Mapping[str, Any] | None,
               listing: Mapping[str, Any]) -> LiveNamespace:
    """Write a live read of `namespace` into the cache, object by object, never over newer state.

    `namespace_obj` is the Namespace as read (None: 404) and `listing` its NetworkPolicy list. A listed
    policy replaces the cached one only when its resourceVersion is newer; a cached policy missing from
    the listing is removed only when it is older than the listing itself. Returns the merged view of the
    namespace (the newest of both writers), which is what the decision should see. Call under the lock.
    """
    info = parse_namespace(namespace_obj) if namespace_obj is not None else None  # raises before any write
    listed_at = revision((listing.get("metadata") or {}).get("resourceVersion"))
    listed = set()
    for item in listing.get("items") or []:
        if not isinstance(item, Mapping):
            continue
        metadata = item.get("metadata") or {}
        name = str(metadata.get("name", "")) if isinstance(metadata, Mapping) else ""
        key: Key = ("NetworkPolicy", namespace, name)
        listed.add(name)
        version = revision(metadata.get("resourceVersion") if isinstance(metadata, Mapping) else None)
        if not versions.newer(key, version):
            continue
        try:
            state.set_policy(parse_network_policy(item, namespace))
        except ObjectError as error:
            # A policy we cannot read never hides the rest of the namespace: judge on the readable ones, name it.
            state.set_unreadable(namespace, name, str(error))
        versions.hold(key, version)
    for name in [p.name for p in state.policies(namespace)] + list(state.unreadable(namespace)):
        key = ("NetworkPolicy", namespace, name)
        if name not in listed and versions.newer(key, listed_at):
            state.remove_policy(namespace, name)  # gone at listed_at, and we held an older version
            versions.drop(key, listed_at)
    if namespace_obj is not None and info is not None:
        key = ("Namespace", "", namespace)
        if versions.newer(key, revision((namespace_obj.get("metadata") or {}).get("resourceVersion"))):
            state.set_namespace(info)
            versions.hold(key, revision((namespace_obj.get("metadata") or {}).get("resourceVersion")))
        info = state.namespace(namespace)
    # A 404 is left to the watch: the get and the list are not one snapshot, so it cannot be ordered.
    return LiveNamespace(info, list(state.policies(namespace)), dict(state.unreadable(namespace)))




def _namespace_of(obj: Mapping[str, Any]) -> str:
    metadata = obj.get("metadata") or {}
    namespace = metadata.get("namespace") if isinstance(metadata, Mapping) else None
    return namespace if isinstance(namespace, str) and namespace else "default"


def shutdown_stream(response: Any) -> None:
    """Unblock a thread reading a streamed response (closing it from another thread can hang on the SSL lock)."""
    connection = getattr(response, "connection", None) if response is not None else None
    sock = getattr(connection, "sock", None) if connection is not None else None
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)


def watch_lines(response: Any) -> Iterator[bytes]:
    """Newline-delimited watch events from a streamed response."""
    buffer = b""
    for chunk in response.stream(amt=None, decode_content=False):
        buffer += chunk
        while True:
            end = buffer.find(b"\n")
            if end < 0:
                break
            line, buffer = buffer[:end], buffer[end + 1:]
            if line.strip():
                yield line
    if buffer.strip():
        yield buffer


class KubernetesSource:
    """List+watch of Namespaces and NetworkPolicies from the API server."""

    live = True

    def __init__(
        self, kubeconfig: str | None, sources: Collection[str] = SOURCE_NAMES, discovery_seconds: float = 30.0,
        stale_after: float | None = None,
    ) -> None:
        from kubernetes import client  # imported here: --state mode never needs the client

        self.stale_after = stale_after  # seconds of failing list/watch before the cache counts as stale
        try:
            configuration = load_configuration(kubeconfig)
        except KubeConfigError as error:
            raise SourceError(str(error)) from None
        self.state = ClusterState()
        self.stopping = threading.Event()
        self.write_lock = threading.Lock()
        self.versions = Versions()
        self._last_update: float | None = None
        # Separate clients (and connection pools) for the long-lived watches and the latency-critical live reads.
        self.api_client = client.ApiClient(configuration)
        self._live_client = client.ApiClient(configuration)
        self._core = client.CoreV1Api(self._live_client)
        self._networking = client.NetworkingV1Api(self._live_client)
        self._reflectors = [
            _Reflector(self, "Namespace", client.CoreV1Api(self.api_client).list_namespace),
            _Reflector(self, "NetworkPolicy",
                       client.NetworkingV1Api(self.api_client).list_network_policy_for_all_namespaces),
        ]
        # Coverage sources: found by discovery; the first discovery and its first lists gate readiness.
        self._enabled = tuple(sources)
        self._discovery_seconds = discovery_seconds
        self._watched: dict[tuple[str, str], _SourceReflector] = {}
        self._discovered = not any(s in self._enabled for s in SOURCE_NAMES[1:])
        self._discovery_error: str | None = None
        self._initial: list[_SourceReflector] = []
        self._custom = client.CustomObjectsApi(self.api_client)
        self._live_custom = client.CustomObjectsApi(self._live_client)
        self._discovery = threading.Thread(target=self._discover_loop, name="discovery", daemon=True)

    @property
    def synced(self) -> bool:
        """Listed, and no watch failing for longer than the staleness bound (then /readyz is not ready)."""
        return (self._discovered and all(r.synced for r in (*self._reflectors, *self._initial))
                and not self._stale_reasons())

    def _stale_reasons(self) -> list[str]:
        reflectors = (*self._reflectors, *list(self._watched.values()))
        return [reason for reason in (r.stale_reason() for r in reflectors) if reason is not None]

    def not_ready_reason(self) -> str | None:
        waiting = [r for r in (*self._reflectors, *self._initial) if not r.synced]
        parts = [f"{r.kind}s not listed yet" + (f" (last error: {r.last_error})" if r.last_error else "")
                 for r in waiting]
        if not self._discovered:
            parts.append("coverage-source APIs not discovered yet"
                         + (f" (last error: {self._discovery_error})" if self._discovery_error else ""))
        if parts:
            return "cluster cache not synced: " + "; ".join(parts)
        stale = self._stale_reasons()
        return "cluster cache stale: " + "; ".join(stale) if stale else None

    def synced_after(self, reflector: _Reflector) -> bool:
        """Whether the cache is complete once `reflector` has finished its first list."""
        return self._discovered and all(r.synced or r is reflector for r in (*self._reflectors, *self._initial))

    def watched_source_kinds(self) -> list[SourceKind]:
        return [r.source_kind for r in list(self._watched.values())]

    def _discover_loop(self) -> None:
        """Discovery at start, then every `discovery_seconds`: watch what appeared, drop what went away."""
        backoff = BACKOFF_START
        while not self.stopping.is_set():
            try:
                served = {(k.group, k.kind): k for k in served_source_kinds(self.api_client, self._enabled)}
            except DiscoveryError as error:
                self._discovery_error = str(error)
                log.warning("coverage-source discovery failed, retrying in %.1fs: %s", backoff, error)
                self.stopping.wait(backoff * (0.5 + random.random()))
                backoff = min(backoff * 2, BACKOFF_MAX)
                continue
            backoff = BACKOFF_START
            self._discovery_error = None
            for key in [k for k in self._watched if k not in served]:
                log.info("%s.%s is no longer served: not watching it", key[1], key[0])
                self._watched.pop(key).retire()
            for key, kind in served.items():
                if key not in self._watched:
                    reflector = _SourceReflector(self, kind, partial(
                        self._custom.list_cluster_custom_object, kind.group, kind.version, kind.plural))
                    log.info("watching %s.%s/%s", kind.kind, kind.group, kind.version)
                    self._watched[key] = reflector
                    if not self._discovered:
                        self._initial.append(reflector)
                    reflector.thread.start()
            self._discovered = True
            self.stopping.wait(self._discovery_seconds)

    def touch(self) -> None:
        self._last_update = time.monotonic()

    def age_seconds(self) -> float | None:
        return None if self._last_update is None else time.monotonic() - self._last_update

    def start(self) -> None:
        for reflector in self._reflectors:
            reflector.thread.start()
        if not self._discovered:
            self._discovery.start()

    def stop(self) -> None:
        self.stopping.set()
        reflectors = [*self._reflectors, *list(self._watched.values())]
        for reflector in reflectors:
            reflector.interrupt()
        deadline = time.monotonic() + STOP_SECONDS  # daemon threads: never hold the process's exit for long
        for reflector in reflectors:
            if reflector.thread.is_alive():
                reflector.thread.join(timeout=max(0.0, deadline - time.monotonic()))

    def live_namespace(self, namespace: str) -> LiveNamespace:
        """One get + one list (+ the coverage sources), each with a short timeout; merged into the cache
        object by object (see merge_live), so it never overwrites newer watch state."""
        try:
            namespace_obj: Mapping[str, Any] | None
            try:
                response: Any = self._core.read_namespace(
                    namespace, _preload_content=False, _request_timeout=LIVE_READ_TIMEOUT
                )
                namespace_obj = json.loads(response.data)
            except Exception as error:
                if getattr(error, "status", None) != 404:
                    raise
                namespace_obj = None
            listing: Any = self._networking.list_namespaced_network_policy(
                namespace, _preload_content=False, _request_timeout=LIVE_READ_TIMEOUT
            )
            body = json.loads(listing.data)
            if not isinstance(body, Mapping) or (namespace_obj is not None and not isinstance(namespace_obj, Mapping)):
                raise ValueError("the API server's answer is not an object")
            sources = self._live_sources(namespace)
            with self.write_lock:
                for kind, found in sources:
                    if not kind.namespaced:
                        self.state.replace_source_policies(found, kinds=[kind.kind])
                self.state.replace_namespace_sources(
                    namespace, [p for kind, found in sources if kind.namespaced for p in found])
                return merge_live(self.state, self.versions, namespace, namespace_obj, body)
        except Exception as error:
            raise LiveReadError(f"live read of namespace {namespace} failed: {_short(error)}") from None

    def _live_sources(self, namespace: str) -> list[tuple[SourceKind, list[SourcePolicy]]]:
        """The watched coverage-source kinds read live: cluster-scoped ones whole, namespaced ones in `namespace`."""
        read: list[tuple[SourceKind, list[SourcePolicy]]] = []
        for kind in self.watched_source_kinds():
            if kind.namespaced:
                listing: Any = self._live_custom.list_namespaced_custom_object(
                    kind.group, kind.version, namespace, kind.plural,
                    _preload_content=False, _request_timeout=LIVE_READ_TIMEOUT)
            else:
                listing = self._live_custom.list_cluster_custom_object(
                    kind.group, kind.version, kind.plural,
                    _preload_content=False, _request_timeout=LIVE_READ_TIMEOUT)
            found: list[SourcePolicy] = []
            for item in json.loads(listing.data).get("items") or []:
                if isinstance(item, Mapping):
                    with contextlib.suppress(ObjectError):  # unreadable: skipped, as the watch skips it
                        found.append(kind.parse(item, namespace))
            read.append((kind, found))
        return read


def _short(error: BaseException) -> str:
    status = getattr(error, "status", None)
    reason = getattr(error, "reason", None)
    if status is not None:
        return f"HTTP {status} {reason or ''}".strip()
    return f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}".rstrip(": ")
