"""The squad preset's advice (the options a model's prompt lists): smoke only where it pays.

On hello_companion's standard round the model picked the first option, smoke on the last
enemy at the door, which the companion was already shooting: the cloud blinded its own fire,
GOAP then walked out of cover to find the target again, and the companion lost HP it did not
lose with GOAP alone. An enemy I can shoot from here is fought; smoke is for one out of my
reach, or for getting away when I cannot fight.
"""

from __future__ import annotations

import dataclasses

from esper_arbiter.components.actions import Attack, ThrowSmoke
from esper_arbiter.components.snapshot import GridView, WorldSnapshot
from esper_arbiter.systems.planning.rules import Rules
from esper_arbiter.systems.presets.squad.advice import squad_advisor
from tests.planning.snapshots import hello_snapshot, unit

OPEN = GridView(width=24, height=10, walls=frozenset(), cover=frozenset(), smoke=())
RULES = Rules()


def field(me: tuple[int, int], leader: tuple[int, int], enemy: tuple[int, int],
          **me_changes: float) -> WorldSnapshot:
    snap = hello_snapshot()
    return dataclasses.replace(
        snap, grid=OPEN,
        me=dataclasses.replace(unit(snap.me.id, *me, hp=80, team="blue"), **me_changes),
        leader=unit(snap.leader.id if snap.leader else 1, *leader, hp=100, team="blue"),
        enemies=(unit(40, *enemy, hp=60, team="red"),))


def options(snap: WorldSnapshot) -> list[object]:
    return [step for step, _why in squad_advisor()(snap)]


def test_an_enemy_i_can_shoot_is_fought_not_smoked() -> None:
    # #40 at 6 tiles has the leader and me in its sights; I can return fire from here.
    steps = options(field(me=(2, 2), leader=(3, 2), enemy=(8, 2)))
    assert Attack(target_id=40) in steps
    assert not any(isinstance(s, ThrowSmoke) for s in steps)


def test_an_enemy_out_of_my_reach_covering_the_leader_is_smoked() -> None:
    # #40 has the leader (7 tiles) in its sights but is 11 tiles from me: beyond fire range 8.
    steps = options(field(me=(2, 2), leader=(6, 2), enemy=(13, 2)))
    smoke = [s for s in steps if isinstance(s, ThrowSmoke)]
    assert smoke and abs(smoke[0].x - 13) <= 1 and abs(smoke[0].y - 2) <= 1


def test_hurt_i_may_smoke_an_enemy_i_could_shoot() -> None:
    steps = options(field(me=(2, 2), leader=(3, 2), enemy=(8, 2), hp=20))
    assert any(isinstance(s, ThrowSmoke) for s in steps)


def test_smoke_for_another_enemy_never_cuts_my_own_line_of_fire() -> None:
    # I (2,2) am shooting #40 at (9,2). #41 at (12,3) is beyond my range but has the leader
    # (6,2) in its sights; the cloud that blinds it lands next to it, on my line to #40
    # (hello_companion: the companion's own smoke hid its target, GOAP walked out to find it).
    snap = field(me=(2, 2), leader=(6, 2), enemy=(9, 2))
    snap = dataclasses.replace(snap, enemies=(*snap.enemies, unit(41, 11, 2, hp=60, team="red")))
    steps = options(snap)
    assert Attack(target_id=40) in steps
    for s in steps:
        if isinstance(s, ThrowSmoke):  # a cloud, if any, must leave my line to #40 clear
            assert abs(s.y - 2) > 1.5 or s.x > 10.5, s
    # the same enemy alone, off my line of fire: smoked as before
    clear = dataclasses.replace(field(me=(2, 2), leader=(6, 6), enemy=(9, 2)),
                                enemies=(unit(40, 9, 2, hp=60, team="red"),
                                         unit(41, 13, 8, hp=60, team="red")))
    assert any(isinstance(s, ThrowSmoke) for s in options(clear))


def test_smoke_covering_the_leader_s_way_waits_until_the_leader_is_about_to_need_it() -> None:
    from esper_arbiter.components.actions import Wait
    from esper_arbiter.components.snapshot import ObjectiveView
    from esper_arbiter.systems.planning.rules import Rules
    from esper_arbiter.systems.presets.squad.grounding import defer_smoke

    rules = Rules(smoke_duration=2.0, move_speed=4.0, fire_range=8.0)
    # the leader walks along y=2 to (23,2); the enemy at (20,6) sees the last stretch
    def at(leader_x: int) -> WorldSnapshot:
        snap = field(me=(leader_x - 1, 2), leader=(leader_x, 2), enemy=(20, 6))
        return dataclasses.replace(snap, objective=ObjectiveView("exit", "reach", 23, 2))

    smoke = ThrowSmoke(x=19, y=5)
    far = defer_smoke(smoke, at(1), rules)  # 13 tiles (3.2 s) from its sights; a cloud: 2 s
    assert isinstance(far, Wait) and 0.5 < far.seconds <= 2.0
    assert defer_smoke(smoke, at(10), rules) is None  # close enough now: throw
    # in its sights already: throw at once (when I cannot fight it myself: see below)
    assert defer_smoke(smoke, dataclasses.replace(at(16), ammo=0), rules) is None
    assert defer_smoke(ThrowSmoke(x=5, y=8), at(1), rules) is None  # no enemy there: no timing


