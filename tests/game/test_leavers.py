"""Units that leave the game (their entity deleted) while another acts on them: the step fails
with a reason and the game goes on. Found by the soak (bench/soak.py), where agents leave at
random: a unit that left halfway through being revived raised KeyError and ended the program."""

from __future__ import annotations

import esper

from esper_arbiter.components.actions import Attack, Heal, Revive
from esper_arbiter.components.agent import IntentStatus
from esper_arbiter.game.state import Downed
from tests.game.test_rules import MakeArena


def test_a_unit_that_leaves_while_being_revived_fails_the_revive(make_arena: MakeArena) -> None:
    arena = make_arena(player_at=(1, 1))
    medic = arena.spawn("medic", (4, 3), "blue")
    downed = arena.spawn("downed", (5, 3), "blue")
    arena.ctx.damage(downed, 500.0)
    assert esper.has_component(downed, Downed)
    intent = arena.order(medic, Revive(target_id=downed))
    arena.step()
    assert intent.status is IntentStatus.RUNNING  # the revive takes a while
    esper.delete_entity(downed, immediate=True)
    arena.run(0.5)
    assert intent.status is IntentStatus.FAILED and intent.reason == "target gone"


def test_healing_or_shooting_a_unit_that_left_fails_the_step(make_arena: MakeArena) -> None:
    arena = make_arena(player_at=(1, 1))
    medic = arena.spawn("medic", (4, 3), "blue")
    for step_type, side in ((Heal, "blue"), (Attack, "red")):
        gone = arena.spawn("leaver", (5, 3), side)
        arena.ctx.damage(gone, 10.0)
        intent = arena.order(medic, step_type(target_id=gone))
        arena.step()
        esper.delete_entity(gone, immediate=True)
        arena.run(2.0)
        assert intent.status is not IntentStatus.RUNNING, step_type
