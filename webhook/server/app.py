"""The HTTP service: AdmissionReview in, decision out (a shell around webhook.core.engine).

The hot path (`POST /validate`) takes the raw body and `json.loads` it: an
AdmissionReview carries whole Kubernetes objects, and validating them with
pydantic models would cost more than the decision itself. The engine runs in the
event loop (it is a few dictionary lookups); only the live confirm before a deny
goes to a thread, because it waits on the API server.

Nothing a client sends can produce a 500 or a traceback: bad input is a 400
with `{"error": ...}`, and any failure to judge a well-formed review becomes
the configured fail-mode answer (deny by default) saying why.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import structlog
from fastapi import FastAPI
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from webhook.cluster import ClusterSource, LiveReadError
from webhook.core.config import Config
from webhook.core.engine import JUDGED_KINDS, Decision, Engine, Operation, User
from webhook.core.engine import Request as AdmissionRequest
from webhook.core.errors import ObjectError
from webhook.core.state import NamespaceOverride
from webhook.server.metrics import Metrics

API_VERSION = "admission.k8s.io/v1"
OPERATIONS: frozenset[str] = frozenset(("CREATE", "UPDATE", "DELETE", "CONNECT"))
# After a body goes over the limit we keep reading (and dropping) up to this much, so the client gets
# its 413 instead of a reset connection; past it we answer and close.
DRAIN_FACTOR = 4
JSON = "application/json"

log = structlog.get_logger("netpol_guard")


class BadReview(ValueError):
    """The body is not an AdmissionReview we can answer: HTTP 400 with this message."""


class ClientGone(Exception):
    """The client disconnected before sending the whole body: nobody to answer."""


class TooLarge(Exception):
    def __init__(self, drained: bool) -> None:
        super().__init__("request body too large")
        self.drained = drained  # False: the rest of the body is still unread, so the connection must close


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
    namespace = _optional_str(request, "namespace") or _metadata_field(request.get("object"), "namespace") \
        or _metadata_field(request.get("oldObject"), "namespace")
    name = _optional_str(request, "name") or _metadata_field(request.get("object"), "name") \
        or _metadata_field(request.get("oldObject"), "name")
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


def _metadata_field(obj: Any, key: str) -> str:
    """metadata.<key> of an object, for hand-written reviews that omit request.namespace or request.name."""
    metadata = obj.get("metadata") if isinstance(obj, dict) else None
    value = metadata.get(key) if isinstance(metadata, dict) else None
    return value if isinstance(value, str) else ""


def _optional_str(data: Mapping[str, Any], key: str) -> str:
    value = data.get(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise BadReview(f"request.{key} must be a string")
    return value


def review_response(uid: str, outcome: Outcome) -> dict[str, Any]:
    response: dict[str, Any] = {"uid": uid, "allowed": outcome.allowed}
    if not outcome.allowed:
        response["status"] = {"code": 403, "reason": "Forbidden", "message": outcome.message or "denied"}
    if outcome.warnings:
        response["warnings"] = outcome.warnings
    if outcome.annotations:
        response["auditAnnotations"] = outcome.annotations
    return {"apiVersion": API_VERSION, "kind": "AdmissionReview", "response": response}


async def _send_json(send: Send, status: int, data: Any, extra: tuple[tuple[bytes, bytes], ...] = ()) -> None:
    body = json.dumps(data, separators=(",", ":")).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), *extra]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _json(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(json.dumps(data, separators=(",", ":")).encode(), status_code=status, media_type=JSON,
                    headers=headers)


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    return _json({"error": message}, status, headers)


class Service:
    """The admission logic behind the routes: one engine, one source, one metrics registry."""

    def __init__(self, config: Config, source: ClusterSource, metrics: Metrics) -> None:
        self.config = config
        self.engine = Engine(config)
        self.source = source
        self.metrics = metrics
        self.max_body = config.server.max_body_bytes

    # ----- routes -----
    async def validate(self, scope: Scope, receive: Receive, send: Send) -> None:
        """POST /validate as a bare ASGI handler: the hot path skips routing, Request and Response objects."""
        try:
            body = await self._read_body(scope, receive)
        except TooLarge as error:
            log.warning("request rejected", error="body too large", limit=self.max_body)
            close = () if error.drained else ((b"connection", b"close"),)
            await _send_json(send, 413, {"error": f"request body larger than {self.max_body} bytes "
                                                  "(server.maxBodyBytes)"}, close)
            return
        except BadReview as error:
            await _send_json(send, 400, {"error": str(error)})
            return
        except ClientGone:
            return
        started = time.perf_counter()
        try:
            review = parse_review(body)
        except BadReview as error:
            log.warning("request rejected", error=str(error))
            await _send_json(send, 400, {"error": str(error)})
            return
        try:
            outcome = await self.judge(review)
        except Exception as error:  # a bug must cost one fail-mode answer, not a 500
            log.exception("judging failed", uid=review.uid)
            outcome = self._failure(review, "the request", f"internal error ({type(error).__name__})")
        duration = time.perf_counter() - started
        try:
            self._record(review, outcome, duration)
        except Exception:  # metrics or logging trouble must not cost the answer
            log.exception("recording the decision failed", uid=review.uid)
        await _send_json(send, 200, review_response(review.uid, outcome))

    async def healthz(self, _: Request) -> Response:
        return PlainTextResponse("ok")

    async def readyz(self, _: Request) -> Response:
        if self.source.synced:
            return PlainTextResponse("ok")
        return PlainTextResponse(self.source.not_ready_reason() or "not ready", status_code=503)

    async def metrics_endpoint(self, _: Request) -> Response:
        return Response(self.metrics.render(self.source), media_type=self.metrics.content_type)

    # ----- reading -----
    async def _read_body(self, scope: Scope, receive: Receive) -> bytes:
        for name, value in scope["headers"]:
            if name == b"content-length":
                if not value.isdigit():
                    raise BadReview("invalid Content-Length")
                if int(value) > self.max_body:  # refuse before reading a byte of it
                    raise TooLarge(await self._drain(receive, 0, int(value)))
                break
        chunks: list[bytes] = []
        size = 0
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise ClientGone()
            chunk = message.get("body", b"")
            more = message.get("more_body", False)
            size += len(chunk)
            if size > self.max_body:  # a chunked body has no Content-Length: cap while reading
                raise TooLarge(not more or await self._drain(receive, size, None))
            chunks.append(chunk)
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    async def _drain(self, receive: Receive, seen: int, declared: int | None) -> bool:
        """Read and drop the rest of an oversize body (bounded), so the client reads our 413 cleanly."""
        cap = self.max_body * DRAIN_FACTOR
        if declared is not None and declared > cap:
            return False
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return False
            seen += len(message.get("body", b""))
            if seen > cap:
                return False
            if not message.get("more_body", False):
                return True

    # ----- judging -----
    async def judge(self, review: Review) -> Outcome:
        request = review.request
        if (request.kind not in JUDGED_KINDS or request.operation == "CONNECT"
                or review.sub_resource):
            # Subresources (status, scale, ephemeralcontainers...) never carry a new pod template.
            return Outcome(allowed=True, decision="no_opinion", mode=self.config.mode)
        if not self.source.synced:
            return self._failure(review, "the cluster state",
                                 self.source.not_ready_reason() or "the cluster cache has not synced yet")
        view = self.source.state
        try:
            decision = self.engine.review(request, view)
        except ObjectError as error:
            return self._failure(review, "the object", f"malformed {request.kind}: {error}")
        confirmed = False
        if decision.confirm_namespace is not None and self.source.live:
            namespace = decision.confirm_namespace
            try:
                info, policies = await asyncio.to_thread(self.source.live_namespace, namespace)
            except LiveReadError as error:
                return self._failure(review, "the cluster state",
                                     f"{error}; the cached view would deny: {decision.deny_message()}")
            confirmed = True
            try:
                decision = self.engine.review(request, NamespaceOverride(view, namespace, policies, info))
            except ObjectError as error:
                return self._failure(review, "the object", f"malformed {request.kind}: {error}")
        return _outcome(decision, confirmed)

    def _failure(self, review: Review, what: str, why: str) -> Outcome:
        closed = self.config.fail_closed
        message = f"netpol-guard could not verify {what}: {why}"
        annotations = {"netpol-guard.unverified": message}
        if closed:
            return Outcome(allowed=False, decision="error", mode=self.config.mode, error=why, annotations=annotations,
                           message=f"{message} (failing closed: failClosed is true; retry, or ask a cluster admin)")
        return Outcome(allowed=True, decision="error", mode=self.config.mode, error=why, annotations=annotations,
                       warnings=[f"{message} (allowed because failClosed is false)"])

    def _record(self, review: Review, outcome: Outcome, duration: float) -> None:
        request = review.request
        kind = request.kind if request.kind in JUDGED_KINDS else "other"
        self.metrics.count_request(kind, request.operation, outcome.decision, outcome.mode)
        self.metrics.duration.observe(duration)
        for rule, action in outcome.violations:
            self.metrics.count_violation(rule, action)
        # One line per decision; never the object, never credentials.
        log.info(
            "decision", uid=review.uid, kind=request.kind, namespace=request.namespace, name=request.name,
            operation=request.operation, user=request.user.username, dry_run=request.dry_run,
            decision=outcome.decision, mode=outcome.mode, rules=list(outcome.rules),
            duration_ms=round(duration * 1000, 3),
            **_optional(exempt=outcome.exempt, confirmed=outcome.confirmed or None, error=outcome.error),
        )


def _optional(**values: Any) -> dict[str, Any]:
    return {key: value for key, value in values.items() if value is not None}


def _outcome(decision: Decision, confirmed: bool) -> Outcome:
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


class _FastPath:
    """ASGI middleware answering POST /validate itself; everything else goes through FastAPI's routing."""

    def __init__(self, app: ASGIApp, service: Service) -> None:
        self.app = app
        self.service = service

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST" and scope["path"] == "/validate":
            await self.service.validate(scope, receive, send)
        else:
            await self.app(scope, receive, send)


