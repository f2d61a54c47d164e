"""GOAP: an A* planner over symbolic facts, and the companion brain built on it.

Three layers, each usable alone:

* :class:`GoapPlanner` is a plain forward A* over world states that are ``int`` bitmasks of
  :class:`Fact` flags. Actions (:class:`GoapAction`) have preconditions, effects and a cost;
  goals (:class:`GoapGoal`) name the facts they want and a priority. Plans are cached by
  ``(state, goal)``: a frame whose symbolic state did not change costs one dict lookup.
* :class:`Percept` reads a :class:`WorldSnapshot` once (hostiles sorted by distance, who is in
  sight and range, the player, the extraction tile) and offers the *grounding* helpers that
  turn a symbolic step into a concrete, legal :data:`ActionStep` on the grid (nearest reachable
  cover, a free tile next to the player, a smoke tile that actually cuts the line of fire...).
  The behaviour tree reuses them.
* :class:`GoapBrain` ties both together: snapshot -> facts -> highest-priority goal that is
  unsatisfied and plannable -> plan -> grounded first step (:class:`GoapDecision`), or ``None``
  when nothing can be planned (the arbiter then runs the behaviour tree).

Every grounded step is legal against the snapshot it came from: targets alive and hostile,
tiles in bounds, walkable and reachable, ammo for shooting, cooldowns ready for smoke and heal.
"""

from __future__ import annotations

import heapq
import logging
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final

from esper_arbiter.components.actions import (
    ActionStep,
    Approach,
    Attack,
    CoverFire,
    Heal,
    MoveTo,
    Reload,
    Retreat,
    Revive,
    Scan,
    TakeCover,
    ThrowSmoke,
    Wait,
)
from esper_arbiter.components.snapshot import UnitView, WorldSnapshot
from esper_arbiter.systems.planning import pathfinding as pf
from esper_arbiter.systems.planning.rules import DEFAULT_RULES, Rules

log = logging.getLogger(__name__)

Tile = tuple[int, int]

EXTRACTION_POI_NAMES: tuple[str, ...] = ("extraction", "extract", "breach_door", "door", "exit")
"""POI names tried, after the one named by the objective, to find where to extract."""

RANK_CACHE_SIZE = 4096
"""Goal rankings a brain keeps (one per fact state seen), when all its goals are static."""

COVER_CANDIDATES = 3
"""Nearest cover tiles (straight line) whose walking cost :meth:`Percept.cover_tile` compares."""

RETREAT_SEARCH_STEPS = 6
"""How far (in steps) :meth:`Percept.retreat_tile` looks for a tile out of enemy sight."""


class Fact:
    """Symbolic facts a world state is made of: one bit each; a state is the ``int`` of the
    true facts. Plain ints (not an ``IntFlag``) because fact arithmetic runs every frame for
    every agent. A host may define its own facts on bits 32 and up.
    """

    ENEMY_KNOWN: Final = 1 << 0
    """A live hostile is known (seen or reported)."""
    ENEMY_VISIBLE: Final = 1 << 1
    ENEMY_IN_RANGE: Final = 1 << 2
    """A live hostile is in sight and within fire range."""
    HAS_AMMO: Final = 1 << 3
    CAN_RELOAD: Final = 1 << 4
    """The magazine is not full and there are rounds in reserve."""
    LOW_HP: Final = 1 << 5
    PLAYER_PRESENT: Final = 1 << 6
    """A friendly player exists (alive or downed)."""
    PLAYER_DOWNED: Final = 1 << 7
    PLAYER_HURT: Final = 1 << 8
    """The player is missing at least one medkit's worth of health."""
    PLAYER_EXPOSED: Final = 1 << 9
    """A hostile has the player in sight and range."""
    NEAR_PLAYER: Final = 1 << 10
    AT_PLAYER: Final = 1 << 11
    """Within reach for revive / heal."""
    PLAYER_REACHABLE: Final = 1 << 12
    IN_COVER: Final = 1 << 13
    COVER_AVAILABLE: Final = 1 << 14
    SMOKE_READY: Final = 1 << 15
    HEAL_READY: Final = 1 << 16
    EXTRACTION_KNOWN: Final = 1 << 17
    EXTRACTION_REACHABLE: Final = 1 << 18
    AT_EXTRACTION: Final = 1 << 19
    ORDER_FOLLOW: Final = 1 << 20
    ORDER_HOLD: Final = 1 << 21
    ORDER_ATTACK: Final = 1 << 22
    ORDER_EXTRACT: Final = 1 << 23
    # Outcome facts: never read from a snapshot, only made true by action effects.
    ENEMY_SUPPRESSED: Final = 1 << 24
    AREA_SCANNED: Final = 1 << 25
    HOLDING: Final = 1 << 26
    OBJECTIVE_EXTRACT: Final = 1 << 27
    """The mission objective is to extract (``snapshot.objective == "extract"``)."""


FACT_NAMES: dict[int, str] = {
    v: k for k, v in vars(Fact).items() if k.isupper() and isinstance(v, int)
}
"""Bit -> name of every :class:`Fact`."""


_ORDER_FACTS: dict[str, int] = {
    "follow": Fact.ORDER_FOLLOW,
    "hold": Fact.ORDER_HOLD,
    "attack": Fact.ORDER_ATTACK,
    "extract": Fact.ORDER_EXTRACT,
}


