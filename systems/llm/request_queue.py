"""Priority request queue between the game thread and the LLM worker pool.

The game thread calls :meth:`RequestQueue.submit` (a few microseconds: one lock, two heap
pushes) and polls the returned :class:`QueueTicket`; workers in another thread (an asyncio
loop, through :class:`AsyncQueueWaiter`, or plain threads through :meth:`RequestQueue.take`)
take entries, run them and hand the outcome back with :meth:`RequestQueue.finish`.
:class:`esper_arbiter.systems.llm.service.LlmPlanService` is the worker pool the game uses.

Ordering: higher ``priority`` first (any int; ``PRIORITY_HIGH`` = 10, ``PRIORITY_LOW`` = 0);
within a priority the *newest* request first (LIFO), because the freshest snapshot matters
most.

Exactly-once: every request gets exactly one terminal outcome (a plan, a failure, or one of
CANCELLED / SUPERSEDED / REFUSED / TIMEOUT made by the queue itself). Each
:class:`QueueEntry` is a small state machine ``QUEUED -> RUNNING -> DONE`` (``QUEUED -> DONE``
for cancel / supersede / expiry, ``RUNNING -> QUEUED`` only through :meth:`requeue` for a solo
retry, born ``DONE`` when refused). Only the queue moves an entry, under its lock; a second
resolution of a ``DONE`` entry is rejected and counted in ``QueueMetrics.duplicate_resolves``.

Semantics in one place:

- ``DISABLE_BACKGROUND_LLM=1`` (:class:`QueueConfig`): submissions with
  ``priority <= PRIORITY_LOW`` are refused at submit with a REFUSED outcome.
- A new submission from an agent supersedes that agent's *queued* request (SUPERSEDED). A
  *running* one is left alone unless ``QueueConfig.supersede_running`` is set, in which case
  it is withdrawn like a cancel and ends SUPERSEDED.
- :meth:`RequestQueue.cancel`: a queued request ends CANCELLED at once. A running one is
  *withdrawn*: it ends CANCELLED at once too (the game sees the outcome on its next poll), its
  cancel hook is called (e.g. to cancel the asyncio task), and the worker's one late report
  (``finish`` / ``requeue``) is ignored and counted in ``QueueMetrics.late_reports``, not as a
  duplicate. :meth:`RequestQueue.close` withdraws running requests the same way.
- Deadlines: ``request.deadline_s`` (or ``QueueConfig.default_timeout_s``) counted from
  submission. A request still queued at its deadline ends TIMEOUT without running (checked
  when a worker takes, when the ticket is polled and by :meth:`RequestQueue.expire_due`).
  Running requests get :meth:`QueueEntry.remaining` for the worker's own timeout.

Environment (:meth:`QueueConfig.from_env`; ``systems.llm.service.ServiceConfig`` reads them
through it): ``LLM_MAX_CONCURRENT_REQUESTS`` (default 2), ``DISABLE_BACKGROUND_LLM`` (default
off), ``LLM_TIMEOUT_MS`` (default 60000).

The core uses only ``threading``; :class:`AsyncQueueWaiter` is the asyncio face.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import logging
import math
import os
import statistics
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from esper_arbiter.components.llm import (
    PRIORITY_LOW,
    FailureKind,
    PlanFailure,
    PlanOutcome,
    PlanReady,
    PlanRequest,
    RequestTiming,
)

log = logging.getLogger(__name__)

Clock = Callable[[], float]


class EntryState(StrEnum):
    """Where a request is in its life. ``DONE`` is terminal."""

    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"


class QueueEvent(StrEnum):
    """What a listener is told about (see :meth:`RequestQueue.add_listener`)."""

    QUEUED = "queued"
    STARTED = "started"
    FIRST_TOKEN = "first_token"
    REQUEUED = "requeued"
    RESOLVED = "resolved"


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


@dataclass(frozen=True, slots=True)
class QueueConfig:
    """Queue and worker-pool settings; :meth:`from_env` reads the documented variables."""

    max_concurrent: int = 2
    """Worker pool size the service should start (``LLM_MAX_CONCURRENT_REQUESTS``)."""
    disable_background: bool = False
    """Refuse ``priority <= PRIORITY_LOW`` at submit (``DISABLE_BACKGROUND_LLM=1``)."""
    default_timeout_s: float = 60.0
    """Total deadline of a request without its own ``deadline_s`` (``LLM_TIMEOUT_MS``)."""
    supersede_running: bool = False
    """Also flag an agent's *running* request when it submits a new one."""
    metrics_window: int = 512
    """How many recent wait / service times the percentiles are computed over."""
    throughput_window_s: float = 60.0
    """Throughput is completions per second over this many recent seconds."""
    problems: tuple[str, ...] = ()
    """Environment values that were rejected (and replaced by defaults), in words."""

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> QueueConfig:
        """Read ``LLM_MAX_CONCURRENT_REQUESTS``, ``DISABLE_BACKGROUND_LLM``, ``LLM_TIMEOUT_MS``.

        A bad value never raises: it is logged, listed in ``problems`` and the default is kept.
        """
        env = os.environ if environ is None else environ
        problems: list[str] = []
        default = cls()

        max_concurrent = default.max_concurrent
        raw = env.get("LLM_MAX_CONCURRENT_REQUESTS")
        if raw is not None and raw.strip():
            try:
                max_concurrent = int(raw.strip())
                if max_concurrent < 1:
                    raise ValueError
            except ValueError:
                max_concurrent = default.max_concurrent
                problems.append(
                    f"LLM_MAX_CONCURRENT_REQUESTS={raw!r} is not a whole number >= 1; "
                    f"using {max_concurrent}"
                )

        disable = default.disable_background
        raw = env.get("DISABLE_BACKGROUND_LLM")
        if raw is not None:
            low = raw.strip().lower()
            if low in _TRUE:
                disable = True
            elif low in _FALSE:
                disable = False
            else:
                problems.append(
                    f"DISABLE_BACKGROUND_LLM={raw!r} is not one of 1/0/true/false/yes/no/on/off; "
                    "background requests stay enabled"
                )

        timeout_s = default.default_timeout_s
        raw = env.get("LLM_TIMEOUT_MS")
        if raw is not None and raw.strip():
            try:
                ms = float(raw.strip())
                if not math.isfinite(ms) or ms <= 0:
                    raise ValueError
                timeout_s = ms / 1000.0
            except ValueError:
                problems.append(
                    f"LLM_TIMEOUT_MS={raw!r} is not a positive number of milliseconds; "
                    f"using {int(timeout_s * 1000)}"
                )

        for p in problems:
            log.warning("queue config: %s", p)
        return cls(
            max_concurrent=max_concurrent,
            disable_background=disable,
            default_timeout_s=timeout_s,
            problems=tuple(problems),
        )


