"""Prompts for a single agent: system rules, the tool list and a compact snapshot.

Everything about tools (names, arguments, rules) is generated from the tool registry, the same
one the JSON schema and the validator come from, so the three never disagree. The text is kept
short on purpose: the smallest supported model (SmolLM2-135M) has a context of about 2k
tokens, and the JSON schema, not the prose, is what keeps its output in shape. The system
prompt does not depend on the snapshot, so a llama.cpp backend reuses its cached prefix
between requests; everything that changes goes into the user message.

The user message starts with what matters most, the objective and the standing order, then
the situation, then the domain's options for this moment (:attr:`Domain.advise`: legal steps,
each with its reason) and an example reply made from those options. A small model copies its
example; a fixed example (``TakeCover, Attack, Wait`` whatever the situation) was copied into
every plan, while an example made from the live situation is worth copying and differs from
one moment to the next. A domain without advice gets an example made from its tools' example
arguments, in the user message as well.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from esper_arbiter.components.actions import ActionStep, step_to_dict
from esper_arbiter.components.snapshot import UnitView, WorldSnapshot
from esper_arbiter.systems.domain import Domain, default_domain
from esper_arbiter.systems.planning.pathfinding import line_of_sight
from esper_arbiter.systems.planning.tools import ToolRegistry, ToolSpec
from esper_arbiter.systems.planning.validation import validate_plan

log = logging.getLogger(__name__)

MAX_COVER_LISTED = 10
"""Cover tiles listed in the prompt (nearest first); the rest are counted."""
MAX_WALL_RUNS_LISTED = 24
"""Wall runs listed in the prompt; the rest are counted (big maps would not fit a 2k context)."""


@dataclass(frozen=True, slots=True)
class PromptLimits:
    """How much of a snapshot the situation text lists; the rest is counted ("+3 more").

    Units and cover are listed nearest first, wall runs and places nearest first too, so a
    trimmed prompt keeps what matters to the agent now. ``None`` means no limit."""

    enemies: int | None = None
    allies: int | None = None
    neutrals: int | None = None
    cover: int = MAX_COVER_LISTED
    walls: int = MAX_WALL_RUNS_LISTED
    places: int | None = None

    def scaled(self, fraction: float) -> PromptLimits:
        """Every limit times ``fraction`` (at least 1 of each kind of unit, 0 walls/cover)."""
        def cut(n: int | None, base: int, floor: int) -> int:
            return max(floor, int((base if n is None else n) * fraction))

        return PromptLimits(
            enemies=cut(self.enemies, 8, 1), allies=cut(self.allies, 8, 0),
            neutrals=cut(self.neutrals, 8, 0), cover=cut(self.cover, MAX_COVER_LISTED, 0),
            walls=cut(self.walls, MAX_WALL_RUNS_LISTED, 0), places=cut(self.places, 8, 1),
        )


FULL = PromptLimits()

_EXAMPLE_PREFERENCE = ("TakeCover", "Attack", "Wait")
"""Tools the prompt's example uses when registered; otherwise it picks tools by argument kind."""


def system_prompt(domain: Domain | None = None, max_steps: int = 8) -> str:
    """The domain's role text, the reply format and its tools (no example: that is built
    from the live situation, in the user message)."""
    d = domain if domain is not None else default_domain()
    orders = "; ".join(f"{word}: {meaning}" for word, meaning in d.orders.items())
    return "\n".join((
        d.role.strip(),
        *((f"Orders you may be given: {orders}.",) if orders else ()),
        f"Reply with JSON only: an object with \"steps\", a list of 1 to {max_steps} steps "
        "done in order. Each step is {\"act\": tool name, plus that tool's arguments}.",
        "Use only the ids and tiles given in the situation. Different steps, not one step "
        "repeated; the options listed are good choices for this moment.",
        "Tools:",
        d.tools.prompt_tool_list(d.rules),
    ))


MAX_EXAMPLE_STEPS = 3
"""Steps in the user message's example reply."""


def options(snapshot: WorldSnapshot, domain: Domain | None = None) -> list[tuple[ActionStep, str]]:
    """The domain's advice for ``snapshot`` (legal steps with reasons, most urgent first), or
    none. A domain's advisor that raises is treated as having nothing to say."""
    if snapshot.advice is not None:
        return list(snapshot.advice)  # captured on the game thread (see with_advice)
    d = domain if domain is not None else default_domain()
    if d.advise is None:
        return []
    try:
        advice = [(step, str(why)) for step, why in d.advise(snapshot)
                  if getattr(step, "act", None) in d.tools]
    except Exception:
        log.exception("domain %s: advice failed", d.name)
        return []
    if not advice:
        return []
    # Offered in order, the options must make a plan the validator accepts: drop any that
    # would not (a step the domain's own tools or rules refuse).
    checked = validate_plan([step_to_dict(s) for s, _ in advice], snapshot, d.tools, d.rules,
                            max_steps=len(advice))
    legal = list(checked.steps)
    out = []
    for step, why in advice:
        if legal and legal[0] == step:
            out.append((step, why))
            legal.pop(0)
    return out


