"""`retune eval` and `retune report`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from retune_tui.cli import (
    DeviceOpt,
    DtypeOpt,
    MaxCalls,
    MaxDepth,
    MaxSeconds,
    MaxSegTokens,
    MaxTotalTokens,
    OverwriteOpt,
    _int_list,
    _limits,
    _plot_path,
    app,
    guarded,
)
from retune_tui.errors import InputError, Stopped

# --- eval / report ------------------------------------------------------------------------


def _show_results(runs, settings: dict[str, Any], plot: Path | None, details: bool = True) -> None:
    from rich.console import Console

    from retune_tui.evaluate.report import accuracy_tables, detours_table, faults_table, plot_results, teacher_tables

    console = Console()
    for table in accuracy_tables(runs):
        console.print(table)
    if details:
        for run in runs:
            for table in (faults_table(run), detours_table(run), *teacher_tables(run)):
                if table is not None:
                    console.print(table)
    if plot is not None:
        plot_results(runs, plot, title=settings.get("title"))
        console.print(f"[dim]plot: {plot}[/dim]")


def _say_done(run) -> None:
    """Off a terminal, where no progress bar shows, a line on stderr as each model is done."""
    solved = sum(row.n for row in run.sizes)
    right = sum(row.correct for row in run.sizes)
    took = f" in {run.seconds:.1f}s" if run.seconds is not None else ""
    typer.echo(f"{run.label}: {right} of {solved} right{took}" + (" (stopped)" if run.partial else ""), err=True)


def _earlier_failures(folder: Path) -> dict[Path, int]:
    """The failure files a run before left in ``folder``, each with its inode."""
    from retune_tui.evaluate import TEACHER_WRONG

    found = [*folder.glob("*-failures.rank*.jsonl"), *folder.glob(f"*{TEACHER_WRONG}")]
    return {path: path.stat().st_ino for path in found}


def _remove_unreplaced(earlier: dict[Path, int]) -> None:
    """The folder's failure files are replaced as a whole: those of the run before that this one
    did not write again (same inode: every file is written anew, atomically) go. Only once this run
    has results, so a run that fails or stops with nothing finished leaves the old ones."""
    for path, inode in earlier.items():
        try:
            if path.stat().st_ino == inode:
                path.unlink()
        except FileNotFoundError:
            pass


@app.command("eval")
@guarded
def eval_command(
    adapter: Annotated[list[Path] | None, typer.Option(help="An adapter directory; repeat for several.")] = None,
    base: Annotated[str | None, typer.Option(
        "--base", "--model",
        help="The base model the adapters sit on; alone, the model to evaluate (a full fine-tune, or any causal LM "
             "with --task); 'oracle': the same as --oracle.")] = None,
    oracle: Annotated[bool, typer.Option(help="Evaluate the oracle too (needs --task).")] = False,
    task: Annotated[str | None, typer.Option(
        "--task", "-t", help="addition, parity or dp: what the oracle or a model without a manifest solves; "
                             "with adapters, only theirs (default: every bundled adapter).")] = None,
    methods: Annotated[str | None, typer.Option(
        help="With --oracle, or a --model alone: methods, comma-separated \\[default: retuning].")] = None,
    sizes: Annotated[
        str | None, typer.Option(help="Sizes, e.g. '2-60' or '5,10,20' (default: the task's range).")
    ] = None,
    n: Annotated[int, typer.Option("--n", "--per-size", help="Problems per size.")] = 100,
    seed: Annotated[int, typer.Option(help="Seed of the problems (the same for every adapter).")] = 0,
    batch: Annotated[int, typer.Option(help="Problems solved together.")] = 256,
    teacher: Annotated[bool, typer.Option(help="Also score every oracle context teacher-forced.")] = True,
    teacher_n: Annotated[
        int | None,
        typer.Option(help="Problems per size the teacher-forced check scores (default: the first 20 of the --n; "
                          "it is fast, so it may score more than --n; in the first process only when sharded)."),
    ] = None,
    out: Annotated[Path, typer.Option(help="Results JSON.")] = Path("results.json"),
    plot: Annotated[Path | None, typer.Option(help="Accuracy plot (PNG); default next to --out.")] = None,
    failures: Annotated[
        Path | None, typer.Option(help="Save failed traces here, --failures-per-size of each size (for retune-tui), "
                                       "and every wrong teacher-forced segment (NAME-teacher-wrong.jsonl: data "
                                       "that retune train --data takes).")
    ] = None,
    failures_per_size: Annotated[
        int | None,
        typer.Option(help="Failed traces of each size --failures keeps (default 3; per process when sharded)."),
    ] = None,
    device: DeviceOpt = "auto",
    dtype: DtypeOpt = "auto",
    max_depth: MaxDepth = None,
    max_calls: MaxCalls = None,
    max_segment_tokens: MaxSegTokens = None,
    max_total_tokens: MaxTotalTokens = None,
    max_seconds: MaxSeconds = None,
    overwrite: OverwriteOpt = False,
) -> None:
    """Accuracy by problem size, in and beyond the trained sizes, and where wrong answers went wrong."""
    import time

    from retune_tui import bundled
    from retune_tui.evaluate import EvalConfig, Interrupted, count_problems, run_eval
    from retune_tui.evaluate.report import write_results
    from retune_tui.files import check_distinct, check_folder, check_output
    from retune_tui.render import progress_bar

    check_output(out, overwrite=overwrite)
    plot = _plot_path(plot or out.with_suffix(".png"), overwrite)
    check_distinct({"out": out, "plot": plot})
    if failures_per_size is not None and failures is None:
        raise InputError("--failures-per-size needs --failures DIR, where the failed traces go")
    if failures_per_size is not None and failures_per_size < 1:
        raise InputError("--failures-per-size must be at least 1")
    if teacher_n is not None and not teacher:
        raise InputError("--teacher-n sizes the teacher-forced check, which --no-teacher turns off")
    if failures is not None:
        if failures.exists() and not failures.is_dir():
            raise InputError(f"--failures {failures} is a file; give a folder")
        check_folder(failures, "--failures")
        earlier = _earlier_failures(failures)
        if earlier and not overwrite:
            raise InputError(f"--failures {failures} already holds failed traces; pass --overwrite to replace them")
    if base == "oracle":
        oracle, base = True, None
    adapters = [str(a) for a in adapter or []]
    whole_model = not adapters and base is not None  # --model alone: that model itself
    if not adapters and not oracle and not whole_model:  # by default: the bundled adapters (of --task, if given)
        adapters = [str(p) for p in bundled.adapters() if task is None or p.name.startswith(f"{task}-")]
        if not adapters:
            raise InputError("nothing to evaluate: give --adapter DIR (one or more), --model DIR or --oracle")
    if adapters and base is None:
        base = bundled.base_for(adapters[0])
    if methods is not None and not (oracle or whole_model):
        raise InputError("--methods is for --oracle or a --model alone; an adapter solves with its own method")
    config = EvalConfig(
        adapters=adapters,
        base=base,
        whole_model=whole_model,
        oracle=oracle,
        task=task,
        methods=[m.strip() for m in (methods or "retuning").split(",") if m.strip()],
        sizes=_int_list(sizes, "sizes") if sizes else None,
        n=n,
        seed=seed,
        batch=batch,
        limits=_limits(max_depth, max_calls, max_segment_tokens, max_total_tokens, max_seconds),
        teacher=teacher,
        teacher_n=teacher_n,
        keep_failures=3 if failures_per_size is None else failures_per_size,
        device=device,
        dtype=bundled.dtype_on(base, dtype),  # the bundled base as solve runs it
    )
    start = time.perf_counter()
    interrupted = False
    with progress_bar("evaluating") as bar:
        job = bar.add_task("eval", total=count_problems(config))
        try:
            runs = run_eval(config, on_done=lambda trace: bar.advance(job), failures_dir=failures,
                            on_result=None if bar.console.is_terminal else _say_done)
        except Interrupted as stop:  # Ctrl-C: what was finished is kept
            runs, interrupted = [run for run in stop.results if run.sizes], True
            if not runs:  # nothing finished (a batch's problems end together): nothing to write
                raise KeyboardInterrupt from None
    if failures is not None:
        _remove_unreplaced(earlier)
    if int(__import__("os").environ.get("RANK", 0)) != 0:
        return
    settings = {
        "n": n,
        "seed": seed,
        "base": base,
        "sizes": config.sizes,
        "seconds": round(time.perf_counter() - start, 1),
        "limits": {k: v for k, v in vars(config.limits).items() if v is not None},
    }
    if interrupted:
        settings["interrupted"] = True
    write_results(out, runs, settings)
    _show_results(runs, settings, plot)
    if interrupted:
        finished = sum(row.n for run in runs for row in run.sizes)
        raise Stopped(f"interrupted; wrote the results of the {finished} problems finished to {out}")
    typer.echo(f"wrote {out}")


@app.command("report")
@guarded
def report_command(
    results: Annotated[list[Path], typer.Argument(help="Results files written by `retune eval`.")],
    plot: Annotated[Path | None, typer.Option(help="Write the plot of all of them here (PNG).")] = None,
    details: Annotated[bool, typer.Option(help="Also the fault and teacher-forced tables.")] = True,
    markdown: Annotated[Path | None, typer.Option(help="Also write the accuracy tables as Markdown here.")] = None,
    overwrite: OverwriteOpt = False,
) -> None:
    """Render saved results again; several files are compared side by side."""
    from retune_tui.evaluate.report import read_results
    from retune_tui.files import check_distinct, check_output

    plot = _plot_path(plot, overwrite)
    check_output(markdown, overwrite=overwrite, option="--markdown")
    check_distinct({"plot": plot, "markdown": markdown}, inputs=results)

    runs, settings = [], {}
    if len({path.resolve() for path in results}) < len(results):
        raise InputError("a results file is named twice")
    by_file = []
    for path in results:
        these, settings = read_results(path)
        if not these:
            raise InputError(f"{path} holds no evaluated runs")
        by_file.append((path, these))
    files_of: dict[str, set[Path]] = {}
    for path, these in by_file:
        for run in these:
            files_of.setdefault(run.label, set()).add(path)
    for path, these in by_file:
        for run in these:
            if len(files_of[run.label]) > 1:  # the same adapter in two files: say which file each is
                run.label = f"{path.stem}: {run.label}"
        runs += these
    _show_results(runs, settings, plot, details)
    if markdown is not None:
        from retune_tui.evaluate.report import markdown_tables
        from retune_tui.files import atomic_write_text

        atomic_write_text(markdown, markdown_tables(runs))
        typer.echo(f"wrote {markdown}")
