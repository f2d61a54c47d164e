"""Request timeline: a rolling window of recent requests and how much they overlapped.

Every request is stamped queued / started / first token / finished (monotonic seconds). The
timeline keeps the last ``max_records`` requests that finished within ``window_s`` seconds,
plus the ones still waiting or running, as :class:`systems.llm.api.RequestRecord` values for
the HUD's timeline panel, and computes the concurrency percentage::

    concurrency_pct = time with >= 2 requests running / time with >= 1 running * 100

over ``[now - window_s, now]`` (a request still running counts up to ``now``; one that
never started counts nowhere). Requests of one batch count one each: four agents planned in
one prompt are four requests running.

Feed it either with the explicit stamp methods (``queued`` / ``started`` / ``first_token``
/ ``finished``) or by registering :meth:`RequestTimeline.observe` as a
:class:`~systems.llm.request_queue.RequestQueue` listener, which copies the entry's own
stamps and so is immune to the order in which events from different threads arrive. All
methods are thread-safe.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from esper_arbiter.systems.llm.api import RequestRecord
from esper_arbiter.systems.llm.queue_entry import QueueEntry, QueueEvent, outcome_label

QUEUED = "queued"
"""``RequestRecord.outcome`` of a request that has not started yet."""
RUNNING = "running"
"""``RequestRecord.outcome`` of a request that started and has no outcome yet."""


@dataclass(frozen=True, slots=True)
class TimelineWindow:
    """One consistent read of the timeline (what ``ServiceStatus.recent`` / ``concurrency_pct``
    are filled from)."""

    records: tuple[RequestRecord, ...]
    concurrency_pct: float
    now: float


class _Track:
    __slots__ = (
        "agent_id",
        "batch_size",
        "finished_at",
        "first_token_at",
        "outcome",
        "priority",
        "queued_at",
        "request_id",
        "started_at",
    )

    def __init__(self, request_id: int, agent_id: int, priority: int, queued_at: float) -> None:
        self.request_id = request_id
        self.agent_id = agent_id
        self.priority = priority
        self.queued_at = queued_at
        self.started_at: float | None = None
        self.first_token_at: float | None = None
        self.finished_at: float | None = None
        self.outcome = QUEUED
        self.batch_size = 1

    def record(self) -> RequestRecord:
        return RequestRecord(
            request_id=self.request_id,
            agent_id=self.agent_id,
            priority=self.priority,
            queued_at=self.queued_at,
            started_at=self.started_at,
            first_token_at=self.first_token_at,
            finished_at=self.finished_at,
            outcome=self.outcome,
            batch_size=self.batch_size,
        )


class RequestTimeline:
    """Thread-safe rolling window of request records."""

    def __init__(
        self,
        *,
        max_records: int = 200,
        window_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_records < 1:
            raise ValueError("max_records must be >= 1")
        if window_s <= 0:
            raise ValueError("window_s must be > 0")
        self.max_records = max_records
        self.window_s = window_s
        self.clock = clock
        self._lock = threading.Lock()
        self._tracks: OrderedDict[int, _Track] = OrderedDict()
        self._finished = 0

    # ----------------------------------------------------------------- stamping

    def queued(
        self, request_id: int, agent_id: int, priority: int, at: float | None = None
    ) -> None:
        """A request entered the queue (call first; later stamps for unknown ids are dropped)."""
        t = self.clock() if at is None else at
        with self._lock:
            if request_id not in self._tracks:
                self._tracks[request_id] = _Track(request_id, agent_id, priority, t)
                self._trim_locked(None)

    def started(
        self, request_id: int, at: float | None = None, *, batch_size: int | None = None
    ) -> None:
        """A worker began it (first start wins; a retry keeps the original start)."""
        t = self.clock() if at is None else at
        with self._lock:
            tr = self._tracks.get(request_id)
            if tr is None:
                return
            if tr.started_at is None:
                tr.started_at = t
            if batch_size is not None:
                tr.batch_size = batch_size
            if tr.finished_at is None:
                tr.outcome = RUNNING

    def first_token(self, request_id: int, at: float | None = None) -> None:
        t = self.clock() if at is None else at
        with self._lock:
            tr = self._tracks.get(request_id)
            if tr is not None and tr.first_token_at is None:
                tr.first_token_at = t

    def finished(self, request_id: int, outcome: str, at: float | None = None) -> None:
        """Its terminal outcome: ``"plan"`` or a ``FailureKind`` value. First call wins."""
        t = self.clock() if at is None else at
        with self._lock:
            tr = self._tracks.get(request_id)
            if tr is None or tr.finished_at is not None:
                return
            tr.finished_at = t
            tr.outcome = outcome
            self._finished += 1
            self._trim_locked(None)

    def observe(self, event: QueueEvent, entry: QueueEntry) -> None:
        """``RequestQueue`` listener: mirror ``entry``'s current stamps and outcome."""
        timing = entry.timing
        out = entry.outcome
        with self._lock:
            tr = self._tracks.get(entry.request_id)
            if tr is None:
                tr = _Track(entry.request_id, entry.agent_id, entry.priority, timing.queued_at)
                self._tracks[entry.request_id] = tr
            if timing.started_at is not None:
                tr.started_at = timing.started_at
                tr.batch_size = entry.batch_size
            if timing.first_token_at is not None:
                tr.first_token_at = timing.first_token_at
            if tr.finished_at is None:
                if out is not None:
                    tr.finished_at = (
                        timing.finished_at if timing.finished_at is not None else self.clock()
                    )
                    tr.outcome = outcome_label(out)
                    self._finished += 1
                elif tr.started_at is not None:
                    tr.outcome = RUNNING
            if event is QueueEvent.QUEUED or event is QueueEvent.RESOLVED:
                self._trim_locked(None)

    # ----------------------------------------------------------------- reading

    def records(self, now: float | None = None) -> tuple[RequestRecord, ...]:
        """Requests in the window, oldest queued first."""
        return self.window(now).records

    def concurrency_pct(self, now: float | None = None) -> float:
        """Share of busy time (>= 1 running) with >= 2 running, 0..100, over the window."""
        return self.window(now).concurrency_pct

    def window(self, now: float | None = None) -> TimelineWindow:
        """Records and concurrency from one consistent read."""
        t = self.clock() if now is None else now
        with self._lock:
            self._trim_locked(t)
            tracks = list(self._tracks.values())
            records = tuple(tr.record() for tr in tracks)
            intervals = [
                (tr.started_at, tr.finished_at if tr.finished_at is not None else t)
                for tr in tracks
                if tr.started_at is not None
            ]
        return TimelineWindow(
            records=records,
            concurrency_pct=concurrency_pct(intervals, t - self.window_s, t),
            now=t,
        )

    def __len__(self) -> int:
        with self._lock:
            return len(self._tracks)

    def clear(self) -> None:
        with self._lock:
            self._tracks.clear()
            self._finished = 0

    # ----------------------------------------------------------------- internals

    def _trim_locked(self, now: float | None) -> None:
        """Enforce the bounds. With ``now``: drop finished records older than the window
        (O(n), done on reads). Always: beyond ``max_records`` drop the oldest finished records
        (cheap, done on writes), and if waiting/running ones alone exceed it, the oldest of
        those."""
        tracks = self._tracks
        if now is not None and self._finished:
            horizon = now - self.window_s
            stale = [
                rid
                for rid, tr in tracks.items()
                if tr.finished_at is not None and tr.finished_at < horizon
            ]
            for rid in stale:
                del tracks[rid]
            self._finished -= len(stale)
        excess = len(tracks) - self.max_records
        if excess <= 0:
            return
        if self._finished:
            drop: list[int] = []
            for rid, tr in tracks.items():
                if tr.finished_at is not None:
                    drop.append(rid)
                    if len(drop) >= excess:
                        break
            for rid in drop:
                del tracks[rid]
            self._finished -= len(drop)
            excess -= len(drop)
        while excess > 0:
            tracks.popitem(last=False)
            excess -= 1


def concurrency_pct(intervals: Iterable[tuple[float, float]], lo: float, hi: float) -> float:
    """Percentage of the time within ``[lo, hi]`` covered by >= 1 interval that is covered by
    >= 2. Intervals are (start, end); touching intervals do not overlap. 0.0 when idle."""
    points: list[tuple[float, int]] = []
    for start, end in intervals:
        s = max(start, lo)
        e = min(end, hi)
        if e > s:
            points.append((s, 1))
            points.append((e, -1))
    if not points:
        return 0.0
    points.sort()  # at equal times, -1 sorts before +1: ends close before starts open
    busy = multi = 0.0
    depth = 0
    prev = points[0][0]
    for x, d in points:
        span = x - prev
        if depth >= 1:
            busy += span
            if depth >= 2:
                multi += span
        depth += d
        prev = x
    return 100.0 * multi / busy if busy > 0 else 0.0
