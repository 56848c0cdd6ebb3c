"""Adds and garbage collection take turns (node.store.gate): adds in flight finish first, new
ones wait for the collection, and a slow add cannot hold every other add back."""

from __future__ import annotations

import asyncio

from node.store.gate import AddGate


async def test_a_collection_waits_for_adds_in_flight_and_holds_new_ones_back() -> None:
    gate = AddGate()
    order: list[str] = []
    first_in = asyncio.Event()
    release_first = asyncio.Event()

    async def first_add() -> None:
        async with gate.adding():
            first_in.set()
            await release_first.wait()
            order.append("first add done")

    async def collection() -> None:
        async with gate.collecting(wait_s=30) as quiet:
            assert quiet
            order.append("collected")

    async def second_add() -> None:
        async with gate.adding():
            order.append("second add")

    adding = asyncio.create_task(first_add())
    await first_in.wait()
    collecting = asyncio.create_task(collection())
    await asyncio.sleep(0)  # let the collection close the gate (one loop turn, not a timing)
    later = asyncio.create_task(second_add())
    await asyncio.sleep(0)
    assert order == []  # the collection waits for the first add; the second waits for it
    release_first.set()
    await asyncio.gather(adding, collecting, later)
    assert order == ["first add done", "collected", "second add"]


async def test_a_slow_add_opens_the_gate_again_and_the_collection_is_told() -> None:
    gate = AddGate()
    slow_in, release = asyncio.Event(), asyncio.Event()

    async def slow_add() -> None:
        async with gate.adding():
            slow_in.set()
            await release.wait()

    adding = asyncio.create_task(slow_add())
    await slow_in.wait()
    async with gate.collecting(wait_s=0.05) as quiet:
        assert not quiet
        async with gate.adding():  # not held back by a collection that will not run repo/gc
            pass
    release.set()
    await adding
