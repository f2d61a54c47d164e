"""Overhead per operation of the LLM request queue, against a plain heapq / deque (same run).

The queue does more than a heap: a lock, per-priority depth, one-request-per-agent
supersession, deadlines, a per-entry state machine for exactly-once outcomes and metrics. This
prints what that costs per operation, the median over rounds of ``--ops`` operations each, next
to the bare structures doing the nearest equivalent work, and the ratio. Target: every
operation under 20 us.

    python bench/queue_overhead.py [--ops 2000] [--rounds 25]
"""

from __future__ import annotations

import argparse
import heapq
import itertools
import statistics
import time
from collections import deque
from collections.abc import Callable, Iterable

from _results import Results, add_json_flag, fmt
from _targets import Targets, add_check_flag

from esper_arbiter.components.actions import PlanIntent, Wait
from esper_arbiter.components.llm import (
    PRIORITY_HIGH,
    PRIORITY_LOW,
    FailureKind,
    PlanReady,
    PlanRequest,
)
from esper_arbiter.components.snapshot import GridView, UnitView, WorldSnapshot
from esper_arbiter.systems.llm.request_queue import (
    QueueConfig,
    QueueEntry,
    QueueTicket,
    RequestQueue,
)
from esper_arbiter.systems.llm.timeline import RequestTimeline

TARGET_US = 20.0

SNAP = WorldSnapshot(
    t=0.0,
    me=UnitView(1, 2, 3, 80, 80, "ally"),
    leader=None,
    enemies=(),
    allies=(),
    grid=GridView(20, 10, frozenset(), frozenset()),
)
PLAN = PlanIntent("p", (Wait(1.0),))


def requests(n: int, agents: int) -> list[PlanRequest]:
    prios = (PRIORITY_LOW, PRIORITY_HIGH, 5)
    return [
        PlanRequest(agent_id=i % agents, snapshot=SNAP, priority=prios[i % 3]) for i in range(n)
    ]


def consume(it: Iterable[object]) -> None:
    """Run an iterator to its end (same cost for the queue and the baselines)."""
    deque(it, maxlen=0)


