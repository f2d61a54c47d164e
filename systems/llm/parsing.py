"""Turn whatever a language model wrote into a plan object, or say precisely why not.

Models wrap JSON in prose, code fences, ``<think>`` blocks and API envelopes, and small models
write almost-JSON (trailing commas, single quotes, bare keys). :func:`parse_plan_reply` tries a
fixed sequence of tiers, cheapest and strictest first, and stops at the first that yields a
*plan-shaped* value:

1. ``direct``    the whole reply is JSON;
2. ``fenced``    a fenced code block (```json ... ```) holds JSON;
3. ``envelope``  an API envelope (``{"message": {"content": ...}}``, ``{"response": ...}``, or
   an NDJSON stream of such lines) whose content is itself a reply, parsed recursively;
4. ``balanced``  the first balanced ``{...}`` / ``[...]`` span that decodes to a plan;
5. ``repair``    the same spans after tolerant repair (trailing commas, single quotes, bare
   keys, Python literals, ``//`` comments).

``<think>...</think>`` reasoning is stripped before any tier runs. Plan-shaped means: an object
with a ``steps`` list (or a ``plan`` list / object with ``steps``), a list of step objects, or a
single step object (``{"act": ...}``). Whether the steps are *legal* is the validator's business,
not the parser's.

The parser never raises: every outcome, including absurd input, is a :class:`ParseResult`.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

TIERS: tuple[str, ...] = ("direct", "fenced", "envelope", "balanced", "repair")
"""Tier names in the order they are tried (reported in :attr:`ParseResult.tried`)."""

MAX_REPLY_CHARS = 50_000
"""Longer replies are truncated before parsing, which bounds the parser's work."""

_MAX_CANDIDATES = 32
"""How many balanced spans the balanced / repair tiers look at, at most."""

_MAX_OPENERS = 64
"""How many opening brackets are tried as span starts (bounds the worst case)."""

_MAX_ENVELOPE_DEPTH = 3

_THINK_BLOCK = re.compile(r"<think(?:ing)?>.*?</think(?:ing)?>", re.IGNORECASE | re.DOTALL)
_THINK_CLOSE = re.compile(r"</think(?:ing)?>", re.IGNORECASE)
_THINK_OPEN = re.compile(r"<think(?:ing)?>", re.IGNORECASE)
_FENCE = re.compile(r"```[ \t]*([A-Za-z0-9_+-]*)[ \t]*\r?\n?(.*?)```", re.DOTALL)
_TRAILING_COMMA = re.compile(r",(\s*[}\]])")
_BARE_KEY = re.compile(r"([{,]\s*)([A-Za-z_][A-Za-z0-9_]*)(\s*:)")
_LINE_COMMENT = re.compile(r"(?m)^\s*//.*$")


@dataclass(frozen=True, slots=True)
class ParseResult:
    """Outcome of :func:`parse_plan_reply`.

    On success ``value`` is the plan object normalised to a dict with a ``steps`` list (other
    keys of the model's object, such as ``rationale``, are kept) and ``tier`` names the tier
    that found it. On failure ``value`` is ``None`` and ``error`` says what was wrong;
    ``tried`` always lists the tiers attempted, in order.
    """

    value: dict[str, Any] | None
    tier: str | None
    tried: tuple[str, ...]
    error: str = ""
    stripped_think: bool = False

    @property
    def ok(self) -> bool:
        return self.value is not None

    @property
    def steps(self) -> list[Any]:
        """The raw step objects (empty on failure)."""
        if self.value is None:
            return []
        steps = self.value.get("steps")
        return steps if isinstance(steps, list) else []


def parse_plan_reply(text: object) -> ParseResult:
    """Extract a plan object from a model reply. Never raises.

    ``text`` should be a string; anything else (``None``, bytes, numbers) is a parse failure
    (bytes are decoded as UTF-8 first, replacing bad sequences).
    """
    try:
        return _parse(text, depth=0)
    except Exception as exc:  # defensive: the contract is "never raises"
        return ParseResult(
            value=None,
            tier=None,
            tried=TIERS,
            error=f"parser error {type(exc).__name__}: {exc}",
        )


