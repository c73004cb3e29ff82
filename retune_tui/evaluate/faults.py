"""Where a recursion went wrong: the first segment that differs from the oracle's.

Segments are visited in the order they were written (a parent's call, the child's whole
subtree, then the parent's next segment). For each, the oracle writes what a correct
model would have written *in that same context*, with the values that actually came
back, so the first difference is the model's own first mistake, not an echo of one.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from retune_tui.tasks.protocol import BadReturn, Method, ProblemParseError, Task, call_text
from retune_tui.trace import ERROR, Node, Trace

LIMIT = "limit hit"
MALFORMED_CALL = "malformed call"
MISSING_CALL = "missing call"
UNEXPECTED_CALL = "unexpected call"
WRONG_CALL = "wrong call text"
WRONG_BASE = "wrong base case"
WRONG_COMBINE = "wrong combination of returned value"
WRONG_ANSWER = "wrong answer"
WRONG_STEPS = "wrong scratchpad"
KINDS = (WRONG_CALL, WRONG_COMBINE, WRONG_BASE, MISSING_CALL, UNEXPECTED_CALL, MALFORMED_CALL, LIMIT, WRONG_ANSWER,
         WRONG_STEPS)

_LIMIT_WORDS = ("limit of", "budget of", "no stop within")


@dataclass(frozen=True)
class Fault:
    node: int
    depth: int
    kind: str
    context: str  # the context the faulty segment was written in
    expected: str  # what the oracle writes there ("" if it cannot say)
    got: str  # what the model wrote


def writing_order(trace: Trace, node: Node | None = None) -> Iterator[tuple[Node, int, str]]:
    """(node, segment index, context before the segment), in the order they were written
    (a stack, not recursion: a trace may be deeper than Python's recursion limit)."""
    node = node or trace.root
    if node is None:
        return
    stack = [(node, node.steps())]
    while stack:
        current, steps = stack[-1]
        step = next(steps, None)
        if step is None:
            stack.pop()
            continue
        index, context, seg = step
        yield current, index, context
        if seg.call is not None and seg.call in trace.nodes:
            child = trace.nodes[seg.call]
            stack.append((child, child.steps()))


def classify(task: Task, method: Method, index: int, expected: str, got: str) -> str:
    """What kind of mistake writing ``got`` where the oracle writes ``expected`` is."""
    if method is Method.BASELINE:
        return WRONG_ANSWER
    if method is Method.SCRATCHPAD:
        return WRONG_STEPS
    expected_call, got_call = call_text(expected), call_text(got)
    if got_call is not None:
        try:
            if task.text(task.parse(got_call)) != got_call:
                return MALFORMED_CALL
        except ProblemParseError:
            return MALFORMED_CALL
    if expected_call is not None:
        if got_call is not None:
            return WRONG_CALL
        return MALFORMED_CALL if "Call:" in got else MISSING_CALL
    if got_call is not None:
        return UNEXPECTED_CALL
    return WRONG_COMBINE if index > 0 else WRONG_BASE


def first_fault(task: Task, method: Method, trace: Trace) -> Fault | None:
    """The first segment the model got wrong, or None if every segment matches the oracle."""
    for node, index, context in writing_order(trace):
        got = node.segments[index].text
        last = index == len(node.segments) - 1
        if last and node.status == ERROR and node.error and any(w in node.error for w in _LIMIT_WORDS):
            return Fault(node.id, node.depth, LIMIT, context, "", got)
        try:
            expected = task.oracle(context, method)
        except (BadReturn, ProblemParseError):
            expected = ""
        if got != expected:
            return Fault(node.id, node.depth, classify(task, method, index, expected, got), context, expected, got)
    return None
