"""The AdmissionReview boundary: parse a body into a `Review`, build the response from an `Outcome`.

Pure functions over bytes and plain data (no server, no cluster), so every quirk of
hostile or hand-written input is unit-testable. The envelope (`apiVersion`, `kind`,
`request.uid/kind/resource/.../options`) is validated with declared types (a pydantic
TypeAdapter over TypedDicts, parsing the JSON in the same pass); `object` and `oldObject`
stay plain dicts, because the core parses them and names their bad fields itself, and
modelling whole Kubernetes objects would cost more than the decision. Any mismatch is a
BadReview (HTTP 400) naming the field, never echoing the value.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Any, Literal, Required

from pydantic import ConfigDict, StringConstraints, TypeAdapter, ValidationError, with_config
from typing_extensions import TypedDict

from webhook.core.config import Config
from webhook.core.engine import JUDGED_KINDS, Decision, Operation, User
from webhook.core.engine import Request as AdmissionRequest
from webhook.core.errors import ObjectError
from webhook.core.objects import name_of, namespace_of
from webhook.errors import MAX_VALUE_CHARS, BadReview, clip, clip_repr, clip_text

API_VERSION = "admission.k8s.io/v1"
OPERATIONS: frozenset[str] = frozenset(("CREATE", "UPDATE", "DELETE", "CONNECT"))
MAX_PROBLEMS = 5  # validation problems named in one 400
MAX_WARNINGS = 32  # the API server keeps at most 4 KiB of warnings anyway

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
    waited: float | None = None  # seconds waited for a generated default-deny (generation)


# ----- the envelope, as declared types -----
# Bounds the API server never comes near (uids are 36 characters, names at most 253, kinds short);
# past them the request is not from an API server, and refusing it keeps every value we echo small.
# Strict: no coercion ("true" is not a boolean, 1 is not a string); unknown envelope fields are ignored.
_STRICT = ConfigDict(strict=True)
_Short = Annotated[str, StringConstraints(max_length=MAX_VALUE_CHARS)]
_Names = Annotated[str, StringConstraints(max_length=253)]


@with_config(_STRICT)
class _GroupVersionKind(TypedDict, total=False):
    group: _Short
    version: _Short
    kind: Required[_Short]


@with_config(_STRICT)
class _GroupVersionResource(TypedDict, total=False):
    group: _Short
    version: _Short
    resource: _Short


@with_config(_STRICT)
class _UserInfo(TypedDict, total=False):
    username: str | None
    uid: str | None
    groups: list[str] | None
    extra: dict[str, list[str] | None] | None


@with_config(_STRICT)
class _Request(TypedDict, total=False):
    uid: Required[Annotated[_Short, StringConstraints(min_length=1)]]
    kind: Required[_GroupVersionKind]
    resource: _GroupVersionResource | None
    subResource: _Short | None
    requestKind: _GroupVersionKind | None
    requestResource: _GroupVersionResource | None
    requestSubResource: _Short | None
    name: _Names | None
    namespace: _Names | None
    operation: Required[Literal["CREATE", "UPDATE", "DELETE", "CONNECT"]]
    userInfo: _UserInfo | None
    object: dict[str, Any] | None  # the objects stay plain dicts: the core parses (and names) their fields
    oldObject: dict[str, Any] | None
    dryRun: bool | None
    options: dict[str, Any] | None


@with_config(_STRICT)
class _AdmissionReview(TypedDict):
    apiVersion: Literal["admission.k8s.io/v1"]
    kind: Literal["AdmissionReview"]
    request: _Request


_ENVELOPE = TypeAdapter(_AdmissionReview)


def parse_review(body: bytes) -> Review:
    """Read an AdmissionReview admission.k8s.io/v1 body; raises BadReview naming the field that is wrong."""
    try:
        data = _ENVELOPE.validate_json(body)
    except ValidationError as error:
        raise BadReview(_describe(error)) from None
    except (ValueError, RecursionError, MemoryError):  # pragma: no cover - pydantic reports these as errors
        raise BadReview("malformed JSON") from None
    request = data["request"]
    object_kind = request["kind"]["kind"]
    if not object_kind:
        raise BadReview("request.kind.kind: must not be empty")
    operation: Operation = request["operation"]
    obj, old = request.get("object"), request.get("oldObject")
    # Hand-written reviews may omit request.namespace or request.name: take them from the object then.
    try:
        namespace = request.get("namespace") or clip(namespace_of(obj) or namespace_of(old), 253)
    except ObjectError as error:  # metadata.namespace that is not a string: never judged as `default`
        raise BadReview(f"request.object: {error}") from None
    name = request.get("name") or clip(name_of(obj, generated=False) or name_of(old, generated=False), 253)
    if obj is None and operation in ("CREATE", "UPDATE") and object_kind in JUDGED_KINDS:
        raise BadReview(f"request.object: required for {operation} of a {object_kind}")
    user_info = request.get("userInfo") or {}
    return Review(
        uid=request["uid"],
        request=AdmissionRequest(
            kind=object_kind, operation=operation, namespace=namespace, name=name, object=obj, old_object=old,
            user=User(user_info.get("username") or "", frozenset(user_info.get("groups") or ())),
            dry_run=bool(request.get("dryRun")),
        ),
        sub_resource=request.get("subResource") or "",
    )


def _describe(error: ValidationError) -> str:
    """The first few problems, each as `field.path: what is wrong` (quoting a value only for kind and
    apiVersion, clipped; pydantic's messages never quote the input)."""
    problems = []
    for item in error.errors(include_url=False, include_context=False)[:MAX_PROBLEMS]:
        loc = item["loc"]
        if item["type"] == "json_invalid":
            problems.append(f"malformed JSON: {item['msg'].removeprefix('Invalid JSON: ')}")
            continue
        if loc == ("kind",):
            problems.append(f"kind: not an AdmissionReview (kind is {clip_repr(item.get('input'))})")
            continue
        if loc == ("apiVersion",):
            problems.append(f"apiVersion: unsupported apiVersion {clip_repr(item.get('input'))}: netpol-guard "
                            f"answers {API_VERSION} only (set admissionReviewVersions: [v1] in the webhook "
                            "configuration)")
            continue
        where = "".join(f"[{part}]" if isinstance(part, int) else f".{clip(str(part), 64)}" for part in loc)
        where = where.lstrip(".") or "(body)"
        message = item["msg"]
        if not loc:
            message = "the body must be a JSON object (an AdmissionReview)"
        elif item["type"] in ("dict_type", "model_type", "typed_dict_type"):
            message = "must be an object"
        elif item["type"] == "missing":
            message = "required"
        problems.append(f"{where}: {message}")
    more = error.error_count() - len(problems)
    return "; ".join(problems) + (f" (and {more} more)" if more > 0 else "")


def review_response(uid: str, outcome: Outcome) -> dict[str, Any]:
    """The AdmissionReview we send back for `outcome`."""
    response: dict[str, Any] = {"uid": uid, "allowed": outcome.allowed}
    # Messages quote names, labels and fields of the object: bound each quoted value and each message.
    if not outcome.allowed:
        response["status"] = {"code": 403, "reason": "Forbidden", "message": clip_text(outcome.message or "denied")}
    if outcome.warnings:
        response["warnings"] = [clip_text(warning) for warning in outcome.warnings[:MAX_WARNINGS]]
    if outcome.annotations:
        response["auditAnnotations"] = {key: clip_text(value) for key, value in outcome.annotations.items()}
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
