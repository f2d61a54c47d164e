"""The tool registry: one description of every action an agent can be asked to take.

Each :class:`ToolSpec` names a tool, says in a line what it does, lists its typed arguments
(:class:`ArgSpec` with an :class:`ArgKind`) and declares its legality rules (:class:`Check`).
Everything else is *generated* from these specs, so the three consumers can never disagree on a
name, an argument or a rule:

* the prompt's tool list (:meth:`ToolRegistry.prompt_tool_list`),
* the JSON schema handed to the model for structured output, narrowed to the live snapshot
  (:meth:`ToolRegistry.step_schema`, :meth:`ToolRegistry.plan_schema`),
* the validator (``esper_arbiter.systems.planning.validation``), which interprets the same checks.

A tool registered in one place therefore appears in all three. The squad-tactics preset's
twelve tools are in ``systems.presets.squad.tools``; a host registers its own the same way.

Schema narrowing. The schema only offers values that could be legal *in this snapshot*: tiles
inside the map, and for tools that check it, walkable / reachable from the agent / cover tiles;
target ids of live hostiles (or of allies, self included); whole seconds within the rule bounds.
A tool with no legal use right now is left out: Attack with no live hostile, ThrowSmoke on
cooldown, Attack / CoverFire with an empty magazine. The last two make the schema stricter than
the validator (which accepts ``[Wait 12, ThrowSmoke]`` or ``[Reload, Attack]``): small models copy
what they see rather than plan around a cooldown, so the schema only offers what is usable now and
the agent replans after reloading. What depends on where the agent will be *during* the plan
(reach of a heal, range of a smoke grenade) is left to the validator, which follows the plan
step by step. Ints are constrained with ``enum`` and
tools with ``const``, never ``minimum``/``format``/``pattern``, so the schema converts cleanly to
a llama.cpp grammar (ollama and llama-cpp-python both use that converter).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from esper_arbiter.components.actions import ActionStep
from esper_arbiter.components.snapshot import UnitView, WorldSnapshot
from esper_arbiter.systems.planning.pathfinding import line_of_sight, step_distances
from esper_arbiter.systems.planning.rules import DEFAULT_RULES, Rules

Tile = tuple[int, int]

MAX_TILE_BRANCHES = 12
"""A tile argument pair is narrowed to an exact set of tiles with one schema branch per group of
columns sharing the same legal rows. Past this many groups the schema falls back to the legal
columns x legal rows (a superset; the validator is exact), which keeps the grammar small on big
or ragged maps."""


class ArgKind(StrEnum):
    """What an argument denotes; decides its JSON type, its schema domain and its checks."""

    X = "x"
    """Tile column, 0..width-1. A tool with an X argument has exactly one Y argument."""
    Y = "y"
    """Tile row, 0..height-1."""
    HOSTILE_ID = "hostile_id"
    """Entity id of an enemy in the snapshot."""
    ALLY_ID = "ally_id"
    """Entity id of the agent itself, the leader or an ally."""
    SECONDS = "seconds"
    """A duration; bounds come from :attr:`ArgSpec.bounds` applied to the :class:`Rules`."""

    @property
    def is_int(self) -> bool:
        return self is not ArgKind.SECONDS


class Check(StrEnum):
    """Legality rules a tool can declare. The validator implements each one; the prompt
    describes them; the schema narrows by those that do not depend on the plan's progress."""

    WALKABLE = "walkable"
    """The tile is not a wall."""
    REACHABLE = "reachable"
    """A walking path joins the agent and the tile (or the target's tile)."""
    COVER = "cover"
    """The tile is a cover tile."""
    IN_REACH = "in_reach"
    """The tile / target is within :attr:`ToolSpec.reach` tiles of the agent (euclidean)."""
    AMMO = "ammo"
    """At least one round loaded."""
    LINE_OF_FIRE = "line_of_fire"
    """The target is within fire range and in sight. Checked when the step is issued only: a
    plan cannot know where everyone will stand by then."""
    COOLDOWN = "cooldown"
    """The ability named :attr:`ToolSpec.cooldown` is ready."""
    TARGET_DOWNED = "target_downed"
    """The target must be down (hp <= 0) instead of alive (Revive)."""


