"""How :class:`~systems.llm.service.LlmPlanService` builds prompts unless told otherwise.

The builder types a caller may inject (tests do), and the defaults: chat messages from
:mod:`systems.llm.prompt` and the plan schema from the request's domain's tool registry. Kept
apart from the service so tools that only build prompts (recording, benches) need not import
the worker pool.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from esper_arbiter.components.llm import PlanRequest
from esper_arbiter.systems.domain import domain_of
from esper_arbiter.systems.llm import prompt
from esper_arbiter.systems.llm.backends.base import JsonSchema, Message
from esper_arbiter.systems.llm.batch_prompts import BatchPrompt, HasRequest

MessageBuilder = Callable[[PlanRequest], Sequence[Message]]
"""Builds the chat messages for a single request (default: :mod:`systems.llm.prompt`)."""
SchemaBuilder = Callable[[PlanRequest], JsonSchema | None]
"""Builds the structured-output schema for a single request (default: the tool registry's)."""
BatchBuilder = Callable[[Sequence[HasRequest]], BatchPrompt]
"""Builds a batch's messages and schema (default: :func:`systems.llm.batching.build_batch`)."""


def default_messages(request: PlanRequest) -> Sequence[Message]:
    """Chat messages from :mod:`systems.llm.prompt` (system rules + compact snapshot)."""
    return prompt.build_messages(request.snapshot, domain_of(request), request.max_steps)


def default_schema(request: PlanRequest) -> JsonSchema | None:
    """The request's domain's plan schema narrowed to the request's snapshot."""
    domain = domain_of(request)
    schema: JsonSchema = domain.tools.plan_schema(request.snapshot, request.max_steps,
                                                  domain.rules)
    return schema
