"""The real game, mid-fight, from 100 to 10,000 agents: is the cost per agent flat?

hello_companion's stress round (``--agents N``: N companions driven by the arbiter, N enemies
ticking their behaviour tree, the game's own movement, shooting and vitals; no rendering, no
model) with the two sides spawned in contact, so after a short warm-up every frame is a busy
fight. Each size is timed frame by frame; the figure is the median, per frame and per agent,
and the bare esper loop over the same entities is the floor, timed right after every frame.

Targets: per-agent cost at 1,000 and at 10,000 agents within 1.5x of the cost at 100, and a
1,000-agent frame inside 16.7 ms (60 FPS) on one core.

    python bench/game_scale.py [--agents 100 1000 10000] [--frames 60] [--warmup-s 3]
                               [--check] [--json PATH]
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
from esper_arbiter.game.scenario import build_stress_scenario
from esper_arbiter.game.world import GameSession

DT = 1.0 / 30.0
WARM_UP_S = 3.0
FRAME_BUDGET_S = 1.0 / 60.0


def bare_pass() -> float:
    """Seconds of a frame that only reads every unit's components once (the floor)."""
    t0 = time.perf_counter()
    acc = 0.0
    for _, (pos, hp, _team) in esper.get_components(Position, Health, Team):
        acc += pos.x + hp.hp
    return time.perf_counter() - t0


def measure(n: int, frames: int, warmup_s: float = WARM_UP_S) -> tuple[float, float, int]:
    """(median frame s, bare floor s, shots fired while timed) for ``n`` agents. The floor
    is timed right after each frame, on the same world, so noise hits both alike."""
    session = GameSession(build_stress_scenario(n, seed=1, contact=True), seed=1)
    try:
        for _ in range(int(warmup_s / DT)):
            session.step(DT)
        shots_before = session.events.counts.get("shot", 0)
        times = []
        floors = []
        gc.collect()
        for _ in range(frames):
            t0 = time.perf_counter()
            session.step(DT)
            times.append(time.perf_counter() - t0)
            floors.append(bare_pass())
        shots = session.events.counts.get("shot", 0) - shots_before
        return statistics.median(times), statistics.median(floors), shots
    finally:
        session.close()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--agents", type=int, nargs="+", default=[100, 1000, 10000])
    ap.add_argument("--frames", type=int, default=60)
    ap.add_argument("--warmup-s", type=float, default=WARM_UP_S,
                    help="game seconds played before timing (the fight gets going)")
    add_check_flag(ap)
    add_json_flag(ap)
    args = ap.parse_args()
    targets = Targets()
    res = Results("game_scale", "Scaling: the real game from 100 to 10,000 agents", targets)
    per_agent: dict[int, float] = {}
    rows: list[list[object]] = []
    floors: dict[int, float] = {}
    for n in args.agents:
        frames = args.frames if n <= 2000 else max(15, args.frames // 4)
        frame, floor, shots = measure(n, frames, args.warmup_s)
        per_agent[n] = frame / n
        floors[n] = floor
        rows.append([n, fmt(frame * 1e3), fmt(frame / n * 1e6), fmt(floor * 1e3, 3),
                     fmt(floor / n * 1e6, 3), f"{fmt(frame / floor, 0)}x", frames, shots])
        print(f"{n:>6} agents: {frame * 1e3:8.2f} ms/frame  {frame / n * 1e6:6.2f} us/agent  "
              f"(bare loop {floor * 1e3:6.2f} ms, ratio {frame / floor:5.1f}x; "
              f"{shots} shots in {frames} frames)")
        if n == 1000:
            ok = res.target("1000 agents fit 16.7 ms", frame <= FRAME_BUDGET_S,
                            f"{fmt(frame * 1e3, 1)} ms")
            print(f"1000 agents in one 60 FPS frame (16.7 ms): {'OK' if ok else 'MISSED'}")
    base = per_agent.get(100)
    if base:
        for n in (1000, 10000):
            if n in per_agent:
                r = per_agent[n] / base
                ok = res.target(f"per-agent {n}/100 <= 1.5", r <= 1.5, f"{fmt(r)}")
                print(f"ratio per-agent cost {n}/100: {r:.2f} (target <= 1.5: "
                      f"{'OK' if ok else 'MISSED'})")
    res.table("Median frame, mid-fight (no rendering, no model), and the bare esper loop",
              ["agents", "ms/frame", "us/agent", "bare loop ms", "bare us/agent",
               "game / bare", "frames timed", "shots"], rows)
    ns = sorted(per_agent)
    res.plot("scaling.png", "line", "The real game mid-fight: cost per agent per frame",
             "agents (log)", "microseconds per agent per frame (log)",
             [{"label": "hello_companion stress round (arbiter, enemies, rules)", "x": ns,
               "y": [per_agent[n] * 1e6 for n in ns]},
              {"label": "bare esper loop over the same units (floor)", "x": ns,
               "y": [floors[n] / n * 1e6 for n in ns]}], logx=True, logy=True)
    res.note("The bare loop reads every unit's Position, Health and Team once per frame: what "
             "any esper game pays just to look at its units. Flat lines mean a constant cost "
             "per agent.")
    res.data("per_agent_us", {str(n): per_agent[n] * 1e6 for n in ns})
    res.data("floor_us", {str(n): floors[n] / n * 1e6 for n in ns})
    res.summary(", ".join(f"{n}: {fmt(per_agent[n] * 1e6, 1)} us/agent" for n in ns))
    res.write(args.json)
    return targets.finish(args.check)


if __name__ == "__main__":
    raise SystemExit(main())
