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
looser; each such case is listed in STRICTER (and in the README): port-range and
broad-cidr add sizes where the engine takes a union, broad-cidr subtracts only a
block's first except, metadata-endpoint reads a block's first FIRST excepts and
any-namespace a selector's first FIRST expressions, and CIDRs CEL cannot parse are
refused.

The API server stops a CEL expression past 1,000,000 cost units and a policy past
10,000,000, refusing with an error that names no rule; and cel-go's cost tracker makes
a comprehension's time grow with the square of its length. So every policy over
NetworkPolicies starts with a size guard (at most MAX_ENTRIES rules plus the peers or
ports it walks, per direction, else a message that says so), walks long lists in
chunks (every(), total()), and reads only a few entries below a peer: measured with
the API server's own CEL (tests/tools/vapcost), the costliest objects the guard lets
through use at most about 70% of one expression's limit and 30% of a policy's.

Pure: plain data in, manifests (dicts) out; the CLI writes them as YAML.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from webhook.core.config import Config, Mode, OpenPort
from webhook.core.errors import ConfigError
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

PER_CALL_LIMIT = 1_000_000  # k8s.io/apiserver/pkg/apis/cel: PerCallLimit
POLICY_BUDGET = 10_000_000  # RuntimeCELCostBudget, per policy evaluation
CHUNK = 80
MAX_ENTRIES = 6_000  # per direction: rules plus the peers or ports (or both) a policy walks
assert CHUNK * CHUNK >= MAX_ENTRIES
# Below a peer only the first FIRST excepts of an ipBlock and FIRST expressions of a namespaceSelector are
# read, so no expression walks a list the size guard does not count (see each rule for what that costs).
FIRST = 3
# metadata-endpoint has one validation per address (each walks the egress peers): at most this many fit a policy.
MAX_METADATA_ADDRESSES = 8
# upto[m] = [0, ..., m-1] for m in 0..CHUNK: the indexes of a chunk, so no step is spent past a list's end.
UPTO = "[" + ", ".join("[" + ", ".join(str(i) for i in range(m)) + "]" for m in range(CHUNK + 1)) + "]"

STRICTER: dict[str, str] = {
    "port-range": "sums the sizes of a rule's port entries per protocol (overlapping entries and repeated names count "
                  "twice) instead of the size of their union",
    "broad-cidr": "sums a rule's ipBlock sizes per family, each minus only its first except, instead of the size "
                  "of their union minus every except; a CIDR CEL cannot parse is refused; an IPv6 block of /96 or "
                  "wider whose first 80 bits are zero (it may hold the IPv4-mapped ::ffff:0:0/96) counts as every "
                  "IPv4 address, whatever its excepts",
    "metadata-endpoint": f"reads the first {FIRST} excepts of a block (an endpoint excepted further down still "
                         "counts as reached); an IPv6 block of /96 or wider whose first 80 bits are zero (it may "
                         "hold the IPv4-mapped ::ffff:0:0/96, where ::ffff:169.254.169.254 lives) reaches the IPv4 "
                         "endpoints, whatever its excepts; a CIDR CEL cannot parse is refused",
    "any-namespace": f"reads the first {FIRST} expressions of a namespaceSelector without matchLabels: when those "
                     "select by name only (Exists/NotIn on kubernetes.io/metadata.name), it counts as every namespace",
    "size": f"a NetworkPolicy with more than {MAX_ENTRIES} rules plus the peers or ports a policy walks, in one "
            "direction, is refused by that policy (the API server's CEL cost limits; split it)",
}

# Every controller whose pod template netpol-guard judges: (API group, resource).
WORKLOAD_RESOURCES: tuple[tuple[str, str], ...] = (
    ("apps", "deployments"), ("apps", "statefulsets"), ("apps", "daemonsets"), ("apps", "replicasets"),
    ("", "replicationcontrollers"), ("batch", "jobs"), ("batch", "cronjobs"),
)
PROTOCOLS = ("TCP", "UDP", "SCTP")
# broad-cidr compares block sizes in units of up to 2^_UNIT_BITS addresses (see _units).
_UNIT_BITS = 40


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


