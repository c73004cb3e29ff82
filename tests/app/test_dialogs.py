"""Dialogs: where focus goes when they close, paths that cannot be written, and a
terminal of 80×24 (the picker, the help and the footer fit)."""

from __future__ import annotations

import pytest
from textual.widgets import Footer, Input

from retune_tui.app.screens.help import HelpScreen
from retune_tui.app.screens.prompts import PathScreen, SettingsScreen
from retune_tui.trace import read_events

SMALL = (80, 24)


@pytest.mark.parametrize("key", ["question_mark", "o", "t"])
def test_closing_a_dialog_leaves_the_typed_problem_alone(tui, app_factory, key):
    async def body():
        app = app_factory()
        async with app.run_test(size=tui.SIZE) as pilot:
            await tui.type_problem(pilot, "12 + 34", submit=False)
            await pilot.press("escape")  # out of the input, no tree yet
            assert app.focused is None
            await pilot.press(key)
            await pilot.pause()
            assert app.screen is not app.screen_stack[0]
            await pilot.press("escape")
            await pilot.pause()
            assert app.focused is None  # where it was: the next key is a command
            await pilot.press("i", "5")
            assert app.problem_bar.text == "12 + 345"

    tui.run(body())


def test_focus_comes_back_to_the_input_without_selecting_its_text(tui, app_factory):
    async def body():
        app = app_factory()
        async with app.run_test(size=tui.SIZE) as pilot:
            await tui.type_problem(pilot, "12 + 34", submit=False)
            await pilot.press("f1")  # help, from inside the input
            assert isinstance(app.screen, HelpScreen)
            await pilot.press("escape")
            await pilot.pause()
            problem = app.query_one("#problem", Input)
            assert app.focused is problem and problem.selection.is_empty
            await pilot.press("5")
            assert problem.value == "12 + 345"

    tui.run(body())


async def solved(pilot, tui, text: str = "12 + 34") -> None:
    await tui.type_problem(pilot, text)
    await tui.settle(pilot)


async def enter_path(pilot, key: str | None, path) -> str:
    """Open the dialog (unless ``key`` is None), enter ``path``; the hint under the field, or
    "" once the dialog has closed."""
    app = pilot.app
    if key is not None:
        await pilot.press(key)
        await pilot.pause()
    app.screen.query_one("#path", Input).value = str(path)
    await pilot.press("enter")
    await pilot.pause()
    return str(app.screen.query_one("#path-hint").render()) if isinstance(app.screen, PathScreen) else ""


@pytest.mark.parametrize("key", ["w", "e"])
def test_a_path_that_cannot_be_written_is_said_in_the_dialog(tui, app_factory, tmp_path, key):
    a_file = tmp_path / "a-file"
    a_file.write_text("x")

    async def body():
        app = app_factory()
        async with app.run_test(size=tui.SIZE) as pilot:
            await solved(pilot, tui)
            hint = await enter_path(pilot, key, tmp_path)
            assert hint == f"{tmp_path} is a folder; give a file name"
            hint = await enter_path(pilot, None, a_file / "x.jsonl")
            assert hint == f"cannot write {a_file / 'x.jsonl'}: {a_file} is a file, not a folder"
            hint = await enter_path(pilot, None, tmp_path / ("a" * 300 + ".jsonl"))
            assert hint == "cannot use that name: File name too long"
            await pilot.press("escape")

    tui.run(body())


@pytest.mark.parametrize("key", ["w", "e"])
def test_an_existing_file_is_replaced_only_after_a_second_enter(tui, app_factory, tmp_path, key):
    path = tmp_path / "mine.json"
    path.write_text("keep me")

    async def body():
        app = app_factory()
        async with app.run_test(size=tui.SIZE) as pilot:
            await solved(pilot, tui)
            hint = await enter_path(pilot, key, path)
            assert hint == f"{path} exists: Enter again replaces it (or change the name)"
            assert path.read_text() == "keep me"
            await pilot.press("escape")  # Esc keeps it
            await pilot.pause()
            await enter_path(pilot, key, path)
            assert await enter_path(pilot, None, path) == ""  # asked, and answered
            assert path.read_text() != "keep me"

    tui.run(body())


def test_write_errors_read_the_same_for_save_and_export(tui, app_factory, tmp_path, monkeypatch):
    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("retune_tui.app.export.write_events", full_disk)
    monkeypatch.setattr("retune_tui.app.export.atomic_write_text", full_disk)

    async def body():
        app = app_factory()
        async with app.run_test(size=tui.SIZE, notifications=True) as pilot:
            await solved(pilot, tui)
            for key, name in (("w", "t.jsonl"), ("e", "t.json"), ("E", "n.md")):
                await enter_path(pilot, key, tmp_path / name)
                message = list(app._notifications)[-1].message
                assert message == f"cannot write {tmp_path / name}: No space left on device"

    tui.run(body())


def test_save_writes_the_trace_and_says_whose(tui, app_factory, tmp_path):
    async def body():
        app = app_factory()
        async with app.run_test(size=tui.SIZE, notifications=True) as pilot:
            await solved(pilot, tui)
            await enter_path(pilot, "w", tmp_path / "new" / "t.jsonl")  # a folder that is not there yet
            assert read_events(tmp_path / "new" / "t.jsonl") == app.run_view.lanes[0].events
            assert list(app._notifications)[-1].message.startswith("saved ")

    tui.run(body())


def test_the_picker_fits_80x24_and_its_error_shows(tui, app_factory):
    async def body():
        app = app_factory()
        async with app.run_test(size=SMALL) as pilot:
            await pilot.press("escape", "t")
            await pilot.pause()
            assert isinstance(app.screen, SettingsScreen)
            screen = app.screen.region
            box = app.screen.query_one("#settings-box")
            for part in ("#apply", "#settings-error", "#speed"):
                assert screen.contains_region(app.screen.query_one(part).region), part
            app.screen.query_one("#speed", Input).value = "fast"
            await pilot.press("enter")
            await pilot.pause()
            error = app.screen.query_one("#settings-error")
            assert "oracle speed" in str(error.render())
            assert box.region.contains_region(error.region)

    tui.run(body())


def test_the_help_fits_80_columns(tui, app_factory):
    async def body():
        app = app_factory()
        async with app.run_test(size=SMALL) as pilot:
            await pilot.press("escape", "question_mark")
            await pilot.pause()
            box = app.screen.query_one("#help-box")
            assert box.outer_size.width <= SMALL[0] and box.max_scroll_x == 0

    tui.run(body())


def test_the_footer_fits_80_columns(tui, app_factory):
    async def body():
        app = app_factory()
        async with app.run_test(size=SMALL) as pilot:
            await solved(pilot, tui)
            app.run_view.lanes[0].focus()
            await pilot.pause()
            footer = app.query_one(Footer)
            keys = list(footer.query("FooterKey"))
            assert keys and all(footer.region.contains_region(key.region) for key in keys)
            assert [key.description for key in keys][-2:] == ["Help", "Quit"]

    tui.run(body())
