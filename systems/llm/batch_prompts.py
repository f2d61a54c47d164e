"""Batch assembly: several agents' requests turned into one prompt.

:func:`select_batch` picks up to ``max_batch_size`` of the waiting requests (most urgent
first, one per agent, one domain) and sorts them by agent id so the same input always gives
the same prompt. Two prompt shapes:

- :func:`build_batch` gives a :class:`BatchPrompt` (``batch_mode="array"``): one call whose
  reply is a bare JSON array with one object per agent, in agent-id order, under a schema of
  one ``prefixItems`` entry per agent (:func:`build_batch_schema`; ``style="anyOf"`` gives the
  unordered variant);
- :func:`build_turns` gives a :class:`TurnsPrompt` (``batch_mode="turns"``): one conversation,
  a turn per member, each turn's prompt extending the previous one's.

Both state the situation lines every member shares once (:func:`split_situations`) and keep
the single-agent system message unchanged, so a llama.cpp prefix cache built by single
requests is reused. See :mod:`systems.llm.batching` for how the pieces fit together.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol, TypeVar

from esper_arbiter.components.llm import PlanRequest
from esper_arbiter.components.snapshot import WorldSnapshot
from esper_arbiter.systems.domain import Domain, domain_of
from esper_arbiter.systems.llm import prompt as single_prompt

SchemaStyle = Literal["prefixItems", "anyOf"]


class HasRequest(Protocol):
    """Anything that carries a request and its id (a ``QueueEntry``, a service job, ...)."""

    @property
    def request_id(self) -> int: ...

    @property
    def request(self) -> PlanRequest: ...


T = TypeVar("T", bound=HasRequest)


def select_batch(items: Sequence[T], max_batch_size: int) -> list[T]:
    """Up to ``max_batch_size`` of ``items``, one per agent, returned sorted by agent id.

    Which ones: highest priority first; within a priority the order given is kept as the
    preference (the request queue hands entries out newest first). When an agent appears
    twice, its first (preferred) request is taken. Only requests of the first one's domain
    join it (one prompt describes one domain). ``max_batch_size < 1`` counts as 1.
    """
    limit = max(1, max_batch_size)
    ranked = sorted(enumerate(items), key=lambda p: (-p[1].request.priority, p[0]))
    chosen: dict[int, T] = {}
    domain: object = None
    for n, (_, item) in enumerate(ranked):
        if n == 0:
            domain = item.request.domain
        elif item.request.domain is not domain:
            continue
        agent = item.request.agent_id
        if agent not in chosen:
            chosen[agent] = item
            if len(chosen) >= limit:
                break
    return [chosen[a] for a in sorted(chosen)]


@dataclass(frozen=True, slots=True)
class BatchMember:
    """One agent in a batch."""

    request_id: int
    request: PlanRequest

    @property
    def agent_id(self) -> int:
        return self.request.agent_id

    @property
    def snapshot(self) -> WorldSnapshot:
        return self.request.snapshot


class _Members:
    """What a batch's two prompt shapes share: their members, and the ids in reply order."""

    __slots__ = ()
    members: tuple[BatchMember, ...]

    @property
    def agent_ids(self) -> tuple[int, ...]:
        return tuple(m.agent_id for m in self.members)

    @property
    def request_ids(self) -> tuple[int, ...]:
        return tuple(m.request_id for m in self.members)

    def __len__(self) -> int:
        return len(self.members)


@dataclass(frozen=True, slots=True)
class BatchPrompt(_Members):
    """Everything a backend needs for one batched call."""

    members: tuple[BatchMember, ...]
    """Sorted by agent id; the reply's order."""
    messages: tuple[dict[str, str], ...]
    schema: dict[str, Any]
    max_steps: int
    """The largest ``max_steps`` among the members (each agent's schema uses its own)."""