# ----- walking lists of any length within the API server's CEL budget -----
#
# Two limits shape every expression over a NetworkPolicy:
# - cost: the API server stops one expression at PER_CALL_LIMIT cost units and one policy's validations
#   and variables together at POLICY_BUDGET, and then refuses (failurePolicy Fail) with an error that
#   names no rule. So each policy first checks a size guard (`variables.fits`, below): a NetworkPolicy
#   with more than MAX_ENTRIES entries in one direction is refused by a message that says so, and
#   every other expression is written to stay inside the limits for anything the guard lets through.
# - time: cel-go's runtime cost tracker scans a stack that grows with every step of a comprehension,
#   so one all()/map() over n elements takes time in n^2 (20,000 peers: seconds per expression).
#   A list longer than CHUNK is therefore walked in chunks of CHUNK, by index, so no comprehension
#   runs longer than CHUNK steps (CHUNK^2 >= MAX_ENTRIES elements in all).

Body = Callable[[str], str]


def _uses(body: Body) -> int:
    """How often a body writes its element: written out where it is used once or twice, and bound by a
    one-element list (10 cost units) where more often (every use of `items[index]` costs a few units:
    CEL has no let, and cel.bind is not offered to admission policies)."""
    return body("\x00").count("\x00")


def _walk(items: str, name: str, body: Body, macro: str, then: str = "") -> str:
    """`items.<macro>(name, body)<then>`, chunked when `items` is longer than CHUNK: the chunks' results
    are combined by `<then>` too (all: nothing, the outer all() does; map: .sum())."""
    c, j = f"{name}C", f"{name}J"
    element = f"{items}[{c} * {CHUNK} + {j}]"
    inner = f"variables.upto[{c} < size({items}) / {CHUNK} ? {CHUNK} : size({items}) % {CHUNK}]"
    each = body(element) if _uses(body) <= 2 else (
        f"[{element}].{macro}({name}, {body(name)})" + ("[0]" if macro == "map" else ""))
    return (f"(size({items}) <= {CHUNK} ? {items}.{macro}({name}, {body(name)}){then} : variables.upto[(size("
            f"{items}) + {CHUNK - 1}) / {CHUNK}].{macro}({c}, {inner}.{macro}({j}, {each}){then}){then})")


def every(items: str, name: str, body: Body) -> str:
    """CEL: `body(element)` holds for every element of the list `items` (at most CHUNK^2 long)."""
    return _walk(items, name, body, "all")


def some(items: str, name: str, body: Body) -> str:
    return f"!{every(items, name, lambda e: f'!({body(e)})')}"


def total(items: str, name: str, term: Body) -> str:
    """CEL: the sum of the int `term(element)` over `items` (0 for an empty list)."""
    return _walk(items, name, term, "map", ".sum()")


# ----- CEL building blocks over NetworkPolicy objects (after API server defaulting) -----
# Each takes the CEL that names its element (a rule `r`, a peer or port `p`), see every().

DIRECTIONS = (("ingress", "from"), ("egress", "to"))


def _protocol(p: str) -> str:
    return f"(has({p}.protocol) ? {p}.protocol : 'TCP')"


def _numeric(p: str) -> str:
    return f"type({p}.port) == int"


def _high(p: str) -> str:
    return f"(has({p}.endPort) ? {p}.endPort : int({p}.port))"


def _has_list(r: str, field: str) -> str:
    return f"(has({r}.{field}) && size({r}.{field}) > 0)"


def every_peer(direction: str, test: Body) -> str:
    """CEL: `test` holds for every peer of every rule of the direction."""
    peers = dict(DIRECTIONS)[direction]
    return every(f"variables.{direction}", "r", lambda r: f"!has({r}.{peers}) || {every(f'{r}.{peers}', 'p', test)}")


