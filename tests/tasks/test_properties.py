"""Property-based checks of the oracle over random problems of every task and method."""

from __future__ import annotations

from random import Random

from hypothesis import given, settings
from hypothesis import strategies as st

from retune_tui.tasks import TASKS
from retune_tui.tasks.protocol import METHODS, Method, ProblemParseError, call_text, context_answer, return_text

task_names = st.sampled_from(sorted(TASKS))
methods = st.sampled_from(METHODS)


def problem_of(name: str, size: int, seed: int, vary: bool):
    task = TASKS[name]
    return task, task.sample(Random(seed), size, vary=vary)


problems = st.builds(problem_of, task_names, st.integers(1, 12), st.integers(0, 2**32), st.booleans())


@settings(max_examples=150, deadline=None)
@given(problems, methods)
def test_oracle_answer_is_the_ground_truth(tp, method):
    task, problem = tp
    assert task.extract(task.oracle_answer(problem, method)) == task.solve(problem)


@settings(max_examples=150, deadline=None)
@given(problems)
def test_segments_chain_into_the_next_context(tp):
    """Within a context, prompt + completion + the callee's answer is the next prompt."""
    task, problem = tp
    contexts: dict[str, list] = {}  # problem text -> its context's examples, in order
    for ex in task.oracle_examples(problem, Method.RETUNING):
        contexts.setdefault(ex.prompt.split("\nSolution: ")[0], []).append(ex)
    answers = {}
    for text, exs in contexts.items():
        exs.sort(key=lambda e: len(e.prompt))
        last = exs[-1]
        answers[text] = context_answer(last.prompt + last.completion, last.completion)
    for text, exs in contexts.items():
        assert exs[0].prompt == task.prompt(task.parse(text), Method.RETUNING)
        for before, after in zip(exs, exs[1:]):
            call = call_text(before.completion)
            assert call is not None
            assert after.prompt == before.prompt + before.completion + return_text(answers[call])
        assert call_text(exs[-1].completion) is None


@settings(max_examples=150, deadline=None)
@given(problems)
def test_recursion_depth_is_what_the_task_predicts(tp):
    task, problem = tp
    examples = task.oracle_examples(problem, Method.RETUNING)
    assert max(ex.depth for ex in examples) == task.depth(problem)
    for method in (Method.BASELINE, Method.SCRATCHPAD):
        assert [ex.depth for ex in task.oracle_examples(problem, method)] == [0]


@settings(max_examples=150, deadline=None)
@given(problems, methods)
def test_parse_of_format_is_identity(tp, method):
    task, problem = tp
    assert task.parse(task.text(problem)) == problem
    assert task.parse(task.display(problem)) == problem
    assert task.parse(task.prompt(problem, method)) == problem


@settings(max_examples=150, deadline=None)
@given(problems)
def test_every_call_parses_back_and_is_smaller(tp):
    task, problem = tp
    for ex in task.oracle_examples(problem, Method.RETUNING):
        call = call_text(ex.completion)
        if call is not None:
            child = task.parse(call)
            assert task.text(child) == call
            assert task.measure(child) < task.measure(task.parse(ex.prompt))


@settings(max_examples=200, deadline=None)
@given(task_names, st.text(max_size=30))
def test_garbage_is_rejected_or_parsed_cleanly(name, text):
    task = TASKS[name]
    try:
        problem = task.parse(text)
    except ProblemParseError as exc:
        assert "\n" not in str(exc)
    else:
        assert task.parse(task.text(problem)) == problem
