"""`netpol-guard vap`: the stateless rules as ValidatingAdmissionPolicies, so they hold with the webhook down.

A webhook is a network hop: with netpol-guard unreachable the API server either
blocks everything (failurePolicy Fail) or checks nothing (Ignore). The rules that
need no cluster state (allow-all-ingress, allow-all-egress, any-namespace by
construction, broad-cidr, metadata-endpoint, port-range, host-network) can run
inside the API server as CEL (admissionregistration.k8s.io/v1, Kubernetes 1.30+),
so this module writes them out from the same `Config` the engine reads: one
policy + binding per rule (and per mode when modeOverrides split namespaces),
exemptions as matchConstraints/matchConditions (and, where namespace labels are
read, a guard on each validation: the API server gives `namespaceObject` to
validations only), parameters baked into the CEL,
messages in the engine's wording with the rule id first.

Where CEL cannot compute what the engine computes, the policy is STRICTER, never
looser. Each such case is listed in STRICTER (and in the README):
- port-range adds the sizes of a rule's port entries per protocol instead of
  the size of their union, so overlapping entries (and a repeated port name)
  are counted twice;
- broad-cidr adds the sizes of a rule's ipBlocks (each minus its largest
  `except` only) instead of the size of their union minus every except, and
  counts IPv6 in units of 1/2^40 of the allowed block, rounded up;
- any CIDR that the API server's CEL `cidr()` cannot read is refused by
  broad-cidr (the engine reads it; the API server's own validation normally
  refuses such a CIDR first).
Expressions only ever loop over one list at a time (rules x peers x excepts,
or rules x ports), so their cost grows linearly with the object and stays far
inside the per-evaluation budget for objects at the API server's size limit.

Pure: plain data in, manifests (dicts) out; the CLI writes them as YAML.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from webhook.core.config import Config, Mode, OpenPort
from webhook.core.selectors import LabelSelector
from webhook.core.state import NAME_LABEL

GROUP = "admissionregistration.k8s.io"
API_VERSION = f"{GROUP}/v1"
PREFIX = "netpol-guard-"
MANAGED_BY = {"app.kubernetes.io/managed-by": "netpol-guard", "app.kubernetes.io/part-of": "netpol-guard"}

NETWORK_POLICY_RULES = (
    "allow-all-ingress", "allow-all-egress", "any-namespace", "broad-cidr", "metadata-endpoint", "port-range",
)
STATELESS_RULES = (*NETWORK_POLICY_RULES, "host-network")

STRICTER: dict[str, str] = {
    "port-range": "sums the sizes of a rule's port entries per protocol (overlapping entries and repeated names count "
                  "twice) instead of the size of their union",
    "broad-cidr": "sums a rule's ipBlock sizes per family, each minus only its largest except, instead of the size "
                  "of their union minus every except; a CIDR CEL cannot parse is refused; an IPv6 block of /96 or "
                  "wider whose first 80 bits are zero (it may hold the IPv4-mapped ::ffff:0:0/96) counts as every "
                  "IPv4 address, whatever its excepts",
    "metadata-endpoint": "an IPv6 block of /96 or wider whose first 80 bits are zero (it may hold the IPv4-mapped "
                         "::ffff:0:0/96, where ::ffff:169.254.169.254 lives) reaches the IPv4 endpoints, whatever "
                         "its excepts",
}

# Every controller whose pod template netpol-guard judges: (API group, resource).
WORKLOAD_RESOURCES: tuple[tuple[str, str], ...] = (
    ("apps", "deployments"), ("apps", "statefulsets"), ("apps", "daemonsets"), ("apps", "replicasets"),
    ("", "replicationcontrollers"), ("batch", "jobs"), ("batch", "cronjobs"),
)
PROTOCOLS = ("TCP", "UDP", "SCTP")
# 2**0 .. 2**41 as a policy variable: broad-cidr compares block sizes in units (see _block_units); CEL has no pow().
_UNIT_BITS = 40
POWERS = "[" + ", ".join(str(2**k) for k in range(_UNIT_BITS + 2)) + "]"
POW = "variables.pow"


def cel_string(value: str) -> str:
    """A CEL string literal (JSON's escapes are a subset of CEL's)."""
    return json.dumps(value, ensure_ascii=True)


def cel_strings(values: Iterable[str]) -> str:
    return "[" + ", ".join(cel_string(v) for v in values) + "]"


@dataclass(frozen=True, slots=True)
class Check:
    """One validation: `expression` is true when the object is fine; the message names the rule first."""

    expression: str
    message: str  # static text after "<rule>: <Kind> <ns>/<name>: "
    message_cel: str | None = None  # the same as a CEL string expression, where it names the field


# ----- CEL building blocks over NetworkPolicy objects (after API server defaulting) -----

_PROTOCOL = "(has(p.protocol) ? p.protocol : 'TCP')"
_NUMERIC = "type(p.port) == int"
_NAMED = "type(p.port) == string"
_LOW = "int(p.port)"
_HIGH = "(has(p.endPort) ? p.endPort : int(p.port))"
_HAS_PEERS = "(has(r.{peers}) && size(r.{peers}) > 0)"
_HAS_PORTS = "(has(r.ports) && size(r.ports) > 0)"

NETWORK_POLICY_VARIABLES: tuple[tuple[str, str], ...] = (
    # The effective policyTypes (the API server defaults them, but say it here too: the field or Ingress,
    # plus Egress when there are egress rules); rules of a direction not in them are not judged.
    ("types", "has(object.spec.policyTypes) && size(object.spec.policyTypes) > 0 ? object.spec.policyTypes : "
              "(has(object.spec.egress) && size(object.spec.egress) > 0 ? ['Ingress', 'Egress'] : ['Ingress'])"),
    ("ingress", "'Ingress' in variables.types && has(object.spec.ingress) ? object.spec.ingress : []"),
    ("egress", "'Egress' in variables.types && has(object.spec.egress) ? object.spec.egress : []"),
)


def _merged(ports: Iterable[OpenPort], protocol: str) -> tuple[list[tuple[int, int]], list[str]]:
    """Configured ports of one protocol: numeric ranges merged (so a range is covered iff one merged range
    holds it, exactly as the engine's union walk), and names."""
    ranges = sorted((p.port, p.end_port if p.end_port is not None else p.port)
                    for p in ports if p.protocol == protocol and isinstance(p.port, int))
    merged: list[tuple[int, int]] = []
    for low, high in ranges:
        if merged and low <= merged[-1][1] + 1:
            merged[-1] = (merged[-1][0], max(merged[-1][1], high))
        else:
            merged.append((low, high))
    names = sorted({p.port for p in ports if p.protocol == protocol and isinstance(p.port, str)})
    return merged, names


def _port_is_open(open_ports: Sequence[OpenPort]) -> str:
    """CEL over a port entry `p`: every port it opens is a configured open port."""
    alternatives = []
    for protocol in PROTOCOLS:
        merged, names = _merged(open_ports, protocol)
        tests = [f"({low} <= {_LOW} && {_HIGH} <= {high})" for low, high in merged]
        parts = []
        if tests:
            parts.append(f"({_NUMERIC} && ({' || '.join(tests)}))")
        if names:
            parts.append(f"({_NAMED} && p.port in {cel_strings(names)})")
        if parts:
            alternatives.append(f"({_PROTOCOL} == '{protocol}' && has(p.port) && ({' || '.join(parts)}))")
    return " || ".join(alternatives) if alternatives else "false"


def _allow_all(direction: str, open_ports: Sequence[OpenPort]) -> Check:
    peers = "from" if direction == "ingress" else "to"
    who = "every source" if peers == "from" else "every destination"
    allowed = ", ".join(_describe_open(p) for p in open_ports) or "none"
    has_peers = _HAS_PEERS.format(peers=peers)
    return Check(
        f"variables.{direction}.all(r, {has_peers} || ({_HAS_PORTS} && r.ports.all(p, {_port_is_open(open_ports)})))",
        f"an {direction} rule has no '{peers}', so it allows {who} on ports that are not all configured open ports"
        f"; fix: list the allowed peers in '{peers}', or open only the configured open ports ({allowed})",
    )


def _describe_open(port: OpenPort) -> str:
    if port.end_port is not None:
        return f"{port.port}-{port.end_port}/{port.protocol}"
    return f"{port.port}/{port.protocol}"


def _any_namespace() -> list[Check]:
    # A namespaceSelector selects every namespace by construction: no matchLabels, and only Exists/NotIn
    # on kubernetes.io/metadata.name (which every namespace carries); with no or an empty podSelector.
    every_namespace = (
        "(!has(p.namespaceSelector.matchLabels) || size(p.namespaceSelector.matchLabels) == 0) && "
        "(!has(p.namespaceSelector.matchExpressions) || p.namespaceSelector.matchExpressions.all(e, "
        f"e.key == {cel_string(NAME_LABEL)} && e.operator in ['Exists', 'NotIn']))"
    )
    every_pod = (
        "(!has(p.podSelector) || ((!has(p.podSelector.matchLabels) || size(p.podSelector.matchLabels) == 0) && "
        "(!has(p.podSelector.matchExpressions) || size(p.podSelector.matchExpressions) == 0)))"
    )
    peer_ok = f"!(has(p.namespaceSelector) && {every_namespace} && {every_pod})"
    checks = []
    for direction, peers in (("ingress", "from"), ("egress", "to")):
        checks.append(Check(
            f"variables.{direction}.all(r, !has(r.{peers}) || r.{peers}.all(p, {peer_ok}))",
            f"an {direction} rule has a '{peers}' peer whose namespaceSelector selects every namespace "
            "(namespaceSelector: {} or only Exists/NotIn on kubernetes.io/metadata.name) without a podSelector, "
            "i.e. every pod of every namespace; fix: select namespaces by label "
            "(e.g. kubernetes.io/metadata.name In [...]) or add a podSelector",
        ))
    return checks


def _block_units(bits: int, min_prefix: int) -> tuple[str, int]:
    """CEL over a peer `p` with an ipBlock of one family: its size in units, and the allowed size in units.

    The allowed block holds 2^t addresses (t = bits - min_prefix). Sizes are counted in units of 2^s
    addresses, s = max(0, t - 40), so every number stays below 2^42 and a sum cannot overflow int64:
    IPv4 is exact (s = 0); an IPv6 block smaller than a unit counts as one unit (stricter). A block more
    than 2^41 units wide is over the limit whatever its excepts take away (an except is at most half of
    its block), so it counts as 2^41. Only the largest except is subtracted: excepts may overlap each
    other, and subtracting more than is really removed would be looser.
    """
    t = bits - min_prefix
    s = max(0, t - _UNIT_BITS)
    # CEL has no let (cel.bind is not offered to VAPs): a one-element list's map() binds each value once.
    largest_except = f"[{bits} - p.ipBlock.except.map(x, cidr(x).prefixLength()).min() - {s}]"
    removed = (f"(has(p.ipBlock.except) && size(p.ipBlock.except) > 0 ? "
               f"{largest_except}.map(x, x >= 0 ? {POW}[x] : 0)[0] : 0)")
    units = (f"[{bits} - cidr(p.ipBlock.cidr).prefixLength() - {s}].map(e, e > {_UNIT_BITS + 1} ? "
             f"{POW}[{_UNIT_BITS + 1}] : (e < 0 ? 1 : {POW}[e] - {removed}))[0]")
    limit = 2 ** (t - s)
    # Every address of the family is always too broad, whatever the prefix: with min_prefix 0 the limit is
    # one unit less than everything (a sum can only reach everything when the union might).
    return units, limit - 1 if t == bits else limit


# An IPv6 ipBlock that may hold the IPv4-mapped space ::ffff:0:0/96, i.e. every IPv4 address written as IPv6
# (the engine reads such blocks as the IPv4 addresses they map). CEL's cidr()/ip() refuse mapped addresses, so
# this tests the prefix instead: /96 or wider with the first 80 bits zero, or containing ::. Stricter than the
# engine for the few such blocks that hold none of the mapped space, and it ignores excepts.
_MAPS_IPV4 = ("(p.ipBlock.cidr.contains(':') && [cidr(p.ipBlock.cidr)].all(c, c.prefixLength() <= 96 && "
              "(c.containsIP(ip('::')) || cidr('::/80').containsCIDR(c))))")


def _broad_cidr(min_v4: int, min_v6: int) -> list[Check]:
    checks = []
    for direction, peers in (("ingress", "from"), ("egress", "to")):
        blocks = f"(has(r.{peers}) ? r.{peers}.filter(p, has(p.ipBlock)) : [])"
        checks.append(Check(
            f"variables.{direction}.all(r, {blocks}.all(p, isCIDR(p.ipBlock.cidr) && "
            "(!has(p.ipBlock.except) || p.ipBlock.except.all(x, isCIDR(x)))))",
            f"an {direction} rule has an ipBlock that the API server's CEL cannot read as a CIDR; "
            "fix: write plain CIDRs such as 10.0.0.0/16 or fd00::/64",
        ))
        for family, bits, minimum in ((4, 32, min_v4), (6, 128, min_v6)):
            units, limit = _block_units(bits, minimum)
            # An IPv6 CIDR always has a ':', an IPv4 one never: no parse needed to tell the families apart.
            of_family = f"{blocks}.filter(p, {'' if family == 6 else '!'}p.ipBlock.cidr.contains(':'))"
            mapped = f" && !{blocks}.exists(p, isCIDR(p.ipBlock.cidr) && {_MAPS_IPV4})" if family == 4 else ""
            checks.append(Check(
                f"variables.{direction}.all(r, {of_family}.map(p, {units}).sum() <= {limit}{mapped})",
                f"an {direction} rule's IPv{family} ipBlocks (minus excepts), taken together, hold more addresses "
                f"than one /{minimum} (or every address); fix: use the narrowest CIDRs that hold the real peers "
                f"(/{minimum} or narrower in all)",
            ))
    return checks


def _metadata_endpoint(addresses: Sequence[str], ports: Sequence[OpenPort]) -> list[Check]:
    # Each block's CIDR parsed once (a one-element list binds it), the addresses once per request (a variable).
    reaches = ("[cidr(p.ipBlock.cidr)].all(c, variables.metadata.exists(a, c.containsIP(a) && "
               "!(has(p.ipBlock.except) && p.ipBlock.except.exists(x, cidr(x).containsIP(a)))))")
    if any(":" not in address for address in addresses):  # an IPv4 endpoint is also reachable as ::ffff:a.b.c.d
        reaches = f"({reaches} || {_MAPS_IPV4})"
    checks = [Check(
        f"variables.egress.all(r, !has(r.to) || r.to.all(p, !has(p.ipBlock) || !isCIDR(p.ipBlock.cidr) || "
        f"!{reaches}))",
        f"an egress ipBlock lets pods reach a cloud metadata endpoint ({', '.join(addresses)}); "
        "fix: add the endpoint (e.g. 169.254.169.254/32) to ipBlock.except",
    )]
    if ports:
        hits = []
        for port in ports:  # numeric (the config says so); a named port resolves inside the cluster only
            low = int(port.port)
            high = port.end_port if port.end_port is not None else low
            hit = f"(!has(p.port) || ({_NUMERIC} && {_LOW} <= {high} && {low} <= {_HIGH}))"
            hits.append(f"({_PROTOCOL} == '{port.protocol}' && {hit})")
        wanted = ", ".join(_describe_open(p) for p in ports)
        checks.append(Check(
            f"variables.egress.all(r, {_HAS_PEERS.format(peers='to')} || "
            f"({_HAS_PORTS} && !r.ports.exists(p, {' || '.join(hits)})))",
            f"an egress rule with no 'to' allows the metadata ports ({wanted}) to every destination, cloud "
            "metadata endpoints included; fix: list the destinations in 'to'",
        ))
    return checks


def _port_range(max_ports: int) -> list[Check]:
    # An entry without a port (every port of a protocol) is what a rule without `ports` means: not a range.
    size = f"(!has(p.port) ? 0 : ({_NUMERIC} && has(p.endPort) ? p.endPort - {_LOW} + 1 : 1))"
    checks = []
    for direction in ("ingress", "egress"):
        per_protocol = (f"{list(PROTOCOLS)!r}.all(proto, r.ports.filter(p, {_PROTOCOL} == proto)"
                        f".map(p, {size}).sum() <= {max_ports})").replace('"', "'")
        checks.append(Check(
            f"variables.{direction}.all(r, !has(r.ports) || {per_protocol})",
            f"an {direction} rule opens more than {max_ports} distinct ports of one protocol; "
            "fix: list the ports that are really used, or narrower ranges",
        ))
    return checks


# The pod spec of a Pod or of a controller's template. `dyn`: the API server type-checks each expression
# against every kind the policy matches, and a Pod has no spec.template.
HOST_NETWORK_VARIABLES: tuple[tuple[str, str], ...] = (
    ("field", "request.resource.resource == 'pods' ? 'spec' : (request.resource.resource == 'cronjobs' ? "
              "'spec.jobTemplate.spec.template.spec' : 'spec.template.spec')"),
    ("podSpec", "request.resource.resource == 'pods' ? dyn(object).spec : (request.resource.resource == "
                "'cronjobs' ? dyn(object).spec.jobTemplate.spec.template.spec : dyn(object).spec.template.spec)"),
)


def _host_network() -> list[Check]:
    text = ".hostNetwork is true; no NetworkPolicy can isolate it; fix: remove hostNetwork: true (use a Service " \
           "or hostPort for node-level access)"
    return [Check(
        "!(has(variables.podSpec.hostNetwork) && variables.podSpec.hostNetwork == true)",
        "spec.hostNetwork (of the Pod or the pod template)" + text,
        f"variables.field + {cel_string(text)}",
    )]


def rule_checks(rule_id: str, config: Config) -> list[Check]:
    rules = config.rules
    if rule_id == "allow-all-ingress":
        return [_allow_all("ingress", rules.allow_all_ingress.open_ports)]
    if rule_id == "allow-all-egress":
        return [_allow_all("egress", rules.allow_all_egress.open_ports)]
    if rule_id == "any-namespace":
        return _any_namespace()
    if rule_id == "broad-cidr":
        return _broad_cidr(rules.broad_cidr.min_prefix_v4, rules.broad_cidr.min_prefix_v6)
    if rule_id == "metadata-endpoint":
        settings = rules.metadata_endpoint
        return _metadata_endpoint(settings.addresses, settings.ports)
    if rule_id == "port-range":
        return _port_range(rules.port_range.max_ports)
    if rule_id == "host-network":
        return _host_network()
    raise ValueError(f"{rule_id} is not a stateless rule")


# ----- who and where: exemptions and modes -----

_LABELS = "(has(namespaceObject.metadata.labels) ? namespaceObject.metadata.labels : {})"


def selector_cel(selector: LabelSelector, labels: str = _LABELS) -> str:
    """A compiled LabelSelector as CEL over a label map, with Kubernetes' semantics (NotIn and DoesNotExist
    match a missing key)."""
    terms = [f"({cel_string(k)} in {labels} && {labels}[{cel_string(k)}] == {cel_string(v)})"
             for k, v in selector.match_labels]
    for requirement in selector.requirements:
        key = cel_string(requirement.key)
        values = cel_strings(sorted(requirement.values))
        terms.append({
            "In": f"({key} in {labels} && {labels}[{key}] in {values})",
            "NotIn": f"(!({key} in {labels}) || !({labels}[{key}] in {values}))",
            "Exists": f"({key} in {labels})",
            "DoesNotExist": f"!({key} in {labels})",
        }[requirement.operator])
    return " && ".join(terms) if terms else "true"


def _mode_cel(config: Config) -> str:
    expression = cel_string(config.mode)
    for override in reversed(config.mode_overrides):  # the first override that matches wins
        expression = f"({selector_cel(override.namespace_selector.compiled())} ? {cel_string(override.mode)} " \
                     f": {expression})"
    return expression


def _match_conditions(config: Config, mode: Mode | None) -> list[dict[str, str]]:
    conditions = [{"name": "not-being-deleted", "expression": "!has(object.metadata.deletionTimestamp)"}]
    principals = config.exemptions.principals
    if principals.usernames or principals.groups:
        expression = f"!(request.userInfo.username in {cel_strings(sorted(principals.usernames))})"
        if principals.groups:
            expression += (" && !(has(request.userInfo.groups) && request.userInfo.groups.exists(g, g in "
                           f"{cel_strings(sorted(principals.groups))}))")
        conditions.append({"name": "not-an-exempt-principal", "expression": expression})
    return conditions


def _applies(config: Config, mode: Mode | None) -> str | None:
    """CEL: the namespace is not exempt by label and (with modeOverrides) is in `mode`; None when always true.

    These read the namespace's labels, and the API server gives `namespaceObject` to validations and
    variables but not to matchConditions, so they guard each validation instead.
    """
    terms = []
    selector = config.exemptions.namespace_selector
    if selector is not None:
        terms.append(f"!({selector_cel(selector.compiled())})")
    if mode is not None:
        terms.append(f"{_mode_cel(config)} == '{mode}'")
    return " && ".join(terms) if terms else None


# The engine has no opinion on a controller UPDATE that leaves the pod template as it was (scaling, an
# annotation, the garbage collector removing an ownerReference): neither has the VAP.
TEMPLATE_CHANGED = (
    "request.operation != 'UPDATE' || (request.resource.resource == 'cronjobs' ? "
    "dyn(object).spec.jobTemplate.spec.template != dyn(oldObject).spec.jobTemplate.spec.template : "
    "dyn(object).spec.template != dyn(oldObject).spec.template)"
)


def _resource_rules(rule_id: str) -> list[dict[str, Any]]:
    if rule_id in NETWORK_POLICY_RULES:
        return [{"apiGroups": ["networking.k8s.io"], "apiVersions": ["v1"],
                 "operations": ["CREATE", "UPDATE"], "resources": ["networkpolicies"]}]
    # hostNetwork is immutable on a Pod, so only its CREATE is judged; controllers' templates on both.
    rules: list[dict[str, Any]] = [{"apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE"],
                                    "resources": ["pods"]}]
    for group in dict.fromkeys(g for g, _ in WORKLOAD_RESOURCES):
        resources = [r for g, r in WORKLOAD_RESOURCES if g == group]
        rules.append({"apiGroups": [group], "apiVersions": ["*"], "operations": ["CREATE", "UPDATE"],
                      "resources": resources})
    return rules


