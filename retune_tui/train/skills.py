"""Generic skills to pre-train a small base on, so it can copy before it learns a task.

A model trained from scratch on the task formats cannot copy a number longer than any
it has seen, so it cannot make a longer problem's call (the project's first probes). The paper's
gains beyond the trained sizes come from a pretrained base that copies. These skills
give a small base that ability at lengths well past the tasks' training sizes:

* ``Copy: X`` → X
* ``Drop first: X`` → X without its first element (first digit of each operand)
* ``Prepend E to X`` → X with E in front

for X a digit string, a pair of equal-width numbers ``a + b``, a list of bits, or a
list of small integers. They are skills the tasks *use*, not their solutions: no sum,
carry, parity or dynamic program is ever computed here. Each example is one
``(prompt, completion)`` with the prompt ending ``\\nAnswer: ``.
"""

from __future__ import annotations

from collections.abc import Iterator
from random import Random

from retune_tui.tasks.lists import format_list

OPERATIONS = ("copy", "drop", "prepend")
SHAPES = ("digits", "pair", "bits", "ints", "sums")
#: Lists of integers stay short, as DP's do (its arrays are evaluated up to 10-20 long).
MAX_INTS = 24
#: Skills rehearsed while training a task adapter (`skills_replay`): the bundled base's pre-training lengths.
REPLAY_LENGTHS = (1, 40)


def _digits(rng: Random, n: int) -> str:
    return "".join(str(rng.randrange(10)) for _ in range(n))


def _value(rng: Random, shape: str, n: int) -> list:
    """A sequence of ``n`` elements of the shape (as a list of its elements)."""
    if shape == "digits":
        return list(_digits(rng, n))
    if shape == "pair":
        return [(d1, d2) for d1, d2 in zip(_digits(rng, n), _digits(rng, n))]
    if shape == "bits":
        return [rng.randrange(2) for _ in range(n)]
    if shape == "ints":
        return [rng.randint(-5, 5) for _ in range(n)]
    return [rng.randint(0, 40) for _ in range(n)]  # "sums": like DP's dp arrays


def _text(shape: str, elements: list) -> str:
    if shape == "digits":
        return "".join(elements)
    if shape == "pair":
        return "".join(a for a, _ in elements) + " + " + "".join(b for _, b in elements)
    return format_list(elements)


def _element(rng: Random, shape: str) -> object:
    return _value(rng, shape, 1)[0]


def _element_text(shape: str, element: object) -> str:
    if shape == "pair":
        a, b = element  # type: ignore[misc]
        return f"{a} and {b}"
    return str(element)


def skill_example(rng: Random, size: int) -> tuple[str, str]:
    """One random skill example whose sequence has ``size`` elements."""
    operation = rng.choice(OPERATIONS)
    shape = rng.choice(SHAPES)
    if shape in ("ints", "sums"):
        size = min(size, MAX_INTS)
    elements = _value(rng, shape, size)
    if operation == "copy":
        return f"Copy: {_text(shape, elements)}\nAnswer: ", _text(shape, elements)
    if operation == "drop":
        if size < 2:
            elements += _value(rng, shape, 1)
        return f"Drop first: {_text(shape, elements)}\nAnswer: ", _text(shape, elements[1:])
    element = _element(rng, shape)
    return (f"Prepend {_element_text(shape, element)} to {_text(shape, elements)}\nAnswer: ",
            _text(shape, [element, *elements]))


def skill_examples(lengths: tuple[int, int], count: int, seed: int) -> Iterator[tuple[str, str, int]]:
    """``count`` examples with sizes uniform in ``lengths``: (prompt, completion, size)."""
    rng = Random(f"skills:{seed}")
    lo, hi = lengths
    for _ in range(count):
        size = rng.randint(lo, hi)
        prompt, completion = skill_example(rng, size)
        yield prompt, completion, size
