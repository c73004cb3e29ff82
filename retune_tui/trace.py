"""Traces: the tree of contexts one problem opens, and the events that build it.

The engine emits events; ``Trace.apply`` is the one place where an event changes a
tree, so a tree rebuilt from a saved event stream is the tree the engine built. A trace
file is JSON Lines, one event a line, possibly interleaving several problems (``tree``).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from retune_tui.errors import UserError
from retune_tui.files import atomic_open
from retune_tui.tasks.protocol import ANSWER, SOLUTION, return_text

RUNNING, WAITING, DONE, ERROR = "running", "waiting", "done", "error"


# --- events ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Event:
    """Base of every event: which problem (``tree``) and when (seconds since the run began)."""

    kind: ClassVar[str] = "event"
    tree: int
    t: float

    def to_json(self) -> dict[str, Any]:
        return {"event": self.kind, **dataclasses.asdict(self)}


@dataclass(frozen=True)
class ProblemStarted(Event):
    kind: ClassVar[str] = "problem_started"
    task: str
    method: str
    problem: str  # as a person would type it
    expected: str | None = None  # the ground truth, formatted
    model: str | None = None


@dataclass(frozen=True)
class NodeOpened(Event):
    kind: ClassVar[str] = "node_opened"
    node: int
    parent: int | None
    depth: int
    prompt: str


@dataclass(frozen=True)
class TextGenerated(Event):
    kind: ClassVar[str] = "text_generated"
    node: int
    text: str
    tokens: int


@dataclass(frozen=True)
class CallIssued(Event):
    kind: ClassVar[str] = "call_issued"
    node: int
    child: int
    call: str


@dataclass(frozen=True)
class ValueReturned(Event):
    kind: ClassVar[str] = "value_returned"
    node: int  # the parent that receives the value
    child: int
    value: str


@dataclass(frozen=True)
class NodeClosed(Event):
    kind: ClassVar[str] = "node_closed"
    node: int
    status: str  # done | error
    answer: str | None = None
    error: str | None = None


@dataclass(frozen=True)
class RunFinished(Event):
    kind: ClassVar[str] = "run_finished"
    status: str
    answer: str | None = None
    value: str | None = None  # the final value extracted from the answer, formatted
    correct: bool | None = None
    error: str | None = None
    tokens: int = 0
    seconds: float = 0.0


EVENT_TYPES: dict[str, type[Event]] = {
    cls.kind: cls
    for cls in (ProblemStarted, NodeOpened, TextGenerated, CallIssued, ValueReturned, NodeClosed, RunFinished)
}


def event_from_json(data: dict[str, Any]) -> Event:
    data = dict(data)
    kind = data.pop("event", None)
    if kind not in EVENT_TYPES:
        raise ValueError(f"unknown event {kind!r}")
    return EVENT_TYPES[kind](**data)


# --- the tree -------------------------------------------------------------------------


@dataclass
class Segment:
    """Text a model generated in one go; a calling segment ends with its ``Call:`` line."""

    text: str = ""
    tokens: int = 0
    call: int | None = None  # the child it opened
    returned: str | None = None  # the value that came back


@dataclass
class Node:
    id: int
    parent: int | None
    depth: int
    prompt: str
    segments: list[Segment] = field(default_factory=lambda: [Segment()])
    children: list[int] = field(default_factory=list)
    status: str = RUNNING
    answer: str | None = None
    error: str | None = None
    opened_at: float = 0.0
    closed_at: float | None = None

    @property
    def context(self) -> str:
        """The whole context: prompt, generated text and returned values, in order."""
        parts = [self.prompt]
        for seg in self.segments:
            parts.append(seg.text)
            if seg.returned is not None:
                parts.append(return_text(seg.returned))
        return "".join(parts)

    def steps(self) -> Iterator[tuple[int, str, Segment]]:
        """(index, the context before it, segment) for every segment, in order."""
        context = self.prompt
        for index, seg in enumerate(self.segments):
            yield index, context, seg
            context += seg.text + (return_text(seg.returned) if seg.returned is not None else "")

    @property
    def tokens(self) -> int:
        return sum(seg.tokens for seg in self.segments)

    @property
    def problem_text(self) -> str:
        """The first line of the prompt: the problem this context was opened with."""
        return self.prompt.split(SOLUTION)[0].split(ANSWER)[0]


@dataclass
class Trace:
    """One problem's tree, built by applying events in order."""

    tree: int
    task: str = ""
    method: str = ""
    problem: str = ""
    expected: str | None = None
    model: str | None = None
    nodes: dict[int, Node] = field(default_factory=dict)
    finished: RunFinished | None = None
    events: list[Event] = field(default_factory=list)

    @property
    def root(self) -> Node | None:
        return self.nodes.get(0)

    @property
    def status(self) -> str:
        return self.finished.status if self.finished else RUNNING

    def apply(self, event: Event) -> None:
        """Change the tree by one event (the only place a trace changes)."""
        self.events.append(event)
        if isinstance(event, ProblemStarted):
            self.task, self.method, self.problem = event.task, event.method, event.problem
            self.expected, self.model = event.expected, event.model
        elif isinstance(event, NodeOpened):
            self.nodes[event.node] = Node(event.node, event.parent, event.depth, event.prompt, opened_at=event.t)
            if event.parent is not None:
                self.nodes[event.parent].children.append(event.node)
        elif isinstance(event, TextGenerated):
            seg = self.nodes[event.node].segments[-1]
            seg.text += event.text
            seg.tokens += event.tokens
        elif isinstance(event, CallIssued):
            node = self.nodes[event.node]
            node.segments[-1].call = event.child
            node.status = WAITING
        elif isinstance(event, ValueReturned):
            node = self.nodes[event.node]
            node.segments[-1].returned = event.value
            node.segments.append(Segment())
            node.status = RUNNING
        elif isinstance(event, NodeClosed):
            node = self.nodes[event.node]
            node.status, node.answer, node.error, node.closed_at = event.status, event.answer, event.error, event.t
        elif isinstance(event, RunFinished):
            self.finished = event

    def walk(self) -> Iterator[Node]:
        """Nodes depth first, children in the order they were called."""
        if self.root is None:
            return
        stack = [self.root]
        while stack:
            node = stack.pop()
            yield node
            stack.extend(self.nodes[c] for c in reversed(node.children))

    def to_json(self) -> dict[str, Any]:
        """The tree as nested JSON, for ``retune trace show --json`` and exports."""

        def node_json(node: Node) -> dict[str, Any]:
            return {
                "id": node.id,
                "depth": node.depth,
                "status": node.status,
                "prompt": node.prompt,
                "segments": [dataclasses.asdict(seg) for seg in node.segments],
                "answer": node.answer,
                "error": node.error,
                "tokens": node.tokens,
                "seconds": None if node.closed_at is None else round(node.closed_at - node.opened_at, 6),
                "children": [node_json(self.nodes[c]) for c in node.children],
            }

        fin = self.finished
        return {
            "tree": self.tree,
            "task": self.task,
            "method": self.method,
            "problem": self.problem,
            "expected": self.expected,
            "model": self.model,
            "status": self.status,
            "answer": fin.answer if fin else None,
            "value": fin.value if fin else None,
            "correct": fin.correct if fin else None,
            "error": fin.error if fin else None,
            "root": node_json(self.root) if self.root else None,
        }