def agent_item_schema(
    agent_id: int, plan_schema: dict[str, Any]
) -> dict[str, Any]:
    """One agent's element: ``{"agent_id": <const id>, "steps": <its steps schema>}``.

    ``plan_schema`` is ``ToolRegistry.plan_schema(snapshot, max_steps)`` (an object whose
    ``properties`` has ``steps``)."""
    steps = plan_schema.get("properties", {}).get("steps")
    if not isinstance(steps, dict):
        raise ValueError("plan schema has no 'steps' property")
    return {
        "type": "object",
        "properties": {"agent_id": {"const": agent_id}, "steps": steps},
        "required": ["agent_id", "steps"],
        "additionalProperties": False,
    }


def build_batch_schema(
    per_agent: Sequence[tuple[int, dict[str, Any]]], style: SchemaStyle = "prefixItems"
) -> dict[str, Any]:
    """Schema of the batch reply from ``(agent_id, plan_schema)`` pairs (give them sorted by
    agent id; that order is the reply's order with ``prefixItems``)."""
    items = [agent_item_schema(aid, schema) for aid, schema in per_agent]
    n = len(items)
    if style == "prefixItems":
        # No "items" key: llama.cpp's converter would take it over prefixItems.
        return {"type": "array", "prefixItems": items, "minItems": n, "maxItems": n}
    return {"type": "array", "items": {"anyOf": items}, "minItems": n, "maxItems": n}


def split_situations(members: Sequence[BatchMember]) -> tuple[list[str], list[list[str]]]:
    """What a batch states once and what it states per member: the shared situation lines
    (:func:`prompt.shared_lines`) every member's snapshot has alike, in the first member's
    order, and for each member the rest of them plus its own :func:`prompt.member_lines`.
    Deterministic for the same members."""
    ids = [m.agent_id for m in members]
    candidates = [single_prompt.shared_lines(m.snapshot, single_prompt.FULL,
                                             domain_of(m.request)) for m in members]
    common = set(candidates[0]).intersection(*candidates[1:]) if len(members) > 1 else set()
    shared = [line for line in candidates[0] if line in common]
    blocks = []
    for m, lines in zip(members, candidates, strict=True):
        own = [line for line in lines if line not in common]
        blocks.append(own + single_prompt.member_lines(m.snapshot, ids))
    return shared, blocks


def member_example(m: BatchMember) -> str:
    """The member's example element, made from its own live options (a fixed example gets
    copied into every plan)."""
    return json.dumps({"agent_id": m.agent_id,
                       "steps": single_prompt.live_example(m.snapshot, domain_of(m.request))},
                      separators=(",", ":"))


def render_batch_user(members: Sequence[BatchMember]) -> str:
    """The user message: the shared situation once, then each agent's own lines (its state
    and what it sees from where it stands), then the reply instructions."""
    ids = [m.agent_id for m in members]
    shared, blocks = split_situations(members)
    out = [f"Plan for {len(members)} agents: {', '.join(f'#{a}' for a in ids)}."]
    if shared:
        out.append("Shared situation:")
        out.extend(shared)
    for m, lines in zip(members, blocks, strict=True):
        out.append(f"Agent #{m.agent_id}:")
        out.extend(lines)
    example = ", ".join(member_example(m) for m in members)
    max_steps = max((m.request.max_steps for m in members), default=8)
    out.append(
        f"Reply with a JSON array of {len(members)} objects, one per agent in this order: "
        f"[{example}]. Each \"steps\" is that agent's own plan ({max_steps} steps at most)."
    )
    return "\n".join(out)


def batch_domain(members: Sequence[BatchMember]) -> Domain:
    """The one domain every member's request was made for. Raises ``ValueError`` when they
    differ (requests of two domains are never batched together)."""
    domains = {id(domain_of(m.request)): domain_of(m.request) for m in members}
    if len(domains) != 1:
        raise ValueError("a batch mixes requests of different domains")
    return next(iter(domains.values()))


def build_batch(
    items: Sequence[HasRequest],
    *,
    style: SchemaStyle = "prefixItems",
) -> BatchPrompt:
    """Messages and schema for ``items`` (all of them; pick with :func:`select_batch` first).
    Members are sorted by agent id. Raises ``ValueError`` for no items, two items of one
    agent (a programming error: the queue keeps one request per agent) or items of two
    domains."""
    members = _members(items)
    max_steps = max(m.request.max_steps for m in members)
    domain = batch_domain(members)
    schema = build_batch_schema(
        [
            (m.agent_id, domain.tools.plan_schema(m.snapshot, m.request.max_steps, domain.rules))
            for m in members
        ],
        style,
    )
    messages = (
        {"role": "system", "content": single_prompt.system_prompt(domain, max_steps)},
        {"role": "user", "content": render_batch_user(members)},
    )
    return BatchPrompt(members=members, messages=messages, schema=schema, max_steps=max_steps)


