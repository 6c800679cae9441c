"""`netpol-guard vap`: which policies and bindings come out of a config, and how the config shapes them.

What the CEL decides is tested against the real API server (tests/e2e/test_vap.py and the
differential test); here: names, actions, modes, exemptions, baked parameters, the CLI.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml
from hypothesis import given
from hypothesis import strategies as st

from webhook.core.config import OpenPort, config_from_data
from webhook.core.netpol import Port
from webhook.core.rules import _port_is_open
from webhook.vap import (
    CHUNK,
    FIRST,
    MAX_ENTRIES,
    STATELESS_RULES,
    UPTO,
    _covered,
    _merged,
    _overlaps,
    every,
    generate,
    selector_cel,
    total,
)

Obj = dict[str, Any]


def policies(data: Any = None) -> dict[str, Obj]:
    return {d["metadata"]["name"]: d for d in generate(config_from_data(data)) if d["kind"].endswith("Policy")}


def bindings(data: Any = None) -> dict[str, Obj]:
    return {d["metadata"]["name"]: d for d in generate(config_from_data(data))
            if d["kind"] == "ValidatingAdmissionPolicyBinding"}


def variables(policy: Obj) -> dict[str, str]:
    return {v["name"]: v["expression"] for v in policy["spec"].get("variables", [])}


def conditions(policy: Obj) -> dict[str, str]:
    return {c["name"]: c["expression"] for c in policy["spec"]["matchConditions"]}


def test_default_config_gives_one_denying_policy_and_binding_per_stateless_rule() -> None:
    docs = generate(config_from_data(None))
    assert [(d["kind"], d["metadata"]["name"]) for d in docs] == [
        (kind, f"netpol-guard-{rule}") for rule in STATELESS_RULES
        for kind in ("ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding")
    ]
    for name, binding in bindings().items():
        assert binding["spec"] == {"policyName": name, "validationActions": ["Deny"]}
    for policy in policies().values():
        assert policy["apiVersion"] == "admissionregistration.k8s.io/v1"
        assert policy["spec"]["failurePolicy"] == "Fail"
        rule = policy["metadata"]["annotations"]["netpol-guard.io/rule"]
        for validation in policy["spec"]["validations"]:
            assert validation["message"].startswith(f"{rule}: ")
            assert validation["messageExpression"].startswith(f'"{rule}: " + ')
            assert "\n" not in validation["message"]


def test_audit_mode_warns_and_records_and_never_fails_closed() -> None:
    for binding in bindings({"mode": "audit"}).values():
        assert binding["spec"]["validationActions"] == ["Warn", "Audit"]
    assert {p["spec"]["failurePolicy"] for p in policies({"mode": "audit"}).values()} == {"Ignore"}


def test_rule_actions_off_and_warn() -> None:
    data = {"rules": {"broad-cidr": {"action": "off"}, "port-range": {"action": "warn"}}}
    names = set(policies(data))
    assert "netpol-guard-broad-cidr" not in names
    assert bindings(data)["netpol-guard-port-range"]["spec"]["validationActions"] == ["Warn", "Audit"]
    assert bindings(data)["netpol-guard-any-namespace"]["spec"]["validationActions"] == ["Deny"]
    # Rules with no stateless form never appear, whatever their action.
    assert not any("coverage" in n or "protect" in n or "explicit" in n for n in names)


def test_exempt_namespaces_by_name_global_and_per_rule() -> None:
    data = {"namespace": "guard", "exemptions": {"namespaces": ["legacy"]},
            "rules": {"host-network": {"exemptNamespaces": ["monitoring"]}}}
    def excluded(name: str) -> list[str]:
        selector = policies(data)[name]["spec"]["matchConstraints"]["namespaceSelector"]
        (expression,) = selector["matchExpressions"]
        assert (expression["key"], expression["operator"]) == ("kubernetes.io/metadata.name", "NotIn")
        return list(expression["values"])
    assert excluded("netpol-guard-broad-cidr") == ["guard", "kube-node-lease", "kube-public", "kube-system", "legacy"]
    assert excluded("netpol-guard-host-network") == [
        "guard", "kube-node-lease", "kube-public", "kube-system", "legacy", "monitoring"]


def test_exempt_principals_and_label_selector_become_match_conditions() -> None:
    data = {"exemptions": {
        "principals": {"users": ['alice"x'], "groups": ["gitops"], "serviceAccounts": ["argocd:argocd-server"]},
        "namespaceSelector": {"matchLabels": {"team": "infra"},
                              "matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["prod"]}]},
    }}
    found = conditions(policies(data)["netpol-guard-allow-all-ingress"])
    assert found["not-being-deleted"] == "!has(object.metadata.deletionTimestamp)"
    assert found["not-an-exempt-principal"] == (
        '!(request.userInfo.username in ["alice\\"x", "system:serviceaccount:argocd:argocd-server"]) && '
        '!(has(request.userInfo.groups) && request.userInfo.groups.exists(g, g in ["gitops"]))'
    )
    labels = "(has(namespaceObject.metadata.labels) ? namespaceObject.metadata.labels : {})"
    # namespaceObject is not given to matchConditions: the label exemption guards each validation instead.
    policy = policies(data)["netpol-guard-allow-all-ingress"]
    assert variables(policy)["applies"] == (
        f'!(("team" in {labels} && {labels}["team"] == "infra") && '
        f'(!("tier" in {labels}) || !({labels}["tier"] in ["prod"])))'
    )
    assert all(v["expression"].startswith("!variables.applies || (") for v in policy["spec"]["validations"])
    assert set(conditions(policies()["netpol-guard-allow-all-ingress"])) == {"not-being-deleted"}
    assert "applies" not in variables(policies()["netpol-guard-allow-all-ingress"])


def test_selector_cel_spells_each_operator() -> None:
    selector = config_from_data({"exemptions": {"namespaceSelector": {"matchExpressions": [
        {"key": "a", "operator": "In", "values": ["2", "1"]},
        {"key": "b", "operator": "Exists"},
        {"key": "c", "operator": "DoesNotExist"},
    ]}}}).exemptions.namespace_selector
    assert selector is not None
    assert selector_cel(selector.compiled(), "L") == '("a" in L && L["a"] in ["1", "2"]) && ("b" in L) && !("c" in L)'
    empty = config_from_data({"exemptions": {"namespaceSelector": {}}}).exemptions.namespace_selector
    assert empty is not None and selector_cel(empty.compiled(), "L") == "true"


def test_mode_overrides_split_enforce_rules_per_mode_first_match_wins() -> None:
    data = {"mode": "audit", "modeOverrides": [
        {"namespaceSelector": {"matchLabels": {"m": "enforce"}}, "mode": "enforce"},
        {"namespaceSelector": {"matchLabels": {"m2": "audit"}}, "mode": "audit"},
    ], "rules": {"port-range": {"action": "warn"}}}
    found = policies(data)
    assert "netpol-guard-broad-cidr-audit" in found and "netpol-guard-broad-cidr-enforce" in found
    assert "netpol-guard-port-range" in found and "netpol-guard-port-range-audit" not in found
    labels = "(has(namespaceObject.metadata.labels) ? namespaceObject.metadata.labels : {})"
    mode = (f'(("m" in {labels} && {labels}["m"] == "enforce") ? "enforce" : '
            f'(("m2" in {labels} && {labels}["m2"] == "audit") ? "audit" : "audit"))')
    assert variables(found["netpol-guard-broad-cidr-enforce"])["applies"] == f"{mode} == 'enforce'"
    assert variables(found["netpol-guard-broad-cidr-audit"])["applies"] == f"{mode} == 'audit'"
    assert bindings(data)["netpol-guard-broad-cidr-enforce"]["spec"]["validationActions"] == ["Deny"]
    assert bindings(data)["netpol-guard-broad-cidr-audit"]["spec"]["validationActions"] == ["Warn", "Audit"]
    assert "applies" not in variables(found["netpol-guard-port-range"])


def expressions(policy: Obj) -> str:
    return "\n".join(v["expression"] for v in policy["spec"]["validations"])


def test_parameters_are_baked_into_the_cel() -> None:
    data = {"rules": {
        "port-range": {"maxPorts": 77},
        "allow-all-ingress": {"openPorts": [{"port": 8080, "endPort": 8090}, {"port": 8091}, {"port": "metrics"}]},
        "broad-cidr": {"minPrefixV4": 16, "minPrefixV6": 96},
        "metadata-endpoint": {"addresses": ["192.0.2.7"], "ports": [{"port": 8775}]},
    }}
    found = policies(data)
    assert "<= 77)" in expressions(found["netpol-guard-port-range"])
    ingress = expressions(found["netpol-guard-allow-all-ingress"])
    assert "(8080 <= int(p.port) && (has(p.endPort) ? p.endPort : int(p.port)) <= 8091)" in ingress  # merged
    assert 'p.port in ["metrics"]' in ingress
    cidr = expressions(found["netpol-guard-broad-cidr"])
    assert ".sum()) <= 65536)" in cidr  # IPv4: 2^(32-16) addresses, exact
    assert "? 65537 : 0)" in cidr  # an IPv6 block that may map IPv4 counts as more than that
    assert ".sum()) <= 4294967296)" in cidr  # IPv6: 2^(128-96), below 2^40 so counted exactly too
    metadata = expressions(found["netpol-guard-metadata-endpoint"])
    assert variables(found["netpol-guard-metadata-endpoint"])["metadata0"] == 'ip("192.0.2.7")'
    assert "8775" in metadata and "169.254.169.254" not in metadata


def test_default_ipv6_limit_is_counted_in_units() -> None:
    cidr = expressions(policies()["netpol-guard-broad-cidr"])
    assert f".sum()) <= {2**40})" in cidr  # /32 of IPv6 = 2^96 addresses = 2^40 units of 2^56


def test_host_network_covers_pods_on_create_and_the_seven_controllers() -> None:
    policy = policies()["netpol-guard-host-network"]
    rules = policy["spec"]["matchConstraints"]["resourceRules"]
    assert rules[0] == {"apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE"], "resources": ["pods"]}
    resources = sorted(r for rule in rules[1:] for r in rule["resources"])
    assert resources == sorted(["deployments", "statefulsets", "daemonsets", "replicasets", "replicationcontrollers",
                                "jobs", "cronjobs"])
    assert all(rule["operations"] == ["CREATE", "UPDATE"] for rule in rules[1:])
    variables = {v["name"]: v["expression"] for v in policy["spec"]["variables"]}
    assert "dyn(object).spec.jobTemplate.spec.template.spec" in variables["podSpec"]


ports = st.builds(
    lambda low, width, protocol: OpenPort(port=low, endPort=min(65535, low + width) if width else None,
                                          protocol=protocol),
    st.integers(1, 200), st.integers(0, 20), st.sampled_from(["TCP", "UDP"]),
)


@given(st.lists(ports, max_size=6), st.integers(1, 220), st.integers(0, 30), st.sampled_from(["TCP", "UDP"]))
def test_merged_open_ranges_cover_exactly_what_the_engine_walk_covers(
        open_ports: list[OpenPort], low: int, width: int, protocol: str) -> None:
    entry = Port(protocol=protocol, port=low, end_port=low + width if width else None)
    merged, _ = _merged(open_ports, protocol)
    high = low + width
    assert any(a <= low and high <= b for a, b in merged) == _port_is_open(entry, open_ports)


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "webhook", "vap", *args], capture_output=True, text=True,
                          timeout=60, check=False)


def test_cli_writes_yaml_and_mode_flag_wins(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("mode: enforce\nrules:\n  broad-cidr:\n    action: 'off'\n")
    proc = run("--config", str(config), "--mode", "audit")
    assert proc.returncode == 0, proc.stderr
    docs = list(yaml.safe_load_all(proc.stdout))
    assert len(docs) == 12
    assert {tuple(d["spec"]["validationActions"]) for d in docs if "validationActions" in d["spec"]} == {
        ("Warn", "Audit")}


def test_more_metadata_addresses_than_one_policy_can_walk_is_a_config_error(tmp_path: Path) -> None:
    nine = [f"192.0.2.{k}" for k in range(1, 10)]
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({"rules": {"metadata-endpoint": {"addresses": nine}}}))
    proc = run("--config", str(path))
    assert proc.returncode == 2
    assert "rules.metadata-endpoint.addresses: 9 addresses; the ValidatingAdmissionPolicy judges at most 8" \
        in proc.stderr
    assert "Traceback" not in proc.stderr
    # Off, the rule needs no policy; eight fit.
    path.write_text(yaml.safe_dump({"rules": {"metadata-endpoint": {"addresses": nine, "action": "off"}}}))
    assert run("--config", str(path)).returncode == 0
    assert len([v for v in policies({"rules": {"metadata-endpoint": {"addresses": nine[:8]}}})[
        "netpol-guard-metadata-endpoint"]["spec"]["validations"] if "cloud metadata endpoint 192.0.2." in v[
        "message"]]) == 8


def test_cli_bad_config_exits_2_naming_the_field(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("rules:\n  port-range:\n    maxPorts: 0\n")
    proc = run("--config", str(config))
    assert proc.returncode == 2
    assert "rules.port-range.maxPorts" in proc.stderr and proc.stdout == ""


def test_every_network_policy_check_sits_behind_the_size_guard() -> None:
    for name, policy in policies().items():
        validations = policy["spec"]["validations"]
        if name.endswith("host-network"):
            assert "fits" not in variables(policy)
            continue
        assert validations[0]["expression"] == "variables.fits"
        assert "too large for this ValidatingAdmissionPolicy" in validations[0]["message"]
        assert all(v["expression"].startswith("!variables.fits || (") for v in validations[1:])
        # The guard bounds the rule lists by size() before counting what is below them.
        fits = variables(policy)["fits"]
        assert fits.startswith(f"size(variables.ingress) <= {MAX_ENTRIES} && variables.ingressEntries <= ")


def test_each_guard_counts_what_its_policy_walks() -> None:
    found = policies()
    entries = {name.removeprefix("netpol-guard-"): variables(p).get("egressEntries", "") for name, p in found.items()}
    assert "size(r.to)" in entries["broad-cidr"] and "size(r.ports)" not in entries["broad-cidr"]
    assert "size(r.ports)" in entries["port-range"] and "size(r.to)" not in entries["port-range"]
    # allow-all walks the ports of rules without peers only; metadata-endpoint peers and those ports.
    assert "(has(r.to) && size(r.to) > 0) || !has(r.ports) ? 0 : size(r.ports)" in entries["allow-all-egress"]
    assert "size(r.to)" in entries["metadata-endpoint"] and "? 0 : size(r.ports)" in entries["metadata-endpoint"]
    assert (f"more than {MAX_ENTRIES} rules, peers in one direction" in
            found["netpol-guard-broad-cidr"]["spec"]["validations"][0]["message"])


def test_long_lists_are_walked_in_chunks_and_short_ones_in_one_go() -> None:
    text = every("L", "p", lambda p: f"f({p})")
    assert text.startswith(f"(size(L) <= {CHUNK} ? L.all(p, f(p)) : variables.upto[(size(L) + {CHUNK - 1}) / {CHUNK}]")
    assert f"f(L[pC * {CHUNK} + pJ])" in text  # used once: written out, no binding list
    bound = every("L", "p", lambda p: f"f({p}) && g({p}) && h({p})")
    assert f"[L[pC * {CHUNK} + pJ]].all(p, f(p) && g(p) && h(p))" in bound  # used three times: bound once
    assert total("L", "p", lambda p: f"n({p})").endswith(".sum()).sum())")
    upto = yaml.safe_load(UPTO)
    assert len(upto) == CHUNK + 1 and all(upto[m] == list(range(m)) for m in range(CHUNK + 1))
    assert CHUNK * CHUNK >= MAX_ENTRIES


def test_only_the_first_entries_below_a_peer_are_read() -> None:
    found = policies()
    any_namespace = expressions(found["netpol-guard-any-namespace"])
    assert f"size(p.namespaceSelector.matchExpressions) <= {FIRST} ? " in any_namespace
    assert f"{list(range(FIRST))}.all(i, " in any_namespace
    broad = expressions(found["netpol-guard-broad-cidr"])
    assert "cidr(p.ipBlock.except[0]).prefixLength()" in broad  # the first except only
    metadata = expressions(found["netpol-guard-metadata-endpoint"])
    assert f"{list(range(FIRST))}.exists(i, cidr(p.ipBlock.except[i]).containsIP(variables.metadata0))" in metadata
    # One validation per metadata address, each naming it.
    messages = [v["message"] for v in found["netpol-guard-metadata-endpoint"]["spec"]["validations"]]
    for address in ("169.254.169.254", "fd00:ec2::254", "100.100.100.200"):
        assert sum(f"the cloud metadata endpoint {address};" in m for m in messages) == 1


def _evaluate(expression: str, values: dict[str, int]) -> bool:
    """The ternary/boolean/comparison CEL that _covered and _overlaps write, evaluated (a tiny parser)."""
    tokens = re.findall(r"\d+|[A-Za-z_]+|<=|>=|&&|\|\||[<>?:()]", expression)
    position = 0

    def take() -> str:
        nonlocal position
        position += 1
        return tokens[position - 1]

    def peek() -> str | None:
        return tokens[position] if position < len(tokens) else None

    def ternary() -> object:
        condition = disjunction()
        if peek() != "?":
            return condition
        take()
        yes = ternary()
        assert take() == ":"
        no = ternary()
        return yes if condition else no

    def disjunction() -> object:
        value = conjunction()
        while peek() == "||":
            take()
            right = conjunction()
            value = bool(value) or bool(right)
        return value

    def conjunction() -> object:
        value = comparison()
        while peek() == "&&":
            take()
            right = comparison()
            value = bool(value) and bool(right)
        return value

    def comparison() -> object:
        left = atom()
        if peek() in ("<=", ">=", "<", ">"):
            operator, right = take(), atom()
            assert isinstance(left, int) and isinstance(right, int)
            return {"<=": left <= right, ">=": left >= right, "<": left < right, ">": left > right}[operator]
        return left

    def atom() -> object:
        token = take()
        if token == "(":
            value = ternary()
            assert take() == ")"
            return value
        return int(token) if token.isdigit() else values[token]

    result = ternary()
    assert position == len(tokens)
    return bool(result)


range_lists = st.lists(st.tuples(st.integers(1, 300), st.integers(0, 12)), min_size=1, max_size=12).map(
    lambda pairs: _merged([OpenPort(port=low, endPort=low + width if width else None) for low, width in pairs],
                          "TCP")[0])


@given(range_lists, st.integers(1, 320), st.integers(0, 20))
def test_binary_searches_over_port_ranges_agree_with_a_walk(ranges: list[tuple[int, int]], low: int,
                                                              width: int) -> None:
    high = low + width
    values = {"L": low, "H": high}
    assert _evaluate(_covered("L", "H", ranges), values) == any(a <= low and high <= b for a, b in ranges)
    assert _evaluate(_overlaps("L", "H", ranges), values) == any(low <= b and a <= high for a, b in ranges)
