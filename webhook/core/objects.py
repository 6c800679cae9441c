"""Reading metadata of raw Kubernetes objects: the one place that knows labels and names.

Labels were read three ways and names three ways, with different checks; a label
map the engine accepted in one place could be refused (or misread) in another.
Every reader of `metadata`, `metadata.labels` and `metadata.name` goes through here.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from webhook.core.errors import ObjectError

# The API server sets this label on every namespace (since 1.21) to the namespace's name; selectors may use it.
NAME_LABEL = "kubernetes.io/metadata.name"


def metadata_of(obj: Mapping[str, Any] | None, path: str = "metadata") -> Mapping[str, Any]:
    """`metadata` of an object ({} when absent); raises ObjectError naming `path` when it is not a mapping."""
    if obj is None:
        return {}
    metadata = obj.get("metadata")
    if metadata is None:
        return {}
    if not isinstance(metadata, Mapping):
        raise ObjectError(path, f"must be a mapping, not {type(metadata).__name__}")
    return metadata


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
    """`metadata.namespace`, or `default` when absent or not a string (never raises)."""
    metadata = obj.get("metadata") if isinstance(obj, Mapping) else None
    value = metadata.get("namespace") if isinstance(metadata, Mapping) else None
    return value if isinstance(value, str) and value else default