class Effect(StrEnum):
    """What carrying out the tool does to the agent, as far as plan validation needs to know."""

    NONE = "none"
    MOVE = "move"
    """The agent ends on the tile (x, y)."""
    APPROACH = "approach"
    """The agent ends somewhere near its target: its tile is no longer known in advance."""
    RELOAD = "reload"
    """The magazine is refilled."""


SecondsBounds = Callable[[Rules], tuple[float, float]]

Mooter = Callable[[ActionStep, WorldSnapshot, Rules], str | None]
"""Given a step of this tool that could be issued now, the snapshot and the rules: why it has
lost its point (``"the cloud would blind no enemy now"``), or ``None`` when it still has one.
See :func:`systems.planning.grounding.moot_reason`."""

Preparer = Callable[[ActionStep, WorldSnapshot, Rules], ActionStep | None]
"""Given a step of this tool that cannot be issued now, the snapshot and the rules: a step that
brings it within reach (walk into range, reload, wait out a cooldown), or ``None`` when
nothing soon would. See :mod:`systems.planning.grounding`."""


@dataclass(frozen=True, slots=True)
class ArgSpec:
    """One argument of a tool.

    ``bounds`` (SECONDS only) gives the inclusive legal range from the rules in force.
    ``example`` is the value used in the prompt's generated example.
    """

    name: str
    kind: ArgKind
    description: str = ""
    bounds: SecondsBounds | None = None
    example: int | float = 0

    def __post_init__(self) -> None:
        if self.kind is ArgKind.SECONDS and self.bounds is None:
            raise ValueError(
                f"argument {self.name!r}: a SECONDS argument needs bounds, the legal range "
                f"from the rules: ArgSpec({self.name!r}, ArgKind.SECONDS, "
                f"bounds=lambda rules: (0.5, 10.0))")
        if self.kind is not ArgKind.SECONDS and self.bounds is not None:
            raise ValueError(f"argument {self.name!r}: bounds apply to SECONDS arguments only "
                             f"(this one is {self.kind.name})")

    def seconds_range(self, rules: Rules) -> tuple[float, float]:
        """Inclusive legal range of a SECONDS argument."""
        assert self.bounds is not None
        return self.bounds(rules)


