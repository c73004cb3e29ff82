"""The command line (`retune-tui …`), the factory, and the help screen."""

from __future__ import annotations

import subprocess
import sys

import pytest
from textual.binding import Binding

from retune_tui.app import Start, main, make_app, parse_args
from retune_tui.app.app import RetuneApp
from retune_tui.app.screens.help import HelpScreen, key_text
from retune_tui.app.widgets.call_tree import CallTree
from retune_tui.solving import Backend
from retune_tui.tasks import Method


@pytest.mark.parametrize("argv, words", [
    (["missing.jsonl"], "no such trace file"),
    (["--adapter", "."], "--adapter needs the --base model it was trained on"),  # no bundled base here
    (["--base", "bundled", "--adapter", "."], "--adapter needs --base"),
    (["--method", "telepathy"], "unknown method"),
    (["--task", "chess"], "unknown task"),
    (["--device", "gpu"], "unknown device"),
    (["--speed", "fast"], "invalid float value"),
    (["--frobnicate"], "unrecognized arguments"),
    (["--screenshot", "x.svg"], "--screenshot needs"),
    (["tests"], "tests is a folder; give a trace file"),
    (["--overwrite"], "--overwrite is for --screenshot"),
    (["a" * 300 + ".jsonl"], "File name too long"),
])
def test_bad_arguments_are_one_line_and_exit_non_zero(argv, words, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == (1 if "long" in words else 2)
    err = capsys.readouterr().err
    assert words in err and err.count("\n") == 1 and "Traceback" not in err


def test_arguments_build_settings(tmp_path, monkeypatch):
    monkeypatch.setenv("RETUNE_ASSETS", str(tmp_path / "no-assets"))
    trace = tmp_path / "t.jsonl"
    trace.write_text("")
    settings, start = parse_args([str(trace), "--method", "scratchpad", "--task", "dp",
                                  "--problem", "[1, 2]", "--speed", "0", "--replay", "2"])
    assert settings.backend.model is None and settings.method is Method.SCRATCHPAD and settings.task == "dp"
    assert settings.tokens_per_second is None
    assert start == Start(trace, "[1, 2]", 2.0, None)
    settings, _ = parse_args(["--base", "some/model", "--device", "cpu"])
    assert settings.backend.model.base == "some/model" and settings.backend.model.device == "cpu"


@pytest.mark.bundled
def test_an_adapter_alone_sits_on_the_base_it_was_trained_on_as_in_solve():
    from retune_tui import bundled

    adapter = bundled.adapter_dir("parity", "retuning")
    settings, _ = parse_args(["--adapter", str(adapter), "--versus", str(bundled.adapter_dir("parity", "baseline"))])
    assert settings.backend.model.base == bundled.base_for(adapter) and settings.backend.model.adapter == str(adapter)
    assert settings.versus.model.base == settings.backend.model.base
    assert settings.backend.model.dtype == "float32"  # the bundled base runs as the bundled model does


def test_make_app_is_the_app():
    assert isinstance(make_app(), RetuneApp)


def test_help_answers_without_starting_the_app():
    out = subprocess.run([sys.executable, "-c", "from retune_tui.app import main; main(['--help'])"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and "retune-tui" in out.stdout and "--adapter" in out.stdout


def test_help_screen_lists_every_key(tui, app_factory):
    async def body():
        app = app_factory()
        async with app.run_test(size=tui.SIZE) as pilot:
            await pilot.press("escape", "question_mark")
            assert isinstance(app.screen, HelpScreen)
            shown = "\n".join(f"{key} {what}" for _, rows in app.screen.sections for key, what in rows)
            for binding in [*RetuneApp.BINDINGS, *CallTree.BINDINGS]:
                assert isinstance(binding, Binding)
                assert f"{key_text(binding.key)} {binding.description}" in shown
            await pilot.press("escape")
            assert not isinstance(app.screen, HelpScreen)

    tui.run(body())


def test_the_package_and_its_arguments_import_no_textual():
    code = ("import sys; from retune_tui.app import parse_args; parse_args([]); "
            "assert 'textual' not in sys.modules, 'textual imported'")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_screenshot_of_a_real_solve(tmp_path):
    out = tmp_path / "shot.svg"
    main(["--problem", "12 + 34", "--base", "oracle", "--speed", "0", "--screenshot", str(out)])
    svg = out.read_text()
    assert svg.startswith("<svg") and "correct" in svg


def test_a_screenshot_never_replaces_a_file_unasked_and_a_bad_path_is_one_line_before_any_work(
        tmp_path, capsys):
    out = tmp_path / "shot.svg"
    out.write_text("mine")
    argv = ["--problem", "12 + 34", "--base", "oracle", "--speed", "0", "--screenshot"]
    for target, words in ((out, "exists; pass --overwrite"), (tmp_path, "is a directory"),
                          (out / "in-a-file.svg", "is a file, not a folder")):
        with pytest.raises(SystemExit) as exit_:
            main([*argv, str(target)])
        err = capsys.readouterr().err
        assert exit_.value.code == 2 and words in err and err.count("\n") == 1, err
    assert out.read_text() == "mine"
    main([*argv, str(out), "--overwrite"])
    assert out.read_text().startswith("<svg")


def test_default_backend_is_the_bundled_model_once_it_is_there(tmp_path, monkeypatch):
    from retune_tui.app import default_backend

    monkeypatch.setenv("RETUNE_ASSETS", str(tmp_path))
    assert default_backend() == Backend()  # nothing bundled yet: the oracle
    (tmp_path / "base").mkdir()
    (tmp_path / "base" / "config.json").write_text("{}")
    (tmp_path / "adapters" / "addition-retuning").mkdir(parents=True)
    (tmp_path / "adapters" / "addition-retuning" / "adapter_config.json").write_text("{}")
    assert default_backend("cpu") == Backend(bundled=True, device="cpu")
    settings, _ = parse_args(["--device", "cpu"])
    assert settings.backend.bundled
    assert parse_args(["--base", "oracle"])[0].backend == Backend()


@pytest.mark.parametrize(("argv", "words", "code"), [
    (["--problem", "what is love"], "not a problem of any task", 2),
    (["--task", "parity", "--problem", "12 + 34"], "not a parity problem", 2),
    (["TRACE"], ":2: not a trace event ('t' must be a number", 1),
])
def test_a_screenshot_of_bad_input_is_one_line_and_no_file(argv, words, code, tmp_path, capsys):
    trace = tmp_path / "typed.jsonl"
    trace.write_text('{"event": "problem_started", "tree": 0, "t": 0, "task": "addition", "method": "retuning", '
                     '"problem": "1 + 2"}\n{"event": "run_finished", "tree": 0, "t": "abc", "status": "done"}\n')
    out = tmp_path / "shot.svg"
    argv = [str(trace) if arg == "TRACE" else arg for arg in argv]
    with pytest.raises(SystemExit) as exit_:
        main([*argv, "--base", "oracle", "--speed", "0", "--screenshot", str(out)])
    assert exit_.value.code == code
    captured = capsys.readouterr()
    assert words in captured.err and captured.err.count("\n") == 1 and "saved" not in captured.out
    assert not out.exists()


def test_an_adapter_that_is_missing_or_a_file_is_one_line(tmp_path, capsys):
    (tmp_path / "adapter.bin").write_text("x")
    for path, words in ((tmp_path / "none", "no such adapter directory"),
                        (tmp_path / "adapter.bin", "is a file; give the adapter's folder")):
        with pytest.raises(SystemExit) as exit_:
            main(["--adapter", str(path)])
        err = capsys.readouterr().err
        assert exit_.value.code == 2 and words in err and err.count("\n") == 1, err
