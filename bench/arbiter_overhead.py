"""Per-frame cost of Perception + LlmPoll + Arbiter against a bare esper loop (same run).

Steady state in GOAP mode: N agents hold a long step (nobody finishes it), so the systems do
what they do on a normal frame: refresh perceptions, poll (no requests: LLM off), and let the
few agents whose think time came re-decide with GOAP. Then the same agents each carry out a
model plan's step (ExecutingLLM), which must cost what a GOAP step costs. The bare loop
touches the same entities with the same component query and does trivial work. Also: cold vs
cached GOAP plan. Frames are timed in CPU seconds of this thread, as in ``game_scale.py``
(a wall clock also counts the time other processes held the core).

    python bench/arbiter_overhead.py [--agents 1000 10000] [--frames 120]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections import Counter
from collections.abc import Callable

import esper
from _results import Results, add_json_flag, fmt
from _targets import Targets, add_check_flag

from esper_arbiter.components import (
    Agent,
    Ammo,
    ArbiterState,
    GameClock,
    Health,
    Intent,
    IntentStatus,
    Leader,
    MapGrid,
    Mode,
    Objective,
    PlanIntent,
    Position,
    Team,
    Wait,
)
from esper_arbiter.systems.perception import build_snapshot
from esper_arbiter.systems.plugin import install
from esper_arbiter.systems.presets.squad import squad_brain

DT = 1.0 / 60.0


class BareLoop(esper.Processor):
    """The floor: iterate the agents' components and read them, nothing else."""

    def __init__(self) -> None:
        self.acc = 0.0

    def process(self, *args: object) -> None:
        acc = 0.0
        for _, (_agent, pos, hp, _team) in esper.get_components(Agent, Position, Health, Team):
            acc += pos.x + hp.hp
        self.acc = acc