def _parse(text: object, depth: int) -> ParseResult:
    if isinstance(text, bytes | bytearray):
        text = bytes(text).decode("utf-8", errors="replace")
    if not isinstance(text, str):
        return ParseResult(None, None, (), f"reply is {type(text).__name__}, not text")
    if len(text) > MAX_REPLY_CHARS:
        text = text[:MAX_REPLY_CHARS]
    body, stripped = _strip_think(text)
    if not body.strip():
        what = "only <think> reasoning, no answer" if stripped else "empty reply"
        return ParseResult(None, None, (), what, stripped)

    tried: list[str] = []
    found_json_not_plan = False

    # 1. direct
    tried.append("direct")
    ok, decoded = _loads(body.strip())
    if ok:
        plan = _as_plan(decoded)
        if plan is not None:
            return ParseResult(plan, "direct", tuple(tried), "", stripped)
        found_json_not_plan = True

    # 2. fenced code blocks
    tried.append("fenced")
    for match in _FENCE.finditer(body):
        ok_fence, inner = _loads(match.group(2).strip())
        if ok_fence:
            plan = _as_plan(inner)
            if plan is not None:
                return ParseResult(plan, "fenced", tuple(tried), "", stripped)
            found_json_not_plan = True

    # 3. envelope (whole reply, or NDJSON lines of a streamed API response)
    tried.append("envelope")
    if depth < _MAX_ENVELOPE_DEPTH:
        content = _envelope_content(decoded) if ok and _is_envelope(decoded) else None
        if content is None:
            content = _ndjson_envelope_content(body)
        if content is not None:
            inner_result = _parse(content, depth + 1)
            if inner_result.value is not None:
                return ParseResult(
                    inner_result.value,
                    "envelope",
                    tuple(tried),
                    "",
                    stripped or inner_result.stripped_think,
                )

    # 4. balanced spans. A span nested in a span that is not valid JSON is skipped: a lone
    # step inside a broken plan is not the plan (repair gets the whole span instead).
    tried.append("balanced")
    spans = _balanced_spans(body)
    broken: list[tuple[int, int]] = []
    for start, end in spans:
        if any(b0 < start and end < b1 for b0, b1 in broken):
            continue
        ok_span, value = _loads(body[start : end + 1])
        if ok_span:
            plan = _as_plan(value)
            if plan is not None:
                return ParseResult(plan, "balanced", tuple(tried), "", stripped)
            found_json_not_plan = True
        else:
            broken.append((start, end))

    # 5. tolerant repair of the outermost spans
    tried.append("repair")
    outer = [body[s0 : e0 + 1] for s0, e0 in spans
             if not any(s1 < s0 and e0 < e1 for s1, e1 in spans)]
    for span in outer or _loose_spans(body):
        ok_span, value = _loads(_repair(span))
        if ok_span:
            plan = _as_plan(value)
            if plan is not None:
                return ParseResult(plan, "repair", tuple(tried), "", stripped)
            found_json_not_plan = True

    if found_json_not_plan:
        error = (
            "JSON found but it is not a plan (expected an object with a 'steps' list, "
            "or an array of step objects)"
        )
    elif spans or _loose_spans(body):
        error = "found {...} / [...] text but it is not valid JSON, even after repair"
    elif "{" in body or "[" in body:
        error = "JSON starts but never closes (reply cut off?), even after repair"
    else:
        error = "no JSON object or array in the reply"
    return ParseResult(None, None, tuple(tried), error, stripped)


def _strip_think(text: str) -> tuple[str, bool]:
    """Remove ``<think>`` blocks; also handle a lone ``</think>`` (the opening tag is sometimes
    part of the chat template, so only the closing tag reaches us) and an unclosed ``<think>``
    at the very start (reasoning cut off: nothing after it is an answer)."""
    stripped = False
    new = _THINK_BLOCK.sub("", text)
    if new != text:
        stripped = True
        text = new
    closes = list(_THINK_CLOSE.finditer(text))
    if closes:
        text = text[closes[-1].end():]
        stripped = True
    opened = _THINK_OPEN.search(text)
    if opened is not None and not text[: opened.start()].strip():
        text = ""
        stripped = True
    return text, stripped


def _loads(text: str) -> tuple[bool, Any]:
    if not text:
        return False, None
    try:
        return True, json.loads(text)
    except (ValueError, RecursionError):
        return False, None


def _is_step(obj: Any) -> bool:
    return isinstance(obj, dict) and isinstance(obj.get("act"), str)


def _as_plan(value: Any) -> dict[str, Any] | None:
    """Normalise a decoded JSON value to ``{"steps": [...], ...}``, or ``None`` if it is not
    plan-shaped."""
    if isinstance(value, list):
        if value and all(isinstance(v, dict) for v in value):
            return {"steps": value}
        return None
    if not isinstance(value, dict):
        return None
    steps = value.get("steps")
    if isinstance(steps, list):
        return dict(value)
    inner = value.get("plan")
    if isinstance(inner, list):
        out = {k: v for k, v in value.items() if k != "plan"}
        out["steps"] = inner
        return out
    if isinstance(inner, dict) and isinstance(inner.get("steps"), list):
        return dict(inner)
    if _is_step(value):
        return {"steps": [value]}
    return None


def _is_envelope(value: Any) -> bool:
    return isinstance(value, dict) and ("message" in value or "response" in value)


def _envelope_content(value: Any) -> str | None:
    """Text (or re-serialised JSON) held by an API envelope, else ``None``."""
    if not isinstance(value, dict):
        return None
    message = value.get("message")
    content: Any = None
    if isinstance(message, dict):
        content = message.get("content")
    elif "response" in value:
        content = value.get("response")
    if isinstance(content, str):
        return content
    if isinstance(content, dict | list):
        return json.dumps(content)
    return None


