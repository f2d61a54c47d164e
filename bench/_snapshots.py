"""Varied, seeded hello_companion snapshots for the LLM benchmarks (independent of tests/).

Each snapshot is the 20x10 hello_companion map (wall at x=6 for y=1..8, five cover tiles, the
breach door at (15, 8)) with the companion, the player and three enemies placed at random
walkable tiles, random health (some enemies dead), ammo, cooldowns, orders and smoke.
"""

from __future__ import annotations

import dataclasses
import random
from types import MappingProxyType

from esper_arbiter.components.snapshot import GridView, ObjectiveView, UnitView, WorldSnapshot

WIDTH, HEIGHT = 20, 10
WALLS = frozenset((6, y) for y in range(1, 9))
COVER = frozenset({(5, 2), (5, 5), (7, 3), (11, 4), (13, 7)})
DOOR = (15, 8)
ORDERS = (None, None, "follow", "hold", "attack", "objective")


def _tile(rng: random.Random, taken: set[tuple[int, int]], x_range: tuple[int, int]
          ) -> tuple[int, int]:
    while True:
        x = rng.randint(*x_range)
        y = rng.randint(0, HEIGHT - 1)
        if (x, y) not in WALLS and (x, y) not in taken:
            taken.add((x, y))
            return x, y


def bench_snapshot(rng: random.Random, t: float = 0.0) -> WorldSnapshot:
    """One random but legal hello_companion situation."""
    taken: set[tuple[int, int]] = set()
    mx, my = _tile(rng, taken, (0, 14))
    px, py = _tile(rng, taken, (max(0, mx - 3), min(WIDTH - 1, mx + 3)))
    me_hp = float(rng.choice([80, 80, 60, 35, 15]))
    me = UnitView(2, mx, my, me_hp, 80.0, "blue", (mx, my) in COVER, "companion")
    player = UnitView(1, px, py, float(rng.choice([100, 70, 40])), 100.0, "blue", False,
                      "player")
    enemies = []
    for uid, name, hp in ((3, "Rival", 60.0), (4, "Grunt", 40.0), (5, "Sniper", 40.0)):
        ex, ey = _tile(rng, taken, (8, WIDTH - 1))
        alive_hp = rng.choice([hp, hp, hp / 2, 0.0])
        enemies.append(UnitView(uid, ex, ey, alive_hp, hp, "red", (ex, ey) in COVER, name))
    if all(e.hp <= 0 for e in enemies):
        e0 = enemies[0]
        enemies[0] = UnitView(e0.id, e0.x, e0.y, 30.0, e0.max_hp, "red", e0.in_cover, e0.name)
    smoke: tuple[tuple[int, int, float], ...] = ()
    if rng.random() < 0.2:
        smoke = ((rng.randint(7, 14), rng.randint(0, HEIGHT - 1), 1.5),)
    order = rng.choice(ORDERS)
    return WorldSnapshot(
        t=t,
        me=me,
        leader=player,
        enemies=tuple(enemies),
        allies=(),
        grid=GridView(WIDTH, HEIGHT, WALLS, COVER, smoke),
        pois=MappingProxyType({"breach_door": DOOR}),
        objective=ObjectiveView("breach_door", "reach", DOOR[0], DOOR[1]),
        orders=order,
        order_serial=0 if order is None else 1,
        ammo=rng.choice([30, 30, 12, 3, 0]),
        ammo_capacity=30,
        ammo_reserve=rng.choice([90, 30, 0]),
        morale=round(rng.uniform(0.3, 1.0), 2),
        cooldowns=MappingProxyType({"smoke": rng.choice([0.0, 0.0, 5.0]),
                                    "heal": rng.choice([0.0, 4.0])}),
    )


def bench_snapshots(n: int, seed: int = 2024) -> list[WorldSnapshot]:
    """``n`` snapshots, the same for the same seed."""
    rng = random.Random(seed)
    return [bench_snapshot(rng, t=round(i * 3.7, 2)) for i in range(n)]


def bench_squad(n: int, ids: tuple[int, ...], seed: int = 2024) -> list[WorldSnapshot]:
    """One seeded world seen by ``n`` squad-mates (agent ids ``ids``): the same enemies, player,
    smoke, time and order; each member on its own tile with its own health, ammo and
    cooldowns, and the others listed as its allies."""
    rng = random.Random(seed)
    world = bench_snapshot(rng)
    taken = {world.me.pos, *(u.pos for u in world.enemies)}
    if world.leader is not None:
        taken.add(world.leader.pos)
    members = [dataclasses.replace(world.me, id=ids[0])]
    for aid in ids[1:n]:
        x, y = _tile(rng, taken, (0, 14))
        hp = float(rng.choice([80, 80, 60, 35]))
        members.append(UnitView(aid, x, y, hp, 80.0, "blue", (x, y) in COVER, "companion"))
    out = []
    for m in members:
        out.append(dataclasses.replace(
            world, me=m, allies=tuple(a for a in members if a.id != m.id),
            ammo=rng.choice([30, 30, 12, 3]), ammo_reserve=rng.choice([90, 30, 0]),
            morale=round(rng.uniform(0.3, 1.0), 2),
            cooldowns=MappingProxyType({"smoke": rng.choice([0.0, 0.0, 5.0]),
                                        "heal": rng.choice([0.0, 4.0])})))
    return out
