"""Trace files: JSON Lines of events that round-trip to the same trees."""

from __future__ import annotations

import json

import pytest

from retune_tui.engine import OracleGenerator, Runner
from retune_tui.tasks import get_task
from retune_tui.tasks.protocol import Method
from retune_tui.trace import (
    EVENT_TYPES,
    RunFinished,
    TraceFileError,
    event_from_json,
    read_events,
    read_traces,
    write_events,
)


def solved_events(text="[3, -2, 5, 1]", task="dp"):
    the_task = get_task(task)
    events = []
    runner = Runner(the_task, Method.RETUNING, OracleGenerator(the_task, Method.RETUNING, chars_per_step=4))
    traces = runner.run([the_task.parse(text), the_task.parse("[1, 2]")], on_event=events.append)
    return events, traces


def test_events_round_trip_through_a_file(tmp_path):
    events, traces = solved_events()
    path = tmp_path / "trace.jsonl"
    write_events(path, events)
    assert read_events(path) == events
    assert [t.to_json() for t in read_traces(path)] == [t.to_json() for t in traces]
    kinds = {json.loads(line)["event"] for line in path.read_text().splitlines()}
    assert kinds == set(EVENT_TYPES)


def test_tree_json_holds_the_whole_context():
    _, (trace, _) = solved_events()
    root = trace.to_json()["root"]
    assert root["answer"] == "[1, 2, 1, 2]" and len(root["children"]) == 2
    assert trace.root.context.endswith("Return: [1, 2, 1, 2]\nAnswer: [1, 2, 1, 2]")


@pytest.mark.parametrize("content", ["not json\n", '{"event": "nope", "tree": 0, "t": 0}\n', ""])
def test_bad_trace_files_are_one_line_errors(tmp_path, content):
    path = tmp_path / "bad.jsonl"
    path.write_text(content)
    with pytest.raises(TraceFileError) as err:
        read_traces(path)
    assert "\n" not in str(err.value)


def test_missing_file(tmp_path):
    with pytest.raises(TraceFileError, match="cannot read"):
        read_traces(tmp_path / "nothing.jsonl")


def test_events_out_of_order_are_one_line(tmp_path):
    events, _ = solved_events()
    path = tmp_path / "cut.jsonl"
    write_events(path, events[3:])  # starts after the root was opened
    with pytest.raises(TraceFileError, match="out of order or missing"):
        read_traces(path)


def _lines(events) -> list[dict]:
    return [event.to_json() for event in events]


@pytest.mark.parametrize(("field", "value", "words"), [
    ("t", "abc", "'t' must be a number, not \"abc\""),
    ("tree", "0", "'tree' must be an integer, not \"0\""),
    ("text", 5, "'text' must be a string, not 5"),
    ("tokens", True, "'tokens' must be an integer, not true"),
    ("t", float("inf"), "'t' must be a finite number"),
    ("node", None, "'node' must be an integer, not null"),
    ("tokens", -3, "'tokens' must be 0 or more, not -3"),
    ("t", -0.5, "'t' must be 0 or more, not -0.5"),
])
def test_a_field_of_the_wrong_type_is_named_with_its_line(tmp_path, field, value, words):
    events, _ = solved_events()
    lines = _lines(events)
    at = next(i for i, line in enumerate(lines) if line["event"] == "text_generated")
    lines[at][field] = value
    path = tmp_path / "typed.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    for read in (read_events, read_traces):
        with pytest.raises(TraceFileError) as err:
            read(path)
        message = str(err.value)
        assert message.startswith(f"{path}:{at + 1}: not a trace event") and words in message
        assert "\n" not in message


@pytest.mark.parametrize(("data", "words"), [
    ([1, 2], "expected a JSON object"),
    ({"event": "run_finished", "tree": 0, "t": 0}, "run_finished without 'status'"),
    ({"event": "run_finished", "tree": 0, "t": 0, "status": "done", "colour": "red"}, "unknown field 'colour'"),
    ({"event": "run_finished", "tree": 0, "t": 0, "status": "done", "correct": "yes"},
     "'correct' must be true, false or null"),
])
def test_event_from_json_says_what_is_wrong(data, words):
    with pytest.raises(ValueError, match=words):
        event_from_json(data)


def test_a_float_field_takes_an_integer():
    event = event_from_json({"event": "run_finished", "tree": 0, "t": 2, "status": "done", "seconds": 1})
    assert event == RunFinished(0, 2.0, "done", seconds=1.0)


@pytest.mark.parametrize("content", ["", "\n\n", '{"event": "run_finished", "tree": 0, "t": 0, "status": "done"}\n',
                                     '{"event": "problem_started", "tree": 0, "t": 0, "task": "dp", "method": '
                                     '"retuning", "problem": "[1]"}\n'])
def test_a_file_without_a_tree_holds_no_trace(tmp_path, content):
    path = tmp_path / "none.jsonl"
    path.write_text(content)
    with pytest.raises(TraceFileError, match="holds no trace"):
        read_traces(path)


def test_a_node_is_its_own_parent_or_opened_twice_or_out_of_its_place(tmp_path):
    opened = {"event": "node_opened", "tree": 0, "t": 0, "node": 0, "parent": None, "depth": 0, "prompt": "p"}
    for second in ({**opened, "node": 1, "parent": 1}, opened,
                   {**opened, "node": 1},  # a second root
                   {**opened, "node": 1, "parent": 0, "depth": 10**10}):  # not one level below its parent
        path = tmp_path / "loop.jsonl"
        path.write_text(json.dumps(opened) + "\n" + json.dumps(second) + "\n")
        with pytest.raises(TraceFileError, match=r"loop.jsonl:2: events out of order or missing"):
            read_traces(path)


@pytest.mark.parametrize("first", [{"node": 5}, {"depth": 10**10}, {"parent": 3}])
def test_a_tree_starts_at_node_0_at_depth_0(tmp_path, first):
    opened = {"event": "node_opened", "tree": 0, "t": 0, "node": 0, "parent": None, "depth": 0, "prompt": "p"}
    path = tmp_path / "root.jsonl"
    path.write_text(json.dumps({**opened, **first}) + "\n")
    with pytest.raises(TraceFileError, match=r"root.jsonl:1: events out of order or missing"):
        read_traces(path)


def test_an_export_is_not_taken_for_a_trace(tmp_path):
    _, traces = solved_events()
    path = tmp_path / "tree.json"
    path.write_text(json.dumps(traces[0].to_json(), indent=2))
    with pytest.raises(TraceFileError, match="one JSON document .an export.., not a trace"):
        read_traces(path)


def test_a_folder_is_not_a_trace_file(tmp_path):
    with pytest.raises(TraceFileError, match="is a folder"):
        read_events(tmp_path)


def test_a_tree_deeper_than_pythons_recursion_limit_is_written_as_nested_json():
    import sys

    from retune_tui.trace import NodeOpened, ProblemStarted, Trace, dumps_nested

    trace = Trace(0)
    trace.apply(ProblemStarted(0, 0.0, "parity", "retuning", "1 1"))
    depth = sys.getrecursionlimit() + 200
    for node in range(depth):
        trace.apply(NodeOpened(0, 0.0, node, node - 1 if node else None, node, "p"))
    text = dumps_nested(trace.to_json(), [trace])
    assert text.count('"depth"') == depth and sys.getrecursionlimit() < depth