def build_traces(events: Iterable[Event]) -> list[Trace]:
    """Rebuild every problem's tree from an event stream."""
    traces: dict[int, Trace] = {}
    for event in events:
        traces.setdefault(event.tree, Trace(event.tree)).apply(event)
    return list(traces.values())


# --- files ----------------------------------------------------------------------------


def dump_event(event: Event) -> str:
    return json.dumps(event.to_json(), ensure_ascii=False)


def write_events(path: str | Path, events: Iterable[Event]) -> None:
    """Write an event stream as JSON Lines, atomically (a partial file never replaces a good one)."""
    with atomic_open(path) as fh:
        for event in events:
            fh.write(dump_event(event) + "\n")


class TraceFileError(UserError):
    """A trace file that cannot be read; the message is one line for the user."""


def read_events(path: str | Path) -> list[Event]:
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise TraceFileError(f"cannot read trace file {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise TraceFileError(f"{path} is not a trace file (not UTF-8 text)") from None
    events = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            events.append(event_from_json(json.loads(line)))
        except (ValueError, TypeError) as exc:
            raise TraceFileError(f"{path}:{number}: not a trace event ({exc})") from None
    return events


def read_traces(path: str | Path) -> list[Trace]:
    try:
        traces = build_traces(read_events(path))
    except (KeyError, IndexError, AttributeError):
        raise TraceFileError(f"{path}: events out of order or missing (a truncated or edited trace?)") from None
    if not traces:
        raise TraceFileError(f"{path} holds no trace")
    return traces
