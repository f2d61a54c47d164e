"""Runs of identical consecutive steps collapsed into one: small models pad a plan by
repeating a step, and carried out the copies only replay what the first did."""

from __future__ import annotations

from collections.abc import Sequence

from esper_arbiter.components.actions import ActionStep


def collapse_raw_repeats(plan: object) -> object:
    """An untrusted plan (``{"steps": [...]}`` or a list) with runs of identical consecutive
    step objects collapsed into one, *before* validation: ``ThrowSmoke`` written eight times is
    one smoke, not a plan whose second smoke is on cooldown. Anything else is returned as is."""
    steps = plan.get("steps") if isinstance(plan, dict) else plan
    if not isinstance(steps, list):
        return plan
    out: list[object] = []
    for step in steps:
        if not out or out[-1] != step:
            out.append(step)
    if isinstance(plan, dict):
        return {**plan, "steps": out}
    return out


def collapse_repeats(steps: Sequence[ActionStep]) -> tuple[ActionStep, ...]:
    """``steps`` with runs of identical consecutive steps collapsed into one.

    Small models pad a plan by repeating a step (``Attack(#4)`` seven times); carried out, the
    copies only replay what the first did, so a plan keeps one of each run."""
    out: list[ActionStep] = []
    for step in steps:
        if not out or out[-1] != step:
            out.append(step)
    return tuple(out)
