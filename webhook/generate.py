"""The generator: writes netpol-guard's default-deny into new namespaces (a shell around webhook.core.generate).

It runs inside `netpol-guard serve --generate` rather than as a separate command: the
webhook already holds the API credentials, the Deployment, the probes and the metrics
endpoint, and the webhook's bounded wait for a young namespace's policy is only safe
when the writer is deployed (and upgraded) with it. Only the Lease holder writes
(webhook.leader); the other replicas keep answering admission requests.

What it writes and where comes from the core (`Generation.plan`). How it behaves:
- it acts on namespaces *created* since it became leader (minus a lookback of one lease
  duration plus a margin, so a namespace created during a leader handover is not missed),
  from the ADDED events of its own namespace watch; it never acts on start for older ones
  (that is `netpol-guard generate --backfill`), and never on MODIFIED or DELETED events;
- each namespace is handled once per process: before writing it re-reads the namespace
  and its policies live, and writes nothing when the namespace is gone, terminating, not
  governed, or already covered; so a policy a person changed or deleted is never touched
  again (deleting the generated policy is only allowed once another deny-all covers the
  namespace, and a covered namespace gets nothing);
- it only ever creates: 409 AlreadyExists counts as success, nothing is updated or deleted
  (deleting a namespace touches nothing else: the API server removes its policies);
- a failed attempt is logged, counted, and retried with exponential backoff (a write
  refused because the namespace is terminating is not retried);
- a new namespace is handled `settleSeconds` after it is seen, so a bundle that brings its
  own deny-all (`kubectl apply -f` of Namespace + NetworkPolicy) gets nothing.

`backfill` is the explicit, one-shot pass over existing namespaces (`--dry-run` lists).
"""

from __future__ import annotations

import heapq
import json
import logging
import random
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from webhook.cluster.reflector import shutdown_stream, watch_lines
from webhook.core.config import Config
from webhook.core.coverage import namespace_coverage
from webhook.core.errors import BadInput, ObjectError
from webhook.core.generate import Generation, Plan
from webhook.core.netpol import NetworkPolicy, parse_network_policy
from webhook.core.state import ClusterState, ClusterView, NamespaceInfo, parse_namespace

log = logging.getLogger("netpol_guard.generate")

REQUEST_TIMEOUT = (3.0, 10.0)
WATCH_SECONDS = 60  # short server-side watches: a lost leadership is noticed at the next one at the latest
BACKOFF_START, BACKOFF_MAX, MAX_ATTEMPTS = 0.5, 60.0, 10
LOOKBACK_MARGIN = 5.0
# While leading, "new" never reaches further back than this: after a watch outage longer than an hour,
# namespaces created during it are left to --backfill, and the memory of handled names stays bounded.
HORIZON_SECONDS = 3600.0
# Each namespace costs one policy list and two creates (each judged by the webhook): concurrency, not CPU,
# is what keeps a burst of new namespaces under a second each.
WORKERS = 32


class Counters(Protocol):
    """Where the generator counts what it did (the service's Prometheus metrics)."""

    def count_generated(self, policies: int) -> None: ...

    def count_generate_error(self) -> None: ...


class Leadership(Protocol):
    @property
    def is_leader(self) -> bool: ...

    def subscribe(self, started: Any, stopped: Any) -> None: ...


class _NotLeader(Exception):
    """Leadership was lost before a write: drop the namespace; whoever leads next looks back over it."""


class _Terminating(Exception):
    """The API server refused a write because the namespace is being deleted: nothing to retry."""


@dataclass
class Stats:
    """Process-local totals (tests and the benchmark read them; the service also exports metrics)."""

    generated: int = 0  # policies created
    existed: int = 0  # 409 AlreadyExists, counted as success
    errors: int = 0
    skipped: int = 0  # namespaces left alone (not governed, covered, gone)
    done: dict[str, float] = field(default_factory=dict)  # namespace -> time its last policy was written


