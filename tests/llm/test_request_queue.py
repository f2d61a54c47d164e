"""The priority request queue: ordering, supersession, cancellation, deadlines, exactly-once."""

from __future__ import annotations

import asyncio
import random
import threading
from collections import Counter
from dataclasses import dataclass, field

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from esper_arbiter.components.actions import PlanIntent, Wait
from esper_arbiter.components.llm import (
    PRIORITY_HIGH,
    PRIORITY_LOW,
    FailureKind,
    PlanFailure,
    PlanOutcome,
    PlanReady,
    PlanRequest,
)
from esper_arbiter.components.snapshot import GridView, UnitView, WorldSnapshot
from esper_arbiter.systems.llm.request_queue import (
    AsyncQueueWaiter,
    EntryState,
    QueueConfig,
    QueueEntry,
    QueueEvent,
    RequestQueue,
    outcome_label,
)

SNAP = WorldSnapshot(
    t=0.0,
    me=UnitView(1, 2, 3, 80, 80, "ally"),
    leader=None,
    enemies=(),
    allies=(),
    grid=GridView(20, 10, frozenset(), frozenset()),
)


class FakeClock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def req(agent: int, priority: int = PRIORITY_LOW, deadline_s: float | None = None) -> PlanRequest:
    return PlanRequest(agent_id=agent, snapshot=SNAP, priority=priority, deadline_s=deadline_s)


def plan_for(entry: QueueEntry) -> PlanReady:
    return PlanReady(
        request_id=entry.request_id,
        plan=PlanIntent(f"p-{entry.request_id}", (Wait(1.0),)),
        backend="test",
        timing=entry.timing,
    )


def fail_for(entry: QueueEntry, kind: FailureKind = FailureKind.PARSE) -> PlanFailure:
    return PlanFailure(entry.request_id, kind, "boom", timing=entry.timing)


def kind_of(outcome: PlanOutcome | None) -> str | None:
    return None if outcome is None else outcome_label(outcome)


def make(**cfg: object) -> tuple[RequestQueue, FakeClock]:
    clock = FakeClock()
    return RequestQueue(QueueConfig(**cfg), clock=clock), clock  # type: ignore[arg-type]


# ----------------------------------------------------------------------------- ordering


def test_higher_priority_first_then_newest_first() -> None:
    q, _ = make()
    t = {
        name: q.submit(req(agent, prio))
        for name, agent, prio in [
            ("a", 1, PRIORITY_LOW),
            ("b", 2, PRIORITY_HIGH),
            ("c", 3, PRIORITY_LOW),
            ("d", 4, PRIORITY_HIGH),
            ("e", 5, 5),
        ]
    }
    by_id = {tk.request_id: name for name, tk in t.items()}
    order = []
    while (e := q.try_take()) is not None:
        order.append(by_id[e.request_id])
    assert order == ["d", "b", "e", "c", "a"]


def test_numeric_priorities_beyond_high_and_low_are_ordered() -> None:
    q, _ = make()
    for agent, prio in [(1, -7), (2, 100), (3, PRIORITY_HIGH), (4, 1)]:
        q.submit(req(agent, prio))
    taken = [q.try_take() for _ in range(4)]
    assert [e.priority for e in taken if e is not None] == [100, PRIORITY_HIGH, 1, -7]
    assert q.try_take() is None


def test_peek_order_matches_take_order() -> None:
    q, _ = make()
    rng = random.Random(3)
    for agent in range(30):
        q.submit(req(agent, rng.choice([0, 5, 10])))
    expected = [e.request_id for e in q.peek_order()]
    got = []
    while (e := q.try_take()) is not None:
        got.append(e.request_id)
    assert got == expected


# ----------------------------------------------------------------------------- refusal


def test_background_disabled_refuses_low_priority_at_submit() -> None:
    q, _ = make(disable_background=True)
    low = q.submit(req(1, PRIORITY_LOW))
    below = q.submit(req(2, -3))
    high = q.submit(req(3, PRIORITY_HIGH))
    one = q.submit(req(4, 1))
    out = low.poll(0.0)
    assert isinstance(out, PlanFailure) and out.kind is FailureKind.REFUSED
    assert "DISABLE_BACKGROUND_LLM" in out.message
    assert kind_of(below.poll(0.0)) == "refused"
    assert high.poll(0.0) is None and one.poll(0.0) is None
    assert q.depth() == 2
    m = q.metrics()
    assert m.refusals == 2 and m.submitted == 4


