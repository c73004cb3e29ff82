"""Integer addition: ``73199 + 21439``, one digit per recursion level."""

from __future__ import annotations

import re
from dataclasses import dataclass
from random import Random

from retune_tui.tasks.protocol import BadReturn, ProblemParseError, ProblemTooLarge, Step, Task, call_line, strip_prompt

# ASCII digits only: the operands are kept as typed, and a model must only ever see ASCII
# (``parse_problem`` turns typed full-width digits into ASCII ones before this).
_TYPED = re.compile(r"(?:what\s+is\s+)?(\d+)\s*\+\s*(\d+)\s*[=?]?", re.IGNORECASE | re.ASCII)
_CARRY = re.compile(r"Carry ([01]), Output (\d+)")
MAX_DIGITS = 4000  # the sum must convert to text: Python refuses integers of more than 4,300 digits


@dataclass(frozen=True)
class AdditionProblem:
    """Two operands as digit strings of the same width (zero-padded, as the paper did)."""

    a: str
    b: str


def _carry_output(text: str) -> tuple[int, str] | None:
    matches = _CARRY.findall(text)
    if not matches:
        return None
    carry, output = matches[-1]
    return int(carry), output


def _line(carry: int, output: str) -> str:
    return f"Carry {carry}, Output {output}"


def _random_number(rng: Random, digits: int) -> str:
    if digits == 1:
        return str(rng.randrange(10))
    return str(rng.randrange(1, 10)) + "".join(str(rng.randrange(10)) for _ in range(digits - 1))


class Addition(Task):
    name = "addition"
    expected = "two non-negative integers like '123 + 456'"
    train_lengths = (1, 15)
    eval_lengths = (1, 30)

    def parse(self, text: str) -> AdditionProblem:
        m = _TYPED.fullmatch(strip_prompt(text))
        if m is None:
            raise ProblemParseError(f"not an addition problem: {text.strip()[:60]!r}; expected {self.expected}")
        a, b = m.group(1), m.group(2)
        width = max(len(a), len(b))
        if width > MAX_DIGITS:
            raise ProblemTooLarge(f"an operand of {width} digits; at most {MAX_DIGITS} "
                                    "(Python's limit on converting integers to text)")
        return AdditionProblem(a.zfill(width), b.zfill(width))

    def sample(self, rng: Random, size: int, *, vary: bool = False, lo: int = 1) -> AdditionProblem:
        """Both operands ``size`` digits; with ``vary``, every ordered pair of widths whose
        longer one is ``size`` equally likely (the paper's every pair, swapped half the time)."""
        other = size
        if vary and size > lo:
            # Ordered pairs with max == size: (size, w) and (w, size) for w < size, (size, size) once.
            pick = rng.randrange(2 * (size - lo) + 1)
            other = lo + pick // 2 if pick < 2 * (size - lo) else size
        a, b = _random_number(rng, size), _random_number(rng, other)
        if rng.random() < 0.5:
            a, b = b, a
        return AdditionProblem(a.zfill(size), b.zfill(size))

    def size_prior(self, size: int, lo: int) -> float:
        return 2 * (size - lo) + 1

    def size(self, problem: AdditionProblem) -> int:
        return len(problem.a)

    def solve(self, problem: AdditionProblem) -> int:
        return int(problem.a) + int(problem.b)

    def text(self, problem: AdditionProblem) -> str:
        return f"{problem.a} + {problem.b}"

    def baseline(self, problem: AdditionProblem) -> str:
        return str(self.solve(problem))

    def scratchpad(self, problem: AdditionProblem) -> str:
        lines, carry, output = [], 0, ""
        for da, db in zip(reversed(problem.a), reversed(problem.b)):
            total = int(da) + int(db) + carry
            carry, output = total // 10, str(total % 10) + output
            lines.append(_line(carry, output))
        return "\n".join(lines)

    def retuning_step(self, problem: AdditionProblem, returns: list[str]) -> Step:
        head = int(problem.a[0]) + int(problem.b[0])
        if len(problem.a) == 1:
            return Step(_line(head // 10, str(head % 10)))
        if not returns:
            child = AdditionProblem(problem.a[1:], problem.b[1:])
            return Step(call_line(self.text(child)), child)
        returned = _carry_output(returns[-1])
        if returned is None:
            raise BadReturn(f"returned value {returns[-1]!r} is not 'Carry c, Output d…'")
        carry, output = returned
        total = head + carry
        return Step(_line(total // 10, str(total % 10) + output))

    def extract(self, answer: str) -> int | None:
        returned = _carry_output(answer)
        if returned is not None:
            carry, output = returned
            return int(f"{carry}{output}") if carry else int(output)
        answer = answer.strip()
        return int(answer) if re.fullmatch(r"[0-9]+", answer) else None