class Generator:
    """Watches for new namespaces while leader, and creates the generated policies there."""

    def __init__(self, config: Config, api_client: Any, leadership: Leadership | None = None,
                 counters: Counters | None = None, *, workers: int = WORKERS, cache: ClusterView | None = None) -> None:
        """`cache`: the webhook's synced list+watch view; when given, a namespace's policies are read from it
        instead of a live list (one API round trip fewer per namespace; the settle delay covers its lag)."""
        from kubernetes import client

        self.generation = Generation(config)
        self.settings = config.generate
        self._cache = cache
        self.counters = counters
        self.stats = Stats()
        self._leadership = leadership
        self._core = client.CoreV1Api(api_client)
        self._networking = client.NetworkingV1Api(api_client)
        self._watch_core = client.CoreV1Api(client.ApiClient(api_client.configuration))
        self._stopping = threading.Event()
        self._leading = threading.Event()
        self._since = 0.0  # namespaces created before this are not new to this leader
        # Namespaces queued once by this process (never again), with their creation time: entries older than
        # `_since` are dropped at each listing, since `_seen` ignores such namespaces anyway.
        self._handled: dict[str, float] = {}
        self._infos: dict[str, NamespaceInfo] = {}  # the namespace as last seen by the watch, while queued
        self._queue: list[tuple[float, int, str, int]] = []  # (due, seq, namespace, attempt)
        self._seq = 0
        self._cond = threading.Condition()
        self._threads = [threading.Thread(target=self._watch_loop, name="generate-watch", daemon=True)]
        self._threads += [threading.Thread(target=self._work_loop, name=f"generate-{i}", daemon=True)
                          for i in range(workers)]
        self._response: Any = None
        if leadership is not None:
            leadership.subscribe(self._started_leading, self._stopped_leading)

    # --- lifecycle ---
    def start(self) -> None:
        if self._leadership is None:  # no election (tests, a single writer by construction)
            self._started_leading()
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        self._stopping.set()
        self._stopped_leading()
        shutdown_stream(self._response)
        with self._cond:
            self._cond.notify_all()
        for thread in self._threads:
            thread.join(timeout=2.0)

    @property
    def leading(self) -> bool:
        if not self._leading.is_set():
            return False
        return self._leadership is None or self._leadership.is_leader

    def _started_leading(self) -> None:
        self._since = time.time() - self.settings.lease_duration_seconds - LOOKBACK_MARGIN
        self._leading.set()
        log.info("generator active: handling namespaces created since %s",
                 time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self._since)))

    def _stopped_leading(self) -> None:
        if self._leading.is_set():
            log.info("generator passive: not the leader")
        self._leading.clear()
        with self._cond:
            for _, _, name, _ in self._queue:  # not done: eligible again should we lead again
                self._handled.pop(name, None)
                self._infos.pop(name, None)
            self._queue.clear()  # the next leader looks back over what we had not done
        shutdown_stream(self._response)

    # --- the namespace watch (leader only) ---
    def _watch_loop(self) -> None:
        backoff = BACKOFF_START
        while not self._stopping.is_set():
            if not self._leading.wait(timeout=0.5):
                continue
            try:
                version = self._list()
                while self.leading and not self._stopping.is_set():
                    self._since = max(self._since, time.time() - HORIZON_SECONDS)
                    self._forget_older()
                    version = self._watch(version)
                backoff = BACKOFF_START
            except _Gone:
                continue
            except Exception as error:
                if self._stopping.is_set() or not self.leading:
                    continue
                log.warning("namespace list/watch failed, retrying in %.1fs: %s", backoff, _short(error))
                self._stopping.wait(backoff * (0.5 + random.random()))
                backoff = min(backoff * 2, BACKOFF_MAX)

    def _list(self) -> str:
        response: Any = self._watch_core.list_namespace(_preload_content=False, _request_timeout=REQUEST_TIMEOUT)
        body = json.loads(response.data)
        self._forget_older()
        for item in body.get("items") or []:
            self._seen(item)
        return str((body.get("metadata") or {}).get("resourceVersion") or "")

    def _watch(self, version: str) -> str:
        try:
            response: Any = self._watch_core.list_namespace(
                watch=True, allow_watch_bookmarks=True, timeout_seconds=WATCH_SECONDS, resource_version=version,
                _preload_content=False, _request_timeout=(5.0, WATCH_SECONDS + 30),
            )
        except Exception as error:
            if getattr(error, "status", None) == 410:
                raise _Gone() from None
            raise
        self._response = response
        try:
            for line in watch_lines(response):
                if not self.leading:
                    break
                event = json.loads(line)
                obj = event.get("object") or {}
                if event.get("type") == "ERROR":
                    if obj.get("code") == 410:
                        raise _Gone()
                    raise RuntimeError(f"watch error: {obj.get('code')} {obj.get('message')}")
                version = str((obj.get("metadata") or {}).get("resourceVersion") or version)
                if event.get("type") == "ADDED":
                    self._seen(obj)
        finally:
            self._response = None
            response.release_conn()
        return version

    def _forget_older(self) -> None:
        for name in [name for name, created in list(self._handled.items()) if created < self._since]:
            self._handled.pop(name, None)

    def _seen(self, obj: Mapping[str, Any]) -> None:
        """A namespace from a listing or an ADDED event: queue it once if it is new to this leader."""
        try:
            info = parse_namespace(obj)
        except ObjectError:
            return
        if info.created is None or info.created < self._since or info.name in self._handled:
            return
        self._handled[info.name] = info.created
        if self.generation.not_governed(info) is not None:  # cheap early skip; re-checked before writing
            self.stats.skipped += 1
            return
        self._infos[info.name] = info
        self._enqueue(info.name, 0, self.settings.settle_seconds)

    # --- the work queue ---
    def _enqueue(self, namespace: str, attempt: int, delay: float) -> None:
        with self._cond:
            self._seq += 1
            heapq.heappush(self._queue, (time.monotonic() + delay, self._seq, namespace, attempt))
            self._cond.notify()

    def _next(self) -> tuple[str, int] | None:
        with self._cond:
            while not self._stopping.is_set():
                if not self._queue:
                    self._cond.wait(timeout=1.0)
                    continue
                due = self._queue[0][0]
                now = time.monotonic()
                if due > now:
                    self._cond.wait(timeout=due - now)
                    continue
                _, _, namespace, attempt = heapq.heappop(self._queue)
                return namespace, attempt
        return None

    def _work_loop(self) -> None:
        while True:
            item = self._next()
            if item is None:
                return
            namespace, attempt = item
            if not self.leading:
                self._handled.pop(namespace, None)
                continue
            try:
                self.handle(namespace, self._infos.get(namespace))
                self._infos.pop(namespace, None)
            except _NotLeader:
                self._handled.pop(namespace, None)
            except _Terminating:
                self._infos.pop(namespace, None)
                log.info("namespace %s is terminating or gone; nothing generated", namespace)
            except Exception as error:
                self.stats.errors += 1
                if self.counters is not None:
                    self.counters.count_generate_error()
                if attempt + 1 >= MAX_ATTEMPTS:
                    self._infos.pop(namespace, None)
                    log.error("generating in namespace %s failed %d times, giving up: %s", namespace,
                              attempt + 1, _short(error))
                    continue
                delay = min(BACKOFF_START * 2 ** attempt, BACKOFF_MAX) * (0.5 + random.random())
                log.warning("generating in namespace %s failed (attempt %d), retrying in %.1fs: %s", namespace,
                            attempt + 1, delay, _short(error))
                self._enqueue(namespace, attempt + 1, delay)

    # --- one namespace ---
    def handle(self, namespace: str, seen: NamespaceInfo | None = None) -> Plan:
        """Read the namespace's policies live (and the namespace, unless the watch just showed it); create
        what the plan says. Raises on failure.

        A namespace's labels that decide generation are protected and it cannot be un-terminated, so the
        watch's copy is good enough; a namespace deleted meanwhile makes the create fail (404, or 403
        "being terminated"), which ends the attempt without a retry.
        """
        if seen is not None and self._cache is not None:
            info: NamespaceInfo | None = seen
            coverage = self._cache.coverage(namespace)
        else:
            info, policies = self._read(namespace, seen)
            coverage = namespace_coverage(policies)
        if info is None:
            self.stats.skipped += 1
            return Plan(namespace, skip=f"namespace {namespace} no longer exists")
        plan = self.generation.plan(info, coverage)
        if plan.skip is not None:
            self.stats.skipped += 1
            log.info("nothing generated: %s", plan.skip)
            return plan
        self._create_all(plan)
        return plan

    def _create_all(self, plan: Plan) -> None:
        created = []
        for policy in plan.policies:
            if not self.leading:
                raise _NotLeader()
            if self._create(plan.namespace, policy):
                created.append(policy["metadata"]["name"])
        self.stats.done[plan.namespace] = time.time()
        if created:
            log.info("generated %s in namespace %s", ", ".join(created), plan.namespace)

    def _read(self, namespace: str, info: NamespaceInfo | None) -> tuple[NamespaceInfo | None, list[NetworkPolicy]]:
        if info is None:
            try:
                response: Any = self._core.read_namespace(namespace, _preload_content=False,
                                                          _request_timeout=REQUEST_TIMEOUT)
            except Exception as error:
                if getattr(error, "status", None) == 404:
                    return None, []
                raise
            info = parse_namespace(json.loads(response.data))
        listing: Any = self._networking.list_namespaced_network_policy(
            namespace, _preload_content=False, _request_timeout=REQUEST_TIMEOUT)
        items = json.loads(listing.data).get("items") or []
        return info, [parse_network_policy(item, namespace) for item in items if isinstance(item, Mapping)]

    def _create(self, namespace: str, policy: Mapping[str, Any]) -> bool:
        """Create one policy; True when created, False when it already existed (409 is success)."""
        created = create_policy(self._networking, namespace, policy)
        if created:
            self.stats.generated += 1
            if self.counters is not None:
                self.counters.count_generated(1)
        else:
            self.stats.existed += 1
        return created


