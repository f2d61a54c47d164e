"""How a squad-tactics agent reads its snapshot, and the grounding helpers its planners share.

:class:`Percept` reads a :class:`WorldSnapshot` once (hostiles sorted by distance, who is in
sight and range, the leader, the objective's tile) and turns a symbolic step into a concrete,
legal :data:`ActionStep` on the grid (nearest reachable cover, a free tile next to the leader,
a smoke tile that actually cuts the line of fire...). GOAP's grounders and the fallback tree
both use it, so every step they propose is legal against the snapshot it came from: targets
alive and hostile, tiles in bounds, walkable and reachable, ammo for shooting, cooldowns ready
for smoke and heal.
"""

from __future__ import annotations

from collections.abc import Mapping

from esper_arbiter.components.actions import (
    Approach,
    Attack,
    CoverFire,
    Heal,
    MoveTo,
    Reload,
    Retreat,
    Revive,
    TakeCover,
    ThrowSmoke,
)
from esper_arbiter.components.snapshot import GridView, UnitView, WorldSnapshot
from esper_arbiter.systems.planning import pathfinding as pf
from esper_arbiter.systems.planning.goal_fields import route_toward
from esper_arbiter.systems.planning.rules import DEFAULT_RULES, Rules

Tile = tuple[int, int]

COVER_CANDIDATES = 3
"""Nearest cover tiles (straight line) whose walking cost :meth:`Percept.cover_tile` compares."""

RETREAT_SEARCH_STEPS = 6
"""How far (in steps) :meth:`Percept.retreat_tile` looks for a tile out of enemy sight."""


def covers(grid: GridView, rules: Rules, shooter: Tile, tile: Tile) -> bool:
    """Whether a unit at ``shooter`` has ``tile`` in sight and within fire range."""
    return pf.distance(shooter, tile) <= rules.fire_range and pf.line_of_sight(grid, shooter, tile)


