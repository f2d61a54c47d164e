"""The one small interface every model backend implements, and the typed error it raises.

A backend turns chat messages (plus an optional JSON schema for structured output) into reply
text. It knows nothing about plans, snapshots or tickets: the service (``systems.llm.service``)
owns deadlines, concurrency, parsing and validation. Expected failures are raised as
:class:`BackendError` carrying a :class:`~components.llm.FailureKind`; anything else a backend
raises is, by definition, a crash and is reported as one.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeAlias

from esper_arbiter.components.llm import FailureKind

Message: TypeAlias = Mapping[str, str]
"""A chat message: ``{"role": "system" | "user" | "assistant", "content": "..."}``."""

ChunkCallback: TypeAlias = Callable[[str], None]
"""Receives each piece of reply text as it streams in, on the service's event-loop thread."""

JsonSchema: TypeAlias = Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class BackendReply:
    """A complete reply and what the backend measured while producing it.

    Durations are seconds and ``None`` where the backend does not report them.
    """

    text: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    first_chunk_s: float | None = None
    """Wall time from the start of ``generate`` to the first chunk of text."""
    load_s: float | None = None
    """Model load time paid by this call (0 when it was already loaded)."""
    prompt_eval_s: float | None = None
    eval_s: float | None = None
    total_s: float | None = None
    done_reason: str = ""

    @property
    def tokens_per_second(self) -> float | None:
        if not self.completion_tokens or not self.eval_s:
            return None
        return self.completion_tokens / self.eval_s


class BackendError(Exception):
    """An expected failure of a backend, with its kind and the partial reply if any."""

    def __init__(self, kind: FailureKind, message: str, partial: str = "") -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.partial = partial

    def __str__(self) -> str:
        return f"{self.kind.value}: {self.message}"


class PlanBackend(Protocol):
    """A language model the service can ask for text."""

    @property
    def name(self) -> str:
        """Short backend name for logs and the HUD: ``"ollama"``, ``"embedded"``, ``"fake"``."""
        ...

    @property
    def model(self) -> str:
        """The model in use (an ollama tag or a .gguf path/name)."""
        ...

    async def generate(
        self,
        messages: Sequence[Message],
        schema: JsonSchema | None,
        on_chunk: ChunkCallback | None = None,
        plans: int = 1,
    ) -> BackendReply:
        """Produce the reply to ``messages``, constrained to ``schema`` when given.

        ``plans`` is how many agents' plans the reply carries (a batch): token budgets scale
        with it so a batch reply is not cut short. Raises :class:`BackendError` for expected
        failures. Must be cancellable: the service
        cancels it on deadline, ticket cancellation and shutdown.
        """
        ...

    async def probe(self) -> tuple[bool, str]:
        """Quick check that the backend can serve: ``(True, "")`` or ``(False, why)`` in words a
        user can act on. Never raises."""
        ...

    async def aclose(self) -> None:
        """Release connections / threads. Idempotent."""
        ...
