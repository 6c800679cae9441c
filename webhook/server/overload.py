"""Overload bounds for POST /validate: a cap on reviews in progress and a byte budget for large bodies.

With `failurePolicy: Fail` the webhook is on the write path of the whole cluster, so two
things must never happen: running out of memory (an OOM-killed replica blocks every
judged write), and shedding the small, ordinary reviews because of a few giant ones.

- `maxConcurrentReviews`: reviews being read, waiting or judged. One more gets an
  immediate HTTP 429, so the API server applies its failurePolicy at once instead of
  waiting for its timeout.
- `maxInflightBodyBytes`: a body above SMALL_BODY bytes reserves its size from this
  budget before a byte of it is read (a chunked body reserves as it is read), waiting up
  to LARGE_WAIT seconds for room, then 429. Bodies not yet read stay in the kernel's
  socket buffers (uvicorn stops reading a connection whose body the app does not
  consume), so waiting costs no memory. Small bodies never touch the budget: a storm
  of 3 MB reviews cannot shed a 5 KB Pod review.

Why 429 and not `allowed: false`: a 429 lets the API server apply the failurePolicy the
operator chose (Fail rejects, Ignore admits), and it needs no body, while an
`allowed: false` answer needs the uid from a body we have decided not to read.
"""

from __future__ import annotations

import asyncio
from collections import deque

# Bodies up to this size skip the byte budget (an ordinary review is a few KiB).
SMALL_BODY = 64 * 1024
# How long a large body may wait for room in the budget before a 429.
LARGE_WAIT = 1.0


class Overloaded(Exception):
    """Answer 429: the message says which bound was hit."""


class ByteBudget:
    """Bytes of large bodies in flight, reserved before they are read; FIFO waiters (event-loop only)."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.used = 0
        self._waiters: deque[tuple[int, asyncio.Future[None]]] = deque()

    def try_reserve(self, size: int) -> bool:
        if self.used + size <= self.capacity and not self._waiters:
            self.used += size
            return True
        return False

    async def reserve(self, size: int, timeout: float) -> None:
        """Take `size` bytes, waiting (first come, first served) up to `timeout`; raises Overloaded."""
        size = min(size, self.capacity)
        if self.try_reserve(size):
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        entry = (size, future)
        self._waiters.append(entry)
        try:
            await asyncio.wait_for(asyncio.shield(future), timeout)
        except TimeoutError:
            if future.done():  # granted just as the wait ended: keep it
                return
            self._waiters.remove(entry)
            self._wake()
            raise Overloaded("too many large reviews in flight (server.maxInflightBodyBytes)") from None
        except asyncio.CancelledError:
            if future.done():
                self.release(size)
            elif entry in self._waiters:
                self._waiters.remove(entry)
                self._wake()
            raise

    def release(self, size: int) -> None:
        self.used -= min(size, self.capacity)
        self._wake()

    def _wake(self) -> None:
        while self._waiters:
            size, future = self._waiters[0]
            if future.done():
                self._waiters.popleft()
                continue
            if self.used + size > self.capacity:
                return
            self._waiters.popleft()
            self.used += size
            future.set_result(None)
