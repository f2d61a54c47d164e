"""The background LLM planning service: a worker pool on an asyncio loop in its own thread.

The game thread calls :meth:`LlmPlanService.submit`, which puts the request into a
:class:`~esper_arbiter.systems.llm.request_queue.RequestQueue` and returns its
:class:`~systems.llm.request_queue.QueueTicket` in microseconds; the frame loop polls the
ticket (an attribute read). Everything slow happens on the service's thread:

- ``LLM_MAX_CONCURRENT_REQUESTS`` workers (asyncio tasks) take requests from the queue: the
  most urgent priority first (the arbiter sends ``PRIORITY_HIGH`` for orders and
  invalidated plans, ``PRIORITY_LOW`` for periodic replans), newest first within a priority;
- when two or more requests of one priority wait, a worker takes up to the adaptive batch size
  of them and plans them in **one prompt** (:mod:`systems.llm.batching`): agents sorted by id,
  a JSON array reply under a schema built from all their snapshots. Each agent's plan is parsed,
  validated against *its* snapshot and delivered **the moment its array element closes** in
  the stream. Agents whose element is missing, malformed or invalid are retried once on their
  own (a single request); the others keep their plans;
- a single request builds the prompt and the snapshot's schema, the backend streams the reply,
  which is parsed (:mod:`esper_arbiter.systems.llm.parsing`) and validated.

Each request has one total deadline, counted from submission (``request.deadline_s`` or
``LLM_TIMEOUT_MS``): enforced with :func:`asyncio.timeout_at` around a single backend call, and
with a per-member timer inside a batch (a member past its deadline ends TIMEOUT, the others go
on). HTTP read timeouts restart on every byte, so a server that drips one token a second never
trips them, and the ollama client has no timeout at all by default.

The queue guarantees exactly one terminal outcome per request: :class:`~components.llm.
PlanReady` (source ``"llm"``) or a :class:`~components.llm.PlanFailure` whose kind says what
happened (timeout, connection, http status, model missing, parse, invalid plan, cancelled,
superseded, refused) or ``CRASH`` when a backend raised something it should not have. A new
request from an agent supersedes its queued one (SUPERSEDED). ``DISABLE_BACKGROUND_LLM=1``
refuses low-priority requests at submit (REFUSED). A cancelled request ends CANCELLED at once
and its asyncio task is cancelled; a cancelled batch member leaves the rest of its batch alone.

Every request is stamped queued / started / first token / finished (``RequestTiming`` on its
outcome) and fed to a :class:`~systems.llm.timeline.RequestTimeline`; :meth:`LlmPlanService.
status` reports in-flight requests, queue depth (per priority), the recent records with their
batch size, the concurrency percentage and the last latency / time to first token / tokens per
second for the HUD.

Environment (:meth:`ServiceConfig.from_env`; a malformed value is logged and the default kept):

=================================  ========  ==============================================
``LLM_TIMEOUT_MS``                 60000     total deadline per request, from submission
``LLM_MAX_CONCURRENT_REQUESTS``    2         worker pool size (calls to the backend at once)
``DISABLE_BACKGROUND_LLM``         off       ``1``: refuse priority <= 0 (periodic) requests
``LLM_MAX_BATCH_SIZE``             4         most agents in one batched prompt (1: no batching)
``LLM_BATCH_LATENCY_TARGET_MS``    20000     a batch slower than this halves the batch size
``LLM_BATCH_MODE``                 auto      ``array`` (one reply for all), ``turns`` (one
                                             conversation, a turn per member), ``parallel``
                                             (members decoded side by side), ``auto``: the
                                             backend's ``batch_mode``, else ``array``
=================================  ========  ==============================================

Two ways to plan a batch (:mod:`systems.llm.batching`): ``array``, one prompt whose reply is
a JSON array with one plan per member, each delivered as its element closes; and ``turns``,
one conversation that states the shared situation once and asks for one member's plan per turn,
each call extending the previous prompt, so a backend that keeps its KV cache for the common
prefix (llama.cpp) reads the shared part once and delivers the first plan after the first turn.
The OpenAI-compatible backend declares ``batch_mode = "turns"``; the embedded one declares
``"parallel"`` (:mod:`systems.llm.parallel_serving`): every member's sequence decoded together
in one llama.cpp context, each plan delivered when its sequence ends, and a batch too big for
that context run as turns.

The batch size adapts (:class:`~systems.llm.batching.AdaptiveBatchSize`): it halves after a
batch that ran past the latency target, grows back after fast ones, and settles at 1 when
batches cost more per request than single requests on this backend. A backend can also declare
an upper bound with a ``max_batch_size`` attribute (1: never batch).

:meth:`LlmPlanService.close` closes the queue (every outstanding ticket resolves CANCELLED at
once, exactly once), cancels the running tasks, closes the backend and joins the thread; no
thread or task outlives the service.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from esper_arbiter.components.actions import PlanIntent
from esper_arbiter.components.llm import (
    DEFAULT_MAX_STEPS,
    WITHDRAWN_KINDS,
    FailureKind,
    PlanFailure,
    PlanOutcome,
    PlanReady,
    PlanRequest,
)
from esper_arbiter.systems.domain import Domain, domain_of
from esper_arbiter.systems.llm import prompt
from esper_arbiter.systems.llm.api import ServiceStatus
from esper_arbiter.systems.llm.backends.base import (
    BackendError,
    BackendReply,
    JsonSchema,
    Message,
    PlanBackend,
)
from esper_arbiter.systems.llm.batching import (
    AdaptiveBatchSize,
    AgentPlan,
    AgentResult,
    BatchPrompt,
    BatchReplyRouter,
    HasRequest,
    PlanValidator,
    TurnsPrompt,
    build_batch,
    build_turns,
)
from esper_arbiter.systems.llm.budget import ContextBudget, Fitted, batch_fits, fit_single
from esper_arbiter.systems.llm.offline import OfflinePlanService
from esper_arbiter.systems.llm.pacing import PacingMonitor
from esper_arbiter.systems.llm.parallel_serving import offers_parallel, serve_parallel
from esper_arbiter.systems.llm.parsing import parse_plan_reply
from esper_arbiter.systems.llm.request_queue import (
    AsyncQueueWaiter,
    EntryState,
    QueueEntry,
    QueueEvent,
    QueueTicket,
    RequestQueue,
    outcome_label,
)
from esper_arbiter.systems.llm.service_config import (
    BATCH_MODES,
    ENV_BATCH_LATENCY_TARGET_MS,
    ENV_DISABLE_BACKGROUND,
    ENV_MAX_BATCH_SIZE,
    ENV_MAX_CONCURRENT,
    ENV_TIMEOUT_MS,
    ServiceConfig,
)
from esper_arbiter.systems.llm.timeline import RequestTimeline
from esper_arbiter.systems.planning.validation import (
    collapse_raw_repeats,
    collapse_repeats,
    validate_plan,
)

log = logging.getLogger(__name__)

_CLOSED = "the LLM service is shut down"
GRACE_AFTER_LAST_S = 1.0
"""Once every member of a batch has its outcome, how long the backend may take to end its
reply (so its token counts arrive) before it is stopped."""
EXPIRY_SWEEP_S = 0.1
"""How often queued requests past their deadline are resolved when nobody polls them."""

MessageBuilder = Callable[[PlanRequest], Sequence[Message]]
"""Builds the chat messages for a single request (default: :mod:`systems.llm.prompt`)."""
SchemaBuilder = Callable[[PlanRequest], JsonSchema | None]
"""Builds the structured-output schema for a single request (default: the tool registry's)."""
BatchBuilder = Callable[[Sequence[HasRequest]], BatchPrompt]
"""Builds a batch's messages and schema (default: :func:`systems.llm.batching.build_batch`)."""


def _yield_gil() -> None:
    """Let a waiting thread (the game's) take the GIL now.

    The service thread's own Python work (prompt, schema, parsing, validation) takes a few
    milliseconds per request. Without a voluntary release the game thread can wait up to the
    interpreter's switch interval (5 ms) for the GIL in the middle of a frame; ``sleep(0)``
    between steps bounds that wait by the longest single step instead.
    """
    time.sleep(0)


@dataclass(slots=True)
class _Stats:
    """What :meth:`LlmPlanService.status` reports beyond the queue (guarded by the lock)."""

    requests_total: int = 0
    plans_ok: int = 0
    failures: dict[FailureKind, int] = field(default_factory=dict)
    last_latency: float | None = None
    last_ttft: float | None = None
    last_tps: float | None = None
    online: bool = True
    reason: str = ""
    warming: bool = False
    """The backend's warm-up (model load, system prompt) is still running."""


WARMING_UP = "warming up: loading the model and reading the system prompt"
"""What :meth:`LlmPlanService.status` says while the backend warms up."""


class _Batch:
    """One batched backend call in progress (loop thread only)."""

    __slots__ = ("entries", "gen", "live", "timers")

    def __init__(self, entries: list[QueueEntry]) -> None:
        self.entries = {e.request_id: e for e in entries}
        self.live: dict[int, QueueEntry] = dict(self.entries)
        """Members this batch still owes an outcome (not delivered, retried, expired or
        withdrawn)."""
        self.timers: dict[int, asyncio.TimerHandle] = {}
        self.gen: asyncio.Task[BackendReply] | None = None


# --------------------------------------------------------------------------- service


class LlmPlanService:
    """Serves :class:`~components.llm.PlanRequest` s from a :class:`PlanBackend` in the
    background. Implements :class:`esper_arbiter.systems.llm.api.PlanService`.

    The backend's coroutines all run on the service's loop thread. ``messages``, ``schema``,
    ``batch`` and ``validator`` default to the prompt module, the tool registry, the batch
    builder and :func:`systems.planning.validation.validate_plan`; tests inject their own. The
    one ``validator`` judges single replies and every element of a batch reply alike.
    """

    def __init__(
        self,
        backend: PlanBackend,
        config: ServiceConfig | None = None,
        *,
        messages: MessageBuilder | None = None,
        schema: SchemaBuilder | None = None,
        batch: BatchBuilder | None = None,
        validator: PlanValidator | None = None,
    ) -> None:
        self._backend = backend
        self._config = config or ServiceConfig.from_env()
        self._build_messages = messages or default_messages
        self._fits_prompts = messages is None
        """Default prompts are trimmed to the backend's context; custom ones are only checked."""
        self._build_schema = schema or default_schema
        self._build_batch = batch or build_batch
        mode = self._config.batch_mode
        if mode not in BATCH_MODES:
            raise ValueError(f"batch_mode must be one of {BATCH_MODES}, got {mode!r}")
        if mode == "auto":
            declared_mode = getattr(backend, "batch_mode", "array")
            mode = declared_mode if declared_mode in ("turns", "parallel") and batch is None \
                else "array"
        if mode == "parallel" and not offers_parallel(backend):
            log.warning("batch mode parallel: backend %s cannot decode members in parallel; "
                        "batches run as turns", backend.name)
            mode = "turns"
        self._batch_mode = mode
        """How batches run here: ``"array"``, ``"turns"`` or ``"parallel"`` (a custom
        ``batch`` builder makes array prompts, so ``auto`` keeps to ``"array"`` with one)."""
        self._validate: PlanValidator = validator or validate_plan
        self._queue = RequestQueue(self._config.queue_config(), backend_name=backend.name)
        self._timeline = RequestTimeline(
            max_records=self._config.recent_limit, window_s=self._config.timeline_window_s
        )
        self._queue.add_listener(self._timeline.observe)
        self._queue.add_listener(self._on_queue_event)
        self._pacing = PacingMonitor()
        self._queue.add_listener(self._count_plans_for_pacing)
        limit = max(1, self._config.max_batch_size)
        declared = getattr(backend, "max_batch_size", None)
        if isinstance(declared, int) and not isinstance(declared, bool) and declared >= 1:
            limit = min(limit, declared)
        self._sizer = AdaptiveBatchSize(
            limit, minimum=1, maximum=limit,
            latency_target_s=self._config.batch_latency_target_s,
        )
        self._batch_limit = limit
        self._lock = threading.Lock()
        self._stats = _Stats()
        self._closed = False
        # loop thread
        self._loop = asyncio.new_event_loop()
        self._workers: list[asyncio.Task[None]] = []
        self._side_tasks: set[asyncio.Task[Any]] = set()
        self._waiter: AsyncQueueWaiter | None = None
        started = threading.Event()
        self._thread = threading.Thread(
            target=self._thread_main, args=(started,), name=f"llm-{backend.name}", daemon=True
        )
        self._thread.start()
        started.wait()
        if self._config.probe_on_start:
            self._loop.call_soon_threadsafe(self._spawn, self._probe(2.0), "llm-probe")
        self._warm_ups = 0
        self._warm(None, DEFAULT_MAX_STEPS)

    def warm_for(self, domain: Domain, max_steps: int = DEFAULT_MAX_STEPS) -> None:
        """Read ``domain``'s system prompt into the model's cache now, in the background.

        The service warms up with the preset's prompt as it starts, before it knows the game;
        ``install(domain=..., service=...)`` calls this so a game with a role and tools of its
        own does not have its first request read its system prompt cold (a role text of its
        own shares almost nothing with the preset's, and the first plan came seconds later)."""
        self._warm(domain, max_steps)

    def _warm(self, domain: Domain | None, max_steps: int) -> None:
        warm = getattr(self._backend, "warm_up", None)
        if not self._config.warm_up or warm is None or self._closed:
            return
        opening: list[Message] = [
            {"role": "system", "content": prompt.system_prompt(domain, max_steps)},
            {"role": "user", "content": "Get ready."},
        ]
        with self._lock:
            self._warm_ups += 1
            self._stats.warming = True
        self._loop.call_soon_threadsafe(self._spawn, self._warm_up(warm, opening),
                                        "llm-warm-up")

    # ---------------------------------------------------------------- public API (game thread)

    @property
    def backend_name(self) -> str:
        return self._backend.name

    available = True
    """A model behind it may answer (when it is offline its requests fail and say why)."""
    game_clock = False
    """Answers on the wall clock: see :attr:`ServiceStatus.pacing` and
    :func:`esper_arbiter.systems.llm.api.paced_by_wall_clock`."""

    @property
    def warming_up(self) -> bool:
        """True while the backend loads its model and reads the system prompt (only with
        ``ServiceConfig.warm_up`` and a backend that can warm up)."""
        with self._lock:
            return self._stats.warming

    @property
    def max_batch_size(self) -> int:
        """Most requests planned in one prompt: the configured limit, lowered by the backend's
        own ``max_batch_size`` if it declares one (the adaptive size moves below it)."""
        return self._batch_limit

    @property
    def model(self) -> str:
        return self._backend.model

    @property
    def backend(self) -> PlanBackend:
        return self._backend

    @property
    def config(self) -> ServiceConfig:
        return self._config

    @property
    def queue(self) -> RequestQueue:
        """The request queue (read its ``metrics()`` for wait / service times, throughput)."""
        return self._queue

    @property
    def timeline(self) -> RequestTimeline:
        return self._timeline

    @property
    def batch_sizer(self) -> AdaptiveBatchSize:
        """The adaptive batch size (``value``, ``settled``, ``history``)."""
        return self._sizer

    def submit(self, request: PlanRequest) -> QueueTicket:
        """Queue ``request`` and return its ticket at once (microseconds; never blocks on the
        model). Refused requests (background disabled, service closed) come back resolved."""
        with self._lock:
            self._stats.requests_total += 1
        self._pacing.submitted(request.submitted_at)
        ticket = self._queue.submit(request)
        return _PacedTicket(self._queue, ticket.entry, self._pacing)

    def plan_blocking(self, request: PlanRequest, timeout: float | None = None) -> PlanOutcome:
        """Submit and WAIT for the outcome.

        !!! NEVER CALL THIS FROM A FRAME LOOP !!! It blocks the calling thread for as long as
        the model takes (seconds, up to the request deadline). It exists for initialisation,
        command-line tools and tests. Games use :meth:`submit` and poll the ticket.

        ``timeout`` (seconds) bounds the wait on top of the request's own deadline; when it
        runs out the request is cancelled and the CANCELLED outcome returned.
        """
        if threading.current_thread() is self._thread:
            raise RuntimeError("plan_blocking called on the LLM service's own thread")
        ticket = self.submit(request)
        outcome = ticket.wait(timeout)
        if outcome is None:
            ticket.cancel()
            outcome = ticket.wait(1.0)
        assert outcome is not None  # cancel() always resolves
        return outcome

    def probe_blocking(self, timeout: float = 1.0) -> tuple[bool, str]:
        """Run the backend's probe on the service thread and wait (startup only, never in a
        frame loop). Updates :meth:`status`."""
        if self._closed:
            return False, _CLOSED
        fut = asyncio.run_coroutine_threadsafe(self._probe(timeout), self._loop)
        try:
            return fut.result(timeout + 1.0)
        except Exception as exc:  # pragma: no cover - defensive
            fut.cancel()
            return False, f"probe failed: {type(exc).__name__}: {exc}"

    def status(self) -> ServiceStatus:
        """Snapshot for the HUD (cheap; safe from any thread)."""
        window = self._timeline.window()
        q = self._queue
        in_flight, depth, by_priority = q.running(), q.depth(), q.depth_by_priority()
        with self._lock:
            s = self._stats
            return ServiceStatus(
                backend=self._backend.name,
                model=self._backend.model,
                online=s.online,
                reason=s.reason or (WARMING_UP if s.warming else ""),
                pacing=self._pacing.warning,
                warming_up=s.warming and s.online,
                in_flight=in_flight,
                queue_depth=depth,
                queue_depth_by_priority=by_priority,
                last_latency_s=s.last_latency,
                last_ttft_s=s.last_ttft,
                last_tokens_per_s=s.last_tps,
                requests_total=s.requests_total,
                plans_ok=s.plans_ok,
                failures=sum(n for k, n in s.failures.items() if k not in WITHDRAWN_KINDS),
                cancelled=s.failures.get(FailureKind.CANCELLED, 0),
                superseded=s.failures.get(FailureKind.SUPERSEDED, 0),
                refused=s.failures.get(FailureKind.REFUSED, 0),
                expired=s.failures.get(FailureKind.EXPIRED, 0),
                recent=window.records,
                concurrency_pct=window.concurrency_pct,
                now=window.now,
            )

    def failure_counts(self) -> dict[FailureKind, int]:
        """Terminal outcomes other than a plan so far, by kind (cancelled, superseded and
        refused included here; :meth:`status` reports those apart from failures)."""
        with self._lock:
            return dict(self._stats.failures)

    def close(self) -> None:
        """Resolve everything queued or running as CANCELLED (at once, exactly once), stop the
        workers, close the backend and join the service thread. Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self._queue.close("the LLM service closed")
        if self._loop.is_running():
            fut = asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop)
            try:
                fut.result(self._config.shutdown_timeout_s + 1.0)
            except Exception as exc:
                log.warning("LLM service shutdown: %s: %s", type(exc).__name__, exc)
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(self._config.shutdown_timeout_s + 5.0)
        if self._thread.is_alive():  # pragma: no cover - a backend ignoring cancellation
            log.error("LLM service thread did not stop within the shutdown timeout")

    def __enter__(self) -> LlmPlanService:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---------------------------------------------------------------- statistics (any thread)

    def _count_plans_for_pacing(self, event: QueueEvent, entry: QueueEntry) -> None:
        """Queue listener: the pacing warning quotes how many plans arrived."""
        if event is QueueEvent.RESOLVED and isinstance(entry.outcome, PlanReady):
            self._pacing.answered()

    def _on_queue_event(self, event: QueueEvent, entry: QueueEntry) -> None:
        """Queue listener: count each terminal outcome once, for :meth:`status`."""
        if event is not QueueEvent.RESOLVED or entry.outcome is None:
            return
        outcome = entry.outcome
        timing = outcome.timing
        label = outcome_label(outcome)
        with self._lock:
            s = self._stats
            if isinstance(outcome, PlanReady):
                s.plans_ok += 1
            else:
                s.failures[outcome.kind] = s.failures.get(outcome.kind, 0) + 1
                if outcome.kind in (FailureKind.CONNECTION, FailureKind.MODEL_MISSING):
                    s.online, s.reason = False, outcome.message
            if timing.started_at is not None and label in ("plan", "parse", "invalid_plan"):
                s.online, s.reason = True, ""
            if timing.started_at is not None and label not in _NOT_SERVED:
                s.last_latency = timing.latency
                if timing.time_to_first_token is not None:
                    s.last_ttft = timing.time_to_first_token
                if timing.tokens_per_second is not None:
                    s.last_tps = timing.tokens_per_second

    # ---------------------------------------------------------------- loop thread

    def _thread_main(self, started: threading.Event) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.call_soon(self._start_workers, started)
        try:
            self._loop.run_forever()
        finally:
            try:
                self._loop.run_until_complete(self._loop.shutdown_asyncgens())
                self._loop.run_until_complete(self._loop.shutdown_default_executor())
            finally:
                self._loop.close()

    def _start_workers(self, started: threading.Event) -> None:
        self._waiter = AsyncQueueWaiter(self._queue, self._loop)
        for i in range(max(1, self._config.max_concurrent)):
            self._workers.append(self._loop.create_task(self._worker(), name=f"llm-worker-{i}"))
        self._spawn(self._sweep_expired(), "llm-expiry")
        started.set()

    def _spawn(self, coro: Any, name: str) -> None:
        task = self._loop.create_task(coro, name=name)
        self._side_tasks.add(task)
        task.add_done_callback(self._side_tasks.discard)

    async def _sweep_expired(self) -> None:
        """Queued requests past their deadline end TIMEOUT even if nobody polls them."""
        while not self._queue.closed:
            await asyncio.sleep(EXPIRY_SWEEP_S)
            self._queue.expire_due()

    @property
    def batch_mode(self) -> str:
        """``"array"`` or ``"turns"``: how this service plans a batch."""
        return self._batch_mode

    def _build_any(self, entries: Sequence[QueueEntry]) -> BatchPrompt | TurnsPrompt:
        if self._batch_mode in ("turns", "parallel"):
            return build_turns(entries)
        return self._build_batch(entries)

    def _fit_batch(
        self, entries: list[QueueEntry]
    ) -> tuple[list[QueueEntry], BatchPrompt | TurnsPrompt | None]:
        """The longest prefix of ``entries`` whose batch prompt and answers fit the backend's
        context, and that prompt (built once, handed on to :meth:`_serve_batch`); the rest go
        back to the queue to be served on their own. Without a budget nothing is built here."""
        window = self._context_budget()
        if window is None:
            return entries, None
        keep = list(entries)
        while len(keep) > 1:
            try:
                prompt = self._build_any(keep)
            except Exception:
                return keep, None  # _serve_batch reports the failure for each member
            if batch_fits(prompt.messages, len(keep), window):
                return keep, prompt
            dropped = keep.pop()
            log.info("request %d (agent %d) left out of a batch of %d: the prompt and "
                     "answers would not fit %d tokens", dropped.request_id, dropped.agent_id,
                     len(keep) + 1, window.context)
            self._queue.requeue(dropped, solo=True)
        return keep, None

    def _loop_deadline(self, entry: QueueEntry) -> float:
        """``entry``'s deadline on the loop's clock."""
        return self._loop.time() + entry.remaining(self._queue.clock())

    async def _worker(self) -> None:
        """Take a request (or a batch of them) and serve it, until the queue closes."""
        assert self._waiter is not None
        while True:
            entries = await self._waiter.take_batch(self._sizer.value)
            if not entries:
                return
            prompt: BatchPrompt | TurnsPrompt | None = None
            if len(entries) > 1:
                entries, prompt = self._fit_batch(entries)
            attempts = [(e, e.attempts) for e in entries]
            try:
                if len(entries) == 1:
                    await self._serve_single(entries[0])
                elif self._batch_mode == "turns":
                    await self._serve_turns(entries, prompt)
                elif self._batch_mode == "parallel":
                    await serve_parallel(self, entries, prompt)
                else:
                    await self._serve_batch(entries, prompt
                                            if isinstance(prompt, BatchPrompt) else None)
            except asyncio.CancelledError:
                self._settle(attempts, FailureKind.CANCELLED, "the LLM service closed")
                raise
            except Exception as exc:  # a bug of ours: still exactly one outcome each
                log.exception("LLM worker crashed serving %s", [e.request_id for e in entries])
                self._settle(attempts, FailureKind.CRASH,
                             f"service error {type(exc).__name__}: {exc}")
            # Safety net: whatever this attempt still owes ends now (normally nothing).
            self._settle(attempts, FailureKind.CRASH, "the service ended the request without "
                         "an outcome (a bug)")

    def _settle(
        self, attempts: list[tuple[QueueEntry, int]], kind: FailureKind, message: str
    ) -> None:
        """Resolve the entries of one attempt that are still running in it."""
        for entry, attempt in attempts:
            if entry.state is EntryState.RUNNING and entry.attempts == attempt:
                self._queue.finish(entry, self._failure(entry, kind, message))

    async def _run_cancellable(self, coro: Any, entry_hooks: list[QueueEntry],
                               name: str) -> Any:
        """Run ``coro`` as its own task whose cancellation (through the entries' cancel
        hooks) does not cancel the worker. Returns its result; raises CancelledError only if
        the worker itself is being cancelled."""
        task = self._loop.create_task(coro, name=name)
        for entry in entry_hooks:
            self._queue.set_cancel_hook(entry, self._canceller(task))
        try:
            return await task
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                raise
            return None

    def _canceller(self, task: asyncio.Task[Any]) -> Callable[[], None]:
        loop = self._loop

        def cancel() -> None:  # called in whichever thread withdrew the request
            with contextlib.suppress(RuntimeError):  # loop closed: nothing left to stop
                loop.call_soon_threadsafe(task.cancel)

        return cancel

    # ---------------------------------------------------------------- single requests

    async def _serve_single(self, entry: QueueEntry) -> None:
        outcome = await self._run_cancellable(
            self._attempt(entry), [entry], f"llm-request-{entry.request_id}"
        )
        if outcome is not None:
            self._queue.finish(entry, outcome)

    async def _attempt(self, entry: QueueEntry) -> PlanOutcome:
        request = entry.request
        window = self._context_budget()
        messages: Sequence[Message] | None
        fitted = Fitted(None, 0, 0.0)
        try:
            _yield_gil()
            if self._fits_prompts:
                fitted = fit_single(request, window)
                messages = fitted.messages
            else:
                messages = list(self._build_messages(request))
                if window is not None and not batch_fits(messages, 1, window):
                    need = window.measure(messages)
                    fitted = Fitted(None, need, 0.0, (
                        f"the custom prompt needs {need} tokens; the "
                        f"context holds {window.context} and the answer needs "
                        f"{window.answer}"))
                    messages = None
            schema = self._build_schema(request) if self._config.use_schema else None
            _yield_gil()
        except Exception as exc:
            return self._failure(entry, FailureKind.CRASH,
                                 f"building the prompt failed: {type(exc).__name__}: {exc}")
        if messages is None:
            log.warning("request %d of agent %d not sent to %s: %s", entry.request_id,
                        request.agent_id, self._backend.name, fitted.problem)
            return self._failure(entry, FailureKind.TOO_LARGE, fitted.problem)
        outcome, _ = await self._call(entry, messages, schema, record=True)
        return outcome

    async def _call(self, entry: QueueEntry, messages: Sequence[Message],
                    schema: JsonSchema | None, *, record: bool
                    ) -> tuple[PlanOutcome, BackendReply | None]:
        """One backend call for ``entry`` within its deadline, its reply parsed and validated
        (and its latency given to the adaptive batch size as a single's when ``record``)."""
        timing = entry.timing
        chunks: list[str] = []

        def on_chunk(text: str) -> None:
            if not chunks:
                self._queue.mark_first_token(entry)
            chunks.append(text)

        started = time.monotonic()
        reply: BackendReply
        try:
            async with asyncio.timeout_at(self._loop_deadline(entry)):
                reply = await self._backend.generate(messages, schema, on_chunk)
        except TimeoutError:
            partial = "".join(chunks)
            budget = entry.deadline_at - timing.queued_at
            got = f"{len(partial)} chars received" if partial else "no reply"
            return self._failure(entry, FailureKind.TIMEOUT,
                                 f"no complete reply within {budget:.2f}s ({got})",
                                 raw=partial), None
        except BackendError as exc:
            return self._failure(entry, exc.kind, exc.message,
                                 raw=exc.partial or "".join(chunks)), None
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("LLM backend %s crashed on request %d: %s: %s", self._backend.name,
                        entry.request_id, type(exc).__name__, exc)
            return self._failure(entry, FailureKind.CRASH,
                                 f"backend raised {type(exc).__name__}: {exc}",
                                 raw="".join(chunks)), None
        timing.finished_at = time.monotonic()
        if timing.first_token_at is None and reply.text:
            timing.first_token_at = timing.finished_at
        timing.prompt_tokens = reply.prompt_tokens
        timing.completion_tokens = reply.completion_tokens
        if record:
            self._sizer.record(1, timing.finished_at - started - (reply.load_s or 0.0))
        _yield_gil()
        outcome = self._judge(entry, reply)
        _yield_gil()
        return outcome, reply

    def _context_budget(self) -> ContextBudget | None:
        """The backend's context budget, if it has one (an optional backend feature)."""
        get = getattr(self._backend, "context_budget", None)
        if get is None:
            return None
        budget = get()
        return budget if isinstance(budget, ContextBudget) else None

    def _judge(self, entry: QueueEntry, reply: BackendReply) -> PlanOutcome:
        """Parse and validate a complete single reply."""
        parsed = parse_plan_reply(reply.text)
        if parsed.value is None:
            return self._failure(
                entry, FailureKind.PARSE,
                f"{parsed.error} (tried: {', '.join(parsed.tried) or 'none'})", raw=reply.text)
        request = entry.request
        try:
            domain = domain_of(request)
            result = self._validate(collapse_raw_repeats(parsed.value), request.snapshot,
                                    domain.tools,
                                    domain.rules, request.max_steps)
        except Exception as exc:
            return self._failure(entry, FailureKind.CRASH,
                                 f"validator raised {type(exc).__name__}: {exc}", raw=reply.text)
        if not result.ok:
            return self._failure(entry, FailureKind.INVALID_PLAN,
                                 result.summary() or "plan rejected", raw=reply.text)
        rationale = parsed.value.get("rationale", "")
        return self._plan(entry, result.steps, reply.text,
                          rationale if isinstance(rationale, str) else "")

    # ---------------------------------------------------------------- batches as turns

    async def _serve_turns(self, entries: list[QueueEntry],
                           prompt: BatchPrompt | TurnsPrompt | None = None) -> None:
        """Plan ``entries`` as one conversation, a turn per member (:class:`TurnsPrompt`):
        each member's plan is judged and delivered when its turn ends. A member whose reply
        is unusable (PARSE, INVALID_PLAN) is retried alone and left out of the conversation;
        one past its deadline before its turn ends TIMEOUT; a withdrawn one is skipped."""
        try:
            _yield_gil()
            turns = prompt if isinstance(prompt, TurnsPrompt) else build_turns(entries)
            _yield_gil()
        except Exception as exc:
            log.warning("building a batch of %d failed (%s: %s); each is retried alone",
                        len(entries), type(exc).__name__, exc)
            batch = _Batch(entries)
            for entry in entries:
                self._retry_alone(batch, entry, FailureKind.CRASH,
                                  f"building the batch failed: {type(exc).__name__}: {exc}")
            return
        waiting = {e.request_id: e for e in entries}
        timers = {e.request_id: self._loop.call_at(self._loop_deadline(e), self._turn_expired,
                                                   waiting, e, len(entries))
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
                schema = turns.schemas[k] if self._config.use_schema else None
                result = await self._run_cancellable(
                    self._call(entry, turns.turn(k, answered), schema, record=False),
                    [entry], f"llm-turn-{entry.request_id}")
                if result is None:
                    continue  # withdrawn during its turn
                outcome, reply = result
                if reply is not None:
                    served += 1
                    load_s += reply.load_s or 0.0
                if isinstance(outcome, PlanReady):
                    self._queue.finish(entry, outcome)
                    if reply is not None:
                        answered.append((k, reply.text))
                elif outcome.kind in (FailureKind.PARSE, FailureKind.INVALID_PLAN):
                    self._retry_alone(_Batch([entry]), entry, outcome.kind, outcome.message,
                                      outcome.raw)
                else:
                    self._queue.finish(entry, outcome)
        finally:
            for timer in timers.values():
                timer.cancel()
        if served > 1:  # what the batch cost per request, against single requests
            self._sizer.record(served, time.monotonic() - started - load_s)

    def _turn_expired(self, waiting: dict[int, QueueEntry], entry: QueueEntry,
                      size: int) -> None:
        """A member's deadline passed before its turn came."""
        if waiting.pop(entry.request_id, None) is None or entry.state is not EntryState.RUNNING:
            return
        budget = entry.deadline_at - entry.timing.queued_at
        self._queue.finish(entry, self._failure(
            entry, FailureKind.TIMEOUT,
            f"no plan for agent {entry.agent_id} within {budget:.2f}s: its turn in a batch of "
            f"{size} had not come"))

    # ---------------------------------------------------------------- batches

    async def _serve_batch(self, entries: list[QueueEntry],
                           prompt: BatchPrompt | None = None) -> None:
        """Plan ``entries`` in one prompt (``prompt``, when already built for exactly these
        entries); deliver each plan as its element closes."""
        batch = _Batch(entries)
        try:
            _yield_gil()
            if prompt is None:
                prompt = self._build_batch(entries)
            _yield_gil()
        except Exception as exc:
            log.warning("building a batch of %d failed (%s: %s); each is retried alone",
                        len(entries), type(exc).__name__, exc)
            for entry in entries:
                self._retry_alone(batch, entry, FailureKind.CRASH,
                                  f"building the batch failed: {type(exc).__name__}: {exc}")
            return
        router = BatchReplyRouter(prompt, validate=self._validate)
        all_done = self._loop.create_future()
        for entry in entries:
            batch.timers[entry.request_id] = self._loop.call_at(
                self._loop_deadline(entry), self._member_expired, batch, router, entry, all_done
            )
            self._queue.set_cancel_hook(entry, self._member_withdrawn_hook(batch, entry,
                                                                           all_done))

        first_chunk = [True]

        def on_chunk(text: str) -> None:
            if first_chunk[0]:
                first_chunk[0] = False
                for e in batch.live.values():
                    self._queue.mark_first_token(e)
            for result in router.feed(text):
                self._deliver(batch, result, all_done)

        schema = prompt.schema if self._config.use_schema else None
        started = time.monotonic()
        gen = self._loop.create_task(
            self._backend.generate(prompt.messages, schema, on_chunk, plans=len(entries)),
            name=f"llm-batch-{prompt.request_ids[0]}",
        )
        batch.gen = gen
        try:
            last_deadline = max(self._loop_deadline(e) for e in entries)
            await asyncio.wait({gen, all_done}, timeout=max(0.0, last_deadline - self._loop.time()),
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
        self._after_batch(batch, router, gen, elapsed, all_done)

    def _after_batch(self, batch: _Batch, router: BatchReplyRouter,
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
                self._deliver(batch, result, all_done)
        summary = router.finish()
        for result in summary.results:  # elements completed by the final flush
            if result.request_id in batch.live:
                self._deliver(batch, result, all_done)
        if reply is not None:  # a model load paid by this call is not the batch's cost
            self._sizer.record(len(batch.entries), elapsed - (reply.load_s or 0.0))
            if reply.tokens_per_second is not None:
                with self._lock:
                    self._stats.last_tps = reply.tokens_per_second
        for entry in list(batch.live.values()):
            if error is not None and not router.text:
                # Failed before any text: the backend's problem, not this agent's.
                kind, message = _error_kind(error, self._backend.name)
                self._drop(batch, entry)
                self._queue.finish(entry, self._failure(entry, kind, message))
                continue
            if error is not None:
                why = f"the batch reply broke off ({_describe(error)})"
            elif reply is None:
                why = "the batch reply was stopped at the deadline"
            else:
                why = summary.problem or "its element is missing from the reply"
            self._retry_alone(batch, entry, FailureKind.PARSE, f"agent {entry.agent_id}: {why}")

    def _deliver(self, batch: _Batch, result: AgentResult,
                 all_done: asyncio.Future[None]) -> None:
        entry = batch.live.get(result.request_id)
        if entry is None:
            return  # expired or withdrawn meanwhile
        if isinstance(result, AgentPlan):
            self._drop(batch, entry)
            self._queue.finish(entry, self._plan(entry, result.steps, result.raw, ""))
        else:
            self._retry_alone(batch, entry, result.kind, result.message, result.raw)
        if not batch.live and not all_done.done():
            all_done.set_result(None)

    def _retry_alone(self, batch: _Batch, entry: QueueEntry, kind: FailureKind, message: str,
                     raw: str = "") -> None:
        """A member without a usable plan goes back into the queue to run on its own (once);
        if it cannot (withdrawn, superseded, late, closed) the queue resolves it instead."""
        self._drop(batch, entry)
        if entry.solo or entry.attempts > 1:  # never happens in a batch; belt and braces
            self._queue.finish(entry, self._failure(entry, kind, message, raw))
            return
        log.info("request %d (agent %d) retried alone: %s", entry.request_id, entry.agent_id,
                 message)
        self._queue.requeue(entry, solo=True)

    def _retry_alone_entry(self, entry: QueueEntry, kind: FailureKind, message: str,
                           raw: str = "") -> None:
        self._retry_alone(_Batch([entry]), entry, kind, message, raw)

    def _drop(self, batch: _Batch, entry: QueueEntry) -> None:
        batch.live.pop(entry.request_id, None)
        timer = batch.timers.pop(entry.request_id, None)
        if timer is not None:
            timer.cancel()

    def _member_expired(self, batch: _Batch, router: BatchReplyRouter, entry: QueueEntry,
                        all_done: asyncio.Future[None]) -> None:
        if entry.request_id not in batch.live:
            return
        self._drop(batch, entry)
        budget = entry.deadline_at - entry.timing.queued_at
        self._queue.finish(entry, self._failure(
            entry, FailureKind.TIMEOUT,
            f"no plan for agent {entry.agent_id} within {budget:.2f}s in a batch of "
            f"{len(batch.entries)} ({len(router.text)} chars of the batch reply received)",
            raw=router.text))
        self._maybe_stop(batch, all_done)

    def _member_withdrawn_hook(self, batch: _Batch, entry: QueueEntry,
                               all_done: asyncio.Future[None]) -> Callable[[], None]:
        loop = self._loop

        def withdrawn() -> None:
            if entry.request_id in batch.live:
                self._drop(batch, entry)
                self._maybe_stop(batch, all_done)

        def hook() -> None:  # any thread
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(withdrawn)

        return hook

    def _maybe_stop(self, batch: _Batch, all_done: asyncio.Future[None]) -> None:
        """Nobody is left waiting for this batch because of timeouts or cancellations: stop
        generating at once."""
        if batch.live:
            return
        if batch.gen is not None and not batch.gen.done():
            batch.gen.cancel()
        if not all_done.done():
            all_done.set_result(None)

    # ---------------------------------------------------------------- outcomes

    def _plan(self, entry: QueueEntry, steps: Sequence[Any], raw: str,
              rationale: str) -> PlanReady:
        plan = PlanIntent(
            plan_id=f"p-{entry.request_id:04d}",
            steps=collapse_repeats(steps),
            source="llm",
            rationale=rationale,
        )
        return PlanReady(
            request_id=entry.request_id,
            plan=plan,
            backend=self._backend.name,
            model=self._backend.model,
            timing=entry.timing,
            raw=raw,
        )

    def _failure(self, entry: QueueEntry, kind: FailureKind, message: str,
                 raw: str = "") -> PlanFailure:
        return PlanFailure(
            request_id=entry.request_id,
            kind=kind,
            message=message,
            backend=self._backend.name,
            model=self._backend.model,
            timing=entry.timing,
            raw=raw,
        )

    # ---------------------------------------------------------------- probe, shutdown

    async def _warm_up(self, warm: Callable[[Sequence[Message]], Any],
                       opening: Sequence[Message]) -> None:
        """Run the backend's warm-up on the loop thread (the game never waits for it);
        :meth:`status` says "warming up" until it ends, however it ends."""
        try:
            await warm(opening)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a failed warm-up only means the first request pays
            log.warning("LLM warm-up failed: %s: %s", type(exc).__name__, exc)
        finally:
            with self._lock:
                self._warm_ups -= 1
                self._stats.warming = self._warm_ups > 0

    async def _probe(self, timeout: float) -> tuple[bool, str]:
        try:
            async with asyncio.timeout(timeout):
                online, reason = await self._backend.probe()
        except TimeoutError:
            online, reason = False, f"{self._backend.name} did not answer within {timeout:.1f}s"
        except Exception as exc:
            online, reason = False, f"probe failed: {type(exc).__name__}: {exc}"
        with self._lock:
            self._stats.online, self._stats.reason = online, reason
        return online, reason

    async def _shutdown(self) -> None:
        tasks = list(self._workers) + list(self._side_tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        if self._waiter is not None:
            self._waiter.detach()
        try:
            async with asyncio.timeout(self._config.shutdown_timeout_s):
                await self._backend.aclose()
        except Exception as exc:
            log.warning("closing backend %s: %s: %s", self._backend.name, type(exc).__name__, exc)


_NOT_SERVED = frozenset({
    FailureKind.CANCELLED.value, FailureKind.SUPERSEDED.value, FailureKind.REFUSED.value,
    FailureKind.OFFLINE.value,
})
"""Outcomes that say nothing about the backend's latency."""


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


class _PacedTicket(QueueTicket):
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


# --------------------------------------------------------------------------- defaults


def default_messages(request: PlanRequest) -> Sequence[Message]:
    """Chat messages from :mod:`systems.llm.prompt` (system rules + compact snapshot)."""
    return prompt.build_messages(request.snapshot, domain_of(request), request.max_steps)


def default_schema(request: PlanRequest) -> JsonSchema | None:
    """The request's domain's plan schema narrowed to the request's snapshot."""
    domain = domain_of(request)
    schema: JsonSchema = domain.tools.plan_schema(request.snapshot, request.max_steps,
                                                  domain.rules)
    return schema


__all__ = [
    "ENV_BATCH_LATENCY_TARGET_MS", "ENV_DISABLE_BACKGROUND", "ENV_MAX_BATCH_SIZE",
    "ENV_MAX_CONCURRENT", "ENV_TIMEOUT_MS", "WARMING_UP", "LlmPlanService",
    "OfflinePlanService", "ServiceConfig", "default_messages", "default_schema",
]