def describe_facts(state: int) -> list[str]:
    """Names of the true facts in ``state`` (unnamed host bits as ``bit<N>``)."""
    out: list[str] = []
    bit = 0
    while state >> bit:
        if (state >> bit) & 1:
            out.append(FACT_NAMES.get(1 << bit, f"bit{bit}"))
        bit += 1
    return out


def _masks(facts: Mapping[int, bool], what: str, owner: str) -> tuple[int, int]:
    mask = bits = 0
    for fact, value in facts.items():
        if not isinstance(fact, int) or isinstance(fact, bool) or fact <= 0 or fact & (fact - 1):
            raise ValueError(f"{owner}: {what} {fact!r} is not a single Fact bit")
        mask |= fact
        if value:
            bits |= fact
    return mask, bits


@dataclass(frozen=True, slots=True, eq=False)
class GoapAction:
    """A symbolic action: usable when ``preconditions`` hold, then ``effects`` hold.

    Masks are computed once so applying an action is two integer operations.
    """

    name: str
    preconditions: Mapping[int, bool]
    effects: Mapping[int, bool]
    cost: float = 1.0
    pre_mask: int = field(init=False, repr=False)
    pre_bits: int = field(init=False, repr=False)
    eff_mask: int = field(init=False, repr=False)
    eff_bits: int = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if not self.cost > 0:
            raise ValueError(f"action {self.name!r}: cost must be > 0, got {self.cost}")
        pm, pb = _masks(self.preconditions, "precondition", self.name)
        em, eb = _masks(self.effects, "effect", self.name)
        if not em:
            raise ValueError(f"action {self.name!r} has no effects")
        object.__setattr__(self, "pre_mask", pm)
        object.__setattr__(self, "pre_bits", pb)
        object.__setattr__(self, "eff_mask", em)
        object.__setattr__(self, "eff_bits", eb)

    def usable(self, state: int) -> bool:
        return (state & self.pre_mask) == self.pre_bits

    def apply(self, state: int) -> int:
        return (state & ~self.eff_mask) | self.eff_bits


PriorityFn = Callable[[int, WorldSnapshot], float]
"""Priority of a goal given the fact state and the snapshot; <= 0 means "not now"."""


@dataclass(frozen=True, slots=True, eq=False)
class GoapGoal:
    """A desired set of facts with a priority.

    The goal counts only when every fact in ``when`` is true and none in ``unless`` is; then its
    priority is ``priority`` (a number, or a function of state and snapshot; <= 0 means "not
    now"). Goals whose priority is a number rank by fact state alone, so a brain made only of
    them caches its goal ranking per state too.
    """

    name: str
    desired: Mapping[int, bool]
    priority: float | PriorityFn = 1.0
    when: int = 0
    unless: int = 0
    mask: int = field(init=False, repr=False)
    bits: int = field(init=False, repr=False)

    def __post_init__(self) -> None:
        m, b = _masks(self.desired, "desired fact", self.name)
        if not m:
            raise ValueError(f"goal {self.name!r} desires nothing")
        object.__setattr__(self, "mask", m)
        object.__setattr__(self, "bits", b)

    @property
    def static(self) -> bool:
        """True when the priority is a number (depends on the fact state only)."""
        return isinstance(self.priority, int | float)

    def satisfied(self, state: int) -> bool:
        return (state & self.mask) == self.bits

    def priority_for(self, state: int, snapshot: WorldSnapshot) -> float:
        if (state & self.when) != self.when or state & self.unless:
            return 0.0
        p = self.priority
        return float(p) if isinstance(p, int | float) else p(state, snapshot)


