"""Batched planning: several agents in one prompt, their plans routed out one by one.

Three pieces the LLM service plugs together, each in its own module (this one re-exports
them, so ``from esper_arbiter.systems.llm.batching import ...`` keeps working):

1. **Assembly** (:mod:`systems.llm.batch_prompts`: :func:`select_batch`,
   :func:`build_batch`, :func:`build_turns`): from the waiting requests take up to
   ``max_batch_size`` (most urgent first, one per agent), sort them by agent id so the same
   input always gives the same prompt, and build the chat messages and the JSON schema of the
   reply. The reply is a bare JSON array with one object per agent, in agent-id order::

       [{"agent_id": 2, "steps": [...]}, {"agent_id": 5, "steps": [...]}]

   The schema is a ``prefixItems`` tuple (one entry per agent: ``agent_id`` as a ``const`` and
   that agent's ``steps`` schema from ``ToolRegistry.plan_schema`` narrowed to its own
   snapshot). llama.cpp's JSON-schema-to-grammar converter (used by ollama and
   llama-cpp-python) turns a ``prefixItems`` array into an exact-length, fixed-order rule; it
   prefers ``items`` when both are present, so the schema has no ``items`` key. ``style=
   "anyOf"`` gives the unordered variant (``items: {anyOf: [...]}`` with min/max items).
   The system message is the single-agent one unchanged (so a llama.cpp prefix cache built by
   single requests is reused); the batch instructions and the snapshots go in the user message,
   with lines common to every agent's snapshot (map, walls, objective, ...) written once.

2. **Routing** (:mod:`systems.llm.batch_routing`: :class:`BatchReplyRouter`): feed it the
   streamed reply; each agent's element is validated
   (``systems.planning.validation.validate_plan``) against that agent's snapshot the moment
   the element closes, and returned as an :class:`AgentPlan` to deliver at once or an
   :class:`AgentReject`. :meth:`BatchReplyRouter.finish` lists every member without a
   usable plan (missing, malformed, invalid) in ``retry``: the service retries those alone.

3. **Sizing** (:mod:`systems.llm.batch_sizing`: :class:`AdaptiveBatchSize`): halves the
   batch size when a batch runs past the latency target, grows it by one after
   ``grow_after`` fast full batches, and drops to 1 when a batch costs more per request than
   single requests do; after a few such batches in a row
   it settles at 1 (no batching) on that backend.
"""

from __future__ import annotations

from esper_arbiter.systems.llm.batch_prompts import (
    BatchMember,
    BatchPrompt,
    HasRequest,
    SchemaStyle,
    TurnsPrompt,
    agent_item_schema,
    batch_domain,
    build_batch,
    build_batch_schema,
    build_turns,
    member_example,
    render_batch_user,
    select_batch,
    split_situations,
)
from esper_arbiter.systems.llm.batch_routing import (
    AgentPlan,
    AgentReject,
    AgentResult,
    BatchReplyRouter,
    BatchSummary,
    PlanValidator,
)
from esper_arbiter.systems.llm.batch_sizing import AdaptiveBatchSize

__all__ = [
    "AdaptiveBatchSize", "AgentPlan", "AgentReject", "AgentResult", "BatchMember",
    "BatchPrompt", "BatchReplyRouter", "BatchSummary", "HasRequest", "PlanValidator",
    "SchemaStyle", "TurnsPrompt", "agent_item_schema", "batch_domain", "build_batch",
    "build_batch_schema", "build_turns", "member_example", "render_batch_user", "select_batch",
    "split_situations",
]
