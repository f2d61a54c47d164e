"""The tool registry: the 12 default tools, the prompt list, the narrowed JSON schema, and the
promise that one registration shows up in prompt, schema and validator alike."""

from __future__ import annotations

import dataclasses
import itertools
import json
import random
from dataclasses import dataclass
from typing import Any, ClassVar

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from esper_arbiter.components.actions import ACTION_TYPES, SQUAD_STEPS, MoveTo, step_to_dict
from esper_arbiter.components.snapshot import GridView
from esper_arbiter.systems.llm.prompt import build_messages, system_prompt
from esper_arbiter.systems.planning.pathfinding import step_distances
from esper_arbiter.systems.planning.tools import (
    MAX_TILE_BRANCHES,
    ArgKind,
    ArgSpec,
    Check,
    Effect,
    ToolRegistry,
    ToolSpec,
    legal_targets,
)
from esper_arbiter.systems.planning.validation import ValidationCode, validate_plan
from esper_arbiter.systems.presets.squad.tools import SQUAD_REGISTRY as DEFAULT_REGISTRY
from tests.planning import domain_with
from tests.planning.snapshots import (
    COMPANION_ID,
    COVER,
    ENEMY_IDS,
    PLAYER_ID,
    RIVAL_ID,
    WALLS,
    hello_snapshot,
    unit,
    with_enemy,
)


def branches(schema: dict[str, Any], act: str) -> list[dict[str, Any]]:
    return [b for b in schema["anyOf"] if b["properties"]["act"]["const"] == act]


def tiles_of(schema: dict[str, Any], act: str) -> set[tuple[int, int]]:
    out: set[tuple[int, int]] = set()
    for b in branches(schema, act):
        p = b["properties"]
        out |= set(itertools.product(p["x"]["enum"], p["y"]["enum"]))
    return out


def walk(node: object) -> list[str]:
    """Every key used anywhere in a JSON document."""
    if isinstance(node, dict):
        return [*node.keys(), *itertools.chain.from_iterable(walk(v) for v in node.values())]
    if isinstance(node, list):
        return list(itertools.chain.from_iterable(walk(v) for v in node))
    return []


# -- the default vocabulary -------------------------------------------------------------------


def test_default_registry_has_every_action_with_the_same_fields() -> None:
    assert set(DEFAULT_REGISTRY.names()) == {cls.act for cls in SQUAD_STEPS}
    assert len(DEFAULT_REGISTRY) == 12
    for spec in DEFAULT_REGISTRY:
        fields = [f.name for f in dataclasses.fields(ACTION_TYPES[spec.name])]
        assert [a.name for a in spec.args] == fields, spec.name


def test_build_step_round_trips_every_tool() -> None:
    for spec in DEFAULT_REGISTRY:
        raw = {"act": spec.name, **spec.example_args()}
        step = DEFAULT_REGISTRY.build_step(raw)
        assert type(step) is ACTION_TYPES[spec.name]
        assert step_to_dict(step) == raw


def test_build_step_accepts_integral_floats_like_the_validator() -> None:
    step = DEFAULT_REGISTRY.build_step({"act": "MoveTo", "x": 3.0, "y": 2})
    assert step_to_dict(step) == {"act": "MoveTo", "x": 3, "y": 2}
    assert isinstance(step_to_dict(step)["x"], int)


def test_registering_a_name_twice_is_refused() -> None:
    reg = DEFAULT_REGISTRY.copy()
    with pytest.raises(ValueError, match="already registered"):
        reg.register(DEFAULT_REGISTRY.get("MoveTo"))  # type: ignore[arg-type]


def test_a_tile_needs_both_coordinates() -> None:
    with pytest.raises(ValueError, match="X and one Y"):
        ToolSpec("Bad", "x without y", MoveTo, (ArgSpec("x", ArgKind.X),))


def test_seconds_arguments_need_bounds() -> None:
    with pytest.raises(ValueError, match="bounds"):
        ArgSpec("seconds", ArgKind.SECONDS)


