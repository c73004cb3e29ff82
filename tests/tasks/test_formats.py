"""Every format of FORMATS.md, character for character (the golden fixture)."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import pytest

from retune_tui.tasks import get_task
from retune_tui.tasks.protocol import Method

GOLDEN = Path(__file__).parent.parent / "formats-golden.jsonl"


def golden_groups() -> dict[tuple[str, str, str], set[tuple[str, str]]]:
    groups: dict[tuple[str, str, str], set[tuple[str, str]]] = defaultdict(set)
    for line in GOLDEN.read_text().splitlines():
        row = json.loads(line)
        groups[(row["task"], row["method"], row["problem"])].add((row["prompt"], row["completion"]))
    return groups


GROUPS = golden_groups()


def test_fixture_covers_every_task_and_method():
    assert {(t, m) for t, m, _ in GROUPS} == {(t, m.value) for t in ("addition", "parity", "dp") for m in Method}


@pytest.mark.parametrize("key", sorted(GROUPS), ids=lambda k: f"{k[0]}-{k[1]}-{k[2]}")
def test_oracle_examples_match_golden(key):
    task_name, method, problem_text = key
    task = get_task(task_name)
    problem = task.parse(problem_text)
    got = {(ex.prompt, ex.completion) for ex in task.oracle_examples(problem, Method(method))}
    assert got == GROUPS[key]


@pytest.mark.parametrize("key", sorted(GROUPS), ids=lambda k: f"{k[0]}-{k[1]}-{k[2]}")
def test_oracle_of_any_golden_context(key):
    """The oracle, given only the context text, writes the golden segment."""
    task_name, method, _ = key
    task = get_task(task_name)
    for prompt, completion in GROUPS[key]:
        assert task.oracle(prompt, Method(method)) == completion


def test_formats_md_examples():
    add, parity, dp = get_task("addition"), get_task("parity"), get_task("dp")
    assert add.prompt(add.parse("123 + 45678"), Method.BASELINE) == "00123 + 45678\nAnswer: "
    assert add.scratchpad(add.parse("9999 + 0001")) == (
        "Carry 1, Output 0\nCarry 1, Output 00\nCarry 1, Output 000\nCarry 1, Output 0000")
    assert parity.scratchpad(parity.parse("[1, 0, 1]")) == "Compute one element at a time. 1 1 0"
    assert dp.baseline(dp.parse("[1, -2, 3]")) == "[1, 2, 1]"
    assert dp.prompt(dp.parse("[3, 2, 1, 5, 2]"), Method.SCRATCHPAD) == "Question: Let's solve input = [3, 2, 1, 5, 2]."
    assert dp.scratchpad(dp.parse("[3, 2, 1, 5, 2]")).endswith("output=[1, 2, 2, 1, 2].")
    step = add.retuning_step(add.parse("73199 + 21439"), ["Carry 0, Output 4638"])
    assert step.text == "Carry 0, Output 94638"


@pytest.mark.parametrize(("task", "answer", "value"), [
    ("addition", "Carry 1, Output 0000", 10000),
    ("addition", "Carry 0, Output 94638", 94638),
    ("addition", "94638", 94638),
    ("addition", "Carry 1, Output 8\nCarry 0, Output 38", 38),
    ("parity", "0", 0),
    ("parity", "Compute one element at a time. 1 1 0", 0),
    ("dp", "[1, 2, 1]", [1, 2, 1]),
    ("dp", "Reconstructing all together, output=[1, 2, 2, 1, 2].", [1, 2, 2, 1, 2]),
    ("addition", "Carry", None),
    ("parity", "two", None),
    ("dp", "nothing", None),
])
def test_answer_extraction(task, answer, value):
    assert get_task(task).extract(answer) == value