def every_rule_sum(direction: str, field: str, term: Body, limit: int) -> str:
    """CEL: in every rule of the direction, `term` summed over the rule's `field` list is at most `limit`."""
    return every(f"variables.{direction}", "r",
                 lambda r: f"!has({r}.{field}) || {total(f'{r}.{field}', 'p', term)} <= {limit}")


NETWORK_POLICY_VARIABLES: tuple[tuple[str, str], ...] = (
    # The effective policyTypes (the API server defaults them, but say it here too: the field or Ingress,
    # plus Egress when there are egress rules); rules of a direction not in them are not judged.
    ("types", "has(object.spec.policyTypes) && size(object.spec.policyTypes) > 0 ? object.spec.policyTypes : "
              "(has(object.spec.egress) && size(object.spec.egress) > 0 ? ['Ingress', 'Egress'] : ['Ingress'])"),
    ("ingress", "'Ingress' in variables.types && has(object.spec.ingress) ? object.spec.ingress : []"),
    ("egress", "'Egress' in variables.types && has(object.spec.egress) ? object.spec.egress : []"),
    ("upto", UPTO),
)


def _size_guard(walks: Sequence[str]) -> list[tuple[str, str]]:
    """Variables: each direction's rules plus the lists below them that a policy walks (`walks`: peers,
    ports, or the ports of rules without peers) counted (`ingressEntries`, ...), and `fits`: both within
    MAX_ENTRIES, each count taken only once size() has bounded its rules."""
    found: list[tuple[str, str]] = []
    fits = []
    for direction, peers in DIRECTIONS:
        def per_rule(r: str, peers: str = peers) -> str:
            terms = ["1"]
            for walk in walks:
                if walk == "peers":
                    terms.append(f"(has({r}.{peers}) ? size({r}.{peers}) : 0)")
                elif walk == "ports":
                    terms.append(f"(has({r}.ports) ? size({r}.ports) : 0)")
                else:  # the ports of a rule without peers
                    terms.append(f"({_has_list(r, peers)} || !has({r}.ports) ? 0 : size({r}.ports))")
            return " + ".join(terms)
        found.append((f"{direction}Entries", total(f"variables.{direction}", "r", per_rule)))
        fits.append(f"size(variables.{direction}) <= {MAX_ENTRIES} && variables.{direction}Entries <= {MAX_ENTRIES}")
    found.append(("fits", " && ".join(fits)))
    return found


# What each NetworkPolicy rule walks below the rules, for its size guard.
WALKS: dict[str, tuple[str, ...]] = {
    "allow-all-ingress": ("open ports",), "allow-all-egress": ("open ports",), "any-namespace": ("peers",),
    "broad-cidr": ("peers",), "metadata-endpoint": ("peers", "open ports"), "port-range": ("ports",),
}


def fits_message(walks: Sequence[str]) -> str:
    counted = {"peers": "peers", "ports": "ports", "open ports": "ports of rules without peers"}
    return (
        f"the NetworkPolicy is too large for this ValidatingAdmissionPolicy to judge within the API server's CEL "
        f"cost budget: more than {MAX_ENTRIES} rules, {' and '.join(counted[w] for w in walks)} in one "
        "direction; fix: split it into several NetworkPolicies"
    )


def _first(items: str, name: str, quantifier: str, body: Body) -> str:
    """CEL: `quantifier` (all, exists; or map for a list) over at most the first FIRST elements of `items`."""
    head = f"[{', '.join(str(i) for i in range(FIRST))}]"
    return (f"(size({items}) <= {FIRST} ? {items}.{quantifier}({name}, {body(name)}) : "
            f"{head}.{quantifier}(i, {body(f'{items}[i]')}))")


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


def _covered(low: str, high: str, ranges: Sequence[tuple[int, int]]) -> str:
    """CEL: [low, high] lies inside one of the sorted, disjoint `ranges`, found by binary search (a tree of
    ternaries on the range starts), so the cost per port entry grows with log(ranges), not ranges."""
    if len(ranges) <= 2:
        return " || ".join(f"({a} <= {low} && {high} <= {b})" for a, b in ranges)
    middle = len(ranges) // 2
    return (f"({low} >= {ranges[middle][0]} ? ({_covered(low, high, ranges[middle:])}) : "
            f"({_covered(low, high, ranges[:middle])}))")