class GoapPlanner:
    """Forward A* from a fact state to a goal, with a bounded plan cache.

    The heuristic (unsatisfied goal facts / most facts one action sets x cheapest cost) never
    overestimates, so plans are cheapest. Search is bounded by ``max_depth`` and
    ``max_expansions``; hitting a bound means "no plan" (``None``), never an exception.
    """

    def __init__(
        self,
        actions: Sequence[GoapAction],
        *,
        max_depth: int = 6,
        max_expansions: int = 2048,
        cache_size: int = 65536,
    ) -> None:
        if not actions:
            raise ValueError("GoapPlanner needs at least one action")
        names = [a.name for a in actions]
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate action names: {names}")
        self.actions: tuple[GoapAction, ...] = tuple(actions)
        self.max_depth = max_depth
        self.max_expansions = max_expansions
        self.cache_size = cache_size
        self._min_cost = min(a.cost for a in self.actions)
        self._max_bits = max(a.eff_mask.bit_count() for a in self.actions)
        self._cache: dict[tuple[int, int, int], tuple[GoapAction, ...] | None] = {}
        self.hits = 0
        self.misses = 0

    def clear_cache(self) -> None:
        """Forget all cached plans and reset the hit/miss counters (for cold timings)."""
        self._cache.clear()
        self.hits = 0
        self.misses = 0

    @property
    def cache_len(self) -> int:
        return len(self._cache)

    def plan(self, state: int, goal: GoapGoal) -> tuple[GoapAction, ...] | None:
        """Cheapest action sequence taking ``state`` to one satisfying ``goal``.

        ``()`` when the goal already holds; ``None`` when no plan exists within the bounds.
        """
        key = (state, goal.mask, goal.bits)
        cache = self._cache
        if key in cache:
            self.hits += 1
            return cache[key]
        self.misses += 1
        result = self._search(state, goal.mask, goal.bits)
        if len(cache) >= self.cache_size:
            del cache[next(iter(cache))]
        cache[key] = result
        return result

    def _h(self, state: int, mask: int, bits: int) -> float:
        unsat = ((state ^ bits) & mask).bit_count()
        if not unsat:
            return 0.0
        return math.ceil(unsat / self._max_bits) * self._min_cost

    def _search(self, start: int, mask: int, bits: int) -> tuple[GoapAction, ...] | None:
        if (start & mask) == bits:
            return ()
        actions = self.actions
        best: dict[int, float] = {start: 0.0}
        came: dict[int, tuple[int, GoapAction]] = {}
        depth: dict[int, int] = {start: 0}
        counter = 0
        frontier: list[tuple[float, int, int]] = [(self._h(start, mask, bits), 0, start)]
        closed: set[int] = set()
        expansions = 0
        while frontier:
            _, _, st = heapq.heappop(frontier)
            if (st & mask) == bits:
                plan: list[GoapAction] = []
                while st != start:
                    st, act = came[st]
                    plan.append(act)
                plan.reverse()
                return tuple(plan)
            if st in closed:
                continue
            closed.add(st)
            expansions += 1
            if expansions > self.max_expansions:
                log.debug("GOAP search gave up after %d expansions", expansions - 1)
                return None
            d = depth[st]
            if d >= self.max_depth:
                continue
            g = best[st]
            for a in actions:
                if (st & a.pre_mask) != a.pre_bits:
                    continue
                ns = (st & ~a.eff_mask) | a.eff_bits
                if ns == st or ns in closed:
                    continue
                ng = g + a.cost
                if ng < best.get(ns, math.inf):
                    best[ns] = ng
                    came[ns] = (st, a)
                    depth[ns] = d + 1
                    counter += 1
                    heapq.heappush(frontier, (ng + self._h(ns, mask, bits), counter, ns))
        return None


@dataclass(frozen=True, slots=True)
class GoapDecision:
    """What GOAP wants now: the goal it serves, the first action and its grounded step."""

    goal: str
    action: str
    step: ActionStep
    plan: tuple[str, ...]


# --------------------------------------------------------------------------------------
# Reading a snapshot and grounding symbolic actions on the grid
# --------------------------------------------------------------------------------------


