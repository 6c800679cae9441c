"""The engine: one admission question in, one decision out.

The webhook, `check` and `audit` all call `Engine.review`, so they cannot disagree.
A request is plain data (`Request`); the cluster is a `ClusterView`. When a deny
rests on the policies of a namespace, the decision says which namespace
(`confirm_namespace`), so the service can re-read it live and ask again before
refusing: a deny-all applied a moment earlier is never missed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from webhook.core.config import SYSTEM_NAMESPACES, Config, Mode
from webhook.core.coverage import NOT_ISOLATED, Isolation, isolation_of, namespace_coverage, with_sources
from webhook.core.errors import ObjectError
from webhook.core.netpol import NetworkPolicy, parse_network_policy
from webhook.core.objects import NAME_LABEL, check_metadata, labels_of, name_of
from webhook.core.rules import CATALOGUE, Finding, Violation, normalised_cidr_notes, policy_findings
from webhook.core.selectors import LabelSelector
from webhook.core.sources import SOURCE_KINDS, SourceKind, group_of, source_kind
from webhook.core.sources.base import SourcePolicy, compose
from webhook.core.state import ClusterView, namespace_or_default
from webhook.core.workloads import TEMPLATE_PATHS, WORKLOAD_KINDS, PodTemplate, pod_template

Operation = Literal["CREATE", "UPDATE", "DELETE", "CONNECT"]
__all__ = ["JUDGED_KINDS", "Decision", "Engine", "Operation", "Request", "User", "Violation", "default_deny_json"]
JUDGED_KINDS = WORKLOAD_KINDS | {"NetworkPolicy", "Namespace"} | {k.kind for k in SOURCE_KINDS}
MAX_NAMED_NAMESPACES = 5


@dataclass(frozen=True, slots=True)
class User:
    username: str = ""
    groups: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class Request:
    """An admission question: `kind` is the object's kind, `namespace` "" for cluster-scoped objects."""

    kind: str
    operation: Operation
    namespace: str
    name: str
    object: Mapping[str, Any] | None = None
    old_object: Mapping[str, Any] | None = None
    user: User = User()
    dry_run: bool = False
    group: str = ""  # the object's API group; "" means "read it from the object's apiVersion"


@dataclass(frozen=True, slots=True)
class Decision:
    kind: str
    namespace: str
    name: str
    mode: Mode
    violations: tuple[Violation, ...] = ()
    judged: bool = True  # False: not a kind or operation netpol-guard has an opinion on
    exempt: str | None = None  # why no rule applied (exempt namespace, principal, being deleted)
    isolation: Isolation | None = None  # real per-pod isolation, for pods and pod templates
    confirm_namespace: str | None = None  # a deny rests on this namespace's policies: re-read and retry
    notes: tuple[str, ...] = ()  # facts worth saying that break no rule (e.g. a CIDR normalised)

    @property
    def allowed(self) -> bool:
        return not any(v.action == "deny" for v in self.violations)

    @property
    def denials(self) -> tuple[Violation, ...]:
        return tuple(v for v in self.violations if v.action == "deny")

    @property
    def rules(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(v.rule for v in self.violations))

    def deny_message(self) -> str:
        return "\n".join(v.text for v in self.denials)

    def warnings(self) -> list[str]:
        """Short lines for AdmissionReview `warnings` (kubectl prints each as `Warning: ...`)."""
        lines = []
        for violation in self.violations:
            if violation.action == "warn":
                prefix = "[audit mode, not enforced] " if self.mode == "audit" else ""
                lines.append(prefix + violation.message)
                if violation.fix:
                    lines.append(violation.fix)
        return lines

    def audit_annotations(self) -> dict[str, str]:
        """`auditAnnotations` for the API server audit log: one key per rule id (keys must not contain '/';
        the API server prefixes them with the webhook's name). The value says what was done, then why."""
        annotations: dict[str, str] = {}
        for violation in self.violations:
            entry = f"{'denied' if violation.action == 'deny' else 'warned'}: {violation.message}"
            previous = annotations.get(violation.rule)
            annotations[violation.rule] = entry if previous is None else f"{previous}; {entry}"
        return annotations


@dataclass
class _Context:
    request: Request
    namespace: str
    mode: Mode
    ref: str
    findings: list[Finding] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    confirm: bool = False


