"""What the rest of the system needs to know about ollama without importing its client.

The ``ollama`` and ``httpx`` packages come with the ``ollama`` extra; the defaults, the host
lookup, the probe result and the wording of a missing model live here so that choosing a
backend (and saying why ollama is not used) works without them.
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass

DEFAULT_HOST = "127.0.0.1:11434"
DEFAULT_MODEL = "qwen2.5:1.5b"
INSTALL_HINT = "pip install 'esper-arbiter[ollama]'"


def ollama_host(host: str | None = None) -> str:
    """``host`` or ``OLLAMA_HOST`` or the default ``127.0.0.1:11434``."""
    return host or os.environ.get("OLLAMA_HOST") or DEFAULT_HOST


def ollama_client_available() -> bool:
    """True when the official ``ollama`` client (and its ``httpx``) can be imported."""
    return all(importlib.util.find_spec(m) is not None for m in ("ollama", "httpx"))


def not_pulled_message(model: str) -> str:
    """The one wording for a missing model, used by the log, the HUD and failures."""
    return f"model {model} is not pulled: run `ollama pull {model}`"


@dataclass(frozen=True, slots=True)
class OllamaProbe:
    """What a quick check of the server found."""

    reachable: bool
    model_present: bool
    reason: str = ""
    models: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return self.reachable and self.model_present