def create_policy(networking: Any, namespace: str, policy: Mapping[str, Any]) -> bool:
    """POST one NetworkPolicy: True created, False AlreadyExists. Raises _Terminating or the API error."""
    try:
        networking.create_namespaced_network_policy(namespace, dict(policy), _preload_content=False,
                                                    _request_timeout=REQUEST_TIMEOUT)
        return True
    except Exception as error:
        status = getattr(error, "status", None)
        if status == 409:
            return False
        if status == 404 or (status == 403 and "being terminated" in str(getattr(error, "body", "") or "")):
            raise _Terminating() from None  # the namespace is gone or going: nothing to write, nothing to retry
        raise


class GenerationError(BadInput):
    """Generation cannot start or read the cluster (no cluster, a config whose policies break our rules,
    a listing refused); the message says why. Exit 2."""


def start_generation(config: Config, kubeconfig: str | None, counters: Counters | None = None,
                     on_leader: Any = None, cache: ClusterView | None = None) -> tuple[Any, Generator]:
    """`serve --generate`: a LeaderElector on the configured Lease and a Generator under it, both started.

    `on_leader(bool)` is told when leadership changes (the service's leader gauge).
    """
    from kubernetes import client

    from webhook.core.generate import own_rule_violations
    from webhook.kubeclient import KubeConfigError, load_configuration
    from webhook.leader import LeaderElector, LeaseSettings

    problems = own_rule_violations(config)
    if problems:
        raise GenerationError("generate: the generated policies break netpol-guard's own rules: "
                              + "; ".join(problems))
    try:
        configuration = load_configuration(kubeconfig)
    except KubeConfigError as error:
        raise GenerationError(str(error)) from None
    configuration.connection_pool_maxsize = WORKERS + 2  # one connection per worker, plus the Lease
    api_client = client.ApiClient(configuration)
    settings = config.generate
    elector = LeaderElector(api_client, LeaseSettings(
        namespace=config.namespace, name=settings.lease_name, lease_duration=settings.lease_duration_seconds,
        renew_deadline=settings.renew_deadline_seconds, retry_period=settings.retry_period_seconds,
    ))
    if on_leader is not None:
        elector.subscribe(lambda: on_leader(True), lambda: on_leader(False))
    generator = Generator(config, api_client, elector, counters, cache=cache)
    generator.start()
    elector.start()
    return elector, generator