class Engine:
    def __init__(self, config: Config, *, offline: bool = False) -> None:
        """`offline` is True for `check`: objects have not been through API server defaulting."""
        self.config = config
        self.offline = offline
        self._exempt_names = config.exempt_namespace_names()
        selector = config.exemptions.namespace_selector
        self._exempt_selector: LabelSelector | None = selector.compiled() if selector else None
        self._overrides = [(o.namespace_selector.compiled(), o.mode) for o in config.mode_overrides]
        self._protected_keys = config.protected_label_keys() - {NAME_LABEL}
        self._exempt_name_sources = _exempt_name_sources(config)

    # ----- public -----
    def review(self, request: Request, view: ClusterView, *, with_isolation: bool = False) -> Decision:
        """Judge one request. Raises ObjectError when the object is malformed."""
        obj = request.old_object if request.operation == "DELETE" else request.object
        namespace = request.name if request.kind == "Namespace" else request.namespace
        source = self._source_kind(request, obj)
        if source is not None and not source.namespaced:
            namespace = ""
        # Mode overrides and the label exemption read namespace labels; a Namespace request is judged on
        # neither (labels = None): protected-labels guards those very labels, so a namespace in audit mode
        # or exempt by label must not be able to weaken its own guard.
        cluster_scoped = request.kind == "Namespace" or (source is not None and not source.namespaced)
        labels = None if cluster_scoped else self._namespace_labels(view, namespace)
        mode = self.config.mode if labels is None else self.mode_for_namespace(labels)
        ref = f"{request.kind} {_object_name(request, obj)}"
        if obj is None and request.kind == "NetworkPolicy" and request.operation == "DELETE":
            obj = {"metadata": {"name": request.name, "namespace": namespace}}
        if request.kind not in JUDGED_KINDS or request.operation == "CONNECT" or obj is None:
            return Decision(kind=request.kind, namespace=namespace, name=request.name, mode=mode, judged=False)

        if request.operation != "DELETE":
            check_metadata(request.kind, obj)
        template = pod_template(request.kind, obj) if request.kind in WORKLOAD_KINDS else None
        if template is not None and _template_unchanged(request):
            # A controller UPDATE that leaves the pod template alone (scaling, the garbage collector removing an
            # ownerReference, an annotation) changes nothing about the pods: no opinion, or an object admitted
            # in audit mode could never be scaled, annotated or orphaned once its namespace enforces.
            return Decision(kind=request.kind, namespace=namespace, name=request.name, mode=mode, judged=False)
        isolation = None
        if with_isolation and template is not None:
            isolation = (
                NOT_ISOLATED if template.host_network else self._pod_isolation(view, namespace, template.labels)
            )

        exempt = self._exemption(request, namespace, obj, labels)
        if exempt is not None:
            return Decision(kind=request.kind, namespace=namespace, name=request.name, mode=mode,
                            exempt=exempt, isolation=isolation)

        context = _Context(request=request, namespace=namespace, mode=mode, ref=ref)
        if template is not None:
            self._judge_workload(context, template, view)
        elif source is not None:
            self._judge_source_policy(context, view, source)
        elif request.kind == "NetworkPolicy":
            self._judge_network_policy(context, view)
        else:
            self._judge_namespace(context)
        violations = self._violations(context)
        denies_on_policies = context.confirm and any(v.action == "deny" for v in violations)
        # Built once, not copied with dataclasses.replace: this is the webhook's hot path.
        return Decision(
            kind=request.kind, namespace=namespace, name=request.name, mode=mode,
            violations=violations, isolation=isolation,
            confirm_namespace=namespace if denies_on_policies else None, notes=tuple(context.notes),
        )

    @staticmethod
    def _source_kind(request: Request, obj: Mapping[str, Any] | None) -> SourceKind | None:
        """The coverage-source kind of the request's object, None for NetworkPolicy and every other kind."""
        group = request.group or (group_of(obj.get("apiVersion")) if isinstance(obj, Mapping) else "")
        if group:
            return source_kind(group, request.kind)
        if request.kind == "NetworkPolicy":
            return None  # no group anywhere: networking.k8s.io, as before
        return next((k for k in SOURCE_KINDS if k.kind == request.kind), None)

    @staticmethod
    def _pod_isolation(view: ClusterView, namespace: str, labels: Mapping[str, str]) -> Isolation:
        """Real isolation of one pod: its namespace's NetworkPolicies plus the other coverage sources."""
        isolation = isolation_of(labels, view.policies(namespace))
        sources = view.source_policies(namespace)
        if not sources:
            return isolation
        return with_sources(isolation, compose(namespace_or_default(view, namespace), sources, labels))

    def uncovered_namespaces(self, view: ClusterView) -> list[tuple[str, Mode]]:
        """(namespace, mode) of every namespace the rules apply to that lacks namespace-wide deny-all coverage.

        What metrics and alerts watch: in enforce mode this should stay empty; a namespace here lost its coverage
        past the webhook (several replicas racing, an outage with failurePolicy Ignore, a direct etcd write).
        """
        found: list[tuple[str, Mode]] = []
        selector = self._exempt_selector
        for info in view.all_namespaces():
            if info.terminating or info.name in self._exempt_names:
                continue
            if selector is not None and selector.matches(info.labels):
                continue
            if info.name in self.config.rules.deny_all_coverage.exempt_namespaces:
                continue
            if not view.coverage(info.name).complete:
                found.append((info.name, self.mode_for_namespace(info.labels)))
        return found

    def mode_for_namespace(self, labels: Mapping[str, str]) -> Mode:
        for selector, mode in self._overrides:
            if selector.matches(labels):
                return mode
        return self.config.mode

    # ----- exemptions, actions -----
    @staticmethod
    def _namespace_labels(view: ClusterView, namespace: str) -> Mapping[str, str]:
        info = view.namespace(namespace)
        return info.labels if info is not None else {NAME_LABEL: namespace}

    def _exemption(
        self, request: Request, namespace: str, obj: Mapping[str, Any], labels: Mapping[str, str] | None
    ) -> str | None:
        metadata = obj.get("metadata") if isinstance(obj, Mapping) else None
        if isinstance(metadata, Mapping) and metadata.get("deletionTimestamp") is not None:
            return "the object is being deleted"
        if namespace in self._exempt_names and not (request.kind == "Namespace" and request.operation == "CREATE"):
            # Creating a namespace whose name is exempt is judged (protected-labels): whoever creates
            # `monitoring` first must not become exempt by choosing the name.
            return f"namespace {namespace} is exempt by name"
        if self.config.exemptions.principals.includes(request.user.username, request.user.groups):
            # Exempt principals (e.g. a GitOps controller) are trusted with everything, namespace labels included.
            return f"requester {request.user.username or '(unknown)'} is an exempt principal"
        if labels is not None and self._exempt_selector is not None and self._exempt_selector.matches(labels):
            return f"namespace {namespace} is exempt by label ({self._exempt_selector.describe()})"
        return None

    def _violations(self, context: _Context) -> tuple[Violation, ...]:
        violations = []
        for finding in context.findings:
            settings = self.config.rules.get(finding.rule)
            if settings.action == "off" or context.namespace in settings.exempt_namespaces:
                continue
            action: Literal["deny", "warn"] = (
                "deny" if settings.action == "enforce" and context.mode == "enforce" else "warn"
            )
            violations.append(finding if finding.action == action else replace(finding, action=action))
        return tuple(violations)

    # ----- workloads -----
    def _judge_workload(self, context: _Context, template: PodTemplate, view: ClusterView) -> None:
        request = context.request
        if request.operation == "DELETE":
            return
        pod_update = request.kind == "Pod" and request.operation == "UPDATE"
        if pod_update and (self.config.coverage != "pod" or (
                request.old_object is not None and labels_of(request.old_object) == dict(template.labels))):
            # A Pod's namespace never changes: only in pod mode, and only a label change, can alter its coverage.
            # (Controllers' finalizer and annotation updates on existing pods are never refused.)
            return
        if template.host_network:
            # Outside NetworkPolicy altogether: coverage says nothing about such pods, host-network does.
            if not pod_update:  # hostNetwork is immutable on a Pod
                context.findings.append(Finding(
                    "host-network",
                    f"host-network: {context.ref}: {template.field or 'spec'}"
                    f"{'.spec' if template.field else ''}.hostNetwork is true; no NetworkPolicy can isolate it",
                    "fix: remove hostNetwork: true (use a Service or hostPort for node-level access)",
                ))
            return
        if self.config.coverage == "namespace":
            coverage = view.coverage(context.namespace)
            if not coverage.complete:
                context.findings.append(_namespace_coverage_finding(context, coverage, view))
                context.confirm = True
        else:
            isolation = self._pod_isolation(view, context.namespace, template.labels)
            if not isolation.complete:
                context.findings.append(_pod_coverage_finding(context, template, isolation, view))
                context.confirm = True

    # ----- network policies -----
    def _judge_network_policy(self, context: _Context, view: ClusterView) -> None:
        request = context.request
        if request.operation in ("CREATE", "UPDATE") and request.object is not None:
            policy = parse_network_policy(request.object, context.namespace)
            # Offline (`check`) the inputs need not hold every namespace: only by-construction selectors count.
            namespaces = None if self.offline else view.all_namespaces()
            context.findings += policy_findings(policy, self.config, self.offline, namespaces or None)
            context.notes += normalised_cidr_notes(policy)
        if request.operation in ("UPDATE", "DELETE"):
            old: NetworkPolicy | None
            if request.old_object is not None:
                try:
                    old = parse_network_policy(request.old_object, context.namespace)
                except ObjectError as error:
                    # Stored by the API server, unreadable to us: it must never block its own removal or fix.
                    context.notes.append(f"{context.ref} as stored cannot be read ({error}); judged without it")
                    old = None
            else:  # API servers before 1.15 sent no oldObject on DELETE: use what the cache holds
                old = _cached_policy(view, context.namespace, request.name)
            if old is not None:
                self._protect_deny_all(context, view, old)

    def _protect_deny_all(self, context: _Context, view: ClusterView, old: NetworkPolicy) -> None:
        request = context.request
        info = view.namespace(context.namespace)
        if info is not None and info.terminating:
            return  # the namespace is being deleted: its policies must be allowed to go
        others = [p for p in view.policies(context.namespace) if p.name != old.name]
        after: list[NetworkPolicy] = list(others)
        if request.operation == "UPDATE" and request.object is not None:
            after.append(parse_network_policy(request.object, context.namespace))
        before = namespace_coverage([*others, old])
        remaining = namespace_coverage(after)
        sources = view.source_policies(context.namespace)
        if sources:  # what the cluster-wide and CNI policies cover stays covered without this policy
            covered = compose(namespace_or_default(view, context.namespace), sources)
            before, remaining = with_sources(before, covered), with_sources(remaining, covered)
        # Any direction the namespace-wide policies isolate now and would not after: a deny-all being removed,
        # even where the namespace was only half covered.
        lost = [d for d in ("Ingress", "Egress") if before.by(d) and not remaining.by(d)]
        if not lost:
            return
        verb = "deleting" if request.operation == "DELETE" else "this change to"
        context.findings.append(Finding(
            "protect-deny-all",
            f"protect-deny-all: {verb} NetworkPolicy {old.ref} would leave namespace {context.namespace} "
            f"without default-deny for {' and '.join(lost)}{_unreadable_text(view, context.namespace)}",
            "fix: apply another default-deny policy for that direction first (deleting the namespace is allowed)",
        ))
        context.confirm = True

    # ----- cluster-wide and CNI policies (coverage sources) -----
    def _judge_source_policy(self, context: _Context, view: ClusterView, kind: SourceKind) -> None:
        """protect-deny-all for a coverage source. (Org rules on their allow rules would be judged here too.)"""
        request = context.request
        new = old = None
        if request.operation in ("CREATE", "UPDATE") and request.object is not None:
            new = kind.parse(request.object, context.namespace or "default")
        if request.operation in ("UPDATE", "DELETE") and request.old_object is not None:
            old = kind.parse(request.old_object, context.namespace or "default")
        if old is None and (new is None or not any(u.openers for u in new.units)):
            return  # a new policy without catch-all Accept/Allow/Pass rules can only add coverage
        changed = old or new
        assert changed is not None
        lost = self._coverage_lost(view, old, new, changed.namespace)
        if not lost:
            return
        verb = {"DELETE": "deleting", "UPDATE": "this change to", "CREATE": "creating"}[request.operation]
        named = [f"{ns} ({' and '.join(directions)})" for ns, directions in lost[:MAX_NAMED_NAMESPACES]]
        more = f" and {len(lost) - MAX_NAMED_NAMESPACES} more" if len(lost) > MAX_NAMED_NAMESPACES else ""
        count = f"{len(lost)} namespace{'' if len(lost) == 1 else 's'}"
        context.findings.append(Finding(
            "protect-deny-all",
            f"protect-deny-all: {verb} {changed.label} would leave {count} without default-deny: "
            f"{', '.join(named)}{more}",
            "fix: apply another default-deny for those namespaces first (deleting a namespace is allowed)",
        ))

    def _coverage_lost(
        self, view: ClusterView, old: SourcePolicy | None, new: SourcePolicy | None, namespace: str,
    ) -> list[tuple[str, list[str]]]:
        """Namespaces (not terminating, not exempt) that are covered today and would not be after the change."""
        settings = self.config.rules.get("protect-deny-all")
        names = [namespace] if namespace else view.namespace_names()
        changed = [p for p in (old, new) if p is not None]
        voids = new is not None and any(u.openers for u in new.units)
        lost: list[tuple[str, list[str]]] = []
        for name in names:
            info = namespace_or_default(view, name)
            if info.terminating or name in self._exempt_names or name in settings.exempt_namespaces:
                continue
            if self._exempt_selector is not None and self._exempt_selector.matches(info.labels):
                continue
            if not any(p.applies_to_namespace(info) for p in changed):
                continue
            before = view.coverage(name)
            if not (before.ingress or before.egress):
                continue
            if old is not None and (new is None or not voids) and old.label not in before.ingress_by + before.egress_by:
                continue  # the changed policy covers nothing here and the new one cannot void anything
            keys = {p.key for p in changed}
            sources = [p for p in view.source_policies(name) if p.key not in keys]
            if new is not None and new.applies_to_namespace(info):
                sources.append(new)
            after = with_sources(namespace_coverage(view.policies(name)), compose(info, sources))
            gone = [d for d in ("Ingress", "Egress") if before.by(d) and not after.by(d)]
            if gone:
                lost.append((name, gone))
        return lost

    # ----- namespaces -----
    def _judge_namespace(self, context: _Context) -> None:
        request = context.request
        exempt_by = self._exempt_name_sources.get(context.namespace) if request.operation == "CREATE" else None
        if request.operation not in ("CREATE", "UPDATE") or not (self._protected_keys or exempt_by):
            return
        admins = self.config.rules.protected_labels.admin_principals
        if admins.includes(request.user.username, request.user.groups):
            return
        who = request.user.username or "this requester"
        if exempt_by:
            context.findings.append(Finding(
                "protected-labels",
                f"protected-labels: {context.ref}: the name {context.namespace} is exempt by name "
                f"({', '.join(exempt_by)}); creating a namespace with an exempt name needs an admin principal",
                f"fix: choose another name, or ask a netpol-guard admin to create it ({who} is not an admin "
                "principal)",
            ))
        if not self._protected_keys:
            return
        new = labels_of(request.object)
        old = labels_of(request.old_object) if request.operation == "UPDATE" else {}
        changes = []
        for key in sorted(self._protected_keys):
            before, after = old.get(key), new.get(key)
            if before == after:
                continue
            if before is None:
                changes.append(f"adds {key}={after}")
            elif after is None:
                changes.append(f"removes {key}={before}")
            else:
                changes.append(f"changes {key} from {before} to {after}")
        if changes:
            context.findings.append(Finding(
                "protected-labels",
                f"protected-labels: {context.ref} {', '.join(changes)}; these labels decide netpol-guard's "
                "exemptions, mode or generation",
                f"fix: ask a netpol-guard admin to change them ({who} is not an admin principal)",
            ))


