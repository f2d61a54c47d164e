"""Bad input from a user, end to end through ``run_demo.py``'s ``main()``: malformed scenario
files, unknown flag values, an unreachable ``OLLAMA_HOST`` or base URL, a GGUF path that does
not exist or is not a model, and a host entity missing components.

Each is either one clear line on stderr with exit status 2 (nothing started), or -- when the
game can go on without the model -- a round that plays on GOAP and the behaviour tree with the
reason on its first lines and on the HUD. Never a traceback.
"""

from __future__ import annotations

import json
from pathlib import Path

import esper
import pytest

from esper_arbiter.game.cli import main
from esper_arbiter.game.scenario import DEFAULT_SCENARIO
from tests.fixtures.fake_ollama import closed_port_host

FAST = ["--headless", "--tick-rate", "20", "--seconds", "1"]


def _one_line_error(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    code = main(argv)
    out, err = capsys.readouterr()
    assert code == 2, (out, err)
    assert "Traceback" not in err + out
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("run_demo.py: error: ")
    return lines[0]


def _standard() -> dict[str, object]:
    data: dict[str, object] = json.loads(Path(DEFAULT_SCENARIO).read_text(encoding="utf-8"))
    return data


def _with(**changes: object) -> dict[str, object]:
    data = _standard()
    for dotted, value in changes.items():
        node: dict[str, object] = data
        *path, last = dotted.split("__")
        for key in path:
            child = node[key]
            assert isinstance(child, dict)
            node = child
        node[last] = value
    return data


SCENARIOS = {
    "not_json": ("{ this is not json", "line 1"),
    "empty": ("", "scenario"),
    "top_level_list": ("[1, 2]", "object"),
    "width_a_string": (_with(map__width="wide"), "map.width"),
    "negative_height": (_with(map__height=-3), "map.height"),
    "huge_width": (_with(map__width=10**12), "map.width"),
    "player_on_a_wall": (_with(player__pos=[6, 4]), "player"),
    "player_off_the_map": (_with(player__pos=[99, 99]), "player"),
    "hp_nan": ('{"map": {"width": 20, "height": 10}, "player": {"hp": NaN}}', ""),
    "companions_not_a_list": (_with(companions={"a": 1}), "companions"),
    "unknown_order": (_with(autopilot__orders=[{"order": "dance", "at": 1}]), "order"),
}


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_a_malformed_scenario_is_one_line_naming_the_file(
    name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    content, fragment = SCENARIOS[name]
    path = tmp_path / f"{name}.json"
    path.write_text(content if isinstance(content, str) else json.dumps(content),
                    encoding="utf-8")
    line = _one_line_error(capsys, [*FAST, "--backend", "none", "--scenario", str(path)])
    assert str(path) in line and fragment in line


@pytest.mark.parametrize("argv", [
    ["--agents", "0"], ["--agents", "lots"], ["--agents", "100000"], ["--fps", "0"],
    ["--window", "10x"], ["--window", "0x0"], ["--llm-timeout-ms", "-5"],
    ["--llm-timeout-ms", "soon"], ["--llm-threads", "0"], ["--llm-fail-every", "-1"],
    ["--llm-delay", "inf"], ["--backend", "gpt5"], ["--tick-rate", "1e9"],
    ["--screenshot-every", "0", "shots"], ["--replay", "/nonexistent/run.jsonl"],
    ["--record", "/nonexistent/dir/run.jsonl"], ["--backend", "openai"],
    ["--backend", "openai", "--base-url", "ftp://host/v1", "--model", "m"],
], ids=lambda a: " ".join(a))
def test_an_unknown_or_unusable_flag_value_is_one_line(
    argv: list[str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for var in ("OPENAI_BASE_URL", "OPENAI_MODEL", "OPENAI_API_KEY"):
        monkeypatch.delenv(var, raising=False)
    _one_line_error(capsys, [*FAST, *argv])


def _plays_without_a_model(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    """The round plays (exit 0, an outcome line); returns stdout."""
    code = main(argv)
    out, err = capsys.readouterr()
    assert code == 0, (out, err)
    assert "Traceback" not in out + err
    assert out.splitlines()[-1].startswith("outcome: ")
    return out


def test_an_unreachable_ollama_host_plays_on_and_says_why(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    host = closed_port_host()
    monkeypatch.setenv("OLLAMA_HOST", host)
    out = _plays_without_a_model(capsys, [*FAST, "--backend", "ollama"])
    assert f"no ollama at {host}" in out.splitlines()[0] or f"no ollama at {host}" in out


@pytest.mark.parametrize("host", ["256.1.1.1:99999", "::::", "http://[bad", "localhost:notaport"])
def test_a_garbled_ollama_host_is_an_error_or_a_reason_never_a_traceback(
    host: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OLLAMA_HOST", host)
    _error_or_reason(capsys, [*FAST, "--backend", "ollama"], "ollama")


@pytest.mark.parametrize("url", ["http://not a url/v1", "http://[::1", "http://host:99999/v1"])
def test_a_garbled_base_url_is_an_error_or_a_reason_never_a_traceback(
    url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    _error_or_reason(capsys, [*FAST, "--backend", "openai", "--base-url", url, "--model", "m"],
                     "OpenAI")


def _error_or_reason(capsys: pytest.CaptureFixture[str], argv: list[str], first: str) -> None:
    code = main(argv)
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    if code == 2:
        assert len(err.strip().splitlines()) == 1 and "error" in err
    else:
        assert code == 0 and out.splitlines()[-1].startswith("outcome: ")
        assert first in out.splitlines()[0]


def test_an_unreachable_openai_server_plays_on_and_says_why(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from tests.fixtures.fake_openai import closed_port_url

    url = closed_port_url()
    out = _plays_without_a_model(capsys, [*FAST, "--backend", "openai", "--base-url", url,
                                          "--model", "m"])
    assert url.rstrip("/") in out.splitlines()[0] or "unreachable" in out.lower()


@pytest.mark.parametrize("kind", ["missing", "directory", "text", "empty", "bad_gguf"])
def test_a_gguf_path_that_is_no_model_is_named(
    kind: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "model.gguf"
    if kind == "directory":
        path.mkdir()
    elif kind == "text":
        path.write_text("not a model\n", encoding="utf-8")
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "bad_gguf":
        path.write_bytes(b"GGUF" + b"\x00" * 60)  # the magic, then nothing a model has
    argv = [*FAST, "--backend", "embedded", "--model-path", str(path)]
    if kind != "bad_gguf":
        line = _one_line_error(capsys, argv)
        assert str(path) in line
        return
    pytest.importorskip("llama_cpp")
    out = _plays_without_a_model(capsys, argv)  # the header passes; loading fails: said so
    assert str(path) in out or "model" in out.splitlines()[0]


def test_a_host_entity_missing_components_is_named_and_the_rest_play_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A companion that loses its Position mid-round: named once in the log, the HUD still
    draws, the other companions keep deciding, and it is adopted again once whole."""
    import logging

    from esper_arbiter.components.agent import ArbiterState
    from esper_arbiter.components.world import Position
    from esper_arbiter.game.render.model import ViewState, build_frame
    from esper_arbiter.game.world import GameSession
    from tests.game.test_fault_matrix import SCENARIO

    with caplog.at_level(logging.INFO, logger="esper_arbiter"), \
            GameSession(SCENARIO, seed=1) as session:
        session.run(1.0, 1 / 30)
        lame, *others = session.companions
        pos = esper.component_for_entity(lame, Position)
        esper.remove_component(lame, Position)
        before = {c: esper.component_for_entity(c, ArbiterState).metrics.goap_actions
                  for c in others}
        for _ in range(90):
            session.step(1 / 30)
            frame = build_frame(session, ViewState(selected=lame), None)
            assert frame.hud.agent is not None
        after = {c: esper.component_for_entity(c, ArbiterState).metrics.goap_actions
                 for c in others}
        assert any(after[c] > before[c] for c in others)
        said = [r.getMessage() for r in caplog.records if f"entity {lame}" in r.getMessage()]
        assert len(said) == 1 and "Position" in said[0], said
        esper.add_component(lame, pos)
        session.run(2.0, 1 / 30)
        assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
