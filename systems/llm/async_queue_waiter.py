"""The asyncio face of the request queue: :class:`AsyncQueueWaiter`.

The queue's core uses only ``threading``; worker tasks on one event loop wait for work through
this waiter, which the game thread's submit wakes only when some worker actually waits (so
submit stays cheap while the pool is busy).
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING

from esper_arbiter.systems.llm.queue_entry import QueueEntry

if TYPE_CHECKING:
    from esper_arbiter.systems.llm.request_queue import RequestQueue


class AsyncQueueWaiter:
    """asyncio face of a :class:`RequestQueue` for workers running in one event loop.

    Create it inside the loop (``AsyncQueueWaiter(queue)``); any number of worker tasks may
    ``await waiter.take()`` concurrently. The game thread's submit wakes them through
    ``loop.call_soon_threadsafe`` only when some worker is actually waiting, so submit stays
    cheap while the pool is busy. Typical service loop::

        waiter = AsyncQueueWaiter(queue)
        async def worker() -> None:
            while (entry := await waiter.take()) is not None:
                outcome = await run(entry)          # honour entry.remaining(clock())
                queue.finish(entry, outcome)
        workers = [asyncio.create_task(worker()) for _ in range(queue.config.max_concurrent)]
    """

    def __init__(
        self, queue: RequestQueue, loop: asyncio.AbstractEventLoop | None = None
    ) -> None:
        self._queue = queue
        self._loop = loop if loop is not None else asyncio.get_running_loop()
        self._event = asyncio.Event()
        self._waiting = 0
        queue.add_wakeup(self._wake)

    def _wake(self) -> None:
        # Read in the submitting thread; a worker increments _waiting *before* its last
        # try_take, so work enqueued after that try_take always sees _waiting > 0.
        if self._waiting:
            with contextlib.suppress(RuntimeError):  # loop closed: nobody left to wake
                self._loop.call_soon_threadsafe(self._event.set)

    async def take(self) -> QueueEntry | None:
        """Wait for the next entry; None once the queue is closed and drained."""
        batch = await self.take_batch(1)
        return batch[0] if batch else None

    async def take_batch(
        self, max_n: int, *, mix_priorities: bool = False
    ) -> list[QueueEntry]:
        """Wait until something is queued, then :meth:`RequestQueue.take_batch`. Returns an
        empty list only once the queue is closed."""
        q = self._queue
        self._waiting += 1
        try:
            while True:
                self._event.clear()
                taken = q.take_batch(max_n, mix_priorities=mix_priorities)
                if taken:
                    return taken
                if q.closed:
                    return []
                await self._event.wait()
        finally:
            self._waiting -= 1

    def detach(self) -> None:
        """Stop listening to the queue (call when the loop shuts down)."""
        self._queue.remove_wakeup(self._wake)
