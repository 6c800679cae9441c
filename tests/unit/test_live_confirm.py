"""The live confirm is shared per namespace (singleflight), reused briefly, and runs on its own threads."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from webhook.cluster.source import LiveNamespace
from webhook.errors import LiveReadError
from webhook.server.confirm import LiveConfirm, Snapshot


class SlowAPI:
    def __init__(self, delay: float = 0.2) -> None:
        self.delay = delay
        self.calls: list[str] = []
        self.threads: set[str] = set()
        self.fail = False
        self.lock = threading.Lock()

    def read(self, namespace: str) -> Snapshot:
        with self.lock:
            self.calls.append(namespace)
            self.threads.add(threading.current_thread().name)
        time.sleep(self.delay)
        if self.fail:
            raise LiveReadError(f"live read of namespace {namespace} failed: HTTP 500")
        return LiveNamespace(None, [])

    def current(self, namespace: str) -> Snapshot:
        return LiveNamespace(None, [])


def test_concurrent_confirms_of_one_namespace_share_one_read() -> None:
    api = SlowAPI()
    confirm = LiveConfirm(api.read, api.current)

    async def main() -> None:
        await asyncio.gather(*(confirm.namespace("shop") for _ in range(50)),
                             *(confirm.namespace("other") for _ in range(5)))

    asyncio.run(main())
    assert sorted(api.calls) == ["other", "shop"]
    assert confirm.reads == 2 and confirm.shared == 53
    assert all(name.startswith("live-read") for name in api.threads)  # never the default executor


def test_a_finished_read_is_reused_only_briefly() -> None:
    api = SlowAPI(delay=0.0)
    confirm = LiveConfirm(api.read, api.current, reuse_seconds=0.3)

    async def main() -> None:
        await confirm.namespace("shop")
        await confirm.namespace("shop")  # within the reuse window
        await asyncio.sleep(0.4)
        await confirm.namespace("shop")  # past it: read again

    asyncio.run(main())
    assert api.calls == ["shop", "shop"]


def test_a_failed_read_is_not_reused_and_reaches_every_waiter() -> None:
    api = SlowAPI(delay=0.1)
    api.fail = True
    confirm = LiveConfirm(api.read, api.current)

    async def main() -> list[object]:
        return await asyncio.gather(*(confirm.namespace("shop") for _ in range(3)), return_exceptions=True)

    results = asyncio.run(main())
    assert all(isinstance(r, LiveReadError) for r in results) and api.calls == ["shop"]
    api.fail = False
    asyncio.run(confirm.namespace("shop"))
    assert api.calls == ["shop", "shop"]


def test_a_cancelled_waiter_does_not_cancel_the_shared_read() -> None:
    api = SlowAPI(delay=0.3)
    confirm = LiveConfirm(api.read, api.current)

    async def main() -> None:
        impatient = asyncio.create_task(confirm.namespace("shop"))
        patient = asyncio.create_task(confirm.namespace("shop"))
        await asyncio.sleep(0.05)
        impatient.cancel()
        with pytest.raises(asyncio.CancelledError):
            await impatient
        assert await patient == LiveNamespace(None, [])

    asyncio.run(main())
    assert api.calls == ["shop"]


def test_slow_reads_do_not_starve_the_default_executor() -> None:
    api = SlowAPI(delay=0.5)
    confirm = LiveConfirm(api.read, api.current, threads=4)

    async def main() -> float:
        reads = [asyncio.create_task(confirm.namespace(f"ns-{i}")) for i in range(20)]
        await asyncio.sleep(0.05)
        started = time.monotonic()
        await asyncio.to_thread(lambda: None)  # anything else that needs the default pool
        elapsed = time.monotonic() - started
        await asyncio.gather(*reads)
        return elapsed

    assert asyncio.run(main()) < 0.2
