"""The VAPs stay inside the API server's CEL cost limits for every NetworkPolicy their size guard lets
through, and the guard refuses anything larger, by its own message, for almost nothing.

The API server refuses a policy evaluation that passes a limit (1,000,000 cost units per expression or
variable, 10,000,000 per policy) with an error naming no rule, and never says how close an object came.
vapcost (tests/tools/vapcost) runs the policies with the API server's own CEL code (k8s.io/apiserver,
as in the e2e control plane) and prints the costs: the costliest shapes at the guard
(tests/tools/vap_shapes.py) must stay below 90% of each limit, with no CEL error. That the real API
server evaluates such objects to the end is tests/e2e/test_vap.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.tools.build_vapcost import BuildError, ensure_vapcost, measure
from tests.tools.vap_shapes import SHAPES, over_the_guard
from webhook.core.config import config_from_data
from webhook.vap import MAX_ENTRIES, PER_CALL_LIMIT, POLICY_BUDGET, generate

pytestmark = pytest.mark.timeout(1800)  # a cold vapcost build


@pytest.fixture(scope="session")
def vapcost() -> None:
    try:
        ensure_vapcost()
    except BuildError as error:
        if error.exit_code == 2:
            pytest.skip(f"cannot build vapcost: {error}")
        raise


def network_policy_results(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in results if "host-network" not in r["policy"]]


def test_the_costliest_objects_the_guard_lets_through_stay_inside_every_limit(vapcost: None, tmp_path: Path) -> None:
    """The default config (parameters only change constants in the CEL, not what it walks)."""
    objects = {name: build(name, "team-a") for name, build in SHAPES.items()}
    results = network_policy_results(measure(generate(config_from_data(None)), objects, tmp_path))
    assert len(results) == len(objects) * 6
    worst: dict[str, tuple[int, int]] = {}
    for result in results:
        where = f"{result['object']} / {result['policy']}"
        assert result["policyError"] == "", where
        assert not [o for o in result["outcomes"] if o.startswith("error")], (where, result["outcomes"])
        assert result["outcomes"][0] == "true", f"{where}: the size guard refused an object it must let through"
        per_call = max([*result["costs"], *result["variables"].values()])
        assert per_call <= 0.9 * PER_CALL_LIMIT, (where, result["costs"], result["variables"])
        assert result["cost"] <= 0.9 * POLICY_BUDGET, (where, result["cost"])
        policy = result["policy"]
        worst[policy] = max(worst.get(policy, (0, 0)), (per_call, result["cost"]))
    print("\n".join(f"{policy}: per call {call:,} ({call / PER_CALL_LIMIT:.0%}), policy {cost:,} "
                    f"({cost / POLICY_BUDGET:.0%})" for policy, (call, cost) in sorted(worst.items())))
    # The shapes do reach the limits they are there to test (else this proves little).
    assert max(call for call, _ in worst.values()) >= 0.5 * PER_CALL_LIMIT


def test_many_configured_port_ranges_cost_a_binary_search_not_a_walk(vapcost: None, tmp_path: Path) -> None:
    """A port entry is looked up among the configured open ports and metadata ports by binary search, so
    24 separate ranges cost little more than one (a walk of them went past the limit at 10)."""
    many = [{"port": 1000 + 2 * k} for k in range(24)]
    config = config_from_data({"rules": {"allow-all-ingress": {"openPorts": many},
                                         "allow-all-egress": {"openPorts": many},
                                         "metadata-endpoint": {"ports": many}}})
    open_ports = [{"port": 1000 + 2 * (k % 24), "protocol": "TCP"} for k in range(MAX_ENTRIES - 1)]
    obj = {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
           "metadata": {"name": "open-ports", "namespace": "team-a"},
           "spec": {"podSelector": {}, "policyTypes": ["Ingress", "Egress"],
                    "ingress": [{"ports": open_ports}], "egress": [{"ports": open_ports}]}}
    for result in network_policy_results(measure(generate(config), {"open-ports": obj}, tmp_path)):
        assert not [o for o in result["outcomes"] if o.startswith("error")], result
        per_call = max([*result["costs"], *result["variables"].values()])
        assert per_call <= 0.6 * PER_CALL_LIMIT, (result["policy"], result["costs"])
        if "allow-all" in result["policy"]:
            assert result["outcomes"] == ["true", "true"], result  # every port is an open port
        if "metadata" in result["policy"]:
            assert result["outcomes"][-1] == "false", result  # they are metadata ports too: the last check


def test_one_entry_over_the_guard_is_refused_by_the_guard_alone(vapcost: None, tmp_path: Path) -> None:
    results = network_policy_results(measure(generate(config_from_data(None)),
                                             {"over": over_the_guard("over", "team-a")}, tmp_path))
    by_policy = {r["policy"]: r for r in results}
    # rules plus peers: MAX_ENTRIES + 1 in egress; the policies that count peers refuse, the others let it by.
    for name in ("netpol-guard-any-namespace", "netpol-guard-broad-cidr", "netpol-guard-metadata-endpoint"):
        assert by_policy[name]["outcomes"][0] == "false", name
        assert set(by_policy[name]["outcomes"][1:]) == {"true"}, name  # nothing else walked or refused
        assert by_policy[name]["cost"] < 1_000, by_policy[name]["cost"]  # counted by size() alone
    for name in ("netpol-guard-allow-all-egress", "netpol-guard-port-range"):
        assert by_policy[name]["outcomes"][0] == "true", name
    assert MAX_ENTRIES == 6000