def _overlaps(low: str, high: str, ranges: Sequence[tuple[int, int]]) -> str:
    """CEL: [low, high] meets one of the sorted, disjoint `ranges`: the first range ending at or after
    `low` starts at or before `high`, found by binary search on the range ends."""
    if len(ranges) <= 2:
        return " || ".join(f"({low} <= {b} && {a} <= {high})" for a, b in ranges)
    middle = len(ranges) // 2
    return (f"({low} > {ranges[middle - 1][1]} ? ({_overlaps(low, high, ranges[middle:])}) : "
            f"({_overlaps(low, high, ranges[:middle])}))")


def _port_is_open(open_ports: Sequence[OpenPort]) -> Body:
    """CEL over a port entry: every port it opens is a configured open port."""
    def test(p: str) -> str:
        alternatives = []
        for protocol in PROTOCOLS:
            merged, names = _merged(open_ports, protocol)
            parts = []
            if merged:
                parts.append(f"({_numeric(p)} && ({_covered(f'int({p}.port)', _high(p), merged)}))")
            if names:
                parts.append(f"(type({p}.port) == string && {p}.port in {cel_strings(names)})")
            if parts:
                alternatives.append(f"({_protocol(p)} == '{protocol}' && has({p}.port) && ({' || '.join(parts)}))")
        return " || ".join(alternatives) if alternatives else "false"
    return test