@dataclass(frozen=True, slots=True)
class ToolSpec:
    """One tool: name, what it does (for the prompt), arguments and legality rules.

    ``build`` turns validated argument values (keyword arguments named as :attr:`args`) into the
    typed step. ``reach`` is the IN_REACH distance from the rules; ``cooldown`` names the ability
    (a key of ``WorldSnapshot.cooldowns``) and ``cooldown_time`` how long it is unavailable after
    use. Whether a cooldown has run out later in a plan is judged from the time that certainly
    passes: walks and SECONDS arguments.

    ``prepare`` makes the tool an *intent* rather than a command that only works from here: when
    a planned step fails its issue-time checks (target out of range or sight, cooldown not yet
    over, magazine empty), the arbiter issues the step ``prepare`` returns first, then tries the
    planned step again, instead of skipping it.

    ``defer`` times a step that *can* run now but would be wasted now (smoke thrown long
    before anyone walks into the lane it covers): it returns a step to do meanwhile (a
    ``Wait``), or ``None`` to go ahead. The arbiter defers a model step for at most
    ``ArbiterConfig.max_defer_s`` in all, then carries it out anyway.

    ``moot`` says why a step that *can* run now has lost its point, or ``None``: a plan is
    written seconds before its steps come up, and a step meant for a moment that has passed
    (smoke to blind an enemy who has died since) would only cost the agent time, a cooldown
    and the position GOAP would have held. The arbiter skips such a model step, with the
    reason, and carries on with the plan.
    """

    name: str
    description: str
    build: Callable[..., ActionStep]
    args: tuple[ArgSpec, ...] = ()
    checks: frozenset[Check] = frozenset()
    effect: Effect = Effect.NONE
    reach: Callable[[Rules], float] | None = None
    cooldown: str | None = None
    cooldown_time: Callable[[Rules], float] | None = None
    prepare: Preparer | None = None
    defer: Preparer | None = None
    moot: Mooter | None = None
    arg_names: frozenset[str] = field(init=False)
    tile_args: tuple[str, str] | None = field(init=False)
    target_arg: ArgSpec | None = field(init=False)

    def __post_init__(self) -> None:
        names = [a.name for a in self.args]
        if "act" in names or len(set(names)) != len(names):
            raise ValueError(f"tool {self.name}: argument names must be unique and not 'act'")
        xs = [a.name for a in self.args if a.kind is ArgKind.X]
        ys = [a.name for a in self.args if a.kind is ArgKind.Y]
        if len(xs) > 1 or len(ys) > 1 or len(xs) != len(ys):
            raise ValueError(f"tool {self.name}: needs exactly one X and one Y argument, or none")
        targets = [a for a in self.args if a.kind in (ArgKind.HOSTILE_ID, ArgKind.ALLY_ID)]
        if len(targets) > 1:
            raise ValueError(f"tool {self.name}: at most one target argument")
        if Check.IN_REACH in self.checks and self.reach is None:
            raise ValueError(f"tool {self.name}: IN_REACH needs reach")
        if Check.COOLDOWN in self.checks and self.cooldown is None:
            raise ValueError(f"tool {self.name}: COOLDOWN needs a cooldown name")
        if self.effect is Effect.MOVE and not xs:
            raise ValueError(f"tool {self.name}: a MOVE effect needs a tile")
        act = getattr(self.build, "act", None) if isinstance(self.build, type) else None
        if isinstance(act, str) and act != self.name:
            raise ValueError(f"tool {self.name}: builds {self.build.__name__}, whose act is "
                             f"{act!r}; a tool is named as its step's act")
        object.__setattr__(self, "arg_names", frozenset(names))
        object.__setattr__(self, "tile_args", (xs[0], ys[0]) if xs else None)
        object.__setattr__(self, "target_arg", targets[0] if targets else None)

    def signature(self) -> str:
        """``MoveTo(x, y)`` -- the form the prompt lists."""
        return f"{self.name}({', '.join(a.name for a in self.args)})"

    def rule_text(self, rules: Rules = DEFAULT_RULES) -> str:
        """The tool's legality rules in a few words, generated from its checks."""
        parts: list[str] = []
        if self.tile_args is not None:
            tile = []
            if Check.COVER in self.checks:
                tile.append("a cover tile")
            elif Check.WALKABLE in self.checks:
                tile.append("not a wall")
            if Check.REACHABLE in self.checks:
                tile.append("reachable")
            if Check.IN_REACH in self.checks and self.reach is not None:
                tile.append(f"within {self.reach(rules):g} tiles of you")
            if tile:
                parts.append("tile " + ", ".join(tile))
        t = self.target_arg
        if t is not None:
            downed = Check.TARGET_DOWNED in self.checks
            if t.kind is ArgKind.HOSTILE_ID:
                who = "id of a downed enemy" if downed else "id of a live enemy"
            else:
                who = "id of a downed ally" if downed else "your id or a live ally's id"
            if Check.IN_REACH in self.checks and self.reach is not None:
                who += f" within {self.reach(rules):g} tiles"
            parts.append(f"{t.name}: {who}")
        for a in self.args:
            if a.kind is ArgKind.SECONDS:
                lo, hi = a.seconds_range(rules)
                parts.append(f"{a.name} {lo:g}-{hi:g}")
        if Check.AMMO in self.checks:
            parts.append("needs ammo")
        if Check.LINE_OF_FIRE in self.checks:
            parts.append(f"target in sight and within {rules.fire_range:g} tiles when it starts")
        if Check.COOLDOWN in self.checks:
            parts.append(f"only when cooldown {self.cooldown} is 0")
        return "; ".join(parts)

    def example_args(self) -> dict[str, int | float]:
        return {a.name: a.example for a in self.args}


