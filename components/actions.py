"""The action vocabulary: what an agent can be asked to do, as plain data.

Every step is a small frozen dataclass deriving from :class:`Step`, whose ``act`` class
attribute names the tool. Each serialises to a JSON object with an ``act`` field
(``{"act": "MoveTo", "x": 3, "y": 2}``) and comes back with :func:`step_from_dict`. The set is
open: a host defines its own step the same way (``class Hack(Step): act = "Hack"; terminal:
int``), and it is registered by name when the class is created. The twelve steps below are the
squad-tactics preset's vocabulary. The *rules* for each tool (bounds, legal targets,
cooldowns) live in the domain's tool registry (``systems.planning.tools``); this module is only
the shapes.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, TypeAlias

ACTION_TYPES: dict[str, type[Step]] = {}
"""Every step class by its ``act`` name (filled as step classes are defined)."""


@dataclass(frozen=True, slots=True)
class Step:
    """Base of every action step. Subclasses are frozen dataclasses that set ``act``."""

    act: ClassVar[str] = ""

    def __init_subclass__(cls) -> None:
        # No super() call: dataclass(slots=True) rebuilds the class, which breaks the implicit
        # __class__ cell, and object.__init_subclass__ does nothing. The rebuilt class is
        # registered again under the same qualified name, replacing the first one.
        name = cls.__dict__.get("act")
        if not isinstance(name, str) or not name.isidentifier():
            raise TypeError(f"{cls.__qualname__}: a Step needs act = '<ToolName>' (an identifier)")
        # The latest class defined under a name decodes it in step_from_dict; a domain's own
        # tools (ToolRegistry.build_step) always build their own class, so two plugins may
        # each define a step of the same name.
        ACTION_TYPES[name] = cls


ActionStep: TypeAlias = Step
"""Any step (the preset's or a host's)."""


@dataclass(frozen=True, slots=True)
class MoveTo(Step):
    """Walk to tile (x, y) along a path that respects walls."""

    act: ClassVar[str] = "MoveTo"
    x: int
    y: int


@dataclass(frozen=True, slots=True)
class Approach(Step):
    """Close in on entity ``target_id`` until it is within firing range and in sight."""

    act: ClassVar[str] = "Approach"
    target_id: int


@dataclass(frozen=True, slots=True)
class Retreat(Step):
    """Fall back to tile (x, y), away from danger (moves like MoveTo, but is never interrupted
    to return fire)."""

    act: ClassVar[str] = "Retreat"
    x: int
    y: int


@dataclass(frozen=True, slots=True)
class TakeCover(Step):
    """Move to the cover tile (x, y) and crouch there: incoming damage is halved."""

    act: ClassVar[str] = "TakeCover"
    x: int
    y: int


@dataclass(frozen=True, slots=True)
class Attack(Step):
    """Fire a burst at hostile ``target_id`` (needs line of sight and ammo)."""

    act: ClassVar[str] = "Attack"
    target_id: int


@dataclass(frozen=True, slots=True)
class CoverFire(Step):
    """Suppress hostile ``target_id`` for ``seconds``: slower, less accurate shots that pin it."""

    act: ClassVar[str] = "CoverFire"
    target_id: int
    seconds: float


@dataclass(frozen=True, slots=True)
class ThrowSmoke(Step):
    """Throw a smoke grenade at tile (x, y); the cloud blocks line of sight for a while."""

    act: ClassVar[str] = "ThrowSmoke"
    x: int
    y: int


@dataclass(frozen=True, slots=True)
class Reload(Step):
    """Refill the magazine (takes a moment)."""

    act: ClassVar[str] = "Reload"


@dataclass(frozen=True, slots=True)
class Heal(Step):
    """Use a medkit on ``target_id`` (self or an adjacent ally)."""

    act: ClassVar[str] = "Heal"
    target_id: int


@dataclass(frozen=True, slots=True)
class Revive(Step):
    """Get downed ally ``target_id`` back on their feet (must be adjacent)."""

    act: ClassVar[str] = "Revive"
    target_id: int


@dataclass(frozen=True, slots=True)
class Scan(Step):
    """Stop and look around; refreshes what the agent knows about hostiles."""

    act: ClassVar[str] = "Scan"


@dataclass(frozen=True, slots=True)
class Wait(Step):
    """Hold position for ``seconds``."""

    act: ClassVar[str] = "Wait"
    seconds: float


SQUAD_STEPS: tuple[type[Step], ...] = (
    MoveTo, Approach, Retreat, TakeCover, Attack, CoverFire,
    ThrowSmoke, Reload, Heal, Revive, Scan, Wait,
)
"""The squad-tactics preset's twelve steps, in tool order."""


def step_to_dict(step: ActionStep) -> dict[str, Any]:
    """``Attack(target_id=3)`` -> ``{"act": "Attack", "target_id": 3}``."""
    out: dict[str, Any] = {"act": step.act}
    for f in dataclasses.fields(step):
        out[f.name] = getattr(step, f.name)
    return out


def step_from_dict(data: dict[str, Any]) -> ActionStep:
    """Inverse of :func:`step_to_dict` for *trusted* data (our own files and validated plans).

    Raises ``ValueError`` on an unknown ``act`` or wrong field set. Untrusted model output goes
    through ``esper_arbiter.systems.planning.validation`` instead, which reports problems as values.
    """
    act = data.get("act")
    cls: type[Step] | None = ACTION_TYPES.get(act) if isinstance(act, str) else None
    if cls is None:
        raise ValueError(f"unknown action {act!r}")
    names = {f.name for f in dataclasses.fields(cls)}
    given = set(data) - {"act"}
    if given != names:
        raise ValueError(f"{act}: expected fields {sorted(names)}, got {sorted(given)}")
    return cls(**{k: data[k] for k in names})


def describe_step(step: ActionStep) -> str:
    """Human-readable form for logs and the HUD: ``MoveTo(x=3, y=2)``."""
    args = ", ".join(
        f"{f.name}={_fmt(getattr(step, f.name))}" for f in dataclasses.fields(step)
    )
    return f"{step.act}({args})"


def _fmt(value: object) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


PlanSource = Literal["llm", "fallback", "scripted", "replay"]


@dataclass(frozen=True, slots=True)
class PlanIntent:
    """A multi-step plan and where it came from.

    ``source`` keeps the numbers honest: only ``"llm"`` (and ``"replay"`` of an LLM reply)
    count as model successes; a heuristic ``"fallback"`` plan never does.
    """

    plan_id: str
    steps: tuple[ActionStep, ...]
    source: PlanSource = "llm"
    rationale: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "plan_id": self.plan_id,
            "source": self.source,
            "rationale": self.rationale,
            "steps": [step_to_dict(s) for s in self.steps],
        }

    @staticmethod
    def from_dict(data: dict[str, Any]) -> PlanIntent:
        return PlanIntent(
            plan_id=str(data["plan_id"]),
            steps=tuple(step_from_dict(s) for s in data["steps"]),
            source=data.get("source", "llm"),
            rationale=str(data.get("rationale", "")),
        )
