"""hello_companion's rules as a player would notice them: walking, shooting, smoke, cover,
downed and revived, reloading, healing, extraction."""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable

import esper
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from esper_arbiter.components.actions import (
    Approach,
    Attack,
    CoverFire,
    Heal,
    MoveTo,
    Reload,
    Revive,
    Scan,
    TakeCover,
    ThrowSmoke,
    Wait,
)
from esper_arbiter.components.agent import IntentStatus
from esper_arbiter.components.world import Ammo, Cooldowns, InCover, SmokeCloud
from esper_arbiter.game.state import Dead, Downed, Motion, Suppressed
from esper_arbiter.systems.planning.pathfinding import reachable
from tests.game.conftest import Arena

MakeArena = Callable[..., Arena]

WALL_X6 = frozenset((6, y) for y in range(1, 9))
"""hello_companion's wall: x=6 for y=1..8, gaps at y=0 and y=9."""


def _done(arena: Arena, ent: int) -> Callable[[], bool]:
    return lambda: arena.intent(ent).status is not IntentStatus.RUNNING


# -- movement -----------------------------------------------------------------------------


def test_walking_goes_around_the_wall_and_never_stands_on_it(make_arena: MakeArena) -> None:
    arena = make_arena(width=20, height=10, walls=WALL_X6)
    unit = arena.spawn("walker", (2, 4), "blue")
    arena.order(unit, MoveTo(x=9, y=4))
    visited = set()
    while arena.intent(unit).status is IntentStatus.RUNNING:
        arena.step()
        tile = arena.pos(unit).tile
        assert tile not in WALL_X6
        visited.add(tile)
        assert arena.clock.t < 10
    assert arena.intent(unit).status is IntentStatus.DONE
    assert (arena.pos(unit).x, arena.pos(unit).y) == (9.0, 4.0)
    assert (6, 0) in visited or (6, 9) in visited  # it went through a gap


def test_walking_speed_follows_the_rules(make_arena: MakeArena) -> None:
    arena = make_arena()
    unit = arena.spawn("walker", (1, 3), "blue")
    arena.order(unit, MoveTo(x=9, y=3))
    took = arena.run_until(_done(arena, unit))
    expected = 8 / arena.rules.move_speed
    assert expected - 0.05 <= took <= expected + 0.1


def test_moving_onto_a_wall_fails_with_a_reason(make_arena: MakeArena) -> None:
    arena = make_arena(walls=frozenset({(5, 5)}))
    unit = arena.spawn("walker", (1, 1), "blue")
    intent = arena.order(unit, MoveTo(x=5, y=5))
    arena.step()
    assert intent.status is IntentStatus.FAILED
    assert "not walkable" in intent.reason
    assert arena.pos(unit).tile == (1, 1)


def test_an_unreachable_goal_fails_and_the_unit_stays_put(make_arena: MakeArena) -> None:
    box = frozenset({(7, 2), (9, 2), (8, 1), (8, 3), (7, 1), (9, 1), (7, 3), (9, 3)})
    arena = make_arena(walls=box)
    unit = arena.spawn("walker", (1, 1), "blue")
    intent = arena.order(unit, MoveTo(x=8, y=2))
    arena.step()
    assert intent.status is IntentStatus.FAILED
    assert "no path" in intent.reason
    assert arena.pos(unit).tile == (1, 1)


@st.composite
def _maze(draw: st.DrawFn) -> tuple[frozenset[tuple[int, int]], tuple[int, int], tuple[int, int]]:
    w, h = 8, 6
    cells = [(x, y) for x in range(w) for y in range(h)]
    walls = frozenset(draw(st.sets(st.sampled_from(cells), max_size=18)))
    free = [c for c in cells if c not in walls]
    start = draw(st.sampled_from(free))
    goal = draw(st.sampled_from(free))
    return walls, start, goal


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(case=_maze())
def test_walking_never_crosses_a_wall_and_arrives_iff_reachable(
    make_arena: MakeArena,
    case: tuple[frozenset[tuple[int, int]], tuple[int, int], tuple[int, int]],
) -> None:
    walls, start, goal = case
    arena = make_arena(width=8, height=6, walls=walls, exit_at=(7, 5))
    unit = arena.spawn("walker", start, "blue")
    intent = arena.order(unit, MoveTo(x=goal[0], y=goal[1]))
    for _ in range(600):
        arena.step()
        pos = arena.pos(unit)
        # Between tiles, the unit is always on one of two walkable neighbours.
        for tile in {(math.floor(pos.x), math.floor(pos.y)), (math.ceil(pos.x), math.ceil(pos.y))}:
            assert tile not in walls
        if intent.status is not IntentStatus.RUNNING:
            break
    grid = arena.ctx.grid_view()
    if reachable(grid, start, goal):
        assert intent.status is IntentStatus.DONE
        assert arena.pos(unit).tile == goal
    else:
        assert intent.status is IntentStatus.FAILED