class Percept:
    """One agent's snapshot, read once, with the grounding helpers planners share.

    Hostiles are the live units of ``snapshot.enemies`` on another team than ``me``, sorted by
    distance (then id); a snapshot built for a hostile NPC lists the player and companions
    there. ``player`` is the snapshot's player when on my team. All ``*_step`` helpers return a
    legal step or ``None``.
    """

    __slots__ = (
        "_cover",
        "_in_range",
        "_occupied",
        "_region",
        "_steps",
        "_visible",
        "extraction",
        "grid",
        "hostiles",
        "me",
        "player",
        "pos",
        "rules",
        "snapshot",
    )

    def __init__(self, snapshot: WorldSnapshot, rules: Rules = DEFAULT_RULES) -> None:
        self.snapshot = snapshot
        self.rules = rules
        self.grid = snapshot.grid
        self.me = snapshot.me
        self.pos: Tile = (snapshot.me.x, snapshot.me.y)
        team = snapshot.me.team
        pos = self.pos
        seen: set[int] = {snapshot.me.id}
        hostiles: list[tuple[float, int, UnitView]] = []
        for u in snapshot.enemies:
            if u.hp > 0 and u.team != team and u.id not in seen:
                seen.add(u.id)
                hostiles.append((pf.distance(pos, u.pos), u.id, u))
        p = snapshot.player
        hostiles.sort(key=lambda h: (h[0], h[1]))
        self.hostiles: tuple[UnitView, ...] = tuple(h[2] for h in hostiles)
        self.player: UnitView | None = (
            p if p is not None and p.team == team and p.id != snapshot.me.id else None
        )
        self.extraction: Tile | None = self._find_extraction()
        self._visible: tuple[UnitView, ...] | None = None
        self._in_range: tuple[UnitView, ...] | None = None
        self._steps: Mapping[Tile, int] | None = None
        self._occupied: set[Tile] | None = None
        self._region: int | None = None
        self._cover: list[Tile | None] = []

    # -- what the agent perceives -------------------------------------------------------

    def _find_extraction(self) -> Tile | None:
        pois = self.snapshot.pois
        names = (self.snapshot.objective, *EXTRACTION_POI_NAMES)
        for name in names:
            tile = pois.get(name) if name else None
            if tile is None:
                continue
            tx, ty = int(tile[0]), int(tile[1])
            if self.grid.walkable(tx, ty):
                return (tx, ty)
            near = pf.nearest_walkable(self.grid, (tx, ty))
            if near is not None:
                return near
        return None

    @property
    def visible(self) -> tuple[UnitView, ...]:
        """Hostiles in line of sight, nearest first."""
        if self._visible is None:
            g, pos = self.grid, self.pos
            self._visible = tuple(h for h in self.hostiles if pf.line_of_sight(g, pos, h.pos))
        return self._visible

    @property
    def in_range(self) -> tuple[UnitView, ...]:
        """Hostiles in sight and within fire range, nearest first."""
        if self._in_range is None:
            r, pos = self.rules.fire_range, self.pos
            self._in_range = tuple(h for h in self.visible if pf.distance(pos, h.pos) <= r)
        return self._in_range

    @property
    def steps(self) -> Mapping[Tile, int]:
        """Steps from me to every tile I can walk to (a walk over the whole map on first use;
        the planners' hot paths use :meth:`can_reach` and paths instead)."""
        if self._steps is None:
            self._steps = pf.step_distances(self.grid, self.pos)
        return self._steps

    @property
    def low_hp(self) -> bool:
        me = self.me
        return me.hp <= self.rules.low_hp_fraction * me.max_hp

    @property
    def in_cover(self) -> bool:
        return self.me.in_cover or self.pos in self.grid.cover

    @property
    def has_ammo(self) -> bool:
        """Rounds loaded; a snapshot with no ammo figures at all (capacity 0) means the host
        does not track ammo for this unit, which then never runs dry (as the validator)."""
        s = self.snapshot
        return s.ammo > 0 or (s.ammo_capacity <= 0 and s.ammo == 0)

    @property
    def can_reload(self) -> bool:
        s = self.snapshot
        return s.ammo < s.ammo_capacity and s.ammo_reserve > 0

    def ready(self, ability: str) -> bool:
        return self.snapshot.cooldown(ability) <= 0.0

    def threats_to(self, tile: Tile) -> list[UnitView]:
        """Hostiles that have ``tile`` in sight and within fire range, nearest to it first."""
        g, r = self.grid, self.rules.fire_range
        out = [
            h for h in self.hostiles
            if pf.distance(h.pos, tile) <= r and pf.line_of_sight(g, h.pos, tile)
        ]
        out.sort(key=lambda h: (pf.distance(h.pos, tile), h.id))
        return out

    def occupied(self) -> set[Tile]:
        """Tiles where another unit stands (my own tile excluded; shared, treat as read-only)."""
        if self._occupied is not None:
            return self._occupied
        s = self.snapshot
        out = {(u.x, u.y) for u in s.enemies}
        out.update([(u.x, u.y) for u in s.allies])
        if s.player is not None:
            out.add((s.player.x, s.player.y))
        out.discard(self.pos)
        self._occupied = out
        return out

    def can_get_next_to(self, target: Tile) -> bool:
        """True when some walkable tile beside ``target`` is reachable for me (cheap: no
        occupancy, no path)."""
        if pf.distance(self.pos, target) <= 1.5 and self.pos != target:
            return True
        tx, ty = target
        for dy in (-1, 0, 1):
            for dx in (-1, 0, 1):
                if (dx or dy) and self.can_reach((tx + dx, ty + dy)):
                    return True
        return False

    # -- grounding helpers --------------------------------------------------------------

    def can_reach(self, tile: Tile) -> bool:
        """True when I can walk to ``tile`` (a component-label lookup)."""
        mine = self._region
        if mine is None:
            mine = self._region = pf.region(self.grid, self.pos)
        return mine >= 0 and pf.region(self.grid, tile) == mine

    def tile_next_to(self, target: Tile) -> Tile | None:
        """A free walkable tile adjacent to ``target`` that I can reach, nearest to me first
        (my own tile when I already stand next to it). Occupied tiles only as a last resort."""
        if pf.distance(self.pos, target) <= 1.5 and self.pos != target:
            return self.pos
        occupied = self.occupied()
        pos = self.pos
        best: tuple[int, float, int, int, int] | None = None
        tx, ty = target
        for dy in (-1, 0, 1):
            for dx in (-1, 0, 1):
                t = (tx + dx, ty + dy)
                if t == target or not self.can_reach(t):
                    continue
                key = (t in occupied, pf.octile(pos, t), abs(dx) + abs(dy), t[1], t[0])
                if best is None or key < best:
                    best = key
        return None if best is None else (best[4], best[3])

    def move_next_to_player(self) -> MoveTo | None:
        """MoveTo a free tile beside the player, or ``None`` (no player, or already there)."""
        if self.player is None:
            return None
        t = self.tile_next_to(self.player.pos)
        if t is None or t == self.pos:
            return None
        return MoveTo(x=t[0], y=t[1])

    def cover_tile(self) -> Tile | None:
        """The reachable cover tile to run to: fewest steps, then farthest from the nearest
        threat. My own tile when I already stand in cover."""
        if not self._cover:
            self._cover.append(self._pick_cover())
        return self._cover[0]

    def _pick_cover(self) -> Tile | None:
        cover = self.grid.cover
        if not cover:
            return None
        if self.pos in cover:
            return self.pos
        pos, g = self.pos, self.grid
        threat = self.visible[0].pos if self.visible else None
        occupied = self.occupied()

        def bonus(t: Tile) -> float:
            return 0.1 * pf.distance(t, threat) if threat is not None else 0.0

        # Straight-line distance ranks the candidates cheaply; walking cost decides among the
        # few nearest, so cover just behind a wall does not beat cover a few steps away.
        cands = sorted(
            (pf.octile(pos, t) - bonus(t), t[1], t[0])
            for t in cover
            if t not in occupied and self.can_reach(t)
        )[:COVER_CANDIDATES]
        best: tuple[float, int, int] | None = None
        for _, y, x in cands:
            path = pf.find_path(g, pos, (x, y))
            if path is None:
                continue
            key = (pf.path_cost(path, pos) - bonus((x, y)), y, x)
            if best is None or key < best:
                best = key
        return None if best is None else (best[2], best[1])

    def take_cover_step(self) -> TakeCover | None:
        t = self.cover_tile()
        if t is None or (t == self.pos and self.me.in_cover):
            return None
        return TakeCover(x=t[0], y=t[1])

    def retreat_step(self) -> Retreat | None:
        """Retreat to the nearest reachable tile no visible hostile can see."""
        visible = self.visible
        if not visible:
            return None
        g = self.grid
        occupied = self.occupied()
        best: tuple[int, float, int, int] | None = None
        for t, n in pf.step_distances(g, self.pos, RETREAT_SEARCH_STEPS).items():
            if n == 0 or t in occupied:
                continue
            if any(pf.line_of_sight(g, h.pos, t) for h in visible):
                continue
            key = (n, -pf.distance(t, visible[0].pos), t[1], t[0])
            if best is None or key < best:
                best = key
        return None if best is None else Retreat(x=best[3], y=best[2])

    def attack_target(self, prefer: Tile | None = None) -> UnitView | None:
        """Nearest hostile in sight and range; with ``prefer``, the one nearest that tile."""
        cands = self.in_range
        if not cands:
            return None
        if prefer is None:
            return cands[0]
        return min(cands, key=lambda h: (pf.distance(h.pos, prefer), h.id))

    def attack_step(self) -> Attack | None:
        if not self.has_ammo:
            return None
        t = self.attack_target()
        return None if t is None else Attack(target_id=t.id)

    def cover_fire_step(self, seconds: float = 3.0) -> CoverFire | None:
        """Suppress the hostile threatening the player (else the nearest one in range)."""
        if not self.has_ammo:
            return None
        prefer = self.player.pos if self.player is not None else None
        t = self.attack_target(prefer)
        if t is None:
            return None
        secs = max(0.5, min(seconds, self.rules.max_cover_fire))
        return CoverFire(target_id=t.id, seconds=secs)

    def approach_step(self) -> Approach | None:
        """Approach the nearest hostile I can walk to."""
        for h in self.hostiles:
            if self.can_reach(h.pos):
                return Approach(target_id=h.id)
        return None

    def smoke_step(self, protect: Tile | None = None) -> ThrowSmoke | None:
        """A smoke tile within throwing range that cuts the line between ``protect`` (default:
        me) and the hostile threatening it. ``None`` when smoke is not ready or no tile works."""
        if not self.ready("smoke"):
            return None
        guard = self.pos if protect is None else protect
        threats = self.threats_to(guard) or list(self.visible)
        if not threats:
            return None
        threat = threats[0].pos
        r = self.rules
        g = self.grid
        cloud_r = r.smoke_radius
        gx, gy = guard
        vx, vy = threat[0] - gx, threat[1] - gy
        tried: set[Tile] = set()
        for frac in (0.5, 0.4, 0.6, 0.3, 0.7, 0.2, 0.8, 0.1, 0.9):
            t = (round(gx + frac * vx), round(gy + frac * vy))
            if t in tried:
                continue
            tried.add(t)
            if not g.walkable(t[0], t[1]) or pf.distance(self.pos, t) > r.smoke_range:
                continue
            if t in (guard, threat):
                continue
            if pf.smoke_blocks(((t[0], t[1], cloud_r),), guard, threat):
                return ThrowSmoke(x=t[0], y=t[1])
        return None

    def heal_self_step(self) -> Heal | None:
        if not self.ready("heal") or self.me.hp >= self.me.max_hp:
            return None
        return Heal(target_id=self.me.id)

    def heal_player_step(self) -> Heal | None:
        p = self.player
        if (
            p is None
            or p.hp <= 0
            or p.hp >= p.max_hp
            or not self.ready("heal")
            or pf.distance(self.pos, p.pos) > self.rules.heal_reach
        ):
            return None
        return Heal(target_id=p.id)

    def revive_step(self) -> Revive | None:
        p = self.player
        if p is None or p.hp > 0 or pf.distance(self.pos, p.pos) > self.rules.revive_reach:
            return None
        return Revive(target_id=p.id)

    def reload_step(self) -> Reload | None:
        return Reload() if self.can_reload else None

    def move_to_extraction_step(self) -> MoveTo | None:
        e = self.extraction
        if e is None or e == self.pos or not self.can_reach(e):
            return None
        return MoveTo(x=e[0], y=e[1])

    def escort_step(self) -> MoveTo | None:
        """Lead the way to the extraction: the farthest tile along the player's own route there
        that stays within follow distance of them. ``None`` when there is no such tile I can
        reach, or I already stand on it. (The route is the player's, so every companion of one
        player shares one cached path.)"""
        e, p = self.extraction, self.player
        if e is None:
            return None
        if p is None or p.hp <= 0:
            return self.move_to_extraction_step()
        route = pf.find_path(self.grid, p.pos, e)
        if not route:
            return None
        fd = self.rules.follow_distance
        pick: Tile | None = None
        for t in route:
            if pf.distance(t, p.pos) > fd:
                break
            pick = t
        if pick is None or pick == self.pos or not self.can_reach(pick):
            return None
        return MoveTo(x=pick[0], y=pick[1])


