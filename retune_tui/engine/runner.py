"""The recursive runner: owns the trees, batches every ready context, emits events.

Many problems run at once. Each step asks the generator to advance every context that
is ready (one per problem: a parent waits while its child runs). When a segment ends
with a ``Call:`` line the runner checks the call, opens the child with
``<call>\\nSolution: `` and suspends the parent; when the child finishes it appends
``Return: <answer>\\nAnswer: `` to the parent and resumes it. Anything that goes wrong
becomes an error on the node that caused it; the other problems carry on.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable, Iterator, Sequence
from dataclasses import dataclass, field

from retune_tui.engine.generator import CONTEXT, LENGTH, Generator
from retune_tui.engine.limits import Limits
from retune_tui.tasks.protocol import (
    SOLUTION,
    Method,
    ProblemParseError,
    Task,
    call_text,
    context_answer,
    return_text,
)
from retune_tui.trace import (
    DONE,
    ERROR,
    CallIssued,
    Event,
    NodeClosed,
    NodeOpened,
    ProblemStarted,
    RunFinished,
    TextGenerated,
    Trace,
    ValueReturned,
)

Key = tuple[int, int]  # (tree, node)


@dataclass
class _Tree:
    """Book-keeping for one problem while it runs."""

    trace: Trace
    problem: Hashable
    limits: Limits
    started: float
    problems: dict[int, Hashable] = field(default_factory=dict)  # node -> its parsed problem
    tokens: int = 0
    calls: int = 0
    next_id: int = 1


class Runner:
    """Solves problems of one task and method with a generator, recursively.

    Args:
        task: the task the problems belong to.
        method: the format the generator writes.
        generator: the backend (oracle, transformers).
        limits: budgets per problem; unset ones are derived from each problem.
        clock: time source, injectable for tests.
    """

    def __init__(
        self,
        task: Task,
        method: Method,
        generator: Generator,
        limits: Limits | None = None,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.task = task
        self.method = method
        self.generator = generator
        self.limits = limits or Limits()
        self.clock = clock
        self._out: list[Event] = []
        self._trees: dict[int, _Tree] = {}
        self._start = 0.0

    # --- public -------------------------------------------------------------------------

    @property
    def traces(self) -> list[Trace]:
        """The trees of the current (or last) run, as they stand."""
        return [tree.trace for tree in self._trees.values()]

    def trace(self, tree: int) -> Trace:
        return self._trees[tree].trace

    def run(self, problems: Sequence[Hashable], on_event: Callable[[Event], None] | None = None) -> list[Trace]:
        """Solve ``problems`` to the end and return their traces."""
        for event in self.events(problems):
            if on_event is not None:
                on_event(event)
        return self.traces

    def events(self, problems: Sequence[Hashable], first_tree: int = 0, batch: int | None = None) -> Iterator[Event]:
        """Solve ``problems``, yielding events as they happen: all at once, or ``batch`` at a
        time (each batch to its end before the next starts; every tree stays in ``traces``).
        Stopping the iteration early frees every context the generator still holds."""
        self._trees = {}
        self._out = []
        size = batch or max(len(problems), 1)
        try:
            for first in range(0, len(problems), size):
                self._start = self.clock()  # event times count from their batch's start
                ready = [self._start_problem(i, problem)
                         for i, problem in enumerate(problems[first : first + size], start=first_tree + first)]
                yield from self._flush()
                while ready:
                    deltas = self.generator.step(ready)
                    next_ready: list[Key] = []
                    for key in ready:
                        self._advance(key, deltas[key], next_ready)
                    ready = next_ready
                    yield from self._flush()
        finally:
            for tree_id, tree in self._trees.items():
                for node in tree.trace.nodes.values():
                    if node.closed_at is None:
                        self.generator.close((tree_id, node.id))

    # --- events -------------------------------------------------------------------------

    def _emit(self, event: Event) -> None:
        self._trees[event.tree].trace.apply(event)
        self._out.append(event)

    def _flush(self) -> Iterator[Event]:
        out, self._out = self._out, []
        yield from out

    def _now(self) -> float:
        return round(self.clock() - self._start, 6)

    # --- the protocol -------------------------------------------------------------------

    def _start_problem(self, tree_id: int, problem: Hashable) -> Key:
        limits = self.limits.resolve(self.task, problem, self.method)
        self._trees[tree_id] = tree = _Tree(Trace(tree_id), problem, limits, self.clock())
        expected = self.task.format_value(self.task.solve(problem))
        self._emit(ProblemStarted(tree_id, self._now(), self.task.name, self.method.value,
                                  self.task.display(problem), expected, self.generator.name))
        prompt = self.task.prompt(problem, self.method)
        self._emit(NodeOpened(tree_id, self._now(), 0, None, 0, prompt))
        tree.problems[0] = problem
        self.generator.open((tree_id, 0), prompt, self._segment_budget(tree))
        return (tree_id, 0)

    def _advance(self, key: Key, delta, next_ready: list[Key]) -> None:
        tree_id, node_id = key
        tree = self._trees[tree_id]
        if delta.text or delta.tokens:
            self._emit(TextGenerated(tree_id, self._now(), node_id, delta.text, delta.tokens))
        tree.tokens += delta.tokens
        limits = tree.limits
        if tree.tokens > limits.max_total_tokens or (delta.reason == LENGTH and tree.tokens >= limits.max_total_tokens):
            self._fail(tree, node_id, _spent(limits))
        elif limits.max_seconds is not None and self.clock() - tree.started > limits.max_seconds:
            self._fail(tree, node_id, f"wall-time budget of {limits.max_seconds:g}s exhausted")
        elif delta.reason == LENGTH:
            self._fail(tree, node_id, f"no stop within {limits.max_segment_tokens} tokens")
        elif delta.reason == CONTEXT:
            self._fail(tree, node_id, "context longer than the model's window (its position limit)")
        elif not delta.done:
            next_ready.append(key)
        else:
            self._end_segment(tree, node_id, next_ready)

    @staticmethod
    def _segment_budget(tree: _Tree) -> int:
        """Tokens the next segment may write: its own limit, or what is left of the problem's."""
        return max(0, min(tree.limits.max_segment_tokens, tree.limits.max_total_tokens - tree.tokens))

    def _end_segment(self, tree: _Tree, node_id: int, next_ready: list[Key]) -> None:
        node = tree.trace.nodes[node_id]
        segment = node.segments[-1].text
        call = call_text(segment)
        if call is None:
            self._finish_node(tree, node_id, context_answer(node.context, segment), next_ready)
            return
        child_id = tree.next_id
        tree.next_id += 1
        self._emit(CallIssued(tree.trace.tree, self._now(), node_id, child_id, call))
        prompt = call + SOLUTION
        self._emit(NodeOpened(tree.trace.tree, self._now(), child_id, node_id, node.depth + 1, prompt))
        problem, error = self._check_call(tree, node_id, call)
        if error is not None:
            self._fail(tree, child_id, error)
            return
        tree.problems[child_id] = problem
        tree.calls += 1
        budget = self._segment_budget(tree)
        if budget == 0:  # the problem's tokens are spent: not one more
            self._fail(tree, child_id, _spent(tree.limits))
            return
        self.generator.open((tree.trace.tree, child_id), prompt, budget)
        next_ready.append((tree.trace.tree, child_id))

    def _check_call(self, tree: _Tree, parent_id: int, call: str) -> tuple[Hashable | None, str | None]:
        """The called problem, or why the call must not be opened."""
        limits = tree.limits
        parent = tree.trace.nodes[parent_id]
        if self.method is not Method.RETUNING:
            return None, f"method {self.method} makes no calls"
        if tree.calls >= limits.max_calls:
            return None, f"calls limit of {limits.max_calls} per problem reached"
        if parent.depth + 1 > limits.max_depth:
            return None, f"depth limit of {limits.max_depth} reached"
        try:
            problem = self.task.parse(call)
        except ProblemParseError as exc:
            return None, f"malformed call: {exc}"
        if self.task.text(problem) != call:
            return None, f"malformed call: expected the form {self.task.text(problem)!r}"
        if self.task.measure(problem) < self.task.measure(tree.problems[parent_id]):
            return problem, None
        # Every open context is smaller than its parent, so only a call that is not can repeat an
        # ancestor: looking for one here keeps a deep recursion's calls from costing its depth each.
        ancestor: int | None = parent_id
        while ancestor is not None:
            if self.task.text(tree.problems[ancestor]) == call:
                return None, f"call repeats an ancestor (node {ancestor})"
            ancestor = tree.trace.nodes[ancestor].parent
        return None, "call is not smaller than its parent"

    def _finish_node(self, tree: _Tree, node_id: int, answer: str, next_ready: list[Key]) -> None:
        tree_id = tree.trace.tree
        node = tree.trace.nodes[node_id]
        self._emit(NodeClosed(tree_id, self._now(), node_id, DONE, answer=answer))
        self.generator.close((tree_id, node_id))
        if node.parent is None:
            self._finish_tree(tree, answer=answer)
            return
        self._emit(ValueReturned(tree_id, self._now(), node.parent, node_id, answer))
        budget = self._segment_budget(tree)
        if budget == 0:
            self._fail(tree, node.parent, _spent(tree.limits))
            return
        self.generator.extend((tree_id, node.parent), return_text(answer), budget)
        next_ready.append((tree_id, node.parent))

    def _fail(self, tree: _Tree, node_id: int, reason: str) -> None:
        """Close the node with ``reason`` and every ancestor with it; the problem ends."""
        tree_id = tree.trace.tree
        self._emit(NodeClosed(tree_id, self._now(), node_id, ERROR, error=reason))
        self.generator.close((tree_id, node_id))
        child, parent = node_id, tree.trace.nodes[node_id].parent
        while parent is not None:
            self._emit(NodeClosed(tree_id, self._now(), parent, ERROR, error=f"sub-call (node {child}) failed"))
            self.generator.close((tree_id, parent))
            child, parent = parent, tree.trace.nodes[parent].parent
        self._finish_tree(tree, error=f"node {node_id}: {reason}")

    def _finish_tree(self, tree: _Tree, answer: str | None = None, error: str | None = None) -> None:
        value = None if answer is None else self.task.extract(answer)
        expected = self.task.solve(tree.problem)
        self._emit(RunFinished(
            tree.trace.tree,
            self._now(),
            status=ERROR if error else DONE,
            answer=answer,
            value=None if value is None else self.task.format_value(value),
            correct=value == expected,
            error=error,
            tokens=tree.tokens,
            seconds=round(self.clock() - tree.started, 6),
        ))


def _spent(limits: Limits) -> str:
    return f"total-token budget of {limits.max_total_tokens} exhausted"
