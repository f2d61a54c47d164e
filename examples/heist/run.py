"""Play one heist round headless: ``python examples/heist/run.py --seconds 60 --seed 1``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make `examples.heist` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import esper_arbiter as ea
from examples.heist.game import HeistConfig, HeistGame
from examples.heist.planner import CrewPlanService


def make_service(backend: str, seed: int) -> ea.PlanService | None:
    if backend == "none":
        return None
    if backend == "crew":
        return CrewPlanService(delay_s=1.0)
    # boundary: no scripted plan service is exported at esper_arbiter's top level.
    from esper_arbiter.systems.llm.scripted import ScriptedPlanService

    return ScriptedPlanService(seed=seed)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="A bank heist for esper-arbiter agents (headless).")
    ap.add_argument("--seconds", type=float, default=60.0, help="game seconds before time out")
    ap.add_argument("--seed", type=int, default=1, help="seed for all randomness")
    ap.add_argument(
        "--backend", choices=("none", "scripted", "crew"), default="none",
        help="none: GOAP + behaviour tree; scripted: the library's canned squad plans; "
             "crew: this example's own canned planner, which knows HackTerminal",
    )
    ap.add_argument("--quiet", action="store_true", help="print the outcome line only")
    args = ap.parse_args(argv)
    if args.seconds <= 0:
        ap.error("--seconds must be positive")

    service = make_service(args.backend, args.seed)
    print(f"heist: backend {args.backend}, seed {args.seed}, {args.seconds:g} s")
    try:
        with HeistGame(HeistConfig(seed=args.seed), service=service,
                       echo=None if args.quiet else print) as game:
            outcome = game.run(args.seconds)
            print(outcome.line())
    finally:
        if service is not None:
            service.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