def with_advice(snapshot: WorldSnapshot, domain: Domain) -> WorldSnapshot:
    """``snapshot`` carrying its domain's advice (see :attr:`WorldSnapshot.advice`), worked
    out now: the arbiter calls this on the game thread as it submits a request, so an advisor
    that reads the host's own components reads them in step with the snapshot and never
    from the model's thread. Unchanged when the domain has no advisor."""
    if domain.advise is None or snapshot.advice is not None:
        return snapshot
    return dataclasses.replace(snapshot, advice=tuple(options(snapshot, domain)))


def live_example(snapshot: WorldSnapshot, domain: Domain | None = None,
                 advice: Sequence[tuple[ActionStep, str]] | None = None) -> list[dict[str, Any]]:
    """The example reply's steps: the first options for this snapshot, else the tools' own
    example arguments (:func:`example_steps`)."""
    d = domain if domain is not None else default_domain()
    opts = options(snapshot, d) if advice is None else advice
    if opts:
        return [step_to_dict(step) for step, _ in opts[:MAX_EXAMPLE_STEPS]]
    return example_steps(d.tools)


def example_steps(registry: ToolRegistry) -> list[dict[str, Any]]:
    """Two or three example steps made only of registered tools and their example arguments."""
    chosen: list[ToolSpec] = []
    for name in _EXAMPLE_PREFERENCE:
        spec = registry.get(name)
        if spec is not None:
            chosen.append(spec)
    if len(chosen) < 2:
        # Fall back to one tool per kind of argument (tile, target, none), in registry order.
        def shape(s: ToolSpec) -> str:
            if s.tile_args is not None:
                return "tile"
            return "target" if s.target_arg is not None else "other"

        seen = {shape(s) for s in chosen}
        for spec in registry:
            if spec not in chosen and shape(spec) not in seen:
                chosen.append(spec)
                seen.add(shape(spec))
            if len(chosen) == 3:
                break
    return [{"act": s.name, **s.example_args()} for s in chosen]


def render_snapshot(snapshot: WorldSnapshot, limits: PromptLimits = FULL,
                    domain: Domain | None = None) -> str:
    """The situation as compact text: :func:`world_lines` (what squad-mates share) then
    :func:`own_lines` (this agent's view of it)."""
    return "\n".join(world_lines(snapshot, limits) + own_lines(snapshot, limits, domain))


def world_lines(snapshot: WorldSnapshot, limits: PromptLimits = FULL) -> list[str]:
    """What every agent looking at this world sees alike, most static first: objective,
    places, map and walls, cover, then enemies, neutrals and smoke, with absolute tiles only.

    Static first, so consecutive prompts on one map share a long token prefix (llama.cpp
    reuses its KV cache for it), and squad-mates' batches state it once. A list that fits its
    limit is in a fixed order (by tile or id), the same for every agent; one that is cut keeps
    the nearest to the agent (and is then the agent's own). Dead enemies are left out."""
    s = snapshot
    me = s.me
    o = s.objective
    # A line with nothing to say is left out (a domain with no objective, cover, leader or
    # ammo, a farm say, is not told "none" four times); walls and enemies always say.
    lines = [f"objective: {o.kind} {o.label} at ({o.x},{o.y})."] if o is not None else []
    if s.pois:
        places = sorted(s.pois.items(), key=lambda kv: (_dist(kv[1][0], kv[1][1], me), kv[0]))
        if limits.places is None or len(places) <= limits.places:
            places.sort(key=lambda kv: kv[0])
        lines.append("places: " + _listed(
            [f"{k} ({x},{y})" for k, (x, y) in places[:limits.places]], len(places)))
    g = s.grid
    runs = wall_runs(g.walls)
    walls = "; ".join(runs[:limits.walls]) or "none"
    if len(runs) > limits.walls:
        walls = (walls + "; " if limits.walls else "") + f"+{len(runs) - limits.walls} more"
    lines.append(f"map {g.width}x{g.height}, walls: {walls}")
    cover = sorted(g.cover, key=lambda t: (_dist(t[0], t[1], me), t))
    if len(cover) <= limits.cover:
        cover.sort()
    if cover:
        text = " ".join(f"({x},{y})" for x, y in cover[:limits.cover])
        if len(cover) > limits.cover:
            text = (text + " " if limits.cover else "") + f"+{len(cover) - limits.cover} more"
        lines.append(f"cover: {text}")
    live = _live_enemies(s)
    enemies = _listed([_unit(e, None) for e in _shown(live, me, limits.enemies)], len(live))
    lines.append(f"enemies: {enemies}")
    if s.neutrals:
        lines.append("neutrals (never targets): " + _listed(
            [_unit(u, None) for u in _shown(s.neutrals, me, limits.neutrals)], len(s.neutrals)))
    if g.smoke:
        lines.append("smoke: " + " ".join(f"({x},{y}) r{r:g}" for x, y, r in g.smoke))
    return lines