# --------------------------------------------------------------------------------------
# The companion's actions, goals and brain
# --------------------------------------------------------------------------------------

F = Fact


def companion_actions() -> tuple[GoapAction, ...]:
    """The symbolic actions of a hello_companion companion (each has a grounder in the brain)."""
    return (
        GoapAction("move_to_player", {F.PLAYER_REACHABLE: True, F.AT_PLAYER: False},
                   {F.NEAR_PLAYER: True, F.AT_PLAYER: True, F.IN_COVER: False}, 2.0),
        GoapAction("revive_player", {F.PLAYER_DOWNED: True, F.AT_PLAYER: True},
                   {F.PLAYER_DOWNED: False}, 2.0),
        GoapAction("heal_player",
                   {F.PLAYER_HURT: True, F.PLAYER_DOWNED: False, F.AT_PLAYER: True,
                    F.HEAL_READY: True},
                   {F.PLAYER_HURT: False, F.HEAL_READY: False}, 1.0),
        GoapAction("heal_in_cover", {F.LOW_HP: True, F.HEAL_READY: True, F.IN_COVER: True},
                   {F.LOW_HP: False, F.HEAL_READY: False}, 1.0),
        GoapAction("heal_unseen", {F.LOW_HP: True, F.HEAL_READY: True, F.ENEMY_VISIBLE: False},
                   {F.LOW_HP: False, F.HEAL_READY: False}, 1.0),
        GoapAction("take_cover", {F.COVER_AVAILABLE: True, F.IN_COVER: False},
                   {F.IN_COVER: True}, 2.0),
        GoapAction("retreat", {F.ENEMY_VISIBLE: True},
                   {F.ENEMY_VISIBLE: False, F.ENEMY_IN_RANGE: False, F.IN_COVER: False}, 3.0),
        GoapAction("throw_smoke", {F.SMOKE_READY: True, F.ENEMY_VISIBLE: True},
                   {F.ENEMY_VISIBLE: False, F.ENEMY_IN_RANGE: False, F.PLAYER_EXPOSED: False,
                    F.SMOKE_READY: False}, 2.5),
        GoapAction("reload", {F.HAS_AMMO: False, F.CAN_RELOAD: True},
                   {F.HAS_AMMO: True, F.CAN_RELOAD: False}, 1.0),
        GoapAction("approach", {F.ENEMY_KNOWN: True, F.ENEMY_IN_RANGE: False,
                                F.ORDER_HOLD: False},
                   {F.ENEMY_VISIBLE: True, F.ENEMY_IN_RANGE: True, F.IN_COVER: False}, 3.0),
        GoapAction("attack", {F.ENEMY_IN_RANGE: True, F.HAS_AMMO: True},
                   {F.ENEMY_SUPPRESSED: True}, 1.0),
        GoapAction("cover_fire", {F.ENEMY_IN_RANGE: True, F.HAS_AMMO: True},
                   {F.ENEMY_SUPPRESSED: True, F.PLAYER_EXPOSED: False}, 1.5),
        GoapAction("move_to_extraction",
                   {F.ORDER_EXTRACT: True, F.EXTRACTION_REACHABLE: True, F.AT_EXTRACTION: False},
                   {F.AT_EXTRACTION: True, F.NEAR_PLAYER: False, F.AT_PLAYER: False}, 3.0),
        GoapAction("escort_to_extraction",
                   {F.EXTRACTION_REACHABLE: True, F.AT_EXTRACTION: False, F.NEAR_PLAYER: True},
                   {F.AT_EXTRACTION: True}, 3.0),
        GoapAction("hold_position", {}, {F.HOLDING: True}, 1.0),
        GoapAction("scan", {}, {F.AREA_SCANNED: True}, 1.0),
    )


