"""Results as files, tables and plots: what `retune eval` writes and `retune report` reads."""

from __future__ import annotations

import json
import os
from collections import defaultdict
from pathlib import Path
from typing import Any

from retune_tui.errors import InputError, UserError
from retune_tui.evaluate.accuracy import ImpossibleResult, RunResult, SizeResult
from retune_tui.files import atomic_write_text


def write_results(path: Path, runs: list[RunResult], settings: dict[str, Any]) -> None:
    atomic_write_text(path, json.dumps({"settings": settings, "runs": [r.to_json() for r in runs]}, indent=2) + "\n")


def read_results(path: Path) -> tuple[list[RunResult], dict[str, Any]]:
    """The runs and settings of a results file, checked by drawing every table of it once (so a
    hand-edited field of the wrong shape is one line here, not a traceback while rendering)."""
    try:
        data = json.loads(Path(path).read_text())
        runs = [RunResult.from_json(r) for r in data["runs"]]
        accuracy_tables(runs)
        for run in runs:
            faults_table(run)
            detours_table(run)
            teacher_tables(run)
        return runs, data.get("settings", {})
    except OSError as exc:
        raise InputError(f"cannot read results {path}: {exc.strerror}") from None
    except KeyError as exc:
        raise UserError(f"{path} is not a `retune eval` results file (no {exc.args[0]!r} field)") from None
    except ImpossibleResult as exc:
        raise UserError(f"{path} holds counts no evaluation gives ({exc}); was it edited?") from None
    except (ValueError, TypeError, AttributeError):
        raise UserError(f"{path} is not a `retune eval` results file") from None


def _off_path(row: SizeResult) -> bool:
    """Some of the row's right answers came through a segment the oracle would not have written."""
    return row.faithful is not None and row.faithful < row.correct


def accuracy_tables(runs: list[RunResult]) -> list[Any]:
    """One rich table per task: a row per size, a column per run (trained sizes marked •).

    Where some right answers left the oracle's path, a second line gives the share that
    recursed exactly as the oracle does.
    """
    from rich.table import Table

    tables = []
    by_task: dict[str, list[RunResult]] = defaultdict(list)
    for run in runs:
        by_task[run.task].append(run)
    for task, task_runs in by_task.items():
        table = Table(title=f"{task}: accuracy by size (• trained size)")
        table.add_column("size", justify="right")
        for run in task_runs:
            table.add_column(f"{run.label}\n{run.method}" + ("\n[magenta]interrupted[/magenta]" if run.partial else ""),
                             justify="right")
        sizes = sorted({row.size for run in task_runs for row in run.sizes})
        for size in sizes:
            cells = []
            for run in task_runs:
                row = next((r for r in run.sizes if r.size == size), None)
                if row is None:
                    cells.append("")
                    continue
                mark = "•" if row.in_distribution else " "
                style = "green" if row.accuracy >= 0.99 else "yellow" if row.accuracy >= 0.5 else "red"
                cell = f"[{style}]{100 * row.accuracy:5.1f}%[/{style}] {mark}"
                if _off_path(row):
                    cell += f"\n[dim]oracle's way {100 * row.faithful_rate:5.1f}%[/dim]"
                if run.partial:
                    cell += f"\n[dim]of {row.n}[/dim]"  # the problems finished before it was stopped
                cells.append(cell)
            table.add_row(str(size), *cells)
        tables.append(table)
    return tables


def markdown_tables(runs: list[RunResult]) -> str:
    """The accuracy tables as Markdown (one per task; trained sizes marked with *; in brackets, where lower,
    the % of problems right through the oracle's own recursion)."""
    by_task: dict[str, list[RunResult]] = defaultdict(list)
    for run in runs:
        by_task[run.task].append(run)
    out = []
    for task, task_runs in by_task.items():
        counts = sorted({row.n for run in task_runs for row in run.sizes})
        n_text = "/".join(str(n) for n in counts)
        legend = "; (x) = % of problems right the oracle's way, where lower" if any(
            _off_path(row) for run in task_runs for row in run.sizes) else ""
        out.append(f"**{task}** (accuracy %, {n_text} problems per size; * = a trained size{legend})\n")
        out.append("| size | " + " | ".join(f"{r.label} ({r.method})" for r in task_runs) + " |")
        out.append("| --- |" + " --- |" * len(task_runs))
        for size in sorted({row.size for run in task_runs for row in run.sizes}):
            cells = []
            for run in task_runs:
                row = next((r for r in run.sizes if r.size == size), None)
                if row is None:
                    cells.append("")
                    continue
                way = f" ({100 * row.faithful_rate:.0f})" if _off_path(row) else ""
                cells.append(f"{100 * row.accuracy:.0f}{'*' if row.in_distribution else ''}{way}")
            out.append(f"| {size} | " + " | ".join(cells) + " |")
        out.append("")
    return "\n".join(out)


def faults_table(run: RunResult) -> Any | None:
    """Where the wrong answers first went wrong: counts by size, depth and kind."""
    return _first_segments_table(run, run.faults, "wrong answer")


def detours_table(run: RunResult) -> Any | None:
    """Where right answers left the oracle's path: counts by size, depth and kind."""
    return _first_segments_table(run, run.detours, "right answer reached off the oracle's path")


def _first_segments_table(run: RunResult, rows: list[dict[str, Any]], which: str) -> Any | None:
    from rich.table import Table

    if not rows:
        return None
    table = Table(title=f"{run.label} ({run.task} · {run.method}): first wrong segment of each {which}")
    for col in ("size", "depth", "kind", "count"):
        table.add_column(col, justify="right" if col != "kind" else "left")
    for f in rows:
        table.add_row(str(f["size"]), "—" if f["depth"] < 0 else str(f["depth"]), f["kind"], str(f["count"]))
    return table


