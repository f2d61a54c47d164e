"""A scripted, in-process backend for tests and benchmarks: canned replies, delays, faults.

Each call to :meth:`FakeBackend.generate` takes the next :class:`FakeReply` from the script (the
last one repeats once the script runs out) and plays it: wait ``delay_s``, stream ``text`` in
``chunks`` pieces ``chunk_delay_s`` apart, then either return it or raise ``error``. A reply can
also ``hang`` forever (until cancelled), which is how deadline handling is tested.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from esper_arbiter.systems.llm.backends.base import BackendReply, ChunkCallback, JsonSchema, Message
from esper_arbiter.systems.llm.budget import ContextBudget


@dataclass(frozen=True, slots=True)
class FakeReply:
    """One scripted answer."""

    text: str = ""
    delay_s: float = 0.0
    """Before the first chunk."""
    chunks: int = 1
    chunk_delay_s: float = 0.0
    error: BaseException | None = None
    """Raised after the text has streamed (a :class:`BackendError` or anything else)."""
    hang: bool = False
    """Never answer: wait until cancelled."""
    prompt_tokens: int = 0
    completion_tokens: int = 0


@dataclass(slots=True)
class FakeCall:
    """What one ``generate`` call received."""

    messages: list[dict[str, str]]
    schema: JsonSchema | None
    started_at: float
    cancelled: bool = False
    finished: bool = False


ReplySource = Sequence[FakeReply | str] | Callable[[Sequence[Message]], FakeReply | str]


class FakeBackend:
    """Implements :class:`~esper_arbiter.systems.llm.backends.base.PlanBackend` from a script."""

    def __init__(
        self,
        replies: ReplySource = (),
        *,
        name: str = "fake",
        model: str = "fake-model",
        online: bool = True,
        offline_reason: str = "",
        keep_calls: int = 1000,
        context: ContextBudget | None = None,
    ) -> None:
        self._source = replies
        self._context = context
        self._index = 0
        self._name = name
        self._model = model
        self._online = online
        self._offline_reason = offline_reason
        self.calls: deque[FakeCall] = deque(maxlen=keep_calls)
        """The most recent ``keep_calls`` calls (bounded so long benchmarks don't grow)."""
        self.active = 0
        self.max_active = 0
        self.closed = False

    def context_budget(self) -> ContextBudget | None:
        """The context window to fit prompts to, if the test gave one."""
        return self._context

    @property
    def name(self) -> str:
        return self._name

    @property
    def model(self) -> str:
        return self._model

    def _next(self, messages: Sequence[Message]) -> FakeReply:
        item: FakeReply | str
        if callable(self._source):
            item = self._source(messages)
        else:
            script = self._source
            if not script:
                item = FakeReply(text='{"steps": [{"act": "Scan"}]}')
            else:
                item = script[min(self._index, len(script) - 1)]
                self._index += 1
        return FakeReply(text=item) if isinstance(item, str) else item

    async def generate(
        self,
        messages: Sequence[Message],
        schema: JsonSchema | None,
        on_chunk: ChunkCallback | None = None,
        plans: int = 1,
    ) -> BackendReply:
        reply = self._next(messages)
        call = FakeCall([dict(m) for m in messages], schema, time.monotonic())
        self.calls.append(call)
        self.active += 1
        self.max_active = max(self.max_active, self.active)
        start = time.monotonic()
        first: float | None = None
        try:
            if reply.delay_s:
                await asyncio.sleep(reply.delay_s)
            if reply.hang:
                await asyncio.Event().wait()
            pieces = _split(reply.text, max(1, reply.chunks))
            for i, piece in enumerate(pieces):
                if i and reply.chunk_delay_s:
                    await asyncio.sleep(reply.chunk_delay_s)
                if first is None:
                    first = time.monotonic() - start
                if on_chunk is not None:
                    on_chunk(piece)
            if reply.error is not None:
                raise reply.error
            call.finished = True
            total = time.monotonic() - start
            return BackendReply(
                text=reply.text,
                prompt_tokens=reply.prompt_tokens,
                completion_tokens=reply.completion_tokens or max(1, len(reply.text) // 4),
                first_chunk_s=first,
                total_s=total,
                eval_s=total - (first or 0.0) or None,
                done_reason="stop",
            )
        except asyncio.CancelledError:
            call.cancelled = True
            raise
        finally:
            self.active -= 1

    async def probe(self) -> tuple[bool, str]:
        return self._online, self._offline_reason

    async def aclose(self) -> None:
        self.closed = True


def _split(text: str, n: int) -> list[str]:
    if n <= 1 or len(text) <= 1:
        return [text]
    size = max(1, -(-len(text) // n))
    return [text[i : i + size] for i in range(0, len(text), size)]
