"""Per-agent AI components: the marker, what it perceives, what it intends, the arbiter state."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field, fields
from enum import Enum
from typing import Protocol

from esper_arbiter.components.actions import ActionStep, PlanIntent, describe_step
from esper_arbiter.components.snapshot import WorldSnapshot


@dataclass(slots=True)
class Agent:
    """Marks an entity whose decisions come from the arbiter.

    ``use_llm=False`` keeps an agent on GOAP/BT only (cheap crowd NPCs).
    """

    role: str = ""
    """Free text for the host and the HUD (e.g. "medic"); the engine does not read it."""
    use_llm: bool = True
    sense_radius: float | None = None
    """Tiles this agent perceives; ``None`` takes the domain's :class:`Sensing` radius."""
    leader: int | None = None
    """The entity this agent follows (its squad leader), which must carry ``Leader``; ``None``
    follows its side's leader (the first entity with ``Leader`` on its team). An agent whose
    leader has lost ``Leader`` (fallen, demoted) has no leader until the host names another."""


def think_phase(entity: int) -> float:
    """A number in [0, 1) fixed per entity id and spread evenly over a crowd (the golden-ratio
    sequence), so timers of units spawned together do not fire in the same frame."""
    return (entity * 0.6180339887) % 1.0


class SnapshotSource(Protocol):
    """Something that can build an entity's snapshot for the current frame."""

    def snapshot_for(self, entity: int) -> WorldSnapshot: ...


class PerceptionFrame:
    """The current frame as every agent's Perception sees it: one object, shared.

    PerceptionSystem updates it once per frame (time, source, serial), which refreshes every
    agent's perception at once without touching them one by one.
    """

    __slots__ = ("serial", "source", "t")

    def __init__(self, t: float = 0.0, source: SnapshotSource | None = None) -> None:
        self.t = t
        self.source = source
        self.serial = 0

    def advance(self, t: float, source: SnapshotSource) -> None:
        self.t = t
        self.source = source
        self.serial += 1


class Perception:
    """An agent's view of the world at the current frame's time ``t``.

    The snapshot is built on first access in a frame and reused for the rest of it, so an
    agent that is busy carrying out a step (most agents, most frames) costs nothing here.
    """

    __slots__ = ("_cached", "_cached_serial", "entity", "frame")

    def __init__(self, entity: int, frame: PerceptionFrame) -> None:
        self.entity = entity
        self.frame = frame
        self._cached: WorldSnapshot | None = None
        self._cached_serial = -1

    @property
    def t(self) -> float:
        return self.frame.t

    @property
    def snapshot(self) -> WorldSnapshot:
        frame = self.frame
        if self._cached is None or self._cached_serial != frame.serial:
            if frame.source is None:
                raise RuntimeError("Perception has no frame yet: PerceptionSystem has not run")
            self._cached = frame.source.snapshot_for(self.entity)
            self._cached_serial = frame.serial
        return self._cached

    @staticmethod
    def fixed(snapshot: WorldSnapshot) -> Perception:
        """A perception that always returns ``snapshot`` (tests, tools, engine-agnostic use)."""
        return Perception(snapshot.me.id, PerceptionFrame(snapshot.t, _Fixed(snapshot)))


class _Fixed:
    __slots__ = ("snap",)

    def __init__(self, snap: WorldSnapshot) -> None:
        self.snap = snap

    def snapshot_for(self, entity: int) -> WorldSnapshot:
        return self.snap


class Mode(str, Enum):
    GOAP = "GOAP"
    EXECUTING_LLM = "ExecutingLLM"
    BEHAVIOR_TREE = "BehaviorTree"


class IntentStatus(str, Enum):
    IDLE = "idle"  # nothing to do; the arbiter will issue a step
    RUNNING = "running"  # host is carrying out ``step``
    DONE = "done"  # host finished ``step``
    FAILED = "failed"  # host could not finish ``step`` (``reason`` says why)


@dataclass(slots=True)
class Intent:
    """The arbiter's order to the host: carry out ``step``, then report back.

    The host executes the step over as many frames as it needs and calls :meth:`finish` or
    :meth:`fail`. ``serial`` changes with every new step so a host can spot a replacement
    (not when a model plan takes over the very step already running: only ``mode`` and
    ``label`` change then, and the host's work on it carries on).
    """

    step: ActionStep | None = None
    mode: Mode = Mode.GOAP
    label: str = "GOAP"
    status: IntentStatus = IntentStatus.IDLE
    serial: int = 0
    issued_at: float = 0.0
    reason: str = ""

    def finish(self) -> None:
        self.status = IntentStatus.DONE

    def fail(self, reason: str) -> None:
        self.status = IntentStatus.FAILED
        self.reason = reason

    def describe(self) -> str:
        return "-" if self.step is None else describe_step(self.step)


