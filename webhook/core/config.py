"""The configuration: one YAML document, validated with pydantic, camelCase keys as in Kubernetes.

Reading the file is the shells' job (webhook.loading); this module only says
what a valid configuration is, so a typo in a key or a rule id stops the
process with the field named instead of being silently ignored.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import re
from collections.abc import Mapping
from functools import cached_property
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from webhook.core.errors import ConfigError as ConfigError  # re-exported: raised by config_from_data
from webhook.core.errors import ObjectError
from webhook.core.netpol import parse_port_value
from webhook.core.selectors import LabelSelector, parse_selector
from webhook.core.sources import NETWORK_POLICY, SOURCE_NAMES

Mode = Literal["enforce", "audit"]
Action = Literal["enforce", "warn", "off"]
Protocol = Literal["TCP", "UDP", "SCTP"]
Severity = Literal["critical", "high", "medium", "low", "info"]
ReportFormat = Literal["openreports", "policyreport"]

SYSTEM_NAMESPACES = ("kube-system", "kube-public", "kube-node-lease")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)


class Selector(_Strict):
    """A Kubernetes LabelSelector in the config file."""

    match_labels: dict[str, str] = Field(default_factory=dict, alias="matchLabels")
    match_expressions: list[dict[str, Any]] = Field(default_factory=list, alias="matchExpressions")

    @model_validator(mode="after")
    def _compiles(self) -> Selector:
        try:
            self.compiled()
        except ObjectError as error:
            raise ValueError(str(error)) from None
        return self

    def compiled(self) -> LabelSelector:
        return parse_selector(
            {"matchLabels": self.match_labels, "matchExpressions": self.match_expressions}, "selector"
        )


class Principals(_Strict):
    users: list[str] = Field(default_factory=list)
    groups: list[str] = Field(default_factory=list)
    # "namespace:name", "namespace/name" or the full "system:serviceaccount:namespace:name"
    service_accounts: list[str] = Field(default_factory=list, alias="serviceAccounts")

    @field_validator("service_accounts")
    @classmethod
    def _well_formed(cls, values: list[str]) -> list[str]:
        for value in values:
            if service_account_username(value) is None:
                raise ValueError(f"{value!r} is not namespace:name, namespace/name or "
                                 "system:serviceaccount:namespace:name")
        return values

    @cached_property
    def usernames(self) -> frozenset[str]:
        """Users and service accounts as the API server names them; computed once (asked on every request)."""
        accounts = {service_account_username(v) for v in self.service_accounts}
        return frozenset(self.users) | {a for a in accounts if a}

    def includes(self, username: str, groups: frozenset[str]) -> bool:
        return username in self.usernames or not groups.isdisjoint(self.groups)


def service_account_username(value: str) -> str | None:
    if value.startswith("system:serviceaccount:"):
        parts = value.split(":")
        return value if len(parts) == 4 and all(parts[2:]) else None
    for separator in (":", "/"):
        namespace, found, name = value.partition(separator)
        if found and namespace and name and separator not in name:
            return f"system:serviceaccount:{namespace}:{name}"
    return None


class Exemptions(_Strict):
    # Added to the built-in system namespaces and netpol-guard's own namespace.
    namespaces: list[str] = Field(default_factory=list)
    namespace_selector: Selector | None = Field(default=None, alias="namespaceSelector")
    principals: Principals = Field(default_factory=Principals)


class ModeOverride(_Strict):
    namespace_selector: Selector = Field(alias="namespaceSelector")
    mode: Mode


class OpenPort(_Strict):
    """A port of the config (`openPorts`, metadata `ports`): a number, a range, or a named port.

    Unlike in a NetworkPolicy, a quoted number ("80") is accepted here as port 80: a convenience of the config
    file only; the API server refuses it in a NetworkPolicy, and so does netpol-guard.
    """

    port: int | str
    end_port: int | None = Field(default=None, alias="endPort")
    protocol: Protocol = "TCP"

    @field_validator("port", mode="before")
    @classmethod
    def _int_or_string(cls, value: Any) -> Any:
        # IntOrString as in a NetworkPolicy, "http" a named port; as a convenience of the config file (never of a
        # NetworkPolicy, where the API server refuses it) a quoted number "80" is port 80.
        try:
            return parse_port_value(value, "", quoted_numbers=True)
        except ObjectError as error:
            raise ValueError(error.problem) from None

    @model_validator(mode="after")
    def _valid_range(self) -> OpenPort:
        if self.end_port is not None:
            if not isinstance(self.port, int):
                raise ValueError("endPort needs a numeric port")
            if not self.port <= self.end_port <= 65535:
                raise ValueError(f"endPort must be between port and 65535, not {self.end_port}")
        return self


class RuleSettings(_Strict):
    action: Action = "enforce"
    exempt_namespaces: list[str] = Field(default_factory=list, alias="exemptNamespaces")


class AllowAllIngressSettings(RuleSettings):
    open_ports: list[OpenPort] = Field(default_factory=list, alias="openPorts")


def _dns_ports() -> list[OpenPort]:
    return [OpenPort(port=53, protocol="UDP"), OpenPort(port=53, protocol="TCP")]


class AllowAllEgressSettings(RuleSettings):
    open_ports: list[OpenPort] = Field(default_factory=_dns_ports, alias="openPorts")


class BroadCidrSettings(RuleSettings):
    min_prefix_v4: int = Field(default=8, ge=0, le=32, alias="minPrefixV4")
    min_prefix_v6: int = Field(default=32, ge=0, le=128, alias="minPrefixV6")


DEFAULT_METADATA_ADDRESSES = (
    "169.254.169.254",  # AWS, GCP, Azure, OpenStack, DigitalOcean, Oracle: instance metadata
    "169.254.170.2",  # AWS ECS task metadata and credentials
    "169.254.170.23",  # EKS Pod Identity agent
    "fd00:ec2::254",  # AWS instance metadata over IPv6
    "fd00:ec2::23",  # EKS Pod Identity agent over IPv6
    "100.100.100.200",  # Alibaba Cloud
)


def _metadata_ports() -> list[OpenPort]:
    return [OpenPort(port=80, protocol="TCP")]


class MetadataEndpointSettings(RuleSettings):
    addresses: list[str] = Field(default_factory=lambda: list(DEFAULT_METADATA_ADDRESSES))
    # Ports that reach the metadata service: an egress rule with no `to` that opens one of them is flagged.
    ports: list[OpenPort] = Field(default_factory=_metadata_ports)

    @field_validator("addresses")
    @classmethod
    def _addresses(cls, values: list[str]) -> list[str]:
        """IP addresses; an IPv4-mapped IPv6 one (::ffff:a.b.c.d) is the IPv4 address it maps, as ipBlocks
        are read; a zone (fe80::1%eth0) names a host's interface, which no CIDR can hold."""
        found = []
        for value in values:
            try:
                address = ipaddress.ip_address(value)
            except ValueError:
                raise ValueError(f"{value!r} is not an IP address") from None
            if isinstance(address, ipaddress.IPv6Address) and address.scope_id is not None:
                raise ValueError(f"{value!r} has a zone (%{address.scope_id}); write the address alone")
            if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
                value = str(address.ipv4_mapped)
            found.append(value)
        return found

    @field_validator("ports")
    @classmethod
    def _numeric_ports(cls, values: list[OpenPort]) -> list[OpenPort]:
        for value in values:
            if not isinstance(value.port, int):
                raise ValueError(f"metadata ports must be numbers, not {value.port!r}")
        return values

    @cached_property
    def ip_addresses(self) -> tuple[ipaddress.IPv4Address | ipaddress.IPv6Address, ...]:
        return tuple(ipaddress.ip_address(value) for value in self.addresses)

    @cached_property
    def port_intervals(self) -> tuple[tuple[str, tuple[int, int]], ...]:
        return tuple((p.protocol, (int(p.port), p.end_port or int(p.port))) for p in self.ports)


