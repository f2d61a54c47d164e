"""Model backends behind :class:`esper_arbiter.systems.llm.service.LlmPlanService`.

- :mod:`.base`: the :class:`PlanBackend` protocol, :class:`BackendReply`, :class:`BackendError`;
- :mod:`.ollama_backend`: an ollama server through ``ollama.AsyncClient`` (structured output);
- :mod:`.embedded_backend`: llama-cpp-python in-process (SmolLM2-135M by default);
- :mod:`.openai_backend`: any OpenAI-compatible chat completions server (vLLM, llama.cpp,
  LM Studio, ...) over ``httpx``, with :mod:`.openai_settings` usable without it;
- :mod:`.fake_backend`: scripted replies and faults for tests and benchmarks.

The ollama, openai and embedded modules import their client libraries at import time
(``ollama``, ``httpx``) or lazily (``llama_cpp``), so import them directly where needed.
"""

from esper_arbiter.systems.llm.backends.base import BackendError, BackendReply, PlanBackend

__all__ = ["BackendError", "BackendReply", "PlanBackend"]