def teacher_tables(run: RunResult) -> list[Any]:
    """The teacher-forced check: exact segments by depth, then by size of context (with the
    problems of each size whose every segment is exact), a column per kind of segment."""
    if not run.teacher:
        return []
    teacher = run.teacher
    segments = teacher.get("segments", teacher.get("contexts"))  # results before 2026-12-07 named them contexts
    title = (f"{run.label}: teacher-forced segments ({segments} segments, "
             f"{_percent(teacher['accuracy'])}% exact)")
    tables = [_by_kind_table(f"{title}, by depth", "depth", teacher["rows"])]
    if teacher.get("by_size"):  # results written before 2026-11-27 have the depth rows only
        exact = {p["size"]: _count(p["exact"], p["total"]) for p in teacher.get("problems", [])}
        tables.append(_by_kind_table(f"{run.label}: teacher-forced segments by size of context", "size",
                                     teacher["by_size"], ("problems all exact", exact)))
    if teacher.get("wrong"):
        tables.append(_wrong_segments_table(run.label, teacher["wrong"]))
    return tables


def _wrong_segments_table(label: str, wrong: list[dict[str, Any]]) -> Any:
    """The first wrong segments of each size and kind of context: the context's first line, and
    the oracle's segment against what the model writes, from just before they part (the model's
    text ends with its first token that differs: past it, it would be writing on its own)."""
    from rich.table import Table
    from rich.text import Text

    from retune_tui.evaluate.teacher import END

    table = Table(title=f"{label}: teacher-forced, the first wrong segments of each size and kind of context")
    for col in ("size", "kind", "context", "oracle", "model"):
        table.add_column(col, justify="right" if col == "size" else "left", overflow="fold")
    for record in wrong:
        oracle, model = record["completion"] + END, record["predicted"]
        parted = len(os.path.commonprefix([oracle, model]))
        start = oracle.rfind(" ", 0, max(0, parted - 10)) + 1  # a word or two before they part
        lead = "…" if start else ""
        table.add_row(str(record["size"]), record["kind"], _cropped(record["prompt"].splitlines()[0], 60),
                      Text(lead + oracle[start:parted]) + Text(_cropped(oracle[parted:], 24), "green"),
                      Text(lead + model[start:parted]) + Text(_cropped(model[parted:], 24), "bold red"))
    return table


def _cropped(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def _by_kind_table(title: str, key: str, rows: list[dict[str, Any]],
                   extra: tuple[str, dict[int, str]] | None = None) -> Any:
    """One row per ``key`` (depth or size of context), a column per kind of segment, and
    optionally one more column: ``extra`` is its name and its values by key."""
    from rich.table import Table

    from retune_tui.evaluate.teacher import KINDS

    present = {row["kind"] for row in rows}
    kinds = [k for k in KINDS if k in present] + sorted(present - set(KINDS))
    cells: dict[int, dict[str, str]] = defaultdict(dict)
    for row in rows:
        cells[row[key]][row["kind"]] = _count(row["correct"], row["total"])
    table = Table(title=title)
    table.add_column(key, justify="right")
    for kind in kinds:
        table.add_column(kind, justify="right")
    if extra:
        table.add_column(extra[0], justify="right")
    for k in sorted(cells):
        values = [cells[k].get(kind, "") for kind in kinds]
        if extra:
            values.append(extra[1].get(k, ""))
        table.add_row(str(k), *values)
    return table


def _count(correct: int, total: int) -> str:
    """``1447/1500 (96.5%)``: the counts, so that one wrong in thousands still shows."""
    return f"{correct}/{total} ({_percent(correct / total)}%)" if total else ""


def _percent(fraction: float) -> str:
    """One decimal, never 100.0 for less than all."""
    text = f"{100 * fraction:.1f}"
    return "99.9" if text == "100.0" and fraction < 1 else text


def plot_results(runs: list[RunResult], path: Path, title: str | None = None) -> None:
    """Accuracy against size, one line per run, the trained sizes shaded (the paper's figure)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    by_task: dict[str, list[RunResult]] = defaultdict(list)
    for run in runs:
        by_task[run.task].append(run)
    fig, axes = plt.subplots(1, len(by_task), figsize=(5.5 * len(by_task), 4.4), dpi=110, squeeze=False)
    for ax, (task, task_runs) in zip(axes[0], by_task.items()):
        trained = [r.trained for r in task_runs if r.trained]
        if trained:
            lo, hi = min(t[0] for t in trained), max(t[1] for t in trained)
            ax.axvspan(lo - 0.5, hi + 0.5, color="0.9", label="trained sizes")
        for run in task_runs:
            sizes = [r.size for r in run.sizes]
            [line] = ax.plot(sizes, [100 * r.accuracy for r in run.sizes], marker="o", markersize=3,
                             label=f"{run.label} ({run.method})")
            if any(_off_path(r) for r in run.sizes):
                ax.plot(sizes, [100 * (r.faithful_rate if r.faithful is not None else r.accuracy) for r in run.sizes],
                        linestyle="--", color=line.get_color(), linewidth=1, label=f"{run.label}: the oracle's way")
        ax.set(title=task, xlabel="problem size", ylabel="accuracy (%)", ylim=(-3, 103))
        ax.grid(alpha=0.3)
        # Below the axes: inside, it hid a curve wherever one ran high at the right.
        ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.18), ncol=2, frameon=False)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