def test_approach_stops_once_the_target_is_in_range_and_sight(make_arena: MakeArena) -> None:
    arena = make_arena(width=20, height=10, walls=WALL_X6)
    unit = arena.spawn("hunter", (2, 4), "blue")
    foe = arena.spawn("foe", (12, 4), "red")
    arena.order(unit, Approach(target_id=foe))
    arena.run_until(_done(arena, unit))
    assert arena.intent(unit).status is IntentStatus.DONE
    here, there = arena.pos(unit).tile, arena.pos(foe).tile
    assert math.dist(here, there) <= arena.rules.fire_range
    assert arena.ctx.sees(here, there)
    assert here != there  # stopped short: no need to walk up to it


def test_approach_to_a_target_inside_smoke_holds_in_range_until_it_clears(
    make_arena: MakeArena,
) -> None:
    """Nobody sees into a cloud: once in fire range the approach stops walking (instead of
    walking on toward the target's own gun, a model plan's "smoke, then approach") and holds
    there, running, until the cloud clears and the target can be seen; it does not end while
    the target is still hidden (its brain would only order the same approach again)."""
    arena = make_arena(width=20, height=10)
    unit = arena.spawn("hunter", (2, 4), "blue")
    foe = arena.spawn("foe", (14, 4), "red")
    clears_at = arena.clock.t + 5.0
    esper.create_entity(SmokeCloud(14, 4, 1.5, arena.clock.t, clears_at))
    arena.order(unit, Approach(target_id=foe))
    in_range = lambda: math.dist(arena.pos(unit).tile, arena.pos(foe).tile) <= (  # noqa: E731
        arena.rules.fire_range
    )
    took = arena.run_until(in_range, limit=10.0)
    assert took < 3.0
    held_at = arena.pos(unit).tile
    while arena.clock.t < clears_at - 0.2:
        arena.step()
        assert arena.intent(unit).status is IntentStatus.RUNNING  # holding, not done
        assert arena.pos(unit).tile == held_at  # and not walking on
    arena.run_until(_done(arena, unit), limit=2.0)
    assert arena.intent(unit).status is IntentStatus.DONE
    here, there = arena.pos(unit).tile, arena.pos(foe).tile
    assert arena.ctx.sees(here, there)
    assert math.dist(here, there) > arena.rules.fire_range - 1.5  # stopped at the edge


# -- shooting -----------------------------------------------------------------------------


def test_a_burst_fires_the_rules_number_of_shots_then_finishes(make_arena: MakeArena) -> None:
    arena = make_arena()
    shooter = arena.spawn("shooter", (2, 2), "blue")
    foe = arena.spawn("foe", (6, 2), "red", hp=1000.0)
    arena.order(shooter, Attack(target_id=foe))
    arena.run_until(_done(arena, shooter))
    shots = [e for e in arena.events if e.kind == "shot"]
    assert arena.intent(shooter).status is IntentStatus.DONE
    assert len(shots) == arena.rules.burst_shots
    assert esper.component_for_entity(shooter, Ammo).rounds == 30 - arena.rules.burst_shots
    gaps = [b.t - a.t for a, b in itertools.pairwise(shots)]
    assert all(abs(g - arena.rules.shot_interval) < 0.04 for g in gaps)
    hits = [e for e in arena.events if e.kind == "hit" and e.target == foe]
    assert arena.hp(foe).hp == pytest.approx(1000.0 - 10.0 * len(hits))


def test_shooting_needs_line_of_sight(make_arena: MakeArena) -> None:
    arena = make_arena(width=20, height=10, walls=WALL_X6)
    shooter = arena.spawn("shooter", (4, 4), "blue")
    foe = arena.spawn("foe", (8, 4), "red")
    intent = arena.order(shooter, Attack(target_id=foe))
    arena.step()
    assert intent.status is IntentStatus.FAILED
    assert intent.reason == "no line of sight"
    assert not [e for e in arena.events if e.kind == "shot"]
    assert esper.component_for_entity(shooter, Ammo).rounds == 30


