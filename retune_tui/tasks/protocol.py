"""The recursion protocol shared by every task and method (FORMATS.md).

A *context* starts as a task's prompt. The model writes a *segment*; a segment that
contains a line ``Call: <sub-problem>\\n`` stops right after that newline, the
sub-problem is solved in a fresh context, and the parent is extended with
``Return: <answer>\\nAnswer: `` before it writes its next segment.

Everything here is plain Python: data generation, the engine and the UI all use it, so
the text a model is trained on and the text it sees at inference cannot drift apart.
"""

from __future__ import annotations

import enum
import re
from abc import ABC, abstractmethod
from collections.abc import Generator, Hashable
from dataclasses import dataclass, field
from random import Random
from typing import Any

from retune_tui.errors import InputError

SOLUTION = "\nSolution: "
ANSWER = "\nAnswer: "
CALL = "Call: "
RETURN = "Return: "
ANSWER_MARK = "Answer: "

_RETURN_RE = re.compile(r"\nReturn: (.*)\nAnswer: ")


class Method(str, enum.Enum):
    """How a model is taught to solve a problem."""

    BASELINE = "baseline"
    SCRATCHPAD = "scratchpad"
    RETUNING = "retuning"

    def __str__(self) -> str:
        return self.value


METHODS: tuple[Method, ...] = tuple(Method)


class ProblemParseError(InputError):
    """Text that is not a problem of the task; the message is one line for the user."""


class ProblemTooLarge(ProblemParseError):
    """Text that is recognisably a problem of the task, but one too large to handle."""


class BadReturn(ValueError):
    """A value returned into a context that the task cannot read (from a faulty child)."""


def strip_prompt(text: str) -> str:
    """The problem part of a typed or pasted prompt: drop ``Solution:``/``Answer:`` and after."""
    for sep in (SOLUTION.rstrip(), ANSWER.rstrip()):
        idx = text.find(sep)
        if idx >= 0:
            text = text[:idx]
    return text.strip()


def return_text(answer: str) -> str:
    """What a parent context receives when its child finishes."""
    return f"{RETURN}{answer}{ANSWER}"


def call_line(problem_text: str) -> str:
    return f"{CALL}{problem_text}\n"


def call_stop(text: str) -> int | None:
    """Where a segment must stop: just after the newline ending its first ``Call:`` line.

    Returns the length of the segment (an index into ``text``), or None while no call
    line is complete. Generators use this on the text decoded so far, which handles
    tokenizers that merge the newline with neighbouring characters.
    """
    start = text.find(CALL)
    if start < 0:
        return None
    end = text.find("\n", start)
    return None if end < 0 else end + 1


def call_text(segment: str) -> str | None:
    """The sub-problem text of a segment's ``Call:`` line, or None if it makes no call."""
    stop = call_stop(segment)
    if stop is None:
        return None
    start = segment.find(CALL) + len(CALL)
    return segment[start : stop - 1]


def context_answer(context: str, last_segment: str) -> str:
    """A context's answer: the text after the last ``Answer: `` in the whole context
    (prompt plus segments); if there is none, its last segment."""
    idx = context.rfind(ANSWER_MARK)
    return last_segment if idx < 0 else context[idx + len(ANSWER_MARK) :]


def returned_values(context: str) -> list[str]:
    """The values that came back into a context, in order."""
    return _RETURN_RE.findall(context)


@dataclass(frozen=True)
class Step:
    """One correct segment: its text and, if it calls, the sub-problem it opens."""

    text: str
    call: Hashable | None = None


@dataclass(frozen=True)
class Example:
    """One training example: a segment of an oracle trace."""

    prompt: str
    completion: str
    size: int  # size of the problem of the context the segment belongs to
    depth: int  # depth of that context in the trace (top level = 0)


@dataclass
class _OpenContext:
    """A context of an oracle trace that is still being written."""

    problem: Hashable
    depth: int
    context: str
    returns: list[str] = field(default_factory=list)


