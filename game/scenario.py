"""Scenario files: the map, the units and the rule overrides of one hello_companion round.

A scenario is data (``assets/*.json``), loaded and checked here into a frozen
:class:`Scenario`. Every problem in a file becomes a :class:`ScenarioError` whose message names
the file and the JSON path of the offending field (``assets/x.json: enemies[1].hp: expected a
positive number, got 'abc'``), so a typo is fixed in seconds instead of read out of a traceback.

:func:`build_stress_scenario` makes the larger, parametric maps of ``--agents N`` in code, with
the same types, so the rest of the game never cares where a scenario came from.
"""

from __future__ import annotations

import dataclasses
import json
import math
import random
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from esper_arbiter.systems.planning.rules import DEFAULT_RULES, Rules

Tile = tuple[int, int]

DEFAULT_SCENARIO = Path(__file__).resolve().parent.parent / "assets" / "hello_companion.json"
"""The standard round (``assets/hello_companion.json``)."""

ORDERS = ("follow", "hold", "attack", "extract")
"""Orders a player can give a companion."""


class ScenarioError(ValueError):
    """A scenario file is missing, unreadable or malformed.

    ``str(err)`` is one line: ``<file>: <json.path>: <what is wrong>``.
    """

    def __init__(self, source: str, path: str, message: str) -> None:
        self.source = source
        self.path = path
        self.message = message
        where = f"{source}: {path}: " if path else f"{source}: "
        super().__init__(where + message)


@dataclass(frozen=True, slots=True)
class UnitSpec:
    """One unit to spawn. ``accuracy``/``damage`` of ``None`` take the scenario's rules."""

    name: str
    x: int
    y: int
    hp: float
    side: str
    ammo: int = 30
    capacity: int = 30
    reserve: int = 0
    accuracy: float | None = None
    damage: float | None = None
    morale: float = 1.0
    leads: bool = False
    """A squad leader: carries ``Leader``, follows no one, and its squad follows it."""
    leader: str | None = None
    """The name of the squad leader this companion follows (``None``: the player)."""
    order: str | None = None
    """The standing order it starts with (``None``: none, which the squad preset reads as
    "follow")."""

    @property
    def pos(self) -> Tile:
        return (self.x, self.y)


@dataclass(frozen=True, slots=True)
class AutopilotOrder:
    """An order the autopilot gives: at a game time (``at``) or on a trigger (``when``).

    Triggers: ``enemy_seen`` (first hostile in the player's sight), ``near_exit`` (the player is
    within 6 tiles of the extraction point).
    """

    order: str
    at: float | None = None
    when: str | None = None


TRIGGERS = ("enemy_seen", "near_exit")

DEFAULT_AUTOPILOT_ORDERS = (
    AutopilotOrder("follow", at=1.0),
    AutopilotOrder("attack", when="enemy_seen"),
    AutopilotOrder("extract", when="near_exit"),
)


@dataclass(frozen=True, slots=True)
class Scenario:
    """A validated round: map, units, rules and round settings."""

    name: str
    width: int
    height: int
    walls: frozenset[Tile]
    cover: frozenset[Tile]
    pois: Mapping[str, Tile]
    objective: str
    extraction_poi: str
    player: UnitSpec
    companions: tuple[UnitSpec, ...]
    enemies: tuple[UnitSpec, ...]
    rules: Rules = DEFAULT_RULES
    bleed_out_s: float = 12.0
    """How long a downed unit can be revived before it dies."""
    revive_hp_fraction: float = 0.3
    """Share of max hp a revived unit gets back."""
    source: str = "<code>"
    """Where the scenario came from (a file path, or ``<code>``), for messages."""
    autopilot_orders: tuple[AutopilotOrder, ...] = ()
    """Orders the headless player autopilot gives its companions (see ``game.player``)."""

    @property
    def extraction_tile(self) -> Tile:
        return self.pois[self.extraction_poi]


# ----------------------------------------------------------------------------------------------
# Loading and validation
# ----------------------------------------------------------------------------------------------