@dataclass(frozen=True)
class BackfillResult:
    plan: Plan
    created: tuple[str, ...] = ()
    existed: tuple[str, ...] = ()
    error: str | None = None


def backfill(config: Config, kubeconfig: str | None, *, dry_run: bool) -> list[BackfillResult]:
    """One pass over every existing namespace: plan, and (unless dry_run) create. Never updates or deletes.

    Raises KubeConfigError or GenerationError (the cluster could not be read)."""
    from kubernetes import client

    from webhook.kubeclient import load_configuration

    api_client = client.ApiClient(load_configuration(kubeconfig))
    generation = Generation(config)
    core, networking = client.CoreV1Api(api_client), client.NetworkingV1Api(api_client)
    try:
        listed: Any = core.list_namespace(_preload_content=False, _request_timeout=(5.0, 60.0))
        namespaces = json.loads(listed.data)
        listed = networking.list_network_policy_for_all_namespaces(_preload_content=False,
                                                                   _request_timeout=(5.0, 60.0))
        policy_items = json.loads(listed.data).get("items") or []
    except Exception as error:
        raise GenerationError(f"cannot read the cluster: {_short(error)}") from None
    parsed: list[NetworkPolicy] = []
    unreadable: list[tuple[str, str, str]] = []
    for item in policy_items:
        try:
            parsed.append(parse_network_policy(item))
        except ObjectError as error:  # we cannot tell what it covers: leave its namespace alone
            metadata = item.get("metadata") or {}
            unreadable.append((str(metadata.get("namespace") or ""), str(metadata.get("name") or ""), str(error)))
    infos = []
    for item in namespaces.get("items") or []:
        try:
            infos.append(parse_namespace(item))
        except ObjectError:
            continue
    # Coverage as the webhook sees it: NetworkPolicies and every enabled coverage source the cluster serves.
    state = ClusterState()
    state.replace_all(infos, parsed, unreadable)
    state.replace_source_policies(_source_policies(config, kubeconfig))
    results = []
    for info in sorted(infos, key=lambda i: i.name):
        plan = generation.plan(info, state.coverage(info.name))
        if plan.policies and state.unreadable(info.name):
            plan = Plan(info.name, skip=f"namespace {info.name} holds a NetworkPolicy netpol-guard cannot read")
        if plan.skip is not None or dry_run:
            results.append(BackfillResult(plan))
            continue
        created: list[str] = []
        existed: list[str] = []
        try:
            for policy in plan.policies:
                name = str(policy["metadata"]["name"])
                (created if create_policy(networking, info.name, policy) else existed).append(name)
        except _Terminating:
            results.append(BackfillResult(plan, tuple(created), tuple(existed), "namespace is terminating"))
            continue
        except Exception as error:
            results.append(BackfillResult(plan, tuple(created), tuple(existed), _short(error)))
            continue
        results.append(BackfillResult(plan, tuple(created), tuple(existed)))
    return results