class QueueEntry:
    """One request inside the queue: the worker's handle.

    Read its attributes freely; change its state only through the queue (``finish``,
    ``requeue``, ``mark_first_token``, ``set_cancel_hook``).
    """

    __slots__ = (
        "_cancel_hook",
        "attempts",
        "batch_size",
        "cancel_kind",
        "cancel_message",
        "deadline_at",
        "late_reported",
        "outcome",
        "request",
        "request_id",
        "seq",
        "solo",
        "state",
        "timing",
        "withdrawn",
    )

    def __init__(
        self, request_id: int, request: PlanRequest, seq: int, now: float, deadline_at: float
    ) -> None:
        self.request_id = request_id
        self.request = request
        self.seq = seq
        self.deadline_at = deadline_at
        self.timing = RequestTiming(queued_at=now)
        self.state = EntryState.QUEUED
        self.outcome: PlanOutcome | None = None
        self.cancel_kind: FailureKind | None = None
        """Set when the request was withdrawn while running (CANCELLED or SUPERSEDED)."""
        self.cancel_message = ""
        self._cancel_hook: Callable[[], None] | None = None
        self.attempts = 0
        """How many times a worker took it (2 after a solo retry)."""
        self.batch_size = 1
        self.solo = False
        """Set by ``requeue(solo=True)``: must not go into a batch again."""
        self.withdrawn = False
        """Resolved by the game (cancel / supersede / close) while a worker ran it: stop work."""
        self.late_reported = False

    @property
    def agent_id(self) -> int:
        return self.request.agent_id

    @property
    def priority(self) -> int:
        return self.request.priority

    @property
    def cancel_requested(self) -> bool:
        """True once the game cancelled (or superseded) this request while it ran."""
        return self.cancel_kind is not None

    @property
    def done(self) -> bool:
        """Has its terminal outcome (a worker should stop spending time on it)."""
        return self.state is EntryState.DONE

    def remaining(self, now: float) -> float:
        """Seconds left until the request's total deadline (may be <= 0)."""
        return self.deadline_at - now

    def __repr__(self) -> str:
        return (
            f"QueueEntry(id={self.request_id}, agent={self.agent_id}, prio={self.priority}, "
            f"state={self.state.value})"
        )


