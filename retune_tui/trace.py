"""Traces: the tree of contexts one problem opens, and the events that build it.

The engine emits events; ``Trace.apply`` is the one place where an event changes a
tree, so a tree rebuilt from a saved event stream is the tree the engine built. A trace
file is JSON Lines, one event a line, possibly interleaving several problems (``tree``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import sys
import types
import typing
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from retune_tui.errors import InputError, UserError
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

    @property
    def shown_value(self) -> str:
        """The final value as a person reads it ("no answer" when none came)."""
        return "no answer" if self.value is None else self.value


EVENT_TYPES: dict[str, type[Event]] = {
    cls.kind: cls
    for cls in (ProblemStarted, NodeOpened, TextGenerated, CallIssued, ValueReturned, NodeClosed, RunFinished)
}


def _allowed_types(hint: Any) -> tuple[type, ...]:
    """``int | None`` as ``(int, NoneType)``; a float field also takes a JSON integer."""
    allowed = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
    return tuple(t for a in allowed for t in ((int, float) if a is float else (a,)))


#: Each event type's fields and the JSON types each may hold.
FIELD_TYPES: dict[type[Event], dict[str, tuple[type, ...]]] = {
    cls: {f.name: _allowed_types(typing.get_type_hints(cls)[f.name]) for f in dataclasses.fields(cls)}
    for cls in EVENT_TYPES.values()
}
TYPE_NAMES = {int: ("an integer",), float: ("a number",), str: ("a string",), bool: ("true", "false"),
              type(None): ("null",)}


def _check_field(name: str, value: Any, allowed: tuple[type, ...]) -> None:
    """``value`` is of an ``allowed`` type (JSON true is no integer), and a finite number, 0 or
    more (every number of an event is a count, an id or a time since the run began)."""
    if not isinstance(value, allowed) or (isinstance(value, bool) and bool not in allowed):
        words = [word for t in allowed if t is not int or float not in allowed for word in TYPE_NAMES[t]]
        wanted = " or ".join([", ".join(words[:-1]), words[-1]] if len(words) > 1 else words)
        raise ValueError(f"{name!r} must be {wanted}, not {json.dumps(value)[:40]}")
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"{name!r} must be a finite number, not {value}")
    if isinstance(value, int | float) and not isinstance(value, bool) and value < 0:
        raise ValueError(f"{name!r} must be 0 or more, not {value}")


def event_from_json(data: Any) -> Event:
    """The event one line of a trace file holds.

    Raises:
        ValueError: not an event: an unknown kind, a field missing or unknown, or a field
            of the wrong type (named, so a damaged file says what is wrong where).
    """
    if not isinstance(data, dict):
        raise ValueError(f"expected a JSON object, got {type(data).__name__}")
    data = dict(data)
    kind = data.pop("event", None)
    if kind not in EVENT_TYPES:
        raise ValueError(f"unknown event {kind!r}")
    cls = EVENT_TYPES[kind]
    fields = FIELD_TYPES[cls]
    unknown = [name for name in data if name not in fields]
    if unknown:
        raise ValueError(f"unknown field {unknown[0]!r} in {kind}")
    for f in dataclasses.fields(cls):
        if f.name not in data:
            if f.default is dataclasses.MISSING:
                raise ValueError(f"{kind} without {f.name!r}")
            continue
        _check_field(f.name, data[f.name], fields[f.name])
    return cls(**data)


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


class EventOrderError(ValueError):
    """An event that does not fit the tree so far (its node is not open, or opens twice)."""


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
        """Change the tree by one event (the only place a trace changes).

        Raises:
            EventOrderError: the event does not fit (a truncated or edited event stream);
                the tree is then as it was.
        """
        self._check_fits(event)
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

    def _check_fits(self, event: Event) -> None:
        """A node opens once: node 0 as the root (depth 0, no parent), any other under a parent
        already open, one level below it; every other node event needs its node open. (So the
        tree has one root and no cycles, whatever a file holds.)"""
        if isinstance(event, NodeOpened):
            if event.node in self.nodes:
                raise EventOrderError(f"node {event.node} opened twice")
            if event.node == 0 or event.parent is None:
                if (event.node, event.parent, event.depth) != (0, None, 0):
                    raise EventOrderError(f"node {event.node} opened with parent {event.parent} at depth "
                                          f"{event.depth}; only node 0 is a root, at depth 0")
            elif event.parent not in self.nodes:
                raise EventOrderError(f"node {event.node} opened under node {event.parent}, which is not open")
            elif event.depth != self.nodes[event.parent].depth + 1:
                raise EventOrderError(f"node {event.node} opened at depth {event.depth} under node {event.parent} "
                                      f"at depth {self.nodes[event.parent].depth}")
        elif isinstance(event, (TextGenerated, CallIssued, ValueReturned, NodeClosed)):
            if event.node not in self.nodes:
                raise EventOrderError(f"{event.kind} for node {event.node}, which is not open")

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
        """The tree as nested JSON, for ``retune trace show --json`` and exports (pass it
        to ``dumps_nested``: a tree may be nested deeper than Python's recursion limit)."""
        with room_to_nest(self):
            return self._to_json()

    def _to_json(self) -> dict[str, Any]:

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


@contextlib.contextmanager
def room_to_nest(*traces: Trace) -> Iterator[None]:
    """Python's recursion limit raised, for the while, to nest the deepest of ``traces`` as
    JSON (a node is two levels: its object and its list of children)."""
    depth = max((node.depth for trace in traces for node in trace.nodes.values()), default=0)
    before = sys.getrecursionlimit()
    sys.setrecursionlimit(max(before, 4 * depth + 1000))
    try:
        yield
    finally:
        sys.setrecursionlimit(before)


def dumps_nested(data: Any, traces: Iterable[Trace], **kwargs: Any) -> str:
    """``json.dumps`` of the nested JSON of ``traces`` (their ``to_json``), however deep."""
    with room_to_nest(*traces):
        return json.dumps(data, **kwargs)


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


class TracePathError(TraceFileError, InputError):
    """A trace path that is missing, a folder, or unreadable (exit code 2, as for any bad input)."""


def _read_numbered(path: Path) -> list[tuple[int, Event]]:
    """Every event of a trace file with its line number; blank lines are skipped."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except IsADirectoryError:
        raise TracePathError(f"{path} is a folder, not a trace file") from None
    except OSError as exc:
        raise TracePathError(f"cannot read trace file {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise TraceFileError(f"{path} is not a trace file (not UTF-8 text)") from None
    events = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            events.append((number, event_from_json(json.loads(line))))
        except ValueError as exc:  # json.JSONDecodeError is one
            if not events and _is_json_document("\n".join(lines)):
                raise TraceFileError(f"{path} is one JSON document (an export?), not a trace: a trace file "
                                     "is JSON Lines, one event a line") from None
            raise TraceFileError(f"{path}:{number}: not a trace event ({exc})") from None
    return events


def _is_json_document(text: str) -> bool:
    try:
        return isinstance(json.loads(text), dict)
    except ValueError:
        return False


def read_events(path: str | Path) -> list[Event]:
    """The events of a trace file, each line checked (a field of the wrong type is named).

    Raises:
        TraceFileError: the file cannot be read, or a line is not an event (the line named).
    """
    return [event for _, event in _read_numbered(Path(path))]


def read_trace_file(path: str | Path) -> tuple[list[Event], list[Trace]]:
    """A trace file's events and the trees they build, both checked: what ``retune trace
    show`` and ``retune-tui`` open.

    Raises:
        TraceFileError: one line: the file cannot be read, a line is not an event, an event
            does not fit the tree before it (the line named), or no tree has a root.
    """
    path = Path(path)
    numbered = _read_numbered(path)
    line = 0

    def in_order() -> Iterator[Event]:
        nonlocal line
        for number, event in numbered:
            line = number  # the line of the event being applied, should it not fit
            yield event

    try:
        traces = build_traces(in_order())
    except EventOrderError as exc:
        raise TraceFileError(f"{path}:{line}: events out of order or missing: {exc} "
                             "(a truncated or edited trace?)") from None
    if not any(trace.root is not None for trace in traces):
        raise TraceFileError(f"{path} holds no trace")
    return [event for _, event in numbered], traces


def read_traces(path: str | Path) -> list[Trace]:
    """The trees of a trace file (see ``read_trace_file``)."""
    return read_trace_file(path)[1]
