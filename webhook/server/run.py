"""`netpol-guard serve`: wire config, cluster source, TLS and the app into one uvicorn server.

uvicorn is driven programmatically with a socket we bind and an SSLContext we
own (so the certificate can rotate in place); startup problems become one line
on stderr and exit code 2, never a traceback. SIGTERM/SIGINT start uvicorn's
graceful shutdown (in-flight requests finish, idle keep-alive connections are dropped at once),
after which `serve` returns 0 within 5 s.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
import socket
import ssl
import sys
from collections.abc import Callable, Generator

import structlog
import uvicorn

from webhook.cluster import ClusterSource, SourceError, make_source
from webhook.core.config import Config
from webhook.errors import MAX_VALUE_CHARS, clip_text
from webhook.server.app import create_app
from webhook.server.tls import CertificateReloader, TLSError, require_client_certificates

EXIT_OK, EXIT_STARTUP = 0, 2
LOG_FIELD_CHARS = 1024  # a log field: each quoted value at most 256 characters, the field at most this
# In-flight reviews get this long to finish after SIGTERM (the API server gives up after the webhook's
# timeoutSeconds, 3 s in our manifests); with the reflectors' stop the process exits within 5 s.
GRACEFUL_SHUTDOWN_SECONDS = 3

log = structlog.get_logger("netpol_guard")


def configure_logging(level: int = logging.INFO) -> None:
    """JSON lines on stdout, for our structlog lines and for stdlib loggers (uvicorn, kubernetes) alike."""
    shared: list[structlog.typing.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _clip_values,
    ]
    structlog.configure(
        processors=[*shared, structlog.processors.format_exc_info,
                    structlog.processors.JSONRenderer(separators=(",", ":"))],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.WriteLoggerFactory(sys.stdout),
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(structlog.stdlib.ProcessorFormatter(
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, _drop_color_message,
                    structlog.processors.JSONRenderer(separators=(",", ":"))],
        foreign_pre_chain=[*shared, structlog.stdlib.add_logger_name, structlog.stdlib.ExtraAdder(),
                           structlog.processors.format_exc_info],
    ))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # The access log is replaced by our one line per decision.
    logging.getLogger("uvicorn.access").disabled = True


def _clip_values(
    _logger: object, _method: str, event: structlog.typing.EventDict
) -> structlog.typing.EventDict:
    """No log line carries an unbounded client value: every string field is clipped (quoted values to 256).

    The per-decision line is bounded where it is built (`Service.record`), and skipped here: it is the
    one line per request, so it stays off this loop's cost."""
    if event.get("event") == "decision":
        return event
    for key, value in event.items():
        kind = type(value)
        if kind is str:
            if len(value) > MAX_VALUE_CHARS and key != "exception":
                event[key] = clip_text(value, LOG_FIELD_CHARS)
        elif kind is list and value and type(value[0]) is str:
            event[key] = [clip_text(item, LOG_FIELD_CHARS) for item in value[:64]]
    return event


def _drop_color_message(
    _logger: object, _method: str, event: structlog.typing.EventDict
) -> structlog.typing.EventDict:
    event.pop("color_message", None)  # uvicorn's ANSI-coloured duplicate of the message
    return event


class _Server(uvicorn.Server):
    """uvicorn's server, with two changes to how it stops.

    - It does not re-raise the stop signal after a graceful shutdown (uvicorn re-sends SIGTERM to
      itself, which would end the process by the signal); SIGTERM is our normal stop: exit 0.
    - Idle connections are aborted instead of closed. Closing a TLS connection waits for the peer's
      close_notify, and an idle keep-alive client (the API server's pool, any Python client) never
      sends one, so one idle connection held shutdown for the whole graceful timeout. In-flight
      requests still finish: a connection is aborted only once its response is complete.
    """

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        handled = (signal.SIGINT, signal.SIGTERM)
        original = {sig: signal.signal(sig, self.handle_exit) for sig in handled}
        try:
            yield
        finally:
            for sig, handler in original.items():
                signal.signal(sig, handler)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        reaper = asyncio.create_task(self._abort_idle_connections())
        try:
            await super().shutdown(sockets)
        finally:
            reaper.cancel()

    async def _abort_idle_connections(self) -> None:
        while True:
            for connection in list(self.server_state.connections):
                cycle = getattr(connection, "cycle", None)
                transport = getattr(connection, "transport", None)
                if transport is not None and (cycle is None or cycle.response_complete):
                    transport.abort()
            await asyncio.sleep(0.05)


