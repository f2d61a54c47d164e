"""The real game, mid-fight, from 100 to 10,000 agents: is the cost per agent flat?

hello_companion's stress round with N companions driven by the arbiter, N enemies ticking
their behaviour tree, the game's own movement, shooting and vitals (no rendering, no model),
the two sides spawned in contact so after a short warm-up every frame is a busy fight. Two
layouts:

* ``squads`` (``--agents N --squad-size 10``, the targets): a big world of small fights,
  one squad of ten and its attackers per sector, as a game with thousands of NPCs has them;
* ``crowd`` (``--agents N``): every companion follows the one player, so the fight is one
  crowd whose density grows with N (reported, no target: no engine keeps that flat).

Each frame is timed in CPU seconds of this thread (what a core pays; on a shared machine a
wall clock also counts the time other processes held the core), and the figure is the median,
per frame and per agent, with the worst frame beside it. The bare esper loop over the same
entities is the floor, measured in the same run.

Targets (squads): per-agent cost at 1,000 and at 10,000 agents within 1.5x of the cost at
100, and a 1,000-agent frame inside 16.7 ms (60 FPS) on one core.

    python bench/game_scale.py [--agents 100 1000 10000] [--crowd-agents 100 1000]
                               [--frames 60] [--warmup-s 3] [--check] [--json PATH]
"""

from __future__ import annotations

import argparse
import gc
import statistics
import time

import esper
from _results import Results, add_json_flag, fmt
from _targets import Targets, add_check_flag

from esper_arbiter.components import Health, Position, Team
from esper_arbiter.game.scenario import Scenario, build_stress_scenario
from esper_arbiter.game.stress import build_squad_scenario
from esper_arbiter.game.world import GameSession

DT = 1.0 / 30.0
WARM_UP_S = 3.0
FRAME_BUDGET_S = 1.0 / 60.0
SQUAD = 10


def bare_floor(frames: int) -> float:
    """Median seconds of a frame that only reads every unit's components once."""
    times = []
    for _ in range(frames):
        t0 = time.thread_time()
        acc = 0.0
        for _, (pos, hp, _team) in esper.get_components(Position, Health, Team):
            acc += pos.x + hp.hp
        times.append(time.thread_time() - t0)
    return statistics.median(times)


def scenario(layout: str, n: int) -> Scenario:
    if layout == "squads":
        return build_squad_scenario(n, seed=1, squad=SQUAD)
    return build_stress_scenario(n, seed=1, contact=True)


