"""Saved traces: open (argument or key), replay, save, export; faults, search, navigation."""

from __future__ import annotations

import json

import pytest
from textual.widgets import Input

from retune_tui.evaluate.faults import first_fault
from retune_tui.tasks import Method, get_task
from retune_tui.trace import read_events, read_traces, write_events


def keys_shown(lane) -> list[tuple[int, int]]:
    out, stack = [], list(reversed(lane.root.children))
    while stack:
        node = stack.pop()
        out.append(node.data)
        stack.extend(reversed(node.children))
    return out


def test_trace_given_on_the_command_line_opens(tui, app_factory, trace_file):
    path = trace_file("48213 + 90771", "1 0 1 1", "[3, -2, 5]")
    want = read_traces(path)

    async def body():
        app = app_factory(path)
        async with app.run_test(size=tui.SIZE) as pilot:
            await tui.settle(pilot)
            lane = app.run_view.lanes[0]
            assert sorted(lane.traces) == [0, 1, 2]
            for trace in want:
                got = lane.traces[trace.tree]
                assert got.to_json() == trace.to_json()
            assert len(keys_shown(lane)) == sum(len(t.nodes) for t in want)
            assert lane.cursor_key == (0, 0)  # a loaded file starts at the top
            assert "3/3 correct" in str(lane.border_subtitle)

    tui.run(body())


def test_open_from_inside_the_app_and_a_missing_file(tui, app_factory, trace_file, tmp_path):
    path = trace_file("12 + 34")

    async def body():
        app = app_factory()
        async with app.run_test(size=tui.SIZE) as pilot:
            await pilot.press("escape", "o")
            field = app.screen.query_one("#path", Input)
            field.value = str(tmp_path / "nope.jsonl")
            await pilot.press("enter")
            assert "no such file" in str(app.screen.query_one("#path-hint").render())
            field.value = str(path)
            await pilot.press("enter")
            await tui.settle(pilot)
            assert app.run_view.lanes[0].traces[0].finished.correct

    tui.run(body())


def test_a_damaged_file_is_one_line_not_a_crash(tui, app_factory, tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"event": "problem_started", "tree": 0}\nnot json\n')

    async def body():
        app = app_factory(path)
        async with app.run_test(size=tui.SIZE, notifications=True) as pilot:
            await tui.settle(pilot)
            assert app.run_view.state == "idle" and not app.run_view.lanes
            assert "bad.jsonl:1:" in app._note and "\n" not in app._note
            assert app._note in str(app.query_one("#summary").render())
            assert app.failure is not None and str(app.failure) == app._note

    tui.run(body())


def corrupt(path, field: str, value) -> int:
    """Set ``field`` of the file's first text event to ``value``; its line number."""
    lines = path.read_text().splitlines()
    at = next(i for i, line in enumerate(lines) if '"text_generated"' in line)
    event = json.loads(lines[at])
    event[field] = value
    lines[at] = json.dumps(event)
    path.write_text("\n".join(lines) + "\n")
    return at + 1


@pytest.mark.parametrize(("field", "value"), [("t", "abc"), ("tree", "0"), ("text", 5)])
def test_a_field_of_the_wrong_type_is_one_line_and_the_app_carries_on(tui, app_factory, trace_file, field, value):
    path = trace_file("48213 + 90771")
    line = corrupt(path, field, value)

    async def body():
        app = app_factory(path)
        async with app.run_test(size=tui.SIZE) as pilot:
            await tui.settle(pilot)
            assert app._note.startswith(f"{path}:{line}: not a trace event") and repr(field) in app._note
            assert "\n" not in app._note and not app.run_view.lanes
            await tui.type_problem(pilot, "12 + 34")  # the app carries on
            await tui.settle(pilot)
            assert app.run_view.lanes[0].traces[0].finished.correct

    tui.run(body())


def export_of(trace_file) -> str:
    return json.dumps(read_traces(trace_file("1 0 1", name="for-export.jsonl"))[0].to_json(), indent=2)


