"""The embedded backend's parallel batches: several members' plans decoded together
(:mod:`.multiseq`), each reply handed to the service the moment it finishes.

:func:`run_parallel` runs on the embedded backend's worker thread (one generation at a time per
model, as for single requests); :func:`generate_parallel` is its loop-side face. The members are
planned in *waves*: with ``first_solo`` (the default, three members or more) the first member
runs alone, so its plan arrives after one plan's time as in ``turns`` mode, and the others then
run side by side; the shared prompt prefix stays in the KV cache between waves and batches.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from esper_arbiter.components.llm import FailureKind
from esper_arbiter.systems.llm.backends.base import (
    BackendError,
    BackendReply,
    JsonSchema,
    Message,
)
from esper_arbiter.systems.llm.backends.multiseq import (
    MultiSeqGenerator,
    ParallelUnfit,
    SeqResult,
    Stopped,
    chat_formatter,
    layout,
)

if TYPE_CHECKING:
    from esper_arbiter.systems.llm.backends.embedded_backend import EmbeddedBackend

log = logging.getLogger(__name__)

ReplyCallback = Callable[[int, BackendReply], None]
"""Receives member ``k``'s complete reply, on the service's event-loop thread."""
MemberChunk = Callable[[int, str], None]


def waves(n: int, first_solo: bool) -> list[list[int]]:
    """Member indices in the order they are decoded together: ``[[0], [1..n-1]]`` with
    ``first_solo`` and three members or more, else everyone at once."""
    if first_solo and n >= 3:
        return [[0], list(range(1, n))]
    return [list(range(n))]


def _reply(r: SeqResult, load_s: float, offset_s: float) -> BackendReply:
    """A member's :class:`BackendReply`; times count from the batch's start."""
    first = None if r.first_s is None else offset_s + r.first_s
    return BackendReply(
        text=r.text,
        prompt_tokens=r.prompt_tokens,
        completion_tokens=r.tokens,
        first_chunk_s=first,
        load_s=load_s,
        prompt_eval_s=offset_s + r.prompt_s,
        eval_s=(offset_s + r.end_s - first) if first is not None else None,
        total_s=offset_s + r.end_s,
        done_reason=r.finish,
    )


def open_generator(backend: EmbeddedBackend, llm: Any) -> MultiSeqGenerator | None:
    """The parallel context for a freshly loaded model (``None`` with ``parallel_seqs < 2``);
    it takes over the model's single requests too (see :class:`.multiseq.MultiSeqGenerator`)."""
    if backend.parallel_seqs < 2:
        return None
    try:
        return MultiSeqGenerator(llm, n_ctx=backend.n_ctx, n_seq_max=backend.parallel_seqs,
                                 n_threads=backend.n_threads, n_batch=backend.n_batch,
                                 n_threads_batch=backend.n_threads_batch)
    except (AttributeError, ImportError, TypeError) as exc:
        # The parallel context is built from llama-cpp-python's own internals (its
        # _internals module, Llama._ctx); a release that moved them must not cost the
        # model: batches then run as turns on the Llama's own context.
        log.warning("parallel batches are off: this llama-cpp-python's internals differ "
                    "(%s: %s); batches run as turns", type(exc).__name__, exc)
        return None


def run_parallel(
    backend: EmbeddedBackend,
    chats: Sequence[list[dict[str, str]]],
    schemas: Sequence[JsonSchema | None],
    emit: MemberChunk,
    deliver: ReplyCallback,
    cancel: threading.Event,
    stops: Sequence[threading.Event],
) -> list[BackendReply | None]:
    """Worker thread: the whole batch. Raises :class:`ParallelUnfit` before generating
    anything when it cannot run in parallel, :class:`Stopped` when cancelled."""
    start = time.monotonic()
    llm, load_s = backend._ensure_loaded()
    render = chat_formatter(llm)
    if render is None:
        raise ParallelUnfit("the model has no GGUF chat template to render member prompts")
    gen = backend._multiseq
    if gen is None:
        raise ParallelUnfit("the parallel context is off (parallel_seqs < 2)")
    prompts = [gen.tokenize(render(list(c))) for c in chats]
    plan = layout(prompts, backend.max_tokens, gen.n_ctx, gen.n_seq_max)
    if not plan.fits:
        raise ParallelUnfit(plan.problem)
    grammars = [gen.grammar_of(s, backend.json_mode) for s in schemas]
    out: list[BackendReply | None] = [None] * len(chats)
    seed = backend.seed if backend.seed is not None else int(time.time_ns() & 0x7FFFFFFF)
    for wave in waves(len(chats), backend.first_solo):
        if cancel.is_set():
            raise Stopped()
        offset = time.monotonic() - start
        live = [k for k in wave if not stops[k].is_set()]
        if not live:
            continue

        def done(i: int, r: SeqResult, live: list[int] = live, offset: float = offset) -> None:
            k = live[i]
            out[k] = reply = _reply(r, load_s, offset)
            deliver(k, reply)

        gen.run([prompts[k] for k in live], [grammars[k] for k in live],
                max_tokens=backend.max_tokens, temperature=backend.temperature,
                repeat_penalty=backend.repeat_penalty, seed=seed,
                emit=lambda i, text, live=live: emit(live[i], text),
                done=done, cancel=cancel, stopped=[stops[k] for k in live])
    return out


async def generate_parallel(
    backend: EmbeddedBackend,
    chats: Sequence[Sequence[Message]],
    schemas: Sequence[JsonSchema | None],
    on_chunk: MemberChunk | None,
    on_reply: ReplyCallback,
    stops: Sequence[threading.Event],
) -> list[BackendReply | None]:
    """Loop side of :func:`run_parallel`: ``on_chunk(k, text)`` and ``on_reply(k, reply)`` are
    called on the loop thread; setting ``stops[k]`` ends member ``k`` alone at the next step.
    Raises :class:`ParallelUnfit` (nothing generated), :class:`BackendError` (CANCELLED when
    stopped); cancelling the awaiting task stops the worker at its next step."""
    if backend._closed:
        raise BackendError(FailureKind.CANCELLED, "embedded backend is closed")
    loop = asyncio.get_running_loop()
    cancel = threading.Event()

    def post(fn: Callable[..., None] | None, *args: Any) -> None:
        if fn is not None and not cancel.is_set():
            with contextlib.suppress(RuntimeError):  # loop closed: nobody listens
                loop.call_soon_threadsafe(fn, *args)

    backend._cancels.add(cancel)
    future = loop.run_in_executor(
        backend._executor, run_parallel, backend, [[dict(m) for m in c] for c in chats],
        list(schemas), lambda k, t: post(on_chunk, k, t), lambda k, r: post(on_reply, k, r),
        cancel, list(stops),
    )
    try:
        return await future
    except asyncio.CancelledError:
        cancel.set()
        raise
    except Stopped:
        raise BackendError(FailureKind.CANCELLED, "generation stopped") from None
    finally:
        backend._cancels.discard(cancel)


__all__ = ["ParallelUnfit", "generate_parallel", "run_parallel", "waves"]
