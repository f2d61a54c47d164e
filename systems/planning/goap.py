"""GOAP: a regressive A* planner over symbolic facts, and the brain that grounds its plans.

Two layers, both game-agnostic:

* :class:`GoapPlanner` is a regressive (backward) A* from a goal's facts to a world state;
  states are ``int`` bitmasks of fact flags (each fact is one bit; the domain names them).
  Actions (:class:`GoapAction`) have preconditions, effects and a cost; goals
  (:class:`GoapGoal`) name the facts they want and a priority. Plans are cached by
  ``(state, goal)``: a frame whose symbolic state did not change costs one dict lookup.
* :class:`GoapBrain` ties a planner to a domain: it *reads* a :class:`WorldSnapshot` into a
  percept (whatever object the domain's grounders want) and a fact state, picks the
  highest-priority goal that is unsatisfied and plannable, plans, and *grounds* the plan's
  first action into a concrete :data:`ActionStep` (:class:`GoapDecision`), or returns ``None``
  when nothing can be planned (the arbiter then runs the behaviour tree).

The squad-tactics preset (``systems.presets.squad``) supplies facts, actions, goals and
grounders; a host adds its own the same way.
"""

from __future__ import annotations

import heapq
import logging
import math
from collections.abc import Callable, Container, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from esper_arbiter.components.actions import ActionStep
from esper_arbiter.components.snapshot import WorldSnapshot
from esper_arbiter.components.world import order_key

log = logging.getLogger(__name__)

RANK_CACHE_SIZE = 4096
"""Goal rankings a brain keeps (one per fact state seen), when all its goals are static."""

P = TypeVar("P")


def describe_facts(state: int, names: Mapping[int, str]) -> list[str]:
    """Names of the true facts in ``state`` (bits without a name as ``bit<N>``)."""
    out: list[str] = []
    bit = 0
    while state >> bit:
        if (state >> bit) & 1:
            out.append(names.get(1 << bit, f"bit{bit}"))
        bit += 1
    return out


def _masks(facts: Mapping[int, bool], what: str, owner: str) -> tuple[int, int]:
    mask = bits = 0
    for fact, value in facts.items():
        if not isinstance(fact, int) or isinstance(fact, bool) or fact <= 0 or fact & (fact - 1):
            raise ValueError(f"{owner}: {what} {fact!r} is not a single Fact bit")
        mask |= fact
        if value:
            bits |= fact
    return mask, bits


@dataclass(frozen=True, slots=True, eq=False)
class GoapAction:
    """A symbolic action: usable when ``preconditions`` hold, then ``effects`` hold.

    Masks are computed once so applying an action is two integer operations.
    """

    name: str
    preconditions: Mapping[int, bool]
    effects: Mapping[int, bool]
    cost: float = 1.0
    pre_mask: int = field(init=False, repr=False)
    pre_bits: int = field(init=False, repr=False)
    eff_mask: int = field(init=False, repr=False)
    eff_bits: int = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if not self.cost > 0:
            raise ValueError(f"action {self.name!r}: cost must be > 0, got {self.cost}")
        pm, pb = _masks(self.preconditions, "precondition", self.name)
        em, eb = _masks(self.effects, "effect", self.name)
        if not em:
            raise ValueError(f"action {self.name!r} has no effects")
        object.__setattr__(self, "pre_mask", pm)
        object.__setattr__(self, "pre_bits", pb)
        object.__setattr__(self, "eff_mask", em)
        object.__setattr__(self, "eff_bits", eb)

    def usable(self, state: int) -> bool:
        return (state & self.pre_mask) == self.pre_bits

    def apply(self, state: int) -> int:
        return (state & ~self.eff_mask) | self.eff_bits


PriorityFn = Callable[[int, WorldSnapshot], float]
"""Priority of a goal given the fact state and the snapshot; <= 0 means "not now"."""


