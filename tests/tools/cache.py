"""The one lock the test caches share (Go tools, CRDs): one builder at a time per cache entry.

Each cache entry is a directory filled in a temporary sibling and renamed into place, with a stamp
written last; `locked` serialises the builders of one entry across processes (pytest-xdist workers,
parallel `make` targets), so a second one waits and then finds the entry complete.
"""

from __future__ import annotations

import contextlib
import fcntl
import pathlib
from collections.abc import Iterator


@contextlib.contextmanager
def locked(directory: pathlib.Path) -> Iterator[None]:
    """Hold the lock of the cache entry `directory` (a `.<name>.lock` file beside it)."""
    directory.parent.mkdir(parents=True, exist_ok=True)
    with open(directory.parent / f".{directory.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
