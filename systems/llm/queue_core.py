"""The request queue's state and the one place each entry's state changes.

:class:`QueueCore` holds what :class:`~systems.llm.request_queue.RequestQueue` keeps under its
lock (the priority heap, the deadline heap, the live entries by id and by agent, depth and
counters) and the transitions between :class:`~systems.llm.queue_entry.EntryState` s: push,
start, expire, withdraw, resolve (the only way to ``DONE``, rejecting a second resolution).
Events and cancel hooks gathered under the lock are delivered after it is released
(:meth:`QueueCore._emit`). The public API, game side and worker side, is
:class:`~systems.llm.request_queue.RequestQueue`, built on this.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable

from esper_arbiter.components.llm import FailureKind, PlanFailure, PlanOutcome
from esper_arbiter.systems.llm.queue_config import QueueConfig
from esper_arbiter.systems.llm.queue_entry import (
    EntryState,
    Listener,
    QueueEntry,
    QueueEvent,
    outcome_label,
)
from esper_arbiter.systems.llm.queue_metrics import QueueCounters

log = logging.getLogger("esper_arbiter.systems.llm.request_queue")
"""The queue's logger: these lines are the queue's, wherever the code lives."""

Clock = Callable[[], float]


class QueueCore:
    """The state of a :class:`~systems.llm.request_queue.RequestQueue` and its locked
    transitions (subclassed by it; not used on its own)."""

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
        self._c = QueueCounters()
        self._waits: deque[float] = deque(maxlen=self.config.metrics_window)
        self._services: deque[float] = deque(maxlen=self.config.metrics_window)
        self._completions: deque[float] = deque(maxlen=4096)
        self._listeners: list[Listener] = []
        self._wakeups: list[Callable[[], None]] = []

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
        self, entry: QueueEntry, kind: FailureKind, message: str, now: float, pend: Pending
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

    def _pop_live_locked(self, now: float, pend: Pending) -> QueueEntry | None:
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

    def _expire_locked(self, entry: QueueEntry, now: float, pend: Pending) -> None:
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
        self, entry: QueueEntry, now: float, batch_size: int, pend: Pending
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
        self, entry: QueueEntry, outcome: PlanOutcome, now: float, pend: Pending
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

    def _emit(self, pend: Pending) -> None:
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


class Pending:
    """Events and cancel hooks gathered under the lock, delivered after it is released."""

    __slots__ = ("events", "hooks")

    def __init__(self) -> None:
        self.events: list[tuple[QueueEvent, QueueEntry]] = []
        self.hooks: list[Callable[[], None]] = []