def test_refused_request_does_not_supersede_the_agents_queued_one() -> None:
    q, _ = make(disable_background=True)
    urgent = q.submit(req(1, PRIORITY_HIGH))
    q.submit(req(1, PRIORITY_LOW))  # refused
    assert urgent.poll(0.0) is None
    assert q.depth() == 1


@pytest.mark.parametrize(
    ("env", "expected", "problems"),
    [
        ({}, QueueConfig(), 0),
        ({"DISABLE_BACKGROUND_LLM": "1"}, QueueConfig(disable_background=True), 0),
        ({"DISABLE_BACKGROUND_LLM": "off"}, QueueConfig(), 0),
        ({"LLM_MAX_CONCURRENT_REQUESTS": "4"}, QueueConfig(max_concurrent=4), 0),
        ({"LLM_TIMEOUT_MS": "2500"}, QueueConfig(default_timeout_s=2.5), 0),
        ({"LLM_MAX_CONCURRENT_REQUESTS": "zero"}, QueueConfig(), 1),
        ({"LLM_MAX_CONCURRENT_REQUESTS": "0"}, QueueConfig(), 1),
        ({"DISABLE_BACKGROUND_LLM": "maybe"}, QueueConfig(), 1),
        ({"LLM_TIMEOUT_MS": "-5"}, QueueConfig(), 1),
        ({"LLM_TIMEOUT_MS": "nan"}, QueueConfig(), 1),
    ],
)
def test_config_from_env(env: dict[str, str], expected: QueueConfig, problems: int) -> None:
    cfg = QueueConfig.from_env(env)
    assert cfg.max_concurrent == expected.max_concurrent
    assert cfg.disable_background == expected.disable_background
    assert cfg.default_timeout_s == expected.default_timeout_s
    assert len(cfg.problems) == problems
    if problems:
        assert next(iter(env)) in cfg.problems[0]


# ----------------------------------------------------------------------------- supersession


def test_new_request_supersedes_the_agents_queued_one() -> None:
    q, _ = make()
    old = q.submit(req(7, PRIORITY_HIGH))
    other = q.submit(req(8))
    new = q.submit(req(7, PRIORITY_LOW))
    out = old.poll(0.0)
    assert isinstance(out, PlanFailure) and out.kind is FailureKind.SUPERSEDED
    assert str(new.request_id) in out.message
    assert q.depth() == 2 and q.depth_by_priority() == {PRIORITY_LOW: 2}
    taken = {q.try_take().request_id, q.try_take().request_id}  # type: ignore[union-attr]
    assert taken == {new.request_id, other.request_id}
    assert q.metrics().supersessions == 1


def test_running_request_is_not_superseded_by_default() -> None:
    q, _ = make()
    first = q.submit(req(7))
    entry = q.try_take()
    assert entry is not None
    second = q.submit(req(7))
    assert not entry.cancel_requested
    assert q.finish(entry, plan_for(entry))
    assert kind_of(first.poll(0.0)) == "plan"
    assert second.poll(0.0) is None


def test_supersede_running_option_turns_the_running_outcome_into_superseded() -> None:
    q, _ = make(supersede_running=True)
    first = q.submit(req(7))
    entry = q.try_take()
    assert entry is not None
    hooked: list[int] = []
    q.set_cancel_hook(entry, lambda: hooked.append(entry.request_id))
    q.submit(req(7))
    assert entry.cancel_requested and hooked == [entry.request_id]
    assert kind_of(first.poll(0.0)) == "superseded"  # at once, not when the worker reports
    assert not q.finish(entry, plan_for(entry))
    assert kind_of(first.poll(0.0)) == "superseded"
    m = q.metrics()
    assert m.late_reports == 1 and m.duplicate_resolves == 0 and m.running == 0


# ----------------------------------------------------------------------------- cancellation


def test_cancel_queued_resolves_at_once() -> None:
    q, _ = make()
    t = q.submit(req(1))
    assert q.cancel(t.request_id)
    assert kind_of(t.poll(0.0)) == "cancelled"
    assert q.depth() == 0 and q.try_take() is None
    assert not q.cancel(t.request_id)  # already resolved: nothing changes
    assert kind_of(t.poll(0.0)) == "cancelled"


