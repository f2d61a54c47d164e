"""OpenAI-compatible backend: ``POST {base_url}/chat/completions`` streamed over server-sent events.

One protocol reaches many servers: vLLM, llama.cpp's ``llama-server``, llama-cpp-python's
``python -m llama_cpp.server``, LM Studio, and OpenAI itself. That is how a studio points many
game instances at one shared GPU box. We speak the wire protocol with ``httpx`` directly (the
``openai`` extra) rather than the official client: we need the partial text of a cut stream,
per-read rather than total timeouts (the total deadline is the service's), no automatic retries
behind the service's back, and tolerance for servers that implement only part of the API.

Structured output degrades per server. We first send the snapshot's schema as
``response_format={"type": "json_schema", ...}``; a server that rejects that (HTTP 400 or 422, or
any status whose error names the response format: llama-cpp-python answers 500) is asked again,
at once, with ``{"type": "json_object", "schema": ...}`` (the llama.cpp extension, constrained by
a grammar), then with plain ``{"type": "json_object"}``. The step that worked is remembered for
the life of the backend, so only the first request pays for the probing. A server that rejects
``stream_options`` (needed for the final usage chunk) is asked again without it, also once.

Failures map to kinds:

==============================================  ==========================================
connection refused / DNS / connect timeout      CONNECTION (nothing listens at the URL)
HTTP 404 naming the model                       MODEL_MISSING
HTTP 401 / 403                                  HTTP_STATUS (says to check the API key)
another HTTP status, an ``error`` event         HTTP_STATUS
stream cut, or ended before a finish reason     CONNECTION, with the partial text kept
an event that is not JSON / not a chunk         CONNECTION, with the partial text kept
``httpx.TimeoutException`` (a read timeout)     TIMEOUT
==============================================  ==========================================

A cut stream is CONNECTION, not PARSE, even with part of the text in hand: the transport failed,
not the model, and the prefix (kept in the failure's ``raw``) must not be executed. Token counts
come from the final usage chunk (``stream_options={"include_usage": true}``) when the server
sends one; otherwise the completion is counted as one token per content chunk and the prompt as
unknown (0).

This module imports ``httpx`` at import time: import it only when the backend is chosen.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from typing import Any

import httpx

from esper_arbiter.components.llm import FailureKind
from esper_arbiter.systems.llm.backends.base import (
    BackendError,
    BackendReply,
    ChunkCallback,
    JsonSchema,
    Message,
)
from esper_arbiter.systems.llm.backends.openai_settings import (
    DEFAULT_CONTEXT_TOKENS,
    normalise_base_url,
)
from esper_arbiter.systems.llm.budget import ContextBudget

log = logging.getLogger(__name__)

FORMAT_MODES = ("json_schema", "json_object_schema", "json_object")
"""The structured-output requests tried in turn, strictest first (see the module docstring)."""

_FORMAT_WORDS = ("response_format", "json_schema", "json_object", "schema", "grammar")


class _Rejected(Exception):
    """The server refused a request option (the response format or ``stream_options``)."""


class OpenAIBackend:
    """Implements :class:`~systems.llm.backends.base.PlanBackend` against an OpenAI-compatible
    chat completions endpoint."""

    batch_mode = "turns"
    """Batches run as one conversation, a turn per member (``systems.llm.service``): servers
    that cache the common prompt prefix (llama.cpp's, llama-cpp-python's, vLLM with prefix
    caching) then read the shared situation once. ``LLM_BATCH_MODE=array`` for others."""

    def __init__(
        self,
        model: str,
        base_url: str,
        api_key: str | None = None,
        *,
        temperature: float = 0.2,
        max_tokens: int = 384,
        seed: int | None = None,
        repeat_penalty: float = 1.0,
        context_tokens: int = DEFAULT_CONTEXT_TOKENS,
        connect_timeout_s: float = 2.0,
    ) -> None:
        self._model = model
        self._base_url = normalise_base_url(base_url)
        self._api_key = api_key or None
        self.temperature = temperature
        self.max_tokens = max_tokens
        """Tokens one plan's answer may take; a batch of n plans gets n times as many."""
        self.seed = seed
        self.repeat_penalty = repeat_penalty
        """Sent to llama-cpp-python's server (recognised by its ``json_object`` + schema
        mode), whose own default is 1.1, so that both llama.cpp paths sample as the embedded
        backend does (1.0, chosen by ``bench/plan_quality.py --sweep``: a penalty discourages
        copying the prompt's option tiles and ids). Other servers get the OpenAI request
        unchanged."""
        self.context_tokens = context_tokens
        """The served model's context window, in tokens; prompts are trimmed to fit it."""
        self._connect_timeout_s = connect_timeout_s
        self._format_mode = 0
        """Index into :data:`FORMAT_MODES`: the strictest format this server has accepted."""
        self._stream_options = True
        self._client: httpx.AsyncClient | None = None

    @property
    def name(self) -> str:
        return "openai"

    @property
    def model(self) -> str:
        return self._model

    @property
    def base_url(self) -> str:
        return self._base_url

    @property
    def format_mode(self) -> str:
        """The structured-output request this server gets now (one of :data:`FORMAT_MODES`)."""
        return FORMAT_MODES[self._format_mode]

    def context_budget(self) -> ContextBudget:
        """:attr:`context_tokens` in all, :attr:`max_tokens` per plan for the answer (counted by
        estimate: the server's tokenizer is not reachable through the API)."""
        return ContextBudget(self.context_tokens, self.max_tokens)

    def _get_client(self) -> httpx.AsyncClient:
        # Created lazily so the connection pool belongs to the loop that uses it. Only connecting
        # has an httpx timeout: a reply may legitimately take long, and the total deadline is
        # the service's job.
        if self._client is None:
            headers = {"Accept": "text/event-stream, application/json"}
            if self._api_key:
                headers["Authorization"] = f"Bearer {self._api_key}"
            self._client = httpx.AsyncClient(
                headers=headers, timeout=httpx.Timeout(None, connect=self._connect_timeout_s)
            )
        return self._client

    # ------------------------------------------------------------------ requests

    def _body(self, messages: Sequence[Message], schema: JsonSchema | None,
              plans: int) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self._model,
            "messages": [dict(m) for m in messages],
            "stream": True,
            "temperature": self.temperature,
            "max_tokens": self.max_tokens * max(1, plans),
        }
        if self._stream_options:
            body["stream_options"] = {"include_usage": True}
        if self.seed is not None:
            body["seed"] = self.seed
        if schema is not None:
            mode = self.format_mode
            if mode == "json_schema":
                body["response_format"] = {
                    "type": "json_schema",
                    "json_schema": {"name": "plan", "schema": dict(schema), "strict": True},
                }
            elif mode == "json_object_schema":
                body["response_format"] = {"type": "json_object", "schema": dict(schema)}
                body["repeat_penalty"] = self.repeat_penalty
            else:
                body["response_format"] = {"type": "json_object"}
        return body

    async def generate(
        self,
        messages: Sequence[Message],
        schema: JsonSchema | None,
        on_chunk: ChunkCallback | None = None,
        plans: int = 1,
    ) -> BackendReply:
        # Each rejected option is dropped for good, so this loop runs at most a few times, and
        # only on the first requests to a server.
        while True:
            mode = self._format_mode
            body = self._body(messages, schema, plans)
            try:
                return await self._stream(body, mode, on_chunk)
            except _Rejected as exc:
                log.info("%s at %s: %s", self.name, self._base_url, exc)

    async def _stream(self, body: dict[str, Any], mode: int,
                      on_chunk: ChunkCallback | None) -> BackendReply:
        """Send one request (``body``, built with format ``mode``) and read its stream."""
        client = self._get_client()
        url = f"{self._base_url}/chat/completions"
        start = time.monotonic()
        first: float | None = None
        parts: list[str] = []
        pieces = 0
        finish = ""
        done = False
        usage: dict[str, Any] = {}
        try:
            async with client.stream("POST", url, json=body) as response:
                if response.status_code != 200:
                    await response.aread()
                    raise self._status_error(response, body, mode)
                if "text/event-stream" not in response.headers.get("content-type", ""):
                    # The server ignored stream=True and answered with one JSON document.
                    await response.aread()
                    return self._whole_reply(response.text, start, on_chunk)
                async for line in response.aiter_lines():
                    event = _event_data(line)
                    if event is None:
                        continue
                    if event == "[DONE]":
                        done = True
                        break
                    chunk = self._decode(event, "".join(parts))
                    if isinstance(chunk.get("usage"), dict):
                        usage = chunk["usage"]
                    for choice in chunk.get("choices") or ():
                        if not isinstance(choice, dict) or choice.get("index", 0) != 0:
                            continue
                        delta = choice.get("delta") or {}
                        text = delta.get("content") if isinstance(delta, dict) else None
                        if isinstance(text, str) and text:
                            if first is None:
                                first = time.monotonic() - start
                            parts.append(text)
                            pieces += 1
                            if on_chunk is not None:
                                on_chunk(text)
                        finish = choice.get("finish_reason") or finish
        except (BackendError, _Rejected):
            raise
        except httpx.ConnectError as exc:
            raise BackendError(
                FailureKind.CONNECTION,
                f"no OpenAI-compatible server at {self._base_url} ({exc or type(exc).__name__})",
            ) from None
        except httpx.TimeoutException as exc:
            raise BackendError(
                FailureKind.TIMEOUT,
                f"the server at {self._base_url} timed out ({type(exc).__name__})",
                "".join(parts),
            ) from None
        except (httpx.TransportError, httpx.StreamError) as exc:
            received = "".join(parts)
            if not finish:
                raise BackendError(
                    FailureKind.CONNECTION,
                    f"connection to {self._base_url} lost mid-reply after {len(received)} chars "
                    f"({type(exc).__name__}: {exc})",
                    received,
                ) from None
            done = True  # the reply was finished; only the closing events were lost
        text = "".join(parts)
        if not done and not finish:
            raise BackendError(
                FailureKind.CONNECTION,
                f"the stream from {self._base_url} ended before the reply was done "
                f"({len(text)} chars received)",
                text,
            )
        total = time.monotonic() - start
        return BackendReply(
            text=text,
            prompt_tokens=_int(usage.get("prompt_tokens")),
            completion_tokens=_int(usage.get("completion_tokens")) or pieces,
            first_chunk_s=first,
            prompt_eval_s=first,
            eval_s=(total - first) if first is not None else None,
            total_s=total,
            done_reason=finish,
        )

    def _decode(self, event: str, received: str) -> dict[str, Any]:
        """One stream event as a chunk; an ``error`` event or garbage becomes a BackendError."""
        try:
            chunk = json.loads(event)
        except ValueError:
            chunk = None
        if not isinstance(chunk, dict):
            raise BackendError(
                FailureKind.CONNECTION,
                f"the server at {self._base_url} sent a malformed stream event after "
                f"{len(received)} chars: {event[:80]!r}",
                received,
            )
        if "error" in chunk:
            raise BackendError(
                FailureKind.HTTP_STATUS,
                f"the server at {self._base_url} reported an error mid-reply: "
                f"{_error_text(chunk)}",
                received,
            )
        return chunk

    def _whole_reply(self, raw: str, start: float, on_chunk: ChunkCallback | None) -> BackendReply:
        """A non-streamed chat completion (``{"choices": [{"message": ...}], "usage": ...}``)."""
        try:
            doc = json.loads(raw)
            choice = doc["choices"][0]
            text = choice["message"]["content"] or ""
        except (ValueError, KeyError, IndexError, TypeError):
            raise BackendError(
                FailureKind.CONNECTION,
                f"the server at {self._base_url} answered with something that is not a chat "
                f"completion: {raw[:80]!r}",
            ) from None
        if not isinstance(text, str):
            text = str(text)
        if text and on_chunk is not None:
            on_chunk(text)
        total = time.monotonic() - start
        usage = doc.get("usage") if isinstance(doc.get("usage"), dict) else {}
        return BackendReply(
            text=text,
            prompt_tokens=_int(usage.get("prompt_tokens")),
            completion_tokens=_int(usage.get("completion_tokens")),
            first_chunk_s=total if text else None,
            total_s=total,
            done_reason=str(choice.get("finish_reason") or ""),
        )

    def _status_error(self, response: httpx.Response, body: dict[str, Any],
                      mode: int) -> Exception:
        """The exception for a non-200 answer: :class:`_Rejected` when an option we can drop
        was refused (the caller retries without it), else a :class:`BackendError`. ``mode`` is
        the format the refused request used: concurrent refusals of one mode step down once."""
        status = response.status_code
        error = _error_text(_json_or_text(response.text))
        lowered = error.lower()
        if "stream_options" in body and "stream_options" in lowered:
            self._stream_options = False
            return _Rejected(f"HTTP {status} for stream_options ({error[:120]}); "
                             "not sending it from now on")
        if "response_format" in body and mode < len(FORMAT_MODES) - 1 and (
            status in (400, 422) or any(w in lowered for w in _FORMAT_WORDS)
        ):
            self._format_mode = max(self._format_mode, mode + 1)
            return _Rejected(f"HTTP {status} for response_format {FORMAT_MODES[mode]} "
                             f"({error[:120]}); using {self.format_mode} from now on")
        if status == 404 and "model" in lowered:
            return BackendError(FailureKind.MODEL_MISSING, self.missing_message())
        if status in (401, 403):
            return BackendError(
                FailureKind.HTTP_STATUS,
                f"the server at {self._base_url} answered HTTP {status}: {error} (check the "
                "API key, OPENAI_API_KEY)")
        hint = " (is the base URL right? it usually ends in /v1)" if status == 404 else ""
        return BackendError(
            FailureKind.HTTP_STATUS,
            f"the server at {self._base_url} answered HTTP {status}: {error}{hint}")

    def missing_message(self, served: Sequence[str] = ()) -> str:
        """The one wording for a model the server does not serve."""
        also = f"; it serves {', '.join(served)}" if served else ""
        return f"model {self._model} is not served at {self._base_url}{also}"

    # ------------------------------------------------------------------ checks

    async def models(self) -> tuple[str, ...]:
        """The model ids ``GET {base_url}/models`` lists. Raises :class:`BackendError`."""
        client = self._get_client()
        try:
            response = await client.get(f"{self._base_url}/models")
        except httpx.ConnectError:
            raise BackendError(FailureKind.CONNECTION,
                               f"no OpenAI-compatible server at {self._base_url}") from None
        except httpx.TimeoutException:
            raise BackendError(FailureKind.TIMEOUT,
                               f"the server at {self._base_url} did not answer") from None
        except httpx.HTTPError as exc:
            raise BackendError(FailureKind.CONNECTION,
                               f"{self._base_url}: {type(exc).__name__}: {exc}") from None
        if response.status_code != 200:
            error = _error_text(_json_or_text(response.text))
            key = " (check the API key, OPENAI_API_KEY)" \
                if response.status_code in (401, 403) else ""
            raise BackendError(FailureKind.HTTP_STATUS,
                               f"the server at {self._base_url} answered HTTP "
                               f"{response.status_code} for /models: {error}{key}")
        doc = _json_or_text(response.text)
        data = doc.get("data") if isinstance(doc, dict) else None
        if not isinstance(data, list):
            raise BackendError(FailureKind.HTTP_STATUS,
                               f"the server at {self._base_url} sent no model list")
        return tuple(str(m["id"]) for m in data if isinstance(m, dict) and "id" in m)

    async def probe(self) -> tuple[bool, str]:
        try:
            served = await self.models()
        except BackendError as exc:
            return False, exc.message
        except Exception as exc:
            return False, f"{self._base_url}: {type(exc).__name__}: {exc}"
        if self._model in served:
            return True, ""
        return False, self.missing_message(served)

    async def aclose(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()


def _event_data(line: str) -> str | None:
    """The payload of an SSE ``data:`` line; ``None`` for blank lines, comments and other
    fields (``event:``, ``id:``, ``retry:``)."""
    if not line.startswith("data:"):
        return None
    return line[5:].strip()


def _json_or_text(raw: str) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return raw


def _error_text(doc: Any) -> str:
    """The message of an error answer, whichever shape the server uses: OpenAI's
    ``{"error": {"message": ...}}``, ``{"error": "..."}``, FastAPI's ``{"detail": ...}``,
    vLLM's ``{"message": ...}`` or plain text."""
    if isinstance(doc, dict):
        error = doc.get("error", doc)
        if isinstance(error, dict):
            for key in ("message", "detail", "error"):
                if error.get(key):
                    return _one_line(str(error[key]))
            return _one_line(json.dumps(error))
        return _one_line(str(error))
    return _one_line(str(doc)) or "(no message)"


def _one_line(text: str) -> str:
    line = " ".join(text.split())
    return line if len(line) <= 300 else line[:297] + "..."


def _int(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


__all__ = ["FORMAT_MODES", "OpenAIBackend"]
