"""How untrusted model output is named in one-line messages (log, HUD, the model's retry hint):
``MoveTo(x=6, y=4)`` for a raw dict or a typed step, values clipped and control characters
escaped, so a hostile or broken reply cannot flood or break a line."""

from __future__ import annotations

from esper_arbiter.components.actions import ActionStep, describe_step


def typename(v: object) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "a boolean"
    if isinstance(v, str):
        return "a string"
    if isinstance(v, (list, tuple)):
        return "a list"
    if isinstance(v, dict):
        return "an object"
    if isinstance(v, int):
        return "an integer"
    if isinstance(v, float):
        return "a number"
    return type(v).__name__


def safe_repr(v: object) -> str:
    """``repr(v)``, also for an int too long to print (Python refuses past 4300 digits)."""
    try:
        return repr(v)
    except ValueError:
        return f"<a {v.bit_length() * 30103 // 100000 + 1}-digit number>" if isinstance(
            v, int) else f"<{type(v).__name__}>"


def clip(s: str, n: int = 24) -> str:
    """``s`` cut to ``n`` characters, control characters escaped: a model's text goes into
    one-line messages (log, HUD), where a newline in a tool name would break the line."""
    if not s.isprintable():
        s = "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii")
                    for c in s)
    return s if len(s) <= n else s[: n - 3] + "..."


def fmt_value(v: object) -> str:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return clip(safe_repr(v), 16)
    if isinstance(v, float):
        return f"{v:g}"
    return clip(safe_repr(v), 16)


def describe_raw(raw: dict[object, object]) -> str:
    """``MoveTo(x=6, y=4)`` for an untrusted dict, clipped so a huge value stays readable."""
    act = raw.get("act")
    name = clip(act) if isinstance(act, str) else "?"
    args = [f"{clip(k if isinstance(k, str) else safe_repr(k), 16)}={fmt_value(v)}"
            for k, v in list(raw.items())[:6] if k != "act"]
    if len(raw) > 7:
        args.append("...")
    return f"{name}({', '.join(args)})"


def describe_typed(step: ActionStep) -> str:
    try:
        return describe_step(step)
    except TypeError:  # a host's extra tool whose step is not a dataclass
        return repr(step)
