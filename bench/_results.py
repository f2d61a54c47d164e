"""A benchmark's figures as JSON (``--json PATH``), for ``bench/proof.py`` to render.

Every benchmark prints its figures for a person; with ``--json PATH`` it also writes them as
one JSON object, so the proof runner can put every benchmark into ``docs/BENCHMARKS.md`` and
draw its plots without parsing text. The object's shape (all keys optional but ``bench``):

    {"bench": "game_scale", "title": "...", "command": "python bench/game_scale.py ...",
     "summary": "one line", "targets": [{"name": ..., "met": true, "figure": "1.3x"}],
     "tables": [{"title": ..., "columns": [...], "rows": [[...], ...]}],
     "plots": [{"file": "scale.png", "kind": "line" | "bar" | "cdf" | "hist", "title": ...,
                "xlabel": ..., "ylabel": ..., "logx": false, "logy": false,
                "series": [{"label": ..., "x": [...], "y": [...]}]}],
     "notes": ["..."], "data": {...}}

``data`` holds raw figures for anyone who wants to recompute; the renderer ignores it.
"""

from __future__ import annotations

import argparse
import json
import math
import shlex
import statistics
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from _targets import Targets

Json = dict[str, Any]


def add_json_flag(parser: argparse.ArgumentParser) -> None:
    """Add ``--json PATH`` to a benchmark's parser."""
    parser.add_argument("--json", metavar="PATH", type=Path, default=None,
                        help="also write the figures as JSON to PATH (for bench/proof.py)")


def command_line(argv: Sequence[str] | None = None) -> str:
    """The command that reproduces this run (without ``--json``), as a user would type it."""
    args = list(sys.argv[1:] if argv is None else argv)
    out: list[str] = []
    skip = False
    for a in args:
        if skip:
            skip = False
            continue
        if a == "--json":
            skip = True
            continue
        if a.startswith("--json="):
            continue
        out.append(a)
    script = Path(sys.argv[0]).name
    return shlex.join(["python", f"bench/{script}", *out])


def median(values: Iterable[float]) -> float:
    """The median, NaN for no values (a figure that could not be measured stays visible)."""
    vals = [v for v in values if not math.isnan(v)]
    return statistics.median(vals) if vals else math.nan


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q`` quantile (0..1) by the nearest-rank rule; NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


class Results:
    """Collects one benchmark's figures and writes them as JSON (see module docstring)."""

    def __init__(self, bench: str, title: str, targets: Targets | None = None) -> None:
        self.doc: Json = {"bench": bench, "title": title, "command": command_line(),
                          "targets": [], "tables": [], "plots": [], "notes": [], "data": {}}
        self.targets = targets if targets is not None else Targets()

    def target(self, name: str, ok: bool, figure: str) -> bool:
        """Record a target in the tally (``--check``) and in the JSON, with its figure."""
        self.targets.met(name, ok)
        self.doc["targets"].append({"name": name, "met": bool(ok), "figure": figure})
        return bool(ok)

    def summary(self, text: str) -> None:
        self.doc["summary"] = text

    def table(self, title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        self.doc["tables"].append({"title": title, "columns": list(columns),
                                   "rows": [list(r) for r in rows]})

    def plot(self, file: str, kind: str, title: str, xlabel: str, ylabel: str,
             series: Sequence[Json], *, logx: bool = False, logy: bool = False) -> None:
        """A plot spec; ``series`` items are ``{"label", "x", "y"}`` (``cdf``/``hist``: only
        ``y``, the samples)."""
        self.doc["plots"].append({"file": file, "kind": kind, "title": title, "xlabel": xlabel,
                                  "ylabel": ylabel, "logx": logx, "logy": logy,
                                  "series": list(series)})

    def note(self, text: str) -> None:
        self.doc["notes"].append(text)

    def data(self, key: str, value: Any) -> None:
        self.doc["data"][key] = value

    def write(self, path: Path | None) -> None:
        """Write the JSON to ``path`` (nothing when ``None``)."""
        if path is None:
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.doc, indent=1, default=_jsonable) + "\n",
                        encoding="utf-8")


def _jsonable(value: object) -> object:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return str(value)


def fmt(value: float, digits: int = 2) -> str:
    """A figure for a table: fixed digits, ``n/a`` for NaN."""
    return "n/a" if math.isnan(value) else f"{value:,.{digits}f}"