def measure(layout: str, n: int, frames: int,
            warmup_s: float = WARM_UP_S) -> tuple[float, float, float, int]:
    """(median frame s, worst frame s, bare floor s, shots fired while timed)."""
    session = GameSession(scenario(layout, n), seed=1)
    try:
        for _ in range(int(warmup_s / DT)):
            session.step(DT)
        shots_before = session.events.counts.get("shot", 0)
        times = []
        gc.collect()
        for _ in range(frames):
            t0 = time.thread_time()
            session.step(DT)
            times.append(time.thread_time() - t0)
        shots = session.events.counts.get("shot", 0) - shots_before
        session.activate()
        floor = bare_floor(max(10, frames // 2))
        return statistics.median(times), max(times), floor, shots
    finally:
        session.close()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--agents", type=int, nargs="+", default=[100, 1000, 10000],
                    help="sizes of the squads layout (the targets)")
    ap.add_argument("--crowd-agents", type=int, nargs="*", default=[100, 1000],
                    help="sizes of the one-crowd layout (no targets; none to skip it)")
    ap.add_argument("--frames", type=int, default=60)
    ap.add_argument("--warmup-s", type=float, default=WARM_UP_S,
                    help="game seconds played before timing (the fight gets going)")
    add_check_flag(ap)
    add_json_flag(ap)
    args = ap.parse_args()
    targets = Targets()
    res = Results("game_scale", "Scaling: the real game from 100 to 10,000 agents", targets)
    per_agent: dict[str, dict[int, float]] = {"squads": {}, "crowd": {}}
    floors: dict[int, float] = {}
    rows: list[list[object]] = []
    for layout, sizes in (("squads", args.agents), ("crowd", args.crowd_agents)):
        for n in sizes:
            # The same frames at every size: a fight's cost changes from second to second
            # (bursts end together, a wave of guards wakes), so sizes timed over different
            # stretches of game time would compare different fights, not different sizes.
            frames = args.frames
            frame, worst, floor, shots = measure(layout, n, frames, args.warmup_s)
            per_agent[layout][n] = frame / n
            floors.setdefault(n, floor)
            rows.append([layout, n, fmt(frame * 1e3), fmt(frame / n * 1e6), fmt(worst * 1e3),
                         fmt(floor * 1e3, 3), f"{fmt(frame / floor, 0)}x", frames, shots])
            print(f"{layout:>6} {n:>6} agents: {frame * 1e3:8.2f} ms/frame  "
                  f"{frame / n * 1e6:6.2f} us/agent  worst {worst * 1e3:8.2f} ms  "
                  f"(bare loop {floor * 1e3:6.2f} ms, ratio {frame / floor:5.1f}x; "
                  f"{shots} shots in {frames} frames)")
            if layout == "squads" and n == 1000:
                ok = res.target("1000 agents fit 16.7 ms", frame <= FRAME_BUDGET_S,
                                f"{fmt(frame * 1e3, 1)} ms")
                print(f"1000 agents in one 60 FPS frame (16.7 ms): {'OK' if ok else 'MISSED'}")
    for layout, costs in per_agent.items():
        base = costs.get(100)
        if not base:
            continue
        for n in (1000, 10000):
            if n in costs:
                r = costs[n] / base
                if layout == "squads":
                    ok = res.target(f"per-agent {n}/100 <= 1.5", r <= 1.5, f"{fmt(r)}")
                    verdict = f" (target <= 1.5: {'OK' if ok else 'MISSED'})"
                else:
                    verdict = " (one crowd: no target)"
                print(f"{layout} ratio per-agent cost {n}/100: {r:.2f}{verdict}")
    res.table("Median CPU time per frame, mid-fight (no rendering, no model), and the bare "
              "esper loop",
              ["layout", "agents", "ms/frame", "us/agent", "worst frame ms", "bare loop ms",
               "game / bare", "frames timed", "shots"], rows)
    series = []
    for layout, label in (("squads", "squads of 10, one fight per sector (targets)"),
                          ("crowd", "one crowd behind the player")):
        ns = sorted(per_agent[layout])
        if ns:
            series.append({"label": label, "x": ns,
                           "y": [per_agent[layout][n] * 1e6 for n in ns]})
    fs = sorted(floors)
    series.append({"label": "bare esper loop over the same units (floor)", "x": fs,
                   "y": [floors[n] / n * 1e6 for n in fs]})
    res.plot("scaling.png", "line", "The real game mid-fight: CPU cost per agent per frame",
             "agents (log)", "microseconds per agent per frame (log)", series,
             logx=True, logy=True)
    res.note("CPU seconds of the game's thread per frame. The bare loop reads every unit's "
             "Position, Health and Team once per frame: what any esper game pays just to look "
             "at its units. A flat line means a constant cost per agent.")
    for layout, costs in per_agent.items():
        res.data(f"{layout}_per_agent_us", {str(n): v * 1e6 for n, v in sorted(costs.items())})
    res.data("floor_us", {str(n): floors[n] / n * 1e6 for n in fs})
    res.summary("squads: " + ", ".join(
        f"{n}: {fmt(v * 1e6, 1)} us/agent" for n, v in sorted(per_agent["squads"].items())))
    res.write(args.json)
    return targets.finish(args.check)


if __name__ == "__main__":
    raise SystemExit(main())
