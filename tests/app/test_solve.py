"""Typing problems into the app: the finished tree is the oracle's, node for node."""

from __future__ import annotations

import pytest
from textual.widgets import Input, Static

from retune_tui.tasks import Method
from retune_tui.trace import Trace


def tree_nodes(lane) -> list[tuple[int, int]]:
    """The keys of the Textual tree's nodes, depth first, as drawn."""
    out, stack = [], list(reversed(lane.root.children))
    while stack:
        node = stack.pop()
        out.append(node.data)
        stack.extend(reversed(node.children))
    return out


def assert_same_tree(got: Trace, want: Trace) -> None:
    assert (got.task, got.method, got.problem, got.expected) == (want.task, want.method, want.problem, want.expected)
    assert list(got.nodes) == list(want.nodes)
    for node_id, w in want.nodes.items():
        g = got.nodes[node_id]
        assert (g.parent, g.depth, g.prompt, g.children) == (w.parent, w.depth, w.prompt, w.children), node_id
        assert g.segments == w.segments, node_id
        assert (g.status, g.answer, g.error) == (w.status, w.answer, w.error), node_id
    assert got.finished is not None and want.finished is not None
    assert (got.finished.value, got.finished.correct) == (want.finished.value, want.finished.correct)


@pytest.mark.parametrize("text, method", [
    ("48213 + 90771", Method.RETUNING),
    ("1 0 1 1", Method.RETUNING),
    ("[3, -2, 5, 1]", Method.RETUNING),
    ("[3, -2, 5, 1]", Method.SCRATCHPAD),
    ("73199 + 21439", Method.BASELINE),
])
def test_typed_problem_grows_the_oracle_tree(text, method, tui, app_factory):
    want, _ = tui.oracle_run(text, method)

    async def body():
        app = app_factory(method=method)
        async with app.run_test(size=tui.SIZE) as pilot:
            await tui.type_problem(pilot, text)
            await tui.settle(pilot)
            assert app.run_view.state == "done"
            lane = app.run_view.lanes[0]
            assert list(lane.traces) == [0]
            assert_same_tree(lane.traces[0], want)
            assert tree_nodes(lane) == [(0, node.id) for node in want.walk()]
            for key in tree_nodes(lane):
                assert lane.verdict(key) is True  # every node matches the oracle
            assert lane.fault(0) is None
            summary = str(app.query_one("#summary", Static).render())
            assert "✓ correct" in summary and "tok/s" in summary

    tui.run(body())


def test_bad_text_shows_what_is_expected(tui, app_factory):
    async def body():
        app = app_factory()
        async with app.run_test(size=tui.SIZE) as pilot:
            await tui.type_problem(pilot, "what is love")
            await pilot.pause()
            message = app.query_one("#message", Static)
            assert message.has_class("-error")
            text = str(message.render())
            assert "expected" in text and "addition" in text and "\n" not in text.strip()
            assert app.run_view.state == "idle" and not app.run_view.lanes
            # then a good problem clears it and runs
            app.query_one("#problem", Input).value = ""
            await tui.type_problem(pilot, "12 + 34")
            await tui.settle(pilot)
            assert not message.has_class("-error")
            assert app.run_view.state == "done"

    tui.run(body())


def test_chosen_task_reads_a_binary_list_as_dp(tui, app_factory):
    async def body():
        app = app_factory(task="dp")
        async with app.run_test(size=tui.SIZE) as pilot:
            await tui.type_problem(pilot, "1 0 1")
            await tui.settle(pilot)
            trace = app.run_view.lanes[0].traces[0]
            assert trace.task == "dp" and trace.finished.correct

    tui.run(body())


def test_compare_runs_three_methods_side_by_side(tui, app_factory):
    async def body():
        app = app_factory()
        async with app.run_test(size=tui.SIZE) as pilot:
            await tui.type_problem(pilot, "[1, -2, 3]", submit=False)
            await app.action_compare()
            await tui.settle(pilot)
            lanes = app.run_view.lanes
            assert [lane.border_title for lane in lanes] == ["baseline", "scratchpad", "retuning"]
            for lane, method in zip(lanes, Method):
                want, _ = tui.oracle_run("[1, -2, 3]", method)
                assert_same_tree(lane.traces[0], want)
            assert app.screen.has_class("-compare")

    tui.run(body())


@pytest.mark.parametrize(("problem", "task", "words"), [("what is love", None, "not a problem of any task"),
                                                        ("12 + 34", "parity", "not a parity problem")])
def test_a_bad_problem_given_at_start_is_shown(tui, problem, task, words):
    from retune_tui.app import make_app

    async def body():
        app = make_app(settings=tui.fast_settings(task=task), problem=problem)
        async with app.run_test(size=tui.SIZE) as pilot:
            await tui.settle(pilot)
            message = app.query_one("#message", Static)
            assert message.has_class("-error") and words in str(message.render())
            assert app.failure is not None and words in str(app.failure) and app.failure.exit_code == 2
            assert app.focused is app.query_one("#problem", Input) and not app.run_view.lanes

    tui.run(body())


def test_full_width_digits_reach_the_model_as_ascii(tui, app_factory):
    async def body():
        app = app_factory()
        async with app.run_test(size=tui.SIZE) as pilot:
            await tui.type_problem(pilot, "１２ + ３")
            await tui.settle(pilot)
            trace = app.run_view.lanes[0].traces[0]
            want, _ = tui.oracle_run("12 + 3")  # as if typed in ASCII
            assert_same_tree(trace, want)
            assert all(node.context.isascii() for node in trace.nodes.values())

    tui.run(body())


def test_in_compare_every_action_follows_the_focused_lane(tui, app_factory, tmp_path):
    from retune_tui.trace import read_traces

    async def body():
        app = app_factory()
        async with app.run_test(size=tui.SIZE) as pilot:
            await tui.type_problem(pilot, "482 + 907", submit=False)
            await pilot.press("escape", "c")
            await tui.settle(pilot)
            lanes = app.run_view.lanes
            await pilot.pause(0.3)
            for index, method in ((0, "baseline"), (2, "retuning"), (1, "scratchpad")):
                lane = lanes[index]
                if index:
                    lane.focus()
                    await pilot.pause()
                assert app.focused is lane and app.lane is lane
                assert app.query_one("DetailPane").shown[0] is lane
                contexts = f"{len(lane.traces[0].nodes)} contexts · {lane.tokens} tokens"
                assert contexts in str(app.query_one("#summary", Static).render())
                await pilot.press("w")
                app.screen.query_one("#path", Input).value = str(tmp_path / f"{method}.jsonl")
                await pilot.press("enter")
                await pilot.pause()
                assert read_traces(tmp_path / f"{method}.jsonl")[0].method == method
            app.query_one("#detail").focus()  # off the lanes: still the lane focused last
            await pilot.pause()
            assert app.lane is lanes[1]

    tui.run(body())
