"""Is a model plan that has just arrived still worth starting? The arbiter's arrival check.

A plan is written from the snapshot of the moment it was asked for and arrives seconds later.
It is *stale on arrival*, and not started, when the world has moved on under it:

- its first step can neither run nor be prepared now (:func:`~.grounding.cannot_start`: the
  target died, the tile became unreachable);
- every step is legal but has lost its point (:func:`~.grounding.moot_reason`: smoke for an
  enemy who died while the model wrote); carrying it out would only skip each step;
- its first step is of no kind the domain advises any more, and either the plan is older
  than ``ArbiterConfig.plan_fresh_s`` or its first step would be put off now (smoke asked for
  before a fight, arriving mid-fight when no smoke is on offer: it would wait out the fight,
  by when the enemy it was for is dead and the smoke has lost its point). A young plan
  whose opening can go ahead is the model's judgement and is kept even if the advice would
  not have listed it.

A stale plan is the game's latency, not the model's judgement: the arbiter counts it as a
plan not used, not toward the model's failures in a row, and asks again with the snapshot of
now. Kept apart from :mod:`.arbiter` so the decision loop reads as one concern.
"""

from __future__ import annotations

from collections.abc import Sequence

from esper_arbiter.components.actions import ActionStep, describe_step
from esper_arbiter.components.snapshot import WorldSnapshot
from esper_arbiter.systems.domain import Domain
from esper_arbiter.systems.planning.grounding import cannot_start, defer_step, moot_reason
from esper_arbiter.systems.planning.validation import validate_step


def stale_on_arrival(
    steps: tuple[ActionStep, ...], snap: WorldSnapshot, domain: Domain,
    age_s: float | None, fresh_s: float,
) -> str | None:
    """Why the plan of ``steps``, written ``age_s`` seconds ago (None: unknown), should not
    start in ``snap``, or None: start it."""
    registry, rules = domain.tools, domain.rules
    why = cannot_start(steps, snap, registry, rules)
    if why is None:
        why = all_moot(steps, snap, domain)
    if why is None and age_s is not None:
        first = steps[0]
        if age_s > fresh_s or (validate_step(first, snap, registry, rules) is None
                               and defer_step(first, snap, registry, rules) is not None):
            why = outdated(first, snap, domain, age_s)
    return why


def all_moot(steps: Sequence[ActionStep], snap: WorldSnapshot, domain: Domain) -> str | None:
    """Why none of ``steps`` has a point any more, or None: at least one still has."""
    reasons = []
    for step in steps:
        why = moot_reason(step, snap, domain.tools, domain.rules)
        if why is None:
            return None
        reasons.append(why)
    more = len(steps) - 1
    return f"{describe_step(steps[0])}: {reasons[0]}" + (
        f" (and {more} more step{'s' if more > 1 else ''} that lost their point)" if more else "")


def outdated(first: ActionStep, snap: WorldSnapshot, domain: Domain,
             age_s: float) -> str | None:
    """Why a plan written ``age_s`` seconds ago should not start now, or None: its first step
    is of no kind the domain advises any more. A domain without advice, or with nothing to
    advise now, keeps every legal plan."""
    advise = domain.advise
    if advise is None:
        return None
    options = advise(snap)
    if not options or any(type(step) is type(first) for step, _why in options):
        return None
    kinds = ", ".join(dict.fromkeys(getattr(step, "act", type(step).__name__)
                                    for step, _why in options))
    return (f"written {age_s:.1f}s ago; {describe_step(first)} is no longer among the "
            f"options ({kinds})")


__all__ = ["all_moot", "outdated", "stale_on_arrival"]