def test_smoke_that_would_blind_my_own_fight_waits_for_it_with_a_burst_meanwhile() -> None:
    # A plan asked for before the fight comes up during it: I (15,2) trade fire with #40
    # (20,6), who has the leader in its sights. The advice never offers that cloud (the
    # enemy is fought); a plan that has it fights first, and throws it once I cannot fight.
    from esper_arbiter.systems.presets.squad.grounding import defer_smoke

    snap = field(me=(15, 2), leader=(16, 2), enemy=(20, 6))
    smoke = ThrowSmoke(x=19, y=5)
    assert defer_smoke(smoke, snap, RULES) == Attack(target_id=40)
    # a cloud elsewhere, across my line to #40, waits as well
    assert defer_smoke(ThrowSmoke(x=17, y=3), snap, RULES) == Attack(target_id=40)
    # hurt, or out of rounds: the smoke is for getting away, at once
    hurt = dataclasses.replace(snap, me=dataclasses.replace(snap.me, hp=20))
    assert defer_smoke(smoke, hurt, RULES) is None
    assert defer_smoke(smoke, dataclasses.replace(snap, ammo=0), RULES) is None


def test_smoke_is_moot_once_it_would_blind_nobody() -> None:
    from esper_arbiter.systems.presets.squad.grounding import moot_smoke

    snap = field(me=(2, 2), leader=(3, 2), enemy=(13, 2))
    assert moot_smoke(ThrowSmoke(x=12, y=2), snap, RULES) is None  # on the enemy
    # between the enemy and the leader (6 tiles from the enemy): it cuts its line of fire
    near = field(me=(2, 2), leader=(6, 2), enemy=(13, 2))
    assert moot_smoke(ThrowSmoke(x=8, y=2), near, RULES) is None
    # the enemy it was for is dead; the one left (13,2) is far from the cloud and its line
    why = moot_smoke(ThrowSmoke(x=5, y=8), snap, RULES)
    assert why is not None and "blind no enemy" in why
    nobody = dataclasses.replace(snap, enemies=(unit(40, 13, 2, hp=0, team="red"),))
    assert moot_smoke(ThrowSmoke(x=12, y=2), nobody, RULES) == "no enemy left to blind"


def test_cover_is_offered_when_hurt_and_seen_not_to_a_healthy_fighter() -> None:
    """A small model copies the options in order. Cover offered to a healthy agent mid-fight
    was copied first: the companion walked back to cover, away from the fight and the
    objective. GOAP takes cover when hurt and seen; so does the advice."""
    from esper_arbiter.components.actions import TakeCover

    cover = GridView(width=24, height=10, walls=frozenset(), cover=frozenset({(3, 4)}),
                     smoke=())
    healthy = dataclasses.replace(field(me=(2, 2), leader=(3, 2), enemy=(8, 2)), grid=cover)
    steps = options(healthy)
    assert not any(isinstance(s, TakeCover) for s in steps)
    assert steps[0] == Attack(target_id=40)
    hurt = dataclasses.replace(healthy, me=dataclasses.replace(healthy.me, hp=20))
    assert TakeCover(x=3, y=4) in options(hurt)


def test_the_enemy_i_am_about_to_engage_is_fought_not_smoked() -> None:
    """#40 is 9 tiles off (fire range 8) with the leader in its sights: a step or two and I
    am trading fire with it. Any plan comes up by then, when its smoke would only wait out
    that fight and lose its point, so the option is the fight. Hurt, the smoke is offered."""
    near = field(me=(2, 2), leader=(3, 2), enemy=(11, 2))
    steps = options(near)
    assert not any(isinstance(s, ThrowSmoke) for s in steps)
    assert steps[0] == Attack(target_id=40)
    hurt = field(me=(2, 2), leader=(3, 2), enemy=(11, 2), hp=20)
    assert any(isinstance(s, ThrowSmoke) for s in options(hurt))


def test_the_walk_to_the_objective_waits_while_a_fight_comes_first() -> None:
    """A walk offered as a fight began was copied into plans behind the attack; arriving
    mid-fight it walked the companion into the open. As GOAP's goals rank them, an attack
    order or an enemy in sight comes before the objective, unless the order is to go there."""
    from esper_arbiter.components.actions import MoveTo
    from esper_arbiter.components.snapshot import ObjectiveView

    def walks(snap: WorldSnapshot) -> bool:
        return any(isinstance(s, MoveTo) for s in options(snap))

    def at(enemy: tuple[int, int], orders: str | None, walls: frozenset[tuple[int, int]]
           = frozenset()) -> WorldSnapshot:
        snap = field(me=(2, 2), leader=(3, 2), enemy=enemy)
        grid = dataclasses.replace(OPEN, walls=walls)
        return dataclasses.replace(snap, grid=grid, orders=orders,
                                   objective=ObjectiveView("exit", "reach", 20, 8),
                                   cooldowns={"smoke": 5.0, "heal": 0.0})  # no smoke on offer

    wall = frozenset((10, y) for y in range(1, 10))  # hides (14,2); a way round at y=0
    assert not walks(at((8, 2), None))  # an enemy in sight: fight first
    assert not walks(at((14, 2), "attack", wall))  # hidden, but the order is to attack
    assert not walks(at((14, 2), " Attack ", wall))  # order words match as the brain's do
    assert walks(at((8, 2), "objective"))  # go there now: the walk stays on offer
    # hidden behind a wall, following: nothing to fight yet, the walk is an option
    assert walks(at((14, 2), "follow", wall))

