"""Maximum sum of non-adjacent elements (Dziri et al., 2023), as FORMATS.md defines it.

Re-Tuning splits it into three kinds of context: the top level calls ``Create dp array``
(one element per level), then ``Create chosen indices array`` (one element per level),
then finishes like every context, writing the second call's value as its answer.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from random import Random

from retune_tui.tasks.lists import find_lists, format_list, parse_list
from retune_tui.tasks.protocol import (
    ANSWER,
    BadReturn,
    Method,
    ProblemParseError,
    Step,
    Task,
    call_line,
    strip_prompt,
)

VALUE_RANGE = (-5, 5)

BASELINE_TEXT = (
    "Given a sequence of integers, find a subsequence with the highest sum, such that no two "
    "numbers in the subsequence are adjacent in the original sequence.\n\nOutput a list with "
    '"1" for chosen numbers and "2" for unchosen ones. If multiple solutions exist, select the '
    "lexicographically smallest. Input = {}."
)
SCRATCHPAD_PROMPT = "Question: Let's solve input = {}."
TOP_TEXT = "Compute the maximum sum of nonadjacent subsequences of {}"
DP_TEXT = "Create dp array {}"
CHOSEN_TEXT = "Create chosen indices array: sum array {}, item array {}, can use item {}"

DP_BASE = "Return [0] if negative else element." + ANSWER
DP_CALL = "Call with array minus first element. "
DP_APPEND = "Append max(return[0], array[0] + return[1]) to return." + ANSWER
CHOSEN_RULE = "If there is only 1 item, return 1 if we should use it else 2."
CHOSEN_CALL = " If we should use the first item to get the sum, call False else True. "
CHOSEN_APPEND = "Append 1 if False else 2." + ANSWER

_LIST = r"(\[[-\d,\s]*\])"
_KINDS = [
    ("dp", re.compile(r"Create dp array " + _LIST)),
    ("chosen", re.compile(r"Create chosen indices array: sum array " + _LIST + r", item array " + _LIST
                          + r", can use item (True|False)")),
    ("top", re.compile(r"Compute the maximum sum of nonadjacent subsequences of " + _LIST)),
    ("top", re.compile(r"Question: Let's solve input = " + _LIST + r"\..*", re.DOTALL)),
    ("top", re.compile(r"Given a sequence of integers.*Input = " + _LIST + r"\.", re.DOTALL)),
]


@dataclass(frozen=True)
class DPProblem:
    """The question asked by a user: which items to choose."""

    items: tuple[int, ...]


@dataclass(frozen=True)
class DPArray:
    """Sub-problem: the dp array (best sum from each position on)."""

    items: tuple[int, ...]


@dataclass(frozen=True)
class DPChosen:
    """Sub-problem: the chosen (1) / unchosen (2) list from position i on."""

    sums: tuple[int, ...]
    items: tuple[int, ...]
    can_use: bool


DPAny = DPProblem | DPArray | DPChosen


def dp_array(items: tuple[int, ...]) -> list[int]:
    """dp[i] = the best sum of non-adjacent items from position i on (never negative)."""
    n = len(items)
    dp = [0] * n
    dp[n - 1] = max(items[n - 1], 0)
    if n >= 2:
        dp[n - 2] = max(items[n - 1], items[n - 2], 0)
    for i in range(n - 3, -1, -1):
        dp[i] = max(dp[i + 1], items[i] + dp[i + 2], 0)
    return dp


def _takes(sums: tuple[int, ...] | list[int], items: tuple[int, ...], i: int) -> bool:
    """Whether position i's item is needed for the sum (before the can-use rule)."""
    if i <= len(items) - 3:
        return sums[i] == items[i] + sums[i + 2]
    return sums[i] == items[i]


def chosen(sums: tuple[int, ...] | list[int], items: tuple[int, ...], can_use: bool = True) -> list[int]:
    """The lexicographically smallest choice: 1 for chosen, 2 for not."""
    out = []
    for i in range(len(items)):
        take = can_use and _takes(sums, items, i)
        out.append(1 if take else 2)
        can_use = not take
    return out


def _read_list(value: str, length: int) -> tuple[int, ...]:
    found = find_lists(value)
    if not found or len(found[-1]) != length:
        raise BadReturn(f"returned value {value!r} is not a list of {length} integers")
    return found[-1]


