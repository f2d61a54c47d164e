"""The game's handle on a queued request: :class:`QueueTicket`.

:meth:`~systems.llm.request_queue.RequestQueue.submit` returns one at once; the frame loop
polls it (an attribute read, never blocking), may cancel it, and start-up code or tests may
wait on it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from esper_arbiter.components.llm import PlanOutcome
from esper_arbiter.systems.llm.queue_entry import EntryState, QueueEntry

if TYPE_CHECKING:
    from esper_arbiter.systems.llm.request_queue import RequestQueue


class QueueTicket:
    """The game's handle (implements ``components.llm.PlanTicket``). ``poll`` never blocks."""

    __slots__ = ("_entry", "_queue")

    def __init__(self, queue: RequestQueue, entry: QueueEntry) -> None:
        self._queue = queue
        self._entry = entry

    @property
    def request_id(self) -> int:
        return self._entry.request_id

    @property
    def entry(self) -> QueueEntry:
        return self._entry

    def poll(self, now: float) -> PlanOutcome | None:
        """The outcome once there is one. ``now`` (game time) is ignored; a request still
        queued past its (wall-clock) deadline is expired here, so the game sees TIMEOUT on time
        even when every worker is busy."""
        entry = self._entry
        out = entry.outcome
        if (
            out is None
            and entry.state is EntryState.QUEUED
            and self._queue.clock() >= entry.deadline_at
        ):
            self._queue.expire_due()
            out = entry.outcome
        return out

    def cancel(self) -> None:
        """Resolve as CANCELLED now (unless it already has an outcome) and stop the work."""
        self._queue.cancel(self._entry.request_id)

    def wait(self, timeout: float | None = None) -> PlanOutcome | None:
        """Block until resolved (or ``timeout`` seconds). For start-up code and tests only:
        a frame loop polls instead."""
        return self._queue.wait(self._entry, timeout)
