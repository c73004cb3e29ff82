"""Models that go wrong, the model picker, following the running node, and a real model."""

from __future__ import annotations

import pytest
from helpers import ScriptedGenerator
from textual.widgets import Input

from retune_tui import bundled
from retune_tui.app.jobs import GeneratorCache
from retune_tui.app.screens.prompts import SettingsScreen
from retune_tui.engine.loading import ModelSpec
from retune_tui.errors import UserError
from retune_tui.solving import Backend
from retune_tui.tasks import Method, get_task
from retune_tui.trace import CallIssued


def malformed_calls(context: str) -> str:
    """Right at the top, then a call the task cannot parse one level down."""
    if context.startswith("8213 + 0771"):
        return "Call: 213 + seven\n"
    return get_task("addition").oracle(context, Method.RETUNING)


def test_error_nodes_show_their_reason_and_are_found(tui, app_factory, monkeypatch):
    monkeypatch.setattr(GeneratorCache, "get", lambda self, *a, **k: ScriptedGenerator(malformed_calls))

    async def body():
        app = app_factory()
        async with app.run_test(size=tui.SIZE) as pilot:
            app.problem_bar.set_text("48213 + 90771")
            await app.solve(compare=False)
            await tui.settle(pilot)
            lane = app.run_view.lanes[0]
            trace = lane.traces[0]
            assert trace.finished.status == "error" and not trace.finished.correct
            failing = max(trace.nodes)  # the child the malformed call opened
            assert trace.nodes[failing].status == "error"
            assert "malformed call" in lane.label((0, failing)).plain
            assert lane.verdict((0, 1)) is False  # node 1 wrote the bad call
            assert lane.fault(0).node == 1
            lane.focus()
            await pilot.press("home", "right_square_bracket")
            await pilot.pause()
            assert lane.cursor_key == (0, 1)  # the node that went wrong, before the child that failed
            await pilot.press("right_square_bracket")
            await pilot.pause()
            assert lane.cursor_key == (0, failing)
            await pilot.pause(0.3)
            detail = str(app.query_one("#detail-text").render())
            assert "error" in detail and "malformed call" in detail
            assert "✗ wrong" in str(app.query_one("#summary").render())

    tui.run(body())


def test_the_cursor_follows_until_the_user_moves(tui, app_factory):
    async def body():
        app = app_factory()
        async with app.run_test(size=tui.SIZE) as pilot:
            app.problem_bar.set_text("48213 + 90771")
            await app.solve(compare=False, paused=True)
            lane = app.run_view.lanes[0]

            def calls() -> int:
                return sum(isinstance(e, CallIssued) for e in lane.events)

            app.run_view.step()
            await tui.settle(pilot, until=lambda: calls() == 1 and lane.cursor_key == (0, 1))
            assert lane.cursor_key == (0, 1)  # followed to the child just opened
            await pilot.press("up")  # the user moves: following stops
            assert lane.cursor_key == (0, 0) and not lane.follow
            lane.follow = True
            await pilot.press("shift+down")  # so does a move to a sibling
            assert not lane.follow
            app.run_view.step()
            await tui.settle(pilot, until=lambda: calls() == 2)
            await pilot.pause(0.1)
            assert lane.cursor_key == (0, 0)
            await pilot.press("f")  # follow again
            await pilot.pause(0.1)
            assert lane.follow and lane.cursor_key == (0, 2)
            app.run_view.stop()

    tui.run(body())


def test_model_picker_checks_fields_and_applies(tui, app_factory, tmp_path):
    async def body():
        app = app_factory()
        async with app.run_test(size=tui.SIZE) as pilot:
            await pilot.press("escape", "t")
            assert isinstance(app.screen, SettingsScreen)
            (tmp_path / "weights.safetensors").write_text("x")
            app.screen.query_one("#adapter", Input).value = str(tmp_path / "weights.safetensors")
            app.screen.apply()
            await pilot.pause()
            assert "is a file; give the adapter's folder" in str(app.screen.query_one("#settings-error").render())
            app.screen.query_one("#adapter", Input).value = str(tmp_path)
            app.screen.apply()
            await pilot.pause()
            assert "needs a base model" in str(app.screen.query_one("#settings-error").render())
            app.screen.query_one("#base", Input).value = "some/base"
            app.screen.query_one("#speed", Input).value = "0"
            app.screen.apply()
            await pilot.pause()
            assert not isinstance(app.screen, SettingsScreen)
            assert app.settings.backend == Backend(ModelSpec("some/base", str(tmp_path), "auto"))
            assert app.settings.tokens_per_second is None
            assert app.sub_title.startswith("base + ")

    tui.run(body())


