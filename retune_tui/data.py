"""Training data: the segments of oracle traces, for a range of problem sizes.

A data set is ``n`` top-level problems with sizes drawn from a range, each turned into
its oracle trace's examples (one per segment, ``Task.examples``). Re-weighting follows
the paper's spirit: long problems are thinned (each one already brings many examples)
and extra copies of the shortest sub-problems are mixed in, so the base cases every
recursion ends on are learned well. Problems are made in fixed-size chunks, each with
its own seeded RNG, so a data set is the same whatever the number of worker processes.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import os
from collections import deque
from collections.abc import Callable, Hashable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from random import Random

from retune_tui.errors import InputError
from retune_tui.files import atomic_open
from retune_tui.tasks import get_task
from retune_tui.tasks.protocol import Example, Method, Task

CHUNK = 5_000  # problems per chunk: the unit of seeding and of parallel work

_encode = json.encoder.encode_basestring  # type: ignore[attr-defined]

#: The paper's spirit, per task: (thin_long, extra short sub-problems per problem).
#: Addition draws every pair of widths equally (as the paper did) and adds single-digit
#: additions (the paper's x1000 over 304,000 problems is about 0.33 per problem) and
#: two-digit ones; parity and DP thin their longest lists to half the weight of the
#: shortest and add length-1 lists, like the paper's x900 and x250.
PAPER_WEIGHTING: dict[str, tuple[float, dict[int, float]]] = {
    "addition": (1.0, {1: 0.33, 2: 0.5}),
    "parity": (0.5, {1: 0.1}),
    "dp": (0.5, {1: 0.1}),
}


MAX_SIZE = 1000  # a problem's oracle trace is about size² characters: 1,000 is already a million


def check_size(size: int) -> None:
    if size > MAX_SIZE:
        raise InputError(f"size {size} is past the largest this tool makes problems of ({MAX_SIZE})")


FORMATS = ("jsonl", "paper")


def check_format(fmt: str) -> None:
    if fmt not in FORMATS:
        raise InputError(f"unknown --format {fmt!r}; choose {' or '.join(FORMATS)}")


def parse_lengths(text: str) -> tuple[int, int]:
    """``"1-15"`` → (1, 15); ``"7"`` → (7, 7)."""
    parts = text.replace(" ", "").split("-")
    try:
        lo, hi = (int(parts[0]), int(parts[-1])) if len(parts) <= 2 else (None, None)
    except ValueError:
        lo = hi = None
    if lo is None or hi is None or lo < 1 or hi < lo:
        raise InputError(f"bad length range {text!r}; expected 'LO-HI' like '1-15' or one size like '7'")
    return lo, hi


@dataclass(frozen=True)
class Weighting:
    """How problem sizes are drawn and short sub-problems repeated.

    Attributes:
        thin_long: sampling weight of the longest size relative to the shortest,
            linear in between (1.0: every size equally likely).
        short: node size -> extra examples of a random sub-problem of that size, per
            problem (0.33: one extra for every three problems).
    """

    thin_long: float = 1.0
    short: dict[int, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not 0 < self.thin_long <= 1:
            raise InputError(f"thin_long must be in (0, 1], got {self.thin_long}")
        if any(rate < 0 for rate in self.short.values()):
            raise InputError("short repeat rates must be >= 0")

    @classmethod
    def paper(cls, task: str) -> Weighting:
        thin_long, short = PAPER_WEIGHTING.get(task, (1.0, {}))
        return cls(thin_long=thin_long, short=dict(short))

    def thinning(self, size: int, lo: int, hi: int) -> float:
        """Relative weight of top-level problems of ``size`` (1.0 for the shortest)."""
        return 1.0 if hi == lo else 1.0 - (1.0 - self.thin_long) * (size - lo) / (hi - lo)


@dataclass(frozen=True)
class DataSpec:
    """Everything that determines a data set."""

    task: str
    method: Method
    lengths: tuple[int, int]
    n: int
    seed: int = 0
    weighting: Weighting = field(default_factory=Weighting)

    def __post_init__(self) -> None:
        get_task(self.task)
        if self.n < 0:
            raise InputError(f"--n must be >= 0, got {self.n}")


def sample_problems(task: Task, spec: DataSpec, rng: Random, count: int) -> Iterator[Hashable]:
    lo, hi = spec.lengths
    sizes = list(range(lo, hi + 1))
    weights = [task.size_prior(s, lo) * spec.weighting.thinning(s, lo, hi) for s in sizes]
    for size in rng.choices(sizes, weights, k=count):
        yield task.sample(rng, size, vary=True, lo=lo)


def chunk_examples(spec: DataSpec, chunk: int) -> Iterator[Example]:
    """The examples of one chunk of problems, deterministic in (seed, chunk)."""
    task = get_task(spec.task)
    rng = Random(f"{spec.seed}:{chunk}")
    count = min(CHUNK, spec.n - chunk * CHUNK)
    lo = spec.lengths[0]
    for problem in sample_problems(task, spec, rng, count):
        yield from task.examples(problem, spec.method)
        for size, rate in spec.weighting.short.items():
            extra = int(rate) + (rng.random() < rate - int(rate))
            for _ in range(extra):
                source = task.sample(rng, max(size, lo), vary=True, lo=lo)
                yield from (ex for ex in task.examples(source, spec.method) if ex.size == size)


def examples(spec: DataSpec) -> Iterator[Example]:
    """Every example of the data set, in order, in this process."""
    for chunk in range(math.ceil(spec.n / CHUNK)):
        yield from chunk_examples(spec, chunk)


def example_line(ex: Example) -> str:
    """One JSON Lines record (hand-formatted: this is the hot loop of ``retune data``)."""
    prompt, completion = _encode(ex.prompt), _encode(ex.completion)
    return f'{{"prompt": {prompt}, "completion": {completion}, "size": {ex.size:d}, "depth": {ex.depth:d}}}\n'


def paper_record(ex: Example) -> str:
    """One record of the paper's JSON list (without the separator)."""
    return f'{{"input": {_encode(ex.prompt)}, "output": {_encode(ex.completion)}}}'


