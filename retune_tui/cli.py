"""`retune`: generate data, solve problems, inspect traces.

Commands stay thin: parse options, build a config, call one function. Heavy modules
(torch, transformers, rich's live display) are imported inside the commands that need
them, so `retune --help` answers at once.
"""

from __future__ import annotations

import functools
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from retune_tui.errors import InputError, UserError

app = typer.Typer(
    name="retune",
    help="Re-Tuning: recursive tuning of LLMs. Generate data, solve problems, inspect traces.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)
trace_app = typer.Typer(help="Saved traces: show them again.", no_args_is_help=True)
app.add_typer(trace_app, name="trace")

_debug = False
F = TypeVar("F", bound=Callable[..., Any])


def _fail(message: str, code: int) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def guarded(fn: F) -> F:
    """Expected failures become one line on stderr and an exit code (a traceback with --debug)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except UserError as exc:
            if _debug:
                raise
            _fail(str(exc), exc.exit_code)
        except OSError as exc:
            if _debug:
                raise
            where = f"{exc.filename}: " if exc.filename else ""
            _fail(f"{where}{exc.strerror or exc}", 1)
        except KeyboardInterrupt:
            _fail("interrupted", 130)

    return wrapper  # type: ignore[return-value]


@app.callback()
def root(debug: Annotated[bool, typer.Option("--debug", help="Show full tracebacks for errors.")] = False) -> None:
    global _debug
    _debug = debug


# --- shared options ---------------------------------------------------------------------

TaskOpt = Annotated[str | None, typer.Option("--task", "-t", help="addition, parity or dp (default: recognised from the text).")]
MethodOpt = Annotated[str, typer.Option("--method", "-m", help="baseline, scratchpad or retuning.")]
MaxDepth = Annotated[int | None, typer.Option(help="Deepest context allowed (default: from the problem size).")]
MaxCalls = Annotated[int | None, typer.Option(help="Calls allowed per problem (default: from the problem size).")]
MaxSegTokens = Annotated[int | None, typer.Option(help="Tokens per segment before it must stop (default: from the problem).")]
MaxTotalTokens = Annotated[int | None, typer.Option(help="Tokens per problem (default: from the problem size).")]
MaxSeconds = Annotated[float | None, typer.Option(help="Wall time per problem in seconds (default: none).")]


def _limits(max_depth, max_calls, max_segment_tokens, max_total_tokens, max_seconds):
    from retune_tui.engine.limits import Limits

    try:
        return Limits(max_depth, max_calls, max_segment_tokens, max_total_tokens, max_seconds)
    except ValueError as exc:
        raise InputError(str(exc)) from None


# --- data -------------------------------------------------------------------------------


@app.command()
@guarded
def data(
    task: Annotated[str, typer.Argument(help="addition, parity or dp.")],
    method: MethodOpt = "retuning",
    lengths: Annotated[str | None, typer.Option(help="Problem sizes LO-HI (default: the paper's training sizes).")] = None,
    n: Annotated[int, typer.Option("--n", help="Number of top-level problems.")] = 1000,
    seed: Annotated[int, typer.Option(help="Seed of the random problems.")] = 0,
    out: Annotated[Path | None, typer.Option(help="File to write (JSONL, or JSON with --format paper).")] = None,
    problem: Annotated[str | None, typer.Option(help="Print one problem's examples to stdout instead.")] = None,
    fmt: Annotated[str, typer.Option("--format", help="jsonl (records with metadata) or paper (the paper's JSON list).")] = "jsonl",
    reweight: Annotated[bool, typer.Option("--reweight/--no-reweight", help="Thin long problems and repeat short sub-problems, as the paper did.")] = True,
    dedup: Annotated[bool, typer.Option(help="Drop examples identical to an earlier one.")] = False,
    workers: Annotated[int | None, typer.Option(help="Processes making examples (default: one per CPU).")] = None,
) -> None:
    """Make training examples from oracle traces: one per segment of every context."""
    from retune_tui import data as datasets
    from retune_tui.tasks import get_method, get_task

    the_task, the_method = get_task(task), get_method(method)
    if problem is not None:
        examples = the_task.oracle_examples(the_task.parse(problem), the_method)
        if fmt == "paper":
            typer.echo("[" + ",\n".join(datasets.paper_record(ex) for ex in examples) + "]")
        else:
            sys.stdout.write("".join(datasets.example_line(ex) for ex in examples))
        return
    if out is None:
        raise InputError("give --out FILE to write a data set, or --problem TEXT to print one problem's examples")
    spec = datasets.DataSpec(
        task=the_task.name,
        method=the_method,
        lengths=datasets.parse_lengths(lengths) if lengths else the_task.train_lengths,
        n=n,
        seed=seed,
        weighting=datasets.Weighting.paper(the_task.name) if reweight else datasets.Weighting(),
    )
    from retune_tui.render import progress_bar

    start = time.perf_counter()
    with progress_bar("problems") as bar:
        job = bar.add_task("data", total=spec.n)
        stats = datasets.write_dataset(spec, out, fmt=fmt, dedup=dedup, workers=workers,
                                       progress=lambda k: bar.advance(job, k))
    seconds = time.perf_counter() - start
    dropped = f", {stats.duplicates:,} duplicates dropped" if dedup else ""
    typer.echo(f"wrote {stats.examples:,} examples from {stats.problems:,} problems to {out} "
               f"in {seconds:.1f}s ({stats.examples / max(seconds, 1e-9):,.0f} examples/s, "
               f"{stats.bytes / 1e6:,.0f} MB){dropped}")


# --- solve ------------------------------------------------------------------------------


BaseOpt = Annotated[str, typer.Option("--base", "--model", help="Base model: a local directory or a hub name; 'oracle' writes the correct segments with no model.")]
AdapterOpt = Annotated[Path | None, typer.Option(help="A LoRA adapter directory made by `retune train`.")]
DeviceOpt = Annotated[str, typer.Option(help="auto, cpu, cuda, cuda:N or mps.")]
DtypeOpt = Annotated[str, typer.Option(help="auto (bf16 on capable GPUs, else float32), float32, bfloat16, float16.")]
PickleOpt = Annotated[bool, typer.Option(help="Allow pickled .bin checkpoints (they can run code when loaded).")]
RemoteOpt = Annotated[bool, typer.Option(help="Allow model code shipped with the checkpoint to run.")]


def _backend(base, adapter, device, dtype, allow_pickle, trust_remote_code, temperature=0.0, top_p=1.0, seed=0):
    from retune_tui.engine.loading import ModelSpec
    from retune_tui.solving import Backend

    if base == "oracle":
        if adapter is not None:
            raise InputError("--adapter needs a --base model (the oracle takes no adapter)")
        return Backend()
    spec = ModelSpec(base, str(adapter) if adapter else None, device, dtype, allow_pickle, trust_remote_code)
    return Backend(spec, temperature, top_p, seed)


@app.command()
@guarded
def solve(
    problem: Annotated[str | None, typer.Argument(help="The problem, as you would type it: '123 + 456', '1 0 1', '[3, -2, 5]'.")] = None,
    task: TaskOpt = None,
    method: Annotated[str | None, typer.Option("--method", "-m", help="baseline, scratchpad or retuning (default: the adapter's, else retuning).")] = None,
    base: BaseOpt = "oracle",
    adapter: AdapterOpt = None,
    file: Annotated[Path | None, typer.Option(help="Solve every problem in this file (one a line), batched.")] = None,
    out: Annotated[Path | None, typer.Option(help="With --file: write all traces here (JSONL).")] = None,
    save: Annotated[Path | None, typer.Option(help="Save the trace (JSONL events) to this file.")] = None,
    temperature: Annotated[float, typer.Option(help="0 decodes greedily; above 0 samples.")] = 0.0,
    top_p: Annotated[float, typer.Option(help="Nucleus sampling threshold (with --temperature).")] = 1.0,
    seed: Annotated[int, typer.Option(help="Seed for sampling.")] = 0,
    device: DeviceOpt = "auto",
    dtype: DtypeOpt = "auto",
    allow_pickle: PickleOpt = False,
    trust_remote_code: RemoteOpt = False,
    max_depth: MaxDepth = None,
    max_calls: MaxCalls = None,
    max_segment_tokens: MaxSegTokens = None,
    max_total_tokens: MaxTotalTokens = None,
    max_seconds: MaxSeconds = None,
) -> None:
    """Solve a problem recursively and draw its call tree while it grows."""
    from retune_tui import solving

    limits = _limits(max_depth, max_calls, max_segment_tokens, max_total_tokens, max_seconds)
    backend = _backend(base, adapter, device, dtype, allow_pickle, trust_remote_code, temperature, top_p, seed)
    if (problem is None) == (file is None):
        raise InputError("give a problem, or --file FILE with one problem a line")
    if file is not None:
        solving.solve_file(file, out or save, task=task, method=method, backend=backend, limits=limits)
    else:
        solving.solve_one(problem, save, task=task, method=method, backend=backend, limits=limits)


# --- trace ------------------------------------------------------------------------------


@trace_app.command("show")
@guarded
def trace_show(
    path: Annotated[Path, typer.Argument(help="A trace file written by --save or --out.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the trees as JSON instead.")] = False,
    tree: Annotated[int | None, typer.Option(help="Only the problem with this tree id.")] = None,
) -> None:
    """Draw a saved trace again (or print it as JSON)."""
    import json

    from retune_tui.trace import read_traces

    traces = read_traces(path)
    if tree is not None:
        traces = [t for t in traces if t.tree == tree]
        if not traces:
            raise InputError(f"{path} holds no tree {tree}")
    if as_json:
        typer.echo(json.dumps([t.to_json() for t in traces], indent=2, ensure_ascii=False))
        return
    from rich.console import Console

    from retune_tui.render import trace_view

    console = Console()
    for t in traces:
        console.print(trace_view(t))


def main() -> None:
    app(prog_name="retune")


if __name__ == "__main__":
    main()
