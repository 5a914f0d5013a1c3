"""The micro-batcher: concurrent requests share calls, each gets its own rows, the queue is
bounded, and a failure reaches every request of its batch."""

import asyncio
import threading

import numpy as np
import pytest

from cdml.serving.batching import MicroBatcher, Overloaded


def run(coroutine):
    return asyncio.run(coroutine)


def test_concurrent_requests_share_calls_and_get_their_own_rows():
    sizes = []

    def double(items):
        sizes.append(len(items))
        return np.asarray(items) * 2

    async def scenario():
        batcher = MicroBatcher(double, max_batch=8, max_wait=0.05)
        await batcher.start()
        requests = [[i, 100 + i] for i in range(12)]  # two items each
        answers = await asyncio.gather(*(batcher.submit(r) for r in requests))
        await batcher.stop()
        return requests, answers

    requests, answers = run(scenario())
    for request, answer in zip(requests, answers, strict=True):
        assert np.asarray(answer).tolist() == [2 * v for v in request]
    assert sum(sizes) == 24 and len(sizes) < 12 and max(sizes) <= 8


def test_a_full_queue_refuses_at_once_and_a_failure_reaches_its_batch():
    release = threading.Event()

    def blocked(items):
        release.wait(5)
        if "bad" in items:
            raise ValueError("bad item")
        return items

    async def scenario():
        batcher = MicroBatcher(blocked, max_batch=4, max_wait=0.0, max_queue=2)
        await batcher.start()
        first = asyncio.create_task(batcher.submit(["a"]))
        await asyncio.sleep(0.05)  # the worker holds it: the queue is empty again
        waiting = [asyncio.create_task(batcher.submit(["bad"])) for _ in range(2)]
        await asyncio.sleep(0)
        with pytest.raises(Overloaded):
            await batcher.submit(["c"])
        release.set()
        outcomes = await asyncio.gather(first, *waiting, return_exceptions=True)
        await batcher.stop()
        return outcomes

    first, *failed = run(scenario())
    assert first == ["a"]
    assert all(isinstance(error, ValueError) for error in failed)
