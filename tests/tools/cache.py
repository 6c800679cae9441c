"""How the test caches (Go tools, CRDs) fill an entry: once, whole, one builder at a time.

Each cache entry is a directory filled in a temporary sibling and renamed into place, with a stamp
written last, so an interrupted fill never leaves a half entry; `locked` serialises the builders of
one entry across processes (pytest-xdist workers, parallel `make` targets), so a second one waits and
then finds the entry complete.
"""

from __future__ import annotations

import contextlib
import fcntl
import pathlib
import shutil
import tempfile
from collections.abc import Callable, Iterator


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


def fill(directory: pathlib.Path, stamp_name: str, complete: Callable[[pathlib.Path], bool],
         build: Callable[[pathlib.Path], str]) -> bool:
    """Make the cache entry `directory` complete; True when this call filled it.

    Unless `complete(directory)`: under the lock, checked again (another process may have finished meanwhile),
    `build(tmp)` fills a fresh temporary sibling and returns the stamp's text; the stamp is written last, and
    the sibling replaces whatever stale entry was there.
    """
    if complete(directory):
        return False
    with locked(directory):
        if complete(directory):
            return False
        for stale in directory.parent.glob(f".{directory.name}.tmp-*"):  # left by a killed builder
            shutil.rmtree(stale, ignore_errors=True)
        tmp = pathlib.Path(tempfile.mkdtemp(prefix=f".{directory.name}.tmp-", dir=directory.parent))
        try:
            stamp = build(tmp)
            tmp.chmod(0o755)
            (tmp / stamp_name).write_text(stamp)  # last: marks the entry complete
            if directory.exists():
                shutil.rmtree(directory)
            tmp.rename(directory)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
    return True
