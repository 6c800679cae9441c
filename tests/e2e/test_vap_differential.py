"""Differential: the VAPs in a real kube-apiserver and `Engine.review` judge the same objects the same way.

Every object (a hand-written corpus of edge cases plus seeded random NetworkPolicies and workloads) is
sent to the API server as a server-side dry-run create with only netpol-guard's VAPs installed (no
webhook), and to the engine. For each stateless rule the rule ids must match, except where the VAP is
documented as stricter (webhook.vap.STRICTER): then the VAP may add port-range, broad-cidr,
metadata-endpoint or any-namespace, and only when the object has the shape that makes CEL's sum exceed
the engine's union, an IPv6 block that may hold the IPv4-mapped space, or a list below a peer longer than
the VAP reads (webhook.vap.FIRST), all recomputed here in Python.
The VAP may never miss a rule the engine reports.

The VAPs run with validationActions [Warn, Audit] (so every failing policy reports, not just the first)
and failurePolicy Fail (so a CEL error or an exceeded cost budget shows up as a refusal, never passes).
"""

from __future__ import annotations

import ipaddress
import json
import random
import re
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from controlplane import ControlPlane
from vap_support import Api, ensure_namespace, installed_vaps, remove, render_cli, resource_path

from webhook.core.config import Config, config_from_data
from webhook.core.engine import Engine, Request
from webhook.core.errors import ObjectError
from webhook.core.state import ClusterState, NamespaceInfo
from webhook.vap import FIRST, STATELESS_RULES

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(1800)]

NS = "vap-diff"
SEED = 20261122
RANDOM_OBJECTS = 2400
WARNING = re.compile(r"Validation failed for ValidatingAdmissionPolicy 'netpol-guard-([a-z-]+)' with binding")
METADATA = ("169.254.169.254", "169.254.170.2", "169.254.170.23", "fd00:ec2::254", "fd00:ec2::23",
            "100.100.100.200")
