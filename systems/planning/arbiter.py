"""The arbiter: one state machine per agent that chooses which brain acts.

Modes (see DESIGN.md):

* ``GOAP`` - the default. The A* goal planner answers every time a decision is due.
* ``ExecutingLLM`` - a validated model plan is running; its steps are issued one by one, each
  re-validated against the *current* snapshot just before it goes out.
* ``BehaviorTree`` - the safety net, entered when GOAP has no plan or the model keeps failing,
  and left as soon as GOAP can plan again.

The arbiter never talks to a model. It decides *when* one should be asked
(:attr:`ArbiterState.pending_request`) and what to do with an outcome that arrived. It never
imports esper: :class:`esper_arbiter.systems.arbiter_system.ArbiterSystem` feeds it components.
"""

from __future__ import annotations

from esper_arbiter.components.actions import ActionStep, describe_step
from esper_arbiter.components.agent import (
    ArbiterEvent,
    ArbiterState,
    Intent,
    IntentStatus,
    Mode,
    Perception,
    StepRejection,
)
from esper_arbiter.components.llm import (
    PRIORITY_HIGH,
    PRIORITY_LOW,
    WITHDRAWN_KINDS,
    FailureKind,
    PlanFailure,
    PlanOutcome,
)
from esper_arbiter.components.snapshot import WorldSnapshot
from esper_arbiter.systems.domain import Domain, default_domain
from esper_arbiter.systems.planning.arbiter_config import ArbiterConfig
from esper_arbiter.systems.planning.behavior_tree import tick_tree
from esper_arbiter.systems.planning.goap import GoapDecision
from esper_arbiter.systems.planning.grounding import defer_step, ground_step, moot_reason
from esper_arbiter.systems.planning.plan_arrival import stale_on_arrival
from esper_arbiter.systems.planning.validation import validate_step

_NOT_FAILURES = WITHDRAWN_KINDS
"""Withdrawn, refused or expired requests: counted apart, never model failures."""

LABEL_WIDTH = 18


