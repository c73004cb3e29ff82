"""`retune bench eval`: how long `retune eval` takes to solve its problems, per engine.

Each engine evaluates the same adapter on the same problems in a fresh process (``retune
eval --no-teacher``): the numpy engine (small Llamas on the CPU: engine/numpy_llama.py)
against transformers' batch (``RETUNE_ENGINE=torch``). The results must be the same, size
for size: right answers, right the oracle's way, tokens written, and where the wrong ones
went wrong.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from retune_tui.bench.solve import ENGINES, run_fresh
from retune_tui.evaluate.accuracy import RunResult
from retune_tui.evaluate.report import read_results


@dataclass
class EvalRow:
    engine: str
    problems: int
    correct: int
    tokens: int
    wall: float  # seconds from starting the process to its exit (imports and loading included)
    solving: float  # solving the problems alone, as the results record it

    @property
    def per_second(self) -> float:
        return self.problems / self.solving if self.solving else 0.0


def eval_benchmark(args: list[str], progress: Callable[[EvalRow], None] | None = None,
                   ) -> tuple[list[EvalRow], bool]:
    """One row per engine from ``retune eval ARGS --no-teacher``; and whether both gave the same results."""
    rows, results = [], []
    with tempfile.TemporaryDirectory(prefix="retune-bench-eval-") as scratch:
        for engine in ENGINES:
            out = Path(scratch) / f"{engine}.json"
            wall = run_fresh(["eval", *args, "--no-teacher", "--out", str(out)], engine)
            (run,), _ = read_results(out)
            results.append(_outcome(run))
            row = EvalRow(engine, sum(r.n for r in run.sizes), sum(r.correct for r in run.sizes),
                          sum(r.tokens for r in run.sizes), round(wall, 2), round(run.seconds or 0.0, 2))
            rows.append(row)
            if progress is not None:
                progress(row)
    return rows, all(result == results[0] for result in results)


def _outcome(run: RunResult) -> Any:
    """What the engines must agree on: per size the counts and tokens, and every fault and detour."""
    return ([(r.size, r.n, r.correct, r.faithful, r.tokens) for r in run.sizes], run.faults, run.detours)
