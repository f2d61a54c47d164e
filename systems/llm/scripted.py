"""A deterministic scripted planning service: canned tactical plans on game time.

Used by ``--backend scripted``, by tests and by the seeded demo runs: it answers after
``delay_s`` seconds of *game* time (plus a seeded jitter), writes plans from a few fixed
templates filled in from the request snapshot, and can inject failures. It goes through the
same validator as a real model's reply, so an unusable canned plan is an INVALID_PLAN failure,
not a silent success. For a domain of the host's own (without the squad preset's tools) it
plans the domain's advice (``Domain.advise``) for the snapshot. It is never chosen
automatically: a user asks for it by name.
"""

from __future__ import annotations

import random
from dataclasses import replace
from typing import Any

from esper_arbiter.components.actions import PlanIntent, step_to_dict
from esper_arbiter.components.llm import (
    FailureKind,
    PlanFailure,
    PlanOutcome,
    PlanReady,
    PlanRequest,
    RequestTiming,
)
from esper_arbiter.components.snapshot import UnitView, WorldSnapshot
from esper_arbiter.systems.domain import Domain, default_domain, domain_of
from esper_arbiter.systems.llm.api import RequestRecord, ServiceStatus
from esper_arbiter.systems.llm.clocked import ClockedTicket
from esper_arbiter.systems.llm.prompt import options
from esper_arbiter.systems.planning.pathfinding import distance, line_of_sight, reachable
from esper_arbiter.systems.planning.rules import DEFAULT_RULES
from esper_arbiter.systems.planning.validation import validate_plan
from esper_arbiter.systems.presets.squad.facts import Fact

BACKEND = "scripted"
_KEEP_RECORDS = 32
_INJECTED = (FailureKind.TIMEOUT, FailureKind.PARSE, FailureKind.CONNECTION)


