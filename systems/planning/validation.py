"""Plan validation: is this plan (untrusted model output) executable in this snapshot?

:func:`validate_plan` checks parsed JSON against the tool registry and the snapshot and returns
a :class:`PlanValidation` with the typed steps and one :class:`StepError` per problem, each with
a precise, human-readable message (``step 2 MoveTo(x=6, y=4): tile (6, 4) is a wall``). It never
raises: a plan is data from a language model and anything may come back.

:func:`validate_step` re-checks one typed step against the *current* snapshot just before the
arbiter issues it (the target died, the tile is now blocked, the grenade is still on cooldown).
It costs a few microseconds: reachability is a component-label lookup in ``pathfinding``.

The rules themselves are declared on each :class:`~systems.planning.tools.ToolSpec` (its
:class:`~systems.planning.tools.Check` set); this module interprets them. Plans are checked in
order with a small simulation of the agent:

* position: after MoveTo / Retreat / TakeCover the agent stands on that tile, so a later Heal or
  ThrowSmoke measures its reach from there; after Approach the tile is unknown and reach checks
  are left to :func:`validate_step` at issue time. A *tile* out of reach is accepted ahead of
  time for a tool with a ``prepare`` (ThrowSmoke: the arbiter walks into throwing range
  first, see :mod:`systems.planning.grounding`), and the agent's tile is unknown after it;
* ammunition: a Reload makes Attack / CoverFire legal again. Rounds spent are *not* simulated
  (how many a burst fires depends on the fight); :func:`validate_step` checks the real count;
* cooldowns: using ThrowSmoke / Heal puts it on cooldown, and a later use is rejected unless the
  plan certainly waits long enough (durations are counted as lower bounds: Wait and CoverFire
  seconds, reload / scan / revive times, straight-line walking time).

Reachability never depends on where the agent is in the plan: walking never leaves the agent's
connected region, so every tile is checked against the agent's current tile.

Typing decisions for untrusted values: ``True`` / ``False`` are not numbers; an int argument
accepts an int or an integral float (``3.0`` -> 3, small models write it); SECONDS accepts any
finite int or float. Strings are never converted.

A host that does not track ammunition (``ammo_capacity == 0`` and ``ammo == 0`` in the
snapshot) gets no AMMO checks.
"""

from __future__ import annotations

import difflib
import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

from esper_arbiter.components.actions import ActionStep
from esper_arbiter.components.snapshot import UnitView, WorldSnapshot
from esper_arbiter.systems.planning.pathfinding import line_of_sight, reachable
from esper_arbiter.systems.planning.repeats import collapse_raw_repeats, collapse_repeats
from esper_arbiter.systems.planning.rules import DEFAULT_RULES, Rules
from esper_arbiter.systems.planning.step_text import (
    clip,
    describe_raw,
    describe_typed,
    fmt_value,
    safe_repr,
    typename,
)
from esper_arbiter.systems.planning.tools import (
    ArgKind,
    Check,
    Effect,
    ToolRegistry,
    ToolSpec,
    ally_units,
)
from esper_arbiter.systems.presets.squad.tools import SQUAD_REGISTRY as DEFAULT_REGISTRY

log = logging.getLogger(__name__)

__all__ = [
    "MAX_CHECKED_STEPS", "PlanValidation", "StepError", "ValidationCode", "collapse_raw_repeats",
    "collapse_repeats", "validate_plan", "validate_step",
]

MAX_CHECKED_STEPS = 64
"""Steps of an over-long plan past this index are not checked one by one (the plan is rejected
as too long anyway); bounds the work spent on absurd input."""

_EPS = 1e-9


