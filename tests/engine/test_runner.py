"""The runner with the oracle backend (exact) and with a scripted, misbehaving model."""

from __future__ import annotations

from random import Random

import pytest
from helpers import ScriptedGenerator

from retune_tui.engine import Limits, OracleGenerator, Runner
from retune_tui.engine.generator import CALL, EOS, LENGTH, Delta
from retune_tui.tasks import TASKS, get_task
from retune_tui.tasks.protocol import METHODS, Method
from retune_tui.trace import DONE, ERROR, RunFinished, TextGenerated, build_traces


def node_examples(trace):
    """(context before, segment) for every segment of every node."""
    out = set()
    for node in trace.walk():
        context = node.prompt
        for seg in node.segments:
            out.add((context, seg.text))
            context += seg.text + (f"Return: {seg.returned}\nAnswer: " if seg.returned is not None else "")
    return out


@pytest.mark.parametrize("task_name", sorted(TASKS))
@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("chars", [None, 3])
def test_oracle_runner_reproduces_oracle_traces(task_name, method, chars):
    task = get_task(task_name)
    rng = Random(7)
    problems = [task.sample(rng, size) for size in (2, 3, 5, 6)]
    runner = Runner(task, method, OracleGenerator(task, method, chars_per_step=chars))
    events = []
    traces = runner.run(problems, on_event=events.append)
    for problem, trace in zip(problems, traces):
        assert trace.status == DONE and trace.finished.correct
        expected = {(ex.prompt, ex.completion) for ex in task.oracle_examples(problem, method)}
        assert node_examples(trace) == expected
        assert max(n.depth for n in trace.nodes.values()) == (task.depth(problem) if method is Method.RETUNING else 0)
    # The events alone rebuild the same trees.
    assert [t.to_json() for t in build_traces(events)] == [t.to_json() for t in traces]


def test_streaming_emits_text_deltas():
    task = get_task("addition")
    runner = Runner(task, Method.RETUNING, OracleGenerator(task, Method.RETUNING, chars_per_step=2))
    deltas = [e for e in runner.events([task.parse("73199 + 21439")]) if isinstance(e, TextGenerated)]
    assert deltas and all(len(e.text) <= 2 for e in deltas)


def test_problems_run_batched_in_one_step():
    task = get_task("parity")
    gen = OracleGenerator(task, Method.RETUNING)
    seen = []
    step = gen.step
    gen.step = lambda keys: (seen.append(len(keys)), step(keys))[1]
    Runner(task, Method.RETUNING, gen).run([task.parse("1 0 1"), task.parse("1 1"), task.parse("0 0 0 1")])
    assert seen[0] == 3  # every problem's root in the first step
    assert sum(seen) == sum(2 * n - 1 for n in (3, 2, 4))  # each segment stepped once


def addition_script(corrupt):
    """The addition oracle, with ``corrupt(context, segment)`` changing what it writes."""
    task = get_task("addition")
    return lambda context: corrupt(context, task.oracle(context, Method.RETUNING))


def run_scripted(script, problems=("73199 + 21439", "12 + 34"), limits=None, clock=None):
    task = get_task("addition")
    gen = ScriptedGenerator(script)
    kwargs = {"clock": clock} if clock else {}
    runner = Runner(task, Method.RETUNING, gen, limits, **kwargs)
    traces = runner.run([task.parse(p) for p in problems])
    return traces, gen


def error_node(trace):
    """The node where the error happened (not the ancestors it failed)."""
    [node] = [n for n in trace.nodes.values() if n.status == ERROR and not n.error.startswith("sub-call")]
    return node


@pytest.mark.parametrize(("corrupt", "reason"), [
    (lambda c, s: s.replace("Call: 3199 + 1439", "Call: 3199 + 14x9"), "malformed call"),
    (lambda c, s: s.replace("Call: 3199 + 1439", "Call: 3199+1439"), "malformed call: expected the form"),
    (lambda c, s: s.replace("Call: 3199 + 1439", "Call: 73199 + 21439"), "repeats an ancestor"),
    (lambda c, s: s.replace("Call: 199 + 439", "Call: 1999 + 4399"), "not smaller than its parent"),
    (lambda c, s: s.replace("Carry 1, Output 8", "Carry 1, Output 8 and on and on and on" * 5),
     "no stop within"),
])
def test_a_bad_call_is_an_error_node_and_other_problems_finish(corrupt, reason):
    (bad, good), gen = run_scripted(addition_script(corrupt))
    assert bad.status == ERROR and reason in error_node(bad).error
    assert reason in bad.finished.error
    assert all(n.status == ERROR for n in bad.nodes.values() if n.status != DONE)
    assert good.status == DONE and good.finished.correct
    assert not gen.contexts  # every context was closed


