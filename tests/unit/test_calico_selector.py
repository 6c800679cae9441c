"""Calico's selector language: every documented operator, libcalico-go's quirks, errors with positions."""

from __future__ import annotations

import pytest

from webhook.core.errors import ObjectError
from webhook.core.sources.calico_selector import SelectorError, parse, parse_field

LABELS = {"app": "web", "tier": "frontend-v2", "env": "prod"}


@pytest.mark.parametrize(("text", "expected"), [
    ("", True),
    ("all()", True),
    ("all( )", True),
    ("global()", True),
    ("has(app)", True),
    ("has( app )", True),
    ("has(missing)", False),
    ("!has(missing)", True),
    ("!!has(app)", True),
    ("app == 'web'", True),
    ('app == "web"', True),
    ("app == 'db'", False),
    ("app != 'db'", True),
    ("missing != 'x'", True),  # != matches a resource without the label
    ("app in {'web', 'db'}", True),
    ("app in {'db',}", False),  # a trailing comma is accepted
    ("app in {}", False),
    ("missing in {'x'}", False),
    ("app not in {'db'}", True),
    ("missing not in {'x'}", True),  # not in matches a resource without the label
    ("app  not   in {'web'}", False),
    ("tier contains 'end-v'", True),
    ("missing contains ''", False),
    ("tier starts with 'front'", True),
    ("tier starts  with 'back'", False),
    ("tier ends with '-v2'", True),
    ("app == 'web' && env == 'prod'", True),
    ("app == 'web' && env == 'dev'", False),
    ("app == 'db' || env == 'prod'", True),
    ("!(app == 'db' || env == 'dev')", True),
    ("(app == 'db' || env == 'prod') && has(tier)", True),
    ("app == 'db' || env == 'prod' && has(missing)", False),  # && binds tighter than ||
])
def test_matches(text: str, expected: bool) -> None:
    assert parse(text).matches(LABELS) is expected


@pytest.mark.parametrize(("text", "position", "problem"), [
    ("app = 'web'", 4, "expected =="),
    ("app == web", 7, "expected a quoted string"),
    ("app == 'web", 7, "unterminated string"),
    ("app & has(x)", 4, "expected &&"),
    ("app | has(x)", 4, "expected ||"),
    ("(app == 'web'", 13, "expected )"),
    ("app in 'web'", 7, "expected a set literal"),
    ("app in {'web'", 13, "expected }"),
    ("app", 3, "expected an operator after label"),
    ("has(app", 7, "no closing ')' after has("),
    ("app == 'web' app == 'db'", 13, "unexpected 'app'"),
    ("app\n== 'web'", 3, "expected an operator"),  # only spaces and tabs separate tokens
    ("app is 'web'", 4, "expected an operator after label 'app'"),
    ("app == 'web' &&", 15, "unexpected end"),
    ("has (app)", 4, "expected an operator"),  # `has` then a space is a label named has
])
def test_errors_name_the_position(text: str, position: int, problem: str) -> None:
    with pytest.raises(SelectorError) as caught:
        parse(text)
    assert caught.value.position == position
    assert problem in caught.value.problem


def test_three_valued_evaluation_on_unknown_labels() -> None:
    known = {"projectcalico.org/namespace"}.__contains__
    labels = {"projectcalico.org/namespace": "shop"}
    assert parse("projectcalico.org/namespace == 'shop'").evaluate(labels, known) is True
    assert parse("app == 'web'").evaluate(labels, known) is None
    assert parse("app == 'web' && projectcalico.org/namespace == 'x'").evaluate(labels, known) is False
    assert parse("app == 'web' || projectcalico.org/namespace == 'shop'").evaluate(labels, known) is True
    assert parse("!(app == 'web')").evaluate(labels, known) is None


def test_fields_name_the_manifest_path() -> None:
    with pytest.raises(ObjectError) as caught:
        parse_field("a ==", "spec.selector")
    assert caught.value.path == "spec.selector"
    assert "position 4" in str(caught.value)
    with pytest.raises(ObjectError, match="global\\(\\) can only be used"):
        parse_field("global()", "spec.namespaceSelector")
    assert parse_field("global()", "x", allow_global=True).uses_global
    with pytest.raises(ObjectError, match="must be a string"):
        parse_field(["a"], "spec.selector")
    assert parse_field(None, "spec.selector").is_all
