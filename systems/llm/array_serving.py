"""Serving a batch in one prompt whose reply is a JSON array (``batch_mode="array"``).

Agents are sorted by id and planned under a schema built from all their snapshots
(:func:`systems.llm.batching.build_batch`). Each agent's plan is parsed, validated against
*its* snapshot and delivered **the moment its array element closes** in the stream
(:class:`~systems.llm.batching.BatchReplyRouter`). Agents whose element is missing, malformed
or invalid are retried once on their own; a member past its deadline ends TIMEOUT and a
withdrawn one is dropped, the others go on; once nobody is left waiting the reply is stopped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from esper_arbiter.components.llm import FailureKind
from esper_arbiter.systems.llm.backends.base import BackendError, BackendReply
from esper_arbiter.systems.llm.batch_prompts import BatchPrompt
from esper_arbiter.systems.llm.batch_retry import BatchCall, drop_member, retry_alone
from esper_arbiter.systems.llm.batch_routing import AgentPlan, AgentResult, BatchReplyRouter
from esper_arbiter.systems.llm.queue_entry import QueueEntry
from esper_arbiter.systems.llm.single_serving import yield_gil

if TYPE_CHECKING:
    from esper_arbiter.systems.llm.service import LlmPlanService

log = logging.getLogger("esper_arbiter.systems.llm.service")
"""The service's logger: these lines are the service's, wherever the code lives."""

GRACE_AFTER_LAST_S = 1.0
"""Once every member of a batch has its outcome, how long the backend may take to end its
reply (so its token counts arrive) before it is stopped."""


async def serve_array(svc: LlmPlanService, entries: list[QueueEntry],
                      prompt: BatchPrompt | None = None) -> None:
    """Plan ``entries`` in one prompt (``prompt``, when already built for exactly these
    entries); deliver each plan as its element closes."""
    batch = BatchCall(entries)
    try:
        yield_gil()
        if prompt is None:
            prompt = svc._build_batch(entries)
        yield_gil()
    except Exception as exc:
        log.warning("building a batch of %d failed (%s: %s); each is retried alone",
                    len(entries), type(exc).__name__, exc)
        for entry in entries:
            retry_alone(svc, batch, entry, FailureKind.CRASH,
                        f"building the batch failed: {type(exc).__name__}: {exc}")
        return
    router = BatchReplyRouter(prompt, validate=svc._validate)
    all_done = svc._loop.create_future()
    for entry in entries:
        batch.timers[entry.request_id] = svc._loop.call_at(
            svc._loop_deadline(entry), _member_expired, svc, batch, router, entry, all_done
        )
        svc._queue.set_cancel_hook(entry, _member_withdrawn_hook(svc, batch, entry,
                                                                 all_done))

    first_chunk = [True]

    def on_chunk(text: str) -> None:
        if first_chunk[0]:
            first_chunk[0] = False
            for e in batch.live.values():
                svc._queue.mark_first_token(e)
        for result in router.feed(text):
            _deliver(svc, batch, result, all_done)

    schema = prompt.schema if svc._config.use_schema else None
    started = time.monotonic()
    gen = svc._loop.create_task(
        svc._backend.generate(prompt.messages, schema, on_chunk, plans=len(entries)),
        name=f"llm-batch-{prompt.request_ids[0]}",
    )
    batch.gen = gen
    try:
        last_deadline = max(svc._loop_deadline(e) for e in entries)
        await asyncio.wait({gen, all_done}, timeout=max(0.0, last_deadline - svc._loop.time()),
                           return_when=asyncio.FIRST_COMPLETED)
        if not gen.done() and all_done.done() and not batch.live:
            # Everyone has an outcome: let the reply end on its own (token counts) for a
            # moment, then stop it.
            await asyncio.wait({gen}, timeout=GRACE_AFTER_LAST_S)
    finally:
        for timer in batch.timers.values():
            timer.cancel()
        if not gen.done():
            gen.cancel()
        with contextlib.suppress(BaseException):
            await gen
    elapsed = time.monotonic() - started
    _after_batch(svc, batch, router, gen, elapsed, all_done)


def _after_batch(svc: LlmPlanService, batch: BatchCall, router: BatchReplyRouter,
                 gen: asyncio.Task[BackendReply], elapsed: float,
                 all_done: asyncio.Future[None]) -> None:
    """The stream ended (or was stopped): settle every member the batch still owes."""
    reply: BackendReply | None = None
    error: BaseException | None = None
    if not gen.cancelled():
        error = gen.exception()
        if error is None:
            reply = gen.result()
    if reply is not None and reply.text and not router.text:
        for result in router.feed(reply.text):  # a backend that did not stream
            _deliver(svc, batch, result, all_done)
    summary = router.finish()
    for result in summary.results:  # elements completed by the final flush
        if result.request_id in batch.live:
            _deliver(svc, batch, result, all_done)
    if reply is not None:  # a model load paid by this call is not the batch's cost
        svc._sizer.record(len(batch.entries), elapsed - (reply.load_s or 0.0))
        if reply.tokens_per_second is not None:
            with svc._lock:
                svc._stats.last_tps = reply.tokens_per_second
    for entry in list(batch.live.values()):
        if error is not None and not router.text:
            # Failed before any text: the backend's problem, not this agent's.
            kind, message = _error_kind(error, svc._backend.name)
            drop_member(batch, entry)
            svc._queue.finish(entry, svc._failure(entry, kind, message))
            continue
        if error is not None:
            why = f"the batch reply broke off ({_describe(error)})"
        elif reply is None:
            why = "the batch reply was stopped at the deadline"
        else:
            why = summary.problem or "its element is missing from the reply"
        retry_alone(svc, batch, entry, FailureKind.PARSE, f"agent {entry.agent_id}: {why}")


def _deliver(svc: LlmPlanService, batch: BatchCall, result: AgentResult,
             all_done: asyncio.Future[None]) -> None:
    entry = batch.live.get(result.request_id)
    if entry is None:
        return  # expired or withdrawn meanwhile
    if isinstance(result, AgentPlan):
        drop_member(batch, entry)
        svc._queue.finish(entry, svc._plan(entry, result.steps, result.raw, ""))
    else:
        retry_alone(svc, batch, entry, result.kind, result.message, result.raw)
    if not batch.live and not all_done.done():
        all_done.set_result(None)


def _member_expired(svc: LlmPlanService, batch: BatchCall, router: BatchReplyRouter,
                    entry: QueueEntry, all_done: asyncio.Future[None]) -> None:
    if entry.request_id not in batch.live:
        return
    drop_member(batch, entry)
    budget = entry.deadline_at - entry.timing.queued_at
    svc._queue.finish(entry, svc._failure(
        entry, FailureKind.TIMEOUT,
        f"no plan for agent {entry.agent_id} within {budget:.2f}s in a batch of "
        f"{len(batch.entries)} ({len(router.text)} chars of the batch reply received)",
        raw=router.text))
    _maybe_stop(batch, all_done)


def _member_withdrawn_hook(svc: LlmPlanService, batch: BatchCall, entry: QueueEntry,
                           all_done: asyncio.Future[None]) -> Callable[[], None]:
    loop = svc._loop

    def withdrawn() -> None:
        if entry.request_id in batch.live:
            drop_member(batch, entry)
            _maybe_stop(batch, all_done)

    def hook() -> None:  # any thread
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(withdrawn)

    return hook


def _maybe_stop(batch: BatchCall, all_done: asyncio.Future[None]) -> None:
    """Nobody is left waiting for this batch because of timeouts or cancellations: stop
    generating at once."""
    if batch.live:
        return
    if batch.gen is not None and not batch.gen.done():
        batch.gen.cancel()
    if not all_done.done():
        all_done.set_result(None)



def _error_kind(error: BaseException, backend: str) -> tuple[FailureKind, str]:
    """The failure a backend exception stands for."""
    if isinstance(error, BackendError):
        return error.kind, error.message
    if isinstance(error, TimeoutError):
        return FailureKind.TIMEOUT, "the batch reply did not complete in time"
    return FailureKind.CRASH, f"{backend} backend raised {type(error).__name__}: {error}"


def _describe(error: BaseException) -> str:
    kind, message = _error_kind(error, "the")
    return f"{kind.value}: {message}"

