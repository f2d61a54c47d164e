"""Ollama backend: ``ollama.AsyncClient.chat(stream=True)`` with structured output.

The service hands us the snapshot's JSON schema, which goes to ollama as ``format=`` so the model
can only write plans whose tools, target ids and coordinates exist. We stream the reply, noting
when the first chunk arrives, and read token counts and durations from the final ``done`` chunk.

Errors from the client and httpx map to failure kinds:

===========================================  ==========================================
``ConnectionError`` / ``httpx.ConnectError``   CONNECTION (nothing listens at the host)
``ResponseError`` with status 404              MODEL_MISSING ("model X is not pulled: ...")
``ResponseError`` with another status          HTTP_STATUS
``{"error": ...}`` line inside the stream      HTTP_STATUS (MODEL_MISSING if "not found")
connection cut / stream ends before ``done``   CONNECTION, with the partial text kept
``httpx.TimeoutException``                     TIMEOUT
===========================================  ==========================================

A stream cut mid-reply is CONNECTION, not PARSE, even when part of the text arrived: the model
did nothing wrong, the transport did, and the partial text (kept in the failure's ``raw``) is a
prefix we must not try to execute. The total deadline is not ours to enforce: the service wraps
:meth:`OllamaBackend.generate` in :func:`asyncio.timeout` (httpx timeouts are per read).
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any, TextIO

import httpx
import ollama

from esper_arbiter.components.llm import FailureKind
from esper_arbiter.systems.llm.backends.base import (
    BackendError,
    BackendReply,
    ChunkCallback,
    JsonSchema,
    Message,
)
from esper_arbiter.systems.llm.backends.ollama_settings import (
    DEFAULT_MODEL,
    OllamaProbe,
    not_pulled_message,
    ollama_host,
)
from esper_arbiter.systems.llm.budget import ContextBudget, measure

log = logging.getLogger(__name__)

def _normalise(model: str) -> str:
    return model if ":" in model else f"{model}:latest"


OLLAMA_DEFAULT_CTX = 2048
"""The context ollama gives a model when a request names none."""

PullProgress = Callable[[str, int | None, int | None], None]
"""``(status, completed_bytes, total_bytes)`` for each streamed pull update."""


class OllamaBackend:
    """Implements :class:`~systems.llm.backends.base.PlanBackend` against an ollama server."""

    def __init__(
        self,
        model: str = DEFAULT_MODEL,
        host: str | None = None,
        *,
        temperature: float = 0.2,
        num_predict: int = 384,
        seed: int | None = None,
        keep_alive: str | float | None = "10m",
        connect_timeout_s: float = 2.0,
        num_ctx: int = 8192,
    ) -> None:
        self._model = model
        self.num_ctx = num_ctx
        """The largest context we ask ollama for; prompts are trimmed to fit it."""
        self._host = ollama_host(host)
        self.temperature = temperature
        self.num_predict = num_predict
        self.seed = seed
        self.keep_alive = keep_alive
        self._connect_timeout_s = connect_timeout_s
        self._client: ollama.AsyncClient | None = None

    @property
    def name(self) -> str:
        return "ollama"

    @property
    def model(self) -> str:
        return self._model

    @property
    def host(self) -> str:
        return self._host

    def _get_client(self) -> ollama.AsyncClient:
        # Created lazily so the httpx pool belongs to the loop that uses it. Only the connect
        # phase gets an httpx timeout: reads may legitimately take long, and the total deadline
        # is the service's job.
        if self._client is None:
            self._client = ollama.AsyncClient(
                host=self._host,
                timeout=httpx.Timeout(None, connect=self._connect_timeout_s),
            )
        return self._client

    def context_budget(self) -> ContextBudget:
        """Up to :attr:`num_ctx` tokens, ``num_predict`` of them per plan for the answer
        (counted by estimate: ollama's tokenizer is not reachable from the client)."""
        return ContextBudget(self.num_ctx, self.num_predict)

    def _options(self, plans: int = 1, prompt_tokens: int = 0) -> dict[str, Any]:
        options: dict[str, Any] = {
            "temperature": self.temperature,
            "num_predict": self.num_predict * max(1, plans),
        }
        need = prompt_tokens + options["num_predict"]
        if need > OLLAMA_DEFAULT_CTX:
            # ollama silently cuts a prompt longer than its context (2048 unless told), so ask
            # for a window that holds this one: the next power of two, at most num_ctx.
            options["num_ctx"] = min(self.num_ctx, 1 << (need - 1).bit_length())
        if self.seed is not None:
            options["seed"] = self.seed
        return options

    async def generate(
        self,
        messages: Sequence[Message],
        schema: JsonSchema | None,
        on_chunk: ChunkCallback | None = None,
        plans: int = 1,
    ) -> BackendReply:
        client = self._get_client()
        start = time.monotonic()
        first: float | None = None
        parts: list[str] = []
        final: ollama.ChatResponse | None = None
        try:
            stream = await client.chat(
                model=self._model,
                messages=[dict(m) for m in messages],
                stream=True,
                format=dict(schema) if schema is not None else None,
                options=self._options(plans, measure(messages)),
                keep_alive=self.keep_alive,
            )
            try:
                async for part in stream:
                    text = part.message.content or ""
                    if text:
                        if first is None:
                            first = time.monotonic() - start
                        parts.append(text)
                        if on_chunk is not None:
                            on_chunk(text)
                    if part.done:
                        final = part
                        break
            finally:
                await _aclose(stream)
        except ollama.ResponseError as exc:
            raise self._response_error(exc, "".join(parts)) from None
        except (httpx.ConnectError, ConnectionError) as exc:
            raise BackendError(
                FailureKind.CONNECTION, f"no ollama at {self._host} ({exc})"
            ) from None
        except httpx.TimeoutException as exc:
            raise BackendError(
                FailureKind.TIMEOUT, f"ollama at {self._host} timed out ({type(exc).__name__})",
                "".join(parts),
            ) from None
        except (httpx.TransportError, httpx.StreamError) as exc:
            received = "".join(parts)
            raise BackendError(
                FailureKind.CONNECTION,
                f"connection to ollama lost mid-reply after {len(received)} chars "
                f"({type(exc).__name__}: {exc})",
                received,
            ) from None
        except (json.JSONDecodeError, ValueError) as exc:  # malformed stream line (pydantic too)
            received = "".join(parts)
            raise BackendError(
                FailureKind.CONNECTION,
                f"ollama sent a malformed stream line after {len(received)} chars "
                f"({type(exc).__name__})",
                received,
            ) from None
        text = "".join(parts)
        if final is None:
            raise BackendError(
                FailureKind.CONNECTION,
                f"ollama's stream ended before the reply was done ({len(text)} chars received)",
                text,
            )
        return BackendReply(
            text=text,
            prompt_tokens=final.prompt_eval_count or 0,
            completion_tokens=final.eval_count or 0,
            first_chunk_s=first,
            load_s=_ns(final.load_duration),
            prompt_eval_s=_ns(final.prompt_eval_duration),
            eval_s=_ns(final.eval_duration),
            total_s=_ns(final.total_duration),
            done_reason=final.done_reason or "",
        )

    def _response_error(self, exc: ollama.ResponseError, partial: str) -> BackendError:
        error = str(exc.error)
        if exc.status_code == 404 or (exc.status_code == -1 and "not found" in error.lower()):
            return BackendError(FailureKind.MODEL_MISSING, not_pulled_message(self._model))
        if exc.status_code == -1:
            return BackendError(
                FailureKind.HTTP_STATUS, f"ollama reported an error mid-reply: {error}", partial
            )
        return BackendError(
            FailureKind.HTTP_STATUS, f"ollama answered HTTP {exc.status_code}: {error}", partial
        )

    async def check(self) -> OllamaProbe:
        """Is the server reachable, and is the model pulled? Never raises."""
        client = self._get_client()
        try:
            listing = await client.list()
        except (httpx.ConnectError, ConnectionError, httpx.TimeoutException):
            return OllamaProbe(False, False, f"no ollama at {self._host}")
        except ollama.ResponseError as exc:
            return OllamaProbe(False, False, f"ollama at {self._host} answered HTTP "
                               f"{exc.status_code}: {exc.error}")
        except Exception as exc:
            return OllamaProbe(False, False, f"ollama at {self._host}: {type(exc).__name__}: {exc}")
        names = tuple(m.model for m in listing.models if m.model)
        if _normalise(self._model) in {_normalise(n) for n in names}:
            return OllamaProbe(True, True, "", names)
        try:
            await client.show(self._model)
        except ollama.ResponseError as exc:
            if exc.status_code == 404:
                return OllamaProbe(True, False, not_pulled_message(self._model), names)
            return OllamaProbe(True, False, f"ollama show {self._model}: HTTP "
                               f"{exc.status_code}: {exc.error}", names)
        except Exception as exc:
            return OllamaProbe(True, False, f"ollama show {self._model}: "
                               f"{type(exc).__name__}: {exc}", names)
        return OllamaProbe(True, True, "", names)

    async def probe(self) -> tuple[bool, str]:
        result = await self.check()
        return result.ok, result.reason

    async def pull(self, progress: PullProgress | None = None) -> tuple[bool, str]:
        """Pull the model, reporting streamed progress. ``(True, "")`` or ``(False, why)``."""
        client = self._get_client()
        try:
            stream = await client.pull(self._model, stream=True)
            try:
                async for update in stream:
                    if progress is not None:
                        progress(update.status or "", update.completed, update.total)
            finally:
                await _aclose(stream)
        except (httpx.ConnectError, ConnectionError):
            return False, f"no ollama at {self._host}"
        except ollama.ResponseError as exc:
            return False, f"pull {self._model} failed: {exc.error}"
        except (httpx.TransportError, httpx.StreamError) as exc:
            return False, f"pull {self._model} interrupted: {type(exc).__name__}: {exc}"
        return True, ""

    async def aclose(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.close()  # type: ignore[no-untyped-call]


async def _aclose(stream: object) -> None:
    """Close an async generator stream (ends the HTTP response) if it can be closed."""
    aclose = getattr(stream, "aclose", None)
    if aclose is not None:
        await aclose()


def _ns(value: int | None) -> float | None:
    return None if value is None else value / 1e9


class TextProgressBar:
    """A one-line progress bar for :meth:`OllamaBackend.pull` (written to stderr)."""

    def __init__(self, label: str, stream: TextIO | None = None, width: int = 30) -> None:
        self._label = label
        self._stream = stream if stream is not None else sys.stderr
        self._width = width
        self._last = ""

    def __call__(self, status: str, completed: int | None, total: int | None) -> None:
        if total:
            done = min(1.0, (completed or 0) / total)
            filled = int(done * self._width)
            bar = "#" * filled + "-" * (self._width - filled)
            line = f"\r{self._label} [{bar}] {done * 100:5.1f}% {_mb(completed)}/{_mb(total)}"
        else:
            line = f"\r{self._label} {status}"
        line = line.ljust(len(self._last))
        self._last = line
        self._stream.write(line)
        self._stream.flush()

    def finish(self, message: str = "") -> None:
        self._stream.write(("\r" + message).ljust(len(self._last)) + "\n")
        self._stream.flush()


def _mb(n: int | None) -> str:
    return f"{(n or 0) / 1e6:.1f} MB"


def pull_model(
    model: str, host: str | None = None, progress: PullProgress | None = None
) -> tuple[bool, str]:
    """Pull ``model`` synchronously with a progress bar on stderr (startup / CLI only: blocks
    until the download ends)."""
    import asyncio

    backend = OllamaBackend(model, host)
    bar = TextProgressBar(f"pulling {model}") if progress is None else None

    async def run() -> tuple[bool, str]:
        try:
            return await backend.pull(progress or bar)
        finally:
            await backend.aclose()

    ok, reason = asyncio.run(run())
    if bar is not None:
        bar.finish(f"pulled {model}" if ok else f"pull failed: {reason}")
    return ok, reason
