"""Trace files: JSON Lines of events that round-trip to the same trees."""

from __future__ import annotations

import json

import pytest

from retune_tui.engine import OracleGenerator, Runner
from retune_tui.tasks import get_task
from retune_tui.tasks.protocol import Method
from retune_tui.trace import EVENT_TYPES, TraceFileError, read_events, read_traces, write_events


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