def bind(host: str, port: int) -> socket.socket:
    """Bind the listening socket ourselves so 'address in use' is a clear startup error."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as error:
        sock.close()
        raise OSError(f"cannot listen on {host}:{port}: {error.strerror or error}") from None
    sock.set_inheritable(True)
    return sock


def _ssl_factory(context: ssl.SSLContext) -> Callable[[uvicorn.Config, Callable[[], ssl.SSLContext]], ssl.SSLContext]:
    def factory(_config: uvicorn.Config, _default: Callable[[], ssl.SSLContext]) -> ssl.SSLContext:
        return context  # our context, which CertificateReloader keeps current

    return factory


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop]:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency via uvicorn[standard]
        return asyncio.new_event_loop
    return uvloop.new_event_loop


def serve(config: Config) -> int:
    configure_logging()
    settings = config.server
    source: ClusterSource | None = None
    try:
        reloader = CertificateReloader(settings.cert_dir, settings.cert_reload_seconds)
        client_ca = None
        if settings.client_ca:
            client_ca = require_client_certificates(reloader.context, settings.client_ca)
        source = make_source(settings.state, settings.kubeconfig, config.coverage_sources,
                             config.server.source_discovery_seconds, settings.cache_stale_seconds)
        sock = bind(settings.host, settings.port)
    except (TLSError, SourceError, OSError) as error:
        print(f"netpol-guard: {error}", file=sys.stderr)
        return EXIT_STARTUP

    app = create_app(config, source)
    generation = None
    if config.generate.enabled:
        from webhook.generate import GenerationError, start_generation

        try:
            if not source.live:
                raise GenerationError("generation needs a cluster to write to (not --state)")
            metrics = app.state.metrics
            generation = start_generation(config, settings.kubeconfig, metrics,
                                          on_leader=lambda leading: metrics.leader.set(1 if leading else 0),
                                          cache=source.state)
        except GenerationError as error:
            print(f"netpol-guard: {error}", file=sys.stderr)
            sock.close()
            return EXIT_STARTUP
    uconfig = uvicorn.Config(
        app, host=settings.host, port=settings.port, loop="none", http="httptools", ws="none", lifespan="off",
        log_config=None, access_log=False, server_header=False, proxy_headers=False,
        ssl_context_factory=_ssl_factory(reloader.context),
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
        timeout_keep_alive=65,  # longer than the API server's idle keep-alive, so it closes first
    )
    server = _Server(uconfig)

    async def main() -> None:
        poller = asyncio.create_task(reloader.run(), name="cert-reloader")
        try:
            await server.serve(sockets=[sock])
        finally:
            poller.cancel()

    source.start()
    # Everything loaded so far (config, engine, a --state cache) lives for the whole process: move it out of
    # the collector's sight, so full collections stay short and do not show up as latency spikes.
    gc.collect()
    gc.freeze()
    log.info("serving", host=settings.host, port=settings.port, mode=config.mode, fail_closed=config.fail_closed,
             generate=config.generate.enabled,
             state="static:" + settings.state if settings.state else "kubernetes", certificate=reloader.description,
             client_ca=client_ca or "not required")
    try:
        with asyncio.Runner(loop_factory=_loop_factory()) as runner:
            runner.run(main())
    except SystemExit as exit_:  # uvicorn exits on startup failures it hits itself
        return int(exit_.code or 0) and EXIT_STARTUP
    finally:
        if generation is not None:
            elector, generator = generation
            generator.stop()
            elector.stop()  # releases the Lease: another replica takes over at once
        source.stop()
        sock.close()
    log.info("stopped")
    return EXIT_OK