def test_prompt_tool_list_names_every_tool_its_arguments_and_rules() -> None:
    text = DEFAULT_REGISTRY.prompt_tool_list()
    lines = text.splitlines()
    assert len(lines) == len(DEFAULT_REGISTRY)
    for spec, line in zip(DEFAULT_REGISTRY, lines, strict=True):
        assert line.startswith(f"- {spec.signature()}")
    assert "MoveTo(x, y)" in text
    assert "CoverFire(target_id, seconds)" in text
    smoke = next(line for line in lines if "ThrowSmoke" in line)
    assert "within 8 tiles" in smoke and "cooldown smoke" in smoke
    assert "needs ammo" in next(line for line in lines if line.startswith("- Attack"))
    assert "seconds 0.1-10" in next(line for line in lines if line.startswith("- Wait"))


# -- schema narrowing ----------------------------------------------------------------------


def test_plan_schema_shape() -> None:
    schema = DEFAULT_REGISTRY.plan_schema(hello_snapshot(), max_steps=5)
    assert schema["type"] == "object"
    assert schema["required"] == ["steps"]
    assert schema["additionalProperties"] is False
    steps = schema["properties"]["steps"]
    assert (steps["minItems"], steps["maxItems"]) == (1, 5)
    for b in steps["items"]["anyOf"]:
        assert b["additionalProperties"] is False
        assert b["required"][0] == "act"
        assert set(b["required"]) == set(b["properties"])
    json.dumps(schema)  # plain JSON


def test_schema_uses_only_grammar_friendly_keywords() -> None:
    keys = set(walk(DEFAULT_REGISTRY.plan_schema(hello_snapshot())))
    props = {"act", "x", "y", "target_id", "seconds", "steps"}
    assert keys - props <= {"type", "properties", "required", "additionalProperties", "anyOf",
                            "items", "minItems", "maxItems", "enum", "const"}


def test_move_tiles_are_exactly_the_walkable_reachable_tiles() -> None:
    schema = DEFAULT_REGISTRY.step_schema(hello_snapshot())
    every = {(x, y) for x in range(20) for y in range(10)}
    assert tiles_of(schema, "MoveTo") == every - WALLS
    assert tiles_of(schema, "Retreat") == every - WALLS
    assert tiles_of(schema, "TakeCover") == set(COVER)
    assert tiles_of(schema, "ThrowSmoke") == every  # smoke may land on a wall


def test_tiles_walled_off_from_the_agent_are_not_offered() -> None:
    # Close the gaps at y=0 and y=9: the right half becomes unreachable.
    walls = frozenset((6, y) for y in range(10))
    snap = hello_snapshot(grid=GridView(20, 10, walls, COVER))
    schema = DEFAULT_REGISTRY.step_schema(snap)
    assert tiles_of(schema, "MoveTo") == {(x, y) for x in range(6) for y in range(10)}
    assert tiles_of(schema, "TakeCover") == {(5, 2), (5, 5)}
    assert branches(schema, "Approach") == []  # every enemy is on the far side
    # Nor can any be shot: behind a closed wall, out of sight, nothing engages them.
    assert branches(schema, "Attack") == [] and branches(schema, "CoverFire") == []


def test_target_ids_are_live_hostiles_and_allies() -> None:
    snap = with_enemy(hello_snapshot(), RIVAL_ID, hp=0)
    schema = DEFAULT_REGISTRY.step_schema(snap)
    for act in ("Attack", "CoverFire", "Approach"):
        ids = branches(schema, act)[0]["properties"]["target_id"]["enum"]
        assert sorted(ids) == sorted(set(ENEMY_IDS) - {RIVAL_ID}), act
    heal = branches(schema, "Heal")[0]["properties"]["target_id"]["enum"]
    assert sorted(heal) == [PLAYER_ID, COMPANION_ID]
    assert branches(schema, "Revive") == []  # nobody is down


def test_revive_is_offered_only_for_downed_allies() -> None:
    buddy = unit(9, 3, 3, hp=0, max_hp=50)
    schema = DEFAULT_REGISTRY.step_schema(hello_snapshot(allies=(buddy,)))
    assert branches(schema, "Revive")[0]["properties"]["target_id"]["enum"] == [9]
    heal = branches(schema, "Heal")[0]["properties"]["target_id"]["enum"]
    assert 9 not in heal


def test_tools_with_no_legal_value_are_left_out() -> None:
    snap = hello_snapshot(enemies=(), cooldowns={"smoke": 3.0, "heal": 0.0})
    acts = {b["properties"]["act"]["const"] for b in DEFAULT_REGISTRY.step_schema(snap)["anyOf"]}
    assert acts == {"MoveTo", "Retreat", "TakeCover", "Reload", "Heal", "Scan", "Wait"}