class ValidationCode(StrEnum):
    """Why a plan or a step was rejected. One code per distinct reason."""

    UNKNOWN_TOOL = "unknown_tool"
    MISSING_ARG = "missing_arg"
    EXTRA_ARG = "extra_arg"
    BAD_ARG_TYPE = "bad_arg_type"
    OUT_OF_BOUNDS = "out_of_bounds"
    ON_OBSTACLE = "on_obstacle"
    UNREACHABLE = "unreachable"
    NOT_COVER = "not_cover"
    TARGET_MISSING = "target_missing"
    TARGET_DEAD = "target_dead"
    TARGET_NOT_HOSTILE = "target_not_hostile"
    TARGET_NOT_ALLY = "target_not_ally"
    TARGET_NOT_DOWNED = "target_not_downed"
    OUT_OF_REACH = "out_of_reach"
    NO_LINE_OF_SIGHT = "no_line_of_sight"
    NO_AMMO = "no_ammo"
    COOLDOWN = "cooldown"
    BAD_VALUE = "bad_value"
    EMPTY_PLAN = "empty_plan"
    PLAN_TOO_LONG = "plan_too_long"
    NOT_A_PLAN = "not_a_plan"


@dataclass(frozen=True, slots=True)
class StepError:
    """One problem. ``index`` is the 0-based step index (``None`` for plan-level problems and
    for :func:`validate_step`); ``message`` numbers steps from 1, as a user counts them."""

    index: int | None
    code: ValidationCode
    message: str

    def __str__(self) -> str:
        return self.message


@dataclass(frozen=True, slots=True)
class PlanValidation:
    """Outcome of :func:`validate_plan`.

    ``ok`` is true when there are no errors; then ``steps`` is the whole plan, typed. When not
    ok, ``steps`` still holds the steps that were well formed and legal, in order (for display
    or salvage); a caller that wants all or nothing checks ``ok``.
    """

    ok: bool
    steps: tuple[ActionStep, ...]
    errors: tuple[StepError, ...]

    def summary(self, limit: int = 5) -> str:
        """The first ``limit`` error messages joined for a log line or a failure message."""
        if self.ok:
            return f"ok ({len(self.steps)} steps)"
        msgs = [e.message for e in self.errors[:limit]]
        more = len(self.errors) - limit
        if more > 0:
            msgs.append(f"... and {more} more")
        return "; ".join(msgs)


# -- simulation state ------------------------------------------------------------------------


@dataclass(slots=True)
class _AgentState:
    """What the validator knows about the agent at a point of the plan."""

    pos: tuple[int, int] | None
    ammo: int
    tracks_ammo: bool
    capacity: int
    elapsed: float
    ready_in: Mapping[str, float]
    planning: bool = False
    """Checking a whole plan ahead of time, not a step about to be issued."""
    walks_first: bool = False
    """The step being checked is out of reach but its tool walks into reach first."""

    @staticmethod
    def of(snapshot: WorldSnapshot) -> _AgentState:
        tracks = snapshot.ammo_capacity > 0 or snapshot.ammo > 0
        return _AgentState(
            pos=(snapshot.me.x, snapshot.me.y),
            ammo=snapshot.ammo,
            tracks_ammo=tracks,
            capacity=snapshot.ammo_capacity,
            elapsed=0.0,
            ready_in=snapshot.cooldowns,
        )


Issue = tuple[ValidationCode, str]


# -- public API --------------------------------------------------------------------------------


def validate_plan(
    plan: object,
    snapshot: WorldSnapshot,
    registry: ToolRegistry = DEFAULT_REGISTRY,
    rules: Rules = DEFAULT_RULES,
    max_steps: int = 8,
) -> PlanValidation:
    """Check an untrusted plan: a list of step dicts, or a dict with a ``steps`` list.

    Every bad step is reported (not just the first), and each step's problems are independent
    where that makes sense (a dead target *and* no ammo are two errors). Never raises.
    """
    try:
        return _validate_plan(plan, snapshot, registry, rules, max_steps)
    except Exception as exc:  # pragma: no cover - a bug here must not take the game down
        log.exception("validator failed on a plan")
        err = StepError(None, ValidationCode.NOT_A_PLAN, f"plan could not be checked: {exc!r}")
        return PlanValidation(False, (), (err,))