@pytest.mark.bundled
def test_the_picker_runs_the_bundled_base_in_float32_as_the_command_line_does(tui, app_factory):
    async def body():
        app = app_factory()
        async with app.run_test(size=tui.SIZE) as pilot:
            await pilot.press("escape", "t")
            app.screen.query_one("#base", Input).value = str(bundled.base_dir())
            app.screen.query_one("#adapter", Input).value = str(bundled.adapter_dir("addition", "retuning"))
            app.screen.apply()
            await pilot.pause()
            assert app.settings.backend.model.dtype == "float32"

    tui.run(body())


def test_a_failing_worker_is_one_line(tui, app_factory, monkeypatch):
    def refuse(self, *args, **kwargs):
        raise UserError("adapter /x was trained for parity, not addition\nuse --task parity")

    monkeypatch.setattr(GeneratorCache, "get", refuse)

    async def body():
        app = app_factory()
        async with app.run_test(size=tui.SIZE) as pilot:
            app.problem_bar.set_text("12 + 34")
            await app.solve(compare=False)
            await tui.settle(pilot)
            assert app.run_view.state == "error"
            assert app._note == "adapter /x was trained for parity, not addition"
            assert app._note in str(app.query_one("#summary").render())
            app.problem_bar.set_text("1 0 1")  # the app carries on
            monkeypatch.undo()
            await app.solve(compare=False)
            await tui.settle(pilot)
            assert app.run_view.state == "done" and not app._note

    tui.run(body())


@pytest.mark.slow
def test_a_model_that_cannot_load_is_one_line(tui, app_factory, tmp_path):
    async def body():
        app = app_factory(backend=Backend(ModelSpec(str(tmp_path / "no-such-model"), device="cpu")))
        async with app.run_test(size=tui.SIZE) as pilot:
            app.problem_bar.set_text("12 + 34")
            await app.solve(compare=False)
            await tui.settle(pilot)
            assert app.run_view.state == "error"
            assert app._note and "\n" not in app._note
            assert "no-such-model" in str(app.query_one("#summary").render())

    tui.run(body())


@pytest.mark.slow
def test_a_tiny_random_model_runs_in_the_app(tui, app_factory, tmp_path):
    from tiny_models import tiny_model

    model, tok = tiny_model("llama")
    model.save_pretrained(tmp_path / "tiny")
    tok.save_pretrained(tmp_path / "tiny")

    async def body():
        app = app_factory(backend=Backend(ModelSpec(str(tmp_path / "tiny"), device="cpu")))
        async with app.run_test(size=tui.SIZE) as pilot:
            app.problem_bar.set_text("1 + 2")
            await app.solve(compare=False)
            await tui.settle(pilot, tries=6000)
            lane = app.run_view.lanes[0]
            trace = lane.traces[0]
            assert trace.finished is not None and trace.model.endswith("tiny")
            assert lane.tokens > 0
            # random weights: almost surely wrong, and then the fault is found
            if not trace.finished.correct:
                assert lane.fault(0) is not None

    tui.run(body())


def test_two_adapters_make_two_lanes(tmp_path):
    from retune_tui.app.jobs import Settings, compare_job

    first, second = (Backend(ModelSpec("base", str(tmp_path / name))) for name in ("a1", "a2"))
    job = compare_job(Settings(backend=first, versus=second), "12 + 34")
    assert [lane.title for lane in job.lanes] == ["base + a1", "base + a2"]
    assert [lane.title for lane in compare_job(Settings(), "12 + 34").lanes] == ["baseline", "scratchpad",
                                                                               "retuning"]


def test_a_new_adapter_in_the_picker_brings_its_task_and_method_and_a_bad_device_is_refused(
        tui, app_factory, tmp_path):
    from retune_tui.manifest import Manifest

    Manifest("parity", "baseline", "some/base", "", "char", (1, 21)).write(tmp_path)

    async def body():
        app = app_factory()
        async with app.run_test(size=tui.SIZE) as pilot:
            await pilot.press("escape", "t")
            app.screen.query_one("#base", Input).value = "some/base"
            app.screen.query_one("#adapter", Input).value = str(tmp_path)
            app.screen.query_one("#device", Input).value = "gpu9"
            app.screen.apply()
            await pilot.pause()
            assert "device: unknown device 'gpu9'" in str(app.screen.query_one("#settings-error").render())
            app.screen.query_one("#device", Input).value = "cpu"
            app.screen.apply()
            await pilot.pause()
            assert not isinstance(app.screen, SettingsScreen)
            assert (app.problem_bar.task, app.problem_bar.method) == ("parity", Method.BASELINE)
            assert (app.settings.task, app.settings.method) == ("parity", Method.BASELINE)

    tui.run(body())