def test_an_empty_magazine_leaves_shooting_out_until_reloaded() -> None:
    acts = {b["properties"]["act"]["const"]
            for b in DEFAULT_REGISTRY.step_schema(hello_snapshot(ammo=0))["anyOf"]}
    assert "Reload" in acts and not acts & {"Attack", "CoverFire"}
    # A host that does not track ammunition (no capacity) keeps them.
    untracked = hello_snapshot(ammo=0, ammo_capacity=0, ammo_reserve=0)
    acts = {b["properties"]["act"]["const"]
            for b in DEFAULT_REGISTRY.step_schema(untracked)["anyOf"]}
    assert {"Attack", "CoverFire"} <= acts


def test_seconds_are_whole_seconds_within_the_rules() -> None:
    schema = DEFAULT_REGISTRY.step_schema(hello_snapshot())
    assert branches(schema, "Wait")[0]["properties"]["seconds"]["enum"] == list(range(1, 11))
    assert branches(schema, "CoverFire")[0]["properties"]["seconds"]["enum"] == list(range(1, 7))


def test_ragged_maps_fall_back_to_one_superset_branch() -> None:
    rng = random.Random(7)
    walls = frozenset((x, y) for x in range(30) for y in range(8)
                      if rng.random() < 0.2 and (x, y) != (1, 1))
    snap = hello_snapshot(grid=GridView(30, 8, walls, frozenset()),
                          me=unit(COMPANION_ID, 1, 1, hp=80), leader=None, enemies=())
    legal = set(step_distances(snap.grid, (1, 1)))
    columns = {tuple(sorted(y for (x, y) in legal if x == c)) for c in range(30)}
    assert len(columns) > MAX_TILE_BRANCHES  # the exact form would need too many branches
    move = branches(DEFAULT_REGISTRY.step_schema(snap), "MoveTo")
    assert len(move) == 1
    assert tiles_of({"anyOf": move}, "MoveTo") >= legal


@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_every_schema_value_passes_the_validator_except_reach(data: st.DataObject) -> None:
    """Schema and validator agree: a single step drawn from the schema is accepted, unless it
    is out of reach of where the agent stands (the schema cannot know where it will be)."""
    snap = hello_snapshot()
    schema = DEFAULT_REGISTRY.step_schema(snap)
    branch = data.draw(st.sampled_from(schema["anyOf"]))
    step: dict[str, Any] = {"act": branch["properties"]["act"]["const"]}
    for name, prop in branch["properties"].items():
        if name != "act":
            step[name] = data.draw(st.sampled_from(prop["enum"]))
    result = validate_plan([step], snap)
    assert result.ok or {e.code for e in result.errors} == {ValidationCode.OUT_OF_REACH}, (
        step, result.errors)


def test_schema_converts_to_a_llama_cpp_grammar() -> None:
    grammar = pytest.importorskip("llama_cpp.llama_grammar")
    gbnf = grammar.json_schema_to_gbnf(json.dumps(DEFAULT_REGISTRY.plan_schema(hello_snapshot())))
    for name in DEFAULT_REGISTRY.names():
        if name != "Revive":  # nobody is down in the opening
            assert f'\\"{name}\\"' in gbnf
    assert '\\"Revive\\"' not in gbnf


# -- one registration, three consumers -----------------------------------------------------


@dataclass(frozen=True, slots=True)
class Mark:
    """A host's own tool: ping a tile for the player."""

    act: ClassVar[str] = "Mark"
    x: int
    y: int