def test_ticket_cancel_on_running_resolves_at_once_calls_hook_and_ignores_late_report() -> None:
    q, _ = make()
    t = q.submit(req(1))
    entry = q.try_take()
    assert entry is not None
    calls: list[str] = []
    q.set_cancel_hook(entry, lambda: calls.append("hook"))
    t.cancel()
    assert entry.cancel_requested and calls == ["hook"]
    out = t.poll(0.0)  # the game sees CANCELLED on its next poll, worker or not
    assert isinstance(out, PlanFailure) and out.kind is FailureKind.CANCELLED
    assert entry.withdrawn and entry.done and q.running() == 0
    assert not q.finish(entry, plan_for(entry))  # the worker's late report is ignored
    assert t.poll(0.0) is out
    assert not q.finish(entry, plan_for(entry))  # a second report is a real duplicate
    m = q.metrics()
    assert m.late_reports == 1 and m.duplicate_resolves == 1 and m.outcomes == {"cancelled": 1}


def test_cancel_before_hook_registration_calls_hook_on_registration() -> None:
    q, _ = make()
    t = q.submit(req(1))
    entry = q.try_take()
    assert entry is not None
    t.cancel()
    calls: list[int] = []
    q.set_cancel_hook(entry, lambda: calls.append(1))
    assert calls == [1]


def test_cancel_unknown_id_is_false() -> None:
    q, _ = make()
    assert not q.cancel(12345)


def test_cancel_after_plan_keeps_the_plan() -> None:
    q, _ = make()
    t = q.submit(req(1))
    entry = q.try_take()
    assert entry is not None
    q.finish(entry, plan_for(entry))
    t.cancel()
    assert kind_of(t.poll(0.0)) == "plan"


# ----------------------------------------------------------------------------- deadlines


def test_request_expired_while_queued_ends_expired_without_running() -> None:
    q, clock = make()
    t = q.submit(req(1, deadline_s=1.0))
    clock.t += 1.5
    assert q.try_take() is None
    out = t.poll(0.0)
    assert isinstance(out, PlanFailure) and out.kind is FailureKind.EXPIRED
    assert "never ran" in out.message
    assert out.timing.started_at is None
    assert q.metrics().timeouts_in_queue == 1


def test_polling_expires_a_queued_request_when_no_worker_comes() -> None:
    q, clock = make()
    t = q.submit(req(1, deadline_s=2.0))
    clock.t += 1.0
    assert t.poll(0.0) is None
    clock.t += 1.0
    assert kind_of(t.poll(0.0)) == "expired"
    assert q.depth() == 0


def test_default_deadline_from_config_and_next_deadline() -> None:
    q, clock = make(default_timeout_s=5.0)
    q.submit(req(1))
    q.submit(req(2, deadline_s=3.0))
    assert q.next_deadline() == pytest.approx(clock.t + 3.0)
    clock.t += 4.0
    assert q.expire_due() == 1
    assert q.next_deadline() == pytest.approx(clock.t - 4.0 + 5.0)
    clock.t += 2.0
    assert q.expire_due() == 1
    assert q.next_deadline() is None


def test_take_skips_expired_entries_and_returns_the_next_live_one() -> None:
    q, clock = make()
    late = q.submit(req(1, PRIORITY_HIGH, deadline_s=1.0))
    ok = q.submit(req(2, PRIORITY_LOW, deadline_s=10.0))
    clock.t += 2.0
    e = q.try_take()
    assert e is not None and e.request_id == ok.request_id
    assert kind_of(late.poll(0.0)) == "expired"


def test_remaining_is_counted_from_submission() -> None:
    q, clock = make()
    q.submit(req(1, deadline_s=10.0))
    clock.t += 4.0
    e = q.try_take()
    assert e is not None and e.remaining(clock()) == pytest.approx(6.0)


# ----------------------------------------------------------------------------- exactly once


def test_second_finish_is_rejected_and_counted() -> None:
    q, _ = make()
    t = q.submit(req(1))
    e = q.try_take()
    assert e is not None
    assert q.finish(e, plan_for(e))
    assert not q.finish(e, fail_for(e))
    assert kind_of(t.poll(0.0)) == "plan"
    m = q.metrics()
    assert m.duplicate_resolves == 1 and m.resolved == 1 and m.outcomes == {"plan": 1}


