"""The single-agent prompt: generated from the registry, compact, and faithful to the snapshot."""

from __future__ import annotations

import json
import re
from dataclasses import replace

from hypothesis import given, settings
from hypothesis import strategies as st

from esper_arbiter.components.actions import ACTION_TYPES, step_to_dict
from esper_arbiter.components.snapshot import GridView
from esper_arbiter.systems.domain import default_domain
from esper_arbiter.systems.llm.prompt import (
    build_messages,
    example_steps,
    options,
    render_snapshot,
    system_prompt,
    wall_runs,
)
from esper_arbiter.systems.planning.tools import ToolRegistry
from esper_arbiter.systems.planning.validation import validate_plan
from esper_arbiter.systems.presets.squad.tools import SQUAD_REGISTRY as DEFAULT_REGISTRY
from tests.planning import domain_with
from tests.planning.snapshots import (
    COMPANION_ID,
    ENEMY_IDS,
    GRUNT_ID,
    PLAYER_ID,
    RIVAL_ID,
    hello_snapshot,
    unit,
    with_enemy,
)


def test_system_prompt_lists_every_registered_tool_and_the_reply_format() -> None:
    text = system_prompt()
    for spec in DEFAULT_REGISTRY:
        assert f"- {spec.signature()}: {spec.description}" in text
    assert '"steps"' in text and "1 to 8 steps" in text
    assert "1 to 3 steps" in system_prompt(max_steps=3)


def _example(user: str) -> dict[str, object]:
    return json.loads(user.split("for example ", 1)[1].splitlines()[0])  # type: ignore[no-any-return]


def test_the_example_is_built_from_the_live_situation_and_is_a_valid_plan() -> None:
    """Nothing fixed to copy: the system prompt has no example, the user message's example is
    made of this moment's options, and two situations give two different examples."""
    assert "xample" not in system_prompt()
    opening = hello_snapshot()
    later = with_enemy(hello_snapshot(t=20.0, orders="attack"), RIVAL_ID, hp=0)
    examples = [_example(build_messages(s)[1]["content"]) for s in (opening, later)]
    assert examples[0] != examples[1]
    for s, example in zip((opening, later), examples, strict=True):
        assert validate_plan(example, s).ok
        assert example["steps"] == [step_to_dict(st) for st, _ in options(s)][:3]


def test_the_options_come_with_reasons_and_are_legal_now() -> None:
    snap = hello_snapshot(orders="attack")
    user = build_messages(snap)[1]["content"]
    opts = options(snap)
    assert opts, "the opening has something worth doing"
    assert "options now:" in user
    for step, why in opts:
        assert why and why in user
        assert validate_plan([step_to_dict(step)], snap).ok


def test_objective_first_and_the_standing_order_opens_the_agents_own_part() -> None:
    user = build_messages(hello_snapshot(orders="hold"))[1]["content"]
    lines = user.splitlines()
    assert lines[0].startswith("objective: reach")
    own = lines.index(next(ln for ln in lines if ln.startswith("time ")))
    assert "standing order: hold" in lines[own] and lines[own + 1].startswith("me ")


def test_the_static_world_comes_first_so_consecutive_prompts_share_a_long_prefix() -> None:
    """Two requests on one map, at another time, from another tile and with other orders:
    their chats agree on everything up to the agent's own part (the map, cover, hostiles),
    which llama.cpp then reads once."""
    a = build_messages(hello_snapshot())
    b = build_messages(hello_snapshot(t=30.0, orders="attack",
                                      me=unit(COMPANION_ID, 4, 6, hp=50, team="blue",
                                              name="companion")))
    assert a[0] == b[0]
    ua, ub = a[1]["content"], b[1]["content"]
    common = next(i for i, (x, y) in enumerate(zip(ua, ub, strict=False)) if x != y)
    assert ua[:common].endswith("\ntime ")
    for prefix in ("objective: ", "map ", "cover: ", "enemies: "):
        assert any(ln.startswith(prefix) for ln in ua[:common].splitlines()), prefix


def test_a_domain_without_advice_falls_back_to_its_tools_examples() -> None:
    domain = default_domain().replace(advise=None)
    user = build_messages(hello_snapshot(), domain)[1]["content"]
    assert "options now" not in user
    assert [s["act"] for s in _example(user)["steps"]] == [  # type: ignore[union-attr]
        s["act"] for s in example_steps(DEFAULT_REGISTRY)]


def test_prompt_never_mentions_an_unregistered_tool() -> None:
    keep = {"MoveTo", "Attack", "Scan"}
    reg = ToolRegistry(s for s in DEFAULT_REGISTRY if s.name in keep)
    text = "\n".join(m["content"] for m in build_messages(hello_snapshot(), domain_with(reg)))
    for name in ACTION_TYPES:
        assert (re.search(rf"\b{name}\b", text) is not None) == (name in keep), name
    # The example falls back to tools that exist.
    assert {s["act"] for s in example_steps(reg)} <= keep


def test_snapshot_mentions_every_live_enemy_and_omits_the_dead() -> None:
    snap = with_enemy(hello_snapshot(), GRUNT_ID, hp=0)
    text = render_snapshot(snap)
    for eid in ENEMY_IDS:
        assert (f"#{eid} " in text) == (eid != GRUNT_ID)
    assert "#3 Rival (12,2) hp 60/60" in text and "#3 dist 10 " in text


