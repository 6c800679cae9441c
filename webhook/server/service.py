"""The admission service: judge a parsed review against the cluster view, confirm a deny live, record it.

No HTTP here: `webhook.server.app` reads bodies and sends answers; `webhook.server.review`
parses and builds them. The engine runs in the event loop (it is a few dictionary
lookups); only the live confirm before a deny goes to a thread, because it waits on the
API server (shared per namespace and run on its own pool: `webhook.server.confirm`).
Any failure to judge a well-formed review becomes the configured fail-mode answer (deny by
default) saying why.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import structlog

from webhook.cluster import ClusterSource
from webhook.cluster.source import LiveNamespace
from webhook.core.config import Config
from webhook.core.coverage import namespace_coverage
from webhook.core.engine import JUDGED_KINDS, Decision, Engine
from webhook.core.generate import Generation
from webhook.core.netpol import parse_network_policy
from webhook.core.state import ClusterView
from webhook.core.workloads import WORKLOAD_KINDS
from webhook.errors import BadReview, LiveReadError, ObjectError, clip, clip_text
from webhook.server.confirm import LiveConfirm
from webhook.server.metrics import Metrics
from webhook.server.pending import NamespaceLocks, PendingRemovals
from webhook.server.review import Outcome, Review, failure_outcome, outcome_of

log = structlog.get_logger("netpol_guard")
GENERATION_POLL_SECONDS = 0.1


class Service:
    """The admission logic behind the routes: one engine, one source, one metrics registry."""

    def __init__(self, config: Config, source: ClusterSource, metrics: Metrics) -> None:
        self.config = config
        self.engine = Engine(config)
        self.generation = Generation(config)
        self.source = source
        self.metrics = metrics
        self.locks = NamespaceLocks()
        self.pending = PendingRemovals()
        self.live = LiveConfirm(source.live_namespace, self._cached_namespace)

    def _cached_namespace(self, namespace: str) -> LiveNamespace:
        """The cache's view of a namespace now (a recent live read merged with the watch events since)."""
        state = self.source.state
        return LiveNamespace(state.namespace(namespace), list(state.policies(namespace)),
                             dict(state.unreadable(namespace)))

    # ----- readiness -----
    def not_ready_reason(self) -> str | None:
        """None when the service can answer from its cache; otherwise why not (for /readyz)."""
        if self.source.synced:
            return None
        return self.source.not_ready_reason() or "not ready"

    # ----- judging -----
    async def judge(self, review: Review) -> Outcome:
        """The answer to one review: the engine over the cached view, then a live confirm before a deny.

        Raises BadReview (HTTP 400) when the object sent is malformed.
        """
        request = review.request
        if (request.kind not in JUDGED_KINDS or request.operation == "CONNECT"
                or (review.sub_resource and not self._judged_subresource(request.kind, review.sub_resource))):
            # Other subresources (scale, ephemeralcontainers, namespaces/finalize...) never carry a new pod
            # template or a label change we guard; namespace deletion is never blocked.
            return Outcome(allowed=True, decision="no_opinion", mode=self.config.mode)
        if not self.source.synced:
            return self.failure("the cluster state",
                                self.source.not_ready_reason() or "the cluster cache has not synced yet")
        if request.kind == "NetworkPolicy" and request.operation in ("DELETE", "UPDATE"):
            # Decisions that can remove coverage, one at a time per namespace, each seeing the removals
            # allowed before it: two parallel DELETEs of two deny-alls can no longer both pass.
            async with self.locks.hold(request.namespace):
                outcome, decision = await self._judge(review)
                if decision is not None and outcome.allowed and decision.judged and not request.dry_run:
                    self._record_removal(review)
                return outcome
        outcome, _ = await self._judge(review)
        return outcome

    def _judged_subresource(self, kind: str, sub_resource: str) -> bool:
        """Subresources that can change labels the rules read: judged exactly like the main resource."""
        if sub_resource != "status":
            return False
        return kind == "Namespace" or (kind == "Pod" and self.config.coverage == "pod")

    async def _judge(self, review: Review) -> tuple[Outcome, Decision | None]:
        request = review.request
        view = self.pending.view(self.source.state, request.namespace)
        try:
            decision = self.engine.review(request, view)
        except ObjectError as error:
            raise BadReview(f"request.object: {request.kind} {request.namespace}/{request.name}: {error}") from None
        if decision.confirm_namespace is not None and self.source.live:
            return await self.confirm(review, view, decision, decision.confirm_namespace)
        return outcome_of(decision, confirmed=False), decision

    async def confirm(self, review: Review, view: ClusterView, decision: Decision,
                      namespace: str) -> tuple[Outcome, Decision | None]:
        """Re-judge with `namespace` as the API server has it now, so a policy applied a moment ago counts."""
        request = review.request
        try:
            live = await self.live.namespace(namespace)  # shared per namespace, see confirm.py
        except LiveReadError as error:
            why = f"{error}; the cached view would deny: {decision.deny_message()}"
            return self.failure("the cluster state", why), None
        # The live read may not show a removal allowed a moment ago either: apply the pending ones on top.
        live_view = self.pending.live_view(view, namespace, live.info, live.policies, live.unreadable)
        try:
            decision = self.engine.review(request, live_view)
        except ObjectError as error:
            raise BadReview(f"request.object: {request.kind} {request.namespace}/{request.name}: {error}") from None
        if not decision.allowed and request.kind in WORKLOAD_KINDS and self.generation.awaits_generation(
                live.info, namespace_coverage(live.policies), time.time()):
            try:
                return await self._await_generation(review, view, namespace, decision), None
            except LiveReadError as error:
                return self.failure("the cluster state", str(error)), None
        return outcome_of(decision, confirmed=True), decision

    async def _await_generation(self, review: Review, view: ClusterView, namespace: str,
                                decision: Decision) -> Outcome:
        """A governed namespace seconds old, whose generated default-deny is on its way: re-read until it is
        there or `generate.waitSeconds` have passed (well under the webhook timeout), then judge again.
        Nothing is admitted before the policy exists; the answer records the wait. Only workloads wait."""
        started = time.monotonic()
        deadline = started + self.config.generate.wait_seconds
        while not decision.allowed and time.monotonic() < deadline:
            await asyncio.sleep(min(GENERATION_POLL_SECONDS, max(deadline - time.monotonic(), 0)))
            live = await asyncio.to_thread(self.source.live_namespace, namespace)
            live_view = self.pending.live_view(view, namespace, live.info, live.policies, live.unreadable)
            decision = self.engine.review(review.request, live_view)
        waited = time.monotonic() - started
        note = (f"waited {waited:.2f}s for netpol-guard's generated default-deny in new namespace {namespace}: "
                + ("it exists now" if decision.allowed else "it did not appear"))
        outcome = outcome_of(decision, confirmed=True)
        outcome.annotations["generation-wait"] = note
        outcome.waited = round(waited, 3)
        if not decision.allowed:
            outcome.message = f"{outcome.message}\n({note})"
        return outcome

    def _record_removal(self, review: Review) -> None:
        request = review.request
        replacement = None
        if request.operation == "UPDATE" and request.object is not None:
            try:
                replacement = parse_network_policy(request.object, request.namespace)
            except ObjectError:
                return  # already refused as bad input
        self.pending.record(request.namespace, request.name, replacement)

    def failure(self, what: str, why: str) -> Outcome:
        return failure_outcome(self.config, what, why)

    # ----- recording -----
    def record(self, review: Review, outcome: Outcome, duration: float) -> None:
        """Metrics and one log line per decision; never the object, never credentials.

        Every value here is bounded already (the envelope's by parse_review; the user and the error
        clipped here), so the logging processor that clips other lines skips this one."""
        request = review.request
        kind = request.kind if request.kind in JUDGED_KINDS else "other"
        self.metrics.count_request(kind, request.operation, outcome.decision, outcome.mode)
        self.metrics.duration.observe(duration)
        for rule, action in outcome.violations:
            self.metrics.count_violation(rule, action)
        log.info(
            "decision", uid=review.uid, kind=request.kind, namespace=request.namespace, name=request.name,
            operation=request.operation, user=clip(request.user.username), dry_run=request.dry_run,
            decision=outcome.decision, mode=outcome.mode, rules=list(outcome.rules),
            duration_ms=round(duration * 1000, 3),
            **_optional(exempt=outcome.exempt, confirmed=outcome.confirmed or None,
                        error=clip_text(outcome.error, 1024) if outcome.error else None,
                        waited_s=outcome.waited),
        )


def _optional(**values: Any) -> dict[str, Any]:
    return {key: value for key, value in values.items() if value is not None}