class QueueTicket:
    """The game's handle (implements ``components.llm.PlanTicket``). ``poll`` never blocks."""

    __slots__ = ("_entry", "_queue")

    def __init__(self, queue: RequestQueue, entry: QueueEntry) -> None:
        self._queue = queue
        self._entry = entry

    @property
    def request_id(self) -> int:
        return self._entry.request_id

    @property
    def entry(self) -> QueueEntry:
        return self._entry

    def poll(self, now: float) -> PlanOutcome | None:
        """The outcome once there is one. ``now`` (game time) is ignored; a request still
        queued past its (wall-clock) deadline is expired here, so the game sees TIMEOUT on time
        even when every worker is busy."""
        entry = self._entry
        out = entry.outcome
        if (
            out is None
            and entry.state is EntryState.QUEUED
            and self._queue.clock() >= entry.deadline_at
        ):
            self._queue.expire_due()
            out = entry.outcome
        return out

    def cancel(self) -> None:
        """Resolve as CANCELLED now (unless it already has an outcome) and stop the work."""
        self._queue.cancel(self._entry.request_id)

    def wait(self, timeout: float | None = None) -> PlanOutcome | None:
        """Block until resolved (or ``timeout`` seconds). For start-up code and tests only:
        a frame loop polls instead."""
        return self._queue.wait(self._entry, timeout)


@dataclass(frozen=True, slots=True)
class QueueMetrics:
    """A consistent snapshot of the queue's counters (cheap to take, safe to hand to the HUD)."""

    depth: int
    depth_by_priority: dict[int, int]
    running: int
    submitted: int
    started: int
    resolved: int
    outcomes: dict[str, int]
    """Terminal outcomes by label: ``"plan"`` or a ``FailureKind`` value."""
    cancellations: int
    supersessions: int
    refusals: int
    timeouts_in_queue: int
    requeues: int
    duplicate_resolves: int
    """Attempts to resolve an already-resolved request (rejected). Should stay 0."""
    late_reports: int
    """Worker reports for requests withdrawn while running (expected; ignored)."""
    wait_mean_s: float | None
    wait_p50_s: float | None
    wait_p95_s: float | None
    wait_max_s: float | None
    service_mean_s: float | None
    service_p50_s: float | None
    service_p95_s: float | None
    throughput_per_s: float
    """Requests that ran to a terminal outcome per second over the throughput window."""


@dataclass(slots=True)
class _Counters:
    submitted: int = 0
    started: int = 0
    resolved: int = 0
    requeues: int = 0
    timeouts_in_queue: int = 0
    duplicate_resolves: int = 0
    late_reports: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)


def outcome_label(outcome: PlanOutcome) -> str:
    """``"plan"`` for a plan, else the failure kind's value (``"timeout"``, ...)."""
    return "plan" if isinstance(outcome, PlanReady) else outcome.kind.value


Listener = Callable[[QueueEvent, QueueEntry], None]