async def _method_not_allowed(_: Request) -> Response:  # pragma: no cover - POST never reaches the router
    return _error(405, "Method Not Allowed")


def create_app(config: Config, source: ClusterSource) -> FastAPI:
    """A fresh app (own engine, own metrics registry) answering from `source`."""
    metrics = Metrics(config.audit.metrics_namespace_limit)
    service = Service(config, source, metrics)
    app = FastAPI(title="netpol-guard", docs_url=None, redoc_url=None, openapi_url=None)
    # Plain Starlette routes: no pydantic request models or dependency injection on the hot path.
    # POST /validate is answered by _FastPath before routing; the route stays so other methods get a 405.
    app.router.add_route("/validate", _method_not_allowed, methods=["POST"])
    app.router.add_route("/healthz", service.healthz, methods=["GET"])
    app.router.add_route("/readyz", service.readyz, methods=["GET"])
    app.router.add_route("/metrics", service.metrics_endpoint, methods=["GET"])

    async def http_error(_: Request, error: Exception) -> Response:
        # 404/405 and friends as JSON {"error": ...}, like every other error we send.
        assert isinstance(error, StarletteHTTPException)
        return _error(error.status_code, str(error.detail), dict(error.headers) if error.headers else None)

    async def unexpected(_: Request, error: Exception) -> Response:
        structlog.get_logger("netpol_guard").error("unhandled error", exc_info=error)
        return _error(503, "internal error; see the netpol-guard log")

    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(Exception, unexpected)
    app.add_middleware(_FastPath, service=service)
    app.state.service = service
    app.state.metrics = metrics
    return app