def _chunk_lines(args: tuple[DataSpec, int, str, bool]) -> list[tuple[bytes, str]]:
    """A chunk's lines, each with the key ``--dedup`` compares (empty unless ``keyed``): a digest
    of the example's prompt and completion alone, so one example met at two depths is one
    example, and the same in every worker process (``hash`` of a string is not)."""
    spec, chunk, fmt, keyed = args
    line = example_line if fmt == "jsonl" else paper_record
    return [(_key(ex) if keyed else b"", line(ex)) for ex in chunk_examples(spec, chunk)]


def _key(ex: Example) -> bytes:
    return hashlib.blake2b(f"{ex.prompt}\0{ex.completion}".encode(), digest_size=16).digest()


@dataclass
class WriteStats:
    problems: int = 0
    examples: int = 0
    duplicates: int = 0
    bytes: int = 0  # characters written (ASCII: bytes)


def write_dataset(
    spec: DataSpec,
    path: str | Path,
    *,
    fmt: str = "jsonl",
    dedup: bool = False,
    workers: int | None = None,
    progress: Callable[[int], None] | None = None,
) -> WriteStats:
    """Write the data set to ``path`` atomically; ``progress`` gets problems done.

    Args:
        fmt: ``jsonl`` (one record a line) or ``paper`` (a JSON list of
            ``{"input", "output"}``, the paper's own format).
        dedup: drop examples identical to an earlier one.
        workers: processes making examples (default: one per CPU, at most 8).
    """
    check_format(fmt)
    stats = WriteStats()
    seen: set[bytes] = set()
    count = math.ceil(spec.n / CHUNK)
    chunks = ((spec, c, fmt, dedup) for c in range(count))
    workers = min(workers or min(os.cpu_count() or 1, 8), count)
    with atomic_open(path) as fh, _pool(workers) as pool:
        first = True
        if fmt == "paper":
            fh.write("[")
        for chunk, lines in enumerate(pool.map(_chunk_lines, chunks)):
            for key, line in lines:
                if dedup:
                    if key in seen:
                        stats.duplicates += 1
                        continue
                    seen.add(key)
                if fmt == "paper":
                    line = ("\n" if first else ",\n") + line
                    first = False
                fh.write(line)
                stats.examples += 1
                stats.bytes += len(line)
            done = min(CHUNK, spec.n - chunk * CHUNK)
            stats.problems += done
            if progress is not None:
                progress(done)
        if fmt == "paper":
            fh.write("\n]\n")
    return stats


class _Serial:
    """A stand-in for a process pool when one worker is asked for."""

    def __enter__(self) -> _Serial:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def map(self, fn, items):  # noqa: ANN001 - mirrors Executor.map
        return map(fn, items)


class _Pool(ProcessPoolExecutor):
    """Worker processes that leave Ctrl-C to the main process: it drops the chunks not yet
    started and waits for the few running (a worker killed mid-chunk breaks the pool, and its
    manager thread prints a traceback)."""

    def __init__(self, workers: int) -> None:
        super().__init__(workers, initializer=_ignore_interrupts)
        self._ahead = 2 * workers

    def map(self, fn, items):  # noqa: ANN001 - mirrors Executor.map
        """Executor.map, in order, but with at most two chunks a worker made ahead of the one
        being written (Executor.map starts them all: a large --n held every chunk's lines)."""
        items = iter(items)
        pending = deque(self.submit(fn, item) for item in itertools.islice(items, self._ahead))
        while pending:
            result = pending.popleft().result()
            pending.extend(self.submit(fn, item) for item in itertools.islice(items, 1))
            yield result

    def __exit__(self, *exc: object) -> None:
        self.shutdown(wait=True, cancel_futures=exc[0] is not None)


def _pool(workers: int):
    return _Serial() if workers <= 1 else _Pool(workers)


def _ignore_interrupts() -> None:
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)


def read_jsonl(path: str | Path) -> Iterator[dict]:
    """Records of a ``retune data`` JSONL file (prompt, completion and metadata)."""
    with open(path, encoding="utf-8") as fh:
        for number, line in enumerate(fh, 1):
            if line.strip():
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as exc:
                    if number == 1 and line.lstrip().startswith("["):
                        raise ValueError(f"{path} is one JSON list (`retune data --format paper`); training "
                                         "reads JSON Lines, `retune data`'s default format") from None
                    raise ValueError(f"{path}:{number}: not JSON ({exc.msg})") from None
                if not isinstance(record, dict) or "prompt" not in record or "completion" not in record:
                    raise ValueError(f"{path}:{number}: a record needs 'prompt' and 'completion'")
                yield record
