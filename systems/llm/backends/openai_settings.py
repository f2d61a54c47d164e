"""What the rest of the system needs to know about OpenAI-compatible servers without ``httpx``.

The backend itself (:mod:`.openai_backend`) needs ``httpx`` (the ``openai`` extra); the
environment variables, the defaults and the URL checks live here so that choosing the backend,
and saying why it cannot be used, work without it.
"""

from __future__ import annotations

import importlib.util
from urllib.parse import urlsplit

ENV_BASE_URL = "OPENAI_BASE_URL"
ENV_API_KEY = "OPENAI_API_KEY"
ENV_MODEL = "OPENAI_MODEL"
EXAMPLE_BASE_URL = "http://127.0.0.1:8000/v1"
INSTALL_HINT = "pip install 'esper-arbiter[openai]'"
DEFAULT_CONTEXT_TOKENS = 4096
"""The context assumed for the served model (the API does not report it): llama.cpp servers
default to 4096 and most served models hold at least that."""


def openai_client_available() -> bool:
    """True when ``httpx``, which the backend speaks HTTP with, can be imported."""
    return importlib.util.find_spec("httpx") is not None


def normalise_base_url(url: str) -> str:
    """``url`` with a scheme (``http://`` when none is given), no trailing slash, and ``/v1``
    appended when it names only a host: every OpenAI-compatible server serves under ``/v1``."""
    text = url.strip()
    if "://" not in text:
        text = f"http://{text}"
    text = text.rstrip("/")
    if urlsplit(text).path in ("", "/"):
        text += "/v1"
    return text


def check_base_url(url: str) -> str:
    """``""`` when ``url`` (normalised) is an http(s) URL with a host, else what is wrong."""
    parts = urlsplit(normalise_base_url(url))
    if parts.scheme not in ("http", "https"):
        return f"expected an http:// or https:// URL, got {url!r}"
    if not parts.hostname:
        return f"no host in {url!r}"
    try:
        _ = parts.port  # raises ValueError for a port that is not a number
    except ValueError:
        return f"bad port in {url!r}"
    return ""


__all__ = [
    "DEFAULT_CONTEXT_TOKENS",
    "ENV_API_KEY",
    "ENV_BASE_URL",
    "ENV_MODEL",
    "EXAMPLE_BASE_URL",
    "INSTALL_HINT",
    "check_base_url",
    "normalise_base_url",
    "openai_client_available",
]
