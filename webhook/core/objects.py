"""Reading metadata of raw Kubernetes objects: the one place that knows labels and names.

Labels were read three ways and names three ways, with different checks; a label
map the engine accepted in one place could be refused (or misread) in another.
Every reader of `metadata`, `metadata.labels` and `metadata.name` goes through here.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from webhook.core.errors import ObjectError, clip_repr

# The API server sets this label on every namespace (since 1.21) to the namespace's name; selectors may use it.
NAME_LABEL = "kubernetes.io/metadata.name"


def mapping_at(raw: Any, path: str) -> Mapping[str, Any]:
    """A field that must be a mapping ({} when absent); raises ObjectError naming `path` otherwise."""
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise ObjectError(path, f"must be a mapping, not {type(raw).__name__}")
    return raw


def metadata_of(obj: Mapping[str, Any] | None, path: str = "metadata") -> Mapping[str, Any]:
    """`metadata` of an object ({} when absent); raises ObjectError naming `path` when it is not a mapping."""
    return {} if obj is None else mapping_at(obj.get("metadata"), path)


def required_name(metadata: Mapping[str, Any]) -> str:
    """`metadata.name` of an object that must have one (a stored policy); raises ObjectError otherwise."""
    name = metadata.get("name")
    if not isinstance(name, str) or not name:
        raise ObjectError("metadata.name", "required")
    return name


def labels_of(obj: Mapping[str, Any] | None, path: str = "metadata") -> dict[str, str]:
    """`metadata.labels` ({} when absent); raises ObjectError unless it maps string keys to string values."""
    labels = metadata_of(obj, path).get("labels")
    if labels is None:
        return {}
    if not isinstance(labels, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in labels.items()
    ):
        raise ObjectError(f"{path}.labels", "must map label keys to string values")
    return dict(labels)


def name_of(obj: Mapping[str, Any] | None, *, generated: bool = True) -> str:
    """`metadata.name`, else `<generateName>*` (with `generated`), else "" (never raises)."""
    metadata = obj.get("metadata") if isinstance(obj, Mapping) else None
    if not isinstance(metadata, Mapping):
        return ""
    name = metadata.get("name")
    if isinstance(name, str) and name:
        return name
    if not generated:
        return ""
    generate = metadata.get("generateName")
    return f"{generate}*" if isinstance(generate, str) and generate else ""


def namespace_of(obj: Mapping[str, Any] | None, default: str = "") -> str:
    """`metadata.namespace`, or `default` when absent or empty.

    Raises ObjectError when it is there but not a string (`[shop]`, `5`): such an object must never be judged as
    if it lived in `default`.
    """
    metadata = obj.get("metadata") if isinstance(obj, Mapping) else None
    value = metadata.get("namespace") if isinstance(metadata, Mapping) else None
    if value is not None and not isinstance(value, str):
        raise ObjectError("metadata.namespace", f"must be a string, not {clip_repr(value)}")
    return value or default


_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_DNS1123_LABEL = re.compile(_LABEL)
_DNS1123_SUBDOMAIN = re.compile(rf"{_LABEL}(\.{_LABEL})*")
# Kinds whose names are DNS-1123 labels; the other judged kinds (workloads, NetworkPolicy) take DNS-1123 subdomains.
_LABEL_NAMED_KINDS = frozenset({"Namespace"})


def check_metadata(kind: str, obj: Mapping[str, Any]) -> None:
    """Refuse a `metadata.name` (or `generateName`) or `metadata.labels` the API server would refuse for `kind`.

    Offline (`check`) nothing else would: a Pod named `[x]`, or `labels: []` on any judged object, must be bad
    input naming the field, not a judged object.
    """
    metadata = metadata_of(obj)
    labels_of(obj)
    label = kind in _LABEL_NAMED_KINDS
    for field in ("name", "generateName"):
        value = metadata.get(field)
        if value is None or value == "":
            continue
        if not isinstance(value, str):
            raise ObjectError(f"metadata.{field}", f"must be a string, not {clip_repr(value)}")
        # generateName is a prefix: a trailing '-' is fine, the API server appends random characters to it.
        text = value[:-1] + "a" if field == "generateName" and value.endswith("-") else value
        pattern, limit = (_DNS1123_LABEL, 63) if label else (_DNS1123_SUBDOMAIN, 253)
        if len(text) > limit or not pattern.fullmatch(text):
            what = "a DNS-1123 label" if label else "a DNS-1123 subdomain"
            rule = "lower-case letters, digits and '-'" + ("" if label else ", dot-separated")
            raise ObjectError(f"metadata.{field}", f"{clip_repr(value)} is not {what} ({rule}, starting and "
                                                   f"ending with a letter or digit, at most {limit} characters)")
