"""Grounding a planned step that cannot run yet: what to do first instead of skipping it.

A plan is written from a snapshot seconds old, for an agent that will have moved by the time
each step comes up. A step such as "shoot #4" is an *intent* (engage #4), not a command that
only works from the tile the agent stood on when the plan was written. When a step fails its
issue-time checks, :func:`ground_step` asks the tool's
:attr:`~systems.planning.tools.ToolSpec.prepare` for a step that brings it within reach (walk
into range and sight, reload, wait out a cooldown). The arbiter issues that step, then checks
the planned one again; only a step nothing can bring within reach is skipped.

The preparatory step is itself validated against the same snapshot, so grounding can never
issue something the validator would refuse.

The other way round, a step that *can* run may have lost its point since the plan was written
(smoke for an enemy who has died): :func:`moot_reason` asks the tool's
:attr:`~systems.planning.tools.ToolSpec.moot`, and the arbiter skips such a step.
"""

from __future__ import annotations

import logging

from esper_arbiter.components.actions import ActionStep
from esper_arbiter.components.snapshot import WorldSnapshot
from esper_arbiter.systems.planning.rules import Rules
from esper_arbiter.systems.planning.tools import Preparer, ToolRegistry
from esper_arbiter.systems.planning.validation import validate_step

log = logging.getLogger(__name__)


def ground_step(
    step: ActionStep, snapshot: WorldSnapshot, registry: ToolRegistry, rules: Rules
) -> ActionStep | None:
    """A legal step to carry out before ``step`` so that ``step`` can run, or ``None``.

    ``None`` when the tool has no ``prepare``, when it has nothing to offer (the target is
    dead or cannot be reached, a cooldown outlasts any wait), when its answer is ``step``
    itself, or when its answer fails validation. Never raises: a domain's preparer that does
    is logged and treated as having nothing to offer.
    """
    spec = registry.get(getattr(step, "act", ""))
    return _first(spec.prepare if spec is not None else None, "preparing",
                  step, snapshot, registry, rules)


def defer_step(
    step: ActionStep, snapshot: WorldSnapshot, registry: ToolRegistry, rules: Rules
) -> ActionStep | None:
    """A legal step to do meanwhile because ``step``, legal now, would be wasted now (its
    tool's :attr:`~systems.planning.tools.ToolSpec.defer`), or ``None``: go ahead. Never
    raises (a failing hook is logged and treated as "go ahead")."""
    spec = registry.get(getattr(step, "act", ""))
    return _first(spec.defer if spec is not None else None, "timing",
                  step, snapshot, registry, rules)


def moot_reason(
    step: ActionStep, snapshot: WorldSnapshot, registry: ToolRegistry, rules: Rules
) -> str | None:
    """Why ``step``, legal now, has lost its point now (its tool's
    :attr:`~systems.planning.tools.ToolSpec.moot`), or ``None``: it still has one. Never
    raises (a failing hook is logged and treated as "it still has a point")."""
    spec = registry.get(getattr(step, "act", ""))
    hook = spec.moot if spec is not None else None
    if hook is None:
        return None
    try:
        return hook(step, snapshot, rules)
    except Exception:
        log.exception("judging %r failed", step)
        return None


def _first(hook: Preparer | None, doing: str, step: ActionStep, snapshot: WorldSnapshot,
           registry: ToolRegistry, rules: Rules) -> ActionStep | None:
    """What a tool's hook says to do before ``step``, if it is legal and not ``step``."""
    if hook is None:
        return None
    try:
        first = hook(step, snapshot, rules)
    except Exception:
        log.exception("%s %r failed", doing, step)
        return None
    if first is None or first == step:
        return None
    if validate_step(first, snapshot, registry, rules) is not None:
        return None
    return first


def cannot_start(
    steps: tuple[ActionStep, ...], snapshot: WorldSnapshot, registry: ToolRegistry, rules: Rules
) -> str | None:
    """Why an arriving plan cannot start: its first step can neither run nor be prepared now
    (``None``: it can). The rest of a plan was written to follow its first step, so a plan
    whose opening is impossible (a wall, a dead target) is stale, not trimmed."""
    if not steps:
        return "no steps"
    err = validate_step(steps[0], snapshot, registry, rules)
    if err is None or ground_step(steps[0], snapshot, registry, rules) is not None:
        return None
    return err.message


__all__ = ["cannot_start", "defer_step", "ground_step", "moot_reason"]