class PortRangeSettings(RuleSettings):
    max_ports: int = Field(default=1024, ge=1, le=65536, alias="maxPorts")


class ExplicitPolicyTypesSettings(RuleSettings):
    action: Action = "warn"


class ProtectedLabelsSettings(RuleSettings):
    admin_principals: Principals = Field(
        default_factory=lambda: Principals(groups=["system:masters"]), alias="adminPrincipals"
    )


class Rules(_Strict):
    deny_all_coverage: RuleSettings = Field(default_factory=RuleSettings, alias="deny-all-coverage")
    host_network: RuleSettings = Field(default_factory=RuleSettings, alias="host-network")
    allow_all_ingress: AllowAllIngressSettings = Field(
        default_factory=AllowAllIngressSettings, alias="allow-all-ingress"
    )
    allow_all_egress: AllowAllEgressSettings = Field(
        default_factory=AllowAllEgressSettings, alias="allow-all-egress"
    )
    any_namespace: RuleSettings = Field(default_factory=RuleSettings, alias="any-namespace")
    broad_cidr: BroadCidrSettings = Field(default_factory=BroadCidrSettings, alias="broad-cidr")
    metadata_endpoint: MetadataEndpointSettings = Field(
        default_factory=MetadataEndpointSettings, alias="metadata-endpoint"
    )
    port_range: PortRangeSettings = Field(default_factory=PortRangeSettings, alias="port-range")
    explicit_policy_types: ExplicitPolicyTypesSettings = Field(
        default_factory=ExplicitPolicyTypesSettings, alias="explicit-policy-types"
    )
    protect_deny_all: RuleSettings = Field(default_factory=RuleSettings, alias="protect-deny-all")
    protected_labels: ProtectedLabelsSettings = Field(
        default_factory=ProtectedLabelsSettings, alias="protected-labels"
    )

    def get(self, rule_id: str) -> RuleSettings:
        value: RuleSettings = getattr(self, rule_id.replace("-", "_"))
        return value


