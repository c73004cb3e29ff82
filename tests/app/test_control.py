"""Pause, step, stop and pacing, without Textual: the worker's side in plain threads."""

from __future__ import annotations

import threading
import time

import pytest

from retune_tui.app.control import RunControl, Stopped, Stream, schedule
from retune_tui.trace import CallIssued, NodeClosed, NodeOpened, TextGenerated


def text(node: int = 0, t: float = 0.0, tokens: int = 1) -> TextGenerated:
    return TextGenerated(0, t, node, "x" * tokens, tokens)


def gate_in_thread(control: RunControl, events) -> tuple[list, threading.Thread]:
    passed: list = []

    def go():
        try:
            for event in events:
                control.gate(event)
                passed.append(event)
        except Stopped:
            passed.append("stopped")

    thread = threading.Thread(target=go, daemon=True)
    thread.start()
    return passed, thread


def wait_for(condition, seconds: float = 2.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.005)


def test_paused_control_holds_text_but_lets_structure_through():
    control = RunControl(paused=True)
    opened = NodeOpened(0, 0.0, 0, None, 0, "p")
    passed, thread = gate_in_thread(control, [opened, text()])
    wait_for(lambda: len(passed) == 1)
    time.sleep(0.05)
    assert passed == [opened]  # the text waits
    control.resume()
    thread.join(2)
    assert len(passed) == 2


def test_step_lets_one_segment_through():
    control = RunControl(paused=True)
    segment = [text(), text(), CallIssued(0, 0.0, 0, 1, "c"), NodeOpened(0, 0.0, 1, 0, 1, "c\n")]
    second = [text(1), NodeClosed(0, 0.0, 1, "done", answer="a")]
    passed, thread = gate_in_thread(control, segment + second + [text(0)])
    time.sleep(0.05)
    assert passed == []
    control.step()
    wait_for(lambda: len(passed) == 4)
    time.sleep(0.05)
    assert passed == segment  # the child's opening shows; its text waits
    control.step()
    wait_for(lambda: len(passed) == 6)
    time.sleep(0.05)
    assert passed == segment + second
    control.stop()
    thread.join(2)
    assert passed[-1] == "stopped"


def test_stop_wakes_a_paused_worker_and_a_sleeping_one():
    control = RunControl(paused=True)
    passed, thread = gate_in_thread(control, [text()])
    control.stop()
    thread.join(2)
    assert passed == ["stopped"] and not thread.is_alive()
    start = time.monotonic()
    sleeper = RunControl()
    threading.Timer(0.05, sleeper.stop).start()
    with pytest.raises(Stopped):
        sleeper.sleep(10)
    assert time.monotonic() - start < 5


def test_clock_leaves_out_paused_time():
    now = [0.0]
    control = RunControl(clock=lambda: now[0], paused=True)
    passed, thread = gate_in_thread(control, [text()])
    time.sleep(0.02)
    now[0] = 5.0  # five "seconds" pass while paused
    control.resume()
    thread.join(2)
    assert control.clock() == pytest.approx(0.0)


def test_schedule_merges_lanes_round_robin_and_paces_text():
    control = RunControl()
    a = [text(t=i) for i in range(3)]
    b = [text(node=1, t=i) for i in range(3)]
    merged = list(schedule([Stream(iter(a)), Stream(iter(b))], control))
    assert [lane for lane, _ in merged] == [0, 1, 0, 1, 0, 1]
    start = time.monotonic()
    list(schedule([Stream(iter([text(tokens=10), text(tokens=10)]), tokens_per_second=200)], control))
    assert time.monotonic() - start >= 0.04  # 10 tokens at 200/s before the second event


def test_schedule_replays_at_recorded_times():
    control = RunControl()
    events = [text(t=0.0), text(t=0.05), text(t=0.1)]
    start = time.monotonic()
    assert len(list(schedule([Stream(iter(events), replay_speed=1.0)], control))) == 3
    assert time.monotonic() - start >= 0.09