class ScriptedPlanService:
    """Implements :class:`systems.llm.api.PlanService` with canned plans and game-time delays.

    ``failure_every=N`` makes every N-th request fail (cycling timeout, parse, connection).
    """

    game_clock = True
    """Answers on game time (see :func:`esper_arbiter.systems.llm.api.paced_by_wall_clock`)."""
    available = True
    warming_up = False
    max_batch_size = 1
    """Each request is answered on its own."""

    def __init__(self, seed: int = 0, delay_s: float = 2.0, failure_every: int = 0) -> None:
        if delay_s < 0:
            raise ValueError("delay_s must be >= 0")
        if failure_every < 0:
            raise ValueError("failure_every must be >= 0")
        self._rng = random.Random(seed)
        self._delay = delay_s
        self._failure_every = failure_every
        self._next_id = 1
        self._records: dict[int, RequestRecord] = {}
        self._ok = 0
        self._failed = 0
        self._cancelled = 0
        self._now = 0.0  # latest game time a ticket was polled at

    @property
    def backend_name(self) -> str:
        return BACKEND

    def submit(self, request: PlanRequest) -> ClockedTicket:
        rid = self._next_id
        self._next_id += 1
        delay = self._delay * (0.75 + 0.5 * self._rng.random()) if self._delay else 0.0
        outcome = self._answer(rid, request)
        start = request.submitted_at
        self._records[rid] = RequestRecord(
            request_id=rid, agent_id=request.agent_id, priority=request.priority,
            queued_at=start, started_at=start, first_token_at=None, finished_at=None,
            outcome="running",
        )
        while len(self._records) > _KEEP_RECORDS:
            del self._records[next(iter(self._records))]

        def resolved(got: PlanOutcome, now: float | None) -> None:
            end = self._now if now is None else now
            self._now = max(self._now, end)
            if isinstance(got, PlanReady):
                self._ok += 1
                label = "plan"
            else:
                if got.kind is FailureKind.CANCELLED:
                    self._cancelled += 1
                else:
                    self._failed += 1
                label = got.kind.value
            old = self._records.get(rid)
            if old is not None:
                self._records[rid] = replace(old, finished_at=end, outcome=label)

        return ClockedTicket(rid, start + delay, outcome, resolved)

    def status(self) -> ServiceStatus:
        """Counts what the game has received; times are game seconds."""
        records = tuple(self._records.values())
        done = [r for r in records if r.finished_at is not None and r.outcome == "plan"]
        last = done[-1] if done else None
        return ServiceStatus(
            backend=BACKEND,
            model="canned plans",
            online=True,
            reason="scripted backend: canned plans, no model",
            in_flight=sum(1 for r in records if r.finished_at is None),
            last_latency_s=None if last is None or last.finished_at is None
            else last.finished_at - last.queued_at,
            requests_total=self._next_id - 1,
            plans_ok=self._ok,
            failures=self._failed,
            cancelled=self._cancelled,
            recent=records,
            now=self._now,
            clock="game",
        )

    def close(self) -> None:
        """Nothing runs in the background; present for the PlanService contract."""

    # -- plan writing -------------------------------------------------------------------

    def _answer(self, rid: int, request: PlanRequest) -> PlanOutcome:
        timing = RequestTiming(queued_at=request.submitted_at, started_at=request.submitted_at)
        if self._failure_every and rid % self._failure_every == 0:
            kind = _INJECTED[(rid // self._failure_every - 1) % len(_INJECTED)]
            return PlanFailure(rid, kind, f"injected {kind.value} failure", BACKEND, timing=timing)
        domain = domain_of(request)
        raw = canned_plan(request.snapshot, domain)[: request.max_steps]
        if not raw:
            return PlanFailure(
                rid, FailureKind.INVALID_PLAN,
                f"the scripted service plans with the squad preset's tools, or else from the "
                f"domain's advice; domain {domain.name!r} has no advisor (Domain.advise) or it "
                f"advised nothing here", BACKEND, timing=timing,
            )
        check = validate_plan(raw, request.snapshot, domain.tools, domain.rules,
                              max_steps=request.max_steps)
        if not check.ok:
            msg = "; ".join(e.message for e in check.errors)
            return PlanFailure(rid, FailureKind.INVALID_PLAN, msg, BACKEND, timing=timing)
        plan = PlanIntent(plan_id=f"p-{rid:04d}", steps=check.steps, source="scripted")
        return PlanReady(rid, plan, BACKEND, "canned plans", timing)


_TEMPLATE_TOOLS = frozenset({"MoveTo", "Scan", "Wait", "Revive", "ThrowSmoke", "TakeCover",
                             "Reload", "Attack"})
"""The squad preset's tools the templates below are written with."""


def canned_plan(snap: WorldSnapshot, domain: Domain | None = None) -> list[dict[str, Any]]:
    """A plausible multi-step plan for ``snap`` (raw dicts, unvalidated): from fixed templates
    of the squad preset's tools when the domain has them (orders are read through the domain's
    order words, and "go to the objective" walks to the snapshot's objective); for a domain of
    the host's own, its advice for the snapshot, in order (empty when it has no advisor)."""
    d = domain if domain is not None else default_domain()
    if not all(name in d.tools for name in _TEMPLATE_TOOLS):
        return [step_to_dict(step) for step, _ in options(snap, d)]
    me = snap.me
    grid = snap.grid
    foes = [e for e in snap.enemies if e.hp > 0]
    seen = [e for e in foes if line_of_sight(grid, me.pos, e.pos)]
    order = d.order_fact(snap.orders)
    goal = snap.objective
    if order == Fact.ORDER_OBJECTIVE and goal is not None:
        return [{"act": "MoveTo", "x": goal.x, "y": goal.y}, {"act": "Scan"}]
    if order == Fact.ORDER_HOLD:
        return [{"act": "Scan"}, {"act": "Wait", "seconds": 2.0}]
    if snap.leader is not None and snap.leader.hp <= 0:
        p = snap.leader
        return [{"act": "MoveTo", "x": p.x, "y": p.y}, {"act": "Revive", "target_id": p.id}]
    target = _nearest(me, seen) or (_nearest(me, foes) if order == Fact.ORDER_ATTACK else None)
    if target is None:
        steps: list[dict[str, Any]] = [{"act": "Scan"}]
        if snap.leader is not None:
            spot = _free_neighbour(snap, snap.leader.pos)
            if spot is not None:
                steps.insert(0, {"act": "MoveTo", "x": spot[0], "y": spot[1]})
        return steps
    steps = []
    if snap.cooldown("smoke") <= 0 and distance(me.pos, target.pos) > 3:
        mx, my = (me.x + target.x) // 2, (me.y + target.y) // 2
        reach = DEFAULT_RULES.smoke_range
        far = distance(me.pos, (mx, my))
        if far > reach:  # on a big map the midpoint is out of throwing range: throw short
            mx = me.x + int((mx - me.x) * reach / far)
            my = me.y + int((my - me.y) * reach / far)
        if grid.walkable(mx, my):
            steps.append({"act": "ThrowSmoke", "x": mx, "y": my})
    cover = _nearest_cover(snap)
    if cover is not None:
        steps.append({"act": "TakeCover", "x": cover[0], "y": cover[1]})
    if snap.ammo <= 0:
        steps.append({"act": "Reload"})
    steps.append({"act": "Attack", "target_id": target.id})
    return steps


def _nearest(me: UnitView, units: list[UnitView]) -> UnitView | None:
    return min(units, key=lambda u: (distance(me.pos, u.pos), u.id), default=None)


def _nearest_cover(snap: WorldSnapshot) -> tuple[int, int] | None:
    me = snap.me.pos
    options = sorted(snap.grid.cover, key=lambda c: (distance(me, c), c))
    for c in options[:4]:
        if reachable(snap.grid, me, c):
            return c
    return None


def _free_neighbour(snap: WorldSnapshot, pos: tuple[int, int]) -> tuple[int, int] | None:
    x, y = pos
    for dx, dy in ((0, 1), (1, 0), (0, -1), (-1, 0)):
        nx, ny = x + dx, y + dy
        if snap.grid.walkable(nx, ny) and reachable(snap.grid, snap.me.pos, (nx, ny)):
            return (nx, ny)
    return None