@dataclass(frozen=True, slots=True, eq=False)
class GoapGoal:
    """A desired set of facts with a priority.

    The goal counts only when every fact in ``when`` is true and none in ``unless`` is; then its
    priority is ``priority`` (a number, or a function of state and snapshot; <= 0 means "not
    now"). Goals whose priority is a number rank by fact state alone, so a brain made only of
    them caches its goal ranking per state too.
    """

    name: str
    desired: Mapping[int, bool]
    priority: float | PriorityFn = 1.0
    when: int = 0
    unless: int = 0
    mask: int = field(init=False, repr=False)
    bits: int = field(init=False, repr=False)

    def __post_init__(self) -> None:
        m, b = _masks(self.desired, "desired fact", self.name)
        if not m:
            raise ValueError(f"goal {self.name!r} desires nothing")
        object.__setattr__(self, "mask", m)
        object.__setattr__(self, "bits", b)

    @property
    def static(self) -> bool:
        """True when the priority is a number (depends on the fact state only)."""
        return isinstance(self.priority, int | float)

    def satisfied(self, state: int) -> bool:
        return (state & self.mask) == self.bits

    def priority_for(self, state: int, snapshot: WorldSnapshot) -> float:
        if (state & self.when) != self.when or state & self.unless:
            return 0.0
        p = self.priority
        return float(p) if isinstance(p, int | float) else p(state, snapshot)


_MISSING = object()

RELAX_AFTER = 3
"""A search still going at this many expansions first runs the relaxed fixpoint (once per
start state a decision plans from) to prune the needs that can never be met."""

_Link = tuple["GoapAction", "_Link | None"]
"""A plan as a linked list: its first action, then the rest (``None`` when done)."""