class Task(ABC):
    """A compositional problem family with its text formats for every method.

    Problems are small frozen dataclasses (hashable). A task may have several kinds of
    problem (DP's sub-problems); ``parse`` accepts all of them, so a model's call text
    and a user's typed text go through the same function.
    """

    name: str
    #: What a user should type, for one-line errors, e.g. "two numbers like '123 + 456'".
    expected: str
    #: Problem sizes the paper trained on (FORMATS.md), the default for data and training.
    train_lengths: tuple[int, int]
    #: Sizes evaluated by default: the trained ones and well beyond.
    eval_lengths: tuple[int, int]

    # --- problems -------------------------------------------------------------------

    @abstractmethod
    def parse(self, text: str) -> Hashable:
        """Parse what a person types, or any prompt or call text of this task.

        Raises:
            ProblemParseError: a one-line message naming what was expected.
        """

    @abstractmethod
    def sample(self, rng: Random, size: int, *, vary: bool = False, lo: int = 1) -> Hashable:
        """A random top-level problem of ``size``.

        With ``vary`` (training data), parts of the problem may be smaller, down to ``lo``
        (addition: the shorter operand's width), as ``size_prior`` describes.
        """

    def size_prior(self, size: int, lo: int) -> float:
        """How many kinds of training problem have this size (addition: pairs of widths)."""
        return 1.0

    @abstractmethod
    def size(self, problem: Hashable) -> int:
        """The problem's size (digits, list length)."""

    def measure(self, problem: Hashable) -> tuple[int, ...]:
        """An order a call must strictly decrease; by default the size."""
        return (self.size(problem),)

    @abstractmethod
    def solve(self, problem: Hashable) -> Any:
        """The ground truth: the final value a correct solution arrives at."""

    @abstractmethod
    def text(self, problem: Hashable) -> str:
        """The problem as written in a Re-Tuning context and in a ``Call:`` line."""

    def display(self, problem: Hashable) -> str:
        """The problem as a person would type it (one short line)."""
        return self.text(problem)

    def depth(self, problem: Hashable) -> int:
        """Depth of the deepest context of the problem's Re-Tuning trace (top = 0)."""
        return self.size(problem) - 1

    # --- methods ----------------------------------------------------------------------

    def prompt(self, problem: Hashable, method: Method) -> str:
        """The text a context starts with."""
        if method is Method.BASELINE:
            return self.text(problem) + ANSWER
        return self.text(problem) + SOLUTION

    @abstractmethod
    def baseline(self, problem: Hashable) -> str:
        """The direct answer."""

    @abstractmethod
    def scratchpad(self, problem: Hashable) -> str:
        """Every intermediate step, then the answer, as one segment."""

    @abstractmethod
    def retuning_step(self, problem: Hashable, returns: list[str]) -> Step:
        """The next segment of a Re-Tuning context, given the values returned so far."""

    # --- answers ----------------------------------------------------------------------

    @abstractmethod
    def extract(self, answer: str) -> Any | None:
        """The final value written in a context's answer, or None if there is none."""

    def format_value(self, value: Any) -> str:
        """A final value as a short string for people."""
        return str(value)

    # --- the oracle -------------------------------------------------------------------

    def oracle_step(self, problem: Hashable, method: Method, returns: list[str]) -> Step:
        """The correct next segment of a context of ``method`` that has seen ``returns``."""
        if method is Method.RETUNING:
            return self.retuning_step(problem, returns)
        if returns:
            raise ProblemParseError(f"method {method} makes no calls, but the context holds a Return")
        if method is Method.BASELINE:
            return Step(self.baseline(problem))
        return Step(self.scratchpad(problem))

    def oracle(self, context: str, method: Method) -> str:
        """For any context of any method, the correct next segment."""
        problem = self.parse(context)
        return self.oracle_step(problem, method, returned_values(context)).text

    def examples(self, problem: Hashable, method: Method) -> Generator[Example, None, str]:
        """The oracle trace of ``problem`` as training examples, one per segment, in the
        order they are written (a parent's call, its child's examples, the parent's next
        segment). The generator's return value is the top context's answer.

        A stack of open contexts, not recursion: a problem may be deeper than Python's
        recursion limit (a 1,000-bit parity list is 1,000 contexts deep).
        """
        stack = [_OpenContext(problem, 0, self.prompt(problem, method))]
        while True:
            ctx = stack[-1]
            step = self.oracle_step(ctx.problem, method, ctx.returns)
            yield Example(ctx.context, step.text, self.size(ctx.problem), ctx.depth)
            ctx.context += step.text
            if step.call is not None:
                stack.append(_OpenContext(step.call, ctx.depth + 1, self.prompt(step.call, method)))
                continue
            answer = context_answer(ctx.context, step.text)
            stack.pop()
            if not stack:
                return answer
            stack[-1].returns.append(answer)
            stack[-1].context += return_text(answer)

    def oracle_examples(self, problem: Hashable, method: Method) -> list[Example]:
        """Every training example of one problem."""
        return list(self.examples(problem, method))

    def oracle_answer(self, problem: Hashable, method: Method) -> str:
        """The answer text of the problem's oracle trace."""
        gen = self.examples(problem, method)
        try:
            while True:
                next(gen)
        except StopIteration as stop:
            return stop.value