class ToolRegistry:
    """An ordered set of :class:`ToolSpec` and the generators built on it."""

    def __init__(self, specs: Iterable[ToolSpec] = ()) -> None:
        self._specs: dict[str, ToolSpec] = {}
        for spec in specs:
            self.register(spec)

    def register(self, spec: ToolSpec) -> None:
        """Add a tool. Registering a name twice is a programming error (``ValueError``)."""
        if spec.name in self._specs:
            raise ValueError(f"tool {spec.name!r} is already registered")
        self._specs[spec.name] = spec

    def names(self) -> tuple[str, ...]:
        """Tool names in registration order."""
        return tuple(self._specs)

    def get(self, name: str) -> ToolSpec | None:
        """The spec for ``name``, or ``None`` when no such tool is registered."""
        return self._specs.get(name)

    def __contains__(self, name: object) -> bool:
        return name in self._specs

    def __iter__(self) -> Iterator[ToolSpec]:
        return iter(self._specs.values())

    def __len__(self) -> int:
        return len(self._specs)

    def copy(self) -> ToolRegistry:
        """A new registry with the same tools (to extend without touching the original)."""
        return ToolRegistry(self._specs.values())

    # -- prompt ----------------------------------------------------------------------------

    def prompt_tool_list(self, rules: Rules = DEFAULT_RULES) -> str:
        """One line per tool: signature, what it does, its rules. For the system prompt."""
        lines = []
        for spec in self:
            rule = spec.rule_text(rules)
            lines.append(f"- {spec.signature()}: {spec.description}" + (f" ({rule})" if rule
                                                                          else ""))
        return "\n".join(lines)

    # -- schema ----------------------------------------------------------------------------

    def step_schema(self, snapshot: WorldSnapshot, rules: Rules = DEFAULT_RULES) -> dict[str, Any]:
        """JSON schema of one step, narrowed to ``snapshot`` (see the module docstring).

        ``{"anyOf": [branch, ...]}`` where each branch is an object with ``act`` as a
        ``const`` and the tool's arguments as enums, all required, no other properties. A tool
        may take several branches (one per group of legal tile columns). With no legal tool at
        all the result is ``{"anyOf": []}``, which nothing matches.
        """
        ctx = _SchemaContext(snapshot)
        branches: list[dict[str, Any]] = []
        for spec in self:
            branches.extend(_tool_branches(spec, ctx, rules))
        return {"anyOf": branches}

    def plan_schema(
        self, snapshot: WorldSnapshot, max_steps: int = 8, rules: Rules = DEFAULT_RULES
    ) -> dict[str, Any]:
        """JSON schema of the whole reply: ``{"steps": [step, ...]}`` with 1..max_steps steps."""
        return {
            "type": "object",
            "properties": {
                "steps": {
                    "type": "array",
                    "items": self.step_schema(snapshot, rules),
                    "minItems": 1,
                    "maxItems": max(1, max_steps),
                }
            },
            "required": ["steps"],
            "additionalProperties": False,
        }

    # -- building --------------------------------------------------------------------------

    def build_step(self, raw: dict[str, Any]) -> ActionStep:
        """Typed step from an *already validated* dict (``{"act": "MoveTo", "x": 3, "y": 2}``).

        Int arguments are converted with ``int`` (the validator accepts integral floats such as
        ``3.0``), SECONDS with ``float``. Raises ``KeyError`` / ``ValueError`` / ``TypeError``
        on input the validator would have rejected: never call it on untrusted data.
        """
        spec = self._specs.get(raw["act"])
        if spec is None:
            raise KeyError(f"unknown tool {raw['act']!r}")
        kwargs: dict[str, int | float] = {}
        for a in spec.args:
            v = raw[a.name]
            kwargs[a.name] = int(v) if a.kind.is_int else float(v)
        return spec.build(**kwargs)


