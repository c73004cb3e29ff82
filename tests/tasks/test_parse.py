"""Lenient parsing of what people type; one-line errors for anything else."""

from __future__ import annotations

import pytest

from retune_tui.tasks import Method, ProblemParseError, ascii_text, detect, get_method, get_task, parse_problem
from retune_tui.tasks.addition import AdditionProblem
from retune_tui.tasks.dp import DPArray, DPChosen, DPProblem
from retune_tui.tasks.parity import ParityProblem


@pytest.mark.parametrize(("text", "task", "problem"), [
    ("123+456", "addition", AdditionProblem("123", "456")),
    ("123 + 456", "addition", AdditionProblem("123", "456")),
    ("  7 + 1234 ", "addition", AdditionProblem("0007", "1234")),
    ("what is 12 + 3?", "addition", AdditionProblem("12", "03")),
    ("73199 + 21439\nSolution: ", "addition", AdditionProblem("73199", "21439")),
    ("[1,0,1]", "parity", ParityProblem((1, 0, 1))),
    ("1 0 1", "parity", ParityProblem((1, 0, 1))),
    ("What is the parity of [1, 0, 1]?", "parity", ParityProblem((1, 0, 1))),
    ("What is the parity of [1]?\nAnswer: ", "parity", ParityProblem((1,))),
    ("[3, -2, 5]", "dp", DPProblem((3, -2, 5))),
    ("3 -2 5", "dp", DPProblem((3, -2, 5))),
    ("Compute the maximum sum of nonadjacent subsequences of [1, -2, 3]\nSolution: ", "dp", DPProblem((1, -2, 3))),
    ("Question: Let's solve input = [5, 3].", "dp", DPProblem((5, 3))),
    ("Create dp array [1, -2, 3]", "dp", DPArray((1, -2, 3))),
    ("Create chosen indices array: sum array [3, 3], item array [-2, 3], can use item False", "dp",
     DPChosen((3, 3), (-2, 3), False)),
])
def test_detect_and_parse(text, task, problem):
    found_task, found = detect(text)
    assert found_task.name == task
    assert found == problem
    assert get_task(task).parse(text) == problem


def test_dp_baseline_prompt_parses():
    dp = get_task("dp")
    problem = DPProblem((5, 3))
    from retune_tui.tasks.protocol import Method
    assert dp.parse(dp.prompt(problem, Method.BASELINE)) == problem


def test_a_01_list_can_be_asked_as_dp():
    task, problem = parse_problem("[1, 0, 1]", "dp")
    assert task.name == "dp" and problem == DPProblem((1, 0, 1))


@pytest.mark.parametrize(("text", "task"), [
    ("12x", None), ("", None), ("1 + ", "addition"), ("-3 + 4", "addition"), ("[1, 2]", "parity"),
    ("[]", "parity"), ("[7, 1]", "dp"), ("[1, 2", "dp"), ("hello", "dp"),
    ("Create chosen indices array: sum array [3], item array [-2, 3], can use item False", "dp"),
])
def test_malformed_input_is_one_line_error(text, task):
    with pytest.raises(ProblemParseError) as err:
        parse_problem(text, task)
    message = str(err.value)
    assert "\n" not in message and "expected" in message or "must" in message


def test_unknown_names():
    with pytest.raises(ProblemParseError, match="choose one of: addition, parity, dp"):
        get_task("multiplication")
    with pytest.raises(ProblemParseError, match="baseline, scratchpad, retuning"):
        get_method("cot")


@pytest.mark.parametrize(("text", "task", "problem"), [
    ("１２ + ３", "addition", AdditionProblem("12", "03")),
    ("１２＋３４", "addition", AdditionProblem("12", "34")),
    ("١٢ + ٣", "addition", AdditionProblem("12", "03")),
    ("１ ０ １", "parity", ParityProblem((1, 0, 1))),
    ("［３， −2， ５］", "dp", DPProblem((3, -2, 5))),
])
def test_digits_of_other_scripts_are_read_as_ascii(text, task, problem):
    found_task, found = parse_problem(text)
    assert (found_task.name, found) == (task, problem)
    assert found_task.prompt(found, Method.RETUNING).isascii()  # what a model sees
    assert parse_problem(text, task) == (found_task, found)


def test_a_task_itself_takes_only_ascii_digits():
    """A model that writes ``Call: １２ + ３`` made a malformed call, not a sub-problem."""
    with pytest.raises(ProblemParseError):
        get_task("addition").parse("１２ + ３")
    assert ascii_text("１２ + ３") == "12 + 3" and ascii_text("x²") == "x²"


def test_an_addition_too_long_to_convert_is_said_so_not_taken_for_no_task():
    from retune_tui.tasks.addition import MAX_DIGITS

    assert detect("9" * MAX_DIGITS + " + 1")[0].name == "addition"
    with pytest.raises(ProblemParseError, match=f"an operand of {MAX_DIGITS + 1} digits; at most {MAX_DIGITS}"):
        detect("1" * (MAX_DIGITS + 1) + " + 1")
