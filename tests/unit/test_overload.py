"""The byte budget for large bodies: reserve before reading, first come first served, bounded waits."""

from __future__ import annotations

import asyncio

import pytest

from webhook.server.overload import ByteBudget, Overloaded


def test_reservations_wait_in_order_and_time_out() -> None:
    async def main() -> None:
        budget = ByteBudget(100)
        await budget.reserve(60, 0.1)
        order: list[str] = []

        async def take(name: str, size: int, timeout: float) -> None:
            await budget.reserve(size, timeout)
            order.append(name)

        first = asyncio.create_task(take("first", 50, 1.0))
        second = asyncio.create_task(take("second", 10, 1.0))  # would fit now, but waits behind "first"
        await asyncio.sleep(0.05)
        assert order == [] and budget.used == 60
        budget.release(60)
        await asyncio.gather(first, second)
        assert order == ["first", "second"] and budget.used == 60
        with pytest.raises(Overloaded, match="maxInflightBodyBytes"):
            await budget.reserve(50, 0.05)
        assert budget.used == 60  # a timed-out waiter holds nothing
        budget.release(50)
        budget.release(10)
        assert budget.used == 0
        await budget.reserve(10_000, 0.1)  # larger than the budget: takes all of it, never waits forever
        assert budget.used == 100

    asyncio.run(main())


def test_a_cancelled_waiter_gives_its_place_up() -> None:
    async def main() -> None:
        budget = ByteBudget(100)
        await budget.reserve(100, 0.1)
        waiter = asyncio.create_task(budget.reserve(50, 5.0))
        await asyncio.sleep(0.02)
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
        budget.release(100)
        assert budget.used == 0
        await budget.reserve(100, 0.1)

    asyncio.run(main())
