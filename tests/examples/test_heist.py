"""The heist example: a second host game, written against esper_arbiter's public API only."""

from __future__ import annotations

import ast
import pathlib

import pytest

import esper_arbiter as ea
from examples.heist import CrewPlanService, HackTerminal, HeistConfig, HeistGame
from examples.heist.run import main

ROOT = pathlib.Path(__file__).resolve().parents[2]

STANDOFF = """\
#############
#S...p..g...#
#############
#E.T.D.V....#
#############
"""
"""A one-tile corridor: crew, a civilian who stays put, a guard who neither moves nor shoots.
Every shot at the guard has the civilian in the line of fire."""


def _hacked(game: HeistGame) -> None:
    while game.vault.opened_at is None and game.t < 30.0:
        game.step()


def test_every_agent_acts_within_a_few_frames() -> None:
    with HeistGame() as game:
        for _ in range(3):
            game.step()
        assert set(game.log.first_step_frame) == set(game.crew)
        assert max(game.log.first_step_frame.values()) <= 2
        assert len(game.crew) >= 3 and len(game.civilians) >= 6 and len(game.guards) >= 3
        assert (game.grid.width, game.grid.height) >= (30, 20)


def test_goap_plans_the_hack_and_the_host_carries_it_out() -> None:
    with HeistGame(HeistConfig(seed=1)) as game:
        outcome = game.run(60.0)
        hacks = [(step, mode) for _, _, step, mode in game.log.issued
                 if isinstance(step, HackTerminal)]
        assert hacks and all(mode is ea.Mode.GOAP for _, mode in hacks)
        assert hacks[0][0] == HackTerminal(*game.vault.terminal)
        assert game.vault.opened_at is not None
        assert game.vault.opened_in_mode is ea.Mode.GOAP
        assert game.vault.door not in game.grid.walls
        assert outcome.result == "win", outcome.line()


def test_a_model_plan_with_the_custom_tool_is_validated_issued_and_carried_out() -> None:
    service = CrewPlanService(delay_s=0.5)
    with HeistGame(service=service) as game:
        _hacked(game)
        ready = [a for a in service.answers if isinstance(a, ea.PlanReady)]
        assert ready and isinstance(ready[0].plan.steps[0], HackTerminal)
        # The arbiter accepted it (validated against the live snapshot on arrival) ...
        assert any("ready (2 steps" in line for line in game.log.lines)
        # ... and the host carried out the custom step as the plan's (a plan opening with the
        # hack GOAP had already begun takes it over where it is, so it may not be re-issued).
        assert any(isinstance(step, HackTerminal) for _, _, step, _ in game.log.issued)
        assert game.vault.opened_in_mode is ea.Mode.EXECUTING_LLM
        # Every request carried the heist's domain, so the tool was there to plan with.
        assert all(isinstance(r.domain, ea.Domain) and "HackTerminal" in r.domain.tools
                   for r in service.requests)


class _WallHacker(CrewPlanService):
    """Answers with HackTerminal on a wall tile: the arbiter must reject it."""

    def _answer(self, rid: int, request: ea.PlanRequest) -> ea.PlanOutcome:
        plan = ea.PlanIntent(f"bad-{rid}", (HackTerminal(0, 0), ea.Scan()), source="scripted")
        return ea.PlanReady(rid, plan, backend="crew")


def test_a_model_plan_breaking_the_tools_checks_is_rejected() -> None:
    with HeistGame(service=_WallHacker(delay_s=0.5)) as game:
        for _ in range(90):
            game.step()
        assert not any(isinstance(step, HackTerminal) and mode is ea.Mode.EXECUTING_LLM
                       for _, _, step, mode in game.log.issued)
        failures = game.metrics().failures_by_kind
        assert failures.get("invalid_plan", 0) >= 1
        assert any("stale on arrival" in line and "wall" in line for line in game.log.lines)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_civilians_are_never_attacked(seed: int) -> None:
    with HeistGame(HeistConfig(seed=seed), service=CrewPlanService(delay_s=1.0)) as game:
        saw_neutrals = False
        while game.outcome is None and game.t < 60.0:
            game.step()
            snap = ea.build_snapshot(game.crew[0])
            saw_neutrals = saw_neutrals or bool(snap is not None and snap.neutrals)
        assert saw_neutrals, "the crew should see the civilians, as neutrals"
        civilians = set(game.civilians)
        targeted = [step for _, _, step, _ in game.log.issued
                    if isinstance(step, ea.Attack | ea.CoverFire | ea.Approach)]
        assert targeted, "the crew should have engaged the guards"
        assert not [s for s in targeted if s.target_id in civilians]
        assert all(game.hp(c) == game.cfg.civilian_hp for c in civilians)


def test_a_step_the_host_refuses_does_not_loop() -> None:
    cfg = HeistConfig(layout=STANDOFF, civilians_wander=False, guards_patrol=False,
                      guards_shoot=False)
    with HeistGame(cfg) as game:
        # The vault is done already: the only thing left is the guard behind the civilian.
        game.grid.pois = {k: v for k, v in game.grid.pois.items() if k != "terminal"}
        game.grid.objective = None
        outcome = game.run(30.0)
        assert outcome.result == "timeout"
        refused = game.log.refusal_reasons["civilian in the line of fire"]
        assert refused >= 1
        assert max(game.log.refusals.values()) <= 15, game.log.refusals
        assert game.hp(game.guards[0]) == game.cfg.guard_hp  # nobody shot through her


@pytest.mark.parametrize("backend", ["none", "scripted", "crew"])
def test_the_round_ends_from_the_command_line(
    backend: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--seconds", "30", "--seed", "2", "--backend", backend]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith(f"heist: backend {backend}")
    assert out[-1].startswith(("outcome: win", "outcome: timeout"))
    assert any("[GOAP]" in line for line in out)


def test_the_example_uses_only_the_public_api() -> None:
    """No import of the bundled demo; a deep import only with a `# boundary:` comment."""
    for path in sorted((ROOT / "examples").rglob("*.py")):
        text = path.read_text(encoding="utf-8")
        lines = text.splitlines()
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            else:
                continue
            for name in names:
                where = f"{path.relative_to(ROOT)}:{node.lineno}"
                assert not name.startswith("esper_arbiter.game"), where
                if name.startswith("esper_arbiter."):
                    before = lines[node.lineno - 2]
                    assert "# boundary:" in before, f"{where}: deep import {name}"
