"""networking.k8s.io/v1 NetworkPolicy, read into a model with its exact semantics.

The Kubernetes rules this module encodes (and other tools get wrong):
- effective policyTypes: the field when present and non-empty, otherwise Ingress,
  plus Egress when the policy has at least one egress rule;
- `podSelector: {}` selects every pod of the policy's namespace;
- a rule whose `from`/`to` is missing *or empty* matches every peer, and a rule
  whose `ports` is missing or empty matches every port;
- inside one peer `namespaceSelector` AND `podSelector`; separate peers are OR;
- a port's protocol defaults to TCP and `endPort` is inclusive.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from webhook.core.errors import ObjectError
from webhook.core.objects import mapping_at, namespace_of, required_name
from webhook.core.selectors import LabelSelector, parse_selector

Direction = Literal["Ingress", "Egress"]
DIRECTIONS: tuple[Direction, Direction] = ("Ingress", "Egress")
PROTOCOLS = ("TCP", "UDP", "SCTP")

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True, slots=True)
class IPBlock:
    cidr: IPNetwork
    excepts: tuple[IPNetwork, ...]
    written: str  # the CIDR as written, to quote it back to the user
    normalised: bool = False  # the written CIDR had host bits set (10.1.2.3/8 means 10.0.0.0/8)
    leading_zeros: bool = False  # written with leading zeros (010.0.0.0/8), which Kubernetes reads as decimal

    def describe(self) -> str:
        if self.normalised:
            return f"{self.written} (host bits set; means {self.cidr})"
        if self.leading_zeros and self.written != str(self.cidr):
            return f"{self.written} (leading zeros are decimal; means {self.cidr})"
        return self.written

    def contains(self, address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
        """Whether this block lets `address` through (inside the CIDR, outside every except).

        An IPv4 address is also let through by an IPv6 block holding its IPv4-mapped form (::ffff:a.b.c.d).
        """
        if address.version == 4 and self.cidr.version == 6:
            address = ipaddress.IPv6Address(f"::ffff:{address}")
        if address.version != self.cidr.version or address not in self.cidr:
            return False
        return not any(address in excluded for excluded in self.excepts)


@dataclass(frozen=True, slots=True)
class Peer:
    """One entry of `from`/`to`. Exactly one of ip_block or the selectors is set."""

    pod_selector: LabelSelector | None
    namespace_selector: LabelSelector | None
    ip_block: IPBlock | None

    def matches_pod(
        self, policy_namespace: str, pod_namespace: str, pod_labels: Mapping[str, str],
        namespace_labels: Mapping[str, str],
    ) -> bool:
        """Whether a pod (not an IP) is this peer: namespaceSelector AND podSelector."""
        if self.ip_block is not None:
            return False
        if self.namespace_selector is None:
            if pod_namespace != policy_namespace:
                return False
        elif not self.namespace_selector.matches(namespace_labels):
            return False
        return self.pod_selector is None or self.pod_selector.matches(pod_labels)


@dataclass(frozen=True, slots=True)
class Port:
    protocol: str
    port: int | str | None  # None: every port of the protocol; str: a named container port
    end_port: int | None

    def describe(self) -> str:
        if self.port is None:
            return f"all/{self.protocol}"
        if self.end_port is not None:
            return f"{self.port}-{self.end_port}/{self.protocol}"
        return f"{self.port}/{self.protocol}"


@dataclass(frozen=True, slots=True)
class Rule:
    """An ingress or egress rule. `peers is None` / `ports is None` mean every peer / port."""

    direction: Direction
    index: int
    peers: tuple[Peer, ...] | None
    ports: tuple[Port, ...] | None

    @property
    def field(self) -> str:
        return f"spec.{self.direction.lower()}[{self.index}]"

    @property
    def peers_field(self) -> str:
        return f"{self.field}.{'from' if self.direction == 'Ingress' else 'to'}"


@dataclass(frozen=True, slots=True)
class NetworkPolicy:
    namespace: str
    name: str
    pod_selector: LabelSelector
    policy_types: frozenset[Direction]  # effective types
    explicit_policy_types: bool  # the `policyTypes` field was present and non-empty
    ingress: tuple[Rule, ...]
    egress: tuple[Rule, ...]
    deleting: bool = False  # carries a deletionTimestamp

    @property
    def ref(self) -> str:
        return f"{self.namespace}/{self.name}"

    @property
    def selects_all_pods(self) -> bool:
        return self.pod_selector.is_empty

    @property
    def rules(self) -> tuple[Rule, ...]:
        return self.ingress + self.egress


def parse_network_policy(obj: Mapping[str, Any], default_namespace: str = "default") -> NetworkPolicy:
    """Read a NetworkPolicy manifest; raises ObjectError naming the bad field."""
    metadata = mapping_at(obj.get("metadata"), "metadata")
    name = required_name(metadata)
    namespace = namespace_of(obj, default_namespace)
    spec = mapping_at(obj.get("spec"), "spec")
    pod_selector = parse_selector(spec.get("podSelector"), "spec.podSelector")
    ingress = _parse_rules(spec.get("ingress"), "Ingress")
    egress = _parse_rules(spec.get("egress"), "Egress")
    raw_types = spec.get("policyTypes")
    if raw_types is not None and not isinstance(raw_types, list):
        raise ObjectError("spec.policyTypes", "must be a list of Ingress and/or Egress")
    explicit = bool(raw_types)
    if raw_types:
        for index, value in enumerate(raw_types):
            if value not in DIRECTIONS:
                raise ObjectError(f"spec.policyTypes[{index}]", f"must be Ingress or Egress, not {value!r}")
        types: frozenset[Direction] = frozenset(raw_types)
    else:
        # The API server's defaulting: Ingress always, Egress only when egress rules exist.
        types = frozenset(("Ingress", "Egress")) if egress else frozenset(("Ingress",))
    return NetworkPolicy(
        namespace=namespace,
        name=name,
        pod_selector=pod_selector,
        policy_types=types,
        explicit_policy_types=explicit,
        ingress=ingress,
        egress=egress,
        deleting=metadata.get("deletionTimestamp") is not None,
    )



def _parse_rules(raw: Any, direction: Direction) -> tuple[Rule, ...]:
    path = f"spec.{direction.lower()}"
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise ObjectError(path, "must be a list of rules")
    peer_key = "from" if direction == "Ingress" else "to"
    rules = []
    for index, item in enumerate(raw):
        where = f"{path}[{index}]"
        rule = mapping_at(item, where)
        unknown = set(rule) - {peer_key, "ports"}
        if unknown:
            raise ObjectError(where, f"unknown field(s) {', '.join(sorted(map(str, unknown)))} in a {direction} rule")
        raw_peers = rule.get(peer_key)
        raw_ports = rule.get("ports")
        peers = _parse_peers(raw_peers, f"{where}.{peer_key}") if raw_peers else None
        ports = _parse_ports(raw_ports, f"{where}.ports") if raw_ports else None
        rules.append(Rule(direction=direction, index=index, peers=peers, ports=ports))
    return tuple(rules)


def _parse_peers(raw: Any, path: str) -> tuple[Peer, ...]:
    if not isinstance(raw, list):
        raise ObjectError(path, "must be a list of peers")
    peers = []
    for index, item in enumerate(raw):
        where = f"{path}[{index}]"
        peer = mapping_at(item, where)
        unknown = set(peer) - {"podSelector", "namespaceSelector", "ipBlock"}
        if unknown:
            raise ObjectError(where, f"unknown peer field(s) {', '.join(sorted(map(str, unknown)))}")
        has_ip = peer.get("ipBlock") is not None
        has_selector = peer.get("podSelector") is not None or peer.get("namespaceSelector") is not None
        if has_ip and has_selector:
            raise ObjectError(where, "ipBlock cannot be combined with podSelector or namespaceSelector")
        if not has_ip and not has_selector:
            raise ObjectError(where, "a peer needs podSelector, namespaceSelector or ipBlock")
        if has_ip:
            peers.append(Peer(None, None, _parse_ip_block(peer["ipBlock"], f"{where}.ipBlock")))
            continue
        # An absent selector (None) and an empty one ({}: everything) mean different things in a peer.
        pod_selector = (
            parse_selector(peer["podSelector"], f"{where}.podSelector")
            if peer.get("podSelector") is not None else None
        )
        namespace_selector = (
            parse_selector(peer["namespaceSelector"], f"{where}.namespaceSelector")
            if peer.get("namespaceSelector") is not None else None
        )
        peers.append(Peer(pod_selector, namespace_selector, None))
    return tuple(peers)


@dataclass(frozen=True, slots=True)
class ParsedCidr:
    network: IPNetwork  # host bits cleared
    written: str
    normalised: bool  # host bits were set
    leading_zeros: bool  # an IPv4 octet had leading zeros, read as decimal


_DIGITS = re.compile(r"[0-9]+")


def parse_cidr(raw: Any, path: str) -> ParsedCidr:
    """A CIDR read as the API server's legacy parser (netutils.ParseCIDRSloppy) reads it.

    Leading zeros in an IPv4 octet are decimal (010.0.0.0/8 is 10.0.0.0/8, never octal), host bits are
    cleared, and the prefix length must be a number (no netmask spelling).
    """
    if not isinstance(raw, str) or "/" not in raw:
        raise ObjectError(path, f"must be a CIDR such as 10.0.0.0/16 or fd00::/64, not {raw!r}")
    written = raw.strip()
    address_text, _, prefix_text = written.partition("/")
    if not _DIGITS.fullmatch(prefix_text):
        raise ObjectError(path, f"invalid CIDR {raw!r}: the prefix length must be a number")
    octets = address_text.split(".")
    leading_zeros = False
    if ":" not in address_text and len(octets) == 4 and all(_DIGITS.fullmatch(o) for o in octets):
        leading_zeros = any(len(o) > 1 and o.startswith("0") for o in octets)
        if leading_zeros:
            address_text = ".".join(str(int(o)) for o in octets)
    if "%" in address_text:
        raise ObjectError(path, f"invalid CIDR {raw!r}: a zoned address (%zone) is not a CIDR the API server accepts")
    try:
        address = ipaddress.ip_address(address_text)
        network = ipaddress.ip_network(f"{address_text}/{int(prefix_text)}", strict=False)
    except ValueError as error:
        raise ObjectError(path, f"invalid CIDR {raw!r}: {error}") from None
    return ParsedCidr(network, written, address != network.network_address, leading_zeros)


def _parse_ip_block(raw: Any, path: str) -> IPBlock:
    block = mapping_at(raw, path)
    parsed = parse_cidr(block.get("cidr"), f"{path}.cidr")
    raw_excepts = block.get("except") or []
    if not isinstance(raw_excepts, list):
        raise ObjectError(f"{path}.except", "must be a list of CIDRs")
    excepts = []
    leading_zeros = parsed.leading_zeros
    for index, item in enumerate(raw_excepts):
        excluded = parse_cidr(item, f"{path}.except[{index}]")
        if excluded.network.version != parsed.network.version:
            raise ObjectError(f"{path}.except[{index}]", f"{item} is not the same IP family as {parsed.written}")
        if not (excluded.network.subnet_of(parsed.network)  # type: ignore[arg-type]
                and excluded.network.prefixlen > parsed.network.prefixlen):
            raise ObjectError(f"{path}.except[{index}]", f"{item} must be a strict subset of cidr {parsed.written}")
        leading_zeros = leading_zeros or excluded.leading_zeros
        excepts.append(excluded.network)
    return IPBlock(cidr=parsed.network, excepts=tuple(excepts), written=parsed.written,
                   normalised=parsed.normalised, leading_zeros=leading_zeros)


_ASCII_NUMBER = re.compile(r"[0-9]+")
_SERVICE_NAME = re.compile(r"[a-z0-9]([a-z0-9-]*[a-z0-9])?")


def parse_port_value(raw: Any, path: str, *, quoted_numbers: bool = False) -> int | str | None:
    """An IntOrString port as the API server validates it: 1-65535, or an IANA service name.

    A service name has at most 15 characters from [a-z0-9-], at least one letter, and no leading, trailing
    or doubled hyphen, so a quoted number (`"80"`) is refused, as is anything else that is not a name (`"²"`,
    `"HTTP"`, `"80/tcp"`), naming `path`. `quoted_numbers` reads `"80"` as 80 (the config's convenience).
    """
    if raw is None:
        return None
    if isinstance(raw, bool) or not isinstance(raw, int | str):
        raise ObjectError(path, "must be a port number or a named port")
    number: int
    if isinstance(raw, str):
        if _ASCII_NUMBER.fullmatch(raw) and quoted_numbers:
            number = int(raw)
        elif _ASCII_NUMBER.fullmatch(raw):
            raise ObjectError(path, f"{raw!r} is a quoted number, which the API server refuses as a named port "
                                    f"(a name needs at least one letter): write {raw} without quotes")
        elif len(raw) <= 15 and _SERVICE_NAME.fullmatch(raw) and "--" not in raw and any(c.isalpha() for c in raw):
            return raw
        else:
            raise ObjectError(path, f"{raw!r} is not a port number or an IANA service name (at most 15 "
                                    "characters a-z, 0-9 and '-', at least one letter, no '--', no '-' at either end)")
    else:
        number = raw
    if not 1 <= number <= 65535:
        raise ObjectError(path, f"must be between 1 and 65535, not {number}")
    return number


def _parse_ports(raw: Any, path: str) -> tuple[Port, ...]:
    if not isinstance(raw, list):
        raise ObjectError(path, "must be a list of ports")
    ports = []
    for index, item in enumerate(raw):
        where = f"{path}[{index}]"
        entry = mapping_at(item, where)
        protocol = entry.get("protocol") or "TCP"
        if protocol not in PROTOCOLS:
            raise ObjectError(f"{where}.protocol", f"must be one of {', '.join(PROTOCOLS)}, not {protocol!r}")
        port = parse_port_value(entry.get("port"), f"{where}.port")
        end_port = entry.get("endPort")
        if end_port is not None:
            if isinstance(end_port, bool) or not isinstance(end_port, int):
                raise ObjectError(f"{where}.endPort", "must be a port number")
            if not isinstance(port, int):
                raise ObjectError(f"{where}.endPort", "needs a numeric port")
            if not port <= end_port <= 65535:
                raise ObjectError(f"{where}.endPort", f"must be between port ({port}) and 65535, not {end_port}")
        ports.append(Port(protocol=protocol, port=port, end_port=end_port))
    return tuple(ports)
