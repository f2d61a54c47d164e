"""The arbiter's policy knobs (:class:`ArbiterConfig`), checked when built.

Hosts pass one to ``ea.install(config=...)``; every time is in game seconds. A value the
policy cannot run on (a negative interval, a zero step budget) is a ``ValueError`` naming the
field, at construction, not a stall or a traceback frames later.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from esper_arbiter.components.llm import DEFAULT_MAX_STEPS


@dataclass(frozen=True, slots=True)
class ArbiterConfig:
    """Policy knobs. Times are game seconds."""

    llm_cooldown_s: float = 15.0
    """Minimum time between the end of one background request and the next."""
    first_request_at_s: float = 1.0
    """When an agent that never asked may send its first background request."""
    max_plan_steps: int = DEFAULT_MAX_STEPS
    bt_after_failures: int = 3
    """Consecutive model failures that send the agent to the behaviour tree."""
    bt_hold_s: float = 5.0
    """Minimum stay in BehaviorTree after model failures before GOAP takes over again."""
    failure_backoff_max_s: float = 60.0
    """The cooldown doubles with each consecutive failure, up to this."""
    think_interval_s: float = 0.5
    """GOAP/BT re-decide this often while a step runs (to react to threats)."""
    think_interval_max_s: float = 2.0
    """A periodic re-think that keeps the running step (most of them, mid-fight: the agent
    goes on firing from cover) doubles the interval to the next one, up to this, and so does
    a finished step followed by another of its kind for the same goal (the next burst). A new
    kind of step or goal, a failed step, an order, a model plan or a hit that is news (see
    ``hit_news_fraction``) start again from ``think_interval_s``. Equal to
    ``think_interval_s``: no back-off."""
    hit_news_fraction: float = 0.25
    """A hit (the agent's ``Health`` drops) ends the back-off when it is news: the first hit
    after ``think_interval_max_s`` without one, or health fallen by at least this share of
    ``max_hp`` since the agent last decided. The rest of a fight's hits leave the back-off
    alone: the agent already decided under fire, and re-deciding at every hit cost a 1,000-agent
    fight a third of its decisions (all of which kept the step). 0: every hit is news."""
    min_commit_s: float = 1.0
    """A running GOAP step is not replaced by a different kind of step before this."""
    step_retry_s: float = 2.0
    """After the host fails a GOAP/BT step, that exact step is not issued again for this long
    (doubling while it keeps failing, up to ``step_retry_max_s``); GOAP plans around it."""
    step_retry_max_s: float = 30.0
    max_decisions_per_frame: int | None = None
    """Agents the arbiter advances past the fast path in one frame, at most (``None``: all
    that are due). The rest stay due and go first next frame, so a crowd that wakes together
    (spawned at once, a fight's bursts ending in step) is spread over a few frames instead
    of stalling one. An agent whose model plan just arrived is not held back."""
    max_submits_per_frame: int | None = 4
    """Model requests the arbiter sends in one frame, at most (``None``: no limit). A
    request goes out on the frame *after* the agent decided to ask (the decision frames of a
    crowd cluster: think timers and bursts fire together, and building a request's advice
    would add to the heaviest frames); past this many, the rest wait their turn, oldest
    first. A model takes seconds per plan, so a frame or two in the queue costs nothing."""
    plan_fresh_s: float = 6.0
    """A model plan written from a snapshot older than this is checked on arrival against the
    domain's advice for the current snapshot: when its first step is of no kind advised now,
    it is stale (the moment it was written for has passed) and GOAP carries on."""
    max_defer_s: float = 10.0
    """A model step whose tool says "better later" (``ToolSpec.defer``) waits for at most
    this long in all before it is carried out anyway."""
    max_step_preparations: int = 3
    """A model step that cannot run yet gets up to this many preparatory steps (approach,
    reload, wait; see ``systems.planning.grounding``) before it is skipped."""

    def __post_init__(self) -> None:
        """Reject values the policy cannot run on, naming the field (``ValueError``): a
        negative interval would re-decide every agent every frame, a zero step budget would
        never plan."""
        for name in ("llm_cooldown_s", "think_interval_s", "step_retry_s", "step_retry_max_s",
                     "failure_backoff_max_s"):
            _check_number(name, getattr(self, name), positive=True)
        for name in ("first_request_at_s", "bt_hold_s", "min_commit_s", "plan_fresh_s",
                     "max_defer_s"):
            _check_number(name, getattr(self, name), positive=False)
        for name in ("max_plan_steps", "bt_after_failures"):
            _check_count(name, getattr(self, name), minimum=1)
        _check_count("max_step_preparations", self.max_step_preparations, minimum=0)
        _check_number("think_interval_max_s", self.think_interval_max_s, positive=True)
        _check_number("hit_news_fraction", self.hit_news_fraction, positive=False)
        if self.hit_news_fraction > 1.0:
            raise ValueError(f"ArbiterConfig.hit_news_fraction must be at most 1, got "
                             f"{self.hit_news_fraction!r}")
        if self.think_interval_max_s < self.think_interval_s:
            raise ValueError(
                f"ArbiterConfig.think_interval_max_s ({self.think_interval_max_s!r}) must be "
                f">= think_interval_s ({self.think_interval_s!r})"
            )
        for name in ("max_decisions_per_frame", "max_submits_per_frame"):
            if getattr(self, name) is not None:
                _check_count(name, getattr(self, name), minimum=1)


def _check_number(name: str, value: object, *, positive: bool) -> None:
    ok = (isinstance(value, int | float) and not isinstance(value, bool)
          and math.isfinite(value) and (value > 0 if positive else value >= 0))
    if not ok:
        raise ValueError(f"ArbiterConfig.{name}: expected a number of game seconds "
                         f"{'> 0' if positive else '>= 0'}, got {value!r}")


def _check_count(name: str, value: object, *, minimum: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"ArbiterConfig.{name}: expected a whole number >= {minimum}, "
                         f"got {value!r}")


