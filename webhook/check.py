"""`netpol-guard check`: judge manifests offline with the same engine as the webhook.

Every object is judged as a CREATE in a cluster holding the Namespaces and
NetworkPolicies found in the same inputs (order does not matter, as with
`kubectl apply` of a bundle whose policies were applied first).

With `--generate`, the Namespaces in the inputs that generation would cover get the
generated policies added to that cluster first (webhook.core.generate decides which and
what, as for the generator itself), and the output says which objects were judged so.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace

from webhook.core.config import Config
from webhook.core.engine import Decision, Engine, Request, User
from webhook.core.errors import ObjectError
from webhook.core.generate import Generation, Plan
from webhook.core.netpol import parse_network_policy
from webhook.core.sources import source_kind_of
from webhook.core.state import ClusterState, ClusterView, parse_namespace
from webhook.loading import InputError, Manifest, read_manifests, state_from_manifests

# Built-in kinds that live outside namespaces: reported with namespace "" (never --namespace).
CLUSTER_SCOPED_KINDS = frozenset({
    "Namespace", "Node", "PersistentVolume", "ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition",
    "StorageClass", "CSIDriver", "CSINode", "VolumeAttachment", "PriorityClass", "RuntimeClass", "IngressClass",
    "ValidatingWebhookConfiguration", "MutatingWebhookConfiguration", "ValidatingAdmissionPolicy",
    "ValidatingAdmissionPolicyBinding", "APIService", "CertificateSigningRequest", "FlowSchema",
    "PriorityLevelConfiguration", "ComponentStatus",
})


@dataclass(frozen=True)
class CheckResult:
    manifest: Manifest
    namespace: str  # "" for cluster-scoped objects (Namespace)
    decision: Decision
    # `audit` only: the object exists in the cluster but cannot be read (the API server would refuse it today).
    error: str | None = None
    assumed: tuple[str, ...] | None = None  # check --generate: generated policies assumed in its namespace

    @property
    def allowed(self) -> bool:
        return self.error is None and self.decision.allowed

    def as_json(self) -> dict[str, object]:
        decision = self.decision
        data: dict[str, object] = {
            "kind": self.manifest.kind,
            "namespace": self.namespace,
            "name": self.manifest.name,
            "allowed": self.allowed,
            "violations": [
                {"rule": v.rule, "action": v.action, "message": v.text} for v in decision.violations
            ],
            "isolation": decision.isolation.as_dict() if decision.isolation is not None else None,
        }
        if self.error is not None:
            data["error"] = self.error
        if self.assumed is not None:
            data["generated"] = list(self.assumed)
        return data


@dataclass(frozen=True)
class CheckReport:
    results: list[CheckResult]
    generated: list[Plan] | None = None  # check --generate: the namespaces generation would cover

    @property
    def allowed(self) -> bool:
        return all(result.allowed for result in self.results)


def run_check(
    paths: list[str],
    config: Config,
    *,
    default_namespace: str = "default",
    user: str = "",
    groups: Iterable[str] = (),
    generate: bool = False,
) -> CheckReport:
    """Read and judge; raises InputError (with file and document) for bad input.

    `generate`: judge as if generation were on (whatever `generate.enabled` says).
    """
    # Judged as creations: the API server clears deletionTimestamp on create, so a manifest carrying one
    # must not be waved through as "being deleted".
    manifests = [_as_created(m) for m in read_manifests(paths)]
    if not manifests:
        raise InputError(f"no Kubernetes objects found in {', '.join(paths) or 'the inputs'}")
    state = state_from_manifests(manifests, default_namespace, config.coverage_sources)
    plans = None
    if generate:
        config = config.model_copy(update={"generate": config.generate.model_copy(update={"enabled": True})})
        plans = _add_generated(config, manifests, state)
    assumed = {plan.namespace: plan.names for plan in plans or ()}
    engine = Engine(config, offline=True)
    requester = User(username=user, groups=frozenset(groups))
    results = []
    for manifest in manifests:
        try:
            result = judge_as_created(engine, state, manifest, default_namespace, requester)
        except ObjectError as error:
            raise InputError(f"{manifest.where}: {manifest.kind} {manifest.name}: {error}") from None
        if plans is not None:
            result = CheckResult(result.manifest, result.namespace, result.decision,
                                 assumed=assumed.get(result.namespace, ()))
        results.append(result)
    return CheckReport(results, plans)


def _add_generated(config: Config, manifests: list[Manifest], state: ClusterState) -> list[Plan]:
    """Plan generation for each Namespace in the inputs, and add what it would create to `state`."""
    generation = Generation(config)
    plans = []
    seen: set[str] = set()
    for manifest in manifests:
        if manifest.kind != "Namespace" or manifest.name in seen:
            continue
        seen.add(manifest.name)
        info = state.namespace(manifest.name) or parse_namespace(manifest.obj)
        plan = generation.plan(info, state.coverage(info.name))
        if plan.policies:
            for obj in plan.policies:
                state.set_policy(parse_network_policy(obj, info.name))
            plans.append(plan)
    return plans


def _as_created(manifest: Manifest) -> Manifest:
    metadata = manifest.obj.get("metadata")
    if not isinstance(metadata, Mapping) or "deletionTimestamp" not in metadata:
        return manifest
    cleared = {k: v for k, v in metadata.items() if k not in ("deletionTimestamp", "deletionGracePeriodSeconds")}
    return replace(manifest, obj={**manifest.obj, "metadata": cleared})


def judge_as_created(engine: Engine, view: ClusterView, manifest: Manifest, default_namespace: str,
                     user: User | None = None) -> CheckResult:
    """One object judged as a CREATE, with per-pod isolation (check and audit). Raises ObjectError."""
    source = source_kind_of(manifest.obj)
    cluster_scoped = manifest.kind in CLUSTER_SCOPED_KINDS if source is None else not source.namespaced
    namespace = "" if cluster_scoped else manifest.namespace(default_namespace)
    request = Request(kind=manifest.kind, operation="CREATE", namespace=namespace, name=manifest.name,
                      object=manifest.obj, user=user or User())
    return CheckResult(manifest, namespace, engine.review(request, view, with_isolation=True))


def render(report: CheckReport, output: str) -> str:
    if output == "json":
        data: dict[str, object] = {"results": [r.as_json() for r in report.results]}
        if report.generated is not None:
            data["generated"] = [{"namespace": p.namespace, "policies": list(p.names)} for p in report.generated]
        return json.dumps(data, indent=2) + "\n"
    return _table(report)


def _table(report: CheckReport) -> str:
    rows = [("RESULT", "KIND", "NAMESPACE/NAME", "ISOLATION", "RULES")]
    details: list[str] = []
    for result in report.results:
        decision = result.decision
        if result.error is not None:
            verdict = "ERROR"
            details.append(f"ERROR {result.manifest.where}\n  {result.error}")
        elif not decision.allowed:
            verdict = "DENY"
        elif decision.violations:
            verdict = "WARN"
        else:
            verdict = "ok"
        name = f"{result.namespace}/{result.manifest.name}" if result.namespace else result.manifest.name
        isolation = "-"
        if decision.isolation is not None:
            isolation = "ingress:{} egress:{}".format(
                "yes" if decision.isolation.ingress else "no", "yes" if decision.isolation.egress else "no"
            )
        rules = ",".join(decision.rules) or ("exempt" if decision.exempt else "-")
        rows.append((verdict, result.manifest.kind, name, isolation, rules))
        for violation in decision.violations:
            details.append(f"{violation.action.upper()} {result.manifest.where}\n  " +
                           violation.text.replace("\n", "\n  "))
        details.extend(f"NOTE {result.manifest.where}\n  {note}" for note in decision.notes)
        if result.assumed:
            details.append(f"NOTE {result.manifest.where}\n  judged as if netpol-guard had generated "
                           f"{', '.join(result.assumed)} in namespace {result.namespace} (--generate)")
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() for row in rows]
    denied = sum(1 for r in report.results if r.error is None and not r.decision.allowed)
    warned = sum(1 for r in report.results if r.decision.allowed and r.decision.violations)
    unreadable = sum(1 for r in report.results if r.error is not None)
    count = len(report.results)
    summary = f"{count} object{'' if count == 1 else 's'}: {denied} denied, {warned} with warnings"
    if unreadable:
        summary += f", {unreadable} unreadable"
    text = "\n".join(lines) + "\n"
    if report.generated is not None:
        covered = [f"  {p.namespace}: {', '.join(p.names)}" for p in report.generated]
        text += "\nGeneration (--generate) would create:\n" + ("\n".join(covered) if covered else "  nothing") + "\n"
    if details:
        text += "\n" + "\n".join(details) + "\n"
    return text + "\n" + summary + "\n"