def validate_step(
    step: ActionStep,
    snapshot: WorldSnapshot,
    registry: ToolRegistry = DEFAULT_REGISTRY,
    rules: Rules = DEFAULT_RULES,
) -> StepError | None:
    """Re-check one typed step against the current snapshot; ``None`` when it may be issued.

    Returns the first problem found (``index`` is ``None``; the caller knows where the step sits
    in its plan). Meant to be called once per step issue, so it stays cheap.
    """
    spec = registry.get(getattr(step, "act", ""))
    if spec is None:
        return StepError(None, ValidationCode.UNKNOWN_TOOL,
                         f"{describe_typed(step)}: unknown tool {getattr(step, 'act', '?')!r}")
    values: dict[str, int | float] = {}
    for a in spec.args:
        v = getattr(step, a.name, None)
        if not _is_number(v):
            return StepError(None, ValidationCode.MISSING_ARG,
                             f"{describe_typed(step)}: argument {a.name!r} missing or not a "
                             "number")
        assert isinstance(v, (int, float))
        values[a.name] = v
    issues = _semantic(spec, values, snapshot, rules, _AgentState.of(snapshot))
    if not issues and Check.LINE_OF_FIRE in spec.checks and spec.target_arg is not None:
        issues = _line_of_fire(int(values[spec.target_arg.name]), snapshot, rules)
    if not issues:
        return None
    code, detail = issues[0]
    return StepError(None, code, f"{describe_typed(step)}: {detail}")


def _line_of_fire(
    target_id: int, snap: WorldSnapshot, rules: Rules
) -> list[tuple[ValidationCode, str]]:
    target = snap.unit(target_id)
    if target is None:
        return []  # reported by the target checks
    dist = math.dist(snap.me.pos, target.pos)
    if dist > rules.fire_range + _EPS:
        return [(ValidationCode.OUT_OF_REACH,
                 f"#{target_id} is {dist:.1f} tiles away, beyond fire range {rules.fire_range:g}")]
    if not line_of_sight(snap.grid, snap.me.pos, target.pos):
        return [(ValidationCode.NO_LINE_OF_SIGHT, f"#{target_id} is not in sight")]
    return []


# -- plan level --------------------------------------------------------------------------------


def _validate_plan(
    plan: object,
    snapshot: WorldSnapshot,
    registry: ToolRegistry,
    rules: Rules,
    max_steps: int,
) -> PlanValidation:
    raw_steps, problem = _extract_steps(plan)
    if raw_steps is None:
        return PlanValidation(False, (), (StepError(None, ValidationCode.NOT_A_PLAN, problem),))
    errors: list[StepError] = []
    if not raw_steps:
        errors.append(StepError(None, ValidationCode.EMPTY_PLAN, "the plan has no steps"))
        return PlanValidation(False, (), tuple(errors))
    if len(raw_steps) > max_steps:
        errors.append(StepError(
            None, ValidationCode.PLAN_TOO_LONG,
            f"the plan has {len(raw_steps)} steps; at most {max_steps} are allowed",
        ))
    state = _AgentState.of(snapshot)
    state.planning = True
    steps = []
    for i, raw in enumerate(raw_steps[:max(max_steps, MAX_CHECKED_STEPS)]):
        step_errors, step = _check_raw_step(i, raw, snapshot, registry, rules, state)
        errors.extend(step_errors)
        if step is not None:
            steps.append(step)
    return PlanValidation(not errors, tuple(steps), tuple(errors))


def _extract_steps(plan: object) -> tuple[list[object] | None, str]:
    if isinstance(plan, (list, tuple)):
        return list(plan), ""
    if isinstance(plan, dict):
        if "steps" in plan:
            steps = plan["steps"]
            if isinstance(steps, (list, tuple)):
                return list(steps), ""
            return None, f'"steps" must be a list of step objects, got {typename(steps)}'
        keys = ", ".join(sorted(clip(safe_repr(k)) for k in list(plan)[:8]))
        hint = ' (a single step: wrap it as {"steps": [...]})' if "act" in plan else ""
        return None, (f'expected {{"steps": [...]}} or a list of steps, got an object with keys '
                      f"{keys or 'none'}{hint}")
    return None, f'expected {{"steps": [...]}} or a list of steps, got {typename(plan)}'