def test_an_extra_tool_appears_in_prompt_schema_and_validator() -> None:
    reg = DEFAULT_REGISTRY.copy()
    # A host's own step type lies outside the ActionStep union, hence the ignore.
    reg.register(ToolSpec("Mark", "ping a tile for the player", Mark,  # type: ignore[arg-type]
                          (ArgSpec("x", ArgKind.X, example=4), ArgSpec("y", ArgKind.Y, example=4)),
                          frozenset({Check.WALKABLE}), Effect.NONE))
    snap = hello_snapshot()
    assert "Mark(x, y): ping a tile for the player (tile not a wall)" in reg.prompt_tool_list()
    assert "Mark(x, y)" in system_prompt(domain_with(reg))
    assert "Mark" in build_messages(snap, domain_with(reg))[0]["content"]
    assert tiles_of(reg.step_schema(snap), "Mark") == {
        (x, y) for x in range(20) for y in range(10)} - WALLS
    ok = validate_plan({"steps": [{"act": "Mark", "x": 4, "y": 4}]}, snap, reg)
    assert ok.ok and ok.steps == (Mark(4, 4),)  # type: ignore[comparison-overlap]
    bad = validate_plan([{"act": "Mark", "x": 6, "y": 4}], snap, reg)
    assert [e.code for e in bad.errors] == [ValidationCode.ON_OBSTACLE]
    # The shared default registry is untouched.
    assert "Mark" not in DEFAULT_REGISTRY
    assert validate_plan([{"act": "Mark", "x": 4, "y": 4}], snap).errors[0].code is (
        ValidationCode.UNKNOWN_TOOL)


def test_a_tool_left_out_disappears_from_all_three() -> None:
    reg = ToolRegistry(s for s in DEFAULT_REGISTRY if s.name != "ThrowSmoke")
    snap = hello_snapshot()
    assert "ThrowSmoke" not in reg.prompt_tool_list()
    assert "ThrowSmoke" not in json.dumps(reg.plan_schema(snap))
    assert all("ThrowSmoke" not in m["content"] for m in build_messages(snap, domain_with(reg)))
    result = validate_plan([{"act": "ThrowSmoke", "x": 9, "y": 2}], snap, reg)
    assert result.errors[0].code is ValidationCode.UNKNOWN_TOOL


def test_on_a_big_map_take_cover_offers_only_real_cover_tiles_nearest_first() -> None:
    """Every (x, y) pair the schema allows for TakeCover is a cover tile, even with far more
    cover than schema branches (a superset of columns x rows let a model pick walls)."""
    import random as _random

    from esper_arbiter.components.snapshot import UnitView as _UV
    from esper_arbiter.components.snapshot import WorldSnapshot

    rng = _random.Random(3)
    cover = frozenset((rng.randrange(80), rng.randrange(40)) for _ in range(150))
    walls = frozenset((40, y) for y in range(5, 35)) - cover
    me = _UV(1, 10, 20, 80, 80, "blue")
    snap = WorldSnapshot(0.0, me, None, (), (), GridView(80, 40, walls, cover))
    branches = [b for b in DEFAULT_REGISTRY.step_schema(snap)["anyOf"]
                if b["properties"]["act"]["const"] == "TakeCover"]
    allowed = {(x, y) for b in branches for x in b["properties"]["x"]["enum"]
               for y in b["properties"]["y"]["enum"]}
    assert allowed and allowed <= cover
    assert len(allowed) <= MAX_TILE_BRANCHES
    nearest = min((t for t in cover if t[0] < 40),
                  key=lambda t: (t[0] - 10) ** 2 + (t[1] - 20) ** 2)
    assert nearest in allowed


def test_shooting_tools_offer_only_enemies_that_can_be_engaged() -> None:
    """In sight and range now, or reachable on foot (Attack approaches them); an enemy walled
    off out of sight is not on offer, so a small model cannot pick it."""
    from tests.planning.snapshots import RIVAL_ID, hello_snapshot

    snap = hello_snapshot()
    rival = snap.unit(RIVAL_ID)
    assert rival is not None
    box = frozenset((x, y) for x in range(rival.x - 1, rival.x + 2)
                    for y in range(rival.y - 1, rival.y + 2) if (x, y) != rival.pos)
    boxed = dataclasses.replace(snap, grid=dataclasses.replace(snap.grid,
                                                               walls=snap.grid.walls | box))
    attack = DEFAULT_REGISTRY.get("Attack")
    assert attack is not None
    assert RIVAL_ID in legal_targets(attack, snap)
    assert RIVAL_ID not in legal_targets(attack, boxed)
    assert legal_targets(attack, boxed)  # the others still are


def test_a_seconds_argument_without_bounds_is_told_how_to_give_them() -> None:
    import pytest

    from esper_arbiter.systems.planning.tools import ArgKind, ArgSpec

    with pytest.raises(ValueError, match=r"bounds=lambda rules: \("):
        ArgSpec("seconds", ArgKind.SECONDS)
    with pytest.raises(ValueError, match="SECONDS arguments only"):
        ArgSpec("x", ArgKind.X, bounds=lambda _r: (0.0, 1.0))