class RequestQueue:
    """Thread-safe priority queue of :class:`PlanRequest` with exactly-once outcomes."""

    def __init__(
        self,
        config: QueueConfig | None = None,
        *,
        clock: Clock = time.monotonic,
        backend_name: str = "",
    ) -> None:
        self.config = config if config is not None else QueueConfig()
        self.clock = clock
        self.backend_name = backend_name
        """Put into the failures the queue makes itself (refused, superseded, ...)."""
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._thread_waiters = 0
        self._done_cond = threading.Condition(self._lock)
        self._outcome_waiters = 0
        self._heap: list[tuple[int, int, QueueEntry]] = []
        self._deadlines: list[tuple[float, int, QueueEntry]] = []
        self._seq = itertools.count()
        self._dseq = itertools.count()
        self._ids = itertools.count(1)
        self._live: dict[int, QueueEntry] = {}
        self._queued_by_agent: dict[int, QueueEntry] = {}
        self._running_by_agent: dict[int, QueueEntry] = {}
        self._depth: dict[int, int] = {}
        self._queued = 0
        self._running = 0
        self._closed = False
        self._c = _Counters()
        self._waits: deque[float] = deque(maxlen=self.config.metrics_window)
        self._services: deque[float] = deque(maxlen=self.config.metrics_window)
        self._completions: deque[float] = deque(maxlen=4096)
        self._listeners: list[Listener] = []
        self._wakeups: list[Callable[[], None]] = []

    # ----------------------------------------------------------------- wiring

    def add_listener(self, listener: Listener) -> None:
        """Call ``listener(event, entry)`` on every life event, outside the queue's lock, in
        the thread that caused it. Exceptions are logged, never propagated. Events of one
        entry from different threads may arrive out of order: read the entry's current state
        (as ``RequestTimeline.observe`` does) rather than trusting the event order."""
        self._listeners.append(listener)

    def add_wakeup(self, wakeup: Callable[[], None]) -> None:
        """Call ``wakeup()`` (outside the lock) whenever work may have become available or the
        queue closed. Used by :class:`AsyncQueueWaiter`; must be cheap and thread-safe."""
        self._wakeups.append(wakeup)

    def remove_wakeup(self, wakeup: Callable[[], None]) -> None:
        with contextlib.suppress(ValueError):
            self._wakeups.remove(wakeup)

    @property
    def closed(self) -> bool:
        return self._closed

    # ----------------------------------------------------------------- game side

    def submit(self, request: PlanRequest, *, request_id: int | None = None) -> QueueTicket:
        """Queue ``request`` and return its ticket at once (microseconds).

        Refused requests (background disabled, queue closed) come back with their REFUSED
        outcome already on the ticket. ``request_id`` lets the service use its own ids; it must
        not collide with a live request (``ValueError``, a programming error).
        """
        now = self.clock()
        pend = _Pending()
        wake = False
        with self._lock:
            if request_id is None:
                request_id = next(self._ids)
            elif request_id in self._live:
                raise ValueError(f"request id {request_id} is already in use")
            budget = request.deadline_s
            if budget is None:
                budget = self.config.default_timeout_s
            entry = QueueEntry(request_id, request, next(self._seq), now, now + budget)
            self._c.submitted += 1
            refusal = ""
            if self._closed:
                refusal = "the LLM service is shut down"
            elif self.config.disable_background and request.priority <= PRIORITY_LOW:
                refusal = (
                    f"background LLM requests are disabled (DISABLE_BACKGROUND_LLM=1); "
                    f"priority {request.priority} <= {PRIORITY_LOW} is refused"
                )
            if refusal:
                self._resolve_locked(
                    entry, self._failure(entry, FailureKind.REFUSED, refusal), now, pend
                )
            else:
                agent = request.agent_id
                old = self._queued_by_agent.get(agent)
                if old is not None:
                    self._resolve_locked(
                        old,
                        self._failure(
                            old,
                            FailureKind.SUPERSEDED,
                            f"superseded by request {request_id} of agent {agent}",
                        ),
                        now,
                        pend,
                    )
                if self.config.supersede_running:
                    running = self._running_by_agent.get(agent)
                    if running is not None:
                        self._withdraw_locked(
                            running,
                            FailureKind.SUPERSEDED,
                            f"superseded by request {request_id} of agent {agent}",
                            now,
                            pend,
                        )
                self._live[request_id] = entry
                self._push_locked(entry)
                self._queued_by_agent[agent] = entry
                pend.events.append((QueueEvent.QUEUED, entry))
                if self._thread_waiters:
                    self._cond.notify()
                wake = True
        self._emit(pend)
        if wake:
            for w in self._wakeups:
                w()
        return QueueTicket(self, entry)

    def cancel(self, request_id: int) -> bool:
        """Cancel a request: it ends CANCELLED now. A running one is withdrawn (its cancel hook
        is called; the worker's late report is ignored). Returns False when the id is unknown or
        already resolved (nothing changes)."""
        now = self.clock()
        pend = _Pending()
        with self._lock:
            entry = self._live.get(request_id)
            if entry is None:
                return False
            if entry.state is EntryState.QUEUED:
                self._resolve_locked(
                    entry,
                    self._failure(entry, FailureKind.CANCELLED, "cancelled while queued"),
                    now,
                    pend,
                )
            else:  # RUNNING
                self._withdraw_locked(
                    entry, FailureKind.CANCELLED, "cancelled while running", now, pend
                )
        self._emit(pend)
        return True

    # ----------------------------------------------------------------- worker side

    def try_take(self) -> QueueEntry | None:
        """Pop the most urgent queued entry and mark it RUNNING, or None. Never blocks.
        Entries found past their deadline are resolved TIMEOUT on the way."""
        now = self.clock()
        pend = _Pending()
        with self._lock:
            entry = self._pop_live_locked(now, pend)
            if entry is not None:
                self._start_locked(entry, now, 1, pend)
        self._emit(pend)
        return entry

    def take_batch(self, max_n: int, *, mix_priorities: bool = False) -> list[QueueEntry]:
        """Pop up to ``max_n`` entries in queue order (priority, then newest) and mark them
        RUNNING as one batch (``entry.batch_size``). Unless ``mix_priorities``, only entries
        of the head's priority join it, so an urgent request never waits on background ones.
        Entries marked ``solo`` (retries) only ever run alone. Empty list if nothing waits."""
        now = self.clock()
        pend = _Pending()
        taken: list[QueueEntry] = []
        with self._lock:
            head = self._pop_live_locked(now, pend)
            if head is not None:
                taken.append(head)
                skipped: list[QueueEntry] = []
                while not head.solo and len(taken) < max_n:
                    nxt = self._pop_live_locked(now, pend)
                    if nxt is None:
                        break
                    if not mix_priorities and nxt.priority != head.priority:
                        skipped.append(nxt)
                        break
                    if nxt.solo:
                        skipped.append(nxt)
                        continue
                    taken.append(nxt)
                for e in skipped:
                    self._push_locked(e, count=False)
                for e in taken:
                    self._start_locked(e, now, len(taken), pend)
        self._emit(pend)
        return taken

    def take(self, timeout: float | None = None) -> QueueEntry | None:
        """Blocking :meth:`try_take` for thread workers: waits up to ``timeout`` seconds
        (forever if None). Returns None on timeout or once the queue is closed and empty."""
        end = None if timeout is None else time.monotonic() + timeout
        while True:
            entry = self.try_take()
            if entry is not None:
                return entry
            with self._lock:
                if self._closed:
                    return None
                if self._queued:
                    continue
                wait = None if end is None else end - time.monotonic()
                if wait is not None and wait <= 0:
                    return None
                self._thread_waiters += 1
                try:
                    self._cond.wait(wait)
                finally:
                    self._thread_waiters -= 1

    def set_cancel_hook(self, entry: QueueEntry, hook: Callable[[], None]) -> None:
        """Register what to call to stop a running entry (e.g. ``lambda: loop.
        call_soon_threadsafe(task.cancel)``). Called at once if it was withdrawn already."""
        call_now = False
        with self._lock:
            if entry.state is EntryState.RUNNING:
                entry._cancel_hook = hook
            else:
                call_now = entry.withdrawn
        if call_now:
            self._safe_call(hook)

    def mark_first_token(self, entry: QueueEntry, at: float | None = None) -> None:
        """Stamp the first streamed token (first call wins)."""
        if entry.timing.first_token_at is not None:
            return
        entry.timing.first_token_at = self.clock() if at is None else at
        pend = _Pending()
        pend.events.append((QueueEvent.FIRST_TOKEN, entry))
        self._emit(pend)

    def finish(self, entry: QueueEntry, outcome: PlanOutcome) -> bool:
        """Deliver ``entry``'s terminal outcome. Returns False if it already has one: counted
        as a duplicate, unless it is the worker's first report on a request withdrawn while
        running (``late_reports``).

        Build outcomes with ``timing=entry.timing`` so the stamps the queue makes are in them;
        ``finished_at`` is stamped here if unset. ``outcome.request_id`` must be
        ``entry.request_id`` (``ValueError`` otherwise)."""
        if outcome.request_id != entry.request_id:
            raise ValueError(
                f"outcome for request {outcome.request_id} given to request {entry.request_id}"
            )
        now = self.clock()
        pend = _Pending()
        with self._lock:
            if self._late_report_locked(entry):
                return False
            ok = self._resolve_locked(entry, outcome, now, pend)
        self._emit(pend)
        return ok

    def requeue(self, entry: QueueEntry, *, solo: bool = True) -> bool:
        """Put a RUNNING entry back in the queue (same ticket, same deadline) to be retried,
        alone if ``solo``: a batch member whose part of the reply was missing or bad.

        Returns False when it is not retried, and then the entry is DONE: it was withdrawn
        (cancelled, superseded, closed) while running, or it is resolved now instead:
        SUPERSEDED if the agent queued a newer request, TIMEOUT if its deadline passed,
        CANCELLED if the queue closed. Also False, with nothing changed, if it was not RUNNING.
        A worker must not ``finish`` an entry whose requeue returned False."""
        now = self.clock()
        pend = _Pending()
        wake = False
        ok = False
        with self._lock:
            if self._late_report_locked(entry) or entry.state is not EntryState.RUNNING:
                return False
            newer = self._queued_by_agent.get(entry.agent_id)
            if self._closed:
                failure = self._failure(
                    entry, FailureKind.CANCELLED, "the LLM service is shut down"
                )
            elif newer is not None:
                failure = self._failure(
                    entry,
                    FailureKind.SUPERSEDED,
                    f"superseded by request {newer.request_id} of agent {entry.agent_id}",
                )
            elif now >= entry.deadline_at:
                failure = self._failure(
                    entry, FailureKind.TIMEOUT, "deadline passed before the retry could run"
                )
            else:
                self._running -= 1
                if self._running_by_agent.get(entry.agent_id) is entry:
                    del self._running_by_agent[entry.agent_id]
                entry.state = EntryState.QUEUED
                entry.solo = entry.solo or solo
                self._push_locked(entry)
                self._queued_by_agent[entry.agent_id] = entry
                self._c.requeues += 1
                pend.events.append((QueueEvent.REQUEUED, entry))
                if self._thread_waiters:
                    self._cond.notify()
                wake = ok = True
                failure = None
            if failure is not None:
                self._resolve_locked(entry, failure, now, pend)
        self._emit(pend)
        if wake:
            for w in self._wakeups:
                w()
        return ok

    # ----------------------------------------------------------------- maintenance

    def expire_due(self) -> int:
        """Resolve every queued request past its deadline with EXPIRED; returns how many."""
        now = self.clock()
        pend = _Pending()
        n = 0
        with self._lock:
            dl = self._deadlines
            while dl and dl[0][0] <= now:
                _, _, entry = heapq.heappop(dl)
                if entry.state is EntryState.QUEUED:
                    self._expire_locked(entry, now, pend)
                    n += 1
        self._emit(pend)
        return n

    def next_deadline(self) -> float | None:
        """Earliest deadline among queued requests (clock time), for a service timer."""
        with self._lock:
            dl = self._deadlines
            while dl and dl[0][2].state is not EntryState.QUEUED:
                heapq.heappop(dl)
            return dl[0][0] if dl else None

    def fail_queued(self, kind: FailureKind, message: str) -> int:
        """Resolve every queued request with ``kind`` (e.g. OFFLINE when the backend is gone).
        Running ones are untouched. Returns how many."""
        now = self.clock()
        pend = _Pending()
        with self._lock:
            queued = [e for e in self._live.values() if e.state is EntryState.QUEUED]
            for e in queued:
                self._resolve_locked(e, self._failure(e, kind, message), now, pend)
        self._emit(pend)
        return len(queued)

    def close(self, message: str = "the LLM service is shut down") -> int:
        """Stop accepting work: queued and running requests end CANCELLED now (running ones
        are withdrawn: hooks called), later submissions are REFUSED, blocked takers return
        None. Idempotent. Returns how many queued requests were cancelled."""
        now = self.clock()
        pend = _Pending()
        with self._lock:
            self._closed = True
            queued = [e for e in self._live.values() if e.state is EntryState.QUEUED]
            for e in queued:
                self._resolve_locked(
                    e, self._failure(e, FailureKind.CANCELLED, message), now, pend
                )
            running = [e for e in self._live.values() if e.state is EntryState.RUNNING]
            for e in running:
                self._withdraw_locked(e, FailureKind.CANCELLED, message, now, pend)
            self._cond.notify_all()
        self._emit(pend)
        for w in self._wakeups:
            w()
        return len(queued)

    # ----------------------------------------------------------------- reading

    def depth(self) -> int:
        return self._queued

    def depth_by_priority(self) -> dict[int, int]:
        with self._lock:
            return {p: n for p, n in self._depth.items() if n}

    def running(self) -> int:
        return self._running

    def live(self) -> int:
        """Requests without an outcome yet (queued + running)."""
        return len(self._live)

    def wait(self, entry: QueueEntry, timeout: float | None = None) -> PlanOutcome | None:
        """Block until ``entry`` has its outcome or ``timeout`` seconds pass (then None, or
        TIMEOUT if it was still queued past its deadline). Never call it from a frame loop."""
        end = None if timeout is None else time.monotonic() + timeout
        while True:
            if entry.state is EntryState.QUEUED and self.clock() >= entry.deadline_at:
                self.expire_due()
            with self._lock:
                if entry.outcome is not None:
                    return entry.outcome
                left = None if end is None else end - time.monotonic()
                if left is not None and left <= 0:
                    return None
                # Wake at least every 50 ms to expire a queued deadline no worker reached.
                step = 0.05 if left is None else min(left, 0.05)
                self._outcome_waiters += 1
                try:
                    self._done_cond.wait(step)
                finally:
                    self._outcome_waiters -= 1

    def get(self, request_id: int) -> QueueEntry | None:
        """The live (unresolved) entry with this id, if any."""
        return self._live.get(request_id)

    def peek_order(self) -> list[QueueEntry]:
        """Queued entries in the order workers would take them (tests, HUD; O(n log n))."""
        with self._lock:
            items = sorted(t for t in self._heap if t[2].state is EntryState.QUEUED)
        return [t[2] for t in items]

    def metrics(self) -> QueueMetrics:
        now = self.clock()
        with self._lock:
            c = self._c
            waits = list(self._waits)
            services = list(self._services)
            horizon = now - self.config.throughput_window_s
            recent = sum(1 for t in self._completions if t >= horizon)
            outcomes = dict(c.outcomes)
            depth_by = {p: n for p, n in self._depth.items() if n}
            depth, running = self._queued, self._running
            submitted, started, resolved = c.submitted, c.started, c.resolved
            requeues, dups, late = c.requeues, c.duplicate_resolves, c.late_reports
            timeouts = c.timeouts_in_queue
        return QueueMetrics(
            depth=depth,
            depth_by_priority=depth_by,
            running=running,
            submitted=submitted,
            started=started,
            resolved=resolved,
            outcomes=outcomes,
            cancellations=outcomes.get(FailureKind.CANCELLED.value, 0),
            supersessions=outcomes.get(FailureKind.SUPERSEDED.value, 0),
            refusals=outcomes.get(FailureKind.REFUSED.value, 0),
            timeouts_in_queue=timeouts,
            requeues=requeues,
            duplicate_resolves=dups,
            late_reports=late,
            wait_mean_s=statistics.fmean(waits) if waits else None,
            wait_p50_s=_quantile(waits, 0.5),
            wait_p95_s=_quantile(waits, 0.95),
            wait_max_s=max(waits) if waits else None,
            service_mean_s=statistics.fmean(services) if services else None,
            service_p50_s=_quantile(services, 0.5),
            service_p95_s=_quantile(services, 0.95),
            throughput_per_s=recent / self.config.throughput_window_s,
        )

    # ----------------------------------------------------------------- internals

    def _failure(self, entry: QueueEntry, kind: FailureKind, message: str) -> PlanFailure:
        return PlanFailure(
            request_id=entry.request_id,
            kind=kind,
            message=message,
            backend=self.backend_name,
            timing=entry.timing,
        )

    def _push_locked(self, entry: QueueEntry, *, count: bool = True) -> None:
        heap = self._heap
        if len(heap) > 2 * self._queued + 64:
            # Drop stale slots (cancelled / superseded entries) so the heap stays O(live).
            self._heap = heap = [t for t in heap if t[2].state is EntryState.QUEUED]
            heapq.heapify(heap)
        heapq.heappush(heap, (-entry.request.priority, -entry.seq, entry))
        if count:
            if entry.deadline_at < math.inf:
                dl = self._deadlines
                if len(dl) > 2 * self._queued + 64:
                    self._deadlines = dl = [t for t in dl if t[2].state is EntryState.QUEUED]
                    heapq.heapify(dl)
                heapq.heappush(dl, (entry.deadline_at, next(self._dseq), entry))
            p = entry.request.priority
            self._depth[p] = self._depth.get(p, 0) + 1
            self._queued += 1

    def _unqueue_locked(self, entry: QueueEntry) -> None:
        """Bookkeeping when an entry leaves QUEUED (its heap slots are dropped lazily)."""
        p = entry.request.priority
        self._depth[p] -= 1
        self._queued -= 1
        if self._queued_by_agent.get(entry.agent_id) is entry:
            del self._queued_by_agent[entry.agent_id]

    def _withdraw_locked(
        self, entry: QueueEntry, kind: FailureKind, message: str, now: float, pend: _Pending
    ) -> None:
        """Resolve a RUNNING entry for the game (cancel / supersede / close) and have its
        worker stopped through its hook."""
        hook = entry._cancel_hook
        entry.cancel_kind = kind
        entry.cancel_message = message
        entry.withdrawn = True
        resolved = self._resolve_locked(entry, self._failure(entry, kind, message), now, pend)
        if resolved and hook is not None:
            pend.hooks.append(hook)

    def _late_report_locked(self, entry: QueueEntry) -> bool:
        """The worker's first report on a withdrawn entry: expected, ignored, counted."""
        if entry.withdrawn and not entry.late_reported:
            entry.late_reported = True
            self._c.late_reports += 1
            return True
        return False

    def _pop_live_locked(self, now: float, pend: _Pending) -> QueueEntry | None:
        """Pop the best QUEUED entry, expiring overdue ones on the way. The popped entry is
        still counted as queued (the caller starts it or pushes it back uncounted)."""
        heap = self._heap
        while heap:
            entry = heapq.heappop(heap)[2]
            if entry.state is not EntryState.QUEUED:
                continue  # resolved meanwhile: stale slot
            if now >= entry.deadline_at:
                self._expire_locked(entry, now, pend)
                continue
            return entry
        return None

    def _expire_locked(self, entry: QueueEntry, now: float, pend: _Pending) -> None:
        self._c.timeouts_in_queue += 1
        waited = now - entry.timing.queued_at
        self._resolve_locked(
            entry,
            self._failure(
                entry,
                FailureKind.EXPIRED,
                f"deadline passed after {waited:.2f}s in the queue; never ran",
            ),
            now,
            pend,
        )

    def _start_locked(
        self, entry: QueueEntry, now: float, batch_size: int, pend: _Pending
    ) -> None:
        self._unqueue_locked(entry)
        entry.state = EntryState.RUNNING
        entry.attempts += 1
        entry.batch_size = batch_size
        if entry.timing.started_at is None:
            entry.timing.started_at = now
        self._waits.append(now - entry.timing.queued_at)
        self._running += 1
        self._running_by_agent[entry.agent_id] = entry
        self._c.started += 1
        pend.events.append((QueueEvent.STARTED, entry))

    def _resolve_locked(
        self, entry: QueueEntry, outcome: PlanOutcome, now: float, pend: _Pending
    ) -> bool:
        """The one place an entry becomes DONE; rejects (and counts) a second resolution."""
        state = entry.state
        if state is EntryState.DONE:
            self._c.duplicate_resolves += 1
            log.warning(
                "request %d already resolved (%s); second outcome %s rejected",
                entry.request_id,
                outcome_label(entry.outcome) if entry.outcome is not None else "?",
                outcome_label(outcome),
            )
            return False
        if state is EntryState.QUEUED:
            if self._live.get(entry.request_id) is entry:  # a refusal was never queued
                self._unqueue_locked(entry)
        else:  # RUNNING
            self._running -= 1
            if self._running_by_agent.get(entry.agent_id) is entry:
                del self._running_by_agent[entry.agent_id]
            started = entry.timing.started_at
            if started is not None:
                self._services.append(now - started)
            self._completions.append(now)
        if entry.timing.finished_at is None:
            entry.timing.finished_at = now
        if outcome.timing is not entry.timing and outcome.timing.finished_at is None:
            outcome.timing.finished_at = now
        entry.state = EntryState.DONE
        entry.outcome = outcome
        entry._cancel_hook = None
        if self._outcome_waiters:
            self._done_cond.notify_all()
        if self._live.get(entry.request_id) is entry:
            del self._live[entry.request_id]
        c = self._c
        c.resolved += 1
        label = outcome_label(outcome)
        c.outcomes[label] = c.outcomes.get(label, 0) + 1
        pend.events.append((QueueEvent.RESOLVED, entry))
        return True

    def _emit(self, pend: _Pending) -> None:
        """Run cancel hooks and listeners after the lock is released."""
        for hook in pend.hooks:
            self._safe_call(hook)
        if not pend.events:
            return
        for ev, entry in pend.events:
            for fn in self._listeners:
                try:
                    fn(ev, entry)
                except Exception:
                    log.exception("queue listener %r failed on %s", fn, ev.value)

    @staticmethod
    def _safe_call(fn: Callable[[], None]) -> None:
        try:
            fn()
        except Exception:
            log.exception("queue callback %r failed", fn)