def populate(n: int) -> int:
    """A square-ish field of ``n`` agents around a player, a few enemies far off, some walls."""
    side = int(n**0.5) + 1
    width, height = side * 2 + 20, side * 2 + 20
    walls = frozenset((width // 2, y) for y in range(2, height - 2))
    esper.create_entity(GameClock(0.0))
    esper.create_entity(MapGrid(width, height, walls, frozenset(), {"exit": (width - 2, 1)},
                                Objective("exit")))
    player = esper.create_entity(Leader(), Position(1, 1), Health(100, 100), Team("blue"))
    for i in range(n):
        x, y = 2 + (i % side) * 2 % (width // 2 - 2), 2 + (i // side) * 2 % (height - 4)
        esper.create_entity(Agent(use_llm=False), Position(x, y), Health(80, 80), Team("blue"),
                            Ammo(30, 30))
    for j in range(8):
        esper.create_entity(Position(width - 3, 2 + j * (height - 4) // 8), Health(60, 60),
                            Team("red"))
    return player


def time_frames(frames: int) -> list[float]:
    clock = esper.get_component(GameClock)[0][1]
    out = []
    for _ in range(frames):
        clock.t += DT
        t0 = time.thread_time()  # CPU time of this thread: what the frame costs a core,
        esper.process()  # not the moments a shared machine gave the core to someone else
        out.append(time.thread_time() - t0)
    return out


def run_model_plans() -> None:
    """Put every agent in ExecutingLLM, carrying out the first step of a long model plan (as
    if a plan had just arrived), so the frames time the ExecutingLLM steady state."""
    t = esper.get_component(GameClock)[0][1].t
    for _, (state, intent) in esper.get_components(ArbiterState, Intent):
        step = Wait(seconds=10.0)
        state.mode, state.mode_since = Mode.EXECUTING_LLM, t
        state.plan = PlanIntent("bench", (step, step, step))
        state.step_index, state.next_think_at = 0, t
        state.wake()
        intent.step, intent.status, intent.issued_at = step, IntentStatus.RUNNING, t
        intent.mode, intent.label = Mode.EXECUTING_LLM, state.label


def measure(n: int, frames: int) -> tuple[float, float, float]:
    """Median frame time with every agent in GOAP, then in ExecutingLLM, and the bare loop."""
    esper.switch_world(f"bench-arbiter-{n}")
    populate(n)
    install(service=None)
    time_frames(90)  # warm-up: first decisions, caches, staggered think times settle
    modes = Counter(state.mode.value for _, state in esper.get_component(ArbiterState))
    assert modes == {"GOAP": n}, f"expected all {n} agents in GOAP, got {dict(modes)}"
    arb = statistics.median(time_frames(frames))
    run_model_plans()
    time_frames(30)  # the first look at each running step, spread over think times
    modes = Counter(state.mode.value for _, state in esper.get_component(ArbiterState))
    assert modes == {"ExecutingLLM": n}, f"expected ExecutingLLM, got {dict(modes)}"
    llm = statistics.median(time_frames(frames))
    esper.switch_world(f"bench-bare-{n}")
    populate(n)
    esper.add_processor(BareLoop())
    time_frames(30)
    bare = statistics.median(time_frames(frames))
    esper.switch_world("default")
    esper.delete_world(f"bench-arbiter-{n}")
    esper.delete_world(f"bench-bare-{n}")
    return arb, llm, bare


def median_us(fn: Callable[[], object], repeat: int) -> float:
    samples = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t0)
    return statistics.median(samples) * 1e6


def goap_plan_costs() -> tuple[float, float]:
    """Cold (cache cleared) and cached GOAP decisions on the hello_companion opening."""
    esper.switch_world("bench-goap")
    esper.create_entity(GameClock(0.0))
    esper.create_entity(MapGrid(20, 10, frozenset((6, y) for y in range(1, 9)),
                                frozenset({(5, 2), (7, 3)}), {"exit": (15, 8)}, Objective("exit")))
    esper.create_entity(Leader(), Position(2, 2), Health(100, 100), Team("blue"))
    me = esper.create_entity(Position(2, 3), Health(80, 80), Team("blue"), Ammo(30, 30))
    esper.create_entity(Position(12, 2), Health(60, 60), Team("red"))
    snap = build_snapshot(me, 0.0)
    assert snap is not None
    brain = squad_brain()

    def cold() -> None:
        brain.planner.clear_cache()
        brain.decide(snap)

    def warm() -> None:
        brain.decide(snap)

    cold_us = median_us(cold, 300)
    warm()
    warm_us = median_us(warm, 3000)
    def plan_cold_once() -> None:
        brain.planner.clear_cache()
        brain.plan_only(snap)

    plan_cold = median_us(plan_cold_once, 300)
    brain.plan_only(snap)
    plan_warm = median_us(lambda: brain.plan_only(snap), 3000)
    esper.switch_world("default")
    esper.delete_world("bench-goap")
    print(f"goap decide (facts + plan + grounding): cold {cold_us:8.1f} us   "
          f"cached {warm_us:8.1f} us")
    return plan_cold, plan_warm


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--agents", type=int, nargs="+", default=[1000, 10000])
    ap.add_argument("--frames", type=int, default=120)
    add_check_flag(ap)
    add_json_flag(ap)
    args = ap.parse_args()
    targets = Targets()
    res = Results("arbiter_overhead", "Arbiter plugin cost per frame against a bare esper loop",
                  targets)
    rows = []
    for n in args.agents:
        arb, llm, bare = measure(n, args.frames if n <= 2000 else max(30, args.frames // 4))
        print(f"{n:>6} agents: arbiter {arb * 1e3:7.3f} ms/frame {arb / n * 1e6:6.2f} us/agent | "
              f"ExecutingLLM {llm * 1e3:7.3f} ms/frame | "
              f"bare {bare * 1e3:7.3f} ms/frame {bare / n * 1e6:6.2f} us/agent")
        rows.append([n, fmt(arb * 1e3, 3), fmt(arb / n * 1e6), fmt(llm * 1e3, 3),
                     fmt(bare * 1e3, 3), f"{fmt(llm / arb)}x", f"{fmt(arb / bare, 1)}x"])
        same = res.target(f"{n} agents ExecutingLLM <= 1.5x GOAP", llm <= 1.5 * arb,
                          f"{fmt(llm / arb)}x")
        print(f"ratio ExecutingLLM/GOAP: {llm / arb:.2f}x ({n} agents; target <= 1.5: "
              f"{'OK' if same else 'MISSED'})")
        ok = res.target(f"{n} agents ratio <= 20x", arb / bare <= 20.0, f"{fmt(arb / bare, 1)}x")
        if n == 1000:
            ok = res.target("1000 agents < 3 ms/frame", arb < 3e-3,
                            f"{fmt(arb * 1e3)} ms") and ok
        print(f"ratio arbiter/bare: {arb / bare:.1f}x  ({n} agents; target <= 20x"
              f"{', and < 3 ms/frame' if n == 1000 else ''}: {'OK' if ok else 'MISSED'})")
    cold, warm = goap_plan_costs()
    cold_ok = res.target("goap cold < 1000 us", cold < 1000.0, f"{fmt(cold, 1)} us")
    warm_ok = res.target("goap cached < 5 us", warm < 5.0, f"{fmt(warm)} us")
    res.table("Perception + LlmPoll + Arbiter per frame, every agent holding a step",
              ["agents", "GOAP ms/frame", "us/agent", "ExecutingLLM ms/frame", "bare ms/frame",
               "ExecutingLLM / GOAP", "arbiter / bare"], rows)
    res.table("GOAP A* plan, hello_companion opening", ["plan", "us"],
              [["cold (cache cleared)", fmt(cold, 1)], ["cached", fmt(warm)]])
    res.write(args.json)
    print(f"goap plan (A* over facts): cold {cold:8.1f} us (target < 1000: "
          f"{'OK' if cold_ok else 'MISSED'})   cached {warm:6.2f} us (target < 5: "
          f"{'OK' if warm_ok else 'MISSED'})")
    return targets.finish(args.check)


if __name__ == "__main__":
    raise SystemExit(main())
