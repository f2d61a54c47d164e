"""Parallel decoding of several plans in one llama.cpp context (``batch_mode="parallel"``).

A batch's members share a long prompt prefix (system prompt, shared situation) and differ in
a short suffix (each member's own lines). :class:`MultiSeqGenerator` decodes the shared prefix
once into sequence 0 of a unified KV cache, copies it to the other members' sequences
(``llama_memory_seq_cp``: the cells are shared, not duplicated), decodes every suffix, then
advances all live sequences together, **one token each per** ``llama_decode`` **call**. On a
CPU one step of four sequences costs little more than a step of one: the weights are read
once per step. Each sequence is sampled under its own JSON grammar (the member's schema,
compiled the way ``create_chat_completion(response_format=...)`` compiles it) with the same
sampler chain llama-cpp-python uses for single requests, and each finishes on its own (end of
generation token or ``max_tokens``); its reply is handed on the moment it finishes.

The pure sizing rule (:func:`layout`) is separate from the llama.cpp side so it can be tested
without a model. Everything here runs on the embedded backend's worker thread.
"""

from __future__ import annotations

import codecs
import ctypes
import importlib
import json
import math
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from esper_arbiter.systems.llm.backends.base import JsonSchema


@dataclass(frozen=True, slots=True)
class Layout:
    """How a batch of tokenized prompts sits in one context."""

    prefix: int
    """Tokens every prompt starts with (decoded once), at most ``min(len) - 1``."""
    suffixes: tuple[int, ...]
    """Each member's remaining prompt tokens (at least 1: its logits start its answer)."""
    need: int
    """Cells the batch needs: the prefix once, each suffix and each answer."""
    problem: str = ""
    """Why the batch cannot run in parallel here (``""``: it can)."""

    @property
    def fits(self) -> bool:
        return not self.problem


def common_prefix(prompts: Sequence[Sequence[int]]) -> int:
    """Length of the longest token prefix all ``prompts`` share."""
    if not prompts:
        return 0
    first = prompts[0]
    n = min(len(p) for p in prompts)
    for i in range(n):
        t = first[i]
        if any(p[i] != t for p in prompts[1:]):
            return i
    return n


def layout(prompts: Sequence[Sequence[int]], max_tokens: int, n_ctx: int,
           n_seq_max: int) -> Layout:
    """Sizing of a parallel batch: prefix + sum(suffix + answer) must fit ``n_ctx`` cells and
    the members must fit ``n_seq_max`` sequences; ``problem`` says otherwise, in words."""
    if not prompts or any(len(p) == 0 for p in prompts):
        return Layout(0, (), 0, "an empty prompt")
    prefix = max(0, min(common_prefix(prompts), min(len(p) for p in prompts) - 1))
    suffixes = tuple(len(p) - prefix for p in prompts)
    need = prefix + sum(suffixes) + max_tokens * len(prompts)
    problem = ""
    if len(prompts) > n_seq_max:
        problem = f"{len(prompts)} members but the context holds {n_seq_max} sequences"
    elif need > n_ctx:
        problem = (f"{len(prompts)} members need {need} tokens (prefix {prefix}, suffixes "
                   f"{sum(suffixes)}, answers {max_tokens} each); the context holds {n_ctx}")
    return Layout(prefix, suffixes, need, problem)


@dataclass(frozen=True, slots=True)
class SeqResult:
    """One member's finished answer."""

    text: str
    tokens: int
    prompt_tokens: int
    finish: str
    """``"stop"`` (end of generation), ``"length"`` (``max_tokens``) or ``"cancelled"``."""
    first_s: float | None
    """Seconds from the batch's start to this member's first token."""
    end_s: float
    """Seconds from the batch's start to its last token."""
    prompt_s: float
    """Seconds the batch spent reading prompts before this member's first token."""


Emit = Callable[[int, str], None]
Done = Callable[[int, SeqResult], None]


class Stopped(Exception):
    """The whole batch was cancelled between steps."""


class ParallelUnfit(Exception):
    """This batch cannot be decoded in parallel here (too big for the context, too many
    members, no usable chat template): nothing was generated; plan it another way."""


class _Seq:
    __slots__ = ("decoder", "first", "last", "n_gen", "parts", "pos", "prompt", "sampler",
                 "seq_id")

    def __init__(self, seq_id: int, prompt: Sequence[int], sampler: Any) -> None:
        self.seq_id = seq_id
        self.prompt = prompt
        self.sampler = sampler
        self.decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self.parts: list[str] = []
        self.n_gen = 0
        self.pos = 0
        self.last = 0
        self.first: float | None = None


