"""Accuracy by problem size for one or more models, and why the wrong answers are wrong.

Every subject (an adapter, or the oracle) of a task gets the same fresh problems per
size. Problems are solved with the engine in batches; each answer is scored against
the ground truth with the task's answer extraction, and each wrong one is traced to
its first faulty segment (``faults.first_fault``). A right answer is *faithful* when
every segment matches the oracle's too; a right answer reached through a faulty
segment (a miscopied call whose error did not matter, a parent that ignored what its
call returned) is a *detour*, counted by where it first left the oracle's path.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Hashable, Sequence
from dataclasses import asdict, dataclass, field
from random import Random
from typing import Any

from retune_tui.engine import Generator, Limits, Runner
from retune_tui.evaluate.faults import first_fault
from retune_tui.tasks.protocol import Method, Task
from retune_tui.trace import Trace


@dataclass
class Subject:
    """One line of the plot: a model (or the oracle) solving one task with one method."""

    label: str
    task: Task
    method: Method
    trained: tuple[int, int] | None
    make_generator: Callable[[], Generator]
    loaded: Any = None  # the loaded model behind make_generator (the teacher-forced check uses it)


class ImpossibleResult(ValueError):
    """Counts no evaluation can give."""


@dataclass
class SizeResult:
    size: int
    n: int
    correct: int
    in_distribution: bool | None
    tokens: int = 0
    faithful: int | None = None  # right answers whose every segment is the oracle's (None: not measured)

    def __post_init__(self) -> None:
        """Counts that can be (a results file edited by hand, or damaged, is refused by `retune report`)."""
        counts = [self.size, self.n, self.correct, self.tokens] + ([] if self.faithful is None else [self.faithful])
        if not all(isinstance(c, int) and not isinstance(c, bool) for c in counts):
            raise TypeError("counts must be whole numbers")
        if not (self.size >= 0 and self.tokens >= 0 and 0 <= self.correct <= self.n
                and 0 <= (self.faithful or 0) <= self.correct):
            faithful = "" if self.faithful is None else f", {self.faithful} of them the oracle's way"
            raise ImpossibleResult(f"size {self.size}: {self.correct} right of {self.n} problems{faithful}"
                                   + (f", {self.tokens} tokens" if self.tokens < 0 else ""))

    @property
    def accuracy(self) -> float:
        return self.correct / self.n if self.n else 0.0

    @property
    def faithful_rate(self) -> float | None:
        if self.faithful is None:
            return None
        return self.faithful / self.n if self.n else 0.0


@dataclass
class RunResult:
    label: str
    task: str
    method: str
    trained: tuple[int, int] | None
    sizes: list[SizeResult] = field(default_factory=list)
    faults: list[dict[str, Any]] = field(default_factory=list)  # {size, depth, kind, count}
    detours: list[dict[str, Any]] = field(default_factory=list)  # the same, for right answers off the oracle's path
    teacher: dict[str, Any] | None = None
    partial: bool = False  # Ctrl-C stopped it: the problems finished by then
    # solving every size's problems, loading the model not counted; not split by size: the
    # sizes share batches (the slowest shard's, for a run over several processes)
    seconds: float | None = None

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["trained"] = list(self.trained) if self.trained else None
        for row, size in zip(data["sizes"], self.sizes):
            row["accuracy"] = round(size.accuracy, 4)
            if size.faithful is None:
                del row["faithful"]
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RunResult:
        # older results hold a share of the run's time per size ("seconds"): not a measure, dropped
        sizes = [SizeResult(**{k: v for k, v in row.items() if k not in ("accuracy", "seconds")})
                 for row in data["sizes"]]
        trained = tuple(data["trained"]) if data.get("trained") else None
        return cls(data["label"], data["task"], data["method"], trained, sizes, data.get("faults", []),
                   data.get("detours", []), data.get("teacher"), data.get("partial", False), data.get("seconds"))


def problems_for(task: Task, size: int, n: int, seed: int) -> list[Hashable]:
    """The same fresh problems for every subject: seeded by (seed, task, size)."""
    rng = Random(f"eval:{seed}:{task.name}:{size}")
    return [task.sample(rng, size) for _ in range(n)]


def solve_all(subject: Subject, problems: list[Hashable], limits: Limits, batch: int,
              on_done: Callable[[Trace], None] | None = None,
              keep_partial: bool = False) -> tuple[list[Trace], bool, float]:
    """Solve problems in batches of ``batch`` with one generator: their traces (``trace.tree``
    is the problem's index), whether Ctrl-C stopped it (``keep_partial``: then the traces
    are those of the problems finished by then; else it stops as always), and the seconds
    solving took (loading the model not counted)."""
    runner = Runner(subject.task, subject.method, subject.make_generator(), limits)
    start = time.perf_counter()
    try:
        for event in runner.events(problems, batch=batch):
            if on_done is not None and event.kind == "run_finished":
                on_done(runner.trace(event.tree))
    except KeyboardInterrupt:
        if not keep_partial:
            raise
        return [t for t in runner.traces if t.finished], True, time.perf_counter() - start
    return runner.traces, False, time.perf_counter() - start


def evaluate_subject(subject: Subject, sizes: Sequence[int], n: int, seed: int, *, limits: Limits | None = None,
                     batch: int = 256, shard: tuple[int, int] = (0, 1),
                     on_done: Callable[[Trace], None] | None = None,
                     keep_failures: int = 0) -> tuple[RunResult, list[Trace]]:
    """Accuracy per size (right, and right the oracle's way), where answers left the oracle's path, a few failures.

    ``shard`` = (rank, world) evaluates every world-th problem, for several processes. Ctrl-C
    in one process gives the result of the problems finished by then (``partial``).
    """
    rank, world = shard
    keyed = [(size, p) for size in sizes for p in problems_for(subject.task, size, n, seed)][rank::world]
    traces, stopped, seconds = solve_all(subject, [p for _, p in keyed], limits or Limits(), batch, on_done,
                                         keep_partial=world == 1)
    result = RunResult(subject.label, subject.task.name, subject.method.value, subject.trained, partial=stopped,
                       seconds=round(seconds, 3))
    faults: Counter[tuple[int, int, str]] = Counter()
    detours: Counter[tuple[int, int, str]] = Counter()
    failures: list[Trace] = []
    kept: Counter[int] = Counter()
    per_size: dict[int, SizeResult] = {}
    lo, hi = subject.trained or (None, None)
    for trace in traces:
        size = keyed[trace.tree][0]
        row = per_size.setdefault(size, SizeResult(size, 0, 0, None if lo is None else lo <= size <= hi, faithful=0))
        row.n += 1
        row.tokens += trace.finished.tokens if trace.finished else 0
        fault = first_fault(subject.task, subject.method, trace)
        if trace.finished and trace.finished.correct:
            row.correct += 1
            if fault is None:
                row.faithful = (row.faithful or 0) + 1
            else:
                detours[(size, fault.depth, fault.kind)] += 1
            continue
        faults[(size, fault.depth if fault else -1, fault.kind if fault else "answer unreadable")] += 1
        if kept[size] < keep_failures:
            kept[size] += 1
            failures.append(trace)
    result.sizes = [per_size[s] for s in sorted(per_size)]
    result.faults = _counted(faults)
    result.detours = _counted(detours)
    return result, failures


def _counted(counts: Counter[tuple[int, int, str]]) -> list[dict[str, Any]]:
    return [{"size": s, "depth": d, "kind": k, "count": c} for (s, d, k), c in sorted(counts.items())]


def merge(parts: list[RunResult]) -> RunResult:
    """Results of the shards of one subject, merged."""
    first = parts[0]
    sizes: dict[int, SizeResult] = {}
    faults: Counter[tuple[int, int, str]] = Counter()
    detours: Counter[tuple[int, int, str]] = Counter()
    for part in parts:
        for row in part.sizes:
            into = sizes.setdefault(row.size, SizeResult(row.size, 0, 0, row.in_distribution, faithful=0))
            into.n += row.n
            into.correct += row.correct
            into.tokens += row.tokens
            if into.faithful is not None:
                into.faithful = None if row.faithful is None else into.faithful + row.faithful
        for counts, rows in ((faults, part.faults), (detours, part.detours)):
            for f in rows:
                counts[(f["size"], f["depth"], f["kind"])] += f["count"]
    timed = [part.seconds for part in parts if part.seconds is not None]
    return RunResult(first.label, first.task, first.method, first.trained, [sizes[s] for s in sorted(sizes)],
                     _counted(faults), _counted(detours), first.teacher, seconds=max(timed) if timed else None)
