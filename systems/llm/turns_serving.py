"""Serving a batch as one conversation, a turn per member (``batch_mode="turns"``).

The conversation states the shared situation once and asks for one member's plan per turn,
each call extending the previous prompt, so a backend that keeps its KV cache for the common
prefix (llama.cpp) reads the shared part once and delivers the first plan after the first
turn. Each member's reply is judged on its own (:func:`systems.llm.single_serving.judge`).
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from esper_arbiter.components.llm import FailureKind, PlanReady
from esper_arbiter.systems.llm.batch_prompts import BatchPrompt, TurnsPrompt, build_turns
from esper_arbiter.systems.llm.batch_retry import BatchCall, retry_alone
from esper_arbiter.systems.llm.queue_entry import EntryState, QueueEntry
from esper_arbiter.systems.llm.single_serving import call_backend, run_cancellable, yield_gil

if TYPE_CHECKING:
    from esper_arbiter.systems.llm.service import LlmPlanService

log = logging.getLogger("esper_arbiter.systems.llm.service")
"""The service's logger: these lines are the service's, wherever the code lives."""


async def serve_turns(svc: LlmPlanService, entries: list[QueueEntry],
                      prompt: BatchPrompt | TurnsPrompt | None = None) -> None:
    """Plan ``entries`` as one conversation, a turn per member (:class:`TurnsPrompt`):
    each member's plan is judged and delivered when its turn ends. A member whose reply
    is unusable (PARSE, INVALID_PLAN) is retried alone and left out of the conversation;
    one past its deadline before its turn ends TIMEOUT; a withdrawn one is skipped."""
    try:
        yield_gil()
        turns = prompt if isinstance(prompt, TurnsPrompt) else build_turns(entries)
        yield_gil()
    except Exception as exc:
        log.warning("building a batch of %d failed (%s: %s); each is retried alone",
                    len(entries), type(exc).__name__, exc)
        batch = BatchCall(entries)
        for entry in entries:
            retry_alone(svc, batch, entry, FailureKind.CRASH,
                        f"building the batch failed: {type(exc).__name__}: {exc}")
        return
    waiting = {e.request_id: e for e in entries}
    timers = {e.request_id: svc._loop.call_at(svc._loop_deadline(e), _turn_expired,
                                              svc, waiting, e, len(entries))
              for e in entries}
    answered: list[tuple[int, str]] = []
    served = 0
    started = time.monotonic()
    load_s = 0.0
    try:
        for k, member in enumerate(turns.members):
            current = waiting.pop(member.request_id, None)
            timer = timers.pop(member.request_id, None)
            if timer is not None:
                timer.cancel()
            if current is None or current.state is not EntryState.RUNNING:
                continue  # expired or withdrawn while it waited for its turn
            entry = current
            schema = turns.schemas[k] if svc._config.use_schema else None
            result = await run_cancellable(
                svc, call_backend(svc, entry, turns.turn(k, answered), schema, record=False),
                [entry], f"llm-turn-{entry.request_id}")
            if result is None:
                continue  # withdrawn during its turn
            outcome, reply = result
            if reply is not None:
                served += 1
                load_s += reply.load_s or 0.0
            if isinstance(outcome, PlanReady):
                svc._queue.finish(entry, outcome)
                if reply is not None:
                    answered.append((k, reply.text))
            elif outcome.kind in (FailureKind.PARSE, FailureKind.INVALID_PLAN):
                retry_alone(svc, BatchCall([entry]), entry, outcome.kind, outcome.message,
                            outcome.raw)
            else:
                svc._queue.finish(entry, outcome)
    finally:
        for timer in timers.values():
            timer.cancel()
    if served > 1:  # what the batch cost per request, against single requests
        svc._sizer.record(served, time.monotonic() - started - load_s)


def _turn_expired(svc: LlmPlanService, waiting: dict[int, QueueEntry], entry: QueueEntry,
                  size: int) -> None:
    """A member's deadline passed before its turn came."""
    if waiting.pop(entry.request_id, None) is None or entry.state is not EntryState.RUNNING:
        return
    budget = entry.deadline_at - entry.timing.queued_at
    svc._queue.finish(entry, svc._failure(
        entry, FailureKind.TIMEOUT,
        f"no plan for agent {entry.agent_id} within {budget:.2f}s: its turn in a batch of "
        f"{size} had not come"))
