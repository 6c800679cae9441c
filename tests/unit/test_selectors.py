from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from webhook.core.errors import ObjectError
from webhook.core.selectors import parse_selector

KEYS = st.sampled_from(["app", "tier", "env", "team"])
VALUES = st.sampled_from(["a", "b", "c"])
LABELS = st.dictionaries(KEYS, VALUES, max_size=4)


@pytest.mark.parametrize("raw", [None, {}, {"matchLabels": {}}, {"matchExpressions": []},
                                 {"matchLabels": None, "matchExpressions": None}])
def test_every_spelling_of_the_empty_selector_selects_everything(raw: object) -> None:
    selector = parse_selector(raw, "spec.podSelector")
    assert selector.is_empty
    assert selector.matches({})
    assert selector.matches({"app": "x"})


def test_match_labels_and_expressions_are_anded() -> None:
    selector = parse_selector(
        {"matchLabels": {"app": "web"},
         "matchExpressions": [{"key": "tier", "operator": "In", "values": ["front", "edge"]}]}, "s")
    assert selector.matches({"app": "web", "tier": "front"})
    assert not selector.matches({"app": "web"})  # expression fails
    assert not selector.matches({"app": "api", "tier": "front"})  # matchLabels fails


@pytest.mark.parametrize(("operator", "values", "labels", "expected"), [
    ("In", ["a"], {"k": "a"}, True),
    ("In", ["a"], {"k": "b"}, False),
    ("In", ["a"], {}, False),
    ("NotIn", ["a"], {"k": "a"}, False),
    ("NotIn", ["a"], {"k": "b"}, True),
    ("NotIn", ["a"], {}, True),  # a missing key is "not in"
    ("Exists", [], {"k": ""}, True),
    ("Exists", [], {}, False),
    ("DoesNotExist", [], {}, True),
    ("DoesNotExist", [], {"k": "a"}, False),
])
def test_operators(operator: str, values: list[str], labels: dict[str, str], expected: bool) -> None:
    raw: dict[str, object] = {"key": "k", "operator": operator}
    if values:
        raw["values"] = values
    assert parse_selector({"matchExpressions": [raw]}, "s").matches(labels) is expected


@pytest.mark.parametrize(("raw", "path"), [
    ({"matchExpressions": [{"key": "k", "operator": "Equals", "values": ["a"]}]}, "s.matchExpressions[0].operator"),
    ({"matchExpressions": [{"key": "k", "operator": "In"}]}, "s.matchExpressions[0].values"),
    ({"matchExpressions": [{"key": "k", "operator": "Exists", "values": ["a"]}]}, "s.matchExpressions[0].values"),
    ({"matchLabels": {"app": 3}}, "s.matchLabels.app"),
    ({"matchLabel": {"app": "x"}}, "s"),
    ("app=web", "s"),
])
def test_malformed_selectors_name_the_field(raw: object, path: str) -> None:
    with pytest.raises(ObjectError) as caught:
        parse_selector(raw, "s")
    assert caught.value.path == path


@given(match=st.dictionaries(KEYS, VALUES, max_size=3), labels=LABELS)
def test_match_labels_is_subset_semantics(match: dict[str, str], labels: dict[str, str]) -> None:
    expected = all(labels.get(k) == v for k, v in match.items())
    assert parse_selector({"matchLabels": match}, "s").matches(labels) is expected


@given(key=KEYS, values=st.lists(VALUES, min_size=1, max_size=3), labels=LABELS)
def test_not_in_is_the_complement_of_in(key: str, values: list[str], labels: dict[str, str]) -> None:
    in_ = parse_selector({"matchExpressions": [{"key": key, "operator": "In", "values": values}]}, "s")
    not_in = parse_selector({"matchExpressions": [{"key": key, "operator": "NotIn", "values": values}]}, "s")
    assert in_.matches(labels) != not_in.matches(labels)


@given(key=KEYS, labels=LABELS)
def test_exists_is_the_complement_of_does_not_exist(key: str, labels: dict[str, str]) -> None:
    exists = parse_selector({"matchExpressions": [{"key": key, "operator": "Exists"}]}, "s")
    absent = parse_selector({"matchExpressions": [{"key": key, "operator": "DoesNotExist"}]}, "s")
    assert exists.matches(labels) == (key in labels)
    assert absent.matches(labels) == (key not in labels)


@given(match=st.dictionaries(KEYS, VALUES, max_size=2), key=KEYS, values=st.lists(VALUES, min_size=1, max_size=2),
       labels=LABELS)
def test_selector_is_the_conjunction_of_its_parts(match: dict[str, str], key: str, values: list[str],
                                                 labels: dict[str, str]) -> None:
    expression = {"key": key, "operator": "In", "values": values}
    both = parse_selector({"matchLabels": match, "matchExpressions": [expression]}, "s")
    only_labels = parse_selector({"matchLabels": match}, "s")
    only_expression = parse_selector({"matchExpressions": [expression]}, "s")
    assert both.matches(labels) == (only_labels.matches(labels) and only_expression.matches(labels))