class DP(Task):
    name = "dp"
    expected = "a list of integers from -5 to 5 like '[3, -2, 5]'"
    train_lengths = (2, 5)
    eval_lengths = (2, 10)

    def parse(self, text: str) -> DPAny:
        body = strip_prompt(text)
        for kind, pattern in _KINDS:
            m = pattern.fullmatch(body)
            if m is not None:
                return self._build(kind, m.groups(), text)
        items = parse_list(body)
        if items is None:
            raise ProblemParseError(f"not a DP problem: {text.strip()[:60]!r}; expected {self.expected}")
        return self._build("top", (format_list(items),), text)

    def _build(self, kind: str, groups: tuple[str, ...], text: str) -> DPAny:
        lists = [parse_list(g) for g in groups if g.startswith("[")]
        if any(not lst for lst in lists):
            raise ProblemParseError(f"empty or malformed list in {text.strip()[:60]!r}; expected {self.expected}")
        items = lists[-1]
        lo, hi = VALUE_RANGE
        if any(not lo <= v <= hi for v in items):
            raise ProblemParseError(f"DP values must be integers from {lo} to {hi}, got {format_list(items)}")
        if kind == "dp":
            return DPArray(items)
        if kind == "chosen":
            if len(lists[0]) != len(items):
                raise ProblemParseError("sum array and item array must have the same length")
            return DPChosen(lists[0], items, groups[-1] == "True")
        return DPProblem(items)

    def sample(self, rng: Random, size: int, *, vary: bool = False, lo: int = 1) -> DPProblem:
        lo, hi = VALUE_RANGE
        return DPProblem(tuple(rng.randint(lo, hi) for _ in range(size)))

    def size(self, problem: DPAny) -> int:
        return len(problem.items)

    def measure(self, problem: DPAny) -> tuple[int, ...]:
        return (len(problem.items), int(isinstance(problem, DPProblem)))

    def depth(self, problem: DPAny) -> int:
        return len(problem.items) if isinstance(problem, DPProblem) else len(problem.items) - 1

    def solve(self, problem: DPAny) -> list[int]:
        if isinstance(problem, DPArray):
            return dp_array(problem.items)
        if isinstance(problem, DPChosen):
            return chosen(problem.sums, problem.items, problem.can_use)
        return chosen(dp_array(problem.items), problem.items)

    def text(self, problem: DPAny) -> str:
        if isinstance(problem, DPArray):
            return DP_TEXT.format(format_list(problem.items))
        if isinstance(problem, DPChosen):
            return CHOSEN_TEXT.format(format_list(problem.sums), format_list(problem.items), problem.can_use)
        return TOP_TEXT.format(format_list(problem.items))

    def display(self, problem: DPAny) -> str:
        return format_list(problem.items) if isinstance(problem, DPProblem) else self.text(problem)

    def prompt(self, problem: DPAny, method: Method) -> str:
        if isinstance(problem, DPProblem) and method is Method.BASELINE:
            return BASELINE_TEXT.format(format_list(problem.items)) + ANSWER
        if isinstance(problem, DPProblem) and method is Method.SCRATCHPAD:
            return SCRATCHPAD_PROMPT.format(format_list(problem.items))
        return super().prompt(problem, method)

    def baseline(self, problem: DPAny) -> str:
        return format_list(self.solve(problem))

    def scratchpad(self, problem: DPAny) -> str:
        a = problem.items
        n = len(a)
        dp = dp_array(a)
        lines = []
        for i in range(n - 1, -1, -1):
            if i == n - 1:
                lines.append(f"dp[{i}] = max(input[{i}], 0) = max({a[i]}, 0) = {dp[i]}")
            elif i == n - 2:
                lines.append(f"dp[{i}] = max(input[{i}], input[{i + 1}], 0) = max({a[i]}, {a[i + 1]}, 0) = {dp[i]}")
            else:
                lines.append(f"dp[{i}] = max(dp[{i + 1}], input[{i}] + dp[{i + 2}], 0) = "
                             f"max({dp[i + 1]}, {a[i]} + {dp[i + 2]}, 0) = {dp[i]}")
        lines[0] = "Scratchpad: " + lines[0]
        lines += [
            "",
            "Finally, we reconstruct the lexicographically smallest subsequence that fulfills the task "
            'objective by selecting numbers as follows. We store the result on a list named "output".',
            "",
            "Let can_use_next_item = True.",
        ]
        can_use, output = True, []
        for i in range(n):
            take = can_use and _takes(dp, a, i)
            if i <= n - 3:
                expr, values = f"input[{i}] + dp[{i + 2}]", f"{a[i]} + {dp[i + 2]}"
            else:
                expr, values = f"input[{i}]", f"{a[i]}"
            if take:
                line = (f"Since dp[{i}] == {expr} ({dp[i]} == {values}) and can_use_next_item == True, "
                        f"we store output[{i}] = 1.")
            else:
                line = (f"Since dp[{i}] != {expr} ({dp[i]} != {values}) or can_use_next_item == False, "
                        f"we store output[{i}] = 2.")
            if i < n - 1:
                line += f" We update can_use_next_item = {not take}."
            lines.append(line)
            output.append(1 if take else 2)
            can_use = not take
        lines += ["", f"Reconstructing all together, output={format_list(output)}."]
        return "\n".join(lines)

    def retuning_step(self, problem: DPAny, returns: list[str]) -> Step:
        if isinstance(problem, DPArray):
            return self._dp_step(problem, returns)
        if isinstance(problem, DPChosen):
            return self._chosen_step(problem, returns)
        if not returns:
            child = DPArray(problem.items)
            return Step(call_line(self.text(child)), child)
        if len(returns) == 1:
            child = DPChosen(_read_list(returns[0], len(problem.items)), problem.items, True)
            return Step(call_line(self.text(child)), child)
        return Step(format_list(_read_list(returns[1], len(problem.items))))

    def _dp_step(self, problem: DPArray, returns: list[str]) -> Step:
        items = problem.items
        if len(items) == 1:
            return Step(DP_BASE + format_list([max(items[0], 0)]))
        if not returns:
            child = DPArray(items[1:])
            return Step(DP_CALL + call_line(self.text(child)), child)
        rest = _read_list(returns[-1], len(items) - 1)
        following = rest[1] if len(rest) > 1 else 0
        return Step(DP_APPEND + format_list([max(rest[0], items[0] + following), *rest]))

    def _chosen_step(self, problem: DPChosen, returns: list[str]) -> Step:
        items = problem.items
        take = problem.can_use and _takes(problem.sums, items, 0)
        if len(items) == 1:
            return Step(CHOSEN_RULE + ANSWER + format_list([1 if take else 2]))
        if not returns:
            child = DPChosen(problem.sums[1:], items[1:], not take)
            return Step(CHOSEN_RULE + CHOSEN_CALL + call_line(self.text(child)), child)
        rest = _read_list(returns[-1], len(items) - 1)
        return Step(CHOSEN_APPEND + format_list([1 if take else 2, *rest]))

    def extract(self, answer: str) -> list[int] | None:
        found = find_lists(answer)
        return list(found[-1]) if found else None

    def format_value(self, value: list[int]) -> str:
        return format_list(value)