def test_snapshot_has_objective_time_orders_me_player_places_walls_cover() -> None:
    snap = hello_snapshot(t=12.25, orders="hold", ammo=7, cooldowns={"smoke": 3.2, "heal": 0})
    text = render_snapshot(snap)
    assert "objective: reach breach_door at (15,8).\n" in text
    assert "time 12.2s. standing order: hold." in text
    assert f"me #{COMPANION_ID} companion (2,3) hp 80/80 ammo 7/30" in text
    assert "smoke 4s" in text and "heal ready" in text
    assert f"leader #{PLAYER_ID} player (2,2) hp 100/100 dist 1" in text
    assert "breach_door (15,8)" in text
    assert "map 20x10, walls: x=6 y=1..8" in text
    assert "cover: (5,2) (5,5) (7,3) (11,4) (13,7)" in text  # nearest first


def test_snapshot_shows_allies_cover_state_and_smoke() -> None:
    snap = hello_snapshot(
        allies=(unit(9, 3, 4, hp=0, max_hp=50, name="Bo"),),
        enemies=(unit(RIVAL_ID, 12, 2, hp=60, team="red", name="Rival", in_cover=True),),
        grid=GridView(20, 10, frozenset(), frozenset(), smoke=((9, 2, 1.5),)),
    )
    text = render_snapshot(snap)
    assert "allies: #9 Bo (3,4) hp 0/50 DOWN" in text
    assert "Rival (12,2) hp 60/60 in cover" in text
    assert "smoke: (9,2) r1.5" in text
    assert "walls: none" in text and "cover:" not in text  # nothing to say: no line


def test_a_world_without_objective_cover_leader_or_ammo_is_not_told_none() -> None:
    snap = replace(hello_snapshot(), objective=None, leader=None, ammo=0, ammo_capacity=0,
                   ammo_reserve=0, grid=GridView(20, 10, frozenset(), frozenset()))
    text = render_snapshot(snap)
    for absent in ("objective", "cover", "leader", "ammo"):
        assert absent not in text, text
    assert "enemies:" in text and "me #" in text
    full = render_snapshot(hello_snapshot())
    for present in ("objective: ", "cover: ", "leader #", " ammo "):
        assert present in full, full


def test_build_messages_is_system_then_user_with_the_situation() -> None:
    snap = hello_snapshot(orders="attack")
    msgs = build_messages(snap, max_steps=4)
    assert [m["role"] for m in msgs] == ["system", "user"]
    assert msgs[0]["content"] == system_prompt(max_steps=4)
    assert render_snapshot(snap, domain=default_domain()) in msgs[1]["content"]
    assert f"You are #{COMPANION_ID}" in msgs[1]["content"]


def test_system_prompt_does_not_depend_on_the_snapshot() -> None:
    """A static system prompt lets llama.cpp reuse its cached prefix between requests."""
    a = build_messages(hello_snapshot())[0]
    b = build_messages(with_enemy(hello_snapshot(t=30.0, orders="hold"), RIVAL_ID, hp=0))[0]
    assert a == b


def test_prompt_fits_a_small_model_context() -> None:
    """SmolLM2-135M has a 2k-token context; at ~3.5 characters a token the whole prompt
    must stay well under it, leaving room for a reply of 8 steps."""
    chars = sum(len(m["content"]) for m in build_messages(hello_snapshot(orders="follow")))
    assert chars < 3600


def test_big_maps_are_summarised_not_dumped() -> None:
    walls = frozenset((x, y) for x in range(0, 80, 2) for y in range(0, 40, 2))
    cover = frozenset((x, y) for x in range(1, 80, 2) for y in range(1, 40, 4))
    snap = hello_snapshot(grid=GridView(80, 40, walls, cover))
    text = render_snapshot(snap)
    assert "more" in text
    assert len(text) < 1500


def _parse_runs(runs: list[str]) -> set[tuple[int, int]]:
    out: set[tuple[int, int]] = set()
    for r in runs:
        if m := re.fullmatch(r"x=(\d+) y=(\d+)\.\.(\d+)", r):
            x, lo, hi = map(int, m.groups())
            out |= {(x, y) for y in range(lo, hi + 1)}
        elif m := re.fullmatch(r"y=(\d+) x=(\d+)\.\.(\d+)", r):
            y, lo, hi = map(int, m.groups())
            out |= {(x, y) for x in range(lo, hi + 1)}
        elif m := re.fullmatch(r"\((\d+),(\d+)\)", r):
            out.add((int(m[1]), int(m[2])))
        else:
            raise AssertionError(f"unreadable run {r!r}")
    return out


@settings(max_examples=200, deadline=None)
@given(st.sets(st.tuples(st.integers(0, 12), st.integers(0, 8)), max_size=40))
def test_wall_runs_describe_exactly_the_walls(walls: set[tuple[int, int]]) -> None:
    runs = wall_runs(walls)
    assert _parse_runs(runs) == walls
    assert len(runs) <= len(walls)


def test_wall_runs_pick_the_shorter_direction() -> None:
    assert wall_runs({(6, y) for y in range(1, 9)}) == ["x=6 y=1..8"]
    assert wall_runs({(x, 0) for x in range(3, 10)}) == ["y=0 x=3..9"]
    assert wall_runs({(4, 5)}) == ["(4,5)"]


def test_enemies_say_whether_they_are_in_sight() -> None:
    """Attack needs line of sight: the prompt tells the model which enemies it can shoot now."""
    from tests.planning.snapshots import RIVAL_ID, hello_snapshot, with_enemy

    behind_wall = render_snapshot(hello_snapshot())
    assert f"#{RIVAL_ID} Rival (12,2)" in behind_wall
    assert re.search(rf"#{RIVAL_ID} dist \d+ hidden", behind_wall)
    close = render_snapshot(with_enemy(hello_snapshot(), RIVAL_ID, x=4, y=3))
    assert f"#{RIVAL_ID} Rival (4,3)" in close
    assert re.search(rf"#{RIVAL_ID} dist \d+ in sight", close)
