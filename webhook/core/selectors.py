"""Kubernetes label selectors (metav1.LabelSelector), compiled once and matched fast.

`matchLabels` AND `matchExpressions`; every spelling of the empty selector
(`{}`, `{matchLabels: {}}`, `{matchExpressions: []}`, null) selects everything.
NotIn and DoesNotExist match an object that lacks the key, as in Kubernetes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from webhook.core.errors import ObjectError

Operator = Literal["In", "NotIn", "Exists", "DoesNotExist"]
OPERATORS: tuple[Operator, ...] = ("In", "NotIn", "Exists", "DoesNotExist")


@dataclass(frozen=True, slots=True)
class Requirement:
    key: str
    operator: Operator
    values: frozenset[str]

    def matches(self, labels: Mapping[str, str]) -> bool:
        if self.operator == "In":
            return self.key in labels and labels[self.key] in self.values
        if self.operator == "NotIn":
            return self.key not in labels or labels[self.key] not in self.values
        if self.operator == "Exists":
            return self.key in labels
        return self.key not in labels

    def describe(self) -> str:
        if self.operator == "Exists":
            return self.key
        if self.operator == "DoesNotExist":
            return f"!{self.key}"
        op = "in" if self.operator == "In" else "notin"
        return f"{self.key} {op} ({','.join(sorted(self.values))})"


@dataclass(frozen=True, slots=True)
class LabelSelector:
    """A compiled selector. `match_labels` is a tuple of pairs so the object is hashable."""

    match_labels: tuple[tuple[str, str], ...] = ()
    requirements: tuple[Requirement, ...] = ()

    @property
    def is_empty(self) -> bool:
        """True for the selector that selects everything."""
        return not self.match_labels and not self.requirements

    def matches(self, labels: Mapping[str, str]) -> bool:
        for key, value in self.match_labels:
            if labels.get(key) != value:
                return False
        for requirement in self.requirements:
            if not requirement.matches(labels):
                return False
        return True

    def keys(self) -> frozenset[str]:
        """Every label key this selector reads."""
        return frozenset(k for k, _ in self.match_labels) | {r.key for r in self.requirements}

    def describe(self) -> str:
        """kubectl-style text, `{}` for the empty selector."""
        parts = [f"{k}={v}" for k, v in self.match_labels] + [r.describe() for r in self.requirements]
        return ",".join(parts) if parts else "{}"


EVERYTHING = LabelSelector()


def parse_selector(raw: Any, path: str) -> LabelSelector:
    """Compile a raw `LabelSelector` mapping; `path` names it in errors."""
    if raw is None:
        return EVERYTHING
    if not isinstance(raw, Mapping):
        raise ObjectError(path, f"a label selector must be a mapping, not {type(raw).__name__}")
    unknown = set(raw) - {"matchLabels", "matchExpressions"}
    if unknown:
        raise ObjectError(path, f"unknown selector field(s): {', '.join(sorted(map(str, unknown)))}")
    match_labels = _parse_match_labels(raw.get("matchLabels"), f"{path}.matchLabels")
    requirements = _parse_expressions(raw.get("matchExpressions"), f"{path}.matchExpressions")
    return LabelSelector(match_labels=match_labels, requirements=requirements)


def _parse_match_labels(raw: Any, path: str) -> tuple[tuple[str, str], ...]:
    if raw is None:
        return ()
    if not isinstance(raw, Mapping):
        raise ObjectError(path, "must be a mapping of label keys to values")
    pairs = []
    for key, value in raw.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise ObjectError(f"{path}.{key}", "label keys and values must be strings")
        pairs.append((key, value))
    return tuple(sorted(pairs))


def _parse_expressions(raw: Any, path: str) -> tuple[Requirement, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise ObjectError(path, "must be a list of requirements")
    requirements = []
    for index, item in enumerate(raw):
        where = f"{path}[{index}]"
        if not isinstance(item, Mapping):
            raise ObjectError(where, "a requirement must be a mapping with key, operator and values")
        key = item.get("key")
        operator = item.get("operator")
        values = item.get("values") or []
        if not isinstance(key, str) or not key:
            raise ObjectError(f"{where}.key", "required, a label key")
        if operator not in OPERATORS:
            raise ObjectError(f"{where}.operator", f"must be one of {', '.join(OPERATORS)}, not {operator!r}")
        if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
            raise ObjectError(f"{where}.values", "must be a list of strings")
        if operator in ("In", "NotIn") and not values:
            raise ObjectError(f"{where}.values", f"{operator} needs at least one value")
        if operator in ("Exists", "DoesNotExist") and values:
            raise ObjectError(f"{where}.values", f"{operator} takes no values")
        requirements.append(Requirement(key=key, operator=operator, values=frozenset(values)))
    return tuple(requirements)
