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

Where the code lives: this module holds :class:`RequestQueue`'s public API (game side, worker
side, maintenance, reading); its state and locked transitions are
:class:`~systems.llm.queue_core.QueueCore` (:mod:`systems.llm.queue_core`). The entry and its
states and events are in :mod:`systems.llm.queue_entry`, the ticket in
:mod:`systems.llm.queue_ticket`, the settings in :mod:`systems.llm.queue_config`, the metrics in
:mod:`systems.llm.queue_metrics` and the asyncio face in :mod:`systems.llm.async_queue_waiter`;
all their public names are re-exported here.
"""


from __future__ import annotations

import contextlib
import heapq
import time
from collections.abc import Callable

from esper_arbiter.components.llm import (
    PRIORITY_LOW,
    FailureKind,
    PlanOutcome,
    PlanRequest,
)
from esper_arbiter.systems.llm.async_queue_waiter import AsyncQueueWaiter
from esper_arbiter.systems.llm.queue_config import QueueConfig
from esper_arbiter.systems.llm.queue_core import Clock, Pending, QueueCore
from esper_arbiter.systems.llm.queue_entry import (
    EntryState,
    Listener,
    QueueEntry,
    QueueEvent,
    outcome_label,
)
from esper_arbiter.systems.llm.queue_metrics import QueueMetrics, read_metrics
from esper_arbiter.systems.llm.queue_ticket import QueueTicket


class RequestQueue(QueueCore):
    """Thread-safe priority queue of :class:`PlanRequest` with exactly-once outcomes."""

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
        pend = Pending()
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
        pend = Pending()
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
        pend = Pending()
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
        pend = Pending()
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
        pend = Pending()
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
        pend = Pending()
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
        pend = Pending()
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
        pend = Pending()
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
        pend = Pending()
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
        pend = Pending()
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
        """A consistent snapshot of the queue's counters (:func:`queue_metrics.read_metrics`)."""
        return read_metrics(self)


__all__ = [
    "AsyncQueueWaiter", "Clock", "EntryState", "Listener", "QueueConfig", "QueueEntry",
    "QueueEvent", "QueueMetrics", "QueueTicket", "RequestQueue", "outcome_label",
]
