"""The ASGI wiring: routes, reading bodies, sending answers (the service and the review format live beside it).

`POST /validate` is answered by a bare ASGI handler before FastAPI's routing (no
Request/Response objects on the hot path): read the body with a size cap, parse it
(`webhook.server.review`), judge it (`webhook.server.service`), answer.

Nothing a client sends can produce a 500 or a traceback: bad input is a 400
with `{"error": ...}`, and a failure while judging becomes the fail-mode answer.
"""

from __future__ import annotations

import json
import time
from typing import Any

import structlog
from fastapi import FastAPI
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from webhook.cluster import ClusterSource
from webhook.core.config import Config, ServerSettings
from webhook.errors import MAX_TEXT_CHARS, BadReview, clip_text, describe_bug
from webhook.server.metrics import Metrics
from webhook.server.overload import LARGE_WAIT, SMALL_BODY, ByteBudget, Overloaded
from webhook.server.review import parse_review, review_response
from webhook.server.service import Service

# After a body goes over the limit we keep reading (and dropping) up to this much, so the client gets
# its 413 instead of a reset connection; past it we answer and close.
DRAIN_FACTOR = 4
JSON = "application/json"
ERROR_BODY_CHARS = MAX_TEXT_CHARS - 64  # room for {"error": ...} and escapes within 4 KiB

log = structlog.get_logger("netpol_guard")


class ClientGone(Exception):
    """The client disconnected before sending the whole body: nobody to answer."""


class TooLarge(Exception):
    def __init__(self, drained: bool) -> None:
        super().__init__("request body too large")
        self.drained = drained  # False: the rest of the body is still unread, so the connection must close


