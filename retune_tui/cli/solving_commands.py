"""`retune solve` and `retune trace show`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from retune_tui.cli import (
    AdapterOpt,
    BaseOpt,
    DeviceOpt,
    DtypeOpt,
    MaxCalls,
    MaxDepth,
    MaxSeconds,
    MaxSegTokens,
    MaxTotalTokens,
    OverwriteOpt,
    PickleOpt,
    RemoteOpt,
    TaskOpt,
    _backend,
    _limits,
    app,
    guarded,
    trace_app,
)
from retune_tui.errors import InputError


@app.command()
@guarded
def solve(
    problem: Annotated[
        str | None, typer.Argument(help="The problem, as you would type it: '123 + 456', '1 0 1', '[3, -2, 5]'.")
    ] = None,
    task: TaskOpt = None,
    method: Annotated[
        str | None,
        typer.Option(
            "--method", "-m", help="baseline, scratchpad or retuning (default: the adapter's, else retuning)."
        ),
    ] = None,
    base: BaseOpt = None,
    adapter: AdapterOpt = None,
    file: Annotated[Path | None, typer.Option(help="Solve every problem in this file (one a line), batched.")] = None,
    out: Annotated[Path | None, typer.Option(help="With --file: write all traces here (JSONL).")] = None,
    batch: Annotated[int | None, typer.Option(help="With --file: problems solved together \\[default: 256].")] = None,
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
    overwrite: OverwriteOpt = False,
) -> None:
    """Solve a problem recursively and draw its call tree while it grows."""
    from retune_tui import solving
    from retune_tui.files import check_distinct, check_output

    limits = _limits(max_depth, max_calls, max_segment_tokens, max_total_tokens, max_seconds)
    if top_p != 1.0 and temperature == 0:
        raise InputError("--top-p goes with --temperature above 0 (greedy decoding takes the likeliest token)")
    backend = _backend(base, adapter, device, dtype, allow_pickle, trust_remote_code, temperature, top_p, seed)
    if (problem is None) == (file is None):
        raise InputError("give a problem, or --file FILE with one problem a line")
    if out is not None and file is None:
        raise InputError("--out goes with --file; to keep one problem's trace use --save")
    if batch is not None and (file is None or batch < 1):
        raise InputError("--batch goes with --file" if file is None else "--batch must be at least 1")
    if file is not None and out is not None and save is not None:
        raise InputError("--out and --save both name the traces' file; give one")
    check_output(out, overwrite=overwrite)
    check_output(save, overwrite=overwrite, option="--save")
    check_distinct({"out": out, "save": save}, inputs=[file] if file is not None else [])
    if file is not None:
        solving.solve_file(file, out or save, task=task, method=method, backend=backend, limits=limits,
                           batch=batch or 256)
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
    from retune_tui.trace import dumps_nested, read_traces

    traces = read_traces(path)
    if tree is not None:
        traces = [t for t in traces if t.tree == tree]
        if not traces:
            raise InputError(f"{path} holds no tree {tree}")
    if as_json:
        typer.echo(dumps_nested([t.to_json() for t in traces], traces, indent=2, ensure_ascii=False))
        return
    from rich.console import Console

    from retune_tui.render import trace_view

    console = Console()
    for t in traces:
        if len(traces) > 1:  # the id --tree takes
            console.print(f"[dim]tree {t.tree}[/dim]")
        console.print(trace_view(t, live=False))