def test_finish_with_another_requests_outcome_is_an_error() -> None:
    q, _ = make()
    q.submit(req(1))
    q.submit(req(2))
    a, b = q.try_take(), q.try_take()
    assert a is not None and b is not None
    with pytest.raises(ValueError, match="given to request"):
        q.finish(a, plan_for(b))
    assert a.state is EntryState.RUNNING


def test_listener_sees_one_resolution_per_request_and_survives_a_failing_listener() -> None:
    q, _ = make()
    seen: Counter[int] = Counter()

    def bad(ev: QueueEvent, e: QueueEntry) -> None:
        raise RuntimeError("listener bug")

    def count(ev: QueueEvent, e: QueueEntry) -> None:
        if ev is QueueEvent.RESOLVED:
            seen[e.request_id] += 1

    q.add_listener(bad)
    q.add_listener(count)
    t1 = q.submit(req(1))
    t2 = q.submit(req(1))  # supersedes t1
    e = q.try_take()
    assert e is not None
    q.finish(e, plan_for(e))
    q.finish(e, plan_for(e))
    assert seen == {t1.request_id: 1, t2.request_id: 1}


# ----------------------------------------------------------------------------- batches, retry


def test_take_batch_keeps_to_the_heads_priority_unless_mixing() -> None:
    q, _ = make()
    for agent in (1, 2, 3):
        q.submit(req(agent, PRIORITY_LOW))
    q.submit(req(9, PRIORITY_HIGH))
    batch = q.take_batch(4)
    assert [e.agent_id for e in batch] == [9]
    batch = q.take_batch(2)
    assert [e.agent_id for e in batch] == [3, 2]  # newest first
    assert all(e.batch_size == 2 and e.state is EntryState.RUNNING for e in batch)
    q.submit(req(5, PRIORITY_HIGH))
    mixed = q.take_batch(4, mix_priorities=True)
    assert [e.agent_id for e in mixed] == [5, 1]


def test_requeued_member_is_retried_alone_with_the_same_ticket() -> None:
    q, _ = make()
    tickets = {a: q.submit(req(a)) for a in (1, 2, 3)}
    batch = q.take_batch(3)
    broken = next(e for e in batch if e.agent_id == 2)
    for e in batch:
        if e is not broken:
            q.finish(e, plan_for(e))
    q.submit(req(4))
    assert q.requeue(broken)
    assert tickets[2].poll(0.0) is None
    first = q.take_batch(3)
    second = q.take_batch(3)
    # Agent 4 is newer so it leads; the solo retry does not join its batch but runs alone.
    assert [e.agent_id for e in first] == [4]
    assert [e.agent_id for e in second] == [2] and second[0] is broken
    assert broken.attempts == 2 and broken.batch_size == 1
    q.finish(broken, plan_for(broken))
    assert kind_of(tickets[2].poll(0.0)) == "plan"
    assert q.metrics().requeues == 1


def test_requeue_resolves_instead_when_superseded_cancelled_or_late() -> None:
    q, clock = make()
    t1 = q.submit(req(1, deadline_s=5.0))
    t2 = q.submit(req(2, deadline_s=5.0))
    t3 = q.submit(req(3, deadline_s=5.0))
    e1, e2, e3 = sorted(q.take_batch(3), key=lambda e: e.agent_id)
    newer = q.submit(req(1))
    assert not q.requeue(e1)
    assert kind_of(t1.poll(0.0)) == "superseded"
    t2.cancel()
    assert not q.requeue(e2)
    assert kind_of(t2.poll(0.0)) == "cancelled"
    clock.t += 6.0
    assert not q.requeue(e3)
    assert kind_of(t3.poll(0.0)) == "timeout"
    assert newer.poll(0.0) is None
    assert not q.requeue(e3)  # not running any more: nothing changes


# ----------------------------------------------------------------------------- close, metrics


def test_close_cancels_queued_flags_running_refuses_new() -> None:
    q, _ = make()
    running_t = q.submit(req(1))
    running = q.try_take()
    assert running is not None
    queued_t = q.submit(req(2))
    assert q.close() == 1
    assert kind_of(queued_t.poll(0.0)) == "cancelled"
    assert running.cancel_requested and kind_of(running_t.poll(0.0)) == "cancelled"
    late = q.submit(req(3, PRIORITY_HIGH))
    assert kind_of(late.poll(0.0)) == "refused"
    assert q.take(timeout=0.01) is None
    assert not q.finish(running, plan_for(running))
    assert kind_of(running_t.poll(0.0)) == "cancelled"
    assert q.close() == 0 and q.live() == 0


