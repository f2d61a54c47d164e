"""Serving one request on its own: the part of :class:`~systems.llm.service.LlmPlanService`
that turns a single :class:`~components.llm.PlanRequest` into an outcome.

The prompt is fitted to the backend's context (or, for a custom prompt builder, only checked
against it), one backend call runs within the request's deadline as its own task (so
withdrawing the request cancels just that call, not the worker), and the complete reply is
parsed and validated (:func:`judge`, which the turns and parallel batch modes use for each
member's reply too). Kept apart from the service's lifecycle so each module holds one concern.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from esper_arbiter.components.llm import FailureKind, PlanOutcome
from esper_arbiter.systems.domain import domain_of
from esper_arbiter.systems.llm.backends.base import BackendError, BackendReply, JsonSchema, Message
from esper_arbiter.systems.llm.budget import ContextBudget, Fitted, batch_fits, fit_single
from esper_arbiter.systems.llm.parsing import parse_plan_reply
from esper_arbiter.systems.llm.queue_entry import QueueEntry
from esper_arbiter.systems.planning.validation import collapse_raw_repeats

if TYPE_CHECKING:
    from esper_arbiter.systems.llm.service import LlmPlanService

log = logging.getLogger("esper_arbiter.systems.llm.service")
"""The service's logger: these lines are the service's, wherever the code lives."""


def yield_gil() -> None:
    """Let a waiting thread (the game's) take the GIL now.

    The service thread's own Python work (prompt, schema, parsing, validation) takes a few
    milliseconds per request. Without a voluntary release the game thread can wait up to the
    interpreter's switch interval (5 ms) for the GIL in the middle of a frame; ``sleep(0)``
    between steps bounds that wait by the longest single step instead.
    """
    time.sleep(0)


async def run_cancellable(svc: LlmPlanService, coro: Any, entry_hooks: list[QueueEntry],
                          name: str) -> Any:
    """Run ``coro`` as its own task whose cancellation (through the entries' cancel
    hooks) does not cancel the worker. Returns its result; raises CancelledError only if
    the worker itself is being cancelled."""
    task = svc._loop.create_task(coro, name=name)
    for entry in entry_hooks:
        svc._queue.set_cancel_hook(entry, _canceller(svc, task))
    try:
        return await task
    except asyncio.CancelledError:
        current = asyncio.current_task()
        if current is not None and current.cancelling():
            raise
        return None


def _canceller(svc: LlmPlanService, task: asyncio.Task[Any]) -> Callable[[], None]:
    loop = svc._loop

    def cancel() -> None:  # called in whichever thread withdrew the request
        with contextlib.suppress(RuntimeError):  # loop closed: nothing left to stop
            loop.call_soon_threadsafe(task.cancel)

    return cancel


async def serve_single(svc: LlmPlanService, entry: QueueEntry) -> None:
    outcome = await run_cancellable(
        svc, _attempt(svc, entry), [entry], f"llm-request-{entry.request_id}"
    )
    if outcome is not None:
        svc._queue.finish(entry, outcome)


async def _attempt(svc: LlmPlanService, entry: QueueEntry) -> PlanOutcome:
    request = entry.request
    window = context_budget(svc)
    messages: Sequence[Message] | None
    fitted = Fitted(None, 0, 0.0)
    try:
        yield_gil()
        if svc._fits_prompts:
            fitted = fit_single(request, window)
            messages = fitted.messages
        else:
            messages = list(svc._build_messages(request))
            if window is not None and not batch_fits(messages, 1, window):
                need = window.measure(messages)
                fitted = Fitted(None, need, 0.0, (
                    f"the custom prompt needs {need} tokens; the "
                    f"context holds {window.context} and the answer needs "
                    f"{window.answer}"))
                messages = None
        schema = svc._build_schema(request) if svc._config.use_schema else None
        yield_gil()
    except Exception as exc:
        return svc._failure(entry, FailureKind.CRASH,
                            f"building the prompt failed: {type(exc).__name__}: {exc}")
    if messages is None:
        log.warning("request %d of agent %d not sent to %s: %s", entry.request_id,
                    request.agent_id, svc._backend.name, fitted.problem)
        return svc._failure(entry, FailureKind.TOO_LARGE, fitted.problem)
    outcome, _ = await call_backend(svc, entry, messages, schema, record=True)
    return outcome


async def call_backend(svc: LlmPlanService, entry: QueueEntry, messages: Sequence[Message],
                       schema: JsonSchema | None, *, record: bool
                       ) -> tuple[PlanOutcome, BackendReply | None]:
    """One backend call for ``entry`` within its deadline, its reply parsed and validated
    (and its latency given to the adaptive batch size as a single's when ``record``)."""
    timing = entry.timing
    chunks: list[str] = []

    def on_chunk(text: str) -> None:
        if not chunks:
            svc._queue.mark_first_token(entry)
        chunks.append(text)

    started = time.monotonic()
    reply: BackendReply
    try:
        async with asyncio.timeout_at(svc._loop_deadline(entry)):
            reply = await svc._backend.generate(messages, schema, on_chunk)
    except TimeoutError:
        partial = "".join(chunks)
        budget = entry.deadline_at - timing.queued_at
        got = f"{len(partial)} chars received" if partial else "no reply"
        return svc._failure(entry, FailureKind.TIMEOUT,
                            f"no complete reply within {budget:.2f}s ({got})",
                            raw=partial), None
    except BackendError as exc:
        return svc._failure(entry, exc.kind, exc.message,
                            raw=exc.partial or "".join(chunks)), None
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        log.warning("LLM backend %s crashed on request %d: %s: %s", svc._backend.name,
                    entry.request_id, type(exc).__name__, exc)
        return svc._failure(entry, FailureKind.CRASH,
                            f"backend raised {type(exc).__name__}: {exc}",
                            raw="".join(chunks)), None
    timing.finished_at = time.monotonic()
    if timing.first_token_at is None and reply.text:
        timing.first_token_at = timing.finished_at
    timing.prompt_tokens = reply.prompt_tokens
    timing.completion_tokens = reply.completion_tokens
    if record:
        svc._sizer.record(1, timing.finished_at - started - (reply.load_s or 0.0))
    yield_gil()
    outcome = judge(svc, entry, reply)
    yield_gil()
    return outcome, reply


def context_budget(svc: LlmPlanService) -> ContextBudget | None:
    """The backend's context budget, if it has one (an optional backend feature)."""
    get = getattr(svc._backend, "context_budget", None)
    if get is None:
        return None
    budget = get()
    return budget if isinstance(budget, ContextBudget) else None


def judge(svc: LlmPlanService, entry: QueueEntry, reply: BackendReply) -> PlanOutcome:
    """Parse and validate a complete single reply."""
    parsed = parse_plan_reply(reply.text)
    if parsed.value is None:
        return svc._failure(
            entry, FailureKind.PARSE,
            f"{parsed.error} (tried: {', '.join(parsed.tried) or 'none'})", raw=reply.text)
    request = entry.request
    try:
        domain = domain_of(request)
        result = svc._validate(collapse_raw_repeats(parsed.value), request.snapshot,
                               domain.tools,
                               domain.rules, request.max_steps)
    except Exception as exc:
        return svc._failure(entry, FailureKind.CRASH,
                            f"validator raised {type(exc).__name__}: {exc}", raw=reply.text)
    if not result.ok:
        return svc._failure(entry, FailureKind.INVALID_PLAN,
                            result.summary() or "plan rejected", raw=reply.text)
    rationale = parsed.value.get("rationale", "")
    return svc._plan(entry, result.steps, reply.text,
                     rationale if isinstance(rationale, str) else "")