# -- schema helpers ------------------------------------------------------------------------


class _SchemaContext:
    """Per-call caches so a schema for many tools computes each domain once."""

    def __init__(self, snapshot: WorldSnapshot) -> None:
        self.snapshot = snapshot
        self._reach: frozenset[Tile] | None = None

    def reachable_tiles(self) -> frozenset[Tile]:
        if self._reach is None:
            self._reach = _reachable_from_me(self.snapshot)
        return self._reach


def ally_units(snapshot: WorldSnapshot) -> tuple[UnitView, ...]:
    """The agent itself, the leader and the allies, in that order (no duplicates)."""
    out = [snapshot.me]
    seen = {snapshot.me.id}
    if snapshot.leader is not None and snapshot.leader.id not in seen:
        out.append(snapshot.leader)
        seen.add(snapshot.leader.id)
    for u in snapshot.allies:
        if u.id not in seen:
            out.append(u)
            seen.add(u.id)
    return tuple(out)


def legal_tiles(spec: ToolSpec, snapshot: WorldSnapshot,
                reachable: frozenset[Tile] | None = None) -> list[Tile]:
    """Tiles the spec's tile arguments may take in ``snapshot``, ignoring plan progress
    (IN_REACH is not applied: the agent may walk closer first). Sorted by (x, y).

    ``reachable`` is the set of tiles the agent can walk to, if the caller already has it."""
    grid = snapshot.grid
    if Check.REACHABLE in spec.checks and reachable is None:
        reachable = _reachable_from_me(snapshot)
    if Check.COVER in spec.checks:
        # The nearest cover tiles only: on a big map every cover tile would make the schema
        # fall back to a columns x rows superset that lets a model pick a tile that is not
        # cover at all; a handful of exact, nearby choices is what an agent needs anyway.
        me = snapshot.me
        near = sorted((t for t in grid.cover if grid.in_bounds(*t) and grid.walkable(*t)
                       and (reachable is None or t in reachable)),
                      key=lambda t: ((t[0] - me.x) ** 2 + (t[1] - me.y) ** 2, t))
        cands: Iterable[Tile] = near[:MAX_TILE_BRANCHES]
    elif Check.REACHABLE in spec.checks and reachable is not None:
        cands = reachable
    else:
        cands = ((x, y) for x in range(grid.width) for y in range(grid.height))
    out = [
        t for t in cands
        if (Check.WALKABLE not in spec.checks or grid.walkable(*t))
        and (Check.REACHABLE not in spec.checks or (reachable is not None and t in reachable))
    ]
    out.sort()
    return out


def _reachable_from_me(snapshot: WorldSnapshot) -> frozenset[Tile]:
    me = snapshot.me
    return frozenset(step_distances(snapshot.grid, (me.x, me.y)))


def legal_targets(spec: ToolSpec, snapshot: WorldSnapshot,
                  reachable: frozenset[Tile] | None = None,
                  rules: Rules = DEFAULT_RULES) -> list[int]:
    """Entity ids the spec's target argument may take in ``snapshot`` (reach not applied).

    A tool that shoots (LINE_OF_FIRE) is offered only targets it can engage: in sight and range
    now, or reachable on foot (its preparer approaches them); a walled-off enemy out of sight is
    not on offer."""
    t = spec.target_arg
    if t is None:
        return []
    pool = snapshot.enemies if t.kind is ArgKind.HOSTILE_ID else ally_units(snapshot)
    downed = Check.TARGET_DOWNED in spec.checks
    out = []
    for u in pool:
        if (u.hp <= 0) != downed:
            continue
        if Check.REACHABLE in spec.checks or Check.LINE_OF_FIRE in spec.checks:
            if reachable is None:
                reachable = _reachable_from_me(snapshot)
            if u.pos not in reachable and not _next_to(u.pos, reachable) and not (
                    Check.LINE_OF_FIRE in spec.checks and _engageable(snapshot, u, rules)):
                continue
        out.append(u.id)
    return out