def _check_raw_step(
    i: int,
    raw: object,
    snapshot: WorldSnapshot,
    registry: ToolRegistry,
    rules: Rules,
    state: _AgentState,
) -> tuple[list[StepError], ActionStep | None]:
    n = i + 1
    if not isinstance(raw, dict):
        return [StepError(i, ValidationCode.NOT_A_PLAN,
                          f'step {n} is {typename(raw)}, not an object like {{"act": ...}}')], None
    label = f"step {n} {describe_raw(raw)}"
    if "act" not in raw:
        return [StepError(i, ValidationCode.MISSING_ARG,
                          f'{label}: missing "act" (the tool name)')], None
    act = raw["act"]
    if not isinstance(act, str):
        return [StepError(i, ValidationCode.BAD_ARG_TYPE,
                          f'{label}: "act" must be a tool name string, got {typename(act)}')
                ], None
    spec = registry.get(act)
    if spec is None:
        return [StepError(i, ValidationCode.UNKNOWN_TOOL,
                          f"{label}: unknown tool {clip(act)!r}{_suggest(act, registry)}")], None

    errors: list[StepError] = []
    values: dict[str, int | float] = {}
    for a in spec.args:
        if a.name not in raw:
            errors.append(StepError(i, ValidationCode.MISSING_ARG,
                                    f"{label}: missing argument {a.name!r} ({a.description})"))
            continue
        v = _coerce(raw[a.name], a.kind)
        if v is None:
            want = "an integer" if a.kind.is_int else "a number of seconds"
            errors.append(StepError(
                i, ValidationCode.BAD_ARG_TYPE,
                f"{label}: {a.name} must be {want}, got {clip(safe_repr(raw[a.name]))} "
                f"({typename(raw[a.name])})",
            ))
            continue
        values[a.name] = v
    for key in raw:
        if key != "act" and key not in spec.arg_names:
            takes = ", ".join(a.name for a in spec.args) or "no arguments"
            errors.append(StepError(
                i, ValidationCode.EXTRA_ARG,
                f"{label}: unexpected argument {clip(safe_repr(key))}; {spec.name} takes {takes}",
            ))
    if errors:
        return errors, None
    issues = _semantic(spec, values, snapshot, rules, state)
    if issues:
        return [StepError(i, code, f"{label}: {detail}") for code, detail in issues], None
    _apply(spec, values, rules, state)
    return [], spec.build(**values)


# -- the rules ----------------------------------------------------------------------------


def _semantic(
    spec: ToolSpec,
    values: Mapping[str, int | float],
    snap: WorldSnapshot,
    rules: Rules,
    state: _AgentState,
) -> list[Issue]:
    """The legality checks of ``spec`` for well-typed ``values``; empty when legal."""
    state.walks_first = False
    issues: list[Issue] = []
    checks = spec.checks
    if spec.tile_args is not None:
        x, y = int(values[spec.tile_args[0]]), int(values[spec.tile_args[1]])
        issue = _tile_issue(spec, x, y, snap, rules, state)
        if issue is not None:
            issues.append(issue)
    target = spec.target_arg
    if target is not None:
        issue = _target_issue(spec, int(values[target.name]), target.kind, snap, rules, state)
        if issue is not None:
            issues.append(issue)
    for a in spec.args:
        if a.kind is ArgKind.SECONDS:
            lo, hi = a.seconds_range(rules)
            v = values[a.name]
            if not (lo - _EPS <= v <= hi + _EPS):
                issues.append((ValidationCode.BAD_VALUE,
                               f"{a.name}={v:g} is outside {lo:g}-{hi:g}"))
    if Check.AMMO in checks and state.tracks_ammo and state.ammo <= 0:
        cap = f"/{state.capacity}" if state.capacity else ""
        issues.append((ValidationCode.NO_AMMO, f"no ammo loaded ({state.ammo}{cap}): Reload first"))
    if Check.COOLDOWN in checks and spec.cooldown is not None:
        left = state.ready_in.get(spec.cooldown, 0.0) - state.elapsed
        if left > _EPS:
            issues.append((ValidationCode.COOLDOWN,
                           f"{spec.cooldown} is on cooldown for {left:.1f}s more"))
    return issues