def _unreadable_text(view: ClusterView, namespace: str) -> str:
    """Name the policies that exist but could not be read: the verdict was reached without them."""
    broken = view.unreadable(namespace)
    if not broken:
        return ""
    listed = "; ".join(f"NetworkPolicy {namespace}/{name}: {problem}" for name, problem in sorted(broken.items()))
    return f"; judged on the readable policies only, these could not be read: {listed}"


def _exempt_name_sources(config: Config) -> dict[str, list[str]]:
    """Every namespace name on a configured exemption list -> the lists that name it (for messages).

    The system namespaces and netpol-guard's own are left out: they exist from the start, and the shipped
    webhook configuration never sends them (so `check` agrees with what a cluster would do).
    """
    sources: dict[str, list[str]] = {}
    named = [(name, "exemptions.namespaces") for name in config.exemptions.namespaces]
    for rule_id in (rule.id for rule in CATALOGUE):
        named += [(name, f"rules.{rule_id}.exemptNamespaces") for name in config.rules.get(rule_id).exempt_namespaces]
    built_in = {*SYSTEM_NAMESPACES, config.namespace}
    for name, source in named:
        if name not in built_in and source not in sources.setdefault(name, []):
            sources[name].append(source)
    return sources


def _namespace_coverage_finding(context: _Context, coverage: Isolation, view: ClusterView) -> Finding:
    missing = coverage.missing
    present = [f"{d}: {', '.join(coverage.by(d))}" for d in ("Ingress", "Egress") if coverage.by(d)]
    have = f" (covered {'; '.join(present)})" if present else ""
    return Finding(
        "deny-all-coverage",
        f"deny-all-coverage: {context.ref}: namespace {context.namespace} has no default-deny for "
        f"{' and '.join(missing)}{have}{_unreadable_text(view, context.namespace)}{_not_counting(coverage)}",
        _coverage_fix(context.namespace, missing),
    )