def test_fail_queued_resolves_every_waiting_request() -> None:
    q, _ = make()
    ts = [q.submit(req(a)) for a in range(4)]
    running = q.try_take()
    assert q.fail_queued(FailureKind.OFFLINE, "backend gone") == 3
    assert sorted(kind_of(t.poll(0.0)) or "-" for t in ts) == ["-", "offline", "offline", "offline"]
    assert running is not None and running.state is EntryState.RUNNING


def test_metrics_wait_service_and_throughput() -> None:
    q, clock = make(throughput_window_s=10.0)
    q.submit(req(1, PRIORITY_HIGH))
    q.submit(req(2))
    q.submit(req(3))
    assert q.metrics().depth_by_priority == {PRIORITY_HIGH: 1, PRIORITY_LOW: 2}
    clock.t += 2.0
    a = q.try_take()
    clock.t += 1.0
    b = q.try_take()
    assert a is not None and b is not None
    clock.t += 3.0
    q.finish(a, plan_for(a))
    q.finish(b, fail_for(b))
    m = q.metrics()
    assert m.depth == 1 and m.running == 0 and m.started == 2
    assert m.wait_max_s == pytest.approx(3.0)
    assert m.wait_mean_s == pytest.approx(2.5)
    assert m.service_mean_s == pytest.approx((4.0 + 3.0) / 2)
    assert m.throughput_per_s == pytest.approx(2 / 10.0)
    assert m.outcomes == {"plan": 1, "parse": 1}
    clock.t += 11.0
    assert q.metrics().throughput_per_s == 0.0


def test_heap_does_not_grow_with_superseded_requests() -> None:
    q, _ = make()
    for _ in range(5000):
        q.submit(req(1))
    assert q.depth() == 1
    assert len(q._heap) < 200 and len(q._deadlines) < 200


def test_wait_blocks_until_resolved_and_expires_a_queued_deadline() -> None:
    q = RequestQueue(QueueConfig())
    t = q.submit(req(1))
    assert t.wait(0.01) is None
    th = threading.Thread(target=lambda: q.finish(e, plan_for(e)) if (e := q.take(1.0)) else None)
    th.start()
    assert kind_of(t.wait(5.0)) == "plan"
    th.join(5.0)
    late = q.submit(req(2, deadline_s=0.05))
    assert kind_of(late.wait(5.0)) == "expired"  # nobody took it: the wait expires it


# ----------------------------------------------------------------------------- threads / asyncio


def test_blocking_take_is_woken_by_submit() -> None:
    q = RequestQueue(QueueConfig())
    got: list[QueueEntry | None] = []
    th = threading.Thread(target=lambda: got.append(q.take(timeout=5.0)))
    th.start()
    q.submit(req(1))
    th.join(5.0)
    assert not th.is_alive() and got and got[0] is not None and got[0].agent_id == 1


def test_blocking_take_returns_none_on_close() -> None:
    q = RequestQueue(QueueConfig())
    got: list[QueueEntry | None] = [q.submit(req(0)).entry]
    th = threading.Thread(target=lambda: (q.take(timeout=5.0), got.append(q.take(timeout=5.0))))
    th.start()
    q.close()
    th.join(5.0)
    assert not th.is_alive() and got[-1] is None


def test_async_worker_pool_serves_submits_from_another_thread() -> None:
    """The service shape: a loop thread with max_concurrent workers, the game thread submits."""
    q = RequestQueue(QueueConfig(max_concurrent=2))
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    state = {"running": 0, "peak": 0}
    waiter_box: list[AsyncQueueWaiter] = []

    async def worker(waiter: AsyncQueueWaiter) -> None:
        while (entry := await waiter.take()) is not None:
            state["running"] += 1
            state["peak"] = max(state["peak"], state["running"])
            await asyncio.sleep(0.001)
            state["running"] -= 1
            q.finish(entry, plan_for(entry))

    async def main() -> None:
        waiter = AsyncQueueWaiter(q)
        waiter_box.append(waiter)
        workers = [asyncio.create_task(worker(waiter)) for _ in range(q.config.max_concurrent)]
        ready.set()
        await asyncio.gather(*workers)
        waiter.detach()

    th = threading.Thread(target=lambda: loop.run_until_complete(main()))
    th.start()
    assert ready.wait(5.0)
    tickets = [q.submit(req(a, random.choice([0, 10]))) for a in range(60)]
    for _ in range(500):
        if all(t.poll(0.0) is not None for t in tickets):
            break
        threading.Event().wait(0.01)
    q.close()
    th.join(5.0)
    loop.close()
    assert not th.is_alive()
    assert [kind_of(t.poll(0.0)) for t in tickets] == ["plan"] * 60
    assert 1 <= state["peak"] <= 2


