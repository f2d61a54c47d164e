"""Draw the plots a benchmark's JSON asks for (see ``bench/_results.py``) as PNG files.

Kinds: ``line`` (x/y series, e.g. cost per agent against agents), ``bar`` (grouped bars over
the categories in ``x``), ``cdf`` (the empirical distribution of each series' samples ``y``),
``ccdf`` (the share of samples longer than x, on a log scale: tails such as p99 and the worst
frame stand out) and ``hist``. matplotlib comes with the ``bench`` extra; without it no plot
is drawn and the caller says so.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

Json = dict[str, Any]


def available() -> str | None:
    """None when matplotlib can draw here, else why not."""
    try:
        import matplotlib

        matplotlib.use("Agg")
    except ImportError:
        return "matplotlib is not installed (pip install 'esper-arbiter[bench]')"
    return None


def _finite(values: list[Any]) -> list[float]:
    return [float(v) for v in values if v is not None and math.isfinite(float(v))]


def draw(spec: Json, out_dir: Path) -> Path:
    """Draw one plot spec into ``out_dir``; returns the file written."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=100)
    kind = spec.get("kind", "line")
    series: list[Json] = list(spec.get("series", []))
    if kind == "line":
        for s in series:
            ax.plot(s["x"], [math.nan if v is None else v for v in s["y"]], marker="o",
                    label=s.get("label"))
    elif kind == "bar":
        cats = list(series[0]["x"]) if series else []
        width = 0.8 / max(1, len(series))
        for i, s in enumerate(series):
            xs = [j + (i - (len(series) - 1) / 2) * width for j in range(len(cats))]
            bars = ax.bar(xs, [0 if v is None else v for v in s["y"]], width,
                          label=s.get("label"))
            ax.bar_label(bars, labels=[_short(v) for v in s["y"]], fontsize=7, padding=1)
        ax.set_xticks(range(len(cats)), [str(c) for c in cats])
    elif kind in ("cdf", "ccdf", "hist"):
        for s in series:
            ys = sorted(_finite(s["y"]))
            if not ys:
                continue
            if kind == "cdf":
                ax.step(ys, [(i + 1) / len(ys) for i in range(len(ys))], where="post",
                        label=s.get("label"))
            elif kind == "ccdf":
                ax.step(ys, [(len(ys) - i) / len(ys) for i in range(len(ys))], where="post",
                        label=s.get("label"))
            else:
                ax.hist(ys, bins=60, alpha=0.5, label=s.get("label"))
        if kind == "cdf":
            ax.set_ylim(0.0, 1.01)
            ax.axhline(0.99, color="grey", linewidth=0.6, linestyle=":")
        elif kind == "ccdf":
            ax.set_yscale("log")
            ax.axhline(0.01, color="grey", linewidth=0.6, linestyle=":")
    else:
        raise ValueError(f"unknown plot kind {kind!r}")
    if spec.get("logx"):
        ax.set_xscale("log")
    if spec.get("logy"):
        ax.set_yscale("log")
    if kind == "bar":
        bottom, top = ax.get_ylim()  # headroom, so the legend covers no bar or label
        ax.set_ylim(bottom, top * (6.0 if spec.get("logy") else 1.3))
    ax.set_title(spec.get("title", ""))
    ax.set_xlabel(spec.get("xlabel", ""))
    ax.set_ylabel(spec.get("ylabel", ""))
    ax.grid(True, which="major", alpha=0.3)
    if any(s.get("label") for s in series):
        ax.legend(fontsize=8)
    fig.tight_layout()
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / str(spec["file"])
    fig.savefig(path)
    plt.close(fig)
    return path


def _short(v: Any) -> str:
    if v is None or not math.isfinite(float(v)):
        return "n/a"
    v = float(v)
    return f"{v:.0f}" if abs(v) >= 100 else f"{v:.1f}" if abs(v) >= 1 else f"{v:.2f}"
