"""The background plan service's settings: :class:`ServiceConfig` and the environment
variables :meth:`ServiceConfig.from_env` reads (the table is in :mod:`systems.llm.service`).

A malformed value is never fatal: it is logged, listed in ``problems`` and replaced by the
default, so a typo in a launcher script costs a warning, not the game.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from esper_arbiter.systems.llm.queue_config import QueueConfig

log = logging.getLogger("esper_arbiter.systems.llm.service")

ENV_TIMEOUT_MS = "LLM_TIMEOUT_MS"
ENV_MAX_CONCURRENT = "LLM_MAX_CONCURRENT_REQUESTS"
ENV_DISABLE_BACKGROUND = "DISABLE_BACKGROUND_LLM"
ENV_MAX_BATCH_SIZE = "LLM_MAX_BATCH_SIZE"
ENV_BATCH_LATENCY_TARGET_MS = "LLM_BATCH_LATENCY_TARGET_MS"
ENV_BATCH_MODE = "LLM_BATCH_MODE"
BATCH_MODES = ("auto", "array", "turns", "parallel")
DEFAULT_TIMEOUT_S = 60.0
DEFAULT_MAX_CONCURRENT = 2
DEFAULT_MAX_BATCH_SIZE = 4
DEFAULT_BATCH_LATENCY_TARGET_S = 20.0


@dataclass(frozen=True, slots=True)
class ServiceConfig:
    """Tunables of :class:`LlmPlanService`. :meth:`from_env` reads the documented variables."""

    timeout_s: float = DEFAULT_TIMEOUT_S
    """Total budget per request (from submission) unless the request carries its own."""
    max_concurrent: int = DEFAULT_MAX_CONCURRENT
    """Worker pool size: backend calls (single or batched) running at once."""
    disable_background: bool = False
    """Refuse ``priority <= PRIORITY_LOW`` requests at submit (REFUSED)."""
    max_batch_size: int = DEFAULT_MAX_BATCH_SIZE
    """Most agents planned in one prompt; 1 turns batching off."""
    batch_latency_target_s: float = DEFAULT_BATCH_LATENCY_TARGET_S
    """A batch slower than this halves the adaptive batch size."""
    batch_mode: str = "auto"
    """``"array"``, ``"turns"``, ``"parallel"`` or ``"auto"`` (the backend's ``batch_mode``
    attribute, else ``"array"``); see the module docstring."""
    use_schema: bool = True
    """Hand the backend the snapshot's JSON schema (structured output)."""
    recent_limit: int = 64
    """How many requests :meth:`LlmPlanService.status` keeps for the HUD timeline."""
    timeline_window_s: float = 60.0
    """The timeline's rolling window (records and concurrency percentage)."""
    probe_on_start: bool = True
    """Check the backend once at start so the HUD can say early that it is offline."""
    warm_up: bool = False
    """At start, let a backend that can (``warm_up(messages)``) load its model and read the
    fixed system prompt, so the first plan does not pay for either (llama.cpp keeps the
    prompt prefix cached). Off by default; the demo turns it on for the embedded model."""
    shutdown_timeout_s: float = 5.0
    problems: tuple[str, ...] = field(default=(), compare=False)
    """Environment values that were rejected (the defaults were kept), in words."""

    @classmethod
    def from_env(
        cls, env: Mapping[str, str] | None = None, **overrides: Any
    ) -> ServiceConfig:
        """Config from the environment (table in the module docstring). A malformed value is
        logged, listed in ``problems`` and replaced by the default, never fatal.
        ``overrides`` win over the environment."""
        env = os.environ if env is None else env
        queue = QueueConfig.from_env(env)
        problems = list(queue.problems)
        values: dict[str, Any] = {
            "timeout_s": queue.default_timeout_s,
            "max_concurrent": queue.max_concurrent,
            "disable_background": queue.disable_background,
        }
        raw = env.get(ENV_MAX_BATCH_SIZE)
        if raw is not None and raw.strip():
            try:
                n = int(raw.strip())
                if n < 1:
                    raise ValueError
                values["max_batch_size"] = n
            except ValueError:
                problems.append(f"{ENV_MAX_BATCH_SIZE}={raw!r} is not a whole number >= 1; "
                                f"using {DEFAULT_MAX_BATCH_SIZE}")
        raw = env.get(ENV_BATCH_LATENCY_TARGET_MS)
        if raw is not None and raw.strip():
            try:
                ms = float(raw.strip())
                if not math.isfinite(ms) or ms <= 0:
                    raise ValueError
                values["batch_latency_target_s"] = ms / 1000.0
            except ValueError:
                problems.append(
                    f"{ENV_BATCH_LATENCY_TARGET_MS}={raw!r} is not a positive number of "
                    f"milliseconds; using {int(DEFAULT_BATCH_LATENCY_TARGET_S * 1000)}")
        raw = env.get(ENV_BATCH_MODE)
        if raw is not None and raw.strip():
            if raw.strip().lower() in BATCH_MODES:
                values["batch_mode"] = raw.strip().lower()
            else:
                problems.append(f"{ENV_BATCH_MODE}={raw!r} is not one of "
                                f"{', '.join(BATCH_MODES)}; using auto")
        for p in problems[len(queue.problems):]:
            log.warning("LLM service config: %s", p)
        values["problems"] = tuple(problems)
        values.update(overrides)
        return cls(**values)

    def queue_config(self) -> QueueConfig:
        """The request queue's settings."""
        return QueueConfig(
            max_concurrent=self.max_concurrent,
            disable_background=self.disable_background,
            default_timeout_s=self.timeout_s,
        )