def test_async_take_batch_returns_empty_when_closed() -> None:
    async def main() -> list[QueueEntry]:
        q = RequestQueue(QueueConfig())
        waiter = AsyncQueueWaiter(q)
        task = asyncio.create_task(waiter.take_batch(4))
        await asyncio.sleep(0)
        q.close()
        return await asyncio.wait_for(task, 5.0)

    assert asyncio.run(main()) == []


@pytest.mark.parametrize("seed", [1, 2])
def test_threaded_stress_every_request_resolved_exactly_once(seed: int) -> None:
    """Producers submit and cancel, consumers take (single and batch), finish, sometimes
    finish twice or requeue, all concurrently. Bounded in count; joins have timeouts."""
    q = RequestQueue(QueueConfig(default_timeout_s=30.0))
    resolved: Counter[int] = Counter()
    lock = threading.Lock()

    def listen(ev: QueueEvent, e: QueueEntry) -> None:
        if ev is QueueEvent.RESOLVED:
            with lock:
                resolved[e.request_id] += 1

    q.add_listener(listen)
    tickets: list[list[object]] = [[], []]
    doubles = [0, 0]
    stop = threading.Event()

    def producer(k: int) -> None:
        rng = random.Random(seed * 10 + k)
        mine = tickets[k]
        for _ in range(1500):
            t = q.submit(req(rng.randrange(40), rng.choice([-1, 0, 5, 10])))
            mine.append(t)
            if rng.random() < 0.15:
                mine[rng.randrange(len(mine))].cancel()  # type: ignore[attr-defined]

    def consumer(k: int) -> None:
        rng = random.Random(seed * 100 + k)
        while not stop.is_set() or q.depth():
            batch = q.take_batch(rng.choice([1, 3])) if rng.random() < 0.5 else []
            if not batch:
                e = q.take(timeout=0.01)
                batch = [e] if e is not None else []
            for e in batch:
                r = rng.random()
                if r < 0.1:
                    # False means it is DONE already (withdrawn, superseded, late): a worker
                    # must not finish it then. (Finishing it anyway was this test's own bug:
                    # it counted duplicates the test never made on purpose.)
                    if not q.requeue(e):
                        assert e.done
                    continue
                if not q.finish(e, plan_for(e) if r < 0.8 else fail_for(e)):
                    assert e.withdrawn  # cancelled while this consumer ran it
                if rng.random() < 0.1:
                    assert not q.finish(e, plan_for(e))
                    doubles[k] += 1

    producers = [threading.Thread(target=producer, args=(k,)) for k in range(2)]
    consumers = [threading.Thread(target=consumer, args=(k,)) for k in range(2)]
    for th in producers + consumers:
        th.start()
    for th in producers:
        th.join(60.0)
    stop.set()
    for th in consumers:
        th.join(60.0)
    assert not any(th.is_alive() for th in producers + consumers)
    q.close()
    all_tickets = tickets[0] + tickets[1]
    outcomes = [t.poll(0.0) for t in all_tickets]  # type: ignore[attr-defined]
    assert all(o is not None for o in outcomes)
    ids = [t.request_id for t in all_tickets]  # type: ignore[attr-defined]
    assert len(set(ids)) == len(ids) == 3000
    assert all(resolved[i] == 1 for i in ids) and len(resolved) == 3000
    m = q.metrics()
    assert m.submitted == m.resolved == 3000
    assert sum(m.outcomes.values()) == 3000
    assert m.duplicate_resolves == sum(doubles)
    assert m.late_reports <= m.cancellations
    assert q.live() == 0 and q.depth() == 0 and q.running() == 0


# ----------------------------------------------------------------------------- state machine


