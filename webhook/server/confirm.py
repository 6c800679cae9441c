"""The live read before a deny, shared: one in flight per namespace, its result reused briefly.

A deny is confirmed by reading the namespace and its policies from the API server (a deny-all
applied a moment ago must count). When a bundle of Deployments lands in an uncovered namespace,
or a controller retries, many reviews want the same read at once: they share one (singleflight),
and a read that finished less than REUSE_SECONDS ago answers the next ones too. Reuse returns
the cache's current view of the namespace, which holds the live read merged with every watch
event since, so it is never older than the read itself.

The reads run on their own small thread pool, never the event loop's default executor, so a
slow API server cannot starve anything else that needs a thread.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from webhook.cluster.source import LiveNamespace

# Long enough to absorb a burst of reviews for one namespace; short next to a person re-applying.
REUSE_SECONDS = 0.5
# Concurrent live reads (distinct namespaces); more wait for a thread.
READ_THREADS = 8

Snapshot = LiveNamespace


class LiveConfirm:
    """Singleflight + short reuse over a blocking `read(namespace)` (which raises LiveReadError)."""

    def __init__(self, read: Callable[[str], Snapshot], current: Callable[[str], Snapshot],
                 reuse_seconds: float = REUSE_SECONDS, threads: int = READ_THREADS) -> None:
        self._read = read
        self._current = current  # the cache's view of a namespace now (after the read was merged into it)
        self._reuse_seconds = reuse_seconds
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="live-read")
        self._in_flight: dict[str, asyncio.Future[Snapshot]] = {}
        self._finished: dict[str, float] = {}  # namespace -> monotonic time its last read finished
        self.reads = 0
        self.shared = 0

    async def namespace(self, namespace: str) -> Snapshot:
        """The namespace as the API server has it now (or had it at most REUSE_SECONDS ago)."""
        finished = self._finished.get(namespace)
        if finished is not None and time.monotonic() - finished < self._reuse_seconds:
            self.shared += 1
            return self._current(namespace)
        future = self._in_flight.get(namespace)
        if future is not None:
            self.shared += 1
            return await asyncio.shield(future)  # one caller giving up must not cancel the others' read
        loop = asyncio.get_running_loop()
        future = loop.run_in_executor(self._pool, self._read, namespace)
        self._in_flight[namespace] = future
        self.reads += 1
        future.add_done_callback(lambda done: self._done(namespace, done))
        return await asyncio.shield(future)

    def _done(self, namespace: str, future: asyncio.Future[Snapshot]) -> None:
        if self._in_flight.get(namespace) is future:
            del self._in_flight[namespace]
        if not future.cancelled() and future.exception() is None:
            self._finished[namespace] = time.monotonic()
            if len(self._finished) > 4096:  # forget old entries; they are only useful for REUSE_SECONDS
                cutoff = time.monotonic() - self._reuse_seconds
                self._finished = {ns: at for ns, at in self._finished.items() if at >= cutoff}

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