def _ref() -> str:
    return "request.kind.kind + ' ' + request.namespace + '/' + object.metadata.name"


def _policy(name: str, rule_id: str, config: Config, mode: Mode | None, deny: bool) -> dict[str, Any]:
    exempt = sorted(config.exempt_namespace_names() | set(config.rules.get(rule_id).exempt_namespaces))
    applies = _applies(config, mode)
    validations = [
        {
            "expression": check.expression if applies is None else f"!variables.applies || ({check.expression})",
            "messageExpression": f"{cel_string(rule_id + ': ')} + {_ref()} + "
                                 + (f"': ' + {check.message_cel}" if check.message_cel
                                    else cel_string(": " + check.message)),
            "message": f"{rule_id}: {check.message}",
            "reason": "Forbidden",
        }
        for check in rule_checks(rule_id, config)
    ]
    spec: dict[str, Any] = {
        # A CEL error (e.g. the cost budget) refuses in enforce mode: stricter, never looser. Audit never denies.
        "failurePolicy": "Fail" if deny else "Ignore",
        "matchConstraints": {
            "namespaceSelector": {"matchExpressions": [{"key": NAME_LABEL, "operator": "NotIn", "values": exempt}]},
            "resourceRules": _resource_rules(rule_id),
        },
        "matchConditions": _match_conditions(config, mode),
    }
    if rule_id == "host-network":
        spec["matchConditions"].append({"name": "pod-template-changed", "expression": TEMPLATE_CHANGED})
    if rule_id in NETWORK_POLICY_RULES:
        spec["variables"] = [{"name": n, "expression": e} for n, e in NETWORK_POLICY_VARIABLES]
    if rule_id == "metadata-endpoint":
        addresses = ", ".join(f"ip({cel_string(str(ipaddress.ip_address(a)))})"
                              for a in config.rules.metadata_endpoint.addresses)
        spec["variables"].append({"name": "metadata", "expression": f"[{addresses}]"})
    if rule_id == "host-network":
        spec["variables"] = [{"name": n, "expression": e} for n, e in HOST_NETWORK_VARIABLES]
    if rule_id == "broad-cidr":
        spec["variables"].append({"name": "pow", "expression": POWERS})
    if applies is not None:
        spec["variables"] = [{"name": "applies", "expression": applies}, *spec["variables"]]
    spec["validations"] = validations
    return {
        "apiVersion": API_VERSION,
        "kind": "ValidatingAdmissionPolicy",
        "metadata": {"name": name, "labels": dict(MANAGED_BY), "annotations": {"netpol-guard.io/rule": rule_id}},
        "spec": spec,
    }


def _binding(name: str, deny: bool) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": "ValidatingAdmissionPolicyBinding",
        "metadata": {"name": name, "labels": dict(MANAGED_BY)},
        "spec": {"policyName": name, "validationActions": ["Deny"] if deny else ["Warn", "Audit"]},
    }


def generate(config: Config) -> list[dict[str, Any]]:
    """Policies and bindings for every stateless rule whose action is not `off`, in a stable order."""
    modes: list[Mode] = list(dict.fromkeys([config.mode, *(o.mode for o in config.mode_overrides)]))
    documents: list[dict[str, Any]] = []
    for rule_id in STATELESS_RULES:
        action = config.rules.get(rule_id).action
        if action == "off":
            continue
        if action == "warn":
            variants: list[tuple[str, Mode | None, bool]] = [(PREFIX + rule_id, None, False)]
        elif len(modes) == 1:
            variants = [(PREFIX + rule_id, None, modes[0] == "enforce")]
        else:
            variants = [(f"{PREFIX}{rule_id}-{mode}", mode, mode == "enforce") for mode in modes]
        for name, mode, deny in variants:
            documents.append(_policy(name, rule_id, config, mode, deny))
            documents.append(_binding(name, deny))
    return documents