def companion_goals() -> tuple[GoapGoal, ...]:
    """Goals of a hello_companion companion, from most to least urgent when tied.

    All priorities are numbers gated by facts, so the ranking is cached per fact state.
    """
    hurt_seen = F.LOW_HP | F.ENEMY_VISIBLE
    return (
        GoapGoal("revive_player", {F.PLAYER_DOWNED: False}, 100.0, when=F.PLAYER_DOWNED),
        # At the extraction point the agent holds there: leaving for cover and coming back
        # would make "extract" and "survive" undo each other forever.
        GoapGoal("recover", {F.LOW_HP: False, F.IN_COVER: True}, 92.0, when=hurt_seen,
                 unless=F.AT_EXTRACTION),
        GoapGoal("survive", {F.IN_COVER: True}, 90.0, when=hurt_seen, unless=F.AT_EXTRACTION),
        GoapGoal("evade", {F.ENEMY_VISIBLE: False}, 88.0, when=hurt_seen,
                 unless=F.IN_COVER | F.AT_EXTRACTION),
        GoapGoal("heal_self", {F.LOW_HP: False}, 80.0, when=F.LOW_HP),
        GoapGoal("engage", {F.ENEMY_SUPPRESSED: True}, 75.0,
                 when=F.ORDER_ATTACK | F.ENEMY_KNOWN),
        GoapGoal("extract", {F.AT_EXTRACTION: True}, 75.0, when=F.ORDER_EXTRACT),
        GoapGoal("heal_player", {F.PLAYER_HURT: False}, 72.0, when=F.PLAYER_HURT),
        GoapGoal("follow_orders", {F.NEAR_PLAYER: True}, 70.0,
                 when=F.ORDER_FOLLOW | F.PLAYER_PRESENT, unless=F.PLAYER_DOWNED),
        GoapGoal("protect_player", {F.PLAYER_EXPOSED: False}, 68.0,
                 when=F.PLAYER_EXPOSED, unless=F.ORDER_HOLD),
        GoapGoal("engage", {F.ENEMY_SUPPRESSED: True}, 65.0, when=F.ENEMY_IN_RANGE),
        GoapGoal("hold_position", {F.HOLDING: True}, 60.0, when=F.ORDER_HOLD),
        GoapGoal("engage", {F.ENEMY_SUPPRESSED: True}, 50.0, when=F.ENEMY_VISIBLE),
        GoapGoal("stay_with_player", {F.NEAR_PLAYER: True}, 40.0,
                 when=F.PLAYER_PRESENT, unless=F.ORDER_HOLD | F.PLAYER_DOWNED),
        GoapGoal("escort_to_extraction", {F.AT_EXTRACTION: True}, 30.0,
                 when=F.OBJECTIVE_EXTRACT | F.EXTRACTION_KNOWN,
                 unless=F.ORDER_HOLD | F.ORDER_EXTRACT),
        GoapGoal("overwatch", {F.AREA_SCANNED: True}, 1.0),
    )