def test_shooting_needs_ammo(make_arena: MakeArena) -> None:
    arena = make_arena()
    shooter = arena.spawn("shooter", (2, 2), "blue", rounds=0)
    foe = arena.spawn("foe", (5, 2), "red")
    intent = arena.order(shooter, Attack(target_id=foe))
    arena.step()
    assert intent.status is IntentStatus.FAILED
    assert intent.reason == "out of ammo"
    assert arena.hp(foe).hp == 50.0


def test_shooting_needs_range(make_arena: MakeArena) -> None:
    arena = make_arena(width=30)
    shooter = arena.spawn("shooter", (1, 2), "blue")
    foe = arena.spawn("foe", (1 + int(arena.rules.fire_range) + 2, 2), "red")
    intent = arena.order(shooter, Attack(target_id=foe))
    arena.step()
    assert intent.status is IntentStatus.FAILED
    assert intent.reason == "target out of range"


def test_attacking_a_friend_or_the_dead_fails(make_arena: MakeArena) -> None:
    arena = make_arena()
    shooter = arena.spawn("shooter", (2, 2), "blue")
    friend = arena.spawn("friend", (4, 2), "blue")
    intent = arena.order(shooter, Attack(target_id=friend))
    arena.step()
    assert intent.status is IntentStatus.FAILED
    assert intent.reason == "target not hostile"
    foe = arena.spawn("foe", (4, 3), "red")
    arena.ctx.kill(foe)
    intent = arena.order(shooter, Attack(target_id=foe))
    arena.step()
    assert intent.reason == "target down"


def test_an_enemy_at_zero_hp_dies_and_the_burst_ends_done(make_arena: MakeArena) -> None:
    arena = make_arena()
    shooter = arena.spawn("shooter", (2, 2), "blue", damage=100.0, accuracy=1.0)
    foe = arena.spawn("foe", (2, 3), "red", hp=10.0)  # adjacent: no range falloff to speak of
    arena.order(shooter, Attack(target_id=foe))
    arena.run_until(_done(arena, shooter))
    assert arena.intent(shooter).status is IntentStatus.DONE
    assert esper.has_component(foe, Dead)
    assert not esper.has_component(foe, Downed)
    assert [e.kind for e in arena.events if e.target == foe][-1] == "died"


def test_cover_fire_suppresses_the_target(make_arena: MakeArena) -> None:
    arena = make_arena()
    shooter = arena.spawn("shooter", (2, 2), "blue")
    foe = arena.spawn("foe", (6, 2), "red", hp=1000.0)
    arena.order(shooter, CoverFire(target_id=foe, seconds=2.0))
    arena.run(0.1)
    assert esper.has_component(foe, Suppressed)
    took = arena.run_until(_done(arena, shooter))
    assert arena.intent(shooter).status is IntentStatus.DONE
    assert 1.8 <= took + 0.1 <= 2.2
    arena.run(2.0)
    assert not esper.has_component(foe, Suppressed)  # it wears off


# -- smoke ---------------------------------------------------------------------------------


def test_smoke_blocks_sight_until_it_expires(make_arena: MakeArena) -> None:
    arena = make_arena(width=16)
    thrower = arena.spawn("thrower", (2, 2), "blue")
    foe = arena.spawn("foe", (8, 2), "red", hp=1000.0)
    assert arena.ctx.sees((2, 2), (8, 2))
    arena.order(thrower, ThrowSmoke(x=5, y=2))
    arena.run_until(_done(arena, thrower))
    assert arena.intent(thrower).status is IntentStatus.DONE
    assert len(esper.get_component(SmokeCloud)) == 1
    assert not arena.ctx.sees((2, 2), (8, 2))
    intent = arena.order(thrower, Attack(target_id=foe))
    arena.step()
    assert intent.reason == "no line of sight"
    arena.run(arena.rules.smoke_duration)
    assert esper.get_component(SmokeCloud) == []
    assert any(e.kind == "smoke_gone" for e in arena.events)
    assert arena.ctx.sees((2, 2), (8, 2))
    intent = arena.order(thrower, Attack(target_id=foe))
    arena.run_until(_done(arena, thrower))
    assert intent.status is IntentStatus.DONE


