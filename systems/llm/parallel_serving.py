"""Serving a batch whose members are decoded side by side (``batch_mode="parallel"``).

The backend (one that offers ``generate_parallel``, the embedded llama.cpp one) gets every
member's chat (:meth:`systems.llm.batching.TurnsPrompt.turn` with no answers: the shared
situation, then the member's own lines) and schema at once, and hands back each member's
reply the moment that member finishes. Each reply is judged on its own (the single-request
parser and validator); a usable plan is delivered at once, an unusable one (PARSE,
INVALID_PLAN) is retried alone. A member past its deadline ends TIMEOUT and a withdrawn one
is dropped, each stopping only its own sequence; once no member is left the generation is
stopped. A batch the backend cannot decode in parallel (:class:`ParallelUnfit`: too big for
its context) runs as turns instead, and a log line says so.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from esper_arbiter.components.llm import FailureKind, PlanReady
from esper_arbiter.systems.llm.backends.base import (
    BackendError,
    BackendReply,
    JsonSchema,
    Message,
)
from esper_arbiter.systems.llm.backends.multiseq import ParallelUnfit
from esper_arbiter.systems.llm.batch_prompts import BatchPrompt, TurnsPrompt, build_turns
from esper_arbiter.systems.llm.queue_entry import EntryState, QueueEntry

if TYPE_CHECKING:
    from esper_arbiter.systems.llm.service import LlmPlanService

log = logging.getLogger("esper_arbiter.systems.llm.service")


class ParallelBackend(Protocol):
    """What a backend offers to run ``parallel`` batches."""

    async def generate_parallel(
        self,
        chats: Sequence[Sequence[Message]],
        schemas: Sequence[JsonSchema | None],
        on_chunk: Callable[[int, str], None] | None,
        on_reply: Callable[[int, BackendReply], None],
        stops: Sequence[threading.Event],
    ) -> list[BackendReply | None]: ...


def offers_parallel(backend: object) -> bool:
    """Does ``backend`` implement :class:`ParallelBackend`?"""
    return callable(getattr(backend, "generate_parallel", None))


class _Run:
    """One parallel batch in progress (loop thread only)."""

    def __init__(self, svc: LlmPlanService, members: Sequence[QueueEntry]) -> None:
        self.svc = svc
        self.entries = list(members)
        self.live: dict[int, QueueEntry] = dict(enumerate(members))
        self.stops = [threading.Event() for _ in members]
        self.timers: dict[int, asyncio.TimerHandle] = {}
        self.gen: asyncio.Task[list[BackendReply | None]] | None = None
        self.served = 0
        self.load_s = 0.0
        self.started = time.monotonic()
        self.fell_back = False

    def drop(self, k: int) -> QueueEntry | None:
        """Member ``k`` needs nothing more from the batch; stop its sequence."""
        entry = self.live.pop(k, None)
        self.stops[k].set()
        timer = self.timers.pop(k, None)
        if timer is not None:
            timer.cancel()
        if not self.live and self.gen is not None and not self.gen.done():
            self.gen.cancel()  # nobody is left waiting for this batch
        return entry

    # -------------------------------------------------------------- callbacks (loop)

    def on_chunk(self, k: int, text: str) -> None:
        entry = self.live.get(k)
        if entry is not None and entry.timing.first_token_at is None:
            self.svc.queue.mark_first_token(entry)

    def on_reply(self, k: int, reply: BackendReply) -> None:
        if reply.done_reason == "cancelled":
            return  # stopped because it expired or was withdrawn: already settled
        entry = self.drop(k)
        self.served += 1
        self.load_s = max(self.load_s, reply.load_s or 0.0)
        if entry is None or entry.state is not EntryState.RUNNING:
            return
        timing = entry.timing
        timing.finished_at = time.monotonic()
        if timing.first_token_at is None and reply.text:
            timing.first_token_at = timing.finished_at
        timing.prompt_tokens = reply.prompt_tokens
        timing.completion_tokens = reply.completion_tokens
        outcome = self.svc._judge(entry, reply)
        if isinstance(outcome, PlanReady):
            self.svc.queue.finish(entry, outcome)
        elif outcome.kind in (FailureKind.PARSE, FailureKind.INVALID_PLAN):
            self.svc._retry_alone_entry(entry, outcome.kind, outcome.message, outcome.raw)
        else:
            self.svc.queue.finish(entry, outcome)

    def expired(self, k: int) -> None:
        entry = self.drop(k)
        if entry is None or entry.state is not EntryState.RUNNING:
            return
        budget = entry.deadline_at - entry.timing.queued_at
        self.svc.queue.finish(entry, self.svc._failure(
            entry, FailureKind.TIMEOUT,
            f"no plan for agent {entry.agent_id} within {budget:.2f}s in a parallel batch of "
            f"{len(self.entries)}"))

    def withdrawn_hook(self, k: int) -> Callable[[], None]:
        loop = self.svc._loop

        def hook() -> None:  # any thread
            self.stops[k].set()
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(self.drop, k)

        return hook


async def serve_parallel(svc: LlmPlanService, entries: list[QueueEntry],
                         prompt: BatchPrompt | TurnsPrompt | None = None) -> None:
    """Plan ``entries`` in parallel on ``svc``'s backend (see the module docstring)."""
    try:
        turns = prompt if isinstance(prompt, TurnsPrompt) else build_turns(entries)
    except Exception as exc:
        log.warning("building a batch of %d failed (%s: %s); each is retried alone",
                    len(entries), type(exc).__name__, exc)
        for entry in entries:
            svc._retry_alone_entry(entry, FailureKind.CRASH,
                                   f"building the batch failed: {type(exc).__name__}: {exc}")
        return
    by_id = {e.request_id: e for e in entries}
    members = [by_id[m.request_id] for m in turns.members]
    run = _Run(svc, members)
    loop = svc._loop
    for k, entry in enumerate(members):
        run.timers[k] = loop.call_at(svc._loop_deadline(entry), run.expired, k)
        svc.queue.set_cancel_hook(entry, run.withdrawn_hook(k))
    backend: Any = svc.backend
    schemas = [turns.schemas[k] if svc.config.use_schema else None for k in range(len(members))]
    run.gen = loop.create_task(
        backend.generate_parallel([turns.turn(k) for k in range(len(members))], schemas,
                                  run.on_chunk, run.on_reply, run.stops),
        name=f"llm-parallel-{members[0].request_id}")
    error: BaseException | None = None
    try:
        await run.gen
    except ParallelUnfit as exc:
        run.fell_back = True
        log.info("parallel batch of %d planned as turns instead: %s", len(members), exc)
    except asyncio.CancelledError:
        current = asyncio.current_task()
        if current is not None and current.cancelling():
            raise
    except Exception as exc:  # BackendError or a crash: settled below
        error = exc
    finally:
        for timer in run.timers.values():
            timer.cancel()
        if not run.gen.done():
            run.gen.cancel()
    await asyncio.sleep(0)  # replies posted by the worker before it returned
    if run.fell_back:
        await svc._serve_turns([e for e in members if e.state is EntryState.RUNNING], turns)
        return
    for k, entry in list(run.live.items()):
        run.drop(k)
        if entry.state is not EntryState.RUNNING:
            continue
        if isinstance(error, BackendError):
            kind, message = error.kind, error.message
        elif error is not None:
            kind, message = FailureKind.CRASH, (
                f"{svc.backend_name} backend raised {type(error).__name__}: {error}")
        else:
            kind, message = FailureKind.CRASH, "the parallel batch ended without its reply"
        svc.queue.finish(entry, svc._failure(entry, kind, message))
    if run.served > 1:  # what the batch cost per request, against single requests
        svc.batch_sizer.record(run.served, time.monotonic() - run.started - run.load_s)