def per_op(rounds: int, ops: int, setup: Callable[[], Callable[[], None]]) -> float:
    """Median over rounds of (time of one timed block / ops), in microseconds. ``setup`` runs
    untimed and returns the block to time."""
    samples = []
    for _ in range(rounds):
        block = setup()
        t0 = time.perf_counter_ns()
        block()
        samples.append((time.perf_counter_ns() - t0) / ops / 1000.0)
    return statistics.median(samples)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ops", type=int, default=2000, help="operations per timed block")
    ap.add_argument("--rounds", type=int, default=25, help="timed blocks per figure")
    add_check_flag(ap)
    add_json_flag(ap)
    args = ap.parse_args()
    if args.ops < 1 or args.rounds < 1:
        ap.error("--ops and --rounds must be >= 1")
    n, rounds = args.ops, args.rounds
    distinct = requests(n, agents=n)  # every request its own agent: no supersession
    same64 = requests(n, agents=64)  # 64 agents: most submits supersede a queued one

    # -- the queue ----------------------------------------------------------------------
    def q_submit() -> Callable[[], None]:
        q = RequestQueue(QueueConfig())
        submit = q.submit
        return lambda: consume(submit(r) for r in distinct)

    def q_submit_supersede() -> Callable[[], None]:
        q = RequestQueue(QueueConfig())
        submit = q.submit
        return lambda: consume(submit(r) for r in same64)

    def filled() -> RequestQueue:
        q = RequestQueue(QueueConfig())
        for r in distinct:
            q.submit(r)
        return q

    def q_take() -> Callable[[], None]:
        q = filled()
        take = q.try_take
        return lambda: consume(take() for _ in range(n))

    def q_finish() -> Callable[[], None]:
        q = filled()
        entries = [q.try_take() for _ in range(n)]
        outs = [(e, PlanReady(e.request_id, PLAN, "bench", timing=e.timing)) for e in entries if e]
        finish = q.finish
        return lambda: consume(finish(e, o) for e, o in outs)

    def q_cancel() -> Callable[[], None]:
        q = RequestQueue(QueueConfig())
        ids = [q.submit(r).request_id for r in distinct]
        cancel = q.cancel
        return lambda: consume(cancel(i) for i in ids)

    def q_poll() -> Callable[[], None]:
        q = filled()
        tickets = [QueueTicket(q, e) for e in q.peek_order()]
        return lambda: consume(t.poll(0.0) for t in tickets)

    def cycle(with_timeline: bool) -> Callable[[], Callable[[], None]]:
        def setup() -> Callable[[], None]:
            q = RequestQueue(QueueConfig())
            if with_timeline:
                q.add_listener(RequestTimeline().observe)

            def block() -> None:
                submit, take, finish = q.submit, q.try_take, q.finish
                for r in distinct:
                    submit(r)
                    e = take()
                    assert e is not None
                    finish(e, PlanReady(e.request_id, PLAN, "bench", timing=e.timing))

            return block

        return setup

    # -- the baselines: heapq / deque doing the nearest equivalent work -----------------------
    def h_push() -> Callable[[], None]:
        heap: list[tuple[int, int, PlanRequest]] = []
        seq = itertools.count()
        push = heapq.heappush
        return lambda: consume(push(heap, (-r.priority, -next(seq), r)) for r in distinct)

    def h_pop() -> Callable[[], None]:
        seq = itertools.count()
        heap = [(-r.priority, -next(seq), r) for r in distinct]
        heapq.heapify(heap)
        pop = heapq.heappop
        return lambda: consume(pop(heap) for _ in range(n))

    def h_cycle() -> Callable[[], None]:
        heap: list[tuple[int, int, PlanRequest]] = []
        seq = itertools.count()
        push, pop = heapq.heappush, heapq.heappop
        done: deque[PlanRequest] = deque()

        def block() -> None:
            for r in distinct:
                push(heap, (-r.priority, -next(seq), r))
                done.append(pop(heap)[2])

        return block

    def d_append() -> Callable[[], None]:
        dq: deque[PlanRequest] = deque()
        append = dq.append
        return lambda: consume(append(r) for r in distinct)

    def d_pop() -> Callable[[], None]:
        dq: deque[PlanRequest] = deque(distinct)
        pop = dq.pop
        return lambda: consume(pop() for _ in range(n))

    def attr_read() -> Callable[[], None]:
        entries = [QueueEntry(i, r, i, 0.0, 60.0) for i, r in enumerate(distinct)]
        return lambda: consume(e.outcome for e in entries)

    rows: list[tuple[str, float, str, float]] = []

    def row(name: str, setup: Callable[[], Callable[[], None]], base_name: str,
            base_setup: Callable[[], Callable[[], None]]) -> None:
        rows.append((name, per_op(rounds, n, setup), base_name, per_op(rounds, n, base_setup)))

    row("submit", q_submit, "heappush", h_push)
    row("submit (supersedes)", q_submit_supersede, "heappush", h_push)
    row("try_take", q_take, "heappop", h_pop)
    row("finish", q_finish, "deque.append", d_append)
    row("cancel (queued)", q_cancel, "deque.pop", d_pop)
    row("ticket.poll (pending)", q_poll, "attribute read", attr_read)
    row("submit+take+finish", cycle(False), "heappush+heappop+append", h_cycle)
    row("  ... + timeline listener", cycle(True), "heappush+heappop+append", h_cycle)

    # Single submits timed one by one: the game thread's view, including the tail.
    q = RequestQueue(QueueConfig())
    singles = []
    for r in distinct * 5:
        t0 = time.perf_counter_ns()
        q.submit(r)
        singles.append((time.perf_counter_ns() - t0) / 1000.0)
        if q.depth() > n:
            q.fail_queued(FailureKind.CANCELLED, "bench reset")
    singles.sort()

    print(f"queue overhead per operation: median of {rounds} rounds x {n} ops, microseconds")
    print(f"{'operation':28} {'queue us':>9}   {'baseline':26} {'base us':>8} {'ratio':>7}")
    worst = 0.0
    for name, us, base_name, base_us in rows:
        per_request = us / 3 if name.strip().startswith(("submit+", "...")) else us
        worst = max(worst, per_request)
        ratio = us / base_us if base_us > 0 else float("inf")
        print(f"{name:28} {us:9.2f}   {base_name:26} {base_us:8.3f} {ratio:6.1f}x")
    p50 = singles[len(singles) // 2]
    p99 = singles[int(len(singles) * 0.99)]
    print(f"submit timed one by one ({len(singles)} calls): p50 {p50:.2f} us, p99 {p99:.2f} us")
    cyc, base_cyc = rows[6][1], rows[6][3]
    print(f"ratio queue/heapq (submit+take+finish): {cyc / base_cyc:.1f}x")
    targets = Targets()
    res = Results("queue_overhead", "Priority queue cost per operation", targets)
    ok = res.target(f"worst per-operation cost < {TARGET_US:.0f} us", worst < TARGET_US,
                    f"{fmt(worst)} us")
    res.table(f"Microseconds per operation, median of {rounds} rounds x {n} operations",
              ["operation", "queue", "baseline", "baseline us", "ratio"],
              [[name.strip(), fmt(us), base_name, fmt(base_us, 3),
                f"{fmt(us / base_us if base_us > 0 else float('inf'), 1)}x"]
               for name, us, base_name, base_us in rows])
    res.summary(f"submit+take+finish {fmt(cyc)} us ({fmt(cyc / base_cyc, 1)}x heapq)")
    res.write(args.json)
    print(
        f"worst per-operation cost {worst:.2f} us: "
        f"{'PASS' if ok else 'FAIL'} (target < {TARGET_US:.0f} us)"
    )
    return targets.finish(args.check)


if __name__ == "__main__":
    raise SystemExit(main())