class GoapPlanner:
    """Regressive (backward) A* from a goal to a fact state, with a bounded plan cache.

    The search starts from the goal's facts and regresses them through the actions that bring
    one of them about and contradict none: each node is the set of facts that must hold
    *before* the rest of the plan, as two ints (mask, values), and a node the start state
    satisfies ends a plan. Goals want one to three facts, so a node has a handful of achievers,
    found in per-fact tables built once from the actions; a node that needs a fact no action
    can change from its start value is a dead end, so a goal nothing can bring about costs a
    few integer operations. A search still going after ``RELAX_AFTER`` expansions widens that
    test with the relaxed fixpoint of :meth:`reachable` (run once per start state, shared by
    the goals a decision tries in turn), so a goal with no plan rarely costs more than a few
    expansions. The search is uniform-cost (cheapest first, which is A* with the
    zero heuristic), so plans are cheapest; of equally cheap plans it finds, it keeps the one
    whose actions come first in action list order, first action first (the forward search it
    replaced broke ties much the same way). Bounded by ``max_depth`` (no plan is longer) and
    ``max_expansions``; hitting a bound means "no plan" (``None``), never an exception.
    """

    def __init__(
        self,
        actions: Sequence[GoapAction],
        *,
        max_depth: int = 6,
        max_expansions: int = 2048,
        cache_size: int = 65536,
    ) -> None:
        if not actions:
            raise ValueError("GoapPlanner needs at least one action")
        names = [a.name for a in actions]
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate action names: {names}")
        self.actions: tuple[GoapAction, ...] = tuple(actions)
        self.max_depth = max_depth
        self.max_expansions = max_expansions
        self.cache_size = cache_size
        self._cache: dict[tuple[int, int, int], tuple[GoapAction, ...] | None] = {}
        self.hits = 0
        self.misses = 0
        # Domain tables, built once. Each action as plain ints; for each fact bit, the actions
        # that make it true and those that make it false, as a bitmask of action indices (a
        # union of them is walked lowest bit first, which is action list order).
        acts: tuple[tuple[int, int, int, int, float, GoapAction], ...] = tuple(
            (a.pre_mask, a.pre_bits, a.eff_mask, a.eff_bits, a.cost, a) for a in self.actions)
        makes_true: dict[int, int] = {}
        makes_false: dict[int, int] = {}
        for i, a in enumerate(self.actions):
            m = a.eff_mask
            while m:
                low = m & -m
                m ^= low
                table = makes_true if a.eff_bits & low else makes_false
                table[low] = table.get(low, 0) | (1 << i)
        self._index = {a: i for i, a in enumerate(self.actions)}
        width = max([a.pre_mask | a.eff_mask for a in self.actions]).bit_length()
        # With the facts some action makes true and those some action makes false.
        self._tables = (acts, makes_true, makes_false, sum(makes_true), sum(makes_false), width)
        # Each action for the relaxed fixpoint: (needs true, needs false, sets true, sets false).
        self._relax_acts: tuple[tuple[int, int, int, int], ...] = tuple(
            (a.pre_bits, a.pre_mask & ~a.pre_bits, a.eff_bits, a.eff_mask & ~a.eff_bits)
            for a in self.actions)
        # The last start state's facts stuck at their start value even in the relaxed
        # problem (see _relaxed_stuck): shared by the goals a decision tries in turn.
        self._relaxed: tuple[int, int] | None = None

    def clear_cache(self) -> None:
        """Forget all cached plans and reset the hit/miss counters (for cold timings)."""
        self._cache.clear()
        self._relaxed = None
        self.hits = 0
        self.misses = 0

    @property
    def cache_len(self) -> int:
        return len(self._cache)

    def plan(self, state: int, goal: GoapGoal) -> tuple[GoapAction, ...] | None:
        """Cheapest action sequence taking ``state`` to one satisfying ``goal``.

        ``()`` when the goal already holds; ``None`` when no plan exists within the bounds.
        """
        key = (state, goal.mask, goal.bits)
        cache = self._cache
        hit = cache.get(key, _MISSING)
        if hit is not _MISSING:
            self.hits += 1
            return hit  # type: ignore[return-value]
        self.misses += 1
        result = self._search(state, goal.mask, goal.bits)
        if len(cache) >= self.cache_size:
            del cache[next(iter(cache))]
        cache[key] = result
        return result

    def reachable(self, start: int, mask: int, bits: int) -> bool:
        """Whether the goal survives a relaxed search (effects only ever add what can be
        true or false, never take it away): no goal fact is one that cannot leave its value
        in ``start`` (:meth:`_relaxed_stuck`). False proves there is no plan."""
        return not ((start ^ bits) & mask & self._relaxed_stuck(start))

    def _relaxed_stuck(self, start: int) -> int:
        """Facts that cannot leave their value in ``start`` even when effects only ever add
        what can be true or false (the relaxed fixpoint :meth:`reachable` runs): a node needing
        one at the other value has no plan. Remembered for the last start state only, and
        forgotten by :meth:`clear_cache`."""
        memo = self._relaxed
        if memo is not None and memo[0] == start:
            return memo[1]
        can_true, can_false = start, ~start
        pending = self._relax_acts
        while pending:
            rest = []
            for act in pending:
                if act[0] & ~can_true or act[1] & ~can_false:
                    rest.append(act)
                else:
                    can_true |= act[2]
                    can_false |= act[3]
            if len(rest) == len(pending):
                break  # nothing more fires
            pending = tuple(rest)
        stuck = (~can_true & ~start) | (~can_false & start)
        self._relaxed = (start, stuck)
        return stuck

    def _earlier(self, plan: _Link, other: _Link | None) -> bool:
        """Whether ``plan`` comes before ``other`` (an equally cheap plan) in action list
        order, compared first action first: the tie-break a forward search would make."""
        index = self._index
        a: _Link | None = plan
        b = other
        while a is not None and b is not None:
            if a[0] is not b[0]:
                return index[a[0]] < index[b[0]]
            a, b = a[1], b[1]
        return b is not None and a is None

    def _search(self, start: int, mask: int, bits: int) -> tuple[GoapAction, ...] | None:
        if (start & mask) == bits:
            return ()
        acts, makes_true, makes_false, can_true, can_false, width = self._tables
        # Facts that cannot move away from their start value: a node needing one of them at
        # the other value is a dead end.
        stuck = ~((can_true & ~start) | (can_false & start))
        max_depth = self.max_depth
        if (start ^ bits) & mask & stuck or max_depth <= 0:
            return None
        width = max(width, mask.bit_length())  # a node's key: mask << width | values
        limit = self.max_expansions
        best_g = math.inf
        best: _Link | None = None
        # Entries: (cost so far, tie-break, need mask, need values, depth, plan suffix).
        frontier: list[tuple[float, int, int, int, int, _Link | None]] = []
        # Node key -> the smallest depth it was expanded at. Nodes pop cheapest first, so a
        # node popped again is dearer and only worth expanding when it is shallower.
        closed: dict[int, int] = {}
        counter = expansions = 0
        pop, push = heapq.heappop, heapq.heappush
        g, nm, nb, d, suffix = 0.0, mask, bits, 0, None  # the goal: the first node
        while True:
            closed[nm << width | nb] = d
            expansions += 1
            if expansions == RELAX_AFTER:
                # Not a short search: prove dead ends harder, with the relaxed problem.
                stuck = self._relaxed_stuck(start)
                if (start ^ bits) & mask & stuck:
                    return None
                if (start ^ nb) & nm & stuck:
                    nm = 0  # this node is a dead end: expand nothing
            if expansions > limit:
                log.debug("GOAP search gave up after %d expansions", limit)
                return None
            # The actions that bring about a needed fact.
            rel = 0
            m = nm
            while m:
                low = m & -m
                m ^= low
                rel |= makes_true.get(low, 0) if nb & low else makes_false.get(low, 0)
            nd = d + 1
            last = nd >= max_depth
            while rel:
                low = rel & -rel
                rel ^= low
                pm, pb, em, eb, cost, act = acts[low.bit_length() - 1]
                if em & nm & (eb ^ nb):
                    continue  # it undoes a needed fact
                keep = nm & ~em  # needs the action leaves to the steps before it
                if pm & keep & (pb ^ nb):
                    continue  # its preconditions contradict them
                ng = g + cost
                if ng > best_g:
                    continue
                nm2 = keep | pm
                nb2 = (nb & keep) | pb
                diff = (start ^ nb2) & nm2
                if not diff:  # the start state satisfies it: a plan
                    found = (act, suffix)
                    if ng < best_g or self._earlier(found, best):
                        best_g, best = ng, found
                    continue
                if last or ng >= best_g or diff & stuck:
                    continue
                seen = closed.get(nm2 << width | nb2)
                if seen is not None and seen <= nd:
                    continue
                counter += 1
                push(frontier, (ng, counter, nm2, nb2, nd, (act, suffix)))
            # The next node to expand: the cheapest not already expanded as shallow.
            while frontier:
                g, _, nm, nb, d, suffix = pop(frontier)
                seen = closed.get(nm << width | nb)
                if (seen is None or seen > d) and not (start ^ nb) & nm & stuck:
                    break
            else:
                break
            if g >= best_g:
                break  # every plan still to be found costs more
        if best is None:
            return None
        plan: list[GoapAction] = []
        link: _Link | None = best
        while link is not None:
            act, link = link
            plan.append(act)
        return tuple(plan)


