"""The AdmissionReview boundary: parse a body into a `Review`, build the response from an `Outcome`.

Pure functions over bytes and plain data (no server, no cluster), so every quirk of
hostile or hand-written input is unit-testable. The hot path takes the raw body and
`json.loads` it: an AdmissionReview carries whole Kubernetes objects, and validating
them with pydantic models would cost more than the decision itself.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from webhook.core.config import Config
from webhook.core.engine import JUDGED_KINDS, Decision, Operation, User
from webhook.core.engine import Request as AdmissionRequest
from webhook.core.errors import ObjectError
from webhook.core.objects import name_of, namespace_of
from webhook.errors import BadReview

API_VERSION = "admission.k8s.io/v1"
OPERATIONS: frozenset[str] = frozenset(("CREATE", "UPDATE", "DELETE", "CONNECT"))

__all__ = ["API_VERSION", "OPERATIONS", "BadReview", "Outcome", "Review", "failure_outcome", "outcome_of",
           "parse_review", "review_response"]


@dataclass(slots=True)
class Review:
    uid: str
    request: AdmissionRequest
    sub_resource: str = ""


@dataclass(slots=True)
class Outcome:
    """What we answer, and what we log and count about it."""

    allowed: bool
    decision: str  # allowed, denied, warned, no_opinion, error (the metric label)
    mode: str
    message: str | None = None
    warnings: list[str] = field(default_factory=list)
    annotations: dict[str, str] = field(default_factory=dict)
    rules: tuple[str, ...] = ()
    violations: tuple[tuple[str, str], ...] = ()  # (rule, action) for the violations metric
    exempt: str | None = None
    confirmed: bool = False  # a live read was made before answering
    error: str | None = None


def parse_review(body: bytes) -> Review:
    """Read an AdmissionReview admission.k8s.io/v1 body; raises BadReview naming what is wrong."""
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError) as error:
        raise BadReview(f"malformed JSON: {error}") from None
    except RecursionError:
        raise BadReview("malformed JSON: nested too deeply") from None
    if not isinstance(data, dict):
        raise BadReview(f"the body must be a JSON object (an AdmissionReview), not {type(data).__name__}")
    kind = data.get("kind")
    if kind != "AdmissionReview":
        raise BadReview(f"not an AdmissionReview (kind is {kind!r})")
    api_version = data.get("apiVersion")
    if api_version != API_VERSION:
        raise BadReview(f"unsupported apiVersion {api_version!r}: netpol-guard answers {API_VERSION} only "
                        "(set admissionReviewVersions: [v1] in the webhook configuration)")
    request = data.get("request")
    if not isinstance(request, dict):
        raise BadReview("missing 'request' (an AdmissionReview request object)")
    uid = request.get("uid")
    if not isinstance(uid, str) or not uid:
        raise BadReview("missing 'request.uid'")
    kind_info = request.get("kind")
    object_kind = kind_info.get("kind") if isinstance(kind_info, dict) else None
    if not isinstance(object_kind, str) or not object_kind:
        raise BadReview("missing 'request.kind.kind'")
    operation = request.get("operation")
    if operation not in OPERATIONS:
        raise BadReview(f"request.operation must be one of CREATE, UPDATE, DELETE, CONNECT, not {operation!r}")
    # Hand-written reviews may omit request.namespace or request.name: take them from the object then.
    try:
        namespace = _optional_str(request, "namespace") or namespace_of(request.get("object")) \
            or namespace_of(request.get("oldObject"))
    except ObjectError as error:
        raise BadReview(f"request.object: {error}") from None
    name = _optional_str(request, "name") or name_of(request.get("object"), generated=False) \
        or name_of(request.get("oldObject"), generated=False)
    obj, old = request.get("object"), request.get("oldObject")
    if obj is not None and not isinstance(obj, dict):
        raise BadReview("request.object must be an object")
    if old is not None and not isinstance(old, dict):
        raise BadReview("request.oldObject must be an object")
    if obj is None and operation in ("CREATE", "UPDATE") and object_kind in JUDGED_KINDS:
        raise BadReview(f"missing 'request.object' (required for {operation} of a {object_kind})")
    user_info = request.get("userInfo") or {}
    if not isinstance(user_info, dict):
        raise BadReview("request.userInfo must be an object")
    username = user_info.get("username") or ""
    groups = user_info.get("groups") or []
    if not isinstance(username, str) or not isinstance(groups, list) or not all(isinstance(g, str) for g in groups):
        raise BadReview("request.userInfo: username must be a string and groups a list of strings")
    dry_run = request.get("dryRun")
    if dry_run is not None and not isinstance(dry_run, bool):
        raise BadReview("request.dryRun must be a boolean")
    op: Operation = operation
    return Review(
        uid=uid,
        request=AdmissionRequest(
            kind=object_kind, operation=op, namespace=namespace, name=name, object=obj, old_object=old,
            user=User(username, frozenset(groups)), dry_run=bool(dry_run),
        ),
        sub_resource=_optional_str(request, "subResource"),
    )


def _optional_str(data: Mapping[str, Any], key: str) -> str:
    value = data.get(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise BadReview(f"request.{key} must be a string")
    return value


def review_response(uid: str, outcome: Outcome) -> dict[str, Any]:
    """The AdmissionReview we send back for `outcome`."""
    response: dict[str, Any] = {"uid": uid, "allowed": outcome.allowed}
    if not outcome.allowed:
        response["status"] = {"code": 403, "reason": "Forbidden", "message": outcome.message or "denied"}
    if outcome.warnings:
        response["warnings"] = outcome.warnings
    if outcome.annotations:
        response["auditAnnotations"] = outcome.annotations
    return {"apiVersion": API_VERSION, "kind": "AdmissionReview", "response": response}


def outcome_of(decision: Decision, confirmed: bool) -> Outcome:
    """The engine's decision as the answer we send, log and count."""
    if not decision.judged:
        return Outcome(allowed=True, decision="no_opinion", mode=decision.mode)
    allowed = decision.allowed
    label = "denied" if not allowed else ("warned" if decision.violations else "allowed")
    return Outcome(
        allowed=allowed, decision=label, mode=decision.mode,
        message=decision.deny_message() if not allowed else None,
        warnings=decision.warnings(), annotations=decision.audit_annotations(), rules=decision.rules,
        violations=tuple((v.rule, v.action) for v in decision.violations),
        exempt=decision.exempt, confirmed=confirmed,
    )


def failure_outcome(config: Config, what: str, why: str) -> Outcome:
    """The fail-mode answer when `what` could not be verified: deny when failClosed, else allow with a warning."""
    message = f"netpol-guard could not verify {what}: {why}"
    annotations = {"netpol-guard.unverified": message}
    if config.fail_closed:
        return Outcome(allowed=False, decision="error", mode=config.mode, error=why, annotations=annotations,
                       message=f"{message} (failing closed: failClosed is true; retry, or ask a cluster admin)")
    return Outcome(allowed=True, decision="error", mode=config.mode, error=why, annotations=annotations,
                   warnings=[f"{message} (allowed because failClosed is false)"])
