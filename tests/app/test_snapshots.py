"""What the main screens look like (pytest-textual-snapshot; `--snapshot-update` after a
deliberate change). The oracle on a fake clock makes every number on screen repeatable."""

from __future__ import annotations

from retune_tui.app import make_app

SIZE = (120, 36)


def solved(text: str, compare: bool = False):
    async def run_before(pilot) -> None:
        app = pilot.app
        app.problem_bar.set_text(text)
        await app.solve(compare=compare)
        await app.workers.wait_for_complete()
        await pilot.pause(0.2)  # a loaded CPU can leave the last tree refresh pending after the workers end
        app.run_view.lanes[-1].focus()
        await pilot.pause()

    return run_before


def test_solve_view_after_a_finished_solve(snap_compare, tui):
    app = make_app(settings=tui.fast_settings())
    assert snap_compare(app, terminal_size=SIZE, run_before=solved("48213 + 90771"))


def test_compare_view(snap_compare, tui):
    app = make_app(settings=tui.fast_settings())
    assert snap_compare(app, terminal_size=SIZE, run_before=solved("[3, -2, 5]", compare=True))


def test_help_screen(snap_compare, tui):
    app = make_app(settings=tui.fast_settings())
    assert snap_compare(app, terminal_size=SIZE, press=["escape", "question_mark"])


def test_loaded_trace_with_its_first_fault(snap_compare, tui, trace_file):
    path = trace_file("48213 + 90771", "1 0 1", faulty=True, name="faulty.jsonl")

    async def run_before(pilot) -> None:
        await pilot.app.workers.wait_for_complete()
        await pilot.pause()
        pilot.app.run_view.lanes[0].focus()
        await pilot.press("F")
        await pilot.pause()

    app = make_app(path, settings=tui.fast_settings())
    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)


def test_bad_input_message(snap_compare, tui):
    app = make_app(settings=tui.fast_settings())
    assert snap_compare(app, terminal_size=SIZE, press=[*"12 + x", "enter"])