@pytest.mark.parametrize(("content", "words"), [
    ("garbage\n", "bad:1: not a trace event"),
    (b"\x89PNG\r\n\x1a\n\x00\xff", "not a trace file (not UTF-8 text)"),
    ("truncated", "bad:6: not a trace event"),  # the last line cut in half
    ("export", "one JSON document (an export?)"),
    ("", "holds no trace"),
    ('{"event": "run_finished", "tree": 0, "t": 0.1, "status": "done"}\n', "holds no trace"),
])
def test_a_bad_file_opened_keeps_the_tree_on_screen(tui, app_factory, trace_file, tmp_path, content, words):
    bad = tmp_path / "bad"
    if content == "truncated":
        whole = trace_file("1 0 1", name="whole.jsonl").read_text().splitlines()
        bad.write_text("\n".join(whole[:5]) + "\n" + whole[5][: len(whole[5]) // 2])
    elif content == "export":
        bad.write_text(export_of(trace_file))
    elif isinstance(content, bytes):
        bad.write_bytes(content)
    else:
        bad.write_text(content)

    async def body():
        app = app_factory()
        async with app.run_test(size=tui.SIZE) as pilot:
            await tui.type_problem(pilot, "12 + 34")  # an unsaved run
            await tui.settle(pilot)
            lane = app.run_view.lanes[0]
            await pilot.press("o")
            app.screen.query_one("#path", Input).value = str(bad)
            await pilot.press("enter")
            await tui.settle(pilot)
            assert app.run_view.lanes == [lane] and lane.traces[0].problem == "12 + 34"
            assert app.run_view.state == "done"
            assert words in app._note and "\n" not in app._note
            assert app._note in str(app.query_one("#summary").render())
            await pilot.press("r")  # runs the solve again, not the bad file
            await tui.settle(pilot)
            assert app.run_view.job.kind == "solve" and app.run_view.lanes[0].traces[0].finished.correct
            assert app.failure is None  # only what was given at start makes --screenshot fail

    tui.run(body())


def test_a_trace_saved_after_stopping_reopens_as_stopped(tui, app_factory, tmp_path):
    _, events = tui.oracle_run("48213 + 90771")
    path = tmp_path / "stopped.jsonl"
    write_events(path, events[: len(events) // 2])

    async def body():
        app = app_factory(path)
        async with app.run_test(size=tui.SIZE) as pilot:
            await tui.settle(pilot)
            lane = app.run_view.lanes[0]
            assert app.run_view.state == "stopped"
            summary = str(app.query_one("#summary").render())
            assert "stopped before an answer" in summary and "running" not in summary
            labels = [lane.label(key).plain for key in lane.keys()]
            assert all(not label.startswith(("run", "wait")) for label in labels)
            assert labels[0].startswith("stop") and "■ stopped" in labels[0]
            assert str(lane.border_subtitle).startswith("■ stopped")

    tui.run(body())


def test_first_fault_is_highlighted_and_errors_are_found(tui, app_factory, trace_file):
    path = trace_file("48213 + 90771", faulty=True)
    trace = read_traces(path)[0]
    fault = first_fault(get_task("addition"), Method.RETUNING, trace)
    assert fault is not None

    async def body():
        app = app_factory(path)
        async with app.run_test(size=tui.SIZE) as pilot:
            await tui.settle(pilot)
            lane = app.run_view.lanes[0]
            assert lane.fault(0) == fault
            bad = (0, fault.node)
            assert lane.verdict(bad) is False
            assert "first fault" in lane.label(bad).plain
            assert "✗ wrong" in lane.label((0, 0)).plain
            lane.focus()
            await pilot.press("right_square_bracket")
            await pilot.pause()
            assert lane.cursor_key == bad
            await pilot.press("home", "F")
            await pilot.pause()
            assert lane.cursor_key == bad
            detail = str(app.query_one("#detail-text").render())
            assert "differs from the oracle" in detail and "first fault" in detail

    tui.run(body())


def test_a_run_started_while_a_trace_file_is_read_is_not_replaced_by_it(tui, app_factory, trace_file,
                                                                          monkeypatch):
    import threading

    import retune_tui.app.app as app_module

    path = trace_file("1 0 1 1")
    release = threading.Event()
    read = app_module.read_trace_file
    monkeypatch.setattr(app_module, "read_trace_file", lambda p: release.wait(10) and read(p))

    async def body():
        app = app_factory()
        async with app.run_test(size=tui.SIZE) as pilot:
            app.open_trace(path)  # a big file, or a slow disk
            assert app.loading
            app.problem_bar.set_text("12 + 34")
            await app.solve(compare=False)
            assert not app.loading
            release.set()  # the file is read only now
            await tui.settle(pilot)
            assert app.last_job.kind == "solve" and app.run_view.job.problem == "12 + 34"

    tui.run(body())


def test_search_keeps_ancestors_and_escape_clears(tui, app_factory, trace_file):
    path = trace_file("48213 + 90771", "[3, -2, 5]")

    async def body():
        app = app_factory(path)
        async with app.run_test(size=tui.SIZE) as pilot:
            await tui.settle(pilot)
            lane = app.run_view.lanes[0]
            everything = keys_shown(lane)
            app.filter_lanes("13 + 71")
            await pilot.pause()
            assert keys_shown(lane) == [(0, 0), (0, 1), (0, 2), (0, 3)]  # the match and its ancestors
            assert "13 + 71" in lane.label((0, 3)).plain
            await pilot.press("slash")
            assert app.query_one("#search").has_class("-visible")
            await pilot.press("escape")
            await pilot.pause()
            assert keys_shown(lane) == everything

    tui.run(body())


def test_the_selected_node_stays_selected_through_a_search(tui, app_factory, trace_file):
    path = trace_file("48213 + 90771", "[3, -2, 5]")

    async def body():
        app = app_factory(path)
        async with app.run_test(size=tui.SIZE) as pilot:
            await tui.settle(pilot)
            lane = app.run_view.lanes[0]
            lane.go_to((0, 3))
            await pilot.pause()
            app.filter_lanes("13 + 71")  # (0, 3) itself matches: it stays selected
            await pilot.pause()
            assert lane.cursor_key == (0, 3)
            app.filter_lanes("")  # cleared: the tree whole again, the cursor where it was
            await pilot.pause()
            assert lane.cursor_key == (0, 3)
            lane.go_to((1, 2))
            await pilot.pause()
            app.filter_lanes("13 + 71")  # hides (1, 2) and its tree: the cursor goes to what is left
            await pilot.pause()
            assert lane.cursor_key in keys_shown(lane)
            app.filter_lanes("Create dp array [3")  # hides (1, 2) only: its nearest ancestor shown
            await pilot.pause()
            assert (1, 2) not in keys_shown(lane) and lane.cursor_key == (1, 1)

    tui.run(body())


def test_a_new_run_closes_the_search_of_the_old_tree(tui, app_factory, trace_file):
    path = trace_file("48213 + 90771")

    async def body():
        app = app_factory(path)
        async with app.run_test(size=tui.SIZE) as pilot:
            await tui.settle(pilot)
            await pilot.press("slash", *"13 + 71", "enter")
            await pilot.pause()
            assert app.run_view.lanes[0].term == "13 + 71"
            app.problem_bar.set_text("1 0 1 1")
            await app.solve(compare=False)
            await tui.settle(pilot)
            search = app.query_one("#search", Input)
            assert not search.has_class("-visible") and search.value == ""
            lane = app.run_view.lanes[0]
            assert lane.term == "" and len(keys_shown(lane)) == len(lane.traces[0].nodes)

    tui.run(body())


def test_help_and_search_keys_work_from_the_problem_input(tui, app_factory):
    from retune_tui.app.screens.help import HelpScreen

    async def body():
        app = app_factory()
        async with app.run_test(size=tui.SIZE) as pilot:
            assert app.focused is app.query_one("#problem", Input)  # where a first visit starts
            await pilot.press("f1")
            assert isinstance(app.screen, HelpScreen)
            await pilot.press("escape")  # back in the input
            assert app.focused is app.query_one("#problem", Input)
            await pilot.press("ctrl+f")
            assert app.query_one("#search").has_class("-visible") and app.problem_bar.text == ""

    tui.run(body())


def test_collapse_and_expand_all(tui, app_factory, trace_file):
    path = trace_file("48213 + 90771", "1 0 1 1")

    async def body():
        app = app_factory(path)
        async with app.run_test(size=tui.SIZE) as pilot:
            await tui.settle(pilot)
            lane = app.run_view.lanes[0]
            lane.focus()
            await pilot.press("minus")
            assert lane.last_line == 1  # two roots, collapsed
            await pilot.press("equals_sign")
            assert lane.last_line + 1 == len(keys_shown(lane))

    tui.run(body())


def test_save_export_and_replay(tui, app_factory, tmp_path):
    async def body():
        app = app_factory()
        async with app.run_test(size=tui.SIZE) as pilot:
            app.problem_bar.set_text("48213 + 90771")
            await app.solve(compare=False)
            await tui.settle(pilot)
            lane = app.run_view.lanes[0]
            lane.focus()
            for key, name in (("w", "saved.jsonl"), ("e", "tree.json"), ("e", "tree.md")):
                await pilot.press(key)
                app.screen.query_one("#path", Input).value = str(tmp_path / name)
                await pilot.press("enter")
            await pilot.press("down", "down", "E")  # node 2 and its sub-calls
            app.screen.query_one("#path", Input).value = str(tmp_path / "node.json")
            await pilot.press("enter")
            saved = read_traces(tmp_path / "saved.jsonl")[0]
            assert saved.to_json() == lane.traces[0].to_json()
            assert json.loads((tmp_path / "tree.json").read_text()) == lane.traces[0].to_json()
            markdown = (tmp_path / "tree.md").read_text()
            assert markdown.startswith("# 48213 + 90771") and "node 4: 3 + 1" in markdown
            node = json.loads((tmp_path / "node.json").read_text())["node"]
            assert node["id"] == 2 and node["children"][0]["id"] == 3
            events = list(lane.events)
            app.replay_speed = 50.0  # y replays with the recorded timing (50x here)
            await pilot.press("y")
            await tui.settle(pilot)
            replayed = app.run_view.lanes[0]
            assert replayed.events == events and replayed.traces[0].to_json() == saved.to_json()
            await pilot.press("y")  # a replay of a replay is titled once
            await tui.settle(pilot)
            assert app.run_view.lanes[0].border_title == f"replay: {lane.border_title}"
            assert read_events(tmp_path / "saved.jsonl") == events

    tui.run(body())


def test_a_search_without_a_match_says_so(tui, app_factory, trace_file):
    path = trace_file("48213 + 90771")

    async def body():
        app = app_factory(path)
        async with app.run_test(size=tui.SIZE) as pilot:
            await tui.settle(pilot)
            await pilot.press("slash", *"zzz", "enter")
            await pilot.pause()
            assert "no node matches 'zzz'" in str(app.query_one("#summary").render())
            await pilot.press("escape")
            await pilot.pause()
            assert "no node matches" not in str(app.query_one("#summary").render())
            app.filter_lanes("13 + 71")
            assert "no node matches" not in str(app.query_one("#summary").render())

    tui.run(body())


def test_opening_a_folder_says_it_is_a_folder(tui, app_factory, tmp_path):
    async def body():
        app = app_factory()
        async with app.run_test(size=tui.SIZE) as pilot:
            await pilot.press("escape", "o")
            app.screen.query_one("#path", Input).value = str(tmp_path)
            await pilot.press("enter")
            assert f"{tmp_path} is a folder" in str(app.screen.query_one("#path-hint").render())

    tui.run(body())


def test_collapse_all_keeps_the_cursor_in_its_problem(tui, app_factory, trace_file):
    path = trace_file("48213 + 90771", "1 0 1 1", "[3, -2, 5]")

    async def body():
        app = app_factory(path)
        async with app.run_test(size=tui.SIZE) as pilot:
            await tui.settle(pilot)
            lane = app.run_view.lanes[0]
            lane.focus()
            for tree in (1, 2, 0):
                last = max(lane.traces[tree].nodes)
                lane.go_to((tree, last))  # deep in problem #tree
                await pilot.pause()
                await pilot.press("minus")
                await pilot.pause()
                assert lane.cursor_key == (tree, 0) and lane.last_line == 2
                await pilot.press("equals_sign")

    tui.run(body())


def test_a_run_with_no_answer_says_so_not_none():
    from retune_tui.app.formatting import trace_verdict
    from retune_tui.render import trace_summary
    from retune_tui.trace import NodeClosed, NodeOpened, ProblemStarted, RunFinished, Trace

    trace = Trace(0)
    for event in (ProblemStarted(0, 0.0, "addition", "retuning", "1 + 2", "3"),
                  NodeOpened(0, 0.1, 0, None, 0, "1 + 2\nSolution: "),
                  NodeClosed(0, 0.2, 0, "error", error="no stop within 64 tokens"),
                  RunFinished(0, 0.3, "error", correct=False, error="no stop within 64 tokens")):
        trace.apply(event)
    for text in (trace_verdict(trace).plain, trace_summary(trace).plain):
        assert "no answer" in text and "None" not in text