class Arbiter:
    """Engine-agnostic decision logic shared by every agent (the state lives in components)."""

    def __init__(
        self,
        domain: Domain | None = None,
        config: ArbiterConfig | None = None,
        backend_name: str = "",
    ) -> None:
        self.domain = domain if domain is not None else default_domain()
        self.config = config or ArbiterConfig()
        self.rules = self.domain.rules
        self.registry = self.domain.tools
        self.goap = self.domain.brain
        self.bt = self.domain.fallback
        self.backend_name = backend_name

    # -- the frame entry point ----------------------------------------------------------

    def update(
        self,
        state: ArbiterState,
        perception: Perception,
        intent: Intent,
        outcome: PlanOutcome | None = None,
        *,
        order_serial: int = 0,
        order: str | None = None,
        llm_enabled: bool = False,
        llm_in_flight: bool = False,
        asked_at: float | None = None,
    ) -> None:
        """Advance one agent by one frame.

        Mutates ``state`` and ``intent``; may set ``state.pending_request`` for the caller to
        submit. Cheap when nothing is due: a busy agent with no news costs a few comparisons
        and never builds its snapshot.
        """
        t = perception.t
        if order_serial != state.last_order_serial:
            self._on_order(state, intent, t, order, llm_enabled)
            state.last_order_serial = order_serial
        if outcome is not None:
            self._on_outcome(state, perception, intent, outcome, asked_at)

        if not self._hold_while_down(state, perception, intent):
            if state.mode is Mode.EXECUTING_LLM:
                self._run_llm_plan(state, perception, intent)
            if state.mode is Mode.BEHAVIOR_TREE:
                self._run_bt(state, perception, intent)
            if state.mode is Mode.GOAP:
                self._run_goap(state, perception, intent)

        wake = state.next_think_at
        if llm_enabled and not llm_in_flight and state.pending_request is None:
            due = self._request_due(state)
            if t >= due:
                state.pending_request = "periodic"
                state.pending_priority = PRIORITY_LOW
            elif due < wake:
                wake = due
        state.wake_at = wake

    # -- inputs -------------------------------------------------------------------------

    def _on_order(
        self, state: ArbiterState, intent: Intent, t: float, order: str | None, llm: bool
    ) -> None:
        meaning = self.domain.order_meaning(order)
        self._event(state, t, "order", f"order: {order or 'none'}"
                    + (f" ({meaning})" if meaning else " (not an order word of this domain)"
                       if order else ""))
        if state.mode is Mode.EXECUTING_LLM:
            self._transition(state, t, Mode.GOAP, f"plan dropped: new order {order!r}")
            state.plan = None
        # The order pre-empts whatever step is running, even one of the same kind (a walk the
        # old way): GOAP/BT decide afresh this frame.
        if intent.status is IntentStatus.RUNNING:
            intent.status = IntentStatus.IDLE
        state.think_key = None
        state.next_think_at = t
        if llm:
            state.pending_request = f"order: {order}"
            state.pending_priority = PRIORITY_HIGH

    def _on_outcome(
        self, state: ArbiterState, perception: Perception, intent: Intent, outcome: PlanOutcome,
        asked_at: float | None = None,
    ) -> None:
        t = perception.t
        m = state.metrics
        state.last_llm_done_at = t
        if isinstance(outcome, PlanFailure):
            self._count_failure(state, t, outcome.kind, outcome.message)
            return
        plan = outcome.plan
        if perception.snapshot.me.hp <= 0:
            m.plans_discarded += 1
            self._event(state, t, "outcome", f"plan {plan.plan_id} discarded: agent is down")
            return
        if not plan.steps:
            self._count_failure(state, t, FailureKind.INVALID_PLAN, f"plan {plan.plan_id} is empty")
            return
        stale = stale_on_arrival(plan.steps, perception.snapshot, self.domain,
                                 None if asked_at is None else t - asked_at,
                                 self.config.plan_fresh_s)
        if stale is not None:
            # The moment it was written for has passed (see plan_arrival): our latency, not
            # the model's judgement. Counted as a plan not used, but not toward the model's
            # failures in a row (BT), and asked again at once with today's snapshot (once per
            # run of stale plans: a model too slow for the game is not kept busy forever).
            self._count_failure(
                state, t, FailureKind.INVALID_PLAN,
                f"plan {plan.plan_id} stale on arrival: {stale}", model_fault=False,
            )
            if state.stale_retries == 0:
                state.stale_retries += 1
                state.pending_request = "retry: the last plan arrived stale"
                state.pending_priority = PRIORITY_LOW
            return
        state.stale_retries = 0
        m.plans_by_source[plan.source] = m.plans_by_source.get(plan.source, 0) + 1
        if plan.source in ("llm", "replay"):
            m.llm_successes += 1
        if plan.source != "fallback":
            state.consecutive_llm_failures = 0
        origin = outcome.backend or self.backend_name
        if plan.source not in ("llm", origin):
            origin = f"{plan.source} via {origin}"
        self._event(
            state, t, "outcome", f"plan {plan.plan_id} ready ({len(plan.steps)} steps, {origin})"
        )
        old = state.mode
        state.plan = plan
        state.step_index = 0
        state.preparing = False
        state.prep_attempts = 0
        state.deferred_s = 0.0
        state.rejected_steps = []
        self._transition(
            state, t, Mode.EXECUTING_LLM,
            f"plan {plan.plan_id}, {len(plan.steps)} steps, "
            f"{outcome.backend or self.backend_name} backend",
            force_event=old is Mode.EXECUTING_LLM,
        )
        self._issue_llm_step(state, perception, intent)

    def _count_failure(self, state: ArbiterState, t: float, kind: FailureKind, msg: str,
                       model_fault: bool = True) -> None:
        m = state.metrics
        m.failures_by_kind[kind.value] = m.failures_by_kind.get(kind.value, 0) + 1
        if kind is FailureKind.EXPIRED:
            m.llm_expired += 1
            self._event(state, t, "outcome", f"request {kind.value}: {msg}")
            return
        if kind in _NOT_FAILURES:
            m.llm_cancelled += 1
            self._event(state, t, "outcome", f"request {kind.value}: {msg}")
            return
        m.llm_failures += 1
        state.last_failure = f"{kind.value}: {msg}"
        self._event(state, t, "outcome", f"LLM failed ({kind.value}): {msg}")
        if not model_fault:
            return
        state.consecutive_llm_failures += 1
        if (
            state.consecutive_llm_failures >= self.config.bt_after_failures
            and state.mode is not Mode.EXECUTING_LLM
        ):
            state.bt_hold_until = t + self.config.bt_hold_s
            if state.mode is not Mode.BEHAVIOR_TREE:
                self._transition(
                    state, t, Mode.BEHAVIOR_TREE,
                    f"{state.consecutive_llm_failures} LLM failures in a row",
                )
                state.next_think_at = t

    def _hold_while_down(self, state: ArbiterState, perception: Perception, intent: Intent) -> bool:
        """A downed agent decides nothing until revived (its plan is dropped)."""
        t = perception.t
        if intent.status is IntentStatus.RUNNING and t < state.next_think_at:
            return False
        if perception.snapshot.me.hp > 0:
            return False
        if state.mode is Mode.EXECUTING_LLM:
            self._transition(state, t, Mode.GOAP, "plan dropped: downed")
            state.plan = None
        intent.status = IntentStatus.IDLE
        intent.step = None
        state.next_think_at = t + self._think_delay(state)
        return True

    # -- the three brains ---------------------------------------------------------------

    def _run_llm_plan(self, state: ArbiterState, perception: Perception, intent: Intent) -> None:
        if intent.status is IntentStatus.RUNNING:
            # The steady-state fast path, as in GOAP: nothing to decide until the step ends or
            # news arrives, apart from a periodic look (is the agent down?).
            t = perception.t
            if t >= state.next_think_at:
                state.next_think_at = t + self._think_delay(state)
            return
        m = state.metrics
        if state.preparing:
            # A preparatory step ended (done or not): check the planned step again.
            state.preparing = False
            self._issue_llm_step(state, perception, intent)
            return
        if intent.status is IntentStatus.DONE:
            m.llm_steps_executed += 1
        elif intent.status is IntentStatus.FAILED:
            m.llm_steps_failed += 1
            plan = state.plan
            assert plan is not None
            state.rejected_steps.append(
                StepRejection(state.step_index, f"failed in game: {intent.reason}")
            )
            self._event(
                state, perception.t, "rejected",
                f"step {state.step_index + 1}/{len(plan.steps)} "
                f"{describe_step(plan.steps[state.step_index])} failed: {intent.reason}",
            )
        state.step_index += 1
        state.prep_attempts = 0
        state.deferred_s = 0.0
        self._issue_llm_step(state, perception, intent)

    def _issue_llm_step(self, state: ArbiterState, perception: Perception, intent: Intent) -> None:
        """Issue the plan's current step, skipping steps the current world makes illegal."""
        plan = state.plan
        t = perception.t
        assert plan is not None
        while state.step_index < len(plan.steps):
            step = plan.steps[state.step_index]
            err = validate_step(step, perception.snapshot, self.registry, self.rules)
            if err is None:
                moot = moot_reason(step, perception.snapshot, self.registry, self.rules)
                if moot is None:
                    if self._defer(state, perception, intent, step):
                        return
                    self._issue(state, intent, step, t)
                    return
                why = f"{describe_step(step)}: {moot}"  # legal, but its moment has passed
            elif self._prepare(state, perception, intent, step, err.message):
                return
            else:
                why = err.message  # the validator's message starts with the step itself
            state.metrics.llm_steps_skipped += 1
            state.rejected_steps.append(StepRejection(state.step_index, why))
            self._event(
                state, t, "rejected", f"skip step {state.step_index + 1}/{len(plan.steps)} {why}",
            )
            state.step_index += 1
            state.prep_attempts = 0
            state.deferred_s = 0.0
        dropped = len(state.rejected_steps)
        self._transition(
            state, t, Mode.GOAP,
            f"plan {plan.plan_id} finished"
            + (f", {dropped} of {len(plan.steps)} steps skipped or failed" if dropped else ""),
        )
        state.plan = None
        state.next_think_at = t
        intent.status = IntentStatus.IDLE

    def _prepare(self, state: ArbiterState, perception: Perception, intent: Intent,
                 step: ActionStep, why: str) -> bool:
        """Issue a step that brings the plan's current ``step`` within reach, if there is one
        and the step has not used up its attempts; True when one was issued."""
        if state.prep_attempts >= self.config.max_step_preparations:
            return False
        prep = ground_step(step, perception.snapshot, self.registry, self.rules)
        if prep is None:
            return False
        state.prep_attempts += 1
        state.metrics.llm_steps_grounded += 1
        self._issue_first(state, perception, intent, prep, why)
        return True

    def _defer(self, state: ArbiterState, perception: Perception, intent: Intent,
               step: ActionStep) -> bool:
        """Issue what to do meanwhile when the plan's current ``step`` would be wasted now
        (its tool's ``defer``), within ``max_defer_s`` in all; True when one was issued."""
        if state.deferred_s >= self.config.max_defer_s:
            return False
        meanwhile = defer_step(step, perception.snapshot, self.registry, self.rules)
        if meanwhile is None:
            return False
        state.deferred_s += float(getattr(meanwhile, "seconds", 1.0))
        self._issue_first(state, perception, intent, meanwhile,
                          f"{describe_step(step)} is better later")
        return True

    def _issue_first(self, state: ArbiterState, perception: Perception, intent: Intent,
                     first: ActionStep, why: str) -> None:
        """Issue ``first`` ahead of the plan's current step, which is checked again after."""
        plan = state.plan
        assert plan is not None
        state.preparing = True
        self._event(state, perception.t, "grounded",
                    f"step {state.step_index + 1}/{len(plan.steps)} {why}: "
                    f"{describe_step(first)} first")
        self._issue(state, intent, first, perception.t)

    def _unchanged(self, state: ArbiterState, perception: Perception, intent: Intent) -> bool:
        """A periodic re-think of a running step that would see exactly what the last decision
        saw: skip it (GOAP and the trees are deterministic in the situation)."""
        key = situation(perception.snapshot)
        if intent.status is IntentStatus.RUNNING and key == state.think_key:
            self._back_off(state, perception.t)
            return True
        state.think_key = key
        return False

    def _think_delay(self, state: ArbiterState) -> float:
        """Game seconds to the next periodic re-think: ``think_interval_s``, doubled per
        re-think in a row that kept the running step, up to ``think_interval_max_s``, spread
        over a crowd by the agent's phase."""
        return self._interval(state) * (0.5 + state.think_phase)

    def _interval(self, state: ArbiterState) -> float:
        cfg = self.config
        return min(cfg.think_interval_s * (1 << min(state.think_backoff, 16)),
                   cfg.think_interval_max_s)

    def _back_off(self, state: ArbiterState, t: float) -> None:
        """A periodic re-think kept the running step: look again later than last time."""
        if self._interval(state) < self.config.think_interval_max_s:
            state.think_backoff += 1
        state.next_think_at = t + self._think_delay(state)

    def on_hit(self, state: ArbiterState, t: float, hp: float, max_hp: float) -> None:
        """The agent's health fell to ``hp`` since the arbiter last looked (the host's
        ``Health``). When that is news (see ``ArbiterConfig.hit_news_fraction``) the back-off
        ends and the next re-think comes no later than an unhurried one would."""
        cfg = self.config
        quiet = t - state.last_hit_at > cfg.think_interval_max_s
        state.last_hit_at = t
        if not quiet and state.decided_hp - hp < cfg.hit_news_fraction * max_hp:
            return  # one more hit of the fight it already decided in
        state.think_backoff = 0
        soon = t + self._think_delay(state)
        if soon < state.next_think_at:
            state.next_think_at = soon
        if soon < state.wake_at:
            state.wake_at = soon

    def _run_bt(self, state: ArbiterState, perception: Perception, intent: Intent) -> None:
        t = perception.t
        if intent.status is IntentStatus.FAILED:
            self._rest_failed_step(state, intent, t)
        if intent.status is IntentStatus.RUNNING and t < state.next_think_at:
            return
        snap = perception.snapshot
        resting = self._resting(state, t)
        if t >= state.bt_hold_until:
            decision = self.goap.decide(snap, avoid=resting)
            if decision is not None:
                self._transition(state, t, Mode.GOAP, "GOAP can plan again")
                state.think_key = situation(snap)
                self._issue_goap(state, intent, decision, t)
                return
        if self._unchanged(state, perception, intent):
            return
        _, step, _ = tick_tree(self.bt, snap)
        if step is not None and step not in resting and intent.status is IntentStatus.RUNNING \
                and _same_kind(intent.step, step):
            self._back_off(state, t)  # the tree keeps the running step
            return
        state.think_backoff = 0
        state.next_think_at = t + self._think_delay(state)
        if step is None:
            return
        if step in resting:
            # The tree insists on a step the host just refused: idle until it may be retried.
            intent.status = IntentStatus.IDLE
            state.next_think_at = max(state.next_think_at, state.resting_steps[step][0])
            state.think_key = None
            return
        state.metrics.bt_actions += 1
        self._issue(state, intent, step, t)

    def _run_goap(self, state: ArbiterState, perception: Perception, intent: Intent) -> None:
        t = perception.t
        if intent.status is IntentStatus.FAILED:
            self._rest_failed_step(state, intent, t)
        if intent.status is IntentStatus.RUNNING and t < state.next_think_at:
            return
        if self._unchanged(state, perception, intent):
            return
        decision = self.goap.decide(perception.snapshot, avoid=self._resting(state, t))
        if decision is None:
            self._transition(state, t, Mode.BEHAVIOR_TREE, "GOAP has no plan")
            state.bt_hold_until = t
            state.next_think_at = t
            self._run_bt(state, perception, intent)
            return
        self._issue_goap(state, intent, decision, t)

    def _issue_goap(
        self, state: ArbiterState, intent: Intent, decision: GoapDecision, t: float
    ) -> None:
        step = decision.step
        if (intent.status is IntentStatus.RUNNING and _same_kind(intent.step, step)
                and (decision.goal == state.step_goal or step == intent.step)):
            # keep going; a new target of the same kind for the same goal waits for this
            # step to end (a walk toward a leader who moved on need not restart each look).
            # For another goal (tired now: walk home, not to the forest) it replaces it.
            self._back_off(state, t)
            return
        # The same kind of step again for the same goal, after the last one ended (the next
        # burst of a fight): a decision that kept the course, so it backs off as a re-think
        # that kept the running step does (a hit that is news ends it). Starting again from
        # think_interval_s at every step cost a 1,000-agent fight a fifth of its decisions:
        # re-thinks in the middle of the next burst, which kept it.
        backoff = 0
        if (intent.status is IntentStatus.DONE and _same_kind(intent.step, step)
                and decision.goal == state.step_goal):
            backoff = state.think_backoff + (
                self._interval(state) < self.config.think_interval_max_s)
        state.think_backoff = backoff
        state.next_think_at = t + self._think_delay(state)
        if intent.status is IntentStatus.RUNNING:
            committed_until = intent.issued_at + self.config.min_commit_s
            if t < committed_until:
                # Decision inertia: a step gets a moment before a re-think may replace it, or
                # two goals whose facts flip each other (cover <-> exit) would thrash.
                state.next_think_at = committed_until
                state.think_key = None
                return
        state.metrics.goap_actions += 1
        self._issue(state, intent, step, t)
        state.think_backoff = backoff  # _issue starts it at 0 for any other caller
        state.step_goal = decision.goal
        # Before min_commit_s a re-think could replace the step only with one of its kind for
        # another goal; everything else waits for the commitment anyway. Looking earlier (the
        # first periodic re-think of most steps) was a fifth of a big fight's decisions.
        state.next_think_at = max(state.next_think_at, t + self.config.min_commit_s)

    def _rest_failed_step(self, state: ArbiterState, intent: Intent, t: float) -> None:
        """The host failed a GOAP/BT step: that step rests (backoff doubling while it keeps
        failing), GOAP plans around it meanwhile, and the log says so once per failure."""
        step = intent.step
        intent.status = IntentStatus.IDLE
        if step is None:
            return
        cfg = self.config
        prev = state.resting_steps.get(step)
        backoff = cfg.step_retry_s if prev is None else min(prev[1] * 2, cfg.step_retry_max_s)
        state.resting_steps[step] = (t + backoff, backoff)
        state.metrics.host_step_failures += 1
        state.think_key = None
        self._event(
            state, t, "rejected",
            f"{describe_step(step)} failed in game ({intent.reason or 'no reason given'}); "
            f"not retried for {backoff:g}s",
        )

    @staticmethod
    def _resting(state: ArbiterState, t: float) -> frozenset[ActionStep]:
        """Steps that may not be issued now (expired entries are kept for the backoff until a
        step rests long unused, so a step that fails again backs off further)."""
        rest = state.resting_steps
        if not rest:
            return frozenset()
        for step in [s for s, (until, b) in rest.items() if t >= until + 4 * b]:
            del rest[step]
        return frozenset(s for s, (until, _) in rest.items() if t < until)

    # -- requests -----------------------------------------------------------------------

    def _request_due(self, state: ArbiterState) -> float:
        """Game time of the next background request: cooldown after the last completion,
        doubled per consecutive failure (capped); never while a model plan runs."""
        if state.mode is Mode.EXECUTING_LLM:
            return float("inf")
        if state.last_llm_done_at is None:
            return self.config.first_request_at_s
        backoff = 2.0 ** min(state.consecutive_llm_failures, 8)
        wait = min(self.config.llm_cooldown_s * backoff, self.config.failure_backoff_max_s)
        return state.last_llm_done_at + max(wait, self.config.llm_cooldown_s)

    def note_request_submitted(self, state: ArbiterState, t: float, request_id: int) -> None:
        """Called by the system once the pending request went out."""
        state.metrics.llm_requests += 1
        self._event(
            state, t, "request",
            f"LLM request r{request_id} ({state.pending_request})",
        )
        state.pending_request = None

    def note_request_withdrawn(self, state: ArbiterState, t: float, request_id: int) -> None:
        """A request in flight was cancelled because a newer one replaces it: CANCELLED, as
        the service that was told to cancel it records it (withdrawn, not a model failure)."""
        self._count_failure(
            state, t, FailureKind.CANCELLED,
            f"request r{request_id} cancelled: a newer, urgent one replaces it",
        )

    def request_now(self, state: ArbiterState, reason: str) -> None:
        """Ask for an urgent plan at the next frame (e.g. a key the host bound)."""
        state.pending_request = reason
        state.pending_priority = PRIORITY_HIGH
        state.wake()

    # -- helpers ------------------------------------------------------------------------

    def _issue(self, state: ArbiterState, intent: Intent, step: ActionStep, t: float) -> None:
        state.think_backoff = 0
        state.step_goal = ""
        if intent.status is not IntentStatus.RUNNING or intent.step != step:
            intent.serial += 1  # a new step: the host starts it afresh
            intent.issued_at = t
        # else the very step already running carries on under the new mode (a model plan
        # that opens with the burst GOAP is firing): restarting it would lose its progress.
        intent.step = step
        intent.status = IntentStatus.RUNNING
        intent.reason = ""
        intent.mode = state.mode
        intent.label = state.label
        text = f"[{state.label}]".ljust(LABEL_WIDTH) + describe_step(step)
        self._event(state, t, "decision", text)

    def _transition(
        self, state: ArbiterState, t: float, new: Mode, why: str, force_event: bool = False
    ) -> None:
        old = state.mode
        if old is new and not force_event:
            return
        if old is not new:
            state.metrics.mode_transitions += 1
            state.metrics.finished_mode_time[old.value] += max(0.0, t - state.mode_since)
        state.mode = new
        state.mode_since = t
        self._event(state, t, "transition", f"{old.value} -> {new.value} ({why})")

    def _event(self, state: ArbiterState, t: float, kind: str, text: str) -> None:
        state.events.append(ArbiterEvent(t, kind, text, state.mode))
        state.event_count += 1


def _same_kind(a: ActionStep | None, b: ActionStep) -> bool:
    return a is not None and a.act == b.act


def situation(snap: WorldSnapshot) -> tuple[object, ...]:
    """Everything a GOAP/BT decision depends on, minus the clock. Perception reuses unchanged
    unit views, so comparing two of these is mostly identity checks."""
    ready = tuple(k for k, v in snap.cooldowns.items() if v <= 0.0)
    return (
        snap.me, snap.leader, snap.enemies, snap.allies, snap.neutrals, snap.grid, snap.orders,
        snap.ammo, snap.ammo_reserve, snap.morale, ready, snap.pois, snap.objective,
    )


__all__ = ["Arbiter", "ArbiterConfig", "situation"]