def _next_to(tile: Tile, tiles: frozenset[Tile]) -> bool:
    x, y = tile
    return any((x + dx, y + dy) in tiles for dx in (-1, 0, 1) for dy in (-1, 0, 1) if dx or dy)


def _engageable(snapshot: WorldSnapshot, u: UnitView, rules: Rules) -> bool:
    """In sight and within fire range of the agent now (shooting needs no walk)."""
    me = snapshot.me
    return (math.dist(me.pos, u.pos) <= rules.fire_range
            and line_of_sight(snapshot.grid, me.pos, u.pos))


def _whole_seconds(arg: ArgSpec, rules: Rules) -> list[int]:
    lo, hi = arg.seconds_range(rules)
    return list(range(max(1, math.ceil(lo)), math.floor(hi) + 1))


def _tool_branches(spec: ToolSpec, ctx: _SchemaContext, rules: Rules) -> list[dict[str, Any]]:
    snap = ctx.snapshot
    if Check.COOLDOWN in spec.checks and spec.cooldown and snap.cooldown(spec.cooldown) > 0:
        return []
    if Check.AMMO in spec.checks and snap.ammo <= 0 and snap.ammo_capacity > 0:
        return []
    needs_reach = Check.REACHABLE in spec.checks or Check.LINE_OF_FIRE in spec.checks
    reach = ctx.reachable_tiles() if needs_reach else None
    common: dict[str, dict[str, Any]] = {}
    for a in spec.args:
        if a.kind in (ArgKind.HOSTILE_ID, ArgKind.ALLY_ID):
            ids = legal_targets(spec, snap, reach, rules)
            if not ids:
                return []
            common[a.name] = {"type": "integer", "enum": ids}
        elif a.kind is ArgKind.SECONDS:
            secs = _whole_seconds(a, rules)
            if secs:
                common[a.name] = {"type": "integer", "enum": secs}
            else:
                lo, hi = a.seconds_range(rules)
                if hi < lo:
                    return []
                common[a.name] = {"type": "number"}
    tile_domains: list[tuple[list[int], list[int]]] = [([], [])]
    if spec.tile_args is not None:
        tiles = legal_tiles(spec, snap, reach)
        if not tiles:
            return []
        tile_domains = _group_tiles(tiles)
    branches = []
    for xs, ys in tile_domains:
        props: dict[str, Any] = {"act": {"const": spec.name}}
        for a in spec.args:
            if a.kind is ArgKind.X:
                props[a.name] = {"type": "integer", "enum": xs}
            elif a.kind is ArgKind.Y:
                props[a.name] = {"type": "integer", "enum": ys}
            else:
                props[a.name] = common[a.name]
        branches.append({
            "type": "object",
            "properties": props,
            "required": ["act", *(a.name for a in spec.args)],
            "additionalProperties": False,
        })
    return branches


def _group_tiles(tiles: list[Tile]) -> list[tuple[list[int], list[int]]]:
    """Exact cover of ``tiles`` by (columns, rows) products: columns with identical legal rows
    share a branch. Past :data:`MAX_TILE_BRANCHES` groups, one superset branch."""
    by_x: dict[int, list[int]] = {}
    for x, y in tiles:
        by_x.setdefault(x, []).append(y)
    groups: dict[tuple[int, ...], list[int]] = {}
    for x in sorted(by_x):
        groups.setdefault(tuple(sorted(by_x[x])), []).append(x)
    if len(groups) > MAX_TILE_BRANCHES:
        return [(sorted(by_x), sorted({y for _, y in tiles}))]
    return [(xs, list(ys)) for ys, xs in groups.items()]
