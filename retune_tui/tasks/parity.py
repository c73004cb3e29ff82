"""Parity of a list of bits: ``What is the parity of [1, 0, 1]?``, one element per level."""

from __future__ import annotations

import re
from dataclasses import dataclass
from random import Random

from retune_tui.tasks.lists import format_list, parse_list
from retune_tui.tasks.protocol import BadReturn, ProblemParseError, Step, Task, call_line, strip_prompt

_QUESTION = re.compile(r"what\s+is\s+the\s+parity\s+of\s+(.*?)\s*\??", re.IGNORECASE | re.DOTALL)


@dataclass(frozen=True)
class ParityProblem:
    bits: tuple[int, ...]


class Parity(Task):
    name = "parity"
    expected = "a list of 0s and 1s like '[1, 0, 1]' or '1 0 1'"
    train_lengths = (1, 21)
    eval_lengths = (1, 40)

    def parse(self, text: str) -> ParityProblem:
        body = strip_prompt(text)
        m = _QUESTION.fullmatch(body)
        bits = parse_list(m.group(1) if m else body)
        if not bits or any(b not in (0, 1) for b in bits):
            raise ProblemParseError(f"not a parity problem: {text.strip()[:60]!r}; expected {self.expected}")
        return ParityProblem(bits)

    def sample(self, rng: Random, size: int, *, vary: bool = False, lo: int = 1) -> ParityProblem:
        return ParityProblem(tuple(rng.randrange(2) for _ in range(size)))

    def size(self, problem: ParityProblem) -> int:
        return len(problem.bits)

    def solve(self, problem: ParityProblem) -> int:
        return sum(problem.bits) % 2

    def text(self, problem: ParityProblem) -> str:
        return f"What is the parity of {format_list(problem.bits)}?"

    def display(self, problem: ParityProblem) -> str:
        return format_list(problem.bits)

    def baseline(self, problem: ParityProblem) -> str:
        return str(self.solve(problem))

    def scratchpad(self, problem: ParityProblem) -> str:
        running, prefixes = 0, []
        for bit in problem.bits:
            running ^= bit
            prefixes.append(str(running))
        return "Compute one element at a time. " + " ".join(prefixes)

    def retuning_step(self, problem: ParityProblem, returns: list[str]) -> Step:
        first = problem.bits[0]
        if len(problem.bits) == 1:
            return Step(str(first))
        if not returns:
            child = ParityProblem(problem.bits[1:])
            return Step(call_line(self.text(child)), child)
        rest = returns[-1].strip()
        if rest not in ("0", "1"):
            raise BadReturn(f"returned value {returns[-1]!r} is not 0 or 1")
        return Step(str(first ^ int(rest)))

    def extract(self, answer: str) -> int | None:
        tokens = answer.split()
        return int(tokens[-1]) if tokens and tokens[-1] in ("0", "1") else None
