"""Decisions per agent: our arbiter against the same decision logic as a py_trees tree.

The real game (hello_companion's stress round, ``--agents N``, no model) runs with our
arbiter in charge. In every timed frame two things are measured side by side:

- **ours**: what the arbiter plugin costs that frame (PerceptionSystem + LlmPollSystem +
  ArbiterSystem, timed from just before the first to just after the last);
- **py_trees**: what a py_trees user pays for the same agents in the same world that frame:
  a perception of each agent (our own FrameView, the cheapest available) and one tick of that
  agent's py_trees tree (``bench/_bt_companion.py``: the companion's GOAP goals and first
  actions as a priority selector, grounded by the same functions). Its steps are only
  compared, not carried out, so both sides see exactly the same world.

Per agent = the frame's time divided by the agents ticked. ``idle``: the two sides spawned
apart (the squad walks, nobody fights); ``fight``: spawned in contact, timed after a warm-up.
Also printed: how often the py_trees tree chose the same step as GOAP on the same snapshot.

Target: ours at least 10x cheaper per agent at every size and situation.

    python bench/vs_py_trees.py [--agents 1 100 1000] [--frames 60] [--warmup-s 3] [--check]
"""

from __future__ import annotations

import argparse
import gc
import time
from dataclasses import dataclass, field
from typing import Any

import esper
import py_trees
from _bt_companion import companion_tree, tick
from _results import Results, add_json_flag, fmt, median
from _snapshots import bench_snapshots
from _targets import Targets, add_check_flag

from esper_arbiter.components.actions import ActionStep
from esper_arbiter.components.agent import Agent, Perception
from esper_arbiter.components.snapshot import GridView
from esper_arbiter.game.domain import companion_domain
from esper_arbiter.game.scenario import build_stress_scenario
from esper_arbiter.game.world import GameSession
from esper_arbiter.systems.perception import FrameMemory, FrameView, MissingWorldPiece, game_time
from esper_arbiter.systems.planning.rules import DEFAULT_RULES

DT = 1.0 / 30.0
TARGET_RATIO = 10.0
START_PRIORITY, STOP_PRIORITY, SHADOW_PRIORITY = 350, 99, 95
"""Perception runs at 300, LlmPoll at 200, Arbiter at 100; the enemies' AI at 90."""


class Mark(esper.Processor):
    """Records ``perf_counter()`` when it runs (brackets the plugin's systems)."""

    def __init__(self) -> None:
        self.at = 0.0

    def process(self, *args: object, **kwargs: object) -> None:
        self.at = time.perf_counter()


@dataclass
class Shadow(esper.Processor):
    """Perceives every agent and ticks its py_trees tree, timing the whole pass."""

    session: GameSession
    on: bool = False
    sample: bool = False
    seconds: float = 0.0
    tick_seconds: float = 0.0
    """Of ``seconds``, the time spent in the trees' ticks (the rest is perception)."""
    decide_seconds: float = 0.0
    """GoapBrain.decide for the same agents and snapshots (timed apart, not in ``seconds``)."""
    ticked: int = 0
    same: int = 0
    same_kind: int = 0
    compared: int = 0
    trees: dict[int, tuple[py_trees.behaviour.Behaviour, Any]] = field(default_factory=dict)
    _grids: dict[object, GridView] = field(default_factory=dict)
    _memory: FrameMemory = field(default_factory=FrameMemory)

    def process(self, *args: object, **kwargs: object) -> None:
        if not self.on:
            return
        domain = self.session.domain
        t0 = time.perf_counter()
        frame = FrameView(game_time(), self._grids, self._memory, domain.factions,
                          domain.sensing)
        trees = self.trees
        ticked = 0
        ticking = deciding = 0.0
        clock = time.perf_counter
        taken: list[tuple[ActionStep | None, ActionStep | None]] = []
        brain = domain.brain
        for ent, _ in esper.get_components(Agent, Perception):
            try:
                snap = frame.snapshot_for(ent)
            except MissingWorldPiece:
                continue
            tree = trees.get(ent)
            if tree is None:
                tree = trees[ent] = companion_tree(domain.brain)
            t1 = clock()
            step = tick(tree[0], tree[1], snap)
            t2 = clock()
            ticking += t2 - t1
            ticked += 1
            if self.sample:
                decision = brain.decide(snap)
                deciding += clock() - t2
                taken.append((decision.step if decision is not None else None, step))
        self.seconds = clock() - t0 - deciding
        self.tick_seconds = ticking
        self.decide_seconds = deciding
        self.ticked = ticked
        for goap, tree_step in taken:
            self.compared += 1
            self.same += goap == tree_step
            self.same_kind += type(goap) is type(tree_step)


