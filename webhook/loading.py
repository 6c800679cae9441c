"""Reading manifests and the config file from disk (a shell around the core).

Files, directories (recursively, *.yaml/*.yml/*.json in name order), `-` for
stdin, multi-document YAML and `kind: List` are all read into `Manifest`s that
remember their file and document number, so every error can say where.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import yaml

from webhook.core.config import Config, ConfigError, config_from_data
from webhook.core.errors import ObjectError
from webhook.core.netpol import NetworkPolicy, parse_network_policy
from webhook.core.objects import name_of, namespace_of
from webhook.core.sources import SOURCE_NAMES, group_of, source_kind_of
from webhook.core.sources.base import SourcePolicy
from webhook.core.state import ClusterState, NamespaceInfo, parse_namespace
from webhook.errors import InputError as InputError  # re-exported: raised here

MANIFEST_SUFFIXES = (".yaml", ".yml", ".json")
CLUSTER = "cluster"  # the source of objects read from an API server (`audit`)

# libyaml's loader is several times faster; fall back when PyYAML was built without it.
_BaseLoader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


# Scalars Kubernetes reads as booleans: sigs.k8s.io/yaml uses go-yaml v2, which follows YAML 1.1 (y and n too).
_GO_BOOLS = {
    **dict.fromkeys(("y", "Y", "yes", "Yes", "YES", "on", "On", "ON", "true", "True", "TRUE"), True),
    **dict.fromkeys(("n", "N", "no", "No", "NO", "off", "Off", "OFF", "false", "False", "FALSE"), False),
}
_GO_INT = re.compile(r"[-+]?(?:0[xX][0-9a-fA-F]+|0[oO][0-7]+|0[bB][01]+|0[0-7]*|[1-9][0-9]*)")
_GO_FLOAT = re.compile(r"[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?")  # go-yaml's yamlStyleFloat
_GO_SPECIAL_FLOATS = frozenset(
    f"{sign}.{word}" for sign in ("", "+", "-") for word in ("inf", "Inf", "INF")
) | {".nan", ".NaN", ".NAN"}
_BOOL_TAG, _INT_TAG, _FLOAT_TAG = "tag:yaml.org,2002:bool", "tag:yaml.org,2002:int", "tag:yaml.org,2002:float"
_JSON_EXACT_INTEGERS = 1e21  # Go's JSON writes integral floats below this as plain integers ("80", not "8e1")


def _go_int(text: str) -> int | None:
    """strconv.ParseInt/ParseUint(text, 0, 64) after go-yaml strips underscores; None when it is not an int."""
    plain = text.replace("_", "")
    if not _GO_INT.fullmatch(plain):
        return None
    sign = -1 if plain.startswith("-") else 1
    digits = plain.lstrip("+-")
    if digits[:2].lower() in ("0x", "0o", "0b"):
        value = int(digits[2:], {"x": 16, "o": 8, "b": 2}[digits[1].lower()])
    elif len(digits) > 1 and digits.startswith("0"):
        value = int(digits, 8)  # a leading zero is octal: 0120 is 80
    else:
        value = int(digits)
    value *= sign
    return value if -(1 << 63) <= value < (1 << 64) else None


def _go_number(text: str) -> int | float | None:
    """A plain scalar as go-yaml v2 then JSON read it: an int, an integral float as an int (8e1 is 80), a float."""
    whole = _go_int(text)
    if whole is not None:
        return whole
    plain = text.replace("_", "") if text[:1] != "." else text
    if not _GO_FLOAT.fullmatch(plain):
        return None
    number = float(plain)
    return int(number) if number.is_integer() and abs(number) < _JSON_EXACT_INTEGERS else number


class _Loader(_BaseLoader):  # type: ignore[misc]
    """YAML read as Kubernetes reads it (sigs.k8s.io/yaml: go-yaml v2, then JSON).

    - a timestamp-looking scalar stays a string: `name: 2020-01-01` is the name "2020-01-01";
    - y/Y/yes/on/... are true and n/N/no/off/... false (PyYAML keeps y and n as strings), so
      `hostNetwork: y` is hostNetwork true, as the API server stores it;
    - integers in Go's spellings: 0o120, 0120 (octal), 0x50/0X50, 0b1010000, underscores anywhere (8_0); floats
      that are integral become ints as the JSON step writes them (8e1 is 80); PyYAML's sexagesimal 1:20 is a string.
    """

    yaml_implicit_resolvers: ClassVar[dict[Any, Any]] = {
        first: [(tag, regexp) for tag, regexp in resolvers
                if tag not in ("tag:yaml.org,2002:timestamp", _BOOL_TAG, _INT_TAG, _FLOAT_TAG)]
        for first, resolvers in _BaseLoader.yaml_implicit_resolvers.items()
    }

    def resolve(self, kind: Any, value: Any, implicit: Any) -> Any:
        if kind is yaml.ScalarNode and implicit[0] and isinstance(value, str):
            if value in _GO_BOOLS:
                return _BOOL_TAG
            if value[:1] in "+-.0123456789" and value:
                if value in _GO_SPECIAL_FLOATS:
                    return _FLOAT_TAG
                if _go_number(value) is not None:
                    return _INT_TAG
        return super().resolve(kind, value, implicit)

    def construct_go_bool(self, node: Any) -> bool:
        return _GO_BOOLS[self.construct_scalar(node)]

    def construct_go_number(self, node: Any) -> Any:
        text = self.construct_scalar(node)
        number = _go_number(text)
        if number is not None:
            return number
        return super().construct_yaml_float(node)  # .inf, .nan and explicitly tagged floats


_Loader.add_constructor(_BOOL_TAG, _Loader.construct_go_bool)
_Loader.add_constructor(_INT_TAG, _Loader.construct_go_number)
_Loader.add_constructor(_FLOAT_TAG, _Loader.construct_go_number)


@dataclass(frozen=True)
class Manifest:
    source: str  # file path, or "<stdin>"
    document: int  # 1-based document number in that file
    obj: Mapping[str, Any]
    item: str | None = None  # where inside a `kind: List` (`items[2]`, `items[0].items[1]` for nested Lists)

    @property
    def where(self) -> str:
        if self.source == CLUSTER:
            try:
                namespace = self.namespace("")
            except ObjectError:
                namespace = "?"
            return f"cluster: {self.kind} {namespace + '/' if namespace else ''}{self.name}"
        item = f", {self.item}" if self.item is not None else ""
        return f"{self.source}: document {self.document}{item}"

    @property
    def kind(self) -> str:
        return str(self.obj.get("kind", ""))

    def namespace(self, default: str) -> str:
        return namespace_of(self.obj, default)

    @property
    def name(self) -> str:
        return name_of(self.obj)


def expand_paths(paths: Iterable[str]) -> list[str]:
    """Files in the order given; directories expanded to their manifest files in name order."""
    files: list[str] = []
    for raw in paths:
        if raw == "-":
            files.append("-")
            continue
        path = Path(raw)
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in MANIFEST_SUFFIXES)
            files.extend(str(p) for p in found)
        elif path.exists():
            files.append(str(path))
        else:
            raise InputError(f"{raw}: no such file or directory")
    return files


def read_manifests(paths: Iterable[str]) -> list[Manifest]:
    manifests: list[Manifest] = []
    for file in expand_paths(paths):
        manifests.extend(_read_file(file))
    return manifests


def _read_file(file: str) -> Iterator[Manifest]:
    source = "<stdin>" if file == "-" else file
    try:
        text = sys.stdin.read() if file == "-" else Path(file).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise InputError(f"{source}: cannot read: {error}") from None
    if file.lower().endswith(".json"):
        # JSON is YAML, but json.loads is ~20x faster on large state dumps (`serve --state`).
        try:
            document = json.loads(text)
        except json.JSONDecodeError as error:
            raise InputError(f"{source}: document 1: invalid JSON (line {error.lineno}, column {error.colno}): "
                             f"{error.msg}") from None
        except RecursionError:
            raise InputError(f"{source}: document 1: nested too deeply") from None
        if document is not None:
            yield from _objects(source, 1, document)
        return
    if _flow_depth(text) > MAX_FLOW_DEPTH:
        # libyaml recurses natively and can crash the process on absurd nesting: refuse before parsing.
        raise InputError(f"{source}: nested more than {MAX_FLOW_DEPTH} levels deep; not a Kubernetes manifest")
    documents = yaml.load_all(text, Loader=_Loader)
    number = 0
    while True:
        number += 1
        try:
            document = next(documents)
        except StopIteration:
            return
        except RecursionError:
            raise InputError(f"{source}: document {number}: nested too deeply") from None
        except yaml.YAMLError as error:
            mark = getattr(error, "problem_mark", None)
            line = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
            problem = getattr(error, "problem", None) or str(error).splitlines()[0]
            raise InputError(f"{source}: document {number}: invalid YAML{line}: {problem}") from None
        if document is None:
            continue  # an empty document (e.g. a trailing `---`)
        yield from _objects(source, number, document)


MAX_FLOW_DEPTH = 200


def _flow_depth(text: str) -> int:
    """Deepest nesting of YAML flow collections ([...] and {...}); quotes are not parsed, so it may overcount."""
    if text.count("[") + text.count("{") <= MAX_FLOW_DEPTH:
        return 0  # cannot be deeper than the number of openers (the usual case: decided in C)
    depth = deepest = 0
    for bracket in _BRACKETS.findall(text):  # visit only the brackets, not every character
        if bracket in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif depth:
            depth -= 1
    return deepest


_BRACKETS = re.compile(r"[\[\]{}]")


MAX_LIST_DEPTH = 32  # Lists inside Lists: kubectl flattens them all the way down; nobody nests deeper


def _objects(source: str, number: int, document: Any) -> Iterator[Manifest]:
    where = f"{source}: document {number}"
    if not isinstance(document, Mapping):
        raise InputError(f"{where}: expected a Kubernetes object (a mapping), got {type(document).__name__}")
    yield from _flatten(source, number, document, "")


def _is_list(obj: Mapping[str, Any]) -> bool:
    kind = obj.get("kind")
    return kind == "List" or (isinstance(kind, str) and kind.endswith("List") and isinstance(obj.get("items"), list))


def _flatten(source: str, number: int, obj: Mapping[str, Any], path: str, depth: int = 0) -> Iterator[Manifest]:
    """`obj`, or the objects of a List, of Lists inside it, and so on (cli-runtime's FlattenListVisitor).

    A List inside a List must never be waved through as one unjudged object of kind List.
    """
    where = f"{source}: document {number}{', ' + path if path else ''}"
    kind = obj.get("kind")
    if not isinstance(kind, str) or not kind:
        raise InputError(f"{where}: missing 'kind'" if not path else
                         f"{where}: expected a Kubernetes object with a kind")
    if _is_list(obj):
        if depth >= MAX_LIST_DEPTH:
            raise InputError(f"{where}: Lists nested more than {MAX_LIST_DEPTH} deep")
        items = obj.get("items")
        if not isinstance(items, list):
            raise InputError(f"{where}: a List needs 'items'")
        for index, item in enumerate(items):
            item_path = f"{path + '.' if path else ''}items[{index}]"
            if not isinstance(item, Mapping):
                raise InputError(f"{source}: document {number}, {item_path}: expected a Kubernetes object "
                                 f"(a mapping), got {type(item).__name__}")
            yield from _flatten(source, number, item, item_path, depth + 1)
        return
    if not isinstance(obj.get("metadata", {}), Mapping):
        raise InputError(f"{where}: metadata must be a mapping")
    yield Manifest(source, number, obj, path or None)


def state_from_manifests(
    manifests: Iterable[Manifest], default_namespace: str = "default", sources: Collection[str] = SOURCE_NAMES,
) -> ClusterState:
    """A cluster holding the Namespaces, NetworkPolicies and the coverage-source policies of the enabled
    `sources` among `manifests` (later ones win)."""
    namespaces: dict[str, NamespaceInfo] = {}
    policies: dict[tuple[str, str], NetworkPolicy] = {}
    others: dict[tuple[str, ...], SourcePolicy] = {}
    for manifest in manifests:
        try:
            source = source_kind_of(manifest.obj)
            if source is not None:
                if source.source in sources:
                    other = source.parse(manifest.obj, manifest.namespace(default_namespace))
                    others[other.key] = other
            elif manifest.kind == "Namespace":
                info = parse_namespace(manifest.obj)
                namespaces[info.name] = info
            elif manifest.kind == "NetworkPolicy" and group_of(manifest.obj.get("apiVersion")) in (
                    "networking.k8s.io", ""):
                policy = parse_network_policy(manifest.obj, manifest.namespace(default_namespace))
                policies[(policy.namespace, policy.name)] = policy
        except ObjectError as error:
            raise InputError(f"{manifest.where}: {manifest.kind} {manifest.name}: {error}") from None
    state = ClusterState()
    state.replace_all(namespaces.values(), policies.values())
    if others:
        state.replace_source_policies(others.values())
    return state


def load_config(path: str | None) -> Config:
    """The config file validated, or the defaults when `path` is None. Raises ConfigError."""
    if path is None:
        return Config()
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"{path}: cannot read the config file: {error}") from None
    try:
        data = yaml.load(text, Loader=_Loader)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        line = f" (line {mark.line + 1})" if mark is not None else ""
        raise ConfigError(f"{path}: invalid YAML{line}: {getattr(error, 'problem', error)}") from None
    return config_from_data(data, source=path)
