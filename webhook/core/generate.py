"""Generation, the pure part: which namespaces netpol-guard's default-deny is generated for, and what exactly.

With `generate.enabled`, every new namespace that is governed (not exempt, matched
by `generate.namespaceSelector` when set, not opted out with the opt-out label,
not terminating) and not already covered gets `netpol-guard-default-deny`
(`podSelector: {}`, both policyTypes) and, with `generate.allowDNS`, an egress
allow to the cluster DNS. The generator shell (webhook.generate) writes what
`plan` returns; `check --generate` adds the same objects to its offline view; the
webhook's confirm waits for them (`awaits_generation`). One module, so the three
agree on what "governed" and "generated" mean.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from webhook.core.config import Config, Selector
from webhook.core.coverage import Isolation
from webhook.core.selectors import LabelSelector
from webhook.core.state import NamespaceInfo

MANAGED_BY = "app.kubernetes.io/managed-by"
MANAGER = "netpol-guard"
OPT_OUT_ANNOTATION = "netpol-guard.io/opt-out"
GENERATED_ANNOTATION = "netpol-guard.io/generated"


@dataclass(frozen=True, slots=True)
class Plan:
    """What generation does for one namespace: `policies` to create, or `skip` saying why nothing."""

    namespace: str
    policies: tuple[Mapping[str, Any], ...] = ()
    skip: str | None = None

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(str(p["metadata"]["name"]) for p in self.policies)


class Generation:
    """The generation settings of one config, compiled once."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.settings = config.generate
        self._exempt_names = config.exempt_namespace_names()
        exempt = config.exemptions.namespace_selector
        self._exempt_selector: LabelSelector | None = exempt.compiled() if exempt else None
        governed = self.settings.namespace_selector
        self._selector: LabelSelector | None = governed.compiled() if governed else None

    @property
    def enabled(self) -> bool:
        return self.settings.enabled

    def not_governed(self, info: NamespaceInfo) -> str | None:
        """Why generation leaves this namespace alone, or None when it governs it."""
        name = info.name
        if info.terminating:
            return f"namespace {name} is terminating"
        if name in self._exempt_names:
            return f"namespace {name} is exempt by name"
        if self._exempt_selector is not None and self._exempt_selector.matches(info.labels):
            return f"namespace {name} is exempt by label ({self._exempt_selector.describe()})"
        opt_out = self.settings.opt_out_label
        if info.labels.get(opt_out.key) == opt_out.value:
            return f"namespace {name} opted out ({opt_out.key}={opt_out.value})"
        if self._selector is not None and not self._selector.matches(info.labels):
            return f"namespace {name} does not match generate.namespaceSelector ({self._selector.describe()})"
        return None

    def plan(self, info: NamespaceInfo, coverage: Isolation) -> Plan:
        """What to create in a namespace whose current deny-all coverage is `coverage`."""
        why = self.not_governed(info)
        if why is not None:
            return Plan(info.name, skip=why)
        if coverage.complete:
            by = sorted(set(coverage.ingress_by) | set(coverage.egress_by))
            return Plan(info.name, skip=f"namespace {info.name} is already covered ({', '.join(by)})")
        return Plan(info.name, policies=self.policies(info.name))

    def policies(self, namespace: str) -> tuple[Mapping[str, Any], ...]:
        """The generated objects, the default-deny first: it is what workloads wait for (the webhook admits them
        once it exists), and their pods take longer to start than the DNS allow takes to follow."""
        settings = self.settings
        deny = _policy(namespace, settings.policy_name, self._annotations(), {
            "podSelector": {},
            "policyTypes": ["Ingress", "Egress"],
        })
        if not settings.allow_dns:
            return (deny,)
        dns = _policy(namespace, settings.dns_policy_name, self._annotations(), {
            "podSelector": {},
            "policyTypes": ["Egress"],
            "egress": [{
                "to": [{"namespaceSelector": _selector(settings.dns.namespace_selector),
                        "podSelector": _selector(settings.dns.pod_selector)}],
                "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}],
            }],
        })
        return (deny, dns)

    def awaits_generation(self, info: NamespaceInfo | None, coverage: Isolation, now: float) -> bool:
        """Whether the webhook should wait (bounded) for the generated policy before denying.

        True for a governed, uncovered namespace younger than `youngNamespaceSeconds`: the
        generator is about to write there (creationTimestamp has whole-second resolution, hence
        the margin). Older namespaces were either handled or are not new: no wait, deny at once.
        """
        if not self.enabled or info is None or info.created is None or coverage.complete:
            return False
        if self.settings.wait_seconds <= 0 or now - info.created > self.settings.young_namespace_seconds:
            return False
        return self.not_governed(info) is None

    def _annotations(self) -> dict[str, str]:
        opt_out = self.settings.opt_out_label
        return {
            GENERATED_ANNOTATION: "default-deny generated by netpol-guard for a new namespace; never updated "
                                  "or re-created by it once changed or deleted",
            OPT_OUT_ANNOTATION: f"a netpol-guard admin labels the namespace {opt_out.key}={opt_out.value} "
                                "(before creating it, or delete this policy once another default-deny covers "
                                "the namespace)",
        }


def _policy(namespace: str, name: str, annotations: Mapping[str, str], spec: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {MANAGED_BY: MANAGER},
            "annotations": dict(annotations),
        },
        "spec": dict(spec),
    }


def _selector(selector: Selector) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if selector.match_labels:
        out["matchLabels"] = dict(selector.match_labels)
    if selector.match_expressions:
        out["matchExpressions"] = [dict(e) for e in selector.match_expressions]
    return out


def own_rule_violations(config: Config, namespace: str = "example") -> list[str]:
    """The generated policies judged by our own rules (as the webhook will judge the generator's writes).

    A configured DNS target can be written so that the DNS allow breaks a rule (e.g. an empty
    namespaceSelector and podSelector: any-namespace); the shells refuse to start on such a config.
    """
    from webhook.core.engine import Engine, Request
    from webhook.core.state import ClusterState

    engine = Engine(config)
    problems = []
    for policy in Generation(config).policies(namespace):
        metadata = policy["metadata"]
        decision = engine.review(
            Request(kind="NetworkPolicy", operation="CREATE", namespace=namespace, name=metadata["name"],
                    object=policy),
            ClusterState(),
        )
        problems += [f"generated NetworkPolicy {metadata['name']}: {v.message}" for v in decision.violations]
    return problems