# A second config, to see parameters baked in: open ingress ports, other prefixes, fewer ports.
TUNED: dict[str, Any] = {"rules": {
    # Three or more separate ranges a protocol: the VAP finds a port's range by binary search.
    "allow-all-ingress": {"openPorts": [{"port": 80, "endPort": 90}, {"port": 91}, {"port": "http"},
                                        {"port": 100, "endPort": 110}, {"port": 443}, {"port": 1000, "endPort": 1023},
                                        {"port": 8080}, {"port": 53, "protocol": "UDP"}]},
    "allow-all-egress": {"openPorts": [{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"},
                                       {"port": 443}]},
    "broad-cidr": {"minPrefixV4": 16, "minPrefixV6": 64},
    "port-range": {"maxPorts": 100},
    "metadata-endpoint": {"ports": [{"port": 80}, {"port": 8000, "endPort": 8100, "protocol": "UDP"},
                                    {"port": 85}, {"port": 500, "endPort": 510}, {"port": 8080},
                                    {"port": 9000, "protocol": "UDP"}, {"port": 70, "protocol": "UDP"}]},
}}


# ----- the objects -----

def netpol(name: str, **spec: Any) -> dict[str, Any]:
    spec.setdefault("podSelector", {})
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": name, "namespace": NS}, "spec": spec}


def corpus() -> list[dict[str, Any]]:
    """Edge cases of every stateless rule (the unit tests' shapes and the evasions they guard against)."""
    i, e = "Ingress", "Egress"
    name_label = "kubernetes.io/metadata.name"
    cases: list[dict[str, Any]] = [
        netpol("c-deny-all", policyTypes=[i, e]),
        netpol("c-open-ingress", policyTypes=[i], ingress=[{}]),
        netpol("c-open-ingress-empty-from", policyTypes=[i], ingress=[{"from": [], "ports": []}]),
        netpol("c-open-egress-dns", policyTypes=[e], egress=[{"ports": [{"port": 53, "protocol": "UDP"},
                                                                         {"port": 53}]}]),
        netpol("c-open-egress-all-udp", policyTypes=[e], egress=[{"ports": [{"protocol": "UDP"}]}]),
        netpol("c-open-egress-named", policyTypes=[e], egress=[{"ports": [{"port": "dns"}]}]),
        netpol("c-open-egress-80", policyTypes=[e], egress=[{"ports": [{"port": 80}]}]),
        netpol("c-open-egress-range-80", policyTypes=[e], egress=[{"ports": [{"port": 70, "endPort": 85}]}]),
        netpol("c-open-egress-udp-80", policyTypes=[e], egress=[{"ports": [{"port": 80, "protocol": "UDP"}]}]),
        netpol("c-no-types-egress", egress=[{}]),
        netpol("c-ingress-only-types", policyTypes=[i], ingress=[{"from": [{"podSelector": {}}]}], egress=[{}]),
        netpol("c-ns-empty", policyTypes=[i], ingress=[{"from": [{"namespaceSelector": {}}]}]),
        netpol("c-ns-empty-pod-empty", policyTypes=[i], ingress=[{"from": [{"namespaceSelector": {},
                                                                            "podSelector": {}}]}]),
        netpol("c-ns-empty-pod-labels", policyTypes=[i], ingress=[{"from": [{"namespaceSelector": {},
                                                                             "podSelector": {"matchLabels":
                                                                                             {"a": "b"}}}]}]),
        netpol("c-ns-exists", policyTypes=[e], egress=[{"to": [{"namespaceSelector": {"matchExpressions": [
            {"key": name_label, "operator": "Exists"}]}}]}]),
        netpol("c-ns-notin", policyTypes=[i], ingress=[{"from": [{"namespaceSelector": {"matchExpressions": [
            {"key": name_label, "operator": "NotIn", "values": ["kube-system"]},
            {"key": name_label, "operator": "Exists"}]}}]}]),
        netpol("c-ns-in", policyTypes=[i], ingress=[{"from": [{"namespaceSelector": {"matchExpressions": [
            {"key": name_label, "operator": "In", "values": ["a"]}]}}]}]),
        netpol("c-ns-other-key", policyTypes=[i], ingress=[{"from": [{"namespaceSelector": {"matchExpressions": [
            {"key": "team", "operator": "Exists"}]}}]}]),
        netpol("c-ns-empty-labels", policyTypes=[i], ingress=[{"from": [{"namespaceSelector": {
            "matchLabels": {}}}]}]),
        netpol("c-cidr-0", policyTypes=[e], egress=[{"to": [{"ipBlock": {"cidr": "0.0.0.0/0"}}]}]),
        netpol("c-cidr-0-except", policyTypes=[e], egress=[{"to": [{"ipBlock": {
            "cidr": "0.0.0.0/0", "except": ["10.0.0.0/8", "169.254.0.0/16", "100.64.0.0/10"]}}]}]),
        netpol("c-cidr-v6-0", policyTypes=[i], ingress=[{"from": [{"ipBlock": {"cidr": "::/0"}}]}]),
        netpol("c-cidr-8", policyTypes=[i], ingress=[{"from": [{"ipBlock": {"cidr": "10.0.0.0/8"}}]}]),
        netpol("c-cidr-7", policyTypes=[i], ingress=[{"from": [{"ipBlock": {"cidr": "10.0.0.0/7"}}]}]),
        netpol("c-cidr-7-half-except", policyTypes=[i], ingress=[{"from": [{"ipBlock": {
            "cidr": "10.0.0.0/7", "except": ["11.0.0.0/8"]}}]}]),
        netpol("c-cidr-two-8", policyTypes=[i], ingress=[{"from": [{"ipBlock": {"cidr": "10.0.0.0/8"}},
                                                                   {"ipBlock": {"cidr": "12.0.0.0/8"}}]}]),
        netpol("c-cidr-same-8-twice", policyTypes=[i], ingress=[{"from": [{"ipBlock": {"cidr": "10.0.0.0/8"}},
                                                                          {"ipBlock": {"cidr": "10.0.0.0/8"}}]}]),
        netpol("c-cidr-two-rules", policyTypes=[i], ingress=[{"from": [{"ipBlock": {"cidr": "10.0.0.0/8"}}]},
                                                             {"from": [{"ipBlock": {"cidr": "12.0.0.0/8"}}]}]),
        netpol("c-cidr-v6-32", policyTypes=[e], egress=[{"to": [{"ipBlock": {"cidr": "2001:db8::/32"}}]}]),
        netpol("c-cidr-v6-31", policyTypes=[e], egress=[{"to": [{"ipBlock": {"cidr": "2001:db8::/31"}}]}]),
        netpol("c-cidr-v6-two-33", policyTypes=[e], egress=[{"to": [{"ipBlock": {"cidr": "2001:db8::/33"}},
                                                                     {"ipBlock": {"cidr": "2001:db8:8000::/33"}},
                                                                     {"ipBlock": {"cidr": "2001:db9::/128"}}]}]),
        netpol("c-imds", policyTypes=[e], egress=[{"to": [{"ipBlock": {"cidr": "169.254.169.254/32"}}]}]),
        netpol("c-imds-ingress", policyTypes=[i], ingress=[{"from": [{"ipBlock": {"cidr": "169.254.169.254/32"}}]}]),
        netpol("c-link-local-excepted", policyTypes=[e], egress=[{"to": [{"ipBlock": {
            "cidr": "169.254.0.0/16", "except": ["169.254.169.254/32", "169.254.170.0/24"]}}]}]),
        netpol("c-link-local-half-excepted", policyTypes=[e], egress=[{"to": [{"ipBlock": {
            "cidr": "169.254.0.0/16", "except": ["169.254.169.254/32"]}}]}]),
        netpol("c-alibaba", policyTypes=[e], egress=[{"to": [{"ipBlock": {"cidr": "100.64.0.0/10"}}]}]),
        netpol("c-imds-v6", policyTypes=[e], egress=[{"to": [{"ipBlock": {"cidr": "fd00:ec2::/64"}}]}]),
        netpol("c-ports-1024", policyTypes=[i], ingress=[{"from": [{"podSelector": {}}],
                                                          "ports": [{"port": 1, "endPort": 1024}]}]),
        netpol("c-ports-1025", policyTypes=[i], ingress=[{"from": [{"podSelector": {}}],
                                                          "ports": [{"port": 1, "endPort": 1025}]}]),
        netpol("c-ports-split", policyTypes=[i], ingress=[{"from": [{"podSelector": {}}], "ports": [
            {"port": 1, "endPort": 600}, {"port": 601, "endPort": 1100}]}]),
        netpol("c-ports-overlap", policyTypes=[i], ingress=[{"from": [{"podSelector": {}}], "ports": [
            {"port": 1, "endPort": 600}, {"port": 500, "endPort": 1000}]}]),
        netpol("c-ports-per-protocol", policyTypes=[i], ingress=[{"from": [{"podSelector": {}}], "ports": [
            {"port": 1, "endPort": 1000}, {"port": 1, "endPort": 1000, "protocol": "UDP"}]}]),
        netpol("c-ports-all-udp-entry", policyTypes=[i], ingress=[{"from": [{"podSelector": {}}], "ports": [
            {"protocol": "UDP"}]}]),
        netpol("c-ports-names", policyTypes=[i], ingress=[{"from": [{"podSelector": {}}], "ports": [
            {"port": 1, "endPort": 1023}, {"port": "http"}, {"port": "metrics"}]}]),
        # Lists below a peer longer than the VAP reads (FIRST): exact up to it, stricter past it.
        netpol("c-cidr-7-largest-except-5th", policyTypes=[i], ingress=[{"from": [{"ipBlock": {
            "cidr": "10.0.0.0/7", "except": [f"10.{k}.0.0/16" for k in range(1, 5)] + ["11.0.0.0/8"]}}]}]),
        netpol("c-cidr-7-largest-except-4th", policyTypes=[i], ingress=[{"from": [{"ipBlock": {
            "cidr": "10.0.0.0/7", "except": [f"10.{k}.0.0/16" for k in range(1, 4)] + ["11.0.0.0/8",
                                                                                         "10.9.0.0/16"]}}]}]),
        netpol("c-link-local-excepted-5th", policyTypes=[e], egress=[{"to": [{"ipBlock": {
            "cidr": "169.254.169.0/24", "except": [f"169.254.169.{k}/32" for k in range(4)] +
            ["169.254.169.254/32"]}}]}]),
        netpol("c-link-local-excepted-4th", policyTypes=[e], egress=[{"to": [{"ipBlock": {
            "cidr": "169.254.169.0/24", "except": [f"169.254.169.{k}/32" for k in range(3)] +
            ["169.254.169.254/32", "169.254.169.9/32"]}}]}]),
        netpol("c-ns-five-names", policyTypes=[i], ingress=[{"from": [{"namespaceSelector": {"matchExpressions": [
            {"key": name_label, "operator": "NotIn", "values": [f"ns{k}"]} for k in range(4)] + [
            {"key": "team", "operator": "In", "values": ["a"]}]}}]}]),
        netpol("c-ns-five-names-team-4th", policyTypes=[i], ingress=[{"from": [{"namespaceSelector": {
            "matchExpressions": [{"key": name_label, "operator": "NotIn", "values": [f"ns{k}"]} for k in range(3)] + [
                {"key": "team", "operator": "In", "values": ["a"]},
                {"key": name_label, "operator": "Exists"}]}}]}]),
    ]
    for kind in ("Pod", "Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "ReplicationController", "Job",
                 "CronJob"):
        for host in (True, False, None):
            cases.append(workload(kind, f"c-{kind.lower()}-{host}".lower(), host))
    return cases


def workload(kind: str, name: str, host_network: bool | None) -> dict[str, Any]:
    labels = {"app": name}
    spec: dict[str, Any] = {"containers": [{"name": "c", "image": "nginx"}]}
    if host_network is not None:
        spec["hostNetwork"] = host_network
    if kind in ("Job", "CronJob"):
        spec["restartPolicy"] = "Never"
    template = {"metadata": {"labels": labels}, "spec": spec}
    metadata = {"name": name, "namespace": NS}
    if kind == "Pod":
        return {"apiVersion": "v1", "kind": "Pod", "metadata": {**metadata, "labels": labels}, "spec": spec}
    if kind == "ReplicationController":
        return {"apiVersion": "v1", "kind": kind, "metadata": metadata,
                "spec": {"replicas": 0, "selector": labels, "template": template}}
    if kind == "Job":
        return {"apiVersion": "batch/v1", "kind": kind, "metadata": metadata, "spec": {"template": template}}
    if kind == "CronJob":
        return {"apiVersion": "batch/v1", "kind": kind, "metadata": metadata,
                "spec": {"schedule": "0 0 * * *", "jobTemplate": {"spec": {"template": template}}}}
    body: dict[str, Any] = {"selector": {"matchLabels": labels}, "template": template}
    if kind != "DaemonSet":
        body["replicas"] = 0
    if kind == "StatefulSet":
        body["serviceName"] = name
    return {"apiVersion": "apps/v1", "kind": kind, "metadata": metadata, "spec": body}


class Generator:
    """Seeded random NetworkPolicies (valid for the API server) weighted towards each rule's edges."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)

    def cidr(self) -> dict[str, Any]:
        rng = self.rng
        if rng.random() < 0.25:
            base = rng.choice((*METADATA, "169.254.0.0", "100.64.0.0", "fd00:ec2::"))
        elif rng.random() < 0.6:
            base = f"{rng.choice([10, 11, 12, 172, 192, 0, 100, 169])}.{rng.randrange(256)}.{rng.randrange(256)}.0"
        else:
            base = rng.choice(["2001:db8::", "fd00::", "2001:db8:8000::", "::", "fd00:ec2::"])
        address = ipaddress.ip_address(base)
        bits = address.max_prefixlen
        if bits == 32:
            prefix = rng.choice([0, 1, 6, 7, 8, 8, 9, 10, 12, 16, 16, 24, 30, 32, rng.randrange(33)])
        else:
            prefix = rng.choice([0, 16, 31, 32, 32, 33, 48, 64, 120, 128, rng.randrange(129)])
        network = ipaddress.ip_network(f"{address}/{prefix}", strict=False)
        block: dict[str, Any] = {"cidr": str(network)}
        if prefix < bits and rng.random() < 0.5:
            excepts = set()
            for _ in range(rng.choice([1, 1, 2, 3, 6])):
                if rng.random() < 0.4:
                    inside = [a for a in METADATA if ipaddress.ip_address(a) in network]
                    if inside:
                        excepts.add(f"{rng.choice(inside)}/{bits}")
                        continue
                length = rng.randrange(prefix + 1, bits + 1)
                offset = rng.randrange(2 ** (bits - prefix)) if bits - prefix < 64 else rng.getrandbits(bits - prefix)
                start = type(network.network_address)(int(network.network_address) + offset)
                sub = ipaddress.ip_network(f"{start}/{length}", strict=False)
                excepts.add(str(sub))
            block["except"] = sorted(excepts)
        return block

    def selector(self, namespaces: bool) -> dict[str, Any]:
        rng = self.rng
        roll = rng.random()
        if roll < 0.3:
            return {}
        if roll < 0.4:
            return {"matchLabels": {}}
        expressions = []
        for _ in range(rng.choice([1, 1, 2, 5])):
            key = "kubernetes.io/metadata.name" if namespaces and rng.random() < 0.7 else rng.choice(["team", "app"])
            operator = rng.choice(["Exists", "NotIn", "NotIn", "In", "DoesNotExist"])
            expression: dict[str, Any] = {"key": key, "operator": operator}
            if operator in ("In", "NotIn"):
                expression["values"] = rng.sample(["a", "b", "kube-system", "default"], rng.choice([1, 2]))
            expressions.append(expression)
        selector: dict[str, Any] = {"matchExpressions": expressions}
        if rng.random() < 0.2:
            selector["matchLabels"] = {"team": "a"}
        return selector

    def peer(self) -> dict[str, Any]:
        rng = self.rng
        roll = rng.random()
        if roll < 0.45:
            return {"ipBlock": self.cidr()}
        peer: dict[str, Any] = {}
        if roll < 0.85:
            peer["namespaceSelector"] = self.selector(namespaces=True)
        if roll >= 0.85 or rng.random() < 0.4:
            peer["podSelector"] = self.selector(namespaces=False)
        return peer

    def port(self) -> dict[str, Any]:
        rng = self.rng
        entry: dict[str, Any] = {}
        protocol = rng.choice([None, "TCP", "UDP", "SCTP"])
        if protocol:
            entry["protocol"] = protocol
        roll = rng.random()
        if roll < 0.1:
            return entry  # every port of the protocol
        if roll < 0.2:
            entry["port"] = rng.choice(["http", "dns", "metrics"])
            return entry
        entry["port"] = rng.choice([53, 80, 443, 8080, 85, 91, rng.randrange(1, 65536)])
        if rng.random() < 0.45:
            width = rng.choice([1, 10, 100, 500, 1023, 1024, 1025, 2000, rng.randrange(70000)])
            entry["port"] = rng.choice([1, 80, 500, 1000, entry["port"]])
            entry["endPort"] = min(65535, entry["port"] + width)
        return entry

    def rule(self, peers_key: str) -> dict[str, Any]:
        rng = self.rng
        rule: dict[str, Any] = {}
        roll = rng.random()
        if roll < 0.65:
            rule[peers_key] = [self.peer() for _ in range(rng.choice([1, 1, 2, 3, 4]))]
        elif roll < 0.72:
            rule[peers_key] = []
        roll = rng.random()
        if roll < 0.7:
            rule["ports"] = [self.port() for _ in range(rng.choice([1, 1, 2, 3, 5]))]
        elif roll < 0.75:
            rule["ports"] = []
        return rule

    def network_policy(self, name: str) -> dict[str, Any]:
        rng = self.rng
        spec: dict[str, Any] = {"podSelector": self.selector(namespaces=False) if rng.random() < 0.3 else {}}
        types = rng.choice([None, ["Ingress"], ["Egress"], ["Ingress", "Egress"], ["Ingress", "Egress"]])
        if types is not None:
            spec["policyTypes"] = types
        for direction, key in (("ingress", "from"), ("egress", "to")):
            roll = rng.random()
            if roll < 0.75:
                spec[direction] = [self.rule(key) for _ in range(rng.choice([1, 1, 2, 3]))]
            elif roll < 0.8:
                spec[direction] = []
        return netpol(name, **spec)

    def objects(self, count: int) -> Iterator[dict[str, Any]]:
        kinds = ("Pod", "Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "ReplicationController", "Job",
                 "CronJob")
        for index in range(count):
            if self.rng.random() < 0.1:
                yield workload(self.rng.choice(kinds), f"r-w{index}", self.rng.choice([True, False, None]))
            else:
                yield self.network_policy(f"r-{index}")


# ----- the CEL sums the VAP is documented to use where it is stricter -----

def _rules(obj: dict[str, Any]) -> Iterator[dict[str, Any]]:
    spec = obj.get("spec", {})
    types = spec.get("policyTypes") or (["Ingress", "Egress"] if spec.get("egress") else ["Ingress"])
    for direction, key in (("Ingress", "ingress"), ("Egress", "egress")):
        if direction in types:
            yield from spec.get(key) or []


def port_sum_exceeds(obj: dict[str, Any], max_ports: int) -> bool:
    for rule in _rules(obj):
        sums: Counter[str] = Counter()
        for port in rule.get("ports") or []:
            if "port" not in port:
                continue
            size = port["endPort"] - port["port"] + 1 if "endPort" in port else 1
            sums[port.get("protocol", "TCP")] += size
        if any(total > max_ports for total in sums.values()):
            return True
    return False


def cidr_sum_exceeds(obj: dict[str, Any], min_v4: int, min_v6: int) -> bool:
    """broad-cidr as the VAP computes it (webhook.vap._units): per rule and family, the sum of each block's
    size minus its first except, in units of 2^s addresses (blocks rounded up, excepts down)."""
    for rule in _rules(obj):
        totals: Counter[int] = Counter()
        for peer in rule.get("from", rule.get("to")) or []:
            block = peer.get("ipBlock")
            if block is None:
                continue
            network = ipaddress.ip_network(block["cidr"], strict=False)
            bits = network.max_prefixlen
            t = bits - (min_v4 if bits == 32 else min_v6)
            s = max(0, t - 40)
            exponent = bits - network.prefixlen - s
            if exponent > 41:
                units = 2**41
            elif exponent < 0:
                units = 1
            else:
                excepts = [ipaddress.ip_network(e, strict=False).prefixlen for e in block.get("except", [])[:1]]
                largest = bits - excepts[0] - s if excepts else -1
                units = 2**exponent - (2**largest if largest >= 0 else 0)
            totals[bits] += units
        for bits, total in totals.items():
            t = bits - (min_v4 if bits == 32 else min_v6)
            limit = 2 ** (t - max(0, t - 40))
            if total > (limit - 1 if t == bits else limit):
                return True
    return False


_ZERO_80 = ipaddress.ip_network("::/80")


def may_map_ipv4(obj: dict[str, Any], direction_key: str | None = None) -> bool:
    """The VAP's test for an IPv6 block that may hold the IPv4-mapped space (webhook.vap._maps_ipv4): /96 or
    wider, and either holding :: or inside ::/80."""
    spec = obj.get("spec", {})
    keys = (direction_key,) if direction_key else ("ingress", "egress")
    for key in keys:
        for rule in spec.get(key) or []:
            for peer in rule.get("from", rule.get("to")) or []:
                block = peer.get("ipBlock")
                if block is None or ":" not in block["cidr"]:
                    continue
                network = ipaddress.ip_network(block["cidr"], strict=False)
                if network.prefixlen <= 96 and (
                        ipaddress.ip_address("::") in network or network.subnet_of(_ZERO_80)):
                    return True
    return False


def _peers(obj: dict[str, Any], direction_key: str | None = None) -> Iterator[dict[str, Any]]:
    spec = obj.get("spec", {})
    for key in (direction_key,) if direction_key else ("ingress", "egress"):
        for rule in spec.get(key) or []:
            yield from rule.get("from", rule.get("to")) or []


def excepted_past_first(obj: dict[str, Any], addresses: list[str]) -> bool:
    """A metadata address inside an egress block, excepted only past the first FIRST excepts (the VAP reads
    no further)."""
    for peer in _peers(obj, "egress"):
        block = peer.get("ipBlock")
        if block is None or len(block.get("except", [])) <= FIRST:
            continue
        network = ipaddress.ip_network(block["cidr"], strict=False)
        head = [ipaddress.ip_network(e, strict=False) for e in block["except"][:FIRST]]
        for address in map(ipaddress.ip_address, addresses):
            if address.version == network.version and address in network and not any(address in e for e in head):
                return True
    return False


def names_every_namespace_in_first(obj: dict[str, Any]) -> bool:
    """A namespaceSelector of more than FIRST expressions whose first FIRST all select by name only (the
    VAP reads no further and takes it as every namespace)."""
    for peer in _peers(obj):
        expressions = peer.get("namespaceSelector", {}).get("matchExpressions", [])
        if len(expressions) > FIRST and all(e["key"] == "kubernetes.io/metadata.name" and
                                            e["operator"] in ("Exists", "NotIn") for e in expressions[:FIRST]):
            return True
    return False


def stricter_ok(rule: str, obj: dict[str, Any], config: Config) -> bool:
    """Whether the VAP reporting `rule` where the engine does not is a documented stricter case."""
    if rule == "port-range":
        return port_sum_exceeds(obj, config.rules.port_range.max_ports)
    if rule == "broad-cidr":
        settings = config.rules.broad_cidr
        return cidr_sum_exceeds(obj, settings.min_prefix_v4, settings.min_prefix_v6) or may_map_ipv4(obj)
    if rule == "metadata-endpoint":
        return may_map_ipv4(obj, "egress") or excepted_past_first(obj, config.rules.metadata_endpoint.addresses)
    if rule == "any-namespace":
        return names_every_namespace_in_first(obj)
    return False


# ----- running both sides -----

def engine_rules(engine: Engine, view: ClusterState, obj: dict[str, Any]) -> set[str]:
    """The stateless rule ids the engine reports (raises ObjectError for what it cannot read)."""
    request = Request(kind=obj["kind"], operation="CREATE", namespace=NS, name=obj["metadata"]["name"], object=obj)
    decision = engine.review(request, view)
    return {v.rule for v in decision.violations} & set(STATELESS_RULES)


def vap_verdict(api: Api, obj: dict[str, Any]) -> tuple[str, set[str], str]:
    """("ok", rule ids warned) | ("invalid", ...) for objects the API server's own validation refuses |
    ("error", ...) for a refusal by a VAP (a CEL error or cost: with Warn actions, nothing else refuses)."""
    status, body, warnings = api.create(resource_path(obj), json.dumps(obj).encode())
    rules = {m.group(1) for w in warnings for m in [WARNING.search(w)] if m}
    if status == 201:
        return "ok", rules, ""
    message = json.loads(body).get("message", body)
    if "ValidatingAdmissionPolicy" in message:
        return "error", rules, message
    return "invalid", rules, message


def differential(cluster: ControlPlane, config_data: dict[str, Any] | None, objects: list[dict[str, Any]],
                 tmp_path: Path) -> tuple[list[str], Counter[str]]:
    config = config_from_data(config_data)
    documents = render_cli(config_data, "audit", tmp_path)
    for document in documents:
        if document["kind"] == "ValidatingAdmissionPolicy":
            document["spec"]["failurePolicy"] = "Fail"
    engine = Engine(config, offline=True)  # by-construction any-namespace only, as the VAP
    view = ClusterState()
    view.set_namespace(NamespaceInfo(name=NS, labels={"kubernetes.io/metadata.name": NS}))
    api = Api(cluster)
    problems: list[str] = []
    stats: Counter[str] = Counter()
    remove(cluster, NS)
    with installed_vaps(cluster, documents, NS), ThreadPoolExecutor(max_workers=4) as pool:
        for obj, (outcome, vap, message) in zip(objects, pool.map(lambda o: vap_verdict(api, o), objects),
                                                 strict=True):
            name = obj["metadata"]["name"]
            if outcome == "invalid":
                stats["invalid for the API server (skipped)"] += 1
                continue
            if outcome == "error":
                problems.append(f"{name}: the VAP failed to evaluate: {message}\n{json.dumps(obj)}")
                continue
            stats["judged"] += 1
            try:
                engine_side = engine_rules(engine, view, obj)
            except ObjectError as error:
                problems.append(f"{name}: the engine cannot read what the API server accepted: {error}")
                continue
            for rule in engine_side - vap:
                problems.append(f"{name}: LOOSER: the VAP misses {rule} (engine {sorted(engine_side)}, "
                                f"VAP {sorted(vap)})\n{json.dumps(obj)}")
            for rule in vap - engine_side:
                if stricter_ok(rule, obj, config):
                    stats[f"stricter ({rule})"] += 1
                else:
                    problems.append(f"{name}: the VAP adds {rule} (engine {sorted(engine_side)}, "
                                    f"VAP {sorted(vap)})\n{json.dumps(obj)}")
            stats["denied" if engine_side else "allowed"] += 1
            for rule in engine_side:
                stats[f"rule {rule}"] += 1
    return problems, stats


@pytest.fixture(scope="module")
def namespace(cluster: ControlPlane) -> str:
    return ensure_namespace(cluster, NS)


def report(problems: list[str], stats: Counter[str]) -> str:
    lines = [f"{k}: {v}" for k, v in sorted(stats.items())]
    print("\n".join(lines))
    return f"{len(problems)} disagreements ({', '.join(lines)}):\n" + "\n".join(problems[:25])


def test_vap_and_engine_agree_on_the_corpus_and_random_objects(
        cluster: ControlPlane, namespace: str, tmp_path: Path) -> None:
    objects = corpus() + list(Generator(SEED).objects(RANDOM_OBJECTS))
    problems, stats = differential(cluster, None, objects, tmp_path)
    summary = report(problems, stats)  # printed: how many were judged, denied, stricter (pytest -s shows it)
    assert stats["judged"] >= 2000, summary
    assert not problems, summary


def test_vap_and_engine_agree_with_tuned_parameters(cluster: ControlPlane, namespace: str, tmp_path: Path) -> None:
    objects = corpus() + list(Generator(SEED + 1).objects(600))
    problems, stats = differential(cluster, TUNED, objects, tmp_path)
    summary = report(problems, stats)
    assert stats["judged"] >= 500, summary
    assert not problems, summary