def _kube_dns_namespace() -> Selector:
    return Selector.model_validate({"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}})


def _kube_dns_pods() -> Selector:
    return Selector.model_validate({"matchLabels": {"k8s-app": "kube-dns"}})


class DnsTarget(_Strict):
    """Where the generated DNS allow lets pods send UDP/TCP 53: these pods in these namespaces."""

    namespace_selector: Selector = Field(default_factory=_kube_dns_namespace, alias="namespaceSelector")
    pod_selector: Selector = Field(default_factory=_kube_dns_pods, alias="podSelector")


class OptOutLabel(_Strict):
    key: str = "netpol-guard.io/generate"
    value: str = "false"


class GenerateSettings(_Strict):
    """Generation of netpol-guard's default-deny (and a DNS allow) in new namespaces (opt-in)."""

    enabled: bool = False
    policy_name: str = Field(default="netpol-guard-default-deny", alias="policyName", min_length=1,
                             max_length=253, pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
    allow_dns: bool = Field(default=True, alias="allowDNS")
    dns_policy_name: str = Field(default="netpol-guard-allow-dns", alias="dnsPolicyName", min_length=1,
                                 max_length=253, pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
    dns: DnsTarget = Field(default_factory=DnsTarget)
    # Only namespaces matching this selector are governed (unset: every namespace that is not exempt).
    namespace_selector: Selector | None = Field(default=None, alias="namespaceSelector")
    # A namespace carrying this label is opted out; setting it is reserved to admin principals.
    opt_out_label: OptOutLabel = Field(default_factory=OptOutLabel, alias="optOutLabel")
    # The webhook's bounded wait for a governed namespace younger than youngNamespaceSeconds whose
    # generated policy is not there yet (well under the webhook's 3 s timeout).
    wait_seconds: float = Field(default=1.5, ge=0, le=2.5, alias="waitSeconds")
    young_namespace_seconds: float = Field(default=10.0, ge=0, le=300, alias="youngNamespaceSeconds")
    # How long the generator lets a new namespace's own bundle (e.g. its own deny-all) arrive first.
    settle_seconds: float = Field(default=0.2, ge=0, le=2, alias="settleSeconds")
    # Leader election on a coordination.k8s.io Lease in `namespace`: one replica writes.
    lease_name: str = Field(default="netpol-guard-leader", alias="leaseName", min_length=1)
    # Whole seconds: a Lease stores leaseDurationSeconds as an integer.
    lease_duration_seconds: int = Field(default=15, ge=2, le=300, alias="leaseDurationSeconds")
    renew_deadline_seconds: int = Field(default=10, ge=2, le=300, alias="renewDeadlineSeconds")
    retry_period_seconds: int = Field(default=2, ge=1, le=60, alias="retryPeriodSeconds")

    @model_validator(mode="after")
    def _consistent(self) -> GenerateSettings:
        if self.allow_dns and self.dns_policy_name == self.policy_name:
            raise ValueError("dnsPolicyName must differ from policyName")
        # The kubernetes client's leader election wants renewDeadline > 1.2 x retryPeriod (its jitter).
        if not 1.2 * self.retry_period_seconds < self.renew_deadline_seconds < self.lease_duration_seconds:
            raise ValueError("need 1.2 x retryPeriodSeconds < renewDeadlineSeconds < leaseDurationSeconds")
        if not self.opt_out_label.key:
            raise ValueError("optOutLabel.key must not be empty")
        return self


CertificateMode = Literal["self-signed", "files", "cert-manager"]
_DNS_LABEL = r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$"
_DNS_SUBDOMAIN = r"^[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?$"


class SelfSignedSettings(_Strict):
    """`server.certificates: self-signed`: a CA and serving certificate kept in one Secret of our namespace.

    Durations are seconds or ISO 8601 (`P365D`). Each certificate is renewed at two-thirds of its life.
    """

    secret_name: str = Field(default="netpol-guard-ca", alias="secretName", pattern=_DNS_SUBDOMAIN)
    service_name: str = Field(default="netpol-guard", alias="serviceName", pattern=_DNS_LABEL)
    # The ValidatingWebhookConfigurations whose caBundle (and armed failurePolicy) this process keeps.
    webhook_configurations: list[str] = Field(default_factory=lambda: ["netpol-guard"],
                                              alias="webhookConfigurations", min_length=1)
    # Extra SANs (DNS names or IPs) besides the Service's names.
    hosts: list[str] = Field(default_factory=list)
    ca_validity: dt.timedelta = Field(default=dt.timedelta(days=1825), alias="caValidity")
    cert_validity: dt.timedelta = Field(default=dt.timedelta(days=365), alias="certValidity")
    # How long a new CA sits in the caBundle before serving certificates signed by it are presented.
    ca_propagation: dt.timedelta = Field(default=dt.timedelta(seconds=60), alias="caPropagation")
    # Seconds between reads of the Secret and the webhook configurations.
    sync_seconds: float = Field(default=10.0, gt=0, alias="syncSeconds")

    @model_validator(mode="after")
    def _lifetimes(self) -> SelfSignedSettings:
        if self.cert_validity < dt.timedelta(seconds=3):
            raise ValueError("certValidity must be at least 3 seconds")
        if self.ca_validity < self.cert_validity:
            raise ValueError("caValidity must be at least certValidity")
        if self.ca_propagation.total_seconds() < 0:
            raise ValueError("caPropagation must not be negative")
        if self.ca_propagation * 9 >= self.ca_validity:
            raise ValueError("caPropagation must be under a ninth of caValidity, "
                             "or a rotating CA could not be published in time")
        return self


class ServerSettings(_Strict):
    """Settings of `netpol-guard serve`; each also has a command-line flag that wins over it."""

    # self-signed: a CA + serving certificate shared by the replicas in a Secret, caBundle patched,
    # rotated; files: tls.crt/tls.key from certDir (your PKI; `serve --cert-dir` implies it);
    # cert-manager: files written by cert-manager, caBundle injected by its CA injector.
    certificates: CertificateMode = "self-signed"
    self_signed: SelfSignedSettings = Field(default_factory=SelfSignedSettings, alias="selfSigned")

    host: str = "0.0.0.0"
    port: int = Field(default=8443, ge=1, le=65535)
    cert_dir: str = Field(default="/etc/netpol-guard/tls", alias="certDir")
    kubeconfig: str | None = None
    state: str | None = None
    # A PEM CA bundle: clients (the API server) must present a certificate it signed, or the TLS handshake fails.
    client_ca: str | None = Field(default=None, alias="clientCA")
    max_body_bytes: int = Field(default=3 * 1024 * 1024, ge=1024, alias="maxBodyBytes")
    # Overload bounds (see webhook/server/overload.py and the README's sizing section): reviews in progress
    # beyond the first get HTTP 429; bodies over 64 KiB share a byte budget so giant ones cannot OOM the pod.
    max_concurrent_reviews: int = Field(default=128, ge=1, le=100_000, alias="maxConcurrentReviews")
    max_inflight_body_bytes: int = Field(default=4 * 1024 * 1024, ge=64 * 1024, alias="maxInflightBodyBytes")
    # The watch failing for longer than this makes the cache stale: /readyz not ready, cache_synced 0.
    cache_stale_seconds: float = Field(default=120.0, gt=0, alias="cacheStaleSeconds")
    # Seconds between re-reads of the certificate files (rotation without restart).
    cert_reload_seconds: float = Field(default=10.0, gt=0, alias="certReloadSeconds")
    # Seconds between API discoveries of the coverage-source kinds (a CRD installed later is picked up).
    source_discovery_seconds: float = Field(default=30.0, gt=0, alias="sourceDiscoverySeconds")

    @model_validator(mode="after")
    def _time_to_renew(self) -> ServerSettings:
        # A serving certificate is renewed with a third of its life left; the new one reaches the
        # server within a sync plus a reload. Leave at least twice that, or it could expire in use.
        if self.certificates == "self-signed":
            margin = self.self_signed.cert_validity.total_seconds() / 3
            needed = 2 * (self.self_signed.sync_seconds + self.cert_reload_seconds)
            if margin < needed:
                raise ValueError(f"selfSigned.certValidity leaves {margin:g}s (a third of it) to renew and reload; "
                                 f"make it at least {3 * needed:g}s, or lower syncSeconds/certReloadSeconds")
        return self


_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(value: Any) -> float:
    """Seconds from a number or a Go-style duration ("10m", "1h30m", "45s", "500ms")."""
    if isinstance(value, bool):
        raise ValueError("must be a duration such as 10m or 30s")
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        text = value.strip()
        parts = _DURATION_PART.findall(text)
        if parts and "".join(number + unit for number, unit in parts) == text:
            return sum(float(number) * _UNIT_SECONDS[unit] for number, unit in parts)
    raise ValueError(f"{value!r} is not a duration such as 10m, 30s or 1h30m")


class AuditSettings(_Strict):
    """The background audit of `serve` (reports component), and how results are written as reports."""

    # Off in the base install: the workload RBAC and the report CRDs come with manifests/components/reports.
    background: bool = False
    interval: float = Field(default=600.0, gt=0)  # a full pass at least this often (seconds or "10m")
    # Changes to Namespaces, NetworkPolicies or workloads trigger a pass after this quiet time.
    debounce: float = Field(default=5.0, ge=0)
    report_format: ReportFormat = Field(default="openreports", alias="reportFormat")
    # Fraction of one core a pass may use: after each slice of work it sleeps in proportion.
    cpu_budget: float = Field(default=0.5, gt=0, le=1, alias="cpuBudget")
    # Results kept per report (written to configuration.limits.maxResults); failures are kept first.
    max_results: int = Field(default=1000, ge=1, le=10000, alias="maxResults")
    severity: dict[str, Severity] = Field(default_factory=dict)  # rule id -> severity, over the defaults
    # At most this many namespaces get series of their own in the audit metrics (the least covered first);
    # the rest are counted only in the totals, so a large cluster cannot flood Prometheus.
    metrics_namespace_limit: int = Field(default=500, ge=0, le=100000, alias="metricsNamespaceLimit")

    @field_validator("interval", "debounce", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> float:
        return parse_duration(value)

    @field_validator("severity")
    @classmethod
    def _rule_ids(cls, value: dict[str, Severity]) -> dict[str, Severity]:
        known = {field.alias for field in Rules.model_fields.values()}
        unknown = sorted(set(value) - known)
        if unknown:
            raise ValueError(f"unknown rule id(s): {', '.join(unknown)}")
        return value


class Config(_Strict):
    mode: Mode = "enforce"
    coverage: Literal["namespace", "pod"] = "namespace"
    # Which kinds give deny-all coverage besides networking.k8s.io NetworkPolicy (always on); default: all.
    coverage_sources: list[str] = Field(default_factory=lambda: list(SOURCE_NAMES), alias="coverageSources")
    # netpol-guard's own namespace: always exempt, so the webhook can never lock itself out.
    namespace: str = "netpol-guard"
    fail_closed: bool = Field(default=True, alias="failClosed")
    exemptions: Exemptions = Field(default_factory=Exemptions)
    mode_overrides: list[ModeOverride] = Field(default_factory=list, alias="modeOverrides")
    rules: Rules = Field(default_factory=Rules)
    server: ServerSettings = Field(default_factory=ServerSettings)
    generate: GenerateSettings = Field(default_factory=GenerateSettings)
    audit: AuditSettings = Field(default_factory=AuditSettings)

    @field_validator("coverage_sources")
    @classmethod
    def _known_sources(cls, values: list[str]) -> list[str]:
        unknown = [v for v in values if v not in SOURCE_NAMES]
        if unknown:
            raise ValueError(f"unknown coverage source(s) {', '.join(unknown)}; known: {', '.join(SOURCE_NAMES)}")
        if NETWORK_POLICY not in values:
            raise ValueError(f"{NETWORK_POLICY} must be listed: NetworkPolicy coverage is always counted")
        return values

    def exempt_namespace_names(self) -> frozenset[str]:
        return frozenset(SYSTEM_NAMESPACES) | {self.namespace} | set(self.exemptions.namespaces)

    def protected_label_keys(self) -> frozenset[str]:
        """Namespace label keys that decide exemptions, modes or generation, which protected-labels guards."""
        keys: set[str] = set()
        if self.exemptions.namespace_selector is not None:
            keys |= self.exemptions.namespace_selector.compiled().keys()
        for override in self.mode_overrides:
            keys |= override.namespace_selector.compiled().keys()
        if self.generate.enabled:
            # Who gets a generated default-deny is netpol-guard's decision too: the opt-out label and the
            # generation selector are guarded like the exemption labels.
            keys.add(self.generate.opt_out_label.key)
            if self.generate.namespace_selector is not None:
                keys |= self.generate.namespace_selector.compiled().keys()
        return frozenset(keys)


def config_from_data(data: Any, source: str = "config") -> Config:
    """Validate already-parsed YAML (None or {} gives the defaults)."""
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise ConfigError(f"{source}: the configuration must be a mapping, not {type(data).__name__}")
    try:
        return Config.model_validate(data)
    except ValidationError as error:
        problems = []
        for item in error.errors():
            where = ".".join(str(part) for part in item["loc"]) or "(top level)"
            message = item["msg"]
            if item["type"] == "extra_forbidden":
                message = "unknown key" + (" (not a rule id)" if item["loc"][:1] == ("rules",) else "")
            problems.append(f"{source}: {where}: {message}")
        raise ConfigError("\n".join(problems)) from None
