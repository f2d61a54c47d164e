"""The host's domain: everything game-specific the engine needs, in one object.

The engine (arbiter, GOAP planner, behaviour-tree kernel, perception, validator, prompt and
schema generation, LLM service) knows no game. A :class:`Domain` tells it what this game is:

* ``tools``: the action vocabulary (names, typed arguments, legality checks), from which the
  prompt's tool list, the model's JSON schema and the validator are generated;
* ``rules``: the numbers the checks use (fire range, walking speed, cooldowns...);
* ``brain``: GOAP actions, goals and grounders over the domain's facts;
* ``fallback``: the behaviour tree that runs when GOAP has no plan or the model keeps failing;
* ``role``: the first lines of the model's system prompt (who the agent is, what matters);
* ``orders``: the order words an agent understands, each with what it means (for the prompt),
  and ``order_facts``: the fact bit each sets in the brain's state;
* ``factions``: how sides regard each other (hostile, neutral, allied);
* ``sensing``: how far agents perceive and how many units a snapshot lists;
* ``advise``: optional; the steps that make sense in a snapshot, each with a reason, which the
  model's prompt offers as options and builds its example reply from (so a small model has
  nothing fixed to copy, and what it copies fits the situation).

``install(domain=...)`` hands the one object to every consumer: perception (factions), the
arbiter (brain, tree, per-step validation), and every :class:`PlanRequest` it submits, so the
LLM service prompts, narrows its schema, validates, batches, scripts and records with exactly
the tools and rules the arbiter will check the plan against. The library ships a squad-tactics
preset, :func:`systems.presets.squad.squad_domain`, used when no domain is given.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from esper_arbiter.components.factions import DEFAULT_FACTIONS, Factions
from esper_arbiter.components.llm import PlanRequest
from esper_arbiter.components.sensing import DEFAULT_SENSING, Sensing
from esper_arbiter.components.world import order_key
from esper_arbiter.systems.planning.behavior_tree import Node
from esper_arbiter.systems.planning.goap import GoapBrain
from esper_arbiter.systems.planning.rules import Rules
from esper_arbiter.systems.planning.tools import ToolRegistry

if TYPE_CHECKING:
    from esper_arbiter.components.actions import ActionStep
    from esper_arbiter.components.snapshot import WorldSnapshot
    from esper_arbiter.systems.planning.validation import PlanValidation

Advisor = Callable[["WorldSnapshot"], Sequence[tuple["ActionStep", str]]]
"""A domain's advice: ``advise(snapshot)`` -> the legal steps worth considering now, most
urgent first, each with a short reason (``(ThrowSmoke(9, 6), "blocks #5's line of fire")``)."""

_NO_ORDERS: Mapping[str, str] = MappingProxyType({})
_NO_ORDER_FACTS: Mapping[str, int] = MappingProxyType({})


@dataclass(frozen=True, slots=True, eq=False)
class Domain:
    """One game's vocabulary, brains and rules (see the module docstring).

    Build one with :func:`systems.presets.squad.squad_domain` (optionally extended with your
    own tools, GOAP actions and goals), or from scratch. Immutable: derive variants with
    :meth:`replace`.
    """

    name: str
    tools: ToolRegistry
    rules: Rules
    brain: GoapBrain[Any]
    fallback: Node
    role: str
    orders: Mapping[str, str] = field(default_factory=lambda: _NO_ORDERS)
    factions: Factions = DEFAULT_FACTIONS
    sensing: Sensing = DEFAULT_SENSING
    """How far and how many units a snapshot lists (keeps cost and prompt size bounded)."""
    order_facts: Mapping[str, int] = field(default_factory=lambda: _NO_ORDER_FACTS)
    """The fact bit each order word sets in the brain's state: handed to a ``GoapBrain``
    that has no ``order_facts`` of its own, which then sets the bit whenever the snapshot's
    standing order is that word (the host's reader need not). Also read by code that reasons
    about orders without a brain, such as the scripted backend."""
    advise: Advisor | None = None
    """Options for the prompt (see the module docstring); ``None``: the prompt lists none and
    its example is made from the tools' own example arguments."""

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError("a Domain needs a name")
        if len(self.tools) == 0:
            raise ValueError(f"domain {self.name!r} has no tools")
        object.__setattr__(self, "orders", MappingProxyType(
            {order_key(k): v for k, v in self.orders.items()}
        ))
        object.__setattr__(self, "order_facts", MappingProxyType(
            {order_key(k): v for k, v in self.order_facts.items()}
        ))
        if self.order_facts and isinstance(self.brain, GoapBrain) and not self.brain.order_facts:
            # the engine, not each host's reader, turns a standing order into its fact
            self.brain.order_facts = dict(self.order_facts)

    def order_fact(self, order: str | None) -> int | None:
        """The fact bit an order word sets, or ``None`` for an unknown word."""
        return self.order_facts.get(order_key(order)) if order else None

    def replace(self, **changes: Any) -> Domain:
        """A copy with some fields changed (``domain.replace(factions=...)``)."""
        return dataclasses.replace(self, **changes)

    def validate(self, plan: object, snapshot: WorldSnapshot, max_steps: int = 8) -> PlanValidation:
        """Check a plan (parsed JSON: ``{"steps": [...]}`` or a list of step objects) against
        ``snapshot`` with this domain's tools and rules, step by step, the way the LLM service
        does: a third-party :class:`PlanService` calls this before answering with a plan."""
        from esper_arbiter.systems.planning.validation import validate_plan

        return validate_plan(plan, snapshot, self.tools, self.rules, max_steps)

    def order_meaning(self, order: str | None) -> str | None:
        """What an order word means in this domain, or ``None`` for an unknown word."""
        if not order:
            return None
        return self.orders.get(order_key(order))


def default_domain() -> Domain:
    """The squad-tactics preset with default rules (built once, shared)."""
    global _DEFAULT
    if _DEFAULT is None:
        from esper_arbiter.systems.presets.squad import squad_domain

        _DEFAULT = squad_domain()
    return _DEFAULT


_DEFAULT: Domain | None = None


def domain_of(request: PlanRequest) -> Domain:
    """The domain a request was made for (the preset when it names none)."""
    d = request.domain
    if isinstance(d, Domain):
        return d
    if d is None:
        return default_domain()
    raise TypeError(f"PlanRequest.domain must be a Domain or None, got {type(d).__name__}")


__all__ = ["Advisor", "Domain", "default_domain", "domain_of"]
