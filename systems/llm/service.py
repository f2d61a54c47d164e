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

Where the code lives: this module holds the service's lifecycle and public API. Its worker
loop is :mod:`systems.llm.worker_loop`; serving a single request,
:mod:`systems.llm.single_serving`; the batch modes, :mod:`systems.llm.array_serving`,
:mod:`systems.llm.turns_serving` and :mod:`systems.llm.parallel_serving` (a member retried
alone: :mod:`systems.llm.batch_retry`); the warm-up and probe,
:mod:`systems.llm.backend_readiness`; the status counters, :mod:`systems.llm.service_stats`;
the ticket :meth:`LlmPlanService.submit` returns, :mod:`systems.llm.paced_ticket`; the default
prompt builders, :mod:`systems.llm.default_builders`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Sequence
from typing import Any

from esper_arbiter.components.actions import PlanIntent
from esper_arbiter.components.llm import (
    DEFAULT_MAX_STEPS,
    FailureKind,
    PlanFailure,
    PlanOutcome,
    PlanReady,
    PlanRequest,
)
from esper_arbiter.systems.domain import Domain
from esper_arbiter.systems.llm.api import ServiceStatus
from esper_arbiter.systems.llm.array_serving import GRACE_AFTER_LAST_S
from esper_arbiter.systems.llm.async_queue_waiter import AsyncQueueWaiter
from esper_arbiter.systems.llm.backend_readiness import probe_backend, start_warm_up
from esper_arbiter.systems.llm.backends.base import BackendReply, PlanBackend
from esper_arbiter.systems.llm.batch_prompts import BatchPrompt, TurnsPrompt, build_batch
from esper_arbiter.systems.llm.batch_retry import retry_alone_entry
from esper_arbiter.systems.llm.batch_routing import PlanValidator
from esper_arbiter.systems.llm.batch_sizing import AdaptiveBatchSize
from esper_arbiter.systems.llm.default_builders import (
    BatchBuilder,
    MessageBuilder,
    SchemaBuilder,
    default_messages,
    default_schema,
)
from esper_arbiter.systems.llm.offline import OfflinePlanService
from esper_arbiter.systems.llm.paced_ticket import PacedTicket
from esper_arbiter.systems.llm.pacing import PacingMonitor
from esper_arbiter.systems.llm.parallel_serving import offers_parallel
from esper_arbiter.systems.llm.queue_entry import QueueEntry, QueueEvent, outcome_label
from esper_arbiter.systems.llm.queue_ticket import QueueTicket
from esper_arbiter.systems.llm.request_queue import RequestQueue
from esper_arbiter.systems.llm.service_config import (
    BATCH_MODES,
    ENV_BATCH_LATENCY_TARGET_MS,
    ENV_DISABLE_BACKGROUND,
    ENV_MAX_BATCH_SIZE,
    ENV_MAX_CONCURRENT,
    ENV_TIMEOUT_MS,
    ServiceConfig,
)
from esper_arbiter.systems.llm.service_stats import WARMING_UP, ServiceStats, build_status
from esper_arbiter.systems.llm.single_serving import judge
from esper_arbiter.systems.llm.timeline import RequestTimeline
from esper_arbiter.systems.llm.turns_serving import serve_turns
from esper_arbiter.systems.llm.worker_loop import run_worker
from esper_arbiter.systems.planning.validation import collapse_repeats, validate_plan

log = logging.getLogger(__name__)

_CLOSED = "the LLM service is shut down"
EXPIRY_SWEEP_S = 0.1
"""How often queued requests past their deadline are resolved when nobody polls them."""


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
        self._stats = ServiceStats()
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
            self._loop.call_soon_threadsafe(self._spawn, probe_backend(self, 2.0), "llm-probe")
        self._warm_ups = 0
        self._warm_prompt = ""  # the system prompt last warmed up (or being warmed up)
        start_warm_up(self, None, DEFAULT_MAX_STEPS)

    def warm_for(self, domain: Domain, max_steps: int = DEFAULT_MAX_STEPS) -> None:
        """Read ``domain``'s system prompt into the model's cache now, in the background.

        The service warms up with the preset's prompt as it starts, before it knows the game;
        ``install(domain=..., service=...)`` calls this so a game with a role and tools of its
        own does not have its first request read its system prompt cold (a role text of its
        own shares almost nothing with the preset's, and the first plan came seconds later)."""
        start_warm_up(self, domain, max_steps)

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
        return PacedTicket(self._queue, ticket.entry, self._pacing)

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
        fut = asyncio.run_coroutine_threadsafe(probe_backend(self, timeout), self._loop)
        try:
            return fut.result(timeout + 1.0)
        except Exception as exc:  # pragma: no cover - defensive
            fut.cancel()
            return False, f"probe failed: {type(exc).__name__}: {exc}"

    def status(self) -> ServiceStatus:
        """Snapshot for the HUD (cheap; safe from any thread)."""
        return build_status(self)

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
        label = outcome_label(outcome)
        with self._lock:
            self._stats.count(outcome, label)

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
            self._workers.append(self._loop.create_task(run_worker(self), name=f"llm-worker-{i}"))
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

    def _loop_deadline(self, entry: QueueEntry) -> float:
        """``entry``'s deadline on the loop's clock."""
        return self._loop.time() + entry.remaining(self._queue.clock())

    # ---------------------------------------------------------------- for the batch modes

    def _judge(self, entry: QueueEntry, reply: BackendReply) -> PlanOutcome:
        """Parse and validate a complete single reply (:func:`single_serving.judge`)."""
        return judge(self, entry, reply)

    def _retry_alone_entry(self, entry: QueueEntry, kind: FailureKind, message: str,
                           raw: str = "") -> None:
        """Retry ``entry`` on its own (:func:`batch_retry.retry_alone_entry`)."""
        retry_alone_entry(self, entry, kind, message, raw)

    async def _serve_turns(self, entries: list[QueueEntry],
                           prompt: BatchPrompt | TurnsPrompt | None = None) -> None:
        """Plan ``entries`` as one conversation (:func:`turns_serving.serve_turns`)."""
        await serve_turns(self, entries, prompt)

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

    # ---------------------------------------------------------------- shutdown

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
        except TimeoutError:
            log.warning("closing backend %s: still busy after %.1f s (a model call that cannot "
                        "be interrupted, such as reading a long prompt); it finishes on its own "
                        "thread", self._backend.name, self._config.shutdown_timeout_s)
        except Exception as exc:
            log.warning("closing backend %s: %s: %s", self._backend.name, type(exc).__name__, exc)


__all__ = [
    "ENV_BATCH_LATENCY_TARGET_MS", "ENV_DISABLE_BACKGROUND", "ENV_MAX_BATCH_SIZE",
    "ENV_MAX_CONCURRENT", "ENV_TIMEOUT_MS", "GRACE_AFTER_LAST_S", "WARMING_UP",
    "LlmPlanService", "OfflinePlanService", "ServiceConfig", "default_messages",
    "default_schema",
]
