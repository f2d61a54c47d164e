"""Pure data for esper-arbiter: world components, the snapshot, actions, AI state.

Nothing here imports the rest of the project, esper or pygame.
"""

from esper_arbiter.components.actions import (
    ACTION_TYPES,
    SQUAD_STEPS,
    ActionStep,
    Approach,
    Attack,
    CoverFire,
    Heal,
    MoveTo,
    PlanIntent,
    Reload,
    Retreat,
    Revive,
    Scan,
    Step,
    TakeCover,
    ThrowSmoke,
    Wait,
    describe_step,
    step_from_dict,
    step_to_dict,
)
from esper_arbiter.components.agent import (
    Agent,
    ArbiterEvent,
    ArbiterMetrics,
    ArbiterState,
    Intent,
    IntentStatus,
    Mode,
    Perception,
    StepRejection,
)
from esper_arbiter.components.factions import DEFAULT_FACTIONS, Factions, Relation
from esper_arbiter.components.llm import (
    PRIORITY_HIGH,
    PRIORITY_LOW,
    FailureKind,
    LlmTask,
    PlanFailure,
    PlanOutcome,
    PlanProposal,
    PlanReady,
    PlanRequest,
    PlanTicket,
    RequestTiming,
)
from esper_arbiter.components.sensing import DEFAULT_SENSING, Sensing
from esper_arbiter.components.snapshot import GridView, ObjectiveView, UnitView, WorldSnapshot
from esper_arbiter.components.world import (
    Ammo,
    Cooldowns,
    GameClock,
    Health,
    InCover,
    Leader,
    MapGrid,
    Morale,
    Name,
    Objective,
    ObjectiveKind,
    Orders,
    Position,
    SmokeCloud,
    Team,
)

__all__ = [
    "ACTION_TYPES", "DEFAULT_FACTIONS", "DEFAULT_SENSING", "PRIORITY_HIGH", "PRIORITY_LOW", "SQUAD_STEPS",
    "ActionStep", "Agent", "Ammo", "Approach", "ArbiterEvent", "ArbiterMetrics", "ArbiterState",
    "Attack", "Cooldowns", "CoverFire", "Factions", "FailureKind", "GameClock", "GridView",
    "Heal", "Health", "InCover", "Intent", "IntentStatus", "Leader", "LlmTask", "MapGrid", "Mode",
    "Morale", "MoveTo", "Name", "Objective", "ObjectiveKind", "ObjectiveView", "Orders",
    "Perception", "PlanFailure", "PlanIntent", "PlanOutcome", "PlanProposal", "PlanReady",
    "PlanRequest", "PlanTicket", "Position", "Relation", "Reload", "RequestTiming", "Retreat",
    "Revive", "Scan", "Sensing", "SmokeCloud", "Step", "StepRejection", "TakeCover", "Team", "ThrowSmoke",
    "UnitView", "Wait", "WorldSnapshot", "describe_step", "step_from_dict", "step_to_dict",
]
