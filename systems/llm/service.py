"""The background LLM planning service: a thread running an asyncio loop that serves tickets.

The game thread calls :meth:`LlmPlanService.submit` (returns a ticket in microseconds: it only
registers the request and wakes the loop) and polls the ticket every frame (an attribute read).
Everything slow happens on the service's own thread:

- a request waits in the queue until one of ``LLM_MAX_CONCURRENT_REQUESTS`` slots is free
  (:meth:`LlmPlanService._next_job` is the single place that picks what runs next);
- the prompt and the snapshot's JSON schema are built, the backend generates the reply;
- the reply is parsed (:mod:`systems.llm.parsing`) and validated against the request's snapshot
  (:func:`systems.planning.validation.validate_plan`).

Each request has one total deadline, counted from submission (``request.deadline_s`` or
``LLM_TIMEOUT_MS``, default 60 s) and enforced with :func:`asyncio.timeout_at` around the whole
backend call: HTTP read timeouts restart on every byte, so a server that drips one token a second
would never trip them, and the ollama client has no timeout at all by default.

Every request ends in exactly one outcome: :class:`~components.llm.PlanReady`, or a
:class:`~components.llm.PlanFailure` whose kind says what happened (timeout, connection, http
status, model missing, parse, invalid plan, cancelled) or ``CRASH`` when the backend raised
something it should not have. Nothing a backend does raises into the game.

:meth:`LlmPlanService.close` cancels what is queued or running, resolves every outstanding ticket
as CANCELLED and joins the thread; no thread or task outlives the service.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol

from components.actions import ActionStep, PlanIntent
from components.llm import (
    FailureKind,
    PlanFailure,
    PlanOutcome,
    PlanReady,
    PlanRequest,
    RequestTiming,
)
from systems.llm.api import RequestRecord, ServiceStatus
from systems.llm.backends.base import BackendError, BackendReply, JsonSchema, Message, PlanBackend
from systems.llm.parsing import parse_plan_reply

log = logging.getLogger(__name__)

ENV_TIMEOUT_MS = "LLM_TIMEOUT_MS"
ENV_MAX_CONCURRENT = "LLM_MAX_CONCURRENT_REQUESTS"
DEFAULT_TIMEOUT_S = 60.0
DEFAULT_MAX_CONCURRENT = 2
_CLOSED = "the LLM service is closed"

MessageBuilder = Callable[[PlanRequest], Sequence[Message]]
"""Builds the chat messages for a request (default: :mod:`systems.llm.prompt`)."""
SchemaBuilder = Callable[[PlanRequest], JsonSchema | None]
"""Builds the structured-output schema for a request (default: the tool registry's)."""
PlanValidator = Callable[
    [dict[str, Any], PlanRequest], tuple[tuple[ActionStep, ...] | None, list[str]]
]
"""Checks a parsed plan: ``(steps, [])`` when accepted, ``(None, reasons)`` when not."""


@dataclass(frozen=True, slots=True)
class ServiceConfig:
    """Tunables of :class:`LlmPlanService`. :meth:`from_env` reads the documented variables."""

    timeout_s: float = DEFAULT_TIMEOUT_S
    """Total budget per request (from submission) unless the request carries its own."""
    max_concurrent: int = DEFAULT_MAX_CONCURRENT
    use_schema: bool = True
    """Hand the backend the snapshot's JSON schema (structured output)."""
    recent_limit: int = 64
    """How many finished requests :meth:`LlmPlanService.status` keeps for the HUD timeline."""
    probe_on_start: bool = True
    """Check the backend once at start so the HUD can say early that it is offline."""
    shutdown_timeout_s: float = 5.0

    @classmethod
    def from_env(
        cls, env: Mapping[str, str] | None = None, **overrides: Any
    ) -> ServiceConfig:
        """Config from ``LLM_TIMEOUT_MS`` / ``LLM_MAX_CONCURRENT_REQUESTS``; a malformed value is
        logged and replaced by the default, never fatal. ``overrides`` win over the env."""
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        raw = env.get(ENV_TIMEOUT_MS)
        if raw:
            try:
                ms = float(raw)
                if ms <= 0:
                    raise ValueError("must be positive")
                values["timeout_s"] = ms / 1000.0
            except ValueError as exc:
                log.warning("ignoring %s=%r (%s); using %d ms", ENV_TIMEOUT_MS, raw, exc,
                            int(DEFAULT_TIMEOUT_S * 1000))
        raw = env.get(ENV_MAX_CONCURRENT)
        if raw:
            try:
                n = int(raw)
                if n < 1:
                    raise ValueError("must be >= 1")
                values["max_concurrent"] = n
            except ValueError as exc:
                log.warning("ignoring %s=%r (%s); using %d", ENV_MAX_CONCURRENT, raw, exc,
                            DEFAULT_MAX_CONCURRENT)
        values.update(overrides)
        return cls(**values)


def _yield_gil() -> None:
    """Let a waiting thread (the game's) take the GIL now.

    The service thread's own Python work (prompt, schema, parsing, validation) takes a few
    milliseconds per request. Without a voluntary release the game thread can wait up to the
    interpreter's switch interval (5 ms) for the GIL in the middle of a frame; ``sleep(0)``
    between steps bounds that wait by the longest single step instead.
    """
    time.sleep(0)


# --------------------------------------------------------------------------- queue seam


class QueuedJob(Protocol):
    """What a request queue sees of a job."""

    @property
    def request(self) -> PlanRequest: ...

    @property
    def request_id(self) -> int: ...

    @property
    def queued_at(self) -> float: ...


class JobQueue(Protocol):
    """Waiting requests. Only ever touched from the service's loop thread.

    The default is first-in first-out; a priority queue (issue 4) plugs in here.
    """

    def push(self, job: QueuedJob) -> None: ...

    def pop(self) -> QueuedJob | None:
        """The next job to run, or ``None`` if none waits."""
        ...

    def remove(self, request_id: int) -> bool:
        """Drop a waiting job (cancelled or expired). ``False`` if it was not waiting."""
        ...

    def __len__(self) -> int: ...


class FifoQueue:
    """First come, first served."""

    def __init__(self) -> None:
        self._items: deque[QueuedJob] = deque()

    def push(self, job: QueuedJob) -> None:
        self._items.append(job)

    def pop(self) -> QueuedJob | None:
        return self._items.popleft() if self._items else None

    def remove(self, request_id: int) -> bool:
        for job in self._items:
            if job.request_id == request_id:
                self._items.remove(job)
                return True
        return False

    def __len__(self) -> int:
        return len(self._items)


# --------------------------------------------------------------------------- tickets


class ServiceTicket:
    """Handle for one request of an :class:`LlmPlanService`.

    :meth:`poll` is a single attribute read: it never blocks and costs well under a microsecond.
    The outcome is written once, by whichever side resolves first (the service thread when the
    request completes, the game thread when it cancels).
    """

    __slots__ = ("_done", "_outcome", "_request_id", "_service")

    def __init__(self, request_id: int, service: LlmPlanService) -> None:
        self._request_id = request_id
        self._service = service
        self._outcome: PlanOutcome | None = None
        self._done = threading.Event()

    @property
    def request_id(self) -> int:
        return self._request_id

    def poll(self, now: float) -> PlanOutcome | None:
        """The outcome once the request finished, else ``None``. ``now`` is unused (real
        backends answer on the wall clock)."""
        return self._outcome

    def cancel(self) -> None:
        """Resolve as CANCELLED now (unless already resolved) and stop the work behind it."""
        self._service._cancel_ticket(self)

    def wait(self, timeout: float | None = None) -> PlanOutcome | None:
        """Block until resolved. For :meth:`LlmPlanService.plan_blocking` and tests only."""
        self._done.wait(timeout)
        return self._outcome


class _Job:
    __slots__ = (
        "chunks",
        "deadline",
        "expiry",
        "request",
        "request_id",
        "task",
        "ticket",
        "timing",
    )

    def __init__(self, request: PlanRequest, request_id: int, ticket: ServiceTicket,
                 queued_at: float, budget_s: float) -> None:
        self.request = request
        self.request_id = request_id
        self.ticket = ticket
        self.timing = RequestTiming(queued_at=queued_at)
        self.deadline = queued_at + budget_s
        self.task: asyncio.Task[None] | None = None
        self.expiry: asyncio.TimerHandle | None = None
        self.chunks: list[str] = []

    @property
    def queued_at(self) -> float:
        return self.timing.queued_at


# --------------------------------------------------------------------------- service


class LlmPlanService:
    """Serves :class:`~components.llm.PlanRequest` s from a :class:`PlanBackend` in the
    background. Implements :class:`systems.llm.api.PlanService`.

    The backend's coroutines all run on the service's loop thread. ``messages``, ``schema`` and
    ``validator`` default to the prompt module, the tool registry and the plan validator;
    tests inject their own.
    """

    def __init__(
        self,
        backend: PlanBackend,
        config: ServiceConfig | None = None,
        *,
        messages: MessageBuilder | None = None,
        schema: SchemaBuilder | None = None,
        validator: PlanValidator | None = None,
        queue: JobQueue | None = None,
    ) -> None:
        self._backend = backend
        self._config = config or ServiceConfig.from_env()
        self._build_messages = messages or default_messages
        self._build_schema = schema or default_schema
        self._validate = validator or default_validator
        self._queue: JobQueue = queue or FifoQueue()
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._jobs: dict[int, _Job] = {}
        self._active = 0
        self._closed = False
        # stats (guarded by _lock)
        self._requests_total = 0
        self._plans_ok = 0
        self._failure_counts: dict[FailureKind, int] = {}
        self._recent: deque[RequestRecord] = deque(maxlen=self._config.recent_limit)
        self._last_latency: float | None = None
        self._last_ttft: float | None = None
        self._last_tps: float | None = None
        self._online = True
        self._reason = ""
        # loop thread
        self._loop = asyncio.new_event_loop()
        self._side_tasks: set[asyncio.Task[Any]] = set()
        started = threading.Event()
        self._thread = threading.Thread(
            target=self._thread_main, args=(started,), name=f"llm-{backend.name}", daemon=True
        )
        self._thread.start()
        started.wait()
        if self._config.probe_on_start:
            self._loop.call_soon_threadsafe(self._spawn_probe)

    # ---------------------------------------------------------------- public API (game thread)

    @property
    def backend_name(self) -> str:
        return self._backend.name

    @property
    def model(self) -> str:
        return self._backend.model

    @property
    def backend(self) -> PlanBackend:
        return self._backend

    @property
    def config(self) -> ServiceConfig:
        return self._config

    def submit(self, request: PlanRequest) -> ServiceTicket:
        """Queue ``request`` and return its ticket at once (microseconds; never blocks on the
        model). After :meth:`close` the ticket is already resolved as CANCELLED."""
        request_id = next(self._ids)
        ticket = ServiceTicket(request_id, self)
        budget = request.deadline_s if request.deadline_s is not None else self._config.timeout_s
        job = _Job(request, request_id, ticket, time.monotonic(), budget)
        with self._lock:
            closed = self._closed
            if not closed:
                self._jobs[request_id] = job
                self._requests_total += 1
        if closed:
            self._resolve(job, self._failure(job, FailureKind.CANCELLED, _CLOSED), count=False)
            return ticket
        try:
            self._loop.call_soon_threadsafe(self._enqueue, job)
        except RuntimeError:  # loop closed under us (close() racing): resolve, don't raise
            self._resolve(job, self._failure(job, FailureKind.CANCELLED, _CLOSED))
        return ticket

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
            return False, "the LLM service is closed"
        fut = asyncio.run_coroutine_threadsafe(self._probe(timeout), self._loop)
        try:
            return fut.result(timeout + 1.0)
        except Exception as exc:  # pragma: no cover - defensive
            fut.cancel()
            return False, f"probe failed: {type(exc).__name__}: {exc}"

    def status(self) -> ServiceStatus:
        """Snapshot for the HUD (cheap; safe from any thread)."""
        now = time.monotonic()
        with self._lock:
            running = [
                RequestRecord(
                    request_id=j.request_id,
                    agent_id=j.request.agent_id,
                    priority=j.request.priority,
                    queued_at=j.timing.queued_at,
                    started_at=j.timing.started_at,
                    first_token_at=j.timing.first_token_at,
                    finished_at=None,
                    outcome="running" if j.timing.started_at is not None else "queued",
                )
                for j in self._jobs.values()
            ]
            in_flight = sum(1 for r in running if r.started_at is not None)
            by_priority: dict[int, int] = {}
            for r in running:
                if r.started_at is None:
                    by_priority[r.priority] = by_priority.get(r.priority, 0) + 1
            return ServiceStatus(
                backend=self._backend.name,
                model=self._backend.model,
                online=self._online,
                reason=self._reason,
                in_flight=in_flight,
                queue_depth=len(running) - in_flight,
                queue_depth_by_priority=by_priority,
                last_latency_s=self._last_latency,
                last_ttft_s=self._last_ttft,
                last_tokens_per_s=self._last_tps,
                requests_total=self._requests_total,
                plans_ok=self._plans_ok,
                failures=sum(self._failure_counts.values()),
                recent=tuple(self._recent) + tuple(running),
                now=now,
            )

    def failure_counts(self) -> dict[FailureKind, int]:
        """Failures so far by kind."""
        with self._lock:
            return dict(self._failure_counts)

    def close(self) -> None:
        """Cancel everything queued or running (their tickets resolve CANCELLED), close the
        backend and join the service thread. Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        if self._loop.is_running():
            fut = asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop)
            try:
                fut.result(self._config.shutdown_timeout_s)
            except Exception as exc:
                log.warning("LLM service shutdown: %s: %s", type(exc).__name__, exc)
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(self._config.shutdown_timeout_s + 5.0)
        if self._thread.is_alive():  # pragma: no cover - a backend ignoring cancellation
            log.error("LLM service thread did not stop within the shutdown timeout")
        # Anything still unresolved (raced with close) resolves now.
        with self._lock:
            leftovers = list(self._jobs.values())
        for job in leftovers:
            self._resolve(job, self._failure(job, FailureKind.CANCELLED, "the LLM service closed"))

    def __enter__(self) -> LlmPlanService:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---------------------------------------------------------------- resolution (any thread)

    def _failure(self, job: _Job, kind: FailureKind, message: str, raw: str = "") -> PlanFailure:
        return PlanFailure(
            request_id=job.request_id,
            kind=kind,
            message=message,
            backend=self._backend.name,
            model=self._backend.model,
            timing=replace(job.timing),
            raw=raw,
        )

    def _resolve(self, job: _Job, outcome: PlanOutcome, count: bool = True) -> bool:
        """Write the ticket's one outcome; ``False`` if it was already resolved."""
        with self._lock:
            if job.ticket._outcome is not None:
                return False
            job.ticket._outcome = outcome
            self._jobs.pop(job.request_id, None)
            if count:
                self._count(job, outcome)
        job.ticket._done.set()
        return True

    def _count(self, job: _Job, outcome: PlanOutcome) -> None:
        """Update statistics (caller holds the lock)."""
        timing = outcome.timing
        if isinstance(outcome, PlanReady):
            self._plans_ok += 1
            label = "plan"
        else:
            self._failure_counts[outcome.kind] = self._failure_counts.get(outcome.kind, 0) + 1
            label = outcome.kind.value
            if outcome.kind in (FailureKind.CONNECTION, FailureKind.MODEL_MISSING):
                self._online, self._reason = False, outcome.message
        if timing.started_at is not None and label in ("plan", "parse", "invalid_plan"):
            self._online, self._reason = True, ""
        if timing.finished_at is not None and label != FailureKind.CANCELLED.value:
            self._last_latency = timing.latency
            if timing.time_to_first_token is not None:
                self._last_ttft = timing.time_to_first_token
            if timing.tokens_per_second is not None:
                self._last_tps = timing.tokens_per_second
        self._recent.append(
            RequestRecord(
                request_id=job.request_id,
                agent_id=job.request.agent_id,
                priority=job.request.priority,
                queued_at=timing.queued_at,
                started_at=timing.started_at,
                first_token_at=timing.first_token_at,
                finished_at=timing.finished_at if timing.finished_at is not None
                else time.monotonic(),
                outcome=label,
            )
        )

    def _cancel_ticket(self, ticket: ServiceTicket) -> None:
        with self._lock:
            job = self._jobs.get(ticket.request_id)
        if job is None:
            return  # already resolved: keep that outcome
        job.timing.finished_at = time.monotonic()
        self._resolve(job, self._failure(job, FailureKind.CANCELLED, "request cancelled"))
        with contextlib.suppress(RuntimeError):  # loop already closed: nothing left to stop
            self._loop.call_soon_threadsafe(self._drop_job, job)

    # ---------------------------------------------------------------- loop thread

    def _thread_main(self, started: threading.Event) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.call_soon(started.set)
        try:
            self._loop.run_forever()
        finally:
            try:
                self._loop.run_until_complete(self._loop.shutdown_asyncgens())
                self._loop.run_until_complete(self._loop.shutdown_default_executor())
            finally:
                self._loop.close()

    def _enqueue(self, job: _Job) -> None:
        if job.ticket._outcome is not None:  # cancelled before it reached the loop
            return
        self._queue.push(job)
        delay = job.deadline - time.monotonic()
        job.expiry = self._loop.call_later(max(0.0, delay), self._expire_if_queued, job)
        self._pump()

    def _next_job(self) -> _Job | None:
        """THE place that chooses the next request to run (delegates to the queue)."""
        while True:
            job = self._queue.pop()
            if job is None:
                return None
            assert isinstance(job, _Job)
            if job.ticket._outcome is None:  # skip jobs cancelled/expired while waiting
                return job

    def _pump(self) -> None:
        while self._active < self._config.max_concurrent and not self._closed:
            job = self._next_job()
            if job is None:
                return
            self._active += 1
            if job.expiry is not None:  # running now: the task's own timeout takes over
                job.expiry.cancel()
                job.expiry = None
            job.timing.started_at = time.monotonic()
            job.task = self._loop.create_task(self._run(job), name=f"llm-request-{job.request_id}")

    def _expire_if_queued(self, job: _Job) -> None:
        if job.task is None and job.ticket._outcome is None:
            self._queue.remove(job.request_id)
            job.timing.finished_at = time.monotonic()
            budget = job.deadline - job.timing.queued_at
            self._resolve(job, self._failure(
                job, FailureKind.TIMEOUT,
                f"deadline of {budget:.2f}s passed while waiting in the queue "
                f"({len(self._queue)} still queued, {self._active} running)"))

    def _drop_job(self, job: _Job) -> None:
        if job.expiry is not None:
            job.expiry.cancel()
            job.expiry = None
        if job.task is not None:
            job.task.cancel()
        else:
            self._queue.remove(job.request_id)

    async def _run(self, job: _Job) -> None:
        try:
            outcome = await self._attempt(job)
        except asyncio.CancelledError:
            job.timing.finished_at = time.monotonic()
            outcome = self._failure(job, FailureKind.CANCELLED, "request cancelled",
                                    raw="".join(job.chunks))
        except Exception as exc:  # a bug of ours: still exactly one outcome
            log.exception("LLM request %d crashed", job.request_id)
            job.timing.finished_at = time.monotonic()
            outcome = self._failure(job, FailureKind.CRASH,
                                    f"service error {type(exc).__name__}: {exc}")
        finally:
            self._active -= 1
        self._resolve(job, outcome)
        if not self._closed:
            self._pump()

    async def _attempt(self, job: _Job) -> PlanOutcome:
        request = job.request
        try:
            _yield_gil()
            messages = list(self._build_messages(request))
            schema = self._build_schema(request) if self._config.use_schema else None
            _yield_gil()
        except Exception as exc:
            job.timing.finished_at = time.monotonic()
            return self._failure(job, FailureKind.CRASH,
                                 f"building the prompt failed: {type(exc).__name__}: {exc}")

        def on_chunk(text: str) -> None:
            if not job.chunks:
                job.timing.first_token_at = time.monotonic()
            job.chunks.append(text)

        loop_deadline = self._loop.time() + (job.deadline - time.monotonic())
        reply: BackendReply
        try:
            async with asyncio.timeout_at(loop_deadline):
                reply = await self._backend.generate(messages, schema, on_chunk)
        except TimeoutError:
            job.timing.finished_at = time.monotonic()
            partial = "".join(job.chunks)
            budget = job.deadline - job.timing.queued_at
            got = f"{len(partial)} chars received" if partial else "no reply"
            return self._failure(job, FailureKind.TIMEOUT,
                                 f"no complete reply within {budget:.2f}s ({got})", raw=partial)
        except BackendError as exc:
            job.timing.finished_at = time.monotonic()
            return self._failure(job, exc.kind, exc.message,
                                 raw=exc.partial or "".join(job.chunks))
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            job.timing.finished_at = time.monotonic()
            log.warning("LLM backend %s crashed on request %d: %s: %s", self._backend.name,
                        job.request_id, type(exc).__name__, exc)
            return self._failure(job, FailureKind.CRASH,
                                 f"backend raised {type(exc).__name__}: {exc}",
                                 raw="".join(job.chunks))
        job.timing.finished_at = time.monotonic()
        if job.timing.first_token_at is None and reply.text:
            job.timing.first_token_at = job.timing.finished_at
        job.timing.prompt_tokens = reply.prompt_tokens
        job.timing.completion_tokens = reply.completion_tokens
        _yield_gil()
        outcome = self._judge(job, reply)
        _yield_gil()
        return outcome

    def _judge(self, job: _Job, reply: BackendReply) -> PlanOutcome:
        """Parse and validate a complete reply."""
        parsed = parse_plan_reply(reply.text)
        if parsed.value is None:
            return self._failure(
                job, FailureKind.PARSE,
                f"{parsed.error} (tried: {', '.join(parsed.tried) or 'none'})", raw=reply.text)
        try:
            steps, problems = self._validate(parsed.value, job.request)
        except Exception as exc:
            return self._failure(job, FailureKind.CRASH,
                                 f"validator raised {type(exc).__name__}: {exc}", raw=reply.text)
        if steps is None:
            return self._failure(job, FailureKind.INVALID_PLAN,
                                 "; ".join(problems) or "plan rejected", raw=reply.text)
        rationale = parsed.value.get("rationale", "")
        plan = PlanIntent(
            plan_id=f"p-{job.request_id:04d}",
            steps=steps,
            source="llm",
            rationale=rationale if isinstance(rationale, str) else "",
        )
        return PlanReady(
            request_id=job.request_id,
            plan=plan,
            backend=self._backend.name,
            model=self._backend.model,
            timing=replace(job.timing),
            raw=reply.text,
        )

    def _spawn_probe(self) -> None:
        task = self._loop.create_task(self._probe(2.0), name="llm-probe")
        self._side_tasks.add(task)
        task.add_done_callback(self._side_tasks.discard)

    async def _probe(self, timeout: float) -> tuple[bool, str]:
        try:
            async with asyncio.timeout(timeout):
                online, reason = await self._backend.probe()
        except TimeoutError:
            online, reason = False, f"{self._backend.name} did not answer within {timeout:.1f}s"
        except Exception as exc:
            online, reason = False, f"probe failed: {type(exc).__name__}: {exc}"
        with self._lock:
            self._online, self._reason = online, reason
        return online, reason

    async def _shutdown(self) -> None:
        tasks = [j.task for j in list(self._jobs.values()) if j.task is not None]
        tasks += list(self._side_tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        for job in list(self._jobs.values()):
            self._queue.remove(job.request_id)
            job.timing.finished_at = time.monotonic()
            self._resolve(job, self._failure(job, FailureKind.CANCELLED, "the LLM service closed"))
        try:
            async with asyncio.timeout(self._config.shutdown_timeout_s):
                await self._backend.aclose()
        except Exception as exc:
            log.warning("closing backend %s: %s: %s", self._backend.name, type(exc).__name__, exc)


# --------------------------------------------------------------------------- offline service


class _ResolvedTicket:
    """A ticket born resolved."""

    __slots__ = ("_outcome", "_request_id")

    def __init__(self, outcome: PlanOutcome) -> None:
        self._outcome = outcome
        self._request_id = outcome.request_id

    @property
    def request_id(self) -> int:
        return self._request_id

    def poll(self, now: float) -> PlanOutcome | None:
        return self._outcome

    def cancel(self) -> None:
        return None


class OfflinePlanService:
    """The service used when no model is available: every ticket resolves OFFLINE at once and
    :meth:`status` tells the HUD why and how to enable the LLM."""

    def __init__(self, reason: str, backend: str = "none") -> None:
        self._reason = reason
        self._backend = backend
        self._ids = itertools.count(1)
        self._total = 0

    @property
    def backend_name(self) -> str:
        return self._backend

    @property
    def reason(self) -> str:
        return self._reason

    def submit(self, request: PlanRequest) -> _ResolvedTicket:
        self._total += 1
        return _ResolvedTicket(PlanFailure(
            request_id=next(self._ids), kind=FailureKind.OFFLINE, message=self._reason,
            backend=self._backend))

    def status(self) -> ServiceStatus:
        return ServiceStatus(backend=self._backend, online=False, reason=self._reason,
                             requests_total=self._total, failures=self._total,
                             now=time.monotonic())

    def close(self) -> None:
        return None


# --------------------------------------------------------------------------- defaults


def default_messages(request: PlanRequest) -> Sequence[Message]:
    """Chat messages from :mod:`systems.llm.prompt` (system rules + compact snapshot)."""
    from systems.llm import prompt

    return prompt.build_messages(request.snapshot, max_steps=request.max_steps)


def default_schema(request: PlanRequest) -> JsonSchema | None:
    """The tool registry's plan schema narrowed to the request's snapshot."""
    from systems.planning.tools import DEFAULT_REGISTRY

    schema: JsonSchema = DEFAULT_REGISTRY.plan_schema(request.snapshot, request.max_steps)
    return schema


def default_validator(
    parsed: dict[str, Any], request: PlanRequest
) -> tuple[tuple[ActionStep, ...] | None, list[str]]:
    """:func:`systems.planning.validation.validate_plan` against the request's snapshot."""
    from systems.planning.validation import validate_plan

    result = validate_plan(parsed, request.snapshot, max_steps=request.max_steps)
    if result.ok:
        return tuple(result.steps), []
    return None, [e.message for e in result.errors]