def _ndjson_envelope_content(body: str) -> str | None:
    """Concatenate the contents of an NDJSON stream of envelopes (a pasted /api/chat stream)."""
    lines = [ln for ln in body.splitlines() if ln.strip()]
    if len(lines) < 2:
        return None
    parts: list[str] = []
    for line in lines:
        ok, value = _loads(line.strip())
        if not ok or not _is_envelope(value):
            return None
        content = _envelope_content(value)
        if content is None and not value.get("done"):
            return None
        parts.append(content or "")
    return "".join(parts)


def _balanced_spans(text: str) -> list[tuple[int, int]]:
    """Balanced ``{...}`` / ``[...]`` spans in order of their start, brackets inside strings
    ignored. Nested spans are listed too, so ``{"answer": {"steps": [...]}}`` still yields the
    inner plan."""
    spans: list[tuple[int, int]] = []
    openers = 0
    for i, ch in enumerate(text):
        if ch not in "{[":
            continue
        openers += 1
        if openers > _MAX_OPENERS or len(spans) >= _MAX_CANDIDATES:
            break
        end = _match_close(text, i)
        if end is not None:
            spans.append((i, end))
    return spans


def _match_close(text: str, start: int) -> int | None:
    """Index of the bracket closing the one at ``start``, honouring both quote styles."""
    stack: list[str] = []
    quote: str | None = None
    escaped = False
    pairs = {"{": "}", "[": "]"}
    for j in range(start, len(text)):
        ch = text[j]
        if quote is not None:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == quote:
                quote = None
            continue
        if ch == '"' or (ch == "'" and stack and _single_quote_opens(text, j)):
            quote = ch
        elif ch in pairs:
            stack.append(pairs[ch])
        elif ch in "}]":
            if not stack or stack[-1] != ch:
                return None
            stack.pop()
            if not stack:
                return j
    return None


def _single_quote_opens(text: str, j: int) -> bool:
    """A single quote opens a string only where JSON expects a value or key (after one of
    ``{[,:`` and blanks), so apostrophes in prose ("don't") do not derail matching."""
    k = j - 1
    while k >= 0 and text[k] in " \t\r\n":
        k -= 1
    return k >= 0 and text[k] in "{[,:"


def _loose_spans(text: str) -> list[str]:
    """Fallback spans for repair when nothing balances: first opener to last closer."""
    first = min((p for p in (text.find("{"), text.find("[")) if p >= 0), default=-1)
    last = max(text.rfind("}"), text.rfind("]"))
    if first < 0 or last <= first:
        return []
    return [text[first : last + 1]]


def _repair(span: str) -> str:
    """Best-effort fixes of near-JSON written by small models."""
    text = _LINE_COMMENT.sub("", span)
    text = _single_to_double_quotes(text)
    text = _BARE_KEY.sub(r'\1"\2"\3', text)
    text = _replace_python_literals(text)
    text = _TRAILING_COMMA.sub(r"\1", text)
    return text


def _single_to_double_quotes(text: str) -> str:
    """Rewrite ``'...'`` strings as ``"..."`` strings (escaping inner double quotes), leaving
    double-quoted strings and apostrophes inside them untouched."""
    out: list[str] = []
    quote: str | None = None
    escaped = False
    for j, ch in enumerate(text):
        if quote is None:
            if ch == '"':
                quote = '"'
                out.append(ch)
            elif ch == "'" and _single_quote_opens(text, j):
                quote = "'"
                out.append('"')
            else:
                out.append(ch)
            continue
        if escaped:
            escaped = False
            out.append("'" if (quote == "'" and ch == "'" and out and out[-1] == "\\") else ch)
            continue
        if ch == "\\":
            escaped = True
            out.append(ch)
        elif ch == quote:
            quote = None
            out.append('"')
        elif quote == "'" and ch == '"':
            out.append('\\"')
        else:
            out.append(ch)
    return "".join(out)


_PY_LITERALS = {"True": "true", "False": "false", "None": "null"}
_PY_LITERAL_RE = re.compile(r"(?<![\"\w])(True|False|None)(?![\"\w])")


def _replace_python_literals(text: str) -> str:
    """``True``/``False``/``None`` outside strings -> JSON literals."""
    out: list[str] = []
    last = 0
    for start, end in _outside_string_ranges(text):
        out.append(text[last:start])
        out.append(_PY_LITERAL_RE.sub(lambda m: _PY_LITERALS[m.group(1)], text[start:end]))
        last = end
    out.append(text[last:])
    return "".join(out)


def _outside_string_ranges(text: str) -> list[tuple[int, int]]:
    ranges: list[tuple[int, int]] = []
    in_str = False
    escaped = False
    seg_start = 0
    for j, ch in enumerate(text):
        if in_str:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_str = False
                seg_start = j + 1
            continue
        if ch == '"':
            ranges.append((seg_start, j))
            in_str = True
    if not in_str:
        ranges.append((seg_start, len(text)))
    return ranges
