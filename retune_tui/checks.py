"""Does a node's text match the oracle's? Per segment, per node, and per trace (plain Python).

For each finished segment the oracle writes what a correct model would have written in
the same context (with the values that really came back), as ``evaluate.faults`` does
for the whole trace; so a ✗ marks a node's own mistake, not an echo of a child's.
"""

from __future__ import annotations

from dataclasses import dataclass

from retune_tui.evaluate.faults import Fault, first_fault
from retune_tui.tasks import Method, ProblemParseError, Task, get_method, get_task
from retune_tui.tasks.protocol import BadReturn, return_text
from retune_tui.trace import DONE, ERROR, Node, Trace


@dataclass(frozen=True)
class SegmentCheck:
    """One finished segment against the oracle."""

    index: int
    expected: str | None  # what the oracle writes in that context; None: the context is off its path
    got: str

    @property
    def matches(self) -> bool | None:
        """None where the oracle cannot say (a return it would never have got came back)."""
        return None if self.expected is None else self.got == self.expected


def task_and_method(trace: Trace) -> tuple[Task, Method] | None:
    """The trace's task and method, or None for a trace of something unknown."""
    try:
        return get_task(trace.task), get_method(trace.method)
    except ProblemParseError:
        return None


def segment_checks(task: Task, method: Method, node: Node) -> list[SegmentCheck]:
    """Every finished segment of ``node`` against the oracle, in order.

    A segment is finished when it made a call, or when it is the last of a closed node
    and the model wrote something (a node closed before writing, like the child of a
    malformed call, has nothing of its own to check).
    """
    checks = []
    context = node.prompt
    closed = node.status in (DONE, ERROR)
    for index, seg in enumerate(node.segments):
        last = index == len(node.segments) - 1
        if seg.call is not None or (last and closed and (seg.text or seg.tokens)):
            try:
                expected = task.oracle(context, method)
            except (BadReturn, ProblemParseError):
                expected = None
            checks.append(SegmentCheck(index, expected, seg.text))
        context += seg.text + (return_text(seg.returned) if seg.returned is not None else "")
    return checks


def judged(checks: list[SegmentCheck]) -> list[SegmentCheck]:
    """The checks the oracle can judge (not those past where it can follow)."""
    return [check for check in checks if check.matches is not None]


def node_verdict(checks: list[SegmentCheck]) -> bool | None:
    """True when every finished segment the oracle can judge matches, False when one differs,
    None when none is finished or the oracle can judge none."""
    known = judged(checks)
    if not known:
        return None
    return all(check.matches for check in known)


def trace_fault(trace: Trace) -> Fault | None:
    """The first segment that parts from the oracle (``evaluate.faults``), or None."""
    pair = task_and_method(trace)
    if pair is None or trace.root is None:
        return None
    return first_fault(pair[0], pair[1], trace)


def detour_note(trace: Trace, fault: Fault | None) -> str | None:
    """For a right answer reached through a segment the oracle would not write, where that
    was; ``fault`` is ``trace_fault(trace)`` (the app keeps it: it costs a pass of the oracle
    over the whole trace)."""
    if trace.finished is None or not trace.finished.correct or fault is None:
        return None
    return f"reached off the oracle's path: {fault.kind} at depth {fault.depth}"