def own_lines(snapshot: WorldSnapshot, limits: PromptLimits = FULL,
              domain: Domain | None = None) -> list[str]:
    """This agent's part of the situation: time, standing order (with what the domain says
    it means), me, leader, the enemies from here (distance, in sight or hidden: Attack needs
    sight, Approach first when hidden), nearest first, and the allies."""
    s = snapshot
    me = s.me
    lines = [_order_line(s, domain), _me_line(s)]
    if s.leader is not None:
        lines.append("leader " + _unit(s.leader, me))
    lines.append("enemies from me: " + _enemies_from_me(s, limits))
    allies = _nearest(s.allies, me)
    lines.append("allies: " + _listed([_unit(a, me) for a in allies[:limits.allies]],
                                      len(allies)))
    return lines


def _order_line(s: WorldSnapshot, domain: Domain | None) -> str:
    meaning = domain.order_meaning(s.orders) if domain is not None and s.orders else None
    order = (s.orders or "none") + (f" ({meaning})" if meaning else "")
    return f"time {s.t:.1f}s. standing order: {order}."


def _me_line(s: WorldSnapshot) -> str:
    armed = s.ammo or s.ammo_capacity or s.ammo_reserve
    return ("me " + _unit(s.me, None)
            + ((f" ammo {s.ammo}" + (f"/{s.ammo_capacity}" if s.ammo_capacity else "")
                + (f" reserve {s.ammo_reserve}" if s.ammo_reserve else "")) if armed else "")
            + f" morale {s.morale:.1f}"
            + " cooldowns " + (" ".join(f"{k} {math.ceil(v)}s" if v > 0 else f"{k} ready"
                                        for k, v in sorted(s.cooldowns.items())) or "none"))


def _enemies_from_me(s: WorldSnapshot, limits: PromptLimits) -> str:
    """Live enemies nearest first, by distance, and whether each is in sight (Attack needs
    sight; Approach first when hidden)."""
    me = s.me
    enemies = _nearest(_live_enemies(s), me)
    return _listed(
        [f"#{e.id} dist {_dist(e.x, e.y, me):.0f} "
         + ("in sight" if line_of_sight(s.grid, me.pos, e.pos) else "hidden")
         for e in enemies[:limits.enemies]], len(enemies))


def shared_lines(snapshot: WorldSnapshot, limits: PromptLimits = FULL,
                 domain: Domain | None = None) -> list[str]:
    """The lines a batch prompt states once when every member's snapshot has them alike:
    :func:`world_lines`, the time and standing order, and the leader (absolute)."""
    s = snapshot
    lines = world_lines(s, limits)
    lines.append(_order_line(s, domain))
    lines.append("leader " + (_unit(s.leader, None) if s.leader is not None else "none"))
    return lines


def member_lines(snapshot: WorldSnapshot, batch: Iterable[int] = (),
                 limits: PromptLimits = FULL) -> list[str]:
    """One batch member in two lines: its unit and its state, then what it sees from where
    it stands (leader, enemies and allies by distance; an ally that is itself in the batch
    ``batch`` (agent ids) is named by id only, its details are in its own lines)."""
    s = snapshot
    me = s.me
    mates = set(batch)
    where = []
    if s.leader is not None:
        where.append(f"leader dist {_dist(s.leader.x, s.leader.y, me):.0f}")
    where.append("enemies " + _enemies_from_me(s, limits).replace("; ", ", "))
    allies = _nearest(s.allies, me)
    where.append("allies " + _listed(
        [f"#{a.id} dist {_dist(a.x, a.y, me):.0f}" if a.id in mates else _unit(a, me)
         for a in allies[:limits.allies]], len(allies)).replace("; ", ", "))
    return [_me_line(s), "; ".join(where)]