def _allow_all(direction: str, open_ports: Sequence[OpenPort]) -> Check:
    peers = "from" if direction == "ingress" else "to"
    who = "every source" if peers == "from" else "every destination"
    allowed = ", ".join(_describe_open(p) for p in open_ports) or "none"
    is_open = _port_is_open(open_ports)
    return Check(
        every(f"variables.{direction}", "r", lambda r: (
            f"{_has_list(r, peers)} || ({_has_list(r, 'ports')} && {every(f'{r}.ports', 'p', is_open)})")),
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
    def every_namespace(p: str) -> str:
        # Beyond the first FIRST expressions: taken as selecting every namespace when those do (stricter).
        name_only = _first(f"{p}.namespaceSelector.matchExpressions", "e", "all",
                           lambda e: f"{e}.key == {cel_string(NAME_LABEL)} && {e}.operator in ['Exists', 'NotIn']")
        return (f"(!has({p}.namespaceSelector.matchLabels) || size({p}.namespaceSelector.matchLabels) == 0) && "
                f"(!has({p}.namespaceSelector.matchExpressions) || {name_only})")

    def every_pod(p: str) -> str:
        return (f"(!has({p}.podSelector) || ((!has({p}.podSelector.matchLabels) || "
                f"size({p}.podSelector.matchLabels) == 0) && (!has({p}.podSelector.matchExpressions) || "
                f"size({p}.podSelector.matchExpressions) == 0)))")

    def peer_ok(p: str) -> str:
        return f"!has({p}.namespaceSelector) || !({every_namespace(p)} && {every_pod(p)})"
    checks = []
    for direction, peers in DIRECTIONS:
        checks.append(Check(
            every_peer(direction, peer_ok),
            f"an {direction} rule has a '{peers}' peer whose namespaceSelector selects every namespace "
            "(namespaceSelector: {} or only Exists/NotIn on kubernetes.io/metadata.name) without a podSelector, "
            "i.e. every pod of every namespace; fix: select namespaces by label "
            "(e.g. kubernetes.io/metadata.name In [...]) or add a podSelector",
        ))
    return checks


# ----- broad-cidr: block sizes in units, looked up by prefix length -----

def _units(bits: int, min_prefix: int) -> tuple[list[int], list[int], list[bool], int]:
    """Counting a family's addresses in units that keep every sum below 2^63.

    The allowed block holds 2^t addresses (t = bits - min_prefix). Sizes are counted in units of 2^s
    addresses, s = max(0, t - 40), so every number stays below 2^42 and a sum of MAX_ENTRIES blocks
    cannot overflow int64: IPv4 is exact (s = 0); an IPv6 block smaller than a unit counts as one unit
    (rounded up: stricter), an except smaller than a unit as none (rounded down: stricter). A block more
    than 2^41 units wide is over the limit whatever its excepts take away (an except is at most half of
    its block), so it counts as 2^41 and subtracts nothing. One except is subtracted, the block's first:
    excepts may overlap each other, so subtracting more than one could take away more than is really
    removed (looser), and finding the largest would walk a list the size guard does not count.

    Returns, by prefix length, the units of a block, the units of an except and whether a block
    subtracts its except; and the limit in units.
    """
    t = bits - min_prefix
    s = max(0, t - _UNIT_BITS)
    block, removed, subtracts = [], [], []
    for prefix in range(bits + 1):
        e = bits - prefix - s
        block.append(2 ** (_UNIT_BITS + 1) if e > _UNIT_BITS + 1 else (1 if e < 0 else 2**e))
        removed.append(2 ** min(e, _UNIT_BITS + 1) if e >= 0 else 0)  # only read below a subtracting block
        subtracts.append(0 <= e <= _UNIT_BITS + 1)
    limit = 2 ** (t - s)
    # Every address of the family is always too broad, whatever the prefix: with min_prefix 0 the limit is
    # one unit less than everything (a sum can only reach everything when the union might).
    return block, removed, subtracts, limit - 1 if t == bits else limit


def _cel_list(values: Iterable[object]) -> str:
    return "[" + ", ".join(str(v).lower() if isinstance(v, bool) else str(v) for v in values) + "]"


def _maps_ipv4(p: str) -> str:
    """An IPv6 ipBlock that may hold the IPv4-mapped space ::ffff:0:0/96, i.e. every IPv4 address written as
    IPv6 (the engine reads such blocks as the IPv4 addresses they map). CEL's cidr()/ip() refuse mapped
    addresses, so this tests the prefix instead: /96 or wider with the first 80 bits zero, or containing ::.
    Stricter than the engine for the few such blocks that hold none of the mapped space; ignores excepts."""
    block = f"cidr({p}.ipBlock.cidr)"
    return (f"({block}.prefixLength() <= 96 && ({block}.containsIP(variables.zero6) || "
            f"variables.low80.containsCIDR({block})))")


MAPPED_VARIABLES = (("zero6", "ip('::')"), ("low80", "cidr('::/80')"))


def _readable(p: str, excepts_read: int) -> str:
    """CEL: an ipBlock's CIDR and the excepts a rule reads (the first `excepts_read`) are CIDRs CEL can parse."""
    if excepts_read == 1:
        excepts = f"size({p}.ipBlock.except) == 0 || isCIDR({p}.ipBlock.except[0])"
    else:
        excepts = _first(f"{p}.ipBlock.except", "x", "all", lambda x: f"isCIDR({x})")
    return f"isCIDR({p}.ipBlock.cidr) && (!has({p}.ipBlock.except) || {excepts})"


def _broad_cidr_variables(min_v4: int, min_v6: int) -> list[tuple[str, str]]:
    found = list(MAPPED_VARIABLES)
    for family, bits, minimum in ((4, 32, min_v4), (6, 128, min_v6)):
        block, removed, subtracts, _ = _units(bits, minimum)
        found += [(f"block{family}", _cel_list(block)), (f"except{family}", _cel_list(removed))]
        if family == 6:
            found.append(("subtracts6", _cel_list(subtracts)))
    return found


def _broad_cidr(min_v4: int, min_v6: int) -> list[Check]:
    def readable(p: str) -> str:
        return f"!has({p}.ipBlock) || {_readable(p, 1)}"

    def units(family: int, limit: int) -> Body:
        def term(p: str) -> str:
            prefix = f"cidr({p}.ipBlock.cidr).prefixLength()"
            # The first except (a lower bound of what the excepts remove: stricter than their union).
            largest = f"cidr({p}.ipBlock.except[0]).prefixLength()"
            excepts = f"(has({p}.ipBlock.except) && size({p}.ipBlock.except) > 0)"
            # An IPv6 CIDR always has a ':', an IPv4 one never: no parse needed to tell the families apart.
            if family == 4:  # and an IPv6 block that may map IPv4 counts as every IPv4 address
                value = (f"{p}.ipBlock.cidr.contains(':') ? ({_maps_ipv4(p)} ? {limit + 1} : 0) : "
                         f"variables.block4[{prefix}] - ({excepts} ? variables.except4[{largest}] : 0)")
            else:
                value = (f"!{p}.ipBlock.cidr.contains(':') ? 0 : variables.block6[{prefix}] - "
                         f"(variables.subtracts6[{prefix}] && {excepts} ? variables.except6[{largest}] : 0)")
            return f"!has({p}.ipBlock) ? 0 : ({value})"
        return term

    checks = []
    for direction, peers in DIRECTIONS:
        checks.append(Check(
            every_peer(direction, readable),
            f"an {direction} rule has an ipBlock that the API server's CEL cannot read as a CIDR; "
            "fix: write plain CIDRs such as 10.0.0.0/16 or fd00::/64",
        ))
        for family, bits, minimum in ((4, 32, min_v4), (6, 128, min_v6)):
            limit = _units(bits, minimum)[3]
            checks.append(Check(
                every_rule_sum(direction, peers, units(family, limit), limit),
                f"an {direction} rule's IPv{family} ipBlocks (minus excepts), taken together, hold more addresses "
                f"than one /{minimum} (or every address); fix: use the narrowest CIDRs that hold the real peers "
                f"(/{minimum} or narrower in all)",
            ))
    return checks


def _metadata_variables(addresses: Sequence[str]) -> list[tuple[str, str]]:
    return [*MAPPED_VARIABLES, *((f"metadata{i}", f"ip({cel_string(str(ipaddress.ip_address(a)))})")
                                 for i, a in enumerate(addresses))]


def _misses(ip: str, family: int) -> Body:
    """CEL over a peer: it is not an ipBlock holding the address `ip` (of `family`) outside its excepts. Only
    the first FIRST excepts are read: an endpoint excepted further down still counts as reached (stricter)."""
    def test(p: str) -> str:
        excepted = _first(f"{p}.ipBlock.except", "x", "exists", lambda x: f"cidr({x}).containsIP({ip})")
        same_family = f"{'' if family == 6 else '!'}{p}.ipBlock.cidr.contains(':')"
        return (f"!has({p}.ipBlock) || !({same_family} && cidr({p}.ipBlock.cidr).containsIP({ip}) && "
                f"!(has({p}.ipBlock.except) && {excepted}))")
    return test


def _metadata_endpoint(addresses: Sequence[str], ports: Sequence[OpenPort]) -> list[Check]:
    """One validation per address (each walks the peers once, inside one call's cost limit), after one
    that every ipBlock can be read, and one for IPv6 blocks that may map the IPv4 addresses."""
    fix = "fix: add the endpoint (e.g. 169.254.169.254/32) to ipBlock.except"
    checks = [Check(
        every_peer("egress", lambda p: f"!has({p}.ipBlock) || {_readable(p, FIRST)}"),
        "an egress rule has an ipBlock that the API server's CEL cannot read as a CIDR, so it may reach a cloud "
        "metadata endpoint; fix: write plain CIDRs such as 10.0.0.0/16 or fd00::/64",
    )]
    for i, address in enumerate(addresses):
        checks.append(Check(
            every_peer("egress", _misses(f"variables.metadata{i}", ipaddress.ip_address(address).version)),
            f"an egress ipBlock lets pods reach the cloud metadata endpoint {address}; {fix}",
        ))
    if any(ipaddress.ip_address(a).version == 4 for a in addresses):  # also reachable as ::ffff:a.b.c.d
        checks.append(Check(
            every_peer("egress", lambda p: f"!has({p}.ipBlock) || !{p}.ipBlock.cidr.contains(':') || !{_maps_ipv4(p)}"),
            "an egress IPv6 ipBlock may hold the IPv4-mapped addresses ::ffff:0:0/96, and so the IPv4 cloud "
            f"metadata endpoints ({', '.join(a for a in addresses if ipaddress.ip_address(a).version == 4)}); "
            "fix: use narrower IPv6 CIDRs",
        ))
    if ports:
        def hits(p: str) -> str:
            found = []
            for protocol in PROTOCOLS:  # numeric (the config says so); a named port resolves in the cluster only
                merged, _ = _merged(ports, protocol)
                if merged:
                    found.append(f"({_protocol(p)} == '{protocol}' && (!has({p}.port) || ({_numeric(p)} && "
                                 f"({_overlaps(f'int({p}.port)', _high(p), merged)}))))")
            return " || ".join(found)
        wanted = ", ".join(_describe_open(p) for p in ports)
        checks.append(Check(
            every("variables.egress", "r", lambda r: (
                f"{_has_list(r, 'to')} || ({_has_list(r, 'ports')} && !{some(f'{r}.ports', 'p', hits)})")),
            f"an egress rule with no 'to' allows the metadata ports ({wanted}) to every destination, cloud "
            "metadata endpoints included; fix: list the destinations in 'to'",
        ))
    return checks


def _port_range(max_ports: int) -> list[Check]:
    # An entry without a port (every port of a protocol) is what a rule without `ports` means: not a range.
    # One validation per protocol: each walks a rule's ports once, inside one call's cost limit.
    def opened(protocol: str) -> Body:
        return lambda p: (f"{_protocol(p)} != '{protocol}' || !has({p}.port) ? 0 : "
                          f"({_numeric(p)} && has({p}.endPort) ? {p}.endPort - int({p}.port) + 1 : 1)")
    checks = []
    for direction, _ in DIRECTIONS:
        for protocol in PROTOCOLS:
            checks.append(Check(
                every_rule_sum(direction, "ports", opened(protocol), max_ports),
                f"an {direction} rule opens more than {max_ports} distinct {protocol} ports; "
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


def _guarded(rule_id: str, checks: list[Check]) -> list[Check]:
    """NetworkPolicy checks after the size guard, and only for objects that pass it: a too-large object
    is refused by the guard's message alone, at the cost of counting its entries."""
    if rule_id not in NETWORK_POLICY_RULES:
        return checks
    return [Check("variables.fits", fits_message(WALKS[rule_id])),
            *(Check(f"!variables.fits || ({c.expression})", c.message, c.message_cel) for c in checks)]


def _variables(rule_id: str, config: Config) -> list[tuple[str, str]]:
    if rule_id == "host-network":
        return list(HOST_NETWORK_VARIABLES)
    found = [*NETWORK_POLICY_VARIABLES, *_size_guard(WALKS[rule_id])]
    if rule_id == "broad-cidr":
        found += _broad_cidr_variables(config.rules.broad_cidr.min_prefix_v4, config.rules.broad_cidr.min_prefix_v6)
    if rule_id == "metadata-endpoint":
        found += _metadata_variables(config.rules.metadata_endpoint.addresses)
    return found


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
        for check in _guarded(rule_id, rule_checks(rule_id, config))
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
    spec["variables"] = [{"name": n, "expression": e} for n, e in _variables(rule_id, config)]
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
    """Policies and bindings for every stateless rule whose action is not `off`, in a stable order.

    Raises ConfigError for a config the policies cannot judge inside the API server's CEL budget."""
    addresses = config.rules.metadata_endpoint.addresses
    if config.rules.metadata_endpoint.action != "off" and len(addresses) > MAX_METADATA_ADDRESSES:
        raise ConfigError(
            f"rules.metadata-endpoint.addresses: {len(addresses)} addresses; the ValidatingAdmissionPolicy judges "
            f"at most {MAX_METADATA_ADDRESSES} (each one walks every egress peer, inside the API server's CEL "
            "budget of one policy); the webhook judges any number")
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
