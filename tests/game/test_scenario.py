"""Scenario files: the standard round loads as specified, and every malformed file is rejected
with one message naming the file and the JSON field."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from esper_arbiter.game.scenario import (
    DEFAULT_SCENARIO,
    Scenario,
    ScenarioError,
    build_stress_scenario,
    load_scenario,
    parse_scenario,
)

BASE: dict[str, Any] = json.loads(DEFAULT_SCENARIO.read_text(encoding="utf-8"))


def test_the_standard_round_is_the_one_the_issue_describes() -> None:
    sc = load_scenario(DEFAULT_SCENARIO)
    assert (sc.width, sc.height) == (20, 10)
    assert {(6, y) for y in range(1, 9)} <= sc.walls
    assert (6, 0) not in sc.walls and (6, 9) not in sc.walls  # the two gaps
    assert sc.cover and not (sc.cover & sc.walls)
    assert (sc.player.pos, sc.player.hp) == ((2, 2), 100.0)
    companion = sc.companions[0]
    assert (companion.pos, companion.hp, companion.ammo) == ((2, 3), 80.0, 30)
    rival = sc.enemies[0]
    assert (rival.name, rival.pos, rival.hp) == ("Rival", (12, 2), 60.0)
    assert len(sc.enemies) >= 3
    assert sc.pois["breach_door"] == (15, 8) == sc.extraction_tile
    assert sc.objective == "extract"
    assert {u.side for u in sc.enemies} == {"red"} and sc.player.side == "blue"


def _write(tmp_path: Path, data: Any) -> Path:
    path = tmp_path / "broken.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def _with(change: str, value: Any) -> dict[str, Any]:
    """BASE with the value at dotted path ``change`` (list indices as numbers) replaced;
    ``value`` of ``...`` deletes the key."""
    data = copy.deepcopy(BASE)
    *parents, last = change.split(".")
    node: Any = data
    for key in parents:
        node = node[int(key)] if isinstance(node, list) else node[key]
    if value is ...:
        del node[last]
    elif isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value
    return data


MALFORMED = [
    ("enemies.1.hp", "abc", "enemies[1].hp: expected a positive number, got 'abc'"),
    ("enemies.0.hp", -5, "enemies[0].hp: expected a positive number, got -5"),
    ("player", ..., "player: missing required field"),
    ("map.width", 0, "map.width: must be at least 2, got 0"),
    ("map.height", "ten", "map.height: expected a whole number, got 'ten'"),
    ("player.pos", [25, 2], "player.pos: tile (25, 2) is outside the 20x10 map"),
    ("player.pos", [6, 4], "player.pos: tile (6, 4) is a wall"),
    ("companions.0.pos", [1], "companions[0].pos: expected a tile [x, y]"),
    ("companions.0.ammo", {"rounds": 40, "capacity": 30}, "companions[0].ammo.rounds: 40 rounds"),
    ("enemies.2.accuracy", 1.5, "enemies[2].accuracy: must be at most 1"),
    ("enemies.0.side", "blue", "enemies[0].side: an enemy cannot be on the player's side"),
    ("enemies.0.nmae", "typo", "enemies[0].nmae: unknown field"),
    ("enemies", {"Rival": 1}, "enemies: expected a list"),
    ("map.pois", {"breach_door": [6, 3]}, "map.pois.breach_door: tile (6, 3) is a wall"),
    ("map.extraction_poi", "vault", "map.extraction_poi: names POI 'vault'"),
    ("map.walls.0", {"from": [6, 1]}, "map.walls[0].to: missing required field"),
    ("map.cover.0", [6, 2], "map.cover: tile (6, 2) is also a wall"),
    ("rules.move_speed", "fast", "rules.move_speed: expected a positive number, got 'fast'"),
    ("rules.warp_drive", 1, "rules.warp_drive: unknown field"),
    ("rules.burst_shots", 2.5, "rules.burst_shots: expected a whole number, got 2.5"),
    ("round.bleed_out_s", 0, "round.bleed_out_s: expected a positive number, got 0"),
    ("autopilot.orders.0.order", "dance", "autopilot.orders[0].order: unknown order 'dance'"),
    ("autopilot.orders.1.when", "noon", "autopilot.orders[1].when: unknown trigger 'noon'"),
    ("extra", True, "extra: unknown field"),
]


@pytest.mark.parametrize(("change", "value", "message"), MALFORMED,
                         ids=[m[0] + "=" + repr(m[1])[:12] for m in MALFORMED])
def test_each_malformed_field_is_named_with_the_file(
    tmp_path: Path, change: str, value: Any, message: str
) -> None:
    path = _write(tmp_path, _with(change, value))
    with pytest.raises(ScenarioError) as err:
        load_scenario(path)
    text = str(err.value)
    assert text.startswith(f"{path}: ")
    assert message in text
    assert "\n" not in text


def test_a_player_walled_in_away_from_the_exit_is_rejected(tmp_path: Path) -> None:
    data = _with("map.walls", [{"from": [6, 0], "to": [6, 9]}])
    with pytest.raises(ScenarioError, match=r"map\.walls: the player at \(2, 2\) cannot walk"):
        load_scenario(_write(tmp_path, data))


def test_a_file_that_is_not_json_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_text('{"map": {"width": 20,\n  "height": }\n}', encoding="utf-8")
    with pytest.raises(ScenarioError) as err:
        load_scenario(path)
    assert str(err.value).startswith(f"{path}: not valid JSON")
    assert "line 2" in str(err.value)


def test_a_missing_file_or_a_directory_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ScenarioError, match=r"nope\.json: file not found"):
        load_scenario(tmp_path / "nope.json")
    with pytest.raises(ScenarioError, match="is a directory"):
        load_scenario(tmp_path)


def test_a_top_level_array_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(ScenarioError, match=r"\(top level\): expected an object"):
        load_scenario(_write(tmp_path, [1, 2, 3]))


def test_rule_overrides_reach_the_scenario() -> None:
    sc = parse_scenario(_with("rules", {"move_speed": 2.5, "burst_shots": 5}), "x.json")
    assert sc.rules.move_speed == 2.5 and sc.rules.burst_shots == 5


_json = st.recursive(
    st.none() | st.booleans() | st.integers(-50, 50) | st.floats(allow_nan=True)
    | st.text(max_size=6),
    lambda children: st.lists(children, max_size=3)
    | st.dictionaries(st.text(max_size=6), children, max_size=3),
    max_leaves=8,
)


def _leaf_paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    if isinstance(node, dict):
        return [p for k, v in node.items() for p in _leaf_paths(v, (*prefix, k))] or [prefix]
    if isinstance(node, list):
        return [p for i, v in enumerate(node) for p in _leaf_paths(v, (*prefix, i))] or [prefix]
    return [prefix]


_PATHS = _leaf_paths(BASE)


@settings(max_examples=150, deadline=None)
@given(where=st.sampled_from(_PATHS), value=_json)
def test_any_mutated_file_loads_or_fails_with_a_scenario_error(
    where: tuple[Any, ...], value: Any
) -> None:
    data = copy.deepcopy(BASE)
    node: Any = data
    for key in where[:-1]:
        node = node[key]
    node[where[-1]] = value
    try:
        sc = parse_scenario(data, "mutated.json")
    except ScenarioError as err:
        assert str(err).startswith("mutated.json: ")
    else:
        assert isinstance(sc, Scenario)


@settings(max_examples=60, deadline=None)
@given(value=_json)
def test_any_json_document_loads_or_fails_with_a_scenario_error(value: Any) -> None:
    with pytest.raises(ScenarioError):
        parse_scenario(value, "random.json")


@pytest.mark.parametrize("n", [1, 8, 50])
def test_stress_scenarios_are_playable_and_reproducible(n: int) -> None:
    sc = build_stress_scenario(n, seed=7)
    assert len(sc.companions) == n and len(sc.enemies) == n
    units = [sc.player, *sc.companions, *sc.enemies]
    tiles = [u.pos for u in units]
    assert len(set(tiles)) == len(tiles)
    assert not any(t in sc.walls for t in tiles)
    parsed_again = build_stress_scenario(n, seed=7)
    assert parsed_again == sc
    assert build_stress_scenario(n, seed=8).walls != sc.walls or n == 1
    from esper_arbiter.game.scenario import _connected

    assert all(_connected(sc, t, sc.extraction_tile) for t in tiles)


def test_the_ambush_ships_and_loads_by_name() -> None:
    from esper_arbiter.game.scenario import resolve_scenario, shipped_scenarios

    assert {"hello_companion", "ambush"} <= set(shipped_scenarios())
    sc = load_scenario("ambush")
    assert resolve_scenario("ambush").name == "ambush.json"
    assert sc.name == "ambush" and sc.enemies
    # the gunner covers the last lane, in cover, where the walk to the door must pass
    gunner = sc.enemies[0]
    assert gunner.pos in sc.cover
    assert abs(gunner.x - sc.extraction_tile[0]) <= 8


def test_an_unknown_name_and_a_path_are_told_apart(tmp_path: Path) -> None:
    with pytest.raises(ScenarioError, match="no such scenario"):
        load_scenario("nowhere")
    with pytest.raises(ScenarioError, match="file not found"):
        load_scenario(tmp_path / "nowhere.json")
