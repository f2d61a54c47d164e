"""The one-way import rule between the rings, checked on the source.

``components`` imports nothing of ours; ``systems`` never imports ``game`` or pygame; the
engine-agnostic ``systems.planning`` and ``systems.llm`` never import esper; and nothing reaches
our code through the bare top-level names ``components`` / ``systems`` / ``game`` (a host game
has modules of its own with those names: we are ``esper_arbiter`` only).
"""

from __future__ import annotations

import ast
import pathlib
import re
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[2]
OURS = ("components", "systems", "game")


def _imports(path: pathlib.Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.extend(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
    return names


def _sources(*folders: str) -> list[pathlib.Path]:
    return [p for f in folders for p in (ROOT / f).rglob("*.py")]


def _ring(name: str) -> tuple[str, str]:
    """``esper_arbiter.systems.llm.prompt`` -> ("systems", "llm"); foreign -> (top, "")."""
    parts = name.split(".")
    if parts[0] == "esper_arbiter" and len(parts) > 1:
        return parts[1], parts[2] if len(parts) > 2 else ""
    return parts[0], ""


def test_nothing_imports_our_packages_by_their_bare_names() -> None:
    bare = [
        f"{p.relative_to(ROOT)}: {n}"
        for p in _sources(*OURS, "bench", "tests", "docs", "examples")
        for n in _imports(p) if n.split(".")[0] in OURS
    ]
    assert not bare, f"use esper_arbiter.<package> instead: {bare}"


def test_components_import_nothing_of_ours_but_components() -> None:
    for path in _sources("components"):
        for name in _imports(path):
            top, _ = _ring(name)
            assert top not in ("systems", "game", "pygame", "esper"), f"{path} imports {name}"


def test_systems_never_import_game_or_pygame_and_the_ai_never_imports_esper() -> None:
    for path in _sources("systems"):
        engine_agnostic = "planning" in path.parts or "llm" in path.parts
        for name in _imports(path):
            top, _ = _ring(name)
            assert top not in ("game", "pygame"), f"{path} imports {name}"
            if engine_agnostic:
                assert top != "esper", f"{path} imports {name}"


def test_importing_the_package_needs_esper_only() -> None:
    """``import esper_arbiter`` must not pull in pygame, ollama or llama.cpp: those are extras."""
    code = (
        "import sys, esper_arbiter\n"
        "heavy = sorted(m for m in ('pygame', 'ollama', 'llama_cpp', 'httpx', 'numpy')"
        " if m in sys.modules)\n"
        "print(','.join(heavy))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=ROOT)
    assert out.stdout.strip() == "", f"import esper_arbiter loaded {out.stdout.strip()}"


DEMO_WORDS = re.compile(r"(?i:companion|\bplayers?\b|breach|run_demo)|\bextract(ion)?\b")
"""hello_companion's words: its companion, its player, its breach door, its extract order and
its launcher. The engine and the shipped preset know none of them (they say agent, leader,
objective)."""


def test_the_library_holds_no_word_of_hello_companion() -> None:
    hits = [
        f"{p.relative_to(ROOT)}:{n}: {line.strip()}"
        for p in _sources("systems", "components")
        for n, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1)
        if DEMO_WORDS.search(line)
    ]
    assert not hits, "\n".join(hits)
