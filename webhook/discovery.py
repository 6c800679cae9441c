"""Which coverage-source APIs a cluster serves (API discovery; a shell around the core's registry).

A source is never required: a kind is read only when its group, version and resource are
served. When Calico's API server serves projectcalico.org/v3, Calico's kinds are read there
and not again from the crd.projectcalico.org/v1 CRDs behind them (one object, two views).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from webhook.core.sources import SOURCE_KINDS, SourceKind
from webhook.errors import NetpolGuardError

DISCOVERY_TIMEOUT = (5.0, 30.0)


class DiscoveryError(NetpolGuardError):
    """The API server's discovery could not be read; the message says what failed."""


def served_source_kinds(api: Any, enabled: Iterable[str]) -> list[SourceKind]:
    """The enabled coverage-source kinds the cluster serves now. Raises DiscoveryError."""
    from kubernetes import client

    wanted = set(enabled)
    served: dict[str, set[str]] = {}
    try:
        # Raw JSON, not the client's models: their validation is stricter than the API's contract.
        response: Any = client.ApisApi(api).get_api_versions(
            _preload_content=False, _request_timeout=DISCOVERY_TIMEOUT)
        groups = json.loads(response.data).get("groups") or []
    except Exception as error:  # the client raises ApiException, urllib3 and socket errors
        raise DiscoveryError(f"cannot discover API groups: {why(error)}") from None
    for group in groups:
        if isinstance(group, dict):
            served[str(group.get("name"))] = {
                str(v.get("version")) for v in group.get("versions") or [] if isinstance(v, dict)}
    found: list[SourceKind] = []
    resources: dict[tuple[str, str], set[str]] = {}
    for kind in SOURCE_KINDS:
        if kind.source not in wanted or kind.version not in served.get(kind.group, set()):
            continue
        if (kind.group, kind.version) not in resources:
            try:
                listing: Any = client.CustomObjectsApi(api).get_api_resources(
                    kind.group, kind.version, _preload_content=False, _request_timeout=DISCOVERY_TIMEOUT)
                found_resources = json.loads(listing.data).get("resources") or []
            except Exception as error:
                if getattr(error, "status", None) == 404:  # removed between the two calls
                    continue
                raise DiscoveryError(f"cannot discover {kind.group}/{kind.version}: {why(error)}") from None
            resources[(kind.group, kind.version)] = {
                str(r.get("name")) for r in found_resources if isinstance(r, dict)}
        if kind.plural in resources[(kind.group, kind.version)]:
            found.append(kind)
    preferred = {k.kind for k in found if k.group == "projectcalico.org"}
    return [k for k in found if k.group != "crd.projectcalico.org" or k.kind not in preferred]


def why(error: BaseException) -> str:
    status = getattr(error, "status", None)
    if status:
        return f"HTTP {status} {getattr(error, 'reason', '') or ''}".strip()
    text = str(error)
    return text.splitlines()[0] if text else type(error).__name__
