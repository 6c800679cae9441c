"""Per-pod isolation from the engine (via `check`'s path) against a naive analyzer written from the docs.

Random namespaces, pods and policies (selectors in every spelling, policyTypes present,
absent or empty, egress rules present or not); every pod must agree.
"""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from webhook.check import run_check
from webhook.core.config import Config

NAMESPACES = ["a", "b"]
KEYS = ["app", "tier"]
VALUES = ["x", "y"]

labels = st.dictionaries(st.sampled_from(KEYS), st.sampled_from(VALUES), max_size=2)
expression = st.one_of(
    st.fixed_dictionaries({"key": st.sampled_from(KEYS), "operator": st.sampled_from(["In", "NotIn"]),
                           "values": st.lists(st.sampled_from(VALUES), min_size=1, max_size=2)}),
    st.fixed_dictionaries({"key": st.sampled_from(KEYS), "operator": st.sampled_from(["Exists", "DoesNotExist"])}),
)
selector = st.one_of(
    st.just({}), st.just({"matchLabels": {}}), st.just({"matchExpressions": []}),
    st.builds(lambda m: {"matchLabels": m}, labels),
    st.builds(lambda m, e: {"matchLabels": m, "matchExpressions": e}, labels, st.lists(expression, max_size=2)),
)
policy_types = st.one_of(st.none(), st.just([]), st.sets(st.sampled_from(["Ingress", "Egress"]), min_size=1)
                         .map(sorted))
rules = st.one_of(st.none(), st.just([]), st.lists(st.just({}), min_size=1, max_size=2))


@st.composite
def policy(draw: st.DrawFn, index: int) -> dict[str, Any]:
    spec: dict[str, Any] = {"podSelector": draw(selector)}
    types, ingress, egress = draw(policy_types), draw(rules), draw(rules)
    if types is not None:
        spec["policyTypes"] = types
    if ingress is not None:
        spec["ingress"] = [{"from": [{"podSelector": {}}]} for _ in ingress]
    if egress is not None:
        spec["egress"] = [{"to": [{"podSelector": {}}]} for _ in egress]
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": f"p{index}", "namespace": draw(st.sampled_from(NAMESPACES))}, "spec": spec}


@st.composite
def pod(draw: st.DrawFn, index: int) -> dict[str, Any]:
    spec: dict[str, Any] = {"containers": [{"name": "c", "image": "x"}]}
    if draw(st.integers(0, 9)) == 0:
        spec["hostNetwork"] = True
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": f"pod{index}", "namespace": draw(st.sampled_from(NAMESPACES)),
                         "labels": draw(labels)}, "spec": spec}


@st.composite
def cluster(draw: st.DrawFn) -> list[dict[str, Any]]:
    policies = [draw(policy(i)) for i in range(draw(st.integers(0, 6)))]
    pods = [draw(pod(i)) for i in range(draw(st.integers(1, 6)))]
    return policies + pods


# ----- the naive analyzer: straight from the Kubernetes documentation, no shared code -----
def naive_selects(raw: dict[str, Any], pod_labels: dict[str, str]) -> bool:
    for key, value in (raw.get("matchLabels") or {}).items():
        if pod_labels.get(key) != value:
            return False
    for requirement in raw.get("matchExpressions") or []:
        key, operator, values = requirement["key"], requirement["operator"], requirement.get("values") or []
        present = key in pod_labels
        ok = {
            "In": present and pod_labels.get(key) in values,
            "NotIn": not present or pod_labels.get(key) not in values,
            "Exists": present,
            "DoesNotExist": not present,
        }[operator]
        if not ok:
            return False
    return True


def naive_types(spec: dict[str, Any]) -> set[str]:
    if spec.get("policyTypes"):
        return set(spec["policyTypes"])
    return {"Ingress", "Egress"} if spec.get("egress") else {"Ingress"}


def naive_isolation(pod: dict[str, Any], objects: list[dict[str, Any]]) -> dict[str, bool]:
    if pod["spec"].get("hostNetwork"):
        return {"ingress": False, "egress": False}
    selecting = [o["spec"] for o in objects if o["kind"] == "NetworkPolicy"
                 and o["metadata"]["namespace"] == pod["metadata"]["namespace"]
                 and naive_selects(o["spec"]["podSelector"], pod["metadata"]["labels"])]
    return {"ingress": any("Ingress" in naive_types(s) for s in selecting),
            "egress": any("Egress" in naive_types(s) for s in selecting)}


@settings(max_examples=300, deadline=None)
@given(objects=cluster())
def test_engine_isolation_agrees_with_a_naive_analyzer(objects: list[dict[str, Any]], tmp_path_factory: Any) -> None:
    import json

    path = tmp_path_factory.mktemp("cluster") / "all.yaml"
    # JSON documents (valid YAML): PyYAML's dumper leaves `y`/`n` unquoted, which Kubernetes reads as booleans.
    path.write_text("---\n".join(json.dumps(o) + "\n" for o in objects))
    report = run_check([str(path)], Config())
    for result in report.results:
        if result.manifest.kind != "Pod":
            continue
        expected = naive_isolation(dict(result.manifest.obj), objects)
        assert result.decision.isolation is not None
        assert result.decision.isolation.as_dict() == expected, result.manifest.name