def test_depth_and_call_limits():
    (deep, _), _ = run_scripted(addition_script(lambda c, s: s), limits=Limits(max_depth=2))
    assert "depth limit of 2" in error_node(deep).error and error_node(deep).depth == 3
    (many, _), _ = run_scripted(addition_script(lambda c, s: s), limits=Limits(max_calls=2))
    assert "calls limit of 2" in error_node(many).error


def test_token_and_time_budgets():
    (bad, _), _ = run_scripted(addition_script(lambda c, s: s), limits=Limits(max_total_tokens=30))
    assert "total-token budget of 30" in error_node(bad).error
    assert sum(node.tokens for node in bad.nodes.values()) == 30  # stopped at the budget, not a segment past it
    ticks = iter(range(10_000))
    (slow, _), _ = run_scripted(addition_script(lambda c, s: s), limits=Limits(max_seconds=5),
                                clock=lambda: float(next(ticks)))
    assert "wall-time budget" in error_node(slow).error


def test_a_budget_spent_exactly_by_a_call_opens_no_further_segment():
    (whole, _), _ = run_scripted(addition_script(lambda c, s: s))
    first = whole.nodes[0].segments[0].tokens  # the top context's call
    (bad, _), gen = run_scripted(addition_script(lambda c, s: s), limits=Limits(max_total_tokens=first))
    assert error_node(bad).id == 1 and "total-token budget" in error_node(bad).error
    assert sum(node.tokens for node in bad.nodes.values()) == first
    assert (bad.tree, 1) not in gen.budget  # the child's context never went to the model


def test_the_oracle_spends_a_token_on_eos_as_a_model_does():
    task = get_task("addition")
    gen = OracleGenerator(task, Method.RETUNING)
    answer = task.oracle("7 + 5\nSolution: ", Method.RETUNING)  # a base case: text, then EOS
    gen.open("a", "7 + 5\nSolution: ", max_new_tokens=len(answer) + 1)
    assert gen.step(["a"])["a"] == Delta(answer, len(answer) + 1, done=True, reason=EOS)
    gen.open("b", "7 + 5\nSolution: ", max_new_tokens=len(answer))  # the text fits, its EOS does not
    assert gen.step(["b"])["b"] == Delta(answer, len(answer), done=True, reason=LENGTH)
    call = task.oracle("17 + 25\nSolution: ", Method.RETUNING)  # a call ends at its newline: no EOS
    gen.open("c", "17 + 25\nSolution: ", max_new_tokens=len(call))
    assert gen.step(["c"])["c"] == Delta(call, len(call), done=True, reason=CALL)


def test_batches_run_one_after_another_and_keep_every_tree():
    task = get_task("parity")
    problems = [task.parse(text) for text in ("1 0", "1 1 0", "0 1", "1 1 1 1", "0")]
    runner = Runner(task, Method.RETUNING, OracleGenerator(task, Method.RETUNING))
    started = []
    for event in runner.events(problems, batch=2):
        if event.kind == "problem_started":
            started.append((event.tree, sum(t.finished is not None for t in runner.traces)))
    assert started == [(0, 0), (1, 0), (2, 2), (3, 2), (4, 4)]  # a batch starts when the one before is done
    assert [t.tree for t in runner.traces] == [0, 1, 2, 3, 4] and all(t.finished.correct for t in runner.traces)


def test_derived_limits_leave_room_for_a_correct_model():
    task = get_task("dp")
    limits = Limits().resolve(task, task.parse("[1, -2, 3, 4]"), Method.RETUNING)
    assert limits.max_depth == 4 + 2 and limits.max_calls >= 8 and limits.max_segment_tokens > 100


def test_a_method_without_calls_may_not_call():
    task = get_task("parity")
    gen = ScriptedGenerator(lambda c: "Call: What is the parity of [1]?\n")
    [trace] = Runner(task, Method.BASELINE, gen, Limits(max_segment_tokens=100)).run([task.parse("1 1")])
    assert "makes no calls" in error_node(trace).error


def test_wrong_answer_is_done_but_not_correct():
    (trace, _), _ = run_scripted(addition_script(lambda c, s: s.replace("Output 94638", "Output 94639")))
    assert trace.status == DONE and trace.finished.correct is False and trace.finished.value == "94639"


def test_stopping_early_closes_every_context():
    task = get_task("addition")
    gen = ScriptedGenerator(lambda c: task.oracle(c, Method.RETUNING))
    events = Runner(task, Method.RETUNING, gen).events([task.parse("73199 + 21439")])
    seen = [next(events) for _ in range(30)]
    events.close()
    assert not gen.contexts
    assert not any(isinstance(e, RunFinished) for e in seen)