def test_smoke_has_a_cooldown_and_a_range(make_arena: MakeArena) -> None:
    arena = make_arena(width=30)
    thrower = arena.spawn("thrower", (2, 2), "blue")
    arena.order(thrower, ThrowSmoke(x=4, y=2))
    arena.run_until(_done(arena, thrower))
    cds = esper.component_for_entity(thrower, Cooldowns)
    assert cds.remaining("smoke", arena.clock.t) == pytest.approx(arena.rules.smoke_cooldown,
                                                                  abs=0.05)
    again = arena.order(thrower, ThrowSmoke(x=4, y=3))
    arena.step()
    assert again.reason == "smoke on cooldown"
    cds.ready_at.clear()
    far = arena.order(thrower, ThrowSmoke(x=2 + int(arena.rules.smoke_range) + 3, y=2))
    arena.step()
    assert far.reason == "smoke target out of range"


# -- cover ---------------------------------------------------------------------------------


def test_take_cover_crouches_on_a_cover_tile_and_halves_damage(make_arena: MakeArena) -> None:
    arena = make_arena(cover=frozenset({(4, 2)}))
    unit = arena.spawn("unit", (2, 2), "blue", hp=100.0)
    arena.order(unit, TakeCover(x=4, y=2))
    arena.run_until(_done(arena, unit))
    assert arena.intent(unit).status is IntentStatus.DONE
    assert esper.has_component(unit, InCover)
    assert arena.ctx.damage(unit, 10.0) == pytest.approx(5.0)
    assert arena.hp(unit).hp == pytest.approx(95.0)
    arena.order(unit, MoveTo(x=6, y=2))
    arena.step()
    assert not esper.has_component(unit, InCover)  # moving gives cover up
    assert arena.ctx.damage(unit, 10.0) == pytest.approx(10.0)


def test_taking_cover_where_there_is_none_fails(make_arena: MakeArena) -> None:
    arena = make_arena()
    unit = arena.spawn("unit", (2, 2), "blue")
    arena.order(unit, TakeCover(x=4, y=2))
    arena.run_until(_done(arena, unit))
    assert arena.intent(unit).status is IntentStatus.FAILED
    assert not esper.has_component(unit, InCover)


def test_shots_at_a_unit_in_cover_deal_half_damage(make_arena: MakeArena) -> None:
    arena = make_arena(cover=frozenset({(6, 2)}), seed=3)
    shooter = arena.spawn("shooter", (2, 2), "red", accuracy=1.0, damage=12.0)
    target = arena.spawn("target", (6, 2), "blue", hp=1000.0)
    esper.add_component(target, InCover())
    for _ in range(4):
        arena.order(shooter, Attack(target_id=target))
        arena.run_until(_done(arena, shooter))
    hits = [e for e in arena.events if e.kind == "hit" and e.target == target]
    assert hits
    assert all(e.amount == pytest.approx(6.0) for e in hits)
    assert arena.hp(target).hp == pytest.approx(1000.0 - 6.0 * len(hits))


# -- downed, revive, bleed out -------------------------------------------------------------


def test_a_downed_player_can_be_revived_within_the_window(make_arena: MakeArena) -> None:
    arena = make_arena(player_at=(3, 3))
    medic = arena.spawn("medic", (4, 3), "blue")
    arena.ctx.damage(arena.player, 500.0)
    assert esper.has_component(arena.player, Downed)
    assert arena.ctx.result is None
    arena.run(5.0)
    arena.order(medic, Revive(target_id=arena.player))
    took = arena.run_until(_done(arena, medic))
    assert arena.intent(medic).status is IntentStatus.DONE
    assert took == pytest.approx(arena.rules.revive_time, abs=0.05)
    assert not esper.has_component(arena.player, Downed)
    assert arena.hp(arena.player).hp == pytest.approx(30.0)
    arena.run(15.0)
    assert arena.ctx.result is None


def test_a_downed_player_nobody_revives_bleeds_out_and_the_round_is_lost(
    make_arena: MakeArena,
) -> None:
    arena = make_arena(player_at=(3, 3), bleed_out_s=12.0)
    arena.run(1.0)
    arena.ctx.damage(arena.player, 500.0)
    arena.run(11.5)
    assert arena.ctx.result is None
    arena.run(1.0)
    assert arena.ctx.result is not None
    assert arena.ctx.result.outcome == "defeat"
    assert arena.ctx.result.t == pytest.approx(13.0, abs=0.05)
    assert esper.has_component(arena.player, Dead)