def _live_enemies(s: WorldSnapshot) -> list[UnitView]:
    return [e for e in s.enemies if e.hp > 0]


def _shown(units: Iterable[UnitView], me: UnitView, limit: int | None) -> list[UnitView]:
    """The units a list shows: all of them by id when they fit, else the nearest ``limit``."""
    ordered = _nearest(units, me)
    if limit is None or len(ordered) <= limit:
        return sorted(ordered, key=lambda u: u.id)
    return ordered[:limit]


def _nearest(units: Iterable[UnitView], me: UnitView) -> list[UnitView]:
    return sorted(units, key=lambda u: (_dist(u.x, u.y, me), u.id))


def _listed(items: Sequence[str], total: int) -> str:
    text = "; ".join(items)
    if total > len(items):
        text = (text + "; " if text else "") + f"+{total - len(items)} more"
    return text or "none"


def render_options(snapshot: WorldSnapshot, domain: Domain | None = None,
                   max_steps: int = 8,
                   advice: Sequence[tuple[ActionStep, str]] | None = None) -> str:
    """The options lines and the reply instruction with its live example."""
    d = domain if domain is not None else default_domain()
    opts = options(snapshot, d) if advice is None else list(advice)
    lines = []
    if opts:
        lines.append("options now:")
        lines.extend(f"- {json.dumps(step_to_dict(step), separators=(',', ':'))}: {why}"
                     for step, why in opts)
    example = json.dumps({"steps": live_example(snapshot, d, opts)}, separators=(",", ":"))
    lines.append(f"You are #{snapshot.me.id}. Reply with the JSON plan ({max_steps} steps at "
                 f"most), for example {example}")
    return "\n".join(lines)


def build_messages(snapshot: WorldSnapshot, domain: Domain | None = None,
                   max_steps: int = 8, limits: PromptLimits = FULL) -> list[dict[str, str]]:
    """Chat messages (system + user) for ollama's ``chat`` or llama.cpp's chat completion."""
    d = domain if domain is not None else default_domain()
    user = render_snapshot(snapshot, limits, d) + "\n" + render_options(snapshot, d, max_steps)
    return [
        {"role": "system", "content": system_prompt(d, max_steps)},
        {"role": "user", "content": user},
    ]


def wall_runs(walls: Iterable[tuple[int, int]]) -> list[str]:
    """Walls as straight runs: ``x=6 y=1..8`` (a column), ``y=0 x=3..9`` (a row), ``(4,5)``.

    Both decompositions (columns first, rows first) are tried and the shorter one is kept.
    """
    tiles = set(walls)
    a = _runs(tiles, vertical_first=True)
    b = _runs(tiles, vertical_first=False)
    return a if len(a) <= len(b) else b


def _runs(tiles: set[tuple[int, int]], vertical_first: bool) -> list[str]:
    left = set(tiles)
    out: list[tuple[tuple[int, int], str]] = []
    for vertical in (vertical_first, not vertical_first):
        # Columns: group by x, consecutive y. Rows: group by y, consecutive x.
        lines: dict[int, list[int]] = {}
        for x, y in left:
            key, along = (x, y) if vertical else (y, x)
            lines.setdefault(key, []).append(along)
        for key, values in lines.items():
            for lo, hi in _consecutive(sorted(values)):
                if hi > lo or vertical is not vertical_first:
                    if hi == lo:
                        x, y = (key, lo) if vertical else (lo, key)
                        out.append(((y, x), f"({x},{y})"))
                    elif vertical:
                        out.append(((lo, key), f"x={key} y={lo}..{hi}"))
                    else:
                        out.append(((key, lo), f"y={key} x={lo}..{hi}"))
                    for v in range(lo, hi + 1):
                        left.discard((key, v) if vertical else (v, key))
    out.sort()
    return [text for _, text in out]


def _consecutive(values: list[int]) -> list[tuple[int, int]]:
    spans: list[tuple[int, int]] = []
    for v in values:
        if spans and v == spans[-1][1] + 1:
            spans[-1] = (spans[-1][0], v)
        else:
            spans.append((v, v))
    return spans


def _dist(x: int, y: int, me: UnitView) -> float:
    return math.hypot(x - me.x, y - me.y)


def _unit(u: UnitView, me: UnitView | None) -> str:
    name = f" {u.name}" if u.name else ""
    text = f"#{u.id}{name} ({u.x},{u.y}) hp {u.hp:.0f}/{u.max_hp:.0f}"
    if u.hp <= 0:
        text += " DOWN"
    if u.in_cover:
        text += " in cover"
    if me is not None:
        text += f" dist {_dist(u.x, u.y, me):.0f}"
    return text