async def _send_json(send: Send, status: int, data: Any, extra: tuple[tuple[bytes, bytes], ...] = ()) -> None:
    body = json.dumps(data, separators=(",", ":")).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), *extra]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _json(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(json.dumps(data, separators=(",", ":")).encode(), status_code=status, media_type=JSON,
                    headers=headers)


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    return _json({"error": clip_text(message, ERROR_BODY_CHARS)}, status, headers)


async def _send_error(send: Send, status: int, message: str, extra: tuple[tuple[bytes, bytes], ...] = ()) -> None:
    """An error body of at most 4 KiB, whatever the message quotes."""
    await _send_json(send, status, {"error": clip_text(message, ERROR_BODY_CHARS)}, extra)


class Routes:
    """The HTTP face of one `Service`, with the overload bounds of `webhook.server.overload`."""

    def __init__(self, service: Service, settings: ServerSettings) -> None:
        self.service = service
        self.max_body = settings.max_body_bytes
        self.max_reviews = settings.max_concurrent_reviews
        self.budget = ByteBudget(max(settings.max_inflight_body_bytes, self.max_body))
        self.in_progress = 0

    async def validate(self, scope: Scope, receive: Receive, send: Send) -> None:
        """POST /validate as a bare ASGI handler: the hot path skips routing, Request and Response objects."""
        if self.in_progress >= self.max_reviews:
            self.service.metrics.count_shed("maxConcurrentReviews")
            await self._overloaded(send, receive, scope, "too many reviews in progress (server.maxConcurrentReviews)")
            return
        self.in_progress += 1
        held = _Held()
        try:
            await self._validate(scope, receive, send, held)
        finally:
            self.in_progress -= 1
            if held.bytes:
                self.budget.release(held.bytes)

    async def _validate(self, scope: Scope, receive: Receive, send: Send, held: _Held) -> None:
        service = self.service
        try:
            body = await self._read_body(scope, receive, held)
        except TooLarge as error:
            log.warning("request rejected", error="body too large", limit=self.max_body)
            close = () if error.drained else ((b"connection", b"close"),)
            await _send_error(send, 413, f"request body larger than {self.max_body} bytes (server.maxBodyBytes)",
                              close)
            return
        except Overloaded as error:
            service.metrics.count_shed("maxInflightBodyBytes")
            await _send_error(send, 429, str(error), ((b"retry-after", b"1"), (b"connection", b"close")))
            return
        except BadReview as error:
            await _send_error(send, 400, str(error))
            return
        except ClientGone:
            return
        started = time.perf_counter()
        try:
            review = parse_review(body)
        except BadReview as error:
            log.warning("request rejected", error=str(error))
            await _send_error(send, 400, str(error))
            return
        del body  # the parsed review holds what we need; let a large body go before judging
        try:
            outcome = await service.judge(review)
        except BadReview as error:  # the object sent is malformed: bad input, named
            log.warning("request rejected", uid=review.uid, error=str(error))
            await _send_error(send, 400, str(error))
            return
        except Exception as error:  # a bug must cost one fail-mode answer, not a 500 (nor a traceback)
            log.error("judging failed", uid=review.uid, error=describe_bug(error))
            outcome = service.failure("the request", f"internal error ({type(error).__name__})")
        duration = time.perf_counter() - started
        try:
            service.record(review, outcome, duration)
        except Exception as error:  # metrics or logging trouble must not cost the answer
            log.error("recording the decision failed", uid=review.uid, error=describe_bug(error))
        await _send_json(send, 200, review_response(review.uid, outcome))

    async def _overloaded(self, send: Send, receive: Receive, scope: Scope, message: str) -> None:
        """429 at once; a small body is read and dropped so the connection stays usable, a large one closes it."""
        try:
            declared = _content_length(scope)
        except BadReview:
            declared = None
        close: tuple[tuple[bytes, bytes], ...] = ((b"connection", b"close"),)
        if declared is not None and declared <= SMALL_BODY and await self._drain(receive, 0, declared, SMALL_BODY):
            close = ()
        log.warning("request shed", error=message)
        await _send_error(send, 429, message, ((b"retry-after", b"1"), *close))

    async def healthz(self, _: Request) -> Response:
        return PlainTextResponse("ok")

    async def readyz(self, _: Request) -> Response:
        reason = self.service.not_ready_reason()
        if reason is None:
            return PlainTextResponse("ok")
        return PlainTextResponse(reason, status_code=503)

    async def metrics(self, _: Request) -> Response:
        metrics = self.service.metrics
        metrics.in_progress.set(self.in_progress)
        metrics.inflight_bytes.set(self.budget.used)
        return Response(metrics.render(self.service.source, self.service.engine), media_type=metrics.content_type)

    # ----- reading -----
    async def _read_body(self, scope: Scope, receive: Receive, held: _Held) -> bytes:
        """The whole body, counted while read: a large one first reserves its bytes from the budget."""
        declared = _content_length(scope)
        if declared is not None:
            if declared > self.max_body:  # refuse before reading a byte of it
                raise TooLarge(await self._drain(receive, 0, declared, self.max_body * DRAIN_FACTOR))
            if declared > SMALL_BODY:
                await self.budget.reserve(declared, LARGE_WAIT)
                held.bytes = min(declared, self.budget.capacity)
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
                raise TooLarge(not more or await self._drain(receive, size, None, self.max_body * DRAIN_FACTOR))
            if declared is None and size > SMALL_BODY and size > held.bytes:  # chunked: reserve as it grows
                step = max(size - held.bytes, SMALL_BODY)
                await self.budget.reserve(step, LARGE_WAIT)
                held.bytes += step
            chunks.append(chunk)
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    async def _drain(self, receive: Receive, seen: int, declared: int | None, cap: int) -> bool:
        """Read and drop the rest of a body we will not judge (at most `cap` bytes), so the client reads
        our answer cleanly; False when the connection must close instead."""
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


class _Held:
    """Budget bytes one request holds, returned when it is answered."""

    __slots__ = ("bytes",)

    def __init__(self) -> None:
        self.bytes = 0


def _content_length(scope: Scope) -> int | None:
    """The declared body size; raises BadReview when the header is not a number."""
    for name, value in scope["headers"]:
        if name == b"content-length":
            if not value.isdigit():
                raise BadReview("invalid Content-Length")
            return int(value)
    return None


class _FastPath:
    """ASGI middleware answering POST /validate itself; everything else goes through FastAPI's routing."""

    def __init__(self, app: ASGIApp, routes: Routes) -> None:
        self.app = app
        self.routes = routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST" and scope["path"] == "/validate":
            await self.routes.validate(scope, receive, send)
        else:
            await self.app(scope, receive, send)


async def _method_not_allowed(_: Request) -> Response:  # pragma: no cover - POST never reaches the router
    return _error(405, "Method Not Allowed")


def create_app(config: Config, source: ClusterSource) -> FastAPI:
    """A fresh app (own engine, own metrics registry) answering from `source`."""
    metrics = Metrics()
    service = Service(config, source, metrics)
    routes = Routes(service, config.server)
    app = FastAPI(title="netpol-guard", docs_url=None, redoc_url=None, openapi_url=None)
    # Plain Starlette routes: no pydantic request models or dependency injection on the hot path.
    # POST /validate is answered by _FastPath before routing; the route stays so other methods get a 405.
    app.router.add_route("/validate", _method_not_allowed, methods=["POST"])
    app.router.add_route("/healthz", routes.healthz, methods=["GET"])
    app.router.add_route("/readyz", routes.readyz, methods=["GET"])
    app.router.add_route("/metrics", routes.metrics, methods=["GET"])

    async def http_error(_: Request, error: Exception) -> Response:
        # 404/405 and friends as JSON {"error": ...}, like every other error we send.
        assert isinstance(error, StarletteHTTPException)
        return _error(error.status_code, str(error.detail), dict(error.headers) if error.headers else None)

    async def unexpected(_: Request, error: Exception) -> Response:
        log.error("unhandled error", error=describe_bug(error))
        return _error(503, "internal error; see the netpol-guard log")

    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(Exception, unexpected)
    app.add_middleware(_FastPath, routes=routes)
    app.state.service = service
    app.state.metrics = metrics
    return app