def _source_policies(config: Config, kubeconfig: str | None) -> list[Any]:
    """The cluster-wide and CNI policies of the enabled coverage sources, parsed (as `audit` lists them)."""
    from webhook.audit import _list_sources  # the one lister of coverage sources; AuditError names the failure

    found: dict[tuple[str, ...], Any] = {}
    for kind, items in _list_sources(kubeconfig, config.coverage_sources):
        for item in items:
            try:
                policy = kind.parse({**item, "kind": kind.kind, "apiVersion": f"{kind.group}/{kind.version}"},
                                    "default")
            except ObjectError:
                continue  # unreadable: counts for nothing, as in the webhook
            found.setdefault(policy.key, policy)
    return list(found.values())


class _Gone(Exception):
    """410 Gone: relist."""


def _short(error: BaseException) -> str:
    status = getattr(error, "status", None)
    if status is not None:
        body = str(getattr(error, "body", "") or "")
        try:
            message = json.loads(body).get("message", "")
        except ValueError:
            message = ""
        return f"HTTP {status} {getattr(error, 'reason', '') or ''} {message}".strip()
    return f"{type(error).__name__}: {error}".rstrip(": ")


def render_backfill(results: list[BackfillResult], output: str, dry_run: bool) -> str:
    """The backfill report: namespaces that get (or would get) policies, then a summary line."""
    acting = [r for r in results if r.plan.policies]
    if output == "json":
        return json.dumps({"dryRun": dry_run, "namespaces": [
            {"namespace": r.plan.namespace, "policies": list(r.plan.names), "created": list(r.created),
             "existed": list(r.existed), "error": r.error}
            for r in acting
        ], "skipped": [{"namespace": r.plan.namespace, "reason": r.plan.skip} for r in results if r.plan.skip]},
            indent=2) + "\n"
    lines = []
    for result in acting:
        namespace = result.plan.namespace
        if dry_run:
            lines.append(f"would create  {namespace}: {', '.join(result.plan.names)}")
            continue
        if result.created:
            lines.append(f"created       {namespace}: {', '.join(result.created)}")
        if result.existed:
            lines.append(f"existed       {namespace}: {', '.join(result.existed)}")
        if result.error:
            lines.append(f"FAILED        {namespace}: {result.error}")
    skipped = len(results) - len(acting)
    verb = "would get" if dry_run else "got"
    lines.append(f"{len(acting)} namespace{'' if len(acting) == 1 else 's'} {verb} the generated policies; "
                 f"{skipped} left alone (exempt, opted out, not selected, terminating or already covered)"
                 + ("; dry run, nothing changed" if dry_run else ""))
    return "\n".join(lines) + "\n"
