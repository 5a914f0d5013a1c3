"""Concurrent requests' images embedded together: a bounded queue and a short wait."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any


class Overloaded(Exception):
    """The queue of waiting requests is full."""


class MicroBatcher:
    """Runs ``function`` on the items of the requests that arrive together, in one thread.

    A request submits its items (say, 3 preprocessed images); the worker takes the first
    waiting request, then for up to ``max_wait`` seconds the next ones, until ``max_batch``
    items are gathered, calls ``function(items)`` once (a model's forward pass over
    ``(batch, 3, S, S)``) and hands each request its rows of the result. At most
    ``max_queue`` requests wait; one more raises :class:`Overloaded` at once rather than
    queueing without bound. The event loop never runs ``function``: it stays free to accept
    requests while a batch is computed.

    Args:
        function: items -> one result row per item (an array or a list).
        max_batch: the most items per call (a request of more runs alone).
        max_wait: seconds to wait for more requests once one is waiting.
        max_queue: requests allowed to wait.
    """

    def __init__(
        self,
        function: Callable[[list[Any]], Sequence[Any]],
        max_batch: int = 32,
        max_wait: float = 0.005,
        max_queue: int = 256,
    ) -> None:
        if max_batch < 1 or max_queue < 1 or max_wait < 0:
            raise ValueError("max_batch and max_queue must be positive and max_wait >= 0")
        self.function, self.max_batch, self.max_wait = function, max_batch, max_wait
        self.max_queue = max_queue
        self.batches = 0  # calls of function so far
        self._queue: asyncio.Queue | None = None
        self._worker: asyncio.Task | None = None
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="cdml-batch")

    async def start(self) -> None:
        self._queue = asyncio.Queue(self.max_queue)
        self._worker = asyncio.create_task(self._run())

    async def stop(self) -> None:
        """Finish the waiting requests, then stop."""
        if self._worker is None:
            return
        await self._queue.join()
        self._worker.cancel()
        self._worker = None
        self._executor.shutdown(wait=True)

    async def submit(self, items: list[Any]) -> list[Any]:
        """``function``'s rows for ``items``, computed in a batch with other requests'."""
        if self._queue is None:
            raise RuntimeError("the batcher is not started")
        future = asyncio.get_running_loop().create_future()
        try:
            self._queue.put_nowait((items, future))
        except asyncio.QueueFull:
            raise Overloaded(f"{self.max_queue} requests are waiting; try again") from None
        return await future

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            waiting = [await self._queue.get()]
            size = len(waiting[0][0])
            deadline = loop.time() + self.max_wait
            while size < self.max_batch:
                try:
                    request = await asyncio.wait_for(self._queue.get(), deadline - loop.time())
                except asyncio.TimeoutError:
                    break
                waiting.append(request)
                size += len(request[0])
            items = [item for request, _ in waiting for item in request]
            try:
                rows = await loop.run_in_executor(self._executor, self.function, items)
                self.batches += 1
            except Exception as error:  # every request of the batch hears of it
                for _, future in waiting:
                    if not future.done():
                        future.set_exception(error)
            else:
                start = 0
                for request, future in waiting:
                    if not future.done():  # its client may have gone
                        future.set_result(rows[start : start + len(request)])
                    start += len(request)
            for _ in waiting:
                self._queue.task_done()
