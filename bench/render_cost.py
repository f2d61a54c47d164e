"""Render cost per frame, headless: the standard round and the ``--agents 200`` stress map.

For each scenario the round is played with the scripted backend; between timed frames the
simulation advances one fixed step (not timed), so every frame draws a new state: moving units,
shots, smoke, plans, HUD text. Each frame is timed in two parts, building the frame model from
components and drawing it, at 1280x720 on an offscreen surface (SDL's dummy driver).

The machine is noisy, so a baseline is measured in the same run, interleaved with the real
frames: clearing the screen and blitting the cached map background, the least any frame does.
The ratio render / baseline is the figure to compare across machines.

Targets: standard round under 4 ms per frame, 200 agents under 16 ms (p99).

    python bench/render_cost.py [--frames N]
"""

from __future__ import annotations

import os

os.environ["SDL_VIDEODRIVER"] = "dummy"
os.environ["SDL_AUDIODRIVER"] = "dummy"
os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")

import argparse
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import pygame
from _results import Results, add_json_flag, fmt
from _targets import Targets, add_check_flag

from esper_arbiter.game.render.model import StatusPoller, ViewState, build_frame
from esper_arbiter.game.render.renderer import Renderer
from esper_arbiter.game.scenario import (
    DEFAULT_SCENARIO,
    Scenario,
    build_stress_scenario,
    load_scenario,
)
from esper_arbiter.game.world import GameSession
from esper_arbiter.systems.llm.scripted import ScriptedPlanService

SIZE = (1280, 720)
DT = 1.0 / 30.0


@dataclass(frozen=True, slots=True)
class Figures:
    name: str
    frames: int
    build: list[float]
    draw: list[float]
    total: list[float]
    baseline: list[float]


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    k = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[k]


def measure(name: str, scenario: Scenario, frames: int, warmup_s: float) -> Figures:
    surface = pygame.Surface(SIZE)
    renderer = Renderer()
    view = ViewState()
    build: list[float] = []
    draw: list[float] = []
    total: list[float] = []
    base: list[float] = []
    with GameSession(scenario, seed=1, service=ScriptedPlanService(1)) as session:
        poller = StatusPoller(session.service, 0.25)
        while session.t < warmup_s and session.result is None:
            session.step(DT)
        layout = renderer.layout(SIZE, session.map.width, session.map.height)
        # warm-up frames build the caches (background, sprites, rendered text)
        for _ in range(10):
            session.step(DT)
            frame = renderer.render(surface, session, view, poller.get())
        for i in range(frames):
            if session.result is None:
                session.step(DT)
            # baseline: clear the screen and blit the cached map background
            t0 = time.perf_counter()
            surface.fill((0, 0, 0))
            surface.blit(renderer.world.background(frame.scene, layout), layout.map_rect)
            t1 = time.perf_counter()
            # the real frame: model from components, then drawing
            frame = build_frame(session, view, poller.get(), renderer.memory)
            t2 = time.perf_counter()
            renderer.draw(surface, frame, layout, pulse=(i % 60) / 60.0)
            t3 = time.perf_counter()
            base.append((t1 - t0) * 1e3)
            build.append((t2 - t1) * 1e3)
            draw.append((t3 - t2) * 1e3)
            total.append((t3 - t1) * 1e3)
    return Figures(name, len(total), build, draw, total, base)


def report(f: Figures, target_ms: float, targets: Targets, res: Results) -> None:
    med, p99 = statistics.median(f.total), pct(f.total, 0.99)
    bmed = statistics.median(f.baseline)
    met = res.target(f"{f.name.split(' (')[0]}: p99 < {target_ms:g} ms", p99 < target_ms,
                     f"{fmt(p99)} ms")
    ok = "ok" if met else "OVER TARGET"
    print(f"{f.name}: {f.frames} frames at {SIZE[0]}x{SIZE[1]}")
    print(f"  render total   median {med:6.2f} ms   p99 {p99:6.2f} ms   "
          f"(target p99 < {target_ms:g} ms: {ok})")
    print(f"    build model  median {statistics.median(f.build):6.2f} ms   "
          f"p99 {pct(f.build, 0.99):6.2f} ms")
    print(f"    draw         median {statistics.median(f.draw):6.2f} ms   "
          f"p99 {pct(f.draw, 0.99):6.2f} ms")
    print(f"  baseline (clear + map blit) median {bmed:6.3f} ms   p99 "
          f"{pct(f.baseline, 0.99):6.3f} ms")
    print(f"  ratio render/baseline: {med / bmed:.1f}x")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=300, help="timed frames per scenario")
    add_check_flag(parser)
    add_json_flag(parser)
    args = parser.parse_args()
    targets = Targets()
    res = Results("render_cost", "Headless render cost per frame", targets)
    pygame.font.init()
    standard = measure("standard round (hello_companion.json)",
                       load_scenario(DEFAULT_SCENARIO), args.frames, warmup_s=2.0)
    report(standard, 4.0, targets, res)
    stress = measure("--agents 200 (200 companions, 200 enemies, 76x38 map)",
                     build_stress_scenario(200, seed=1), args.frames, warmup_s=3.0)
    report(stress, 16.0, targets, res)
    res.table(f"Milliseconds per frame at {SIZE[0]}x{SIZE[1]}",
              ["scenario", "frames", "median", "p99", "baseline median", "render / baseline"],
              [[f.name, f.frames, fmt(statistics.median(f.total)), fmt(pct(f.total, 0.99)),
                fmt(statistics.median(f.baseline), 3),
                f"{fmt(statistics.median(f.total) / statistics.median(f.baseline), 1)}x"]
               for f in (standard, stress)])
    res.write(args.json)
    return targets.finish(args.check)


if __name__ == "__main__":
    raise SystemExit(main())
