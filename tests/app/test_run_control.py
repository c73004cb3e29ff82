"""Pause, step, stop, run again and quitting, driven by keys in the app."""

from __future__ import annotations

import asyncio
import time

from retune_tui.app.jobs import GeneratorCache
from retune_tui.trace import CallIssued, TextGenerated


def text_events(lane) -> int:
    return sum(isinstance(e, TextGenerated) for e in lane.events)


def test_step_shows_one_segment_at_a_time(tui, app_factory):
    async def body():
        app = app_factory()
        async with app.run_test(size=tui.SIZE) as pilot:
            await tui.type_problem(pilot, "48213 + 90771", submit=False)
            await pilot.press("escape", "n")  # leave the input; step starts a paused run
            lane = None

            def calls() -> int:
                return sum(isinstance(e, CallIssued) for e in lane.events) if lane else 0

            await tui.settle(pilot, until=lambda: bool(app.run_view.lanes))
            lane = app.run_view.lanes[0]
            await tui.settle(pilot, until=lambda: calls() == 1)
            await pilot.pause(0.1)
            root = lane.traces[0].nodes[0]
            assert root.segments[0].text == "Call: 8213 + 0771\n"
            assert lane.traces[0].nodes[1].segments[0].text == ""  # the child is open, not writing
            assert app.run_view.state == "paused"
            await pilot.press("n")
            await tui.settle(pilot, until=lambda: calls() == 2)
            await pilot.pause(0.1)
            assert lane.traces[0].nodes[1].segments[0].text == "Call: 213 + 771\n"
            assert 3 not in lane.traces[0].nodes or lane.traces[0].nodes[2].segments[0].text == ""
            await pilot.press("p")  # resume to the end
            await tui.settle(pilot)
            assert app.run_view.state == "done" and lane.traces[0].finished.correct

    tui.run(body())


def test_pause_holds_the_text_and_resume_goes_on(tui, app_factory):
    async def body():
        app = app_factory(tokens_per_second=40.0)
        async with app.run_test(size=tui.SIZE) as pilot:
            app.problem_bar.set_text("48213 + 90771")
            await app.solve(compare=False)
            lane = app.run_view.lanes[0]
            await tui.settle(pilot, until=lambda: text_events(lane) > 1)
            await pilot.press("p")
            assert app.run_view.state == "paused"
            await pilot.pause(0.15)
            held = text_events(lane)
            await pilot.pause(0.3)
            assert text_events(lane) == held
            await pilot.press("p")
            assert app.run_view.state == "running"
            await tui.settle(pilot, until=lambda: text_events(lane) > held)
            assert text_events(lane) > held
            await pilot.press("s")

    tui.run(body())


def test_stop_then_run_again(tui, app_factory):
    async def body():
        app = app_factory(tokens_per_second=100.0)
        async with app.run_test(size=tui.SIZE) as pilot:
            app.problem_bar.set_text("[3, -2, 5, 1, 4]")
            await app.solve(compare=False)
            await tui.settle(pilot, until=lambda: app.run_view.lanes and text_events(app.run_view.lanes[0]) > 2)
            app.action_stop()  # (the s key; a key press in a test waits for the busy worker)
            await tui.settle(pilot, until=lambda: app.run_view.state == "stopped")
            assert app.run_view.state == "stopped"
            lane = app.run_view.lanes[0]
            assert lane.traces[0].finished is None
            await pilot.pause()
            summary = str(app.query_one("#summary").render())
            assert "stopped before an answer" in summary and "running" not in summary
            labels = [lane.label(key).plain for key in lane.keys()]
            assert not any(label.startswith(("run", "wait")) for label in labels)
            assert labels[0].startswith("stop") and "■ stopped" in labels[0]
            assert "stop" in str(app.query_one("#detail-text").render()).splitlines()[0]
            await app.action_again()  # r: the same problem, from the start
            await tui.settle(pilot, until=lambda: app.run_view.lanes[0].events)
            assert app.run_view.state in ("running", "done")
            assert app.run_view.run == 2

    tui.run(body())


def test_quitting_mid_generation_stops_the_worker_and_frees_contexts(tui, app_factory, monkeypatch):
    made = []
    original = GeneratorCache.get

    def recording_get(self, *args, **kwargs):
        made.append(original(self, *args, **kwargs))
        return made[-1]

    monkeypatch.setattr(GeneratorCache, "get", recording_get)

    async def body():
        app = app_factory(tokens_per_second=50.0)
        async with app.run_test(size=tui.SIZE) as pilot:
            app.problem_bar.set_text("[3, -2, 5, 1, 4, -1]")
            await app.solve(compare=False)
            await tui.settle(pilot, until=lambda: app.run_view.lanes and text_events(app.run_view.lanes[0]) > 2)
            await pilot.press("p")  # even a paused worker must wake and end
            worker = app.run_view._worker
            await pilot.press("q")
        return worker

    start = time.monotonic()
    worker = asyncio.run(body())  # asyncio.run waits for the worker's thread: a hang fails here
    assert time.monotonic() - start < 30
    assert worker.is_finished
    assert made and made[0]._contexts == {}  # the runner's generator was closed
