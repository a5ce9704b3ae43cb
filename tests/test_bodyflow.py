"""``pipeline._BodyFlow``: how many bodies a poll holds at once, and how the bound widens."""

from __future__ import annotations

import asyncio
import contextlib

from aggregator.pipeline import _BodyFlow


def test_feeds_that_surely_send_a_body_wait_while_the_parsers_are_busy() -> None:
    async def run() -> tuple[int, int, int]:
        flow = _BodyFlow(2, most=64)  # two parse slots: four bodies at first
        inside = peak = 0
        release = asyncio.Event()

        async def feed() -> None:
            nonlocal inside, peak
            async with flow.body_expected(True):
                inside += 1
                peak = max(peak, inside)
                await release.wait()  # fetching, parsing, storing: holding its body
                inside -= 1

        tasks = [asyncio.create_task(feed()) for _ in range(10)]
        await asyncio.sleep(0.01)
        held = inside
        release.set()
        await asyncio.gather(*tasks)
        return held, peak, flow._inside

    held, peak, left = asyncio.run(run())
    assert (held, peak, left) == (4, 4, 0)


def test_feeds_with_validators_are_not_held_back() -> None:
    async def run() -> int:
        flow = _BodyFlow(1, most=64)
        inside = 0
        release = asyncio.Event()

        async def feed() -> None:
            nonlocal inside
            async with flow.body_expected(False):
                inside += 1
                await release.wait()

        tasks = [asyncio.create_task(feed()) for _ in range(10)]
        await asyncio.sleep(0.01)
        release.set()
        await asyncio.gather(*tasks)
        return inside

    assert asyncio.run(run()) == 10


def test_a_free_parse_slot_lets_one_more_fetch_start_up_to_the_requests_in_flight() -> None:
    async def run() -> list[int]:
        flow = _BodyFlow(1, most=4)
        limits = [flow._limit]
        for _ in range(3):
            async with flow.parse_slot():  # free every time: the parsers wait for bodies
                pass
            limits.append(flow._limit)
        return limits

    assert asyncio.run(run()) == [2, 3, 4, 4]


def test_a_waiting_feed_that_is_cancelled_gives_its_place_back() -> None:
    async def run() -> tuple[int, bool]:
        flow = _BodyFlow(1, most=64)  # two places
        release = asyncio.Event()
        entered: list[int] = []

        async def feed(n: int) -> None:
            async with flow.body_expected(True):
                entered.append(n)
                await release.wait()

        first = [asyncio.create_task(feed(n)) for n in range(2)]
        waiting = [asyncio.create_task(feed(n)) for n in range(2, 5)]
        await asyncio.sleep(0.01)
        waiting[0].cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await waiting[0]
        release.set()
        await asyncio.gather(*first, *waiting[1:])
        return flow._inside, 2 not in entered

    assert asyncio.run(run()) == (0, True)