Grounder = Callable[[Percept, str], ActionStep | None]
"""Turns a symbolic action into a concrete step: (percept, goal name) -> step or None."""


def _smoke(p: Percept, goal: str) -> ActionStep | None:
    protect = p.player.pos if goal == "protect_player" and p.player is not None else None
    return p.smoke_step(protect)


def _hold(p: Percept, _goal: str) -> ActionStep | None:
    return Wait(seconds=min(1.0, p.rules.max_wait))


def _heal_self(p: Percept, _goal: str) -> ActionStep | None:
    return p.heal_self_step()


def _move_to_player(p: Percept, goal: str) -> ActionStep | None:
    return p.move_next_to_player()


def companion_grounders() -> dict[str, Grounder]:
    """Grounding function per action name of :func:`companion_actions`."""
    return {
        "move_to_player": _move_to_player,
        "revive_player": lambda p, _g: p.revive_step(),
        "heal_player": lambda p, _g: p.heal_player_step(),
        "heal_in_cover": _heal_self,
        "heal_unseen": _heal_self,
        "take_cover": lambda p, _g: p.take_cover_step(),
        "retreat": lambda p, _g: p.retreat_step(),
        "throw_smoke": _smoke,
        "reload": lambda p, _g: p.reload_step(),
        "approach": lambda p, _g: p.approach_step(),
        "attack": lambda p, _g: p.attack_step(),
        "cover_fire": lambda p, _g: p.cover_fire_step(),
        "move_to_extraction": lambda p, _g: p.move_to_extraction_step(),
        "escort_to_extraction": lambda p, _g: p.escort_step(),
        "hold_position": _hold,
        "scan": lambda _p, _g: Scan(),
    }


def extract_facts(p: Percept) -> int:
    """The symbolic state of ``p``'s snapshot as a :class:`Fact` bitmask."""
    s, r, pos = p.snapshot, p.rules, p.pos
    state = 0
    if p.hostiles:
        state |= F.ENEMY_KNOWN
        if p.visible:
            state |= F.ENEMY_VISIBLE
            if p.in_range:
                state |= F.ENEMY_IN_RANGE
    if p.has_ammo:
        state |= F.HAS_AMMO
    if p.can_reload:
        state |= F.CAN_RELOAD
    low = p.low_hp
    if low:
        state |= F.LOW_HP
    pl = p.player
    if pl is not None:
        state |= F.PLAYER_PRESENT
        d = pf.distance(pos, pl.pos)
        if pl.hp <= 0:
            state |= F.PLAYER_DOWNED
        elif pl.max_hp - pl.hp >= r.heal_amount:
            state |= F.PLAYER_HURT
        if d <= r.follow_distance:
            state |= F.NEAR_PLAYER
        if d <= min(r.revive_reach, r.heal_reach):
            state |= F.AT_PLAYER
        if pl.hp > 0 and p.hostiles and p.threats_to(pl.pos):
            state |= F.PLAYER_EXPOSED
        if p.can_get_next_to(pl.pos):
            state |= F.PLAYER_REACHABLE
    if p.in_cover:
        state |= F.IN_COVER
    elif low and state & F.ENEMY_VISIBLE and p.cover_tile() is not None:
        # Only worth a search when cover matters: hurt and in someone's sight.
        state |= F.COVER_AVAILABLE
    if p.ready("smoke"):
        state |= F.SMOKE_READY
    if p.ready("heal"):
        state |= F.HEAL_READY
    e = p.extraction
    if e is not None:
        state |= F.EXTRACTION_KNOWN
        if pf.distance(pos, e) <= 1.5:
            state |= F.AT_EXTRACTION
        if p.can_reach(e):
            state |= F.EXTRACTION_REACHABLE
    if s.objective == "extract":
        state |= F.OBJECTIVE_EXTRACT
    order = _ORDER_FACTS.get((s.orders or "").strip().lower())
    if order is not None:
        state |= order
    return state