def test_revive_needs_the_reviver_next_to_the_downed(make_arena: MakeArena) -> None:
    arena = make_arena(player_at=(1, 1))
    medic = arena.spawn("medic", (6, 5), "blue")
    arena.ctx.damage(arena.player, 500.0)
    intent = arena.order(medic, Revive(target_id=arena.player))
    arena.step()
    assert intent.status is IntentStatus.FAILED
    assert intent.reason == "target too far"
    healthy = arena.spawn("healthy", (6, 4), "blue")
    intent = arena.order(medic, Revive(target_id=healthy))
    arena.step()
    assert intent.reason == "target is not downed"


def test_a_downed_unit_does_nothing_until_revived(make_arena: MakeArena) -> None:
    arena = make_arena()
    unit = arena.spawn("unit", (2, 2), "blue")
    arena.order(unit, MoveTo(x=9, y=2))
    arena.step()
    arena.ctx.damage(unit, 500.0)
    assert arena.intent(unit).status is IntentStatus.FAILED
    arena.order(unit, MoveTo(x=9, y=2))
    x_before = arena.pos(unit).x
    arena.run(1.0)
    assert arena.pos(unit).x == x_before
    assert esper.component_for_entity(unit, Motion).path == []


# -- reload, heal, scan, wait --------------------------------------------------------------


def test_reload_takes_time_and_moves_rounds_from_the_reserve(make_arena: MakeArena) -> None:
    arena = make_arena()
    unit = arena.spawn("unit", (2, 2), "blue", rounds=4, capacity=30, reserve=10)
    arena.order(unit, Reload())
    arena.run(arena.rules.reload_time - 0.2)
    assert esper.component_for_entity(unit, Ammo).rounds == 4
    arena.run_until(_done(arena, unit))
    ammo = esper.component_for_entity(unit, Ammo)
    assert (ammo.rounds, ammo.reserve) == (14, 0)
    intent = arena.order(unit, Reload())
    ammo.rounds = 0
    arena.step()
    assert intent.reason == "no reserve ammo"


def test_heal_restores_hp_up_to_the_maximum_and_starts_a_cooldown(make_arena: MakeArena) -> None:
    arena = make_arena(player_at=(3, 3))
    medic = arena.spawn("medic", (4, 3), "blue")
    arena.hp(arena.player).hp = 50.0
    arena.order(medic, Heal(target_id=arena.player))
    arena.run_until(_done(arena, medic))
    assert arena.hp(arena.player).hp == pytest.approx(50.0 + arena.rules.heal_amount)
    again = arena.order(medic, Heal(target_id=arena.player))
    arena.step()
    assert again.reason == "heal on cooldown"
    esper.component_for_entity(medic, Cooldowns).ready_at.clear()
    arena.order(medic, Heal(target_id=arena.player))
    arena.run_until(_done(arena, medic))
    assert arena.hp(arena.player).hp == 100.0


@pytest.mark.parametrize(("step", "seconds"), [(Scan(), None), (Wait(seconds=1.5), 1.5)])
def test_scan_and_wait_take_their_time(
    make_arena: MakeArena, step: Scan | Wait, seconds: float | None
) -> None:
    arena = make_arena()
    unit = arena.spawn("unit", (2, 2), "blue")
    arena.order(unit, step)
    took = arena.run_until(_done(arena, unit))
    expected = arena.rules.scan_time if seconds is None else seconds
    assert took == pytest.approx(expected, abs=0.05)


# -- round end -----------------------------------------------------------------------------


def test_the_player_reaching_the_exit_ends_the_round(make_arena: MakeArena) -> None:
    arena = make_arena(player_at=(1, 1), exit_at=(5, 1))
    arena.order(arena.player, MoveTo(x=5, y=1))
    arena.run(2.0)
    assert arena.ctx.result is not None
    assert arena.ctx.result.outcome == "extracted"
    assert arena.ctx.result.t == pytest.approx(4 / arena.rules.move_speed, abs=0.1)
    frozen = arena.clock.t
    arena.order(arena.player, MoveTo(x=1, y=1))
    arena.run(1.0)  # nothing moves after the round ended
    assert arena.pos(arena.player).tile == (5, 1)
    assert frozen < arena.clock.t
