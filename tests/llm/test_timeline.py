"""Request timeline: records in a rolling window and the concurrency percentage."""

from __future__ import annotations

import threading

import pytest

from esper_arbiter.components.actions import PlanIntent, Wait
from esper_arbiter.components.llm import PRIORITY_HIGH, PRIORITY_LOW, PlanReady, PlanRequest
from esper_arbiter.components.snapshot import GridView, UnitView, WorldSnapshot
from esper_arbiter.systems.llm.request_queue import QueueConfig, RequestQueue
from esper_arbiter.systems.llm.timeline import RequestTimeline, concurrency_pct

SNAP = WorldSnapshot(
    t=0.0,
    me=UnitView(1, 2, 3, 80, 80, "ally"),
    leader=None,
    enemies=(),
    allies=(),
    grid=GridView(20, 10, frozenset(), frozenset()),
)


class FakeClock:
    def __init__(self, t: float = 0.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def run(tl: RequestTimeline, rid: int, start: float, end: float | None, agent: int = 1) -> None:
    tl.queued(rid, agent, PRIORITY_LOW, at=start)
    tl.started(rid, at=start)
    if end is not None:
        tl.finished(rid, "plan", at=end)


# ----------------------------------------------------------------------------- the formula


@pytest.mark.parametrize(
    ("intervals", "lo", "hi", "pct"),
    [
        ([], 0, 10, 0.0),
        ([(0, 10)], 0, 10, 0.0),
        ([(0, 10), (5, 15)], 0, 20, 100 * 5 / 15),  # busy 0..15, two running 5..10
        ([(0, 5), (5, 10)], 0, 10, 0.0),  # touching is not overlapping
        ([(0, 10), (0, 10), (0, 10)], 0, 10, 100.0),
        ([(0, 10), (2, 4)], 0, 10, 20.0),
        ([(0, 4), (6, 10), (3, 7)], 0, 10, 100 * 2 / 10),  # overlaps 3..4 and 6..7
        ([(0, 15), (12, 18)], 10, 20, 100 * 3 / 8),  # clipped to the window 10..20
        ([(0, 5), (1, 4)], 10, 20, 0.0),  # all before the window
    ],
)
def test_concurrency_pct_by_hand(
    intervals: list[tuple[float, float]], lo: float, hi: float, pct: float
) -> None:
    assert concurrency_pct(intervals, lo, hi) == pytest.approx(pct)


# ----------------------------------------------------------------------------- the timeline


def test_window_concurrency_and_records() -> None:
    clock = FakeClock(20.0)
    tl = RequestTimeline(window_s=10.0, clock=clock)
    run(tl, 1, 0.0, 15.0)
    run(tl, 2, 12.0, 18.0, agent=2)
    w = tl.window()
    assert w.now == 20.0
    assert w.concurrency_pct == pytest.approx(100 * 3 / 8)
    assert [(r.request_id, r.outcome, r.finished_at) for r in w.records] == [
        (1, "plan", 15.0), (2, "plan", 18.0),
    ]


def test_running_request_counts_until_now_and_queued_one_not_at_all() -> None:
    clock = FakeClock(10.0)
    tl = RequestTimeline(window_s=60.0, clock=clock)
    run(tl, 1, 0.0, None)  # still running
    run(tl, 2, 6.0, 8.0)
    tl.queued(3, 3, PRIORITY_HIGH, at=1.0)  # waiting the whole time
    assert tl.concurrency_pct() == pytest.approx(100 * 2 / 10)
    recs = {r.request_id: r for r in tl.records()}
    assert recs[1].outcome == "running" and recs[1].finished_at is None
    assert recs[3].outcome == "queued" and recs[3].started_at is None
    clock.t = 20.0
    assert tl.concurrency_pct() == pytest.approx(100 * 2 / 20)


def test_first_stamps_win_and_unknown_ids_are_ignored() -> None:
    tl = RequestTimeline(clock=FakeClock(50.0))
    tl.queued(1, 4, 5, at=1.0)
    tl.queued(1, 9, 9, at=2.0)
    tl.started(1, at=3.0, batch_size=3)
    tl.started(1, at=4.0)  # a retry keeps the first start
    tl.first_token(1, at=5.0)
    tl.first_token(1, at=6.0)
    tl.finished(1, "timeout", at=7.0)
    tl.finished(1, "plan", at=8.0)
    tl.started(99, at=1.0)
    tl.finished(99, "plan", at=2.0)
    (r,) = tl.records()
    assert (r.agent_id, r.priority, r.queued_at, r.started_at, r.first_token_at, r.finished_at) == (
        4, 5, 1.0, 3.0, 5.0, 7.0,
    )
    assert r.outcome == "timeout" and r.batch_size == 3


def test_rolling_window_by_time_and_by_count_keeps_running_requests() -> None:
    clock = FakeClock(0.0)
    tl = RequestTimeline(max_records=3, window_s=10.0, clock=clock)
    run(tl, 1, 0.0, None)  # long-running: must survive eviction of finished ones
    for rid in range(2, 7):
        run(tl, rid, float(rid), float(rid) + 0.5)
    assert [r.request_id for r in tl.records(now=7.0)] == [1, 5, 6]
    assert len(tl) == 3
    clock.t = 16.2  # 5 finished at 5.5, 6 at 6.5: 16.2 - 10 = 6.2 drops 5 only
    assert [r.request_id for r in tl.records()] == [1, 6]


def test_only_running_requests_beyond_the_count_drop_the_oldest() -> None:
    tl = RequestTimeline(max_records=2, clock=FakeClock(0.0))
    for rid in (1, 2, 3):
        run(tl, rid, float(rid), None)
    assert [r.request_id for r in tl.records(now=5.0)] == [2, 3]


def test_bad_settings_are_rejected() -> None:
    with pytest.raises(ValueError):
        RequestTimeline(max_records=0)
    with pytest.raises(ValueError):
        RequestTimeline(window_s=0.0)


def test_fed_by_the_request_queue_as_a_listener() -> None:
    clock = FakeClock(100.0)
    q = RequestQueue(QueueConfig(disable_background=True), clock=clock)
    tl = RequestTimeline(clock=clock)
    q.add_listener(tl.observe)
    high = q.submit(PlanRequest(agent_id=2, snapshot=SNAP, priority=PRIORITY_HIGH))
    refused = q.submit(PlanRequest(agent_id=3, snapshot=SNAP, priority=PRIORITY_LOW))
    other = q.submit(PlanRequest(agent_id=4, snapshot=SNAP, priority=PRIORITY_HIGH))
    clock.t = 101.0
    (a, b) = q.take_batch(2)
    clock.t = 102.0
    q.mark_first_token(a)
    q.mark_first_token(b)
    clock.t = 104.0
    for e in (a, b):
        q.finish(e, PlanReady(e.request_id, PlanIntent("p", (Wait(1.0),)), "t", timing=e.timing))
    recs = {r.request_id: r for r in tl.records()}
    r = recs[high.request_id]
    stamps = (r.queued_at, r.started_at, r.first_token_at, r.finished_at)
    assert stamps == (100.0, 101.0, 102.0, 104.0)
    assert r.outcome == "plan" and r.batch_size == 2 and r.priority == PRIORITY_HIGH
    assert recs[refused.request_id].outcome == "refused"
    assert recs[refused.request_id].started_at is None
    assert recs[other.request_id].outcome == "plan"
    assert tl.concurrency_pct() == pytest.approx(100.0)  # the two batch members ran together


def test_concurrent_stamping_from_many_threads() -> None:
    tl = RequestTimeline(max_records=10_000, window_s=1e9)
    n_threads, per = 4, 500

    def work(k: int) -> None:
        for i in range(per):
            rid = k * per + i
            tl.queued(rid, k, 0, at=float(i))
            tl.started(rid, at=float(i))
            tl.finished(rid, "plan", at=float(i) + 0.5)
            if i % 50 == 0:
                tl.window(now=float(per))

    threads = [threading.Thread(target=work, args=(k,)) for k in range(n_threads)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(30.0)
    recs = tl.records(now=float(per))
    assert len(recs) == n_threads * per
    assert all(r.outcome == "plan" for r in recs)
    # all four threads run request i over [i, i + 0.5]: always 4 at once when busy
    assert tl.concurrency_pct(now=float(per)) == pytest.approx(100.0)