class _Sampler:
    """One member's sampling: the unconstrained chain first, then a check of the chosen token
    alone against the grammar, and only when it fails a second pass with the grammar over the
    whole vocabulary (llama.cpp's own ``common_sampler`` does the same). Applying a JSON grammar
    to all ~49k tokens costs about as much as a decode step of this model; most tokens a
    schema-prompted model picks are legal, so most steps skip it. The token is drawn from the
    same truncated, grammar-masked distribution either way."""

    def __init__(self, lc: Any, chain: Any, grammar: Any, n_vocab: int) -> None:
        import numpy as np

        self._lc = lc
        self.chain = chain
        self.grammar = grammar
        self._n = n_vocab
        self._data = (lc.llama_token_data * n_vocab)()
        self._ids = np.arange(n_vocab, dtype=np.intc)
        self._view = np.ctypeslib.as_array(self._data)
        self._arr = lc.llama_token_data_array(data=self._data, size=n_vocab, selected=-1,
                                              sorted=False)
        self._one = (lc.llama_token_data * 1)()
        self._one_arr = lc.llama_token_data_array(data=self._one, size=1, selected=-1,
                                                  sorted=False)
        self.resampled = 0

    def _fill(self, ctx: Any, idx: int) -> None:
        import numpy as np

        logits = np.ctypeslib.as_array(self._lc.llama_get_logits_ith(ctx, idx),
                                       shape=(self._n,))
        v = self._view
        v["id"] = self._ids
        v["logit"] = logits
        v["p"] = 0.0
        self._arr.size = self._n
        self._arr.selected = -1
        self._arr.sorted = False

    def _pick(self) -> int:
        self._lc.llama_sampler_apply(self.chain.sampler, ctypes.byref(self._arr))
        return int(self._data[self._arr.selected].id)

    def sample(self, ctx: Any, idx: int) -> int:
        lc = self._lc
        self._fill(ctx, idx)
        token = self._pick()
        if self.grammar is not None:
            one = self._one[0]
            one.id, one.logit, one.p = token, 1.0, 0.0
            self._one_arr.size, self._one_arr.selected = 1, -1
            lc.llama_sampler_apply(self.grammar, ctypes.byref(self._one_arr))
            if not math.isfinite(self._one[0].logit):
                self.resampled += 1
                self._fill(ctx, idx)
                lc.llama_sampler_apply(self.grammar, ctypes.byref(self._arr))
                token = self._pick()
            lc.llama_sampler_accept(self.grammar, token)
        lc.llama_sampler_accept(self.chain.sampler, token)
        return token

    def close(self) -> None:
        self.chain.close()
        if self.grammar is not None:
            self._lc.llama_sampler_free(self.grammar)
            self.grammar = None


