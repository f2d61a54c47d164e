"""The squad-tactics preset's tools: movement, cover, shooting, smoke, medkits, scanning.

Each :class:`~systems.planning.tools.ToolSpec` names the step class it builds (from
:mod:`components.actions`), its typed arguments and its legality checks; the prompt's tool
list, the model's JSON schema and the validator are all generated from these.
"""

from __future__ import annotations

from esper_arbiter.components.actions import (
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
from esper_arbiter.systems.planning.tools import (
    ArgKind,
    ArgSpec,
    Check,
    Effect,
    ToolRegistry,
    ToolSpec,
)
from esper_arbiter.systems.presets.squad.grounding import (
    defer_smoke,
    moot_smoke,
    prepare_ally_reach,
    prepare_engage,
    prepare_smoke,
)


def _x(example: int = 3) -> ArgSpec:
    return ArgSpec("x", ArgKind.X, "tile column", example=example)


def _y(example: int = 2) -> ArgSpec:
    return ArgSpec("y", ArgKind.Y, "tile row", example=example)


def _hostile() -> ArgSpec:
    return ArgSpec("target_id", ArgKind.HOSTILE_ID, "enemy id", example=5)


def _ally() -> ArgSpec:
    return ArgSpec("target_id", ArgKind.ALLY_ID, "your id or an ally's id", example=1)


_TILE_MOVE = frozenset({Check.WALKABLE, Check.REACHABLE})

SQUAD_TOOLS: tuple[ToolSpec, ...] = (
    ToolSpec("MoveTo", "walk to a tile", MoveTo, (_x(), _y()), _TILE_MOVE, Effect.MOVE),
    ToolSpec("Approach", "close in on an enemy until it is in range and in sight", Approach,
             (_hostile(),), frozenset({Check.REACHABLE}), Effect.APPROACH),
    ToolSpec("Retreat", "fall back to a tile without stopping to shoot", Retreat,
             (_x(1), _y(2)), _TILE_MOVE, Effect.MOVE),
    ToolSpec("TakeCover", "move to a cover tile and crouch (damage halved)", TakeCover,
             (_x(5), _y(2)), _TILE_MOVE | {Check.COVER}, Effect.MOVE),
    ToolSpec("Attack", "engage an enemy: close in until it is in range and sight, then fire a "
             "burst", Attack, (_hostile(),),
             frozenset({Check.AMMO, Check.LINE_OF_FIRE}), prepare=prepare_engage),
    ToolSpec("CoverFire", "suppress an enemy for some seconds", CoverFire,
             (_hostile(), ArgSpec("seconds", ArgKind.SECONDS, "how long",
                                  bounds=lambda r: (0.5, r.max_cover_fire), example=3)),
             frozenset({Check.AMMO, Check.LINE_OF_FIRE}), prepare=prepare_engage),
    ToolSpec("ThrowSmoke", "throw smoke at a tile to block sight", ThrowSmoke,
             (_x(9), _y(2)), frozenset({Check.IN_REACH, Check.COOLDOWN}),
             reach=lambda r: r.smoke_range, cooldown="smoke",
             cooldown_time=lambda r: r.smoke_cooldown, prepare=prepare_smoke,
             defer=defer_smoke, moot=moot_smoke),
    ToolSpec("Reload", "refill the magazine", Reload, (), frozenset(), Effect.RELOAD),
    ToolSpec("Heal", "use a medkit on yourself or an adjacent ally", Heal, (_ally(),),
             frozenset({Check.IN_REACH, Check.COOLDOWN}),
             reach=lambda r: r.heal_reach, cooldown="heal",
             cooldown_time=lambda r: r.heal_cooldown, prepare=prepare_ally_reach),
    ToolSpec("Revive", "get a downed adjacent ally back up", Revive, (_ally(),),
             frozenset({Check.TARGET_DOWNED, Check.IN_REACH}),
             reach=lambda r: r.revive_reach, prepare=prepare_ally_reach),
    ToolSpec("Scan", "stop and look around for enemies", Scan),
    ToolSpec("Wait", "hold position", Wait,
             (ArgSpec("seconds", ArgKind.SECONDS, "how long",
                      bounds=lambda r: (0.1, r.max_wait), example=2),)),
)

SQUAD_REGISTRY = ToolRegistry(SQUAD_TOOLS)
"""The preset's twelve tools (the steps of :mod:`components.actions`). Extend with
:meth:`ToolRegistry.copy` and :meth:`ToolRegistry.register` rather than mutating this shared
instance."""
