"""Pure data for esper-arbiter: world components, the snapshot, actions, AI state.

Nothing here imports the rest of the project, esper or pygame.
"""

from esper_arbiter.components.actions import (
    ACTION_TYPES,
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
from esper_arbiter.components.snapshot import GridView, UnitView, WorldSnapshot
from esper_arbiter.components.world import (
    Ammo,
    Cooldowns,
    GameClock,
    Health,
    InCover,
    MapGrid,
    Morale,
    Name,
    Orders,
    Player,
    Position,
    SmokeCloud,
    Team,
)

__all__ = [
    "ACTION_TYPES", "PRIORITY_HIGH", "PRIORITY_LOW", "ActionStep", "Agent", "Ammo", "Approach",
    "ArbiterEvent", "ArbiterMetrics", "ArbiterState", "Attack", "Cooldowns", "CoverFire",
    "FailureKind", "GameClock", "GridView", "Heal", "Health", "InCover", "Intent",
    "IntentStatus", "LlmTask", "MapGrid", "Mode", "Morale", "MoveTo", "Name", "Orders",
    "Perception", "PlanFailure", "PlanIntent", "PlanOutcome", "PlanProposal", "PlanReady",
    "PlanRequest", "PlanTicket", "Player", "Position", "Reload", "RequestTiming", "Retreat",
    "Revive", "Scan", "SmokeCloud", "StepRejection", "TakeCover", "Team", "ThrowSmoke",
    "UnitView", "Wait", "WorldSnapshot", "describe_step", "step_from_dict", "step_to_dict",
]