def _tile_issue(
    spec: ToolSpec, x: int, y: int, snap: WorldSnapshot, rules: Rules, state: _AgentState
) -> Issue | None:
    grid = snap.grid
    checks = spec.checks
    if not (0 <= x < grid.width and 0 <= y < grid.height):
        return (ValidationCode.OUT_OF_BOUNDS,
                f"tile ({fmt_value(x)}, {fmt_value(y)}) is outside the "
                f"{grid.width}x{grid.height} map "
                f"(x 0-{grid.width - 1}, y 0-{grid.height - 1})")
    if Check.WALKABLE in checks and (x, y) in grid.walls:
        return ValidationCode.ON_OBSTACLE, f"tile ({x}, {y}) is a wall"
    if Check.COVER in checks and (x, y) not in grid.cover:
        near = sorted(grid.cover, key=lambda t: (abs(t[0] - x) + abs(t[1] - y), t))[:4]
        hint = ("; nearest cover: " + ", ".join(f"({a}, {b})" for a, b in near)) if near else (
            "; the map has no cover")
        return ValidationCode.NOT_COVER, f"tile ({x}, {y}) is not a cover tile{hint}"
    me = snap.me
    if Check.REACHABLE in checks and not reachable(grid, (me.x, me.y), (x, y)):
        return (ValidationCode.UNREACHABLE,
                f"tile ({x}, {y}) cannot be reached on foot from ({me.x}, {me.y})")
    if Check.IN_REACH in checks and spec.reach is not None and state.pos is not None:
        r = spec.reach(rules)
        d = math.hypot(x - state.pos[0], y - state.pos[1])
        if d > r + _EPS and state.planning and spec.prepare is not None:
            # Ahead of time, a tile out of reach is not an error for a tool whose preparer
            # walks into reach first (ThrowSmoke); just before issue it is, and then prepared.
            state.walks_first = True
        elif d > r + _EPS:
            return (ValidationCode.OUT_OF_REACH,
                    f"tile ({x}, {y}) is {d:.1f} tiles from ({state.pos[0]}, {state.pos[1]}); "
                    f"{spec.name} reaches {r:g}")
    return None


def _target_issue(
    spec: ToolSpec,
    tid: int,
    kind: ArgKind,
    snap: WorldSnapshot,
    rules: Rules,
    state: _AgentState,
) -> Issue | None:
    checks = spec.checks
    unit = snap.unit(tid)
    hostile = kind is ArgKind.HOSTILE_ID
    if unit is None:
        pool = ([u for u in snap.enemies if u.hp > 0] if hostile
                else [u for u in ally_units(snap)])
        known = ", ".join(f"#{u.id}" for u in pool[:8]) or "none"
        who = "live enemies" if hostile else "you and your allies"
        return (ValidationCode.TARGET_MISSING,
                f"no unit #{fmt_value(tid)} in sight ({who}: {known})")
    is_enemy = any(e is unit for e in snap.enemies)
    if hostile and not is_enemy:
        return ValidationCode.TARGET_NOT_HOSTILE, f"#{tid} is {_relation(unit, snap)}, not an enemy"
    if not hostile and (is_enemy or any(u is unit for u in snap.neutrals)):
        what = "an enemy" if is_enemy else f"neutral ({unit.team})"
        return ValidationCode.TARGET_NOT_ALLY, f"#{tid} is {what}, not you or an ally"
    if Check.TARGET_DOWNED in checks:
        if unit.hp > 0:
            return (ValidationCode.TARGET_NOT_DOWNED,
                    f"#{tid} is not down (hp {unit.hp:g}/{unit.max_hp:g})")
    elif unit.hp <= 0:
        if hostile:
            return ValidationCode.TARGET_DEAD, f"enemy #{tid} is already dead"
        return ValidationCode.TARGET_DEAD, f"#{tid} is down (hp 0): Revive, not {spec.name}"
    me = snap.me
    if Check.REACHABLE in checks and not reachable(snap.grid, (me.x, me.y), unit.pos):
        return (ValidationCode.UNREACHABLE,
                f"#{tid} at ({unit.x}, {unit.y}) cannot be reached on foot from ({me.x}, {me.y})")
    if Check.IN_REACH in checks and spec.reach is not None and state.pos is not None:
        r = spec.reach(rules)
        d = math.hypot(unit.x - state.pos[0], unit.y - state.pos[1])
        if d > r + _EPS:
            return (ValidationCode.OUT_OF_REACH,
                    f"#{tid} at ({unit.x}, {unit.y}) is {d:.1f} tiles from "
                    f"({state.pos[0]}, {state.pos[1]}); {spec.name} reaches {r:g}")
    return None