class MultiSeqGenerator:
    """A llama.cpp context with ``n_seq_max`` sequences beside a ``llama_cpp.Llama``'s own
    (same model, unified KV cache). Not thread-safe: use it from one worker thread."""

    def __init__(self, llm: Any, *, n_ctx: int, n_seq_max: int, n_threads: int,
                 n_batch: int = 512, n_threads_batch: int | None = None) -> None:
        import llama_cpp

        _internals: Any = importlib.import_module("llama_cpp._internals")
        self._lc = llama_cpp
        self._llm = llm
        params = llama_cpp.llama_context_default_params()
        params.n_ctx = n_ctx
        params.n_batch = n_batch
        params.n_ubatch = n_batch
        params.n_seq_max = n_seq_max
        params.kv_unified = True
        params.n_threads = n_threads
        # This context replaces the Llama's, so its thread counts are the ones that hold.
        params.n_threads_batch = n_threads_batch if n_threads_batch is not None else n_threads
        params.no_perf = True
        self._ctx = _internals.LlamaContext(model=llm._model, params=params, verbose=False)
        # The Llama's own single requests move into this context (as sequence 0): singles and
        # parallel batches then share one cached prompt prefix. Llama keeps its bookkeeping of
        # what sequence 0 holds (input_ids[:n_tokens]); run() reads and restores it.
        old, llm._ctx = llm._ctx, self._ctx
        llm.n_tokens = 0
        llm._requires_eval = True
        old.close()
        self.n_ctx = int(llama_cpp.llama_n_ctx(self._ctx.ctx))
        self.n_seq_max = n_seq_max
        self.n_batch = n_batch
        self._batch = _internals.LlamaBatch(n_tokens=n_batch, embd=0, n_seq_max=1,
                                            verbose=False)
        self._vocab = llm._model.vocab
        self._n_vocab = llm.n_vocab()
        self._cached: list[int] = []
        """What sequence 0 holds (the Llama's last prompt and reply, or a batch's prefix)."""

    def close(self) -> None:
        self._batch.close()
        self._ctx.close()

    # ------------------------------------------------------------------ prompts

    def tokenize(self, prompt: str) -> list[int]:
        return list(self._llm.tokenize(prompt.encode("utf-8"), add_bos=False, special=True))

    def grammar_of(self, schema: JsonSchema | None, json_mode: bool) -> Any:
        """The member's grammar as ``create_chat_completion`` would build it (``None``:
        unconstrained)."""
        from llama_cpp import llama_grammar

        if schema is not None:
            try:
                return llama_grammar.LlamaGrammar.from_json_schema(json.dumps(dict(schema)),
                                                                   verbose=False)
            except Exception:  # the same fallback llama-cpp-python takes
                return llama_grammar.LlamaGrammar.from_string(llama_grammar.JSON_GBNF,
                                                              verbose=False)
        if json_mode:
            return llama_grammar.LlamaGrammar.from_string(llama_grammar.JSON_GBNF, verbose=False)
        return None

    def _sampler(self, grammar: Any, temperature: float, repeat_penalty: float,
                 seed: int) -> _Sampler:
        """The chain ``Llama._init_sampler`` builds for a single request, with the grammar
        kept apart (see :class:`_Sampler`)."""
        _internals: Any = importlib.import_module("llama_cpp._internals")
        s = _internals.LlamaSampler()
        if repeat_penalty != 1.0:
            s.add_penalties(self._n_vocab, 64, repeat_penalty, 0.0, 0.0)
        if temperature <= 0.0:
            s.add_greedy()
        else:
            s.add_top_k(40)
            s.add_top_p(0.95, 1)
            s.add_min_p(0.05, 1)
            s.add_temp(temperature)
            s.add_dist(seed)
        g = None
        if grammar is not None:
            g = self._lc.llama_sampler_init_grammar(
                self._vocab, grammar._grammar.encode("utf-8"), grammar._root.encode("utf-8"))
            if not g:
                s.close()
                raise ValueError("llama.cpp refused the member's grammar")
        return _Sampler(self._lc, s, g, self._n_vocab)

    # ------------------------------------------------------------------ generation

    def run(
        self,
        prompts: Sequence[list[int]],
        grammars: Sequence[Any],
        *,
        max_tokens: int,
        temperature: float,
        repeat_penalty: float,
        seed: int,
        emit: Emit,
        done: Done,
        cancel: threading.Event,
        stopped: Sequence[threading.Event],
    ) -> list[SeqResult]:
        """Generate every member's answer; ``done(k, result)`` as each finishes, ``emit(k,
        text)`` per piece. ``stopped[k]`` ends member ``k`` alone (finish ``"cancelled"``);
        ``cancel`` ends the batch (raises :class:`Stopped`). Check :func:`layout` first."""
        lc = self._lc
        start = time.monotonic()
        plan = layout(prompts, max_tokens, self.n_ctx, self.n_seq_max)
        if not plan.fits:
            raise ValueError(plan.problem)
        mem = self._ctx.memory
        llm = self._llm
        self._cached = [int(t) for t in llm.input_ids[: llm.n_tokens]]
        prefix = list(prompts[0][: plan.prefix])
        keep = min(common_prefix([self._cached, prefix]), max(0, plan.prefix - 1))
        for sid in range(1, self.n_seq_max):
            lc.llama_memory_seq_rm(mem, sid, 0, -1)
        if not lc.llama_memory_seq_rm(mem, 0, keep, -1):
            lc.llama_memory_clear(mem, True)
            keep = 0
        self._cached = prefix[:keep]
        seqs = [_Seq(k, p, self._sampler(g, temperature, repeat_penalty, seed + k))
                for k, (p, g) in enumerate(zip(prompts, grammars, strict=True))]
        results: dict[int, SeqResult] = {}
        prompt_s = 0.0
        try:
            # 1. the shared prefix, once, into sequence 0
            self._decode_plain([(t, keep + i, 0, False) for i, t in enumerate(prefix[keep:])],
                               cancel)
            self._cached = prefix
            for s in seqs[1:]:
                lc.llama_memory_seq_cp(mem, 0, s.seq_id, 0, plan.prefix)
            # 2. every suffix (chunks of n_batch); sample each member from its last token
            items: list[tuple[int, int, int, bool]] = []
            owner: list[_Seq | None] = []
            for s in seqs:
                tail = s.prompt[plan.prefix:]
                for i, t in enumerate(tail):
                    last = i == len(tail) - 1
                    items.append((t, plan.prefix + i, s.seq_id, last))
                    owner.append(s if last else None)
                s.pos = len(s.prompt)
            for lo in range(0, len(items), self.n_batch):
                chunk = items[lo: lo + self.n_batch]
                self._decode(chunk, cancel)
                prompt_s = time.monotonic() - start
                for i, ready in enumerate(owner[lo: lo + self.n_batch]):
                    if ready is not None:
                        self._take(ready, i, max_tokens, start, prompt_s, emit, done, results)
            # 3. all live sequences, one token each per decode
            while True:
                live = [s for s in seqs if s.seq_id not in results]
                for s in live:
                    if stopped[s.seq_id].is_set():
                        self._finish(s, "cancelled", start, prompt_s, done, results)
                live = [s for s in live if s.seq_id not in results]
                if not live:
                    break
                self._decode([(s.last, s.pos - 1, s.seq_id, True) for s in live], cancel)
                for i, s in enumerate(live):
                    self._take(s, i, max_tokens, start, prompt_s, emit, done, results)
                time.sleep(0)  # hand the GIL to the game between steps
        finally:
            for s in seqs:
                s.sampler.close()
            for sid in range(1, self.n_seq_max):
                lc.llama_memory_seq_rm(mem, sid, 0, -1)
            if not lc.llama_memory_seq_rm(mem, 0, len(self._cached), -1):
                lc.llama_memory_clear(mem, True)
                self._cached = []
            llm.input_ids[: len(self._cached)] = self._cached
            llm.n_tokens = len(self._cached)
            llm._requires_eval = True
        return [results[k] for k in range(len(seqs))]

    def _take(self, s: _Seq, idx: int, max_tokens: int, start: float, prompt_s: float,
              emit: Emit, done: Done, results: dict[int, SeqResult]) -> None:
        """Sample member ``s`` from batch row ``idx``; finish it on end of generation or
        ``max_tokens``."""
        lc = self._lc
        token = s.sampler.sample(self._ctx.ctx, idx)
        if lc.llama_vocab_is_eog(self._vocab, token):
            self._finish(s, "stop", start, prompt_s, done, results)
            return
        if s.first is None:
            s.first = time.monotonic() - start
        s.n_gen += 1
        s.last = token
        s.pos += 1
        text = s.decoder.decode(_piece(self._llm, token))
        if text:
            s.parts.append(text)
            emit(s.seq_id, text)
        if s.n_gen >= max_tokens:
            self._finish(s, "length", start, prompt_s, done, results)

    def _finish(self, s: _Seq, why: str, start: float, prompt_s: float, done: Done,
                results: dict[int, SeqResult]) -> None:
        tail = s.decoder.decode(b"", final=True)
        if tail:
            s.parts.append(tail)
        r = SeqResult("".join(s.parts), s.n_gen, len(s.prompt), why, s.first,
                      time.monotonic() - start, prompt_s)
        results[s.seq_id] = r
        if s.seq_id:
            self._lc.llama_memory_seq_rm(self._ctx.memory, s.seq_id, 0, -1)
        done(s.seq_id, r)

    def _decode_plain(self, items: list[tuple[int, int, int, bool]],
                      cancel: threading.Event) -> None:
        for lo in range(0, len(items), self.n_batch):
            self._decode(items[lo: lo + self.n_batch], cancel)

    def _decode(self, items: Sequence[tuple[int, int, int, bool]],
                cancel: threading.Event) -> None:
        """One ``llama_decode`` of (token, position, sequence, wants logits) rows."""
        if cancel.is_set():
            raise Stopped()
        if not items:
            return
        b = self._batch.batch
        for i, (tok, pos, seq, logits) in enumerate(items):
            b.token[i] = tok
            b.pos[i] = pos
            b.n_seq_id[i] = 1
            b.seq_id[i][0] = seq
            b.logits[i] = logits
        b.n_tokens = len(items)
        rc = self._lc.llama_decode(self._ctx.ctx, b)
        if rc != 0:
            raise RuntimeError(f"llama_decode returned {rc} for {len(items)} tokens")


def chat_formatter(llm: Any) -> Callable[[list[dict[str, str]]], str] | None:
    """The prompt renderer ``create_chat_completion`` uses for ``llm`` when that is the GGUF's
    own chat template (``None`` otherwise: the parallel path then is not offered)."""
    from llama_cpp import llama_chat_format

    template = getattr(llm, "metadata", {}).get("tokenizer.chat_template")
    if not template or getattr(llm, "chat_format", None) != "chat_template.default":
        return None
    model = llm._model
    eos, bos = llm.token_eos(), llm.token_bos()
    fmt = llama_chat_format.Jinja2ChatFormatter(
        template=template,
        eos_token=model.token_get_text(eos) if eos != -1 else "",
        bos_token=model.token_get_text(bos) if bos != -1 else "",
    )

    def render(messages: list[dict[str, str]]) -> str:
        prompt: str = fmt(messages=messages).prompt  # type: ignore[arg-type]
        return prompt

    return render


def _piece(llm: Any, token: int) -> bytes:
    """The token's bytes (special tokens rendered as text, as the single path streams them)."""
    out: bytes = llm.detokenize([token])
    return out
