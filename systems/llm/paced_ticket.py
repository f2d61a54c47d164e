"""The ticket :meth:`~systems.llm.service.LlmPlanService.submit` hands out.

A :class:`~systems.llm.request_queue.QueueTicket` that also tells the service's
:class:`~systems.llm.pacing.PacingMonitor` the game time while its request waits, so the
service can say when the game runs faster than the model plans (see :mod:`systems.llm.pacing`).
"""

from __future__ import annotations

from esper_arbiter.components.llm import PlanOutcome
from esper_arbiter.systems.llm.pacing import PacingMonitor
from esper_arbiter.systems.llm.queue_entry import QueueEntry
from esper_arbiter.systems.llm.queue_ticket import QueueTicket
from esper_arbiter.systems.llm.request_queue import RequestQueue


class PacedTicket(QueueTicket):
    """A :class:`QueueTicket` whose polls tell the service's :class:`PacingMonitor` the game
    time while the request waits (one comparison per poll; see :mod:`systems.llm.pacing`)."""

    __slots__ = ("_pacing",)

    def __init__(self, queue: RequestQueue, entry: QueueEntry, pacing: PacingMonitor) -> None:
        super().__init__(queue, entry)
        self._pacing = pacing

    def poll(self, now: float) -> PlanOutcome | None:
        outcome = QueueTicket.poll(self, now)
        if outcome is None and now >= self._pacing.next_check:
            self._pacing.polled(now)
        return outcome