class GoapBrain:
    """Snapshot in, :class:`GoapDecision` out: the GOAP half of the arbiter.

    ``actions``, ``goals`` and ``grounders`` default to the hello_companion companion's; every
    action needs a grounder with the same name. One brain (and its plan cache) can be shared
    by any number of agents.
    """

    def __init__(
        self,
        rules: Rules = DEFAULT_RULES,
        *,
        actions: Sequence[GoapAction] | None = None,
        goals: Sequence[GoapGoal] | None = None,
        grounders: Mapping[str, Grounder] | None = None,
        planner: GoapPlanner | None = None,
    ) -> None:
        self.rules = rules
        acts = tuple(actions) if actions is not None else companion_actions()
        self.goals: tuple[GoapGoal, ...] = tuple(goals) if goals is not None else companion_goals()
        self.grounders: dict[str, Grounder] = dict(
            grounders if grounders is not None else companion_grounders()
        )
        missing = [a.name for a in acts if a.name not in self.grounders]
        if missing:
            raise ValueError(f"no grounder for GOAP actions {missing}")
        self.planner = planner if planner is not None else GoapPlanner(acts)
        self.last_facts = 0
        """Fact state of the last snapshot :meth:`decide` saw (for the HUD and logs)."""
        self._memo: tuple[WorldSnapshot, Percept, int] | None = None
        self._rank_cache: dict[int, list[GoapGoal]] | None = (
            {} if all(g.static for g in self.goals) else None
        )

    def clear_caches(self) -> None:
        """Forget cached plans, goal rankings and the last snapshot (for cold timings)."""
        self.planner.clear_cache()
        if self._rank_cache is not None:
            self._rank_cache.clear()
        self._memo = None

    def facts(self, snapshot: WorldSnapshot) -> int:
        """The snapshot's symbolic state (see :class:`Fact`)."""
        return self._percept(snapshot)[1]

    def _percept(self, snapshot: WorldSnapshot) -> tuple[Percept, int]:
        """Percept and facts of ``snapshot``, computed once per snapshot *object*.

        Snapshots are immutable, so when the arbiter asks twice about the same frame (GOAP,
        then the BT's "can GOAP plan again?") the second read is free. Only the last snapshot
        is remembered, held strongly so its identity cannot be reused.
        """
        memo = self._memo
        if memo is not None and memo[0] is snapshot:
            return memo[1], memo[2]
        p = Percept(snapshot, self.rules)
        state = extract_facts(p)
        self._memo = (snapshot, p, state)
        return p, state

    def _ranked(self, state: int, snapshot: WorldSnapshot) -> list[GoapGoal]:
        """Unsatisfied goals with a positive priority, most urgent first (ties: list order)."""
        cache = self._rank_cache
        if cache is not None:
            hit = cache.get(state)
            if hit is not None:
                return hit
        ranked: list[tuple[float, int, GoapGoal]] = []
        for i, goal in enumerate(self.goals):
            if (state & goal.mask) == goal.bits:
                continue
            prio = goal.priority_for(state, snapshot)
            if prio > 0:
                ranked.append((-prio, i, goal))
        ranked.sort(key=lambda r: (r[0], r[1]))
        out = [r[2] for r in ranked]
        if cache is not None:
            if len(cache) >= RANK_CACHE_SIZE:
                cache.clear()
            cache[state] = out
        return out

    def plan_for_state(
        self, state: int, snapshot: WorldSnapshot
    ) -> tuple[GoapGoal, tuple[GoapAction, ...]] | None:
        """The most urgent unsatisfied goal that has a plan from ``state``, and that plan
        (symbolic only: nothing is grounded). ``None`` when no goal has one."""
        for goal in self._ranked(state, snapshot):
            plan = self.planner.plan(state, goal)
            if plan:
                return goal, plan
        return None

    def plan_only(self, snapshot: WorldSnapshot) -> tuple[str, ...] | None:
        """Names of the symbolic plan for the snapshot's most urgent plannable goal, without
        grounding. Benchmarks time this: with the planner cache cleared it is a cold A* search;
        asked again about the same snapshot it is the facts memo, the goal ranking and a plan
        cache lookup."""
        found = self.plan_for_state(self._percept(snapshot)[1], snapshot)
        return None if found is None else tuple(a.name for a in found[1])

    def decide(self, snapshot: WorldSnapshot) -> GoapDecision | None:
        """Plan for the most urgent unsatisfied goal and ground its first action.

        Goals are tried by priority; a goal without a plan, or whose first action cannot be
        grounded on the current grid, yields to the next. ``None`` when the agent is down or
        no goal can be planned and grounded.
        """
        if snapshot.me.hp <= 0:
            return None
        p, state = self._percept(snapshot)
        self.last_facts = state
        for goal in self._ranked(state, snapshot):
            plan = self.planner.plan(state, goal)
            if not plan:
                continue
            first = plan[0]
            step = self.grounders[first.name](p, goal.name)
            if step is None:
                log.debug("GOAP %s: cannot ground %s", goal.name, first.name)
                continue
            return GoapDecision(
                goal=goal.name, action=first.name, step=step,
                plan=tuple(a.name for a in plan),
            )
        return None
