"""`retune data`."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Annotated

import typer

from retune_tui.cli import MethodOpt, OverwriteOpt, app, guarded
from retune_tui.errors import InputError

DEFAULT_N = 1000  # top-level problems of a data set when --n is not given (it is refused with --problem)

# --- data -------------------------------------------------------------------------------


@app.command()
@guarded
def data(
    task: Annotated[str, typer.Argument(help="addition, parity or dp.")],
    method: MethodOpt = "retuning",
    lengths: Annotated[
        str | None, typer.Option(help="Problem sizes LO-HI (default: the paper's training sizes).")
    ] = None,
    n: Annotated[
        int | None, typer.Option("--n", "--problems", help=f"Number of top-level problems \\[default: {DEFAULT_N}].")
    ] = None,
    seed: Annotated[int | None, typer.Option(help="Seed of the random problems \\[default: 0].")] = None,
    out: Annotated[Path | None, typer.Option(help="File to write (JSONL, or JSON with --format paper).")] = None,
    problem: Annotated[str | None, typer.Option(help="Print one problem's examples to stdout instead.")] = None,
    fmt: Annotated[
        str, typer.Option("--format", help="jsonl (records with metadata) or paper (the paper's JSON list).")
    ] = "jsonl",
    reweight: Annotated[
        bool | None,
        typer.Option(
            "--reweight/--no-reweight",
            help="Thin long problems and repeat short sub-problems, as the paper did \\[default: reweight].",
        ),
    ] = None,
    dedup: Annotated[bool, typer.Option(help="Drop examples identical to an earlier one.")] = False,
    workers: Annotated[int | None, typer.Option(help="Processes making examples (default: one per CPU).")] = None,
    overwrite: OverwriteOpt = False,
) -> None:
    """Make training examples from oracle traces: one per segment of every context."""
    from retune_tui import data as datasets
    from retune_tui.files import check_output
    from retune_tui.tasks import get_method, get_task

    the_task, the_method = get_task(task), get_method(method)
    datasets.check_format(fmt)
    if workers is not None and workers < 1:
        raise InputError("--workers must be at least 1")
    if problem is not None:
        if out is not None:
            raise InputError("--problem prints one problem's examples; --out writes a data set: give one of them")
        ignored = [name for name, given in (
            ("--n", n is not None), ("--lengths", bool(lengths)), ("--seed", seed is not None),
            ("--reweight/--no-reweight", reweight is not None), ("--dedup", dedup), ("--workers", workers is not None),
        ) if given]
        if ignored:
            raise InputError(f"{ignored[0]} is for a data set (--out); --problem prints that one problem's examples")
        examples = the_task.oracle_examples(the_task.parse(problem), the_method)
        if fmt == "paper":
            typer.echo("[" + ",\n".join(datasets.paper_record(ex) for ex in examples) + "]")
        else:
            sys.stdout.write("".join(datasets.example_line(ex) for ex in examples))
        return
    if out is None:
        raise InputError("give --out FILE to write a data set, or --problem TEXT to print one problem's examples")
    if n is not None and n < 1:
        raise InputError(f"--n must be at least 1, got {n}")
    check_output(out, overwrite=overwrite)
    if lengths:
        datasets.check_size(datasets.parse_lengths(lengths)[1])
    spec = datasets.DataSpec(
        task=the_task.name,
        method=the_method,
        lengths=datasets.parse_lengths(lengths) if lengths else the_task.train_lengths,
        n=DEFAULT_N if n is None else n,
        seed=0 if seed is None else seed,
        weighting=datasets.Weighting() if reweight is False else datasets.Weighting.paper(the_task.name),
    )
    from retune_tui.render import progress_bar

    start = time.perf_counter()
    with progress_bar("problems") as bar:
        job = bar.add_task("data", total=spec.n)
        stats = datasets.write_dataset(
            spec, out, fmt=fmt, dedup=dedup, workers=workers, progress=lambda k: bar.advance(job, k)
        )
    seconds = time.perf_counter() - start
    dropped = f", {stats.duplicates:,} duplicates dropped" if dedup else ""
    typer.echo(
        f"wrote {stats.examples:,} examples from {stats.problems:,} problems to {out} "
        f"in {seconds:.1f}s ({stats.examples / max(seconds, 1e-9):,.0f} examples/s, "
        f"{stats.bytes / 1e6:,.0f} MB){dropped}"
    )