@dataclass(frozen=True)
class Case:
    agents: int
    situation: str
    ours_us: float
    bt_us: float
    tick_us: float
    """Of ``bt_us``, the py_trees tick alone (the rest is perceiving the agent)."""
    decide_us: float
    """GoapBrain.decide on the same snapshot: the same logic without py_trees' machinery."""
    agreement: float
    same_kind: float
    frames: int

    @property
    def ratio(self) -> float:
        return self.bt_us / self.ours_us if self.ours_us > 0 else float("nan")


def measure(n: int, contact: bool, frames: int, warmup_s: float) -> Case:
    session = GameSession(build_stress_scenario(n, seed=1, contact=contact), seed=1)
    try:
        session.activate()
        start, stop = Mark(), Mark()
        shadow = Shadow(session)
        esper.add_processor(start, START_PRIORITY)
        esper.add_processor(stop, STOP_PRIORITY)
        esper.add_processor(shadow, SHADOW_PRIORITY)
        warm = max(1, int(warmup_s / DT))
        for i in range(warm):
            shadow.on = i >= warm - 5  # trees built and the shadow's memory warm
            session.step(DT)
        ours: list[float] = []
        theirs: list[float] = []
        ticks: list[float] = []
        decides: list[float] = []
        gc.collect()
        shadow.sample = True
        for _ in range(frames):
            session.step(DT)
            if shadow.ticked and session.result is None:
                ours.append((stop.at - start.at) / shadow.ticked)
                theirs.append(shadow.seconds / shadow.ticked)
                ticks.append(shadow.tick_seconds / shadow.ticked)
                decides.append(shadow.decide_seconds / shadow.ticked)
        total = max(1, shadow.compared)
        return Case(n, "fight" if contact else "idle", median(ours) * 1e6,
                    median(theirs) * 1e6, median(ticks) * 1e6, median(decides) * 1e6,
                    shadow.same / total, shadow.same_kind / total, len(ours))
    finally:
        session.close()