def _apply(spec: ToolSpec, values: Mapping[str, int | float], rules: Rules,
           state: _AgentState) -> None:
    """Advance the simulated agent past a legal step."""
    walked, state.walks_first = state.walks_first, False
    if spec.cooldown is not None and spec.cooldown_time is not None:
        ready = dict(state.ready_in)
        ready[spec.cooldown] = state.elapsed + spec.cooldown_time(rules)
        state.ready_in = ready
    # Only time that certainly passes counts: explicit seconds and the walk. A tool's usual
    # duration does not (a Reload with a full magazine, or a burst at a target that drops on
    # the first shot, ends at once).
    took = 0.0
    for a in spec.args:
        if a.kind is ArgKind.SECONDS:
            took += float(values[a.name])
    if spec.effect is Effect.MOVE and spec.tile_args is not None:
        dest = (int(values[spec.tile_args[0]]), int(values[spec.tile_args[1]]))
        if state.pos is not None and rules.move_speed > 0:
            # Each step changes x and y by at most one: a lower bound on the walk.
            steps = max(abs(dest[0] - state.pos[0]), abs(dest[1] - state.pos[1]))
            took += steps / rules.move_speed
        state.pos = dest
    elif spec.effect is Effect.APPROACH or walked:
        state.pos = None  # somewhere near the target, or walked into reach first
    elif spec.effect is Effect.RELOAD:
        state.ammo = max(state.ammo, state.capacity, 1)
    state.elapsed += took


# -- helpers --------------------------------------------------------------------------------


def _is_number(v: object) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _coerce(v: object, kind: ArgKind) -> int | float | None:
    """The argument value typed for ``kind``, or ``None`` when it has the wrong type."""
    if isinstance(v, bool):
        return None
    if kind.is_int:
        if isinstance(v, int):
            return v
        if isinstance(v, float) and math.isfinite(v) and v.is_integer():
            return int(v)
        return None
    if isinstance(v, int):
        # An int beyond float range is a number, just far too large: inf, so the range check
        # says so (math.isfinite / float() would raise OverflowError on it).
        return float(v) if abs(v) < 2**1023 else math.inf
    if isinstance(v, float) and math.isfinite(v):
        return v
    return None


def _relation(unit: UnitView, snap: WorldSnapshot) -> str:
    if unit is snap.me or unit.id == snap.me.id:
        return "you"
    if snap.leader is not None and unit.id == snap.leader.id:
        return "your leader"
    if any(u.id == unit.id for u in snap.neutrals):
        return f"neutral ({unit.team})"
    return "an ally"


def _suggest(act: str, registry: ToolRegistry) -> str:
    names = registry.names()
    lower = {n.lower(): n for n in names}
    close = difflib.get_close_matches(act.lower()[:40], list(lower), n=1, cutoff=0.6)
    if close:
        return f" (did you mean {lower[close[0]]}?)"
    return f"; tools are {', '.join(names)}"