def _pod_coverage_finding(
    context: _Context, template: PodTemplate, isolation: Isolation, view: ClusterView,
) -> Finding:
    missing = isolation.missing
    present = [f"{d}: {', '.join(isolation.by(d))}" for d in ("Ingress", "Egress") if isolation.by(d)]
    have = f" (isolated {'; '.join(present)})" if present else ""
    labels = ",".join(f"{k}={v}" for k, v in sorted(template.labels.items())) or "no labels"
    return Finding(
        "deny-all-coverage",
        f"deny-all-coverage: {context.ref}: no NetworkPolicy selecting its pods ({labels}) isolates "
        f"{' and '.join(missing)}{have}{_unreadable_text(view, context.namespace)}{_not_counting(isolation)}",
        _coverage_fix(context.namespace, missing),
    )


def _not_counting(coverage: Isolation) -> str:
    """Cluster-wide or CNI policies that were seen for this namespace but do not count, with why."""
    if not coverage.not_counting:
        return ""
    return f"; seen but not counting: {'; '.join(coverage.not_counting)}"


def _coverage_fix(namespace: str, missing: Sequence[str]) -> str:
    # kubectl applies files in order and kustomize puts NetworkPolicies after workloads: say so.
    return (
        "fix: apply this default-deny first (NetworkPolicies before workloads): "
        + default_deny_json(namespace, missing)
    )


