"""The request queue's settings, and the environment variables they come from.

:class:`QueueConfig` says how many workers the service should start, whether background
(``priority <= PRIORITY_LOW``) requests are refused, the default total deadline and the
metrics windows; :meth:`QueueConfig.from_env` reads ``LLM_MAX_CONCURRENT_REQUESTS``,
``DISABLE_BACKGROUND_LLM`` and ``LLM_TIMEOUT_MS`` and never raises on a bad value (it is logged
and the default kept). ``systems.llm.service.ServiceConfig`` reads them through it.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass

log = logging.getLogger("esper_arbiter.systems.llm.request_queue")
"""The queue's logger: these lines are the queue's, wherever the code lives."""

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


@dataclass(frozen=True, slots=True)
class QueueConfig:
    """Queue and worker-pool settings; :meth:`from_env` reads the documented variables."""

    max_concurrent: int = 2
    """Worker pool size the service should start (``LLM_MAX_CONCURRENT_REQUESTS``)."""
    disable_background: bool = False
    """Refuse ``priority <= PRIORITY_LOW`` at submit (``DISABLE_BACKGROUND_LLM=1``)."""
    default_timeout_s: float = 60.0
    """Total deadline of a request without its own ``deadline_s`` (``LLM_TIMEOUT_MS``)."""
    supersede_running: bool = False
    """Also flag an agent's *running* request when it submits a new one."""
    metrics_window: int = 512
    """How many recent wait / service times the percentiles are computed over."""
    throughput_window_s: float = 60.0
    """Throughput is completions per second over this many recent seconds."""
    problems: tuple[str, ...] = ()
    """Environment values that were rejected (and replaced by defaults), in words."""

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> QueueConfig:
        """Read ``LLM_MAX_CONCURRENT_REQUESTS``, ``DISABLE_BACKGROUND_LLM``, ``LLM_TIMEOUT_MS``.

        A bad value never raises: it is logged, listed in ``problems`` and the default is kept.
        """
        env = os.environ if environ is None else environ
        problems: list[str] = []
        default = cls()

        max_concurrent = default.max_concurrent
        raw = env.get("LLM_MAX_CONCURRENT_REQUESTS")
        if raw is not None and raw.strip():
            try:
                max_concurrent = int(raw.strip())
                if max_concurrent < 1:
                    raise ValueError
            except ValueError:
                max_concurrent = default.max_concurrent
                problems.append(
                    f"LLM_MAX_CONCURRENT_REQUESTS={raw!r} is not a whole number >= 1; "
                    f"using {max_concurrent}"
                )

        disable = default.disable_background
        raw = env.get("DISABLE_BACKGROUND_LLM")
        if raw is not None:
            low = raw.strip().lower()
            if low in _TRUE:
                disable = True
            elif low in _FALSE:
                disable = False
            else:
                problems.append(
                    f"DISABLE_BACKGROUND_LLM={raw!r} is not one of 1/0/true/false/yes/no/on/off; "
                    "background requests stay enabled"
                )

        timeout_s = default.default_timeout_s
        raw = env.get("LLM_TIMEOUT_MS")
        if raw is not None and raw.strip():
            try:
                ms = float(raw.strip())
                if not math.isfinite(ms) or ms <= 0:
                    raise ValueError
                timeout_s = ms / 1000.0
            except ValueError:
                problems.append(
                    f"LLM_TIMEOUT_MS={raw!r} is not a positive number of milliseconds; "
                    f"using {int(timeout_s * 1000)}"
                )

        for p in problems:
            log.warning("queue config: %s", p)
        return cls(
            max_concurrent=max_concurrent,
            disable_background=disable,
            default_timeout_s=timeout_s,
            problems=tuple(problems),
        )
