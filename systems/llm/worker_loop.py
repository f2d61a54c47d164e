"""The service's worker loop: take a request or a batch, serve it, one outcome each.

Each of :class:`~systems.llm.service.LlmPlanService`'s workers (asyncio tasks on its loop)
takes up to the adaptive batch size of requests, trims a batch to what fits the backend's
context (the rest go back to be served alone), and hands it to the serving for the batch mode:
a single request (:mod:`systems.llm.single_serving`), turns (:mod:`systems.llm.turns_serving`),
parallel (:mod:`systems.llm.parallel_serving`) or one array prompt
(:mod:`systems.llm.array_serving`). Whatever an attempt leaves unresolved (a crash, the
service closing) ends here, so every request gets exactly one outcome.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING

from esper_arbiter.components.llm import FailureKind
from esper_arbiter.systems.llm.array_serving import serve_array
from esper_arbiter.systems.llm.batch_prompts import BatchPrompt, TurnsPrompt, build_turns
from esper_arbiter.systems.llm.budget import batch_fits
from esper_arbiter.systems.llm.parallel_serving import serve_parallel
from esper_arbiter.systems.llm.queue_entry import EntryState, QueueEntry
from esper_arbiter.systems.llm.single_serving import context_budget, serve_single
from esper_arbiter.systems.llm.turns_serving import serve_turns

if TYPE_CHECKING:
    from esper_arbiter.systems.llm.service import LlmPlanService

log = logging.getLogger("esper_arbiter.systems.llm.service")
"""The service's logger: these lines are the service's, wherever the code lives."""


def _build_any(svc: LlmPlanService, entries: Sequence[QueueEntry]) -> BatchPrompt | TurnsPrompt:
    if svc._batch_mode in ("turns", "parallel"):
        return build_turns(entries)
    return svc._build_batch(entries)


def _fit_batch(
    svc: LlmPlanService, entries: list[QueueEntry]
) -> tuple[list[QueueEntry], BatchPrompt | TurnsPrompt | None]:
    """The longest prefix of ``entries`` whose batch prompt and answers fit the backend's
    context, and that prompt (built once, handed on to the batch's serving); the rest go
    back to the queue to be served on their own. Without a budget nothing is built here."""
    window = context_budget(svc)
    if window is None:
        return entries, None
    keep = list(entries)
    while len(keep) > 1:
        try:
            prompt = _build_any(svc, keep)
        except Exception:
            return keep, None  # the batch's serving reports the failure for each member
        if batch_fits(prompt.messages, len(keep), window):
            return keep, prompt
        dropped = keep.pop()
        log.info("request %d (agent %d) left out of a batch of %d: the prompt and "
                 "answers would not fit %d tokens", dropped.request_id, dropped.agent_id,
                 len(keep) + 1, window.context)
        svc._queue.requeue(dropped, solo=True)
    return keep, None


async def run_worker(svc: LlmPlanService) -> None:
    """Take a request (or a batch of them) and serve it, until the queue closes."""
    assert svc._waiter is not None
    while True:
        entries = await svc._waiter.take_batch(svc._sizer.value)
        if not entries:
            return
        prompt: BatchPrompt | TurnsPrompt | None = None
        if len(entries) > 1:
            entries, prompt = _fit_batch(svc, entries)
        attempts = [(e, e.attempts) for e in entries]
        try:
            if len(entries) == 1:
                await serve_single(svc, entries[0])
            elif svc._batch_mode == "turns":
                await serve_turns(svc, entries, prompt)
            elif svc._batch_mode == "parallel":
                await serve_parallel(svc, entries, prompt)
            else:
                await serve_array(svc, entries, prompt
                                  if isinstance(prompt, BatchPrompt) else None)
        except asyncio.CancelledError:
            _settle(svc, attempts, FailureKind.CANCELLED, "the LLM service closed")
            raise
        except Exception as exc:  # a bug of ours: still exactly one outcome each
            log.exception("LLM worker crashed serving %s", [e.request_id for e in entries])
            _settle(svc, attempts, FailureKind.CRASH,
                    f"service error {type(exc).__name__}: {exc}")
        # Safety net: whatever this attempt still owes ends now (normally nothing).
        _settle(svc, attempts, FailureKind.CRASH, "the service ended the request without "
                "an outcome (a bug)")


def _settle(
    svc: LlmPlanService, attempts: list[tuple[QueueEntry, int]], kind: FailureKind, message: str
) -> None:
    """Resolve the entries of one attempt that are still running in it."""
    for entry, attempt in attempts:
        if entry.state is EntryState.RUNNING and entry.attempts == attempt:
            svc._queue.finish(entry, svc._failure(entry, kind, message))