@dataclass(frozen=True, slots=True)
class TurnsPrompt(_Members):
    """A batch planned as one conversation, one member per turn (``batch_mode="turns"``).

    The first user message states the shared situation once, then the first member's own
    lines; the model answers that member's plan alone (its own single-agent schema), and the
    next member's lines follow as the next user message, after the answers so far. Every
    call's prompt extends the previous call's prompt and answer, so a backend that keeps the
    longest common token prefix in its KV cache (llama.cpp: llama-cpp-python, its server,
    llama-server, ollama) reads the shared part once and each member's lines once, and each
    plan is delivered when its own turn ends, not after the last member's."""

    members: tuple[BatchMember, ...]
    system: str
    shared: str
    """The header and the shared situation, at the head of the first user message."""
    blocks: tuple[str, ...]
    """Each member's own lines and reply instruction (the user message of its turn)."""
    schemas: tuple[dict[str, Any], ...]
    """Each member's single-agent plan schema."""

    def user(self, k: int, first: bool) -> str:
        return f"{self.shared}\n{self.blocks[k]}" if first else self.blocks[k]

    def turn(self, k: int, answered: Sequence[tuple[int, str]] = ()) -> list[dict[str, str]]:
        """The chat for member ``k`` after the turns ``answered`` ((member index, reply
        text), in order; a member without a usable reply is left out of the conversation)."""
        out = [{"role": "system", "content": self.system}]
        for j, text in answered:
            out.append({"role": "user", "content": self.user(j, len(out) == 1)})
            out.append({"role": "assistant", "content": text})
        out.append({"role": "user", "content": self.user(k, len(out) == 1)})
        return out

    @property
    def messages(self) -> tuple[dict[str, str], ...]:
        """Every user message of the conversation without the answers: what the context must
        hold besides them (:func:`budget.batch_fits` reserves one answer per member)."""
        return tuple([{"role": "system", "content": self.system}]
                     + [{"role": "user", "content": self.user(k, k == 0)}
                        for k in range(len(self.members))])


def build_turns(items: Sequence[HasRequest]) -> TurnsPrompt:
    """The :class:`TurnsPrompt` for ``items`` (members sorted by agent id; the same errors
    as :func:`build_batch`)."""
    members = _members(items)
    domain = batch_domain(members)
    shared, blocks = split_situations(members)
    ids = ", ".join(f"#{m.agent_id}" for m in members)
    head = [f"You plan for {len(members)} squad members, one at a time: {ids}."]
    if shared:
        head += ["Shared situation:", *shared]
    texts = []
    for m, lines in zip(members, blocks, strict=True):
        example = json.dumps({"steps": single_prompt.live_example(m.snapshot, domain)},
                             separators=(",", ":"))
        texts.append("\n".join([f"Agent #{m.agent_id}:", *lines,
                                f"Reply with the JSON plan of #{m.agent_id} only "
                                f"({m.request.max_steps} steps at most), for example {example}"]))
    return TurnsPrompt(
        members=members,
        system=single_prompt.system_prompt(domain, max(m.request.max_steps for m in members)),
        shared="\n".join(head),
        blocks=tuple(texts),
        schemas=tuple(domain.tools.plan_schema(m.snapshot, m.request.max_steps, domain.rules)
                      for m in members),
    )


def _members(items: Sequence[HasRequest]) -> tuple[BatchMember, ...]:
    if not items:
        raise ValueError("a batch needs at least one request")
    members = tuple(
        sorted(
            (BatchMember(i.request_id, i.request) for i in items), key=lambda m: m.agent_id
        )
    )
    ids = [m.agent_id for m in members]
    if len(set(ids)) != len(ids):
        raise ValueError(f"agents appear twice in one batch: {ids}")
    return members
