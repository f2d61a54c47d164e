"""A batch call in progress and what it does with a member it cannot serve.

:class:`BatchCall` tracks which members of one batched backend call still wait for their
outcome (and their deadline timers); :func:`retry_alone` takes a member without a usable plan
out of it and puts it back into the queue to run on its own, once. Shared by the batch modes
(:mod:`systems.llm.array_serving`, :mod:`systems.llm.turns_serving`,
:mod:`systems.llm.parallel_serving`).
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from esper_arbiter.components.llm import FailureKind
from esper_arbiter.systems.llm.backends.base import BackendReply
from esper_arbiter.systems.llm.queue_entry import QueueEntry

if TYPE_CHECKING:
    from esper_arbiter.systems.llm.service import LlmPlanService

log = logging.getLogger("esper_arbiter.systems.llm.service")
"""The service's logger: these lines are the service's, wherever the code lives."""


class BatchCall:
    """One batched backend call in progress (loop thread only)."""

    __slots__ = ("entries", "gen", "live", "timers")

    def __init__(self, entries: list[QueueEntry]) -> None:
        self.entries = {e.request_id: e for e in entries}
        self.live: dict[int, QueueEntry] = dict(self.entries)
        """Members this batch still owes an outcome (not delivered, retried, expired or
        withdrawn)."""
        self.timers: dict[int, asyncio.TimerHandle] = {}
        self.gen: asyncio.Task[BackendReply] | None = None


def retry_alone(svc: LlmPlanService, batch: BatchCall, entry: QueueEntry, kind: FailureKind,
                message: str, raw: str = "") -> None:
    """A member without a usable plan goes back into the queue to run on its own (once);
    if it cannot (withdrawn, superseded, late, closed) the queue resolves it instead."""
    drop_member(batch, entry)
    if entry.solo or entry.attempts > 1:  # never happens in a batch; belt and braces
        svc._queue.finish(entry, svc._failure(entry, kind, message, raw))
        return
    log.info("request %d (agent %d) retried alone: %s", entry.request_id, entry.agent_id,
             message)
    svc._queue.requeue(entry, solo=True)


def retry_alone_entry(svc: LlmPlanService, entry: QueueEntry, kind: FailureKind, message: str,
                      raw: str = "") -> None:
    retry_alone(svc, BatchCall([entry]), entry, kind, message, raw)


def drop_member(batch: BatchCall, entry: QueueEntry) -> None:
    """``entry`` no longer waits on ``batch``: forget it and cancel its deadline timer."""
    batch.live.pop(entry.request_id, None)
    timer = batch.timers.pop(entry.request_id, None)
    if timer is not None:
        timer.cancel()