def varied_agreement(count: int) -> tuple[float, float, list[str]]:
    """Tree vs GOAP on ``count`` varied hello_companion snapshots (hurt, orders, empty
    magazines, downed leaders ...): (same step, same kind of step, a few mismatches)."""
    brain = companion_domain(DEFAULT_RULES).brain
    root, ctx = companion_tree(brain)
    same = kind = 0
    misses: list[str] = []
    snaps = bench_snapshots(count, seed=12)
    for snap in snaps:
        step = tick(root, ctx, snap)
        decision = brain.decide(snap)
        goap = decision.step if decision is not None else None
        same += goap == step
        kind += type(goap) is type(step)
        if goap != step and len(misses) < 5:
            misses.append(f"GOAP {goap} (goal {decision.goal if decision else '-'}) vs "
                          f"tree {step}")
    return same / len(snaps), kind / len(snaps), misses


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--agents", type=int, nargs="+", default=[1, 100, 1000])
    ap.add_argument("--frames", type=int, default=60)
    ap.add_argument("--warmup-s", type=float, default=3.0)
    ap.add_argument("--varied", type=int, default=500,
                    help="varied snapshots on which the tree is checked against GOAP")
    add_check_flag(ap)
    add_json_flag(ap)
    args = ap.parse_args()
    targets = Targets()
    res = Results("vs_py_trees", "Decisions per agent: our arbiter vs py_trees", targets)
    cases: list[Case] = []
    for n in args.agents:
        for contact in (False, True):
            c = measure(n, contact, args.frames, args.warmup_s)
            cases.append(c)
            print(f"{n:>5} agents {c.situation:5s}: ours {c.ours_us:8.2f} us/agent  "
                  f"py_trees {c.bt_us:8.2f} us/agent (tick {c.tick_us:7.2f}; GOAP decide "
                  f"{c.decide_us:6.2f})  ratio py_trees/ours {c.ratio:6.1f}x  "
                  f"(same step as GOAP {c.agreement:5.1%}, same kind {c.same_kind:5.1%}; "
                  f"{c.frames} frames)")
    agree, agree_kind, misses = varied_agreement(args.varied)
    print(f"varied snapshots ({args.varied}): same step as GOAP {agree:.1%}, same kind "
          f"{agree_kind:.1%}")
    for m in misses:
        print(f"  mismatch: {m}")
    rows = []
    for c in cases:
        ok = res.target(f"{c.agents} agents {c.situation}: py_trees/ours >= {TARGET_RATIO:g}x",
                        c.ratio >= TARGET_RATIO, f"{fmt(c.ratio, 1)}x")
        rows.append([c.agents, c.situation, fmt(c.ours_us), fmt(c.bt_us), fmt(c.tick_us),
                     fmt(c.decide_us),
                     f"{fmt(c.ratio, 1)}x",
                     f"{c.agreement:.1%}", f"{c.same_kind:.1%}", "met" if ok else "MISSED"])
    res.table("Median cost per agent per frame (us), same frames, same world",
              ["agents", "situation", "ours", "py_trees", "of which the tick",
               "GOAP decide instead of the tick",
               "py_trees / ours",
               "same step as GOAP", "same kind of step", f"target >= {TARGET_RATIO:g}x"], rows)
    labels = [f"{c.agents} {c.situation}" for c in cases]
    res.plot("decisions_vs_py_trees.png", "bar", "Decision cost per agent per frame",
             "agents, situation", "microseconds per agent (log)",
             [{"label": "esper-arbiter (Perception + LlmPoll + Arbiter)", "x": labels,
               "y": [c.ours_us for c in cases]},
              {"label": "py_trees tree ticked per agent (perception + tick)", "x": labels,
               "y": [c.bt_us for c in cases]}], logy=True)
    res.note("The py_trees side gets our own perception (bounded, spatially indexed snapshots) "
             "and the leanest py_trees plumbing (tick_once, a plain context object instead of "
             "the blackboard); a tree is ticked every frame, as behaviour trees are. Two things "
             "make the difference: our arbiter re-decides an agent only when its step ends, "
             "news arrives or its think time (~0.5 s) comes up with a changed situation, so "
             "most agents cost two attribute checks in most frames; and when it does decide, "
             "GOAP over fact bits with a plan cache costs a fraction of a py_trees tick over "
             "the same branches (compare the last two cost columns).")
    res.note("'GOAP decide instead of the tick' is GoapBrain.decide (facts, cached plan, "
             "grounding) on the same snapshot: the same logic without py_trees' machinery, "
             "timed apart from both sides. 'same step as GOAP' compares the tree's step with "
             "it on every agent of every timed frame: the tree is a faithful translation when "
             "this is high. The arbiter in the game may still differ (it keeps a running step for "
             "1 s and avoids steps the game just refused).")
    res.table("Is the tree the same decision logic? Its step against GoapBrain.decide",
              ["snapshots", "same step", "same kind of step"],
              [[f"{args.varied} varied hello_companion situations", f"{agree:.1%}",
                f"{agree_kind:.1%}"]])
    res.data("cases", [c.__dict__ | {"ratio": c.ratio} for c in cases])
    res.summary(", ".join(f"{c.agents} {c.situation} {fmt(c.ratio, 1)}x" for c in cases))
    res.write(args.json)
    return targets.finish(args.check)


if __name__ == "__main__":
    raise SystemExit(main())