class _Pending:
    """Events and cancel hooks gathered under the lock, delivered after it is released."""

    __slots__ = ("events", "hooks")

    def __init__(self) -> None:
        self.events: list[tuple[QueueEvent, QueueEntry]] = []
        self.hooks: list[Callable[[], None]] = []


def _quantile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    s = sorted(values)
    i = min(len(s) - 1, max(0, round(q * (len(s) - 1))))
    return s[i]


class AsyncQueueWaiter:
    """asyncio face of a :class:`RequestQueue` for workers running in one event loop.

    Create it inside the loop (``AsyncQueueWaiter(queue)``); any number of worker tasks may
    ``await waiter.take()`` concurrently. The game thread's submit wakes them through
    ``loop.call_soon_threadsafe`` only when some worker is actually waiting, so submit stays
    cheap while the pool is busy. Typical service loop::

        waiter = AsyncQueueWaiter(queue)
        async def worker() -> None:
            while (entry := await waiter.take()) is not None:
                outcome = await run(entry)          # honour entry.remaining(clock())
                queue.finish(entry, outcome)
        workers = [asyncio.create_task(worker()) for _ in range(queue.config.max_concurrent)]
    """

    def __init__(
        self, queue: RequestQueue, loop: asyncio.AbstractEventLoop | None = None
    ) -> None:
        self._queue = queue
        self._loop = loop if loop is not None else asyncio.get_running_loop()
        self._event = asyncio.Event()
        self._waiting = 0
        queue.add_wakeup(self._wake)

    def _wake(self) -> None:
        # Read in the submitting thread; a worker increments _waiting *before* its last
        # try_take, so work enqueued after that try_take always sees _waiting > 0.
        if self._waiting:
            with contextlib.suppress(RuntimeError):  # loop closed: nobody left to wake
                self._loop.call_soon_threadsafe(self._event.set)

    async def take(self) -> QueueEntry | None:
        """Wait for the next entry; None once the queue is closed and drained."""
        batch = await self.take_batch(1)
        return batch[0] if batch else None

    async def take_batch(
        self, max_n: int, *, mix_priorities: bool = False
    ) -> list[QueueEntry]:
        """Wait until something is queued, then :meth:`RequestQueue.take_batch`. Returns an
        empty list only once the queue is closed."""
        q = self._queue
        self._waiting += 1
        try:
            while True:
                self._event.clear()
                taken = q.take_batch(max_n, mix_priorities=mix_priorities)
                if taken:
                    return taken
                if q.closed:
                    return []
                await self._event.wait()
        finally:
            self._waiting -= 1

    def detach(self) -> None:
        """Stop listening to the queue (call when the loop shuts down)."""
        self._queue.remove_wakeup(self._wake)