def load_scenario(path: str | Path) -> Scenario:
    """Read and validate a scenario file. Raises :class:`ScenarioError` on any problem."""
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ScenarioError(source, "", "file not found") from None
    except IsADirectoryError:
        raise ScenarioError(source, "", "is a directory, not a scenario file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ScenarioError(source, "", f"cannot read file: {exc}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ScenarioError(
            source, "", f"not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from None
    return parse_scenario(data, source)


def parse_scenario(data: Any, source: str = "<data>") -> Scenario:
    """Validate already-decoded JSON ``data``; ``source`` names it in error messages."""
    return _Parser(source).scenario(data)


_TOP_KEYS = {"name", "map", "player", "companions", "enemies", "rules", "round", "autopilot"}
_MAP_KEYS = {"width", "height", "walls", "cover", "pois", "objective", "extraction_poi"}
_UNIT_KEYS = {"name", "pos", "hp", "side", "ammo", "accuracy", "damage", "morale"}
_AMMO_KEYS = {"rounds", "capacity", "reserve"}
_ROUND_KEYS = {"bleed_out_s", "revive_hp_fraction"}
_AUTOPILOT_KEYS = {"orders"}
_INT_RULES = {f.name for f in dataclasses.fields(Rules) if f.type in ("int", int)}
_RULE_NAMES = {f.name for f in dataclasses.fields(Rules)}
MAX_MAP_SIDE = 512


def _describe(value: Any) -> str:
    text = json.dumps(value) if not isinstance(value, str) else repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


class _Parser:
    """Walks decoded JSON, keeping the JSON path of each value for error messages."""

    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, path: str, message: str) -> ScenarioError:
        return ScenarioError(self.source, path, message)

    # -- primitive checks ---------------------------------------------------------------------

    def obj(
        self, value: Any, path: str, allowed: set[str], required: Iterable[str] = ()
    ) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self.fail(path or "(top level)", f"expected an object, got {_describe(value)}")
        for key in value:
            if key not in allowed:
                known = ", ".join(sorted(allowed))
                raise self.fail(_join(path, key), f"unknown field (known fields: {known})")
        for key in required:
            if key not in value:
                raise self.fail(_join(path, key), "missing required field")
        return value

    def number(
        self, value: Any, path: str, *, positive: bool = False, lo: float | None = None,
        hi: float | None = None,
    ) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(
            value
        ):
            kind = "a positive number" if positive else "a number"
            raise self.fail(path, f"expected {kind}, got {_describe(value)}")
        if positive and value <= 0:
            raise self.fail(path, f"expected a positive number, got {_describe(value)}")
        if lo is not None and value < lo:
            raise self.fail(path, f"must be at least {lo:g}, got {_describe(value)}")
        if hi is not None and value > hi:
            raise self.fail(path, f"must be at most {hi:g}, got {_describe(value)}")
        return float(value)

    def integer(self, value: Any, path: str, *, lo: int | None = None,
                hi: int | None = None) -> int:
        number: int
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self.fail(path, f"expected a whole number, got {_describe(value)}")
        if isinstance(value, float):
            if not value.is_integer():
                raise self.fail(path, f"expected a whole number, got {_describe(value)}")
            number = int(value)
        else:
            number = value
        if lo is not None and number < lo:
            raise self.fail(path, f"must be at least {lo}, got {number}")
        if hi is not None and number > hi:
            raise self.fail(path, f"must be at most {hi}, got {number}")
        return number

    def string(self, value: Any, path: str) -> str:
        if not isinstance(value, str) or not value.strip():
            raise self.fail(path, f"expected a non-empty string, got {_describe(value)}")
        return value

    def tile(self, value: Any, path: str, width: int, height: int) -> Tile:
        if (
            not isinstance(value, list)
            or len(value) != 2
            or any(isinstance(v, bool) or not isinstance(v, int) for v in value)
        ):
            raise self.fail(path, f"expected a tile [x, y] of two whole numbers, got "
                                  f"{_describe(value)}")
        x, y = value
        if not (0 <= x < width and 0 <= y < height):
            raise self.fail(path, f"tile ({x}, {y}) is outside the {width}x{height} map")
        return (x, y)

    def tiles(self, value: Any, path: str, width: int, height: int) -> set[Tile]:
        """A list of tiles ``[x, y]`` or rectangles ``{"from": [x, y], "to": [x, y]}``."""
        if not isinstance(value, list):
            raise self.fail(path, f"expected a list of tiles, got {_describe(value)}")
        out: set[Tile] = set()
        for i, item in enumerate(value):
            p = f"{path}[{i}]"
            if isinstance(item, dict):
                self.obj(item, p, {"from", "to"}, ("from", "to"))
                x0, y0 = self.tile(item["from"], p + ".from", width, height)
                x1, y1 = self.tile(item["to"], p + ".to", width, height)
                for x in range(min(x0, x1), max(x0, x1) + 1):
                    for y in range(min(y0, y1), max(y0, y1) + 1):
                        out.add((x, y))
            else:
                out.add(self.tile(item, p, width, height))
        return out

    # -- structure ----------------------------------------------------------------------------

    def scenario(self, data: Any) -> Scenario:
        top = self.obj(data, "", _TOP_KEYS, ("map", "player", "enemies"))
        name = self.string(top.get("name", Path(self.source).stem or "scenario"), "name")
        m = self.obj(top["map"], "map", _MAP_KEYS, ("width", "height"))
        width = self.integer(m["width"], "map.width", lo=2, hi=MAX_MAP_SIDE)
        height = self.integer(m["height"], "map.height", lo=2, hi=MAX_MAP_SIDE)
        walls = self.tiles(m.get("walls", []), "map.walls", width, height)
        cover = self.tiles(m.get("cover", []), "map.cover", width, height)
        both = sorted(walls & cover)
        if both:
            raise self.fail("map.cover", f"tile {both[0]} is also a wall (cover must be walkable)")
        pois_raw = m.get("pois", {})
        if not isinstance(pois_raw, dict):
            raise self.fail("map.pois", f"expected an object of name: [x, y], got "
                                        f"{_describe(pois_raw)}")
        pois: dict[str, Tile] = {}
        for key, val in pois_raw.items():
            t = self.tile(val, f"map.pois.{key}", width, height)
            if t in walls:
                raise self.fail(f"map.pois.{key}", f"tile {t} is a wall")
            pois[key] = t
        objective = self.string(m.get("objective", "extract"), "map.objective")
        extraction = self.string(m.get("extraction_poi", "breach_door"), "map.extraction_poi")
        if extraction not in pois:
            raise self.fail("map.extraction_poi",
                            f"names POI {extraction!r}, which is not in map.pois")

        def unit(value: Any, path: str, side: str, default_name: str) -> UnitSpec:
            u = self.obj(value, path, _UNIT_KEYS, ("pos", "hp"))
            pos = self.tile(u["pos"], path + ".pos", width, height)
            if pos in walls:
                raise self.fail(path + ".pos", f"tile {pos} is a wall")
            hp = self.number(u["hp"], path + ".hp", positive=True)
            rounds, capacity, reserve = self.ammo(u.get("ammo", 30), path + ".ammo")
            acc = u.get("accuracy")
            dmg = u.get("damage")
            return UnitSpec(
                name=self.string(u.get("name", default_name), path + ".name"),
                x=pos[0], y=pos[1], hp=hp,
                side=self.string(u.get("side", side), path + ".side"),
                ammo=rounds, capacity=capacity, reserve=reserve,
                accuracy=None if acc is None else self.number(
                    acc, path + ".accuracy", lo=0.0, hi=1.0),
                damage=None if dmg is None else self.number(
                    dmg, path + ".damage", positive=True),
                morale=self.number(u.get("morale", 1.0), path + ".morale", lo=0.0, hi=1.0),
            )

        player = unit(top["player"], "player", "blue", "player")
        companions_raw = top.get("companions", [])
        if not isinstance(companions_raw, list):
            raise self.fail("companions", f"expected a list, got {_describe(companions_raw)}")
        companions = tuple(
            unit(c, f"companions[{i}]", player.side, "companion")
            for i, c in enumerate(companions_raw)
        )
        for i, c in enumerate(companions):
            if c.side != player.side:
                raise self.fail(f"companions[{i}].side",
                                f"a companion must be on the player's side {player.side!r}")
        enemies_raw = top["enemies"]
        if not isinstance(enemies_raw, list):
            raise self.fail("enemies", f"expected a list, got {_describe(enemies_raw)}")
        enemies = tuple(
            unit(e, f"enemies[{i}]", "red", f"enemy{i + 1}") for i, e in enumerate(enemies_raw)
        )
        for i, e in enumerate(enemies):
            if e.side == player.side:
                raise self.fail(f"enemies[{i}].side",
                                f"an enemy cannot be on the player's side {player.side!r}")

        rules = self.rules(top.get("rules", {}))
        rnd = self.obj(top.get("round", {}), "round", _ROUND_KEYS)
        bleed = self.number(rnd.get("bleed_out_s", 12.0), "round.bleed_out_s", positive=True)
        frac = self.number(rnd.get("revive_hp_fraction", 0.3), "round.revive_hp_fraction",
                           positive=True, hi=1.0)
        auto = self.obj(top.get("autopilot", {}), "autopilot", _AUTOPILOT_KEYS)
        orders = (
            self.autopilot_orders(auto["orders"]) if "orders" in auto
            else DEFAULT_AUTOPILOT_ORDERS
        )

        scenario = Scenario(
            name=name, width=width, height=height, walls=frozenset(walls),
            cover=frozenset(cover), pois=pois, objective=objective, extraction_poi=extraction,
            player=player, companions=companions, enemies=enemies, rules=rules,
            bleed_out_s=bleed, revive_hp_fraction=frac, source=self.source,
            autopilot_orders=orders,
        )
        if not _connected(scenario, player.pos, scenario.extraction_tile):
            raise self.fail("map.walls",
                            f"the player at {player.pos} cannot walk to {extraction} at "
                            f"{scenario.extraction_tile}")
        return scenario

    def ammo(self, value: Any, path: str) -> tuple[int, int, int]:
        if isinstance(value, dict):
            a = self.obj(value, path, _AMMO_KEYS, ("rounds",))
            rounds = self.integer(a["rounds"], path + ".rounds", lo=0)
            capacity = self.integer(a.get("capacity", max(rounds, 1)), path + ".capacity", lo=1)
            reserve = self.integer(a.get("reserve", 0), path + ".reserve", lo=0)
            if rounds > capacity:
                raise self.fail(path + ".rounds",
                                f"{rounds} rounds do not fit a magazine of {capacity}")
            return rounds, capacity, reserve
        rounds = self.integer(value, path, lo=0)
        return rounds, max(rounds, 1), 0

    def rules(self, value: Any) -> Rules:
        r = self.obj(value, "rules", _RULE_NAMES)
        overrides: dict[str, Any] = {}
        for key, val in r.items():
            p = f"rules.{key}"
            if key in _INT_RULES:
                overrides[key] = self.integer(val, p, lo=1)
            elif key in ("hit_chance", "cover_damage_factor", "low_hp_fraction"):
                overrides[key] = self.number(val, p, lo=0.0, hi=1.0)
            else:
                overrides[key] = self.number(val, p, positive=True)
        return dataclasses.replace(DEFAULT_RULES, **overrides) if overrides else DEFAULT_RULES

    def autopilot_orders(self, value: Any) -> tuple[AutopilotOrder, ...]:
        if not isinstance(value, list):
            raise self.fail("autopilot.orders", f"expected a list, got {_describe(value)}")
        out: list[AutopilotOrder] = []
        for i, item in enumerate(value):
            p = f"autopilot.orders[{i}]"
            o = self.obj(item, p, {"order", "at", "when"}, ("order",))
            order = self.string(o["order"], p + ".order")
            if order not in ORDERS:
                raise self.fail(p + ".order", f"unknown order {order!r} (known: "
                                              f"{', '.join(ORDERS)})")
            if ("at" in o) == ("when" in o):
                raise self.fail(p, "give exactly one of 'at' (seconds) or 'when' (trigger)")
            if "at" in o:
                out.append(AutopilotOrder(order, at=self.number(o["at"], p + ".at", lo=0.0)))
            else:
                when = o["when"]
                if when not in TRIGGERS:
                    raise self.fail(p + ".when", f"unknown trigger {_describe(when)} (known: "
                                                 f"{', '.join(TRIGGERS)})")
                out.append(AutopilotOrder(order, when=when))
        return tuple(out)


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _connected(s: Scenario, a: Tile, b: Tile) -> bool:
    """4-connected flood fill (the pathfinder's reachability is 4-connected too)."""
    return b in _reachable(s.width, s.height, s.walls, a)


def _reachable(width: int, height: int, walls: frozenset[Tile] | set[Tile],
               start: Tile) -> set[Tile]:
    """Every tile 4-connected to ``start`` (one flood fill, shared by all the spawns)."""
    seen = {start}
    todo = deque([start])
    while todo:
        x, y = todo.popleft()
        for nx, ny in ((x + 1, y), (x - 1, y), (x, y + 1), (x, y - 1)):
            t = (nx, ny)
            if 0 <= nx < width and 0 <= ny < height and t not in walls and t not in seen:
                seen.add(t)
                todo.append(t)
    return seen


# ----------------------------------------------------------------------------------------------
# Parametric stress scenario
# ----------------------------------------------------------------------------------------------


def build_stress_scenario(n: int, seed: int = 0, rules: Rules = DEFAULT_RULES,
                          *, contact: bool = False) -> Scenario:
    """A larger map with ``n`` companions and ``n`` enemies (for ``--agents N``).

    Blue spawns on the left, red on the right (with ``contact``, right next to blue, so the
    fight starts within seconds: what the scale benchmark measures), the breach door on the
    right edge. Vertical wall
    segments with gaps and scattered cover sit in between; every spawn can reach the door.
    The same ``(n, seed)`` always gives the same scenario.
    """
    if n < 1:
        raise ValueError("n must be at least 1")
    rng = random.Random(seed)
    side = math.ceil(math.sqrt(n))
    width = min(MAX_MAP_SIDE, max(24, 16 + 4 * side))
    height = min(MAX_MAP_SIDE, max(12, 8 + 2 * side))
    walls: set[Tile] = set()
    cover: set[Tile] = set()
    for wx in range(width // 4, width - width // 6, max(4, width // 6)):
        gaps = {rng.randrange(height) for _ in range(max(2, height // 6))}
        for y in range(height):
            if all(abs(y - g) > 1 for g in gaps):
                walls.add((wx, y))
    free = [(x, y) for x in range(width) for y in range(height) if (x, y) not in walls]
    for _ in range(max(5, (width * height) // 40)):
        cover.add(free[rng.randrange(len(free))])
    door = (width - 2, height - 2)
    walls.discard(door)
    cover.discard(door)
    zone = max(3, width // 5)
    blue = [t for t in free if t[0] < zone]
    red = ([t for t in free if zone <= t[0] < 2 * zone] if contact
           else [t for t in free if t[0] >= width - zone and t != door])
    rng.shuffle(blue)
    rng.shuffle(red)
    if len(blue) < n + 1 or len(red) < n:
        raise ValueError(f"map too small for {n} agents")
    player_tile = min(blue[: n + 1])
    blue_rest = [t for t in blue[: n + 1] if t != player_tile]
    player = UnitSpec("player", player_tile[0], player_tile[1], 100.0, "blue", 30, 30, 60)
    companions = tuple(
        UnitSpec(f"companion{i + 1}", x, y, 80.0, "blue", 30, 30, 30)
        for i, (x, y) in enumerate(blue_rest)
    )
    enemies = tuple(
        UnitSpec(f"enemy{i + 1}", x, y, 40.0, "red", 30, 30, 30, accuracy=0.3, damage=6.0)
        for i, (x, y) in enumerate(red[:n])
    )
    scenario = Scenario(
        name=f"stress-{n}", width=width, height=height, walls=frozenset(walls),
        cover=frozenset(cover - walls), pois={"breach_door": door}, objective="extract",
        extraction_poi="breach_door", player=player, companions=companions, enemies=enemies,
        rules=rules, source=f"<stress n={n} seed={seed}>",
    )
    # One flood fill from the door; a spawn it misses gets a corridor along its row and the door
    # row (rare), then the fill runs again.
    reach = _reachable(width, height, walls, door)
    for u in (player, *companions, *enemies):
        if u.pos not in reach:
            walls -= {(x, door[1]) for x in range(width)}
            walls -= {(x, u.y) for x in range(width)}
            reach = _reachable(width, height, walls, door)
    if walls != scenario.walls:
        scenario = dataclasses.replace(scenario, walls=frozenset(walls),
                                       cover=frozenset(cover - walls))
    return scenario