@dataclass
class _M:
    """Model of one request."""

    rid: int
    agent: int
    prio: int
    seq: int
    deadline: float
    state: str = "queued"  # queued | running | done
    label: str | None = None
    cancel: str | None = None
    """How it was withdrawn while running (it is then done at once)."""
    late: bool = False
    """The worker's late report on a withdrawn request happened."""
    solo: bool = False
    ticket: object = field(default=None, repr=False)


class QueueMachine(RuleBasedStateMachine):
    """A plain-Python model of the queue, checked against the real one after every step."""

    @initialize(
        disable=st.booleans(), supersede_running=st.booleans()
    )
    def setup(self, disable: bool, supersede_running: bool) -> None:
        self.clock = FakeClock()
        self.cfg = QueueConfig(
            disable_background=disable, supersede_running=supersede_running,
            default_timeout_s=5.0,
        )
        self.q = RequestQueue(self.cfg, clock=self.clock)
        self.resolved: Counter[int] = Counter()
        self.q.add_listener(
            lambda ev, e: self.resolved.update([e.request_id]) if ev is QueueEvent.RESOLVED
            else None
        )
        self.m: dict[int, _M] = {}
        self.seq = 0
        self.dups = 0
        self.late = 0
        self.closed = False

    # -- model helpers
    def _queued(self) -> list[_M]:
        return sorted(
            (r for r in self.m.values() if r.state == "queued"), key=lambda r: (-r.prio, -r.seq)
        )

    def _done(self, r: _M, label: str) -> None:
        r.state, r.label = "done", label

    def _pop_model(self) -> _M | None:
        for r in self._queued():
            if self.clock.t >= r.deadline:
                self._done(r, "expired")
                continue
            return r
        return None

    def _start(self, r: _M) -> None:
        r.state = "running"

    # -- rules
    @rule(
        agent=st.integers(0, 4),
        prio=st.sampled_from([-3, PRIORITY_LOW, 1, 5, PRIORITY_HIGH, 42]),
        deadline=st.sampled_from([None, 0.5, 2.0, 10.0]),
    )
    def submit(self, agent: int, prio: int, deadline: float | None) -> None:
        t = self.q.submit(req(agent, prio, deadline))
        seq = self.seq
        self.seq += 1
        r = _M(t.request_id, agent, prio, seq, self.clock.t + (deadline or 5.0), ticket=t)
        self.m[r.rid] = r
        if self.closed or (self.cfg.disable_background and prio <= PRIORITY_LOW):
            self._done(r, "refused")
            return
        for old in self.m.values():
            if old is not r and old.agent == agent and old.state == "queued":
                self._done(old, "superseded")
            if (
                self.cfg.supersede_running and old is not r and old.agent == agent
                and old.state == "running"
            ):
                old.cancel = "superseded"
                self._done(old, "superseded")

    @rule()
    def take(self) -> None:
        expected = self._pop_model()
        got = self.q.try_take()
        if expected is None:
            assert got is None
        else:
            assert got is not None and got.request_id == expected.rid
            self._start(expected)

    @rule(n=st.integers(1, 4), mix=st.booleans())
    def take_batch(self, n: int, mix: bool) -> None:
        head = self._pop_model()
        expected: list[_M] = []
        if head is not None:
            expected.append(head)
            for r in [x for x in self._queued() if x is not head]:
                if head.solo or len(expected) >= n:
                    break
                if self.clock.t >= r.deadline:
                    self._done(r, "expired")
                    continue
                if not mix and r.prio != head.prio:
                    break
                if r.solo:
                    continue
                expected.append(r)
        got = self.q.take_batch(n, mix_priorities=mix)
        assert [e.request_id for e in got] == [r.rid for r in expected]
        for r in expected:
            self._start(r)

    @rule(data=st.data(), ok=st.booleans())
    def finish(self, data: st.DataObject, ok: bool) -> None:
        running = [r for r in self.m.values() if r.state == "running"]
        if not running:
            return
        r = data.draw(st.sampled_from(running))
        entry = r.ticket.entry  # type: ignore[attr-defined]
        assert self.q.finish(entry, plan_for(entry) if ok else fail_for(entry))
        self._done(r, "plan" if ok else "parse")

    @rule(data=st.data())
    def finish_again(self, data: st.DataObject) -> None:
        done = [r for r in self.m.values() if r.state == "done"]
        if not done:
            return
        r = data.draw(st.sampled_from(done))
        entry = r.ticket.entry  # type: ignore[attr-defined]
        assert not self.q.finish(entry, plan_for(entry))
        if r.cancel is not None and not r.late:
            r.late = True  # the worker's report on a withdrawn request: expected
            self.late += 1
        else:
            self.dups += 1

    @rule(data=st.data())
    def cancel(self, data: st.DataObject) -> None:
        if not self.m:
            return
        r = data.draw(st.sampled_from(sorted(self.m.values(), key=lambda x: x.rid)))
        expect = r.state != "done"
        assert self.q.cancel(r.rid) == expect
        if r.state == "queued":
            self._done(r, "cancelled")
        elif r.state == "running":
            r.cancel = "cancelled"
            self._done(r, "cancelled")

    @rule(data=st.data())
    def late_requeue(self, data: st.DataObject) -> None:
        withdrawn = [r for r in self.m.values() if r.cancel is not None and not r.late]
        if not withdrawn:
            return
        r = data.draw(st.sampled_from(sorted(withdrawn, key=lambda x: x.rid)))
        assert not self.q.requeue(r.ticket.entry)  # type: ignore[attr-defined]
        r.late = True
        self.late += 1

    @rule(data=st.data())
    def requeue(self, data: st.DataObject) -> None:
        running = [r for r in self.m.values() if r.state == "running"]
        if not running:
            return
        r = data.draw(st.sampled_from(running))
        newer = any(x.agent == r.agent and x.state == "queued" for x in self.m.values())
        ok = self.q.requeue(r.ticket.entry)  # type: ignore[attr-defined]
        if newer:
            expect = "superseded"
        elif self.clock.t >= r.deadline:
            expect = "timeout"
        else:
            expect = None
        assert ok == (expect is None)
        if expect is None:
            r.state, r.solo = "queued", True
        else:
            self._done(r, expect)

    @rule(dt=st.sampled_from([0.1, 0.6, 3.0]))
    def advance(self, dt: float) -> None:
        self.clock.t += dt

    @rule()
    def expire(self) -> None:
        due = [r for r in self._queued() if self.clock.t >= r.deadline]
        assert self.q.expire_due() == len(due)
        for r in due:
            self._done(r, "expired")

    @rule(data=st.data())
    def poll(self, data: st.DataObject) -> None:
        if not self.m:
            return
        r = data.draw(st.sampled_from(sorted(self.m.values(), key=lambda x: x.rid)))
        if r.state == "queued" and self.clock.t >= r.deadline:
            for x in self._queued():
                if self.clock.t >= x.deadline:
                    self._done(x, "expired")
        r.ticket.poll(0.0)  # type: ignore[attr-defined]

    @precondition(lambda self: not self.closed)
    @rule()
    def close(self) -> None:
        self.q.close()
        self.closed = True
        for r in self.m.values():
            if r.state == "queued":
                self._done(r, "cancelled")
            elif r.state == "running":
                r.cancel = "cancelled"
                self._done(r, "cancelled")

    # -- invariants
    @invariant()
    def states_and_outcomes_match(self) -> None:
        for r in self.m.values():
            entry = r.ticket.entry  # type: ignore[attr-defined]
            assert entry.state.value == r.state, (r, entry)
            assert kind_of(entry.outcome) == r.label
            assert self.resolved[r.rid] == (1 if r.state == "done" else 0)
            assert entry.cancel_requested == (r.cancel is not None)
            assert entry.withdrawn == (r.cancel is not None)

    @invariant()
    def counts_match(self) -> None:
        queued = self._queued()
        assert self.q.depth() == len(queued)
        assert self.q.depth_by_priority() == dict(Counter(r.prio for r in queued))
        assert self.q.running() == sum(r.state == "running" for r in self.m.values())
        assert [e.request_id for e in self.q.peek_order()] == [r.rid for r in queued]
        m = self.q.metrics()
        assert m.duplicate_resolves == self.dups
        assert m.late_reports == self.late
        assert m.submitted == len(self.m)
        assert m.resolved == sum(r.state == "done" for r in self.m.values())
        labels = Counter(r.label for r in self.m.values() if r.label is not None)
        assert m.outcomes == dict(labels)


TestQueueMachine = QueueMachine.TestCase
TestQueueMachine.settings = settings(
    max_examples=150, stateful_step_count=40, deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