class Percept:
    """One agent's snapshot, read once, with the grounding helpers planners share.

    Hostiles are the live units of ``snapshot.enemies`` on another team than ``me``, sorted by
    distance (then id); a snapshot built for a hostile NPC lists its foes there. ``leader``
    is the snapshot's leader when on my team; ``objective`` the objective's tile. All
    ``*_step`` helpers return a
    legal step or ``None``.
    """

    __slots__ = (
        "_cover",
        "_in_range",
        "_occupied",
        "_region",
        "_steps",
        "_visible",
        "grid",
        "hostiles",
        "leader",
        "me",
        "objective",
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
        p = snapshot.leader
        hostiles.sort(key=lambda h: (h[0], h[1]))
        self.hostiles: tuple[UnitView, ...] = tuple(h[2] for h in hostiles)
        self.leader: UnitView | None = (
            p if p is not None and p.team == team and p.id != snapshot.me.id else None
        )
        self.objective: Tile | None = (
            snapshot.objective.pos if snapshot.objective is not None else None
        )
        self._visible: tuple[UnitView, ...] | None = None
        self._in_range: tuple[UnitView, ...] | None = None
        self._steps: Mapping[Tile, int] | None = None
        self._occupied: set[Tile] | None = None
        self._region: int | None = None
        self._cover: list[Tile | None] = []

    # -- what the agent perceives -------------------------------------------------------

    @property
    def visible(self) -> tuple[UnitView, ...]:
        """Hostiles in line of sight, nearest first."""
        if self._visible is None:
            g, pos = self.grid, self.pos
            self._visible = tuple(h for h in self.hostiles if pf.line_of_sight(g, pos, h.pos))
        return self._visible

    @property
    def sees_any(self) -> bool:
        """Whether any hostile is in line of sight. Stops at the first one seen (hostiles are
        nearest first, so usually the first it checks), where :attr:`visible` checks sight
        to every hostile."""
        if self._visible is not None:
            return bool(self._visible)
        if self.in_range:
            return True
        g, pos = self.grid, self.pos
        return any(pf.line_of_sight(g, pos, h.pos) for h in self.hostiles)

    @property
    def in_range(self) -> tuple[UnitView, ...]:
        """Hostiles in sight and within fire range, nearest first (sight checked only for
        those in range)."""
        if self._in_range is None:
            r, g, pos = self.rules.fire_range, self.grid, self.pos
            self._in_range = tuple(h for h in (self.hostiles if self._visible is None
                                               else self._visible)
                                   if pf.distance(pos, h.pos) <= r
                                   and pf.line_of_sight(g, pos, h.pos))
        return self._in_range

    @property
    def fighting(self) -> tuple[UnitView, ...]:
        """Hostiles I am fighting: in sight and range while I have rounds and am not hurt
        (hurt or out of rounds, an agent gets away rather than fights), nearest first."""
        return self.in_range if self.has_ammo and not self.low_hp else ()

    def smoke_blinds_my_fight(self, tile: Tile) -> UnitView | None:
        """The enemy I am fighting (nearest first) whose line of fire with me a smoke cloud on
        ``tile`` would cut (it stands inside the cloud, or the cloud hangs between us), or
        ``None`` when such a cloud spares my fight."""
        fighting = self.fighting
        if not fighting:
            return None
        cloud = ((tile[0], tile[1], self.rules.smoke_radius),)
        return next((h for h in fighting if pf.smoke_blocks(cloud, self.pos, h.pos)), None)

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

    def exposed(self, tile: Tile) -> bool:
        """Whether some hostile has ``tile`` in sight and within fire range."""
        g, rules = self.grid, self.rules
        return any(covers(g, rules, h.pos, tile) for h in self.hostiles)

    def threats_to(self, tile: Tile) -> list[UnitView]:
        """Hostiles that have ``tile`` in sight and within fire range, nearest to it first."""
        g, rules = self.grid, self.rules
        out = [h for h in self.hostiles if covers(g, rules, h.pos, tile)]
        out.sort(key=lambda h: (pf.distance(h.pos, tile), h.id))
        return out

    def occupied(self) -> set[Tile]:
        """Tiles where another unit stands (my own tile excluded; shared, treat as read-only)."""
        if self._occupied is not None:
            return self._occupied
        s = self.snapshot
        out = {(u.x, u.y) for u in s.enemies}
        out.update([(u.x, u.y) for u in s.allies])
        out.update([(u.x, u.y) for u in s.neutrals])
        if s.leader is not None:
            out.add((s.leader.x, s.leader.y))
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

    def move_next_to_leader(self) -> MoveTo | None:
        """MoveTo a free tile beside the leader, or ``None`` (no leader, or already there)."""
        if self.leader is None:
            return None
        t = self.tile_next_to(self.leader.pos)
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
        # few nearest, so cover just behind a wall does not beat cover a few steps away. Only
        # cover around me is ranked (a big map has thousands of tiles); all of it only when
        # nothing nearby is free and reachable.
        near = pf.cover_near(g, pos, 4 * COVER_CANDIDATES)
        pool = [t for t in near if t not in occupied and self.can_reach(t)]
        if not pool and len(near) < len(cover):
            pool = [t for t in cover if t not in occupied and self.can_reach(t)]
        cands = sorted((pf.octile(pos, t) - bonus(t), t[1], t[0]) for t in pool)[:COVER_CANDIDATES]
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
        """Suppress the hostile threatening the leader (else the nearest one in range)."""
        if not self.has_ammo:
            return None
        prefer = self.leader.pos if self.leader is not None else None
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

    def heal_leader_step(self) -> Heal | None:
        p = self.leader
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
        p = self.leader
        if p is None or p.hp > 0 or pf.distance(self.pos, p.pos) > self.rules.revive_reach:
            return None
        return Revive(target_id=p.id)

    def reload_step(self) -> Reload | None:
        return Reload() if self.can_reload else None

    def move_to_objective_step(self) -> MoveTo | None:
        e = self.objective
        if e is None or e == self.pos or not self.can_reach(e):
            return None
        return MoveTo(x=e[0], y=e[1])

    def escort_step(self) -> MoveTo | None:
        """Lead the way to the objective: the farthest tile along the leader's own route there
        that stays within follow distance of them. ``None`` when there is no such tile I can
        reach, or I already stand on it. (The route is read off the objective's cost field,
        built once per map, so it costs a few tiles' walk however far the objective is.)"""
        e, p = self.objective, self.leader
        if e is None:
            return None
        if p is None or p.hp <= 0:
            return self.move_to_objective_step()
        route = route_toward(self.grid, p.pos, e)
        if route is None:
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