def default_deny_json(namespace: str, directions: Sequence[str]) -> str:
    """The exact default-deny policy to apply, as one line of JSON (valid YAML for `kubectl apply -f -`)."""
    suffix = "all" if len(directions) == 2 else directions[0].lower()
    types = ",".join(f'"{d}"' for d in directions)
    return (
        '{"apiVersion":"networking.k8s.io/v1","kind":"NetworkPolicy","metadata":{"name":"default-deny-'
        f'{suffix}","namespace":"{namespace}"}},"spec":{{"podSelector":{{}},"policyTypes":[{types}]}}}}'
    )


def _template_unchanged(request: Request) -> bool:
    """True for an UPDATE of a controller whose pod template (old vs new) is exactly the same."""
    if request.operation != "UPDATE" or request.kind == "Pod" or request.old_object is None or request.object is None:
        return False
    path = TEMPLATE_PATHS[request.kind]
    return bool(_dig(request.object, path) == _dig(request.old_object, path))


def _dig(obj: Mapping[str, Any], path: Sequence[str]) -> Any:
    node: Any = obj
    for key in path:
        node = node.get(key) if isinstance(node, Mapping) else None
    return node


def _cached_policy(view: ClusterView, namespace: str, name: str) -> NetworkPolicy | None:
    for policy in view.policies(namespace):
        if policy.name == name:
            return policy
    return None


def _object_name(request: Request, obj: Mapping[str, Any] | None) -> str:
    name = request.name or name_of(obj) or "(unnamed)"
    return f"{request.namespace}/{name}" if request.namespace and request.kind != "Namespace" else name
