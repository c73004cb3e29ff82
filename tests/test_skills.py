"""The pre-training skills: copy, drop first, prepend — never a task's computation."""

from __future__ import annotations

from random import Random

from retune_tui.tasks.lists import find_lists
from retune_tui.train import dataset as ds
from retune_tui.train.skills import REPLAY_LENGTHS, skill_example, skill_examples


def test_skills_are_what_they_say():
    rng = Random(0)
    for size in range(1, 30):
        prompt, completion = skill_example(rng, size)
        assert prompt.endswith("\nAnswer: ")
        body = prompt[: -len("\nAnswer: ")]
        if body.startswith("Copy: "):
            assert completion == body[len("Copy: "):]
        elif body.startswith("Drop first: "):
            source = body[len("Drop first: "):]
            if source.startswith("["):
                assert list(find_lists(completion)[0]) == list(find_lists(source)[0][1:])
            elif " + " in source:
                a, b = source.split(" + ")
                assert completion == f"{a[1:]} + {b[1:]}"
            else:
                assert completion == source[1:]
        else:
            assert body.startswith("Prepend ")


def test_no_task_text_in_the_skills():
    for prompt, completion, _ in skill_examples((1, 40), 3000, 1):
        for word in ("Carry", "Output", "parity", "Call:", "Return:", "dp array", "chosen"):
            assert word not in prompt and word not in completion


def test_sizes_cover_the_range_and_are_seeded():
    sizes = [s for _, _, s in skill_examples((1, 40), 2000, 3)]
    assert min(sizes) == 1 and max(sizes) == 40
    assert list(skill_examples((1, 40), 50, 3)) == list(skill_examples((1, 40), 50, 3))


def test_skills_replay_adds_its_fraction_of_rehearsal_examples():
    task = ds.oracle_examples("addition", "retuning", (3, 6), 60, 0, False)
    mixed = ds.with_skills_replay(task, 0.25, seed=2)
    assert mixed[: len(task)] == task
    replay = mixed[len(task):]
    assert len(replay) == round(len(task) / 3)  # a quarter of the whole
    assert all(ex.prompt.endswith("\nAnswer: ") and "Solution" not in ex.prompt for ex in replay)
    assert {ex.size for ex in replay} == {min(ex.size for ex in task)}  # admitted from a curriculum's start
    longest = max(len(ex.completion) for ex in replay)
    assert longest > max(len(ex.completion) for ex in task)  # sequences past the task's sizes
    assert ds.with_skills_replay(task, 0.0, seed=2) is task
    assert REPLAY_LENGTHS == (1, 40)
