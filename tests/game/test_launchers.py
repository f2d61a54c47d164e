"""The demo's launchers never force a headless SDL driver.

``make demo``, ``run_demo.py``, ``python -m esper_arbiter.game`` and the ``hello-companion``
console script must open a real window on a desktop; only the tests (``tests/conftest.py``)
and the ``test`` target choose SDL's dummy drivers for themselves.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from esper_arbiter.game import frontend_cli
from esper_arbiter.game.cli import main

ROOT = Path(__file__).resolve().parents[2]
SDL_VARS = ("SDL_VIDEODRIVER", "SDL_AUDIODRIVER")


def _make_env() -> dict[str, str]:
    """This process's environment without SDL settings (conftest sets them) or make's own."""
    return {k: v for k, v in os.environ.items() if k not in SDL_VARS and not k.startswith("MAKE")}


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_make_demo_does_not_force_a_dummy_video_driver(tmp_path: Path) -> None:
    """Run the demo recipe with ``PY`` replaced by a command that prints what the program
    would see in ``SDL_VIDEODRIVER`` (the rest of the recipe line becomes a comment)."""
    venv = tmp_path / "venv"
    probe = "printenv SDL_VIDEODRIVER SDL_AUDIODRIVER || echo unset; true #"
    done = subprocess.run(
        ["make", "-s", "-C", str(ROOT), "demo", f"VENV={venv}", "-o", f"{venv}/.installed",
         f"PY={probe}"],
        env=_make_env(), capture_output=True, text=True, timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "unset", (
        f"`make demo` hands the program SDL settings {done.stdout.split()}: a desktop user "
        "would get an invisible window")


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_make_test_chooses_the_dummy_driver_for_itself(tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    done = subprocess.run(
        ["make", "-s", "-n", "-C", str(ROOT), "test", f"VENV={venv}", "-o",
         f"{venv}/.installed"],
        env=_make_env(), capture_output=True, text=True, timeout=60,
    )
    assert done.returncode == 0, done.stderr
    pytest_line = next(line for line in done.stdout.splitlines() if "-m pytest" in line)
    assert "SDL_VIDEODRIVER=dummy" in pytest_line


def test_no_launcher_sets_an_sdl_driver() -> None:
    """The programs a user starts do not set SDL's driver (the window module only reads it)."""
    launchers = [ROOT / "run_demo.py", ROOT / "game" / "__main__.py", ROOT / "game" / "cli.py",
                 ROOT / "game" / "app.py"]
    for path in launchers:
        text = path.read_text(encoding="utf-8")
        assert 'environ["SDL_VIDEODRIVER"]' not in text, path
        assert "setdefault(\"SDL_VIDEODRIVER\"" not in text, path
    scripts = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    assert "esper_arbiter.game.cli:main" in scripts


def test_the_window_path_sees_the_users_driver(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without --headless, the CLI reaches the window with the environment the user gave it:
    no dummy driver appears on the way."""
    for var in SDL_VARS:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("DISPLAY", ":4242")
    seen: list[str | None] = []

    def fake_window(*_args: object, **_kwargs: object) -> int:
        seen.append(os.environ.get("SDL_VIDEODRIVER"))
        return 0

    monkeypatch.setattr(frontend_cli, "_window", fake_window)
    assert main(["--backend", "none", "--seconds", "1"]) == 0
    assert seen == [None]
