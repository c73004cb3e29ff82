"""A tree of 1,000+ nodes opens, scrolls, collapses, expands and filters without lag.

Times are printed (run with ``-s``), not asserted: a test is no benchmark, and this
machine may be busy. The assertions check that the whole tree is really there.
"""

from __future__ import annotations

import random
import time

import pytest

from retune_tui.engine import OracleGenerator, Runner
from retune_tui.tasks import Method, get_task
from retune_tui.trace import write_events

PROBLEMS = 30  # DP problems of length 20: 41 contexts each, 1,230 in all


@pytest.fixture(scope="module")
def big_trace(tmp_path_factory):
    task = get_task("dp")
    rng = random.Random(0)
    problems = [task.sample(rng, 20) for _ in range(PROBLEMS)]
    runner = Runner(task, Method.RETUNING, OracleGenerator(task, Method.RETUNING))
    path = tmp_path_factory.mktemp("big") / "dp20.jsonl"
    write_events(path, runner.events(problems))
    return path, sum(len(t.nodes) for t in runner.traces)


@pytest.mark.slow
def test_a_thousand_node_tree_holds_up(tui, app_factory, big_trace):
    path, nodes = big_trace
    assert nodes >= 1000
    timings: dict[str, float] = {}

    async def timed(name, pilot, action) -> None:
        start = time.perf_counter()
        result = action()
        if hasattr(result, "__await__"):
            await result
        await pilot.pause()
        timings[name] = time.perf_counter() - start

    async def body():
        start = time.perf_counter()
        app = app_factory(path)
        async with app.run_test(size=tui.SIZE) as pilot:
            await tui.settle(pilot)
            lane = app.run_view.lanes[0]
            timings["open and draw"] = time.perf_counter() - start
            assert len(lane.traces) == PROBLEMS and lane.last_line + 1 == nodes
            lane.focus()
            await timed("collapse all", pilot, lane.action_collapse_all)
            assert lane.last_line + 1 == PROBLEMS
            await timed("expand all", pilot, lane.action_expand_all)
            assert lane.last_line + 1 == nodes
            await timed("page down x10", pilot, lambda: pilot.press(*["pagedown"] * 10))
            await timed("end, home", pilot, lambda: pilot.press("end", "home"))
            await timed("next error (none: full scan)", pilot, lane.action_next_error)
            await timed("search 'can use item False'", pilot, lambda: app.filter_lanes("can use item False"))
            filtered = lane.last_line + 1
            assert 0 < filtered < nodes
            await timed("clear search", pilot, lambda: app.filter_lanes(""))
            assert lane.last_line + 1 == nodes

    tui.run(body())
    print(f"\n{nodes} nodes in {PROBLEMS} traces:")
    for name, seconds in timings.items():
        print(f"  {name:32s} {seconds * 1000:8.0f} ms")


@pytest.mark.slow
def test_a_call_chain_deeper_than_pythons_recursion_limit_opens(tui, app_factory, tmp_path):
    import sys

    task = get_task("parity")
    bits = sys.getrecursionlimit() + 100  # Textual lays a tree out a frame per level
    problem = task.parse(" ".join(random.Random(1).choice("01") for _ in range(bits)))
    runner = Runner(task, Method.RETUNING, OracleGenerator(task, Method.RETUNING))
    path = tmp_path / "deep.jsonl"
    write_events(path, runner.events([problem]))
    depth = max(node.depth for node in runner.traces[0].nodes.values())
    assert depth >= bits - 2

    async def body():
        app = app_factory(path)
        async with app.run_test(size=tui.SIZE) as pilot:
            await tui.settle(pilot)
            lane = app.run_view.lanes[0]
            assert lane.traces[0].finished.correct and lane.last_line + 1 == len(runner.traces[0].nodes)
            lane.focus()
            await pilot.press("end")
            assert lane.node_at(lane.cursor_key)[1].depth == depth

    tui.run(body())