@dataclass(frozen=True, slots=True)
class GoapDecision:
    """What GOAP wants now: the goal it serves, the first action and its grounded step."""

    goal: str
    action: str
    step: ActionStep
    plan: tuple[str, ...]


Grounder = Callable[[P, str], ActionStep | None]
"""Turns a symbolic action into a concrete step: (percept, goal name) -> step or None."""

Reader = Callable[[WorldSnapshot], tuple[P, int]]
"""Reads a snapshot once: the percept grounders use, and the fact state."""


class GoapBrain(Generic[P]):
    """Snapshot in, :class:`GoapDecision` out: the GOAP half of the arbiter.

    ``read`` turns a snapshot into ``(percept, facts)``; every action needs a grounder of the
    same name, called with the percept. One brain (and its plan cache) can be shared by any
    number of agents. ``fact_names`` names the fact bits for the HUD and logs.
    """

    def __init__(
        self,
        actions: Sequence[GoapAction],
        goals: Sequence[GoapGoal],
        grounders: Mapping[str, Grounder[P]],
        read: Reader[P],
        *,
        fact_names: Mapping[int, str] | None = None,
        planner: GoapPlanner | None = None,
        order_facts: Mapping[str, int] | None = None,
    ) -> None:
        acts = tuple(actions)
        self.goals: tuple[GoapGoal, ...] = tuple(goals)
        self.grounders: dict[str, Grounder[P]] = dict(grounders)
        missing = [a.name for a in acts if a.name not in self.grounders]
        if missing:
            raise ValueError(f"no grounder for GOAP actions {missing}")
        self._reader = read
        self.fact_names: Mapping[int, str] = dict(fact_names or {})
        self.planner = planner if planner is not None else GoapPlanner(acts)
        self.order_facts: Mapping[str, int] = {
            order_key(k): v for k, v in (order_facts or {}).items()
        }
        """The fact bit each order word sets: when the snapshot's standing order is one of
        these words, its bit is set in the state ``read`` returns (a :class:`Domain` hands its
        own ``order_facts`` to a brain that has none)."""
        self.last_facts = 0
        """Fact state of the last snapshot :meth:`decide` saw (for the HUD and logs)."""
        self._memo: tuple[WorldSnapshot, P, int] | None = None
        self._rank_cache: dict[int, list[GoapGoal]] | None = (
            {} if all(g.static for g in self.goals) else None
        )

    def clear_caches(self) -> None:
        """Forget cached plans, goal rankings and the last snapshot (for cold timings)."""
        self.planner.clear_cache()
        if self._rank_cache is not None:
            self._rank_cache.clear()
        self._memo = None

    def facts(self, snapshot: WorldSnapshot) -> int:
        """The snapshot's symbolic state."""
        return self._percept(snapshot)[1]

    def describe(self, state: int) -> list[str]:
        """Names of the true facts in ``state``."""
        return describe_facts(state, self.fact_names)

    def _percept(self, snapshot: WorldSnapshot) -> tuple[P, int]:
        """Percept and facts of ``snapshot``, computed once per snapshot *object*.

        Snapshots are immutable, so when the arbiter asks twice about the same frame (GOAP,
        then the BT's "can GOAP plan again?") the second read is free. Only the last snapshot
        is remembered, held strongly so its identity cannot be reused.
        """
        memo = self._memo
        if memo is not None and memo[0] is snapshot:
            return memo[1], memo[2]
        p, state = self.read(snapshot)
        self._memo = (snapshot, p, state)
        return p, state

    def read(self, snapshot: WorldSnapshot) -> tuple[P, int]:
        """The host reader's percept and facts for ``snapshot``, with the standing order's
        fact (:attr:`order_facts`) set: what every planner of this brain reads."""
        p, state = self._reader(snapshot)
        if self.order_facts and snapshot.orders:
            state |= self.order_facts.get(order_key(snapshot.orders), 0)
        return p, state

    def _ranked(self, state: int, snapshot: WorldSnapshot) -> list[GoapGoal]:
        """Unsatisfied goals with a positive priority, most urgent first (ties: list order)."""
        cache = self._rank_cache
        if cache is not None:
            hit = cache.get(state)
            if hit is not None:
                return hit
        ranked: list[tuple[float, int, GoapGoal]] = []
        for i, goal in enumerate(self.goals):
            if (state & goal.mask) == goal.bits:
                continue
            prio = goal.priority_for(state, snapshot)
            if prio > 0:
                ranked.append((-prio, i, goal))
        ranked.sort(key=lambda r: (r[0], r[1]))
        out = [r[2] for r in ranked]
        if cache is not None:
            if len(cache) >= RANK_CACHE_SIZE:
                cache.clear()
            cache[state] = out
        return out

    def plan_for_state(
        self, state: int, snapshot: WorldSnapshot
    ) -> tuple[GoapGoal, tuple[GoapAction, ...]] | None:
        """The most urgent unsatisfied goal that has a plan from ``state``, and that plan
        (symbolic only: nothing is grounded). ``None`` when no goal has one."""
        for goal in self._ranked(state, snapshot):
            plan = self.planner.plan(state, goal)
            if plan:
                return goal, plan
        return None

    def plan_only(self, snapshot: WorldSnapshot) -> tuple[str, ...] | None:
        """Names of the symbolic plan for the snapshot's most urgent plannable goal, without
        grounding. Benchmarks time this: with the planner cache cleared it is a cold A* search;
        asked again about the same snapshot it is the facts memo, the goal ranking and a plan
        cache lookup."""
        found = self.plan_for_state(self._percept(snapshot)[1], snapshot)
        return None if found is None else tuple(a.name for a in found[1])

    def decide(
        self, snapshot: WorldSnapshot, avoid: Container[ActionStep] = ()
    ) -> GoapDecision | None:
        """Plan for the most urgent unsatisfied goal and ground its first action.

        Goals are tried by priority; a goal without a plan, or whose first action cannot be
        grounded on the current grid, or grounds to a step in ``avoid`` (steps the host just
        refused), yields to the next. ``None`` when the agent is down or no goal can be
        planned and grounded.
        """
        if snapshot.me.hp <= 0:
            return None
        p, state = self._percept(snapshot)
        self.last_facts = state
        for goal in self._ranked(state, snapshot):
            plan = self.planner.plan(state, goal)
            if not plan:
                continue
            first = plan[0]
            step = self.grounders[first.name](p, goal.name)
            if step is None:
                log.debug("GOAP %s: cannot ground %s", goal.name, first.name)
                continue
            if step in avoid:
                continue
            return GoapDecision(
                goal=goal.name, action=first.name, step=step,
                plan=tuple(a.name for a in plan),
            )
        return None