@dataclass(slots=True)
class ArbiterMetrics:
    """Counts of what happened. A fallback plan is not an LLM success; a timeout is a failure."""

    mode_transitions: int = 0
    llm_requests: int = 0
    llm_successes: int = 0
    """Plans written by a model (source ``llm``, or a ``replay`` of one) that were accepted."""
    plans_by_source: dict[str, int] = field(default_factory=dict)
    """Every accepted plan by where it came from: ``llm``, ``replay``, ``scripted``,
    ``fallback``. Only the first two are model successes."""
    plans_discarded: int = 0
    """Plans that arrived while the agent could not use them (downed): neither ok nor failed."""
    llm_failures: int = 0
    llm_cancelled: int = 0
    """Requests withdrawn (cancelled or superseded by a newer one) or refused: not model
    failures."""
    llm_expired: int = 0
    """Requests whose deadline passed while they waited in the queue (the model never saw
    them): not model failures either."""
    goap_actions: int = 0
    llm_steps_executed: int = 0
    llm_steps_skipped: int = 0
    llm_steps_failed: int = 0
    """Model steps that were issued and that the host then reported failed."""
    llm_steps_grounded: int = 0
    """Preparatory steps issued so that a model step could run (walk into range, reload, wait
    out a cooldown; see ``systems.planning.grounding``). Not model steps themselves."""
    bt_actions: int = 0
    host_step_failures: int = 0
    """GOAP/BT steps the host reported failed (each then rests; see ArbiterConfig.step_retry_s)."""
    finished_mode_time: dict[str, float] = field(
        default_factory=lambda: {m.value: 0.0 for m in Mode}
    )
    """Time in each *finished* stay only. Hosts read :meth:`ArbiterState.time_in_modes`, which
    adds the current stay."""
    failures_by_kind: dict[str, int] = field(default_factory=dict)

    def add(self, other: ArbiterMetrics) -> None:
        """Accumulate ``other`` into this one (totals over a squad)."""
        for f in fields(self):
            mine, theirs = getattr(self, f.name), getattr(other, f.name)
            if isinstance(mine, dict):
                for key, value in theirs.items():
                    mine[key] = mine.get(key, 0) + value
            else:
                setattr(self, f.name, mine + theirs)


@dataclass(frozen=True, slots=True)
class ArbiterEvent:
    """Something worth showing a user: a mode change, a decision, a rejected step."""

    t: float
    kind: str  # "decision" | "transition" | "request" | "outcome" | "rejected"
    text: str
    mode: Mode


@dataclass(slots=True)
class StepRejection:
    index: int
    reason: str


@dataclass(slots=True)
class ArbiterState:
    """Component: the arbiter's memory for one agent."""

    mode: Mode = Mode.GOAP
    plan: PlanIntent | None = None
    step_index: int = 0
    preparing: bool = False
    """The running step prepares the plan's current step (it is not the plan's own step)."""
    prep_attempts: int = 0
    """Preparatory steps issued for the plan's current step so far."""
    deferred_s: float = 0.0
    """Seconds the plan's current step has been put off so far (``ToolSpec.defer``)."""
    rejected_steps: list[StepRejection] = field(default_factory=list)
    mode_since: float = 0.0
    wake_at: float = float("-inf")
    """Until this game time, a running step and no news mean there is nothing to decide.
    Systems may skip the agent; anything that brings news (an outcome, an order, a finished
    step, :meth:`wake`) must be checked before relying on it."""
    next_think_at: float = 0.0
    """GOAP/BT re-decide at this game time even if the current step is still running."""
    think_key: object = None
    """What the last GOAP/BT decision saw (see ``systems.planning.arbiter.situation``)."""
    think_phase: float = 0.5
    """0..1, spreads a crowd's periodic re-decisions over frames (set from the entity id)."""
    stale_retries: int = 0
    """Requests asked again at once because the last plan arrived stale (reset by a plan
    that is used)."""
    step_goal: str = ""
    """The GOAP goal the running step serves ("" for a tree's or a model's step)."""
    think_backoff: int = 0
    """Periodic re-thinks in a row that kept the running step; each doubles the interval to
    the next (see ``ArbiterConfig.think_interval_max_s``). Reset when a step is issued."""
    seen_hp: float = float("-inf")
    """The agent's health when the arbiter last looked: a drop (a hit) that is news brings
    the next re-think forward, whatever the back-off (``ArbiterConfig.hit_news_fraction``)."""
    decided_hp: float = float("inf")
    """The agent's health when it last decided (past the fast path)."""
    last_hit_at: float = float("-inf")
    """Game time of the last hit the arbiter saw."""
    last_llm_done_at: float | None = None
    """Game time the last request completed (the cooldown counts from here)."""
    consecutive_llm_failures: int = 0
    bt_hold_until: float = 0.0
    last_order_serial: int = 0
    pending_request: str | None = None
    """Reason for an LLM request the arbiter wants submitted (cleared by the system)."""
    pending_priority: int = 0
    last_failure: str = ""
    resting_steps: dict[ActionStep, tuple[float, float]] = field(default_factory=dict)
    """Steps the host failed: step -> (game time it may be issued again, current backoff)."""
    metrics: ArbiterMetrics = field(default_factory=ArbiterMetrics)
    events: deque[ArbiterEvent] = field(default_factory=lambda: deque(maxlen=64))
    event_count: int = 0
    """Events ever appended (the deque keeps only the latest)."""

    def wake(self) -> None:
        """Make the arbiter look at this agent on the next frame."""
        self.wake_at = float("-inf")

    def time_in_modes(self, now: float) -> dict[str, float]:
        """Seconds spent in each mode so far, including the current stay."""
        out = dict(self.metrics.finished_mode_time)
        out[self.mode.value] += max(0.0, now - self.mode_since)
        return out

    @property
    def label(self) -> str:
        """Short mode label for overlays: ``GOAP``, ``LLM 2/4``, ``BT``."""
        if self.mode is Mode.EXECUTING_LLM and self.plan is not None:
            return f"LLM {self.step_index + 1}/{len(self.plan.steps)}"
        if self.mode is Mode.BEHAVIOR_TREE:
            return "BT"
        return "GOAP"
