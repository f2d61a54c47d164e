"""Prompts that always fit the model's context window.

A backend that knows its context (llama.cpp's ``n_ctx``, the ``num_ctx`` ollama is asked to
use) offers a :class:`ContextBudget`: the window, the tokens its answer may take, and a token
counter. :func:`fit_single` renders a request's messages at decreasing levels of detail (the
situation's lists cut nearest first, the rest counted) until they fit beside the answer; a
request that cannot fit even at the smallest level fails *before* the model is called, as its
own typed failure (``FailureKind.TOO_LARGE``), with the sizes in the message. Batches are cut to
the members that fit (:func:`batch_fits`). Without a budget nothing is trimmed.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from esper_arbiter.components.llm import PlanRequest
from esper_arbiter.systems.domain import domain_of
from esper_arbiter.systems.llm import prompt
from esper_arbiter.systems.llm.backends.base import Message

CHARS_PER_TOKEN = 2.3
"""A conservative estimate (our prompts measure 2.4-3.0 characters per token with SmolLM2's
tokenizer: digits and punctuation are dense) used when a backend cannot count exactly."""
MESSAGE_OVERHEAD = 8
"""Tokens a chat template adds around each message (role markers, separators)."""
LEVELS = (1.0, 0.5, 0.25, 0.0)
"""Detail levels tried in turn: full lists, half, a quarter, the bare minimum."""


def estimate_tokens(text: str) -> int:
    """Tokens ``text`` takes, rounded up from :data:`CHARS_PER_TOKEN`."""
    return math.ceil(len(text) / CHARS_PER_TOKEN)


def measure(messages: Sequence[Message], count: Callable[[str], int] = estimate_tokens) -> int:
    """Tokens a chat takes: each message's content plus the template's overhead."""
    return sum(count(m["content"]) + MESSAGE_OVERHEAD for m in messages)


@dataclass(frozen=True, slots=True)
class ContextBudget:
    """``context`` tokens in all; ``answer`` of them reserved for each plan of the reply."""

    context: int
    answer: int
    count: Callable[[str], int] = estimate_tokens

    def prompt_room(self, plans: int = 1) -> int:
        """Tokens the prompt may use when the reply holds ``plans`` plans."""
        return self.context - self.answer * max(1, plans)

    def measure(self, messages: Sequence[Message]) -> int:
        return measure(messages, self.count)


@dataclass(frozen=True, slots=True)
class Fitted:
    """Messages that fit (``messages``), or why none do (``problem``), with their size."""

    messages: Sequence[Message] | None
    tokens: int
    level: float
    problem: str = ""


def fit_single(request: PlanRequest, budget: ContextBudget | None) -> Fitted:
    """The request's messages at the most detail that fits ``budget`` beside one answer."""
    domain = domain_of(request)
    snap, steps = request.snapshot, request.max_steps
    if budget is None:
        return Fitted(prompt.build_messages(snap, domain, steps), 0, 1.0)
    room = budget.prompt_room(1)
    tokens = 0
    for level in LEVELS:
        limits = prompt.FULL if level == 1.0 else prompt.FULL.scaled(level)
        messages = prompt.build_messages(snap, domain, steps, limits)
        tokens = budget.measure(messages)
        if tokens <= room:
            return Fitted(messages, tokens, level)
    return Fitted(None, tokens, 0.0, (
        f"prompt needs {tokens} tokens even trimmed to the nearest units; the context holds "
        f"{budget.context} and the answer needs {budget.answer}"
    ))


def batch_fits(messages: Sequence[Message], plans: int, budget: ContextBudget | None) -> bool:
    """Whether a batch prompt and ``plans`` answers fit the context."""
    return budget is None or budget.measure(messages) <= budget.prompt_room(plans)


__all__ = ["ContextBudget", "Fitted", "batch_fits", "estimate_tokens", "fit_single", "measure"]
