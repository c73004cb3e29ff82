"""`retune bench solve`: how long `retune solve PROBLEM` takes as a user runs it, per engine.

Every run is a fresh process, so its time is what a user waits for after pressing Enter:
Python starting, the imports, loading the model, solving, drawing the tree. The numpy
engine (problems on the CPU, where the model allows: engine/numpy_llama.py) runs
against transformers (``RETUNE_ENGINE=torch``) on the same problem; both must write the
same trace.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from retune_tui.bench.inference import segments
from retune_tui.engine.numpy_llama import ENGINE_ENV
from retune_tui.errors import UserError
from retune_tui.trace import Trace, read_traces

ENGINES = ("numpy", "torch")
RUN_TIMEOUT = 3600  # seconds a run may take


@dataclass
class SolveRow:
    engine: str
    runs: int
    wall_min: float  # seconds from starting the process to its exit
    wall_median: float
    solve_median: float  # the solving alone, as the trace records it
    answer: str | None
    correct: bool


def solve_benchmark(args: list[str], repeats: int, progress: Callable[[str, float], None] | None = None,
                    ) -> tuple[list[SolveRow], bool]:
    """One row per engine, each from ``repeats`` runs of ``retune solve ARGS``; and whether
    every run wrote the same trace."""
    rows, shapes = [], []
    with tempfile.TemporaryDirectory(prefix="retune-bench-solve-") as scratch:
        for engine in ENGINES:
            walls, traces = [], []
            for run in range(repeats):
                wall, trace = _run(args, engine, Path(scratch) / f"{engine}-{run}.jsonl")
                walls.append(wall)
                traces.append(trace)
                shapes.append(segments(trace))
                if progress is not None:
                    progress(engine, wall)
            finished = traces[-1].finished
            rows.append(SolveRow(
                engine=engine, runs=repeats, wall_min=round(min(walls), 3),
                wall_median=round(statistics.median(walls), 3),
                solve_median=round(statistics.median(t.finished.seconds for t in traces), 4),
                answer=finished.value, correct=bool(finished.correct)))
    return rows, all(shape == shapes[0] for shape in shapes)


def _run(args: list[str], engine: str, save: Path) -> tuple[float, Trace]:
    wall = run_fresh(["solve", *args, "--save", str(save)], engine)
    [trace] = read_traces(save)
    return wall, trace


def run_fresh(args: list[str], engine: str) -> float:
    """Seconds a fresh process takes to run ``retune ARGS`` with ``engine``; a failure is one
    line naming the command and the engine."""
    env = {k: v for k, v in os.environ.items() if k != ENGINE_ENV}
    if engine == "torch":
        env[ENGINE_ENV] = "torch"
    command = [sys.executable, "-m", "retune_tui.cli", *args]
    start = time.perf_counter()
    try:
        done = subprocess.run(command, env=env, capture_output=True, text=True, check=False, timeout=RUN_TIMEOUT)
    except subprocess.TimeoutExpired:
        raise UserError(f"retune {args[0]} took over {RUN_TIMEOUT} s with the {engine} engine; "
                        "try fewer or smaller problems") from None
    wall = time.perf_counter() - start
    if done.returncode != 0:
        said = (done.stderr or done.stdout).strip().splitlines()
        raise UserError(f"retune {args[0]} failed with the {engine} engine: {said[-1] if said else done.returncode}")
    return wall
